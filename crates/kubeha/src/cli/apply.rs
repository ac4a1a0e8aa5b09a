//! `kubeha apply`: make the hosts match the spec.

use std::io::IsTerminal;

use super::plan::{self, plan_or_conflicts};
use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Format, Ui};
use crate::apply::{Connected, Progress, Survey, Timings};
use crate::plan::Plan;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Apply without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// Stream progress events on stdout, one JSON object a line (the same as `-o ndjson`).
    #[arg(long)]
    events: bool,
    /// Rebuild this node (`kubeadm reset`, then join again) even though it holds data of
    /// the live cluster; repeatable.
    #[arg(long, value_name = "HOST")]
    replace: Vec<String>,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let ui = &Ui {
        format: if args.events {
            Format::Ndjson
        } else {
            ui.format
        },
        ..*ui
    };
    let loaded = load_spec(ui, &args.remote.file)?;
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(Failure::Invalid(
            "apply changes hosts: pass --yes to run it without a terminal".into(),
        ));
    }
    block_on(args.remote.session(ui, loaded, async |connected| {
        let asked = std::time::Instant::now();
        let mut survey = connected.survey_to_plan().await.map_err(runtime)?;
        // The part of a run that grows with the cluster even when little changes.
        let survey_seconds = asked.elapsed().as_secs_f64();
        survey.replace = args.replace.iter().cloned().collect();
        let (plan, plan_doc, timings) = show_and_run(ui, connected, &survey, args.yes).await?;
        let phases: Vec<_> = timings
            .phases
            .iter()
            .map(|(phase, seconds)| serde_json::json!({"phase": phase, "seconds": seconds}))
            .collect();
        let mut result = serde_json::json!({
            "cluster": connected.cluster.name,
            "changes": plan.steps.len(),
            "timings": phases,
            "surveySeconds": survey_seconds,
            "connectSeconds": connected.connect_seconds,
            // Masters this run started (key exchange and login) and reused from the last.
            "sshMasters": {
                "started": crate::remote::masters_started(),
                "reused": crate::remote::masters_reused(),
            },
            "kubeconfig": connected.options.kubeconfig,
        });
        if ui.format != Format::Ndjson {
            result["plan"] = plan_doc;
        }
        if timings.availability.is_some() || timings.backup.is_some() {
            let upgrade = super::upgrade::document(&timings, plan.steps.len(), 0.0);
            result["nodes"] = upgrade["nodes"].clone();
            result["apiAvailability"] = upgrade["apiAvailability"].clone();
            result["backup"] = upgrade["backup"].clone();
        }
        ui.print(&result, || {
            let out = super::upgrade::text(&timings);
            out + &format!(
                "Cluster {} is ready: {} change(s) made. Admin kubeconfig: {}\n",
                connected.cluster.name,
                plan.steps.len(),
                connected.options.kubeconfig.display()
            )
        });
        Ok(())
    }))
}

/// Plans, shows the plan (text, or the ndjson `plan` event; json and yaml put it in the
/// result), asks unless `yes`, and runs it. Ctrl-C drops the run: no new step starts, and
/// `session` closes the SSH masters.
pub(super) async fn show_and_run(
    ui: &Ui,
    connected: &Connected,
    survey: &Survey,
    yes: bool,
) -> Result<(Plan, serde_json::Value, Timings), Failure> {
    let plan = plan_or_conflicts(&connected.cluster, survey)?;
    let plan_doc = plan::document(&connected.cluster, &plan, survey);
    match ui.format {
        Format::Text => print!("{}", plan::text(&connected.cluster, &plan, survey)),
        Format::Ndjson => {
            println!("{}", serde_json::json!({"event": "plan", "plan": plan_doc}))
        }
        Format::Json | Format::Yaml => {}
    }
    if !plan.is_empty() && !yes && !confirm(plan.steps.len())? {
        return Err(Failure::Invalid("nothing was changed".into()));
    }
    let timings = tokio::select! {
        timings = connected.execute(&plan, survey) => timings.map_err(runtime)?,
        _ = tokio::signal::ctrl_c() => return Err(interrupted(&connected.progress)),
    };
    connected.progress.print_summary();
    Ok((plan, plan_doc, timings))
}

/// What an interrupted run tells the operator: what was cut short and how to go on.
fn interrupted(progress: &Progress) -> Failure {
    progress.print_summary();
    let cut: Vec<String> = progress
        .running()
        .into_iter()
        .map(|(host, step)| format!("{host} ({step})"))
        .collect();
    let cut = match cut.as_slice() {
        [] => String::new(),
        _ => format!(" Cut short: {}.", cut.join(", ")),
    };
    Failure::Interrupted(format!(
        "interrupted: no new step was started and the SSH connections are closed.{cut} \
         The cluster is partly converged; run `kubeha apply` again: it plans from what the \
         hosts are now and continues (an interrupted kubeadm init or join is reset and repeated)."
    ))
}

fn confirm(changes: usize) -> Result<bool, Failure> {
    Ok(matches!(
        super::ask(&format!("Apply these {changes} change(s)? [y/N] "))?.as_str(),
        "y" | "Y" | "yes"
    ))
}
