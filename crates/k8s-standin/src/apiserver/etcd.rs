//! etcd v3 through its JSON gateway (`/v3/kv/*`, `/v3/cluster/*`) over TLS with
//! a client certificate, so no protobuf toolchain is needed.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// etcd answered with an error: its gRPC status code and message.
    #[error("etcdserver: {message}")]
    Server { code: i64, message: String },
}

/// gRPC's code Unavailable, which etcd gives errors a client may retry.
const GRPC_UNAVAILABLE: i64 = 14;
const READ_ATTEMPTS: u32 = 100;
const READ_RETRY_WAIT: Duration = Duration::from_millis(25);

/// The gateway's error body (`{"code": 14, "message": "etcdserver: leader changed"}`).
fn server_error(v: &Value) -> EtcdError {
    let message = v
        .get("error")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("request failed")
        .trim_start_matches("etcdserver: ")
        .to_string();
    EtcdError::Server {
        code: int(&v["code"]),
        message,
    }
}

#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The last full read of each listed prefix. kube-apiserver answers its pollers and
    /// watchers from a watch cache; here a list first reads only the prefix's keys and
    /// mod revisions, and takes the values from this copy when none changed, so a cluster
    /// at rest costs etcd no values (at 50 nodes every kubelet's poll read every Pod).
    lists: Arc<Mutex<HashMap<String, Kept>>>,
}

/// A prefix's last full read, and the objects the API layer decoded from exactly it (by
/// the view they were decoded for): decoding every value of every poll was most of a
/// cluster at rest's apiserver CPU.
struct Kept {
    kvs: Vec<Kv>,
    decoded: HashMap<String, Arc<Vec<Value>>>,
}

/// One key-value with its revisions.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// An etcd cluster member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn uint(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The same keys at the same mod revisions: a key's mod revision names one value of it.
fn same_keys(a: &[Kv], b: &[Kv]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.key == y.key && x.mod_revision == y.mod_revision)
}

/// A range over every key with this prefix.
fn range_of(prefix: &str) -> Value {
    json!({"key": b64(prefix), "range_end": B64.encode(prefix_end(prefix))})
}

/// The key after the last one with this prefix (etcd's range_end for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return b;
        }
    }
    vec![0]
}

fn parse_kvs(resp: &Value) -> Vec<Kv> {
    resp.get("kvs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|kv| Kv {
                    key: String::from_utf8(
                        B64.decode(kv["key"].as_str().unwrap_or(""))
                            .unwrap_or_default(),
                    )
                    .unwrap_or_default(),
                    value: B64
                        .decode(kv.get("value").and_then(Value::as_str).unwrap_or(""))
                        .unwrap_or_default(),
                    mod_revision: int(&kv["mod_revision"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_member(m: &Value) -> Member {
    let strs = |k: &str| {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Member {
        id: uint(&m["ID"]),
        name: m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        peer_urls: strs("peerURLs"),
        client_urls: strs("clientURLs"),
        is_learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
    }
}

impl Etcd {
    pub fn new(endpoints: Vec<String>, ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Etcd, String> {
        let tls = crate::tls::client_config(ca, Some((cert, key)))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Etcd {
            endpoints,
            client,
            lists: Arc::default(),
        })
    }

    /// A read: [`Etcd::call`] with clientv3's retry of immutable requests. The etcd
    /// client inside kube-apiserver retries a Range or member list that etcd answered
    /// with gRPC code Unavailable ("leader changed", "no leader", "request timed out")
    /// every 25 ms, 100 times at most, so a leadership transfer is invisible to API
    /// clients; a write is never retried once etcd has seen it.
    async fn read(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut attempts = 1;
        loop {
            match self.call(path, body.clone()).await {
                Err(EtcdError::Server { code, .. })
                    if code == GRPC_UNAVAILABLE && attempts < READ_ATTEMPTS =>
                {
                    attempts += 1;
                    tokio::time::sleep(READ_RETRY_WAIT).await;
                }
                other => return other,
            }
        }
    }

    /// POSTs to the first endpoint that answers.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut last = String::from("no endpoints");
        for ep in &self.endpoints {
            let req = hyper::Request::post(format!("{}{path}", ep.trim_end_matches('/')))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| EtcdError::Unavailable(e.to_string()))?;
            let resp = match tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    last = format!("{ep}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("{ep}: timeout");
                    continue;
                }
            };
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| EtcdError::Unavailable(e.to_string()))?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(server_error(&v));
            }
            return Ok(v);
        }
        Err(EtcdError::Unavailable(last))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let r = self.read("/v3/kv/range", json!({"key": b64(key)})).await?;
        Ok(parse_kvs(&r).into_iter().next())
    }

    /// All keys under `prefix`, and the store revision the read saw. Both reads are
    /// linearizable: the keys-only one proves the kept values current at its revision.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let (now, rev) = self.list_keys(prefix).await?;
        if let Some(kept) = self.current(prefix, &now, |k| k.kvs.clone()) {
            return Ok((kept, rev));
        }
        self.read_list(prefix).await
    }

    /// [`Etcd::list`], each value decoded by `decode` for `view`; the result is kept
    /// with the values it came from, so a list in which nothing changed decodes nothing.
    pub async fn list_decoded(
        &self,
        prefix: &str,
        view: &str,
        decode: impl Fn(&Kv) -> Option<Value>,
    ) -> Result<(Arc<Vec<Value>>, i64), EtcdError> {
        let (now, rev) = self.list_keys(prefix).await?;
        let kept = self.current(prefix, &now, |k| match k.decoded.get(view) {
            Some(decoded) => Ok(decoded.clone()),
            None => Err(k.kvs.clone()),
        });
        let (kvs, rev) = match kept {
            Some(Ok(decoded)) => return Ok((decoded, rev)),
            Some(Err(kvs)) => (kvs, rev),
            None => self.read_list(prefix).await?,
        };
        let decoded = Arc::new(kvs.iter().filter_map(decode).collect::<Vec<_>>());
        if let Some(k) = self
            .lists
            .lock()
            .expect("list cache lock")
            .get_mut(prefix)
            .filter(|k| same_keys(&k.kvs, &kvs))
        {
            k.decoded.insert(view.to_string(), decoded.clone());
        }
        Ok((decoded, rev))
    }

    /// The prefix's keys and mod revisions (a keys-only range), and the store's revision.
    async fn list_keys(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let mut keys_only = range_of(prefix);
        keys_only["keys_only"] = json!(true);
        let r = self.read("/v3/kv/range", keys_only).await?;
        Ok((parse_kvs(&r), int(&r["header"]["revision"])))
    }

    /// Reads the prefix's values and keeps them.
    async fn read_list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        let r = self.read("/v3/kv/range", range_of(prefix)).await?;
        let kvs = parse_kvs(&r);
        self.lists.lock().expect("list cache lock").insert(
            prefix.to_string(),
            Kept {
                kvs: kvs.clone(),
                decoded: HashMap::new(),
            },
        );
        Ok((kvs, int(&r["header"]["revision"])))
    }

    /// `take` of what is kept for `prefix`, when its keys and mod revisions are still
    /// `now`'s (under the lock, so only a current copy is ever cloned).
    fn current<T>(&self, prefix: &str, now: &[Kv], take: impl FnOnce(&Kept) -> T) -> Option<T> {
        self.lists
            .lock()
            .expect("list cache lock")
            .get(prefix)
            .filter(|kept| same_keys(&kept.kvs, now))
            .map(take)
    }

    /// Writes `value` if the key's mod revision is `expect` (0: must not exist).
    /// Returns the new revision, or None if the precondition failed.
    pub async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        expect: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let r = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"target": "MOD", "key": b64(key), "mod_revision": expect.to_string(), "result": "EQUAL"}],
                    "success": [{"request_put": {"key": b64(key), "value": B64.encode(value)}}],
                }),
            )
            .await?;
        Ok(r.get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .then(|| int(&r["header"]["revision"])))
    }

    /// Deletes a key if its mod revision is `expect`; false if it changed or is gone.
    pub async fn delete_if(&self, key: &str, expect: i64) -> Result<bool, EtcdError> {
        let r = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"target": "MOD", "key": b64(key), "mod_revision": expect.to_string(), "result": "EQUAL"}],
                    "success": [{"request_delete_range": {"key": b64(key)}}],
                }),
            )
            .await?;
        Ok(r.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let r = self
            .read(
                "/v3/kv/range",
                json!({"key": b64("/registry/health"), "count_only": true}),
            )
            .await?;
        Ok(int(&r["header"]["revision"]))
    }

    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let r = self.read("/v3/cluster/member/list", json!({})).await?;
        Ok(r.get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(parse_member).collect())
            .unwrap_or_default())
    }

    /// Adds a member (as a learner, like kubeadm 1.31); returns it with the full list.
    pub async fn member_add(
        &self,
        peer_url: &str,
        learner: bool,
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        let r = self
            .call(
                "/v3/cluster/member/add",
                json!({"peerURLs": [peer_url], "isLearner": learner}),
            )
            .await?;
        let all = r
            .get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(parse_member).collect())
            .unwrap_or_default();
        Ok((parse_member(&r["member"]), all))
    }

    pub async fn member_promote(&self, id: u64) -> Result<(), EtcdError> {
        self.call("/v3/cluster/member/promote", json!({"ID": id.to_string()}))
            .await
            .map(|_| ())
    }

    pub async fn member_remove(&self, id: u64) -> Result<(), EtcdError> {
        self.call("/v3/cluster/member/remove", json!({"ID": id.to_string()}))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/a/"), b"/registry/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn parses_gateway_json() {
        let v = json!({"header": {"revision": "7"}, "kvs": [{"key": b64("/k"), "value": B64.encode("v"), "mod_revision": "5"}]});
        let kvs = parse_kvs(&v);
        assert_eq!(
            (
                kvs[0].key.as_str(),
                kvs[0].value.as_slice(),
                kvs[0].mod_revision
            ),
            ("/k", b"v".as_slice(), 5)
        );
        assert!(parse_kvs(&json!({"header": {}})).is_empty());
        match server_error(&json!({"error": "etcdserver: leader changed", "code": 14})) {
            EtcdError::Server { code, message } => {
                assert_eq!(
                    (code, message.as_str()),
                    (GRPC_UNAVAILABLE, "leader changed")
                )
            }
            other => panic!("{other:?}"),
        }
        let m = parse_member(
            &json!({"ID": "1234", "name": "cp1", "peerURLs": ["https://a:2380"], "isLearner": true}),
        );
        assert_eq!(
            (m.id, m.is_learner, m.peer_urls[0].as_str()),
            (1234, true, "https://a:2380")
        );
    }
}
