//! The apiserver stand-in through kube-rs, the client kubeha uses (same
//! crate, version and features): version, discovery, typed and dynamic CRUD,
//! server-side apply, cordon, errors and watch.

mod common;

use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_client_works_against_the_standin() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("kubers");
    let a = cl.apiserver().await;
    let text = cl.admin_kubeconfig(&a);
    let cfg = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&text).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();

    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        "v1.31.0"
    );

    // Typed objects: nodes with cordon by server-side apply, namespaces, errors.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "cp1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let ssa = PatchParams::apply("kubeha").force();
    nodes.patch("cp1", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp1"}, "spec": {"unschedulable": true}}))).await.unwrap();
    assert_eq!(
        nodes.get("cp1").await.unwrap().spec.unwrap().unschedulable,
        Some(true)
    );
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        1
    );
    match nodes.get("nope").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (404, "NotFound")),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.patch(
        "calico-system",
        &ssa,
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "calico-system"}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        nss.get("calico-system")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Active")
    );

    // Watch sees a change made after it started.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"k": "v"}})).unwrap(),
    )
    .await
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("w")),
        other => panic!("unexpected event {other:?}"),
    }

    // Dynamic objects resolved by discovery, as kubeha applies manifests (CRD first, then its CR).
    let manifest = std::fs::read_to_string("/work/shared/fixtures/calico-v3.28.1.yaml")
        .or_else(|_| {
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures/calico-v3.28.1.yaml"
            ))
        })
        .expect("calico fixture");
    let docs: Vec<serde_json::Value> = manifest
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect();
    for pass in 0..2 {
        let discovery = Discovery::new(client.clone()).run().await.unwrap();
        for d in &docs {
            let obj: DynamicObject = serde_json::from_value(d.clone()).unwrap();
            let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
            let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
                assert_eq!(
                    pass, 0,
                    "{gvk:?} not discoverable after its CRD was applied"
                );
                continue;
            };
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    obj.metadata.namespace.as_deref().unwrap_or("default"),
                    &ar,
                ),
                Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            api.patch(
                obj.metadata.name.as_deref().unwrap(),
                &ssa,
                &Patch::Apply(&obj),
            )
            .await
            .unwrap();
        }
    }
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let ippool = kube::api::GroupVersionKind::gvk("crd.projectcalico.org", "v1", "IPPool");
    let (ar, _) = discovery
        .resolve_gvk(&ippool)
        .expect("CRD kinds are discoverable");
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let pool: DynamicObject = serde_json::from_value(json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"}, "spec": {"cidr": "192.168.0.0/16"}})).unwrap();
    pools
        .patch("default-ipv4-ippool", &ssa, &Patch::Apply(&pool))
        .await
        .unwrap();
    assert_eq!(
        pools.list(&Default::default()).await.unwrap().items.len(),
        1
    );
}

/// SIGTERM, as kube-apiserver handles it with its defaults: the open watch ends (its
/// client lists and watches again elsewhere), new connections are refused, and the
/// server is done at once instead of holding the watch until the kubelet's SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_apiserver_ends_its_watches_and_refuses_new_connections() {
    if !common::etcd_available() {
        return;
    }
    let cl = Cluster::start("shutdown");
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (a, served) = cl.apiserver_until(stopping).await;
    let client = |text: String| async move {
        let cfg = kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&text).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(cfg).unwrap()
    };
    let cms: Api<ConfigMap> = Api::namespaced(client(cl.admin_kubeconfig(&a)).await, "default");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(290), "0")
        .await
        .unwrap()
        .boxed();

    stop.send(true).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch was still open 5 s after SIGTERM");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the shutdown completes once its connections are closed")
        .unwrap();
    let fresh: Api<Namespace> = Api::all(client(cl.admin_kubeconfig(&a)).await);
    match fresh.get("default").await {
        Err(kube::Error::HyperError(_)) | Err(kube::Error::Service(_)) => {}
        other => panic!("a stopped apiserver answered: {other:?}"),
    }
}
