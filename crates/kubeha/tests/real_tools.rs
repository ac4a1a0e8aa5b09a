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
            "    - name: load-balancer-2\n      address: 192.0.2.6\n      roles: [loadBalancer]\n    - name: k8s-master-1 ",
        )
        .replace("    # virtualIP:", "    virtualIP:")
        .replace("    #   address: 192.0.2.100/24", "      address: 192.0.2.100/24")
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
        let broken = conf.replace("advert_int ", "advert_intervl ");
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

#[test]
fn bash_parses_the_rendered_runbook() {
    let dir = secure_tempdir();
    render_ha(dir.path());
    let runbook = dir.path().join("r/runbook.sh");
    let (ok, out) = run(Command::new("bash").arg("-n").arg(&runbook));
    assert!(ok, "bash -n rejected runbook.sh:\n{out}");
    // The check can fail.
    std::fs::write(&runbook, "on() {\n").unwrap();
    assert!(!run(Command::new("bash").arg("-n").arg(&runbook)).0);
}

/// An ssh_config written with `quote::ssh_config` means to OpenSSH exactly the values
/// it was made from, including paths with spaces and `%`, and a hostile value cannot
/// add a directive.
#[test]
fn ssh_reads_quoted_config_values_back_unchanged() {
    let Some(ssh) = require_tool("ssh") else {
        return;
    };
    use kubeha::quote::{ssh_config, SshExpands};
    let path = |p: &std::path::Path| ssh_config(p.to_str().unwrap(), SshExpands::Path);
    let dir = secure_tempdir();
    let identity = dir.path().join("my keys #1/id 100%");
    let known_hosts = dir.path().join("known hosts");
    let config = dir.path().join("ssh config");
    // ProxyJump (like ProxyCommand) takes the rest of its line unparsed, so quotes would
    // stay in the value: the bastion gets its own Host block, reached by a fixed alias.
    let text = format!(
        "Host cp-1\n  HostName {}\n  User {}\n  Port {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  ProxyJump kubeha-bastion\n\
         Host kubeha-bastion\n  HostName {}\n  User {}\n",
        ssh_config("192.0.2.10", SshExpands::Tokens).unwrap(),
        ssh_config("deploy$", SshExpands::Nothing).unwrap(),
        ssh_config("2222", SshExpands::Nothing).unwrap(),
        path(&identity).unwrap(),
        path(&known_hosts).unwrap(),
        ssh_config("jump.example.com", SshExpands::Tokens).unwrap(),
        ssh_config("ops", SshExpands::Nothing).unwrap(),
    );
    std::fs::write(&config, &text).unwrap();
    let settings = |host: &str| {
        let (ok, out) = run(Command::new(&ssh)
            .arg("-G")
            .arg("-F")
            .arg(&config)
            .arg(host));
        assert!(ok, "ssh -G rejected:\n{text}\n{out}");
        out
    };
    let get = |out: &str, key: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key} ")))
            .map(String::from)
            .collect()
    };
    let out = settings("cp-1");
    assert_eq!(get(&out, "hostname"), ["192.0.2.10"]);
    assert_eq!(get(&out, "user"), ["deploy$"]);
    assert_eq!(get(&out, "port"), ["2222"]);
    // -G shows files before `%` expansion; -v shows the file ssh actually loads (the
    // proxy command stands in for the network, so nothing is contacted).
    let (_, verbose) = run(Command::new(&ssh).arg("-v").arg("-F").arg(&config).args([
        "-o",
        "ProxyCommand=false",
        "-o",
        "BatchMode=yes",
        "cp-1",
        "true",
    ]));
    assert!(
        verbose.contains(&format!("identity file {} type", identity.display())),
        "{verbose}"
    );
    assert_eq!(
        get(&out, "userknownhostsfile"),
        [known_hosts.to_str().unwrap()]
    );
    assert_eq!(get(&out, "proxyjump"), ["kubeha-bastion"]);
    assert!(get(&out, "proxycommand").is_empty());
    let out = settings("kubeha-bastion");
    assert_eq!(get(&out, "hostname"), ["jump.example.com"]);
    assert_eq!(get(&out, "user"), ["ops"]);
    // A line break is what would inject a directive; the quoting refuses it.
    assert!(ssh_config(
        "jump.example.com\n  ProxyCommand touch /tmp/pwned",
        SshExpands::Tokens
    )
    .is_err());
    // And without the quoting, ssh does read the injected directive: the test can fail.
    let raw = "Host cp-1\n  HostName jump.example.com\n  ProxyCommand touch /tmp/pwned\n";
    std::fs::write(&config, raw).unwrap();
    let (_, out) = run(Command::new(&ssh)
        .arg("-G")
        .arg("-F")
        .arg(&config)
        .arg("cp-1"));
    assert!(out.contains("proxycommand touch /tmp/pwned"), "{out}");
}

/// A fake `ssh` (and the `curl` the first control plane downloads the manifest with) on PATH records what runbook.sh passes: every value reaches
/// its program as exactly the argument the spec holds, never split or expanded, even
/// when it is full of characters a shell treats specially, and the runbook runs from a
/// folder whose name has spaces, quotes and `$`.
#[test]
fn runbook_passes_every_value_as_one_argument() {
    let root = secure_tempdir();
    let dir = root.path();
    let manifest = "kind: DaemonSet\nenv:\n            # - name: CALICO_IPV4POOL_CIDR\n            #   value: \"192.168.0.0/16\"\n";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(manifest.as_bytes()))
    };
    let url = "https://mirror.example.com/calico.yaml?release=v3.28.1&arch=amd64";
    let spec = common::stdout(&kubeha(&["init", "--out", "-"], dir))
        .replace("user: ubuntu ", "user: \"deploy$\" ")
        .replace("    port: 22\n", "    port: 2222\n")
        .replace(
            "      # manifest: calico.yaml        # a local copy instead of the release URL, or a URL",
            &format!("      manifest: \"{url}\"\n      sha256: {sha}"),
        );
    std::fs::write(dir.join("cluster.yaml"), spec).unwrap();
    let out_dir = dir.join("rendered $HOME 'q' \"d\" dir");
    let out = kubeha(
        &[
            "render",
            "-f",
            "cluster.yaml",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A CA certificate for the hash step, and the fakes.
    let log = dir.join("log");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let ca = dir.join("ca.crt");
    let (ok, text) = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-subj", "/CN=kubernetes", "-days", "1"]));
    assert!(ok, "{text}");
    std::fs::write(dir.join("manifest"), manifest).unwrap();
    let fake = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/bash\nset -eu\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    // Each call: argv NUL-separated, then its standard input.
    fake(
        "ssh",
        r#"n=$(ls "$FAKE_LOG" | wc -l)
printf '%s\0' "$@" > "$FAKE_LOG/ssh-$n.argv"
case "$*" in
  *' cat /etc/kubernetes/pki/ca.crt') cat "$FAKE_CA" ;;
  *' cat /etc/kubernetes/admin.conf') echo 'fake admin.conf' ;;
  *) cat > "$FAKE_LOG/ssh-$n.stdin"
     # The manifest's download runs on the first control plane, as apply's does.
     if grep -q 'then curl -fsSL' "$FAKE_LOG/ssh-$n.stdin"; then sh "$FAKE_LOG/ssh-$n.stdin"; fi ;;
esac
"#,
    );
    fake(
        "curl",
        r#"printf '%s\0' "$@" > "$FAKE_LOG/curl.argv"
cat "$FAKE_MANIFEST"
"#,
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg("runbook.sh")
        .current_dir(&out_dir)
        .env("PATH", &path)
        .env("SSH_OPTIONS", "-o BatchMode=yes")
        .env("FAKE_LOG", &log)
        .env("FAKE_CA", &ca)
        .env("FAKE_MANIFEST", dir.join("manifest"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runbook.sh failed:\n{}{}",
        common::stdout(&out),
        stderr(&out)
    );
    assert!(common::stdout(&out).contains("Cluster ready"));

    let read_argv = |p: &Path| -> Vec<String> {
        String::from_utf8(std::fs::read(p).unwrap())
            .unwrap()
            .split_terminator('\0')
            .map(String::from)
            .collect()
    };
    let hosts = [
        "192.0.2.5",
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.20",
        "192.0.2.21",
    ];
    let mut calls = 0;
    let mut secrets_seen = Vec::new();
    for entry in std::fs::read_dir(&log).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "argv")
            || !p.file_name().unwrap().to_str().unwrap().starts_with("ssh-")
        {
            continue;
        }
        calls += 1;
        let argv = read_argv(&p);
        assert_eq!(
            argv[..6],
            ["-o", "BatchMode=yes", "-p", "2222", "-l", "deploy$"],
            "{argv:?}"
        );
        assert_eq!(argv[6], "--");
        assert!(hosts.contains(&argv[7].as_str()), "{argv:?}");
        // ssh joins the command for the remote shell: every word must be inert there.
        for word in &argv[8..] {
            assert_eq!(&kubeha::quote::shell(word), word, "{argv:?}");
        }
        let stdin = p.with_extension("stdin");
        if let Ok(input) = std::fs::read_to_string(&stdin) {
            if argv[8..].starts_with(&["sudo".into(), "bash".into()]) {
                let (ok, text) = run(Command::new("bash").arg("-n").arg(&stdin));
                assert!(ok, "remote script does not parse:\n{input}\n{text}");
            }
            if input.contains("kind: JoinConfiguration")
                || input.contains("kind: InitConfiguration")
            {
                assert!(!input.contains("${KUBEHA_"), "unfilled slot:\n{input}");
                let token = input
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("- token: ")
                            .or(l.trim().strip_prefix("token: "))
                    })
                    .expect("a token")
                    .to_string();
                secrets_seen.push(token);
            }
            if input.contains("kind: JoinConfiguration") {
                let hash = input
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("- sha256:"))
                    .expect("a CA hash");
                assert!(
                    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{hash}"
                );
            }
        }
    }
    assert!(calls > 40, "only {calls} ssh calls recorded");
    // One init and four joins, all with the same well-formed token.
    assert_eq!(secrets_seen.len(), 5);
    assert!(secrets_seen.iter().all(|t| t == &secrets_seen[0]));
    let t = &secrets_seen[0];
    assert!(t.len() == 23 && t.as_bytes()[6] == b'.', "{t}");
    // The manifest URL, `&` and `?` included, is one argument.
    assert_eq!(read_argv(&log.join("curl.argv")).last().unwrap(), url);
    let admin = out_dir.join("admin.conf");
    let mode = std::fs::metadata(&admin).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
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
