//! `kubeha backup`: an etcd snapshot, the cluster PKI and the kubeadm
//! ClusterConfiguration in one verified archive on the operator's machine (0600).

use std::path::PathBuf;
use std::time::Instant;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::{Connected, Survey};
use crate::dr;
use crate::spec::Loaded;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Folder the archive is written to (default: .kubeha/<cluster>/backups beside the spec).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let started = Instant::now();
    let name = loaded.cluster.name.clone();
    let dir = args
        .out
        .unwrap_or_else(|| dr::backups_dir(&args.remote.spec_dir(), &name));
    let (path, archive, bytes) = with_survey(ui, &args.remote, loaded, async |c, survey| {
        dr::save_backup(c, survey, &dir).await.map_err(runtime)
    })?;
    let m = &archive.manifest.about;
    let seconds = started.elapsed().as_secs_f64();
    ui.print(
        &serde_json::json!({"path": path, "bytes": bytes, "seconds": seconds, "manifest": archive.manifest}),
        || {
            format!(
                "Backup of {name} written to {} ({} bytes, {seconds:.1}s): etcd {} revision {}, {} keys, from {}\n",
                path.display(),
                bytes,
                m.etcd_version,
                m.snapshot.revision,
                m.snapshot.total_keys,
                m.source_host
            )
        },
    );
    Ok(())
}

/// Connects to every host, surveys them, runs `work`, and closes the connections
/// however it ended.
pub(super) fn with_survey<T>(
    ui: &Ui,
    remote: &RemoteArgs,
    loaded: Loaded,
    work: impl AsyncFnOnce(&Connected, &Survey) -> Result<T, Failure>,
) -> Result<T, Failure> {
    block_on(remote.session(
        ui,
        loaded,
        async |connected| match connected.survey().await {
            Ok(survey) => work(connected, &survey).await,
            Err(e) => Err(runtime(e)),
        },
    ))
}
