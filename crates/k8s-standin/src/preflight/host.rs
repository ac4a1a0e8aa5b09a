//! The node as the preflight checks see it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub trait Host {
    /// A file's bytes (absolute path, resolved under the host's root).
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    fn exists(&self, path: &str) -> bool;
    /// True if `path` is a directory with entries, or a non-directory.
    fn dir_nonempty(&self, path: &str) -> bool;
    fn is_root(&self) -> bool;
    fn num_cpu(&self) -> usize;
    fn mem_mb(&self) -> Option<u64>;
    fn port_in_use(&self, port: u16) -> bool;
    fn in_path(&self, exe: &str) -> bool;
    /// `systemctl VERB UNIT` succeeded.
    fn systemctl(&self, verb: &str, unit: &str) -> bool;
    /// Talks to the CRI endpoint; Err carries crictl-like output.
    fn cri_status(&self, socket: &str) -> Result<(), String>;
    fn kubelet_version(&self) -> Result<String, String>;
    fn resolves(&self, name: &str) -> bool;
}

/// Probes a CRI endpoint; Err carries the failure text.
pub type CriProbe = Box<dyn Fn(&str) -> Result<(), String>>;

/// The real node; `root` prefixes file paths ("/" normally).
pub struct RealHost {
    pub root: PathBuf,
    /// Probes the CRI socket (the kubeadm binary supplies a gRPC probe).
    pub cri: CriProbe,
}

impl RealHost {
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

/// Counts CPUs in a list like "0-3,6" (Cpus_allowed_list), as Go's NumCPU sees affinity.
pub fn count_cpu_list(list: &str) -> usize {
    list.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => {
                b.parse::<usize>()
                    .unwrap_or(0)
                    .saturating_sub(a.parse().unwrap_or(0))
                    + 1
            }
            None => 1,
        })
        .sum()
}

/// MemTotal from /proc/meminfo, in MB.
pub fn meminfo_mb(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

impl Host for RealHost {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(path)).ok()
    }
    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }
    fn dir_nonempty(&self, path: &str) -> bool {
        let p = self.path(path);
        match std::fs::read_dir(&p) {
            Ok(mut d) => d.next().is_some(),
            Err(_) => p.exists(),
        }
    }
    fn is_root(&self) -> bool {
        // /proc/self/status "Uid: real effective ..."; kubeadm checks the effective uid.
        self.read("/proc/self/status")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false)
    }
    fn num_cpu(&self) -> usize {
        self.read("/proc/self/status")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(count_cpu_list))
            })
            .unwrap_or(1)
    }
    fn mem_mb(&self) -> Option<u64> {
        meminfo_mb(&String::from_utf8_lossy(&self.read("/proc/meminfo")?))
    }
    fn port_in_use(&self, port: u16) -> bool {
        std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
    }
    fn in_path(&self, exe: &str) -> bool {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        path.split(':').any(|d| {
            self.path(&Path::new(d).join(exe).to_string_lossy())
                .is_file()
        })
    }
    fn systemctl(&self, verb: &str, unit: &str) -> bool {
        Command::new("systemctl")
            .args([verb, unit])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
    fn cri_status(&self, socket: &str) -> Result<(), String> {
        (self.cri)(socket)
    }
    fn kubelet_version(&self) -> Result<String, String> {
        let out = Command::new("kubelet")
            .arg("--version")
            .output()
            .map_err(|e| format!("exec: \"kubelet\": {e}"))?;
        let s = String::from_utf8_lossy(&out.stdout);
        s.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| format!("cannot parse kubelet version output {s:?}"))
    }
    fn resolves(&self, name: &str) -> bool {
        use std::net::ToSocketAddrs;
        (name, 0)
            .to_socket_addrs()
            .map(|mut a| a.next().is_some())
            .unwrap_or(false)
    }
}
