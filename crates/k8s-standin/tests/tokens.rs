//! ServiceAccount tokens through the real kubectl: `kubectl create token`
//! issues a bound JWT that every apiserver on the cluster's keys accepts as
//! the ServiceAccount; expired tokens, tokens of deleted ServiceAccounts and
//! forged ones are refused. Also `kubectl auth can-i` / `whoami`.

mod common;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::Cluster;
use k8s_standin::apiserver::tokens::{claims, SaKeys};
use serde_json::json;

async fn kubectl(
    kubeconfig: &std::path::Path,
    home: &std::path::Path,
    args: &[&str],
) -> (bool, String) {
    let k = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = tokio::process::Command::new(k)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn token_kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
        B64.encode(ca_pem)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_and_access_reviews() {
    if !common::etcd_available() {
        return;
    }
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
        && std::env::var("KUBECTL").is_err()
    {
        eprintln!("SKIPPED: no kubectl");
        return;
    }
    let cl = Cluster::start("tokens");
    let a = cl.apiserver().await;
    let admin_kc = cl.dir.join("admin.conf");
    std::fs::write(&admin_kc, cl.admin_kubeconfig(&a)).unwrap();
    let home = cl.dir.clone();
    let (ok, out) = kubectl(&admin_kc, &home, &["create", "serviceaccount", "robot"]).await;
    assert!(ok, "{out}");
    let (ok, token) = kubectl(
        &admin_kc,
        &home,
        &["create", "token", "robot", "--duration=10m"],
    )
    .await;
    assert!(ok, "{token}");
    let token = token.trim().to_string();
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");

    // The token authenticates as the ServiceAccount, which RBAC gives nothing.
    let robot_kc = cl.dir.join("robot.conf");
    std::fs::write(&robot_kc, token_kubeconfig(&a, &cl.ca.cert_pem, &token)).unwrap();
    let (ok, out) = kubectl(
        &robot_kc,
        &home,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out, "system:serviceaccount:default:robot");
    let (ok, out) = kubectl(&robot_kc, &home, &["get", "secrets"]).await;
    assert!(!ok);
    assert!(out.contains("secrets is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"secrets\""), "{out}");
    let (ok, out) = kubectl(&robot_kc, &home, &["auth", "can-i", "list", "secrets"]).await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out) = kubectl(
        &admin_kc,
        &home,
        &["auth", "can-i", "list", "secrets", "-n", "kube-system"],
    )
    .await;
    assert!(ok && out.trim() == "yes", "{out}");

    // RBAC objects are evaluated: the built-in view role, bound in one namespace.
    let (ok, out) = kubectl(
        &admin_kc,
        &home,
        &[
            "create",
            "rolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=default:robot",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&robot_kc, &home, &["get", "pods"]).await;
    assert!(ok && out.contains("No resources found"), "{out}");
    let (ok, out) = kubectl(&robot_kc, &home, &["auth", "can-i", "list", "pods"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = kubectl(
        &robot_kc,
        &home,
        &["auth", "can-i", "list", "pods", "-n", "kube-system"],
    )
    .await;
    assert!(
        !ok && out.trim() == "no",
        "a RoleBinding grants only in its namespace: {out}"
    );
    let (ok, out) = kubectl(&robot_kc, &home, &["auth", "can-i", "delete", "pods"]).await;
    assert!(!ok && out.trim() == "no", "view cannot delete: {out}");
    assert!(
        !kubectl(&robot_kc, &home, &["get", "secrets"]).await.0,
        "view excludes secrets"
    );

    // A second apiserver with the same keys (another control plane, or one
    // restarted after an etcd restore) accepts the token.
    let b = cl.apiserver().await;
    let other = common::Client::new(&cl.ca.cert_pem, None);
    let mut other = other;
    other.bearer = Some(token.clone());
    assert_eq!(other.get(&format!("{b}/api/v1")).await.0, 200);

    // Too short a duration is refused by the apiserver, as the real one does.
    let (ok, out) = kubectl(
        &admin_kc,
        &home,
        &["create", "token", "robot", "--duration=5m"],
    )
    .await;
    assert!(
        !ok && out.contains("may not specify a duration less than 10 minutes"),
        "{out}"
    );

    // Expired, forged and orphaned tokens: 401.
    let keys = SaKeys::load(
        "https://kubernetes.default.svc.cluster.local",
        &[],
        Some(&std::fs::read_to_string(cl.pki("sa.key")).unwrap()),
        &std::fs::read_to_string(cl.pki("sa.pub")).unwrap(),
    )
    .unwrap();
    let sa = cl
        .admin()
        .get(&format!(
            "{a}/api/v1/namespaces/default/serviceaccounts/robot"
        ))
        .await
        .1;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = keys
        .sign(&claims(
            &keys.issuer,
            &keys.audiences,
            &sa,
            None,
            now - 7200,
            now - 3600,
        ))
        .unwrap();
    let valid = keys
        .sign(&claims(
            &keys.issuer,
            &keys.audiences,
            &sa,
            None,
            now,
            now + 3600,
        ))
        .unwrap();
    let forged = {
        let p: Vec<&str> = token.split('.').collect();
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"sub": "system:admin"}).to_string());
        format!("{}.{body}.{}", p[0], p[2])
    };
    let code = |t: String| {
        let mut c = common::Client::new(&cl.ca.cert_pem, None);
        c.bearer = Some(t);
        let url = format!("{a}/api/v1");
        async move { c.get(&url).await.0 }
    };
    assert_eq!(code(valid.clone()).await, 200);
    assert_eq!(code(expired).await, 401, "expired token refused");
    assert_eq!(code(forged).await, 401, "forged token refused");
    let (ok, out) = kubectl(&admin_kc, &home, &["delete", "serviceaccount", "robot"]).await;
    assert!(ok, "{out}");
    assert_eq!(code(valid).await, 401, "the ServiceAccount is gone");
    assert_eq!(code(token).await, 401);
}
