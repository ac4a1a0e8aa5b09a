//! `kubeha reset`: take every host back to before `apply` (workers, control planes, then
//! load balancers). Without `--yes` the operator types the cluster's name.

use std::io::IsTerminal;

use super::backup::with_survey;
use super::remote_args::{runtime, RemoteArgs};
use super::restore::confirm_name;
use super::{load_spec, Failure, Ui};
use crate::dr::reset;
use crate::spec::escape_controls;

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
        if !confirm_name(
            &format!("This removes cluster {name} from every host."),
            &name,
        )? {
            return Err(Failure::Invalid("nothing was changed".into()));
        }
    }
    let started = std::time::Instant::now();
    with_survey(ui, &args.remote, loaded, async |connected, survey| {
        // A host another cluster's marker claims is never reset.
        let foreign: Vec<String> = survey
            .facts
            .iter()
            .filter_map(|(host, f)| {
                let marker = f.cluster_marker.as_deref()?;
                (marker != connected.cluster.name)
                    .then(|| format!("  {host}: belongs to cluster `{}`", escape_controls(marker)))
            })
            .collect();
        if !foreign.is_empty() {
            return Err(Failure::Runtime(format!(
                "refusing to reset:\n{}",
                foreign.join("\n")
            )));
        }
        reset::reset(connected, survey, args.keep_packages)
            .await
            .map_err(runtime)
    })?;
    println!(
        "Cluster {name} reset on every host in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
