//! The `/etc/hosts` entry that makes a DNS-name endpoint resolve on every node, now and
//! after every boot.
//!
//! The seed assumes `load-balancer.local` resolves but never says how. When the endpoint
//! is a name and kubeha knows the one address behind it (the VIP, or the only load
//! balancer), it maintains that mapping in a marked block. Docker (at container start)
//! and cloud-init with `manage_etc_hosts` (at every boot) regenerate `/etc/hosts`, so the
//! block is also kept in [`BLOCK_FILE`] and put back at boot by [`UNIT`], ordered before
//! containerd and the kubelet; where cloud-init regenerates the file from its template,
//! the template carries the block too.

use super::{managed_header, Activation, Content, RenderedFile};
use crate::facts::{HOSTS_BEGIN, HOSTS_END};
use crate::spec::{Cluster, Host};

pub const PATH: &str = "/etc/hosts";
/// kubeha's copy of the block, which the boot unit restores from.
pub const BLOCK_FILE: &str = "/etc/kubeha/hosts-block";
pub const RESTORE_SCRIPT: &str = "/usr/local/sbin/kubeha-restore-hosts";
pub const UNIT: &str = "kubeha-hosts";
pub const UNIT_PATH: &str = "/etc/systemd/system/kubeha-hosts.service";
/// The files behind the boot-time restore; a change to any of them re-enables the unit.
pub const BOOT_FILES: [&str; 3] = [BLOCK_FILE, RESTORE_SCRIPT, UNIT_PATH];
/// What cloud-init renders `/etc/hosts` from on Debian and Ubuntu (os family `debian`).
pub const CLOUD_INIT_TEMPLATE: &str = "/etc/cloud/templates/hosts.debian.tmpl";

/// Shell test, true where cloud-init regenerates `/etc/hosts` from [`CLOUD_INIT_TEMPLATE`]
/// at every boot: the template exists and `manage_etc_hosts` is on (cloud-init takes
/// true/yes/on and `template`; `localhost` only edits one line and keeps ours).
pub const CLOUD_INIT_MANAGES_HOSTS: &str = r#"[ -f /etc/cloud/templates/hosts.debian.tmpl ] && grep -Eiqs '^manage_etc_hosts:[[:space:]]*["'\'']?(true|yes|on|template)\b' /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg /var/lib/cloud/instance/cloud-config.txt"#;

/// Every file behind the endpoint entry on `host`, or none when kubeha does not manage it.
pub fn render(cluster: &Cluster, host: &Host) -> Vec<RenderedFile> {
    if !cluster.api_endpoint.manage_hosts_entry || !host.is_kube_node() {
        return Vec::new();
    }
    let Some(target) = cluster.endpoint_target() else {
        return Vec::new();
    };
    let block = format!("{target} {}\n", cluster.api_endpoint.host);
    vec![
        RenderedFile {
            path: PATH.into(),
            mode: 0o644,
            content: Content::ManagedBlock(block.clone()),
            activation: Activation::None,
            secret: false,
        },
        RenderedFile::text(BLOCK_FILE, block, Activation::None),
        RenderedFile::text(RESTORE_SCRIPT, restore_script(cluster), Activation::None).executable(),
        RenderedFile::text(UNIT_PATH, unit(cluster), Activation::None),
    ]
}

/// Shell that replaces kubeha's marked block in `target` (a shell word) with the lines
/// `source` (a command) prints. Rewritten in place, not renamed over: in containers
/// `/etc/hosts` is a bind mount; and only when it differs, so mtimes mean something.
pub fn merge_block_sh(target: &str, source: &str) -> String {
    format!(
        "t=$(mktemp)\n\
         sed '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/d' {target} > \"$t\"\n\
         {{ echo '{HOSTS_BEGIN}'; {source}; echo '{HOSTS_END}'; }} >> \"$t\"\n\
         cmp -s \"$t\" {target} || cat \"$t\" > {target}\n\
         rm -f \"$t\"\n"
    )
}

fn restore_script(cluster: &Cluster) -> String {
    let merge = merge_block_sh("\"$1\"", "cat \"$block\"")
        .trim_end()
        .replace('\n', "\n  ");
    format!(
        "#!/bin/sh\n{header}\
         # Puts the API endpoint's entry back into /etc/hosts after Docker or cloud-init\n\
         # regenerated it; {UNIT}.service runs it at boot, before containerd and the kubelet.\n\
         set -eu\n\
         block={BLOCK_FILE}\n\
         merge() {{\n  {merge}\n}}\n\
         merge {PATH}\n\
         # Where cloud-init renders /etc/hosts from a template, the template keeps the entry too.\n\
         if {CLOUD_INIT_MANAGES_HOSTS}; then\n  merge {CLOUD_INIT_TEMPLATE}\nfi\n",
        header = managed_header("#", cluster),
    )
}

fn unit(cluster: &Cluster) -> String {
    format!(
        "{header}[Unit]\n\
         Description=kubeha: the API endpoint's entry in /etc/hosts\n\
         # After cloud-init's manage_etc_hosts has regenerated the file; before anything\n\
         # that reaches the API through the endpoint name.\n\
         After=local-fs.target cloud-init.service\n\
         Before=containerd.service kubelet.service\n\
         ConditionPathExists={BLOCK_FILE}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={RESTORE_SCRIPT}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        header = managed_header("#", cluster),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::*;
    use std::process::Command;

    fn block_of(c: &Cluster, host: &Host) -> Content {
        render(c, host)
            .into_iter()
            .find(|f| f.path == PATH)
            .unwrap()
            .content
    }

    #[test]
    fn maps_the_endpoint_name_to_the_load_balancer_or_vip() {
        let c = seed();
        assert_eq!(
            block_of(&c, c.first_control_plane()),
            Content::ManagedBlock("192.0.2.5 load-balancer.local\n".into())
        );
        assert!(
            render(&c, &c.hosts[0]).is_empty(),
            "load balancers do not need it"
        );
        let vip = seed_with_vip();
        assert_eq!(
            block_of(&vip, vip.first_control_plane()),
            Content::ManagedBlock("192.0.2.100 load-balancer.local\n".into())
        );
    }

    #[test]
    fn nothing_for_ip_endpoints_or_when_disabled() {
        let ip = cluster_from(|s| s.replace("host: load-balancer.local", "host: 192.0.2.5"));
        assert!(render(&ip, ip.first_control_plane()).is_empty());
        let off =
            cluster_from(|s| s.replace("# manageHostsEntry: true", "manageHostsEntry: false"));
        assert!(render(&off, off.first_control_plane()).is_empty());
    }

    #[test]
    fn the_boot_unit_restores_the_block_from_kubehas_copy_before_the_kubelet() {
        let c = seed();
        let files = render(&c, c.first_control_plane());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [PATH, BLOCK_FILE, RESTORE_SCRIPT, UNIT_PATH]);
        let text = |path: &str| match &files.iter().find(|f| f.path == path).unwrap().content {
            Content::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text(BLOCK_FILE), "192.0.2.5 load-balancer.local\n");
        let unit = text(UNIT_PATH);
        assert!(unit.contains("\nBefore=containerd.service kubelet.service\n"));
        assert!(unit.contains(&format!("\nExecStart={RESTORE_SCRIPT}\n")));
        assert!(unit.contains("\nWantedBy=multi-user.target\n"));
        let script = files.iter().find(|f| f.path == RESTORE_SCRIPT).unwrap();
        assert_eq!(script.mode, 0o755);
        let syntax = Command::new("sh")
            .args(["-n", "-c", &text(RESTORE_SCRIPT)])
            .status();
        assert!(syntax.unwrap().success(), "sh -n rejects the script");
        // systemd's own checker, pointed at a copy of the script it can find.
        let dir = tempfile::tempdir().unwrap();
        let script_copy = dir.path().join("kubeha-restore-hosts");
        std::fs::write(&script_copy, text(RESTORE_SCRIPT)).unwrap();
        std::fs::set_permissions(
            &script_copy,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let unit_copy = dir.path().join(format!("{UNIT}.service"));
        std::fs::write(
            &unit_copy,
            unit.replace(RESTORE_SCRIPT, &script_copy.display().to_string()),
        )
        .unwrap();
        match Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_copy)
            .output()
        {
            Ok(out) => assert!(
                out.status.success() && out.stderr.is_empty(),
                "systemd-analyze verify: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed"),
        }
    }

    /// Runs the restore script with its paths moved into `root`; returns the hosts file and
    /// cloud-init's template after it.
    fn restore_in(root: &std::path::Path, cluster: &Cluster) -> (String, String) {
        let r = root.display();
        let script = restore_script(cluster)
            .replace(BLOCK_FILE, &format!("{r}{BLOCK_FILE}"))
            .replace("/etc/cloud/", &format!("{r}/etc/cloud/"))
            .replace("/var/lib/cloud/", &format!("{r}/var/lib/cloud/"))
            .replace(&format!("merge {PATH}"), &format!("merge {r}{PATH}"));
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |p: &str| std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap();
        (read(PATH), read(CLOUD_INIT_TEMPLATE))
    }

    #[test]
    fn the_restore_script_puts_the_block_back_and_into_a_managed_cloud_init_template() {
        let c = seed();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["etc/kubeha", "etc/cloud/templates", "etc/cloud/cloud.cfg.d"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        std::fs::write(at(BLOCK_FILE), "192.0.2.5 load-balancer.local\n").unwrap();
        // As Docker or cloud-init leave it after a boot: no block.
        let fresh = "127.0.0.1\tlocalhost\n192.0.2.11\tk8s-master-1\n";
        std::fs::write(at(PATH), fresh).unwrap();
        let template = "## template:jinja\n127.0.0.1 localhost\n";
        std::fs::write(at(CLOUD_INIT_TEMPLATE), template).unwrap();
        let block = "# BEGIN kubeha\n192.0.2.5 load-balancer.local\n# END kubeha\n";

        // cloud-init does not manage /etc/hosts: the template is left alone.
        let restored = format!("{fresh}{block}");
        assert_eq!(
            restore_in(root, &c),
            (restored.clone(), template.to_string())
        );

        // Debian's cloud images set manage_etc_hosts: true; a second run changes nothing.
        let cloud_cfg = at("/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg");
        std::fs::write(
            &cloud_cfg,
            "apt_preserve_sources_list: true\nmanage_etc_hosts: true\n",
        )
        .unwrap();
        for _ in 0..2 {
            assert_eq!(
                restore_in(root, &c),
                (restored.clone(), format!("{template}{block}"))
            );
        }

        // `localhost` mode keeps the rest of the file: the template is not used.
        std::fs::write(at(CLOUD_INIT_TEMPLATE), template).unwrap();
        std::fs::write(&cloud_cfg, "manage_etc_hosts: localhost\n").unwrap();
        assert_eq!(restore_in(root, &c), (restored, template.to_string()));
    }
}
