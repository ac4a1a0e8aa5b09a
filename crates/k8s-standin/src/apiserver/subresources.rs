//! Pod lifecycle endpoints and other subresources: graceful deletion,
//! `pods/binding` (the scheduler), `pods/eviction` honouring
//! PodDisruptionBudgets (kubectl drain), `*/scale` (kubectl scale), and
//! SelfSubjectAccessReview (kubectl auth can-i).

use super::auth::{self, Attrs, User};
use super::objects::{now_rfc3339, rfc3339};
use super::server::{
    bad_request, conflict, decode_body, etcd_error, json_response, not_found, patched, status, Api,
    Body, Req, Target,
};
use crate::workload;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// gracePeriodSeconds from DeleteOptions in the body, or the query.
pub fn grace_period(body: &[u8], query: &str) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b["gracePeriodSeconds"].as_i64())
        .or_else(|| {
            super::server::query_param(query, "gracePeriodSeconds").and_then(|g| g.parse().ok())
        })
}

fn success(code: u16) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}),
    )
}

/// Why an eviction is refused by `pdb`, if it is (the real messages).
pub fn budget_refusal(pdb: &Value) -> Option<String> {
    let observed = pdb
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let n = workload::name(pdb);
    if observed < generation {
        return Some(format!(
            "The disruption budget {n} is still being processed by the server."
        ));
    }
    let st = &pdb["status"];
    (st["disruptionsAllowed"].as_i64().unwrap_or(0) <= 0).then(|| {
        format!(
            "The disruption budget {n} needs {} healthy pods and has {} currently",
            st["desiredHealthy"].as_i64().unwrap_or(0),
            st["currentHealthy"].as_i64().unwrap_or(0)
        )
    })
}

impl Api {
    fn resource(&self, group: &str, plural: &str) -> super::registry::Resource {
        self.builtin
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
            .expect("built-in resource")
    }

    /// DELETE of a Pod: a bound, running Pod gets deletionTimestamp and its
    /// grace period and stays until its kubelet confirms; others go at once.
    pub(super) async fn delete_pod(&self, t: &Target, grace: Option<i64>) -> Response<Body> {
        loop {
            let (mut pod, rev) = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(Some(x)) => x,
                Ok(None) => return not_found(&t.res, &t.name),
                Err(e) => return etcd_error(e),
            };
            let bound = !pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
            let grace = grace
                .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            let finished = matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            if !bound || finished || grace == 0 {
                match self
                    .etcd
                    .delete_if(&Self::key(&t.res, &t.namespace, &t.name), rev)
                    .await
                {
                    Ok(true) => return json_response(StatusCode::OK, &pod),
                    Ok(false) => continue,
                    Err(e) => return etcd_error(e),
                }
            }
            if let Some(cur) = pod["metadata"]["deletionGracePeriodSeconds"].as_i64() {
                if cur <= grace {
                    return json_response(StatusCode::OK, &pod);
                }
            }
            let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(grace);
            pod["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
            pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            let old = pod.clone();
            match self
                .replace_object(&t.res, &t.namespace, &t.name, &old, pod, rev)
                .await
            {
                Ok(Some(v)) => return json_response(StatusCode::OK, &v),
                Ok(None) => continue,
                Err(e) => return etcd_error(e),
            }
        }
    }

    /// POST pods/{name}/binding: assigns the Pod to a node once.
    pub(super) async fn bind(&self, t: &Target, req: &Req) -> Response<Body> {
        let body = match decode_body(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(&e),
        };
        let Some(node) = body.pointer("/target/name").and_then(Value::as_str) else {
            return status(422, "Invalid", "Binding.target.name: Required value", None);
        };
        loop {
            let (mut pod, rev) = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(Some(x)) => x,
                Ok(None) => return not_found(&t.res, &t.name),
                Err(e) => return etcd_error(e),
            };
            if let Some(cur) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return status(
                    409,
                    "Conflict",
                    &format!("Operation cannot be fulfilled on pods/binding \"{}\": pod {} is already assigned to node \"{cur}\"", t.name, t.name),
                    Some(json!({"name": t.name, "kind": "pods/binding"})),
                );
            }
            pod["spec"]["nodeName"] = json!(node);
            set_condition(
                &mut pod,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}),
            );
            let old = pod.clone();
            match self
                .replace_object(&t.res, &t.namespace, &t.name, &old, pod, rev)
                .await
            {
                Ok(Some(_)) => return success(201),
                Ok(None) => continue,
                Err(e) => return etcd_error(e),
            }
        }
    }

    /// POST pods/{name}/eviction (policy/v1 Eviction): refused with 429 while
    /// the Pod's PodDisruptionBudget allows no disruption; otherwise the
    /// budget is charged (disruptedPods) and the Pod deleted gracefully.
    pub(super) async fn evict(&self, t: &Target, req: &Req) -> Response<Body> {
        let body = match decode_body(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(&e),
        };
        let grace = body
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64);
        let pdbs = self.resource("policy", "poddisruptionbudgets");
        loop {
            let pod = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(Some((p, _))) => p,
                Ok(None) => return not_found(&t.res, &t.name),
                Err(e) => return etcd_error(e),
            };
            // Pods that are not running cannot break a budget.
            let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
            if workload::terminating(&pod) || phase != "Running" {
                return self.evicted(t, grace).await;
            }
            let (all, _) = match self.list_objects(&pdbs, &t.namespace).await {
                Ok(x) => x,
                Err(e) => return etcd_error(e),
            };
            let matching: Vec<&Value> = all
                .iter()
                .filter(|b| {
                    !b["spec"]["selector"].is_null()
                        && workload::selector_matches(
                            &b["spec"]["selector"],
                            &pod["metadata"]["labels"],
                        )
                })
                .collect();
            let mut pdb = match matching.as_slice() {
                [] => return self.evicted(t, grace).await,
                [one] => (*one).clone(),
                _ => return status(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", None),
            };
            if let Some(why) = budget_refusal(&pdb) {
                return status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    Some(json!({"causes": [{"reason": "DisruptionBudget", "message": why}]})),
                );
            }
            let rev: i64 = pdb["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            pdb["status"]["disruptedPods"][&t.name] = json!(now_rfc3339());
            let old = pdb.clone();
            match self
                .replace_object(&pdbs, &t.namespace, workload::name(&old), &old, pdb, rev)
                .await
            {
                Ok(Some(_)) => return self.evicted(t, grace).await,
                // Another eviction charged the budget first: decide again.
                Ok(None) => continue,
                Err(e) => return etcd_error(e),
            }
        }
    }

    async fn evicted(&self, t: &Target, grace: Option<i64>) -> Response<Body> {
        let r = self.delete_pod(t, grace).await;
        if r.status().is_success() {
            success(201)
        } else {
            r
        }
    }

    /// GET/PUT/PATCH of `{deployments,replicasets,statefulsets}/scale` (autoscaling/v1 Scale).
    pub(super) async fn scale(&self, t: &Target, req: &Req) -> Response<Body> {
        let view = |o: &Value| {
            let sel = &o["spec"]["selector"]["matchLabels"];
            let selector: Vec<String> = sel
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            let meta = &o["metadata"];
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
                "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
                "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")}})
        };
        for _ in 0..8 {
            let (obj, rev) = match self.get_object(&t.res, &t.namespace, &t.name).await {
                Ok(Some(x)) => x,
                Ok(None) => return not_found(&t.res, &t.name),
                Err(e) => return etcd_error(e),
            };
            if req.method == hyper::Method::GET {
                return json_response(StatusCode::OK, &view(&obj));
            }
            let body = match decode_body(&req.body) {
                Ok(b) => b,
                Err(e) => return bad_request(&e),
            };
            let scale = match patched(&view(&obj), &body, req, "") {
                Ok(s) => s,
                Err(e) => return status(422, "Invalid", &e, None),
            };
            let Some(replicas) = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
                return status(422, "Invalid", &format!("Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0", t.name), None);
            };
            let mut new = obj.clone();
            new["spec"]["replicas"] = json!(replicas);
            match self
                .replace_object(&t.res, &t.namespace, &t.name, &obj, new, rev)
                .await
            {
                Ok(Some(v)) => return json_response(StatusCode::OK, &view(&v)),
                Ok(None) => continue,
                Err(e) => return etcd_error(e),
            }
        }
        conflict(&t.res, &t.name)
    }

    /// SelfSubjectAccessReview: the authorizer's answer for the caller.
    pub(super) async fn access_review(&self, user: &User, req: &Req) -> Response<Body> {
        let mut review = match decode_body(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(&e),
        };
        let ra = &review["spec"]["resourceAttributes"];
        let f = |k: &str| ra[k].as_str().unwrap_or("");
        let allowed = if ra.is_object() {
            self.authorize(
                user,
                &Attrs {
                    verb: f("verb"),
                    group: f("group"),
                    resource: f("resource"),
                    subresource: f("subresource"),
                    namespace: f("namespace"),
                    name: f("name"),
                },
            )
            .await
        } else {
            // Non-resource URLs: discovery and health for every authenticated user.
            auth::allowed_path(
                user,
                review["spec"]["nonResourceAttributes"]["path"]
                    .as_str()
                    .unwrap_or(""),
            )
        };
        review["status"] = json!({"allowed": allowed});
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectAccessReview");
        json_response(StatusCode::CREATED, &review)
    }
}

impl Api {
    /// POST serviceaccounts/{name}/token (TokenRequest): a bound JWT.
    pub(super) async fn token_request(&self, t: &Target, req: &Req) -> Response<Body> {
        let Some(keys) = &self.sa else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        };
        let mut tr = match decode_body(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(&e),
        };
        let sa = match self.get_object(&t.res, &t.namespace, &t.name).await {
            Ok(Some((sa, _))) => sa,
            Ok(None) => return not_found(&t.res, &t.name),
            Err(e) => return etcd_error(e),
        };
        let secs = tr["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        if secs < 600 {
            return status(422, "Invalid", &format!("TokenRequest.authentication.k8s.io \"{}\" is invalid: spec.expirationSeconds: Invalid value: {secs}: may not specify a duration less than 10 minutes", t.name), None);
        }
        let audiences: Vec<String> = tr["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| keys.audiences.clone());
        let bound = tr["spec"]["boundObjectRef"].clone();
        let now = time::OffsetDateTime::now_utc();
        let claims = super::tokens::claims(
            &keys.issuer,
            &audiences,
            &sa,
            (!bound.is_null()).then_some(&bound),
            now.unix_timestamp(),
            now.unix_timestamp() + secs,
        );
        let token = match keys.sign(&claims) {
            Ok(t) => t,
            Err(e) => {
                return status(
                    500,
                    "InternalError",
                    &format!("failed to sign token: {e}"),
                    None,
                )
            }
        };
        tr["kind"] = json!("TokenRequest");
        tr["apiVersion"] = json!("authentication.k8s.io/v1");
        tr["metadata"] =
            json!({"name": t.name, "namespace": t.namespace, "creationTimestamp": null});
        tr["spec"]["audiences"] = json!(audiences);
        tr["spec"]["expirationSeconds"] = json!(secs);
        tr["status"] = json!({"token": token, "expirationTimestamp": rfc3339(now + time::Duration::seconds(secs))});
        json_response(StatusCode::CREATED, &tr)
    }

    /// A valid token whose ServiceAccount (and bound Pod or Secret) still exist
    /// with the uids it was issued for.
    pub async fn service_account_user(&self, token: &str) -> Option<User> {
        let claims = self
            .sa
            .as_ref()?
            .verify(token, time::OffsetDateTime::now_utc().unix_timestamp())
            .ok()?;
        let k = &claims["kubernetes.io"];
        let ns = k["namespace"].as_str()?;
        let still = |plural: &str, v: &Value| {
            let r = self.resource("", plural);
            let name = v["name"].as_str().unwrap_or("").to_string();
            let want = v["uid"].clone();
            async move {
                matches!(self.get_object(&r, ns, &name).await, Ok(Some((o, _))) if o["metadata"]["uid"] == want)
            }
        };
        if !still("serviceaccounts", &k["serviceaccount"]).await {
            return None;
        }
        for (kind, plural) in [("pod", "pods"), ("secret", "secrets")] {
            if k[kind].is_object() && !still(plural, &k[kind]).await {
                return None;
            }
        }
        Some(super::tokens::user(&claims))
    }
}

/// Replaces (or adds) the condition of the same type.
pub fn set_condition(obj: &mut Value, cond: Value) {
    let conds = &mut obj["status"]["conditions"];
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("array");
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_refuse_with_the_real_messages() {
        let pdb = |gen: i64, observed: i64, allowed: i64| {
            json!({"metadata": {"name": "web", "generation": gen},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed, "desiredHealthy": 3, "currentHealthy": 3}})
        };
        assert_eq!(
            budget_refusal(&pdb(1, 1, 0)).unwrap(),
            "The disruption budget web needs 3 healthy pods and has 3 currently"
        );
        assert!(budget_refusal(&pdb(2, 1, 1))
            .unwrap()
            .contains("still being processed"));
        assert_eq!(budget_refusal(&pdb(1, 1, 1)), None);
        assert_eq!(grace_period(br#"{"gracePeriodSeconds": 5}"#, ""), Some(5));
        assert_eq!(grace_period(b"", "gracePeriodSeconds=0"), Some(0));
        assert_eq!(grace_period(b"", ""), None);
    }
}
