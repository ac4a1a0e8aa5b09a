//! keepalived: VRRP moves the API endpoint's virtual IP between load balancers.
//!
//! Every instance starts as BACKUP with a distinct priority (first listed highest), so the
//! election is deterministic. Peers are unicast: many networks drop VRRP multicast.
//!
//! Failover timing (what `kubeha verify --disruptive` measures), all from keepalived.conf:
//! - HAProxy stopped or crashed on the holder: `check_haproxy` asks systemd whether the
//!   service is active, every second. That answer is definitive (no network, no timeout to
//!   misread under load), so one failure is enough, and it puts the instance in FAULT rather
//!   than lowering its priority: a holder leaving for FAULT sends a priority-0 advert, on
//!   which the best backup takes over after its skew time alone (RFC 5798), about 0.2 s. A
//!   lowered priority would only be ignored by the backups until their master-down timer ran
//!   out (another 1.7 s). The VIP moves within about 1.2 s of the stop; before, three failed
//!   HTTPS checks plus the timer cost about 6 s of failed requests.
//!   A reload keeps the unit active, so configuration changes never move the VIP.
//! - HAProxy running but not serving (no ready apiserver behind it): `check_apiserver`,
//!   the HTTPS readiness check through the local HAProxy, needs three failures in a row (a
//!   network probe can time out on a busy host without anything being wrong) and lowers the
//!   priority by more than the gap between any two load balancers. When every readiness
//!   check fails (no apiserver yet, during bootstrap) the order is unchanged and the VIP
//!   stays put, which kubeadm init needs; that is why this one is a weight, not a FAULT.
//! - The holder dies outright: a backup takes over after three missed adverts plus its skew
//!   time, `3 x 0.5 s + (256 - priority) / 256 x 0.5 s`, about 1.7 s (3.6 s with 1 s adverts).
//!   Sub-second adverts need VRRP version 3 (centisecond intervals); every load balancer is
//!   rendered alike and reconfigured in the same run.
//! - Flapping: a backup needs 1.5 s without adverts before it claims the VIP, far above a
//!   LAN's jitter or a busy host's scheduling delay; a recovered holder leaves FAULT only
//!   after [`SERVICE_RISE`] active answers in a row and takes the VIP back only after five
//!   passing readiness checks, so an HAProxy that keeps dying cannot bounce the VIP faster.
//! - The new holder sends gratuitous ARPs at once and repeats them after one second instead
//!   of keepalived's default five, so a lost first burst costs clients a second at most.

use crate::quote;
use crate::spec::{Cluster, Host, Role};

pub const CONFIG_PATH: &str = "/etc/keepalived/keepalived.conf";
pub const CHECK_PATH: &str = "/etc/keepalived/check_apiserver.sh";

const TOP_PRIORITY: usize = 150;
/// Larger than the priority gap between any two load balancers the spec can hold.
const CHECK_WEIGHT: usize = 100;
/// VRRP advert interval in seconds (VRRPv3: 0.01 s resolution).
const ADVERT_INTERVAL: &str = "0.5";
/// systemd's word on the service: no network in between, so one "inactive" is the truth.
/// Tracked without a weight, so failing it puts the instance in FAULT.
const SERVICE_CHECK: &str = "/bin/systemctl is-active --quiet haproxy.service";
/// Seconds of an active HAProxy before a recovered holder counts it healthy again.
const SERVICE_RISE: u32 = 3;

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
    vrrp_version 3
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 3
}}

vrrp_script check_haproxy {{
    script "{SERVICE_CHECK}"
    interval 1
    timeout 2
    fall 1
    rise {SERVICE_RISE}
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
    advert_int {ADVERT_INTERVAL}
    unicast_src_ip {src}
    unicast_peer {{
{peers}    }}
    virtual_ipaddress {{
        {vip}/{prefix} dev {iface}
    }}
    track_script {{
        check_haproxy
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
        assert!(first.contains("unicast_src_ip 192.0.2.5\n"));
        assert!(first.contains("unicast_peer {\n        192.0.2.6\n    }"));
        assert!(second.contains("unicast_peer {\n        192.0.2.5\n    }"));
        assert!(first.contains("192.0.2.100/24 dev \"eth0\""));
        assert!(first.contains("virtual_router_id 51\n"));
        assert!(first.contains("weight -100\n"));
    }

    #[test]
    fn failover_is_fast_and_guarded_against_flapping() {
        let c = seed_with_vip();
        let conf = render(&c, c.load_balancers().next().unwrap());
        // Sub-second adverts exist only in VRRPv3.
        assert!(conf.contains("vrrp_version 3\n") && conf.contains("advert_int 0.5\n"));
        // A stopped HAProxy counts after one look at systemd; the HTTPS check needs three.
        let service = conf.split("vrrp_script check_haproxy {").nth(1).unwrap();
        let service = service.split('}').next().unwrap();
        assert!(service.contains("\"/bin/systemctl is-active --quiet haproxy.service\""));
        assert!(service.contains("fall 1\n") && service.contains("rise 3\n"));
        // No weight: a stopped HAProxy is a FAULT, whose priority-0 advert hands over at once.
        assert!(!service.contains("weight"), "{service}");
        let https = conf.split("vrrp_script check_apiserver {").nth(1).unwrap();
        let https = https.split('}').next().unwrap();
        assert!(https.contains("fall 3\n") && https.contains("rise 5\n"));
        assert!(https.contains("weight -100\n"));
        assert!(conf.contains("track_script {\n        check_haproxy\n        check_apiserver\n"));
        assert!(conf.contains("vrrp_garp_master_delay 1\n"));
    }

    #[test]
    fn check_script_probes_the_local_endpoint() {
        let script = check_script(&seed_with_vip());
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("https://127.0.0.1:6443/readyz"));
    }
}
