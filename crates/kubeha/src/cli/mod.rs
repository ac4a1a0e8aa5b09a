//! The command line: parse arguments, run one command, map its outcome to an exit code
//! (0 success, 1 runtime failure, 2 invalid input).

mod apply;
mod backup;
mod certs;
mod check;
mod generate;
#[cfg(test)]
mod golden;
mod init;
mod kubeconfig;
mod lab;
mod node;
mod passphrase;
mod plan;
pub mod remote_args;
mod render;
mod reset;
mod restore;
mod schema;
pub mod status;
mod upgrade;
mod verify;
pub mod version;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::spec::{self, Loaded, Report};

#[derive(Debug, Parser)]
#[command(
    name = "kubeha",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KUBEHA_GIT_COMMIT"), ")"),
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
    /// More diagnostics on stderr: -v for info, -vv for debug, -vvv for trace
    /// (RUST_LOG, e.g. `RUST_LOG=kubeha=debug`, overrides it).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: tables and sentences on stdout, progress and diagnostics on stderr.
    Text,
    /// Exactly one JSON document on stdout (progress stays on stderr).
    Json,
    /// Exactly one YAML document on stdout (progress stays on stderr).
    Yaml,
    /// One JSON object a line on stdout: progress events, then the result (see the README).
    Ndjson,
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
    /// Remove or replace a control plane or worker without breaking etcd's quorum.
    Node(node::Args),
    /// Rolling Kubernetes upgrade, one minor at a time, keeping the API up.
    Upgrade(upgrade::Args),
    /// The seed's machines as local Docker containers, for trying kubeha and testing it.
    Lab(lab::Args),
    /// kubeha's version and commit, and the Kubernetes and Calico versions it defaults to.
    Version(version::Args),
    /// Print a shell completion script: `source <(kubeha completion bash)`.
    Completion(generate::CompletionArgs),
    /// Print the man page (roff), or write one page per command with --out.
    Man(generate::ManArgs),
    /// Print a JSON Schema of cluster.yaml for editors (YAML language server).
    Schema(schema::Args),
}

/// Settings every command shares.
#[derive(Debug, Clone, Copy)]
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
    /// Ctrl-C stopped the work (exit 130, as shells report it); says what state it left.
    Interrupted(String),
}

pub fn main() -> ExitCode {
    // `--version` prints the same lines as `kubeha version`, built at run time from the
    // spec's defaults, so the parser is built by hand rather than by `Cli::parse`.
    let text = version::VERSION.text();
    // clap prints the name itself and ends the line.
    let long_version = text.trim_end().trim_start_matches("kubeha ").to_string();
    let long_version: &'static str = Box::leak(long_version.into_boxed_str());
    let matches = Cli::command().long_version(long_version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let interactive = std::io::stderr().is_terminal();
    let ui = Ui {
        format: cli.output,
        color: !cli.no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && interactive,
        interactive,
    };
    init_tracing(cli.verbose, ui.color);
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
        Command::Node(args) => node::run(&ui, args),
        Command::Upgrade(args) => upgrade::run(&ui, args),
        Command::Lab(args) => lab::run(&ui, args),
        Command::Version(args) => version::run(&ui, args),
        Command::Completion(args) => generate::completion(&ui, args),
        Command::Man(args) => generate::man(&ui, args),
        Command::Schema(args) => schema::run(&ui, args),
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
            if ui.interactive {
                // Live progress lines may have left the cursor at the end of the last one.
                eprintln!();
            }
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(Failure::Interrupted(message)) => {
            eprintln!("{message}");
            ExitCode::from(130)
        }
    }
}

/// Diagnostics on stderr through `tracing`: warnings by default, more with each `-v`;
/// `RUST_LOG` (an `EnvFilter` directive) wins when set. Per-host command logs are files
/// of their own and are not affected.
fn init_tracing(verbose: u8, color: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "warn,kubeha=info",
            2 => "info,kubeha=debug",
            _ => "debug,kubeha=trace",
        }),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| AboveProgress(Vec::new()))
        .with_ansi(color)
        .with_target(verbose >= 2)
        .without_time()
        .init();
}

/// A diagnostics line, written to stderr in one piece above any live progress lines.
struct AboveProgress(Vec<u8>);

impl Write for AboveProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveProgress {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        crate::apply::progress::terminal_lines().suspend(|| {
            let _ = std::io::stderr().write_all(&line);
        });
    }
}

impl Ui {
    /// Prints a command's result on stdout: the text for people, or exactly one
    /// document, or (ndjson) one `{"event":"result","result":…}` line after the events.
    pub fn print<T: Serialize>(&self, doc: &T, text: impl FnOnce() -> String) {
        let out = match self.format {
            Format::Text => text(),
            Format::Json => serde_json::to_string(doc).expect("results serialize") + "\n",
            Format::Yaml => to_yaml(doc),
            Format::Ndjson => {
                serde_json::json!({ "event": "result", "result": doc }).to_string() + "\n"
            }
        };
        write_stdout(out.as_bytes());
    }

    /// Whether stdout carries a machine-readable document instead of text.
    pub fn structured(&self) -> bool {
        self.format != Format::Text
    }
}

/// Asks the operator on stderr and returns the answer's line, trimmed.
fn ask(prompt: &str) -> Result<String, Failure> {
    use std::io::BufRead as _;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Runtime(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim().to_string())
}

/// Writes a command's output; a reader that stopped early (`| head`) is not worth a panic.
fn write_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// YAML as kubectl prints it: one document, no `---` marker.
fn to_yaml<T: Serialize>(doc: &T) -> String {
    // Through a JSON value so maps with non-string keys and tuples look as they do in JSON.
    let value = serde_json::to_value(doc).expect("results serialize");
    serde_saphyr::to_string(&value).expect("a JSON value serializes as YAML")
}

/// Diagnostics go to stderr as text, or to stdout as one document.
fn print_report(ui: &Ui, report: &Report) {
    match ui.format {
        Format::Text => eprint!("{}", report.render(ui.color)),
        _ => ui.print(&report.to_json(), String::new),
    }
}

/// Loads the spec named by `-f`, printing warnings to stderr; errors become
/// [`Failure::InvalidSpec`].
fn load_spec(ui: &Ui, file: &Path) -> Result<Loaded, Failure> {
    let loaded = spec::load_file(file).map_err(|r| Failure::InvalidSpec(Box::new(r)))?;
    tracing::info!(
        file = %file.display(),
        cluster = %loaded.cluster.name,
        hosts = loaded.cluster.hosts.len(),
        "spec is valid"
    );
    eprint!("{}", loaded.report.render(ui.color));
    Ok(loaded)
}
