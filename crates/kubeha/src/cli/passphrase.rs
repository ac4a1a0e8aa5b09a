//! `--passphrase-file` / `--passphrase-env`: where `backup` and `restore` read a
//! backup's passphrase. Never from argv (where `ps` and shell history would show it);
//! a file must be private to its owner, as ssh demands of a key.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::Failure;
use crate::dr::encrypt::SecretString;

#[derive(Debug, clap::Args)]
pub struct PassphraseArgs {
    /// The archive's passphrase (age's scrypt): the first line of FILE, which must be
    /// private to its owner (mode 0600 or 0400).
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// The archive's passphrase, from the environment variable VAR (its name, not its value).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

impl PassphraseArgs {
    /// The passphrase, when one was named. The text is never put in an error.
    pub fn read(&self) -> Result<Option<SecretString>, Failure> {
        let text = match (&self.passphrase_file, &self.passphrase_env) {
            (Some(file), _) => {
                let shown = file.display();
                let meta = std::fs::metadata(file)
                    .map_err(|e| Failure::Invalid(format!("--passphrase-file {shown}: {e}")))?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(Failure::Invalid(format!(
                        "--passphrase-file {shown}: readable by others (mode {mode:04o}): `chmod 600` it first"
                    )));
                }
                let bytes = std::fs::read(file)
                    .map_err(|e| Failure::Invalid(format!("--passphrase-file {shown}: {e}")))?;
                String::from_utf8(bytes).map_err(|_| {
                    Failure::Invalid(format!("--passphrase-file {shown}: not UTF-8 text"))
                })?
            }
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                Failure::Invalid(format!(
                    "--passphrase-env {var}: no such environment variable (or not UTF-8)"
                ))
            })?,
            (None, None) => return Ok(None),
        };
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(Failure::Invalid(
                "the passphrase is empty: a backup sealed with it would be open to anyone".into(),
            ));
        }
        Ok(Some(SecretString::from(line.to_string())))
    }
}
