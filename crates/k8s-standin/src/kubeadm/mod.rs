//! The kubeadm stand-in: init, join, reset, token, certs, upgrade and version
//! with kubeadm's flags, output, error texts and exit codes.

pub mod cli;
pub mod init;
pub mod join;
pub mod manifests;
pub mod objects;
pub mod ops;

use crate::config::{validate::parse_host_port, HostDefaults};
use std::path::PathBuf;
use std::time::Duration;

pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBELET_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";

/// A failed command: kubeadm prints "error execution phase P: msg".
#[derive(Debug)]
pub struct Failure {
    pub phase: Option<String>,
    pub msg: String,
}

pub fn fail<T>(phase: &str, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        phase: (!phase.is_empty()).then(|| phase.to_string()),
        msg: msg.into(),
    })
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Failure {
        Failure {
            phase: None,
            msg: msg.to_string(),
        }
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure { phase: None, msg }
    }
}

/// The node as kubeadm changes it: files under `root`, systemd units.
#[derive(Debug, Clone)]
pub struct Env {
    pub root: PathBuf,
}

impl Env {
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
    pub fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(p)).ok()
    }
    /// Writes a file with `mode`, creating parent directories.
    pub fn write(&self, p: &str, data: &[u8], mode: u32) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = self.path(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("failed to create directory {}: {e}", parent.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("failed to write {p}: {e}"))?;
        f.write_all(data)
            .map_err(|e| format!("failed to write {p}: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())
    }
    /// Creates a directory only root may enter (kubeadm's etcd data dir is 0700).
    pub fn mkdir_private(&self, p: &str) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(p);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("failed to create directory {p}: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())
    }
    pub fn systemctl(&self, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
    /// Host facts for dynamic defaulting.
    pub fn host_defaults(&self) -> HostDefaults {
        HostDefaults {
            hostname: self
                .read("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string(),
            advertise_address: default_address().unwrap_or_else(|| "127.0.0.1".into()),
            kubeadm_version: crate::VERSION.into(),
        }
    }
}

/// The IPv4 address of the default route's interface (kubeadm's ChooseHostInterface).
fn default_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "route", "show", "default"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)?
        .to_string();
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &dev])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

/// "host:port" of the cluster endpoint: controlPlaneEndpoint (default port
/// from bindPort) or the advertise address.
pub fn endpoint(control_plane_endpoint: Option<&str>, advertise: &str, port: u16) -> String {
    match control_plane_endpoint
        .filter(|e| !e.is_empty())
        .map(parse_host_port)
    {
        Some(Ok((host, p))) => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            format!("{host}:{}", p.unwrap_or(port))
        }
        _ => {
            let a = if advertise.contains(':') {
                format!("[{advertise}]")
            } else {
                advertise.to_string()
            };
            format!("{a}:{port}")
        }
    }
}

/// The file `--config` names, or kubeadm's error for it.
pub fn read_config(env: &Env, path: &str) -> Result<String, String> {
    std::fs::read_to_string(env.path(path)).map_err(|e| {
        format!(
            "unable to read config from \"{path}\" : {}",
            open_error(path, &e)
        )
    })
}

/// Go's message for a failed open.
pub fn open_error(path: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {path}: {why}")
}

/// Parses a v1beta4 timeout (Go duration) with a default.
pub fn timeout(v: Option<&str>, default_secs: u64) -> Duration {
    v.and_then(|s| crate::config::duration::parse(s).ok())
        .unwrap_or(Duration::from_secs(default_secs))
}

/// Prints klog-style warnings as kubeadm does.
pub fn warn(msg: &str) {
    let now = time::OffsetDateTime::now_utc();
    eprintln!(
        "W{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>7} kubeadm] {msg}",
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond(),
        std::process::id()
    );
}

/// Runs kubeadm with `argv` (without the program name); returns the exit code.
pub fn main(argv: &[String], env: &Env) -> i32 {
    let parsed = match cli::parse(argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\nTo see the stack trace of this error execute with --v=5 or higher");
            return 1;
        }
    };
    if parsed.on("help") {
        println!("Usage:\n  kubeadm {} [flags]", parsed.command.join(" "));
        return 0;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        cli::check_config_mix(&parsed)?;
        let c: Vec<&str> = parsed.command.iter().map(String::as_str).collect();
        match c.as_slice() {
            ["init"] => init::run(&parsed, env).await,
            ["init", "phase", "upload-certs"] => ops::upload_certs(&parsed, env).await,
            ["init", "phase", "certs", "apiserver"] => init::certs_apiserver(&parsed, env),
            ["join"] => join::run(&parsed, env).await,
            ["reset"] => ops::reset(&parsed, env).await,
            ["token", "create"] => ops::token_create(&parsed, env).await,
            ["token", "list"] => ops::token_list(&parsed, env).await,
            ["token", "delete"] => ops::token_delete(&parsed, env).await,
            ["token", "generate"] => {
                println!("{}", crate::pki::random_token());
                Ok(())
            }
            ["certs", "certificate-key"] => {
                println!("{}", crate::pki::random_certificate_key());
                Ok(())
            }
            ["certs", "check-expiration"] => ops::check_expiration(&parsed, env),
            ["certs", "renew"] => ops::certs_renew(&parsed, env),
            ["version"] => ops::version(&parsed),
            ["config", "validate"] => ops::config_validate(&parsed, env),
            ["upgrade", "plan"] => ops::upgrade_plan(&parsed, env).await,
            ["upgrade", "apply"] => ops::upgrade_apply(&parsed, env).await,
            ["upgrade", "node"] => ops::upgrade_node(&parsed, env).await,
            _ => Err(Failure::from(format!(
                "unknown command {:?}",
                parsed.command
            ))),
        }
    });
    match result {
        Ok(()) => 0,
        Err(f) => {
            match f.phase {
                Some(p) => eprintln!("error execution phase {p}: {}", f.msg),
                None => eprintln!("{}", f.msg),
            }
            eprintln!("To see the stack trace of this error execute with --v=5 or higher");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validate_is_strict() {
        let root = std::env::temp_dir().join(format!("standin-validate-{}", std::process::id()));
        let env = Env { root: root.clone() };
        env.write("/proc/sys/kernel/hostname", b"cp1\n", 0o644)
            .unwrap();
        let run = |text: &str| {
            env.write("/etc/kubeadm/init.yaml", text.as_bytes(), 0o600)
                .unwrap();
            main(
                &["config", "validate", "--config", "/etc/kubeadm/init.yaml"].map(String::from),
                &env,
            )
        };
        assert_eq!(
            run("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"),
            0
        );
        assert_eq!(
            run("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nfoo: 1\n"),
            1
        );
        assert_eq!(
            run("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"),
            1
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(Some("lb.example.com"), "10.0.0.11", 6443),
            "lb.example.com:6443"
        );
        assert_eq!(
            endpoint(Some("10.0.0.10:8443"), "10.0.0.11", 6443),
            "10.0.0.10:8443"
        );
        assert_eq!(endpoint(None, "10.0.0.11", 6443), "10.0.0.11:6443");
        assert_eq!(endpoint(Some(""), "fd00::1", 6443), "[fd00::1]:6443");
    }
}
