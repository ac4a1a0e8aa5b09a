//! `kubeha restore`: bring a cluster whose control planes lost etcd back from a backup.
//! The archive is verified before any host is touched; the restore ends with `apply`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::plan::{plan_or_conflicts, show};
use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::dr::{
    self,
    archive::Archive,
    encrypt::{Key, Unopened},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// The archive `kubeha backup` wrote.
    #[arg(long = "from")]
    from: PathBuf,
    /// The age identity file (`AGE-SECRET-KEY-1…`) that opens an archive made with
    /// `backup --encrypt-to`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["passphrase_file", "passphrase_env"])]
    identity: Option<PathBuf>,
    /// Opens an archive made with a passphrase (`backup --passphrase-file|--passphrase-env`).
    #[command(flatten)]
    passphrase: super::passphrase::PassphraseArgs,
    /// Restore without asking for confirmation.
    #[arg(long)]
    yes: bool,
    /// Restore even though etcd has quorum (its newer data is lost).
    #[arg(long)]
    force: bool,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let bytes = std::fs::read(&args.from)
        .map_err(|e| Failure::Invalid(format!("cannot read {}: {e}", args.from.display())))?;
    let refuse = |why: String| Failure::Invalid(format!("{}: {why}", args.from.display()));
    let passphrase = args.passphrase.read()?;
    let bytes = if !dr::encrypt::is_encrypted(&bytes) {
        bytes
    } else {
        let key_file;
        let key = match (&args.identity, &passphrase) {
            (Some(file), _) => {
                key_file = std::fs::read(file).map_err(|e| {
                    Failure::Invalid(format!("cannot read {}: {e}", file.display()))
                })?;
                Key::IdentityFile(&key_file)
            }
            (None, Some(p)) => Key::Passphrase(p),
            (None, None) => return Err(refuse(
                "is encrypted: pass --identity FILE with the age identity it was encrypted to, \
                     or --passphrase-file FILE / --passphrase-env VAR with its passphrase"
                    .into(),
            )),
        };
        dr::encrypt::decrypt(&bytes, key).map_err(|e| match e {
            // Only an identity file is at fault on its own.
            Unopened::Identity(why) => Failure::Invalid(format!(
                "{}: {why}",
                args.identity
                    .as_deref()
                    .unwrap_or(Path::new("--identity"))
                    .display()
            )),
            Unopened::Archive(why) => refuse(why),
        })?
    };
    let archive = Archive::from_tar(&bytes).map_err(refuse)?;
    archive
        .check_cluster(&loaded.cluster.name)
        .map_err(refuse)?;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::Invalid(
            "restore replaces the cluster's data: pass --yes to run it without a terminal".into(),
        ));
    }
    let started = Instant::now();
    block_on(args.remote.session(ui, loaded, async |connected| {
        let healthy = dr::members_with_quorum(connected).await.map_err(runtime)?;
        if !healthy.is_empty() && !args.force {
            return Err(Failure::Runtime(format!(
                "etcd still answers on {}: it has quorum, and a restore would roll back its data; \
                     pass --force to restore anyway",
                healthy.join(", ")
            )));
        }
        let survey = connected.survey().await.map_err(runtime)?;
        let steps = dr::restore_steps(connected, &survey, &archive).map_err(runtime)?;
        if !ui.structured() {
            eprintln!(
                "Restoring revision {} of {} (taken on {}):",
                archive.manifest.about.snapshot.revision,
                archive.manifest.about.cluster,
                archive.manifest.about.source_host
            );
            for s in &steps {
                eprintln!("  {s}");
            }
        }
        let name = &connected.cluster.name;
        if !args.yes && !confirm_name(&format!("This replaces the data of cluster {name}."), name)?
        {
            return Err(Failure::Invalid("nothing was changed".into()));
        }
        dr::restore(connected, &archive, &steps)
            .await
            .map_err(runtime)?;
        let survey = connected.survey_to_plan().await.map_err(runtime)?;
        let plan = plan_or_conflicts(&connected.cluster, &survey)?;
        if !ui.structured() {
            show(ui, &connected.cluster, &plan, &survey);
        }
        connected.execute(&plan, &survey).await.map_err(runtime)?;
        Ok(())
    }))?;
    let seconds = started.elapsed().as_secs_f64();
    let about = &archive.manifest.about;
    ui.print(
        &serde_json::json!({"cluster": about.cluster, "revision": about.snapshot.revision, "seconds": seconds}),
        || {
            format!(
                "Cluster {} restored to revision {} in {seconds:.0}s\n",
                about.cluster, about.snapshot.revision
            )
        },
    );
    Ok(())
}

/// For commands that destroy data: the operator types the cluster's name after `what`.
pub(super) fn confirm_name(what: &str, cluster: &str) -> Result<bool, Failure> {
    Ok(super::ask(&format!("{what} Type its name ({cluster}) to go on: "))? == cluster)
}
