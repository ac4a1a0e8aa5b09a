//! `kubeha kubeconfig`: the admin kubeconfig, written 0600 or printed.

use std::io::Write;
use std::path::PathBuf;

use super::remote_args::{block_on, RemoteArgs};
use super::{load_spec, Failure, Format, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Write here instead of the default path; `-` prints it.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.remote.file)?;
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| args.remote.kubeconfig_path(&loaded.cluster.name));
    let kubeconfig = block_on(args.remote.session(ui, loaded, async |connected| {
        connected
            .survey()
            .await
            .map_err(super::remote_args::runtime)?
            .kubeconfig
            .ok_or_else(|| {
                Failure::Runtime("no control plane is initialised: run `kubeha apply` first".into())
            })
    }))?;
    if path.as_os_str() == "-" {
        // The kubeconfig is YAML already; `-o json` converts it as `kubectl config view -o json` does.
        let text = match ui.format {
            Format::Json => {
                let doc: serde_json::Value = serde_saphyr::from_str(&kubeconfig).map_err(|e| {
                    Failure::Runtime(format!("the cluster's admin kubeconfig is not YAML: {e}"))
                })?;
                format!("{doc}\n")
            }
            _ => kubeconfig,
        };
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Failure::Runtime(e.to_string()))?;
    } else {
        crate::apply::write_private(&path, kubeconfig.as_bytes()).map_err(Failure::Runtime)?;
        eprintln!("wrote {} (mode 0600)", path.display());
        ui.print(
            &serde_json::json!({ "kubeconfig": path, "mode": "0600" }),
            String::new,
        );
    }
    Ok(())
}
