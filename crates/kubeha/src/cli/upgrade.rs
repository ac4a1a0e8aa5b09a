//! `kubeha upgrade --to vX.Y.Z`: the rolling Kubernetes upgrade, planned like `apply`
//! plans it when `kubernetes.version` is edited (the same plan), shown first, then run
//! node by node under an API probe whose figures end the run.

use std::io::IsTerminal;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Format, Ui};
use crate::apply::Timings;
use crate::spec::{KubernetesVersion, SUPPORTED_MINORS};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// The Kubernetes version to upgrade to (one minor at a time), e.g. v1.32.0.
    #[arg(long, value_name = "VERSION")]
    to: String,
    /// Upgrade without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// Workers drained and upgraded at the same time.
    #[arg(long, default_value_t = 1, value_name = "N")]
    max_unavailable: usize,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let target = KubernetesVersion::parse(&args.to)
        .filter(|v| v.major == 1 && SUPPORTED_MINORS.contains(&v.minor))
        .ok_or_else(|| {
            Failure::Invalid(format!(
                "--to {:?}: not a Kubernetes version kubeha installs (v1.{}.x)",
                args.to,
                SUPPORTED_MINORS
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(".x or v1.")
            ))
        })?;
    if args.max_unavailable == 0 {
        return Err(Failure::Invalid(
            "--max-unavailable must be at least 1".into(),
        ));
    }
    let mut loaded = load_spec(ui, &args.remote.file)?;
    let spec_version = loaded.cluster.kubernetes.version;
    loaded.cluster.kubernetes.version = target;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::Invalid(
            "upgrade changes hosts: pass --yes to run it without a terminal".into(),
        ));
    }
    let outcome = block_on(args.remote.session(ui, loaded, async |connected| {
        let mut survey = connected.survey_to_plan().await.map_err(runtime)?;
        survey.max_unavailable = args.max_unavailable;
        let started = std::time::Instant::now();
        let (plan, plan_doc, timings) =
            super::apply::show_and_run(ui, connected, &survey, args.yes).await?;
        Ok((
            plan.steps.len(),
            plan_doc,
            timings,
            started.elapsed().as_secs_f64(),
        ))
    }))?;
    let (changes, plan_doc, timings, seconds) = outcome;
    let mut result = document(&timings, changes, seconds);
    result["version"] = serde_json::json!(target.to_string());
    if ui.format != Format::Ndjson {
        result["plan"] = plan_doc;
    }
    ui.print(&result, || {
        let mut out = text(&timings);
        out += &format!(
            "Upgrade to {target} finished: {changes} step(s) in {seconds:.0}s.\n"
        );
        if spec_version != target {
            out += &format!(
                "Set `kubernetes.version: {target}` in {} (it says {spec_version}): `plan` and `apply` compare the cluster with it.\n",
                args.remote.file.display()
            );
        }
        out
    });
    Ok(())
}

/// What an upgrade (or an `apply` that upgraded) measured, as one document.
pub fn document(timings: &Timings, changes: usize, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "changes": changes,
        "seconds": seconds,
        "timings": timings.phases.iter().map(|(p, s)| serde_json::json!({"phase": p, "seconds": s})).collect::<Vec<_>>(),
        "nodes": timings.nodes.iter().map(|(n, s)| serde_json::json!({"node": n, "seconds": s})).collect::<Vec<_>>(),
        "apiAvailability": timings.availability,
        "backup": timings.backup,
    })
}

/// Phases, each node's time, the API's availability and the backup, for people.
pub fn text(timings: &Timings) -> String {
    let mut out = String::new();
    for (phase, seconds) in &timings.phases {
        out += &format!("  {phase:<32} {seconds:>7.1}s\n");
    }
    for (node, seconds) in &timings.nodes {
        out += &format!("  node {node:<27} {seconds:>7.1}s\n");
    }
    if let Some(b) = &timings.backup {
        out += &format!("etcd backup taken first: {}\n", b.display());
    }
    if let Some(a) = &timings.availability {
        out += &format!("During the upgrade, {a}\n");
    }
    out
}
