//! `kubeha apply`: make the hosts match the spec.

use std::io::{BufRead, IsTerminal, Write};

use super::plan::{plan_or_conflicts, show};
use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Format, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Apply without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// Rebuild this node (`kubeadm reset`, then join again) even though it holds data of
    /// the live cluster; repeatable.
    #[arg(long, value_name = "HOST")]
    replace: Vec<String>,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(Failure::Invalid(
            "apply changes hosts: pass --yes to run it without a terminal".into(),
        ));
    }
    block_on(async {
        let connected = args.remote.connect(ui, loaded).await?;
        let result = async {
            let mut survey = connected.survey().await.map_err(runtime)?;
            survey.replace = args.replace.iter().cloned().collect();
            let plan = plan_or_conflicts(&connected.cluster, &survey)?;
            show(ui, &connected.cluster, &plan, &survey);
            if !plan.is_empty() && !args.yes && !confirm(plan.steps.len())? {
                return Err(Failure::Invalid("nothing was changed".into()));
            }
            let timings = connected.execute(&plan, &survey).await.map_err(runtime)?;
            connected.progress.finish();
            match ui.format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"event": "done", "changes": plan.steps.len(), "timings": timings.phases, "kubeconfig": connected.options.kubeconfig})
                ),
                Format::Text => {
                    for (phase, seconds) in &timings.phases {
                        eprintln!("  {phase:<24} {seconds:>7.1}s");
                    }
                    println!(
                        "Cluster {} is ready: {} change(s) made. Admin kubeconfig: {}",
                        connected.cluster.name,
                        plan.steps.len(),
                        connected.options.kubeconfig.display()
                    );
                }
            }
            Ok(())
        }
        .await;
        connected.close().await;
        result
    })
}

fn confirm(changes: usize) -> Result<bool, Failure> {
    eprint!("Apply these {changes} change(s)? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Runtime(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
