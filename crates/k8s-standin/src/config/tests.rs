use super::*;

fn host() -> HostDefaults {
    HostDefaults {
        hostname: "CP1".into(),
        advertise_address: "10.0.0.11".into(),
        kubeadm_version: "v1.31.0".into(),
    }
}

const GOOD: &str = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 24h0m0s
certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
nodeRegistration:
  name: cp1
  criSocket: unix:///var/run/containerd/containerd.sock
  kubeletExtraArgs:
  - name: node-ip
    value: 10.0.0.11
  ignorePreflightErrors: [NumCPU]
localAPIEndpoint:
  advertiseAddress: 10.0.0.11
  bindPort: 6443
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.0
controlPlaneEndpoint: "10.0.0.10:6443"
networking:
  podSubnet: 192.168.0.0/16
  serviceSubnet: 10.96.0.0/12
apiServer:
  certSANs: [10.0.0.10, k8s.example.com]
  extraArgs:
  - name: audit-log-maxage
    value: "30"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
"#;

#[test]
fn parses_full_v1beta4_init() {
    let c = load_init(GOOD, &host(), true).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.init.node_registration.name.as_deref(), Some("cp1"));
    assert_eq!(
        c.cluster.control_plane_endpoint.as_deref(),
        Some("10.0.0.10:6443")
    );
    assert_eq!(
        c.cluster.api_server.extra_args.pairs(),
        vec![("audit-log-maxage".into(), "30".into())]
    );
    assert_eq!(c.kubelet.unwrap()["cgroupDriver"], "systemd");
    assert_eq!(
        c.cluster.networking.dns_domain.as_deref(),
        Some("cluster.local")
    );
    assert_eq!(
        c.init.bootstrap_tokens.unwrap()[0].groups.as_ref().unwrap()[0],
        DEFAULT_TOKEN_GROUP
    );
}

#[test]
fn defaults_without_cluster_configuration() {
    let c = load_init(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n",
        &host(),
        true,
    )
    .unwrap();
    assert_eq!(c.init.node_registration.name.as_deref(), Some("cp1"));
    assert_eq!(
        c.init.local_api_endpoint.advertise_address.as_deref(),
        Some("10.0.0.11")
    );
    assert_eq!(
        c.cluster.networking.service_subnet.as_deref(),
        Some("10.96.0.0/12")
    );
    let t = &c.init.bootstrap_tokens.unwrap()[0];
    assert!(validate::is_valid_token(&t.token));
    assert_eq!(t.ttl.as_deref(), Some("24h0m0s"));
}

#[test]
fn unknown_fields_warn_in_init_and_fail_when_strict() {
    let text = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nfoo: 1\nnodeRegistration:\n  bar: x\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\n  baz: 1\n";
    let c = load_init(text, &host(), false).unwrap();
    assert_eq!(
        c.warnings,
        vec!["error unmarshaling configuration schema.GroupVersionKind{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"InitConfiguration\"}: strict decoding error: unknown field \"bootstrapTokens[0].baz\", unknown field \"foo\", unknown field \"nodeRegistration.bar\"".to_string()]
    );
    let e = load_init(text, &host(), true).unwrap_err();
    assert!(
        e.0.contains("strict decoding error: unknown field \"bootstrapTokens[0].baz\""),
        "{e}"
    );
}

#[test]
fn version_specific_fields() {
    // timeouts exist only in v1beta4; timeoutForControlPlane only in v1beta3.
    let v3 =
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\ntimeouts:\n  discovery: 5m\n";
    let e = load_init(v3, &host(), true).unwrap_err();
    assert!(e.0.contains("unknown field \"timeouts\""), "{e}");
    let v4 = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 4m\n";
    let e = load_init(v4, &host(), true).unwrap_err();
    assert!(
        e.0.contains("unknown field \"apiServer.timeoutForControlPlane\""),
        "{e}"
    );
    let ok3 = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 4m\n  extraArgs:\n    audit-log-maxage: \"30\"\n";
    let c = load_init(ok3, &host(), true).unwrap();
    assert!(c.warnings[0].contains("deprecated API spec: \"kubeadm.k8s.io/v1beta3\""));
}

#[test]
fn extra_args_shape_per_version() {
    let v4map = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    foo: bar\n";
    let e = load_init(v4map, &host(), false).unwrap_err();
    assert!(e.0.ends_with("json: cannot unmarshal object into Go struct field APIServer.apiServer.extraArgs of type []v1beta4.Arg"), "{e}");
    let v3list = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - name: a\n    value: b\n";
    let e = load_init(v3list, &host(), false).unwrap_err();
    assert!(e.0.contains("cannot unmarshal array into Go struct field NodeRegistrationOptions.nodeRegistration.kubeletExtraArgs of type map[string]string"), "{e}");
}

#[test]
fn rejects_old_and_unknown_api_versions() {
    let e = load_init(
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n",
        &host(),
        false,
    )
    .unwrap_err();
    assert!(e.0.contains("uses an old API spec"), "{e}");
    let e = load_init(
        "apiVersion: kubeadm.k8s.io/v9\nkind: InitConfiguration\n",
        &host(),
        false,
    )
    .unwrap_err();
    assert!(
        e.0.contains(
            "no kind \"InitConfiguration\" is registered for version \"kubeadm.k8s.io/v9\""
        ),
        "{e}"
    );
    let e = load_init("apiVersion: v1\nkind: ConfigMap\n", &host(), false).unwrap_err();
    assert_eq!(
        e.0,
        "no InitConfiguration or ClusterConfiguration kind was found in the configuration file"
    );
}

#[test]
fn bad_token_is_a_decode_error() {
    let t = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: ABCDEF.0123456789abcdef\n";
    let e = load_init(t, &host(), false).unwrap_err();
    assert_eq!(
        e.0,
        r#"the bootstrap token "ABCDEF.0123456789abcdef" was not of the form "^([a-z0-9]{6})\.([a-z0-9]{16})$""#
    );
}

#[test]
fn token_format() {
    assert!(validate::is_valid_token("abcdef.0123456789abcdef"));
    for bad in [
        "abcdef0123456789abcdef",
        "abcde.0123456789abcdef",
        "abcdef.0123456789abcde",
        "abcdef.0123456789abcdeF",
        "abc-ef.0123456789abcdef",
    ] {
        assert!(!validate::is_valid_token(bad), "{bad}");
    }
}

#[test]
fn bad_cidrs_and_endpoint() {
    let t = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: \"lb_bad:6443\"\nnetworking:\n  serviceSubnet: 10.96.0.0/33\n  podSubnet: 192.168.0.0/26\n";
    let e = load_init(t, &host(), false).unwrap_err();
    assert_eq!(
        e.0,
        "[networking.serviceSubnet: Invalid value: \"10.96.0.0/33\": couldn't parse subnet, networking.podSubnet: Invalid value: \"192.168.0.0/26\": the size of pod subnet with mask 26 is smaller than the size of node subnet with mask 24, controlPlaneEndpoint: Invalid value: \"lb_bad:6443\": host must be a valid IP address or a valid RFC-1123 DNS subdomain]"
    );
}

#[test]
fn certificate_key_checks() {
    assert_eq!(validate::certificate_key_error(&"ab".repeat(32)), None);
    assert_eq!(
        validate::certificate_key_error("abcd").as_deref(),
        Some("invalid certificate key size 2, the key must be an AES key of size 32")
    );
    assert!(validate::certificate_key_error(&"zz".repeat(32))
        .unwrap()
        .starts_with("certificate key decoding error: encoding/hex: invalid byte"));
    let t = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\ncertificateKey: abcd\n";
    let e = load_init(t, &host(), false).unwrap_err();
    assert!(
        e.0.starts_with("certificateKey: Invalid value: \"abcd\": invalid certificate key size 2"),
        "{e}"
    );
}

#[test]
fn kubernetes_version_floor() {
    let t = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.29.3\n";
    let e = load_init(t, &host(), false).unwrap_err();
    assert_eq!(e.0, "this version of kubeadm only supports deploying clusters with the control plane version >= 1.30.0. Current version: v1.29.3");
}

const JOIN_CP: &str = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    token: abcdef.0123456789abcdef
    apiServerEndpoint: 10.0.0.10:6443
    caCertHashes: ["sha256:00"]
controlPlane:
  localAPIEndpoint:
    advertiseAddress: 10.0.0.12
  certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
nodeRegistration:
  name: cp2
"#;

#[test]
fn parses_join() {
    let (j, w) = load_join(JOIN_CP, &host(), true).unwrap();
    assert!(w.is_empty());
    let cp = j.control_plane.unwrap();
    assert_eq!(cp.local_api_endpoint.bind_port, Some(6443));
    assert_eq!(
        j.ca_cert_path.as_deref(),
        Some("/etc/kubernetes/pki/ca.crt")
    );
}

#[test]
fn join_validation_errors() {
    let t = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: bad\n    apiServerEndpoint: 10.0.0.10\n";
    let e = load_join(t, &host(), false).unwrap_err();
    assert!(e.0.contains("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe"), "{e}");
    assert!(e.0.contains("discovery.bootstrapToken.token: Invalid value: \"bad\": the bootstrap token is invalid"), "{e}");
    assert!(e.0.contains("discovery.bootstrapToken.apiServerEndpoint: Invalid value: \"10.0.0.10\": address 10.0.0.10: missing port in address"), "{e}");
    let e = load_join(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n",
        &host(),
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.0,
        "discovery: Invalid value: \"\": bootstrapToken or file must be set"
    );
}
