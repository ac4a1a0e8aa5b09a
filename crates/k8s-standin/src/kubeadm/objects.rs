//! The API objects kubeadm creates: bootstrap tokens, cluster-info with its
//! JWS signatures, kubeadm-config, kubelet-config and kubeadm-certs.

use crate::apiserver::objects::rfc3339;
use crate::config::{duration, BootstrapToken, ClusterConfiguration};
use crate::pki;
use base64::{
    engine::general_purpose::STANDARD as B64, engine::general_purpose::URL_SAFE_NO_PAD as B64URL,
    Engine,
};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

pub const KUBE_SYSTEM: &str = "kube-system";
pub const UPLOAD_CERTS_TTL_SECS: u64 = 2 * 3600;

fn b64s(s: &str) -> Value {
    json!(B64.encode(s))
}

/// The Secret that stores a bootstrap token (cluster-bootstrap's format).
pub fn bootstrap_token_secret(t: &BootstrapToken, now: OffsetDateTime) -> Result<Value, String> {
    let (id, secret) = t.token.split_once('.').ok_or("invalid token")?;
    let mut data = Map::new();
    data.insert("token-id".into(), b64s(id));
    data.insert("token-secret".into(), b64s(secret));
    if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
        data.insert("description".into(), b64s(d));
    }
    let expiration = match (&t.expires, &t.ttl) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(ttl)) => {
            let d = duration::parse(ttl)?;
            (!d.is_zero()).then(|| rfc3339(now + time::Duration::seconds(d.as_secs() as i64)))
        }
        (None, None) => None,
    };
    if let Some(e) = expiration {
        data.insert("expiration".into(), b64s(&e));
    }
    for u in t.usages.iter().flatten() {
        data.insert(format!("usage-bootstrap-{u}"), b64s("true"));
    }
    if let Some(g) = t.groups.as_ref().filter(|g| !g.is_empty()) {
        data.insert("auth-extra-groups".into(), b64s(&g.join(",")));
    }
    Ok(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": KUBE_SYSTEM}, "data": data}),
    )
}

/// Decoded fields of a bootstrap-token Secret (for `kubeadm token list`).
pub fn secret_field(secret: &Value, k: &str) -> Option<String> {
    String::from_utf8(
        B64.decode(secret.pointer(&format!("/data/{k}"))?.as_str()?)
            .ok()?,
    )
    .ok()
}

/// The kubeconfig stored in kube-public/cluster-info: CA and server only.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        B64.encode(ca_pem)
    )
}

/// A detached JWS (HS256, key = token secret, kid = token id), as the
/// bootstrap signer stores in cluster-info under `jws-kubeconfig-<id>`.
pub fn detached_jws(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = B64URL.encode(format!("{{\"alg\":\"HS256\",\"kid\":\"{token_id}\"}}"));
    let input = format!("{header}.{}", B64URL.encode(content));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", B64URL.encode(sig.as_ref()))
}

/// Checks a detached JWS made by `detached_jws` in constant time.
pub fn verify_jws(content: &str, jws: &str, token_id: &str, token_secret: &str) -> bool {
    let Some((header, sig)) = jws.split_once("..") else {
        return false;
    };
    let Ok(sig) = B64URL.decode(sig) else {
        return false;
    };
    let Ok(h) = B64URL.decode(header) else {
        return false;
    };
    let kid_ok = serde_json::from_slice::<Value>(&h)
        .is_ok_and(|h| h["kid"] == token_id && h["alg"] == "HS256");
    let input = format!("{header}.{}", B64URL.encode(content));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    kid_ok && ring::hmac::verify(&key, input.as_bytes(), &sig).is_ok()
}

/// Drops nulls so stored YAML looks like kubeadm's (omitempty).
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(&without_nulls(v)).unwrap_or_default()
}

/// kube-system/kubeadm-config: the ClusterConfiguration, always as v1beta4.
pub fn kubeadm_config_map(cluster: &ClusterConfiguration) -> Value {
    let mut c = serde_json::to_value(cluster).unwrap_or_default();
    c["apiVersion"] = json!("kubeadm.k8s.io/v1beta4");
    c["kind"] = json!("ClusterConfiguration");
    for p in ["timeoutForControlPlane"] {
        if let Some(m) = c["apiServer"].as_object_mut() {
            m.remove(p);
        }
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": KUBE_SYSTEM},
        "data": {"ClusterConfiguration": to_yaml(&c)}})
}

/// The KubeletConfiguration kubeadm writes: user fields over kubeadm's defaults.
pub fn kubelet_configuration(user: Option<&Value>, dns_domain: &str, cluster_dns: &str) -> Value {
    let mut k = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": false}, "webhook": {"enabled": true, "cacheTTL": "0s"}, "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupDriver": "systemd", "clusterDNS": [cluster_dns], "clusterDomain": dns_domain,
        "containerRuntimeEndpoint": "", "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "rotateCertificates": true, "staticPodPath": "/etc/kubernetes/manifests",
    });
    if let Some(u) = user {
        crate::apiserver::objects::merge_patch(&mut k, u);
    }
    k
}

pub fn kubelet_config_map(kubelet: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-config", "namespace": KUBE_SYSTEM},
        "data": {"kubelet": to_yaml(kubelet)}})
}

/// kube-system/kubeadm-certs: each shared file encrypted with the certificate key,
/// owned by a short-lived token Secret so it disappears with it (2 h).
pub fn kubeadm_certs_secret(
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    key: &[u8],
    owner_uid: &str,
    owner_name: &str,
) -> Result<Value, String> {
    let mut data = Map::new();
    for (k, path) in pki::SHARED_CERTS {
        let Some(content) = read(path) else { continue };
        data.insert(
            k.to_string(),
            json!(B64.encode(pki::encrypt(key, &content).map_err(|e| e.to_string())?)),
        );
    }
    Ok(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kubeadm-certs", "namespace": KUBE_SYSTEM,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": owner_name, "uid": owner_uid, "blockOwnerDeletion": true, "controller": true}]},
        "data": data}),
    )
}

/// Decrypts kubeadm-certs into (path, bytes) pairs.
pub fn decode_kubeadm_certs(secret: &Value, key: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = vec![];
    for (k, path) in pki::SHARED_CERTS {
        let Some(enc) = secret
            .pointer(&format!("/data/{k}"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let bytes = B64.decode(enc).map_err(|e| e.to_string())?;
        let plain = pki::decrypt(key, &bytes)
            .map_err(|e| format!("error decoding secret data with provided key: {e}"))?;
        out.push((path.to_string(), plain));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secret_shape() {
        let t = BootstrapToken {
            token: "abcdef.0123456789abcdef".into(),
            ttl: Some("24h0m0s".into()),
            usages: Some(vec!["signing".into(), "authentication".into()]),
            groups: Some(vec![
                "system:bootstrappers:kubeadm:default-node-token".into()
            ]),
            ..Default::default()
        };
        let now = OffsetDateTime::parse(
            "2026-01-01T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let s = bootstrap_token_secret(&t, now).unwrap();
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(
            secret_field(&s, "expiration").unwrap(),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(secret_field(&s, "usage-bootstrap-signing").unwrap(), "true");
        assert_eq!(
            secret_field(&s, "token-secret").unwrap(),
            "0123456789abcdef"
        );
        let never = BootstrapToken {
            ttl: Some("0s".into()),
            ..t
        };
        assert!(
            secret_field(&bootstrap_token_secret(&never, now).unwrap(), "expiration").is_none()
        );
    }

    #[test]
    fn jws_round_trip() {
        let kc = cluster_info_kubeconfig("https://10.0.0.10:6443", "CA");
        let jws = detached_jws(&kc, "abcdef", "0123456789abcdef");
        assert!(jws.contains(".."));
        assert!(verify_jws(&kc, &jws, "abcdef", "0123456789abcdef"));
        assert!(!verify_jws(&kc, &jws, "abcdef", "0123456789abcdeX"));
        assert!(!verify_jws("other", &jws, "abcdef", "0123456789abcdef"));
    }

    #[test]
    fn certs_secret_round_trip() {
        let key = hex::decode(pki::random_certificate_key()).unwrap();
        let read = |p: &str| Some(format!("content of {p}").into_bytes());
        let s = kubeadm_certs_secret(&read, &key, "uid-1", "bootstrap-token-xyz123").unwrap();
        assert_eq!(s["data"].as_object().unwrap().len(), 8);
        assert_eq!(
            s["metadata"]["ownerReferences"][0]["name"],
            "bootstrap-token-xyz123"
        );
        let files = decode_kubeadm_certs(&s, &key).unwrap();
        assert!(files.contains(&(
            "etcd/ca.key".to_string(),
            b"content of etcd/ca.key".to_vec()
        )));
        let wrong = hex::decode(pki::random_certificate_key()).unwrap();
        assert_eq!(
            decode_kubeadm_certs(&s, &wrong).unwrap_err(),
            "error decoding secret data with provided key: cipher: message authentication failed"
        );
    }

    #[test]
    fn kubelet_config_keeps_user_cgroup_driver() {
        let k = kubelet_configuration(
            Some(&json!({"cgroupDriver": "cgroupfs"})),
            "cluster.local",
            "10.96.0.10",
        );
        assert_eq!(k["cgroupDriver"], "cgroupfs");
        assert_eq!(k["clusterDNS"][0], "10.96.0.10");
        let cm = kubelet_config_map(&k);
        assert!(cm["data"]["kubelet"]
            .as_str()
            .unwrap()
            .contains("cgroupDriver: cgroupfs"));
    }
}
