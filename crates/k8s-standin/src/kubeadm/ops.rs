//! kubeadm's day-two commands: reset, token, upload-certs, certs
//! check-expiration, version and upgrade.

use super::cli::Parsed;
use super::objects::{self as kobj, secret_field, KUBE_SYSTEM};
use super::{fail, init, join, manifests, Env, Failure, ADMIN_CONF, MANIFESTS_DIR};
use crate::apiserver::objects::parse_rfc3339;
use crate::client::Client;
use crate::config::{self, duration, validate};
use crate::pki;
use serde_json::Value;
use std::time::Duration;

fn admin(p: &Parsed, env: &Env) -> Result<Client, Failure> {
    let path = p.get("kubeconfig").unwrap_or(ADMIN_CONF);
    let text = env.read(path).ok_or_else(|| {
        format!("failed to load admin kubeconfig: open {path}: no such file or directory")
    })?;
    Client::from_kubeconfig(&text).map_err(Failure::from)
}

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

pub async fn token_create(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let c = admin(p, env)?;
    let token = match p.args.first() {
        Some(t) if !validate::is_valid_token(t) => {
            return Err(Failure::from(validate::token_format_error(t)))
        }
        Some(t) => t.clone(),
        None => pki::random_token(),
    };
    let groups = p.list("groups");
    let t = config::BootstrapToken {
        token: token.clone(),
        description: p.get("description").map(String::from),
        ttl: Some(p.get("ttl").unwrap_or("24h0m0s").to_string()),
        usages: Some(if p.get("usages").is_some() {
            p.list("usages")
        } else {
            vec!["signing".into(), "authentication".into()]
        }),
        groups: Some(if groups.is_empty() {
            vec![config::DEFAULT_TOKEN_GROUP.into()]
        } else {
            groups
        }),
        ..Default::default()
    };
    duration::parse(t.ttl.as_deref().unwrap_or("")).map_err(|e| {
        format!(
            "invalid argument \"{}\" for \"--ttl\" flag: {e}",
            t.ttl.clone().unwrap_or_default()
        )
    })?;
    let s = kobj::bootstrap_token_secret(&t, time::OffsetDateTime::now_utc())?;
    let name = s["metadata"]["name"].as_str().unwrap_or("").to_string();
    let r = c.create_or_update(SECRETS, &name, &s).await;
    if !r.ok() {
        return Err(Failure::from(format!(
            "failed to create or update bootstrap token with name {name}: {}",
            r.message()
        )));
    }
    if p.on("print-join-command") {
        let cm = c
            .get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
            .await;
        let kc = cm.body["data"]["kubeconfig"].as_str().unwrap_or("");
        let parsed =
            pki::kubeconfig::parse(kc).map_err(|e| format!("failed to load cluster-info: {e}"))?;
        let hash = pki::ca_cert_hash(&parsed.ca_pem).map_err(|e| e.to_string())?;
        let ep = parsed.server.trim_start_matches("https://");
        let cp = p
            .get("certificate-key")
            .map(|k| format!("--control-plane --certificate-key {k} "))
            .unwrap_or_default();
        println!("kubeadm join {ep} --token {token} --discovery-token-ca-cert-hash {hash} {cp}");
    } else {
        println!("{token}");
    }
    Ok(())
}

pub async fn token_list(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let c = admin(p, env)?;
    let a = c.get(SECRETS).await;
    if !a.ok() {
        return Err(Failure::from(format!(
            "failed to list bootstrap tokens: {}",
            a.message()
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    println!(
        "{:<24}  {:<10}  {:<21}  {:<23}  {:<58}  EXTRA GROUPS",
        "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
    );
    for s in a.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
    {
        let (Some(id), Some(sec)) = (secret_field(s, "token-id"), secret_field(s, "token-secret"))
        else {
            continue;
        };
        let exp = secret_field(s, "expiration");
        let ttl = match exp.as_deref().and_then(parse_rfc3339) {
            Some(t) if t <= now => continue,
            Some(t) => human_ttl((t - now).whole_seconds()),
            None => "<forever>".into(),
        };
        let usages: Vec<String> = ["signing", "authentication"]
            .iter()
            .filter(|u| secret_field(s, &format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
            .map(|u| u.to_string())
            .collect();
        let usages = if usages.is_empty() {
            "<none>".into()
        } else {
            usages.join(",")
        };
        println!(
            "{:<24}  {:<10}  {:<21}  {:<23}  {:<58}  {}",
            format!("{id}.{sec}"),
            ttl,
            exp.unwrap_or_else(|| "<never>".into()),
            usages,
            secret_field(s, "description").unwrap_or_else(|| "<none>".into()),
            secret_field(s, "auth-extra-groups").unwrap_or_default()
        );
    }
    Ok(())
}

/// kubectl-style short duration: "23h", "59m".
fn human_ttl(secs: i64) -> String {
    if secs >= 3600 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

pub async fn token_delete(p: &Parsed, env: &Env) -> Result<(), Failure> {
    if p.args.is_empty() {
        return Err(Failure::from("missing subcommand; 'token delete' is missing token of form \"(?i)^([a-z0-9]{6})$\" or \"(?i)^([a-z0-9]{6})\\.([a-z0-9]{16})$\"".to_string()));
    }
    let c = admin(p, env)?;
    for t in &p.args {
        let id = t.split('.').next().unwrap_or("");
        if id.len() != 6
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(Failure::from("given token didn't match pattern \"^([a-z0-9]{6})$\" or \"^([a-z0-9]{6})\\.([a-z0-9]{16})$\"".to_string()));
        }
        let r = c.delete(&format!("{SECRETS}/bootstrap-token-{id}")).await;
        if !r.ok() {
            return Err(Failure::from(format!(
                "failed to delete bootstrap token \"{id}\": {}",
                r.message()
            )));
        }
        println!("bootstrap token \"{id}\" deleted");
    }
    Ok(())
}

pub async fn upload_certs(p: &Parsed, env: &Env) -> Result<(), Failure> {
    if !p.on("upload-certs") {
        println!("[upload-certs] Skipping phase. Please see --upload-certs");
        return Ok(());
    }
    let mut key = p.get("certificate-key").map(String::from);
    let mut dir = "/etc/kubernetes/pki".to_string();
    if p.get("config").is_some() {
        let cfg = init::load(p, env)?;
        key = cfg
            .init
            .certificate_key
            .clone()
            .filter(|k| !k.is_empty())
            .or(key);
        dir = cfg.cluster.certificates_dir.clone().unwrap_or(dir);
    }
    if let Some(k) = &key {
        if let Some(m) = validate::certificate_key_error(k) {
            return fail(
                "upload-certs",
                format!("certificateKey: Invalid value: \"{k}\": {m}"),
            );
        }
    }
    let key = key.unwrap_or_else(pki::random_certificate_key);
    let c = admin(p, env)?;
    init::upload_certs(&c, env, &dir, &key).await?;
    if !p.on("skip-certificate-key-print") {
        println!("[upload-certs] Using certificate key:\n{key}");
    }
    Ok(())
}

/// kubeadm's renewable certificates, in its order: (name, file under the
/// certificates dir or /etc/kubernetes for kubeconfigs, CA, LongName).
const RENEWABLE: &[(&str, &str, &str, &str)] = &[
    (
        "admin.conf",
        "admin.conf",
        "ca",
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
    ),
    (
        "apiserver",
        "apiserver",
        "ca",
        "certificate for serving the Kubernetes API",
    ),
    (
        "apiserver-etcd-client",
        "apiserver-etcd-client",
        "etcd/ca",
        "certificate the apiserver uses to access etcd",
    ),
    (
        "apiserver-kubelet-client",
        "apiserver-kubelet-client",
        "ca",
        "certificate for the API server to connect to kubelet",
    ),
    (
        "controller-manager.conf",
        "controller-manager.conf",
        "ca",
        "certificate embedded in the kubeconfig file for the controller manager to use",
    ),
    (
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd/ca",
        "certificate for liveness probes to healthcheck etcd",
    ),
    (
        "etcd-peer",
        "etcd/peer",
        "etcd/ca",
        "certificate for etcd nodes to communicate with each other",
    ),
    (
        "etcd-server",
        "etcd/server",
        "etcd/ca",
        "certificate for serving etcd",
    ),
    (
        "front-proxy-client",
        "front-proxy-client",
        "front-proxy-ca",
        "certificate for the front proxy client",
    ),
    (
        "scheduler.conf",
        "scheduler.conf",
        "ca",
        "certificate embedded in the kubeconfig file for the scheduler manager to use",
    ),
    (
        "super-admin.conf",
        "super-admin.conf",
        "ca",
        "certificate embedded in the kubeconfig file for the super-admin",
    ),
];

fn renewable(
    name: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    RENEWABLE.iter().find(|r| r.0 == name)
}

/// The current certificate of a renewable entry (from its kubeconfig for *.conf).
fn current_cert(env: &Env, dir: &str, name: &str) -> Option<String> {
    let (_, file, _, _) = renewable(name)?;
    if file.ends_with(".conf") {
        env.read(&format!("/etc/kubernetes/{file}"))
            .and_then(|t| pki::kubeconfig::parse(&t).ok())
            .and_then(|k| k.client)
            .map(|c| c.cert_pem)
    } else {
        env.read(&format!("{dir}/{file}.crt"))
    }
}

/// A kubeconfig's text with its client certificate and key replaced.
fn with_client_cert(kubeconfig: &str, new: &pki::CertKey) -> String {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    kubeconfig
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            match l.trim_start().split_once(':') {
                Some(("client-certificate-data", _)) => format!(
                    "{indent}client-certificate-data: {}",
                    B64.encode(&new.cert_pem)
                ),
                Some(("client-key-data", _)) => {
                    format!("{indent}client-key-data: {}", B64.encode(&new.key_pem))
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Renews one certificate with its local CA; false when the CA key is absent (external CA).
fn renew_one(
    env: &Env,
    dir: &str,
    name: &str,
    validity: std::time::Duration,
) -> Result<bool, Failure> {
    let (_, file, ca, _) =
        renewable(name).ok_or_else(|| Failure::from(format!("unknown certificate {name}")))?;
    let cert = current_cert(env, dir, name).ok_or_else(|| {
        Failure::from(format!("failed to load existing certificate {name}: open {dir}/{file}.crt: no such file or directory"))
    })?;
    let (Some(ca_cert), Some(ca_key)) = (
        env.read(&format!("{dir}/{ca}.crt")),
        env.read(&format!("{dir}/{ca}.key")),
    ) else {
        return Ok(false);
    };
    let new = pki::renew(
        &pki::CertKey {
            cert_pem: ca_cert,
            key_pem: ca_key,
        },
        &cert,
        validity,
    )
    .map_err(|e| Failure::from(e.to_string()))?;
    if file.ends_with(".conf") {
        let path = format!("/etc/kubernetes/{file}");
        let text = env.read(&path).unwrap_or_default();
        env.write(&path, with_client_cert(&text, &new).as_bytes(), 0o600)?;
    } else {
        env.write(&format!("{dir}/{file}.crt"), new.cert_pem.as_bytes(), 0o644)?;
        env.write(&format!("{dir}/{file}.key"), new.key_pem.as_bytes(), 0o600)?;
    }
    Ok(true)
}

/// `kubeadm certs renew <name>|all` (validity: kubeadm's default of one year).
pub fn certs_renew(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let dir = p.get("cert-dir").unwrap_or("/etc/kubernetes/pki");
    let validity = std::time::Duration::from_secs(8760 * 3600);
    let Some(which) = p.args.first() else {
        return Err(Failure::from(
            "missing subcommand; \"renew\" is not meant to be run on its own".to_string(),
        ));
    };
    if which != "all" && renewable(which).is_none() {
        return Err(Failure::from(format!(
            "unknown command \"{which}\" for \"kubeadm certs renew\""
        )));
    }
    println!("[renew] Reading configuration from the cluster...");
    println!("[renew] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'\n");
    let names: Vec<&str> = if which == "all" {
        RENEWABLE
            .iter()
            .map(|r| r.0)
            .filter(|n| current_cert(env, dir, n).is_some())
            .collect()
    } else {
        vec![which.as_str()]
    };
    for name in names {
        let (_, _, ca, long) = renewable(name).expect("known");
        if renew_one(env, dir, name, validity)? {
            println!("{long} renewed");
        } else {
            println!("Detected external {ca}, {long} can't be renewed");
        }
    }
    if which == "all" {
        println!("\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates.");
    }
    Ok(())
}

pub fn check_expiration(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let dir = p.get("cert-dir").unwrap_or("/etc/kubernetes/pki");
    let now = time::OffsetDateTime::now_utc();
    let residual = |t: time::OffsetDateTime| {
        let s = (t - now).whole_seconds();
        if s <= 0 {
            "<invalid>".to_string()
        } else if s >= 365 * 86400 {
            format!("{}y", s / (365 * 86400))
        } else if s >= 86400 {
            format!("{}d", s / 86400)
        } else {
            format!("{}h", s / 3600)
        }
    };
    let fmt = |t: time::OffsetDateTime| {
        let m = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][u8::from(t.month()) as usize - 1];
        format!(
            "{m} {:02}, {} {:02}:{:02} UTC",
            t.day(),
            t.year(),
            t.hour(),
            t.minute()
        )
    };
    let expiry = |pem: Option<String>| pem.and_then(|p| pki::not_after(&p).ok());
    println!("[check-expiration] Reading configuration from the cluster...");
    println!("[check-expiration] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'\n");
    println!(
        "{:<25}{:<25}{:<17}{:<25}EXTERNALLY MANAGED",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"
    );
    for (name, _, ca, _) in RENEWABLE {
        if let Some(t) = expiry(current_cert(env, dir, name)) {
            let ca = ca.replace('/', "-");
            println!("{:<25}{:<25}{:<17}{:<25}no", name, fmt(t), residual(t), ca);
        }
    }
    println!(
        "\n{:<25}{:<25}{:<17}EXTERNALLY MANAGED",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME"
    );
    for (name, f) in [
        ("ca", "ca.crt"),
        ("etcd-ca", "etcd/ca.crt"),
        ("front-proxy-ca", "front-proxy-ca.crt"),
    ] {
        if let Some(t) = expiry(env.read(&format!("{dir}/{f}"))) {
            println!("{:<25}{:<25}{:<17}no", name, fmt(t), residual(t));
        }
    }
    Ok(())
}

pub fn version(p: &Parsed) -> Result<(), Failure> {
    let v = crate::apiserver::server::version_info(crate::VERSION);
    match p.get("output").unwrap_or("") {
        "" => println!(
            "kubeadm version: &version.Info{{Major:\"{}\", Minor:\"{}\", GitVersion:\"{}\", GitCommit:\"{}\", GitTreeState:\"{}\", BuildDate:\"{}\", GoVersion:\"{}\", Compiler:\"{}\", Platform:\"{}\"}}",
            v["major"].as_str().unwrap_or(""), v["minor"].as_str().unwrap_or(""), crate::VERSION, v["gitCommit"].as_str().unwrap_or(""),
            v["gitTreeState"].as_str().unwrap_or(""), v["buildDate"].as_str().unwrap_or(""), v["goVersion"].as_str().unwrap_or(""),
            v["compiler"].as_str().unwrap_or(""), v["platform"].as_str().unwrap_or("")
        ),
        "short" => println!("{}", crate::VERSION),
        "json" => println!("{}", serde_json::to_string_pretty(&serde_json::json!({"clientVersion": v})).unwrap_or_default()),
        "yaml" => print!("{}", kobj::to_yaml(&serde_json::json!({"clientVersion": v}))),
        other => return Err(Failure::from(format!("invalid output format: {other}"))),
    }
    Ok(())
}

/// `kubeadm config validate`: strict decoding, so unknown fields are errors here.
pub fn config_validate(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let path = p.get("config").ok_or("the --config flag is mandatory")?;
    let text = env.read(path).ok_or_else(|| {
        format!("unable to read config from \"{path}\" : open {path}: no such file or directory")
    })?;
    let host = env.host_defaults();
    let is_join = config::split_documents(&text)
        .map_err(|e| e.0)?
        .iter()
        .any(|d| d.kind == "JoinConfiguration");
    let r = if is_join {
        config::load_join(&text, &host, true).map(|_| ())
    } else {
        config::load_init(&text, &host, true).map(|_| ())
    };
    r.map_err(|e| Failure::from(e.0))?;
    println!("ok");
    Ok(())
}

/// `kubeadm reset`: remove this node's etcd member, stop the kubelet and the
/// static Pods, and clean kubeadm's files; CNI config and iptables stay.
pub async fn reset(p: &Parsed, env: &Env) -> Result<(), Failure> {
    if p.on("dry-run") {
        println!("[reset] Would stop the kubelet, remove this node's etcd member and delete kubeadm's files");
        println!("[dryrun] Finished dry-running successfully.");
        return Ok(());
    }
    if !p.on("force") {
        use std::io::BufRead;
        super::warn("[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.");
        print!("[reset] Are you sure you want to proceed? [y/N]: ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim().to_lowercase().as_str(), "y" | "yes") {
            return Err(Failure::from("aborted reset operation".to_string()));
        }
    }
    let manifest = env.read(&format!("{MANIFESTS_DIR}/etcd.yaml"));
    if env.path(ADMIN_CONF).exists() {
        println!("[reset] Reading configuration from the cluster...");
        println!("[reset] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'");
    }
    println!("[preflight] Running pre-flight checks");
    if let Some(m) = manifest
        .as_deref()
        .and_then(crate::kubelet::pods::parse_manifest)
    {
        remove_etcd_member(env, &m.command).await;
    } else {
        println!("[reset] No etcd config found. Assuming external etcd");
        println!("[reset] Please, manually reset etcd to prevent further issues");
    }
    println!("[reset] Deleted contents of the etcd data directory: /var/lib/etcd");
    println!("[reset] Stopping the kubelet service");
    let _ = env.systemctl(&["stop", "kubelet"]);
    crate::kubelet::pods::stop_all(&crate::kubelet::Paths {
        root: env.root.clone(),
    });
    println!("[reset] Unmounting mounted directories in \"/var/lib/kubelet\"");
    let data_dir = manifest
        .as_deref()
        .and_then(crate::kubelet::pods::parse_manifest)
        .and_then(|m| {
            m.command
                .iter()
                .find_map(|a| a.strip_prefix("--data-dir=").map(String::from))
        })
        .unwrap_or_else(|| "/var/lib/etcd".into());
    for d in [
        data_dir.as_str(),
        "/etc/kubernetes/manifests",
        "/var/lib/kubelet",
        "/etc/kubernetes/pki",
    ] {
        clean_dir(env, d);
    }
    println!("[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki]");
    let files = [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    .map(|f| format!("/etc/kubernetes/{f}"));
    for f in &files {
        let _ = std::fs::remove_file(env.path(f));
    }
    println!("[reset] Deleting files: [{}]", files.join(" "));
    println!("\nThe reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d\n\nThe reset process does not reset or clean up iptables rules or IPVS tables.\nIf you wish to reset iptables, you must do so manually by using the \"iptables\" command.\n\nIf your cluster was setup to utilize IPVS, run ipvsadm --clear (or similar)\nto reset your system's IPVS tables.\n\nThe reset process does not clean your kubeconfig files and you must remove them manually.\nPlease, check the contents of the $HOME/.kube/config file.");
    Ok(())
}

fn clean_dir(env: &Env, d: &str) {
    if let Ok(entries) = std::fs::read_dir(env.path(d)) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The remove-etcd-member phase: this member leaves, unless it is the last.
async fn remove_etcd_member(env: &Env, cmd: &[String]) {
    let arg = |k: &str| {
        cmd.iter()
            .find_map(|a| a.strip_prefix(&format!("--{k}=")).map(String::from))
            .unwrap_or_default()
    };
    let name = arg("name");
    let r =
        |f: &str| std::fs::read(env.path(&format!("/etc/kubernetes/pki/{f}"))).unwrap_or_default();
    let Ok(etcd) = crate::apiserver::etcd::Etcd::new(
        vec!["https://127.0.0.1:2379".into()],
        &r("etcd/ca.crt"),
        &r("etcd/healthcheck-client.crt"),
        &r("etcd/healthcheck-client.key"),
    ) else {
        return;
    };
    match etcd.members().await {
        Ok(ms) if ms.len() > 1 => {
            if let Some(m) = ms.iter().find(|m| m.name == name) {
                match etcd.member_remove(m.id).await {
                    Ok(()) => println!("[reset] Removed etcd member {name} ({:x}) from the cluster", m.id),
                    Err(e) => println!("[reset] WARNING: failed to remove etcd member: {e}\nPlease manually remove this etcd member using etcdctl"),
                }
            }
        }
        Ok(_) => println!("[reset] The etcd cluster has only one member; not removing it"),
        Err(e) => println!("[reset] WARNING: failed to remove etcd member: {e}\nPlease manually remove this etcd member using etcdctl"),
    }
}

/// (cluster version in kubeadm-config, the ClusterConfiguration).
async fn cluster_version(c: &Client) -> Result<(String, config::ClusterConfiguration), Failure> {
    let cfg = join::cluster_configuration(c).await.map_err(|f| Failure {
        phase: Some("preflight".into()),
        msg: f.msg,
    })?;
    Ok((cfg.kubernetes_version.clone().unwrap_or_default(), cfg))
}

/// kubeadm's upgrade version policy: no downgrade below N-1, never past kubeadm,
/// one minor at a time.
pub fn upgrade_allowed(cluster: &str, target: &str, kubeadm: &str) -> Result<(), String> {
    let (Some(c), Some(t), Some(k)) = (
        validate::parse_version(cluster),
        validate::parse_version(target),
        validate::parse_version(kubeadm),
    ) else {
        return Err(format!(
            "unable to parse normalized version \"{target}\" as a semantic version"
        ));
    };
    if (t.0, t.1) > (k.0, k.1) || t > k && (t.0, t.1) == (k.0, k.1) && t.2 > k.2 {
        return Err(format!("Specified version to upgrade to \"{target}\" is higher than the kubeadm version \"{kubeadm}\". Upgrade kubeadm first using the tool you used to install kubeadm"));
    }
    if t.1 > c.1 + 1 {
        return Err(format!("Specified version to upgrade to \"{target}\" is too high; kubeadm can upgrade only 1 minor version at a time"));
    }
    if t.1 < c.1 {
        return Err(format!("Specified version to upgrade to \"{target}\" is an unsupported downgrade from the current cluster version \"{cluster}\""));
    }
    Ok(())
}

/// kubeadm's kubelet skew rule for an upgrade: no kubelet may end up more than three
/// minors behind the new control plane (skippable with `--force`, as in kubeadm).
pub fn too_old_kubelets(target: &str, kubelets: &[String]) -> Option<String> {
    let t = validate::parse_version(target)?;
    let mut old: Vec<&str> = kubelets
        .iter()
        .filter(|k| validate::parse_version(k).is_some_and(|k| t.1 > k.1 + 3))
        .map(String::as_str)
        .collect();
    old.sort();
    old.dedup();
    (!old.is_empty()).then(|| {
        format!(
            "There are kubelets in this cluster that are too old that have these versions [{}]",
            old.join(" ")
        )
    })
}

pub async fn upgrade_plan(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let c = admin(p, env)?;
    println!("[preflight] Running pre-flight checks.");
    println!("[upgrade/config] Reading configuration from the cluster...");
    println!("[upgrade/config] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'");
    let (cur, _) = cluster_version(&c).await?;
    println!("[upgrade] Running cluster health checks");
    println!("[upgrade] Fetching available versions to upgrade to");
    println!("[upgrade/versions] Cluster version: {cur}");
    println!("[upgrade/versions] kubeadm version: {}", crate::VERSION);
    if upgrade_allowed(&cur, crate::VERSION, crate::VERSION).is_err() || cur == crate::VERSION {
        println!("\nAwesome, you're up-to-date! Enjoy!");
        return Ok(());
    }
    println!("\nUpgrade to the latest stable version:\n");
    println!("COMPONENT                 NODE      CURRENT   TARGET");
    for comp in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        println!("{comp:<25} {:<9} {cur:<9} {}", "", crate::VERSION);
    }
    println!("{:<25} {:<9} {:<9} 3.5.15-0", "etcd", "", "3.5.15-0");
    println!("\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply {}\n", crate::VERSION);
    Ok(())
}

/// Rewrites this node's control-plane manifests for `version` (the kubelet
/// restarts them); returns the local API server's URL, None on other nodes.
fn rewrite_manifests(
    env: &Env,
    cluster: &config::ClusterConfiguration,
    version: &str,
) -> Result<Option<String>, Failure> {
    let Some(api) = env
        .read(&format!("{MANIFESTS_DIR}/kube-apiserver.yaml"))
        .and_then(|t| crate::kubelet::pods::parse_manifest(&t))
    else {
        return Ok(None);
    };
    let arg = |k: &str| {
        api.command
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{k}=")).map(String::from))
            .unwrap_or_default()
    };
    let mut c = cluster.clone();
    c.kubernetes_version = Some(version.to_string());
    let node = env
        .read("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let cp = init::control_plane(
        &c,
        &node,
        &arg("advertise-address"),
        arg("secure-port").parse().unwrap_or(6443),
        String::new(),
        true,
    );
    for (name, text) in [
        ("kube-apiserver", manifests::apiserver(&cp)),
        (
            "kube-controller-manager",
            manifests::controller_manager(&cp),
        ),
        ("kube-scheduler", manifests::scheduler(&cp)),
    ] {
        println!("[upgrade/staticpods] Moving new manifest to \"{MANIFESTS_DIR}/{name}.yaml\" and backing up old manifest");
        env.write(
            &format!("{MANIFESTS_DIR}/{name}.yaml"),
            text.as_bytes(),
            0o600,
        )?;
        println!("[upgrade/staticpods] Component \"{name}\" upgraded successfully!");
    }
    Ok(Some(format!(
        "https://{}",
        super::endpoint(None, &cp.advertise_address, cp.bind_port)
    )))
}

pub async fn upgrade_apply(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let target = p.args.first().cloned().ok_or_else(|| {
        Failure::from(
            "missing one or more required arguments. Required arguments: [version]".to_string(),
        )
    })?;
    let c = admin(p, env)?;
    println!("[preflight] Running pre-flight checks.");
    println!("[upgrade/config] Reading configuration from the cluster...");
    let (cur, cluster) = cluster_version(&c).await?;
    println!("[upgrade] Running cluster health checks");
    println!("[upgrade/version] You have chosen to change the cluster version to \"{target}\"");
    println!("[upgrade/versions] Cluster version: {cur}");
    println!("[upgrade/versions] kubeadm version: {}", crate::VERSION);
    upgrade_allowed(&cur, &target, crate::VERSION).map_err(|e| Failure {
        phase: Some("preflight".into()),
        msg: format!("[upgrade/version] FATAL: {e}"),
    })?;
    let nodes = c.get("/api/v1/nodes").await.body;
    let kubelets: Vec<String> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            n["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .map(String::from)
        })
        .collect();
    if let Some(e) = too_old_kubelets(&target, &kubelets).filter(|_| !p.on("force")) {
        return Err(Failure {
            phase: Some("preflight".into()),
            msg: format!("[upgrade/version] FATAL: the version argument is invalid due to these errors:\n\n\t- {e}\n\nCan be bypassed if you pass the --force flag"),
        });
    }
    if p.on("dry-run") {
        println!("[dryrun] Would upgrade the static Pod manifests and kubeadm-config to {target}");
        return Ok(());
    }
    if !p.on("yes") && !p.on("force") {
        use std::io::BufRead;
        print!("[upgrade] Are you sure you want to proceed? [y/N]: ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim().to_lowercase().as_str(), "y" | "yes") {
            return Err(Failure::from(
                "won't proceed; the user didn't answer (Y|y) in order to continue".to_string(),
            ));
        }
    }
    println!("[upgrade/apply] Upgrading your Static Pod-hosted control plane to version \"{target}\" (timeout: 5m0s)...");
    let local = rewrite_manifests(env, &cluster, &target)?;
    let mut updated = cluster.clone();
    updated.kubernetes_version = Some(target.clone());
    println!("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace");
    let r = c
        .create_or_update(
            &format!("/api/v1/namespaces/{KUBE_SYSTEM}/configmaps"),
            "kubeadm-config",
            &kobj::kubeadm_config_map(&updated),
        )
        .await;
    if !r.ok() {
        return fail("upload-config", r.message());
    }
    if let Some(local) = local {
        wait_api_version(&local, &target).await;
    }
    // The add-ons follow the new version: kube-proxy's DaemonSet rolls its Pods.
    crate::kubeadm::init::addons(&c, &updated, &|_| false).await?;
    println!("\n[upgrade/successful] SUCCESS! Your cluster was upgraded to \"{target}\". Enjoy!\n\n[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets if you haven't already done so.");
    Ok(())
}

/// Waits (bounded) until this node's API server reports `version`; asks it
/// directly, since the load balancer may keep answering from another node.
async fn wait_api_version(local: &str, version: &str) {
    let c = Client::insecure(local);
    for _ in 0..150 {
        if c.get("/version").await.body["gitVersion"] == Value::String(version.into()) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn upgrade_node(p: &Parsed, env: &Env) -> Result<(), Failure> {
    println!("[upgrade] Reading configuration from the cluster...");
    println!("[upgrade] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'");
    let kc = p
        .get("kubeconfig")
        .unwrap_or(if env.path(ADMIN_CONF).exists() {
            ADMIN_CONF
        } else {
            "/etc/kubernetes/kubelet.conf"
        });
    let text = env.read(kc).ok_or_else(|| {
        format!("failed to load kubeconfig: open {kc}: no such file or directory")
    })?;
    let text = text.replace(
        crate::kubelet::node::CLIENT_CERT,
        &env.path(crate::kubelet::node::CLIENT_CERT)
            .to_string_lossy(),
    );
    let c = Client::from_kubeconfig(&text)?;
    let (cur, cluster) = cluster_version(&c).await?;
    println!("[preflight] Running pre-flight checks");
    if let Some(local) = rewrite_manifests(env, &cluster, &cur)? {
        println!("[upgrade] Upgrading your Static Pod-hosted control plane instance to version \"{cur}\"...");
        wait_api_version(&local, &cur).await;
    } else {
        println!("[preflight] Skipping prepull. Not a control plane node.");
        println!("[upgrade] Skipping phase. Not a control plane node.");
    }
    println!("[upgrade] The configuration for this node was successfully updated!");
    println!("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control plane's /etc/kubernetes under a temp root, certificates valid for a day.
    fn pki_tree(name: &str) -> Env {
        let root =
            std::env::temp_dir().join(format!("standin-renew-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let env = Env { root };
        let params = pki::PkiParams {
            node_name: "cp1".into(),
            advertise_address: "10.0.0.11".parse().unwrap(),
            endpoint_host: Some("lb.example.com".into()),
            cert_sans: vec![],
            service_ip: "10.96.0.1".parse().unwrap(),
            dns_domain: "cluster.local".into(),
            etcd_server_sans: vec![],
            etcd_peer_sans: vec![],
            validity: std::time::Duration::from_secs(86400),
            ca_validity: std::time::Duration::from_secs(10 * 86400),
        };
        for f in pki::generate(&params, &|_| None).unwrap() {
            env.write(
                &format!("/etc/kubernetes/pki/{}", f.path),
                &f.contents,
                f.mode,
            )
            .unwrap();
        }
        let ca = pki::CertKey {
            cert_pem: env.read("/etc/kubernetes/pki/ca.crt").unwrap(),
            key_pem: env.read("/etc/kubernetes/pki/ca.key").unwrap(),
        };
        let kc = pki::kubeconfig::for_file(
            "admin.conf",
            "cp1",
            "https://lb.example.com:6443",
            &ca,
            std::time::Duration::from_secs(86400),
        )
        .unwrap();
        env.write("/etc/kubernetes/admin.conf", kc.as_bytes(), 0o600)
            .unwrap();
        env
    }

    fn renew(env: &Env, what: &str) -> Result<(), Failure> {
        certs_renew(
            &crate::kubeadm::cli::parse(&["certs", "renew", what].map(String::from)).unwrap(),
            env,
        )
    }

    #[test]
    fn certs_renew_keeps_identity_and_extends_validity() {
        let env = pki_tree("one");
        let dir = "/etc/kubernetes/pki";
        let days_left = |name: &str| {
            let t = pki::not_after(&current_cert(&env, dir, name).unwrap()).unwrap();
            (t - time::OffsetDateTime::now_utc()).whole_days()
        };
        let sans = |pem: &str| {
            let der = pki::pem_to_der(pem).unwrap();
            let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
            let names = c
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
                .clone();
            format!("{names:?}")
        };
        let old_sans = sans(&current_cert(&env, dir, "apiserver").unwrap());
        assert!(old_sans.contains("lb.example.com") && old_sans.contains("kubernetes.default"));
        let old_key = env.read("/etc/kubernetes/pki/apiserver.key").unwrap();
        let old = pki::subject(&current_cert(&env, dir, "apiserver").unwrap()).unwrap();
        renew(&env, "apiserver").unwrap();
        assert!(days_left("apiserver") >= 364, "a year from now");
        assert_eq!(days_left("etcd-server"), 0, "only the named certificate");
        assert_eq!(
            pki::subject(&current_cert(&env, dir, "apiserver").unwrap()).unwrap(),
            old
        );
        assert_ne!(
            env.read("/etc/kubernetes/pki/apiserver.key").unwrap(),
            old_key,
            "new key"
        );
        assert_eq!(
            sans(&current_cert(&env, dir, "apiserver").unwrap()),
            old_sans,
            "SANs kept"
        );

        renew(&env, "all").unwrap();
        for name in [
            "admin.conf",
            "etcd-server",
            "etcd-peer",
            "front-proxy-client",
        ] {
            assert!(days_left(name) >= 364, "{name}");
        }
        let admin =
            pki::kubeconfig::parse(&env.read("/etc/kubernetes/admin.conf").unwrap()).unwrap();
        let c = admin.client.unwrap();
        assert_eq!(pki::subject(&c.cert_pem).unwrap().0, "kubernetes-admin");
        assert!(c.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn init_phase_certs_apiserver_signs_for_the_configs_sans_with_the_local_ca() {
        let env = pki_tree("apiserver");
        let config = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n\
                      localAPIEndpoint:\n  advertiseAddress: 10.0.0.11\n  bindPort: 6443\n\
                      nodeRegistration:\n  name: cp1\n  criSocket: unix:///var/run/containerd/containerd.sock\n\
                      ---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n\
                      kubernetesVersion: v1.31.0\ncontrolPlaneEndpoint: lb.example.com:6443\n\
                      networking:\n  serviceSubnet: 10.96.0.0/12\n  dnsDomain: cluster.local\n\
                      apiServer:\n  certSANs:\n  - lb.example.com\n  - api.example.com\n  - 10.0.0.99\n";
        env.write("/etc/kubeha/certs.yaml", config.as_bytes(), 0o600)
            .unwrap();
        let phase = || {
            crate::kubeadm::init::certs_apiserver(
                &crate::kubeadm::cli::parse(
                    &[
                        "init",
                        "phase",
                        "certs",
                        "apiserver",
                        "--config",
                        "/etc/kubeha/certs.yaml",
                    ]
                    .map(String::from),
                )
                .unwrap(),
                &env,
            )
        };
        let (crt, key) = (
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/apiserver.key",
        );
        let ca = env.read("/etc/kubernetes/pki/ca.crt").unwrap();
        let before = env.read(crt).unwrap();
        // The existing pair lacks the new SANs: refused, as kubeadm does, and left alone.
        let refused = phase().unwrap_err();
        assert_eq!(refused.phase.as_deref(), Some("certs/apiserver"));
        assert!(
            refused.msg.contains("not api.example.com"),
            "{}",
            refused.msg
        );
        assert_eq!(env.read(crt).unwrap(), before);
        // Moved aside: a new pair from the local CA, for every SAN kubeadm computes.
        std::fs::remove_file(env.path(crt)).unwrap();
        std::fs::remove_file(env.path(key)).unwrap();
        phase().unwrap();
        let new = env.read(crt).unwrap();
        let want: Vec<String> = [
            "cp1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "10.0.0.11",
            "lb.example.com",
            "api.example.com",
            "10.0.0.99",
        ]
        .map(String::from)
        .to_vec();
        pki::issued_for(&new, &ca, &want).unwrap();
        assert!(env.read(key).unwrap().contains("PRIVATE KEY"));
        // Now it fits: used as it is.
        phase().unwrap();
        assert_eq!(env.read(crt).unwrap(), new);
        // Without the CA there is nothing to sign with.
        std::fs::remove_file(env.path(crt)).unwrap();
        std::fs::remove_file(env.path("/etc/kubernetes/pki/ca.key")).unwrap();
        assert!(phase()
            .unwrap_err()
            .msg
            .contains("couldn't load CA certificate ca"));
        // Another CA's certificate is refused.
        let other = pki::new_ca("other", std::time::Duration::from_secs(86400)).unwrap();
        assert!(pki::issued_for(&new, &other.cert_pem, &[]).is_err());
    }

    #[test]
    fn certs_renew_failures() {
        let env = pki_tree("fail");
        assert!(renew(&env, "nonsense")
            .unwrap_err()
            .msg
            .contains("unknown command \"nonsense\""));
        assert!(renew(&env, "scheduler.conf")
            .unwrap_err()
            .msg
            .contains("failed to load existing certificate scheduler.conf"));
        // An external CA (no key): the certificate is left alone.
        let before = env
            .read("/etc/kubernetes/pki/front-proxy-client.crt")
            .unwrap();
        std::fs::remove_file(env.path("/etc/kubernetes/pki/front-proxy-ca.key")).unwrap();
        renew(&env, "front-proxy-client").unwrap();
        assert_eq!(
            env.read("/etc/kubernetes/pki/front-proxy-client.crt")
                .unwrap(),
            before
        );
    }

    #[test]
    fn kubelets_too_old_for_the_target() {
        let kubelets = [
            "v1.31.0".to_string(),
            "v1.28.5".to_string(),
            "v1.28.5".to_string(),
        ];
        assert_eq!(
            too_old_kubelets("v1.32.0", &kubelets).as_deref(),
            Some("There are kubelets in this cluster that are too old that have these versions [v1.28.5]")
        );
        assert_eq!(too_old_kubelets("v1.31.4", &kubelets), None);
    }

    #[test]
    fn upgrade_policy() {
        assert!(upgrade_allowed("v1.31.0", "v1.32.0", "v1.32.0").is_ok());
        assert!(upgrade_allowed("v1.31.0", "v1.32.0", "v1.31.0")
            .unwrap_err()
            .contains("is higher than the kubeadm version"));
        assert!(upgrade_allowed("v1.30.0", "v1.32.0", "v1.32.0")
            .unwrap_err()
            .contains("only 1 minor version at a time"));
        assert!(upgrade_allowed("v1.32.0", "v1.31.0", "v1.32.0")
            .unwrap_err()
            .contains("downgrade"));
    }

    #[test]
    fn ttl_format() {
        assert_eq!(human_ttl(23 * 3600 + 1800), "23h");
        assert_eq!(human_ttl(59 * 60), "59m");
    }
}
