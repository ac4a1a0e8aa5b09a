//! The command line: parse arguments, run one command, map its outcome to an exit code
//! (0 success, 1 runtime failure, 2 invalid input).

mod apply;
mod backup;
mod certs;
mod check;
mod init;
mod kubeconfig;
mod lab;
mod plan;
pub mod remote_args;
mod render;
mod reset;
mod restore;
pub mod status;
mod verify;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::spec::{self, Loaded, Report};

#[derive(Debug, Parser)]
#[command(
    name = "kubeha",
    version,
    about = "Turns plain Linux machines into a highly-available Kubernetes cluster",
    long_about = None
)]
struct Cli {
    /// Output format for structured results.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Never colour the output (the NO_COLOR environment variable does the same).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented starter cluster.yaml (the seed's topology).
    Init(init::Args),
    /// Validate a cluster spec offline.
    Check(check::Args),
    /// Write every file kubeha would put on the hosts, and an equivalent runbook.sh.
    Render(render::Args),
    /// Connect, gather facts and show what `apply` would change; changes nothing.
    Plan(plan::Args),
    /// Make the hosts match the spec: load balancers, nodes, kubeadm, Calico.
    Apply(apply::Args),
    /// Nodes, etcd members, load-balancer backends and certificate expiry.
    Status(status::Args),
    /// Write or print the admin kubeconfig.
    Kubeconfig(kubeconfig::Args),
    /// Prove the HA claim: health checks, and with --disruptive failover drills.
    Verify(verify::Args),
    /// Save etcd, the cluster PKI and the kubeadm configuration into one archive.
    Backup(backup::Args),
    /// Bring a cluster whose control planes lost etcd back from a `backup` archive.
    Restore(restore::Args),
    /// Take every host back to before `apply` (asks for the cluster's name).
    Reset(reset::Args),
    /// Certificate expiry per control plane, and renewal.
    Certs(certs::Args),
    /// The seed's machines as local Docker containers, for trying kubeha and testing it.
    Lab(lab::Args),
}

/// Settings every command shares.
pub struct Ui {
    pub format: Format,
    pub color: bool,
    /// stderr is a terminal: show live progress.
    pub interactive: bool,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The input was wrong; nothing was touched (exit 2).
    Invalid(String),
    /// The spec failed validation (exit 2); the report says where.
    InvalidSpec(Box<Report>),
    /// Something went wrong while doing the work (exit 1).
    Runtime(String),
    /// Not a failure: a command-specific exit code (`plan --detailed-exitcode`).
    Exit(u8),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let interactive = std::io::stderr().is_terminal();
    let ui = Ui {
        format: cli.output,
        color: !cli.no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && interactive,
        interactive,
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&ui, args),
        Command::Check(args) => check::run(&ui, args),
        Command::Render(args) => render::run(&ui, args),
        Command::Plan(args) => plan::run(&ui, args),
        Command::Apply(args) => apply::run(&ui, args),
        Command::Status(args) => status::run(&ui, args),
        Command::Kubeconfig(args) => kubeconfig::run(&ui, args),
        Command::Verify(args) => verify::run(&ui, args),
        Command::Backup(args) => backup::run(&ui, args),
        Command::Restore(args) => restore::run(&ui, args),
        Command::Reset(args) => reset::run(&ui, args),
        Command::Certs(args) => certs::run(&ui, args),
        Command::Lab(args) => lab::run(&ui, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::InvalidSpec(report)) => {
            print_report(&ui, &report);
            ExitCode::from(2)
        }
        Err(Failure::Invalid(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

/// Diagnostics go to stderr as text, or to stdout as one JSON document.
fn print_report(ui: &Ui, report: &Report) {
    match ui.format {
        Format::Json => println!("{}", report.to_json()),
        Format::Text => eprint!("{}", report.render(ui.color)),
    }
}

/// Loads the spec named by `-f`, printing warnings; errors become [`Failure::InvalidSpec`].
fn load_spec(ui: &Ui, file: &Path) -> Result<Loaded, Failure> {
    let loaded = spec::load_file(file).map_err(|r| Failure::InvalidSpec(Box::new(r)))?;
    if ui.format == Format::Text {
        eprint!("{}", loaded.report.render(ui.color));
    }
    Ok(loaded)
}
