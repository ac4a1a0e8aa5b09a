//! kube-controller-manager stand-in (lab only): see k8s_standin::controllers.

use k8s_standin::pki::CertKey;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("Kubernetes {}", k8s_standin::VERSION);
        return;
    }
    let f = k8s_standin::health::flags(&args);
    let get = |k: &str, d: &str| f.get(k).cloned().unwrap_or_else(|| d.to_string());
    let read = |p: String| {
        std::fs::read_to_string(&p).unwrap_or_else(|e| {
            eprintln!("E0000 failed to read {p}: {e}");
            std::process::exit(1)
        })
    };
    let ca = CertKey {
        cert_pem: read(get(
            "cluster-signing-cert-file",
            "/etc/kubernetes/pki/ca.crt",
        )),
        key_pem: read(get(
            "cluster-signing-key-file",
            "/etc/kubernetes/pki/ca.key",
        )),
    };
    let client = k8s_standin::client::Client::from_kubeconfig_file(&get(
        "kubeconfig",
        "/etc/kubernetes/controller-manager.conf",
    ))
    .unwrap_or_else(|e| {
        eprintln!("E0000 {e}");
        std::process::exit(1)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        if let Err(e) = k8s_standin::health::serve("127.0.0.1:10257").await {
            eprintln!("E0000 failed to listen on 127.0.0.1:10257: {e}");
            std::process::exit(1);
        }
        let me = k8s_standin::controllers::leader::identity();
        loop {
            let now = time::OffsetDateTime::now_utc();
            if k8s_standin::controllers::leader::elect(&client, "kube-controller-manager", &me, now)
                .await
            {
                if let Err(e) = k8s_standin::controllers::reconcile(&client, &ca, now).await {
                    eprintln!("E0000 reconcile: {e}");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
