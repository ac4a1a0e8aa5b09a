//! Static Pods as processes: each manifest's container command is run (etcd is
//! Debian's binary, the control-plane components are the stand-ins). Processes
//! outlive a kubelet restart, as containers do, and are adopted again.

use super::Paths;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where the stand-in control-plane binaries live.
pub const BIN_DIR: &str = "/usr/lib/k8s-standin/bin";
/// Tells a stand-in component which version its "image" is.
pub const VERSION_ENV: &str = "K8S_STANDIN_VERSION";
/// Pid and manifest-hash files of running static Pods.
pub const STATE_DIR: &str = "/run/kubelet-standin";

/// One static Pod read from its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    pub name: String,
    pub command: Vec<String>,
    /// The container image's tag: the version the component reports.
    pub image_tag: String,
    pub annotations: Value,
    pub hash: String,
}

/// Parses a manifest; None for files that are not Pods with a command.
pub fn parse_manifest(text: &str) -> Option<StaticPod> {
    let v: Value = serde_saphyr::from_str(text).ok()?;
    if v["kind"] != "Pod" {
        return None;
    }
    let command: Vec<String> = v
        .pointer("/spec/containers/0/command")?
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    if command.is_empty() {
        return None;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let image = v
        .pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(StaticPod {
        name: v["metadata"]["name"].as_str()?.to_string(),
        command,
        image_tag: image
            .rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default(),
        annotations: v["metadata"]["annotations"].clone(),
        hash: hex::encode(&digest.as_ref()[..8]),
    })
}

/// The executable for a container command's first word.
pub fn executable(cmd0: &str, bin_dir: &str) -> PathBuf {
    let own = PathBuf::from(bin_dir).join(cmd0);
    if matches!(
        cmd0,
        "kube-apiserver" | "kube-controller-manager" | "kube-scheduler"
    ) {
        own
    } else {
        PathBuf::from(cmd0)
    }
}

/// Runs and supervises static Pods.
pub struct Runner {
    pub paths: Paths,
    pub bin_dir: String,
    pub node_name: String,
    children: BTreeMap<String, Child>,
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Sends SIGTERM, then SIGKILL after a grace period.
pub fn stop_pid(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    for _ in 0..50 {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

/// Stops every static Pod process recorded in the state dir (kubeadm reset
/// does this through the CRI).
pub fn stop_all(paths: &Paths) {
    let Ok(dir) = std::fs::read_dir(paths.at(STATE_DIR)) else {
        return;
    };
    for e in dir.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pid") {
            if let Some(pid) = std::fs::read_to_string(&p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                stop_pid(pid);
            }
            let _ = std::fs::remove_file(&p);
        }
    }
}

impl Runner {
    pub fn new(paths: Paths, bin_dir: String, node_name: String) -> Runner {
        Runner {
            paths,
            bin_dir,
            node_name,
            children: BTreeMap::new(),
        }
    }

    fn state(&self, name: &str, ext: &str) -> PathBuf {
        self.paths.at(&format!("{STATE_DIR}/{name}.{ext}"))
    }

    fn recorded(&self, name: &str) -> Option<(u32, String)> {
        let pid = std::fs::read_to_string(self.state(name, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let hash = std::fs::read_to_string(self.state(name, "hash")).ok()?;
        Some((pid, hash))
    }

    fn is_running(&mut self, name: &str, pid: u32) -> bool {
        if let Some(c) = self.children.get_mut(name) {
            return matches!(c.try_wait(), Ok(None));
        }
        alive(pid)
    }

    fn stop(&mut self, name: &str) {
        if let Some((pid, _)) = self.recorded(name) {
            stop_pid(pid);
        }
        if let Some(mut c) = self.children.remove(name) {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.state(name, "pid"));
        let _ = std::fs::remove_file(self.state(name, "hash"));
    }

    fn start(&mut self, pod: &StaticPod) -> Result<u32, String> {
        let exe = executable(&pod.command[0], &self.bin_dir);
        let log_dir = self.paths.at(&format!(
            "/var/log/pods/kube-system_{}-{}",
            pod.name, self.node_name
        ));
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", pod.name)))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args(&pod.command[1..])
            // A container runs the version its image names, not the host package's.
            .env(VERSION_ENV, &pod.image_tag)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("failed to start {}: {e}", exe.display()))?;
        let pid = child.id();
        std::fs::create_dir_all(self.paths.at(STATE_DIR)).map_err(|e| e.to_string())?;
        std::fs::write(self.state(&pod.name, "pid"), pid.to_string()).map_err(|e| e.to_string())?;
        std::fs::write(self.state(&pod.name, "hash"), &pod.hash).map_err(|e| e.to_string())?;
        self.children.insert(pod.name.clone(), child);
        Ok(pid)
    }

    /// One sync: start missing or changed Pods, stop removed ones. Returns the
    /// Pods running afterwards.
    pub fn sync(&mut self, manifest_dir: &str) -> Vec<StaticPod> {
        let mut wanted = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(self.paths.at(manifest_dir)) {
            for e in dir.flatten() {
                if let Some(p) = std::fs::read_to_string(e.path())
                    .ok()
                    .as_deref()
                    .and_then(parse_manifest)
                {
                    wanted.insert(p.name.clone(), p);
                }
            }
        }
        let known: Vec<String> = std::fs::read_dir(self.paths.at(STATE_DIR))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.path()
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        for name in known {
            if !wanted.contains_key(&name) {
                eprintln!("I0000 kubelet: stopping static pod {name}: manifest removed");
                self.stop(&name);
            }
        }
        let mut running = vec![];
        for pod in wanted.values() {
            match self.recorded(&pod.name) {
                Some((pid, hash)) if hash == pod.hash && self.is_running(&pod.name, pid) => {
                    running.push(pod.clone());
                    continue;
                }
                Some(_) => self.stop(&pod.name),
                None => {}
            }
            match self.start(pod) {
                Ok(pid) => {
                    eprintln!("I0000 kubelet: started static pod {} (pid {pid})", pod.name);
                    running.push(pod.clone());
                }
                Err(e) => eprintln!("E0000 kubelet: \"Error syncing pod, skipping\" pod=\"kube-system/{}\" err=\"{e}\"", pod.name),
            }
        }
        running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubeadm_manifest() {
        let cp = crate::kubeadm::manifests::ControlPlane {
            node_name: "cp1".into(),
            advertise_address: "10.0.0.11".into(),
            bind_port: 6443,
            service_subnet: "10.96.0.0/12".into(),
            pod_subnet: None,
            etcd_data_dir: "/var/lib/etcd".into(),
            etcd_initial_cluster: "cp1=https://10.0.0.11:2380".into(),
            etcd_existing: false,
            version: "v1.31.0".into(),
            image_repository: "registry.k8s.io".into(),
            cluster_name: "kubernetes".into(),
            apiserver_args: Default::default(),
            controller_manager_args: Default::default(),
            scheduler_args: Default::default(),
            etcd_args: Default::default(),
        };
        let p = parse_manifest(&crate::kubeadm::manifests::etcd(&cp)).unwrap();
        assert_eq!(p.name, "etcd");
        assert_eq!(p.command[0], "etcd");
        assert_eq!(
            p.annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://10.0.0.11:2379"
        );
        assert_eq!(executable("etcd", BIN_DIR), PathBuf::from("etcd"));
        assert_eq!(
            executable("kube-apiserver", BIN_DIR),
            PathBuf::from("/usr/lib/k8s-standin/bin/kube-apiserver")
        );
        assert!(parse_manifest("apiVersion: v1\nkind: ConfigMap\n").is_none());
    }

    #[test]
    fn runs_restarts_and_stops_processes() {
        let root = std::env::temp_dir().join(format!("standin-pods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/kubernetes/manifests")).unwrap();
        let manifest = |arg: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\nspec:\n  containers:\n  - name: s\n    command: [sleep, \"{arg}\"]\n")
        };
        std::fs::write(root.join("etc/kubernetes/manifests/s.yaml"), manifest("30")).unwrap();
        let paths = Paths { root: root.clone() };
        let mut r = Runner::new(paths.clone(), BIN_DIR.into(), "n1".into());
        assert_eq!(r.sync("/etc/kubernetes/manifests").len(), 1);
        let (pid1, _) = r.recorded("sleeper").unwrap();
        assert!(alive(pid1));
        assert_eq!(r.sync("/etc/kubernetes/manifests").len(), 1);
        assert_eq!(
            r.recorded("sleeper").unwrap().0,
            pid1,
            "unchanged manifest keeps the process"
        );
        std::fs::write(root.join("etc/kubernetes/manifests/s.yaml"), manifest("31")).unwrap();
        r.sync("/etc/kubernetes/manifests");
        let (pid2, _) = r.recorded("sleeper").unwrap();
        assert_ne!(pid1, pid2, "a changed manifest restarts the pod");
        std::fs::remove_file(root.join("etc/kubernetes/manifests/s.yaml")).unwrap();
        assert!(r.sync("/etc/kubernetes/manifests").is_empty());
        assert!(r.recorded("sleeper").is_none());
        let _ = std::fs::remove_dir_all(&root);
    }
}
