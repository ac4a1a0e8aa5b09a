//! `kubeadm join`: token discovery with CA pinning, kubeadm-config download,
//! control-plane certificate download, learner etcd member add and promote,
//! and the kubelet's TLS bootstrap.

use super::cli::Parsed;
use super::init;
use super::objects::{self as kobj, verify_jws, KUBE_SYSTEM};
use super::{endpoint, fail, manifests, timeout, warn, Env, Failure, ADMIN_CONF, MANIFESTS_DIR};
use crate::apiserver::etcd::{Etcd, EtcdError};
use crate::client::Client;
use crate::config::{self, BootstrapTokenDiscovery, ClusterConfiguration, JoinConfiguration};
use crate::pki::{self, kubeconfig};
use crate::preflight;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn config_from_flags(p: &Parsed) -> String {
    let token = p.get("discovery-token").or(p.get("token")).unwrap_or("");
    let mut j = json!({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {"token": token, "apiServerEndpoint": p.args.first().cloned().unwrap_or_default(),
            "caCertHashes": p.list("discovery-token-ca-cert-hash"), "unsafeSkipCAVerification": p.on("discovery-token-unsafe-skip-ca-verification")}},
        "nodeRegistration": {}});
    if let Some(t) = p.get("tls-bootstrap-token").or(p.get("token")) {
        j["discovery"]["tlsBootstrapToken"] = json!(t);
    }
    if let Some(n) = p.get("node-name") {
        j["nodeRegistration"]["name"] = json!(n);
    }
    if let Some(s) = p.get("cri-socket") {
        j["nodeRegistration"]["criSocket"] = json!(s);
    }
    if p.on("control-plane") {
        j["controlPlane"] = json!({"localAPIEndpoint": {}});
        if let Some(a) = p.get("apiserver-advertise-address") {
            j["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] = json!(a);
        }
        if let Some(k) = p.get("certificate-key") {
            j["controlPlane"]["certificateKey"] = json!(k);
        }
    }
    j.to_string()
}

/// Validates caCertHashes' format (pubkeypin.Set.Allow).
fn check_hash_format(h: &str) -> Result<(), String> {
    match h.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(())
        }
        Some(("sha256", hex)) => Err(format!(
            "invalid hash \"{h}\", expected a 32 byte SHA-256 hash, found {} bytes",
            hex.len() / 2
        )),
        _ => Err(format!(
            "invalid hash \"{h}\", expected \"format:hex-value\". Known format(s) are: sha256"
        )),
    }
}

/// Token discovery: fetch cluster-info without trusting the server, check the
/// token's JWS signature and pin the CA by hash. Returns (server URL, CA PEM).
pub async fn discover(
    bt: &BootstrapTokenDiscovery,
    wait: Duration,
) -> Result<(String, String), Failure> {
    let (id, secret) = bt.token.split_once('.').unwrap_or(("", ""));
    let hashes = bt.ca_cert_hashes.clone().unwrap_or_default();
    for h in &hashes {
        check_hash_format(h).map_err(|e| Failure {
            phase: Some("preflight".into()),
            msg: format!("couldn't validate the identity of the API Server: {e}"),
        })?;
    }
    let insecure = Client::insecure(&format!("https://{}", bt.api_server_endpoint));
    let path = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < wait {
        let a = insecure.get(path).await;
        if !a.ok() {
            last = format!(
                "failed to request the cluster-info ConfigMap: {}",
                a.message()
            );
            tokio::time::sleep(Duration::from_secs(5).min(wait.saturating_sub(start.elapsed())))
                .await;
            continue;
        }
        let kc = a.body["data"]["kubeconfig"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(sig) = a.body["data"][format!("jws-kubeconfig-{id}")]
            .as_str()
            .map(String::from)
        else {
            println!("[discovery] The cluster-info ConfigMap does not yet contain a JWS signature for token ID \"{id}\", will try again");
            last = format!("could not find a JWS signature in the cluster-info ConfigMap for token ID \"{id}\"");
            tokio::time::sleep(Duration::from_secs(5).min(wait.saturating_sub(start.elapsed())))
                .await;
            continue;
        };
        if !verify_jws(&kc, &sig, id, secret) {
            return fail("preflight", "couldn't validate the identity of the API Server: failed to verify JWS signature of received cluster info object, can't trust this API Server");
        }
        let parsed = kubeconfig::parse(&kc).map_err(|e| {
            format!("couldn't parse the kubeconfig file in the cluster-info ConfigMap: {e}")
        })?;
        if bt.unsafe_skip_ca_verification != Some(true) {
            let h = pki::ca_cert_hash(&parsed.ca_pem).map_err(|e| e.to_string())?;
            if !hashes.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
                return fail("preflight", format!("couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{h}\" are pinned"));
            }
        }
        // Now that the CA is trusted, fetch again over a verified connection.
        let secure = Client::with_token(
            &format!("https://{}", bt.api_server_endpoint),
            &parsed.ca_pem,
            &bt.token,
        )?;
        let again = secure.get(path).await;
        if !again.ok() {
            return fail("preflight", format!("couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: {}", again.message()));
        }
        return Ok((parsed.server, parsed.ca_pem));
    }
    fail(
        "preflight",
        format!("couldn't validate the identity of the API Server: {last}"),
    )
}

/// kube-system/kubeadm-config as a ClusterConfiguration.
pub async fn cluster_configuration(c: &Client) -> Result<ClusterConfiguration, Failure> {
    let a = c
        .get(&format!(
            "/api/v1/namespaces/{KUBE_SYSTEM}/configmaps/kubeadm-config"
        ))
        .await;
    if !a.ok() {
        return fail(
            "preflight",
            format!(
                "unable to fetch the kubeadm-config ConfigMap: failed to get config map: {}",
                a.message()
            ),
        );
    }
    let text = a.body["data"]["ClusterConfiguration"]
        .as_str()
        .unwrap_or("");
    let v: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("unable to fetch the kubeadm-config ConfigMap: {e}"))?;
    serde_json::from_value(v)
        .map_err(|e| Failure::from(format!("unable to fetch the kubeadm-config ConfigMap: {e}")))
}

fn etcd_client(env: &Env, endpoints: Vec<String>) -> Result<Etcd, Failure> {
    let r = |f: &str| {
        std::fs::read(env.path(&format!("/etc/kubernetes/pki/{f}")))
            .map_err(|e| format!("open /etc/kubernetes/pki/{f}: {e}"))
    };
    Etcd::new(
        endpoints,
        &r("etcd/ca.crt")?,
        &r("apiserver-etcd-client.crt")?,
        &r("apiserver-etcd-client.key")?,
    )
    .map_err(Failure::from)
}

/// etcd client URLs of the existing members, from the etcd mirror Pods' annotation.
async fn etcd_endpoints(admin: &Client) -> Vec<String> {
    let pods = admin
        .get("/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd")
        .await;
    pods.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p.pointer("/metadata/annotations/kubeadm.kubernetes.io~1etcd.advertise-client-urls")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

/// Adds this node as an etcd learner and writes its etcd manifest; then
/// promotes it once in sync (one learner at a time: etcd refuses a second).
async fn join_etcd(
    env: &Env,
    admin: &Client,
    cp: &mut manifests::ControlPlane,
    api_timeout: Duration,
) -> Result<(), Failure> {
    let endpoints = etcd_endpoints(admin).await;
    if endpoints.is_empty() {
        return fail("control-plane-join/etcd", "error creating local etcd static pod manifest file: etcd cluster is not healthy: no etcd endpoints found");
    }
    let etcd = etcd_client(env, endpoints)?;
    let peer = format!("https://{}", endpoint(None, &cp.advertise_address, 2380));
    let start = Instant::now();
    let (me, members) = loop {
        let existing = etcd.members().await;
        if let Ok(ms) = &existing {
            if let Some(m) = ms.iter().find(|m| m.peer_urls.contains(&peer)) {
                break (m.clone(), ms.clone());
            }
        }
        match etcd.member_add(&peer, true).await {
            Ok(x) => break x,
            // kubeadm retries every failed add (etcd refuses one with `unhealthy cluster`
            // until its leader has been connected to every member for 5 s) every 500 ms
            // for up to its etcd API timeout.
            Err(e) if start.elapsed() < api_timeout => {
                eprintln!("[etcd] retrying member add: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return fail(
                    "control-plane-join/etcd",
                    format!("error creating local etcd static pod manifest file: {e}"),
                )
            }
        }
    };
    println!("[etcd] Announced new etcd member joining to the existing etcd cluster");
    let mut initial: Vec<String> = members
        .iter()
        .filter(|m| !m.peer_urls.is_empty())
        .map(|m| {
            format!(
                "{}={}",
                if m.id == me.id || m.name.is_empty() {
                    cp.node_name.clone()
                } else {
                    m.name.clone()
                },
                m.peer_urls[0]
            )
        })
        .collect();
    initial.sort();
    initial.dedup();
    cp.etcd_initial_cluster = initial.join(",");
    cp.etcd_existing = true;
    println!("[etcd] Creating static Pod manifest for \"etcd\"");
    env.mkdir_private(&cp.etcd_data_dir)?;
    env.write(
        &format!("{MANIFESTS_DIR}/etcd.yaml"),
        manifests::etcd(cp).as_bytes(),
        0o600,
    )?;
    println!("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s");
    let start = Instant::now();
    loop {
        match etcd.member_promote(me.id).await {
            Ok(()) => return Ok(()),
            Err(EtcdError::Server { message, .. }) if message.contains("not a learner") => {
                return Ok(())
            }
            Err(e) if start.elapsed() > api_timeout => {
                return fail(
                    "control-plane-join/etcd",
                    format!("error creating local etcd static pod manifest file: {e}"),
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

pub async fn run(p: &Parsed, env: &Env) -> Result<(), Failure> {
    if p.get("config").is_none() && p.args.is_empty() {
        return Err(Failure::from(
            "discovery: Invalid value: \"\": bootstrapToken or file must be set".to_string(),
        ));
    }
    let text = match p.get("config") {
        Some(path) => super::read_config(env, path)?,
        None => config_from_flags(p),
    };
    let host = env.host_defaults();
    let (j, warnings) = config::load_join(&text, &host, false).map_err(|e| e.0)?;
    for w in &warnings {
        warn(w);
    }
    run_join(p, env, &j, &host.hostname).await
}

async fn run_join(
    p: &Parsed,
    env: &Env,
    j: &JoinConfiguration,
    hostname: &str,
) -> Result<(), Failure> {
    let node = j.node_registration.name.clone().unwrap_or_default();
    let cp_cfg = j.control_plane.clone();
    let advertise = cp_cfg
        .as_ref()
        .and_then(|c| c.local_api_endpoint.advertise_address.clone())
        .unwrap_or_else(|| env.host_defaults().advertise_address);
    let bind_port = cp_cfg
        .as_ref()
        .and_then(|c| c.local_api_endpoint.bind_port)
        .unwrap_or(6443) as u16;
    let mut np = preflight::NodeParams {
        node_name: node.clone(),
        cri_socket: j.node_registration.cri_socket.clone().unwrap_or_default(),
        kubernetes_version: crate::VERSION.into(),
        advertise_address: advertise.clone(),
        bind_port,
        service_subnet: config::DEFAULT_SERVICE_SUBNET.into(),
        etcd_data_dir: "/var/lib/etcd".into(),
    };
    let ignore_cfg = j
        .node_registration
        .ignore_preflight_errors
        .clone()
        .unwrap_or_default();
    println!("[preflight] Running pre-flight checks");
    init::run_preflight(&preflight::join_checks(&np), p, &ignore_cfg, env)?;
    let t = j.timeouts.clone().unwrap_or_default();
    let Some(bt) = j.discovery.bootstrap_token.clone() else {
        return fail(
            "preflight",
            "file-based discovery is not supported by the stand-in",
        );
    };
    let (server, ca_pem) = discover(
        &bt,
        timeout(
            t.discovery.as_deref().or(j.discovery.timeout.as_deref()),
            300,
        ),
    )
    .await?;
    println!("[preflight] Reading configuration from the cluster...");
    println!("[preflight] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'");
    let tls_token = j
        .discovery
        .tls_bootstrap_token
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| bt.token.clone());
    let tok = Client::with_token(&server, &ca_pem, &tls_token)?;
    let cluster = cluster_configuration(&tok).await?;
    if p.on("dry-run") || j.dry_run == Some(true) {
        // The stand-in's dry run stops after discovery and reading the cluster's config.
        println!("[dryrun] Finished dry-running successfully. Above are the resources that would be created");
        return Ok(());
    }
    let existing = tok.get(&format!("/api/v1/nodes/{node}")).await;
    if existing.ok() && crate::apiserver::objects::node_status(&existing.body).starts_with("Ready")
    {
        return fail("kubelet-start", format!("a Node with name \"{node}\" and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node"));
    }
    let dir = cluster
        .certificates_dir
        .clone()
        .unwrap_or_else(|| "/etc/kubernetes/pki".into());
    let mut control_plane = None;
    if let Some(jcp) = &cp_cfg {
        if cluster
            .control_plane_endpoint
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            return fail("preflight", "\nOne or more conditions for hosting a new control plane instance is not satisfied.\n\nunable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n");
        }
        np.service_subnet = cluster
            .networking
            .service_subnet
            .clone()
            .unwrap_or_else(|| config::DEFAULT_SERVICE_SUBNET.into());
        np.kubernetes_version = cluster.kubernetes_version.clone().unwrap_or_default();
        np.etcd_data_dir = cluster
            .etcd
            .local
            .as_ref()
            .and_then(|l| l.data_dir.clone())
            .unwrap_or_else(|| "/var/lib/etcd".into());
        println!("[preflight] Running pre-flight checks before initializing the new control plane instance");
        init::run_preflight(&preflight::init_checks(&np, true), p, &ignore_cfg, env)?;
        println!("[preflight] Pulling images required for setting up a Kubernetes cluster");
        println!("[preflight] This might take a minute or two, depending on the speed of your internet connection");
        println!("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'");
        if let Some(key) = jcp.certificate_key.as_deref().filter(|k| !k.is_empty()) {
            download_certs(&tok, env, &dir, key).await?;
        }
        if env.read(&format!("{dir}/ca.key")).is_none() {
            return fail("control-plane-prepare/certs", format!("error creating PKI assets: failure loading ca certificate authority: couldn't load the certificate file {dir}/ca.crt: open {dir}/ca.crt: no such file or directory"));
        }
        let params = init::pki_params(&cluster, &node, &advertise)?;
        init::certs_phase(env, &dir, &params)?;
        let ep = endpoint(
            cluster.control_plane_endpoint.as_deref(),
            &advertise,
            bind_port,
        );
        let local = endpoint(None, &advertise, bind_port);
        init::kubeconfig_phase(
            env,
            &dir,
            &node,
            &ep,
            &local,
            &["admin.conf", "controller-manager.conf", "scheduler.conf"],
        )?;
        let cp = init::control_plane(&cluster, &node, &advertise, bind_port, String::new(), true);
        init::control_plane_phase(env, &cp)?;
        control_plane = Some(cp);
    }
    // kubelet-start: bootstrap kubeconfig, config from the cluster, TLS bootstrap.
    let boot = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\n  name: tls-bootstrap-token-user@kubernetes\ncurrent-context: tls-bootstrap-token-user@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: {tls_token}\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca_pem)
    );
    env.write(
        "/etc/kubernetes/bootstrap-kubelet.conf",
        boot.as_bytes(),
        0o600,
    )?;
    env.write("/etc/kubernetes/pki/ca.crt", ca_pem.as_bytes(), 0o644)?;
    let kcm = tok
        .get(&format!(
            "/api/v1/namespaces/{KUBE_SYSTEM}/configmaps/kubelet-config"
        ))
        .await;
    let kubelet: Value = kcm.body["data"]["kubelet"]
        .as_str()
        .and_then(|t| serde_saphyr::from_str(t).ok())
        .unwrap_or_else(|| {
            kobj::kubelet_configuration(
                None,
                cluster
                    .networking
                    .dns_domain
                    .as_deref()
                    .unwrap_or("cluster.local"),
                &init::dns_ip(&cluster),
            )
        });
    init::kubelet_start(
        env,
        &kubelet,
        &node,
        hostname,
        &j.node_registration,
        control_plane.is_none(),
    )?;
    init::wait_kubelet(timeout(t.kubelet_health_check.as_deref(), 240)).await?;
    println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
    let start = Instant::now();
    let tls_wait = timeout(t.tls_bootstrap.as_deref(), 300);
    while !env.path("/etc/kubernetes/kubelet.conf").exists() {
        if start.elapsed() > tls_wait {
            return fail("kubelet-start", "timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = std::fs::remove_file(env.path("/etc/kubernetes/bootstrap-kubelet.conf"));
    if let Some(mut cp) = control_plane {
        let admin = Client::from_kubeconfig(
            &env.read(ADMIN_CONF)
                .ok_or("failed to load admin kubeconfig")?,
        )
        .map_err(Failure::from)?;
        join_etcd(
            env,
            &admin,
            &mut cp,
            timeout(t.etcd_api_call.as_deref(), 120),
        )
        .await?;
        init::mark_control_plane(
            &admin,
            &node,
            j.node_registration.taints.as_ref(),
            timeout(t.kubernetes_api_call.as_deref(), 240),
        )
        .await?;
        println!("\nThis node has joined the cluster and a new control plane instance was created:\n\n* Certificate signing request was sent to apiserver and approval was received.\n* The Kubelet was informed of the new secure connection details.\n* Control plane label and taint were applied to the new node.\n* The Kubernetes control plane instances scaled up.\n* A new etcd member was added to the local/stacked etcd cluster.\n\nTo start administering your cluster from this node, you need to run the following as a regular user:\n\n\tmkdir -p $HOME/.kube\n\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n\tsudo chown $(id -u):$(id -g) $HOME/.kube/config\n\nRun 'kubectl get nodes' to see this node join the cluster.\n");
    } else {
        println!("\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response was received.\n* The Kubelet was informed of the new secure connection details.\n\nRun 'kubectl get nodes' on the control-plane to see this node join the cluster.\n");
    }
    Ok(())
}

/// Downloads and decrypts kube-system/kubeadm-certs.
pub async fn download_certs(
    tok: &Client,
    env: &Env,
    dir: &str,
    key_hex: &str,
) -> Result<(), Failure> {
    println!("[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
    let phase = "control-plane-prepare/download-certs";
    let key = hex::decode(key_hex).map_err(|e| Failure {
        phase: Some(phase.into()),
        msg: format!("error downloading certs: error decoding certificate key: {e}"),
    })?;
    let a = tok
        .get(&format!(
            "/api/v1/namespaces/{KUBE_SYSTEM}/secrets/kubeadm-certs"
        ))
        .await;
    // The Secret lives as long as its 2 h owner token; past that it is gone.
    let expired = a.body["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(crate::apiserver::objects::parse_rfc3339)
        .is_some_and(|t| {
            (time::OffsetDateTime::now_utc() - t).whole_seconds()
                > kobj::UPLOAD_CERTS_TTL_SECS as i64
        });
    if a.code == 404 || expired {
        return fail(phase, "error downloading certs: error downloading the secret: Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one");
    }
    if !a.ok() {
        return fail(
            phase,
            format!(
                "error downloading certs: error downloading the secret: {}",
                a.message()
            ),
        );
    }
    let files = kobj::decode_kubeadm_certs(&a.body, &key).map_err(|e| Failure {
        phase: Some(phase.into()),
        msg: format!("error downloading certs: {e}"),
    })?;
    for (path, data) in files {
        let mode = if path.ends_with(".key") { 0o600 } else { 0o644 };
        env.write(&format!("{dir}/{path}"), &data, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_formats() {
        assert!(check_hash_format(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert_eq!(
            check_hash_format("md5:abc").unwrap_err(),
            "invalid hash \"md5:abc\", expected \"format:hex-value\". Known format(s) are: sha256"
        );
        assert!(check_hash_format("sha256:abcd")
            .unwrap_err()
            .contains("expected a 32 byte SHA-256 hash, found 2 bytes"));
    }
}
