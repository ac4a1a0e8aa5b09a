//! Authentication (client certificates, bootstrap tokens) and a small fixed
//! authorization policy standing in for kubeadm's RBAC bindings.

use super::objects::parse_rfc3339;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
    fn has(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

/// CN → user, O → groups, as the apiserver's x509 authenticator maps them.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = c
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = c
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}

/// Why a bearer token was refused.
#[derive(Debug, PartialEq)]
pub enum TokenError {
    Invalid,
}

fn secret_field(secret: &Value, k: &str) -> Option<String> {
    let b = secret.pointer(&format!("/data/{k}"))?.as_str()?;
    String::from_utf8(B64.decode(b).ok()?).ok()
}

/// Checks `id.secret` against the bootstrap-token Secret (already fetched).
pub fn user_from_bootstrap_token(
    token: &str,
    secret: Option<&Value>,
    now: OffsetDateTime,
) -> Result<User, TokenError> {
    let (id, sec) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let s = secret.ok_or(TokenError::Invalid)?;
    if s["type"] != "bootstrap.kubernetes.io/token"
        || secret_field(s, "token-id").as_deref() != Some(id)
        || secret_field(s, "token-secret").as_deref() != Some(sec)
        || secret_field(s, "usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return Err(TokenError::Invalid);
    }
    if let Some(exp) = secret_field(s, "expiration") {
        if parse_rfc3339(&exp).is_none_or(|t| t <= now) {
            return Err(TokenError::Invalid);
        }
    }
    let mut groups: Vec<String> = secret_field(s, "auth-extra-groups")
        .map(|g| {
            g.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    groups.insert(0, "system:bootstrappers".into());
    groups.push("system:authenticated".into());
    Ok(User {
        name: format!("system:bootstrap:{id}"),
        groups,
    })
}

/// One request's attributes.
pub struct Attrs<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The stand-in's RBAC: cluster admins and control-plane components may do
/// anything; nodes act on their cluster-scoped state; bootstrap tokens get what
/// kubeadm's join needs; anonymous users read cluster-info only.
pub fn allowed(u: &User, a: &Attrs) -> bool {
    let admin = ["system:masters", "kubeadm:cluster-admins"]
        .iter()
        .any(|g| u.has(g))
        || [
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "kube-apiserver-kubelet-client",
        ]
        .contains(&u.name.as_str());
    if admin {
        return true;
    }
    // system:basic-user: everyone authenticated may ask who they are and what they may do.
    if u.has("system:authenticated")
        && a.verb == "create"
        && matches!(
            (a.group, a.resource),
            (
                "authorization.k8s.io",
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            ) | ("authentication.k8s.io", "selfsubjectreviews")
        )
    {
        return true;
    }
    let read = matches!(a.verb, "get" | "list" | "watch");
    if u.has("system:nodes") {
        // The stand-in does not emulate the Node authorizer's per-object graph.
        return true;
    }
    if u.has("system:bootstrappers") {
        return match (a.group, a.resource) {
            ("", "configmaps") => {
                read && a.namespace == "kube-system"
                    || a.namespace == "kube-public" && a.verb == "get"
            }
            ("", "secrets") => {
                a.verb == "get" && a.namespace == "kube-system" && a.name == "kubeadm-certs"
            }
            ("", "nodes") => a.verb == "get",
            ("certificates.k8s.io", "certificatesigningrequests") => {
                matches!(a.verb, "create" | "get" | "list" | "watch")
            }
            _ => false,
        };
    }
    a.verb == "get"
        && a.resource == "configmaps"
        && a.namespace == "kube-public"
        && a.name == "cluster-info"
        && a.subresource.is_empty()
}

/// Non-resource URLs: admins may use any; every authenticated user may read
/// discovery, health and version (system:discovery, system:public-info-viewer).
pub fn allowed_path(u: &User, path: &str) -> bool {
    let admin = u.has("system:masters") || u.has("kubeadm:cluster-admins");
    let public = ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let discovery = path == "/api"
        || path == "/apis"
        || path.starts_with("/api/")
        || path.starts_with("/apis/")
        || path.starts_with("/openapi/");
    admin || public || (u.has("system:authenticated") && discovery)
}

/// The Forbidden message the real authorizer produces.
pub fn forbidden_message(u: &User, a: &Attrs) -> String {
    let res = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let what = if a.name.is_empty() {
        res.clone()
    } else {
        format!("{res} \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{what} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        u.name, a.verb, a.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(exp: Option<&str>) -> Value {
        let e = |s: &str| B64.encode(s);
        let mut d = json!({"token-id": e("abcdef"), "token-secret": e("0123456789abcdef"), "usage-bootstrap-authentication": e("true"),
            "auth-extra-groups": e("system:bootstrappers:kubeadm:default-node-token")});
        if let Some(x) = exp {
            d["expiration"] = json!(e(x));
        }
        json!({"type": "bootstrap.kubernetes.io/token", "data": d})
    }

    #[test]
    fn bootstrap_tokens() {
        let now = OffsetDateTime::now_utc();
        let u =
            user_from_bootstrap_token("abcdef.0123456789abcdef", Some(&secret(None)), now).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert!(u
            .groups
            .contains(&"system:bootstrappers:kubeadm:default-node-token".to_string()));
        assert_eq!(
            user_from_bootstrap_token("abcdef.wrongwrongwrongw", Some(&secret(None)), now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            user_from_bootstrap_token(
                "abcdef.0123456789abcdef",
                Some(&secret(Some("2000-01-01T00:00:00Z"))),
                now
            ),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            user_from_bootstrap_token("abcdef.0123456789abcdef", None, now),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn policy() {
        let anon = User::anonymous();
        let a = |verb, resource, ns, name| Attrs {
            verb,
            group: "",
            resource,
            subresource: "",
            namespace: ns,
            name,
        };
        assert!(allowed(
            &anon,
            &a("get", "configmaps", "kube-public", "cluster-info")
        ));
        assert!(!allowed(&anon, &a("list", "nodes", "", "")));
        let robot = User {
            name: "system:serviceaccount:ci:robot".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
        };
        let review = Attrs {
            verb: "create",
            group: "authorization.k8s.io",
            resource: "selfsubjectaccessreviews",
            subresource: "",
            namespace: "",
            name: "",
        };
        assert!(allowed(&robot, &review));
        assert!(!allowed(&anon, &review));
        assert!(!allowed(&robot, &a("list", "secrets", "ci", "")));
        assert_eq!(
            forbidden_message(&anon, &a("list", "nodes", "", "")),
            "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let admin = User {
            name: "kubernetes-admin".into(),
            groups: vec!["kubeadm:cluster-admins".into()],
        };
        assert!(allowed(&admin, &a("delete", "secrets", "kube-system", "x")));
        let boot = User {
            name: "system:bootstrap:abcdef".into(),
            groups: vec!["system:bootstrappers".into()],
        };
        assert!(allowed(
            &boot,
            &a("get", "secrets", "kube-system", "kubeadm-certs")
        ));
        assert!(!allowed(
            &boot,
            &a("get", "secrets", "kube-system", "other")
        ));
    }
}
