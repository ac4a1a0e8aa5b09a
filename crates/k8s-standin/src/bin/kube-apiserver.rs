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
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let served = match k8s_standin::apiserver::start_until(&opts, stopping).await {
            Ok((addr, served)) => {
                eprintln!("I0000 serving securely on {addr}");
                served
            }
            Err(e) => {
                eprintln!("E0000 {e}");
                std::process::exit(1);
            }
        };
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("I0000 received a termination signal: shutting down gracefully");
        let _ = stop.send(true);
        let _ = served.await;
    });
}
