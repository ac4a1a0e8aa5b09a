//! The HTTPS front: TLS with optional client certificates, request routing,
//! discovery, CRUD, patch/apply, list/watch, all stored in etcd.

use super::auth::{self, Attrs, User};
use super::etcd::{Etcd, EtcdError};
use super::objects::{self, now_rfc3339};
use super::registry::{self, Resource};
use super::subresources::grace_period;
use super::tables;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub type Body = BoxBody<Bytes, Infallible>;

/// The API server's shared state.
pub struct Api {
    pub etcd: Etcd,
    pub builtin: Vec<Resource>,
    /// "host:port" announced in /api's serverAddressByClientCIDRs.
    pub advertise: String,
    pub version: String,
    /// Set once the bootstrap objects (system namespaces) exist: until then
    /// /readyz fails, as the real post-start hooks make it.
    pub bootstrapped: std::sync::atomic::AtomicBool,
    /// ServiceAccount token keys (None without --service-account-key-file).
    pub sa: Option<super::tokens::SaKeys>,
    /// Turns true when the process is told to stop (SIGTERM).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Completes once `stopping` is true; never when its sender is gone without saying so.
pub async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await
    }
}

/// How long an in-flight request may still take once shutdown began (kube-apiserver's
/// default request timeout).
const SHUTDOWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub fn json_response(code: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(full(
            serde_json::to_string(v).expect("JSON values serialize"),
        ))
        .expect("valid response")
}

/// A metav1.Status failure.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response<Body> {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &s,
    )
}

pub(super) fn not_found(r: &Resource, name: &str) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.qualified()),
        Some(json!({"name": name, "group": r.group, "kind": r.plural})),
    )
}

pub(super) fn etcd_error(e: EtcdError) -> Response<Body> {
    status(
        500,
        "InternalError",
        &format!("Internal error occurred: {e}"),
        None,
    )
}

pub(super) fn bad_request(msg: &str) -> Response<Body> {
    status(400, "BadRequest", msg, None)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// A parsed resource path.
pub(super) struct Target {
    pub res: Resource,
    pub namespace: String,
    pub name: String,
    pub sub: String,
}

impl Api {
    /// Built-in resources plus those of stored CRDs.
    async fn all_resources(&self) -> Result<Vec<Resource>, EtcdError> {
        let mut all = self.builtin.clone();
        let (crds, _) = self
            .etcd
            .list("/registry/apiextensions.k8s.io/customresourcedefinitions/")
            .await?;
        for kv in crds {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                all.extend(registry::from_crd(&v));
            }
        }
        Ok(all)
    }

    async fn resolve(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Option<Resource>, EtcdError> {
        let find = |rs: &[Resource]| {
            rs.iter()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
                .cloned()
        };
        if let Some(r) = find(&self.builtin) {
            return Ok(Some(r));
        }
        Ok(find(&self.all_resources().await?))
    }

    pub fn key(r: &Resource, ns: &str, name: &str) -> String {
        if r.namespaced {
            format!("{}{ns}/{name}", r.key_prefix())
        } else {
            format!("{}{name}", r.key_prefix())
        }
    }

    /// Reads one object with its resourceVersion filled in.
    pub async fn get_object(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
    ) -> Result<Option<(Value, i64)>, EtcdError> {
        let Some(kv) = self.etcd.get(&Self::key(r, ns, name)).await? else {
            return Ok(None);
        };
        let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        decorate(&mut v, r, kv.mod_revision);
        Ok(Some((v, kv.mod_revision)))
    }

    /// Creates an object; Err(response) on conflicts.
    pub async fn create_object(
        &self,
        r: &Resource,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, Response<Body>> {
        if r.namespaced && r.plural != "namespaces" {
            let nsr = self
                .builtin
                .iter()
                .find(|x| x.plural == "namespaces")
                .expect("namespaces registered");
            if self
                .get_object(nsr, "", ns)
                .await
                .map_err(etcd_error)?
                .is_none()
            {
                return Err(status(
                    404,
                    "NotFound",
                    &format!("namespaces \"{ns}\" not found"),
                    Some(json!({"name": ns, "kind": "namespaces"})),
                ));
            }
        }
        prepare_create(r, ns, &mut obj);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err(status(422, "Invalid", &format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", r.kind), None));
        }
        let key = Self::key(r, ns, &name);
        match self
            .etcd
            .put_if(&key, obj.to_string().as_bytes(), 0)
            .await
            .map_err(etcd_error)?
        {
            Some(rev) => {
                decorate(&mut obj, r, rev);
                Ok(obj)
            }
            None => Err(status(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", r.qualified()),
                Some(json!({"name": name, "group": r.group, "kind": r.plural})),
            )),
        }
    }

    /// Replaces an object if it is still at `rev`; Ok(None) on a lost race.
    pub async fn replace_object(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
        old: &Value,
        mut new: Value,
        rev: i64,
    ) -> Result<Option<Value>, EtcdError> {
        prepare_update(old, &mut new);
        let mut stored = new.clone();
        if let Some(m) = stored["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        match self
            .etcd
            .put_if(&Self::key(r, ns, name), stored.to_string().as_bytes(), rev)
            .await?
        {
            Some(nrev) => {
                decorate(&mut new, r, nrev);
                Ok(Some(new))
            }
            None => Ok(None),
        }
    }

    /// The objects under the resource's prefix (in `ns`, or all), as served: shared
    /// with every list that finds the prefix unchanged.
    pub async fn list_objects(
        &self,
        r: &Resource,
        ns: &str,
    ) -> Result<(Arc<Vec<Value>>, i64), EtcdError> {
        let prefix = if r.namespaced && !ns.is_empty() {
            format!("{}{ns}/", r.key_prefix())
        } else {
            r.key_prefix()
        };
        let view = format!("{}/{}", r.api_version(), r.kind);
        self.etcd
            .list_decoded(&prefix, &view, |kv| {
                let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
                decorate(&mut v, r, kv.mod_revision);
                Some(v)
            })
            .await
    }
}

/// A list's objects (shared: see [`Api::list_objects`]) and the ones its selectors matched.
struct Listed {
    all: Arc<Vec<Value>>,
    matched: Vec<usize>,
    rev: i64,
}

impl Listed {
    fn items(&self) -> impl Iterator<Item = &Value> {
        self.matched.iter().map(|&n| &self.all[n])
    }
}

/// A list response, serialized from the shared objects without copying them.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<&'a Value>,
}

/// Sets apiVersion/kind for the served version and the resourceVersion.
fn decorate(v: &mut Value, r: &Resource, rev: i64) {
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(r.api_version()));
        m.insert("kind".into(), json!(r.kind));
    }
    v["metadata"]["resourceVersion"] = json!(rev.to_string());
}

fn random_suffix() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b.iter().map(|x| A[*x as usize % A.len()] as char).collect()
}

/// Server-set fields and per-kind defaults on create.
fn prepare_create(r: &Resource, ns: &str, obj: &mut Value) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let m = obj["metadata"].as_object_mut().expect("object");
    if m.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        if let Some(g) = m.get("generateName").and_then(Value::as_str) {
            let n = format!("{g}{}", random_suffix());
            m.insert("name".into(), json!(n));
        }
    }
    if r.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), json!(objects::new_uid()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    m.insert("generation".into(), json!(1));
    m.remove("resourceVersion");
    objects::apply_defaults(&r.group, &r.kind, obj);
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Namespace") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Secret") => {
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            secret_string_data(obj);
        }
        ("", "Pod") => {
            objects::admit_pod(obj);
            if obj.pointer("/status/phase").is_none() {
                obj["status"]["phase"] = json!("Pending");
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd_status(obj),
        _ => {}
    }
}

/// stringData is write-only: merged into data as base64.
fn secret_string_data(obj: &mut Value) {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        for (k, v) in sd {
            obj["data"][k] = json!(B64.encode(v.as_str().unwrap_or("")));
        }
    }
}

/// The apiextensions controller's verdict: names accepted, established.
fn crd_status(obj: &mut Value) {
    let mut names = obj["spec"]["names"].clone();
    if names["singular"].is_null() {
        names["singular"] = json!(names["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if names["listKind"].is_null() {
        names["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
    }
    let stored: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let t = now_rfc3339();
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
    });
}

/// An update that would store what is stored: kube-apiserver writes nothing then and the
/// resourceVersion stays (its storage skips equal objects, and since 1.26 an apply whose
/// only change is its managedFields times is one of them).
fn unchanged(old: &Value, new: &Value) -> bool {
    let comparable = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
                for e in entries.iter_mut() {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
                entries.sort_by_key(Value::to_string);
            }
        }
        v
    };
    comparable(old) == comparable(new)
}

/// Keeps immutable metadata and bumps generation when more than metadata/status changed.
fn prepare_update(old: &Value, new: &mut Value) {
    for f in ["uid", "creationTimestamp", "namespace", "name"] {
        if let Some(v) = old["metadata"].get(f) {
            new["metadata"][f] = v.clone();
        }
    }
    // Deletion, once requested, cannot be undone by an update.
    for f in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
        if let (Some(v), None) = (old["metadata"].get(f), new["metadata"].get(f)) {
            new["metadata"][f] = v.clone();
        }
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    let gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
    new["metadata"]["generation"] = json!(if strip(old) != strip(new) {
        gen + 1
    } else {
        gen
    });
    if new["kind"] == "Secret" {
        secret_string_data(new);
    }
}

/// Decodes a request body as JSON, or YAML (apply patches may be either).
pub(super) fn decode_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        serde_saphyr::from_str::<Value>(text).map_err(|e| format!("error decoding YAML: {e}"))
    })
}

/// The object a PUT or PATCH makes of `old`; Err: why a JSON patch failed (422).
pub(super) fn patched(
    old: &Value,
    body: &Value,
    req: &Req,
    manager: &str,
) -> Result<Value, String> {
    let ct = req.content_type.as_str();
    if req.method == Method::PUT {
        return Ok(body.clone());
    }
    let mut o = old.clone();
    if ct.starts_with("application/apply-patch") {
        return Ok(objects::server_side_apply(Some(old), body, manager));
    } else if ct.starts_with("application/json-patch+json") {
        objects::json_patch(&mut o, body)?;
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        objects::strategic_merge(&mut o, body);
    } else {
        objects::merge_patch(&mut o, body);
    }
    Ok(o)
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

impl Api {
    /// The bootstrap policy, then the stored RBAC objects.
    pub async fn authorize(&self, user: &User, a: &Attrs<'_>) -> bool {
        if auth::allowed(user, a) {
            return true;
        }
        let list = |plural: &str, ns: &str| {
            let r = self
                .builtin
                .iter()
                .find(|r| r.group == "rbac.authorization.k8s.io" && r.plural == plural)
                .cloned()
                .expect("rbac resources");
            let ns = ns.to_string();
            async move {
                self.list_objects(&r, &ns)
                    .await
                    .map(|(i, _)| i)
                    .unwrap_or_default()
            }
        };
        let namespaced = !a.namespace.is_empty();
        let rbac = auth::Rbac {
            cluster_roles: list("clusterroles", "").await,
            cluster_role_bindings: list("clusterrolebindings", "").await,
            roles: if namespaced {
                list("roles", a.namespace).await
            } else {
                Arc::default()
            },
            role_bindings: if namespaced {
                list("rolebindings", a.namespace).await
            } else {
                Arc::default()
            },
        };
        auth::rbac_allows(user, a, &rbac)
    }

    /// Authenticates a bearer token: a ServiceAccount JWT or a bootstrap token.
    pub async fn token_user(&self, token: &str) -> Option<User> {
        if token.matches('.').count() == 2 {
            return self.service_account_user(token).await;
        }
        let id = token.split_once('.').map(|(id, _)| id)?;
        let secrets = self.builtin.iter().find(|r| r.plural == "secrets")?;
        let secret = self
            .get_object(secrets, "kube-system", &format!("bootstrap-token-{id}"))
            .await
            .ok()?
            .map(|(v, _)| v);
        auth::user_from_bootstrap_token(token, secret.as_ref(), time::OffsetDateTime::now_utc())
            .ok()
    }

    pub async fn handle(&self, user: &User, req: Req) -> Response<Body> {
        let path = req.path.trim_end_matches('/').to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segs.as_slice() {
            [h] | [h, _] if matches!(*h, "healthz" | "livez" | "readyz") => {
                let hooks =
                    *h == "livez" || self.bootstrapped.load(std::sync::atomic::Ordering::Relaxed);
                return self.health(&req.query, hooks).await;
            }
            ["version"] => return json_response(StatusCode::OK, &version_info(&self.version)),
            // kubectl's client-side validation downloads the OpenAPI document; an
            // empty one makes it skip validation, as it does for unknown kinds.
            ["openapi", "v2"] if user.name != "system:anonymous" => {
                return if req.accept.contains("protobuf") {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/octet-stream")
                        .body(full(Bytes::new()))
                        .expect("valid response")
                } else {
                    json_response(
                        StatusCode::OK,
                        &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": self.version}, "paths": {}, "definitions": {}}),
                    )
                };
            }
            _ => {}
        }
        // Discovery needs an authenticated user (system:discovery); resource
        // requests go through the authorizer below.
        let resource_request = matches!(
            segs.as_slice(),
            ["api", "v1", _, ..] | ["apis", _, _, _, ..]
        );
        if user.name == "system:anonymous" && !resource_request {
            return status(
                403,
                "Forbidden",
                &format!(
                    "forbidden: User \"system:anonymous\" cannot get path \"{}\"",
                    req.path
                ),
                None,
            );
        }
        match segs.as_slice() {
            ["api"] => json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.advertise}]}),
            ),
            ["apis"] => match self.all_resources().await {
                Ok(all) => json_response(StatusCode::OK, &registry::group_list(&all)),
                Err(e) => etcd_error(e),
            },
            ["api", "v1"] => self.discovery("", "v1").await,
            ["apis", g, v] => self.discovery(g, v).await,
            ["apis", g] => match self.all_resources().await {
                Ok(all) => {
                    let list = registry::group_list(&all);
                    match list["groups"]
                        .as_array()
                        .and_then(|gs| gs.iter().find(|x| x["name"] == *g))
                    {
                        Some(grp) => {
                            let mut grp = grp.clone();
                            grp["kind"] = json!("APIGroup");
                            grp["apiVersion"] = json!("v1");
                            json_response(StatusCode::OK, &grp)
                        }
                        None => status(
                            404,
                            "NotFound",
                            "the server could not find the requested resource",
                            None,
                        ),
                    }
                }
                Err(e) => etcd_error(e),
            },
            ["api", "v1", rest @ ..] => self.resource_request(user, "", "v1", rest, req).await,
            ["apis", g, v, rest @ ..] => {
                let (g, v) = (g.to_string(), v.to_string());
                self.resource_request(user, &g, &v, rest, req).await
            }
            _ => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ),
        }
    }

    async fn health(&self, query: &str, hooks: bool) -> Response<Body> {
        let etcd = matches!(
            tokio::time::timeout(Duration::from_secs(2), self.etcd.revision()).await,
            Ok(Ok(_))
        );
        let ok = etcd && hooks;
        let verbose = query
            .split('&')
            .any(|q| q == "verbose" || q.starts_with("verbose="));
        let mark = |b: bool| if b { "+" } else { "-" };
        let detail = |b: bool| if b { "ok" } else { "failed: reason withheld" };
        let text = if ok && !verbose {
            "ok".to_string()
        } else {
            format!(
                "[+]ping ok\n[+]log ok\n[{}]etcd {}\n[{}]poststarthook/bootstrap-controller {}\nhealthz check {}\n",
                mark(etcd),
                detail(etcd),
                mark(hooks),
                detail(hooks),
                if ok { "passed" } else { "failed" }
            )
        };
        Response::builder()
            .status(if ok {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            })
            .header("content-type", "text/plain; charset=utf-8")
            .body(full(text))
            .expect("valid response")
    }

    async fn discovery(&self, group: &str, version: &str) -> Response<Body> {
        let all = match self.all_resources().await {
            Ok(a) => a,
            Err(e) => return etcd_error(e),
        };
        let rs: Vec<&Resource> = all
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect();
        if rs.is_empty() {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json_response(StatusCode::OK, &registry::resource_list(&gv, &rs))
    }

    async fn resource_request(
        &self,
        user: &User,
        group: &str,
        version: &str,
        rest: &[&str],
        req: Req,
    ) -> Response<Body> {
        let at = |i: usize| rest.get(i).map(|s| s.to_string()).unwrap_or_default();
        let namespace_itself = group.is_empty()
            && rest.first() == Some(&"namespaces")
            && (rest.len() <= 2 || (rest.len() == 3 && matches!(rest[2], "status" | "finalize")));
        let (ns, plural, name, sub) = if namespace_itself {
            // /api/v1/namespaces[/{name}[/status]] addresses Namespaces themselves.
            (String::new(), at(0), at(1), at(2))
        } else if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            (at(1), at(2), at(3), at(4))
        } else if !rest.is_empty() {
            (String::new(), at(0), at(1), at(2))
        } else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        };
        let res = match self.resolve(group, version, &plural).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                )
            }
            Err(e) => return etcd_error(e),
        };
        if res.namespaced && ns.is_empty() && !name.is_empty() {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        }
        let watch = query_param(&req.query, "watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (&req.method, name.is_empty(), watch) {
            (&Method::GET, true, true) => "watch",
            (&Method::GET, true, false) => "list",
            (&Method::GET, false, _) => "get",
            (&Method::POST, _, _) => "create",
            (&Method::PUT, _, _) => "update",
            (&Method::PATCH, _, _) => "patch",
            (&Method::DELETE, true, _) => "deletecollection",
            (&Method::DELETE, false, _) => "delete",
            _ => {
                return status(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    None,
                )
            }
        };
        let attrs = Attrs {
            verb,
            group,
            resource: &plural,
            subresource: &sub,
            namespace: &ns,
            name: &name,
        };
        if !self.authorize(user, &attrs).await {
            return status(
                403,
                "Forbidden",
                &auth::forbidden_message(user, &attrs),
                Some(json!({"name": name, "group": group, "kind": plural})),
            );
        }
        let t = Target {
            res,
            namespace: ns,
            name,
            sub,
        };
        match (
            t.res.group.as_str(),
            t.res.plural.as_str(),
            t.sub.as_str(),
            verb,
        ) {
            ("", "pods", "eviction", "create") => return self.evict(&t, &req).await,
            ("", "pods", "binding", "create") => return self.bind(&t, &req).await,
            ("apps", "deployments" | "replicasets" | "statefulsets", "scale", _) => {
                return self.scale(&t, &req).await
            }
            ("authorization.k8s.io", "selfsubjectaccessreviews", "", "create") => {
                return self.access_review(user, &req).await
            }
            ("authentication.k8s.io", "selfsubjectreviews", "", "create") => {
                return json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
                        "status": {"userInfo": {"username": user.name, "groups": user.groups}}}),
                )
            }
            ("", "serviceaccounts", "token", "create") => {
                return self.token_request(&t, &req).await
            }
            _ => {}
        }
        match verb {
            "get" => self.do_get(&t, &req).await,
            "list" => self.do_list(&t, &req).await,
            "watch" => self.do_watch(&t, &req).await,
            "create" => self.do_create(&t, &req).await,
            "update" | "patch" => self.do_write(&t, &req).await,
            "delete" if t.res.group.is_empty() && t.res.plural == "pods" => {
                self.delete_pod(&t, grace_period(&req.body, &req.query))
                    .await
            }
            "delete" => self.do_delete(&t).await,
            _ => self.do_delete_collection(&t, &req).await,
        }
    }

    async fn do_get(&self, t: &Target, req: &Req) -> Response<Body> {
        match self.get_object(&t.res, &t.namespace, &t.name).await {
            Ok(Some((v, rev))) if req.accept.contains("as=Table") => json_response(
                StatusCode::OK,
                &tables::table(&t.res.kind, &[v], &rev.to_string()),
            ),
            Ok(Some((v, _))) => json_response(StatusCode::OK, &v),
            Ok(None) => not_found(&t.res, &t.name),
            Err(e) => etcd_error(e),
        }
    }

    /// Lists, filtered by labelSelector and fieldSelector.
    async fn filtered(&self, t: &Target, query: &str) -> Result<Listed, Response<Body>> {
        let (all, rev) = self
            .list_objects(&t.res, &t.namespace)
            .await
            .map_err(etcd_error)?;
        let ls = query_param(query, "labelSelector").unwrap_or_default();
        let fs = query_param(query, "fieldSelector").unwrap_or_default();
        let mut matched = vec![];
        for (n, i) in all.iter().enumerate() {
            let l = objects::selector_matches(&ls, &objects::label_getter(i))
                .map_err(|e| bad_request(&e))?;
            let f = objects::selector_matches(&fs, &objects::field_getter(i))
                .map_err(|e| bad_request(&e))?;
            if l && f {
                matched.push(n);
            }
        }
        Ok(Listed { all, matched, rev })
    }

    async fn do_list(&self, t: &Target, req: &Req) -> Response<Body> {
        let listed = match self.filtered(t, &req.query).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let rev = listed.rev.to_string();
        if req.accept.contains("as=Table") {
            let items: Vec<Value> = listed.items().cloned().collect();
            return json_response(StatusCode::OK, &tables::table(&t.res.kind, &items, &rev));
        }
        json_response(
            StatusCode::OK,
            &ListBody {
                kind: format!("{}List", t.res.kind),
                api_version: t.res.api_version(),
                metadata: json!({"resourceVersion": rev}),
                items: listed.items().collect(),
            },
        )
    }

    /// Watch by polling etcd: emits ADDED/MODIFIED/DELETED as JSON lines.
    async fn do_watch(&self, t: &Target, req: &Req) -> Response<Body> {
        let since: i64 = query_param(&req.query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = query_param(&req.query, "timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1800u64);
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(16);
        let first = match self.filtered(t, &req.query).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let api = Api {
            etcd: self.etcd.clone(),
            builtin: vec![],
            advertise: String::new(),
            version: String::new(),
            bootstrapped: std::sync::atomic::AtomicBool::new(true),
            sa: None,
            stopping: self.stopping.clone(),
        };
        let target = Target {
            res: t.res.clone(),
            namespace: t.namespace.clone(),
            name: String::new(),
            sub: String::new(),
        };
        let query = req.query.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let rv = |v: &Value| {
                v.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let uid = |v: &Value| {
                v.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let mut known: std::collections::BTreeMap<String, Value> =
                std::collections::BTreeMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            let mut listed = first;
            let mut initial = true;
            loop {
                let mut seen = std::collections::BTreeSet::new();
                for i in listed.items() {
                    let id = uid(i);
                    seen.insert(id.clone());
                    let ev = match known.get(&id) {
                        None if initial && rv(i) <= since => None,
                        None => Some("ADDED"),
                        Some(old) if rv(old) != rv(i) => Some("MODIFIED"),
                        Some(_) => None,
                    };
                    if ev.is_some() || !known.contains_key(&id) {
                        known.insert(id, i.clone());
                    }
                    if let Some(ev) = ev {
                        let line = format!("{}\n", json!({"type": ev, "object": i}));
                        if tx.send_data(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                }
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for id in gone {
                    if let Some(o) = known.remove(&id) {
                        let line = format!("{}\n", json!({"type": "DELETED", "object": o}));
                        if tx.send_data(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                }
                initial = false;
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
                // Watches end as shutdown begins (kube-apiserver's default watch
                // termination grace period is zero); their clients list and watch again
                // elsewhere.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stopped(&mut stopping) => return,
                }
                listed = match api.filtered(&target, &query).await {
                    Ok(l) => l,
                    Err(_) => return,
                };
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("transfer-encoding", "chunked")
            .body(body.boxed())
            .expect("valid response")
    }

    async fn do_create(&self, t: &Target, req: &Req) -> Response<Body> {
        if !t.sub.is_empty() || !t.name.is_empty() {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            );
        }
        let obj = match decode_body(&req.body) {
            Ok(v) => v,
            Err(e) => return bad_request(&e),
        };
        if let Some(k) = obj["kind"].as_str() {
            if k != t.res.kind {
                return bad_request(&format!(
                    "the API version in the data ({}) does not match the expected API version ({})",
                    obj["apiVersion"].as_str().unwrap_or(""),
                    t.res.api_version()
                ));
            }
        }
        if let Some(bns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            if t.res.namespaced && !bns.is_empty() && bns != t.namespace {
                return bad_request("the namespace of the provided object does not match the namespace sent on the request");
            }
        }
        if query_param(&req.query, "dryRun").is_some() {
            let mut o = obj;
            prepare_create(&t.res, &t.namespace, &mut o);
            return json_response(StatusCode::CREATED, &o);
        }
        match self.create_object(&t.res, &t.namespace, obj).await {
            Ok(v) => json_response(StatusCode::CREATED, &v),
            Err(r) => r,
        }
    }

    /// PUT and PATCH (merge, strategic-merge approximated as merge, JSON patch,
    /// server-side apply), on the object or its status subresource.
    async fn do_write(&self, t: &Target, req: &Req) -> Response<Body> {
        let body = match decode_body(&req.body) {
            Ok(v) => v,
            Err(e) => return bad_request(&e),
        };
        let apply =
            req.method == Method::PATCH && req.content_type.starts_with("application/apply-patch");
        let manager = query_param(&req.query, "fieldManager").unwrap_or_default();
        if apply && manager.is_empty() {
            return bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
        }
        for _attempt in 0..8 {
            let current = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(c) => c,
                Err(e) => return etcd_error(e),
            };
            let Some((old, rev)) = current else {
                if apply && t.sub.is_empty() {
                    let mut obj = objects::server_side_apply(None, &body, &manager);
                    obj["metadata"]["name"] = json!(t.name);
                    return match self.create_object(&t.res, &t.namespace, obj).await {
                        Ok(v) => json_response(StatusCode::CREATED, &v),
                        Err(r) if r.status() == StatusCode::CONFLICT => continue,
                        Err(r) => r,
                    };
                }
                return not_found(&t.res, &t.name);
            };
            if req.method == Method::PUT {
                if let Some(want) = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    if want != rev.to_string() {
                        return conflict(&t.res, &t.name);
                    }
                }
            }
            let mut new = match patched(&old, &body, req, &manager) {
                Ok(n) => n,
                Err(e) => return status(422, "Invalid", &e, None),
            };
            if t.sub.is_empty() {
                objects::apply_defaults(&t.res.group, &t.res.kind, &mut new);
            }
            // The status subresource writes only status; the main resource never does.
            if t.res.status {
                if t.sub == "status" {
                    let st = new["status"].clone();
                    new = old.clone();
                    new["status"] = st;
                } else if !old["status"].is_null() {
                    new["status"] = old["status"].clone();
                }
            }
            if query_param(&req.query, "dryRun").is_some() {
                return json_response(StatusCode::OK, &new);
            }
            let mut prepared = new.clone();
            prepare_update(&old, &mut prepared);
            if unchanged(&old, &prepared) {
                return json_response(StatusCode::OK, &old);
            }
            match self
                .replace_object(&t.res, &t.namespace, &t.name, &old, new, rev)
                .await
            {
                Ok(Some(v)) => return json_response(StatusCode::OK, &v),
                Ok(None)
                    if req.method == Method::PUT
                        && body.pointer("/metadata/resourceVersion").is_some() =>
                {
                    return conflict(&t.res, &t.name)
                }
                Ok(None) => continue,
                Err(e) => return etcd_error(e),
            }
        }
        conflict(&t.res, &t.name)
    }

    async fn do_delete(&self, t: &Target) -> Response<Body> {
        loop {
            let (obj, rev) = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(Some(x)) => x,
                Ok(None) => return not_found(&t.res, &t.name),
                Err(e) => return etcd_error(e),
            };
            if t.res.kind == "Namespace" && t.res.group.is_empty() {
                if let Err(r) = self.delete_namespace_contents(&t.name).await {
                    return r;
                }
            }
            match self
                .etcd
                .delete_if(&Self::key(&t.res, &t.namespace, &t.name), rev)
                .await
            {
                Ok(true) => return json_response(StatusCode::OK, &obj),
                Ok(false) => continue,
                Err(e) => return etcd_error(e),
            }
        }
    }

    /// The namespace controller's work, done synchronously.
    async fn delete_namespace_contents(&self, ns: &str) -> Result<(), Response<Body>> {
        let all = self.all_resources().await.map_err(etcd_error)?;
        let mut prefixes: Vec<String> = all
            .iter()
            .filter(|r| r.namespaced)
            .map(|r| format!("{}{ns}/", r.key_prefix()))
            .collect();
        prefixes.dedup();
        for p in prefixes {
            let (kvs, _) = self.etcd.list(&p).await.map_err(etcd_error)?;
            for kv in kvs {
                self.etcd
                    .delete_if(&kv.key, kv.mod_revision)
                    .await
                    .map_err(etcd_error)?;
            }
        }
        Ok(())
    }

    async fn do_delete_collection(&self, t: &Target, req: &Req) -> Response<Body> {
        let listed = match self.filtered(t, &req.query).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let items: Vec<&Value> = listed.items().collect();
        for i in &items {
            let name = i
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rev = i
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if let Err(e) = self
                .etcd
                .delete_if(&Self::key(&t.res, &t.namespace, name), rev)
                .await
            {
                return etcd_error(e);
            }
        }
        json_response(
            StatusCode::OK,
            &json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(), "metadata": {}, "items": items}),
        )
    }
}

pub(super) fn conflict(r: &Resource, name: &str) -> Response<Body> {
    status(
        409,
        "Conflict",
        &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", r.qualified()),
        Some(json!({"name": name, "group": r.group, "kind": r.plural})),
    )
}

pub fn version_info(v: &str) -> Value {
    let (major, minor) = crate::config::validate::parse_version(v)
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .unwrap_or_default();
    json!({"major": major, "minor": minor, "gitVersion": v, "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"})
}

/// Serves HTTPS on `listener` until `api.stopping`, then shuts down as kube-apiserver
/// does on SIGTERM (with its default zero shutdown delay): the listener is closed so new
/// connections are refused, watches end, each open connection answers the request in
/// flight (for at most a minute) and closes, idle keep-alive connections at once. Returns
/// when every connection is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut stopping = api.stopping.clone();
    // Every connection holds a sender: the channel closes when the last one ends.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            () = stopped(&mut stopping) => break,
        };
        let acceptor = acceptor.clone();
        let api = api.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _open = open;
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| auth::user_from_cert(c));
            let mut stopping = api.stopping.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(dispatch(&api, cert_user, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stopped(&mut stopping) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_REQUEST_TIMEOUT, conn).await;
        });
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
}

async fn dispatch(
    api: &Api,
    cert_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let user = match (cert_user, header("authorization").strip_prefix("Bearer ")) {
        (Some(u), _) => u,
        (None, Some(tok)) => match api.token_user(tok.trim()).await {
            Some(u) => u,
            None => return status(401, "Unauthorized", "Unauthorized", None),
        },
        (None, None) => User::anonymous(),
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad_request(&e.to_string()),
    };
    let r = Req {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    };
    api.handle(&user, r).await
}

/// rustls server config: the serving pair, and client certificates verified
/// against the cluster CA but optional (tokens and anonymous requests exist).
pub fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<rustls::ServerConfig, String> {
    let p = crate::tls::provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(crate::tls::roots(client_ca_pem)?),
        p.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| e.to_string())?;
    let mut c = rustls::ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(crate::tls::certs(cert_pem)?, crate::tls::key(key_pem)?)
        .map_err(|e| e.to_string())?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}
