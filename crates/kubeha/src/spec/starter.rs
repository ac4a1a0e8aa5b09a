//! The commented starter spec that `kubeha init` writes: the seed's topology.
//!
//! Its addresses come from 192.0.2.0/24 (TEST-NET-1, RFC 5737), which routes nowhere:
//! running kubeha on the starter by mistake must not send SSH to somebody's network.

pub const STARTER_SPEC: &str = include_str!("starter.yaml");

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::STARTER_SPEC;

    /// The documentation range the starter's addresses must come from.
    fn documentation_or_loopback(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[..3] == [192, 0, 2],
            IpAddr::V6(v6) => v6.is_loopback(),
        }
    }

    /// Every IPv4 address (with or without a `/prefix`) written on a line, comments included.
    fn addresses(line: &str) -> Vec<Ipv4Addr> {
        line.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '/'))
            .filter_map(|word| word.split('/').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn every_address_in_the_text_is_a_documentation_address() {
        let mut seen = 0;
        for (n, line) in STARTER_SPEC.lines().enumerate() {
            // The pod and service subnets are the cluster's own ranges, never connected to.
            let key = line.trim_start().trim_start_matches("# ");
            if key.starts_with("podSubnet:") || key.starts_with("serviceSubnet:") {
                continue;
            }
            for ip in addresses(line) {
                seen += 1;
                assert!(
                    documentation_or_loopback(ip.into()),
                    "starter.yaml:{}: {ip} is outside 192.0.2.0/24 and loopback: {line}",
                    n + 1
                );
            }
        }
        assert!(seen >= 7, "the scan found the hosts' addresses ({seen})");
        assert_eq!(
            addresses("address: 10.20.1.5  # x"),
            [Ipv4Addr::new(10, 20, 1, 5)]
        );
    }

    #[test]
    fn every_address_the_spec_connects_to_is_a_documentation_address() {
        // The commented options switched on, as a user would (the VIP as the tests do).
        let internal = STARTER_SPEC.replace("      # internalAddress:", "      internalAddress:");
        let vip = crate::render::test_support::seed_with_vip();
        for cluster in [
            crate::render::test_support::cluster_from(|_| internal.clone()),
            vip,
        ] {
            let mut ips: Vec<IpAddr> = cluster
                .hosts
                .iter()
                .flat_map(|h| [Some(h.address), h.internal_address])
                .flatten()
                .collect();
            ips.extend(cluster.load_balancer.virtual_ip.iter().map(|v| v.address));
            if let crate::spec::EndpointHost::Ip(ip) = cluster.api_endpoint.host {
                ips.push(ip);
            }
            assert!(ips.len() >= 6);
            for ip in ips {
                assert!(documentation_or_loopback(ip), "{ip}");
            }
        }
    }
}
