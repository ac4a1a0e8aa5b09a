//! Files kubeha keeps on the operator's machine: the run folder with its logs and ssh
//! client configuration, and private files such as the admin kubeconfig. Everything is
//! created owner-only from the start (never chmod-ed after the fact), and never through
//! a symlink someone else planted.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The state folder beside a spec; it gets a `.gitignore` so that logs and kubeconfigs
/// are not committed by accident.
const STATE_DIR: &str = ".kubeha";

/// Writes a file only its owner can read, atomically: a fresh temporary file created
/// 0600 with `O_EXCL` in the same folder, then renamed over `path` (replacing a symlink
/// rather than writing through it).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("cannot write {}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.kubeha-tmp",
        name.to_string_lossy(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

/// Creates a run folder 0700 (with any missing parents), and the `.gitignore` of the
/// `.kubeha` folder it lives in.
pub fn create_run_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    // An existing folder (`--log-dir` reused) is made private too: it is ours.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    if let Some(state) = path
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == STATE_DIR))
    {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(state.join(".gitignore"))
        {
            Ok(mut f) => {
                f.write_all(b"# Written by kubeha: run logs and secrets stay out of git.\n*\n")?
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens a log for appending, owner-only, refusing to follow a symlink.
pub fn open_log(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // A log left by an earlier run in a reused folder may be looser; fix it through
    // the open descriptor, not the path.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_private_file_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let target = dir.path().join("admin.kubeconfig");
        // The temporary name the old code used, planted as a symlink.
        std::os::unix::fs::symlink(&victim, target.with_extension("kubeha-tmp")).unwrap();
        write_private(&target, b"client-key-data: secret").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "client-key-data: secret"
        );
        assert_eq!(mode(&target), 0o600);

        // A symlink at the destination is replaced, not followed.
        let link = dir.path().join("link.kubeconfig");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&link), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".kubeha-tmp") && n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn run_folders_are_private_and_ignored_by_git() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join(".kubeha/e2e/runs/123");
        create_run_dir(&run).unwrap();
        for p in [
            dir.path().join(".kubeha"),
            dir.path().join(".kubeha/e2e"),
            dir.path().join(".kubeha/e2e/runs"),
            run.clone(),
        ] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        let ignore = std::fs::read_to_string(dir.path().join(".kubeha/.gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
        // Real git agrees that nothing in it would be committed.
        let git = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .status();
        if git.is_ok_and(|s| s.success()) {
            let log = run.join("cp-1.log");
            open_log(&log).unwrap();
            let out = std::process::Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=all"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        }
    }

    #[test]
    fn logs_are_private_and_never_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cp-1.log");
        std::fs::write(&log, "old\n").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_log(&log).unwrap();
        assert_eq!(mode(&log), 0o600);
        let link = dir.path().join("cp-2.log");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        assert!(open_log(&link).is_err());
    }
}
