//! keepalived: VRRP moves the API endpoint's virtual IP between load balancers.
//!
//! Every instance starts as BACKUP with a distinct priority (first listed highest), so the
//! election is deterministic. A failing health script lowers a holder's priority by more
//! than the gap between any two load balancers, so the VIP leaves a broken HAProxy within
//! about three seconds (three failed checks a second apart); when every check fails (no
//! apiserver yet, during bootstrap) the order is unchanged and the VIP stays put, which
//! kubeadm init needs. A recovered load balancer must pass five checks in a row before
//! it takes the VIP back, so a flapping HAProxy cannot bounce the VIP around.
//! Peers are unicast: many networks drop VRRP multicast.

use crate::quote;
use crate::spec::{Cluster, Host, Role};

pub const CONFIG_PATH: &str = "/etc/keepalived/keepalived.conf";
pub const CHECK_PATH: &str = "/etc/keepalived/check_apiserver.sh";

const TOP_PRIORITY: usize = 150;
/// Larger than the priority gap between any two load balancers the spec can hold.
const CHECK_WEIGHT: usize = 100;

pub fn render(cluster: &Cluster, host: &Host) -> String {
    let vip = cluster
        .load_balancer
        .virtual_ip
        .as_ref()
        .expect("keepalived is rendered only with a virtual IP");
    let lbs: Vec<&Host> = cluster.hosts_with(Role::LoadBalancer).collect();
    let rank = lbs
        .iter()
        .position(|h| h.name == host.name)
        .expect("keepalived is rendered only on load balancers");
    let peers: String = lbs
        .iter()
        .filter(|h| h.name != host.name)
        .map(|h| format!("        {}\n", h.node_ip()))
        .collect();
    format!(
        r#"{header}
global_defs {{
    router_id {name}
    enable_script_security
    script_user root
}}

vrrp_script check_apiserver {{
    script "{CHECK_PATH}"
    interval 1
    timeout 2
    fall 3
    rise 5
    weight -{CHECK_WEIGHT}
}}

vrrp_instance kube_apiserver {{
    state BACKUP
    interface {iface}
    virtual_router_id {vrid}
    priority {priority}
    advert_int 1
    unicast_src_ip {src}
    unicast_peer {{
{peers}    }}
    virtual_ipaddress {{
        {vip}/{prefix} dev {iface}
    }}
    track_script {{
        check_apiserver
    }}
}}
"#,
        header = super::managed_header("#", cluster).trim_end(),
        name = quote::keepalived(&host.name).expect("node names are DNS names"),
        iface = quote::keepalived(&vip.interface).expect("validation admits only interface names"),
        vrid = vip.virtual_router_id,
        priority = TOP_PRIORITY - rank,
        src = host.node_ip(),
        vip = vip.address,
        prefix = vip.prefix_len,
    )
}

/// Healthy when this host's HAProxy answers the endpoint and reaches a ready apiserver.
pub fn check_script(cluster: &Cluster) -> String {
    let url = format!(
        "https://127.0.0.1:{}{}",
        cluster.api_endpoint.port, cluster.load_balancer.health_check.path
    );
    format!(
        "#!/bin/sh\n{header}exec curl --silent --fail --insecure --max-time 1 --output /dev/null \\\n    -- {url}\n",
        header = super::managed_header("#", cluster),
        url = quote::shell(&url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn priorities_descend_and_peers_are_the_others() {
        let c = seed_with_vip();
        let lbs: Vec<&Host> = c.load_balancers().collect();
        let first = render(&c, lbs[0]);
        let second = render(&c, lbs[1]);
        assert!(first.contains("priority 150\n") && second.contains("priority 149\n"));
        assert!(first.contains("unicast_src_ip 10.20.1.5\n"));
        assert!(first.contains("unicast_peer {\n        10.20.1.6\n    }"));
        assert!(second.contains("unicast_peer {\n        10.20.1.5\n    }"));
        assert!(first.contains("10.20.1.100/24 dev \"eth0\""));
        assert!(first.contains("virtual_router_id 51\n"));
        assert!(first.contains("weight -100\n"));
    }

    #[test]
    fn check_script_probes_the_local_endpoint() {
        let script = check_script(&seed_with_vip());
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("https://127.0.0.1:6443/readyz"));
    }
}
