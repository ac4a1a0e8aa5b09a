//! SSH to the hosts: one multiplexed OpenSSH connection per host, reused for every
//! command and file of a run, and kept briefly for the next run (see [`reuse`]). Commands
//! reach the master through its control socket from this process (openssh's native mux
//! client): the master is the only ssh process a host costs, however many commands it gets.
//! Commands run as root (through `sudo -n` for other users), with a timeout, and
//! everything a host prints is kept in a per-host log with known secrets redacted.

mod local_files;
mod redact;
mod reuse;
mod ssh_config;

use openssh::Stdio;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh::{Child, ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

pub use local_files::write_private;
pub use redact::{redact_shapes, Redactor};
pub use reuse::{masters_reused, masters_started, REUSE_ENV};
pub use ssh_config::render as ssh_config;

use crate::quote::shell as quote;
use crate::spec::{Cluster, Host, HostKeyPolicy};

/// A failure to reach or drive one host. Built only through [`RemoteError::new`], which
/// redacts, so that no error carries a secret a host printed.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {what}: {detail}")]
pub struct RemoteError {
    host: String,
    what: String,
    detail: String,
}

impl RemoteError {
    pub fn new(redactor: &Redactor, host: &str, what: &str, detail: &str) -> Self {
        Self {
            host: host.to_string(),
            what: redactor.redact(what),
            detail: redactor.redact(detail),
        }
    }
}

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Where a run keeps its per-host logs (0600) and its SSH client configuration, in a
/// folder only the operator can read.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    /// The private folder of masters kept between runs, unless reuse is off.
    reuse: Option<PathBuf>,
    /// What the run's ssh_config says, and the known_hosts file as this run found it:
    /// both in the key of a kept master.
    config_text: String,
    known_hosts: Option<Vec<u8>>,
}

impl RunDir {
    /// Creates the folder and writes the run's ssh_config, once and atomically, before
    /// any connection reads it.
    pub fn create(path: &Path, cluster: &Cluster) -> Result<Self, String> {
        local_files::create_run_dir(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let config = ssh_config(cluster).map_err(|e| format!("spec.ssh: {e}"))?;
        let reuse = if reuse::wanted() {
            reuse::base_dir()
                .map_err(|e| tracing::warn!("not reusing SSH connections: {e}"))
                .ok()
        } else {
            None
        };
        let run = Self {
            path: path.to_path_buf(),
            reuse,
            known_hosts: std::fs::read(&cluster.ssh.known_hosts_file).ok(),
            config_text: config,
        };
        write_private(&run.ssh_config(), run.config_text.as_bytes())?;
        Ok(run)
    }

    fn ssh_config(&self) -> PathBuf {
        self.path.join("ssh_config")
    }

    /// The private folder for the masters of exactly this host's connection, if reuse is
    /// on and the folder is sound.
    fn master_slot(&self, cluster: &Cluster, host: &Host, destination: &str) -> Option<PathBuf> {
        let base = self.reuse.as_ref()?;
        let ssh = &cluster.ssh;
        let key = reuse::socket_key(&reuse::KeyInputs {
            user: &host.ssh.user,
            address: destination,
            port: host.ssh.port,
            identity_file: host.ssh.identity_file.as_deref(),
            known_hosts_file: &ssh.known_hosts_file,
            known_hosts: self.known_hosts.as_deref(),
            host_key_policy: match ssh.host_key_policy {
                HostKeyPolicy::Verify => "verify",
                HostKeyPolicy::AcceptNew => "acceptNew",
            },
            bastion: ssh.bastion.as_ref().map(|b| {
                (
                    b.address.as_str(),
                    b.port,
                    b.user.as_str(),
                    b.identity_file.as_deref(),
                )
            }),
            ssh_config: &self.config_text,
        });
        let slot = base.join(key);
        reuse::private_dir(&slot)
            .map_err(|e| tracing::warn!(host = %host.name, "not reusing its SSH connection: {e}"))
            .ok()?;
        Some(slot)
    }
}

/// Output lines that begin with this carry a secret: [`Remote::run_keeping_secrets`]
/// keeps them out of the log and out of errors.
pub const SECRET_PREFIX: &str = "secret.";

/// What the shell prints on stderr first when `sudo -n` let it start: without it, sudo
/// refused (and printed why), so no command can run as root on the host.
const AS_ROOT: &str = "kubeha: running as root\n";

/// What the shell prints last on stderr, exiting 1, when the script exited 127: the
/// openssh crate takes a remote 127 for "ssh could not start the command" and drops the
/// output, yet 127 is just what a script whose last command is missing returns (etcdctl
/// on a machine not yet prepared).
const EXITED_127: &str = "kubeha: exit 127\n";

/// The command line that runs `script` as root through `sudo -n` (printing [`AS_ROOT`]
/// first) or as the SSH user, reporting an exit of 127 as [`EXITED_127`].
fn command_line(script: &str, sudo: bool) -> Result<String, crate::quote::Unquotable> {
    let inner = format!(
        "sh -c {}\nrc=$?\nif [ $rc -eq 127 ]; then printf '{EXITED_127}' >&2; exit 1; fi\nexit $rc",
        crate::quote::try_shell(script)?
    );
    Ok(if sudo {
        let root = format!("printf '{AS_ROOT}' >&2\n{inner}");
        format!("sudo -n sh -c {}", crate::quote::try_shell(&root)?)
    } else {
        format!("sh -c {}", crate::quote::try_shell(&inner)?)
    })
}

/// The script's own exit code, taking [`EXITED_127`] off `stderr`.
fn script_exit(code: Option<i32>, stderr: &mut String) -> Option<i32> {
    match stderr.strip_suffix(EXITED_127) {
        Some(rest) if code == Some(1) => {
            stderr.truncate(rest.len());
            Some(127)
        }
        _ => code,
    }
}

/// Whether a command's output goes into the host's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logged {
    Everything,
    /// Everything but the lines starting with [`SECRET_PREFIX`].
    KeepingSecrets,
    /// The command line and its exit only: file reads return kubeconfigs and keys.
    CommandOnly,
}

pub struct Remote {
    pub host: String,
    session: Arc<Session>,
    /// The session that keeps a kept master busy while this run lasts (see [`reuse`]);
    /// `None` for a master that is closed with the run.
    hold: Mutex<Option<Child<Arc<Session>>>>,
    sudo: bool,
    timeout: Duration,
    log: Mutex<std::fs::File>,
    redactor: Arc<Redactor>,
}

impl Remote {
    /// Opens the host's master connection, verifying its host key per the spec's policy.
    pub async fn connect(
        cluster: &Cluster,
        host: &Host,
        run: &RunDir,
        redactor: Arc<Redactor>,
        timeout: Duration,
    ) -> Result<Self, RemoteError> {
        let scrub = redactor.clone();
        let fail = |what: &str, detail: String| RemoteError::new(&scrub, &host.name, what, &detail);
        let config = run.ssh_config();
        let log_path = run.path.join(format!("{}.log", host.name));
        let mut log = local_files::open_log(&log_path)
            .map_err(|e| fail("cannot open the host log", e.to_string()))?;

        let ssh = &cluster.ssh;
        let mut builder = SessionBuilder::default();
        builder
            .config_file(&config)
            .user(host.ssh.user.clone())
            .port(host.ssh.port)
            .connect_timeout(ssh.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            // UserKnownHostsFile comes from the run's ssh_config, quoted: as `-o` on
            // the command line ssh would split the path at spaces.
            .known_hosts_check(match ssh.host_key_policy {
                HostKeyPolicy::Verify => KnownHosts::Strict,
                HostKeyPolicy::AcceptNew => KnownHosts::Add,
            });
        if let Some(key) = &host.ssh.identity_file {
            let key = ssh_config::identity_argument(key)
                .map_err(|e| fail("cannot use the SSH key", e))?;
            builder.keyfile(key);
        }
        if ssh.bastion.is_some() {
            builder.jump_hosts([ssh_config::BASTION_ALIAS]);
        }
        // ConnectTimeout bounds the TCP connect and the banner only: a server that then
        // stalls the key exchange or the login would hold the run for ever.
        let limit = connect_limit(ssh.connect_timeout);
        let no_session = || {
            fail(
                "cannot connect over SSH",
                format!("no session within {limit:?} (handshake and login included)"),
            )
        };
        let destination = host.address.to_string();
        let slot = run.master_slot(cluster, host, &destination);
        let (session, hold, note) = if let Some(slot) = slot {
            if let Some((session, hold)) = resume(&slot, ssh.connect_timeout).await {
                reuse::count_reused();
                (
                    session,
                    Some(hold),
                    "reusing the SSH connection of an earlier run",
                )
            } else {
                // Kept for the next run: a short linger, the held session covers the run.
                builder
                    .control_directory(&slot)
                    .control_persist(ControlPersist::IdleFor(
                        std::num::NonZeroUsize::new(reuse::LINGER.as_secs() as usize)
                            .expect("a linger of some seconds"),
                    ));
                let master = tokio::time::timeout(limit, builder.launch_master(&destination))
                    .await
                    .map_err(|_| no_session())?
                    .map_err(|e| fail("cannot connect over SSH", error_chain(&e)))?;
                reuse::count_started();
                // Detached: the master outlives this process, and a drop never ends it.
                let (ctl, master_log) = Session::new_native_mux(master).detach();
                let session = Arc::new(Session::resume_mux(ctl, master_log));
                let hold = start_hold(&session, false)
                    .await
                    .map_err(|e| fail("cannot hold the SSH connection open", e))?;
                (
                    session,
                    Some(hold),
                    "new SSH connection, kept for the next run",
                )
            }
        } else {
            builder
                // Control sockets live in the system temp folder: socket paths are limited
                // to about 100 bytes, which a deep run folder could exceed.
                .control_directory(std::env::temp_dir())
                // The master must outlive the longest quiet spell of a run (a host waits
                // while others run kubeadm, up to ten command timeouts), yet one left behind
                // by a killed kubeha should not linger for ever.
                .control_persist(ControlPersist::IdleFor(master_idle_limit(timeout)));
            let session = tokio::time::timeout(limit, builder.connect_mux(&destination))
                .await
                .map_err(|_| no_session())?
                .map_err(|e| fail("cannot connect over SSH", error_chain(&e)))?;
            reuse::count_started();
            (
                Arc::new(session),
                None,
                "new SSH connection, closed with the run",
            )
        };
        let _ = writeln!(log, "# {note}");
        // Root is checked by the first command itself (see [`AS_ROOT`]), on every run: a
        // probe of its own would cost every run a round trip per host.
        Ok(Self {
            host: host.name.clone(),
            session,
            hold: Mutex::new(hold),
            sudo: host.ssh.sudo,
            timeout,
            log: Mutex::new(log),
            redactor,
        })
    }

    /// Runs a shell script as root and returns whatever it printed; a non-zero exit is
    /// not an error here (see [`Remote::run`]).
    pub async fn sh(&self, script: &str) -> Result<Output, RemoteError> {
        self.exec(script, None, self.timeout, Logged::Everything)
            .await
    }

    /// Like [`Remote::sh`], but a non-zero exit becomes an error naming `what`.
    pub async fn run(&self, what: &str, script: &str) -> Result<Output, RemoteError> {
        let out = self.sh(script).await?;
        self.checked(what, out)
    }

    /// [`Remote::run`] with a longer limit, for commands such as `kubeadm init`.
    pub async fn run_for(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let out = self.exec(script, None, timeout, Logged::Everything).await?;
        self.checked(what, out)
    }

    /// [`Remote::run`] with `input` on the script's stdin (kept out of the log).
    pub async fn run_with_input(
        &self,
        what: &str,
        script: &str,
        input: &[u8],
    ) -> Result<Output, RemoteError> {
        let out = self
            .exec(script, Some(input), self.timeout, Logged::Everything)
            .await?;
        self.checked(what, out)
    }

    /// [`Remote::run`] for a script some of whose output lines are secrets (they start
    /// with [`SECRET_PREFIX`]): those lines are never logged, nor in an error.
    pub async fn run_keeping_secrets(
        &self,
        what: &str,
        script: &str,
    ) -> Result<Output, RemoteError> {
        let mut out = self
            .exec(script, None, self.timeout, Logged::KeepingSecrets)
            .await?;
        if !out.success() {
            out.stdout = without_secrets(&out.stdout);
        }
        self.checked(what, out)
    }

    fn checked(&self, what: &str, out: Output) -> Result<Output, RemoteError> {
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(what, &out))
        }
    }

    /// An error for a command that ran and failed, with the tail of what it printed.
    pub fn failed(&self, what: &str, out: &Output) -> RemoteError {
        let text = if out.stderr.trim().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        let tail: Vec<&str> = text.trim().lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        self.error(
            what,
            &format!(
                "exit {}: {}",
                out.code.map_or("?".into(), |c| c.to_string()),
                tail.join(" | ")
            ),
        )
    }

    /// An error about this host, redacted.
    pub fn error(&self, what: &str, detail: &str) -> RemoteError {
        RemoteError::new(&self.redactor, &self.host, what, detail)
    }

    /// Writes a file atomically (temporary file, then rename) with the given mode, owned
    /// by root. The content travels on stdin, never on a command line or in the log.
    pub async fn write_file(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
    ) -> Result<(), RemoteError> {
        let dir = Path::new(path)
            .parent()
            .map_or("/".into(), |d| d.display().to_string());
        let script = format!(
            "set -e; umask 077; mkdir -p {dir}; t=$(mktemp {tmp}); cat > \"$t\"; chmod {mode:o} \"$t\"; mv -f \"$t\" {path}",
            dir = quote(&dir),
            tmp = quote(&format!("{path}{}XXXXXX", crate::render::WRITE_TEMP_INFIX)),
            path = quote(path),
        );
        let out = self
            .exec(&script, Some(content), self.timeout, Logged::Everything)
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&format!("cannot write {path}"), &out))
        }
    }

    /// A file's bytes, or `None` when it does not exist. What it holds is never logged
    /// (admin.conf carries a client key) nor put in an error.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let p = quote(path);
        let mut out = self
            .exec(
                &format!("if [ -e {p} ]; then base64 -w0 {p}; else exit 3; fi"),
                None,
                self.timeout,
                Logged::CommandOnly,
            )
            .await?;
        match out.code {
            Some(0) => {
                let bytes = base64_decode(out.stdout.trim())
                    .map_err(|e| self.error(&format!("cannot read {path}"), &e))?;
                Ok(Some(bytes))
            }
            Some(3) => Ok(None),
            _ => {
                out.stdout.clear();
                Err(self.failed(&format!("cannot read {path}"), &out))
            }
        }
    }

    /// Sends one command: the count [`commands_sent`] reports.
    async fn exec(
        &self,
        script: &str,
        input: Option<&[u8]>,
        timeout: Duration,
        logged: Logged,
    ) -> Result<Output, RemoteError> {
        let fail = |what: &str, detail: String| self.error(what, &detail);
        let wrapped = command_line(script, self.sudo)
            .map_err(|e| fail("quote the command", e.to_string()))?;
        self.log_line(&format!("$ {script}"));
        COMMANDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cmd = self.session.raw_command(&wrapped);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let run = async {
            let mut child = cmd
                .spawn()
                .await
                .map_err(|e| fail("cannot start a command", error_chain(&e)))?;
            if let (Some(bytes), Some(mut stdin)) = (input, child.stdin().take()) {
                stdin
                    .write_all(bytes)
                    .await
                    .map_err(|e| fail("cannot send input", e.to_string()))?;
                drop(stdin);
            }
            child
                .wait_with_output()
                .await
                .map_err(|e| fail("the command was cut off", error_chain(&e)))
        };
        let raw = tokio::time::timeout(timeout, run).await.map_err(|_| {
            fail(
                "timed out",
                format!("no answer within {timeout:?}: {script}"),
            )
        })??;
        let mut stderr = String::from_utf8_lossy(&raw.stderr).into_owned();
        let mut out = Output {
            code: script_exit(raw.status.code(), &mut stderr),
            stdout: String::from_utf8_lossy(&raw.stdout).into_owned(),
            stderr,
        };
        // Exit 255 is ssh's own: the connection, not the command, failed.
        if out.code == Some(255) && self.session.check().await.is_err() {
            return Err(fail(
                "lost the SSH connection",
                out.stderr.trim().to_string(),
            ));
        }
        if self.sudo {
            // sudo may warn before it runs the shell (e.g. `unable to resolve host`).
            let Some(at) = out.stderr.find(AS_ROOT) else {
                self.log_line(&format!(
                    "exit {:?}: sudo refused\n{}",
                    out.code,
                    indent(&out.stderr, "  ! ")
                ));
                return Err(fail(
                    "cannot run commands as root",
                    format!(
                        "`sudo -n` failed ({}); the SSH user needs passwordless sudo",
                        out.stderr.trim()
                    ),
                ));
            };
            out.stderr.replace_range(at..at + AS_ROOT.len(), "");
        }
        self.log_line(&log_entry(&out, logged));
        Ok(out)
    }

    fn log_line(&self, text: &str) {
        let text = self.redactor.redact(text);
        if let Ok(mut log) = self.log.lock() {
            let _ = writeln!(log, "{text}");
        }
    }

    /// Ends the run's use of the connection: a kept master's held session ends (its linger
    /// starts), any other master is closed.
    pub async fn close(self) {
        let Self { session, hold, .. } = self;
        let hold = hold
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mut hold) = hold {
            // EOF ends the remote `cat`; whatever is left is killed when `hold` drops.
            drop(hold.stdin().take());
            let _ = tokio::time::timeout(Duration::from_secs(2), hold.wait()).await;
        } else if let Ok(session) = Arc::try_unwrap(session) {
            let _ = session.close().await;
        }
    }
}

/// A live master of an earlier run in `slot`, with this run's session held on it. The
/// socket of a master that is gone is removed. One that answers but does not reach its
/// host within `wait` is passed over and left alone: another run may be using it, and
/// ServerAlive or its linger ends it.
async fn resume(slot: &Path, wait: Duration) -> Option<(Arc<Session>, Child<Arc<Session>>)> {
    for socket in reuse::candidates(slot) {
        let master_log = socket.with_file_name("log").into_boxed_path();
        let session = Arc::new(Session::resume_mux(
            socket.clone().into_boxed_path(),
            Some(master_log),
        ));
        if session.check().await.is_err() {
            reuse::remove_stale(&socket);
            continue;
        }
        match tokio::time::timeout(wait, start_hold(&session, true)).await {
            Ok(Ok(hold)) => return Some((session, hold)),
            Ok(Err(e)) => {
                tracing::debug!(socket = %socket.display(), "a kept SSH master is unusable: {e}")
            }
            Err(_) => tracing::debug!(
                socket = %socket.display(),
                "a kept SSH master did not reach its host in {wait:?}"
            ),
        }
    }
    None
}

/// Opens the session that keeps a kept master busy until the run ends (see [`reuse`]): not
/// a command of the run, so not counted in [`commands_sent`] nor logged as one. With
/// `ready`, returns only once the host has started it, the proof that a reused master still
/// reaches its host.
async fn start_hold(session: &Arc<Session>, ready: bool) -> Result<Child<Arc<Session>>, String> {
    let mut cmd = Session::to_raw_command(session.clone(), reuse::HOLD_SCRIPT);
    cmd.stdin(Stdio::piped())
        .stdout(if ready { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::null());
    let mut child = cmd.spawn().await.map_err(|e| error_chain(&e))?;
    if ready {
        let stdout = child.stdout().take().ok_or("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.trim() == reuse::HOLD_READY => break,
                Ok(Some(_)) => continue,
                Ok(None) => return Err("the held session ended at once".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(child)
}

/// Every command sent over SSH (each a round trip), for a run's `-v` summary.
static COMMANDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Commands this process has sent to hosts so far.
pub fn commands_sent() -> usize {
    COMMANDS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How a command's end is written to the host log.
fn log_entry(out: &Output, logged: Logged) -> String {
    match logged {
        Logged::Everything => format!(
            "exit {:?}\n{}{}",
            out.code,
            indent(&out.stdout, "  | "),
            indent(&out.stderr, "  ! ")
        ),
        Logged::KeepingSecrets => format!(
            "exit {:?}\n{}{}",
            out.code,
            indent(&without_secrets(&out.stdout), "  | "),
            indent(&out.stderr, "  ! ")
        ),
        Logged::CommandOnly => format!(
            "exit {:?} ({} bytes of output, not logged)",
            out.code,
            out.stdout.len() + out.stderr.len()
        ),
    }
}

/// `text` with each line that starts with [`SECRET_PREFIX`] cut after its key.
fn without_secrets(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix(SECRET_PREFIX) {
            Some(rest) => {
                let key = rest.split_once('=').map_or(rest, |(k, _)| k);
                format!("{SECRET_PREFIX}{key}=<not logged>\n")
            }
            None => format!("{l}\n"),
        })
        .collect()
}

/// The limit for a whole SSH connect: the TCP connect, banner, key exchange and login
/// (through a bastion, twice), each a few round trips bounded like the connect itself.
fn connect_limit(connect_timeout: Duration) -> Duration {
    connect_timeout * 6
}

fn master_idle_limit(command_timeout: Duration) -> std::num::NonZeroUsize {
    let secs = (command_timeout.as_secs() * 12).max(3600);
    std::num::NonZeroUsize::new(secs as usize).expect("at least an hour")
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64 from the host: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_output_never_reaches_the_log() {
        let out = Output {
            code: Some(0),
            stdout: "Y2xpZW50LWtleS1kYXRhOiBTRUNSRVQ=".into(),
            stderr: String::new(),
        };
        let entry = log_entry(&out, Logged::CommandOnly);
        assert_eq!(entry, "exit Some(0) (32 bytes of output, not logged)");
        assert!(log_entry(&out, Logged::Everything).contains(&out.stdout));
    }

    #[test]
    fn secret_lines_never_reach_the_log() {
        let out = Output {
            code: Some(0),
            stdout: "os.id=debian\nsecret.admin.conf=Y2xpZW50LWtleS1kYXRh\nkubeadm.ca=Q0E=\n"
                .into(),
            stderr: String::new(),
        };
        let entry = log_entry(&out, Logged::KeepingSecrets);
        assert!(!entry.contains("Y2xpZW50LWtleS1kYXRh"), "{entry}");
        assert!(
            entry.contains("  | secret.admin.conf=<not logged>\n"),
            "{entry}"
        );
        assert!(entry.contains("  | os.id=debian\n") && entry.contains("  | kubeadm.ca=Q0E=\n"));
    }

    #[test]
    fn errors_never_carry_a_secret() {
        let redactor = Redactor::default();
        redactor.add("a-registered-secret");
        let e = RemoteError::new(
            &redactor,
            "cp-1",
            "kubeadm join --token q1w2e3.r4t5y6u7i8o9p0a1 failed",
            "exit 1: a-registered-secret | client-key-data: S0VZ | -----BEGIN PRIVATE KEY-----\nMIIE",
        );
        let text = e.to_string();
        for secret in [
            "q1w2e3.r4t5y6u7i8o9p0a1",
            "a-registered-secret",
            "S0VZ",
            "MIIE",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.starts_with("cp-1: kubeadm join --token <redacted> failed: exit 1: <redacted>")
        );
    }

    /// The command line as a local `sh` runs it (as ssh would hand it to the login shell).
    fn run_locally(script: &str) -> (Option<i32>, String, String) {
        let line = command_line(script, false).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        let mut stderr = String::from_utf8(out.stderr).unwrap();
        let code = script_exit(out.status.code(), &mut stderr);
        (code, String::from_utf8(out.stdout).unwrap(), stderr)
    }

    #[test]
    fn a_missing_command_comes_back_as_exit_127_with_its_output() {
        let (code, stdout, stderr) =
            run_locally("echo before; kubeha-no-such-command-here 'it''s'");
        assert_eq!(code, Some(127));
        assert_eq!(stdout, "before\n");
        assert!(stderr.contains("not found"), "{stderr}");
        assert!(!stderr.contains(EXITED_127), "{stderr}");
        // The script's own codes are kept. A script that prints the marker itself and exits
        // 1 reads as 127: harmless, the marker only ever names an exit code.
        assert_eq!(run_locally("exit 3").0, Some(3));
        assert_eq!(run_locally("exit 0").0, Some(0));
        let (code, _, stderr) = run_locally("printf 'kubeha: exit 127\\n' >&2; exit 1");
        assert_eq!((code, stderr.as_str()), (Some(127), ""));
        let (code, stdout, _) = run_locally("exit_status=7; echo \"$exit_status\"; exit 255");
        assert_eq!((code, stdout.as_str()), (Some(255), "7\n"));
    }

    /// A kept master that died without removing its socket is not used, and its folder
    /// goes: the run then starts a master of its own.
    #[tokio::test]
    async fn a_dead_master_is_passed_over_and_removed() {
        let slot = tempfile::tempdir().unwrap();
        let dead = slot.path().join(".ssh-connectionDEAD01");
        std::fs::create_dir(&dead).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dead.join("master")).unwrap());
        assert!(resume(slot.path(), Duration::from_secs(5)).await.is_none());
        assert!(!dead.exists());
    }

    /// A server that sends its banner and then never answers the key exchange:
    /// ConnectTimeout alone lets ssh wait for ever.
    #[tokio::test]
    async fn a_stalled_handshake_ends_the_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                let _ = sock.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
                held.push(sock);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = crate::render::test_support::cluster_from(|s| s);
        cluster.ssh.connect_timeout = Duration::from_millis(500);
        cluster.ssh.known_hosts_file = dir.path().join("known_hosts");
        let mut host = cluster.hosts[0].clone();
        host.address = "127.0.0.1".parse().unwrap();
        host.ssh.port = port;
        host.ssh.identity_file = None;
        let run = RunDir::create(&dir.path().join("run"), &cluster).unwrap();
        let started = std::time::Instant::now();
        let attempt = Remote::connect(
            &cluster,
            &host,
            &run,
            Arc::new(Redactor::default()),
            Duration::from_secs(60),
        );
        let result = tokio::time::timeout(Duration::from_secs(20), attempt)
            .await
            .expect("connect gave up on its own");
        let err = result.err().expect("no session with a silent server");
        assert!(err.detail.contains("no session within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
