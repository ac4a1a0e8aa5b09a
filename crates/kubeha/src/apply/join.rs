//! kubeadm init and joins. kubeha generates the bootstrap token and certificate key
//! itself, computes the CA hash from the CA certificate, and passes secrets to kubeadm
//! only inside 0600 config files that are removed as soon as kubeadm returns (and, if a
//! run was killed, by the next run). Tokens for later joins are made through the API,
//! never on a host's command line; every token a run made is revoked when it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;

use super::{steps, ApplyError, Connected, Survey};
use crate::api;
use crate::facts::cluster::{parse_etcd, raft_indexes, EtcdMember, EtcdView};
use crate::plan::Action;
use crate::remote::{Remote, RemoteError};
use crate::render::{self, KubeadmSecrets, UPLOAD_CERTS_CONFIG};
use crate::spec::{url_host, Host, Role};
use crate::wait::{self, Check};

/// Make a new token or re-upload the certificates well before kubeadm's 2 h expiry.
const CREDENTIALS_MAX_AGE: Duration = Duration::from_secs(90 * 60);
/// How long a token made for joins lives if the run is killed before revoking it.
const TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);
/// How long the API may take to answer through the load balancer right after init.
const API_WITHIN: Duration = Duration::from_secs(60);

pub struct Kubeadm<'a> {
    c: &'a Connected,
    /// An initialised control plane that joins go through.
    bootstrap: Option<String>,
    ca_hash: Option<String>,
    /// The bootstrap token this run made, and when.
    token: Option<(String, Instant)>,
    /// The key this run uploaded the control-plane certificates with, and when.
    certificate_key: Option<(String, Instant)>,
    kubeconfig: Option<String>,
}

const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A token `[a-z0-9]{6}.[a-z0-9]{16}` from the OS RNG.
fn generate_token() -> String {
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char)
            .collect()
    };
    format!("{}.{}", pick(6), pick(16))
}

/// A 32-byte certificate key, hex, from the OS RNG.
fn generate_certificate_key() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

fn fresh(secret: &Option<(String, Instant)>) -> Option<String> {
    secret
        .as_ref()
        .filter(|(_, at)| at.elapsed() < CREDENTIALS_MAX_AGE)
        .map(|(s, _)| s.clone())
}

impl<'a> Kubeadm<'a> {
    /// `bootstrap` is the plan's: the control plane joins and API steps go through.
    pub fn new(c: &'a Connected, survey: &Survey, bootstrap: Option<&str>) -> Self {
        // Before init (when the plan's bootstrap is the init host) there is no CA yet.
        let ca_hash = bootstrap
            .and_then(|h| survey.facts.get(h)?.kubeadm.ca_cert.as_deref())
            .and_then(|pem| crate::pki::ca_cert_hash(pem).ok());
        Self {
            c,
            bootstrap: bootstrap.map(String::from),
            ca_hash,
            token: None,
            certificate_key: None,
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

    /// A secret drawn for this run, known to the redactor before it is used anywhere.
    fn draw(&self, generate: fn() -> String) -> String {
        let secret = generate();
        self.c.redactor.add(&secret);
        secret
    }

    fn secrets(
        &self,
        token: String,
        certificate_key: String,
    ) -> Result<KubeadmSecrets, ApplyError> {
        Ok(KubeadmSecrets {
            bootstrap_token: token,
            certificate_key,
            ca_cert_hash: self
                .ca_hash
                .clone()
                .ok_or_else(|| ApplyError::Local("no CA certificate to pin".into()))?,
        })
    }

    /// Writes a secret config, runs kubeadm's `command` (which reads it), and removes
    /// it whatever happened.
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
            .run_for(what, command, self.c.options.kubeadm_timeout)
            .await;
        let cleanup = remote.sh(&steps::remove(path)).await;
        result?;
        cleanup.map(|_| ())
    }

    pub async fn init(&mut self, host: &Host, remote: &Remote) -> Result<(), ApplyError> {
        let secrets = KubeadmSecrets {
            bootstrap_token: self.draw(generate_token),
            certificate_key: self.draw(generate_certificate_key),
            // Not known before init makes the CA; an init config has no use for it.
            ca_cert_hash: String::new(),
        };
        let config = render::kubeadm::init_config(&self.c.cluster, host, &secrets);
        let (path, command) = steps::kubeadm(&Action::KubeadmInit).expect("init runs kubeadm");
        self.with_config(remote, path, &config, "kubeadm init failed", &command)
            .await?;
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
        self.ca_hash = Some(hash);
        self.bootstrap = Some(host.name.clone());
        // init uploaded the certificates with this key and created this token.
        self.token = Some((secrets.bootstrap_token, Instant::now()));
        self.certificate_key = Some((secrets.certificate_key, Instant::now()));
        self.kubeconfig = None;
        Ok(())
    }

    async fn client(&mut self) -> Result<kube::Client, ApplyError> {
        let kubeconfig = self.admin_kubeconfig().await?;
        Ok(api::client(&kubeconfig).await?)
    }

    /// A bootstrap token for joins: this run's, or a new one made through the API.
    async fn token(&mut self) -> Result<String, ApplyError> {
        if let Some(token) = fresh(&self.token) {
            return Ok(token);
        }
        let host = self.bootstrap_host()?;
        let p = self.c.progress.clone();
        p.info(&format!("{}: new bootstrap token", host.name));
        let token = self.draw(generate_token);
        let client = self.client().await?;
        // Right after init the load balancer may not route to the API yet.
        let created = || async {
            Ok(
                match api::create_bootstrap_token(&client, &token, TOKEN_TTL).await {
                    Ok(()) => Check::Done(()),
                    Err(e) => Check::NotYet(e.to_string()),
                },
            )
        };
        wait::until(API_WITHIN, Duration::from_secs(2), created, |why| {
            ApplyError::Local(format!(
                "{}: no bootstrap token could be made through the API within {}s: {why}",
                host.name,
                API_WITHIN.as_secs()
            ))
        })
        .await?;
        self.token = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// The key the control-plane certificates are uploaded with: this run's, or a new
    /// upload. Only control-plane joins need it, so a worker-only run never uploads.
    async fn certificate_key(&mut self) -> Result<String, ApplyError> {
        if let Some(key) = fresh(&self.certificate_key) {
            return Ok(key);
        }
        // The upload reads an InitConfiguration, whose token must be well-formed.
        let token = self.token().await?;
        let host = self.bootstrap_host()?;
        let remote = self.bootstrap_remote()?.clone();
        let p = &self.c.progress;
        p.info(&format!(
            "{}: uploading the control-plane certificates",
            host.name
        ));
        let key = self.draw(generate_certificate_key);
        let secrets = self.secrets(token, key.clone())?;
        let config = render::kubeadm::init_config(&self.c.cluster, host, &secrets);
        self.with_config(
            &remote,
            UPLOAD_CERTS_CONFIG,
            &config,
            "cannot upload the control-plane certificates",
            &steps::with_config(
                "kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print",
                UPLOAD_CERTS_CONFIG,
            ),
        )
        .await?;
        self.certificate_key = Some((key.clone(), Instant::now()));
        Ok(key)
    }

    /// The plan's `MintJoinCredentials`: a token, and the certificates for control planes.
    /// Joins use these, and make new ones only if a long run outlives
    /// [`CREDENTIALS_MAX_AGE`].
    pub async fn mint(&mut self, upload_certificates: bool) -> Result<(), ApplyError> {
        self.token().await?;
        if upload_certificates {
            self.certificate_key().await?;
        }
        Ok(())
    }

    /// Deletes every token kubeha made (this run's and any a killed run left) and the
    /// uploaded certificates. Nothing to do before a control plane is initialised.
    pub async fn revoke(&mut self) -> Result<(), ApplyError> {
        if self.bootstrap.is_none() {
            return Ok(());
        }
        let client = self.client().await?;
        let removed = api::with_retries(|| api::revoke_join_credentials(&client)).await?;
        if removed > 0 {
            self.c
                .progress
                .info(&format!("revoked {removed} join credential(s)"));
        }
        self.token = None;
        self.certificate_key = None;
        Ok(())
    }

    pub async fn join_control_plane(
        &mut self,
        host: &Host,
        remote: &Remote,
    ) -> Result<(), ApplyError> {
        let key = self.certificate_key().await?;
        let token = self.token().await?;
        let secrets = self.secrets(token, key)?;
        let p = &self.c.progress;
        p.info(&format!("{}: kubeadm join (control plane)", host.name));
        self.join(host, remote, &secrets).await?;
        p.info(&format!("{}: waiting for etcd to be healthy", host.name));
        self.wait_etcd_healthy(host).await
    }

    /// Workers join with the token made before the worker phase (see `execute`).
    pub async fn join_worker(&self, host: &Host, remote: &Remote) -> Result<(), RemoteError> {
        let no_token = || remote.error("cannot join", "no bootstrap token was prepared");
        let (token, _) = self.token.clone().ok_or_else(no_token)?;
        debug_assert!(!host.has(Role::ControlPlane));
        // A worker's join config carries no certificate key.
        let secrets = self
            .secrets(token, String::new())
            .map_err(|e| remote.error("cannot join", &e.to_string()))?;
        self.join(host, remote, &secrets).await
    }

    async fn join(
        &self,
        host: &Host,
        remote: &Remote,
        secrets: &KubeadmSecrets,
    ) -> Result<(), RemoteError> {
        let config = render::kubeadm::join_config(&self.c.cluster, host, secrets);
        let join = Action::KubeadmJoin {
            control_plane: host.has(Role::ControlPlane),
        };
        let (path, command) = steps::kubeadm(&join).expect("a join runs kubeadm");
        self.with_config(remote, path, &config, "kubeadm join failed", &command)
            .await
    }

    /// The plan's `RemoveEtcdMember`, through the healthy control plane it names. A
    /// member already gone (the host's `kubeadm reset` removed it) is the outcome asked for.
    pub async fn remove_etcd_member(&self, through: &str, id: &str) -> Result<(), ApplyError> {
        super::remove_etcd_member(self.c.remote(through), id).await
    }

    /// Waits on etcd's own conditions: the new member started and voting (not a
    /// learner), every member's endpoint healthy, and the new member's raft index caught
    /// up with the leader's. No settle time after that: etcd refuses the next member add
    /// (`unhealthy cluster`) until the leader has been connected to every member for a few
    /// seconds, and kubeadm's join retries that add until etcd accepts it.
    async fn wait_etcd_healthy(&self, host: &Host) -> Result<(), ApplyError> {
        let remote = self.bootstrap_remote()?;
        let peer = format!("https://{}:2380", url_host(host.node_ip()));
        let script = steps::etcd_gate_poll();
        let leader_before = std::cell::Cell::new(None);
        let gate = || async {
            let out = remote.sh(&script).await?;
            let view = EtcdGate::parse(&out.stdout, &peer);
            if view.ready(leader_before.get()) {
                return Ok(Check::Done(()));
            }
            leader_before.set(view.leader_index.or(leader_before.get()));
            Ok(Check::NotYet(view.why_not()))
        };
        wait::until(steps::ETCD_HEALTHY_WITHIN, steps::ETCD_POLL, gate, |why| {
            ApplyError::Local(format!(
                "{}: joined, but after {}s {why}",
                host.name,
                steps::ETCD_HEALTHY_WITHIN.as_secs()
            ))
        })
        .await
    }

    /// The plan's `DeleteNode`. It is planned only for a cluster whose API the survey
    /// reached, so the survey's admin kubeconfig is there; a host phase may run it, on
    /// several hosts at once, so it takes no `&mut self`.
    pub async fn delete_node(&self, node: &str) -> Result<(), ApplyError> {
        let kubeconfig = self
            .kubeconfig
            .as_deref()
            .ok_or_else(|| ApplyError::Local("no admin kubeconfig to reach the API with".into()))?;
        let client = api::client(kubeconfig).await?;
        api::with_retries(|| api::delete_node(&client, node)).await?;
        Ok(())
    }

    /// The admin kubeconfig of the bootstrap control plane (read once, trimmed).
    pub async fn admin_kubeconfig(&mut self) -> Result<String, ApplyError> {
        if let Some(k) = &self.kubeconfig {
            return Ok(k.clone());
        }
        let remote = self.bootstrap_remote()?;
        let text = super::read_admin_kubeconfig(&self.c.cluster, remote)
            .await?
            .ok_or_else(|| {
                ApplyError::Local("the initialised control plane has no admin.conf".into())
            })?;
        self.kubeconfig = Some(text.clone());
        Ok(text)
    }
}

/// What one poll of the join gate learned from etcd's answers to
/// [`steps::ETCD_GATE_QUESTIONS`] (each a line of base64 JSON), read by the facts'
/// parsers.
#[derive(Debug, Default, PartialEq, Eq)]
struct EtcdGate {
    peer: String,
    /// `None`: etcd did not answer.
    view: Option<EtcdView>,
    /// The new member's raft index and the leader's, from the same status call.
    member_index: Option<u64>,
    leader_index: Option<u64>,
}

impl EtcdGate {
    fn parse(output: &str, peer: &str) -> Self {
        use base64::Engine;
        let mut docs = output.lines().map(|l| {
            base64::engine::general_purpose::STANDARD
                .decode(l.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default()
        });
        let (members, status, health) = (
            docs.next().unwrap_or_default(),
            docs.next().unwrap_or_default(),
            docs.next().unwrap_or_default(),
        );
        let view = parse_etcd(&members, &health, &status);
        let indexes = raft_indexes(&status);
        let index_of = |m: Option<&EtcdMember>| m.and_then(|m| indexes.get(&m.id).copied());
        let (member_index, leader_index) = match &view {
            Some(v) => (
                index_of(v.with_peer(peer).next()),
                index_of(v.members.iter().find(|m| m.leader)),
            ),
            None => (None, None),
        };
        Self {
            peer: peer.to_string(),
            view,
            member_index,
            leader_index,
        }
    }

    fn member(&self) -> Option<&EtcdMember> {
        self.view.as_ref()?.with_peer(&self.peer).next()
    }

    /// Members whose client URL did not answer a health check healthy.
    fn unhealthy(&self) -> Vec<String> {
        self.view
            .iter()
            .flat_map(|v| &v.members)
            .filter(|m| !m.healthy)
            .map(|m| {
                if m.started() {
                    m.name.clone()
                } else {
                    m.id.clone()
                }
            })
            .collect()
    }

    /// Started, voting, every member healthy, and the member's raft index at least the
    /// leader's (in this poll, or as the leader had it one poll before: the log moves on).
    fn ready(&self, leader_before: Option<u64>) -> bool {
        let voting = self.member().is_some_and(|m| m.started() && !m.learner);
        let caught_up = match (self.member_index, self.leader_index) {
            (Some(m), Some(l)) => m >= l || leader_before.is_some_and(|b| m >= b),
            _ => false,
        };
        voting && self.unhealthy().is_empty() && caught_up
    }

    fn why_not(&self) -> String {
        let unhealthy = self.unhealthy();
        match self.member() {
            _ if self.view.is_none() => "etcd did not answer".into(),
            None => format!("no etcd member has peer URL {}", self.peer),
            Some(m) if !m.started() => "its etcd member never started".into(),
            Some(m) if m.learner => "its etcd member is still a learner".into(),
            Some(_) if !unhealthy.is_empty() => {
                format!("etcd members not healthy: {}", unhealthy.join(", "))
            }
            Some(_) => format!(
                "its raft index ({:?}) has not caught up with the leader's ({:?})",
                self.member_index, self.leader_index
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_kubeadms_formats() {
        let (token, key) = (generate_token(), generate_certificate_key());
        let (id, secret) = token.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(token
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(key.len(), 64);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(generate_token(), token, "each run draws new secrets");
        assert_ne!(generate_certificate_key(), key);
    }

    /// One poll's output, as the gate's script prints it: three lines of base64 JSON.
    fn poll(members: &str, status: &str, health: &str) -> String {
        use base64::Engine;
        [members, status, health]
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
            .join("\n")
    }

    const PEER: &str = "https://10.0.0.12:2380";
    const MEMBERS: &str = r#"{"header":{"cluster_id":7,"member_id":1},"members":[{"ID":1,"name":"cp-1","peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]},{"ID":2,"name":"cp-2","peerURLs":["https://10.0.0.12:2380"],"clientURLs":["https://10.0.0.12:2379"]}]}"#;
    const HEALTHY: &str = r#"[{"endpoint":"https://10.0.0.11:2379","health":true,"took":"2ms"},{"endpoint":"https://10.0.0.12:2379","health":true,"took":"3ms"}]"#;

    fn status(leader_index: u64, member_index: u64) -> String {
        format!(
            r#"[{{"Endpoint":"https://10.0.0.11:2379","Status":{{"header":{{"cluster_id":7,"member_id":1,"revision":5,"raft_term":2}},"version":"3.5.15","dbSize":20480,"leader":1,"raftIndex":{leader_index},"raftTerm":2}}}},{{"Endpoint":"https://10.0.0.12:2379","Status":{{"header":{{"cluster_id":7,"member_id":2,"revision":5,"raft_term":2}},"version":"3.5.15","dbSize":20480,"leader":1,"raftIndex":{member_index},"raftTerm":2}}}}]"#
        )
    }

    /// A state the gate tells apart: etcd's three answers, the leader's index a poll
    /// before, and whether the new member is ready.
    struct Case {
        name: &'static str,
        members: String,
        status: String,
        health: String,
        before: Option<u64>,
        ready: bool,
    }

    fn cases() -> Vec<Case> {
        let learner = MEMBERS.replace(r#""name":"cp-2","#, r#""name":"cp-2","isLearner":true,"#);
        let unstarted = MEMBERS.replace(r#""name":"cp-2","#, "");
        let sick = HEALTHY.replacen(
            r#""health":true,"took":"2ms"}"#,
            r#""health":false,"took":"5s","error":"context deadline exceeded"}"#,
            1,
        );
        let case = |name, members: &str, status: String, health: &str, before, ready| Case {
            name,
            members: members.into(),
            status,
            health: health.into(),
            before,
            ready,
        };
        vec![
            case("caught up", MEMBERS, status(900, 900), HEALTHY, None, true),
            case("behind", MEMBERS, status(950, 900), HEALTHY, None, false),
            case(
                "behind, past the leader's last",
                MEMBERS,
                status(950, 900),
                HEALTHY,
                Some(880),
                true,
            ),
            case(
                "behind the leader's last too",
                MEMBERS,
                status(950, 900),
                HEALTHY,
                Some(920),
                false,
            ),
            case(
                "a learner",
                &learner,
                status(900, 900),
                HEALTHY,
                None,
                false,
            ),
            case(
                "never started",
                &unstarted,
                status(900, 900),
                HEALTHY,
                None,
                false,
            ),
            case(
                "an unhealthy member",
                MEMBERS,
                status(900, 900),
                &sick,
                None,
                false,
            ),
            case("no status", MEMBERS, String::new(), HEALTHY, None, false),
            case("no answer", "", String::new(), "", Some(1), false),
        ]
    }

    #[test]
    fn the_join_gate_waits_on_etcds_own_conditions() {
        for c in cases() {
            let gate = EtcdGate::parse(&poll(&c.members, &c.status, &c.health), PEER);
            assert_eq!(
                gate.ready(c.before),
                c.ready,
                "{}: {}",
                c.name,
                gate.why_not()
            );
        }
        let caught_up = EtcdGate::parse(&poll(MEMBERS, &status(900, 900), HEALTHY), PEER);
        assert_eq!(
            (caught_up.member_index, caught_up.leader_index),
            (Some(900), Some(900))
        );
        let why = |members: &str, health: &str| {
            EtcdGate::parse(&poll(members, &status(950, 900), health), PEER).why_not()
        };
        assert!(why(MEMBERS, HEALTHY).contains("raft index (Some(900))"));
        let all = cases();
        let (learner, unstarted, sick) = (&all[4].members, &all[5].members, &all[6].health);
        assert!(why(learner, HEALTHY).contains("learner"));
        assert!(why(unstarted, HEALTHY).contains("never started"));
        assert_eq!(why(MEMBERS, sick), "etcd members not healthy: cp-1");
        assert_eq!(why("", ""), "etcd did not answer");
        assert_eq!(
            why(
                &MEMBERS.replace("10.0.0.12:2380", "10.0.0.99:2380"),
                HEALTHY
            ),
            "no etcd member has peer URL https://10.0.0.12:2380"
        );
    }

    /// The runbook's gate (sh, on etcdctl's one-line JSON) decides each state as apply's
    /// does: the same answers, read by a fake etcdctl, through two polls (the first
    /// without the leader's earlier index, the second with the first's).
    #[test]
    fn the_runbooks_gate_decides_as_applys() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("etcdctl");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$*\" in\n\
             *'member list'*) f=members ;;\n\
             *'endpoint status'*) n=$(cat \"$DIR/polls\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$DIR/polls\"; f=status.$n ;;\n\
             *'endpoint health'*) f=health ;;\n\
             esac\ncat \"$DIR/$f\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        for Case {
            name,
            members,
            status: now,
            health,
            before,
            ..
        } in cases()
        {
            for f in ["polls", "status.1", "status.2"] {
                let _ = std::fs::remove_file(dir.path().join(f));
            }
            // A first poll whose leader index is `before` (when there is one), then this one.
            let first = before.map_or_else(|| now.clone(), |b| status(b, 0));
            std::fs::write(dir.path().join("members"), &members).unwrap();
            std::fs::write(dir.path().join("health"), &health).unwrap();
            std::fs::write(dir.path().join("status.1"), &first).unwrap();
            std::fs::write(dir.path().join("status.2"), &now).unwrap();
            // Two polls at most: the deadline passes during the first poll's sleep.
            let script = steps::etcd_gate_sh(PEER, "cp-2", Duration::from_secs(1));
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .env("DIR", dir.path())
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        dir.path().display(),
                        std::env::var("PATH").unwrap()
                    ),
                )
                .output()
                .unwrap();
            let polls: u32 = std::fs::read_to_string(dir.path().join("polls"))
                .map(|n| n.trim().parse().unwrap())
                .unwrap_or(0);
            // What apply decides over the same polls.
            let one = EtcdGate::parse(&poll(&members, &first, &health), PEER);
            let two = EtcdGate::parse(&poll(&members, &now, &health), PEER);
            let apply = one.ready(None) || two.ready(one.leader_index);
            assert_eq!(
                out.status.success(),
                apply,
                "{name}: after {polls} poll(s): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !apply {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.starts_with("cp-2: joined, but after 1s "),
                    "{name}: {err}"
                );
            }
        }
    }
}
