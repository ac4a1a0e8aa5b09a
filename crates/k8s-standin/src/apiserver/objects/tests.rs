use super::*;

#[test]
fn merge_patch_sets_and_removes() {
    let mut t = json!({"spec": {"a": 1, "b": 2}, "x": [1]});
    merge_patch(&mut t, &json!({"spec": {"a": null, "c": 3}, "x": [2]}));
    assert_eq!(t, json!({"spec": {"b": 2, "c": 3}, "x": [2]}));
}

#[test]
fn json_patch_ops() {
    let mut t = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
    json_patch(
        &mut t,
        &json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/l/0", "value": 9},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "test", "path": "/l/1", "value": 2},
        ]),
    )
    .unwrap();
    assert_eq!(
        t,
        json!({"metadata": {"labels": {"b/c": "2"}}, "l": [9, 2, 3]})
    );
    assert!(json_patch(
        &mut t,
        &json!([{"op": "replace", "path": "/nope/x", "value": 1}])
    )
    .is_err());
}

#[test]
fn apply_owns_and_prunes_fields() {
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"k1": "v1", "k2": "v2"}});
    let live = server_side_apply(None, &first, "kubeha");
    assert_eq!(live["data"], json!({"k1": "v1", "k2": "v2"}));
    // Another writer adds a field; kubeha's re-apply without k2 and label b removes only those.
    let mut live = live;
    live["data"]["other"] = json!("x");
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k1": "new"}});
    let live = server_side_apply(Some(&live), &second, "kubeha");
    assert_eq!(live["data"], json!({"k1": "new", "other": "x"}));
    assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
    let mf = live["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["fieldsV1"]["f:data"], json!({"f:k1": {}}));
    assert!(mf[0]["fieldsV1"]["f:metadata"].get("f:name").is_none());
}

#[test]
fn selectors() {
    let o = json!({"metadata": {"name": "n1", "labels": {"app": "calico", "tier": "node"}}, "spec": {"nodeName": "w1"}});
    let l = label_getter(&o);
    for (sel, want) in [
        ("app=calico", true),
        ("app==calico,tier=node", true),
        ("app!=calico", false),
        ("tier in (node, x)", true),
        ("tier notin (node)", false),
        ("app", true),
        ("!app", false),
        ("missing", false),
        ("", true),
    ] {
        assert_eq!(selector_matches(sel, &l).unwrap(), want, "{sel}");
    }
    assert!(selector_matches("spec.nodeName=w1", &field_getter(&o)).unwrap());
    assert!(selector_matches("metadata.name=n2", &field_getter(&o))
        .map(|b| !b)
        .unwrap());
}

#[test]
fn human_durations() {
    assert_eq!(human_duration(45), "45s");
    assert_eq!(human_duration(5 * 60 + 12), "5m12s");
    assert_eq!(human_duration(40 * 60), "40m");
    assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
    assert_eq!(human_duration(3 * 86400), "3d");
}

#[test]
fn uid_shape() {
    let u = new_uid();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
}

#[test]
fn strategic_merge_by_key() {
    let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}, {"name": "b", "image": "y:1"}]}}}});
    strategic_merge(
        &mut d,
        &json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "$patch": "delete"}]}}}}),
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "x:2", "ports": [{"containerPort": 80}]}])
    );
    let mut n = json!({"spec": {"unschedulable": true, "podCIDR": "x"}});
    strategic_merge(&mut n, &json!({"spec": {"unschedulable": null}}));
    assert_eq!(n, json!({"spec": {"podCIDR": "x"}}));
}

#[test]
fn defaults_and_pod_admission() {
    let mut d =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}});
    apply_defaults("apps", "Deployment", &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let mut p = json!({"spec": {"priorityClassName": "system-node-critical", "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}});
    admit_pod(&mut p);
    let t = p["spec"]["tolerations"].as_array().unwrap();
    assert_eq!(t.len(), 2, "only not-ready added: {t:?}");
    assert_eq!(t[1]["tolerationSeconds"], 300);
    assert_eq!(p["spec"]["priority"], 2000001000);
    // Static Pods tolerate every NoExecute taint: nothing to add.
    let mut mirror =
        json!({"spec": {"tolerations": [{"operator": "Exists", "effect": "NoExecute"}]}});
    admit_pod(&mut mirror);
    assert_eq!(mirror["spec"]["tolerations"].as_array().unwrap().len(), 1);
}
