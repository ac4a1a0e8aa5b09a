//! Leader election through a coordination.k8s.io Lease in kube-system, as
//! client-go's leaderelection does: one controller-manager and one scheduler
//! act at a time, the others take over once the holder stops renewing.

use crate::apiserver::objects::{parse_rfc3339, rfc3339};
use crate::client::Client;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// client-go's default lease duration.
pub const LEASE_SECONDS: i64 = 15;

/// Whether `identity` may take or keep a lease with this holder and renew time.
pub fn may_hold(lease: &Value, identity: &str, now: OffsetDateTime) -> bool {
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
    let renewed = lease["spec"]["renewTime"].as_str().and_then(parse_rfc3339);
    let duration = lease["spec"]["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_SECONDS);
    holder.is_empty()
        || holder == identity
        || renewed.is_none_or(|r| (now - r).whole_seconds() > duration)
}

/// Takes or renews the Lease `name`; true while this instance leads.
pub async fn elect(c: &Client, name: &str, identity: &str, now: OffsetDateTime) -> bool {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}");
    let cur = c.get(&path).await;
    let stamp = rfc3339(now);
    if cur.code == 404 {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}});
        return c
            .create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
                &lease,
            )
            .await
            .ok();
    }
    if !cur.ok() || !may_hold(&cur.body, identity, now) {
        return false;
    }
    let mut lease = cur.body;
    if lease["spec"]["holderIdentity"] != identity {
        let transitions = lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0);
        lease["spec"]["holderIdentity"] = json!(identity);
        lease["spec"]["acquireTime"] = json!(stamp);
        lease["spec"]["leaseTransitions"] = json!(transitions + 1);
        eprintln!("I0000 leaderelection: successfully acquired lease kube-system/{name}");
    }
    lease["spec"]["renewTime"] = json!(stamp);
    lease["spec"]["leaseDurationSeconds"] = json!(LEASE_SECONDS);
    // The PUT carries the resourceVersion read: of two candidates one wins.
    c.put(&path, &lease).await.ok()
}

/// "hostname_uuid", the identity client-go's components use.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), crate::apiserver::objects::new_uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_rules() {
        let now = OffsetDateTime::now_utc();
        let lease = |holder: &str, ago: i64| json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": rfc3339(now - time::Duration::seconds(ago))}});
        assert!(may_hold(&lease("a", 1), "a", now));
        assert!(!may_hold(&lease("b", 1), "a", now), "held by another");
        assert!(may_hold(&lease("b", 20), "a", now), "expired");
        assert!(may_hold(&lease("", 1), "a", now));
    }
}
