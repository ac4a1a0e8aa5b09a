//! `kubeadm init`: phases preflight → certs → kubeconfig → etcd → control-plane
//! → kubelet-start → wait-control-plane → upload-config → upload-certs →
//! mark-control-plane → bootstrap-token → kubelet-finalize → addons.

use super::cli::Parsed;
use super::objects::{self as kobj, KUBE_SYSTEM};
use super::{
    endpoint, fail, manifests, timeout, warn, Env, Failure, ADMIN_CONF, KUBELET_CONFIG,
    KUBELET_FLAGS, MANIFESTS_DIR,
};
use crate::client::Client;
use crate::config::{self, InitConfig};
use crate::pki::{self, kubeconfig, CertKey, PkiParams};
use crate::preflight;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Builds an init config from flags when no --config is given.
fn config_from_flags(p: &Parsed) -> String {
    let mut init = json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "localAPIEndpoint": {}, "nodeRegistration": {}});
    let mut cluster = json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "networking": {}});
    let set = |v: &mut Value, ptr: &str, val: Value| {
        let parts: Vec<&str> = ptr.split('/').collect();
        let mut cur = v;
        for k in &parts[..parts.len() - 1] {
            cur = &mut cur[*k];
        }
        cur[parts[parts.len() - 1]] = val;
    };
    for (flag, target, ptr) in [
        (
            "apiserver-advertise-address",
            0,
            "localAPIEndpoint/advertiseAddress",
        ),
        ("node-name", 0, "nodeRegistration/name"),
        ("cri-socket", 0, "nodeRegistration/criSocket"),
        ("certificate-key", 0, "certificateKey"),
        ("control-plane-endpoint", 1, "controlPlaneEndpoint"),
        ("pod-network-cidr", 1, "networking/podSubnet"),
        ("service-cidr", 1, "networking/serviceSubnet"),
        ("service-dns-domain", 1, "networking/dnsDomain"),
        ("kubernetes-version", 1, "kubernetesVersion"),
        ("image-repository", 1, "imageRepository"),
        ("cert-dir", 1, "certificatesDir"),
    ] {
        if let Some(v) = p.get(flag) {
            set(
                if target == 0 { &mut init } else { &mut cluster },
                ptr,
                json!(v),
            );
        }
    }
    if let Some(port) = p
        .get("apiserver-bind-port")
        .and_then(|v| v.parse::<i64>().ok())
    {
        init["localAPIEndpoint"]["bindPort"] = json!(port);
    }
    if let Some(t) = p.get("token") {
        init["bootstrapTokens"] =
            json!([{"token": t, "ttl": p.get("token-ttl").unwrap_or("24h0m0s")}]);
    }
    let sans = p.list("apiserver-cert-extra-sans");
    if !sans.is_empty() {
        cluster["apiServer"] = json!({"certSANs": sans});
    }
    format!("{}\n---\n{}", init, cluster)
}

pub fn load(p: &Parsed, env: &Env) -> Result<InitConfig, Failure> {
    let text = match p.get("config") {
        Some(path) => super::read_config(env, path)?,
        None => config_from_flags(p),
    };
    let cfg = config::load_init(&text, &env.host_defaults(), false).map_err(|e| e.0)?;
    for w in &cfg.warnings {
        warn(w);
    }
    Ok(cfg)
}

fn port(cfg: &InitConfig) -> u16 {
    cfg.init.local_api_endpoint.bind_port.unwrap_or(6443) as u16
}

fn advertise(cfg: &InitConfig) -> String {
    cfg.init
        .local_api_endpoint
        .advertise_address
        .clone()
        .unwrap_or_default()
}

pub fn cluster_endpoint(cfg: &InitConfig) -> String {
    endpoint(
        cfg.cluster.control_plane_endpoint.as_deref(),
        &advertise(cfg),
        port(cfg),
    )
}

pub fn node_params(cfg: &InitConfig) -> preflight::NodeParams {
    preflight::NodeParams {
        node_name: cfg.init.node_registration.name.clone().unwrap_or_default(),
        cri_socket: cfg
            .init
            .node_registration
            .cri_socket
            .clone()
            .unwrap_or_default(),
        kubernetes_version: cfg.cluster.kubernetes_version.clone().unwrap_or_default(),
        advertise_address: advertise(cfg),
        bind_port: port(cfg),
        service_subnet: cfg
            .cluster
            .networking
            .service_subnet
            .clone()
            .unwrap_or_default(),
        etcd_data_dir: cfg
            .cluster
            .etcd
            .local
            .as_ref()
            .and_then(|l| l.data_dir.clone())
            .unwrap_or_else(|| "/var/lib/etcd".into()),
    }
}

/// Runs preflight checks; ignore list from the flag and nodeRegistration.
pub fn run_preflight(
    checks: &[preflight::Check],
    p: &Parsed,
    from_config: &[String],
    env: &Env,
) -> Result<(), Failure> {
    let ignore = preflight::ignore_set(&p.list("ignore-preflight-errors"), from_config)
        .map_err(Failure::from)?;
    let host = preflight::RealHost {
        root: env.root.clone(),
        cri: Box::new(|sock: &str| {
            let path = sock.trim_start_matches("unix://");
            std::os::unix::net::UnixStream::connect(path).map(|_| ()).map_err(|e| {
                format!(
                    "validate service connection: validate CRI v1 runtime API for endpoint \"{sock}\": rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {path}: connect: {e}\""
                )
            })
        }),
    };
    let report = preflight::run(checks, &host, &ignore);
    for l in &report.lines {
        eprintln!("{l}");
    }
    match report.error {
        Some(e) => fail("preflight", e),
        None => Ok(()),
    }
}

/// The cluster's PKI parameters for this node.
pub fn pki_params(
    cluster: &config::ClusterConfiguration,
    node: &str,
    advertise: &str,
) -> Result<PkiParams, Failure> {
    let svc = cluster
        .networking
        .service_subnet
        .as_deref()
        .unwrap_or(config::DEFAULT_SERVICE_SUBNET);
    let service_ip = svc
        .split(',')
        .next()
        .and_then(|c| c.parse::<ipnet::IpNet>().ok())
        .and_then(|n| n.hosts().next())
        .ok_or_else(|| format!("unable to get first IP address from the given CIDR: {svc}"))?;
    let endpoint_host = cluster
        .control_plane_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        .and_then(|e| config::validate::parse_host_port(e).ok())
        .map(|(h, _)| h);
    let local = cluster.etcd.local.clone().unwrap_or_default();
    let period = |v: &Option<String>, d: u64| timeout(v.as_deref(), d);
    Ok(PkiParams {
        node_name: node.to_string(),
        advertise_address: advertise.parse::<IpAddr>().map_err(|_| format!("couldn't use \"{advertise}\" as \"apiserver-advertise-address\", must be ipv4 or ipv6 address"))?,
        endpoint_host,
        cert_sans: cluster.api_server.cert_sans.clone().unwrap_or_default(),
        service_ip,
        dns_domain: cluster.networking.dns_domain.clone().unwrap_or_else(|| "cluster.local".into()),
        etcd_server_sans: local.server_cert_sans.unwrap_or_default(),
        etcd_peer_sans: local.peer_cert_sans.unwrap_or_default(),
        validity: period(&cluster.certificate_validity_period, 8760 * 3600),
        ca_validity: period(&cluster.ca_certificate_validity_period, 87600 * 3600),
    })
}

/// The certs phase: reuse what exists, generate the rest, print kubeadm's lines.
pub fn certs_phase(env: &Env, dir: &str, params: &PkiParams) -> Result<(), Failure> {
    println!("[certs] Using certificateDir folder \"{dir}\"");
    let existing = |f: &str| env.read(&format!("{dir}/{f}"));
    let files = pki::generate(params, &existing).map_err(|e| Failure {
        phase: Some("certs".into()),
        msg: e.to_string(),
    })?;
    for f in &files {
        if let Some(base) = f.path.strip_suffix(".crt") {
            println!("[certs] Generating \"{base}\" certificate and key");
            if base == "apiserver" {
                let sans = pki::apiserver_sans(params);
                let (ips, dns): (Vec<&String>, Vec<&String>) =
                    sans.iter().partition(|s| s.parse::<IpAddr>().is_ok());
                let j =
                    |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
                println!(
                    "[certs] apiserver serving cert is signed for DNS names [{}] and IPs [{}]",
                    j(dns),
                    j(ips)
                );
            }
        }
        if f.path == "sa.key" {
            println!("[certs] Generating \"sa\" key and public key");
        }
        env.write(&format!("{dir}/{}", f.path), &f.contents, f.mode)?;
    }
    Ok(())
}

/// `kubeadm init phase certs apiserver`: the apiserver serving certificate signed by the
/// cluster CA in the certificates folder for the SANs of the config (or flags). An
/// existing pair is used when the CA issued it for every one of them, refused otherwise:
/// to sign it again for other SANs, move it aside first (as kubeadm's reconfiguration
/// guide says).
pub fn certs_apiserver(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let phase = "certs/apiserver";
    let failed = |msg: String| Failure {
        phase: Some(phase.into()),
        msg,
    };
    let cfg = load(p, env)?;
    let dir = p
        .get("cert-dir")
        .map(String::from)
        .or_else(|| cfg.cluster.certificates_dir.clone())
        .unwrap_or_else(|| "/etc/kubernetes/pki".into());
    let node = cfg.init.node_registration.name.clone().unwrap_or_default();
    let params = pki_params(&cfg.cluster, &node, &advertise(&cfg))?;
    let (Some(ca_cert), Some(ca_key)) = (
        env.read(&format!("{dir}/ca.crt")),
        env.read(&format!("{dir}/ca.key")),
    ) else {
        return Err(failed(format!(
            "couldn't load CA certificate ca: couldn't load the certificate file {dir}/ca.crt: open {dir}/ca.crt: no such file or directory"
        )));
    };
    let sans = pki::apiserver_sans(&params);
    let (crt, key) = (
        format!("{dir}/apiserver.crt"),
        format!("{dir}/apiserver.key"),
    );
    if let (Some(existing), Some(_)) = (env.read(&crt), env.read(&key)) {
        return match pki::issued_for(&existing, &ca_cert, &sans) {
            Ok(()) => {
                println!("[certs] Using the existing \"apiserver\" certificate and key");
                Ok(())
            }
            Err(e) => Err(failed(format!("certificate apiserver is invalid: {e}"))),
        };
    }
    let ca = CertKey {
        cert_pem: ca_cert,
        key_pem: ca_key,
    };
    let leaf = pki::apiserver_leaf(&ca, &params).map_err(|e| failed(e.to_string()))?;
    if p.on("dry-run") {
        println!("[dryrun] Would write the \"apiserver\" certificate and key to {dir}");
        return Ok(());
    }
    println!("[certs] Generating \"apiserver\" certificate and key");
    let (ips, dns): (Vec<&String>, Vec<&String>) =
        sans.iter().partition(|s| s.parse::<IpAddr>().is_ok());
    let j = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
    println!(
        "[certs] apiserver serving cert is signed for DNS names [{}] and IPs [{}]",
        j(dns),
        j(ips)
    );
    env.write(&key, leaf.key_pem.as_bytes(), pki::KEY_MODE)?;
    env.write(&crt, leaf.cert_pem.as_bytes(), pki::CERT_MODE)?;
    Ok(())
}

/// The kubeconfig phase. `files` are the kubeconfigs to write.
pub fn kubeconfig_phase(
    env: &Env,
    dir: &str,
    node: &str,
    cluster_server: &str,
    local_server: &str,
    files: &[&str],
) -> Result<(), Failure> {
    println!("[kubeconfig] Using kubeconfig folder \"/etc/kubernetes\"");
    let ca = CertKey {
        cert_pem: env
            .read(&format!("{dir}/ca.crt"))
            .ok_or("couldn't load the CA certificate")?,
        key_pem: env
            .read(&format!("{dir}/ca.key"))
            .ok_or("couldn't load the CA key")?,
    };
    for f in files {
        let path = format!("/etc/kubernetes/{f}");
        if env.path(&path).exists() {
            println!("[kubeconfig] Using existing kubeconfig file: \"{path}\"");
            continue;
        }
        let server = if matches!(*f, "controller-manager.conf" | "scheduler.conf") {
            local_server
        } else {
            cluster_server
        };
        let text = kubeconfig::for_file(
            f,
            node,
            &format!("https://{server}"),
            &ca,
            Duration::from_secs(8760 * 3600),
        )
        .map_err(|e| e.to_string())?;
        println!("[kubeconfig] Writing \"{f}\" kubeconfig file");
        env.write(&path, text.as_bytes(), 0o600)?;
    }
    Ok(())
}

/// kubelet-start: config, flags, (re)start the unit. A worker's taints go to
/// the kubelet as --register-with-taints (control planes get theirs from
/// mark-control-plane), as kubeadm does.
pub fn kubelet_start(
    env: &Env,
    kubelet: &Value,
    node_name: &str,
    hostname: &str,
    nr: &config::NodeRegistration,
    register_taints: bool,
) -> Result<(), Failure> {
    let mut args: Vec<config::Arg> = nr
        .kubelet_extra_args
        .pairs()
        .into_iter()
        .map(|(name, value)| config::Arg { name, value })
        .collect();
    let taints: Vec<String> = nr
        .taints
        .iter()
        .flatten()
        .map(|t| match &t.value {
            Some(v) => format!("{}={v}:{}", t.key, t.effect),
            None => format!("{}:{}", t.key, t.effect),
        })
        .collect();
    if register_taints && !taints.is_empty() {
        args.push(config::Arg {
            name: "register-with-taints".into(),
            value: taints.join(","),
        });
    }
    if node_name != hostname.to_lowercase() {
        // kubeadm passes a node name that differs from the hostname to the kubelet.
        args.push(config::Arg {
            name: "hostname-override".into(),
            value: node_name.into(),
        });
    }
    let extra = config::ExtraArgs::List(args);
    println!(
        "[kubelet-start] Writing kubelet environment file with flags to file \"{KUBELET_FLAGS}\""
    );
    env.write(
        KUBELET_FLAGS,
        manifests::kubeadm_flags_env(
            nr.cri_socket
                .as_deref()
                .unwrap_or(config::DEFAULT_CRI_SOCKET),
            &extra,
        )
        .as_bytes(),
        0o644,
    )?;
    println!("[kubelet-start] Writing kubelet configuration to file \"{KUBELET_CONFIG}\"");
    env.write(KUBELET_CONFIG, kobj::to_yaml(kubelet).as_bytes(), 0o644)?;
    println!("[kubelet-start] Starting the kubelet");
    if let Err(e) = env.systemctl(&["restart", "kubelet"]) {
        println!("[kubelet-start] WARNING: unable to start the kubelet service: [{e}]");
        println!("[kubelet-start] Please ensure kubelet is reloaded and running manually.");
    }
    Ok(())
}

async fn http_ok(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (hostport, path) = rest
        .split_once('/')
        .map(|(h, p)| (h.to_string(), format!("/{p}")))
        .unwrap_or((rest.to_string(), "/".into()));
    let fut = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&hostport).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = vec![];
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), fut).await,
        Ok(Some(true))
    )
}

/// Waits for the kubelet's healthz, then the API server (kubeadm 1.31 messages).
pub async fn wait_control_plane(
    client: &Client,
    kubelet_timeout: Duration,
    api_timeout: Duration,
) -> Result<(), Failure> {
    println!("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory \"{MANIFESTS_DIR}\"");
    wait_kubelet(kubelet_timeout).await?;
    println!(
        "[api-check] Waiting for a healthy API server. This can take up to {}",
        crate::config::duration::format(api_timeout)
    );
    let start = Instant::now();
    while start.elapsed() < api_timeout {
        if client.get("/healthz").await.code == 200 {
            println!(
                "[api-check] The API server is healthy after {:.9}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "[api-check] The API server is not healthy after {}",
        crate::config::duration::format(api_timeout)
    );
    fail("wait-control-plane", "could not initialize a Kubernetes cluster\n\nUnfortunately, an error has occurred:\n\tcontext deadline exceeded\n\nThis error is likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)\n\nIf you are on a systemd-powered system, you can try to troubleshoot the error with the following commands:\n\t- 'systemctl status kubelet'\n\t- 'journalctl -xeu kubelet'\n\nAdditionally, a control plane component may have crashed or exited when started by the container runtime.")
}

pub async fn wait_kubelet(t: Duration) -> Result<(), Failure> {
    println!("[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:10248/healthz. This can take up to {}", crate::config::duration::format(t));
    let start = Instant::now();
    while start.elapsed() < t {
        if http_ok("http://127.0.0.1:10248/healthz").await {
            println!(
                "[kubelet-check] The kubelet is healthy after {:.9}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "[kubelet-check] The kubelet is not healthy after {}",
        crate::config::duration::format(t)
    );
    fail("wait-control-plane", "The HTTP call equal to 'curl -sSL http://127.0.0.1:10248/healthz' returned error: Get \"http://127.0.0.1:10248/healthz\": dial tcp 127.0.0.1:10248: connect: connection refused\n\nUnfortunately, an error has occurred:\n\tcontext deadline exceeded\n\nThis error is likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)\n\nIf you are on a systemd-powered system, you can try to troubleshoot the error with the following commands:\n\t- 'systemctl status kubelet'\n\t- 'journalctl -xeu kubelet'")
}

/// Uploads the shared certificates encrypted with `key` (2 h lifetime).
pub async fn upload_certs(
    client: &Client,
    env: &Env,
    dir: &str,
    key_hex: &str,
) -> Result<(), Failure> {
    let key = hex::decode(key_hex).map_err(|e| format!("error decoding certificate key: {e}"))?;
    println!("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
    let token = config::BootstrapToken {
        token: pki::random_token(),
        description: Some("Proxy for managing TTL for the kubeadm-certs secret".into()),
        ttl: Some(crate::config::duration::format(Duration::from_secs(
            kobj::UPLOAD_CERTS_TTL_SECS,
        ))),
        ..Default::default()
    };
    let secret = kobj::bootstrap_token_secret(&token, time::OffsetDateTime::now_utc())?;
    let secrets = format!("/api/v1/namespaces/{KUBE_SYSTEM}/secrets");
    let owner = client.create(&secrets, &secret).await;
    if !owner.ok() {
        return fail(
            "upload-certs",
            format!("error uploading certs: {}", owner.message()),
        );
    }
    let read = |p: &str| std::fs::read(env.path(&format!("{dir}/{p}"))).ok();
    let s = kobj::kubeadm_certs_secret(
        &read,
        &key,
        owner.body["metadata"]["uid"].as_str().unwrap_or(""),
        secret["metadata"]["name"].as_str().unwrap_or(""),
    )?;
    let r = client.create_or_update(&secrets, "kubeadm-certs", &s).await;
    if !r.ok() {
        return fail(
            "upload-certs",
            format!("error uploading certs: {}", r.message()),
        );
    }
    Ok(())
}

/// Labels and taints a control-plane Node once the kubelet registered it.
pub async fn mark_control_plane(
    client: &Client,
    node: &str,
    taints: Option<&Vec<config::Taint>>,
    wait: Duration,
) -> Result<(), Failure> {
    let labels = [
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/exclude-from-external-load-balancers",
    ];
    println!(
        "[mark-control-plane] Marking the node {node} as control-plane by adding the labels: [{}]",
        labels.join(" ")
    );
    let taints: Vec<Value> = match taints {
        None => {
            vec![json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})]
        }
        Some(t) => t
            .iter()
            .map(|t| {
                serde_json::to_value(t)
                    .map(|v| kobj::without_nulls(&v))
                    .unwrap_or_default()
            })
            .collect(),
    };
    if !taints.is_empty() {
        let names: Vec<String> = taints
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap_or(""),
                    t["effect"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!("[mark-control-plane] Marking the node {node} as control-plane by adding the taints [{}]", names.join(" "));
    }
    let start = Instant::now();
    loop {
        let cur = client.get(&format!("/api/v1/nodes/{node}")).await;
        if cur.ok() {
            let mut all = cur.body["spec"]["taints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for t in &taints {
                if !all
                    .iter()
                    .any(|x| x["key"] == t["key"] && x["effect"] == t["effect"])
                {
                    all.push(t.clone());
                }
            }
            let patch = json!({"metadata": {"labels": {labels[0]: "", labels[1]: ""}}, "spec": {"taints": all}});
            if client
                .merge(&format!("/api/v1/nodes/{node}"), &patch)
                .await
                .ok()
            {
                return Ok(());
            }
        }
        if start.elapsed() > wait {
            return fail("mark-control-plane", format!("error patching node \"{node}\" through apiserver: timed out waiting for the condition"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Stores bootstrap tokens and the cluster-info ConfigMap.
pub async fn bootstrap_tokens(
    client: &Client,
    cfg: &InitConfig,
    ca_pem: &str,
    skip_print: bool,
) -> Result<(), Failure> {
    let tokens = cfg.init.bootstrap_tokens.clone().unwrap_or_default();
    if !skip_print {
        for t in &tokens {
            println!("[bootstrap-token] Using token: {}", t.token);
        }
    }
    println!("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles");
    println!("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes");
    println!("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials");
    println!("[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token");
    println!("[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster");
    let secrets = format!("/api/v1/namespaces/{KUBE_SYSTEM}/secrets");
    for t in &tokens {
        let s = kobj::bootstrap_token_secret(t, time::OffsetDateTime::now_utc())?;
        let name = s["metadata"]["name"].as_str().unwrap_or("").to_string();
        let r = client.create_or_update(&secrets, &name, &s).await;
        if !r.ok() {
            return fail(
                "bootstrap-token",
                format!("error updating or creating token: {}", r.message()),
            );
        }
    }
    println!("[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace");
    let kc = kobj::cluster_info_kubeconfig(&format!("https://{}", cluster_endpoint(cfg)), ca_pem);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": {"kubeconfig": kc}});
    let r = client
        .create_or_update(
            "/api/v1/namespaces/kube-public/configmaps",
            "cluster-info",
            &cm,
        )
        .await;
    if !r.ok() {
        return fail(
            "bootstrap-token",
            format!("error creating bootstrap ConfigMap: {}", r.message()),
        );
    }
    Ok(())
}

/// The cluster DNS Service IP: the tenth address of the service subnet.
pub fn dns_ip(cluster: &config::ClusterConfiguration) -> String {
    cluster
        .networking
        .service_subnet
        .as_deref()
        .and_then(|s| s.split(',').next())
        .and_then(|c| c.parse::<ipnet::IpNet>().ok())
        .and_then(|n| n.hosts().nth(9))
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "10.96.0.10".into())
}

/// kubeadm's CoreDNS Deployment (addons/dns manifests): two replicas that
/// tolerate the control-plane taint but not a NotReady node, so they run once
/// a CNI is installed.
fn coredns_deployment(repo: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {"priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns", "dnsPolicy": "Default",
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                        "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]}, "topologyKey": "kubernetes.io/hostname"}}]}},
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "coredns", "image": format!("{repo}/coredns/coredns:v1.11.3"), "imagePullPolicy": "IfNotPresent",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}, {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}, {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}]}]}}}})
}

/// kubeadm's kube-proxy DaemonSet: host network, tolerates every taint.
fn kube_proxy_daemonset(repo: &str, version: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {"priorityClassName": "system-node-critical", "hostNetwork": true, "serviceAccountName": "kube-proxy",
                    "tolerations": [{"operator": "Exists"}], "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "kube-proxy", "image": format!("{repo}/kube-proxy:{version}"), "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                        "securityContext": {"privileged": true}}]}}}})
}

/// Creates or updates CoreDNS and kube-proxy (init, and upgrade apply for the new version).
pub async fn addons(
    client: &Client,
    cluster: &config::ClusterConfiguration,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), Failure> {
    let dns_ip = dns_ip(cluster);
    let repo = cluster
        .image_repository
        .clone()
        .unwrap_or_else(|| "registry.k8s.io".into());
    let ns = "/api/v1/namespaces/kube-system";
    let objs = [
        (
            format!("{ns}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa\n    forward . /etc/resolv.conf\n    cache 30\n}\n"}}),
        ),
        (
            "/apis/apps/v1/namespaces/kube-system/deployments".to_string(),
            coredns_deployment(&repo),
        ),
        (
            format!("{ns}/services"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": dns_ip, "selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
        ),
        (
            format!("{ns}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"}}),
        ),
        (
            "/apis/apps/v1/namespaces/kube-system/daemonsets".to_string(),
            kube_proxy_daemonset(
                &repo,
                cluster.kubernetes_version.as_deref().unwrap_or_default(),
            ),
        ),
    ];
    let (dns, proxy) = (
        !skip("addon/coredns") && !skip("addon"),
        !skip("addon/kube-proxy") && !skip("addon"),
    );
    for (i, (path, obj)) in objs.into_iter().enumerate() {
        // The first three objects are CoreDNS, the last two kube-proxy.
        if (i < 3 && !dns) || (i >= 3 && !proxy) {
            continue;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let r = client.create_or_update(&path, &name, &obj).await;
        if !r.ok() {
            return fail("addon", r.message());
        }
    }
    if dns {
        println!("[addons] Applied essential addon: CoreDNS");
    }
    if proxy {
        println!("[addons] Applied essential addon: kube-proxy");
    }
    Ok(())
}

pub fn control_plane(
    cfg: &config::ClusterConfiguration,
    node: &str,
    advertise: &str,
    port: u16,
    initial_cluster: String,
    existing: bool,
) -> manifests::ControlPlane {
    manifests::ControlPlane {
        node_name: node.to_string(),
        advertise_address: advertise.to_string(),
        bind_port: port,
        service_subnet: cfg
            .networking
            .service_subnet
            .clone()
            .unwrap_or_else(|| config::DEFAULT_SERVICE_SUBNET.into()),
        pod_subnet: cfg.networking.pod_subnet.clone(),
        etcd_data_dir: cfg
            .etcd
            .local
            .as_ref()
            .and_then(|l| l.data_dir.clone())
            .unwrap_or_else(|| "/var/lib/etcd".into()),
        etcd_initial_cluster: initial_cluster,
        etcd_existing: existing,
        version: cfg
            .kubernetes_version
            .clone()
            .unwrap_or_else(|| crate::VERSION.into()),
        image_repository: cfg
            .image_repository
            .clone()
            .unwrap_or_else(|| "registry.k8s.io".into()),
        cluster_name: cfg
            .cluster_name
            .clone()
            .unwrap_or_else(|| "kubernetes".into()),
        apiserver_args: cfg.api_server.extra_args.clone(),
        controller_manager_args: cfg.controller_manager.extra_args.clone(),
        scheduler_args: cfg.scheduler.extra_args.clone(),
        etcd_args: cfg
            .etcd
            .local
            .as_ref()
            .map(|l| l.extra_args.clone())
            .unwrap_or_default(),
    }
}

/// Writes the control-plane static Pod manifests (not etcd).
pub fn control_plane_phase(env: &Env, cp: &manifests::ControlPlane) -> Result<(), Failure> {
    println!("[control-plane] Using manifest folder \"{MANIFESTS_DIR}\"");
    for (name, text) in [
        ("kube-apiserver", manifests::apiserver(cp)),
        ("kube-controller-manager", manifests::controller_manager(cp)),
        ("kube-scheduler", manifests::scheduler(cp)),
    ] {
        println!("[control-plane] Creating static Pod manifest for \"{name}\"");
        env.write(
            &format!("{MANIFESTS_DIR}/{name}.yaml"),
            text.as_bytes(),
            0o600,
        )?;
    }
    Ok(())
}

fn skipped(cfg: &InitConfig, p: &Parsed, phase: &str) -> bool {
    cfg.init
        .skip_phases
        .iter()
        .flatten()
        .chain(p.list("skip-phases").iter())
        .any(|s| s == phase)
}

pub async fn run(p: &Parsed, env: &Env) -> Result<(), Failure> {
    let cfg = load(p, env)?;
    let version = cfg.cluster.kubernetes_version.clone().unwrap_or_default();
    println!("[init] Using Kubernetes version: {version}");
    let np = node_params(&cfg);
    println!("[preflight] Running pre-flight checks");
    run_preflight(
        &preflight::init_checks(&np, false),
        p,
        cfg.init
            .node_registration
            .ignore_preflight_errors
            .as_deref()
            .unwrap_or_default(),
        env,
    )?;
    if p.on("dry-run") || cfg.init.dry_run == Some(true) {
        // The stand-in's dry run validates and runs preflight, then changes nothing.
        println!("[preflight] Would pull the required images (like 'kubeadm config images pull')");
        println!("[dryrun] Finished dry-running successfully. Above are the resources that would be created");
        return Ok(());
    }
    println!("[preflight] Pulling images required for setting up a Kubernetes cluster");
    println!("[preflight] This might take a minute or two, depending on the speed of your internet connection");
    println!("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'");
    let dir = cfg
        .cluster
        .certificates_dir
        .clone()
        .unwrap_or_else(|| "/etc/kubernetes/pki".into());
    let node = np.node_name.clone();
    let adv = advertise(&cfg);
    let params = pki_params(&cfg.cluster, &node, &adv)?;
    certs_phase(env, &dir, &params)?;
    let ep = cluster_endpoint(&cfg);
    let local = endpoint(None, &adv, port(&cfg));
    kubeconfig_phase(
        env,
        &dir,
        &node,
        &ep,
        &local,
        &[
            "admin.conf",
            "super-admin.conf",
            "kubelet.conf",
            "controller-manager.conf",
            "scheduler.conf",
        ],
    )?;
    let cp = control_plane(
        &cfg.cluster,
        &node,
        &adv,
        port(&cfg),
        format!("{node}=https://{}", endpoint(None, &adv, 2380)),
        false,
    );
    println!("[etcd] Creating static Pod manifest for local etcd in \"{MANIFESTS_DIR}\"");
    env.mkdir_private(&cp.etcd_data_dir)?;
    env.write(
        &format!("{MANIFESTS_DIR}/etcd.yaml"),
        manifests::etcd(&cp).as_bytes(),
        0o600,
    )?;
    control_plane_phase(env, &cp)?;
    let kubelet = kobj::kubelet_configuration(
        cfg.kubelet.as_ref(),
        cfg.cluster
            .networking
            .dns_domain
            .as_deref()
            .unwrap_or("cluster.local"),
        &dns_ip(&cfg.cluster),
    );
    kubelet_start(
        env,
        &kubelet,
        &node,
        &env.host_defaults().hostname,
        &cfg.init.node_registration,
        false,
    )?;
    let admin = Client::from_kubeconfig(
        &env.read(ADMIN_CONF)
            .ok_or("failed to load admin kubeconfig")?,
    )
    .map_err(Failure::from)?;
    let timeouts = cfg.init.timeouts.clone().unwrap_or_default();
    wait_control_plane(
        &admin,
        timeout(timeouts.kubelet_health_check.as_deref(), 240),
        timeout(
            timeouts.control_plane_component_health_check.as_deref(),
            240,
        ),
    )
    .await?;
    println!("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace");
    let cms = format!("/api/v1/namespaces/{KUBE_SYSTEM}/configmaps");
    let r = admin
        .create_or_update(
            &cms,
            "kubeadm-config",
            &kobj::kubeadm_config_map(&cfg.cluster),
        )
        .await;
    if !r.ok() {
        return fail(
            "upload-config/kubeadm",
            format!(
                "error uploading the kubeadm ClusterConfiguration: {}",
                r.message()
            ),
        );
    }
    println!("[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster");
    let r = admin
        .create_or_update(&cms, "kubelet-config", &kobj::kubelet_config_map(&kubelet))
        .await;
    if !r.ok() {
        return fail("upload-config/kubelet", r.message());
    }
    let mut cert_key = cfg.init.certificate_key.clone().filter(|k| !k.is_empty());
    if p.on("upload-certs") && !skipped(&cfg, p, "upload-certs") {
        let key = cert_key
            .get_or_insert_with(pki::random_certificate_key)
            .clone();
        upload_certs(&admin, env, &dir, &key).await?;
        if !p.on("skip-certificate-key-print") {
            println!("[upload-certs] Using certificate key:\n{key}");
        }
    } else {
        println!("[upload-certs] Skipping phase. Please see --upload-certs");
    }
    mark_control_plane(
        &admin,
        &node,
        cfg.init.node_registration.taints.as_ref(),
        timeout(timeouts.kubernetes_api_call.as_deref(), 240),
    )
    .await?;
    let ca_pem = env.read(&format!("{dir}/ca.crt")).unwrap_or_default();
    if !skipped(&cfg, p, "bootstrap-token") {
        bootstrap_tokens(&admin, &cfg, &ca_pem, p.on("skip-token-print")).await?;
    }
    println!("[kubelet-finalize] Updating \"/etc/kubernetes/kubelet.conf\" to point to a rotatable kubelet client certificate and key");
    addons(&admin, &cfg.cluster, &|ph| skipped(&cfg, p, ph)).await?;
    let hash = pki::ca_cert_hash(&ca_pem).map_err(|e| e.to_string())?;
    let token = cfg
        .init
        .bootstrap_tokens
        .as_ref()
        .and_then(|t| t.first())
        .map(|t| t.token.clone())
        .unwrap_or_default();
    let token = if p.on("skip-token-print") {
        "<value withheld>".to_string()
    } else {
        token
    };
    print_success(
        &ep,
        &token,
        &hash,
        cfg.cluster
            .control_plane_endpoint
            .as_deref()
            .is_some_and(|e| !e.is_empty()),
        p.on("upload-certs").then_some(cert_key).flatten(),
        p.on("skip-certificate-key-print"),
    );
    Ok(())
}

fn print_success(
    ep: &str,
    token: &str,
    hash: &str,
    has_endpoint: bool,
    cert_key: Option<String>,
    skip_key: bool,
) {
    println!("\nYour Kubernetes control-plane has initialized successfully!\n");
    println!("To start using your cluster, you need to run the following as a regular user:\n");
    println!("  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n");
    println!("Alternatively, if you are the root user, you can run:\n\n  export KUBECONFIG=/etc/kubernetes/admin.conf\n");
    println!("You should now deploy a pod network to the cluster.\nRun \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:\n  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n");
    let join =
        format!("kubeadm join {ep} --token {token} \\\n\t--discovery-token-ca-cert-hash {hash} ");
    if has_endpoint {
        match cert_key {
            Some(k) => {
                let k = if skip_key { "<value withheld>".to_string() } else { k };
                println!("You can now join any number of control-plane nodes running the following command on each as root:\n\n  {join}\\\n\t--control-plane --certificate-key {k}\n");
                println!("Please note that the certificate-key gives access to cluster sensitive data, keep it secret!\nAs a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use\n\"kubeadm init phase upload-certs --upload-certs\" to reload certs afterward.\n");
            }
            None => println!("You can now join any number of control-plane nodes by copying certificate authorities\nand service account keys on each node and then running the following as root:\n\n  {join}\\\n\t--control-plane \n"),
        }
        println!("Then you can join any number of worker nodes by running the following on each as root:\n\n{join}");
    } else {
        println!("Then you can join any number of worker nodes by running the following on each as root:\n\n{join}");
    }
}
