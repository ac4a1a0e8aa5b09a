//! `kubeha node remove|replace`: etcd-safe membership changes. Each shows its plan first
//! (as `apply` does), asks unless `--yes`, and refuses what would break etcd's quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::plan::{plan_or_conflicts, text as plan_text};
use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::{Connected, Survey};
use crate::dr;
use crate::node::{self, Removed};
use crate::plan::membership::{plan_removal, with_diffs, Removal, RemovalInputs, RemoveStep};
use crate::plan::{Conflict, Phase};
use crate::probe::Probe;
use crate::render::haproxy;
use crate::spec::{Cluster, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Remove a control plane or worker: cordon, drain, for a control plane a backup and
    /// its etcd member removed through a healthy one, `kubeadm reset` on it, its Node
    /// deleted, HAProxy reloaded without it. Refused when etcd would lose quorum.
    Remove(RemoveArgs),
    /// Join NEW (listed in the spec) through the normal apply, then remove OLD, never
    /// below the fault tolerance the cluster started with.
    Replace(ReplaceArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Go ahead without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// How long a drain may wait for PodDisruptionBudgets to allow each eviction and
    /// for the pods to end (e.g. 90s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    drain_timeout: Duration,
    /// Folder the etcd backup taken before a control plane's removal goes to (default:
    /// .kubeha/<cluster>/backups beside the spec).
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RemoveArgs {
    /// The node's name (as in the spec, `kubectl get nodes` and etcd).
    name: String,
    #[command(flatten)]
    common: Common,
    /// The node is gone for good: do not contact it (no SSH), delete the pods left on
    /// it, remove its etcd member and Node through the others.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct ReplaceArgs {
    /// The node to retire.
    old: String,
    /// The node that takes its place: already listed in the spec, with the same role.
    new: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Remove(args) => remove(ui, args),
        Command::Replace(args) => replace(ui, args),
    }
}

/// Refuses, before any host is contacted, a name no node can have, a load balancer,
/// and a run that could not ask for confirmation.
fn check_args(cluster: &Cluster, names: &[&str], common: &Common) -> Result<(), Failure> {
    for name in names {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(Failure::Invalid(format!(
                "`{}` is not a node name (lower-case letters, digits, `-` and `.`)",
                crate::spec::escape_controls(name)
            )));
        }
        if let Some(h) = cluster.hosts.iter().find(|h| h.name == *name) {
            if !h.is_kube_node() {
                return Err(Failure::Invalid(format!(
                    "{name} is a load balancer, not a node: delete it from the spec and run `kubeha apply`"
                )));
            }
        }
    }
    if !common.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::Invalid(
            "node changes the cluster: pass --yes to run it without a terminal".into(),
        ));
    }
    Ok(())
}

fn refused(what: &str, conflicts: &[Conflict]) -> Failure {
    let lines: Vec<String> = conflicts.iter().map(|c| format!("  {c}")).collect();
    Failure::Runtime(format!("refusing to {what}:\n{}", lines.join("\n")))
}

/// The removal planned from a survey, with the load balancers' diffs.
async fn planned_removal(
    connected: &Connected,
    spec: &Cluster,
    survey: &Survey,
    unreachable: &BTreeMap<String, String>,
    name: &str,
    force: bool,
    drain_timeout: Duration,
) -> Result<Removal, Failure> {
    let mut removal = plan_removal(&RemovalInputs {
        cluster: spec,
        name,
        facts: &survey.facts,
        unreachable,
        cluster_state: survey.cluster_state.as_ref(),
        force,
        drain_timeout,
    })
    .map_err(|c| refused(&format!("remove {name}"), &c))?;
    let mut current = BTreeMap::new();
    for step in &removal.steps {
        if let RemoveStep::UpdateLoadBalancer { host, .. } = step {
            if let Some(bytes) = connected
                .remote(host)
                .read_file(haproxy::PATH)
                .await
                .map_err(|e| Failure::Runtime(e.to_string()))?
            {
                current.insert(host.clone(), bytes);
            }
        }
    }
    with_diffs(&mut removal, &current);
    Ok(removal)
}

fn removal_text(cluster: &str, r: &Removal) -> String {
    let mut out = format!(
        "Remove {} {} from cluster {cluster}:\n",
        if r.control_plane {
            "control plane"
        } else {
            "worker"
        },
        r.node
    );
    if let Some(etcd) = &r.etcd {
        let _ = writeln!(out, "  {etcd}");
        if let Some(after) = r.fault_tolerance_after {
            let _ = writeln!(out, "  afterwards it can lose {after} control plane(s)");
        }
    }
    for (i, step) in r.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {step}", i + 1);
        if let RemoveStep::UpdateLoadBalancer {
            diff: Some(diff), ..
        } = step
        {
            for line in diff.lines() {
                let _ = writeln!(out, "       {line}");
            }
        }
    }
    out
}

fn notes_text(r: &Removal) -> String {
    r.notes.iter().map(|n| format!("note: {n}\n")).collect()
}

fn removed_text(r: &Removed) -> String {
    let mut out = String::new();
    for s in &r.steps {
        let _ = writeln!(out, "  {:<70} {:>6.1}s", s.step, s.seconds);
    }
    if let Some(a) = &r.availability {
        let _ = writeln!(out, "{a}");
    }
    if let Some(path) = &r.backup {
        let _ = writeln!(out, "etcd backup: {}", path.display());
    }
    let _ = writeln!(out, "Node {} removed in {:.1}s.", r.node, r.seconds);
    out
}

fn confirm(question: &str) -> Result<bool, Failure> {
    Ok(matches!(
        super::ask(&format!("{question} [y/N] "))?.as_str(),
        "y" | "Y" | "yes"
    ))
}

fn remove(ui: &Ui, args: RemoveArgs) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.common.remote.file)?;
    check_args(&loaded.cluster, &[&args.name], &args.common)?;
    let spec = loaded.cluster.clone();
    let backups = backups(&args.common, &loaded);
    // With --force the node is never contacted; a node the spec no longer lists cannot be.
    let skip: BTreeSet<String> = args.force.then(|| args.name.clone()).into_iter().collect();
    let remote = &args.common.remote;
    block_on(
        remote.session_reachable(ui, loaded, &skip, async |connected, unreachable| {
            let survey = connected.survey().await.map_err(runtime)?;
            let removal = planned_removal(
                connected,
                &spec,
                &survey,
                unreachable,
                &args.name,
                args.force,
                args.common.drain_timeout,
            )
            .await?;
            if !ui.structured() {
                print!("{}", removal_text(&spec.name, &removal));
            }
            if !args.common.yes && !confirm(&format!("Remove node {}?", args.name))? {
                return Err(Failure::Invalid("nothing was changed".into()));
            }
            let removed = node::remove(connected, &survey, &removal, &backups, None)
                .await
                .map_err(runtime)?;
            ui.print(
                &serde_json::json!({"cluster": spec.name, "removal": removal, "result": removed}),
                || removed_text(&removed) + &notes_text(&removal),
            );
            Ok(())
        }),
    )
}

fn is_load_balancer(spec: &Cluster, name: &str) -> bool {
    spec.hosts
        .iter()
        .any(|h| h.name == name && h.has(crate::spec::Role::LoadBalancer))
}

fn backups(common: &Common, loaded: &Loaded) -> std::path::PathBuf {
    common
        .backup_dir
        .clone()
        .unwrap_or_else(|| dr::backups_dir(&common.remote.spec_dir(), &loaded.cluster.name))
}

fn replace(ui: &Ui, args: ReplaceArgs) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.common.remote.file)?;
    let (old, new) = (args.old.as_str(), args.new.as_str());
    check_args(&loaded.cluster, &[old, new], &args.common)?;
    let spec = loaded.cluster.clone();
    let role = |name: &str| {
        spec.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.has(crate::spec::Role::ControlPlane))
    };
    match (role(old), role(new)) {
        (_, None) => {
            return Err(Failure::Invalid(format!(
                "{new} is not in the spec: add it (with the role of {old}) first"
            )))
        }
        (Some(a), Some(b)) if a != b => {
            return Err(Failure::Invalid(format!(
                "{old} and {new} have different roles: replace a control plane with a control plane, a worker with a worker"
            )))
        }
        _ => {}
    }
    if old == new {
        return Err(Failure::Invalid(
            "OLD and NEW are the same node: to rebuild one in place, use `kubeha apply --replace NAME`".into(),
        ));
    }
    let backups = backups(&args.common, &loaded);
    let remote = &args.common.remote;
    let started = Instant::now();
    block_on(remote.session(ui, loaded, async |connected| {
        let survey = connected.survey().await.map_err(runtime)?;
        let plan = plan_or_conflicts(&connected.cluster, &survey)?;
        let start = plan.etcd.as_ref().map(|e| e.fault_tolerance);
        let others: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.phase,
                    Phase::Prepare | Phase::Init | Phase::JoinControlPlanes | Phase::JoinWorkers
                )
            })
            .filter_map(|s| s.host.as_deref())
            .filter(|h| *h != new && !is_load_balancer(&spec, h))
            .collect();
        if !others.is_empty() {
            let mut hosts = others;
            hosts.dedup();
            return Err(Failure::Runtime(format!(
                "refusing to replace {old}: the spec also changes {} (run `kubeha apply` first, then replace)",
                hosts.join(", ")
            )));
        }
        if !ui.structured() {
            print!("Step 1, join {new}:\n{}", plan_text(&connected.cluster, &plan, &survey));
            println!(
                "Step 2, once {new} is healthy: remove {old} (planned then, from the cluster as it is; \
                 refused if it would leave etcd below the fault tolerance it has now{})",
                start.map_or(String::new(), |t| format!(", {t}"))
            );
        }
        if !args.common.yes && !confirm(&format!("Replace {old} with {new}?"))? {
            return Err(Failure::Invalid("nothing was changed".into()));
        }
        // The probe runs from before the join to the end of the removal.
        let probe = match (role(old), &survey.kubeconfig) {
            (Some(true), Some(k)) => Some(Probe::start(
                &crate::api::client(k).await.map_err(|e| Failure::Runtime(e.to_string()))?,
            )),
            _ => None,
        };
        let joined = connected.execute(&plan, &survey).await.map_err(runtime)?;
        let survey = connected.survey().await.map_err(runtime)?;
        let removal = planned_removal(
            connected,
            &spec,
            &survey,
            &BTreeMap::new(),
            old,
            false,
            args.common.drain_timeout,
        )
        .await?;
        if let (Some(start), Some(after)) = (start, removal.fault_tolerance_after) {
            if after < start {
                return Err(Failure::Runtime(format!(
                    "{new} joined, but removing {old} would leave etcd able to lose {after} control plane(s), \
                     fewer than the {start} it started with; nothing was removed (`kubeha status` shows each member)"
                )));
            }
        }
        if !ui.structured() {
            print!("{}", removal_text(&spec.name, &removal));
        }
        let removed = node::remove(connected, &survey, &removal, &backups, probe)
            .await
            .map_err(runtime)?;
        let join_seconds: f64 = joined.phases.iter().map(|(_, s)| s).sum();
        ui.print(
            &serde_json::json!({
                "cluster": spec.name,
                "joined": new,
                "joinSeconds": join_seconds,
                "removal": removal,
                "result": removed,
                "seconds": started.elapsed().as_secs_f64(),
            }),
            || {
                format!("{new} joined in {join_seconds:.1}s.\n")
                    + &removed_text(&removed)
                    + &notes_text(&removal)
            },
        );
        Ok(())
    }))
}
