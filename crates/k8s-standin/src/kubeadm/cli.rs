//! Cobra-like command-line parsing for the kubeadm stand-in.

use std::collections::BTreeMap;

/// A flag's name, its short form, and whether it takes no value.
pub struct FlagSpec {
    pub name: &'static str,
    pub short: Option<char>,
    pub boolean: bool,
}

const fn f(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        boolean: false,
    }
}
const fn b(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        boolean: true,
    }
}

const GLOBAL: &[FlagSpec] = &[
    f("v"),
    f("rootfs"),
    b("add-dir-header"),
    b("skip-headers"),
    b("help"),
];

/// The flags each command accepts (what kubeha and the seed's runbook use, and more).
pub fn flags_for(cmd: &[String]) -> Vec<FlagSpec> {
    let c: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut v: Vec<FlagSpec> = match c.as_slice() {
        ["init"] | ["init", "phase", "upload-certs"] => vec![
            f("config"),
            b("upload-certs"),
            f("certificate-key"),
            f("ignore-preflight-errors"),
            f("skip-phases"),
            b("skip-token-print"),
            b("skip-certificate-key-print"),
            b("dry-run"),
            f("apiserver-advertise-address"),
            f("apiserver-bind-port"),
            f("control-plane-endpoint"),
            f("pod-network-cidr"),
            f("service-cidr"),
            f("service-dns-domain"),
            f("kubernetes-version"),
            f("node-name"),
            f("cri-socket"),
            f("token"),
            f("token-ttl"),
            f("apiserver-cert-extra-sans"),
            f("cert-dir"),
            f("image-repository"),
            f("patches"),
            f("feature-gates"),
            f("kubeconfig"),
        ],
        ["init", "phase", "certs", "apiserver"] => vec![
            f("config"),
            f("cert-dir"),
            f("apiserver-advertise-address"),
            f("apiserver-cert-extra-sans"),
            f("control-plane-endpoint"),
            f("kubernetes-version"),
            f("service-cidr"),
            f("service-dns-domain"),
            b("dry-run"),
        ],
        ["join"] => vec![
            f("config"),
            b("control-plane"),
            f("certificate-key"),
            f("ignore-preflight-errors"),
            f("skip-phases"),
            b("dry-run"),
            f("token"),
            f("discovery-token"),
            f("discovery-token-ca-cert-hash"),
            b("discovery-token-unsafe-skip-ca-verification"),
            f("discovery-file"),
            f("tls-bootstrap-token"),
            f("node-name"),
            f("cri-socket"),
            f("apiserver-advertise-address"),
            f("apiserver-bind-port"),
            f("patches"),
        ],
        ["reset"] => vec![
            FlagSpec {
                name: "force",
                short: Some('f'),
                boolean: true,
            },
            f("config"),
            f("ignore-preflight-errors"),
            f("cri-socket"),
            f("cert-dir"),
            f("kubeconfig"),
            f("skip-phases"),
            b("dry-run"),
            b("cleanup-tmp-dir"),
        ],
        ["token", "create"] => vec![
            f("config"),
            f("ttl"),
            f("description"),
            f("usages"),
            f("groups"),
            b("print-join-command"),
            f("certificate-key"),
            f("kubeconfig"),
            b("dry-run"),
        ],
        ["token", "list"] => vec![
            f("kubeconfig"),
            FlagSpec {
                name: "output",
                short: Some('o'),
                boolean: false,
            },
            b("dry-run"),
        ],
        ["token", "delete"] | ["token", "generate"] => vec![f("kubeconfig"), b("dry-run")],
        ["certs", "certificate-key"] => vec![],
        ["certs", "renew"] => vec![f("cert-dir"), f("config"), f("kubeconfig")],
        ["certs", "check-expiration"] => vec![
            f("cert-dir"),
            f("config"),
            f("kubeconfig"),
            FlagSpec {
                name: "output",
                short: Some('o'),
                boolean: false,
            },
        ],
        ["config", "validate"] => vec![f("config"), b("allow-experimental-api")],
        ["version"] => vec![FlagSpec {
            name: "output",
            short: Some('o'),
            boolean: false,
        }],
        ["upgrade", "plan"] => vec![
            f("config"),
            f("ignore-preflight-errors"),
            f("kubeconfig"),
            b("allow-experimental-upgrades"),
            b("allow-release-candidate-upgrades"),
            b("print-config"),
            FlagSpec {
                name: "output",
                short: Some('o'),
                boolean: false,
            },
        ],
        ["upgrade", "apply"] => vec![
            f("config"),
            f("ignore-preflight-errors"),
            f("kubeconfig"),
            FlagSpec {
                name: "yes",
                short: Some('y'),
                boolean: true,
            },
            b("force"),
            b("certificate-renewal"),
            b("etcd-upgrade"),
            b("dry-run"),
            b("allow-experimental-upgrades"),
            b("print-config"),
            f("patches"),
        ],
        ["upgrade", "node"] => vec![
            f("config"),
            f("ignore-preflight-errors"),
            f("kubeconfig"),
            b("certificate-renewal"),
            b("etcd-upgrade"),
            b("dry-run"),
            f("patches"),
            f("skip-phases"),
        ],
        _ => vec![],
    };
    v.extend(GLOBAL.iter().map(|g| FlagSpec {
        name: g.name,
        short: g.short,
        boolean: g.boolean,
    }));
    v
}

/// Commands the stand-in knows (their leading words).
const COMMANDS: &[&[&str]] = &[
    &["init", "phase", "upload-certs"],
    &["init", "phase", "certs", "apiserver"],
    &["init"],
    &["join"],
    &["reset"],
    &["token", "create"],
    &["token", "list"],
    &["token", "delete"],
    &["token", "generate"],
    &["certs", "certificate-key"],
    &["certs", "check-expiration"],
    &["certs", "renew"],
    &["version"],
    &["config", "validate"],
    &["upgrade", "plan"],
    &["upgrade", "apply"],
    &["upgrade", "node"],
];

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub command: Vec<String>,
    pub flags: BTreeMap<String, String>,
    /// Flags given on the command line, in order (for --config mixing checks).
    pub set: Vec<String>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.flags.get(k).map(String::as_str)
    }
    pub fn on(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some(""))
    }
    /// A comma-separated flag as a list.
    pub fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses argv (without the program name). Err carries cobra's message.
pub fn parse(argv: &[String]) -> Result<Parsed, String> {
    let words: Vec<&str> = argv
        .iter()
        .map(String::as_str)
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let cmd = COMMANDS
        .iter()
        .find(|c| words.len() >= c.len() && words[..c.len()] == c[..])
        .ok_or_else(|| match words.first() {
            Some(w) => format!("unknown command \"{w}\" for \"kubeadm\""),
            None => "kubeadm: missing command".to_string(),
        })?;
    let mut p = Parsed {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let specs = flags_for(&p.command);
    let mut rest = argv.iter().skip(cmd.len()).peekable();
    while let Some(a) = rest.next() {
        let spec_and_value = if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spec = specs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("unknown flag: --{name}"))?;
            Some((spec, value))
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next().unwrap_or(' ');
            let spec = specs
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| format!("unknown shorthand flag: '{c}' in {a}"))?;
            let value = short
                .get(1..)
                .filter(|v| !v.is_empty())
                .map(|v| v.trim_start_matches('=').to_string());
            Some((spec, value))
        } else {
            p.args.push(a.clone());
            None
        };
        if let Some((spec, value)) = spec_and_value {
            let value = match (value, spec.boolean) {
                (Some(v), _) => v,
                (None, true) => "true".into(),
                (None, false) => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: --{}", spec.name))?,
            };
            p.set.push(spec.name.to_string());
            p.flags.insert(spec.name.to_string(), value);
        }
    }
    Ok(p)
}

/// kubeadm's ValidateMixedArguments: with --config only a few flags may be set.
pub fn check_config_mix(p: &Parsed) -> Result<(), String> {
    if p.get("config").is_none() {
        return Ok(());
    }
    let allowed = |n: &str| {
        matches!(
            n,
            "config"
                | "ignore-preflight-errors"
                | "dry-run"
                | "kubeconfig"
                | "upload-certs"
                | "print-join-command"
                | "rootfs"
                | "v"
                | "control-plane"
                | "patches"
                | "yes"
                | "force"
                | "certificate-renewal"
                | "etcd-upgrade"
                | "allow-experimental-upgrades"
                | "allow-release-candidate-upgrades"
                | "print-config"
                | "output"
        ) || n.starts_with("skip-")
    };
    let bad: Vec<&String> = p.set.iter().filter(|n| !allowed(n)).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "can not mix '--config' with arguments [{}]",
            bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_commands_and_flags() {
        let p = parse(&a(
            "init --config /etc/kubeadm/init.yaml --upload-certs --v=5",
        ))
        .unwrap();
        assert_eq!(p.command, ["init"]);
        assert_eq!(p.get("config"), Some("/etc/kubeadm/init.yaml"));
        assert!(p.on("upload-certs"));
        let p = parse(&a(
            "init phase upload-certs --upload-certs --certificate-key abc",
        ))
        .unwrap();
        assert_eq!(p.command, ["init", "phase", "upload-certs"]);
        let p = parse(&a("reset -f")).unwrap();
        assert!(p.on("force"));
        let p = parse(&a("version -o short")).unwrap();
        assert_eq!(p.get("output"), Some("short"));
        let p = parse(&a("token delete abcdef")).unwrap();
        assert_eq!(p.args, ["abcdef"]);
    }

    #[test]
    fn cobra_errors() {
        assert_eq!(parse(&a("init --foo")).unwrap_err(), "unknown flag: --foo");
        assert_eq!(
            parse(&a("frobnicate")).unwrap_err(),
            "unknown command \"frobnicate\" for \"kubeadm\""
        );
        assert_eq!(
            parse(&a("init --config")).unwrap_err(),
            "flag needs an argument: --config"
        );
    }

    #[test]
    fn config_mixing() {
        let p = parse(&a("init --config f --certificate-key k --upload-certs")).unwrap();
        assert_eq!(
            check_config_mix(&p).unwrap_err(),
            "can not mix '--config' with arguments [certificate-key]"
        );
        let p = parse(&a("join --config f --ignore-preflight-errors=all")).unwrap();
        assert!(check_config_mix(&p).is_ok());
    }
}
