//! `kubeha init`: the starter spec.

use std::io::Write;
use std::path::PathBuf;

use super::{Failure, Ui};
use crate::spec::starter::STARTER_SPEC;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the spec; `-` prints it.
    #[arg(long, default_value = "cluster.yaml")]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(_ui: &Ui, args: Args) -> Result<(), Failure> {
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(STARTER_SPEC.as_bytes())
            .map_err(|e| Failure::Runtime(format!("cannot write the spec: {e}")))?;
        return Ok(());
    }
    if args.out.exists() && !args.force {
        return Err(Failure::Invalid(format!(
            "{} already exists; pass --force to replace it",
            args.out.display()
        )));
    }
    std::fs::write(&args.out, STARTER_SPEC)
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", args.out.display())))?;
    eprintln!(
        "wrote {}: edit the hosts, then run `kubeha check -f {0}`",
        args.out.display()
    );
    Ok(())
}
