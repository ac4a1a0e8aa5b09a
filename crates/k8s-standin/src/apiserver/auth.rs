//! Authentication (client certificates, bootstrap tokens) and a small fixed
//! authorization policy standing in for kubeadm's RBAC bindings.

use super::objects::parse_rfc3339;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::Value;
use std::sync::Arc;
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

/// The bootstrap policy (what the default roles and kubeadm's bindings grant,
/// evaluated before stored RBAC objects): cluster admins and control-plane components may do
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

/// The RBAC objects that can grant a request (the namespace's Roles and
/// RoleBindings, all ClusterRoles and ClusterRoleBindings).
#[derive(Debug, Default)]
pub struct Rbac {
    pub roles: Arc<Vec<Value>>,
    pub cluster_roles: Arc<Vec<Value>>,
    pub role_bindings: Arc<Vec<Value>>,
    pub cluster_role_bindings: Arc<Vec<Value>>,
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A binding subject naming this user (User, Group or ServiceAccount).
fn subject_matches(u: &User, s: &Value, binding_ns: &str) -> bool {
    let name = s["name"].as_str().unwrap_or("");
    match s["kind"].as_str().unwrap_or("") {
        "User" => u.name == name,
        "Group" => u.has(name),
        "ServiceAccount" => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            u.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// One PolicyRule against the request (rbac/v1 RuleAllows).
pub fn rule_allows(rule: &Value, a: &Attrs) -> bool {
    let any = |list: &[&str], want: &str| list.iter().any(|x| *x == "*" || *x == want);
    let resource = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = strs(&rule["resources"]);
    let resource_ok = any(&resources, &resource)
        || (!a.subresource.is_empty()
            && resources.iter().any(|r| {
                *r == format!("*/{}", a.subresource) || *r == format!("{}/*", a.resource)
            }));
    let names = strs(&rule["resourceNames"]);
    any(&strs(&rule["verbs"]), a.verb)
        && any(&strs(&rule["apiGroups"]), a.group)
        && resource_ok
        && (names.is_empty() || (!a.name.is_empty() && names.contains(&a.name)))
}

/// RBAC's verdict: a binding for the user whose role has a matching rule.
/// RoleBindings grant only inside their namespace.
pub fn rbac_allows(u: &User, a: &Attrs, r: &Rbac) -> bool {
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let list = if kind == "ClusterRole" {
            &r.cluster_roles
        } else {
            &r.roles
        };
        list.iter()
            .filter(|role| {
                role["metadata"]["name"] == name
                    && (kind == "ClusterRole" || role["metadata"]["namespace"] == ns)
            })
            .flat_map(|role| role["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let grants = |b: &Value, ns: &str| {
        b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(u, s, ns))
            && role_rules(
                b["roleRef"]["kind"].as_str().unwrap_or(""),
                b["roleRef"]["name"].as_str().unwrap_or(""),
                ns,
            )
            .iter()
            .any(|rule| rule_allows(rule, a))
    };
    r.cluster_role_bindings.iter().any(|b| grants(b, ""))
        || (!a.namespace.is_empty()
            && r.role_bindings
                .iter()
                .any(|b| b["metadata"]["namespace"] == a.namespace && grants(b, a.namespace)))
}

/// The default user-facing ClusterRoles the apiserver creates at start
/// (cluster-admin, admin, edit, view; the aggregated rules flattened).
pub fn bootstrap_cluster_roles() -> Vec<Value> {
    let read = serde_json::json!(["get", "list", "watch"]);
    let write = serde_json::json!(["create", "delete", "deletecollection", "patch", "update"]);
    let viewable = [
        (
            "",
            vec![
                "pods",
                "pods/log",
                "pods/status",
                "services",
                "services/status",
                "endpoints",
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "replicationcontrollers",
                "serviceaccounts",
                "limitranges",
                "resourcequotas",
            ],
        ),
        (
            "apps",
            vec![
                "deployments",
                "deployments/scale",
                "deployments/status",
                "daemonsets",
                "daemonsets/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        (
            "batch",
            vec!["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
        ),
        (
            "policy",
            vec!["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        (
            "networking.k8s.io",
            vec!["ingresses", "ingresses/status", "networkpolicies"],
        ),
        ("discovery.k8s.io", vec!["endpointslices"]),
    ];
    let rules = |verbs: &Value, extra: &[(&str, Vec<&str>)]| -> Vec<Value> {
        viewable
            .iter()
            .chain(extra.iter())
            .map(|(g, r)| serde_json::json!({"apiGroups": [g], "resources": r, "verbs": verbs}))
            .collect()
    };
    let view = rules(&read, &[]);
    let secrets = [(
        "",
        vec![
            "secrets",
            "pods/eviction",
            "pods/exec",
            "pods/attach",
            "pods/portforward",
            "serviceaccounts/token",
        ],
    )];
    let mut edit = rules(&read, &secrets);
    edit.extend(rules(&write, &secrets));
    let mut admin = edit.clone();
    admin.push(serde_json::json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["*"]}));
    let role = |name: &str, rules: Vec<Value>| {
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": rules})
    };
    vec![
        role(
            "cluster-admin",
            vec![
                serde_json::json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                serde_json::json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        role("admin", admin),
        role("edit", edit),
        role("view", view),
    ]
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
        // RBAC objects: a RoleBinding of a ClusterRole grants only in its namespace.
        let rbac = Rbac {
            cluster_roles: Arc::new(vec![
                json!({"metadata": {"name": "view"}, "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
            ]),
            roles: Arc::new(vec![
                json!({"metadata": {"name": "cm", "namespace": "ci"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["only"], "verbs": ["*"]}]}),
            ]),
            role_bindings: Arc::new(vec![
                json!({"metadata": {"name": "b", "namespace": "ci"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}),
                json!({"metadata": {"name": "c", "namespace": "ci"}, "roleRef": {"kind": "Role", "name": "cm"}, "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}]}),
            ]),
            ..Default::default()
        };
        assert!(rbac_allows(&robot, &a("list", "pods", "ci", ""), &rbac));
        assert!(!rbac_allows(
            &robot,
            &a("list", "pods", "default", ""),
            &rbac
        ));
        assert!(!rbac_allows(&robot, &a("delete", "pods", "ci", "x"), &rbac));
        let log = Attrs {
            subresource: "log",
            ..a("get", "pods", "ci", "p")
        };
        assert!(rbac_allows(&robot, &log, &rbac));
        assert!(rbac_allows(
            &robot,
            &a("update", "configmaps", "ci", "only"),
            &rbac
        ));
        assert!(!rbac_allows(
            &robot,
            &a("update", "configmaps", "ci", "other"),
            &rbac
        ));
        assert!(!rbac_allows(&anon, &a("list", "pods", "ci", ""), &rbac));
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
