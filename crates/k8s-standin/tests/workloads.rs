//! Workloads as users see them through the real kubectl: Deployments roll
//! out and update, DaemonSets respect taints, the scheduler explains what it
//! cannot place, drain evicts within PodDisruptionBudgets, a lost node's
//! Pods are evicted. The controllers, the scheduler and one kubelet per node
//! run in-process against a real etcd.

mod common;

use common::Cluster;
use k8s_standin::client::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Lab {
    cl: Cluster,
    /// The kubectl to run.
    k: String,
    kubeconfig: String,
    client: Client,
    /// Nodes whose kubelet is running (heartbeats, Pod sync).
    alive: Arc<Mutex<BTreeSet<String>>>,
}

fn kubectl_bin() -> Option<String> {
    let k = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let ok = std::process::Command::new(&k)
        .args(["version", "--client"])
        .output()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: no kubectl (apt-get install kubernetes-client, or set KUBECTL)");
    }
    ok.then_some(k)
}

impl Lab {
    /// cp1 (control-plane taint), worker-1, worker-2; control loops every 300 ms.
    /// None (skipped) without kubectl or etcd.
    async fn start(name: &str) -> Option<Lab> {
        let k = kubectl_bin()?;
        if !common::etcd_available() {
            return None;
        }
        let cl = Cluster::start(name);
        let url = cl.apiserver().await;
        let kc = cl.admin_kubeconfig(&url);
        let kubeconfig = cl.dir.join("admin.conf").to_string_lossy().into_owned();
        std::fs::write(&kubeconfig, &kc).unwrap();
        let client = Client::from_kubeconfig(&kc).unwrap();
        for (n, cp) in [("cp1", true), ("worker-1", false), ("worker-2", false)] {
            let mut node = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}},
                "spec": {}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
            if cp {
                node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
                node["spec"]["taints"] = json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
            }
            assert!(client.create("/api/v1/nodes", &node).await.ok());
        }
        let alive: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(
            ["cp1", "worker-1", "worker-2"].map(String::from).into(),
        ));
        let (c, ca, live) = (client.clone(), cl.ca.clone(), alive.clone());
        tokio::spawn(async move {
            loop {
                let nodes: Vec<String> = live.lock().unwrap().iter().cloned().collect();
                for (i, n) in nodes.iter().enumerate() {
                    let cond = k8s_standin::kubelet::node::conditions(true, "");
                    c.merge(
                        &format!("/api/v1/nodes/{n}/status"),
                        &json!({"status": {"conditions": cond}}),
                    )
                    .await;
                    k8s_standin::kubelet::workloads::sync(
                        &c,
                        n,
                        &format!("10.0.0.{}", 10 + i),
                        true,
                        true,
                        None,
                    )
                    .await;
                }
                let now = time::OffsetDateTime::now_utc();
                if let Err(e) = k8s_standin::controllers::reconcile(&c, &ca, now).await {
                    eprintln!("reconcile: {e}");
                }
                let _ = k8s_standin::scheduler::schedule(&c).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Some(Lab {
            cl,
            k,
            kubeconfig,
            client,
            alive,
        })
    }

    async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        self.kubectl_stdin(args, None).await
    }

    async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.k)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.cl.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}");
        out
    }

    async fn pods(&self, selector: &str) -> Vec<Value> {
        let a = self
            .client
            .get(&format!(
                "/api/v1/namespaces/default/pods?labelSelector={selector}"
            ))
            .await;
        a.body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (up to 60 s) until `f` holds for the Pods matching `selector`.
    async fn until_pods(
        &self,
        selector: &str,
        what: &str,
        f: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        for _ in 0..200 {
            let p = self.pods(selector).await;
            if f(&p) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "timed out waiting for {what}: {:#}",
            json!(self.pods(selector).await)
        );
    }
}

/// `kubectl get` rows, split on whitespace (header first).
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && k8s_standin::workload::pod_ready(p)
        && !k8s_standin::workload::terminating(p)
}

const AGENT: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: agent:1}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollout_daemonset_and_scheduling_with_kubectl() {
    let Some(lab) = Lab::start("deploy").await else {
        return;
    };
    lab.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
    ])
    .await;
    let out = lab
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let t = rows(&lab.ok(&["get", "deployment", "web"]).await);
    assert_eq!(t[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(t[1][..4], ["web", "3/3", "3", "3"]);
    let first = lab
        .until_pods("app%3Dweb", "3 running", |p| {
            p.len() == 3 && p.iter().all(running)
        })
        .await;
    assert!(
        first.iter().all(|p| node_of(p) != "cp1"),
        "nothing on the tainted control plane"
    );
    let t = rows(
        &lab.ok(&["get", "pods", "-l", "app=web", "-o", "wide"])
            .await,
    );
    assert_eq!(
        t[0][..7],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    );
    assert!(
        t[1..].iter().all(|r| r[1] == "1/1" && r[2] == "Running"),
        "{t:?}"
    );

    // Rolling update: every Pod replaced, the old ReplicaSet scaled to 0.
    lab.ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"])
        .await;
    let out = lab
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let old: BTreeSet<String> = first
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let new = lab
        .until_pods("app%3Dweb", "3 new running", |p| {
            p.len() == 3 && p.iter().all(running)
        })
        .await;
    assert!(new
        .iter()
        .all(|p| !old.contains(p["metadata"]["name"].as_str().unwrap())));
    assert!(new
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28"));
    let t = rows(
        &lab.ok(&[
            "get",
            "rs",
            "-l",
            "app=web",
            "--sort-by=.metadata.creationTimestamp",
        ])
        .await,
    );
    assert_eq!(t[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(
        (t[1][1].as_str(), t[2][1].as_str(), t[2][3].as_str()),
        ("0", "3", "3"),
        "{t:?}"
    );

    // DaemonSet without a toleration: one Pod per worker, none on cp1.
    let (ok, out) = lab.kubectl_stdin(&["apply", "-f", "-"], Some(AGENT)).await;
    assert!(ok, "{out}");
    lab.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    let agents = lab
        .until_pods("app%3Dagent", "agents", |p| {
            p.len() == 2 && p.iter().all(running)
        })
        .await;
    let nodes: BTreeSet<&str> = agents.iter().map(node_of).collect();
    assert_eq!(nodes, BTreeSet::from(["worker-1", "worker-2"]));
    let t = rows(&lab.ok(&["get", "ds", "agent"]).await);
    assert_eq!(
        t[0][..6],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE"
        ]
    );
    assert_eq!(
        t[1][..7],
        ["agent", "2", "2", "2", "2", "2", "kubernetes.io/os=linux"]
    );
    // Tolerating the control-plane taint adds the third.
    lab.ok(&["patch", "ds", "agent", "--type=merge", "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]}}}}"#]).await;
    lab.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    lab.until_pods("app%3Dagent", "agent on cp1", |p| {
        p.iter().filter(|p| running(p)).count() == 3 && p.iter().any(|p| node_of(p) == "cp1")
    })
    .await;

    // A Pod no node can take stays Pending and says why.
    let big = "apiVersion: v1\nkind: Pod\nmetadata: {name: big, namespace: default, labels: {app: big}}\nspec:\n  containers: [{name: c, image: x, resources: {requests: {cpu: '64'}}}]\n";
    assert!(lab.kubectl_stdin(&["apply", "-f", "-"], Some(big)).await.0);
    let p = lab
        .until_pods("app%3Dbig", "unschedulable condition", |p| {
            k8s_standin::workload::condition(&p[0], "PodScheduled") == "False"
        })
        .await;
    let cond = p[0]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(cond["message"], "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.");
    assert_eq!(p[0]["status"]["phase"], "Pending");
    let ev = lab
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big",
        ])
        .await;
    assert!(
        ev.contains("FailedScheduling") && ev.contains("Insufficient cpu"),
        "{ev}"
    );

    // An unbound Pod has no kubelet to wait for: deleted at once.
    lab.ok(&["delete", "pod", "big", "--timeout=10s"]).await;
    assert!(lab.pods("app%3Dbig").await.is_empty());

    // Deleting the Deployment takes its ReplicaSets and Pods with it.
    lab.ok(&["delete", "deployment", "web", "--wait=false"])
        .await;
    lab.until_pods("app%3Dweb", "web pods collected", |p| p.is_empty())
        .await;
    assert!(
        lab.ok(&["auth", "can-i", "create", "deployments"])
            .await
            .trim()
            == "yes"
    );
}

const PDB: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_respects_budgets_and_lost_nodes_lose_their_pods() {
    let Some(lab) = Lab::start("drain").await else {
        return;
    };
    lab.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ])
    .await;
    assert!(
        lab.kubectl_stdin(&["apply", "-f", "-"], Some(AGENT))
            .await
            .0
    );
    assert!(lab.kubectl_stdin(&["apply", "-f", "-"], Some(PDB)).await.0);
    let pods = lab
        .until_pods("app%3Dweb", "2 running", |p| {
            p.len() == 2 && p.iter().all(running)
        })
        .await;
    let spread: BTreeSet<&str> = pods.iter().map(node_of).collect();
    assert_eq!(
        spread,
        BTreeSet::from(["worker-1", "worker-2"]),
        "replicas spread over the workers"
    );
    lab.until_pods("app%3Dagent", "agents", |p| {
        p.len() == 2 && p.iter().all(running)
    })
    .await;
    let t = rows(&lab.ok(&["get", "pdb", "web"]).await);
    assert_eq!(
        t[0],
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(t[1][..4], ["web", "2", "N/A", "0"]);

    // The budget allows no disruption: drain cordons, then gives up.
    let (ok, out) = lab
        .kubectl(&["drain", "worker-1", "--ignore-daemonsets", "--timeout=8s"])
        .await;
    assert!(!ok, "drain must fail while the budget is exhausted:\n{out}");
    assert!(
        out.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}"
    );
    assert!(out.contains("node/worker-1 cordoned"), "{out}");
    assert!(lab
        .pods("app%3Dweb")
        .await
        .iter()
        .any(|p| node_of(p) == "worker-1" && running(p)));
    let t = rows(&lab.ok(&["get", "node", "worker-1"]).await);
    assert_eq!(t[1][1], "Ready,SchedulingDisabled");

    // One more replica (it cannot go to worker-1 now) frees a disruption.
    lab.ok(&["scale", "deployment", "web", "--replicas=3"])
        .await;
    lab.until_pods("app%3Dweb", "3 running", |p| {
        p.iter().filter(|p| running(p)).count() == 3
    })
    .await;
    for _ in 0..100 {
        if lab
            .client
            .get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")
            .await
            .body["status"]["disruptionsAllowed"]
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = lab
        .ok(&["drain", "worker-1", "--ignore-daemonsets", "--timeout=60s"])
        .await;
    assert!(out.contains("evicting pod default/web-"), "{out}");
    assert!(out.contains("node/worker-1 drained"), "{out}");
    let pods = lab
        .until_pods("app%3Dweb", "3 running off worker-1", |p| {
            p.iter().filter(|p| running(p)).count() == 3
        })
        .await;
    assert!(
        pods.iter().all(|p| node_of(p) == "worker-2"),
        "evicted Pod replaced elsewhere"
    );
    assert!(
        lab.pods("app%3Dagent")
            .await
            .iter()
            .any(|p| node_of(p) == "worker-1"),
        "DaemonSet Pods stay"
    );

    // Uncordon: new Pods may land on worker-1 again.
    lab.ok(&["uncordon", "worker-1"]).await;
    lab.ok(&["scale", "deployment", "web", "--replicas=5"])
        .await;
    lab.until_pods("app%3Dweb", "a web Pod on worker-1", |p| {
        p.iter().any(|p| node_of(p) == "worker-1" && running(p))
    })
    .await;

    // worker-2's kubelet stops: the node turns Unknown and is tainted, its
    // Pods go not Ready, and one tolerating unreachable for 1 s is evicted.
    let quick = "apiVersion: v1\nkind: Pod\nmetadata: {name: quick, namespace: default, labels: {app: quick}}\nspec:\n  nodeSelector: {kubernetes.io/hostname: worker-2}\n  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]\n  containers: [{name: c, image: x}]\n";
    assert!(
        lab.kubectl_stdin(&["apply", "-f", "-"], Some(quick))
            .await
            .0
    );
    lab.until_pods("app%3Dquick", "quick running", |p| {
        p.len() == 1 && running(&p[0])
    })
    .await;
    lab.alive.lock().unwrap().remove("worker-2");
    let stale = time::OffsetDateTime::now_utc()
        - time::Duration::seconds(k8s_standin::controllers::NODE_MONITOR_GRACE + 5);
    let mut cond = k8s_standin::kubelet::node::conditions(true, "");
    for c in cond.as_array_mut().unwrap() {
        c["lastHeartbeatTime"] = json!(k8s_standin::apiserver::objects::rfc3339(stale));
    }
    lab.client
        .merge(
            "/api/v1/nodes/worker-2/status",
            &json!({"status": {"conditions": cond}}),
        )
        .await;
    lab.until_pods("app%3Dquick", "quick evicted", |p| {
        p.first().is_some_and(k8s_standin::workload::terminating)
    })
    .await;
    let node = lab.client.get("/api/v1/nodes/worker-2").await.body;
    assert_eq!(k8s_standin::workload::condition(&node, "Ready"), "Unknown");
    let taints: Vec<&str> = node["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        taints,
        [
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/unreachable"
        ]
    );
    let web = lab.pods("app%3Dweb").await;
    assert!(
        web.iter()
            .filter(|p| node_of(p) == "worker-2")
            .all(|p| !k8s_standin::workload::pod_ready(p)),
        "Pods on a lost node are not Ready"
    );
    let t = rows(&lab.ok(&["get", "pod", "quick"]).await);
    assert_eq!(t[1][2], "Terminating", "no kubelet confirms the deletion");
}
