//! `kubeha plan`: connect, gather facts and show what `apply` would change.

use std::fmt::Write as _;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::Survey;
use crate::plan::{Action, Phase, Plan};
use crate::spec::Cluster;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Exit 0 when there is nothing to do and 3 when there are changes.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Rebuild this node (`kubeadm reset`, then join again) even though it holds data of
    /// the live cluster; repeatable.
    #[arg(long, value_name = "HOST")]
    replace: Vec<String>,
}

/// Exit code for "the plan has changes" with `--detailed-exitcode` (2 means invalid input).
pub const CHANGES_EXIT: u8 = 3;

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let plan = block_on(args.remote.session(ui, loaded, async |connected| {
        let mut survey = connected.survey_to_plan().await.map_err(runtime)?;
        survey.replace = args.replace.iter().cloned().collect();
        let plan = plan_or_conflicts(&connected.cluster, &survey)?;
        show(ui, &connected.cluster, &plan, &survey);
        Ok(plan)
    }))?;
    if args.detailed_exitcode && !plan.is_empty() {
        return Err(Failure::Exit(CHANGES_EXIT));
    }
    Ok(())
}

pub fn plan_or_conflicts(cluster: &Cluster, survey: &Survey) -> Result<Plan, Failure> {
    survey.plan(cluster).map_err(|conflicts| {
        let lines: Vec<String> = conflicts.iter().map(|c| format!("  {c}")).collect();
        Failure::Runtime(format!(
            "refusing to plan: the hosts are not what the spec says\n{}",
            lines.join("\n")
        ))
    })
}

pub fn show(ui: &Ui, cluster: &Cluster, plan: &Plan, survey: &Survey) {
    ui.print(&document(cluster, plan, survey), || {
        text(cluster, plan, survey)
    });
}

/// The plan as one machine-readable document.
pub fn document(cluster: &Cluster, plan: &Plan, survey: &Survey) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "cluster": cluster.name,
        "changes": plan.steps.len(),
        "bootstrap": plan.bootstrap,
        "steps": plan.steps,
        "warnings": plan.warnings,
        "etcd": plan.etcd,
        "apiProblem": survey.api_problem,
    });
    if !plan.batches.is_empty() {
        doc["workerBatches"] = serde_json::json!(plan.batches);
    }
    doc
}

/// The plan as a person reads it: phase, host, step, and diffs of changed files.
pub fn text(cluster: &Cluster, plan: &Plan, survey: &Survey) -> String {
    let mut out = String::new();
    if let Some(problem) = &survey.api_problem {
        let _ = writeln!(out, "warning: the Kubernetes API did not answer ({problem}); cluster-level steps are planned as if it were empty\n");
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning: {warning}\n");
    }
    if let Some(etcd) = &plan.etcd {
        let _ = writeln!(out, "{etcd}\n");
    }
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "No changes: cluster {} matches the spec.",
            cluster.name
        );
        return out;
    }
    let _ = writeln!(out, "Plan for cluster {}:", cluster.name);
    for phase in Phase::ALL {
        let steps: Vec<_> = plan.phase(phase).collect();
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{phase}:");
        let mut last_host = None;
        for step in steps {
            let host = step.host.as_deref().unwrap_or("cluster");
            if last_host != Some(host) {
                let _ = writeln!(out, "  {host}");
                last_host = Some(host);
            }
            let _ = writeln!(out, "    - {}", step.action);
            if let Action::WriteFile {
                diff: Some(diff), ..
            } = &step.action
            {
                for line in diff.lines() {
                    let _ = writeln!(out, "        {line}");
                }
            }
        }
    }
    if !plan.batches.is_empty() {
        let batches: Vec<String> = plan.batches.iter().map(|b| b.join(" + ")).collect();
        let _ = writeln!(
            out,
            "\nWorkers are upgraded in this order, each batch drained together: {}.",
            batches.join(", then ")
        );
    }
    let hosts: std::collections::BTreeSet<_> = plan
        .steps
        .iter()
        .filter_map(|s| s.host.as_deref())
        .collect();
    let _ = writeln!(
        out,
        "\n{} change(s) on {} host(s).",
        plan.steps.len(),
        hosts.len()
    );
    out
}
