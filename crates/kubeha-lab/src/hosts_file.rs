//! The marked block the lab keeps in the lab machine's `/etc/hosts` so that
//! `load-balancer.local` resolves there too. Editing is pure; writing is done under a lock.

use std::io::{Read, Seek, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::{Context, Result};

fn begin_marker(lab: &str) -> String {
    format!("# BEGIN kubeha-lab {lab} (managed by `kubeha lab`; removed by `kubeha lab down`)")
}

fn end_marker(lab: &str) -> String {
    format!("# END kubeha-lab {lab}")
}

/// `content` without the lab's block (unchanged when there is none).
pub fn without_block(content: &str, lab: &str) -> String {
    let (begin, end) = (begin_marker(lab), end_marker(lab));
    let mut out = String::with_capacity(content.len());
    let mut inside = false;
    for line in content.lines() {
        if line == begin {
            inside = true;
        } else if inside && line == end {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `content` with the lab's block (replacing an older one) mapping each name to its address.
pub fn with_block(content: &str, lab: &str, entries: &[(Ipv4Addr, &str)]) -> String {
    let mut out = without_block(content, lab);
    out.push_str(&begin_marker(lab));
    out.push('\n');
    for (addr, name) in entries {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    out.push_str(&end_marker(lab));
    out.push('\n');
    out
}

/// Rewrites `path` in place with `edit` applied, holding an exclusive lock so concurrent labs
/// do not lose each other's blocks. In place, not by rename: /etc/hosts is often a bind mount.
pub fn update(path: &Path, edit: impl FnOnce(&str) -> String) -> Result<()> {
    let what = || {
        format!(
            "updating {} (the lab needs write access to it unless `LabConfig::hosts_file` is None)",
            path.display()
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .context(what())?;
    // Read/Write on &File: the lock guard keeps borrowing the file.
    let _lock = crate::lock::Flock::exclusive(&file).context(what())?;
    let mut content = String::new();
    (&file).read_to_string(&mut content).context(what())?;
    let new = edit(&content);
    if new != content {
        (&file).rewind().context(what())?;
        file.set_len(0).context(what())?;
        (&file).write_all(new.as_bytes()).context(what())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";

    #[test]
    fn block_is_added_replaced_and_removed() {
        let vip = Ipv4Addr::new(172, 29, 7, 100);
        let added = with_block(
            BASE,
            "a",
            &[(Ipv4Addr::new(172, 29, 7, 10), "load-balancer.local")],
        );
        assert!(added.starts_with(BASE));
        assert!(added.contains("172.29.7.10\tload-balancer.local\n# END kubeha-lab a\n"));
        let replaced = with_block(&added, "a", &[(vip, "load-balancer.local")]);
        assert_eq!(replaced.matches("BEGIN kubeha-lab a ").count(), 1);
        assert!(replaced.contains("172.29.7.100\t") && !replaced.contains("172.29.7.10\t"));
        let two = with_block(&replaced, "b", &[(vip, "x")]);
        assert_eq!(without_block(&without_block(&two, "a"), "b"), BASE);
        assert_eq!(without_block(BASE, "a"), BASE);
    }

    #[test]
    fn update_edits_a_file_in_place() {
        let dir = std::env::temp_dir().join(format!("kubeha-lab-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, BASE).unwrap();
        update(&path, |c| with_block(c, "t", &[(Ipv4Addr::LOCALHOST, "n")])).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("127.0.0.1\tn\n"));
        update(&path, |c| without_block(c, "t")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BASE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
