//! The imperative shell around the planner: connect to every host, gather facts (and
//! the cluster's, and the Calico manifest), plan, and run exactly the plan's steps,
//! phase by phase (hosts prepared in parallel, `kubeadm init` once, control planes
//! joined one at a time with an etcd health check between joins, workers in parallel,
//! then the CNI and the cluster steps). Which step runs where is the plan's decision.

mod join;
pub mod progress;
pub mod rotation;
pub mod steps;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::api;
use crate::facts::{self, HostFacts};
use crate::plan::{self, Action, ClusterState, DesiredFile, Phase, Plan, Step};
/// Kubeconfigs hold client keys: written 0600, atomically, never through a symlink.
pub use crate::remote::write_private;
use crate::remote::{redact_shapes, Redactor, Remote, RemoteError, RunDir};
use crate::render::{self, Content, RenderInputs};
use crate::spec::{Cluster, Host, ManifestSource};

pub use progress::{Mode, Progress};

#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts worked on at once.
    pub concurrency: usize,
    /// Limit for one ordinary remote command.
    pub command_timeout: Duration,
    /// Limit for `kubeadm init`/`join`, which pull images and wait for components.
    pub kubeadm_timeout: Duration,
    /// How long to wait for every node to become Ready.
    pub ready_timeout: Duration,
    /// Per-host logs and the SSH client configuration of this run.
    pub run_dir: PathBuf,
    /// Where the admin kubeconfig is written.
    pub kubeconfig: PathBuf,
    /// Where the etcd backup an upgrade takes first is written.
    pub backup_dir: PathBuf,
}

/// Any way a run can fail; each names the host or the step.
/// Displayed with anything shaped like a secret redacted, whatever produced the text.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", join_lines(.0))]
    Remote(Vec<RemoteError>),
    #[error("{}", redact_shapes(.0))]
    Conflicts(String),
    #[error("{}", redact_shapes(&.0.to_string()))]
    Kube(#[from] api::KubeError),
    #[error("{}", redact_shapes(.0))]
    Local(String),
}

fn join_lines(errors: &[RemoteError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<RemoteError> for ApplyError {
    fn from(e: RemoteError) -> Self {
        ApplyError::Remote(vec![e])
    }
}

/// Everything learned before planning.
pub struct Survey {
    pub facts: BTreeMap<String, HostFacts>,
    pub desired: BTreeMap<String, Vec<DesiredFile>>,
    pub current: BTreeMap<(String, String), Vec<u8>>,
    pub cluster_state: Option<ClusterState>,
    /// The admin kubeconfig of an initialised control plane, when there is one.
    pub kubeconfig: Option<String>,
    /// Why the API could not be asked, when a cluster exists but did not answer.
    pub api_problem: Option<String>,
    /// The Calico manifest as read or downloaded, when Calico is not running yet.
    pub calico_manifest: Option<Result<String, String>>,
    /// Hosts the user asked to rebuild by name (see [`plan::Inputs::replace`]).
    pub replace: BTreeSet<String>,
    /// An upgrade's own checks, gathered only while an upgrade is pending.
    pub upgrade: Option<plan::upgrade::UpgradeFacts>,
    /// Workers an upgrade drains at once (`--max-unavailable`).
    pub max_unavailable: usize,
}

impl Survey {
    pub fn plan(&self, cluster: &Cluster) -> Result<Plan, Vec<plan::Conflict>> {
        plan::plan(&plan::Inputs {
            cluster,
            facts: &self.facts,
            desired: &self.desired,
            current: &self.current,
            cluster_state: self.cluster_state.as_ref(),
            calico_manifest: self.calico_manifest.as_ref(),
            replace: &self.replace,
            upgrade: self.upgrade.as_ref(),
            max_unavailable: self.max_unavailable,
        })
    }
}

/// How long each phase of a run took.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub phases: Vec<(String, f64)>,
    /// How long each node's upgrade steps took, in the order they ran.
    pub nodes: Vec<(String, f64)>,
    /// The API as a probe through the endpoint saw it while an upgrade ran.
    pub availability: Option<crate::verify::ApiAvailability>,
    /// The etcd backup taken before the upgrade changed anything.
    pub backup: Option<PathBuf>,
}

/// Open SSH connections to every host of a cluster.
pub struct Connected {
    pub cluster: Cluster,
    remotes: BTreeMap<String, Arc<Remote>>,
    pub redactor: Arc<Redactor>,
    pub progress: Arc<Progress>,
    pub options: Options,
    /// How long connecting to every host took (a reused master costs a check, a new one
    /// a key exchange and login).
    pub connect_seconds: f64,
}

/// Connects to every host (bounded concurrency), failing with every unreachable host.
pub async fn connect(
    cluster: Cluster,
    options: Options,
    progress: Arc<Progress>,
) -> Result<Connected, ApplyError> {
    let (connected, errors) = open(cluster, options, progress, &BTreeSet::new()).await?;
    if errors.is_empty() {
        return Ok(connected);
    }
    connected.close().await;
    Err(ApplyError::Remote(errors.into_values().collect()))
}

/// Connects to every host but `skip`, and keeps going without those that do not
/// answer: for the day-two commands that must plan around a dead machine (`node
/// remove`), never for `apply`. The connection covers the hosts reached (its
/// `cluster` lists only them); the others are returned with why they were not.
pub async fn connect_reachable(
    cluster: Cluster,
    options: Options,
    progress: Arc<Progress>,
    skip: &BTreeSet<String>,
) -> Result<(Connected, BTreeMap<String, String>), ApplyError> {
    let (mut connected, errors) = open(cluster, options, progress, skip).await?;
    connected
        .cluster
        .hosts
        .retain(|h| connected.remotes.contains_key(&h.name));
    let unreachable = errors
        .into_iter()
        .map(|(host, e)| (host, e.to_string()))
        .collect();
    Ok((connected, unreachable))
}

/// Opens the connections to every host but `skip`: the hosts reached, and the error of
/// each host that was not.
async fn open(
    cluster: Cluster,
    options: Options,
    progress: Arc<Progress>,
    skip: &BTreeSet<String>,
) -> Result<(Connected, BTreeMap<String, RemoteError>), ApplyError> {
    let started = Instant::now();
    let run = RunDir::create(&options.run_dir, &cluster).map_err(ApplyError::Local)?;
    let redactor = Arc::new(Redactor::default());
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let hosts: Vec<&Host> = cluster
        .hosts
        .iter()
        .filter(|h| !skip.contains(&h.name))
        .collect();
    let attempts = hosts.iter().map(|h| {
        let (cluster, run, redactor, limit, progress) = (
            &cluster,
            &run,
            redactor.clone(),
            limit.clone(),
            progress.clone(),
        );
        let timeout = options.command_timeout;
        async move {
            let _permit = limit.acquire().await.expect("semaphore open");
            progress.started(&h.name, "connecting");
            let result = Remote::connect(cluster, h, run, redactor, timeout).await;
            match &result {
                Ok(_) => progress.done(&h.name, "connected", 0.0),
                Err(e) => progress.failed(&h.name, &e.to_string()),
            }
            result
        }
    });
    let mut remotes = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (host, result) in hosts.iter().zip(join_all(attempts).await) {
        match result {
            Ok(r) => {
                remotes.insert(host.name.clone(), Arc::new(r));
            }
            Err(e) => {
                errors.insert(host.name.clone(), e);
            }
        }
    }
    Ok((
        Connected {
            cluster,
            remotes,
            redactor,
            progress,
            options,
            connect_seconds: started.elapsed().as_secs_f64(),
        },
        errors,
    ))
}

async fn close_all(remotes: impl Iterator<Item = Arc<Remote>>) {
    join_all(
        remotes
            .filter_map(|r| Arc::try_unwrap(r).ok())
            .map(Remote::close),
    )
    .await;
}

impl Connected {
    pub fn remote(&self, host: &str) -> &Arc<Remote> {
        &self.remotes[host]
    }

    /// Runs `work` on each host, at most `concurrency` at a time; collects every error.
    async fn each_host<'a, T, F, Fut>(
        &'a self,
        hosts: Vec<&'a Host>,
        work: F,
    ) -> Result<Vec<T>, ApplyError>
    where
        F: Fn(&'a Host, Arc<Remote>) -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let limit = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let runs = hosts.into_iter().map(|h| {
            let limit = limit.clone();
            let fut = work(h, self.remotes[&h.name].clone());
            async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                fut.await
            }
        });
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for r in join_all(runs).await {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(ok)
        } else {
            Err(ApplyError::Remote(errors))
        }
    }

    /// Facts, desired files, diffs' current contents and the API's view, in one pass.
    pub async fn survey(&self) -> Result<Survey, ApplyError> {
        let cluster = &self.cluster;
        let hosts: Vec<&Host> = cluster.hosts.iter().collect();
        let deadline = Instant::now() + self.options.kubeadm_timeout;
        // Planning against a kubeadm still at work would reset what it is doing, and the
        // other hosts' facts (etcd's members as a control plane sees them) would be from
        // before it finished: while any host runs kubeadm, every host is asked again.
        let (gathered, early_api) = loop {
            let early_api = std::sync::Mutex::new(None);
            let early = &early_api;
            let round = self
                .each_host(hosts.clone(), |h, remote| async move {
                    let paths = managed_paths(cluster, h);
                    let load_balancer = h
                        .has(crate::spec::Role::LoadBalancer)
                        .then(|| facts::load_balancer_queries(cluster));
                    let out = remote
                        .run_keeping_secrets(
                            "cannot gather facts",
                            &facts::script(
                                &paths,
                                h.has(crate::spec::Role::ControlPlane),
                                facts::endpoint_name(cluster),
                                load_balancer.as_deref(),
                            ),
                        )
                        .await?;
                    let facts = facts::parse(&out.stdout);
                    let admin_conf = facts::admin_kubeconfig(&out.stdout);
                    if let (Some(bytes), false) = (&admin_conf, facts.kubeadm_running) {
                        self.ask_api_early(h, &facts, bytes, early);
                    }
                    Ok((h.name.clone(), (facts, admin_conf)))
                })
                .await?;
            let busy: Vec<&str> = round
                .iter()
                .filter(|(_, (f, _))| f.kubeadm_running)
                .map(|(name, _)| name.as_str())
                .collect();
            if busy.is_empty() || Instant::now() >= deadline {
                break (round, early_api);
            }
            for host in busy {
                self.progress
                    .started(host, "waiting for a running kubeadm to finish");
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        };
        let mut admin_confs = BTreeMap::new();
        let mut facts: BTreeMap<String, HostFacts> = BTreeMap::new();
        for (host, (f, admin_conf)) in gathered {
            if let Some(bytes) = admin_conf {
                admin_confs.insert(host.clone(), bytes);
            }
            facts.insert(host, f);
        }
        let desired = desired_files(cluster, &facts).map_err(ApplyError::Local)?;
        let current = self.changed_contents(&facts, &desired).await?;
        let early = early_api.into_inner().expect("not poisoned");
        let (kubeconfig, cluster_state, api_problem) = match early {
            Some((k, asked)) => {
                let (state, problem) = match asked.await {
                    Ok(Ok(s)) => (Some(s), None),
                    Ok(Err(e)) => (None, Some(e.to_string())),
                    Err(e) => (None, Some(format!("the API query ended: {e}"))),
                };
                (Some(k), state, problem)
            }
            None => {
                let (kubeconfig, unreadable) = match self.admin_kubeconfig(&facts, admin_confs) {
                    Ok(k) => (k, None),
                    Err(e) => (None, Some(e.to_string())),
                };
                let (state, problem) = match &kubeconfig {
                    None => (None, unreadable),
                    Some(k) => match cluster_state_through(k).await {
                        Ok(s) => (Some(s), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                };
                (kubeconfig, state, problem)
            }
        };
        // kubeadm-config is one object of the cluster: the API's answer stands for every
        // control plane that could have asked it.
        let uploaded = cluster_state.as_ref().map(|s| s.kubeadm_config.is_some());
        for cp in cluster.control_planes() {
            if let Some(f) = facts.get_mut(&cp.name).filter(|f| f.kubeadm.admin_conf) {
                f.kubeadm.config_uploaded = uploaded;
            }
        }
        // Before any host changes: a manifest the pool CIDR cannot be wired into is a plan error.
        let calico_manifest = match &cluster_state {
            Some(s) if s.calico => None,
            _ => Some(self.fetch_calico_manifest().await),
        };
        Ok(Survey {
            facts,
            desired,
            current,
            cluster_state,
            kubeconfig,
            api_problem,
            calico_manifest,
            replace: BTreeSet::new(),
            upgrade: None,
            max_unavailable: 1,
        })
    }

    /// [`Connected::survey`] plus, while an upgrade is pending, the upgrade's own checks
    /// (only the commands that plan pay for them).
    pub async fn survey_to_plan(&self) -> Result<Survey, ApplyError> {
        let mut survey = self.survey().await?;
        if plan::upgrade::pending(&self.cluster, &survey.facts, survey.cluster_state.as_ref()) {
            survey.upgrade = Some(upgrade::gather(self, &survey).await?);
        }
        Ok(survey)
    }

    /// The spec's Calico manifest, read locally or downloaded by the first control plane:
    /// cluster hosts reach the internet when the operator's machine may not.
    async fn fetch_calico_manifest(&self) -> Result<String, String> {
        match &self.cluster.calico.manifest {
            ManifestSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            ManifestSource::Url(url) => {
                // A day-two command may have reached no control plane (connect_reachable).
                let Some(cp) = self.cluster.control_planes().next() else {
                    return Err("no control plane was reached to download it".into());
                };
                let remote = &self.remotes[&cp.name];
                let out = remote
                    .run("cannot download the Calico manifest", &steps::download(url))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(out.stdout)
            }
        }
    }

    /// Current bytes of every managed, non-secret file that differs, for the plan's diffs.
    async fn changed_contents(
        &self,
        facts: &BTreeMap<String, HostFacts>,
        desired: &BTreeMap<String, Vec<DesiredFile>>,
    ) -> Result<BTreeMap<(String, String), Vec<u8>>, ApplyError> {
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (host, files) in desired {
            for d in files {
                let have = facts[host].files.get(&d.file.path).cloned().flatten();
                let differs = have.is_some_and(|h| h != facts::sha256_hex(&d.bytes));
                if differs && !d.file.secret && matches!(d.file.content, Content::Text(_)) {
                    wanted.push((host.clone(), d.file.path.clone()));
                }
            }
        }
        let reads = wanted.into_iter().map(|(host, path)| {
            let remote = self.remotes[&host].clone();
            async move {
                let bytes = remote.read_file(&path).await?;
                Ok::<_, RemoteError>(bytes.map(|b| ((host, path), b)))
            }
        });
        let mut out = BTreeMap::new();
        for r in join_all(reads).await {
            if let Some((k, v)) = r? {
                out.insert(k, v);
            }
        }
        Ok(out)
    }

    /// Starts the API's questions as soon as the first control plane's facts show it
    /// joined: it is the host [`Connected::admin_kubeconfig`] would pick, so the answers
    /// arrive while slower hosts are still reporting their facts.
    fn ask_api_early(
        &self,
        host: &Host,
        facts: &HostFacts,
        admin_conf: &[u8],
        early: &std::sync::Mutex<Option<EarlyApi>>,
    ) {
        if host.name != self.cluster.first_control_plane().name || !plan::joined(host, facts) {
            return;
        }
        // An unusable kubeconfig is reported by the ordinary path, after every host's facts.
        let Ok(k) = trusted_admin_kubeconfig(&self.cluster, &host.name, admin_conf.to_vec()) else {
            return;
        };
        let asked = tokio::spawn({
            let k = k.clone();
            async move { cluster_state_through(&k).await }
        });
        *early.lock().expect("not poisoned") = Some((k, asked));
    }

    /// The admin kubeconfig of the control plane the API is asked through, from the
    /// facts' round trip (`admin_confs`: each control plane's admin.conf, untrimmed).
    fn admin_kubeconfig(
        &self,
        facts: &BTreeMap<String, HostFacts>,
        mut admin_confs: BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<String>, ApplyError> {
        // Any control plane with an admin.conf: the API must be asked even when kubeadm's
        // ConfigMap is gone (and so no control plane counts as joined).
        let cps: Vec<&Host> = self.cluster.control_planes().collect();
        let Some(host) = cps
            .iter()
            .find(|h| plan::joined(h, &facts[&h.name]))
            .or_else(|| cps.iter().find(|h| facts[&h.name].kubeadm.admin_conf))
        else {
            return Ok(None);
        };
        let bytes = admin_confs.remove(&host.name).ok_or_else(|| {
            ApplyError::Local(format!(
                "{}: {ADMIN_CONF} exists but could not be read",
                host.name
            ))
        })?;
        trusted_admin_kubeconfig(&self.cluster, &host.name, bytes).map(Some)
    }

    /// Runs the plan's steps phase by phase (secret files a killed run left are the plan's
    /// to remove, where the facts found them); join credentials a run made are revoked at
    /// the end, whether it succeeded or not (a killed run's too).
    pub async fn execute(&self, plan: &Plan, survey: &Survey) -> Result<Timings, ApplyError> {
        if plan.is_empty() {
            return Ok(Timings::default());
        }
        let mut kubeadm = join::Kubeadm::new(self, survey, plan.bootstrap.as_deref());
        let mut upgrade = upgrade::Run::start(plan, survey).await?;
        let result = self.run_plan(plan, &mut kubeadm, &mut upgrade).await;
        let result = upgrade.finish(result).await;
        // Every run that changes anything revokes kubeha's join credentials, so a token a
        // killed run minted is gone even when the run that finishes its work joins nothing.
        let revoked = kubeadm.revoke().await;
        match (result, revoked) {
            (Ok(timings), Ok(())) => Ok(timings),
            (Ok(_), Err(e)) => Err(ApplyError::Local(format!(
                "the cluster is ready, but its join credentials could not be revoked (they expire within 2 h): {e}"
            ))),
            (Err(e), revoked) => {
                if let Err(r) = revoked {
                    self.progress
                        .info(&format!("join credentials not revoked (they expire within 2 h): {r}"));
                }
                Err(e)
            }
        }
    }

    async fn run_plan(
        &self,
        plan: &Plan,
        kubeadm: &mut join::Kubeadm<'_>,
        upgrade: &mut upgrade::Run<'_>,
    ) -> Result<Timings, ApplyError> {
        let mut timings = Timings::default();
        for phase in Phase::ALL {
            let steps: Vec<&Step> = plan.phase(phase).collect();
            if steps.is_empty() {
                continue;
            }
            let started = Instant::now();
            self.progress.phase(&phase.to_string());
            if phase.upgrade() {
                upgrade.phase(self, plan, phase, &steps).await?;
            } else if phase.parallel() {
                self.run_parallel(&steps, kubeadm).await?;
            } else {
                for step in steps {
                    self.run_step(step, kubeadm).await?;
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            self.progress.phase_done(&phase.to_string(), seconds);
            timings.phases.push((phase.to_string(), seconds));
        }
        Ok(timings)
    }

    /// Every host's steps in order, hosts side by side; a host's failure does not stop
    /// the others, but the run stops after the phase.
    async fn run_parallel(
        &self,
        steps: &[&Step],
        kubeadm: &join::Kubeadm<'_>,
    ) -> Result<(), ApplyError> {
        let mut by_host: BTreeMap<&str, Vec<&Step>> = BTreeMap::new();
        for s in steps {
            by_host
                .entry(s.host.as_deref().unwrap_or_default())
                .or_default()
                .push(s);
        }
        let hosts: Vec<&Host> = self
            .cluster
            .hosts
            .iter()
            .filter(|h| by_host.contains_key(h.name.as_str()))
            .collect();
        let by_host = &by_host;
        self.each_host(hosts, |h, remote| async move {
            for step in &by_host[h.name.as_str()] {
                self.host_step(h, &remote, &step.action, kubeadm).await?;
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// One step of a serial phase, reported under its host (or `cluster`) with the
    /// plan's description.
    async fn run_step(
        &self,
        step: &Step,
        kubeadm: &mut join::Kubeadm<'_>,
    ) -> Result<(), ApplyError> {
        let host = step
            .host
            .as_deref()
            .map(|name| self.cluster.hosts.iter().find(|h| h.name == name))
            .map(|h| h.expect("steps name hosts of the spec"));
        let Some(host) = host else {
            return self.cluster_step(step, kubeadm).await;
        };
        let remote = self.remotes[&host.name].clone();
        let (p, label) = (&self.progress, &step.description);
        let started = Instant::now();
        let result = match &step.action {
            Action::KubeadmInit => {
                p.started(&host.name, label);
                kubeadm.init(host, &remote).await
            }
            Action::KubeadmJoin {
                control_plane: true,
            } => {
                p.started(&host.name, label);
                kubeadm.join_control_plane(host, &remote).await
            }
            Action::RemoveEtcdMember { id, through, .. } => {
                p.started(&host.name, label);
                kubeadm.remove_etcd_member(through, id).await
            }
            Action::MintJoinCredentials {
                upload_certificates,
            } => {
                p.started(&host.name, label);
                kubeadm.mint(*upload_certificates).await
            }
            Action::RegenerateApiserverCertificate {
                load_balancers,
                config,
                ..
            } => {
                p.started(&host.name, label);
                crate::dr::certs::regenerate_apiserver(self, host, load_balancers, config).await
            }
            other => {
                return self
                    .host_step(host, &remote, other, kubeadm)
                    .await
                    .map_err(Into::into)
            }
        };
        match &result {
            Ok(()) => p.done(&host.name, label, started.elapsed().as_secs_f64()),
            Err(e) => p.failed(&host.name, &e.to_string()),
        }
        result
    }

    /// A step on the cluster itself, through the API of the bootstrap control plane.
    async fn cluster_step(
        &self,
        step: &Step,
        kubeadm: &mut join::Kubeadm<'_>,
    ) -> Result<(), ApplyError> {
        let (p, label) = (&self.progress, &step.description);
        p.started(CLUSTER_STEPS, label);
        let started = Instant::now();
        let result = async {
            let kubeconfig = kubeadm.admin_kubeconfig().await?;
            let client = api::client(&kubeconfig).await?;
            match &step.action {
                Action::ApplyCalico { manifest, .. } => {
                    let count = api::apply_manifest(&client, manifest).await?;
                    p.info(&format!("applied {count} Calico objects"));
                }
                Action::ApplyLabelsAndTaints { node, .. } => {
                    let patch = plan::node_patch(&step.action).expect("a Node patch");
                    api::patch_node(&client, node, &patch).await?
                }
                Action::WaitReady { nodes } => {
                    let deadline = Instant::now() + self.options.ready_timeout;
                    api::wait_ready(&client, nodes, self.options.ready_timeout).await?;
                    p.info("every node is Ready; waiting for kube-system to be healthy");
                    let left = deadline.saturating_duration_since(Instant::now());
                    api::wait_kube_system(&client, left).await?;
                }
                Action::UpdateCertSans { cert_sans } => {
                    crate::dr::certs::update_cert_sans(&client, cert_sans).await?
                }
                Action::WriteKubeconfig => {
                    write_private(&self.options.kubeconfig, kubeconfig.as_bytes())
                        .map_err(ApplyError::Local)?
                }
                other => unreachable!("the plan has no host for {other}"),
            }
            Ok::<_, ApplyError>(())
        }
        .await;
        match &result {
            Ok(()) => p.done(CLUSTER_STEPS, label, started.elapsed().as_secs_f64()),
            Err(e) => p.failed(CLUSTER_STEPS, &e.to_string()),
        }
        result
    }

    /// One host-local action, timed and reported.
    async fn host_step(
        &self,
        host: &Host,
        remote: &Remote,
        action: &Action,
        kubeadm: &join::Kubeadm<'_>,
    ) -> Result<(), RemoteError> {
        let label = action.to_string();
        self.progress.started(&host.name, &label);
        let started = Instant::now();
        let result = match action {
            Action::WriteFile { file, bytes, .. } => {
                remote.write_file(&file.path, bytes, file.mode).await
            }
            Action::MarkCluster => {
                let (content, path) = steps::marker(&self.cluster.name);
                remote.write_file(path, content.as_bytes(), 0o644).await
            }
            Action::MergeBlock { block, .. } => {
                let script = steps::script(action).expect("merge has a script");
                remote
                    .run_with_input(&label, &script, block.as_bytes())
                    .await
                    .map(|_| ())
            }
            Action::KubeadmJoin {
                control_plane: false,
            } => kubeadm.join_worker(host, remote).await,
            Action::DeleteNode { node } => kubeadm
                .delete_node(node)
                .await
                .map_err(|e| remote.error("cannot delete its Node", &e.to_string())),
            _ => {
                let script = steps::script(action).expect("host actions have scripts");
                remote.run(&label, &script).await.map(|_| ())
            }
        };
        match &result {
            Ok(()) => self
                .progress
                .done(&host.name, &label, started.elapsed().as_secs_f64()),
            Err(e) => self.progress.failed(&host.name, &e.to_string()),
        }
        result
    }

    /// Ends the run's use of every master connection, all at once: kept masters start
    /// their short linger, the others are closed.
    pub async fn close(self) {
        tracing::info!(
            ssh_commands = crate::remote::commands_sent(),
            api_requests = api::requests_sent(),
            ssh_masters_started = crate::remote::masters_started(),
            ssh_masters_reused = crate::remote::masters_reused(),
            "round trips this run made"
        );
        close_all(self.remotes.into_values()).await;
    }
}

/// A kubeconfig and the API's answers being fetched with it (see [`Connected::ask_api_early`]).
type EarlyApi = (
    String,
    tokio::task::JoinHandle<Result<ClusterState, api::KubeError>>,
);

async fn cluster_state_through(kubeconfig: &str) -> Result<ClusterState, api::KubeError> {
    let client = api::client(kubeconfig).await?;
    api::with_retries(|| api::cluster_state(&client)).await
}

/// `etcdctl member remove` through the control plane `remote`; a member already gone
/// counts as removed, so that a re-run converges.
pub async fn remove_etcd_member(remote: &Remote, id: &str) -> Result<(), ApplyError> {
    let out = remote
        .sh(&steps::etcdctl(&format!(
            "member remove {}",
            crate::quote::shell(id)
        )))
        .await?;
    if out.success() || out.stderr.contains("member not found") {
        return Ok(());
    }
    Err(remote
        .error("cannot remove an etcd member", out.stderr.trim())
        .into())
}

/// The name progress reports cluster steps under (they have no host).
pub const CLUSTER_STEPS: &str = "cluster";

use facts::ADMIN_CONF;

/// A control plane's admin kubeconfig, trimmed to what kubeha trusts (see
/// [`api::trusted_kubeconfig`]); `None` when the host has none.
async fn read_admin_kubeconfig(
    cluster: &Cluster,
    remote: &Remote,
) -> Result<Option<String>, ApplyError> {
    let Some(bytes) = remote.read_file(ADMIN_CONF).await? else {
        return Ok(None);
    };
    trusted_admin_kubeconfig(cluster, &remote.host, bytes).map(Some)
}

/// An admin.conf's bytes from `host`, trimmed to what kubeha trusts.
fn trusted_admin_kubeconfig(
    cluster: &Cluster,
    host: &str,
    bytes: Vec<u8>,
) -> Result<String, ApplyError> {
    let unusable = |why: String| ApplyError::Local(format!("{host}: {ADMIN_CONF}: {why}"));
    let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8".into()))?;
    api::trusted_kubeconfig(&text, &format!("https://{}", cluster.api_endpoint))
        .map_err(|e| unusable(e.to_string()))
}

/// Paths whose hashes the facts script reports: managed files and apt keyrings.
fn managed_paths(cluster: &Cluster, host: &Host) -> Vec<String> {
    let mut paths: Vec<String> = render::host_files(cluster, host, &RenderInputs::placeholders())
        .into_iter()
        .filter(|f| !f.secret && !matches!(f.content, Content::ManagedBlock(_)))
        .map(|f| f.path)
        .collect();
    for key in [render::apt::KUBERNETES_KEYRING, render::apt::DOCKER_KEYRING] {
        paths.push(key.into());
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Each host's managed files with their bytes, rendered for its distribution. kubeadm's
/// secret-bearing configs are not among them: they exist only while kubeadm runs.
pub fn desired_files(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
) -> Result<BTreeMap<String, Vec<DesiredFile>>, String> {
    let mut out = BTreeMap::new();
    for h in &cluster.hosts {
        let inputs = RenderInputs {
            distro: plan::distro(&facts[&h.name]),
            ..RenderInputs::placeholders()
        };
        let mut files = Vec::new();
        for f in render::host_files(cluster, h, &inputs) {
            if f.secret {
                continue;
            }
            let bytes = match &f.content {
                Content::Text(t) | Content::ManagedBlock(t) => t.clone().into_bytes(),
                Content::LocalFile(p) => {
                    std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
                }
            };
            files.push(DesiredFile { file: f, bytes });
        }
        out.insert(h.name.clone(), files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_errors_are_displayed_redacted() {
        let key = "9c".repeat(32);
        let e = ApplyError::Local(format!(
            "kubeadm printed: Using token: q1w2e3.r4t5y6u7i8o9p0a1 and certificateKey: {key}"
        ));
        let text = e.to_string();
        assert!(
            !text.contains("q1w2e3.r4t5y6u7i8o9p0a1") && !text.contains(&key),
            "{text}"
        );
        let kube = ApplyError::Kube(api::KubeError::Api("client-key-data: S0VZ".into()));
        assert!(!kube.to_string().contains("S0VZ"));
    }
}
