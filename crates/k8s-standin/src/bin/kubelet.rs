//! kubelet stand-in (lab only): see k8s_standin::kubelet.

use k8s_standin::kubelet::{self, node, pods, workloads, Paths};
use std::time::Duration;

fn fatal(msg: &str) -> ! {
    eprintln!(
        "E0000 run.go:72] \"command failed\" err=\"{}\"",
        msg.replace('"', "\\\"")
    );
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("Kubernetes {}", k8s_standin::VERSION);
        return;
    }
    let paths = Paths { root: "/".into() };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let s = kubelet::load(&args, &paths, &hostname).unwrap_or_else(|e| fatal(&e));
    if let Some(e) = kubelet::swap_error(&s, &paths) {
        fatal(&format!("failed to run Kubelet: {e}"));
    }
    if let Some(e) = kubelet::runtime_error(&s, &paths) {
        fatal(&e);
    }
    let mismatch = kubelet::cgroup_mismatch(&s, &paths);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let addr = format!(
            "{}:{}",
            s.config["healthzBindAddress"].as_str().unwrap_or("127.0.0.1"),
            s.config["healthzPort"].as_u64().unwrap_or(10248)
        );
        if let Err(e) = k8s_standin::health::serve(&addr).await {
            fatal(&format!("failed to listen on {addr}: {e}"));
        }
        let mut runner = pods::Runner::new(paths.clone(), pods::BIN_DIR.into(), s.node_name.clone());
        let mut client = None;
        let mut kc_seen: Option<Vec<u8>> = None;
        let mut last_beat = std::time::Instant::now() - Duration::from_secs(60);
        // Learned from the last heartbeat; both start over with new credentials.
        let mut pod_cidr: Option<String> = None;
        let mut last_report: Option<std::time::Instant> = None;
        loop {
            // Every sandbox fails when the cgroup drivers differ, static Pods included.
            let running = match &mismatch {
                None => runner.sync(&s.static_pod_path()),
                Some(e) => {
                    eprintln!("E0000 kubelet: \"CreatePodSandbox for pod failed\" err=\"rpc error: code = Unknown desc = {e}\"");
                    vec![]
                }
            };
            // A rewritten kubeconfig (kubeadm init/join after a reset) means new credentials.
            let kc_now = std::fs::read(paths.at(&s.kubeconfig)).ok();
            if kc_now != kc_seen {
                client = None;
                pod_cidr = None;
                last_report = None;
            }
            if client.is_none() {
                match node::client(&s, &paths).await {
                    Ok(c) => {
                        client = c;
                        kc_seen = std::fs::read(paths.at(&s.kubeconfig)).ok();
                    }
                    Err(e) => eprintln!("E0000 kubelet: {e}"),
                }
            }
            if let Some(c) = &client {
                let ip = node::node_ip(&s, &c.server);
                let cni = kubelet::cni_ready(&paths);
                let pods = workloads::sync(c, &s.node_name, &ip, cni, mismatch.is_none(), pod_cidr.as_deref()).await;
                if last_beat.elapsed() >= Duration::from_secs(10) {
                    if mismatch.is_none() {
                        node::calico_cni(c, &paths, &pods).await;
                    }
                    let cni = kubelet::cni_ready(&paths);
                    let why = mismatch.clone().unwrap_or_else(|| node::CNI_NOT_READY.to_string());
                    let report_due = last_report.is_none_or(|t| t.elapsed() >= node::STATUS_REPORT_EVERY);
                    match node::heartbeat(c, &s, &paths, cni && mismatch.is_none(), &why, &ip, report_due).await {
                        Ok(beat) => {
                            last_beat = std::time::Instant::now();
                            pod_cidr = beat.pod_cidr;
                            if beat.posted {
                                last_report = Some(last_beat);
                            }
                        }
                        Err(e) => eprintln!("E0000 kubelet: {e}"),
                    }
                    node::mirror_pods(c, &s.node_name, &ip, &running).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
