//! The apiserver certificates against the spec's SANs: a control plane whose live
//! certificate (read in the survey: certificates only, never keys) is not signed for
//! exactly what kubeadm would sign it for now gets it signed again, one control plane at
//! a time; kubeadm-config's `certSANs`, which later joins sign for, follow the spec.

use std::collections::BTreeSet;

use super::{joined, Action, Inputs, Phase, Step};
use crate::render::kubeadm;

/// A SAN as compared: an address in its canonical text, a DNS name in lower case.
fn normal(san: &str) -> String {
    match san.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => san.to_ascii_lowercase(),
    }
}

fn set<'a>(sans: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    sans.into_iter().map(|s| normal(s)).collect()
}

/// The steps of [`Phase::Certificates`]: kubeadm-config's certSANs first (when the API
/// answered and they differ), then each joined control plane whose certificate differs.
pub fn steps(inputs: &Inputs) -> Vec<Step> {
    let cluster = inputs.cluster;
    let mut steps = Vec::new();
    let cert_sans = kubeadm::cert_sans(cluster);
    let live = inputs.cluster_state.and_then(|s| s.kubeadm_config.as_ref());
    if live.is_some_and(|l| set(&l.cert_sans) != set(&cert_sans)) {
        steps.push(Step::new(
            Phase::Certificates,
            None,
            Action::UpdateCertSans { cert_sans },
        ));
    }
    let cps: Vec<_> = cluster
        .control_planes()
        .filter(|h| joined(h, &inputs.facts[&h.name]) && !inputs.replace.contains(&h.name))
        .collect();
    // A lone control plane stays in rotation: out, nothing would serve the API.
    let load_balancers: Vec<String> = if cps.len() > 1 {
        cluster.load_balancers().map(|h| h.name.clone()).collect()
    } else {
        Vec::new()
    };
    for h in cps {
        let Some(live) = &inputs.facts[&h.name].apiserver_sans else {
            continue;
        };
        let (live, want) = (set(live), set(&kubeadm::apiserver_sans(cluster, h)));
        if live == want {
            continue;
        }
        steps.push(Step::new(
            Phase::Certificates,
            Some(&h.name),
            Action::RegenerateApiserverCertificate {
                added: want.difference(&live).cloned().collect(),
                removed: live.difference(&want).cloned().collect(),
                load_balancers: load_balancers.clone(),
                config: kubeadm::apiserver_certs_config(cluster, h),
            },
        ));
    }
    steps
}
