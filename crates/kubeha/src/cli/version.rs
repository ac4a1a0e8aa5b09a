//! `kubeha version`: the build and the versions a spec gets when it names none.

use serde::Serialize;

use super::{Failure, Ui};
use crate::spec::{DEFAULT_CALICO_VERSION, DEFAULT_KUBERNETES_VERSION};

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version: &'static str,
    /// `unknown` when built outside a git checkout.
    pub git_commit: &'static str,
    pub default_kubernetes_version: &'static str,
    pub default_calico_version: &'static str,
}

pub const VERSION: Version = Version {
    version: env!("CARGO_PKG_VERSION"),
    git_commit: env!("KUBEHA_GIT_COMMIT"),
    default_kubernetes_version: DEFAULT_KUBERNETES_VERSION,
    default_calico_version: DEFAULT_CALICO_VERSION,
};

impl Version {
    /// What `kubeha version` and `kubeha --version` print.
    pub fn text(&self) -> String {
        format!(
            "kubeha {} (commit {})\ndefault Kubernetes {}\ndefault Calico {}\n",
            self.version,
            self.git_commit,
            self.default_kubernetes_version,
            self.default_calico_version
        )
    }
}

pub fn run(ui: &Ui, _args: Args) -> Result<(), Failure> {
    ui.print(&VERSION, || VERSION.text());
    Ok(())
}
