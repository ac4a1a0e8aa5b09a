//! `kubeha completion` and `kubeha man`: generated from the same clap model as the parser,
//! so they never drift from the commands.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{write_stdout, Cli, Failure, Ui};

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, powershell or elvish.
    shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write kubeha.1 and one page per command (kubeha-apply.1, …) into this folder
    /// instead of printing kubeha.1.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Prints a completion script: `source <(kubeha completion bash)`.
pub fn completion(_ui: &Ui, args: CompletionArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kubeha", &mut script);
    write_stdout(&script);
    Ok(())
}

/// Prints the man page, or writes every page into `--out`.
pub fn man(_ui: &Ui, args: ManArgs) -> Result<(), Failure> {
    let command = Cli::command();
    match args.out {
        Some(dir) => {
            let fail = |e: std::io::Error| {
                Failure::Runtime(format!(
                    "cannot write man pages into {}: {e}",
                    dir.display()
                ))
            };
            std::fs::create_dir_all(&dir).map_err(fail)?;
            clap_mangen::generate_to(command, &dir).map_err(fail)?;
            eprintln!("wrote the man pages into {}", dir.display());
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .expect("rendering into memory cannot fail");
            write_stdout(&page);
            Ok(())
        }
    }
}
