//! Rendered configs are accepted by the real programs that will read them: HAProxy's and
//! keepalived's own config tests, and containerd's config loader. `.ci/run` installs
//! them from Debian's packages; outside CI a missing tool skips with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kubeha, stderr};

/// Renders the seed topology with a second load balancer and a virtual IP.
fn render_ha(dir: &Path) -> PathBuf {
    let spec = common::stdout(&kubeha(&["init", "--out", "-"], dir))
        .replace(
            "    - name: k8s-master-1 ",
            "    - name: load-balancer-2\n      address: 10.20.1.6\n      roles: [loadBalancer]\n    - name: k8s-master-1 ",
        )
        .replace("    # virtualIP:", "    virtualIP:")
        .replace("    #   address: 10.20.1.100/24", "      address: 10.20.1.100/24")
        .replace("    #   interface: eth0", "      interface: eth0")
        .replace("    #   virtualRouterId: 51", "      virtualRouterId: 51");
    std::fs::write(dir.join("cluster.yaml"), spec).unwrap();
    let out = kubeha(&["render", "-f", "cluster.yaml", "--out", "r"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    dir.join("r/hosts")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// keepalived refuses scripts under world-writable folders (`enable_script_security`),
/// so the test folder lives under the build's own tmp folder, not /tmp.
fn secure_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("render-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

#[test]
fn haproxy_accepts_the_rendered_config() {
    let Some(haproxy) = require_tool("haproxy") else {
        return;
    };
    let dir = secure_tempdir();
    let hosts = render_ha(dir.path());
    for lb in ["load-balancer", "load-balancer-2"] {
        let cfg = hosts.join(lb).join("etc/haproxy/haproxy.cfg");
        let (ok, out) = run(Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg));
        assert!(ok, "haproxy -c rejected {}:\n{out}", cfg.display());
        assert!(
            !out.contains("[WARNING]"),
            "haproxy warns about the config:\n{out}"
        );
    }
    // The check can fail: a backend with a bad option is refused.
    let cfg = hosts.join("load-balancer/etc/haproxy/haproxy.cfg");
    let broken = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("balance roundrobin", "balance sideways");
    std::fs::write(&cfg, broken).unwrap();
    assert!(!run(Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg)).0);
}

#[test]
fn keepalived_accepts_the_rendered_config() {
    let Some(keepalived) = require_tool("keepalived") else {
        return;
    };
    let dir = secure_tempdir();
    let hosts = render_ha(dir.path());
    for lb in ["load-balancer", "load-balancer-2"] {
        let etc = hosts.join(lb).join("etc/keepalived");
        let script = etc.join("check_apiserver.sh");
        let (ok, out) = run(Command::new("sh").arg("-n").arg(&script));
        assert!(ok, "check script is not valid sh: {out}");
        // Point the config at the rendered script, as it will sit beside it on the host.
        let conf = std::fs::read_to_string(etc.join("keepalived.conf"))
            .unwrap()
            .replace(
                "/etc/keepalived/check_apiserver.sh",
                script.to_str().unwrap(),
            );
        let test_conf = etc.join("keepalived.test.conf");
        std::fs::write(&test_conf, &conf).unwrap();
        let (ok, out) = run(Command::new(&keepalived)
            .arg("--config-test")
            .arg("-f")
            .arg(&test_conf));
        assert!(ok, "keepalived --config-test rejected {lb}:\n{out}\n{conf}");
        let broken = conf.replace("advert_int 1", "advert_intervl 1");
        std::fs::write(&test_conf, broken).unwrap();
        assert!(
            !run(Command::new(&keepalived)
                .arg("--config-test")
                .arg("-f")
                .arg(&test_conf))
            .0
        );
    }
}

#[test]
fn containerd_loads_the_rendered_config() {
    let Some(containerd) = require_tool("containerd") else {
        return;
    };
    let dir = secure_tempdir();
    let hosts = render_ha(dir.path());
    let cfg = hosts.join("k8s-worker-1/etc/containerd/config.toml");
    let (ok, dump) = run(Command::new(&containerd)
        .arg("--config")
        .arg(&cfg)
        .args(["config", "dump"]));
    assert!(ok, "containerd rejected the config:\n{dump}");
    // The effective config, after containerd merged its defaults, keeps our settings.
    let runc_options = dump
        .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]")
        .nth(1)
        .expect("runc options section in the dump");
    let section = runc_options.split("\n  [").next().unwrap();
    assert!(section.contains("SystemdCgroup = true"), "{section}");
    assert!(dump.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""));
    // The check can fail: invalid TOML is refused.
    std::fs::write(&cfg, "version = 2\n[plugins\n").unwrap();
    assert!(
        !run(Command::new(&containerd)
            .arg("--config")
            .arg(&cfg)
            .args(["config", "dump"]))
        .0
    );
}

/// Whether tests that need an external tool must run rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The path of `tool`, or `None` (with a printed reason) when it is absent outside CI.
pub fn require_tool(tool: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !in_ci(),
            "{tool} is required when CI=true (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install it to run this test)");
    }
    found
}
