//! Certificate expiry and renewal on the control planes. Reading a certificate's expiry
//! and the warning threshold are pure; the SSH parts read `/etc/kubernetes/pki` and the
//! client certificates kubeadm embeds in its kubeconfigs, and renew one host at a time.

use std::time::{Duration, Instant};

use serde::Serialize;
use x509_parser::pem::parse_x509_pem;

use crate::apply::{ApplyError, Connected, Survey};
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

/// `kubeadm certs renew all` on each joined control plane in turn; each static pod is
/// restarted alone and must be healthy before the next, so the API stays up through the
/// others. Returns the admin kubeconfig of the last host, with its renewed certificate.
pub async fn renew(c: &Connected, survey: &Survey) -> Result<Option<Vec<u8>>, ApplyError> {
    let mut admin = None;
    for h in super::joined_control_planes(c, survey) {
        let remote = c.remote(&h.name);
        let started = Instant::now();
        c.progress.started(&h.name, "kubeadm certs renew all");
        remote
            .run_for(
                "kubeadm certs renew failed",
                "kubeadm certs renew all",
                c.options.kubeadm_timeout,
            )
            .await?;
        for pod in STATIC_PODS {
            c.progress.started(&h.name, &format!("restarting {pod}"));
            remote
                .run(&format!("cannot restart {pod}"), &restart_script(pod))
                .await?;
            super::wait_healthy(remote, h, HEALTHY_WITHIN, &format!("restarting {pod}")).await?;
        }
        admin = remote.read_file("/etc/kubernetes/admin.conf").await?;
        c.progress.done(
            &h.name,
            "certificates renewed; control plane healthy",
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(admin)
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
    fn the_restart_script_is_valid_sh() {
        // /proc/PID/comm holds 15 bytes: the full name would never match.
        let long = restart_script("kube-controller-manager");
        assert!(long.contains("pgrep -x kube-controller >"), "{long}");
        let script = restart_script("kube-apiserver");
        crate::dr::assert_valid_sh(&script);
    }
}
