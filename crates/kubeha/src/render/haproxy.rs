//! `haproxy.cfg`: TCP pass-through of the API endpoint to every control plane, with an
//! HTTPS readiness check of each apiserver (the seed only opened a TCP connection, so a
//! half-broken apiserver kept receiving traffic).

use std::time::Duration;

use crate::quote;
use crate::spec::{Cluster, APISERVER_PORT};

pub const PATH: &str = "/etc/haproxy/haproxy.cfg";
/// Local-only, read-only statistics page; `kubeha status` and `upgrade` read backend
/// states from it over SSH (changes go through the root-only [`ADMIN_SOCKET`]).
pub const STATS_ADDRESS: &str = "127.0.0.1:8404";
pub const STATS_PATH: &str = "/stats";
pub const BACKEND: &str = "kube-apiserver";
/// HAProxy's runtime API. HAProxy binds it as root before dropping to `haproxy`, so with
/// mode 660 it is root's alone; `certs renew` drains a control plane through it.
pub const ADMIN_SOCKET: &str = "/run/haproxy/admin.sock";

/// A shell command sending one runtime-API `command` to [`ADMIN_SOCKET`] and printing the
/// answer. Perl, because perl-base is Essential on every Debian and Ubuntu (socat, which
/// HAProxy's manual uses, is not installed by default); the socket and the command reach it
/// as arguments, never as code.
pub fn runtime_command(command: &str) -> String {
    const CLIENT: &str = "use IO::Socket::UNIX; \
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"cannot connect to $ARGV[0]: $!\\n\"; \
        print $s \"$ARGV[1]\\n\"; print while <$s>;";
    format!(
        "perl -e {} {} {}",
        quote::shell(CLIENT),
        quote::shell(ADMIN_SOCKET),
        quote::shell(command)
    )
}

/// A shell command printing the statistics page's CSV (`backend_states` parses it).
pub fn stats_command() -> String {
    format!(
        "curl -fsS --max-time 5 {}",
        quote::shell(&format!("http://{STATS_ADDRESS}{STATS_PATH};csv"))
    )
}

pub fn render(cluster: &Cluster) -> String {
    let lb = &cluster.load_balancer;
    let hc = &lb.health_check;
    let mut servers = String::new();
    for cp in cluster.control_planes() {
        let addr = crate::spec::url_host(cp.node_ip());
        servers.push_str(&format!(
            "    server {} {addr}:{APISERVER_PORT}\n",
            quote::haproxy(&cp.name).expect("node names are DNS names")
        ));
    }
    format!(
        r#"{header}
global
    log /dev/log local0
    log /dev/log local1 notice
    chroot /var/lib/haproxy
    stats socket {ADMIN_SOCKET} mode 660 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon

defaults
    log global
    option dontlognull
    # A connection refused by one apiserver is retried once on another.
    option redispatch
    retries 1
    timeout connect 5s
    # Watches stay open for minutes; client-go pings idle HTTP/2 connections every 30s.
    timeout client {client}
    timeout server {server}
    timeout check {check}

frontend kube-apiserver
    bind :{port}
    mode tcp
    option tcplog
    default_backend {BACKEND}

backend {BACKEND}
    mode tcp
    balance roundrobin
    option httpchk
    http-check connect ssl
    http-check send meth GET uri {path}
    http-check expect status 200
    # A backend marked down has its sessions closed so clients reconnect to a healthy one.
    # After a first failed check the next ones come at fastinter, so a stopped apiserver
    # leaves the rotation in about interval + (fall - 1) x interval/4, not fall x interval.
    default-server check verify none inter {inter} fastinter {fastinter} fall {fall} rise {rise} on-marked-down shutdown-sessions
{servers}
frontend stats
    bind {STATS_ADDRESS}
    mode http
    stats enable
    stats uri {STATS_PATH}
    stats refresh 10s
"#,
        header = super::managed_header("#", cluster).trim_end(),
        client = ms(lb.client_timeout),
        server = ms(lb.server_timeout),
        check = ms(hc.interval.min(Duration::from_secs(5))),
        port = cluster.api_endpoint.port,
        path = quote::haproxy(&hc.path).expect("validation admits only URL path characters"),
        inter = ms(hc.interval),
        fastinter = ms(fast_interval(hc.interval)),
        fall = hc.fall,
        rise = hc.rise,
    )
}

/// How often a backend is checked while its state is in doubt (between the first failure and
/// `fall`, or the first success and `rise`): a quarter of the steady interval, at least 250 ms
/// so a busy apiserver is not flooded with checks.
fn fast_interval(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(250))
}

/// HAProxy takes plain milliseconds everywhere.
fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;

    #[test]
    fn every_control_plane_is_a_checked_backend() {
        let text = render(&seed());
        for (name, ip) in [
            ("k8s-master-1", "192.0.2.10"),
            ("k8s-master-2", "192.0.2.11"),
            ("k8s-master-3", "192.0.2.12"),
        ] {
            assert!(
                text.contains(&format!("    server '{name}' {ip}:6443\n")),
                "{text}"
            );
        }
        assert!(text.contains("http-check connect ssl\n"));
        assert!(text.contains("http-check send meth GET uri '/readyz'\n"));
        assert!(text.contains("default-server check verify none inter 2000ms fastinter 500ms fall 3 rise 2 on-marked-down shutdown-sessions\n"));
        assert!(text.contains("    bind :6443\n"));
        assert!(text.contains("timeout client 300000ms\n"));
    }

    #[test]
    fn the_runtime_api_is_reached_through_the_root_only_socket() {
        assert!(render(&seed())
            .contains("    stats socket /run/haproxy/admin.sock mode 660 level admin\n"));
        let script = runtime_command("set server kube-apiserver/cp-1 state drain");
        assert!(
            script
                .ends_with(" /run/haproxy/admin.sock 'set server kube-apiserver/cp-1 state drain'"),
            "{script}"
        );
        crate::dr::assert_valid_sh(&script);
    }

    #[test]
    fn spec_tunes_checks_and_port() {
        let c = cluster_from(|s| {
            s.replace("interval: 2s", "interval: 1s")
                .replace("fall: 3", "fall: 2")
                .replace("path: /readyz", "path: /livez")
                .replace("    port: 6443\n", "    port: 8443\n")
        });
        let text = render(&c);
        assert!(text.contains("inter 1000ms fastinter 250ms fall 2 rise 2"));
        assert!(text.contains("uri '/livez'"));
        assert!(text.contains("    bind :8443\n"));
        assert!(
            text.contains("server 'k8s-master-1' 192.0.2.10:6443"),
            "backends stay on 6443"
        );
    }

    #[test]
    fn internal_addresses_carry_backend_traffic() {
        let c = cluster_from(|s| {
            s.replace(
                "      # internalAddress: 192.0.2.110",
                "      internalAddress: 172.16.0.10",
            )
        });
        assert!(render(&c).contains("server 'k8s-master-1' 172.16.0.10:6443"));
    }
}
