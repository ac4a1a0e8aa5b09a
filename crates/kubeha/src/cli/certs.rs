//! `kubeha certs check|renew`: certificate expiry per control plane, and renewal one
//! control plane at a time with the local admin kubeconfig refreshed afterwards.

use std::fmt::Write as _;
use std::io::IsTerminal;

use super::backup::with_survey;
use super::remote_args::{runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::dr::certs::{self, Expiry, WARN_DAYS};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Expiry of every certificate on every control plane (warns under 30 days).
    Check {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// `kubeadm certs renew all` on each control plane in turn, restarting its static
    /// pods one by one, then the local admin kubeconfig.
    Renew {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Renew without asking for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Check { remote } => check(ui, &remote),
        Command::Renew { remote, yes } => renew(ui, &remote, yes),
    }
}

fn check(ui: &Ui, remote: &RemoteArgs) -> Result<(), Failure> {
    let loaded = load_spec(ui, &remote.file)?;
    let (expiries, problems) = with_survey(ui, remote, loaded, async |c, survey| {
        certs::check(c, survey).await.map_err(runtime)
    })?;
    ui.print(
        &serde_json::json!({"certificates": expiries, "problems": problems, "warnDays": WARN_DAYS}),
        || text(&expiries, &problems),
    );
    Ok(())
}

fn text(expiries: &[Expiry], problems: &[String]) -> String {
    let mut out = String::new();
    for e in expiries {
        let flag = if e.warn() { "  WARNING" } else { "" };
        let _ = writeln!(
            out,
            "{:<12} {:<52} {:>5} days{flag}",
            e.host, e.file, e.days_left
        );
    }
    for p in problems {
        let _ = writeln!(out, "problem: {p}");
    }
    out
}

fn renew(ui: &Ui, remote: &RemoteArgs, yes: bool) -> Result<(), Failure> {
    let loaded = load_spec(ui, &remote.file)?;
    if !yes {
        return Err(Failure::Invalid(if std::io::stdin().is_terminal() {
            "certs renew restarts every control plane's static pods: pass --yes to go ahead".into()
        } else {
            "certs renew changes hosts: pass --yes to run it without a terminal".into()
        }));
    }
    let started = std::time::Instant::now();
    let kubeconfig = remote.kubeconfig_path(&loaded.cluster.name);
    with_survey(ui, remote, loaded, async |connected, survey| {
        let admin = certs::renew(connected, survey).await.map_err(runtime)?;
        if let Some(admin) = admin {
            let text = String::from_utf8(admin)
                .map_err(|_| Failure::Runtime("admin.conf is not UTF-8".into()))?;
            let trusted = crate::api::trusted_kubeconfig(
                &text,
                &format!("https://{}", connected.cluster.api_endpoint),
            )
            .map_err(|e| Failure::Runtime(format!("admin.conf: {e}")))?;
            crate::remote::write_private(&kubeconfig, trusted.as_bytes())
                .map_err(Failure::Runtime)?;
        }
        Ok(())
    })?;
    println!(
        "Certificates renewed in {:.0}s; admin kubeconfig refreshed at {}",
        started.elapsed().as_secs_f64(),
        kubeconfig.display()
    );
    Ok(())
}
