//! kube-scheduler stand-in (lab only): see k8s_standin::scheduler. Holds the
//! kube-scheduler Lease so one instance schedules at a time.

use k8s_standin::controllers::leader;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("Kubernetes {}", k8s_standin::VERSION);
        return;
    }
    let f = k8s_standin::health::flags(&args);
    let kubeconfig = f
        .get("kubeconfig")
        .cloned()
        .unwrap_or_else(|| "/etc/kubernetes/scheduler.conf".into());
    let client =
        k8s_standin::client::Client::from_kubeconfig_file(&kubeconfig).unwrap_or_else(|e| {
            eprintln!("E0000 {e}");
            std::process::exit(1)
        });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        if let Err(e) = k8s_standin::health::serve("127.0.0.1:10259").await {
            eprintln!("E0000 failed to listen on 127.0.0.1:10259: {e}");
            std::process::exit(1);
        }
        let me = leader::identity();
        loop {
            if leader::elect(
                &client,
                "kube-scheduler",
                &me,
                time::OffsetDateTime::now_utc(),
            )
            .await
            {
                if let Err(e) = k8s_standin::scheduler::schedule(&client).await {
                    eprintln!("E0000 schedule: {e}");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
