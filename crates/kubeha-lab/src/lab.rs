//! Bringing a lab up and down, its status, and fault injection.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigCgroupnsModeEnum, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions, RestartContainerOptions,
    StartContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::docker::{
    connect, container_name, containerd_volume_name, exec, is_not_found, lab_filter, network_name,
    wait_until, LABEL_ADDRESS, LABEL_EXTRAS, LABEL_HOST, LABEL_LAB, LABEL_ROLES, MIRROR_HOST,
};
use crate::error::{Context, Error, Result};
use crate::image::{ensure_images, Images};
use crate::topology::{
    default_subnet, parse_cidr, plan_hosts, validate_name, with_moves, Host, Role, Sizes, Subnet,
    Topology, MIRROR_OCTET, VIRTUAL_IP_OCTET,
};
use crate::{hosts_file, render, ssh, API_ENDPOINT_NAME, MIRROR_SUITE, SSH_USER};

/// What `up` builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Part of every container, network and volume name; several labs may run side by side.
    pub name: String,
    pub topology: Topology,
    /// Overrides the topology's number of workers. `None`: as many as the lab already has
    /// (an existing lab keeps its size), else the topology's default.
    pub workers: Option<usize>,
    /// Overrides the topology's number of control planes, like `workers`.
    pub control_planes: Option<usize>,
    /// Where the key, known_hosts, mirror key and lab record are written (made absolute).
    pub state_dir: PathBuf,
    /// .debs added to the mirror next to Debian's (e.g. the Kubernetes stand-in packages).
    pub extra_debs: Vec<PathBuf>,
    /// The lab network's /24 (its x.y.z.0 address); default: a free one in 172.29.0.0/16.
    pub subnet: Option<Ipv4Addr>,
    /// A local copy of the Calico manifest for the lab's spec: lab nodes have no internet.
    pub calico_manifest: Option<PathBuf>,
    /// File on the lab machine where `load-balancer.local` is mapped to the lab's endpoint,
    /// in a marked block that `down` removes; `None` leaves the machine's name resolution alone.
    pub hosts_file: Option<PathBuf>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            name: "kubeha".into(),
            topology: Topology::Seed,
            workers: None,
            control_planes: None,
            state_dir: PathBuf::from(".lab"),
            extra_debs: Vec::new(),
            subnet: None,
            hosts_file: Some(PathBuf::from("/etc/hosts")),
            calico_manifest: None,
        }
    }
}

/// A lab that is up: its hosts and the files a client needs to reach them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lab {
    pub name: String,
    pub topology: Topology,
    pub subnet: Subnet,
    pub hosts: Vec<Host>,
    /// Where `load-balancer.local` points: the load balancer, or the virtual IP.
    pub api_endpoint: Ipv4Addr,
    pub virtual_ip: Option<Ipv4Addr>,
    pub mirror_address: Ipv4Addr,
    /// Absolute.
    pub state_dir: PathBuf,
    pub hosts_file: Option<PathBuf>,
    /// Written into the spec's `cni.calico.manifest` (absolute).
    #[serde(default)]
    pub calico_manifest: Option<PathBuf>,
    /// Hosts replaced by a machine at another address (see [`replace_host`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub moved: BTreeSet<String>,
}

/// One container of a lab as Docker sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Host name, or `mirror` for the package mirror (which has no roles).
    pub name: String,
    pub roles: Vec<Role>,
    pub address: Ipv4Addr,
    /// Docker's state: running, paused, exited, created, restarting or dead.
    pub state: String,
    /// Whether it is attached to the lab network (false after [`Lab::disconnect`]).
    pub connected: bool,
}

const LAB_RECORD: &str = "lab.json";
const STATE_FILES: [&str; 6] = [
    LAB_RECORD,
    "id_ed25519",
    "id_ed25519.pub",
    "known_hosts",
    "mirror.gpg",
    "cluster.yaml",
];
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

impl Lab {
    /// The lab a topology gives in `subnet`, the hosts named in `moved` at their moved
    /// addresses, without touching Docker.
    pub fn planned(
        name: &str,
        topology: Topology,
        subnet: Subnet,
        sizes: Sizes,
        state_dir: PathBuf,
        moved: &BTreeSet<String>,
    ) -> Result<Lab> {
        validate_name(name)?;
        let hosts = with_moves(plan_hosts(topology, sizes, subnet)?, moved);
        let moved = hosts
            .iter()
            .filter(|h| moved.contains(&h.name))
            .map(|h| h.name.clone())
            .collect();
        let virtual_ip = topology
            .has_virtual_ip()
            .then(|| subnet.host(VIRTUAL_IP_OCTET));
        let first_lb = hosts
            .iter()
            .find(|h| h.roles.contains(&Role::LoadBalancer))
            .map(|h| h.address);
        let api_endpoint = virtual_ip
            .or(first_lb)
            .ok_or_else(|| Error::Config("the topology has no load balancer".into()))?;
        Ok(Lab {
            name: name.to_owned(),
            topology,
            subnet,
            hosts,
            api_endpoint,
            virtual_ip,
            mirror_address: subnet.host(MIRROR_OCTET),
            state_dir,
            hosts_file: None,
            calico_manifest: None,
            moved,
        })
    }

    /// This lab with other sizes or moves, keeping everything else it records.
    fn replanned(&self, sizes: Sizes, moved: &BTreeSet<String>) -> Result<Lab> {
        let mut lab = Lab::planned(
            &self.name,
            self.topology,
            self.subnet,
            sizes,
            self.state_dir.clone(),
            moved,
        )?;
        lab.hosts_file = self.hosts_file.clone();
        lab.calico_manifest = self.calico_manifest.clone();
        Ok(lab)
    }

    /// Reads the record `up` left in `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Lab> {
        let path = state_dir.join(LAB_RECORD);
        let text = std::fs::read_to_string(&path)
            .context(format!("reading {} (is the lab up?)", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{} is not a lab record: {e}", path.display())))
    }

    pub fn identity_file(&self) -> PathBuf {
        self.state_dir.join("id_ed25519")
    }

    pub fn known_hosts_file(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }

    /// The mirror's signing key, binary (dearmored), for apt's `signed-by`.
    pub fn mirror_key_file(&self) -> PathBuf {
        self.state_dir.join("mirror.gpg")
    }

    /// e.g. `http://172.29.7.2/debian`; suite [`MIRROR_SUITE`], component `main`.
    pub fn mirror_url(&self) -> String {
        format!("http://{}/debian", self.mirror_address)
    }

    /// The lab's cluster spec for `kubeha apply`, with absolute paths.
    pub fn cluster_yaml(&self) -> String {
        render::cluster_yaml(self)
    }

    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            let names: Vec<_> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            Error::Config(format!(
                "lab {} has no host {name:?} (hosts: {})",
                self.name,
                names.join(", ")
            ))
        })
    }

    /// The argv of an OpenSSH client logging in to `host` as the lab user, verifying its host
    /// key; with `command`, runs it (each word quoted) instead of a login shell.
    pub fn ssh_command(&self, host: &str, command: &[String]) -> Result<Vec<String>> {
        let h = self.host(host)?;
        ssh::ssh_argv(
            SSH_USER,
            h.address,
            &self.identity_file(),
            &self.known_hosts_file(),
            command,
        )
    }

    /// Whether `host` answers with an SSH banner on port 22 within `within`.
    pub async fn ssh_reachable(&self, host: &str, within: Duration) -> Result<bool> {
        let address = self.host(host)?.address;
        Ok(tokio::time::timeout(within, ssh_banner(address))
            .await
            .unwrap_or(false))
    }

    /// Waits until `host` answers on port 22 (after a start, restart or reconnect).
    pub async fn wait_for_ssh(&self, host: &str, timeout: Duration) -> Result<()> {
        let address = self.host(host)?.address;
        wait_until(
            timeout,
            || format!("waiting for sshd on {host} ({address})"),
            || async {
                Ok(
                    tokio::time::timeout(Duration::from_secs(2), ssh_banner(address))
                        .await
                        .unwrap_or(false),
                )
            },
        )
        .await
    }

    fn container(&self, host: &str) -> Result<String> {
        Ok(container_name(&self.name, &self.host(host)?.name))
    }

    /// Stops `host` cleanly (systemd shuts down).
    pub async fn stop(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .stop_container(&c, None::<StopContainerOptions>)
            .await
            .context(format!("stopping {c}"))
    }

    /// Starts a stopped or killed `host` (it boots; see [`Lab::wait_for_ssh`]).
    pub async fn start(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .start_container(&c, None::<StartContainerOptions>)
            .await
            .context(format!("starting {c}"))
    }

    /// Kills `host` at once (SIGKILL to its init): a power cut.
    pub async fn kill(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .kill_container(
                &c,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .context(format!("killing {c}"))
    }

    /// Freezes every process of `host`: it holds its address but answers nothing.
    pub async fn pause(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .pause_container(&c)
            .await
            .context(format!("pausing {c}"))
    }

    pub async fn unpause(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .unpause_container(&c)
            .await
            .context(format!("unpausing {c}"))
    }

    /// Reboots `host` (stop, then start).
    pub async fn restart(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .restart_container(&c, None::<RestartContainerOptions>)
            .await
            .context(format!("restarting {c}"))
    }

    /// Cuts `host` off the lab network (it keeps running).
    pub async fn disconnect(&self, host: &str) -> Result<()> {
        let c = self.container(host)?;
        let docker = connect().await?;
        docker
            .disconnect_network(
                &network_name(&self.name),
                NetworkDisconnectRequest {
                    container: c.clone(),
                    force: Some(true),
                },
            )
            .await
            .context(format!("disconnecting {c} from the lab network"))
    }

    /// Puts `host` back on the lab network with its own address.
    pub async fn reconnect(&self, host: &str) -> Result<()> {
        let h = self.host(host)?;
        let c = self.container(host)?;
        let docker = connect().await?;
        connect_host(&docker, &self.name, &c, h.address, &h.name).await
    }
}

async fn ssh_banner(address: Ipv4Addr) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut stream) = tokio::net::TcpStream::connect((address, 22)).await else {
        return false;
    };
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.is_ok() && &buf == b"SSH-"
}

fn endpoint(address: Ipv4Addr, alias: &str) -> EndpointSettings {
    EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(address.to_string()),
            ..Default::default()
        }),
        aliases: Some(vec![alias.to_owned()]),
        ..Default::default()
    }
}

/// The host's inotify limits the lab raises (what kind documents for many systemd
/// nodes). Every lab container runs systemd, whose instances count against one user on
/// the host (root, for all containers): the kernel's default of 128 instances runs out at
/// about two dozen containers, and the next ones exit at boot.
const INOTIFY_LIMITS: [(&str, u64); 2] = [
    ("/proc/sys/fs/inotify/max_user_instances", 8192),
    ("/proc/sys/fs/inotify/max_user_watches", 524_288),
];

fn ensure_inotify_room() -> Result<()> {
    for (path, wanted) in INOTIFY_LIMITS {
        let now: u64 = std::fs::read_to_string(path)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if now < wanted {
            std::fs::write(path, wanted.to_string()).context(format!(
                "raising {path} from {now} to {wanted} for systemd in the lab's nodes"
            ))?;
            eprintln!("lab: raised {path} from {now} to {wanted} (systemd in every node)");
        }
    }
    Ok(())
}

/// Brings the lab up, or makes an existing one match `config` (idempotent): builds or reuses
/// the images, creates what is missing, starts what is stopped, removes hosts the topology no
/// longer has, and rewrites the key files, `lab.json` and `cluster.yaml` in the state dir.
/// Hosts keep their names and addresses when the lab grows or shrinks; counts not given
/// are those of the lab already recorded in the state dir (same name and topology).
pub async fn up(config: &LabConfig) -> Result<Lab> {
    validate_name(&config.name)?;
    let state_dir = std::path::absolute(&config.state_dir)
        .context(format!("resolving {}", config.state_dir.display()))?;
    std::fs::create_dir_all(&state_dir).context(format!("creating {}", state_dir.display()))?;
    let extras = read_extra_debs(&config.extra_debs)?;
    let docker = connect().await?;
    let images = ensure_images(&docker).await?;
    let subnet = ensure_network(&docker, &config.name, config.subnet).await?;
    let asked = Sizes {
        control_planes: config.control_planes,
        workers: config.workers,
    };
    let (sizes, moved) = match Lab::load(&state_dir) {
        Ok(old) if old.name == config.name && old.topology == config.topology => {
            (asked.or(Sizes::of(&old.hosts)), old.moved)
        }
        _ => (asked, BTreeSet::new()),
    };
    let mut lab = Lab::planned(
        &config.name,
        config.topology,
        subnet,
        sizes,
        state_dir,
        &moved,
    )?;
    lab.hosts_file = config.hosts_file.clone();
    lab.calico_manifest = config
        .calico_manifest
        .as_ref()
        .map(|p| {
            p.canonicalize()
                .context(format!("the Calico manifest {}", p.display()))
        })
        .transpose()?;
    remove_unplanned(&docker, &lab).await?;
    ensure_inotify_room()?;

    ssh::ensure_keypair(&lab.identity_file(), &format!("kubeha-lab-{}", lab.name)).await?;
    let pub_path = lab.identity_file().with_extension("pub");
    let public_key =
        std::fs::read_to_string(&pub_path).context(format!("reading {}", pub_path.display()))?;

    let nodes = futures_util::future::try_join_all(
        lab.hosts
            .iter()
            .map(|h| ensure_node(&docker, &lab, h, &images, public_key.trim())),
    );
    let (mirror_key, host_keys) =
        tokio::try_join!(ensure_mirror(&docker, &lab, &images, &extras), nodes)?;

    write_file(&lab.mirror_key_file(), &mirror_key)?;
    write_record(&lab, &host_keys.concat())?;
    Ok(lab)
}

fn state_dir_file(lab: &Lab, name: &str) -> PathBuf {
    lab.state_dir.join(name)
}

/// Writes known_hosts, `lab.json` and `cluster.yaml` for `lab`, and maps the endpoint's
/// name to its address in the machine's hosts file when the lab keeps one.
fn write_record(lab: &Lab, known_hosts: &[String]) -> Result<()> {
    write_file(&lab.known_hosts_file(), known_hosts.join("\n").as_bytes())?;
    let record = serde_json::to_string_pretty(lab).map_err(|e| Error::Config(e.to_string()))?;
    write_file(&state_dir_file(lab, LAB_RECORD), record.as_bytes())?;
    write_file(
        &state_dir_file(lab, "cluster.yaml"),
        lab.cluster_yaml().as_bytes(),
    )?;
    if let Some(path) = &lab.hosts_file {
        let entry = [(lab.api_endpoint, API_ENDPOINT_NAME)];
        hosts_file::update(path, |c| hosts_file::with_block(c, &lab.name, &entry))?;
    }
    Ok(())
}

/// Adds one fresh host of `role` to the lab recorded in `state_dir` (the next name and
/// address of that role, e.g. `cp-4` at .14) and rewrites its spec. Every other container is
/// left exactly as it is, stopped or killed ones included, so a host can be replaced while
/// another stays dead. Returns the grown lab and the new host.
pub async fn add_host(state_dir: &Path, role: Role) -> Result<(Lab, Host)> {
    let old = Lab::load(state_dir)?;
    let lab = old.replanned(Sizes::one_more(&old.hosts, role)?, &old.moved)?;
    let new = lab
        .hosts
        .iter()
        .find(|h| !old.hosts.contains(h))
        .cloned()
        .expect("one more host of a role is a new host");
    let docker = connect().await?;
    start_fresh(&docker, &lab, &new, &[]).await?;
    Ok((lab, new))
}

/// Replaces host `name` of the lab recorded in `state_dir` with a new machine of the same
/// name and role: its container and volume go (nothing of its disk survives) and a fresh
/// one starts, at the same address or, with `new_address`, at another one (its moved
/// address, or back home when it had moved). Rewrites known_hosts and the spec; every other
/// host is left as it is. Returns the lab and the new host.
pub async fn replace_host(state_dir: &Path, name: &str, new_address: bool) -> Result<(Lab, Host)> {
    let old = Lab::load(state_dir)?;
    let before = old.host(name)?.address;
    let mut moved = old.moved.clone();
    if new_address && !moved.remove(name) {
        moved.insert(name.to_owned());
    }
    let lab = old.replanned(Sizes::of(&old.hosts), &moved)?;
    let new = lab.host(name)?.clone();
    let docker = connect().await?;
    remove_container(&docker, &container_name(&lab.name, name)).await?;
    remove_volume(&docker, &containerd_volume_name(&lab.name, name)).await?;
    start_fresh(&docker, &lab, &new, &[before]).await?;
    Ok((lab, new))
}

/// Creates and starts `new`'s container, then rewrites the lab's record with `new`'s host
/// keys in place of any that `new`'s address or the `stale` ones had.
async fn start_fresh(docker: &Docker, lab: &Lab, new: &Host, stale: &[Ipv4Addr]) -> Result<()> {
    let images = ensure_images(docker).await?;
    let pub_path = lab.identity_file().with_extension("pub");
    let public_key =
        std::fs::read_to_string(&pub_path).context(format!("reading {}", pub_path.display()))?;
    let new_keys = ensure_node(docker, lab, new, &images, public_key.trim()).await?;
    let known = std::fs::read_to_string(lab.known_hosts_file())
        .context(format!("reading {}", lab.known_hosts_file().display()))?;
    // A container that held one of these addresses before had other keys.
    let stale: Vec<String> = stale
        .iter()
        .chain([&new.address])
        .map(|a| format!("{a} "))
        .collect();
    let lines: Vec<String> = known
        .lines()
        .filter(|l| !stale.iter().any(|s| l.starts_with(s)))
        .map(str::to_owned)
        .chain(new_keys)
        .collect();
    write_record(lab, &lines)
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    let mut content = content.to_vec();
    if path.extension().is_none_or(|e| e != "gpg") && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    std::fs::write(path, content).context(format!("writing {}", path.display()))
}

/// The extra .debs' file names and contents, checked up front.
fn read_extra_debs(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seen = HashSet::new();
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".deb"))
                .ok_or_else(|| {
                    Error::Config(format!("extra package {} is not a .deb file", p.display()))
                })?;
            if !seen.insert(name.clone()) {
                return Err(Error::Config(format!(
                    "two extra packages are named {name}"
                )));
            }
            let bytes =
                std::fs::read(p).context(format!("reading extra package {}", p.display()))?;
            Ok((name, bytes))
        })
        .collect()
}

fn extras_hash(extras: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in extras {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())[..16].to_owned()
}

async fn ensure_network(docker: &Docker, lab: &str, wanted: Option<Ipv4Addr>) -> Result<Subnet> {
    let name = network_name(lab);
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .context("listing Docker networks")?;
    let subnets_of = |n: &bollard::models::Network| -> Vec<(Ipv4Addr, u8)> {
        n.ipam
            .iter()
            .flat_map(|i| i.config.iter().flatten())
            .filter_map(|c| parse_cidr(c.subnet.as_deref()?))
            .collect()
    };
    if let Some(existing) = networks.iter().find(|n| n.name.as_deref() == Some(&name)) {
        let subnet = subnets_of(existing)
            .into_iter()
            .find(|&(_, prefix)| prefix == 24)
            .map(|(net, _)| Subnet::new(net))
            .transpose()?
            .ok_or_else(|| {
                Error::Config(format!(
                    "network {name} exists but has no /24 subnet; run `lab down`"
                ))
            })?;
        if wanted.is_some_and(|w| w != subnet.network()) {
            return Err(Error::Config(format!(
                "lab {lab} already runs on {}; take it down before changing its subnet",
                subnet.cidr()
            )));
        }
        return Ok(subnet);
    }
    let mut taken: Vec<_> = networks.iter().flat_map(subnets_of).collect();
    loop {
        let subnet = match wanted {
            Some(net) => Subnet::new(net)?,
            None => default_subnet(lab, &taken).ok_or_else(|| {
                Error::Config("no free /24 left in 172.29.0.0/16; set a subnet".into())
            })?,
        };
        let created = docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.cidr()),
                        gateway: Some(subnet.gateway().to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(HashMap::from([(LABEL_LAB.to_owned(), lab.to_owned())])),
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => return Ok(subnet),
            // Another lab took the same /24 since we listed the networks: try the next one.
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if wanted.is_none() && message.contains("overlap") =>
            {
                taken.push((subnet.network(), 24));
            }
            Err(e) => {
                return Err(e).context(format!("creating network {name} ({})", subnet.cidr()))
            }
        }
    }
}

/// Removes the containers (and volumes) of hosts the current plan no longer has.
async fn remove_unplanned(docker: &Docker, lab: &Lab) -> Result<()> {
    let planned: HashSet<&str> = lab
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain([MIRROR_HOST])
        .collect();
    for c in list_lab_containers(docker, &lab.name).await? {
        let host = label(&c, LABEL_HOST);
        if !planned.contains(host.as_str()) {
            remove_container(docker, &container_name(&lab.name, &host)).await?;
            remove_volume(docker, &containerd_volume_name(&lab.name, &host)).await?;
        }
    }
    Ok(())
}

fn label(c: &bollard::models::ContainerSummary, key: &str) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

async fn list_lab_containers(
    docker: &Docker,
    lab: &str,
) -> Result<Vec<bollard::models::ContainerSummary>> {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(lab_filter(lab)),
            ..Default::default()
        }))
        .await
        .context(format!("listing the containers of lab {lab}"))
}

async fn remove_container(docker: &Docker, name: &str) -> Result<()> {
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Err(e) if !is_not_found(&e) => Err(e).context(format!("removing container {name}")),
        _ => Ok(()),
    }
}

async fn remove_volume(docker: &Docker, name: &str) -> Result<()> {
    match docker
        .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
        .await
    {
        Err(e) if !is_not_found(&e) => Err(e).context(format!("removing volume {name}")),
        _ => Ok(()),
    }
}

/// A container as it is now: Docker's state, and whether it is on the lab network.
struct Existing {
    state: String,
    connected: bool,
}

/// How container `name` of `lab` is now, or None when there is none.
async fn existing(docker: &Docker, lab: &str, name: &str) -> Result<Option<Existing>> {
    match docker.inspect_container(name, None).await {
        Ok(c) => Ok(Some(Existing {
            state: c
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            connected: c
                .network_settings
                .and_then(|n| n.networks)
                .is_some_and(|n| n.contains_key(&network_name(lab))),
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).context(format!("inspecting {name}")),
    }
}

/// Attaches container `name` to the lab network with its fixed address and host-name alias.
async fn connect_host(
    docker: &Docker,
    lab: &str,
    name: &str,
    address: Ipv4Addr,
    alias: &str,
) -> Result<()> {
    docker
        .connect_network(
            &network_name(lab),
            NetworkConnectRequest {
                container: name.to_owned(),
                endpoint_config: Some(endpoint(address, alias)),
            },
        )
        .await
        .context(format!("connecting {name} to the lab network"))
}

/// Starts `name` whatever state it is in (unpausing a paused one).
async fn ensure_running(docker: &Docker, name: &str, state: &str) -> Result<()> {
    match state {
        "running" | "restarting" => Ok(()),
        "paused" => docker
            .unpause_container(name)
            .await
            .context(format!("unpausing {name}")),
        _ => docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .context(format!("starting {name}")),
    }
}

fn base_labels(
    lab: &Lab,
    host: &str,
    roles: &[Role],
    address: Ipv4Addr,
) -> HashMap<String, String> {
    let roles: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    HashMap::from([
        (LABEL_LAB.to_owned(), lab.name.clone()),
        (LABEL_HOST.to_owned(), host.to_owned()),
        (LABEL_ROLES.to_owned(), roles.join(",")),
        (LABEL_ADDRESS.to_owned(), address.to_string()),
    ])
}

/// Creates (if needed) and starts one node, installs the lab's public key for the lab user and
/// returns the node's known_hosts lines once sshd runs.
async fn ensure_node(
    docker: &Docker,
    lab: &Lab,
    host: &Host,
    images: &Images,
    public_key: &str,
) -> Result<Vec<String>> {
    let name = container_name(&lab.name, &host.name);
    match existing(docker, &lab.name, &name).await? {
        Some(now) => {
            if !now.connected {
                connect_host(docker, &lab.name, &name, host.address, &host.name).await?;
            }
            ensure_running(docker, &name, &now.state).await?;
        }
        None => {
            let volume = containerd_volume_name(&lab.name, &host.name);
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(volume.clone()),
                    labels: Some(HashMap::from([(LABEL_LAB.to_owned(), lab.name.clone())])),
                    ..Default::default()
                })
                .await
                .context(format!("creating volume {volume}"))?;
            let body = ContainerCreateBody {
                image: Some(images.node.clone()),
                hostname: Some(host.name.clone()),
                labels: Some(base_labels(lab, &host.name, &host.roles, host.address)),
                // systemd's documented request for a clean shutdown in a container.
                stop_signal: Some("SIGRTMIN+3".into()),
                host_config: Some(node_host_config(&volume)),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        network_name(&lab.name),
                        endpoint(host.address, &host.name),
                    )])),
                }),
                ..Default::default()
            };
            create_container(docker, &name, body).await?;
            docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .context(format!("starting {name}"))?;
        }
    }
    wait_until(
        BOOT_TIMEOUT,
        || format!("waiting for sshd to start on {name}"),
        || async {
            let out = exec(
                docker,
                &name,
                &["systemctl", "is-active", "ssh.service"],
                &[],
            )
            .await?;
            Ok(out.exit_code == 0)
        },
    )
    .await?;
    exec(
        docker,
        &name,
        &["sh", "-c", INSTALL_KEY_SCRIPT],
        &[format!("KUBEHA_LAB_KEY={public_key}")],
    )
    .await?
    .checked(|| format!("installing the lab key for {SSH_USER} on {name}"))?;
    let keys = exec(
        docker,
        &name,
        &["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"],
        &[],
    )
    .await?
    .checked(|| format!("reading the host keys of {name}"))?;
    Ok(ssh::known_hosts_lines(
        host.address,
        &String::from_utf8_lossy(&keys.stdout),
    ))
}

/// Run in the node with the key in the environment, so nothing is interpolated into the script.
const INSTALL_KEY_SCRIPT: &str = "set -e
install -d -m 0700 -o kubeha -g kubeha /home/kubeha/.ssh
printf '%s\\n' \"$KUBEHA_LAB_KEY\" > /home/kubeha/.ssh/authorized_keys
chown kubeha:kubeha /home/kubeha/.ssh/authorized_keys
chmod 0600 /home/kubeha/.ssh/authorized_keys";

/// What a node container may do. Not `--privileged`: it needs every capability, and lab hosts
/// may withhold some (this machine withholds CAP_SYS_RESOURCE).
fn node_host_config(containerd_volume: &str) -> HostConfig {
    HostConfig {
        cap_add: Some(
            [
                "SYS_ADMIN", // systemd's mounts, containerd's snapshots and namespaces
                "NET_ADMIN", // keepalived's virtual IP, iptables, sysctls
                "NET_RAW",   // VRRP and health checks
                "SYS_NICE",  // keepalived and etcd raise their priority
                "IPC_LOCK",  // keepalived locks its memory
            ]
            .map(String::from)
            .to_vec(),
        ),
        security_opt: Some(
            ["seccomp=unconfined", "apparmor=unconfined"]
                .map(String::from)
                .to_vec(),
        ),
        // No masked or read-only /proc paths (`--security-opt systempaths=unconfined`): kubeha's
        // namespaced sysctls must apply as on a real host.
        masked_paths: Some(Vec::new()),
        readonly_paths: Some(Vec::new()),
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // Docker's tmpfs defaults (noexec, nosuid, nodev) suit /run; /tmp is exec-able on a
        // real host, and tools (and tests) run programs from it.
        tmpfs: Some(HashMap::from([
            ("/run".to_owned(), String::new()),
            ("/run/lock".to_owned(), String::new()),
            (
                "/tmp".to_owned(),
                "rw,exec,nosuid,nodev,mode=1777".to_owned(),
            ),
        ])),
        // containerd's overlay snapshots cannot live on the container's own overlay rootfs.
        binds: Some(vec![format!("{containerd_volume}:/var/lib/containerd")]),
        ..Default::default()
    }
}

async fn create_container(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<()> {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..Default::default()
            }),
            body,
        )
        .await
        .context(format!("creating container {name}"))?;
    Ok(())
}

/// Starts the mirror with `extras` added (recreating it when they changed), waits until it
/// serves its signed index, and returns its binary public key.
async fn ensure_mirror(
    docker: &Docker,
    lab: &Lab,
    images: &Images,
    extras: &[(String, Vec<u8>)],
) -> Result<Vec<u8>> {
    let name = container_name(&lab.name, MIRROR_HOST);
    let hash = extras_hash(extras);
    let current = match docker.inspect_container(&name, None).await {
        Ok(c) => {
            let labels = c
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            let same_image =
                c.config.and_then(|c| c.image).as_deref() == Some(images.mirror.as_str());
            let state = c
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_default();
            (same_image && labels.get(LABEL_EXTRAS) == Some(&hash)).then_some(state)
        }
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e).context(format!("inspecting {name}")),
    };
    match current {
        Some(state) => ensure_running(docker, &name, &state).await?,
        None => {
            remove_container(docker, &name).await?;
            let mut labels = base_labels(lab, MIRROR_HOST, &[], lab.mirror_address);
            labels.insert(LABEL_EXTRAS.to_owned(), hash);
            let body = ContainerCreateBody {
                image: Some(images.mirror.clone()),
                hostname: Some(MIRROR_HOST.into()),
                labels: Some(labels),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        network_name(&lab.name),
                        endpoint(lab.mirror_address, MIRROR_HOST),
                    )])),
                }),
                ..Default::default()
            };
            create_container(docker, &name, body).await?;
            if !extras.is_empty() {
                let archive = extras_tar(extras).context("packing the extra packages")?;
                docker
                    .upload_to_container(
                        &name,
                        Some(UploadToContainerOptions {
                            path: "/srv/mirror/debian/pool/extra".into(),
                            ..Default::default()
                        }),
                        bollard::body_full(archive.into()),
                    )
                    .await
                    .context(format!("copying the extra packages into {name}"))?;
            }
            docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .context(format!("starting {name}"))?;
        }
    }
    let index = format!("http://127.0.0.1/debian/dists/{MIRROR_SUITE}/InRelease");
    wait_until(
        BOOT_TIMEOUT,
        || format!("waiting for the package mirror {name}"),
        || async {
            let now = existing(docker, &lab.name, &name).await?;
            if now.is_none_or(|n| n.state != "running") {
                return Err(Error::Failed {
                    context: format!("starting the package mirror {name}"),
                    detail: "it exited; see `docker logs` of it".into(),
                });
            }
            let out = exec(
                docker,
                &name,
                &["curl", "-fsS", "-o", "/dev/null", &index],
                &[],
            )
            .await?;
            Ok(out.exit_code == 0)
        },
    )
    .await?;
    let key = exec(
        docker,
        &name,
        &["cat", "/srv/mirror/debian/kubeha-lab.gpg"],
        &[],
    )
    .await?
    .checked(|| format!("reading the signing key of {name}"))?;
    Ok(key.stdout)
}

fn extras_tar(extras: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in extras {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    builder.into_inner()
}

/// Each container of lab `name` (hosts and the mirror) as Docker sees it now.
pub async fn status(name: &str) -> Result<Vec<HostStatus>> {
    validate_name(name)?;
    let docker = connect().await?;
    let network = network_name(name);
    let mut out: Vec<HostStatus> = list_lab_containers(&docker, name)
        .await?
        .iter()
        .map(|c| HostStatus {
            name: label(c, LABEL_HOST),
            roles: label(c, LABEL_ROLES)
                .split(',')
                .filter_map(|r| r.parse().ok())
                .collect(),
            address: label(c, LABEL_ADDRESS)
                .parse()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            connected: c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .is_some_and(|n| n.contains_key(&network)),
        })
        .collect();
    out.sort_by_key(|h| h.address);
    Ok(out)
}

/// Removes every container, volume and network of lab `name`, its `/etc/hosts` block and the
/// files `up` wrote in `state_dir`. The cached images stay.
pub async fn down(name: &str, state_dir: &Path) -> Result<()> {
    validate_name(name)?;
    let docker = connect().await?;
    for c in list_lab_containers(&docker, name).await? {
        if let Some(id) = &c.id {
            remove_container(&docker, id).await?;
        }
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(lab_filter(name)),
        }))
        .await
        .context(format!("listing the volumes of lab {name}"))?;
    for v in volumes.volumes.unwrap_or_default() {
        remove_volume(&docker, &v.name).await?;
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(lab_filter(name)),
        }))
        .await
        .context(format!("listing the networks of lab {name}"))?;
    for n in networks {
        let id = n.id.unwrap_or_default();
        match docker.remove_network(&id).await {
            Err(e) if !is_not_found(&e) => return Err(e).context(format!("removing network {id}")),
            _ => {}
        }
    }
    let record = Lab::load(state_dir).ok();
    let hosts = record.as_ref().map_or_else(
        || Some(PathBuf::from("/etc/hosts")),
        |l| l.hosts_file.clone(),
    );
    if let Some(path) = hosts {
        // Only touch the file when the block is there: it may not be writable otherwise.
        let has_block =
            std::fs::read_to_string(&path).is_ok_and(|c| hosts_file::without_block(&c, name) != c);
        if has_block {
            hosts_file::update(&path, |c| hosts_file::without_block(c, name))?;
        }
    }
    for file in STATE_FILES {
        let path = state_dir.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context(format!("removing {}", path.display()))
            }
            _ => {}
        }
    }
    // Left in place when the user keeps other files there.
    let _ = std::fs::remove_dir(state_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_hash_changes_with_name_or_content() {
        let a = extras_hash(&[("a.deb".into(), vec![1])]);
        assert_ne!(a, extras_hash(&[("b.deb".into(), vec![1])]));
        assert_ne!(a, extras_hash(&[("a.deb".into(), vec![2])]));
        assert_eq!(extras_hash(&[]).len(), 16);
    }

    #[test]
    fn extra_debs_must_be_distinct_deb_files() {
        let dir = std::env::temp_dir().join(format!("kubeha-lab-extras-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let deb = dir.join("x.deb");
        std::fs::write(&deb, b"!<arch>").unwrap();
        assert_eq!(
            read_extra_debs(std::slice::from_ref(&deb)).unwrap()[0].0,
            "x.deb"
        );
        assert!(read_extra_debs(&[deb.clone(), deb.clone()]).is_err());
        assert!(read_extra_debs(&[dir.join("x.txt")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
