//! The `/etc/hosts` line that makes a DNS-name endpoint resolve on every node.
//!
//! The seed assumes `load-balancer.local` resolves but never says how. When the endpoint
//! is a name and kubeha knows the one address behind it (the VIP, or the only load
//! balancer), it maintains that mapping in a marked block.

use super::{Activation, Content, RenderedFile};
use crate::spec::{Cluster, Host};

pub const PATH: &str = "/etc/hosts";

pub fn render(cluster: &Cluster, host: &Host) -> Option<RenderedFile> {
    if !cluster.api_endpoint.manage_hosts_entry || !host.is_kube_node() {
        return None;
    }
    let target = cluster.endpoint_target()?;
    Some(RenderedFile {
        path: PATH.into(),
        mode: 0o644,
        content: Content::ManagedBlock(format!("{target} {}\n", cluster.api_endpoint.host)),
        activation: Activation::None,
        secret: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn maps_the_endpoint_name_to_the_load_balancer_or_vip() {
        let c = seed();
        let f = render(&c, c.first_control_plane()).unwrap();
        assert_eq!(
            f.content,
            Content::ManagedBlock("10.20.1.5 load-balancer.local\n".into())
        );
        assert!(
            render(&c, &c.hosts[0]).is_none(),
            "load balancers do not need it"
        );
        let vip = seed_with_vip();
        let f = render(&vip, vip.first_control_plane()).unwrap();
        assert_eq!(
            f.content,
            Content::ManagedBlock("10.20.1.100 load-balancer.local\n".into())
        );
    }

    #[test]
    fn nothing_for_ip_endpoints_or_when_disabled() {
        let ip = cluster_from(|s| s.replace("host: load-balancer.local", "host: 10.20.1.5"));
        assert!(render(&ip, ip.first_control_plane()).is_none());
        let off =
            cluster_from(|s| s.replace("# manageHostsEntry: true", "manageHostsEntry: false"));
        assert!(render(&off, off.first_control_plane()).is_none());
    }
}
