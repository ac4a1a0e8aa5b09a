//! The imperative half of a Kubernetes upgrade: the checks its survey adds (the version
//! each apiserver manifest runs, what the target repository offers, certificate expiry,
//! the load balancers' backends) and the executor of the upgrade phases, node by node
//! under an API probe through the endpoint. What runs where is the plan's decision
//! (`plan::upgrade`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use super::{steps, ApplyError, Connected, Survey, Timings, CLUSTER_STEPS};
use crate::api;
use crate::plan::upgrade::{policy_versions, UpgradeFacts, PACKAGES};
use crate::plan::{Action, Phase, Plan, Step};
use crate::probe::Probe;
use crate::quote::shell as quote;
use crate::render::haproxy;
use crate::spec::Host;
use crate::verify::ApiAvailability;
use crate::wait::{self, Check};

/// How long a control plane may take to serve its API and etcd after `kubeadm upgrade`.
const HEALTHY_WITHIN: Duration = Duration::from_secs(180);
/// How long requests already on an apiserver taken out of rotation get to finish.
const SESSIONS_FINISH_WITHIN: Duration = Duration::from_secs(1);
/// How long the load balancers may take to see an apiserver back.
const BACKEND_UP_WITHIN: Duration = Duration::from_secs(60);

/// The upgrade's own facts; nothing on any host changes (the repository is asked through
/// a temporary apt state that is removed again).
pub async fn gather(c: &Connected, survey: &Survey) -> Result<UpgradeFacts, ApplyError> {
    let cluster = &c.cluster;
    let deb = cluster.kubernetes.version.deb_version();
    let mut facts = UpgradeFacts {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        ..Default::default()
    };
    for h in cluster.control_planes() {
        let out = c
            .remote(&h.name)
            .sh("grep -o 'kube-apiserver:v[0-9][0-9.]*' /etc/kubernetes/manifests/kube-apiserver.yaml 2>/dev/null | head -n 1")
            .await?;
        if let Some((_, version)) = out.stdout.trim().split_once(':') {
            facts
                .apiserver_manifests
                .insert(h.name.clone(), version.to_string());
        }
    }
    // Nodes whose packages still have to move ask the target repository for them.
    let checks = cluster
        .kube_nodes()
        .filter(|h| {
            PACKAGES
                .iter()
                .any(|p| survey.facts[&h.name].packages.get(*p) != Some(&deb))
        })
        .map(|h| async move {
            let sources: Vec<String> = survey.desired[&h.name]
                .iter()
                .filter(|d| d.file.path.starts_with("/etc/apt/sources.list.d/"))
                .map(|d| String::from_utf8_lossy(&d.bytes).into_owned())
                .collect();
            let out = c
                .remote(&h.name)
                .sh(&policy_script(&sources.concat()))
                .await;
            (h.name.clone(), out)
        });
    for (host, out) in join_all(checks).await {
        match out {
            Ok(out) if out.success() => {
                facts.available.insert(host, policy_versions(&out.stdout));
            }
            Ok(out) => {
                let last = out.stderr.lines().last().unwrap_or_default().to_string();
                facts.repository_problems.insert(host, last);
            }
            Err(e) => {
                facts.repository_problems.insert(host, e.to_string());
            }
        }
    }
    let (expiries, _) = crate::dr::certs::check(c, survey).await?;
    facts.certificates = expiries
        .into_iter()
        .map(|e| (e.host, e.file, e.not_after))
        .collect();
    for lb in cluster.load_balancers() {
        if let Ok(out) = c.remote(&lb.name).sh(&haproxy::stats_command()).await {
            let states: BTreeMap<String, String> = crate::cli::status::backend_states(&out.stdout)
                .into_iter()
                .collect();
            facts.backends.insert(lb.name.clone(), states);
        }
    }
    Ok(facts)
}

/// `apt-cache policy` of the Kubernetes packages against `sources` (the target's apt
/// source lines) alone, in a temporary apt state: the host's own lists stay as they are.
fn policy_script(sources: &str) -> String {
    let opts = "-o Dir::Etc::SourceList=\"$d/sources.list\" -o Dir::Etc::SourceParts=\"$d/parts\" \
                -o Dir::State::Lists=\"$d/lists\" -o Dir::Cache=\"$d/cache\"";
    format!(
        "set -e\nd=$(mktemp -d)\ntrap 'rm -rf \"$d\"' EXIT\nchmod 755 \"$d\"\n\
         mkdir -p \"$d/parts\" \"$d/lists/partial\" \"$d/cache/archives/partial\"\n\
         printf '%s' {} >\"$d/sources.list\"\n\
         apt-get -q {opts} update >/dev/null\n\
         LC_ALL=C apt-cache {opts} policy {}",
        quote(sources),
        PACKAGES.join(" ")
    )
}

/// The upgrade phases of one run: the API client and probe, and what the run measured.
pub struct Run<'a> {
    survey: &'a Survey,
    client: Option<kube::Client>,
    probe: Option<Probe>,
    nodes: Vec<(String, f64)>,
    backup: Option<PathBuf>,
}

impl<'a> Run<'a> {
    /// Starts probing the API through the endpoint when the plan upgrades anything.
    pub async fn start(plan: &Plan, survey: &'a Survey) -> Result<Run<'a>, ApplyError> {
        let upgrading = plan.steps.iter().any(|s| s.phase.upgrade());
        let client = match (&survey.kubeconfig, upgrading) {
            (Some(k), true) => Some(api::client(k).await?),
            _ => None,
        };
        let probe = client.as_ref().map(Probe::start);
        Ok(Run {
            survey,
            client,
            probe,
            nodes: Vec::new(),
            backup: None,
        })
    }

    /// Stops the probe and adds what the run measured to its outcome (to the error too,
    /// when it failed).
    pub async fn finish(self, result: Result<Timings, ApplyError>) -> Result<Timings, ApplyError> {
        let availability = match self.probe {
            Some(p) => Some(ApiAvailability::from_samples(&p.finish().await)),
            None => None,
        };
        match result {
            Ok(mut t) => {
                t.nodes = self.nodes;
                t.availability = availability;
                t.backup = self.backup;
                Ok(t)
            }
            Err(e) => {
                let mut notes = Vec::new();
                if let Some(a) = availability {
                    notes.push(format!("API availability during this run: {a}"));
                }
                if let Some(b) = self.backup {
                    notes.push(format!("etcd backup taken first: {}", b.display()));
                }
                if notes.is_empty() {
                    return Err(e);
                }
                Err(ApplyError::Local(format!("{e}\n{}", notes.join("\n"))))
            }
        }
    }

    /// Runs one upgrade phase: nodes one at a time (workers batch by batch, the nodes of
    /// a batch side by side), each started only while the API's longest outage so far
    /// is within `availability.maxApiOutage`.
    pub async fn phase(
        &mut self,
        c: &Connected,
        plan: &Plan,
        phase: Phase,
        steps: &[&Step],
    ) -> Result<(), ApplyError> {
        if phase == Phase::Backup {
            let (path, archive, bytes) =
                crate::dr::save_backup(c, self.survey, &c.options.backup_dir).await?;
            c.progress.info(&format!(
                "etcd backup (revision {}, {bytes} bytes) written to {}",
                archive.manifest.about.snapshot.revision,
                path.display()
            ));
            self.backup = Some(path);
            return Ok(());
        }
        let groups: Vec<Vec<String>> = if phase == Phase::UpgradeWorkers {
            plan.batches.clone()
        } else {
            let mut hosts: Vec<String> = Vec::new();
            for s in steps {
                let host = s.host.clone().unwrap_or_default();
                if hosts.last() != Some(&host) {
                    hosts.push(host);
                }
            }
            hosts.into_iter().map(|h| vec![h]).collect()
        };
        for group in groups {
            self.guard(c, &group.join(", ")).await?;
            let this = &*self;
            let runs = group.iter().map(|host| async move {
                let started = Instant::now();
                for step in steps.iter().filter(|s| s.host.as_deref() == Some(host)) {
                    this.step(c, step).await?;
                }
                Ok::<_, ApplyError>((host.clone(), started.elapsed().as_secs_f64()))
            });
            let mut errors = Vec::new();
            for r in join_all(runs).await {
                match r {
                    Ok(timing) => self.nodes.push(timing),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !errors.is_empty() {
                return Err(ApplyError::Local(errors.join("\n")));
            }
        }
        Ok(())
    }

    /// Refuses to start on `next` once the API was out for longer than the spec allows.
    async fn guard(&self, c: &Connected, next: &str) -> Result<(), ApplyError> {
        let Some(probe) = &self.probe else {
            return Ok(());
        };
        let limit = c.cluster.availability.max_api_outage;
        let gap = probe.longest_outage().await;
        if gap > limit {
            return Err(ApplyError::Local(format!(
                "the API did not answer through the endpoint for {:.1}s, more than \
                 `availability.maxApiOutage` ({:.1}s): stopping before {next}. Find the cause \
                 (`kubeha status`), then run the upgrade again: it continues where it stopped",
                gap.as_secs_f64(),
                limit.as_secs_f64()
            )));
        }
        Ok(())
    }

    async fn step(&self, c: &Connected, step: &Step) -> Result<(), ApplyError> {
        let host = step.host.as_deref().unwrap_or(CLUSTER_STEPS);
        let label = &step.description;
        c.progress.started(host, label);
        let started = Instant::now();
        let result = self.act(c, host, step).await;
        match &result {
            Ok(()) => c
                .progress
                .done(host, label, started.elapsed().as_secs_f64()),
            Err(e) => c.progress.failed(host, &e.to_string()),
        }
        result
    }

    fn client(&self) -> Result<&kube::Client, ApplyError> {
        self.client.as_ref().ok_or_else(|| {
            ApplyError::Local("no admin kubeconfig: the upgrade needs the Kubernetes API".into())
        })
    }

    async fn act(&self, c: &Connected, host: &str, step: &Step) -> Result<(), ApplyError> {
        let label = &step.description;
        let spec_host = || -> &Host {
            c.cluster
                .hosts
                .iter()
                .find(|h| h.name == host)
                .expect("steps name hosts of the spec")
        };
        match &step.action {
            Action::UpgradePackages { .. }
            | Action::KubeadmUpgradeNode {
                control_plane: false,
                ..
            } => {
                let script = steps::script(&step.action).expect("upgrade actions have scripts");
                c.remote(host)
                    .run_for(label, &script, c.options.kubeadm_timeout)
                    .await?;
            }
            Action::KubeadmUpgradeApply { load_balancers, .. }
            | Action::KubeadmUpgradeNode {
                control_plane: true,
                load_balancers,
            } => {
                // Out of rotation first: kubeadm restarts this apiserver, and requests the
                // load balancers sent it meanwhile would fail.
                out_of_rotation(c, load_balancers, host).await?;
                let script = steps::script(&step.action).expect("upgrade actions have scripts");
                c.remote(host)
                    .run_for(label, &script, c.options.kubeadm_timeout)
                    .await?;
                back_in_rotation(c, load_balancers, spec_host()).await?;
            }
            Action::EnableBackend { load_balancers } => {
                back_in_rotation(c, load_balancers, spec_host()).await?;
            }
            Action::Drain { node } => {
                let client = self.client()?;
                mark_cordoned(client, node, true).await?;
                let drained = api::drain(client, node, c.options.ready_timeout, false).await?;
                c.progress
                    .info(&format!("{node}: {} pod(s) evicted", drained.evicted.len()));
            }
            Action::WaitNodeVersion { node, version } => {
                wait_node_version(self.client()?, node, version, c.options.ready_timeout).await?;
            }
            Action::Uncordon { node } => mark_cordoned(self.client()?, node, false).await?,
            other => unreachable!("not an upgrade action: {other}"),
        }
        Ok(())
    }
}

/// Waits until `host`'s own etcd member and apiserver are healthy, puts it back into
/// every load balancer's rotation and waits until they all see it UP.
async fn back_in_rotation(c: &Connected, lbs: &[String], host: &Host) -> Result<(), ApplyError> {
    crate::dr::wait_healthy(
        c.remote(&host.name),
        host,
        HEALTHY_WITHIN,
        "kubeadm upgrade",
    )
    .await?;
    super::rotation::put_in(c, lbs, &host.name, BACKEND_UP_WITHIN).await
}

/// Takes `server` out of rotation on every load balancer (see [`super::rotation`]):
/// short requests already on it get `SESSIONS_FINISH_WITHIN` to finish.
pub(crate) async fn out_of_rotation(
    c: &Connected,
    lbs: &[String],
    server: &str,
) -> Result<(), ApplyError> {
    super::rotation::take_out(c, lbs, server, SESSIONS_FINISH_WITHIN).await
}

/// Cordons a Node with kubeha's mark, or uncordons it and removes the mark.
async fn mark_cordoned(client: &kube::Client, node: &str, cordon: bool) -> Result<(), ApplyError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mark = cordon.then_some("true");
    let patch = serde_json::json!({
        "metadata": {"annotations": {api::CORDONED_ANNOTATION: mark}},
        "spec": {"unschedulable": cordon},
    });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| ApplyError::Local(format!("cannot (un)cordon node {node}: {e}")))
}

/// Waits until the Node is Ready and its kubelet reports `version`.
async fn wait_node_version(
    client: &kube::Client,
    node: &str,
    version: &str,
    timeout: Duration,
) -> Result<(), ApplyError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let look = || async {
        let seen = nodes
            .get_opt(node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.status);
        let ready = seen
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let reported = seen
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version)
            .unwrap_or_default();
        Ok(if ready && reported == version {
            Check::Done(())
        } else {
            Check::NotYet(format!("Ready: {ready}, kubelet {reported}"))
        })
    };
    wait::until(timeout, Duration::from_secs(1), look, |why| {
        ApplyError::Local(format!(
            "{node}: not Ready with kubelet {version} after {}s ({why})",
            timeout.as_secs()
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_check_is_valid_sh_and_quotes_the_sources() {
        let hostile =
            "deb [signed-by=/k.gpg] http://m/debian kubeha main\n'; touch /tmp/pwned; '\n";
        let script = policy_script(hostile);
        crate::dr::assert_valid_sh(&script);
        assert!(
            script.contains("policy kubeadm kubelet kubectl"),
            "{script}"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s' {}", quote(hostile))])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
    }
}
