//! kubeadm init and joins. kubeha generates the bootstrap token and certificate key
//! itself, computes the CA hash from the CA certificate, and passes secrets to kubeadm
//! only inside 0600 config files that are removed as soon as kubeadm returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;

use super::{steps, ApplyError, Connected, Survey};
use crate::plan;
use crate::remote::{Remote, RemoteError};
use crate::render::{self, KubeadmSecrets};
use crate::spec::{url_host, Host, Role};

/// Re-upload the control-plane certificates well before kubeadm's 2 h expiry.
const CREDENTIALS_MAX_AGE: Duration = Duration::from_secs(90 * 60);
/// How long etcd must stay healthy after a join before the next member may be added.
const ETCD_SETTLE: Duration = Duration::from_secs(6);
/// How long a newly joined control plane may take to become a healthy etcd member.
const ETCD_HEALTHY_WITHIN: Duration = Duration::from_secs(180);

pub struct Kubeadm<'a> {
    c: &'a Connected,
    /// An initialised control plane that joins go through.
    bootstrap: Option<String>,
    ca_hash: Option<String>,
    credentials: Option<(KubeadmSecrets, Instant)>,
    kubeconfig: Option<String>,
}

/// A token `[a-z0-9]{6}.[a-z0-9]{16}` and a 32-byte certificate key, from the OS RNG.
fn generate_secrets() -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let token = format!("{}.{}", pick(6), pick(16));
    let key: [u8; 32] = rng.random();
    (token, hex::encode(key))
}

impl<'a> Kubeadm<'a> {
    pub fn new(c: &'a Connected, survey: &Survey) -> Self {
        let bootstrap = c
            .cluster
            .control_planes()
            .find(|h| plan::joined(h, &survey.facts[&h.name]));
        let ca_hash = bootstrap
            .and_then(|h| survey.facts[&h.name].kubeadm.ca_cert.as_deref())
            .and_then(|pem| crate::pki::ca_cert_hash(pem).ok());
        Self {
            c,
            bootstrap: bootstrap.map(|h| h.name.clone()),
            ca_hash,
            credentials: None,
            kubeconfig: survey.kubeconfig.clone(),
        }
    }

    pub fn bootstrap_remote(&self) -> Result<&Arc<Remote>, ApplyError> {
        let name = self.bootstrap.as_ref().ok_or_else(|| {
            ApplyError::Local("no control plane is initialised; `kubeadm init` did not run".into())
        })?;
        Ok(self.c.remote(name))
    }

    fn bootstrap_host(&self) -> Result<&'a Host, ApplyError> {
        let name = self.bootstrap.as_deref().unwrap_or_default();
        self.c
            .cluster
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ApplyError::Local("no control plane is initialised".into()))
    }

    fn new_secrets(&self) -> KubeadmSecrets {
        let (token, key) = generate_secrets();
        self.c.redactor.add(&token);
        self.c.redactor.add(&key);
        KubeadmSecrets {
            bootstrap_token: token,
            certificate_key: key,
            ca_cert_hash: self.ca_hash.clone().unwrap_or_default(),
        }
    }

    /// Writes a secret config, runs kubeadm with it, and removes it whatever happened.
    async fn with_config(
        &self,
        remote: &Remote,
        path: &str,
        config: &str,
        what: &str,
        command: &str,
    ) -> Result<(), RemoteError> {
        remote.write_file(path, config.as_bytes(), 0o600).await?;
        let result = remote
            .run_for(
                what,
                &format!("{command} --config {path}"),
                self.c.options.kubeadm_timeout,
            )
            .await;
        let cleanup = remote.sh(&format!("rm -f {path}")).await;
        result?;
        cleanup.map(|_| ())
    }

    pub async fn init(&mut self, host: &Host, remote: &Remote) -> Result<(), ApplyError> {
        let p = &self.c.progress;
        p.started(&host.name, "kubeadm init");
        let started = Instant::now();
        let secrets = self.new_secrets();
        let config = render::kubeadm::init_config(&self.c.cluster, host, &secrets);
        self.with_config(
            remote,
            render::KUBEADM_INIT_CONFIG,
            &config,
            "kubeadm init failed",
            "kubeadm init --upload-certs",
        )
        .await
        .inspect_err(|e| p.failed(&host.name, &e.to_string()))?;
        let ca = remote
            .read_file(crate::facts::CA_CERT)
            .await?
            .ok_or_else(|| {
                ApplyError::Local(format!(
                    "{}: kubeadm init left no CA certificate",
                    host.name
                ))
            })?;
        let hash =
            crate::pki::ca_cert_hash(&String::from_utf8_lossy(&ca)).map_err(ApplyError::Local)?;
        self.ca_hash = Some(hash.clone());
        self.bootstrap = Some(host.name.clone());
        // init uploaded the certificates with this key and created this token.
        self.credentials = Some((
            KubeadmSecrets {
                ca_cert_hash: hash,
                ..secrets
            },
            Instant::now(),
        ));
        self.kubeconfig = None;
        p.done(&host.name, "kubeadm init", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// A fresh token and re-uploaded certificates, unless the current ones are recent.
    pub async fn ensure_credentials(&mut self) -> Result<KubeadmSecrets, ApplyError> {
        if let Some((secrets, at)) = &self.credentials {
            if at.elapsed() < CREDENTIALS_MAX_AGE {
                return Ok(secrets.clone());
            }
        }
        let host = self.bootstrap_host()?;
        let remote = self.bootstrap_remote()?.clone();
        let p = &self.c.progress;
        p.started(&host.name, "new join token and certificate key");
        let mut secrets = self.new_secrets();
        secrets.ca_cert_hash = self
            .ca_hash
            .clone()
            .ok_or_else(|| ApplyError::Local(format!("{}: no CA certificate to pin", host.name)))?;
        let config = render::kubeadm::init_config(&self.c.cluster, host, &secrets);
        self.with_config(
            &remote,
            "/etc/kubeha/kubeadm-upload-certs.yaml",
            &config,
            "cannot upload the control-plane certificates",
            "kubeadm init phase upload-certs --upload-certs",
        )
        .await?;
        remote
            .run(
                "cannot create a bootstrap token",
                &format!(
                    "kubeadm token create {} --ttl 2h0m0s --description 'kubeha: joins this cluster'\"'\"'s nodes'",
                    secrets.bootstrap_token
                ),
            )
            .await?;
        p.done(&host.name, "new join token and certificate key", 0.0);
        self.credentials = Some((secrets.clone(), Instant::now()));
        Ok(secrets)
    }

    pub async fn join_control_plane(
        &mut self,
        host: &Host,
        remote: &Remote,
    ) -> Result<(), ApplyError> {
        let secrets = self.ensure_credentials().await?;
        let p = &self.c.progress;
        p.started(&host.name, "kubeadm join (control plane)");
        let started = Instant::now();
        self.remove_stale_etcd_member(host).await?;
        self.join(host, remote, &secrets)
            .await
            .inspect_err(|e| p.failed(&host.name, &e.to_string()))?;
        p.started(&host.name, "waiting for etcd to be healthy");
        self.wait_etcd_healthy(host).await?;
        p.done(
            &host.name,
            "joined as a control plane; etcd healthy",
            started.elapsed().as_secs_f64(),
        );
        Ok(())
    }

    /// Workers join with credentials made before the worker phase (see `execute`).
    pub async fn join_worker(&self, host: &Host, remote: &Remote) -> Result<(), RemoteError> {
        let (secrets, _) = self
            .credentials
            .as_ref()
            .ok_or_else(|| remote.error("cannot join", "no join credentials were prepared"))?;
        debug_assert!(!host.has(Role::ControlPlane));
        self.join(host, remote, secrets).await
    }

    async fn join(
        &self,
        host: &Host,
        remote: &Remote,
        secrets: &KubeadmSecrets,
    ) -> Result<(), RemoteError> {
        let config = render::kubeadm::join_config(&self.c.cluster, host, secrets);
        self.with_config(
            remote,
            render::KUBEADM_JOIN_CONFIG,
            &config,
            "kubeadm join failed",
            "kubeadm join",
        )
        .await
    }

    /// An interrupted control-plane join can leave an etcd member that never started;
    /// joining again would add a second one for the same host. Remove it first.
    async fn remove_stale_etcd_member(&self, host: &Host) -> Result<(), ApplyError> {
        let remote = self.bootstrap_remote()?;
        let out = remote
            .run(
                "cannot list etcd members",
                &steps::etcdctl("member list -w json"),
            )
            .await?;
        let peer = format!("https://{}:2380", url_host(host.node_ip()));
        for id in members_with_peer(&out.stdout, &peer) {
            self.c.progress.info(&format!(
                "{}: removing stale etcd member {id:x} ({peer})",
                host.name
            ));
            remote
                .run(
                    "cannot remove a stale etcd member",
                    &steps::etcdctl(&format!("member remove {id:x}")),
                )
                .await?;
        }
        Ok(())
    }

    /// Waits until the new member is a started voting member and the whole cluster has
    /// been healthy for [`ETCD_SETTLE`]: etcd refuses the next member (`unhealthy
    /// cluster`) until every member has been connected for a few seconds.
    async fn wait_etcd_healthy(&self, host: &Host) -> Result<(), ApplyError> {
        let remote = self.bootstrap_remote()?;
        let deadline = Instant::now() + ETCD_HEALTHY_WITHIN;
        let peer = format!("https://{}:2380", url_host(host.node_ip()));
        let mut healthy_since: Option<Instant> = None;
        loop {
            let members = remote.sh(&steps::etcdctl("member list -w json")).await?;
            let health = remote
                .sh(&steps::etcdctl("endpoint health --cluster"))
                .await?;
            let member = member_state(&members.stdout, &peer);
            let ready = member
                == Some(MemberState {
                    started: true,
                    learner: false,
                });
            if ready && health.success() {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ETCD_SETTLE {
                    return Ok(());
                }
            } else {
                healthy_since = None;
            }
            if Instant::now() >= deadline {
                let why = match member {
                    None => format!("no etcd member has peer URL {peer}"),
                    Some(MemberState { started: false, .. }) => {
                        "its etcd member never started".into()
                    }
                    Some(MemberState { learner: true, .. }) => {
                        "its etcd member is still a learner".into()
                    }
                    Some(_) => format!("etcd is unhealthy: {}", health.stderr.trim()),
                };
                return Err(ApplyError::Local(format!(
                    "{}: joined, but after {}s {why}",
                    host.name,
                    ETCD_HEALTHY_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The admin kubeconfig of the bootstrap control plane (read once).
    pub async fn admin_kubeconfig(&mut self) -> Result<String, ApplyError> {
        if let Some(k) = &self.kubeconfig {
            return Ok(k.clone());
        }
        let remote = self.bootstrap_remote()?;
        let bytes = remote
            .read_file("/etc/kubernetes/admin.conf")
            .await?
            .ok_or_else(|| {
                ApplyError::Local("the initialised control plane has no admin.conf".into())
            })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.kubeconfig = Some(text.clone());
        Ok(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemberState {
    /// An unstarted member has no name yet.
    started: bool,
    learner: bool,
}

/// The state of the member whose peer URLs include `peer`.
fn member_state(json: &str, peer: &str) -> Option<MemberState> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    doc["members"].as_array()?.iter().find_map(|m| {
        let urls = m["peerURLs"].as_array()?;
        urls.iter()
            .any(|u| u.as_str() == Some(peer))
            .then(|| MemberState {
                started: m["name"].as_str().is_some_and(|n| !n.is_empty()),
                learner: m["isLearner"].as_bool().unwrap_or(false),
            })
    })
}

/// IDs of etcd members (from `member list -w json`) whose peer URLs include `peer`.
fn members_with_peer(json: &str, peer: &str) -> Vec<u64> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    doc["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["peerURLs"]
                .as_array()
                .is_some_and(|urls| urls.iter().any(|u| u.as_str() == Some(peer)))
        })
        .filter_map(|m| m["ID"].as_u64())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_kubeadms_formats() {
        let (token, key) = generate_secrets();
        let (id, secret) = token.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(token
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(key.len(), 64);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(generate_secrets().0, token, "each run draws new secrets");
    }

    #[test]
    fn finds_members_by_peer_url() {
        let json = r#"{"header":{},"members":[
            {"ID":1234,"name":"cp-1","peerURLs":["https://10.0.0.11:2380"]},
            {"ID":5678,"peerURLs":["https://10.0.0.12:2380"],"isLearner":true}]}"#;
        assert_eq!(
            members_with_peer(json, "https://10.0.0.12:2380"),
            vec![5678]
        );
        assert!(members_with_peer(json, "https://10.0.0.13:2380").is_empty());
        assert!(members_with_peer("garbage", "x").is_empty());
        assert_eq!(
            member_state(json, "https://10.0.0.12:2380"),
            Some(MemberState {
                started: false,
                learner: true
            })
        );
        assert_eq!(
            member_state(json, "https://10.0.0.11:2380"),
            Some(MemberState {
                started: true,
                learner: false
            })
        );
    }
}
