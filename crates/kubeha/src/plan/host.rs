//! Preparing one host: apt sources and packages, load balancer services, kernel
//! modules, sysctls, swap, containerd and the kubelet. Each action is planned only when
//! a fact shows it is needed.

use super::{unified_diff, Action, DesiredFile, Inputs};
use crate::facts::{sha256_hex, HostFacts};
use crate::render::{apt, hosts_entry, node, Activation, Content, Distro, Package};
use crate::spec::{Host, Role};

pub fn prepare(
    inputs: &Inputs,
    host: &Host,
    facts: &HostFacts,
    desired: &[DesiredFile],
) -> Vec<Action> {
    let mut p = HostPlanner {
        inputs,
        host,
        facts,
        packages: crate::render::packages(inputs.cluster, host),
        actions: Vec::new(),
    };
    if !facts.secret_leftovers.is_empty() {
        p.actions.push(Action::RemoveSecretLeftovers {
            paths: facts.secret_leftovers.iter().cloned().collect(),
        });
    }
    p.apt(desired);
    if host.is_kube_node() {
        p.kernel(desired);
    }
    // One apt transaction for everything the host lacks: apt resolves once, dpkg and
    // its triggers run once.
    let missing = p.missing_packages();
    p.install(missing);
    if host.has(Role::LoadBalancer) {
        p.load_balancer(desired);
    }
    if host.is_kube_node() {
        p.node(desired);
    }
    if facts.cluster_marker.is_none() {
        p.actions.push(Action::MarkCluster);
    }
    p.actions
}

struct HostPlanner<'a> {
    inputs: &'a Inputs<'a>,
    host: &'a Host,
    facts: &'a HostFacts,
    /// Every package the host's roles need, as the spec pins them.
    packages: Vec<Package>,
    actions: Vec<Action>,
}

impl HostPlanner<'_> {
    /// Plans writing each desired file under `prefix` that differs; true if any did.
    fn files(&mut self, desired: &[DesiredFile], select: impl Fn(&str) -> bool) -> bool {
        let mut changed = false;
        for d in desired.iter().filter(|d| select(&d.file.path)) {
            if let Content::ManagedBlock(block) = &d.file.content {
                if self.facts.hosts_block.as_deref() != Some(block.as_str()) {
                    self.actions.push(Action::MergeBlock {
                        path: d.file.path.clone(),
                        block: block.clone(),
                    });
                    changed = true;
                }
                continue;
            }
            let current = self.facts.files.get(&d.file.path).cloned().flatten();
            if current.as_deref() == Some(sha256_hex(&d.bytes).as_str()) {
                continue;
            }
            let diff = if d.file.secret {
                None
            } else {
                let key = (self.host.name.clone(), d.file.path.clone());
                let old = self.inputs.current.get(&key).map_or(&[][..], Vec::as_slice);
                match (&current, self.inputs.current.contains_key(&key)) {
                    (Some(_), false) => None,
                    _ => unified_diff(&d.file.path, old, &d.bytes),
                }
            };
            self.actions.push(Action::WriteFile {
                file: d.file.clone(),
                bytes: d.bytes.clone(),
                diff,
                created: current.is_none(),
            });
            changed = true;
        }
        changed
    }

    /// The host's packages that are missing or at another version.
    fn missing(&self) -> impl Iterator<Item = &Package> {
        self.packages.iter().filter(|p| {
            let installed = self.facts.packages.get(&p.name);
            match &p.version {
                Some(v) => installed != Some(v),
                None => installed.is_none(),
            }
        })
    }

    fn install(&mut self, packages: Vec<Package>) {
        if !packages.is_empty() {
            self.actions.push(Action::Install { packages });
        }
    }

    /// Every package of the host's roles that is missing or at another version, except a
    /// joined node's Kubernetes packages: those change versions only through the
    /// upgrade's steps, one node at a time and in kubeadm's order.
    fn missing_packages(&self) -> Vec<Package> {
        let f = self.facts;
        let joined = super::joined(self.host, f);
        self.missing()
            .filter(|p| !(p.hold && joined && f.packages.contains_key(&p.name)))
            .cloned()
            .collect()
    }

    fn apt(&mut self, desired: &[DesiredFile]) {
        let distro = distro(self.facts);
        let mut changed = false;
        for key in apt::remote_keys(self.inputs.cluster, self.host, &distro) {
            if self.facts.files.get(key.path).cloned().flatten().is_none() {
                self.actions.push(Action::DownloadKey {
                    url: key.url,
                    path: key.path.into(),
                    dearmor: key.dearmor,
                });
                changed = true;
            }
        }
        changed |= self.files(desired, |p| p.starts_with("/etc/apt/"));
        if changed || self.missing().next().is_some() {
            self.actions.push(Action::AptUpdate);
        }
    }

    fn load_balancer(&mut self, desired: &[DesiredFile]) {
        let cluster = self.inputs.cluster;
        let mut services = vec!["haproxy"];
        if cluster.load_balancer.virtual_ip.is_some() {
            services.push("keepalived");
        }
        for service in services {
            let dir = format!("/etc/{service}/");
            let changed = self.files(desired, |p| p.starts_with(&dir));
            let config: Vec<&DesiredFile> = desired
                .iter()
                .filter(|d| d.file.path.starts_with(&dir))
                .collect();
            self.service(service, &config, changed, service == "haproxy");
        }
    }

    /// Restarts a service whose config changed, and makes sure it is enabled and running.
    /// A restart also starts a stopped service, and one a package install just started
    /// with its default config must restart (facts predate the install), never reload.
    fn service(
        &mut self,
        name: &str,
        config: &[&DesiredFile],
        config_changed: bool,
        can_reload: bool,
    ) {
        let state = self.facts.service(name);
        // A config written after the service last started (by a run interrupted before
        // its restart) is not in effect yet.
        let in_effect_since = state.since.max(self.facts.activated.get(name).copied());
        let stale = state.active
            && config.iter().any(|d| {
                let written = self.facts.mtimes.get(&d.file.path);
                matches!((written, in_effect_since), (Some(w), Some(s)) if *w > s)
            });
        if config_changed || stale {
            self.actions.push(Action::Restart {
                service: name.into(),
                reload: can_reload && state.active,
            });
        }
        if !state.enabled || (!state.active && !config_changed) {
            self.actions.push(Action::Enable {
                service: name.into(),
                start: !config_changed,
            });
        }
    }

    /// Kernel modules, sysctls and swap: before the packages, so that containerd starts
    /// on a kernel that is ready for it.
    fn kernel(&mut self, desired: &[DesiredFile]) {
        let f = self.facts;
        let modules_changed = self.files(desired, |p| p == node::MODULES_PATH);
        if modules_changed || !f.overlay || !f.br_netfilter {
            self.actions.push(Action::LoadModules);
        }
        let sysctl_changed = self.files(desired, |p| p == node::SYSCTL_PATH);
        let sysctls_off = node::SYSCTLS.iter().any(|(k, v)| f.sysctl(k) != Some(v));
        if sysctl_changed || sysctls_off {
            self.actions.push(Action::ApplySysctl);
        }
        if f.swap_active || f.swap_in_fstab {
            self.actions.push(Action::DisableSwap);
        }
    }

    fn node(&mut self, desired: &[DesiredFile]) {
        let f = self.facts;
        let is_containerd = |d: &&DesiredFile| d.file.activation == Activation::RestartContainerd;
        let containerd_changed = self.files(desired, |p| {
            desired
                .iter()
                .any(|d| d.file.path == p && is_containerd(&d))
        });
        let config: Vec<&DesiredFile> = desired.iter().filter(is_containerd).collect();
        self.service("containerd", &config, containerd_changed, false);
        let hold: Vec<String> = self
            .packages
            .iter()
            .filter(|p| p.hold && !f.held.contains(&p.name))
            .map(|p| p.name.clone())
            .collect();
        if !hold.is_empty() {
            self.actions.push(Action::Hold { packages: hold });
        }
        if !f.service("kubelet").enabled {
            // kubelet restarts in a loop until kubeadm configures it; that is expected.
            self.actions.push(Action::Enable {
                service: "kubelet".into(),
                start: false,
            });
        }
        self.endpoint(desired);
    }

    /// The endpoint's entry in /etc/hosts, now and after every boot; nothing when the
    /// name resolves there without it (DNS) or kubeha does not manage it.
    fn endpoint(&mut self, desired: &[DesiredFile]) {
        let Some(Content::ManagedBlock(block)) = desired
            .iter()
            .find(|d| d.file.path == hosts_entry::PATH)
            .map(|d| d.file.content.clone())
        else {
            return;
        };
        if self.facts.endpoint_resolves_without_kubeha() {
            return;
        }
        let boot_changed = self.files(desired, |p| hosts_entry::BOOT_FILES.contains(&p));
        self.files(desired, |p| p == hosts_entry::PATH);
        if self.facts.cloud_init_hosts && self.facts.template_block.as_ref() != Some(&block) {
            self.actions.push(Action::MergeBlock {
                path: hosts_entry::CLOUD_INIT_TEMPLATE.into(),
                block,
            });
        }
        // `systemctl enable` also reloads systemd, so a changed unit takes effect;
        // starting it runs the restore once now, which proves it works.
        if boot_changed || !self.facts.service(hosts_entry::UNIT).enabled {
            self.actions.push(Action::Enable {
                service: hosts_entry::UNIT.into(),
                start: true,
            });
        }
    }
}

/// The host's distribution as the renderers need it.
pub fn distro(facts: &HostFacts) -> Distro {
    Distro {
        id: facts.os.id.clone(),
        codename: facts.os.codename.clone(),
    }
}
