//! Pure planning: which hosts a topology has and which address each one gets.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The machines a lab starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// The seed's table: 1 load balancer, 3 control planes, 2 workers.
    #[default]
    Seed,
    /// The seed without its single point of failure: 2 load balancers sharing a virtual IP.
    SeedHa,
    /// The smallest useful lab: 1 load balancer, 1 control plane, 1 worker.
    Minimal,
}

impl Topology {
    pub const ALL: [Topology; 3] = [Topology::Seed, Topology::SeedHa, Topology::Minimal];

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Seed => "seed",
            Topology::SeedHa => "seed-ha",
            Topology::Minimal => "minimal",
        }
    }

    /// (load balancers, default control planes, default workers)
    fn counts(self) -> (usize, usize, usize) {
        match self {
            Topology::Seed => (1, 3, 2),
            Topology::SeedHa => (2, 3, 2),
            Topology::Minimal => (1, 1, 1),
        }
    }

    /// Whether the load balancers share a keepalived virtual IP.
    pub fn has_virtual_ip(self) -> bool {
        self == Topology::SeedHa
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topology {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Topology::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown topology {s:?} (expected one of: seed, seed-ha, minimal)"
                ))
            })
    }
}

/// A host's part in the cluster, spelled as in kubeha's cluster spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    LoadBalancer,
    ControlPlane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::LoadBalancer => "loadBalancer",
            Role::ControlPlane => "controlPlane",
            Role::Worker => "worker",
        }
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Role::LoadBalancer, Role::ControlPlane, Role::Worker]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::Config(format!("unknown role {s:?}")))
    }
}

/// One lab machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Hostname inside the lab, e.g. `cp-1`.
    pub name: String,
    pub roles: Vec<Role>,
    pub address: Ipv4Addr,
}

/// A lab network: always a /24 so addresses can follow a fixed, readable plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    network: Ipv4Addr,
}

/// Where the lab's own addresses sit in the /24. Load balancers count down from .10 so the
/// seed topology reads lb-1 .10, cp-1 .11, worker-1 .21.
pub const GATEWAY_OCTET: u8 = 1;
pub const MIRROR_OCTET: u8 = 2;
pub const VIRTUAL_IP_OCTET: u8 = 100;
const FIRST_LB_OCTET: u8 = 10;
const FIRST_CP_OCTET: u8 = 11;
const FIRST_WORKER_OCTET: u8 = 21;
const MAX_WORKERS: usize = (VIRTUAL_IP_OCTET - FIRST_WORKER_OCTET) as usize;
const MAX_CONTROL_PLANES: usize = (FIRST_WORKER_OCTET - FIRST_CP_OCTET) as usize;
/// How far a moved host's address is from its home one (cp-1 .11 moves to .111). Every home
/// address is below the virtual IP's .100, so a moved one (.109-.199) meets no other.
const MOVED_OFFSET: u8 = 100;

/// How many control planes and workers a lab has; `None` takes the topology's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub control_planes: Option<usize>,
    pub workers: Option<usize>,
}

impl Sizes {
    /// The sizes of an existing lab's hosts, so that `up` without counts keeps a grown lab
    /// as it is instead of shrinking it back to the topology's defaults.
    pub fn of(hosts: &[Host]) -> Sizes {
        let count = |role| Some(hosts.iter().filter(|h| h.roles.contains(&role)).count());
        Sizes {
            control_planes: count(Role::ControlPlane),
            workers: count(Role::Worker),
        }
    }

    /// `self` where given, else `fallback`.
    pub fn or(self, fallback: Sizes) -> Sizes {
        Sizes {
            control_planes: self.control_planes.or(fallback.control_planes),
            workers: self.workers.or(fallback.workers),
        }
    }

    /// One more host of `role` than `hosts` have (load balancers are fixed by the topology).
    pub fn one_more(hosts: &[Host], role: Role) -> Result<Sizes> {
        let mut sizes = Sizes::of(hosts);
        let slot = match role {
            Role::ControlPlane => &mut sizes.control_planes,
            Role::Worker => &mut sizes.workers,
            Role::LoadBalancer => {
                return Err(Error::Config(
                    "a lab's load balancers are fixed by its topology (seed-ha has two)".into(),
                ))
            }
        };
        *slot = slot.map(|n| n + 1);
        Ok(sizes)
    }
}

/// The range default subnets are taken from: 172.29.0.0/16, away from Docker's usual
/// first pools (172.17-172.20).
const DEFAULT_RANGE: [u8; 2] = [172, 29];

impl Subnet {
    /// `network` must be the first address of a /24 (last octet 0).
    pub fn new(network: Ipv4Addr) -> Result<Self> {
        if network.octets()[3] != 0 {
            return Err(Error::Config(format!(
                "lab subnet {network} must be the network address of a /24 (x.y.z.0)"
            )));
        }
        Ok(Subnet { network })
    }

    pub fn network(self) -> Ipv4Addr {
        self.network
    }

    pub fn host(self, last_octet: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.network.octets();
        Ipv4Addr::new(a, b, c, last_octet)
    }

    pub fn gateway(self) -> Ipv4Addr {
        self.host(GATEWAY_OCTET)
    }

    /// CIDR notation, e.g. `172.29.7.0/24`.
    pub fn cidr(self) -> String {
        format!("{}/24", self.network)
    }

    fn overlaps(self, other_network: Ipv4Addr, other_prefix: u8) -> bool {
        let prefix = other_prefix.min(24);
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        u32::from(self.network) & mask == u32::from(other_network) & mask
    }
}

/// Parses `a.b.c.d/n` as Docker reports subnets; `None` for IPv6 or junk.
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some((addr.parse().ok()?, prefix))
}

/// Picks a /24 for a lab: starts from a slot derived from its name (so a lab keeps its
/// addresses across runs) and skips every subnet already used by a Docker network.
pub fn default_subnet(name: &str, taken: &[(Ipv4Addr, u8)]) -> Option<Subnet> {
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let start = (hash % 256) as usize;
    (0..256).map(|i| (start + i) % 256).find_map(|third| {
        let third = u8::try_from(third).ok()?;
        let candidate = Subnet {
            network: Ipv4Addr::new(DEFAULT_RANGE[0], DEFAULT_RANGE[1], third, 0),
        };
        (!taken.iter().any(|&(n, p)| candidate.overlaps(n, p))).then_some(candidate)
    })
}

/// The hosts of a topology with their fixed addresses in `subnet`. A host's name and address
/// depend only on its role and index, so a lab that grows keeps every host it had.
pub fn plan_hosts(topology: Topology, sizes: Sizes, subnet: Subnet) -> Result<Vec<Host>> {
    let (lbs, default_cps, default_workers) = topology.counts();
    let workers = sizes.workers.unwrap_or(default_workers);
    let cps = sizes.control_planes.unwrap_or(default_cps);
    if workers > MAX_WORKERS {
        return Err(Error::Config(format!(
            "a lab has at most {MAX_WORKERS} workers, {workers} were asked for"
        )));
    }
    if !(1..=MAX_CONTROL_PLANES).contains(&cps) {
        return Err(Error::Config(format!(
            "a lab has 1 to {MAX_CONTROL_PLANES} control planes, {cps} were asked for"
        )));
    }
    let mut hosts = Vec::with_capacity(lbs + cps + workers);
    let mut add = |prefix: &str, i: usize, role: Role, octet: usize| {
        hosts.push(Host {
            name: format!("{prefix}-{}", i + 1),
            roles: vec![role],
            // Every octet is below VIRTUAL_IP_OCTET and in its role's range (checked above).
            address: subnet.host(octet as u8),
        });
    };
    for i in 0..lbs {
        add("lb", i, Role::LoadBalancer, usize::from(FIRST_LB_OCTET) - i);
    }
    for i in 0..cps {
        add("cp", i, Role::ControlPlane, usize::from(FIRST_CP_OCTET) + i);
    }
    for i in 0..workers {
        add(
            "worker",
            i,
            Role::Worker,
            usize::from(FIRST_WORKER_OCTET) + i,
        );
    }
    Ok(hosts)
}

/// `hosts` with each one named in `moved` at its moved address instead of its home one:
/// a machine replaced by one elsewhere on the network (see [`MOVED_OFFSET`]).
pub fn with_moves(hosts: Vec<Host>, moved: &BTreeSet<String>) -> Vec<Host> {
    hosts
        .into_iter()
        .map(|mut h| {
            if moved.contains(&h.name) {
                let [a, b, c, d] = h.address.octets();
                h.address = Ipv4Addr::new(a, b, c, d + MOVED_OFFSET);
            }
            h
        })
        .collect()
}

/// Checks a lab name: it becomes part of container, network and volume names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "lab name {name:?} must be 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Subnet {
        Subnet::new(Ipv4Addr::new(172, 29, 7, 0)).unwrap()
    }

    #[test]
    fn seed_topology_has_the_seed_table() {
        let hosts = plan_hosts(Topology::Seed, Sizes::default(), subnet()).unwrap();
        let names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["lb-1", "cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]
        );
        assert_eq!(hosts[0].address, Ipv4Addr::new(172, 29, 7, 10));
        assert_eq!(hosts[1].address, Ipv4Addr::new(172, 29, 7, 11));
        assert_eq!(hosts[4].address, Ipv4Addr::new(172, 29, 7, 21));
        assert_eq!(hosts[4].roles, [Role::Worker]);
    }

    #[test]
    fn seed_ha_has_two_load_balancers_and_distinct_addresses() {
        let hosts = plan_hosts(Topology::SeedHa, workers(5), subnet()).unwrap();
        assert_eq!(hosts.len(), 2 + 3 + 5);
        let mut addrs: Vec<_> = hosts.iter().map(|h| h.address).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), hosts.len());
        assert!(!addrs.contains(&subnet().host(MIRROR_OCTET)));
        assert!(!addrs.contains(&subnet().host(VIRTUAL_IP_OCTET)));
        assert!(Topology::SeedHa.has_virtual_ip() && !Topology::Seed.has_virtual_ip());
    }

    #[test]
    fn too_many_workers_is_refused() {
        assert!(plan_hosts(Topology::Minimal, workers(80), subnet()).is_err());
        assert!(plan_hosts(Topology::Minimal, workers(79), subnet()).is_ok());
        let cps = |n| Sizes {
            control_planes: Some(n),
            workers: None,
        };
        assert!(plan_hosts(Topology::Seed, cps(10), subnet()).is_ok());
        assert!(plan_hosts(Topology::Seed, cps(11), subnet()).is_err());
        assert!(plan_hosts(Topology::Seed, cps(0), subnet()).is_err());
    }

    fn workers(n: usize) -> Sizes {
        Sizes {
            control_planes: None,
            workers: Some(n),
        }
    }

    #[test]
    fn a_grown_lab_keeps_every_host_it_had() {
        let seed = plan_hosts(Topology::Seed, Sizes::default(), subnet()).unwrap();
        let grown = plan_hosts(Topology::Seed, workers(50), subnet()).unwrap();
        assert_eq!(grown.len(), 1 + 3 + 50);
        assert!(
            seed.iter().all(|h| grown.contains(h)),
            "same names, same addresses"
        );
        assert_eq!(grown.last().unwrap().name, "worker-50");
        assert_eq!(grown.last().unwrap().address, subnet().host(70));

        // A fresh control plane takes the next name and the next control-plane address.
        let more = Sizes::one_more(&seed, Role::ControlPlane).unwrap();
        assert_eq!(more.control_planes, Some(4));
        assert_eq!(more.workers, Some(2));
        let four = plan_hosts(Topology::Seed, more, subnet()).unwrap();
        let new: Vec<_> = four.iter().filter(|h| !seed.contains(h)).collect();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].name, "cp-4");
        assert_eq!(new[0].roles, [Role::ControlPlane]);
        assert_eq!(new[0].address, subnet().host(14));
        assert!(Sizes::one_more(&seed, Role::LoadBalancer).is_err());
    }

    #[test]
    fn a_moved_host_takes_an_address_no_other_host_has() {
        let full = Sizes {
            control_planes: Some(MAX_CONTROL_PLANES),
            workers: Some(MAX_WORKERS),
        };
        let home = plan_hosts(Topology::SeedHa, full, subnet()).unwrap();
        let everyone: BTreeSet<String> = home.iter().map(|h| h.name.clone()).collect();
        let moved = with_moves(home.clone(), &everyone);
        let mut taken: Vec<Ipv4Addr> = home.iter().chain(&moved).map(|h| h.address).collect();
        taken.extend([GATEWAY_OCTET, MIRROR_OCTET, VIRTUAL_IP_OCTET].map(|o| subnet().host(o)));
        let count = taken.len();
        taken.sort();
        taken.dedup();
        assert_eq!(taken.len(), count, "no address is used twice");

        let cp1 = BTreeSet::from(["cp-1".to_string()]);
        let one = with_moves(home.clone(), &cp1);
        let (moved, same): (Vec<_>, Vec<_>) = one.iter().zip(&home).partition(|(a, b)| a != b);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].0.name, "cp-1");
        assert_eq!(moved[0].0.address, subnet().host(111));
        assert_eq!(same.len(), home.len() - 1);
    }

    #[test]
    fn up_without_counts_keeps_the_existing_sizes() {
        let grown = plan_hosts(Topology::Seed, workers(7), subnet()).unwrap();
        let kept = Sizes::default().or(Sizes::of(&grown));
        assert_eq!(kept.workers, Some(7));
        assert_eq!(kept.control_planes, Some(3));
        // Asked-for counts win, so a lab can also shrink.
        assert_eq!(workers(1).or(Sizes::of(&grown)).workers, Some(1));
    }

    #[test]
    fn default_subnet_is_stable_and_avoids_taken_ones() {
        let a = default_subnet("kubeha", &[]).unwrap();
        assert_eq!(a, default_subnet("kubeha", &[]).unwrap());
        let b = default_subnet("kubeha", &[(a.network(), 24)]).unwrap();
        assert_ne!(a, b);
        // A /16 covering the whole default range leaves nothing.
        assert_eq!(
            default_subnet("x", &[(Ipv4Addr::new(172, 29, 0, 0), 16)]),
            None
        );
        assert!(default_subnet("x", &[(Ipv4Addr::new(172, 17, 0, 0), 16)]).is_some());
    }

    #[test]
    fn parses_names_topologies_and_cidrs() {
        assert_eq!("seed-ha".parse::<Topology>().unwrap(), Topology::SeedHa);
        assert!("big".parse::<Topology>().is_err());
        assert_eq!(
            parse_cidr("10.1.0.0/16"),
            Some((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert_eq!(parse_cidr("fd00::/64"), None);
        assert!(validate_name("ci-lab-1").is_ok());
        for bad in ["", "-x", "Lab", "a b", &"x".repeat(33)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(Subnet::new(Ipv4Addr::new(172, 29, 7, 1)).is_err());
    }
}
