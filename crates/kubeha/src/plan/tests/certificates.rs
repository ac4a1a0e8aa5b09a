//! The apiserver certificates' SANs against the spec (`plan::certificates`).

use super::*;
use crate::render::test_support::cluster_from;

/// k8s-master-1's facts with the recorded apiserver certificate in them.
fn with_recorded_certificate(
    facts: &mut std::collections::BTreeMap<String, crate::facts::HostFacts>,
) {
    let der: String = recorded::APISERVER_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let f = parse(&format!("cert.{}={der}\n", crate::facts::APISERVER_CERT));
    let m1 = facts.get_mut("k8s-master-1").unwrap();
    m1.apiserver_sans = f.apiserver_sans;
    m1.certificates = f.certificates;
}

#[test]
fn the_recorded_certificate_is_what_the_seed_asks_for() {
    let c = seed();
    let mut facts = converged(&c);
    with_recorded_certificate(&mut facts);
    let sans = facts["k8s-master-1"].apiserver_sans.clone().unwrap();
    assert!(sans.contains(&"10.96.0.1".to_string()), "{sans:?}");
    let plan = run(&c, &facts, Some(&all_ready(&c))).unwrap();
    assert!(plan.is_empty(), "{:#?}", lines(&plan));
}

#[test]
fn an_extra_san_in_the_spec_regenerates_each_certificate_one_at_a_time() {
    let c = cluster_from(|s| {
        s.replace(
            "    port: 6443\n",
            "    port: 6443\n    extraSANs: [api.example.com, 192.0.2.200]\n",
        )
    });
    let mut facts = converged(&c);
    with_recorded_certificate(&mut facts);
    // The others' certificates: as kubeadm signs them now, save the seed's extra SANs.
    for (host, ip) in [
        ("k8s-master-2", "192.0.2.11"),
        ("k8s-master-3", "192.0.2.12"),
    ] {
        let mut sans = facts["k8s-master-1"].apiserver_sans.clone().unwrap();
        for s in sans.iter_mut() {
            if s == "k8s-master-1" {
                *s = host.into();
            } else if s == "192.0.2.10" {
                *s = ip.into();
            }
        }
        facts.get_mut(host).unwrap().apiserver_sans = Some(sans);
    }
    // master-3 already serves the new names (in another case and order).
    let m3 = facts.get_mut("k8s-master-3").unwrap();
    m3.apiserver_sans
        .as_mut()
        .unwrap()
        .extend(["192.0.2.200".into(), "api.EXAMPLE.com".into()]);
    let mut state = all_ready(&c);
    state.kubeadm_config.as_mut().unwrap().cert_sans = vec!["load-balancer.local".into()];
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
            lines(&plan),
            [
                "apiserver certificates cluster: set apiServer.certSANs in kube-system/kubeadm-config to [load-balancer.local, api.example.com, 192.0.2.200]",
                "apiserver certificates k8s-master-1: regenerate the apiserver certificate from the cluster CA (SANs added: 192.0.2.200, api.example.com), restart its apiserver out of HAProxy on load-balancer",
                "apiserver certificates k8s-master-2: regenerate the apiserver certificate from the cluster CA (SANs added: 192.0.2.200, api.example.com), restart its apiserver out of HAProxy on load-balancer",
            ]
        );
    let Action::RegenerateApiserverCertificate { config, .. } = &plan.steps[1].action else {
        panic!("{:?}", plan.steps[1]);
    };
    assert!(
        config.contains("advertiseAddress: \"192.0.2.10\""),
        "{config}"
    );
    assert!(config.contains("- api.example.com"), "{config}");
    // No certificate read (its host's facts did not have it): nothing to compare.
    facts.get_mut("k8s-master-1").unwrap().apiserver_sans = None;
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(plan.steps.len(), 2, "{:#?}", lines(&plan));
    // Planned in the order apply runs them: before the steps through the API.
    let worker = state.nodes.get_mut("k8s-worker-1").unwrap();
    worker.labels.insert("old".into(), "1".into());
    worker.managed_labels = ["old".to_string()].into();
    let plan = run(&c, &facts, Some(&state)).unwrap();
    assert_eq!(
        lines(&plan).last().map(String::as_str),
        Some("cluster cluster: remove label old on node k8s-worker-1 through the API"),
        "{:#?}",
        lines(&plan)
    );
}

#[test]
fn a_san_dropped_from_the_spec_is_removed_and_a_lone_control_plane_stays_in() {
    let c = cluster_from(|s| {
        s.replace(
            "    - name: k8s-master-2\n      address: 192.0.2.11\n      roles: [controlPlane]\n",
            "",
        )
        .replace(
            "    - name: k8s-master-3\n      address: 192.0.2.12\n      roles: [controlPlane]\n",
            "",
        )
    });
    let mut facts = converged(&c);
    with_recorded_certificate(&mut facts);
    facts
        .get_mut("k8s-master-1")
        .unwrap()
        .apiserver_sans
        .as_mut()
        .unwrap()
        .push("old.example.com".into());
    let plan = run(&c, &facts, Some(&all_ready(&c))).unwrap();
    assert_eq!(
            lines(&plan),
            ["apiserver certificates k8s-master-1: regenerate the apiserver certificate from the cluster CA (removed: old.example.com), restart its apiserver"]
        );
}
