//! `kubeha reset`: take every host back to before `apply` (workers, control planes, then
//! load balancers). Without `--yes` the operator types the cluster's name.

use std::io::{BufRead, IsTerminal, Write};

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::dr::reset;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Reset without asking for the cluster's name.
    #[arg(long)]
    yes: bool,
    /// Leave the packages kubeha installed (kubeadm, kubelet, containerd, HAProxy…).
    #[arg(long)]
    keep_packages: bool,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let name = loaded.cluster.name.clone();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Invalid(
                "reset destroys the cluster: pass --yes to run it without a terminal".into(),
            ));
        }
        eprint!("This removes cluster {name} from every host. Type its name to go on: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Failure::Runtime(format!("cannot read the answer: {e}")))?;
        if answer.trim() != name {
            return Err(Failure::Invalid("nothing was changed".into()));
        }
    }
    let started = std::time::Instant::now();
    block_on(async {
        let connected = args.remote.connect(ui, loaded).await?;
        let result = async {
            let survey = connected.survey().await.map_err(runtime)?;
            if let Err(conflicts) = survey.plan(&connected.cluster) {
                // A host of another cluster is never reset.
                let foreign: Vec<String> = conflicts
                    .iter()
                    .filter(|c| c.message.starts_with("belongs to cluster"))
                    .map(|c| format!("  {c}"))
                    .collect();
                if !foreign.is_empty() {
                    return Err(Failure::Runtime(format!(
                        "refusing to reset:\n{}",
                        foreign.join("\n")
                    )));
                }
            }
            reset::reset(&connected, &survey, args.keep_packages)
                .await
                .map_err(runtime)
        }
        .await;
        connected.progress.finish();
        connected.close().await;
        result
    })?;
    println!(
        "Cluster {name} reset on every host in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
