//! `kubeha certs check|renew`: certificate expiry per control plane, and renewal one
//! control plane at a time with the local admin kubeconfig refreshed afterwards.

use std::fmt::Write as _;
use std::io::IsTerminal;

use super::backup::with_survey;
use super::remote_args::{runtime, RemoteArgs};
use super::{load_spec, Failure, Ui};
use crate::dr::certs::{self, Expiry, WARN_DAYS};
use crate::probe::Probe;
use crate::verify::ApiAvailability;

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
    /// `kubeadm certs renew all` on each control plane in turn, out of the load
    /// balancers while its static pods restart one by one, then the local admin
    /// kubeconfig; prints the API availability it measured through the endpoint.
    Renew {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Renew without showing the steps and asking first.
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
    let terminal = std::io::stdin().is_terminal();
    if !yes && !terminal {
        return Err(Failure::Invalid(
            "certs renew changes hosts: pass --yes to run it without a terminal".into(),
        ));
    }
    let started = std::time::Instant::now();
    let kubeconfig = remote.kubeconfig_path(&loaded.cluster.name);
    let (steps, availability) = with_survey(ui, remote, loaded, async |connected, survey| {
        let steps = certs::renew_steps(connected, survey).map_err(runtime)?;
        if !ui.structured() {
            eprintln!("Renewing the certificates, one control plane at a time:");
            for s in &steps {
                eprintln!("  {s}");
            }
        }
        if !yes
            && !matches!(
                super::ask("Renew them now? [y/N] ")?.as_str(),
                "y" | "Y" | "yes"
            )
        {
            return Err(Failure::Invalid("nothing was changed".into()));
        }
        // What the API's users had through the endpoint while it ran.
        let probe = match &survey.kubeconfig {
            Some(k) => Some(Probe::start(
                &crate::api::client(k)
                    .await
                    .map_err(|e| Failure::Runtime(e.to_string()))?,
            )),
            None => None,
        };
        let renewed = certs::renew(connected, &steps).await;
        let availability = match probe {
            Some(p) => Some(ApiAvailability::from_samples(&p.finish().await)),
            None => None,
        };
        if let Some(admin) = renewed.map_err(runtime)? {
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
        Ok((steps, availability))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
    ui.print(
        &serde_json::json!({
            "seconds": seconds,
            "steps": steps,
            "kubeconfig": kubeconfig,
            "availability": availability,
        }),
        || {
            let mut out = format!(
                "Certificates renewed in {seconds:.0}s; admin kubeconfig refreshed at {}\n",
                kubeconfig.display()
            );
            if let Some(a) = &availability {
                let _ = writeln!(out, "{a}");
            }
            out
        },
    );
    Ok(())
}
