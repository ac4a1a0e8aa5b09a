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
            Format::Json => as_json(&kubeconfig)?,
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

/// The kubeconfig as one line of JSON, as `kubectl config view --raw -o json` gives it.
fn as_json(kubeconfig: &str) -> Result<String, Failure> {
    let doc: serde_json::Value = serde_saphyr::from_str(kubeconfig).map_err(|e| {
        Failure::Runtime(format!("the cluster's admin kubeconfig is not YAML: {e}"))
    })?;
    Ok(format!("{doc}\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kubeconfig_converts_to_json_unchanged() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://load-balancer.local:6443\n  name: k8s-ha\ncurrent-context: kubernetes-admin@k8s-ha\nusers:\n- name: kubernetes-admin\n  user:\n    client-key-data: S0VZ\n";
        let json: serde_json::Value = serde_json::from_str(&super::as_json(yaml).unwrap()).unwrap();
        assert_eq!(
            json["clusters"][0]["cluster"]["server"],
            "https://load-balancer.local:6443"
        );
        assert_eq!(json["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(json["current-context"], "kubernetes-admin@k8s-ha");
        assert!(super::as_json("a: [").is_err());
    }
}
