//! Scheduled local etcd snapshots on a control plane (`kubeha backup --schedule`), for
//! clusters with no operator's machine in the loop: a systemd timer runs a script that
//! takes `etcdctl snapshot save`, verifies it with `snapshot status`, and keeps the newest
//! N in a root-only folder.

use super::{managed_header, Activation, RenderedFile};
use crate::quote::shell as quote;
use crate::spec::Cluster;

pub const SERVICE: &str = "kubeha-etcd-backup.service";
pub const TIMER: &str = "kubeha-etcd-backup.timer";
pub const SERVICE_PATH: &str = "/etc/systemd/system/kubeha-etcd-backup.service";
pub const TIMER_PATH: &str = "/etc/systemd/system/kubeha-etcd-backup.timer";
pub const SCRIPT_PATH: &str = "/usr/local/sbin/kubeha-etcd-backup";
/// Where the snapshots are kept (0700; each snapshot 0600, as it holds every Secret).
pub const DIR: &str = "/var/lib/kubeha/backups";
/// Every file the schedule installs; `--unschedule` and `reset` remove them.
pub const FILES: [&str; 3] = [TIMER_PATH, SERVICE_PATH, SCRIPT_PATH];
/// The most snapshots a schedule keeps.
pub const MAX_KEEP: u32 = 1000;

/// When the snapshots are taken and how many are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// A systemd calendar expression (`daily`, `hourly`, `*-*-* 02:30:00`, `Mon..Fri 04:00`).
    pub calendar: String,
    pub keep: u32,
}

impl Schedule {
    /// Checks the values before any host is contacted. The calendar is limited to the
    /// characters systemd's calendar syntax uses (no `%` specifiers, no `\` escapes, no
    /// line breaks); the host's `systemd-analyze calendar` checks its meaning before
    /// anything is written.
    pub fn new(calendar: &str, keep: u32) -> Result<Self, String> {
        let calendar = calendar.trim();
        if calendar.is_empty() || calendar.len() > 100 {
            return Err("--schedule takes a systemd calendar expression such as `daily`, `hourly` or `*-*-* 02:30:00`".into());
        }
        if let Some(c) = calendar
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || " *:,./~-+".contains(*c)))
        {
            return Err(format!(
                "--schedule {calendar:?}: {c:?} has no place in a systemd calendar expression"
            ));
        }
        if keep == 0 || keep > MAX_KEEP {
            return Err(format!("--keep must be between 1 and {MAX_KEEP}"));
        }
        Ok(Self {
            calendar: calendar.to_string(),
            keep,
        })
    }
}

/// The script, the service and the timer.
pub fn render(cluster: &Cluster, schedule: &Schedule) -> Vec<RenderedFile> {
    let header = managed_header("#", cluster);
    let service = format!(
        "{header}[Unit]\n\
         Description=kubeha: local etcd snapshot into {DIR} (the newest {keep} are kept)\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={SCRIPT_PATH}\n",
        keep = schedule.keep
    );
    let timer = format!(
        "{header}[Unit]\n\
         Description=kubeha: etcd snapshot on schedule {calendar}\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         # A run missed while the host was off is taken at the next boot.\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        calendar = schedule.calendar
    );
    let mut script = RenderedFile::text(SCRIPT_PATH, script(&header, schedule), Activation::None);
    // Root's alone: it names the etcd client key.
    script.mode = 0o700;
    vec![
        script,
        RenderedFile::text(SERVICE_PATH, service, Activation::None),
        RenderedFile::text(TIMER_PATH, timer, Activation::None),
    ]
}

fn script(header: &str, schedule: &Schedule) -> String {
    format!(
        "#!/bin/sh\n{header}\
         # Takes a local etcd snapshot, verifies it and keeps the newest {keep}; {TIMER} runs it.\n\
         set -eu\n\
         umask 077\n\
         dir={dir}\n\
         mkdir -p \"$dir\"\n\
         chmod 700 \"$dir\"\n\
         name=\"etcd-$(date -u +%Y%m%dT%H%M%SZ).db\"\n\
         part=\"$dir/.$name.part\"\n\
         trap 'rm -f \"$part\"' EXIT\n\
         {save} >/dev/null\n\
         # A snapshot that does not read back is never kept.\n\
         ETCDCTL_API=3 etcdctl snapshot status -w json \"$part\" >/dev/null\n\
         chmod 600 \"$part\"\n\
         mv \"$part\" \"$dir/$name\"\n\
         ls -1 \"$dir\" | grep -E '^etcd-[0-9]{{8}}T[0-9]{{6}}Z\\.db$' | sort -r | tail -n +{next} |\n\
         \x20 while read -r old; do rm -f -- \"$dir/$old\"; done\n\
         echo \"kubeha: etcd snapshot $dir/$name\"\n",
        keep = schedule.keep,
        dir = quote(DIR),
        save = super::kubeadm::etcdctl("snapshot save \"$part\""),
        next = schedule.keep + 1,
    )
}

/// Root shell checking the calendar with the host's systemd, before anything is written.
pub fn check_calendar_script(schedule: &Schedule) -> String {
    format!(
        "systemd-analyze calendar -- {} >/dev/null",
        quote(&schedule.calendar)
    )
}

/// Enables and starts the timer after its files were written.
pub const ENABLE_SCRIPT: &str =
    "systemctl daemon-reload && systemctl enable --now kubeha-etcd-backup.timer >/dev/null 2>&1";

/// Removes the schedule (the snapshots stay); nothing to do when there is none.
pub fn remove_script() -> String {
    format!(
        "systemctl disable --now {TIMER} >/dev/null 2>&1 || true\n\
         rm -f -- {}\n\
         systemctl daemon-reload\n",
        FILES.join(" ")
    )
}

/// Prints the schedule's state and the snapshots kept: `timer=<enabled>`,
/// `calendar=<expression>`, `next=<time>`, then `snapshot=<name> <bytes> <mode>` lines.
pub fn list_script() -> String {
    format!(
        "echo \"timer=$(systemctl is-enabled {TIMER} 2>/dev/null || true)\"\n\
         sed -n 's/^OnCalendar=/calendar=/p' {TIMER_PATH} 2>/dev/null || true\n\
         echo \"next=$(systemctl show -p NextElapseUSecRealtime --value {TIMER} 2>/dev/null || true)\"\n\
         find {DIR} -maxdepth 1 -type f -name 'etcd-*.db' -printf 'snapshot=%f %s %m\\n' 2>/dev/null | sort || true\n"
    )
}

/// What [`list_script`] printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    /// Whether the timer is enabled.
    pub scheduled: bool,
    pub calendar: Option<String>,
    /// When systemd runs it next, as it says it.
    pub next: Option<String>,
    pub snapshots: Vec<Snapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub path: String,
    pub bytes: u64,
    /// Octal, as `stat` prints it.
    pub mode: String,
}

pub fn parse_listing(text: &str) -> Listing {
    let mut l = Listing::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key {
            "timer" => l.scheduled = value == "enabled",
            "calendar" if !value.is_empty() => l.calendar = Some(value.to_string()),
            "next" if !value.is_empty() => l.next = Some(value.to_string()),
            "snapshot" => {
                let mut words = value.split_whitespace();
                if let (Some(name), Some(bytes), Some(mode)) =
                    (words.next(), words.next(), words.next())
                {
                    l.snapshots.push(Snapshot {
                        path: format!("{DIR}/{name}"),
                        bytes: bytes.parse().unwrap_or(0),
                        mode: mode.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    l.snapshots.sort_by(|a, b| b.path.cmp(&a.path));
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::test_support::seed;
    use crate::render::Content;

    fn text(f: &RenderedFile) -> &str {
        match &f.content {
            Content::Text(t) => t,
            _ => panic!("{f:?}"),
        }
    }

    #[test]
    fn a_timer_a_oneshot_service_and_a_root_only_script() {
        let s = Schedule::new(" *-*-* 02:30:00 ", 7).unwrap();
        let files = render(&seed(), &s);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [SCRIPT_PATH, SERVICE_PATH, TIMER_PATH]);
        assert_eq!(files[0].mode, 0o700);
        assert!(text(&files[1])
            .contains("Type=oneshot\nExecStart=/usr/local/sbin/kubeha-etcd-backup\n"));
        let timer = text(&files[2]);
        assert!(
            timer.contains("\nOnCalendar=*-*-* 02:30:00\n")
                && timer.contains("\nPersistent=true\n"),
            "{timer}"
        );
        assert!(text(&files[2]).contains("WantedBy=timers.target"));
        let script = text(&files[0]);
        assert!(script.contains("umask 077"));
        assert!(script.contains("snapshot save \"$part\""), "{script}");
        assert!(script.contains("| tail -n +8 |"), "{script}");
        crate::dr::assert_valid_sh(script);
        for s in [remove_script(), list_script(), check_calendar_script(&s)] {
            crate::dr::assert_valid_sh(&s);
        }
    }

    #[test]
    fn the_script_keeps_the_newest_and_only_verified_snapshots() {
        // Runs the script against a fake etcdctl in a scratch folder: three runs with
        // keep 2 leave the two newest, 0600 in a 0700 folder; a snapshot that does not
        // verify is not kept.
        let dir = tempfile::tempdir().unwrap();
        let (bin, data) = (dir.path().join("bin"), dir.path().join("backups"));
        std::fs::create_dir(&bin).unwrap();
        let etcdctl = bin.join("etcdctl");
        std::fs::write(
            &etcdctl,
            "#!/bin/sh\nfor a; do last=$a; done\ncase \"$*\" in\n*'snapshot save'*) echo db > \"$last\";;\n\
             *'snapshot status'*) [ ! -e \"$FAIL\" ];;\nesac\n",
        )
        .unwrap();
        let date = bin.join("date");
        std::fs::write(
            &date,
            "#!/bin/sh\nn=$(cat \"$COUNTER\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$COUNTER\"\necho 2026120${n}T000000Z\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [&etcdctl, &date] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = script("", &Schedule::new("daily", 2).unwrap())
            .replace(&quote(DIR), &quote(data.to_str().unwrap()));
        let run = || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("COUNTER", dir.path().join("counter"))
                .env("FAIL", dir.path().join("fail"))
                .status()
                .unwrap()
                .success()
        };
        assert!(run() && run() && run());
        let mut names: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["etcd-20261202T000000Z.db", "etcd-20261203T000000Z.db"]
        );
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(&names[0])), 0o600);
        std::fs::write(dir.path().join("fail"), "").unwrap();
        assert!(!run(), "a snapshot that does not verify fails the run");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            2,
            "and is not kept"
        );
    }

    #[test]
    fn odd_schedules_and_counts_are_refused_before_any_host() {
        assert!(Schedule::new("daily", 7).is_ok());
        assert!(Schedule::new("Mon..Fri 04:00 Europe/Paris", 1).is_ok());
        for bad in [
            "",
            "daily\nExecStart=/bin/sh",
            "%H",
            "daily; rm",
            "a\\b",
            "$(id)",
        ] {
            assert!(Schedule::new(bad, 7).is_err(), "{bad:?}");
        }
        assert!(Schedule::new("daily", 0).is_err());
        assert!(Schedule::new("daily", MAX_KEEP + 1).is_err());
    }

    #[test]
    fn reads_the_listing() {
        let l = parse_listing(
            "timer=enabled\ncalendar=daily\nnext=Wed 2026-12-02 00:00:00 UTC\n\
             snapshot=etcd-20261201T000000Z.db 1200 600\nsnapshot=etcd-20261202T000000Z.db 1300 600\n",
        );
        assert!(l.scheduled);
        assert_eq!(l.calendar.as_deref(), Some("daily"));
        assert_eq!(l.snapshots.len(), 2);
        assert_eq!(
            l.snapshots[0].path,
            "/var/lib/kubeha/backups/etcd-20261202T000000Z.db"
        );
        assert_eq!(l.snapshots[0].bytes, 1300);
        assert_eq!(parse_listing("timer=disabled\nnext=\n"), Listing::default());
    }
}
