use super::*;
use crate::apiserver::objects::merge_patch;

/// An in-memory API the planners' actions are applied to, with the scheduler
/// binding and a kubelet making bound Pods Ready and finishing deletions.
struct Sim {
    world: World,
    n: usize,
}

impl Sim {
    fn list(&mut self, plural: &str) -> &mut Vec<Value> {
        match plural {
            "pods" => &mut self.world.pods,
            "replicasets" => &mut self.world.replicasets,
            "deployments" => &mut self.world.deployments,
            "daemonsets" => &mut self.world.daemonsets,
            "poddisruptionbudgets" => &mut self.world.pdbs,
            "nodes" => &mut self.world.nodes,
            other => panic!("unexpected resource {other}"),
        }
    }

    /// (plural, name) of an item path, ignoring /status and query strings.
    fn target(path: &str) -> (String, String) {
        let path = path.split('?').next().unwrap();
        let segs: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != "status")
            .collect();
        let n = segs.len();
        (segs[n - 2].to_string(), segs[n - 1].to_string())
    }

    fn apply(&mut self, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Create { path, mut obj } => {
                    let plural = path.rsplit('/').next().unwrap().to_string();
                    self.n += 1;
                    if obj["metadata"]["name"].is_null() {
                        obj["metadata"]["name"] = json!(format!(
                            "{}{}",
                            obj["metadata"]["generateName"].as_str().unwrap(),
                            self.n
                        ));
                    }
                    obj["metadata"]["uid"] = json!(format!("uid-{}", self.n));
                    obj["metadata"]["generation"] = json!(1);
                    obj["metadata"]["creationTimestamp"] =
                        json!(format!("2024-01-01T00:00:{:02}Z", self.n % 60));
                    self.list(&plural).push(obj);
                }
                Action::Merge { path, patch } => {
                    let (plural, name) = Self::target(&path);
                    if let Some(o) = self
                        .list(&plural)
                        .iter_mut()
                        .find(|o| o["metadata"]["name"] == name.as_str())
                    {
                        merge_patch(o, &patch);
                    }
                }
                Action::Replace { path, obj } => {
                    let (plural, name) = Self::target(&path);
                    if let Some(o) = self
                        .list(&plural)
                        .iter_mut()
                        .find(|o| o["metadata"]["name"] == name.as_str())
                    {
                        *o = obj;
                    }
                }
                Action::Delete { path } => {
                    let (plural, name) = Self::target(&path);
                    let l = self.list(&plural);
                    if plural == "pods" {
                        // Graceful: marked, the kubelet finishes it.
                        if let Some(p) = l
                            .iter_mut()
                            .find(|o| o["metadata"]["name"] == name.as_str())
                        {
                            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
                        }
                    } else {
                        l.retain(|o| o["metadata"]["name"] != name.as_str());
                    }
                }
            }
        }
    }

    fn schedule_and_run(&mut self) {
        for d in crate::scheduler::plan(&self.world.pods, &self.world.nodes) {
            if let crate::scheduler::Decision::Bind { pod, node } = d {
                let p = self
                    .world
                    .pods
                    .iter_mut()
                    .find(|p| p["metadata"]["name"] == pod["metadata"]["name"])
                    .unwrap();
                p["spec"]["nodeName"] = json!(node);
            }
        }
        self.world.pods.retain(|p| !w::terminating(p));
        for p in &mut self.world.pods {
            if p["spec"]["nodeName"].is_string() {
                p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            }
        }
    }

    fn controllers(&mut self) {
        let now = OffsetDateTime::now_utc();
        let mut acts = garbage(&self.world);
        acts.extend(replicasets(&self.world, now));
        acts.extend(deployments(&self.world));
        acts.extend(daemonsets(&self.world));
        acts.extend(disruption(&self.world, now));
        self.apply(acts);
    }
}

fn nodes() -> Vec<Value> {
    let n = |name: &str, taints: Value| {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}}, "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    vec![
        n(
            "cp1",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        ),
        n("w1", json!([])),
        n("w2", json!([])),
    ]
}

fn deployment(replicas: i64, image: &str) -> Value {
    let mut d = json!({"metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}});
    crate::apiserver::objects::apply_defaults("apps", "Deployment", &mut d);
    d
}

fn active_pods(sim: &Sim) -> Vec<&Value> {
    sim.world.pods.iter().filter(|p| pod_active(p)).collect()
}

#[test]
fn deployment_rolls_out_within_surge_and_unavailability() {
    let mut sim = Sim {
        world: World {
            nodes: nodes(),
            deployments: vec![deployment(4, "nginx:1")],
            ..Default::default()
        },
        n: 0,
    };
    for _ in 0..10 {
        sim.controllers();
        sim.schedule_and_run();
    }
    assert_eq!(active_pods(&sim).len(), 4);
    let st = &sim.world.deployments[0]["status"];
    assert_eq!(
        (
            st["readyReplicas"].as_i64(),
            st["availableReplicas"].as_i64(),
            st["updatedReplicas"].as_i64()
        ),
        (Some(4), Some(4), Some(4))
    );
    assert_eq!(st["conditions"][1]["reason"], "NewReplicaSetAvailable");
    assert!(sim
        .world
        .pods
        .iter()
        .all(|p| p["spec"]["nodeName"] != "cp1"));
    let first: Vec<String> = sim.world.pods.iter().map(|p| name(p).to_string()).collect();

    // New image: 25% of 4 gives maxSurge 1, maxUnavailable 1.
    sim.world.deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("nginx:2");
    sim.world.deployments[0]["metadata"]["generation"] = json!(2);
    for step in 0..30 {
        sim.controllers();
        let active = active_pods(&sim).len();
        let ready = active_pods(&sim).iter().filter(|p| pod_ready(p)).count();
        assert!(
            active <= 5,
            "step {step}: {active} pods exceed replicas + maxSurge"
        );
        assert!(
            ready >= 3,
            "step {step}: only {ready} ready, below replicas - maxUnavailable"
        );
        sim.schedule_and_run();
    }
    let pods = active_pods(&sim);
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter().all(|p| !first.contains(&name(p).to_string())),
        "every Pod replaced"
    );
    let new_rs = sim
        .world
        .replicasets
        .iter()
        .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2")
        .unwrap();
    assert_eq!(revision(new_rs), 2);
    assert!(sim
        .world
        .replicasets
        .iter()
        .all(|rs| rs == new_rs || rs["spec"]["replicas"] == 0));
    assert_eq!(sim.world.deployments[0]["status"]["updatedReplicas"], 4);
    assert_eq!(sim.world.deployments[0]["status"]["observedGeneration"], 2);

    // Scale down, then delete the Deployment: its ReplicaSets and Pods are collected.
    sim.world.deployments[0]["spec"]["replicas"] = json!(1);
    for _ in 0..4 {
        sim.controllers();
        sim.schedule_and_run();
    }
    assert_eq!(active_pods(&sim).len(), 1);
    sim.world.deployments.clear();
    for _ in 0..3 {
        sim.controllers();
        sim.schedule_and_run();
    }
    assert!(
        sim.world.replicasets.is_empty() && sim.world.pods.is_empty(),
        "garbage collected"
    );
}

#[test]
fn recreate_stops_old_pods_first() {
    let mut d = deployment(2, "a:1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    let mut sim = Sim {
        world: World {
            nodes: nodes(),
            deployments: vec![d],
            ..Default::default()
        },
        n: 0,
    };
    for _ in 0..6 {
        sim.controllers();
        sim.schedule_and_run();
    }
    sim.world.deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
    let mut mixed = false;
    for _ in 0..12 {
        sim.controllers();
        let images: BTreeSet<String> = active_pods(&sim)
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        mixed |= images.len() > 1;
        sim.schedule_and_run();
    }
    assert!(!mixed, "old and new Pods never run together");
    assert!(active_pods(&sim)
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "a:2"));
    assert_eq!(active_pods(&sim).len(), 2);
}

#[test]
fn daemonset_places_one_pod_per_eligible_node() {
    let ds = |tolerate: bool| {
        let mut spec = json!({"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "agent", "image": "agent:1"}]});
        if tolerate {
            spec["tolerations"] = json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]);
        }
        json!({"metadata": {"name": if tolerate { "all" } else { "workers" }, "namespace": "kube-system", "uid": format!("ds-{tolerate}"), "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}})
    };
    let mut sim = Sim {
        world: World {
            nodes: nodes(),
            daemonsets: vec![ds(false), ds(true)],
            ..Default::default()
        },
        n: 0,
    };
    for _ in 0..4 {
        sim.controllers();
        sim.schedule_and_run();
    }
    fn on(sim: &Sim, ds: &str) -> Vec<String> {
        let mut v: Vec<String> = sim
            .world
            .pods
            .iter()
            .filter(|p| name(p).starts_with(&format!("{ds}-")))
            .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }
    assert_eq!(
        on(&sim, "workers"),
        ["w1", "w2"],
        "none on the tainted control plane"
    );
    assert_eq!(on(&sim, "all"), ["cp1", "w1", "w2"]);
    let st = &sim.world.daemonsets[0]["status"];
    assert_eq!(
        (
            st["desiredNumberScheduled"].as_i64(),
            st["numberReady"].as_i64(),
            st["updatedNumberScheduled"].as_i64()
        ),
        (Some(2), Some(2), Some(2))
    );
    // A node whose selector label goes away loses its Pod; a new node gets one.
    sim.world.nodes[2]["metadata"]["labels"] = json!({});
    let mut w3 = sim.world.nodes[1].clone();
    w3["metadata"]["name"] = json!("w3");
    sim.world.nodes.push(w3);
    for _ in 0..3 {
        sim.controllers();
        sim.schedule_and_run();
    }
    assert_eq!(on(&sim, "workers"), ["w1", "w3"]);
    // Rolling update: one node at a time, never more than maxUnavailable down.
    sim.world.daemonsets[0]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("agent:2");
    for _ in 0..6 {
        sim.controllers();
        let down = sim
            .world
            .pods
            .iter()
            .filter(|p| name(p).starts_with("workers-") && w::terminating(p))
            .count();
        assert!(down <= 1);
        sim.schedule_and_run();
    }
    assert!(sim
        .world
        .pods
        .iter()
        .filter(|p| name(p).starts_with("workers-"))
        .all(|p| p["spec"]["containers"][0]["image"] == "agent:2"));
    assert_eq!(
        sim.world.daemonsets[0]["status"]["updatedNumberScheduled"],
        2
    );
}

#[test]
fn disruption_budget_status() {
    let pod = |n: &str, ready: bool| {
        json!({"metadata": {"name": n, "namespace": "default", "labels": {"app": "web"}, "ownerReferences": [{"uid": "rs1", "controller": true}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    };
    let rs = json!({"metadata": {"name": "rs", "namespace": "default", "uid": "rs1"}, "spec": {"replicas": 3}});
    let pdb = |spec: Value| json!({"metadata": {"name": "b", "namespace": "default", "generation": 1}, "spec": spec});
    let status_of = |pdb: Value, pods: Vec<Value>| {
        let world = World {
            pods,
            replicasets: vec![rs.clone()],
            pdbs: vec![pdb],
            ..Default::default()
        };
        match disruption(&world, OffsetDateTime::now_utc()).pop() {
            Some(Action::Replace { obj, .. }) => obj["status"].clone(),
            other => panic!("{other:?}"),
        }
    };
    let three = vec![pod("a", true), pod("b", true), pod("c", true)];
    let st = status_of(
        pdb(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}})),
        three.clone(),
    );
    assert_eq!(
        (
            st["currentHealthy"].as_i64(),
            st["desiredHealthy"].as_i64(),
            st["disruptionsAllowed"].as_i64(),
            st["expectedPods"].as_i64()
        ),
        (Some(3), Some(2), Some(1), Some(3))
    );
    let st = status_of(
        pdb(json!({"maxUnavailable": "34%", "selector": {"matchLabels": {"app": "web"}}})),
        vec![pod("a", true), pod("b", true), pod("c", false)],
    );
    assert_eq!(
        (
            st["desiredHealthy"].as_i64(),
            st["disruptionsAllowed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(st["conditions"][0]["reason"], "SufficientPods");
    // An eviction in flight counts against the budget until the Pod goes.
    let mut charged = pdb(json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}));
    charged["status"] = json!({"disruptedPods": {"a": now_rfc3339()}});
    let st = status_of(charged, three);
    assert_eq!(
        (
            st["currentHealthy"].as_i64(),
            st["disruptionsAllowed"].as_i64()
        ),
        (Some(2), Some(0))
    );
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
}

#[test]
fn replicaset_removes_unscheduled_pods_first() {
    let rs = json!({"metadata": {"name": "rs", "namespace": "default", "uid": "rs1", "generation": 1}, "spec": {"replicas": 1}});
    let pod = |n: &str, node: Option<&str>| {
        let mut p = json!({"metadata": {"name": n, "namespace": "default", "ownerReferences": [{"uid": "rs1", "controller": true}]}, "spec": {}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    let world = World {
        pods: vec![pod("bound", Some("w1")), pod("loose", None)],
        replicasets: vec![rs],
        ..Default::default()
    };
    let acts = replicasets(&world, OffsetDateTime::now_utc());
    assert_eq!(
        acts[0],
        Action::Delete {
            path: "/api/v1/namespaces/default/pods/loose".into()
        }
    );
}
