//! The apiserver stops as kube-apiserver does on SIGTERM: it answers what is in flight,
//! closes its keep-alive connections at once (so clients reconnect elsewhere rather than
//! lose a request on a reset), and accepts no new connection.

mod common;

use std::time::Duration;

use common::{etcd_available, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_apiserver_closes_idle_connections_and_accepts_no_new_one() {
    if !etcd_available() {
        return;
    }
    let c = Cluster::start("shutdown");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, served) = k8s_standin::apiserver::start_until(&c.apiserver_options(), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let url = format!("https://{addr}");
    c.wait_ready(&url).await;
    let admin = c.admin();
    // The client keeps this connection open for the next request.
    let (code, _) = admin.get(&format!("{url}/api/v1/namespaces/default")).await;
    assert_eq!(code, 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the idle keep-alive connection is closed at once")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connection once stopping"
    );
}
