//! Disaster recovery: an etcd backup taken over SSH into one verified archive, and the
//! restore that brings a cluster whose every control plane lost etcd back from it.
//! `archive` and `steps` are pure; this module is the SSH shell around them.

pub mod archive;
pub mod certs;
pub mod encrypt;
pub mod reset;
pub mod schedule;
pub mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::apply::{steps as apply_steps, ApplyError, Connected, Survey};
use crate::facts::sha256_hex;
use crate::plan::{self, Action};
use crate::quote::shell as quote;
use crate::remote::Remote;
use crate::spec::Host;
use crate::wait;
use archive::{About, Archive, SnapshotStatus, SHARED_PKI};
use steps::{Step, WORK_DIR};

const PKI_DIR: &str = "/etc/kubernetes/pki";
const ADMIN_KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
/// How long a restored control plane may take to serve etcd and the API.
const BACK_WITHIN: Duration = Duration::from_secs(180);

/// What one member says in `etcdctl endpoint status -w json`.
#[derive(Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub leader: bool,
    pub version: String,
}

/// Parses `etcdctl endpoint status -w json` for the local endpoint.
pub fn member_status(json: &str) -> Option<MemberStatus> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let status = &v.as_array()?.first()?["Status"];
    let me = status["header"]["member_id"].as_u64()?;
    Some(MemberStatus {
        leader: status["leader"].as_u64()? == me,
        version: status["version"].as_str()?.to_string(),
    })
}

pub(crate) fn joined_control_planes<'a>(c: &'a Connected, survey: &Survey) -> Vec<&'a Host> {
    c.cluster
        .control_planes()
        .filter(|h| plan::joined(h, &survey.facts[&h.name]))
        .collect()
}

/// Where backups go by default: `.kubeha/<cluster>/backups` beside the spec.
pub fn backups_dir(spec_dir: &Path, cluster: &str) -> PathBuf {
    spec_dir.join(".kubeha").join(cluster).join("backups")
}

/// Takes a [`backup`] and writes it into `dir` (0600): the path, the archive and its
/// size. What `kubeha backup` does, and what `upgrade` and control-plane removal do
/// before they change anything.
pub async fn save_backup(
    c: &Connected,
    survey: &Survey,
    dir: &Path,
) -> Result<(PathBuf, Archive, usize), ApplyError> {
    save_backup_to(c, survey, dir, None).await
}

/// [`save_backup`], encrypted as `sealing` says when given (`….tar.age`).
pub async fn save_backup_to(
    c: &Connected,
    survey: &Survey,
    dir: &Path,
    sealing: Option<&encrypt::Sealing>,
) -> Result<(PathBuf, Archive, usize), ApplyError> {
    let archive = backup(c, survey).await?;
    let about = &archive.manifest.about;
    let mut name = format!(
        "{}-{}-rev{}.tar",
        c.cluster.name, about.created, about.snapshot.revision
    );
    let mut bytes = archive.to_tar();
    if let Some(sealing) = sealing {
        bytes = encrypt::encrypt(&bytes, sealing).map_err(ApplyError::Local)?;
        name.push_str(".age");
    }
    let path = dir.join(name);
    crate::remote::write_private(&path, &bytes).map_err(ApplyError::Local)?;
    Ok((path, archive, bytes.len()))
}

/// Snapshots etcd on a healthy follower (the leader when no follower answers) and
/// gathers the archive: the verified snapshot, that host's PKI, the ClusterConfiguration.
/// The snapshot is removed from the host whatever happens.
pub async fn backup(c: &Connected, survey: &Survey) -> Result<Archive, ApplyError> {
    let mut candidates = Vec::new();
    for h in joined_control_planes(c, survey) {
        let out = c
            .remote(&h.name)
            .sh(&apply_steps::etcdctl("endpoint status -w json"))
            .await?;
        if let Some(status) = out.success().then(|| member_status(&out.stdout)).flatten() {
            candidates.push((status, h));
        }
    }
    candidates.sort_by_key(|(s, _)| s.leader);
    let Some((status, host)) = candidates.into_iter().next() else {
        return Err(ApplyError::Local(
            "no control plane has a healthy etcd member to take a snapshot from".into(),
        ));
    };
    let remote = c.remote(&host.name);
    c.progress.started(
        &host.name,
        &format!(
            "etcd snapshot ({})",
            if status.leader { "leader" } else { "follower" }
        ),
    );
    let started = Instant::now();
    let path = format!("{WORK_DIR}/snapshot-{}.db", std::process::id());
    let snapshot = snapshot(remote, &path).await;
    let removed = remote.sh(&format!("rm -f -- {}", quote(&path))).await;
    let (bytes, snapshot_status) = snapshot?;
    removed?;
    c.progress.done(
        &host.name,
        &format!(
            "snapshot of revision {}, {} keys",
            snapshot_status.revision, snapshot_status.total_keys
        ),
        started.elapsed().as_secs_f64(),
    );

    let mut files = BTreeMap::new();
    files.insert(archive::SNAPSHOT.to_string(), bytes);
    let listing = remote
        .run(
            "cannot list the PKI",
            &format!("cd {PKI_DIR} && find . -type f | sed 's@^\\./@@'"),
        )
        .await?;
    for name in listing.stdout.lines().filter(|n| !n.is_empty()) {
        if !archive::safe_member_name(name) {
            return Err(ApplyError::Local(format!(
                "{}: {PKI_DIR} holds a file with an unexpected name: {name:?}",
                host.name
            )));
        }
        let path = format!("{PKI_DIR}/{name}");
        let bytes = remote.read_file(&path).await?.ok_or_else(|| {
            ApplyError::Local(format!("{}: {path} vanished while reading", host.name))
        })?;
        files.insert(format!("{}{name}", archive::PKI_PREFIX), bytes);
    }
    let config = remote
        .run(
            "cannot read the kubeadm ClusterConfiguration",
            &format!("{ADMIN_KUBECTL} -n kube-system get configmap kubeadm-config -o jsonpath='{{.data.ClusterConfiguration}}'"),
        )
        .await?;
    files.insert(
        archive::CLUSTER_CONFIGURATION.to_string(),
        config.stdout.into_bytes(),
    );
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Archive::new(
        About {
            cluster: c.cluster.name.clone(),
            kubernetes_version: c.cluster.kubernetes.version.to_string(),
            etcd_version: status.version,
            source_host: host.name.clone(),
            created,
            snapshot: snapshot_status,
        },
        files,
    )
    .map_err(|e| ApplyError::Local(format!("{}: {e}", host.name)))
}

/// Saves, checks and fetches one snapshot; the fetched bytes must hash as on the host.
async fn snapshot(remote: &Remote, path: &str) -> Result<(Vec<u8>, SnapshotStatus), ApplyError> {
    let p = quote(path);
    remote
        .run(
            "etcdctl snapshot save failed",
            &format!(
                "set -e; umask 077; mkdir -p {WORK_DIR}; chmod 700 {WORK_DIR}\n{} >/dev/null",
                apply_steps::etcdctl(&format!("snapshot save {p}"))
            ),
        )
        .await?;
    let status = remote
        .run(
            "etcdctl snapshot status failed",
            &format!("ETCDCTL_API=3 etcdctl snapshot status -w json {p}"),
        )
        .await?;
    let status = SnapshotStatus::parse(&status.stdout).map_err(|e| {
        ApplyError::Local(format!(
            "{}: the snapshot does not verify: {e}",
            remote.host
        ))
    })?;
    let sum = remote
        .run("cannot hash the snapshot", &format!("sha256sum {p}"))
        .await?;
    let bytes = remote
        .read_file(path)
        .await?
        .ok_or_else(|| ApplyError::Local(format!("{}: the snapshot vanished", remote.host)))?;
    if sum.stdout.split_whitespace().next() != Some(sha256_hex(&bytes).as_str()) {
        return Err(ApplyError::Local(format!(
            "{}: the snapshot changed on its way here",
            remote.host
        )));
    }
    Ok((bytes, status))
}

/// Control planes whose local etcd member answers a linearised read: while any does,
/// etcd has quorum and a restore would roll back live data.
pub async fn members_with_quorum(c: &Connected) -> Result<Vec<String>, ApplyError> {
    let mut healthy = Vec::new();
    for h in c.cluster.control_planes() {
        let out = c
            .remote(&h.name)
            .sh(&apply_steps::etcdctl("endpoint health"))
            .await?;
        if out.success() {
            healthy.push(h.name.clone());
        }
    }
    Ok(healthy)
}

/// The restore's steps for this cluster, as surveyed, and archive (see
/// [`steps::for_cluster`]).
pub fn restore_steps(
    c: &Connected,
    survey: &Survey,
    archive: &Archive,
) -> Result<Vec<Step>, ApplyError> {
    let token = format!("kubeha-restore-{}", hex::encode(rand::random::<[u8; 8]>()));
    steps::for_cluster(
        &c.cluster,
        &survey.facts,
        &archive.manifest.about.source_host,
        &token,
    )
    .map_err(ApplyError::Local)
}

/// Runs the restore's host steps up to (not including) [`Step::Apply`], which the
/// caller runs as a normal `apply`.
pub async fn restore(c: &Connected, archive: &Archive, plan: &[Step]) -> Result<(), ApplyError> {
    for step in plan {
        let label = step.to_string();
        let started = Instant::now();
        let host = match step {
            Step::Stop { host }
            | Step::PutPki { host, .. }
            | Step::RestoreSnapshot { host, .. }
            | Step::Start { host }
            | Step::InitRestored { host }
            | Step::Reset { host } => host.clone(),
            Step::Prepare | Step::DeleteNodes { .. } | Step::Apply => String::new(),
        };
        c.progress.started(&host, &label);
        match step {
            Step::Prepare => prepare(c).await?,
            Step::Stop { host } => {
                c.remote(host)
                    .run("cannot stop the control plane", &steps::stop_script())
                    .await?;
            }
            Step::PutPki {
                host,
                own_certificates,
            } => {
                let remote = c.remote(host);
                for (name, bytes) in archive.pki() {
                    if *own_certificates || SHARED_PKI.contains(&name) {
                        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
                        remote
                            .write_file(&format!("{PKI_DIR}/{name}"), bytes, mode)
                            .await?;
                    }
                }
            }
            Step::RestoreSnapshot {
                host,
                peer_url,
                cluster_token,
            } => {
                let remote = c.remote(host);
                let path = format!("{WORK_DIR}/restore.db");
                remote
                    .write_file(&path, &archive.files[archive::SNAPSHOT], 0o600)
                    .await?;
                let restored = remote
                    .run(
                        "etcdctl snapshot restore failed",
                        &steps::restore_script(
                            &path,
                            steps::ETCD_DATA,
                            host,
                            peer_url,
                            cluster_token,
                        ),
                    )
                    .await;
                // The snapshot holds every Secret of the cluster: never left behind.
                let removed = remote.sh(&format!("rm -f -- {}", quote(&path))).await;
                restored?;
                removed?;
            }
            Step::Start { host } => start(c.remote(host), spec_host(c, host)).await?,
            Step::InitRestored { host } => init_restored(c, spec_host(c, host)).await?,
            Step::Reset { host } => {
                let script =
                    apply_steps::script(&Action::ResetPartialJoin).expect("a reset has a script");
                c.remote(host).run("kubeadm reset failed", &script).await?;
            }
            Step::DeleteNodes { hosts } => {
                let target = plan
                    .iter()
                    .find_map(|s| match s {
                        Step::Start { host } | Step::InitRestored { host } => Some(host),
                        _ => None,
                    })
                    .expect("nodes are deleted through the restored control plane");
                let names: Vec<String> = hosts.iter().map(|h| quote(h)).collect();
                let spec_host = spec_host(c, target);
                // Through the restored host's own API: the load balancer may not have
                // seen it come back yet.
                c.remote(target)
                    .run(
                        "cannot delete the Nodes of the rejoining control planes",
                        &format!(
                            "{} delete node --ignore-not-found {}",
                            local_kubectl(spec_host),
                            names.join(" ")
                        ),
                    )
                    .await?;
            }
            Step::Apply => break,
        }
        c.progress
            .done(&host, &label, started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The spec's host a restore step names.
fn spec_host<'a>(c: &'a Connected, name: &str) -> &'a Host {
    c.cluster
        .hosts
        .iter()
        .find(|h| h.name == name)
        .expect("steps name hosts of the spec")
}

/// `apply`'s preparation phase alone, on every host that needs it.
async fn prepare(c: &Connected) -> Result<(), ApplyError> {
    let survey = c.survey_to_plan().await?;
    let plan = survey.plan(&c.cluster).map_err(|conflicts| {
        let lines: Vec<String> = conflicts.iter().map(|c| format!("  {c}")).collect();
        ApplyError::Local(format!(
            "cannot prepare the hosts for the restore:\n{}",
            lines.join("\n")
        ))
    })?;
    let prepare = plan::Plan {
        steps: plan
            .steps
            .into_iter()
            .filter(|s| s.phase == plan::Phase::Prepare)
            .collect(),
        // Nothing here talks to the API: there is none yet.
        bootstrap: None,
        ..plan::Plan::default()
    };
    c.execute(&prepare, &survey).await.map(drop)
}

/// `kubeadm init` on a new machine around the restored etcd data (its config holds no
/// secret and goes again afterwards), then waits until etcd and the API answer.
async fn init_restored(c: &Connected, host: &Host) -> Result<(), ApplyError> {
    let remote = c.remote(&host.name);
    let path = format!("{WORK_DIR}/kubeadm-restored-init.yaml");
    let config = crate::render::kubeadm::restored_init_config(&c.cluster, host);
    remote.write_file(&path, config.as_bytes(), 0o600).await?;
    let init = remote
        .run_for(
            "kubeadm init on the restored data failed",
            &format!("kubeadm init --config {} --skip-token-print", quote(&path)),
            c.options.kubeadm_timeout,
        )
        .await;
    let removed = remote.sh(&format!("rm -f -- {}", quote(&path))).await;
    init?;
    removed?;
    wait_healthy(
        remote,
        host,
        BACK_WITHIN,
        "kubeadm init on the restored data",
    )
    .await
}

/// Starts the kubelet and waits until the restored etcd and the API answer.
async fn start(remote: &Remote, host: &Host) -> Result<(), ApplyError> {
    remote
        .run("cannot start the kubelet", "systemctl start kubelet")
        .await?;
    wait_healthy(remote, host, BACK_WITHIN, "the restore").await
}

/// kubectl with the admin kubeconfig against `host`'s own API server.
fn local_kubectl(host: &Host) -> String {
    format!(
        "{ADMIN_KUBECTL} --request-timeout 5s --server {}",
        quote(&format!(
            "https://{}:{}",
            crate::spec::url_host(host.node_ip()),
            crate::spec::APISERVER_PORT
        ))
    )
}

/// Waits until the host's own etcd member and API server (not the load balancer's)
/// answer, `after` saying what they are coming back from.
pub(crate) async fn wait_healthy(
    remote: &Remote,
    host: &Host,
    within: Duration,
    after: &str,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + within;
    for (what, check) in [
        ("etcd", apply_steps::etcdctl("endpoint health")),
        (
            "the API",
            format!("{} get --raw /readyz", local_kubectl(host)),
        ),
    ] {
        let answers = || async { Ok::<_, ApplyError>(remote.sh(&check).await?.success()) };
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait::held_within(left, Duration::from_secs(1), answers).await? {
            return Err(ApplyError::Local(format!(
                "{}: {what} did not come back within {within:?} after {after}",
                remote.host
            )));
        }
    }
    Ok(())
}

/// Fails unless `sh -n` accepts `script`.
#[cfg(test)]
pub(crate) fn assert_valid_sh(script: &str) {
    let ok = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{script}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_leader_from_a_follower() {
        let follower = r#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":1,"member_id":7,"revision":90,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":9,"raftIndex":100,"raftTerm":2}}]"#;
        assert_eq!(
            member_status(follower),
            Some(MemberStatus {
                leader: false,
                version: "3.4.23".into()
            })
        );
        let leader = follower.replace("\"leader\":9", "\"leader\":7");
        assert!(member_status(&leader).unwrap().leader);
        assert_eq!(member_status("Error: context deadline exceeded"), None);
        assert_eq!(member_status("[]"), None);
    }
}
