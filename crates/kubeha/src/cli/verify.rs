//! `kubeha verify`: proves the HA claim on the live cluster. Without `--disruptive` it
//! checks health (nodes Ready, etcd quorum, every backend up, one VIP holder). With it,
//! it stops one control plane's apiserver, and with a virtual IP the active load
//! balancer's HAProxy, while API requests keep flowing through the endpoint; it reports
//! failures, the longest outage and the detection and recovery times, restores what it
//! stopped, and fails when the spec's `availability` targets are missed.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::status::{self, Status};
use super::{load_spec, Failure, Ui};
use crate::apply::Connected;
use crate::probe::Probe;
use crate::spec::{Cluster, Host};
use crate::verify::{report, DrillReport};
use crate::wait;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Run the failover drills (they briefly stop an apiserver and, with a virtual IP,
    /// the active load balancer's HAProxy).
    #[arg(long)]
    disruptive: bool,
    /// The control plane whose apiserver the drill stops (default: the last one).
    #[arg(long)]
    control_plane: Option<String>,
}

#[derive(Debug, Serialize)]
struct Verdict {
    checks: Vec<(String, bool, String)>,
    drills: Vec<DrillReport>,
    passed: bool,
}

const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const PARKED_MANIFEST: &str = "/etc/kubernetes/kube-apiserver.yaml.kubeha-verify";

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    if let Some(name) = &args.control_plane {
        if !loaded.cluster.control_planes().any(|h| &h.name == name) {
            return Err(Failure::Invalid(format!(
                "`{name}` is not a control plane of the spec"
            )));
        }
    }
    let verdict = block_on(args.remote.session(ui, loaded, async |c| {
        tokio::select! {
            verdict = verify(c, &args) => verdict,
            _ = tokio::signal::ctrl_c() => Err(undo_drills(c).await),
        }
    }))?;
    ui.print(&verdict, || text(&verdict));
    if verdict.passed {
        Ok(())
    } else {
        Err(Failure::Runtime(
            "the cluster does not meet its availability targets".into(),
        ))
    }
}

async fn verify(c: &Connected, args: &Args) -> Result<Verdict, Failure> {
    c.progress.info("checking cluster health");
    let survey = c.survey().await.map_err(runtime)?;
    let health = status::gather(&c.cluster, &survey);
    let checks = health_checks(&c.cluster, &health);
    let healthy = checks.iter().all(|(_, ok, _)| *ok);
    let mut drills = Vec::new();
    if args.disruptive {
        if !healthy {
            return Err(Failure::Runtime(
                "refusing the failover drills: the cluster is not healthy to begin with".into(),
            ));
        }
        let kubeconfig = survey
            .kubeconfig
            .ok_or_else(|| Failure::Runtime("no control plane is initialised".into()))?;
        let client = crate::api::client(&kubeconfig)
            .await
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        let cp = match &args.control_plane {
            Some(name) => c.cluster.control_planes().find(|h| &h.name == name),
            None => c.cluster.control_planes().last(),
        }
        .expect("validated: the cluster has control planes");
        drills.push(control_plane_drill(c, &client, cp).await?);
        if c.cluster.load_balancer.virtual_ip.is_some() {
            drills.push(load_balancer_drill(c, &client).await?);
        }
    }
    let passed = healthy && drills.iter().all(|d| d.violations.is_empty());
    Ok(Verdict {
        checks,
        drills,
        passed,
    })
}

fn health_checks(cluster: &Cluster, s: &Status) -> Vec<(String, bool, String)> {
    let mut checks = Vec::new();
    let expected: Vec<&str> = cluster.kube_nodes().map(|h| h.name.as_str()).collect();
    let not_ready: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !s.nodes.iter().any(|node| node.name == *n && node.ready))
        .collect();
    checks.push((
        "every node Ready".into(),
        not_ready.is_empty(),
        if not_ready.is_empty() {
            format!("{} nodes", expected.len())
        } else {
            format!("not Ready: {}", not_ready.join(", "))
        },
    ));
    let control_planes = cluster.control_planes().count();
    let (ok, detail) = match &s.quorum {
        Some(q) => (
            q.healthy == control_planes && q.members == control_planes,
            format!(
                "{}/{} members healthy, {control_planes} control planes: can lose {} now",
                q.healthy, q.members, q.fault_tolerance
            ),
        ),
        None => (false, "no control plane's etcd answered".to_string()),
    };
    checks.push(("etcd quorum healthy".into(), ok, detail));
    for lb in &s.load_balancers {
        let down: Vec<&str> = lb
            .backends
            .iter()
            .filter(|(_, st)| st != "UP")
            .map(|(n, _)| n.as_str())
            .collect();
        checks.push((
            format!("{}: every apiserver backend up", lb.host),
            !lb.backends.is_empty() && down.is_empty(),
            if down.is_empty() {
                format!("{} up", lb.backends.len())
            } else {
                format!("down: {}", down.join(", "))
            },
        ));
    }
    if cluster.load_balancer.virtual_ip.is_some() {
        let holders: Vec<&str> = s
            .load_balancers
            .iter()
            .filter(|l| l.holds_vip == Some(true))
            .map(|l| l.host.as_str())
            .collect();
        checks.push((
            "exactly one load balancer holds the VIP".into(),
            holders.len() == 1,
            holders.join(", "),
        ));
    }
    checks
}

/// After Ctrl-C: puts back whatever a drill had stopped, on every host it may have been,
/// so an interrupted drill never leaves a control plane or a load balancer down.
async fn undo_drills(c: &Connected) -> Failure {
    let restore = format!(
        "if [ -f {PARKED_MANIFEST} ]; then mv {PARKED_MANIFEST} {APISERVER_MANIFEST}; echo restored; fi"
    );
    // Only the HAProxy drill stops HAProxy, and verify starts from a healthy cluster.
    let start =
        "systemctl is-active --quiet haproxy || { systemctl start haproxy && echo restored; }";
    let mut work: Vec<(&Host, &str, &str)> = c
        .cluster
        .control_planes()
        .map(|h| (h, "apiserver", restore.as_str()))
        .collect();
    if c.cluster.load_balancer.virtual_ip.is_some() {
        work.extend(c.cluster.load_balancers().map(|h| (h, "HAProxy", start)));
    }
    let (mut undone, mut failed) = (Vec::new(), Vec::new());
    for (host, what, script) in work {
        match c
            .remote(&host.name)
            .run(&format!("cannot restore {what}"), script)
            .await
        {
            Ok(out) if out.stdout.contains("restored") => {
                undone.push(format!("{}: {what}", host.name))
            }
            Ok(_) => {}
            Err(e) => failed.push(e.to_string()),
        }
    }
    let undone = match undone.as_slice() {
        [] => "nothing was stopped".to_string(),
        _ => format!("restarted {}", undone.join(", ")),
    };
    let failed = match failed.as_slice() {
        [] => String::new(),
        _ => format!("; could not restore: {}", failed.join("; ")),
    };
    Failure::Interrupted(format!(
        "interrupted: the drills stopped, {undone}{failed}."
    ))
}

/// Polls `check` every 250 ms; the time it took to hold, or `None` after `limit`.
async fn time_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let held = wait::held_within(limit, Duration::from_millis(250), || {
        let held = check();
        async move { Ok::<_, std::convert::Infallible>(held.await) }
    });
    match held.await {
        Ok(true) => Some(started.elapsed()),
        _ => None,
    }
}

/// The state HAProxy reports for `backend` on every load balancer.
async fn backend_states(c: &Connected, backend: &str) -> Vec<String> {
    let mut states = Vec::new();
    for lb in c.cluster.load_balancers() {
        let mut problems = Vec::new();
        let s = status::load_balancer(c, lb, &mut problems).await;
        let state = s
            .backends
            .iter()
            .find(|(n, _)| n == backend)
            .map(|(_, st)| st.clone());
        states.push(state.unwrap_or_else(|| "unknown".into()));
    }
    states
}

async fn control_plane_drill(
    c: &Connected,
    client: &kube::Client,
    cp: &Host,
) -> Result<DrillReport, Failure> {
    let remote = c.remote(&cp.name);
    let drill = format!("stop the apiserver on {}", cp.name);
    c.progress.info(&format!("drill: {drill}"));
    let probe = Probe::start(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    remote
        .run(
            "cannot stop the apiserver",
            &format!("mv {APISERVER_MANIFEST} {PARKED_MANIFEST}"),
        )
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let detect = time_until(Duration::from_secs(60), || async {
        backend_states(c, &cp.name)
            .await
            .iter()
            .all(|s| s.starts_with("DOWN"))
    })
    .await;
    // Keep the API busy while the control plane is out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restored = remote
        .run(
            "cannot restore the apiserver",
            &format!("mv {PARKED_MANIFEST} {APISERVER_MANIFEST}"),
        )
        .await;
    let recover = match restored {
        Ok(_) => {
            time_until(Duration::from_secs(180), || async {
                backend_states(c, &cp.name).await.iter().all(|s| s == "UP")
            })
            .await
        }
        Err(e) => {
            let _ = probe.finish().await;
            return Err(Failure::Runtime(format!(
                "{e}; move {PARKED_MANIFEST} back by hand"
            )));
        }
    };
    Ok(finish_drill(c, probe, &drill, detect, recover).await)
}

/// Lets the probe see the recovered cluster for a moment, then scores the drill.
async fn finish_drill(
    c: &Connected,
    probe: Probe,
    drill: &str,
    detect: Option<Duration>,
    recover: Option<Duration>,
) -> DrillReport {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = probe.finish().await;
    report(drill, &samples, detect, recover, &c.cluster.availability)
}

async fn vip_holders(c: &Connected) -> Vec<String> {
    let mut holders = Vec::new();
    for lb in c.cluster.load_balancers() {
        let mut problems = Vec::new();
        if status::load_balancer(c, lb, &mut problems).await.holds_vip == Some(true) {
            holders.push(lb.name.clone());
        }
    }
    holders
}

async fn load_balancer_drill(c: &Connected, client: &kube::Client) -> Result<DrillReport, Failure> {
    let holders = vip_holders(c).await;
    let [holder] = holders.as_slice() else {
        return Err(Failure::Runtime(format!(
            "expected one VIP holder, found {holders:?}"
        )));
    };
    let drill = format!("stop HAProxy on {holder}, the active load balancer");
    c.progress.info(&format!("drill: {drill}"));
    let remote = c.remote(holder);
    let probe = Probe::start(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    remote
        .run("cannot stop HAProxy", "systemctl stop haproxy")
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let detect = time_until(Duration::from_secs(60), || async {
        let now = vip_holders(c).await;
        now.len() == 1 && now[0] != *holder
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = remote
        .run("cannot start HAProxy again", "systemctl start haproxy")
        .await;
    if let Err(e) = restarted {
        let _ = probe.finish().await;
        return Err(Failure::Runtime(e.to_string()));
    }
    let holder_host = c
        .cluster
        .load_balancers()
        .find(|h| h.name == *holder)
        .expect("the holder is a load balancer of the spec");
    let recover = time_until(Duration::from_secs(120), || async {
        let mut problems = Vec::new();
        let lb = status::load_balancer(c, holder_host, &mut problems).await;
        let serving = !lb.backends.is_empty() && lb.backends.iter().all(|(_, s)| s == "UP");
        // The highest-priority load balancer takes the VIP back once it is healthy; the
        // drill is over when it has, so that move is measured too.
        serving && vip_holders(c).await == [holder.clone()]
    })
    .await;
    Ok(finish_drill(c, probe, &drill, detect, recover).await)
}

fn text(v: &Verdict) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (name, ok, detail) in &v.checks {
        let _ = writeln!(
            out,
            "{} {name}: {detail}",
            if *ok { "ok  " } else { "FAIL" }
        );
    }
    for d in &v.drills {
        let ms =
            |v: Option<u64>| v.map_or("never".into(), |m| format!("{:.1}s", m as f64 / 1000.0));
        let _ = writeln!(
            out,
            "drill: {}\n  requests {}  failures {}  success {:.1}%  longest outage {:.1}s  detected after {}  recovered after {}",
            d.drill,
            d.requests,
            d.failures,
            d.success_ratio * 100.0,
            d.longest_outage_ms as f64 / 1000.0,
            ms(d.detect_ms),
            ms(d.recover_ms),
        );
        for v in &d.violations {
            let _ = writeln!(out, "  FAIL {v}");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if v.passed {
            "verified: the cluster meets its availability targets"
        } else {
            "NOT verified"
        }
    );
    out
}
