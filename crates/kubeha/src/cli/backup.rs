//! `kubeha backup`: an etcd snapshot, the cluster PKI and the kubeadm
//! ClusterConfiguration in one verified archive on the operator's machine (0600); with
//! `--schedule`, a systemd timer on every control plane keeping N local snapshots instead.

use std::path::PathBuf;
use std::time::Instant;

use super::remote_args::{block_on, runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::apply::{Connected, Survey};
use crate::dr;
use crate::render::etcd_backup::{self, Schedule};
use crate::spec::Loaded;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Folder the archive is written to (default: .kubeha/<cluster>/backups beside the spec).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Encrypt the archive to this age X25519 recipient (`age1…`, from `age-keygen`);
    /// repeat for several. `restore --identity` opens it, and so does `age -d`.
    #[arg(long, value_name = "RECIPIENT", conflicts_with_all = ["passphrase_file", "passphrase_env"])]
    encrypt_to: Vec<String>,
    /// Encrypt the archive with a passphrase instead (never given on the command line).
    #[command(flatten)]
    passphrase: super::passphrase::PassphraseArgs,
    /// Instead of an archive here: a systemd timer on every control plane taking a local
    /// etcd snapshot (verified, 0600, in /var/lib/kubeha/backups) on this systemd calendar
    /// expression: `daily`, `hourly`, `*-*-* 02:30:00`. Run it again to change it.
    #[arg(long, value_name = "CALENDAR", conflicts_with_all = ["out", "encrypt_to", "passphrase_file", "passphrase_env", "unschedule", "list"])]
    schedule: Option<String>,
    /// How many scheduled snapshots each control plane keeps (the oldest go first).
    #[arg(long, value_name = "N", requires = "schedule")]
    keep: Option<u32>,
    /// Remove the timer from every control plane; the snapshots it took stay.
    #[arg(long, conflicts_with_all = ["out", "encrypt_to", "passphrase_file", "passphrase_env", "list"])]
    unschedule: bool,
    /// Show each control plane's schedule and the local snapshots it keeps.
    #[arg(long, conflicts_with_all = ["out", "encrypt_to", "passphrase_file", "passphrase_env"])]
    list: bool,
}

/// What `--keep` is when not given.
const KEEP: u32 = 7;

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    if let Some(calendar) = &args.schedule {
        let schedule =
            Schedule::new(calendar, args.keep.unwrap_or(KEEP)).map_err(Failure::Invalid)?;
        return schedule_on_hosts(ui, &args.remote, &schedule);
    }
    if args.unschedule || args.list {
        return unschedule_or_list(ui, &args.remote, args.unschedule);
    }
    let recipients = args
        .encrypt_to
        .iter()
        .map(|r| dr::encrypt::parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Invalid(format!("--encrypt-to: {e}")))?;
    let sealing = match args.passphrase.read()? {
        Some(p) => Some(dr::encrypt::Sealing::Passphrase(p)),
        None if recipients.is_empty() => None,
        None => Some(dr::encrypt::Sealing::Recipients(recipients)),
    };
    let loaded = load_spec(ui, &args.remote.file)?;
    let started = Instant::now();
    let name = loaded.cluster.name.clone();
    let dir = args
        .out
        .unwrap_or_else(|| dr::backups_dir(&args.remote.spec_dir(), &name));
    let (path, archive, bytes) = with_survey(ui, &args.remote, loaded, async |c, survey| {
        dr::save_backup_to(c, survey, &dir, sealing.as_ref())
            .await
            .map_err(runtime)
    })?;
    let m = &archive.manifest.about;
    let seconds = started.elapsed().as_secs_f64();
    let passphrase = matches!(sealing, Some(dr::encrypt::Sealing::Passphrase(_)));
    ui.print(
        &serde_json::json!({"path": path, "bytes": bytes, "seconds": seconds, "encryptedTo": args.encrypt_to, "passphrase": passphrase, "manifest": archive.manifest}),
        || {
            format!(
                "Backup of {name} written to {}{} ({} bytes, {seconds:.1}s): etcd {} revision {}, {} keys, from {}\n",
                path.display(),
                match (&sealing, passphrase) {
                    (None, _) => "",
                    (Some(_), true) => ", encrypted with the passphrase",
                    (Some(_), false) => ", encrypted",
                },
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

fn schedule_on_hosts(ui: &Ui, remote: &RemoteArgs, schedule: &Schedule) -> Result<(), Failure> {
    let loaded = load_spec(ui, &remote.file)?;
    let hosts = with_survey(ui, remote, loaded, async |c, survey| {
        dr::schedule::install(c, survey, schedule)
            .await
            .map_err(runtime)
    })?;
    ui.print(
        &serde_json::json!({"scheduled": {"hosts": hosts, "calendar": schedule.calendar, "keep": schedule.keep, "dir": etcd_backup::DIR}}),
        || {
            format!(
                "etcd snapshots scheduled on {} ({}): the newest {} kept in {} on each; \
                 `kubeha backup --list` shows them\n",
                hosts.join(", "),
                schedule.calendar,
                schedule.keep,
                etcd_backup::DIR
            )
        },
    );
    Ok(())
}

fn unschedule_or_list(ui: &Ui, remote: &RemoteArgs, unschedule: bool) -> Result<(), Failure> {
    let loaded = load_spec(ui, &remote.file)?;
    if unschedule {
        let hosts = block_on(remote.session(ui, loaded, async |c| {
            dr::schedule::remove(c).await.map_err(runtime)
        }))?;
        ui.print(&serde_json::json!({"unscheduled": hosts}), || {
            format!(
                "No scheduled etcd snapshots on {} any more; those taken stay in {}\n",
                hosts.join(", "),
                etcd_backup::DIR
            )
        });
        return Ok(());
    }
    let listing = block_on(remote.session(ui, loaded, async |c| {
        dr::schedule::list(c).await.map_err(runtime)
    }))?;
    let doc: Vec<serde_json::Value> = listing
        .iter()
        .map(|(host, l)| {
            let mut v = serde_json::to_value(l).expect("a listing serializes");
            v["host"] = host.clone().into();
            v
        })
        .collect();
    ui.print(&serde_json::json!({"controlPlanes": doc}), || {
        let mut out = String::new();
        for (host, l) in &listing {
            let timer = match (&l.calendar, l.scheduled) {
                (Some(cal), true) => format!(
                    "scheduled {cal}, next {}",
                    l.next.as_deref().unwrap_or("unknown")
                ),
                _ => "not scheduled".into(),
            };
            out.push_str(&format!(
                "{host}: {timer}; {} local snapshot(s)\n",
                l.snapshots.len()
            ));
            for s in &l.snapshots {
                out.push_str(&format!(
                    "  {}  {} bytes  mode {}\n",
                    s.path, s.bytes, s.mode
                ));
            }
        }
        out
    });
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
