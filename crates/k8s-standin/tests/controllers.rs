//! The controller-manager stand-in's controllers against a real etcd.

mod common;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::Cluster;
use k8s_standin::config::BootstrapToken;
use k8s_standin::kubeadm::objects::{
    bootstrap_token_secret, cluster_info_kubeconfig, kubeadm_certs_secret, verify_jws,
};
use serde_json::json;
use time::OffsetDateTime;

fn token(t: &str, ttl: &str) -> BootstrapToken {
    BootstrapToken {
        token: t.into(),
        ttl: Some(ttl.into()),
        usages: Some(vec!["signing".into(), "authentication".into()]),
        groups: Some(vec![
            "system:bootstrappers:kubeadm:default-node-token".into()
        ]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_sign_clean_collect_and_issue() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("ctrl");
    let a = cl.apiserver().await;
    let kc = cl.admin_kubeconfig(&a);
    let c = k8s_standin::client::Client::from_kubeconfig(&kc).unwrap();
    let now = OffsetDateTime::now_utc();
    let secrets = "/api/v1/namespaces/kube-system/secrets";
    assert!(c
        .create(
            secrets,
            &bootstrap_token_secret(&token("abcdef.0123456789abcdef", "24h"), now).unwrap()
        )
        .await
        .ok());
    // A token that expired an hour ago, owning a kubeadm-certs Secret.
    let old = bootstrap_token_secret(
        &token("zzzzzz.0123456789abcdef", "1h"),
        now - time::Duration::hours(2),
    )
    .unwrap();
    let owner = c.create(secrets, &old).await;
    assert!(owner.ok(), "{}", owner.message());
    let key = hex::decode(k8s_standin::pki::random_certificate_key()).unwrap();
    let certs = kubeadm_certs_secret(
        &|_| Some(b"x".to_vec()),
        &key,
        owner.body["metadata"]["uid"].as_str().unwrap(),
        "bootstrap-token-zzzzzz",
    )
    .unwrap();
    assert!(c.create(secrets, &certs).await.ok());
    let info = cluster_info_kubeconfig(&a, &cl.ca.cert_pem);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": {"kubeconfig": info}});
    assert!(c
        .create("/api/v1/namespaces/kube-public/configmaps", &cm)
        .await
        .ok());
    let (csr, _) = k8s_standin::pki::new_csr("system:node:w1", &["system:nodes"]).unwrap();
    let csr_obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"generateName": "csr-"},
        "spec": {"request": B64.encode(&csr), "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"]}});
    let created = c
        .create(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            &csr_obj,
        )
        .await;
    assert!(created.ok(), "{}", created.message());
    let stale = (now - time::Duration::seconds(120))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stale}]}});
    assert!(c.create("/api/v1/nodes", &node).await.ok());

    k8s_standin::controllers::reconcile(&c, &cl.ca, now)
        .await
        .unwrap();

    let info_cm = c
        .get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
        .await
        .body;
    let sig = info_cm["data"]["jws-kubeconfig-abcdef"]
        .as_str()
        .expect("signed for the valid token");
    assert!(verify_jws(&info, sig, "abcdef", "0123456789abcdef"));
    assert!(
        info_cm["data"].get("jws-kubeconfig-zzzzzz").is_none(),
        "no signature for an expired token"
    );
    assert_eq!(
        c.get(&format!("{secrets}/bootstrap-token-zzzzzz"))
            .await
            .code,
        404,
        "token cleaner"
    );
    assert_eq!(
        c.get(&format!("{secrets}/kubeadm-certs")).await.code,
        404,
        "garbage collector"
    );
    assert_eq!(
        c.get(&format!("{secrets}/bootstrap-token-abcdef"))
            .await
            .code,
        200
    );
    let name = created.body["metadata"]["name"].as_str().unwrap();
    let signed = c
        .get(&format!(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
        ))
        .await
        .body;
    let cert = String::from_utf8(
        B64.decode(signed["status"]["certificate"].as_str().expect("issued"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        k8s_standin::pki::subject(&cert).unwrap().0,
        "system:node:w1"
    );
    let n = c.get("/api/v1/nodes/w1").await.body;
    assert_eq!(n["status"]["conditions"][0]["status"], "Unknown");
    assert_eq!(k8s_standin::apiserver::objects::node_status(&n), "NotReady");
}

/// One controller-manager acts at a time: the Lease goes to the first
/// candidate, is renewed by it, and taken over only once it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_through_a_lease() {
    if !common::etcd_available() {
        return;
    }
    use k8s_standin::controllers::leader::{elect, LEASE_SECONDS};
    let cl = Cluster::start("leader");
    let a = cl.apiserver().await;
    let c = k8s_standin::client::Client::from_kubeconfig(&cl.admin_kubeconfig(&a)).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(elect(&c, "kube-controller-manager", "cp1_x", now).await);
    assert!(!elect(&c, "kube-controller-manager", "cp2_y", now).await);
    assert!(
        elect(&c, "kube-controller-manager", "cp1_x", now).await,
        "renewed"
    );
    let later = now + time::Duration::seconds(LEASE_SECONDS + 1);
    assert!(
        elect(&c, "kube-controller-manager", "cp2_y", later).await,
        "taken over"
    );
    assert!(!elect(&c, "kube-controller-manager", "cp1_x", later).await);
    let lease = c
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager")
        .await
        .body;
    assert_eq!(lease["spec"]["holderIdentity"], "cp2_y");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}
