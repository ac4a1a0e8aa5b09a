//! Facts-script output for planner tests: a fresh cloud machine and a converged
//! control plane (Debian bookworm, 2 CPUs). Times are early in 1970 (1764 s), so that
//! planner tests compare them with round microsecond numbers.

pub const FRESH: &str = "os.id=debian
os.version_id=12
os.codename=bookworm
os.pretty_name=Debian GNU/Linux 12 (bookworm)
arch=x86_64
cpus=2
mem_kb=4096000
swap_active=1
swap_in_fstab=1
overlay=1
br_netfilter=0
sysctl.net.bridge.bridge-nf-call-iptables=
sysctl.net.bridge.bridge-nf-call-ip6tables=
sysctl.net.ipv4.ip_forward=0
unit.Id=haproxy.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
unit.Id=keepalived.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
unit.Id=containerd.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
unit.Id=kubelet.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
file./etc/modules-load.d/containerd.conf=
file./etc/sysctl.d/k8s.conf=
file./etc/containerd/config.toml=
endpoint.resolved=
endpoint.hosts_file=
endpoint.name_services=
";

pub const CONTROL_PLANE: &str = "os.id=debian
os.version_id=12
os.codename=bookworm
os.pretty_name=Debian GNU/Linux 12 (bookworm)
arch=x86_64
cpus=2
mem_kb=4096000
swap_active=0
swap_in_fstab=0
overlay=1
br_netfilter=1
sysctl.net.bridge.bridge-nf-call-iptables=1
sysctl.net.bridge.bridge-nf-call-ip6tables=1
sysctl.net.ipv4.ip_forward=1
pkg.containerd=1.6.20~ds1-1+deb12u3 ii 
pkg.kubeadm=1.31.0-1.1 hi 
pkg.kubectl=1.31.0-1.1 hi 
pkg.kubelet=1.31.0-1.1 hi 
pkg.haproxy= un 
unit.Id=haproxy.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
unit.Id=keepalived.service
unit.LoadState=not-found
unit.ActiveState=inactive
unit.UnitFileState=
unit.ActiveEnterTimestamp=
unit.
unit.Id=containerd.service
unit.LoadState=loaded
unit.ActiveState=active
unit.UnitFileState=enabled
unit.ActiveEnterTimestamp=Thu 1970-01-01 00:29:24.000000 UTC
unit.
unit.Id=kubelet.service
unit.LoadState=loaded
unit.ActiveState=active
unit.UnitFileState=enabled
unit.ActiveEnterTimestamp=Thu 1970-01-01 00:29:24.000000 UTC
unit.
file./etc/modules-load.d/containerd.conf=fd62c3da0ca4e4d3ca1c2e1d9d2ea3ff2bbe6e2c1ef32f9b3e1a6f0f3e8d5f0a
file./etc/sysctl.d/k8s.conf=6e3f751b8409493b80fb7154ee21989dece3322d8b9018157ffef64dfbc10799
mtime./etc/sysctl.d/k8s.conf=1763.999000
file./etc/containerd/config.toml=
hosts_block=10.0.0.5 load-balancer.local
kubeadm.admin.conf=1
kubeadm.kubelet.conf=1
kubeadm.manifests/etcd.yaml=1
kubeadm.ca=LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSURDekNDQWZPZ0F3SUJBZ0lVSzRqYTcxWnQvRFAxN3BCM3gvVElIQW9DZUlzd0RRWUpLb1pJaHZjTkFRRUwKQlFBd0ZURVRNQkVHQTFVRUF3d0thM1ZpWlhKdVpYUmxjekFlRncweU5qRXhNalV4TVRVeE16UmFGdzB6TmpFeApNakl4TVRVeE16UmFNQlV4RXpBUkJnTlZCQU1NQ210MVltVnlibVYwWlhNd2dnRWlNQTBHQ1NxR1NJYjNEUUVCCkFRVUFBNElCRHdBd2dnRUtBb0lCQVFEdS85T2NiZm9mbFVIdkhJVHUwV3lKenR2QzNKQzhKQXpUa2l4VGc2UjQKRWw3TXJGY1dqTkhEblo2Z0gyZ1RieHZaMTBKd0M0Q3FPd0lFZUV3dk1QcFI3TURsSjYxc0ZHcFRNWXF1UVFybgpJTnJmdFowVWhwYUNFMDFiSEM1ZVB5MzZpaGNWc2h3WWt6YVJhaFA5Ulk3WUQ2ZTBpaVU4WGRPOG55T2pYbzNCCldoazdzb2lxL1NBVS9mLzYzNHlWbnBoL1RTZ1N0KzJIU3RydVhyWWNDemJ5SXc1cHRLcnljQXRrcmpGRmlnVHAKUEIvNnBwejUzQ1RlQlVJRm55M2xBdlRZVUtDR0c2dTZXdDdDcW0xSkorYnVqd0xzVzFrelUxdC9Yd3FwNXdsawppVTBKdm9YWTdSZXVzNjBsdWJqTkNXVUsvL0JUR0hFZGJrOWo0QWkyTHZVeEFnTUJBQUdqVXpCUk1CMEdBMVVkCkRnUVdCQlQvdG4vZEdBSjlEZjdraXBPOEZWdGFhSkVaL1RBZkJnTlZIU01FR0RBV2dCVC90bi9kR0FKOURmN2sKaXBPOEZWdGFhSkVaL1RBUEJnTlZIUk1CQWY4RUJUQURBUUgvTUEwR0NTcUdTSWIzRFFFQkN3VUFBNElCQVFCOApXaFJmbFczdUlCWmJsRXVIbU1NNEMrcXIrU3h6TWJycTErWklId1ZEb3grbVl3blIzTjJBOU93VWNud1RGajRvClZLU0lvQ3FPQ0tkc1ljeU5kN0IxbUM3cDRuYXpkcXNmUU4rTmJJaU1NTlN3cGRuVHVlUlMwbkxoNm9rVisyM3UKQzVXaTY3VUNzbVc2aFVxOEZhL1F2ekgydiszU3lTRWlwVkZrWHg3TWx5ZElTOUZ6N2FuUndoSXl4ZC9YaWh2Sgp4NEJ0M1FGUkhhakt0WmNzUVBQZnFiMTQ3c1Jud2VPQ2p0T01pNFRreXVnaUpDMDcwUzdWMjNsZlhwUC9uL3ByCmEyWnVGYVBPNkc1YXV0MWQ2TGsxL0pYbDZXR1I2bW1ySkZIa0o5S1pDSDBlRzNYZ2FTM0dVRFJBZUlENGRyVmUKT1VsQ3hLWkxqV2l1UmVhWjNoaTQKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
cluster_marker=k8s-ha
endpoint.resolved=10.0.0.5 
endpoint.hosts_file=
endpoint.name_services=
";

/// The CA in [`CONTROL_PLANE`] and its discovery hash (computed with openssl).
pub const CA_PEM: &str = include_str!("testdata-ca.crt");
/// k8s-master-1's apiserver certificate as kubeadm signs it for the seed (openssl-made:
/// its SANs are node name, kubernetes…svc.cluster.local, load-balancer.local, 10.96.0.1
/// and 192.0.2.10).
pub const APISERVER_PEM: &str = include_str!("testdata-apiserver.crt");
pub const CA_HASH: &str = "sha256:6b7ed6a338aef84c96ff9c4cc3aa065e2fdc04b1ddb36312cc0b828de189e674";
