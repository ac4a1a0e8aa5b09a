//! kube-scheduler stand-in (lab only): holds its port and stays healthy; no
//! Pods run in the lab, so there is nothing to schedule.

fn main() {
    if std::env::args().any(|a| a == "--version") {
        println!("Kubernetes {}", k8s_standin::VERSION);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        if let Err(e) = k8s_standin::health::serve("127.0.0.1:10259").await {
            eprintln!("E0000 failed to listen on 127.0.0.1:10259: {e}");
            std::process::exit(1);
        }
        std::future::pending::<()>().await;
    });
}
