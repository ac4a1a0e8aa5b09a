//! kube-apiserver stand-in (lab only): see k8s_standin::apiserver.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("Kubernetes {}", k8s_standin::VERSION);
        return;
    }
    let opts = match k8s_standin::apiserver::Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let served = match k8s_standin::apiserver::start_until(&opts, terminated()).await {
            Ok((addr, served)) => {
                eprintln!("I0000 serving securely on {addr}");
                served
            }
            Err(e) => {
                eprintln!("E0000 {e}");
                std::process::exit(1);
            }
        };
        // As kube-apiserver on SIGTERM (the kubelet stopping its static pod): requests
        // in flight are answered and connections closed; watches are cut when it exits.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), served).await;
        eprintln!("I0000 shut down");
    });
}

/// SIGTERM or SIGINT.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
