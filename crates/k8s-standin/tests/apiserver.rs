//! The apiserver stand-in against a real etcd on loopback.

mod common;

use common::Cluster;
use serde_json::{json, Value};

/// Resolves kind+apiVersion to a URL by discovery, as kube-rs and kubectl do.
async fn url_for(c: &common::Client, base: &str, obj: &Value) -> String {
    let av = obj["apiVersion"].as_str().unwrap();
    let disc = if av.contains('/') {
        format!("{base}/apis/{av}")
    } else {
        format!("{base}/api/{av}")
    };
    let (code, list) = c.get(&disc).await;
    assert_eq!(code, 200, "discovery {disc}: {list}");
    let r = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == obj["kind"] && !r["name"].as_str().unwrap().contains('/'))
        .unwrap_or_else(|| panic!("no resource for {}", obj["kind"]));
    let plural = r["name"].as_str().unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    if r["namespaced"] == true {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
        format!("{disc}/namespaces/{ns}/{plural}/{name}")
    } else {
        format!("{disc}/{plural}/{name}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_auth_apply_and_shared_state() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("crud");
    let a = cl.apiserver().await;
    let b = cl.apiserver().await;
    let admin = cl.admin();

    // Health and version answer anonymously, like the real defaults.
    let anon = common::Client::new(&cl.ca.cert_pem, None);
    assert_eq!(anon.get(&format!("{a}/readyz")).await, (200, json!("ok")));
    let (code, v) = anon.get(&format!("{a}/version")).await;
    assert_eq!((code, v["gitVersion"].as_str()), (200, Some("v1.31.0")));

    // Anonymous and unknown identities are refused; admins are not.
    let (code, v) = anon.get(&format!("{a}/api/v1/nodes")).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["message"], "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope");
    let mut bad_token = common::Client::new(&cl.ca.cert_pem, None);
    bad_token.bearer = Some("abcdef.0123456789abcdef".into());
    assert_eq!(bad_token.get(&format!("{a}/api/v1/nodes")).await.0, 401);
    let (code, list) = admin.get(&format!("{a}/api/v1/namespaces")).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&want), "{names:?}");
    }

    // ConfigMap CRUD with resourceVersion checks.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "labels": {"app": "x"}}, "data": {"k": "v"}});
    let (code, created) = admin
        .post(&format!("{a}/api/v1/namespaces/default/configmaps"), &cm)
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        admin
            .post(&format!("{a}/api/v1/namespaces/default/configmaps"), &cm)
            .await
            .1["reason"],
        "AlreadyExists"
    );
    let mut stale = created.clone();
    stale["data"]["k"] = json!("v2");
    let url = format!("{b}/api/v1/namespaces/default/configmaps/c1");
    let (code, updated) = admin
        .call(
            "PUT",
            &url,
            Some(&stale.to_string()),
            "application/json",
            "application/json",
        )
        .await;
    assert_eq!(code, 200, "{updated}");
    let (code, v) = admin
        .call(
            "PUT",
            &url,
            Some(&stale.to_string()),
            "application/json",
            "application/json",
        )
        .await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        admin
            .get(&format!("{a}/api/v1/namespaces/default/configmaps/c1"))
            .await
            .1["data"]["k"],
        "v2"
    );
    let (code, l) = admin
        .get(&format!(
            "{a}/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx"
        ))
        .await;
    assert_eq!((code, l["items"].as_array().unwrap().len()), (200, 1));
    assert_eq!(
        admin
            .get(&format!("{a}/api/v1/configmaps?labelSelector=app%3Dy"))
            .await
            .1["items"],
        json!([])
    );
    assert_eq!(
        admin
            .post(&format!("{a}/api/v1/namespaces/nope/configmaps"), &cm)
            .await
            .1["message"],
        "namespaces \"nope\" not found"
    );

    // Nodes: status subresource and cordon by merge patch.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp1"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    assert_eq!(admin.post(&format!("{a}/api/v1/nodes"), &node).await.0, 201);
    let (code, n) = admin
        .merge(
            &format!("{b}/api/v1/nodes/cp1"),
            &json!({"spec": {"unschedulable": true}, "status": {"conditions": []}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            n["spec"]["unschedulable"].as_bool(),
            n["status"]["conditions"][0]["status"].as_str()
        ),
        (Some(true), Some("False")),
        "main resource keeps status"
    );
    let (_, n) = admin
        .merge(
            &format!("{b}/api/v1/nodes/cp1/status"),
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await;
    assert_eq!(n["status"]["conditions"][0]["status"], "True");
    let (code, t) = admin
        .call(
            "GET",
            &format!("{a}/api/v1/nodes"),
            None,
            "",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(t["rows"][0]["cells"][1], "Ready,SchedulingDisabled");

    // Server-side apply of the whole Calico manifest, then read it back through the other server.
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/calico-v3.28.1.yaml"
    ))
    .or_else(|_| std::fs::read_to_string("/work/shared/fixtures/calico-v3.28.1.yaml"))
    .expect("calico fixture");
    let mut applied = 0;
    for doc in manifest.split("\n---") {
        let v: Value = match serde_saphyr::from_str::<Value>(doc) {
            Ok(v) if v.is_object() => v,
            _ => continue,
        };
        let url = url_for(&admin, &a, &v).await;
        let (code, r) = admin.apply(&url, &v.to_string()).await;
        assert!(code == 200 || code == 201, "{url}: {code} {r}");
        applied += 1;
    }
    assert_eq!(applied, 31);
    let (code, ds) = admin
        .get(&format!(
            "{b}/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node"
        ))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/calico/node:v3.28.1"
    );
    let (_, crd) = admin.get(&format!("{b}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ippools.crd.projectcalico.org")).await;
    assert!(crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True"));
    // The CRD's resources are discoverable and usable.
    let (code, groups) = admin.get(&format!("{b}/apis")).await;
    assert_eq!(code, 200);
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "crd.projectcalico.org"));
    let pool = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"}, "spec": {"cidr": "192.168.0.0/16"}});
    let (code, r) = admin
        .apply(
            &format!("{a}/apis/crd.projectcalico.org/v1/ippools/default-ipv4-ippool"),
            &pool.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    // Re-applying the same manifest is a no-op update.
    let (code, _) = admin
        .apply(
            &format!("{a}/apis/crd.projectcalico.org/v1/ippools/default-ipv4-ippool"),
            &pool.to_string(),
        )
        .await;
    assert_eq!(code, 200);

    // Namespace deletion removes its contents.
    assert_eq!(
        admin
            .post(
                &format!("{a}/api/v1/namespaces"),
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}})
            )
            .await
            .0,
        201
    );
    assert_eq!(
        admin
            .post(&format!("{a}/api/v1/namespaces/tmp/configmaps"), &cm)
            .await
            .0,
        201
    );
    assert_eq!(
        admin
            .call(
                "DELETE",
                &format!("{a}/api/v1/namespaces/tmp"),
                None,
                "",
                "application/json"
            )
            .await
            .0,
        200
    );
    assert_eq!(
        admin
            .get(&format!("{b}/api/v1/namespaces/tmp/configmaps/c1"))
            .await
            .0,
        404
    );
}

/// What a poller sees: an update that changes nothing is not stored (the
/// resourceVersion stays, as kube-apiserver's does), and each apiserver's lists, served
/// from the values it kept while etcd's keys and revisions match, follow every change
/// another apiserver makes: a changed value, a new object, a deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_updates_are_not_stored_and_lists_follow_every_change() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("lists");
    let (a, b) = (cl.apiserver().await, cl.apiserver().await);
    let admin = cl.admin();
    let pods = |base: &str| format!("{base}/api/v1/namespaces/default/pods");
    let listed = async |base: &str| -> Vec<(String, String, String)> {
        let (code, l) = admin.get(&pods(base)).await;
        assert_eq!(code, 200, "{l}");
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let s = |ptr: &str| {
                    p.pointer(ptr)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (
                    s("/metadata/name"),
                    s("/metadata/resourceVersion"),
                    s("/status/phase"),
                )
            })
            .collect()
    };
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  containers:\n  - name: c\n    image: x\n";
    let (code, first) = admin.apply(&format!("{}/p1", pods(&a)), pod).await;
    assert_eq!(code, 201, "{first}");
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        listed(&b).await,
        [("p1".into(), rv.clone(), "Pending".into())]
    );

    // The same apply again, and the same status twice: nothing is written.
    let (code, again) = admin.apply(&format!("{}/p1", pods(&b)), pod).await;
    assert_eq!(
        (code, again["metadata"]["resourceVersion"].as_str()),
        (200, Some(rv.as_str()))
    );
    let running = json!({"status": {"phase": "Running"}});
    let (code, st) = admin
        .merge(&format!("{}/p1/status", pods(&a)), &running)
        .await;
    assert_eq!(code, 200, "{st}");
    let rv = st["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rv, first["metadata"]["resourceVersion"].as_str().unwrap());
    let (_, same) = admin
        .merge(&format!("{}/p1/status", pods(&b)), &running)
        .await;
    assert_eq!(
        same["metadata"]["resourceVersion"].as_str(),
        Some(rv.as_str())
    );
    assert_eq!(
        listed(&b).await,
        [("p1".into(), rv.clone(), "Running".into())]
    );

    // Changes through one apiserver show in the other's next list.
    admin
        .merge(
            &format!("{}/p1/status", pods(&a)),
            &json!({"status": {"phase": "Failed"}}),
        )
        .await;
    assert_eq!(listed(&b).await[0].2, "Failed");
    let second = pod.replace("p1", "p2");
    assert_eq!(
        admin.apply(&format!("{}/p2", pods(&a)), &second).await.0,
        201
    );
    let names = |l: Vec<(String, String, String)>| l.into_iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(names(listed(&b).await), ["p1", "p2"]);
    let (code, _) = admin
        .call(
            "DELETE",
            &format!("{}/p1", pods(&a)),
            None,
            "application/json",
            "application/json",
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(names(listed(&b).await), ["p2"]);

    // One stored object listed through two served versions, twice each (the second list
    // reuses the first's decoded objects): every item names the version it was asked in.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true}, {"name": "v1beta1", "served": true, "storage": false}]}});
    let (code, r) = admin
        .apply(
            &format!(
                "{a}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
            ),
            &crd.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}});
    let (code, r) = admin
        .apply(
            &format!("{a}/apis/example.com/v1/widgets/w1"),
            &widget.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    for version in ["v1", "v1beta1", "v1", "v1beta1"] {
        let (code, l) = admin
            .get(&format!("{b}/apis/example.com/{version}/widgets"))
            .await;
        assert_eq!(code, 200, "{l}");
        assert_eq!(l["apiVersion"], format!("example.com/{version}"));
        assert_eq!(
            l["items"][0]["apiVersion"],
            format!("example.com/{version}"),
            "{l}"
        );
        assert_eq!(l["items"][0]["metadata"]["name"], "w1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_token_auth() {
    if !common::etcd_available() {
        return;
    }
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    let cl = Cluster::start("token");
    let a = cl.apiserver().await;
    let admin = cl.admin();
    let secret = |exp: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {"token-id": B64.encode("abcdef"), "token-secret": B64.encode("0123456789abcdef"), "expiration": B64.encode(exp),
                "usage-bootstrap-authentication": B64.encode("true"), "usage-bootstrap-signing": B64.encode("true"),
                "auth-extra-groups": B64.encode("system:bootstrappers:kubeadm:default-node-token")}})
    };
    assert_eq!(
        admin
            .post(
                &format!("{a}/api/v1/namespaces/kube-system/secrets"),
                &secret("2999-01-01T00:00:00Z")
            )
            .await
            .0,
        201
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config"}, "data": {"ClusterConfiguration": "x"}});
    assert_eq!(
        admin
            .post(
                &format!("{a}/api/v1/namespaces/kube-system/configmaps"),
                &cm
            )
            .await
            .0,
        201
    );
    let mut tok = common::Client::new(&cl.ca.cert_pem, None);
    tok.bearer = Some("abcdef.0123456789abcdef".into());
    assert_eq!(
        tok.get(&format!(
            "{a}/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        tok.get(&format!("{a}/api/v1/namespaces/kube-system/secrets/other"))
            .await
            .0,
        403
    );
    // An expired token authenticates nobody.
    let url = format!("{a}/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef");
    let (_, cur) = admin.get(&url).await;
    let mut exp = secret("2000-01-01T00:00:00Z");
    exp["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
    assert_eq!(
        admin
            .call(
                "PUT",
                &url,
                Some(&exp.to_string()),
                "application/json",
                "application/json"
            )
            .await
            .0,
        200
    );
    assert_eq!(
        tok.get(&format!(
            "{a}/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
        ))
        .await
        .0,
        401
    );
}

/// A real kubectl (Debian's kubernetes-client, or $KUBECTL) lists nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_get_nodes() {
    if !common::etcd_available() {
        return;
    }
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    if std::process::Command::new(&kubectl)
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no kubectl (apt-get install kubernetes-client, or set KUBECTL)");
        return;
    }
    let cl = Cluster::start("kubectl");
    let a = cl.apiserver().await;
    let admin = cl.admin();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.0"}}});
    assert_eq!(admin.post(&format!("{a}/api/v1/nodes"), &node).await.0, 201);
    let kc = k8s_standin::pki::kubeconfig::for_file(
        "admin.conf",
        "cp1",
        &a,
        &cl.ca,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let path = cl.dir.join("admin.conf");
    std::fs::write(&path, kc).unwrap();
    let out = tokio::process::Command::new(&kubectl)
        .args(["--kubeconfig", &path.to_string_lossy(), "get", "nodes"])
        .env("HOME", &cl.dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(
        (lines[1][0], lines[1][1], lines[1][2], lines[1][4]),
        ("cp1", "Ready", "control-plane", "v1.31.0")
    );
}
