//! Day-two membership: runs a removal `plan::membership` planned, step by step, with
//! the API probed through the endpoint while a control plane changes. Which step runs,
//! on which host and in which order is the plan's decision; this module decides nothing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::api;
use crate::apply::{self, steps, ApplyError, Connected, Survey, CLUSTER_STEPS};
use crate::dr;
use crate::plan::membership::{Removal, RemoveStep};
use crate::plan::Action;
use crate::probe::Probe;
use crate::quote::shell as quote;
use crate::render::haproxy;
use crate::verify::ApiAvailability;

/// One step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepDone {
    pub step: String,
    pub seconds: f64,
}

/// What a removal did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub node: String,
    pub steps: Vec<StepDone>,
    /// The backup taken before etcd changed.
    pub backup: Option<PathBuf>,
    /// Pods the drain evicted, and those it deleted (unreachable node).
    pub evicted: Vec<String>,
    pub deleted: Vec<String>,
    /// The API as users had it through the endpoint during a control plane's removal.
    pub availability: Option<ApiAvailability>,
    pub seconds: f64,
}

/// Runs `removal`'s steps in order; the first failure stops it (a re-run plans from
/// what is left: every step is skipped or harmless once done). A control plane's
/// removal is probed from `probe` (one started earlier, for an operation that began
/// before the removal), else from a probe of its own.
pub async fn remove(
    c: &Connected,
    survey: &Survey,
    removal: &Removal,
    backups: &Path,
    probe: Option<Probe>,
) -> Result<Removed, ApplyError> {
    let started = Instant::now();
    let kubeconfig = survey.kubeconfig.as_deref().ok_or_else(|| {
        ApplyError::Local(
            "no control plane reached has an admin kubeconfig: the cluster's API cannot be asked"
                .into(),
        )
    })?;
    let client = api::client(kubeconfig).await?;
    // A client of its own, as a user's would be, so the probe measures the endpoint and
    // not the connections the removal's own requests keep open.
    let probe = match (probe, removal.control_plane) {
        (Some(p), _) => Some(p),
        (None, true) => Some(Probe::start(&api::client(kubeconfig).await?)),
        (None, false) => None,
    };
    let mut done = Removed {
        node: removal.node.clone(),
        steps: Vec::new(),
        backup: None,
        evicted: Vec::new(),
        deleted: Vec::new(),
        availability: None,
        seconds: 0.0,
    };
    let result = run_steps(c, survey, removal, backups, &client, &mut done).await;
    if let Some(probe) = probe {
        done.availability = Some(ApiAvailability::from_samples(&probe.finish().await));
    }
    done.seconds = started.elapsed().as_secs_f64();
    result.map(|()| done)
}

async fn run_steps(
    c: &Connected,
    survey: &Survey,
    removal: &Removal,
    backups: &Path,
    client: &kube::Client,
    done: &mut Removed,
) -> Result<(), ApplyError> {
    for step in &removal.steps {
        let label = step.to_string();
        let host = match step {
            RemoveStep::UpdateLoadBalancer { host, .. }
            | RemoveStep::StopApiserver { host, .. }
            | RemoveStep::MoveEtcdLeader { host, .. }
            | RemoveStep::Reset { host } => host.as_str(),
            RemoveStep::RemoveEtcdMember { through, .. } => through.as_str(),
            _ => CLUSTER_STEPS,
        };
        c.progress.started(host, &label);
        let began = Instant::now();
        let result = run_step(c, survey, step, backups, client, done).await;
        match &result {
            Ok(()) => c.progress.done(host, &label, began.elapsed().as_secs_f64()),
            Err(e) => c.progress.failed(host, &e.to_string()),
        }
        result?;
        done.steps.push(StepDone {
            step: label,
            seconds: began.elapsed().as_secs_f64(),
        });
    }
    Ok(())
}

async fn run_step(
    c: &Connected,
    survey: &Survey,
    step: &RemoveStep,
    backups: &Path,
    client: &kube::Client,
    done: &mut Removed,
) -> Result<(), ApplyError> {
    match step {
        RemoveStep::Cordon { node } => api::cordon(client, node, true).await?,
        RemoveStep::Drain {
            node,
            timeout_seconds,
            force_delete,
        } => {
            let timeout = std::time::Duration::from_secs(*timeout_seconds);
            let drained = api::drain(client, node, timeout, *force_delete).await?;
            done.evicted = drained.evicted;
            done.deleted = drained.deleted;
        }
        RemoveStep::Backup => {
            let (path, _, _) = dr::save_backup(c, survey, backups).await?;
            c.progress
                .info(&format!("backup written to {}", path.display()));
            done.backup = Some(path);
        }
        RemoveStep::UpdateLoadBalancer { host, config, .. } => {
            let remote = c.remote(host);
            remote
                .write_file(haproxy::PATH, config.as_bytes(), 0o644)
                .await?;
            let reload = Action::Restart {
                service: "haproxy".into(),
                reload: true,
            };
            let script = steps::script(&reload).expect("a reload is a command");
            remote.run("cannot reload haproxy", &script).await?;
        }
        RemoveStep::OutOfRotation {
            server,
            load_balancers,
        } => apply::upgrade::out_of_rotation(c, load_balancers, server).await?,
        RemoveStep::StopApiserver { host, apiserver } => {
            c.remote(host)
                .run("cannot stop the apiserver", &stop_apiserver(apiserver))
                .await?;
        }
        RemoveStep::MoveEtcdLeader { host, to_id, .. } => {
            c.remote(host)
                .run(
                    "cannot hand etcd's leadership over",
                    &steps::etcdctl(&format!("move-leader {}", crate::quote::shell(to_id))),
                )
                .await?;
        }
        RemoveStep::RemoveEtcdMember { id, through, .. } => {
            apply::remove_etcd_member(c.remote(through), id).await?
        }
        RemoveStep::Reset { host } => {
            let reset = steps::script(&Action::ResetPartialJoin).expect("a reset is a command");
            let script = format!("{reset}\nrm -f {PARKED_APISERVER}");
            c.remote(host).run("kubeadm reset failed", &script).await?;
        }
        RemoveStep::DeleteNode { node } => api::delete_node(client, node).await?,
    }
    Ok(())
}

/// Where the removed node's apiserver manifest is moved (`kubeadm reset` leaves it; the
/// reset step removes it).
const PARKED_APISERVER: &str = "/etc/kubernetes/kube-apiserver.yaml.kubeha-removed";

/// Moves the apiserver's static-pod manifest aside (the kubelet stops it, gracefully)
/// and waits, through kubeadm's admin kubeconfig, until `apiserver` refuses requests.
fn stop_apiserver(apiserver: &str) -> String {
    format!(
        "set -e
         if [ -f {MANIFEST} ]; then mv {MANIFEST} {PARKED_APISERVER}; fi
         i=0
         while kubectl --kubeconfig /etc/kubernetes/admin.conf --server {api} --request-timeout 2s get --raw /livez >/dev/null 2>&1; do
           i=$((i + 1))
           if [ \"$i\" -ge 120 ]; then echo 'the apiserver still answers 120s after its manifest was moved' >&2; exit 1; fi
           sleep 0.5
         done",
        MANIFEST = APISERVER_MANIFEST,
        api = quote(apiserver),
    )
}

const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

#[cfg(test)]
mod tests {
    #[test]
    fn the_apiserver_stop_is_valid_sh_with_its_address_quoted() {
        let script = super::stop_apiserver("https://10.0.0.1:6443");
        assert!(
            script.contains("--server https://10.0.0.1:6443 "),
            "{script}"
        );
        assert!(
            crate::apply::steps::tests::sh_syntax_ok(&script),
            "{script}"
        );
    }
}
