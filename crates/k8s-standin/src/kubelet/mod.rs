//! The kubelet stand-in: loads its config like the real kubelet (and crash-loops
//! without it), refuses swap, checks the runtime socket and the cgroup driver
//! against containerd's, runs static Pods from /etc/kubernetes/manifests as
//! processes, registers and heartbeats its Node, and reports Ready only once a
//! CNI configuration exists.

pub mod node;
pub mod pods;
pub mod workloads;

use serde_json::Value;
use std::path::PathBuf;

/// Files the kubelet reads, under `root` ("/" in production, a temp dir in tests).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn at(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

/// The kubelet's effective settings (flags over config file).
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Value,
    pub kubeconfig: String,
    pub bootstrap_kubeconfig: String,
    pub runtime_endpoint: String,
    pub node_name: String,
    pub node_ip: Option<String>,
    /// --register-with-taints, as Taint objects for the Node's registration.
    pub register_taints: Vec<Value>,
}

impl Settings {
    pub fn cgroup_driver(&self) -> &str {
        self.config["cgroupDriver"].as_str().unwrap_or("cgroupfs")
    }
    pub fn static_pod_path(&self) -> String {
        self.config["staticPodPath"]
            .as_str()
            .unwrap_or("/etc/kubernetes/manifests")
            .to_string()
    }
}

/// Reads flags and the config file; Err is the real kubelet's fatal message.
pub fn load(args: &[String], paths: &Paths, hostname: &str) -> Result<Settings, String> {
    let f = crate::health::flags(args);
    let config_path = f.get("config").cloned().unwrap_or_default();
    let config = if config_path.is_empty() {
        serde_json::json!({})
    } else {
        let text = std::fs::read_to_string(paths.at(&config_path)).map_err(|e| {
            format!(
                "failed to load kubelet config file, path: {config_path}, error: failed to load Kubelet config file {config_path}, error failed to read kubelet config file \"{config_path}\", error: open {config_path}: {}",
                io_msg(&e)
            )
        })?;
        serde_saphyr::from_str::<Value>(&text).map_err(|e| {
            format!("failed to load kubelet config file, path: {config_path}, error: {e}")
        })?
    };
    let runtime_endpoint = f
        .get("container-runtime-endpoint")
        .cloned()
        .or_else(|| {
            config["containerRuntimeEndpoint"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from)
        })
        .unwrap_or_else(|| crate::config::DEFAULT_CRI_SOCKET.into());
    Ok(Settings {
        kubeconfig: f.get("kubeconfig").cloned().unwrap_or_default(),
        bootstrap_kubeconfig: f.get("bootstrap-kubeconfig").cloned().unwrap_or_default(),
        runtime_endpoint,
        node_name: f
            .get("hostname-override")
            .cloned()
            .unwrap_or_else(|| hostname.to_lowercase()),
        node_ip: f.get("node-ip").cloned(),
        register_taints: f
            .get("register-with-taints")
            .map(|t| parse_taints(t))
            .unwrap_or_default(),
        config,
    })
}

/// "key=value:Effect,key:Effect" (the kubelet's --register-with-taints).
pub fn parse_taints(flag: &str) -> Vec<Value> {
    flag.split(',')
        .filter_map(|t| {
            let (kv, effect) = t.trim().rsplit_once(':')?;
            let mut taint = serde_json::json!({"key": kv, "effect": effect});
            if let Some((k, v)) = kv.split_once('=') {
                taint = serde_json::json!({"key": k, "value": v, "effect": effect});
            }
            Some(taint)
        })
        .collect()
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// failSwapOn (default true) with active swap is fatal.
pub fn swap_error(s: &Settings, paths: &Paths) -> Option<String> {
    let fail = s.config["failSwapOn"].as_bool().unwrap_or(true);
    let swaps = std::fs::read_to_string(paths.at("/proc/swaps")).unwrap_or_default();
    (fail && swaps.lines().count() > 1).then(|| {
        "running with swap on is not supported, please disable swap or set --fail-swap-on flag to false".to_string()
    })
}

/// The runtime socket must accept connections.
pub fn runtime_error(s: &Settings, paths: &Paths) -> Option<String> {
    let sock = s.runtime_endpoint.trim_start_matches("unix://");
    match std::os::unix::net::UnixStream::connect(paths.at(sock)) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "validate service connection: validate CRI v1 runtime API for endpoint \"{}\": rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {sock}: connect: {}\"",
            s.runtime_endpoint,
            io_msg(&e)
        )),
    }
}

/// containerd's runc cgroup driver from its config.toml ("systemd" or "cgroupfs").
pub fn containerd_cgroup_driver(config_toml: Option<&str>) -> &'static str {
    let systemd = config_toml.is_some_and(|t| {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .any(|l| {
                let compact: String = l.chars().filter(|c| !c.is_whitespace()).collect();
                compact == "SystemdCgroup=true"
            })
    });
    if systemd {
        "systemd"
    } else {
        "cgroupfs"
    }
}

/// Why Pods cannot start on this node, if the kubelet's and containerd's
/// cgroup drivers differ (runc then fails every sandbox).
pub fn cgroup_mismatch(s: &Settings, paths: &Paths) -> Option<String> {
    let toml = std::fs::read_to_string(paths.at("/etc/containerd/config.toml")).ok();
    let runtime = containerd_cgroup_driver(toml.as_deref());
    let kubelet = s.cgroup_driver();
    (runtime != kubelet).then(|| {
        if kubelet == "systemd" {
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: cgroup driver mismatch: kubelet uses \"systemd\" but containerd's runc uses \"cgroupfs\" (SystemdCgroup is not true in /etc/containerd/config.toml): unknown".to_string()
        } else {
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got \"/kubepods/burstable\" instead: unknown".to_string()
        }
    })
}

/// A CNI configuration is present (what the runtime's NetworkReady reflects).
pub fn cni_ready(paths: &Paths) -> bool {
    std::fs::read_dir(paths.at("/etc/cni/net.d"))
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json")
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str, files: &[(&str, &str)]) -> Paths {
        let root =
            std::env::temp_dir().join(format!("standin-kubelet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (p, c) in files {
            let full = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, c).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        Paths { root }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_config_is_fatal_like_the_real_kubelet() {
        let p = tree("noconfig", &[]);
        let e = load(&args(&["--config=/var/lib/kubelet/config.yaml"]), &p, "W1").unwrap_err();
        assert_eq!(e, "failed to load kubelet config file, path: /var/lib/kubelet/config.yaml, error: failed to load Kubelet config file /var/lib/kubelet/config.yaml, error failed to read kubelet config file \"/var/lib/kubelet/config.yaml\", error: open /var/lib/kubelet/config.yaml: no such file or directory");
    }

    #[test]
    fn settings_swap_cgroups_and_cni() {
        let p = tree(
            "settings",
            &[
                ("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"),
                ("/proc/swaps", "Filename\tType\n/swap file 1 0 -2\n"),
                ("/etc/containerd/config.toml", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n"),
            ],
        );
        let s = load(
            &args(&[
                "--config",
                "/var/lib/kubelet/config.yaml",
                "--hostname-override=w1",
                "--node-ip=10.0.0.21",
                "--register-with-taints=dedicated=db:NoSchedule,spot:NoExecute",
            ]),
            &p,
            "host",
        )
        .unwrap();
        assert_eq!(
            (
                s.node_name.as_str(),
                s.node_ip.as_deref(),
                s.cgroup_driver()
            ),
            ("w1", Some("10.0.0.21"), "systemd")
        );
        assert_eq!(
            s.register_taints,
            [
                serde_json::json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}),
                serde_json::json!({"key": "spot", "effect": "NoExecute"})
            ]
        );
        assert!(swap_error(&s, &p)
            .unwrap()
            .starts_with("running with swap on is not supported"));
        assert!(cgroup_mismatch(&s, &p)
            .unwrap()
            .contains("cgroup driver mismatch"));
        std::fs::write(
            p.at("/etc/containerd/config.toml"),
            "[x]\n            SystemdCgroup = true\n",
        )
        .unwrap();
        assert!(cgroup_mismatch(&s, &p).is_none());
        assert!(runtime_error(&s, &p)
            .unwrap()
            .contains("connect: no such file or directory"));
        assert!(!cni_ready(&p));
        std::fs::create_dir_all(p.at("/etc/cni/net.d")).unwrap();
        std::fs::write(p.at("/etc/cni/net.d/10-calico.conflist"), "{}").unwrap();
        assert!(cni_ready(&p));
    }

    #[test]
    fn containerd_default_is_cgroupfs() {
        assert_eq!(containerd_cgroup_driver(None), "cgroupfs");
        assert_eq!(
            containerd_cgroup_driver(Some("# SystemdCgroup = true\n")),
            "cgroupfs"
        );
        assert_eq!(
            containerd_cgroup_driver(Some("SystemdCgroup=true")),
            "systemd"
        );
    }
}
