//! `kubeha status`: nodes, etcd, load-balancer backends, the VIP and certificate expiry.

use std::fmt::Write as _;

use serde::Serialize;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::{steps, Connected, Survey};
use crate::quote::shell as quote;
use crate::render::haproxy;
use crate::spec::Host;

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
    pub etcd: Vec<EtcdMember>,
    pub load_balancers: Vec<LoadBalancerStatus>,
    pub certificates: Vec<Certificate>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    pub detail: String,
    /// The version its kubelet reports.
    pub kubelet_version: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMember {
    pub name: String,
    pub peer_url: String,
    pub healthy: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancerStatus {
    pub host: String,
    /// Whether this host holds the virtual IP (`None` without one).
    pub holds_vip: Option<bool>,
    pub backends: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub host: String,
    pub file: String,
    pub subject: String,
    pub not_after: String,
}

/// Certificates whose expiry matters to operators (leaf certificates last a year).
const CERTIFICATES: [&str; 5] = [
    "ca.crt",
    "apiserver.crt",
    "apiserver-kubelet-client.crt",
    "front-proxy-client.crt",
    "etcd/server.crt",
];

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let status = block_on(args.remote.session(ui, loaded, async |connected| {
        let survey = connected.survey().await.map_err(runtime)?;
        gather(connected, &survey).await
    }))?;
    ui.print(&status, || text(&status));
    Ok(())
}

pub async fn gather(c: &Connected, survey: &Survey) -> Result<Status, Failure> {
    let mut status = Status {
        control_plane_version: survey
            .cluster_state
            .as_ref()
            .and_then(|s| s.kubeadm_config.as_ref())
            .map(|c| c.kubernetes_version.clone()),
        ..Status::default()
    };
    match &survey.kubeconfig {
        None => status
            .problems
            .push("no control plane is initialised yet".into()),
        Some(k) => {
            match async { crate::api::node_readiness(&crate::api::client(k).await?).await }.await {
                Ok(nodes) => {
                    let state = survey.cluster_state.as_ref();
                    for (name, ready) in nodes {
                        let kubelet_version = state
                            .and_then(|s| s.nodes.get(&name))
                            .map(|n| n.kubelet_version.clone())
                            .unwrap_or_default();
                        status.nodes.push(NodeStatus {
                            name,
                            ready: ready.is_ok(),
                            detail: ready.err().unwrap_or_default(),
                            kubelet_version,
                        });
                    }
                }
                Err(e) => status.problems.push(e.to_string()),
            }
        }
    }
    let joined_cp = c
        .cluster
        .control_planes()
        .find(|h| crate::plan::joined(h, &survey.facts[&h.name]));
    if let Some(cp) = joined_cp {
        let remote = c.remote(&cp.name);
        let members = remote.sh(&steps::etcdctl("member list -w json")).await;
        let health = remote
            .sh(&steps::etcdctl("endpoint health --cluster -w json"))
            .await;
        match (members, health) {
            (Ok(m), Ok(h)) => status.etcd = etcd_members(&m.stdout, &h.stdout),
            (Err(e), _) | (_, Err(e)) => status.problems.push(e.to_string()),
        }
        for cp in c
            .cluster
            .control_planes()
            .filter(|h| crate::plan::joined(h, &survey.facts[&h.name]))
        {
            certificates(c, cp, &mut status).await;
        }
    }
    for lb in c.cluster.load_balancers() {
        status
            .load_balancers
            .push(load_balancer(c, lb, &mut status.problems).await);
    }
    Ok(status)
}

async fn certificates(c: &Connected, cp: &Host, status: &mut Status) {
    for file in CERTIFICATES {
        let path = format!("/etc/kubernetes/pki/{file}");
        match c.remote(&cp.name).read_file(&path).await {
            Ok(Some(pem)) => match crate::pki::expiry(&String::from_utf8_lossy(&pem)) {
                Ok((subject, not_after)) => status.certificates.push(Certificate {
                    host: cp.name.clone(),
                    file: path,
                    subject,
                    not_after,
                }),
                Err(e) => status.problems.push(format!("{}: {path}: {e}", cp.name)),
            },
            Ok(None) => status
                .problems
                .push(format!("{}: {path} is missing", cp.name)),
            Err(e) => status.problems.push(e.to_string()),
        }
    }
}

pub async fn load_balancer(
    c: &Connected,
    lb: &Host,
    problems: &mut Vec<String>,
) -> LoadBalancerStatus {
    let remote = c.remote(&lb.name);
    let stats = remote
        .sh(&format!(
            "curl -fsS --max-time 5 {}",
            quote(&format!(
                "http://{}{};csv",
                haproxy::STATS_ADDRESS,
                haproxy::STATS_PATH
            ))
        ))
        .await;
    let backends = match stats {
        Ok(out) if out.success() => backend_states(&out.stdout),
        Ok(out) => {
            problems.push(format!(
                "{}: HAProxy statistics unavailable: {}",
                lb.name,
                out.stderr.trim()
            ));
            Vec::new()
        }
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    let holds_vip = match &c.cluster.load_balancer.virtual_ip {
        None => None,
        Some(vip) => remote
            .sh(&format!(
                "ip -o addr show | grep -qw {}",
                quote(&vip.address.to_string())
            ))
            .await
            .ok()
            .map(|o| o.success()),
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

/// Members from `member list -w json`, health from `endpoint health --cluster -w json`.
pub fn etcd_members(members: &str, health: &str) -> Vec<EtcdMember> {
    let members: serde_json::Value = serde_json::from_str(members).unwrap_or_default();
    let health: serde_json::Value = serde_json::from_str(health).unwrap_or_default();
    let healthy = |client_urls: &serde_json::Value| -> Option<bool> {
        let urls: Vec<&str> = client_urls
            .as_array()?
            .iter()
            .filter_map(|u| u.as_str())
            .collect();
        health
            .as_array()?
            .iter()
            .find(|h| h["endpoint"].as_str().is_some_and(|e| urls.contains(&e)))
            .and_then(|h| h["health"].as_bool())
    };
    members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| EtcdMember {
            name: m["name"].as_str().unwrap_or("(not started)").to_string(),
            peer_url: m["peerURLs"][0].as_str().unwrap_or_default().to_string(),
            healthy: healthy(&m["clientURLs"]),
        })
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
        let state = if n.ready {
            "Ready".to_string()
        } else {
            format!("NotReady  {}", n.detail)
        };
        let _ = writeln!(out, "  {:<24} {:<9} {state}", n.name, n.kubelet_version);
    }
    let _ = writeln!(out, "ETCD MEMBERS ({})", s.etcd.len());
    for m in &s.etcd {
        let health = match m.healthy {
            Some(true) => "healthy",
            Some(false) => "UNHEALTHY",
            None => "unknown",
        };
        let _ = writeln!(out, "  {:<24} {:<28} {health}", m.name, m.peer_url);
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
    let _ = writeln!(out, "CERTIFICATES");
    for c in &s.certificates {
        let _ = writeln!(
            out,
            "  {:<16} {:<44} expires {}",
            c.host, c.file, c.not_after
        );
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

    #[test]
    fn joins_etcd_members_with_their_health() {
        let members = r#"{"members":[{"ID":1,"name":"cp-1","peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]},
            {"ID":2,"peerURLs":["https://10.0.0.12:2380"]}]}"#;
        let health = r#"[{"endpoint":"https://10.0.0.11:2379","health":true}]"#;
        assert_eq!(
            etcd_members(members, health),
            [
                EtcdMember {
                    name: "cp-1".into(),
                    peer_url: "https://10.0.0.11:2380".into(),
                    healthy: Some(true)
                },
                EtcdMember {
                    name: "(not started)".into(),
                    peer_url: "https://10.0.0.12:2380".into(),
                    healthy: None
                },
            ]
        );
    }
}
