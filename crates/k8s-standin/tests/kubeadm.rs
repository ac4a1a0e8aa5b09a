//! kubeadm's cluster-facing steps against a real etcd and the apiserver
//! stand-in: discovery with CA pinning, expired tokens, certificate upload and
//! download with the certificate key, and one-learner-at-a-time etcd joins.

mod common;

use common::Cluster;
use k8s_standin::apiserver::etcd::{Etcd, EtcdError};
use k8s_standin::client::Client;
use k8s_standin::config::{BootstrapToken, BootstrapTokenDiscovery};
use k8s_standin::kubeadm::{init, join, objects as kobj, Env};
use serde_json::json;
use std::time::Duration;

async fn setup(cl: &Cluster) -> (String, Client) {
    let a = cl.apiserver().await;
    let kc = cl.admin_kubeconfig(&a);
    let c = Client::from_kubeconfig(&kc).unwrap();
    let t = BootstrapToken {
        token: "abcdef.0123456789abcdef".into(),
        ttl: Some("24h".into()),
        usages: Some(vec!["signing".into(), "authentication".into()]),
        groups: Some(vec![
            "system:bootstrappers:kubeadm:default-node-token".into()
        ]),
        ..Default::default()
    };
    assert!(c
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            &kobj::bootstrap_token_secret(&t, time::OffsetDateTime::now_utc()).unwrap()
        )
        .await
        .ok());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kobj::cluster_info_kubeconfig(&a, &cl.ca.cert_pem)}});
    assert!(c
        .create("/api/v1/namespaces/kube-public/configmaps", &cm)
        .await
        .ok());
    k8s_standin::controllers::reconcile(&c, &cl.ca, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    (a, c)
}

fn discovery(a: &str, token: &str, hash: &str) -> BootstrapTokenDiscovery {
    BootstrapTokenDiscovery {
        token: token.into(),
        api_server_endpoint: a.trim_start_matches("https://").into(),
        ca_cert_hashes: Some(vec![hash.into()]),
        unsafe_skip_ca_verification: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_pins_the_ca_and_needs_a_live_token() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("disc");
    let (a, _) = setup(&cl).await;
    let hash = k8s_standin::pki::ca_cert_hash(&cl.ca.cert_pem).unwrap();
    let (server, ca) = join::discover(
        &discovery(&a, "abcdef.0123456789abcdef", &hash),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        (server.as_str(), ca.as_str()),
        (a.as_str(), cl.ca.cert_pem.as_str())
    );

    let wrong = format!("sha256:{}", "0".repeat(64));
    let e = join::discover(
        &discovery(&a, "abcdef.0123456789abcdef", &wrong),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.phase.as_deref(), Some("preflight"));
    assert_eq!(e.msg, format!("couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{hash}\" are pinned"));

    // A token the cluster does not know (or that expired and was cleaned) has no signature.
    let e = join::discover(
        &discovery(&a, "zzzzzz.0123456789abcdef", &hash),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(e.msg, "couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\"");

    // A token with the right id but wrong secret fails the signature check.
    let e = join::discover(
        &discovery(&a, "abcdef.xxxxxxxxxxxxxxxx", &hash),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        e.msg.contains("failed to verify JWS signature"),
        "{}",
        e.msg
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_key_upload_download_and_expiry() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("certs");
    let (a, admin) = setup(&cl).await;
    let src = Env {
        root: cl.dir.clone(),
    };
    let key = k8s_standin::pki::random_certificate_key();
    init::upload_certs(&admin, &src, "/pki", &key)
        .await
        .unwrap();

    let tok = Client::with_token(&a, &cl.ca.cert_pem, "abcdef.0123456789abcdef").unwrap();
    let dst = Env {
        root: cl.dir.join("joiner"),
    };
    join::download_certs(&tok, &dst, "/etc/kubernetes/pki", &key)
        .await
        .unwrap();
    for f in ["ca.key", "etcd/ca.key", "front-proxy-ca.crt", "sa.pub"] {
        assert_eq!(
            std::fs::read(dst.path(&format!("/etc/kubernetes/pki/{f}"))).unwrap(),
            std::fs::read(cl.dir.join("pki").join(f)).unwrap(),
            "{f}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dst.path("/etc/kubernetes/pki/ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let other = k8s_standin::pki::random_certificate_key();
    let e = join::download_certs(&tok, &dst, "/etc/kubernetes/pki", &other)
        .await
        .unwrap_err();
    assert_eq!(e.msg, "error downloading certs: error decoding secret data with provided key: cipher: message authentication failed");

    // When the 2 h owner token goes, the garbage collector takes the Secret with it.
    let secrets = admin
        .get("/api/v1/namespaces/kube-system/secrets")
        .await
        .body;
    let owner = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            kobj::secret_field(s, "description").as_deref()
                == Some("Proxy for managing TTL for the kubeadm-certs secret")
        })
        .unwrap();
    assert!(kobj::secret_field(owner, "usage-bootstrap-authentication").is_none());
    let name = owner["metadata"]["name"].as_str().unwrap();
    assert!(admin
        .delete(&format!("/api/v1/namespaces/kube-system/secrets/{name}"))
        .await
        .ok());
    k8s_standin::controllers::reconcile(&admin, &cl.ca, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let e = join::download_certs(&tok, &dst, "/etc/kubernetes/pki", &key)
        .await
        .unwrap_err();
    assert_eq!(
        e.phase.as_deref(),
        Some("control-plane-prepare/download-certs")
    );
    assert!(e.msg.contains("Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired."), "{}", e.msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_takes_one_learner_at_a_time() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("learner");
    let r = |f: &str| std::fs::read(cl.dir.join("pki").join(f)).unwrap();
    let etcd = Etcd::new(
        vec![cl.etcd_url.clone()],
        &r("etcd/ca.crt"),
        &r("apiserver-etcd-client.crt"),
        &r("apiserver-etcd-client.key"),
    )
    .unwrap();
    let mut first = None;
    for _ in 0..50 {
        match etcd.member_add("https://127.0.0.1:12380", true).await {
            Ok((m, all)) => {
                assert!(m.is_learner);
                assert_eq!(all.len(), 2);
                first = Some(m);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let first = first.expect("first learner added");
    // A concurrent second control-plane join fails as etcd refuses a second learner.
    match etcd.member_add("https://127.0.0.1:12381", true).await {
        Err(EtcdError::Server { message, .. }) => {
            assert_eq!(message, "too many learner members in cluster")
        }
        other => panic!("second learner accepted: {other:?}"),
    }
    // The learner cannot be promoted before it catches up (it never started here).
    assert!(etcd.member_promote(first.id).await.is_err());
    etcd.member_remove(first.id).await.unwrap();
    assert_eq!(etcd.members().await.unwrap().len(), 1);
}

/// kubeadm's add-ons: CoreDNS and kube-proxy as kubeadm ships them, and an
/// upgrade moving kube-proxy's DaemonSet to the new version (a new
/// generation its controller rolls out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addons_follow_the_cluster_version() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("addons");
    let a = cl.apiserver().await;
    let c = Client::from_kubeconfig(&cl.admin_kubeconfig(&a)).unwrap();
    let mut cluster = k8s_standin::config::ClusterConfiguration {
        kubernetes_version: Some("v1.31.0".into()),
        ..Default::default()
    };
    init::addons(&c, &cluster, &|_| false).await.unwrap();
    let dns = c
        .get("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
        .await
        .body;
    assert_eq!(dns["spec"]["replicas"], 2);
    let tolerations = &dns["spec"]["template"]["spec"]["tolerations"];
    assert!(tolerations
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "node-role.kubernetes.io/control-plane"));
    let ds = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy";
    let proxy = c.get(ds).await.body;
    assert_eq!(
        proxy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-proxy:v1.31.0"
    );
    assert_eq!(
        proxy["spec"]["template"]["spec"]["tolerations"],
        json!([{"operator": "Exists"}])
    );
    cluster.kubernetes_version = Some("v1.32.0".into());
    init::addons(&c, &cluster, &|_| false).await.unwrap();
    let proxy = c.get(ds).await.body;
    assert_eq!(
        proxy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-proxy:v1.32.0"
    );
    assert_eq!(proxy["metadata"]["generation"], 2);
}
