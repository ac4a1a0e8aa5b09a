//! `kubeha backup --schedule|--unschedule|--list`: the systemd timer on every control
//! plane that keeps N local etcd snapshots (files in [`crate::render::etcd_backup`]).

use crate::apply::{ApplyError, Connected, Survey};
use crate::render::{etcd_backup, Content};
use etcd_backup::{Listing, Schedule};

/// Installs (or updates) the schedule on every joined control plane; the calendar is
/// checked by every host's systemd before any file is written. Returns the hosts.
pub async fn install(
    c: &Connected,
    survey: &Survey,
    schedule: &Schedule,
) -> Result<Vec<String>, ApplyError> {
    let hosts: Vec<String> = super::joined_control_planes(c, survey)
        .iter()
        .map(|h| h.name.clone())
        .collect();
    if hosts.is_empty() {
        return Err(ApplyError::Local(
            "no control plane has joined the cluster yet: run `kubeha apply` first".into(),
        ));
    }
    for host in &hosts {
        c.remote(host)
            .run(
                &format!(
                    "systemd refuses the calendar expression {:?}",
                    schedule.calendar
                ),
                &etcd_backup::check_calendar_script(schedule),
            )
            .await?;
    }
    let files = etcd_backup::render(&c.cluster, schedule);
    for host in &hosts {
        let remote = c.remote(host);
        c.progress
            .started(host, &format!("etcd snapshots on {}", schedule.calendar));
        let started = std::time::Instant::now();
        for f in &files {
            let Content::Text(text) = &f.content else {
                unreachable!("the schedule's files are text")
            };
            remote.write_file(&f.path, text.as_bytes(), f.mode).await?;
        }
        remote
            .run("cannot enable the backup timer", etcd_backup::ENABLE_SCRIPT)
            .await?;
        c.progress.done(
            host,
            &format!("{} enabled", etcd_backup::TIMER),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(hosts)
}

/// Removes the schedule from every control plane; the snapshots taken stay.
pub async fn remove(c: &Connected) -> Result<Vec<String>, ApplyError> {
    let mut hosts = Vec::new();
    for h in c.cluster.control_planes() {
        c.remote(&h.name)
            .run(
                "cannot remove the backup timer",
                &etcd_backup::remove_script(),
            )
            .await?;
        hosts.push(h.name.clone());
    }
    Ok(hosts)
}

/// Each control plane's schedule and the snapshots it keeps.
pub async fn list(c: &Connected) -> Result<Vec<(String, Listing)>, ApplyError> {
    let mut out = Vec::new();
    for h in c.cluster.control_planes() {
        let text = c
            .remote(&h.name)
            .run("cannot list the local backups", &etcd_backup::list_script())
            .await?;
        out.push((h.name.clone(), etcd_backup::parse_listing(&text.stdout)));
    }
    Ok(out)
}
