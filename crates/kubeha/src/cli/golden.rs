//! Golden-output tests: what users and scripts read (every command's `--help`, `check`'s
//! diagnostics, `plan`'s text and JSON on recorded facts) is compared with the files under
//! `tests/golden/`, so an output change is reviewed on purpose. After a deliberate change,
//! `KUBEHA_UPDATE_GOLDEN=1 cargo nextest run -p kubeha golden` rewrites them; review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{plan, Cli};
use crate::apply::{desired_files, Survey};
use crate::facts::{parse, recorded, sha256_hex, HostFacts};
use crate::render::{haproxy, test_support::seed};
use crate::spec::{self, PathContext};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the golden file `name`, or rewrites it when asked to.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("KUBEHA_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with KUBEHA_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header("golden", "actual")
            .to_string();
        panic!(
            "{name} differs from {} (KUBEHA_UPDATE_GOLDEN=1 rewrites it after review):\n{diff}",
            path.display()
        );
    }
}

/// Every command's long help, as `kubeha [COMMAND...] --help` prints it.
fn helps(command: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    out.push((path.to_string(), command.render_long_help().to_string()));
    // clap's own `help` subcommand says nothing of ours.
    for sub in command
        .get_subcommands_mut()
        .filter(|s| s.get_name() != "help")
    {
        let name = format!("{path}-{}", sub.get_name());
        helps(sub, &name, out);
    }
}

#[test]
fn golden_help_of_every_command() {
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    helps(&mut command, "kubeha", &mut pages);
    assert!(pages.len() > 15, "every command and lab subcommand");
    for (name, text) in pages {
        assert_golden(&format!("help/{name}.txt"), &text);
    }
}

#[test]
fn golden_check_diagnostics_of_the_invalid_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let paths = PathContext {
        spec_dir: corpus.clone(),
        home: None,
    };
    let mut text = String::new();
    for file in files {
        let name = Path::new(file.file_name().unwrap());
        let source = std::fs::read_to_string(&file).unwrap();
        // What `kubeha check -f FILE` prints on stderr, without colour.
        let report = match spec::load_str(name, source, &paths) {
            Ok(loaded) => loaded.report,
            Err(report) => report,
        };
        text += &format!("=== {}\n{}\n", name.display(), report.render(false));
    }
    // The same text wherever the repository is checked out.
    let text = text.replace(&corpus.display().to_string(), "tests/invalid");
    assert_golden("check/invalid-corpus.txt", &text);
}

/// The seed on fresh machines, except that the load balancer already has an older
/// haproxy.cfg: a plan with every kind of step and one diff.
fn fresh_seed_survey() -> (crate::spec::Cluster, Survey) {
    let cluster = seed();
    let mut facts: BTreeMap<String, HostFacts> = cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), parse(recorded::FRESH)))
        .collect();
    let desired = desired_files(&cluster, &facts).unwrap();
    let lb = cluster.load_balancers().next().unwrap().name.clone();
    let wanted = desired[&lb]
        .iter()
        .find(|d| d.file.path == haproxy::PATH)
        .unwrap();
    let older = String::from_utf8(wanted.bytes.clone())
        .unwrap()
        .replace("inter 2000ms", "inter 5000ms");
    facts
        .get_mut(&lb)
        .unwrap()
        .files
        .insert(haproxy::PATH.into(), Some(sha256_hex(older.as_bytes())));
    let survey = Survey {
        facts,
        desired,
        current: BTreeMap::from([((lb, haproxy::PATH.to_string()), older.into_bytes())]),
        cluster_state: None,
        kubeconfig: None,
        api_problem: None,
        // The release manifest's shape: calico-node with the pool CIDR commented out.
        calico_manifest: Some(Ok(
            "kind: DaemonSet\nmetadata:\n  name: calico-node\n            \
             # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n"
                .into(),
        )),
        replace: Default::default(),
        upgrade: None,
        max_unavailable: 1,
    };
    (cluster, survey)
}

#[test]
fn golden_plan_text_and_json_on_recorded_facts() {
    let (cluster, survey) = fresh_seed_survey();
    let plan = survey
        .plan(&cluster)
        .expect("fresh hosts have no conflicts");
    let text = plan::text(&cluster, &plan, &survey);
    assert!(
        text.contains("inter 5000ms") && text.contains("inter 2000ms"),
        "the haproxy.cfg diff is shown:\n{text}"
    );
    assert_golden("plan/fresh-seed.txt", &text);
    let json = serde_json::to_string_pretty(&plan::document(&cluster, &plan, &survey)).unwrap();
    assert_golden("plan/fresh-seed.json", &(json + "\n"));
}

#[test]
fn golden_status_text_and_json_from_recorded_outputs() {
    use super::status::{backend_states, summarize, LoadBalancerStatus};
    use crate::facts::cluster::{parse_etcd, LiveClusterConfig, NodeCondition, NodeState};
    use crate::plan::ClusterState;
    // What HAProxy's stats CSV and etcdctl print on a seed cluster with cp-3's apiserver down.
    let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
        kube-apiserver,FRONTEND,,,3,9,4096,120,0,0,0,0,0,,,,,OPEN,\n\
        kube-apiserver,k8s-master-1,0,0,1,3,,40,0,0,,0,,0,0,0,0,UP,1\n\
        kube-apiserver,k8s-master-2,0,0,1,3,,40,0,0,,0,,0,0,0,0,UP,1\n\
        kube-apiserver,k8s-master-3,0,0,0,3,,40,0,0,,0,,0,0,0,0,DOWN,1\n\
        kube-apiserver,BACKEND,0,0,2,9,410,120,0,0,0,,0,0,0,0,0,UP,2\n";
    let members = r#"{"header":{"cluster_id":1},"members":[
        {"ID":11,"name":"k8s-master-1","peerURLs":["https://192.0.2.10:2380"],"clientURLs":["https://192.0.2.10:2379"]},
        {"ID":12,"name":"k8s-master-2","peerURLs":["https://192.0.2.11:2380"],"clientURLs":["https://192.0.2.11:2379"]},
        {"ID":13,"name":"k8s-master-3","peerURLs":["https://192.0.2.12:2380"],"clientURLs":["https://192.0.2.12:2379"]}]}"#;
    let health = r#"[{"endpoint":"https://192.0.2.10:2379","health":true,"took":"2ms"},
        {"endpoint":"https://192.0.2.11:2379","health":true,"took":"3ms"},
        {"endpoint":"https://192.0.2.12:2379","health":true,"took":"2ms"}]"#;
    let leader = r#"[{"Status":{"leader":11}}]"#;
    let cluster = seed();
    // 2026-12-01 12:00 UTC on every host; k8s-master-2's certificates were made 345 days
    // before the others' and end within the warning threshold.
    let clock = 1_796_126_400;
    let mut facts: BTreeMap<String, HostFacts> = cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), HostFacts::default()))
        .collect();
    for (cp, apiserver_ends) in [
        ("k8s-master-1", clock + 300 * 86_400),
        ("k8s-master-2", clock + 20 * 86_400 + 3_600),
        ("k8s-master-3", clock + 300 * 86_400),
    ] {
        let f = facts.get_mut(cp).unwrap();
        f.etcd = parse_etcd(members, health, leader);
        f.clock = Some(clock);
        f.certificates = BTreeMap::from([
            ("/etc/kubernetes/pki/ca.crt".into(), clock + 3_600 * 86_400),
            ("/etc/kubernetes/pki/apiserver.crt".into(), apiserver_ends),
            ("/etc/kubernetes/admin.conf".into(), apiserver_ends + 60),
        ]);
    }
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        kind: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
    };
    let ready = condition(
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    );
    let calm = condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "");
    let nodes = cluster
        .kube_nodes()
        .map(|h| {
            let mut n = NodeState {
                ready: true,
                // Mid-upgrade: the control plane and the "-1" kubelets are at v1.32.0.
                kubelet_version: if h.name.ends_with("-1") {
                    "v1.32.0"
                } else {
                    "v1.31.0"
                }
                .into(),
                conditions: vec![calm.clone(), ready.clone()],
                ..Default::default()
            };
            if h.name == "k8s-worker-1" {
                n.cordoned = true;
                n.conditions.push(condition(
                    "DiskPressure",
                    "True",
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure",
                ));
            }
            if h.name == "k8s-worker-2" {
                n.ready = false;
                n.conditions[1] = condition(
                    "Ready",
                    "False",
                    "KubeletNotReady",
                    "container runtime network not ready",
                );
            }
            (h.name.clone(), n)
        })
        .collect();
    let state = ClusterState {
        nodes,
        calico: true,
        kubeadm_config: Some(LiveClusterConfig {
            kubernetes_version: "v1.32.0".into(),
            ..Default::default()
        }),
    };
    let mut status = summarize(&cluster, &facts, Some(&state));
    status.load_balancers.push(LoadBalancerStatus {
        host: "load-balancer".into(),
        holds_vip: None,
        backends: backend_states(csv),
    });
    assert_golden("status/seed.txt", &super::status::text(&status));
    let json = serde_json::to_string_pretty(&status).unwrap();
    assert_golden("status/seed.json", &(json + "\n"));
}
