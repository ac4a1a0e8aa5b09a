//! Certificate expiry and renewal on the control planes. Reading a certificate's expiry
//! and the warning threshold are pure; the SSH parts read `/etc/kubernetes/pki` and the
//! client certificates kubeadm embeds in its kubeconfigs, and renew one host at a time.

use std::time::{Duration, Instant};

use serde::Serialize;
use x509_parser::pem::parse_x509_pem;

use crate::apply::{rotation, ApplyError, Connected, Survey};
use crate::quote::shell as quote;

/// Certificates closer than this to their end are flagged.
pub const WARN_DAYS: i64 = 30;
const PKI_DIR: &str = "/etc/kubernetes/pki";
/// kubeadm's kubeconfigs with an embedded client certificate it renews.
const KUBECONFIGS: [&str; 4] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
];
/// The static pods that read the renewed certificates, restarted one by one.
const STATIC_PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// Where a manifest waits while the kubelet stops its pod (outside the watched folder).
const PAUSED: &str = "/etc/kubernetes/kubeha-paused";
const HEALTHY_WITHIN: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    pub host: String,
    pub file: String,
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub days_left: i64,
}

impl Expiry {
    pub fn warn(&self) -> bool {
        self.days_left < WARN_DAYS
    }
}

/// A PEM certificate's subject and notAfter (Unix seconds).
pub fn not_after(pem: &[u8]) -> Result<(String, i64), String> {
    let (_, pem) = parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Whole days from `now` to `not_after`, negative once expired.
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

/// The PEM of the client certificate a kubeconfig embeds (`client-certificate-data`).
pub fn kubeconfig_client_certificate(kubeconfig: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let data = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data:"))?
        .trim();
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every certificate of every joined control plane, with its expiry; unreadable ones
/// are reported as problems.
pub async fn check(
    c: &Connected,
    survey: &Survey,
) -> Result<(Vec<Expiry>, Vec<String>), ApplyError> {
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    let now = now();
    for h in super::joined_control_planes(c, survey) {
        let remote = c.remote(&h.name);
        let listing = remote
            .run(
                "cannot list the certificates",
                &format!("find {PKI_DIR} -type f -name '*.crt' | sort"),
            )
            .await?;
        let mut files: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for path in listing.stdout.lines().filter(|l| !l.is_empty()) {
            files.push((path.to_string(), remote.read_file(path).await?));
        }
        for path in KUBECONFIGS {
            let pem = remote
                .read_file(path)
                .await?
                .and_then(|b| kubeconfig_client_certificate(&String::from_utf8_lossy(&b)));
            if pem.is_some() {
                files.push((path.to_string(), pem));
            }
        }
        for (file, pem) in files {
            let Some(pem) = pem else { continue };
            match not_after(&pem) {
                Ok((subject, not_after)) => out.push(Expiry {
                    host: h.name.clone(),
                    file,
                    subject,
                    not_after,
                    days_left: days_left(not_after, now),
                }),
                Err(e) => problems.push(format!("{}: {file}: {e}", h.name)),
            }
        }
    }
    Ok((out, problems))
}

/// How long a drained apiserver's open connections may take to end before the load
/// balancers cut them: requests finish within it, watches never end on their own.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);
/// How long the load balancers may take to report a renewed apiserver UP again.
const BACK_IN_WITHIN: Duration = Duration::from_secs(60);

/// One step of a rolling renewal; `certs renew` shows them all before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewStep {
    /// On every load balancer: no new connections to the host's apiserver, a moment for
    /// open ones to end, then maintenance (the rest are closed; clients reconnect to the
    /// other control planes while this one is still healthy).
    Drain {
        host: String,
        load_balancers: Vec<String>,
    },
    Renew {
        host: String,
    },
    /// Restart one static pod, then wait for the host's etcd member and /readyz.
    Restart {
        host: String,
        pod: &'static str,
    },
    /// Back into every load balancer, and wait until each reports it UP: only then is
    /// the next control plane taken out.
    Ready {
        host: String,
        load_balancers: Vec<String>,
    },
}

impl std::fmt::Display for RenewStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenewStep::Drain {
                host,
                load_balancers,
            } => write!(
                f,
                "{host}: out of HAProxy on {}: drain, at most {}s for its connections to end, then maintenance",
                load_balancers.join(", "),
                DRAIN_WITHIN.as_secs()
            ),
            RenewStep::Renew { host } => write!(f, "{host}: kubeadm certs renew all"),
            RenewStep::Restart { host, pod } => {
                write!(f, "{host}: restart {pod}; wait for etcd and /readyz")
            }
            RenewStep::Ready {
                host,
                load_balancers,
            } => write!(
                f,
                "{host}: back into HAProxy on {}; wait until each reports it UP",
                load_balancers.join(", ")
            ),
        }
    }
}

/// The renewal's steps: each control plane in turn, out of the load balancers while its
/// static pods restart. A lone control plane stays in: draining it would leave nothing
/// to serve the API.
pub fn renew_plan(control_planes: &[&str], load_balancers: &[&str]) -> Vec<RenewStep> {
    let drain = control_planes.len() > 1 && !load_balancers.is_empty();
    let lbs: Vec<String> = load_balancers.iter().map(|l| l.to_string()).collect();
    let mut steps = Vec::new();
    for cp in control_planes {
        let host = cp.to_string();
        if drain {
            steps.push(RenewStep::Drain {
                host: host.clone(),
                load_balancers: lbs.clone(),
            });
        }
        steps.push(RenewStep::Renew { host: host.clone() });
        steps.extend(STATIC_PODS.iter().map(|pod| RenewStep::Restart {
            host: host.clone(),
            pod,
        }));
        if drain {
            steps.push(RenewStep::Ready {
                host,
                load_balancers: lbs.clone(),
            });
        }
    }
    steps
}

/// [`renew_plan`] for the joined control planes and the spec's load balancers. Every
/// control plane's name must be one HAProxy's runtime API can carry.
pub fn renew_steps(c: &Connected, survey: &Survey) -> Result<Vec<RenewStep>, ApplyError> {
    let cps: Vec<&str> = super::joined_control_planes(c, survey)
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    for cp in &cps {
        crate::quote::haproxy_runtime(cp)
            .map_err(|e| ApplyError::Local(format!("{cp}: {}", e.reason)))?;
    }
    let lbs: Vec<&str> = c
        .cluster
        .load_balancers()
        .map(|h| h.name.as_str())
        .collect();
    Ok(renew_plan(&cps, &lbs))
}

/// Runs the renewal's steps in order. A failure while a control plane is out of the load
/// balancers puts it back first (their health checks keep a broken apiserver out), so no
/// run leaves a server in maintenance. Returns the admin kubeconfig of the last host
/// renewed, with its renewed certificate.
pub async fn renew(c: &Connected, steps: &[RenewStep]) -> Result<Option<Vec<u8>>, ApplyError> {
    let mut out: Option<(&str, &[String])> = None;
    let mut last = None;
    for step in steps {
        let host = match step {
            RenewStep::Drain {
                host,
                load_balancers,
            } => {
                out = Some((host, load_balancers));
                host
            }
            RenewStep::Renew { host } | RenewStep::Restart { host, .. } => host,
            RenewStep::Ready { host, .. } => host,
        };
        let label = step.to_string();
        let label = label.split_once(": ").map_or(label.as_str(), |(_, l)| l);
        let started = Instant::now();
        c.progress.started(host, label);
        if let Err(e) = run_step(c, step).await {
            c.progress.failed(host, label);
            return Err(match out {
                Some((host, lbs)) => put_back(c, host, lbs, e).await,
                None => e,
            });
        }
        c.progress
            .done(host, label, started.elapsed().as_secs_f64());
        match step {
            RenewStep::Ready { .. } => out = None,
            RenewStep::Renew { host } => last = Some(host),
            _ => {}
        }
    }
    match last {
        Some(host) => Ok(c
            .remote(host)
            .read_file("/etc/kubernetes/admin.conf")
            .await?),
        None => Ok(None),
    }
}

async fn run_step(c: &Connected, step: &RenewStep) -> Result<(), ApplyError> {
    match step {
        RenewStep::Drain {
            host,
            load_balancers,
        } => rotation::take_out(c, load_balancers, host, DRAIN_WITHIN).await,
        RenewStep::Renew { host } => {
            c.remote(host)
                .run_for(
                    "kubeadm certs renew failed",
                    "kubeadm certs renew all",
                    c.options.kubeadm_timeout,
                )
                .await?;
            Ok(())
        }
        RenewStep::Restart { host, pod } => {
            let remote = c.remote(host);
            remote
                .run(&format!("cannot restart {pod}"), &restart_script(pod))
                .await?;
            let spec_host = c
                .cluster
                .control_planes()
                .find(|h| h.name == *host)
                .expect("steps name control planes of the spec");
            super::wait_healthy(
                remote,
                spec_host,
                HEALTHY_WITHIN,
                &format!("restarting {pod}"),
            )
            .await
        }
        RenewStep::Ready {
            host,
            load_balancers,
        } => rotation::put_in(c, load_balancers, host, BACK_IN_WITHIN).await,
    }
}

/// After `failure` with `host` out of the load balancers: back in on each, or the
/// error says where it is still out.
async fn put_back(c: &Connected, host: &str, lbs: &[String], failure: ApplyError) -> ApplyError {
    let mut still_out = Vec::new();
    for lb in lbs {
        if rotation::set_server(c, lb, host, "state ready")
            .await
            .is_err()
        {
            still_out.push(lb.as_str());
        }
    }
    if still_out.is_empty() {
        return failure;
    }
    ApplyError::Local(format!(
        "{failure}\n{host} is still in maintenance on {}: `kubeha certs renew` again puts it back",
        still_out.join(", ")
    ))
}

/// Where the old apiserver pair waits while kubeadm signs the new one (root, 0700).
const ASIDE: &str = "/var/lib/kubeha/dr/apiserver-aside";
/// Where the config kubeadm signs from waits meanwhile (it holds no secret).
const SIGN_CONFIG: &str = "/var/lib/kubeha/dr/kubeadm-apiserver-certs.yaml";

/// The shell of [`crate::plan::Action::RegenerateApiserverCertificate`], its config on
/// stdin: kubeadm keeps an existing certificate, so the pair is moved aside first (as
/// kubeadm's reconfiguration guide does), and back when kubeadm fails. A pair a killed
/// run left aside is put back first.
pub fn regenerate_script() -> String {
    let (crt, key) = (
        quote(&format!("{PKI_DIR}/apiserver.crt")),
        quote(&format!("{PKI_DIR}/apiserver.key")),
    );
    format!(
        "set -e
umask 077
mkdir -p {ASIDE}
chmod 700 {ASIDE}
cat > {SIGN_CONFIG}
         [ -f {crt} ] || mv {ASIDE}/apiserver.crt {ASIDE}/apiserver.key {PKI_DIR}/
         mv {crt} {key} {ASIDE}/
         if ! kubeadm init phase certs apiserver --config {SIGN_CONFIG}; then
           mv -f {ASIDE}/apiserver.crt {ASIDE}/apiserver.key {PKI_DIR}/
           rm -f {SIGN_CONFIG}
           exit 1
         fi
         rm -rf {ASIDE} {SIGN_CONFIG}"
    )
}

/// Runs [`crate::plan::Action::RegenerateApiserverCertificate`] on `host`: out of the
/// load balancers (as `certs renew` takes it), the certificate signed again, the
/// apiserver restarted and healthy, back in and UP. A failure once it may be out (on
/// any load balancer) puts it back first.
pub async fn regenerate_apiserver(
    c: &Connected,
    host: &crate::spec::Host,
    load_balancers: &[String],
    config: &str,
) -> Result<(), ApplyError> {
    let regenerated = async {
        if !load_balancers.is_empty() {
            rotation::take_out(c, load_balancers, &host.name, DRAIN_WITHIN).await?;
        }
        let remote = c.remote(&host.name);
        remote
            .run_with_input(
                "kubeadm init phase certs apiserver failed",
                &regenerate_script(),
                config.as_bytes(),
            )
            .await?;
        remote
            .run(
                "cannot restart kube-apiserver",
                &restart_script("kube-apiserver"),
            )
            .await?;
        super::wait_healthy(
            remote,
            host,
            HEALTHY_WITHIN,
            "its certificate was signed again",
        )
        .await?;
        if !load_balancers.is_empty() {
            rotation::put_in(c, load_balancers, &host.name, BACK_IN_WITHIN).await?;
        }
        Ok::<_, ApplyError>(())
    }
    .await;
    match regenerated {
        Err(e) if !load_balancers.is_empty() => {
            Err(put_back(c, &host.name, load_balancers, e).await)
        }
        other => other,
    }
}

/// Sets `apiServer.certSANs` of kubeadm-config's ClusterConfiguration, every other field
/// as it is; a concurrent change makes the replace fail rather than be lost.
pub async fn update_cert_sans(
    client: &kube::Client,
    cert_sans: &[String],
) -> Result<(), ApplyError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    let fail = |e: String| ApplyError::Local(format!("kube-system/kubeadm-config: {e}"));
    let mut cm = configmaps
        .get("kubeadm-config")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let data = cm.data.get_or_insert_with(Default::default);
    let text = data
        .get(CLUSTER_CONFIGURATION)
        .ok_or_else(|| fail(format!("no {CLUSTER_CONFIGURATION}")))?;
    let updated = with_cert_sans(text, cert_sans).map_err(fail)?;
    data.insert(CLUSTER_CONFIGURATION.into(), updated);
    configmaps
        .replace("kubeadm-config", &Default::default(), &cm)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(())
}

const CLUSTER_CONFIGURATION: &str = "ClusterConfiguration";

/// A ClusterConfiguration document with its `apiServer.certSANs` replaced.
pub fn with_cert_sans(yaml: &str, cert_sans: &[String]) -> Result<String, String> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    if !doc.is_object() {
        return Err("not a mapping".into());
    }
    if !doc["apiServer"].is_object() {
        doc["apiServer"] = serde_json::json!({});
    }
    doc["apiServer"]["certSANs"] = serde_json::json!(cert_sans);
    serde_saphyr::to_string(&doc).map_err(|e| e.to_string())
}

/// Moves a static pod's manifest out until the kubelet has stopped its process, then
/// back, so the kubelet starts it again with the renewed certificates.
pub fn restart_script(pod: &str) -> String {
    let (manifest, paused) = (
        quote(&format!("{MANIFESTS}/{pod}.yaml")),
        quote(&format!("{PAUSED}/{pod}.yaml")),
    );
    format!(
        "set -e\n[ -f {manifest} ] || exit 0\nmkdir -p -m 0700 {PAUSED}\nmv {manifest} {paused}\n\
         i=0; while pgrep -x {p} >/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done\n\
         mv {paused} {manifest}",
        // A process name is matched on its first 15 bytes (/proc/PID/comm).
        p = quote(&pod[..pod.len().min(15)])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::recorded::CA_PEM;

    #[test]
    fn reads_the_end_of_a_certificate() {
        let (subject, end) = not_after(CA_PEM.as_bytes()).unwrap();
        assert_eq!(subject, "CN=kubernetes");
        let (_, rfc) = crate::pki::expiry(CA_PEM).unwrap();
        let year = rfc
            .split_whitespace()
            .find(|w| w.len() == 4 && w.starts_with("20"))
            .unwrap();
        // 365.2425 days a year from 1970.
        assert_eq!(1970 + end / 31_556_952, year.parse::<i64>().unwrap());
        assert!(not_after(b"junk").is_err());
    }

    #[test]
    fn counts_whole_days_and_warns_inside_thirty() {
        assert_eq!(days_left(86_400 * 31, 0), 31);
        assert_eq!(days_left(86_400 * 30 - 1, 0), 29);
        assert_eq!(days_left(0, 1), -1);
        let e = |days_left| Expiry {
            host: "cp-1".into(),
            file: "apiserver.crt".into(),
            subject: String::new(),
            not_after: 0,
            days_left,
        };
        assert!(e(29).warn() && e(-3).warn() && !e(30).warn());
    }

    #[test]
    fn finds_a_kubeconfig_client_certificate() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(CA_PEM);
        let conf = format!("users:\n- name: admin\n  user:\n    client-certificate-data: {b64}\n    client-key-data: S0VZ\n");
        assert_eq!(
            kubeconfig_client_certificate(&conf).unwrap(),
            CA_PEM.as_bytes()
        );
        assert!(kubeconfig_client_certificate("users: []\n").is_none());
    }

    #[test]
    fn each_control_plane_leaves_the_load_balancers_while_it_restarts() {
        let steps = renew_plan(&["cp-1", "cp-2"], &["lb-1", "lb-2"]);
        let lbs = vec!["lb-1".to_string(), "lb-2".to_string()];
        let one = |h: &str| {
            let mut v = vec![
                RenewStep::Drain {
                    host: h.into(),
                    load_balancers: lbs.clone(),
                },
                RenewStep::Renew { host: h.into() },
            ];
            v.extend(STATIC_PODS.iter().map(|pod| RenewStep::Restart {
                host: h.into(),
                pod,
            }));
            v.push(RenewStep::Ready {
                host: h.into(),
                load_balancers: lbs.clone(),
            });
            v
        };
        assert_eq!(steps, [one("cp-1"), one("cp-2")].concat());
        assert_eq!(
            steps[0].to_string(),
            "cp-1: out of HAProxy on lb-1, lb-2: drain, at most 5s for its connections to end, then maintenance"
        );
        assert_eq!(
            steps[2].to_string(),
            "cp-1: restart etcd; wait for etcd and /readyz"
        );
    }

    #[test]
    fn a_lone_control_plane_or_no_load_balancer_is_never_drained() {
        for steps in [
            renew_plan(&["cp-1"], &["lb-1"]),
            renew_plan(&["cp-1", "cp-2"], &[]),
        ] {
            assert!(
                steps
                    .iter()
                    .all(|s| matches!(s, RenewStep::Renew { .. } | RenewStep::Restart { .. })),
                "{steps:?}"
            );
        }
        assert!(renew_plan(&[], &["lb-1"]).is_empty());
    }

    #[test]
    fn cert_sans_are_replaced_and_the_rest_is_kept() {
        let yaml = "apiServer:\n  certSANs:\n  - old.example.com\n  extraArgs: []\napiVersion: kubeadm.k8s.io/v1beta4\n\
                    kind: ClusterConfiguration\nkubernetesVersion: v1.31.0\n";
        let out = with_cert_sans(yaml, &["a.example.com".into(), "10.0.0.9".into()]).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(
            doc["apiServer"]["certSANs"],
            serde_json::json!(["a.example.com", "10.0.0.9"])
        );
        assert_eq!(doc["apiServer"]["extraArgs"], serde_json::json!([]));
        assert_eq!(doc["kubernetesVersion"], "v1.31.0");
        let bare = with_cert_sans("kind: ClusterConfiguration\n", &["x".into()]).unwrap();
        assert!(bare.contains("certSANs"), "{bare}");
        assert!(with_cert_sans("- a list\n", &[]).is_err());
    }

    #[test]
    fn the_regenerate_script_moves_the_pair_aside_and_back_on_failure() {
        let script = regenerate_script();
        crate::dr::assert_valid_sh(&script);
        // Run against a fake kubeadm in a scratch tree.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let local = script
            .replace("/etc/kubernetes/pki", &format!("{root}/pki"))
            .replace("/var/lib/kubeha/dr", &format!("{root}/dr"));
        std::fs::create_dir_all(dir.path().join("pki")).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let run = |kubeadm: &str| {
            std::fs::write(bin.join("kubeadm"), format!("#!/bin/sh\n{kubeadm}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join("kubeadm"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            let mut child = std::process::Command::new("sh")
                .args(["-c", &local])
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"kind: X\n").unwrap();
            child.wait().unwrap().success()
        };
        let pki = |f: &str| std::fs::read_to_string(dir.path().join("pki").join(f)).ok();
        std::fs::write(dir.path().join("pki/apiserver.crt"), "old crt").unwrap();
        std::fs::write(dir.path().join("pki/apiserver.key"), "old key").unwrap();
        assert!(!run("exit 1"));
        assert_eq!(pki("apiserver.crt").as_deref(), Some("old crt"));
        assert_eq!(pki("apiserver.key").as_deref(), Some("old key"));
        let sign = format!(
            "[ ! -f {root}/pki/apiserver.crt ] && grep -q 'kind: X' \"$6\" && echo new > {root}/pki/apiserver.crt && echo new > {root}/pki/apiserver.key"
        );
        assert!(run(&sign));
        assert_eq!(pki("apiserver.crt").as_deref(), Some("new\n"));
        assert!(!dir.path().join("dr/apiserver-aside").exists());
        assert!(!dir.path().join("dr/kubeadm-apiserver-certs.yaml").exists());
    }

    #[test]
    fn the_restart_script_is_valid_sh() {
        // /proc/PID/comm holds 15 bytes: the full name would never match.
        let long = restart_script("kube-controller-manager");
        assert!(long.contains("pgrep -x kube-controller >"), "{long}");
        let script = restart_script("kube-apiserver");
        crate::dr::assert_valid_sh(&script);
    }
}
