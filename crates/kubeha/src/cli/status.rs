//! `kubeha status`: nodes, etcd, load-balancer backends, the VIP and certificate expiry.

use std::fmt::Write as _;

use serde::Serialize;

use std::collections::BTreeMap;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::{Connected, Survey};
use crate::facts::cluster::EtcdView;
use crate::facts::{CertificateExpiry, HostFacts};
use crate::plan::membership::EtcdQuorum;
use crate::plan::{peer_url, ClusterState};
use crate::render::haproxy;
use crate::spec::{Cluster, Host};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Default, Serialize)]
pub struct Status {
    /// kubeadm-config's Kubernetes version, when the API answered.
    pub control_plane_version: Option<String>,
    pub nodes: Vec<NodeStatus>,
    /// etcd's members as [`EtcdQuorum::seen_from`]'s `etcdctl` lists them.
    pub etcd: Vec<EtcdMember>,
    /// `None` when no control plane's etcd answered.
    pub quorum: Option<EtcdQuorum>,
    pub control_planes: Vec<ControlPlaneStatus>,
    pub load_balancers: Vec<LoadBalancerStatus>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    pub cordoned: bool,
    pub kubelet_version: String,
    /// Every condition that needs attention (not Ready, a pressure), `; `-separated.
    pub detail: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMember {
    pub id: String,
    /// `(not started)` for a member that was added but never started.
    pub name: String,
    pub peer_url: String,
    pub healthy: bool,
    pub leader: bool,
    pub learner: bool,
}

#[derive(Debug, Serialize)]
pub struct ControlPlaneStatus {
    pub host: String,
    /// Its etcd member: `healthy`, `unhealthy`, `never started`, `not a member`, or
    /// `unknown` when no etcd answered.
    pub etcd: String,
    /// The certificate that expires first (`None` before kubeadm made any).
    pub nearest_certificate: Option<CertificateExpiry>,
    /// It expires within 30 days (or has expired): `kubeha certs renew`.
    pub certificate_warning: bool,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancerStatus {
    pub host: String,
    /// Whether this host holds the virtual IP (`None` without one).
    pub holds_vip: Option<bool>,
    pub backends: Vec<(String, String)>,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let status = block_on(args.remote.session(ui, loaded, async |connected| {
        let survey = connected.survey().await.map_err(runtime)?;
        Ok(gather(&connected.cluster, &survey))
    }))?;
    ui.print(&status, || text(&status));
    Ok(())
}

/// The survey's facts as a status, each load balancer's HAProxy backends and VIP
/// included (they are in its facts: one round trip per host).
pub fn gather(cluster: &Cluster, survey: &Survey) -> Status {
    let mut status = summarize(cluster, &survey.facts, survey.cluster_state.as_ref());
    if survey.kubeconfig.is_none() {
        status
            .problems
            .insert(0, "no control plane is initialised yet".into());
    }
    status.problems.extend(survey.api_problem.clone());
    for lb in cluster.load_balancers() {
        let facts = &survey.facts[&lb.name];
        let lb = load_balancer_status(lb, facts, &mut status.problems);
        status.load_balancers.push(lb);
    }
    status
}

/// Nodes, etcd, its quorum and each control plane's certificates, from the same facts
/// the planner reads.
pub fn summarize(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    cluster_state: Option<&ClusterState>,
) -> Status {
    let mut status = Status {
        control_plane_version: cluster_state
            .and_then(|s| s.kubeadm_config.as_ref())
            .map(|c| c.kubernetes_version.clone()),
        ..Status::default()
    };
    if let Some(state) = cluster_state {
        for (name, n) in &state.nodes {
            status.nodes.push(NodeStatus {
                name: name.clone(),
                ready: n.ready,
                cordoned: n.cordoned,
                kubelet_version: n.kubelet_version.clone(),
                detail: n.troubles().join("; "),
            });
        }
        for h in cluster.kube_nodes() {
            if !state.nodes.contains_key(&h.name) {
                status
                    .problems
                    .push(format!("{}: not registered with the API", h.name));
            }
        }
    }
    // A control plane whose own member is healthy sees etcd as the planner trusts it.
    let views: Vec<(&Host, &EtcdView)> = cluster
        .control_planes()
        .filter_map(|h| Some((h, facts.get(&h.name)?.etcd.as_ref()?)))
        .collect();
    let view = views
        .iter()
        .find(|(h, v)| v.with_peer(&peer_url(h)).any(|m| m.healthy && m.started()))
        .or(views.first())
        .copied();
    if let Some((seen_from, v)) = view {
        status.etcd = v
            .members
            .iter()
            .map(|m| EtcdMember {
                id: m.id.clone(),
                name: if m.started() {
                    m.name.clone()
                } else {
                    "(not started)".into()
                },
                peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
                healthy: m.healthy,
                leader: m.leader,
                learner: m.learner,
            })
            .collect();
        status.quorum = Some(EtcdQuorum::of(&seen_from.name, v));
    }
    for cp in cluster.control_planes() {
        let etcd = match view {
            None => "unknown",
            Some((_, v)) => match v.with_peer(&peer_url(cp)).next() {
                None => "not a member",
                Some(m) if !m.started() => "never started",
                Some(m) if m.healthy => "healthy",
                Some(_) => "unhealthy",
            },
        };
        let nearest = facts.get(&cp.name).and_then(HostFacts::nearest_certificate);
        status.control_planes.push(ControlPlaneStatus {
            host: cp.name.clone(),
            etcd: etcd.into(),
            certificate_warning: nearest.as_ref().is_some_and(CertificateExpiry::warn),
            nearest_certificate: nearest,
        });
    }
    status
}

/// A load balancer's HAProxy backends and VIP, asked now in one command (what `verify`
/// polls during its drills).
pub async fn load_balancer(
    c: &Connected,
    lb: &Host,
    problems: &mut Vec<String>,
) -> LoadBalancerStatus {
    let asked = c
        .remote(&lb.name)
        .sh(&crate::facts::load_balancer_queries(&c.cluster))
        .await;
    match asked {
        Ok(out) => load_balancer_status(lb, &crate::facts::parse(&out.stdout), problems),
        Err(e) => {
            problems.push(e.to_string());
            LoadBalancerStatus {
                host: lb.name.clone(),
                holds_vip: None,
                backends: Vec::new(),
            }
        }
    }
}

/// A load balancer's HAProxy backends and VIP from its facts.
pub fn load_balancer_status(
    lb: &Host,
    facts: &HostFacts,
    problems: &mut Vec<String>,
) -> LoadBalancerStatus {
    let (backends, holds_vip) = match &facts.load_balancer {
        Some(f) => (
            match &f.stats {
                Ok(csv) => backend_states(csv),
                Err(why) => {
                    problems.push(format!(
                        "{}: HAProxy statistics unavailable: {why}",
                        lb.name
                    ));
                    Vec::new()
                }
            },
            f.holds_vip,
        ),
        None => {
            problems.push(format!("{}: reported no HAProxy statistics", lb.name));
            (Vec::new(), None)
        }
    };
    LoadBalancerStatus {
        host: lb.name.clone(),
        holds_vip,
        backends,
    }
}

/// The apiserver backends and their states from HAProxy's CSV statistics.
pub fn backend_states(csv: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&haproxy::BACKEND))
        .filter(|f| !matches!(f.get(sv), Some(&"FRONTEND") | Some(&"BACKEND") | None))
        .filter_map(|f| Some((f.get(sv)?.to_string(), f.get(st)?.to_string())))
        .collect()
}

pub fn text(s: &Status) -> String {
    let mut out = String::new();
    let mixed = s
        .nodes
        .iter()
        .any(|n| Some(&n.kubelet_version) != s.control_plane_version.as_ref());
    match (&s.control_plane_version, mixed) {
        (Some(v), true) => {
            let _ = writeln!(out, "NODES (control plane {v}; kubelet versions mixed)");
        }
        _ => {
            let _ = writeln!(out, "NODES");
        }
    }
    for n in &s.nodes {
        let state = if n.ready { "Ready" } else { "NotReady" };
        let _ = write!(out, "  {:<24} {state:<9} {}", n.name, n.kubelet_version);
        if n.cordoned {
            let _ = write!(out, "  cordoned");
        }
        if !n.detail.is_empty() {
            let _ = write!(out, "  {}", n.detail);
        }
        let _ = writeln!(out);
    }
    match &s.quorum {
        Some(q) => {
            let _ = writeln!(
                out,
                "ETCD MEMBERS ({}, as {} sees them)",
                s.etcd.len(),
                q.seen_from
            );
        }
        None => {
            let _ = writeln!(out, "ETCD MEMBERS (no control plane's etcd answered)");
        }
    }
    for m in &s.etcd {
        let mut health = if m.healthy { "healthy" } else { "UNHEALTHY" }.to_string();
        if m.leader {
            health.push_str("  leader");
        }
        if m.learner {
            health.push_str("  learner");
        }
        let _ = writeln!(out, "  {:<24} {:<28} {health}", m.name, m.peer_url);
    }
    if let Some(q) = &s.quorum {
        let verdict = if q.healthy < q.quorum {
            format!(
                "QUORUM LOST ({} needed): the cluster cannot change anything",
                q.quorum
            )
        } else {
            format!("can lose {} control plane(s) now", q.fault_tolerance)
        };
        let _ = writeln!(
            out,
            "  {}/{} voting members healthy: {verdict}",
            q.healthy, q.members
        );
    }
    let _ = writeln!(out, "CONTROL PLANES");
    for cp in &s.control_planes {
        let certificate = match &cp.nearest_certificate {
            None => "no certificates yet".to_string(),
            Some(c) if cp.certificate_warning => {
                format!("WARNING {}: run `kubeha certs renew`", c.describe())
            }
            Some(c) => format!("first to expire: {}", c.describe()),
        };
        let _ = writeln!(out, "  {:<24} etcd {:<14} {certificate}", cp.host, cp.etcd);
    }
    let _ = writeln!(out, "LOAD BALANCERS");
    for lb in &s.load_balancers {
        let vip = match lb.holds_vip {
            Some(true) => "  (holds the VIP)",
            _ => "",
        };
        let _ = writeln!(out, "  {}{vip}", lb.host);
        for (name, state) in &lb.backends {
            let _ = writeln!(out, "    {name:<22} {state}");
        }
    }
    for p in &s.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_haproxy_backend_states() {
        let csv = "# pxname,svname,qcur,status,weight\nkube-apiserver,FRONTEND,,OPEN,\nkube-apiserver,cp-1,0,UP,1\nkube-apiserver,cp-2,0,DOWN,1\nkube-apiserver,BACKEND,0,UP,2\nstats,FRONTEND,,OPEN,\n";
        assert_eq!(
            backend_states(csv),
            [
                ("cp-1".to_string(), "UP".to_string()),
                ("cp-2".to_string(), "DOWN".to_string())
            ]
        );
        assert!(backend_states("").is_empty());
    }

    /// The seed's control planes, each with etcd as `members`/`health` say (192.0.2.10-12).
    fn seed_with_etcd(health: &str) -> (Cluster, BTreeMap<String, HostFacts>) {
        let cluster = crate::render::test_support::seed();
        let members = r#"{"members":[
            {"ID":1,"name":"k8s-master-1","peerURLs":["https://192.0.2.10:2380"],"clientURLs":["https://192.0.2.10:2379"]},
            {"ID":2,"name":"k8s-master-2","peerURLs":["https://192.0.2.11:2380"],"clientURLs":["https://192.0.2.11:2379"]},
            {"ID":3,"peerURLs":["https://192.0.2.12:2380"]}]}"#;
        let mut facts: BTreeMap<String, HostFacts> = cluster
            .hosts
            .iter()
            .map(|h| (h.name.clone(), HostFacts::default()))
            .collect();
        for cp in cluster.control_planes() {
            facts.get_mut(&cp.name).unwrap().etcd =
                crate::facts::cluster::parse_etcd(members, health, "");
        }
        (cluster, facts)
    }

    #[test]
    fn etcd_and_its_quorum_come_from_the_facts_of_a_healthy_member() {
        let health = r#"[{"endpoint":"https://192.0.2.10:2379","health":false},
            {"endpoint":"https://192.0.2.11:2379","health":true}]"#;
        let (cluster, mut facts) = seed_with_etcd(health);
        // k8s-master-1's own member is unhealthy: k8s-master-2's view is the one shown.
        facts
            .get_mut("k8s-master-1")
            .unwrap()
            .etcd
            .as_mut()
            .unwrap()
            .members
            .pop();
        let s = summarize(&cluster, &facts, None);
        let q = s.quorum.as_ref().unwrap();
        assert_eq!(q.seen_from, "k8s-master-2");
        assert_eq!((q.healthy, q.members, q.fault_tolerance), (1, 3, 0));
        assert_eq!(s.etcd.len(), 3);
        assert_eq!(s.etcd[2].name, "(not started)");
        let etcd: Vec<&str> = s.control_planes.iter().map(|c| c.etcd.as_str()).collect();
        assert_eq!(etcd, ["unhealthy", "healthy", "never started"]);
        assert!(text(&s).contains("1/3 voting members healthy: QUORUM LOST (2 needed)"));
        // No etcd answered anywhere: nothing is claimed.
        let (cluster, mut facts) = seed_with_etcd("");
        for f in facts.values_mut() {
            f.etcd = None;
        }
        let s = summarize(&cluster, &facts, None);
        assert!(s.quorum.is_none() && s.etcd.is_empty());
        assert!(s.control_planes.iter().all(|c| c.etcd == "unknown"));
        assert!(text(&s).contains("no control plane's etcd answered"));
    }

    #[test]
    fn nodes_the_spec_names_but_the_api_lacks_are_problems() {
        let (cluster, facts) = seed_with_etcd("");
        let state = ClusterState {
            nodes: BTreeMap::from([(
                "k8s-master-1".to_string(),
                crate::facts::cluster::NodeState::default(),
            )]),
            ..Default::default()
        };
        let s = summarize(&cluster, &facts, Some(&state));
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(
            s.nodes[0].detail,
            "the kubelet has not reported a Ready condition"
        );
        assert_eq!(s.problems.len(), 4, "{:?}", s.problems);
        assert_eq!(s.problems[0], "k8s-master-2: not registered with the API");
    }
}
