//! End-to-end lab tests against the local Docker Engine (as root: the first run builds the
//! images with debootstrap). Skipped with a message only when Docker is absent and CI is not
//! "true"; under CI=true a missing Docker fails them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kubeha_lab::{Lab, LabConfig, Role, Topology};
use tokio::io::AsyncWriteExt;

fn docker_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// False (after saying why) when the test must be skipped.
fn should_run(test: &str) -> bool {
    if docker_present() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI=true but no Docker Engine is reachable; the lab tests must run in CI");
    }
    eprintln!("SKIPPED {test}: no Docker Engine here (no /var/run/docker.sock, no DOCKER_HOST)");
    false
}

fn unique_name(kind: &str) -> String {
    format!("t{}-{kind}", std::process::id())
}

fn config(name: &str, topology: Topology) -> LabConfig {
    LabConfig {
        name: name.into(),
        topology,
        state_dir: std::env::temp_dir().join(format!("kubeha-lab-{name}")),
        // The machine's /etc/hosts stays alone: other labs (kubeha's own tests) may rely on
        // its `load-balancer.local`. The minimal test checks the block in a file of its own.
        hosts_file: None,
        ..LabConfig::default()
    }
}

/// A minimal .deb standing in for the Kubernetes packages the mirror gets as extra_debs.
fn probe_deb(dir: &Path) -> PathBuf {
    let root = dir.join("probe");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/kubeha-lab-probe")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: kubeha-lab-probe\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: kubeha <dev@kubeha.invalid>\nDescription: lab mirror probe\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/share/kubeha-lab-probe/ok"), "ok\n").unwrap();
    let deb = dir.join("kubeha-lab-probe_1.0_all.deb");
    let status = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .expect("dpkg-deb (from dpkg) builds the probe package");
    assert!(status.success());
    deb
}

/// Takes the lab down if the test fails before its own `down`, so no lab is left running.
struct Teardown {
    name: String,
    state_dir: PathBuf,
    armed: bool,
}

impl Teardown {
    fn new(cfg: &LabConfig) -> Teardown {
        Teardown {
            name: cfg.name.clone(),
            state_dir: cfg.state_dir.clone(),
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (name, dir) = (self.name.clone(), self.state_dir.clone());
        // A fresh runtime on its own thread: the test's runtime may be unwinding.
        let done = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(kubeha_lab::down(&name, &dir))
        })
        .join();
        eprintln!("teardown of the failed test's lab: {done:?}");
    }
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `script` on `host` through the real OpenSSH client, as the lab user, feeding `stdin`.
async fn ssh(lab: &Lab, host: &str, script: &str, stdin: &[u8]) -> Out {
    let argv = lab
        .ssh_command(host, &["bash".into(), "-c".into(), script.into()])
        .unwrap();
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the OpenSSH client (ssh) is installed");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    }
}

async fn ssh_ok(lab: &Lab, host: &str, script: &str) -> String {
    let out = ssh(lab, host, script, b"").await;
    assert!(
        out.ok,
        "on {host}: `{script}` failed: {}\n{}",
        out.stderr, out.stdout
    );
    out.stdout
}

/// `systemctl is-system-running --wait` after boot: must be "running" (no failed unit).
async fn assert_system_running(lab: &Lab, host: &str) {
    let out = ssh(lab, host, "systemctl is-system-running --wait", b"").await;
    if out.stdout != "running" {
        let failed = ssh(lab, host, "systemctl --failed --no-legend", b"").await;
        panic!(
            "{host} is {:?}; failed units: {}",
            out.stdout, failed.stdout
        );
    }
}

/// What kubeha does on a fresh host to use the lab mirror (the key comes on stdin).
const USE_MIRROR: &str = r#"set -euo pipefail
sudo install -d -m 0755 /etc/apt/keyrings
sudo tee /etc/apt/keyrings/kubeha-lab.gpg >/dev/null
echo "deb [signed-by=/etc/apt/keyrings/kubeha-lab.gpg] $MIRROR kubeha main" |
  sudo tee /etc/apt/sources.list.d/kubeha-lab.list >/dev/null
sudo apt-get update -qq
"#;

/// Points `host` at the mirror and runs `then` there.
async fn with_mirror(lab: &Lab, host: &str, then: &str) -> Out {
    let key = std::fs::read(lab.mirror_key_file()).unwrap();
    let mirror = shlex::try_quote(&lab.mirror_url()).unwrap().into_owned();
    let script = format!("export MIRROR={mirror}\n{USE_MIRROR}{then}");
    ssh(lab, host, &script, &key).await
}

const INSTALL_FROM_MIRROR: &str = "
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy kubeha-lab-probe >/dev/null
test -e /usr/share/kubeha-lab-probe/ok
systemctl is-active haproxy
";

/// systemd owns its cgroup tree as on a real host, and containerd runs a container from a
/// one-binary rootfs (no image registry here) with the default runc/cgroupfs setup.
const CONTAINERD_RUNS_A_CONTAINER: &str = r#"set -euo pipefail
cg=$(systemctl show -p ControlGroup --value ssh.service)
test -d "/sys/fs/cgroup/systemd$cg" || test -d "/sys/fs/cgroup$cg"
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null
systemctl is-active containerd >/dev/null
test "$(findmnt -n -o TARGET --target /var/lib/containerd)" = /var/lib/containerd
r=$(mktemp -d)
for f in /usr/bin/dash $(ldd /usr/bin/dash | grep -o '/[^ ]*'); do
  mkdir -p "$r$(dirname "$f")"; cp "$f" "$r$f"
done
out=$(sudo ctr run --rm --rootfs "$r" lab-probe /usr/bin/dash -c 'echo in-container')
test "$out" = in-container
"#;

async fn docker_ids(args: &[&str]) -> Vec<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "docker {args:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn assert_nothing_left(name: &str, state_dir: &Path, hosts_file: Option<&Path>) {
    let filter = format!("label=dev.kubeha.lab={name}");
    assert_eq!(
        docker_ids(&["ps", "-aq", "--filter", &filter]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        docker_ids(&["network", "ls", "-q", "--filter", &filter]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        docker_ids(&["volume", "ls", "-q", "--filter", &filter]).await,
        Vec::<String>::new()
    );
    // Images stay: only the cached node and mirror images.
    let images = docker_ids(&[
        "images",
        "--format",
        "{{.Repository}}",
        "--filter",
        "label=dev.kubeha.lab.image",
    ])
    .await;
    assert!(images
        .iter()
        .all(|r| r == "kubeha-lab-node" || r == "kubeha-lab-mirror"));
    if let Some(hosts) = hosts_file {
        let hosts = std::fs::read_to_string(hosts).unwrap();
        assert_eq!(
            hosts, "127.0.0.1\tlocalhost\n",
            "the block is gone, the rest untouched"
        );
    }
    assert!(
        !state_dir.exists(),
        "{} should be gone",
        state_dir.display()
    );
}

/// Asserts `host` stops answering SSH (a fault took it away).
async fn assert_unreachable(lab: &Lab, host: &str, fault: &str) {
    assert!(
        !lab.ssh_reachable(host, Duration::from_secs(3))
            .await
            .unwrap(),
        "{host} still answers SSH after {fault}"
    );
}

async fn assert_back(lab: &Lab, host: &str, fault: &str) {
    lab.wait_for_ssh(host, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ssh_ok(lab, host, "hostname").await, host, "after {fault}");
}

async fn state_of(lab: &Lab, host: &str) -> (String, bool) {
    let all = kubeha_lab::status(&lab.name).await.unwrap();
    let h = all.iter().find(|h| h.name == host).unwrap();
    (h.state.clone(), h.connected)
}

/// `/etc/hosts` as on a fresh cloud machine: localhost and the node's own name, nothing
/// for the API endpoint or the other hosts (they resolve through the network's DNS).
async fn assert_fresh_etc_hosts(lab: &Lab, host: &str) {
    let address = lab.host(host).unwrap().address.to_string();
    let hosts = ssh_ok(lab, host, "grep -v '^#' /etc/hosts").await;
    for line in hosts.lines() {
        let mut words = line.split_whitespace();
        let (ip, names): (_, Vec<&str>) = (words.next().unwrap_or(""), words.collect());
        let local = [
            "127.0.0.1",
            "::1",
            "fe00::0",
            "ff00::0",
            "ff02::1",
            "ff02::2",
        ]
        .contains(&ip);
        assert!(
            local || (ip == address && names == [host]),
            "{host}: unexpected /etc/hosts line {line:?}\n{hosts}"
        );
    }
    let out = ssh(lab, host, "getent hosts load-balancer.local", b"").await;
    assert!(
        !out.ok,
        "{host} resolves the endpoint before kubeha: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_lab_end_to_end() {
    if !should_run("minimal_lab_end_to_end") {
        return;
    }
    let name = unique_name("min");
    let work = std::env::temp_dir().join(format!("kubeha-lab-work-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    let mut cfg = config(&name, Topology::Minimal);
    cfg.extra_debs = vec![probe_deb(&work)];
    let hosts_file = work.join("hosts");
    std::fs::write(&hosts_file, "127.0.0.1\tlocalhost\n").unwrap();
    cfg.hosts_file = Some(hosts_file.clone());

    let teardown = Teardown::new(&cfg);
    let t = Instant::now();
    let lab = kubeha_lab::up(&cfg).await.unwrap();
    eprintln!(
        "TIMING up (cold or cached images): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let again = kubeha_lab::up(&cfg).await.unwrap();
    eprintln!(
        "TIMING warm up (lab already up): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(again, lab);
    assert_eq!(
        Lab::load(&cfg.state_dir.canonicalize().unwrap()).unwrap(),
        lab
    );
    assert!(std::fs::read_to_string(lab.state_dir.join("cluster.yaml"))
        .unwrap()
        .contains("hostKeyPolicy: verify"));
    let hosts_line = format!("{}\tload-balancer.local", lab.api_endpoint);
    assert!(std::fs::read_to_string(&hosts_file)
        .unwrap()
        .contains(&hosts_line));

    let names: Vec<String> = lab.hosts.iter().map(|h| h.name.clone()).collect();
    let checks = names.iter().map(|host| {
        let lab = &lab;
        async move {
            assert_system_running(lab, host).await;
            assert_eq!(ssh_ok(lab, host, "hostname").await, *host);
            assert_eq!(
                ssh_ok(lab, host, "id -un; sudo -n id -un").await,
                "kubeha\nroot"
            );
            assert_fresh_etc_hosts(lab, host).await;
            ssh_ok(
                lab,
                host,
                "sudo modprobe overlay && sudo modprobe br_netfilter",
            )
            .await;
            ssh_ok(
                lab,
                host,
                "sudo sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1",
            )
            .await;
            assert_eq!(
                ssh_ok(
                    lab,
                    host,
                    "ls /etc/apt/sources.list.d; ls /etc/apt/sources.list 2>/dev/null || true"
                )
                .await,
                ""
            );
            assert!(
                !ssh(
                    lab,
                    host,
                    "command -v containerd || command -v haproxy",
                    b""
                )
                .await
                .ok
            );
            let out = with_mirror(lab, host, INSTALL_FROM_MIRROR).await;
            assert!(
                out.ok,
                "apt from the mirror on {host}: {}\n{}",
                out.stderr, out.stdout
            );
            assert_eq!(out.stdout, "active");
        }
    });
    let t = Instant::now();
    futures_util::future::join_all(checks).await;
    eprintln!(
        "TIMING ssh checks + apt install on every node: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // containerd (from the mirror) runs a container, with its state on the volume and the
    // container in a cgroup of its own; the load balancer may manage addresses.
    let cp = "cp-1";
    ssh_ok(&lab, cp, CONTAINERD_RUNS_A_CONTAINER).await;
    let vip = lab.subnet.host(100);
    ssh_ok(
        &lab,
        "lb-1",
        &format!("sudo ip addr add {vip}/32 dev eth0 && sudo ip addr del {vip}/32 dev eth0"),
    )
    .await;

    let worker = lab
        .hosts
        .iter()
        .find(|h| h.roles == [Role::Worker])
        .unwrap()
        .name
        .clone();
    let w = worker.as_str();
    let t = Instant::now();
    lab.stop(w).await.unwrap();
    assert_unreachable(&lab, w, "stop").await;
    assert_eq!(state_of(&lab, w).await.0, "exited");
    lab.start(w).await.unwrap();
    assert_back(&lab, w, "start").await;

    lab.kill(w).await.unwrap();
    assert_unreachable(&lab, w, "kill").await;
    lab.start(w).await.unwrap();
    assert_back(&lab, w, "kill + start").await;

    lab.pause(w).await.unwrap();
    assert_unreachable(&lab, w, "pause").await;
    assert_eq!(state_of(&lab, w).await.0, "paused");
    lab.unpause(w).await.unwrap();
    assert_back(&lab, w, "unpause").await;

    // A restart regenerates /etc/hosts, as cloud-init's manage_etc_hosts does at boot.
    ssh_ok(
        &lab,
        w,
        "echo '10.9.9.9 added-before-restart' | sudo tee -a /etc/hosts >/dev/null",
    )
    .await;
    lab.restart(w).await.unwrap();
    assert_back(&lab, w, "restart").await;
    assert_system_running(&lab, w).await;
    assert_fresh_etc_hosts(&lab, w).await;

    lab.disconnect(w).await.unwrap();
    assert_unreachable(&lab, w, "disconnect").await;
    assert_eq!(state_of(&lab, w).await, ("running".into(), false));
    // The rest of the lab goes on.
    ssh_ok(&lab, cp, "true").await;
    lab.reconnect(w).await.unwrap();
    assert_back(&lab, w, "reconnect").await;
    assert_eq!(state_of(&lab, w).await, ("running".into(), true));

    // `up` repairs a lab: a cut-off worker and a paused control plane come back as they were.
    lab.disconnect(w).await.unwrap();
    lab.pause(cp).await.unwrap();
    assert_eq!(kubeha_lab::up(&cfg).await.unwrap(), lab);
    for host in [w, cp] {
        assert_back(&lab, host, "up after faults").await;
        assert_eq!(state_of(&lab, host).await, ("running".into(), true));
    }
    eprintln!("TIMING faults: {:.1}s", t.elapsed().as_secs_f64());

    teardown.disarm();
    let t = Instant::now();
    kubeha_lab::down(&name, &lab.state_dir).await.unwrap();
    eprintln!("TIMING down: {:.1}s", t.elapsed().as_secs_f64());
    assert!(kubeha_lab::status(&name).await.unwrap().is_empty());
    assert_nothing_left(&name, &lab.state_dir, Some(&hosts_file)).await;
    std::fs::remove_dir_all(&work).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_lab_boots_every_host() {
    if !should_run("seed_lab_boots_every_host") {
        return;
    }
    let name = unique_name("seed");
    let cfg = config(&name, Topology::Seed);
    let t = Instant::now();
    let teardown = Teardown::new(&cfg);
    let lab = kubeha_lab::up(&cfg).await.unwrap();
    eprintln!("TIMING seed up: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(lab.hosts.len(), 6);
    // Host keys are made per container at first boot: six hosts, six distinct ed25519 keys.
    let known = std::fs::read_to_string(lab.known_hosts_file()).unwrap();
    let mut keys: Vec<&str> = known
        .lines()
        .filter(|l| l.contains(" ssh-ed25519 "))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6, "{known}");
    let status = kubeha_lab::status(&name).await.unwrap();
    assert_eq!(status.len(), 7, "six hosts and the mirror");
    assert!(status.iter().all(|h| h.state == "running" && h.connected));
    futures_util::future::join_all(lab.hosts.iter().map(|h| {
        let lab = &lab;
        async move {
            assert_system_running(lab, &h.name).await;
            assert_fresh_etc_hosts(lab, &h.name).await;
            // Every node resolves its peers by name through the network's DNS, as on a cloud
            // network.
            for peer in &lab.hosts {
                let line = ssh_ok(
                    lab,
                    &h.name,
                    &format!("getent ahostsv4 {} | head -n1", peer.name),
                )
                .await;
                assert!(
                    line.starts_with(&format!("{} ", peer.address)),
                    "{}: {line}",
                    peer.name
                );
            }
        }
    }))
    .await;
    teardown.disarm();
    kubeha_lab::down(&name, &lab.state_dir).await.unwrap();
    assert_nothing_left(&name, &lab.state_dir, None).await;
}

/// keepalived as kubeha will configure it: both load balancers BACKUP, the higher priority wins.
fn keepalived_conf(vip: std::net::Ipv4Addr, priority: u8) -> String {
    format!(
        "vrrp_instance kubeha {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int 1\n  virtual_ipaddress {{\n    {vip}/24\n  }}\n}}\n"
    )
}

async fn holds_vip(lab: &Lab, host: &str, vip: std::net::Ipv4Addr) -> bool {
    let script = format!("ip -4 -o addr show dev eth0 | grep -qF ' {vip}/'");
    ssh(lab, host, &script, b"").await.ok
}

async fn wait_vip_on(lab: &Lab, host: &str, vip: std::net::Ipv4Addr) {
    for _ in 0..40 {
        if holds_vip(lab, host, vip).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{vip} never came up on {host}");
}

/// The lab carries VRRP between its load balancers: the virtual IP answers from the machine
/// running the lab and moves when its holder stops.
#[tokio::test(flavor = "multi_thread")]
async fn seed_ha_virtual_ip_fails_over() {
    if !should_run("seed_ha_virtual_ip_fails_over") {
        return;
    }
    let name = unique_name("ha");
    let cfg = config(&name, Topology::SeedHa);
    let teardown = Teardown::new(&cfg);
    let lab = kubeha_lab::up(&cfg).await.unwrap();
    let vip = lab.virtual_ip.expect("seed-ha has a virtual IP");
    assert_eq!(lab.api_endpoint, vip);
    assert!(lab.cluster_yaml().contains(&format!("address: {vip}")));
    let lbs = ["lb-1", "lb-2"];
    for (lb, priority) in lbs.into_iter().zip([150, 100]) {
        let conf = keepalived_conf(vip, priority);
        let then = format!(
            "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq keepalived >/dev/null\n\
             printf %s {} | sudo tee /etc/keepalived/keepalived.conf >/dev/null\n\
             sudo systemctl restart keepalived\n",
            shlex::try_quote(&conf).unwrap()
        );
        let out = with_mirror(&lab, lb, &then).await;
        assert!(out.ok, "keepalived on {lb}: {}", out.stderr);
    }
    wait_vip_on(&lab, "lb-1", vip).await;
    assert!(!holds_vip(&lab, "lb-2", vip).await);
    // The VIP answers (lb-1's sshd) from the lab machine and from the nodes; the nodes know
    // no `load-balancer.local` until kubeha maps it.
    assert!(banner(vip).await, "VIP {vip} does not answer on :22");
    ssh_ok(
        &lab,
        "cp-1",
        &format!("timeout 5 bash -c '</dev/tcp/{vip}/22'"),
    )
    .await;
    assert_fresh_etc_hosts(&lab, "cp-1").await;

    lab.stop("lb-1").await.unwrap();
    wait_vip_on(&lab, "lb-2", vip).await;
    assert!(
        banner(vip).await,
        "VIP {vip} does not answer after failover"
    );
    lab.start("lb-1").await.unwrap();
    lab.wait_for_ssh("lb-1", Duration::from_secs(60))
        .await
        .unwrap();
    // keepalived is enabled, so lb-1 takes the VIP back after its reboot.
    wait_vip_on(&lab, "lb-1", vip).await;

    teardown.disarm();
    kubeha_lab::down(&name, &lab.state_dir).await.unwrap();
    assert_nothing_left(&name, &lab.state_dir, None).await;
}

/// An SSH banner from `addr:22` within a few seconds (retrying while ARP settles).
async fn banner(addr: std::net::Ipv4Addr) -> bool {
    use tokio::io::AsyncReadExt;
    for _ in 0..10 {
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let mut s = tokio::net::TcpStream::connect((addr, 22)).await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(&buf == b"SSH-")
        })
        .await;
        if let Ok(Some(true)) = attempt {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

async fn container_id(lab: &Lab, host: &str) -> String {
    let name = format!("kubeha-lab-{}-{host}", lab.name);
    docker_ids(&["inspect", "--format", "{{.Id}}", &name])
        .await
        .remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lab_grows_and_replaces_hosts_without_touching_the_others() {
    if !should_run("a_lab_grows_and_replaces_hosts_without_touching_the_others") {
        return;
    }
    let name = unique_name("grow");
    let mut cfg = config(&name, Topology::Minimal);
    let teardown = Teardown::new(&cfg);
    let small = kubeha_lab::up(&cfg).await.unwrap();
    let worker_1 = container_id(&small, "worker-1").await;
    let key_of = |lab: &Lab, host: &str| {
        let address = format!("{} ", lab.host(host).unwrap().address);
        std::fs::read_to_string(lab.known_hosts_file())
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(&address))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let worker_1_keys = key_of(&small, "worker-1");

    // More workers: the new ones appear, worker-1 is the same container with the same keys.
    cfg.workers = Some(3);
    let grown = kubeha_lab::up(&cfg).await.unwrap();
    let names: Vec<&str> = grown.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["lb-1", "cp-1", "worker-1", "worker-2", "worker-3"]);
    assert_eq!(container_id(&grown, "worker-1").await, worker_1);
    assert_eq!(key_of(&grown, "worker-1"), worker_1_keys);
    assert_eq!(
        grown.host("worker-1").unwrap(),
        small.host("worker-1").unwrap()
    );
    assert_eq!(ssh_ok(&grown, "worker-3", "hostname").await, "worker-3");
    let spec = std::fs::read_to_string(grown.state_dir.join("cluster.yaml")).unwrap();
    assert!(spec.contains("worker-3"), "{spec}");

    // A fresh control plane while worker-1 lies dead: worker-1 stays dead.
    grown.kill("worker-1").await.unwrap();
    let (with_cp, cp) = kubeha_lab::add_host(&grown.state_dir, Role::ControlPlane)
        .await
        .unwrap();
    assert_eq!(cp.name, "cp-2");
    assert_eq!(cp.address, grown.subnet.host(12));
    assert_eq!(ssh_ok(&with_cp, "cp-2", "hostname").await, "cp-2");
    assert_ne!(state_of(&with_cp, "worker-1").await.0, "running");
    let spec = std::fs::read_to_string(with_cp.state_dir.join("cluster.yaml")).unwrap();
    assert!(spec.contains("cp-2") && spec.contains("worker-3"), "{spec}");
    assert!(kubeha_lab::add_host(&grown.state_dir, Role::LoadBalancer)
        .await
        .is_err());

    // `up` without counts keeps the grown size (and starts worker-1 again).
    cfg.workers = None;
    let again = kubeha_lab::up(&cfg).await.unwrap();
    assert_eq!(again.hosts, with_cp.hosts);
    assert_eq!(container_id(&again, "worker-1").await, worker_1);
    assert_back(&again, "worker-1", "up").await;

    // cp-2 replaced by a new machine elsewhere: nothing of its disk, new host keys that
    // the known_hosts verifies, the spec at the new address; `up` keeps the move, and
    // a second replacement with a new address brings it home.
    ssh_ok(&again, "cp-2", "sudo touch /var/lib/old-disk").await;
    let (moved, cp) = kubeha_lab::replace_host(&again.state_dir, "cp-2", true)
        .await
        .unwrap();
    assert_eq!(cp.address, again.subnet.host(112));
    assert_eq!(ssh_ok(&moved, "cp-2", "hostname").await, "cp-2");
    assert_eq!(
        ssh_ok(
            &moved,
            "cp-2",
            "ls /var/lib/old-disk 2>/dev/null || echo gone"
        )
        .await,
        "gone"
    );
    assert_ne!(key_of(&moved, "cp-2"), key_of(&again, "cp-2"));
    assert!(key_of(&moved, "cp-2").iter().all(|l| !l.is_empty()));
    let home = format!("{} ", again.host("cp-2").unwrap().address);
    assert!(
        !std::fs::read_to_string(moved.known_hosts_file())
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&home)),
        "the old machine's keys are gone"
    );
    let spec = std::fs::read_to_string(moved.state_dir.join("cluster.yaml")).unwrap();
    assert!(spec.contains(&format!("address: {}", cp.address)), "{spec}");
    assert_eq!(container_id(&moved, "worker-1").await, worker_1);
    assert_eq!(kubeha_lab::up(&cfg).await.unwrap().hosts, moved.hosts);
    let (back, cp) = kubeha_lab::replace_host(&again.state_dir, "cp-2", true)
        .await
        .unwrap();
    assert_eq!(back.hosts, again.hosts);
    assert_eq!(ssh_ok(&back, "cp-2", "hostname").await, "cp-2");
    assert_eq!(cp.address, again.subnet.host(12));

    teardown.disarm();
    kubeha_lab::down(&name, &back.state_dir).await.unwrap();
    assert_nothing_left(&name, &back.state_dir, None).await;
}
