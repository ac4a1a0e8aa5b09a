//! `kubeha check`: offline validation.

use std::path::PathBuf;

use super::{load_spec, Failure, Ui};
use crate::spec::{Role, Severity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster spec.
    #[arg(short = 'f', long = "file", default_value = "cluster.yaml")]
    file: PathBuf,
    /// Treat warnings as errors (exit 2).
    #[arg(long)]
    warnings_as_errors: bool,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.file)?;
    let c = &loaded.cluster;
    let warnings = loaded.report.count(Severity::Warning);
    let refused = args.warnings_as_errors && warnings > 0;
    let mut doc = loaded.report.to_json();
    doc["valid"] = (!refused).into();
    doc["cluster"] = serde_json::to_value(c).expect("the model serializes");
    ui.print(&doc, || {
        let count = |role| c.hosts_with(role).count();
        format!(
                "{}: cluster {} is valid: {} hosts ({} load balancer(s), {} control plane(s), {} worker(s)), Kubernetes {}, endpoint {}{}\n",
                args.file.display(),
                c.name,
                c.hosts.len(),
                count(Role::LoadBalancer),
                count(Role::ControlPlane),
                count(Role::Worker),
                c.kubernetes.version,
                c.api_endpoint,
                match warnings {
                    0 => String::new(),
                    n => format!(", {n} warning(s)"),
                }
            )
    });
    if refused {
        return Err(Failure::Invalid(format!(
            "{warnings} warning(s) and --warnings-as-errors"
        )));
    }
    Ok(())
}
