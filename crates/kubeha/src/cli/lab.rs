//! `kubeha lab`: the seed's machines as local Docker containers (real sshd, systemd and
//! an apt mirror), and faults to inject into them. Provisioned by the same code path as
//! real hosts: `lab up` writes a cluster spec that `kubeha apply` uses like any other.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Subcommand;
use kubeha_lab::{Lab, LabConfig, Topology};

use super::remote_args::block_on;
use super::{Failure, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lab's name: part of every container, network and volume name.
    #[arg(long, global = true, default_value = "kubeha")]
    name: String,
    /// Where the lab keeps its SSH key, known_hosts, mirror key and cluster spec.
    #[arg(long, global = true, default_value = ".lab")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Create (or repair) the lab and write its cluster spec.
    Up {
        /// seed (1 load balancer, 3 control planes, 2 workers), seed-ha (2 load
        /// balancers and a virtual IP) or minimal (1 of each).
        #[arg(long, default_value = "seed")]
        topology: String,
        /// Overrides the topology's number of workers (default: as many as the lab has).
        /// Growing keeps every existing host as it is, with the same address.
        #[arg(long)]
        workers: Option<usize>,
        /// Overrides the topology's number of control planes, like --workers.
        #[arg(long)]
        control_planes: Option<usize>,
        /// Also copy the spec here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra .deb packages for the lab's mirror (the Kubernetes packages).
        #[arg(long)]
        debs: Vec<PathBuf>,
        /// A local Calico manifest for the spec (lab nodes have no internet).
        #[arg(long)]
        calico_manifest: Option<PathBuf>,
    },
    /// Add one fresh host (the next name and address of its role, e.g. cp-4) and rewrite
    /// the spec, leaving every other host as it is (a stopped or killed one stays so).
    AddHost {
        /// controlPlane or worker.
        #[arg(long)]
        role: String,
    },
    /// Replace a host with a new machine of the same name and role (nothing of its disk
    /// survives) and rewrite the spec, leaving every other host as it is.
    ReplaceHost {
        /// The host to replace, e.g. cp-1.
        host: String,
        /// Put the new machine at another address: 100 above its home one (cp-1 .11 at
        /// .111), or back home when it had moved.
        #[arg(long)]
        new_address: bool,
    },
    /// Remove every container, network and volume of the lab (the cached images stay).
    Down,
    /// Each host's roles, address and state.
    Status,
    /// Open a shell on a host, or run a command there.
    Ssh {
        host: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Inject a fault into a host: stop, start, kill, pause, unpause, restart,
    /// disconnect (from the lab network) or reconnect.
    Fault { fault: String, host: String },
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let lab_err = |e: kubeha_lab::Error| Failure::Runtime(e.to_string());
    match args.command {
        LabCommand::Up {
            topology,
            workers,
            control_planes,
            out,
            debs,
            calico_manifest,
        } => {
            let topology: Topology = topology
                .parse()
                .map_err(|e: kubeha_lab::Error| Failure::Invalid(e.to_string()))?;
            let config = LabConfig {
                name: args.name,
                topology,
                workers,
                control_planes,
                state_dir: args.state_dir,
                extra_debs: debs,
                calico_manifest,
                ..LabConfig::default()
            };
            let lab = block_on(kubeha_lab::up(&config)).map_err(lab_err)?;
            let spec = lab.cluster_yaml();
            let spec_path = lab.state_dir.join("cluster.yaml");
            if let Some(out) = &out {
                std::fs::write(out, &spec).map_err(|e| {
                    Failure::Runtime(format!("cannot write {}: {e}", out.display()))
                })?;
            }
            let spec_shown = out.as_ref().unwrap_or(&spec_path).display().to_string();
            ui.print(&lab, || {
                let mut text = String::new();
                for h in &lab.hosts {
                    let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
                    text += &format!("{:<12} {:<16} {}\n", h.name, h.address, roles.join(","));
                }
                text + &format!("spec: {spec_shown}\n")
            });
            Ok(())
        }
        LabCommand::AddHost { role } => {
            let role = role
                .parse()
                .map_err(|e: kubeha_lab::Error| Failure::Invalid(e.to_string()))?;
            let (lab, host) =
                block_on(kubeha_lab::add_host(&args.state_dir, role)).map_err(lab_err)?;
            print_new_host(ui, &lab, &host, "added");
            Ok(())
        }
        LabCommand::ReplaceHost { host, new_address } => {
            let (lab, host) = block_on(kubeha_lab::replace_host(
                &args.state_dir,
                &host,
                new_address,
            ))
            .map_err(lab_err)?;
            print_new_host(ui, &lab, &host, "is a new machine");
            Ok(())
        }
        LabCommand::Down => {
            block_on(kubeha_lab::down(&args.name, &args.state_dir)).map_err(lab_err)
        }
        LabCommand::Status => {
            let hosts = block_on(kubeha_lab::status(&args.name)).map_err(lab_err)?;
            ui.print(&hosts, || {
                let mut text = String::new();
                for h in &hosts {
                    let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
                    let net = if h.connected { "" } else { " (disconnected)" };
                    text += &format!(
                        "{:<12} {:<16} {:<24} {}{net}\n",
                        h.name,
                        h.address,
                        roles.join(","),
                        h.state
                    );
                }
                text
            });
            Ok(())
        }
        LabCommand::Ssh { host, command } => {
            let lab = Lab::load(&args.state_dir).map_err(lab_err)?;
            let argv = lab.ssh_command(&host, &command).map_err(lab_err)?;
            let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
            Err(Failure::Runtime(format!("cannot run ssh: {err}")))
        }
        LabCommand::Fault { fault, host } => {
            let lab = Lab::load(&args.state_dir).map_err(lab_err)?;
            block_on(async {
                match fault.as_str() {
                    "stop" => lab.stop(&host).await,
                    "start" => lab.start(&host).await,
                    "kill" => lab.kill(&host).await,
                    "pause" => lab.pause(&host).await,
                    "unpause" => lab.unpause(&host).await,
                    "restart" => lab.restart(&host).await,
                    "disconnect" => lab.disconnect(&host).await,
                    "reconnect" => lab.reconnect(&host).await,
                    other => {
                        return Err(Failure::Invalid(format!(
                            "unknown fault `{other}`: stop, start, kill, pause, unpause, restart, disconnect or reconnect"
                        )))
                    }
                }
                .map_err(lab_err)
            })
        }
    }
}

/// What `add-host` and `replace-host` print: the new host, `what` happened, and the spec.
fn print_new_host(ui: &Ui, lab: &Lab, host: &kubeha_lab::Host, what: &str) {
    ui.print(host, || {
        format!(
            "{} {} {what}; spec: {}\n",
            host.name,
            host.address,
            lab.state_dir.join("cluster.yaml").display()
        )
    });
}
