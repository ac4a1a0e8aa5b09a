//! OpenSSH control masters kept for the next kubeha run, so that a re-run (a no-op `plan`
//! or `apply` most of all) skips the key exchange and login to every host.
//!
//! A master is found again by a hash of everything that decides what its connection is and
//! how its host was verified ([`KeyInputs`]): a spec, key, ssh_config or known_hosts entry
//! for the host that differs in any way gets a master of its own (known_hosts lines that
//! name only other hosts do not count: adding a node keeps every other host's master).
//! Masters live in a private folder (`$XDG_RUNTIME_DIR/kubeha`, else `/tmp/kubeha-<uid>`; 0700, owned by this user, checked
//! before every run), one sub-folder per hash, each master in the temporary folder
//! `openssh` makes for it there.
//!
//! Lifetime: a reused master is launched with `ControlPersist` [`LINGER`]. While a run
//! lasts, every host holds one session open on its master ([`HOLD_SCRIPT`], waiting on its
//! stdin), so the master is never idle however long the host waits for the others; when the
//! run ends, or kubeha dies and the pipe closes, that session ends and the master exits
//! after [`LINGER`] without one.
//!
//! `KUBEHA_SSH_REUSE=0` turns this off: every run then starts its masters and closes them
//! at its end, as before.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The environment variable that turns reuse off (`0`, `false`, `no` or `off`).
pub const REUSE_ENV: &str = "KUBEHA_SSH_REUSE";

/// How long a master stays after the last session on it ended, i.e. after its run. Short on
/// purpose: like Ansible's `ControlPersist=60s`, long enough for the next command of someone
/// at work (a `plan` then an `apply`), short enough that a killed kubeha, or an operator who
/// walked away, does not leave an authenticated connection to every host around for long.
/// During a run the held session keeps the master busy, so this never cuts a run short.
pub const LINGER: Duration = Duration::from_secs(60);

/// What each host's held session runs: it says it started (the proof that a reused master
/// still reaches the host), then waits for its stdin to close, which happens when the run
/// ends or kubeha dies.
pub const HOLD_SCRIPT: &str = "echo kubeha-held; exec cat >/dev/null";

/// The line [`HOLD_SCRIPT`] prints first.
pub const HOLD_READY: &str = "kubeha-held";

/// The prefix `openssh` gives the folder of each master it launches.
const MASTER_DIR_PREFIX: &str = ".ssh-connection";

/// Hex digits of the hash in a folder name: 80 bits, and a short socket path.
const KEY_HEX: usize = 20;

/// The longest folder the masters may live in: `<base>/<key>/.ssh-connectionXXXXXX/master`
/// plus the 17 characters ssh appends while binding must fit a socket address (104 bytes on
/// some systems).
const MAX_BASE_LEN: usize = 104 - (1 + KEY_HEX + 1 + MASTER_DIR_PREFIX.len() + 6 + 7) - 17;

/// Whether the environment asks for reuse (the default) or not.
pub fn wanted() -> bool {
    wanted_by(std::env::var(REUSE_ENV).ok().as_deref())
}

fn wanted_by(value: Option<&str>) -> bool {
    !value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    })
}

/// Everything that decides what a connection is and how its host was verified.
#[derive(Debug, Clone)]
pub struct KeyInputs<'a> {
    pub user: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub identity_file: Option<&'a Path>,
    pub known_hosts_file: &'a Path,
    /// The known_hosts file's bytes (`None` when it does not exist): a host key removed or
    /// replaced since must not be bypassed by a master verified against the old one. Only
    /// the lines that can bear on this host (or its bastion) count.
    pub known_hosts: Option<&'a [u8]>,
    pub host_key_policy: &'a str,
    /// Address, port, user and key of the bastion.
    pub bastion: Option<(&'a str, u16, &'a str, Option<&'a Path>)>,
    /// The run's whole ssh_config text.
    pub ssh_config: &'a str,
}

/// The folder name of the masters made for exactly these inputs.
pub fn socket_key(k: &KeyInputs) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: Option<&[u8]>| {
        h.update(name.as_bytes());
        match value {
            // Length-prefixed, so that no two different inputs write the same bytes.
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
            None => h.update([0]),
        }
    };
    let path = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
    field("kubeha-ssh-master-v2", None);
    field("user", Some(k.user.as_bytes()));
    field("address", Some(k.address.as_bytes()));
    field("port", Some(&k.port.to_be_bytes()));
    field("identity_file", k.identity_file.map(path).as_deref());
    field("known_hosts_file", Some(&path(k.known_hosts_file)));
    match k.known_hosts {
        None => field("known_hosts", None),
        Some(bytes) => {
            field("known_hosts", Some(b""));
            let mut names = vec![(k.address, k.port)];
            names.extend(k.bastion.map(|(address, port, ..)| (address, port)));
            for line in known_hosts_lines_for(bytes, &names) {
                field("known_hosts.line", Some(line));
            }
        }
    }
    field("host_key_policy", Some(k.host_key_policy.as_bytes()));
    match k.bastion {
        Some((address, port, user, key)) => {
            field("bastion", Some(b"yes"));
            field("bastion.address", Some(address.as_bytes()));
            field("bastion.port", Some(&port.to_be_bytes()));
            field("bastion.user", Some(user.as_bytes()));
            field("bastion.identity_file", key.map(path).as_deref());
        }
        None => field("bastion", None),
    }
    field("ssh_config", Some(k.ssh_config.as_bytes()));
    let digest = h.finalize();
    hex::encode(digest)[..KEY_HEX].to_string()
}

/// The known_hosts lines that can bear on verifying the hosts `names` (address and port):
/// every line but comments and plain lines that name only other hosts, literally. So a line
/// added for a new node leaves every other host's master reusable, while a changed, removed
/// or revoked key of the host itself, or any hashed, `@`-marked or wildcard line (which may
/// match it), asks for a new master. A file that is not UTF-8 counts whole.
fn known_hosts_lines_for<'a>(known_hosts: &'a [u8], names: &[(&str, u16)]) -> Vec<&'a [u8]> {
    let Ok(text) = std::str::from_utf8(known_hosts) else {
        return vec![known_hosts];
    };
    // ssh looks a host up as `[name]:port` off port 22; either form names it here.
    let forms: Vec<String> = names
        .iter()
        .flat_map(|(name, port)| [name.to_string(), format!("[{name}]:{port}")])
        .collect();
    let named = |pattern: &str| forms.iter().any(|f| pattern.eq_ignore_ascii_case(f));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| {
            let patterns = line.split_ascii_whitespace().next().unwrap_or_default();
            let literal = !line.starts_with('@')
                && !patterns.starts_with('|')
                && !patterns.contains(['*', '?', '!']);
            !literal || patterns.split(',').any(named)
        })
        .map(str::as_bytes)
        .collect()
}

fn uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The folder every master of this user lives under, made private if it is not yet.
pub fn base_dir() -> Result<PathBuf, String> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .map(|d| d.join("kubeha"))
        .filter(|d| d.as_os_str().len() <= MAX_BASE_LEN);
    if let Some(dir) = runtime {
        if private_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    let dir = PathBuf::from(format!("/tmp/kubeha-{}", uid()));
    private_dir(&dir)?;
    Ok(dir)
}

/// Makes sure `dir` is a folder (not a symlink) owned by this user that nobody else can
/// enter: created 0700 if missing; one of ours that others could enter is emptied and made
/// again (what is in it may have been planted); anything else is refused.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", dir.display());
    let create = || {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
    };
    match create() {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    if !meta.file_type().is_dir() {
        return Err(format!("{}: not a folder", dir.display()));
    }
    if meta.uid() != uid() {
        return Err(format!(
            "{}: owned by uid {}, not {}",
            dir.display(),
            meta.uid(),
            uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.mode() & 0o777),
            "the SSH control folder was open to others: emptied and made private again"
        );
        std::fs::remove_dir_all(dir).map_err(fail)?;
        create().map_err(fail)?;
    }
    Ok(())
}

/// A master folder left without a socket this long ago is from a master that exited (or a
/// launch that never finished): launches are bounded well below this.
const LEFTOVER_AFTER: Duration = Duration::from_secs(3600);

/// The sockets of the masters in `slot`, newest first. Folders of masters that are gone
/// (no socket, and older than [`LEFTOVER_AFTER`]) are removed on the way.
pub fn candidates(slot: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(slot) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_master_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(MASTER_DIR_PREFIX));
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !is_master_dir || !meta.file_type().is_dir() {
            continue;
        }
        let socket = dir.join("master");
        let changed = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        match std::fs::symlink_metadata(&socket) {
            Ok(m) if m.file_type().is_socket() => found.push((changed, socket)),
            _ => {
                let age = SystemTime::now()
                    .duration_since(changed)
                    .unwrap_or(Duration::ZERO);
                if age > LEFTOVER_AFTER {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
    found.sort_by_key(|(changed, _)| std::cmp::Reverse(*changed));
    found.into_iter().map(|(_, s)| s).collect()
}

/// Removes the folder of a master that no longer answers on `socket`.
pub fn remove_stale(socket: &Path) {
    if let Some(dir) = socket.parent() {
        if dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(MASTER_DIR_PREFIX))
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Masters this process started, and masters of earlier runs it reused.
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static REUSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(super) fn count_started() {
    STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn count_reused() {
    REUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// SSH masters this process started so far (each a key exchange and login).
pub fn masters_started() -> usize {
    STARTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Masters of earlier runs this process reused so far.
pub fn masters_reused() -> usize {
    REUSED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs<'static> {
        KeyInputs {
            user: "debian",
            address: "10.0.0.11",
            port: 22,
            identity_file: Some(Path::new("/keys/id_ed25519")),
            known_hosts_file: Path::new("/state/known_hosts"),
            known_hosts: Some(b"10.0.0.11 ssh-ed25519 AAAA\n"),
            host_key_policy: "verify",
            bastion: None,
            ssh_config: "Host *\n  BatchMode yes\n",
        }
    }

    #[test]
    fn the_socket_key_changes_with_every_input_and_only_then() {
        let base = socket_key(&inputs());
        assert_eq!(base, socket_key(&inputs()), "stable");
        assert_eq!(base.len(), KEY_HEX);
        let bastion = Some(("jump", 22, "ops", None));
        let variants: Vec<(&str, KeyInputs)> = vec![
            (
                "user",
                KeyInputs {
                    user: "root",
                    ..inputs()
                },
            ),
            (
                "address",
                KeyInputs {
                    address: "10.0.0.12",
                    ..inputs()
                },
            ),
            (
                "port",
                KeyInputs {
                    port: 2222,
                    ..inputs()
                },
            ),
            (
                "no identity",
                KeyInputs {
                    identity_file: None,
                    ..inputs()
                },
            ),
            (
                "identity",
                KeyInputs {
                    identity_file: Some(Path::new("/keys/other")),
                    ..inputs()
                },
            ),
            (
                "known_hosts path",
                KeyInputs {
                    known_hosts_file: Path::new("/other/known_hosts"),
                    ..inputs()
                },
            ),
            (
                "known_hosts contents",
                KeyInputs {
                    known_hosts: Some(b"10.0.0.11 ssh-ed25519 BBBB\n"),
                    ..inputs()
                },
            ),
            (
                "known_hosts absent",
                KeyInputs {
                    known_hosts: None,
                    ..inputs()
                },
            ),
            (
                "known_hosts empty",
                KeyInputs {
                    known_hosts: Some(b""),
                    ..inputs()
                },
            ),
            (
                "policy",
                KeyInputs {
                    host_key_policy: "acceptNew",
                    ..inputs()
                },
            ),
            (
                "bastion",
                KeyInputs {
                    bastion,
                    ..inputs()
                },
            ),
            (
                "bastion address",
                KeyInputs {
                    bastion: Some(("jump2", 22, "ops", None)),
                    ..inputs()
                },
            ),
            (
                "bastion port",
                KeyInputs {
                    bastion: Some(("jump", 23, "ops", None)),
                    ..inputs()
                },
            ),
            (
                "bastion user",
                KeyInputs {
                    bastion: Some(("jump", 22, "root", None)),
                    ..inputs()
                },
            ),
            (
                "bastion key",
                KeyInputs {
                    bastion: Some(("jump", 22, "ops", Some(Path::new("/k")))),
                    ..inputs()
                },
            ),
            (
                "ssh_config",
                KeyInputs {
                    ssh_config: "Host *\n  BatchMode no\n",
                    ..inputs()
                },
            ),
        ];
        let mut seen = std::collections::BTreeMap::new();
        seen.insert(base.clone(), "base");
        for (what, k) in &variants {
            let key = socket_key(k);
            assert_eq!(key, socket_key(&k.clone()), "{what}: stable");
            if let Some(other) = seen.insert(key, what) {
                panic!("{what} gives the same key as {other}");
            }
        }
        // Fields cannot run into each other: moving a byte from one to the next changes it.
        let a = socket_key(&KeyInputs {
            user: "ab",
            address: "c",
            ..inputs()
        });
        let b = socket_key(&KeyInputs {
            user: "a",
            address: "bc",
            ..inputs()
        });
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_known_hosts_lines_that_can_verify_the_host_key_its_master() {
        let with = |known_hosts: &'static [u8]| {
            socket_key(&KeyInputs {
                known_hosts: Some(known_hosts),
                bastion: Some(("jump", 2200, "ops", None)),
                ..inputs()
            })
        };
        let base = with(b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n");
        // Another node's key added (a new worker), comments and blank lines: the same master.
        let same: [&[u8]; 3] = [
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n10.0.0.12 ssh-ed25519 CCCC\n",
            b"# nodes\n10.0.0.11 ssh-ed25519 AAAA\n\n10.0.0.13,node-3 ssh-rsa DDDD\n  [jump]:2200 ssh-ed25519 JJJJ\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n[10.0.0.12]:2222 ssh-ed25519 X\n",
        ];
        for known in same {
            assert_eq!(with(known), base, "{}", String::from_utf8_lossy(known));
        }
        // Anything that may bear on this host's or its bastion's key: a new master.
        let different: [&[u8]; 9] = [
            b"10.0.0.11 ssh-ed25519 BBBB\n[jump]:2200 ssh-ed25519 JJJJ\n",
            b"[jump]:2200 ssh-ed25519 JJJJ\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 KKKK\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n10.0.0.12,10.0.0.11 ssh-rsa EEEE\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\nNODE-1,10.0.0.11 ssh-rsa EEEE\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n@revoked 10.0.0.12 ssh-ed25519 AAAA\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n|1|c2FsdA==|aGFzaA== ssh-ed25519 FFFF\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n10.0.0.* ssh-ed25519 GGGG\n",
            b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n!10.0.0.12 ssh-ed25519 HHHH\n",
        ];
        for known in different {
            assert_ne!(with(known), base, "{}", String::from_utf8_lossy(known));
        }
        // Not UTF-8: every byte counts.
        assert_ne!(
            with(b"10.0.0.11 ssh-ed25519 AAAA\n[jump]:2200 ssh-ed25519 JJJJ\n10.0.0.12 \xff\n"),
            base
        );
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn the_control_folder_is_private_or_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kubeha");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // Already right: kept, with what is in it.
        std::fs::write(dir.join("kept"), "x").unwrap();
        private_dir(&dir).unwrap();
        assert!(dir.join("kept").exists());
        // Open to others: what is in it cannot be trusted, so it is made again, empty.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("planted"), "x").unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(!dir.join("planted").exists());
        // A symlink to a private folder is refused, not followed.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(private_dir(&link).unwrap_err().contains("not a folder"));
        // So is a file.
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(private_dir(&file).is_err());
    }

    #[test]
    fn a_folder_owned_by_someone_else_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, owner) = if uid() == 0 {
            // As root: a private folder handed to `nobody`, kept as it is.
            let dir = tmp.path().join("theirs");
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            (dir, 65534)
        } else {
            // As anyone else, `/` is root's.
            (PathBuf::from("/"), 0)
        };
        let err = private_dir(&dir).unwrap_err();
        assert!(err.contains(&format!("owned by uid {owner}")), "{err}");
        assert!(dir.exists());
    }

    #[test]
    fn socket_paths_stay_short() {
        let base = base_dir().unwrap();
        assert_eq!(mode(&base), 0o700);
        let socket = base
            .join("0".repeat(KEY_HEX))
            .join(format!("{MASTER_DIR_PREFIX}XXXXXX"))
            .join("master");
        assert!(socket.as_os_str().len() + 17 <= 104, "{}", socket.display());
    }

    #[test]
    fn stale_sockets_and_old_leftovers_are_removed_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let slot = tmp.path();
        // A master that died without removing its socket.
        let stale = slot.join(format!("{MASTER_DIR_PREFIX}stale1"));
        std::fs::create_dir(&stale).unwrap();
        drop(std::os::unix::net::UnixListener::bind(stale.join("master")).unwrap());
        // A live one.
        let live = slot.join(format!("{MASTER_DIR_PREFIX}live01"));
        std::fs::create_dir(&live).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(live.join("master")).unwrap();
        // A launch under way (no socket yet) and an old leftover (a master that exited).
        let launching = slot.join(format!("{MASTER_DIR_PREFIX}launch"));
        std::fs::create_dir(&launching).unwrap();
        let old = slot.join(format!("{MASTER_DIR_PREFIX}old001"));
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("log"), "").unwrap();
        let hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
        std::fs::File::open(&old)
            .unwrap()
            .set_modified(hours_ago)
            .unwrap();
        let found = candidates(slot);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&stale.join("master")) && found.contains(&live.join("master")));
        assert!(launching.exists(), "a launch under way is left alone");
        assert!(!old.exists(), "an old leftover is removed");
        remove_stale(&stale.join("master"));
        assert!(!stale.exists());
        assert_eq!(candidates(slot), vec![live.join("master")]);
        // Never anything outside a master's folder.
        remove_stale(&slot.join("master"));
        assert!(slot.exists());
    }

    #[test]
    fn the_environment_turns_reuse_off() {
        for off in ["0", "false", "no", "off", "OFF", " 0 "] {
            assert!(!wanted_by(Some(off)), "{off:?}");
        }
        for on in [None, Some("1"), Some("yes"), Some("")] {
            assert!(wanted_by(on), "{on:?}");
        }
    }
}
