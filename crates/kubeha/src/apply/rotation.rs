//! An apiserver out of and back into the load balancers' rotation, through HAProxy's
//! root-only runtime socket ([`haproxy::ADMIN_SOCKET`]): `certs renew`, `upgrade` and
//! `node remove` take a control plane out before its apiserver restarts or goes away,
//! so that clients reconnect to the others instead of seeing errors.

use std::time::{Duration, Instant};

use super::{ApplyError, Connected};
use crate::render::haproxy;
use crate::wait::{self, Check};

const POLL: Duration = Duration::from_millis(250);

/// Takes `host` out of rotation on every load balancer: `drain` (no new connections),
/// up to `drain_within` for the open ones to end, then `maint` and the sessions still
/// open closed, so their clients reconnect to another apiserver.
pub async fn take_out(
    c: &Connected,
    lbs: &[String],
    host: &str,
    drain_within: Duration,
) -> Result<(), ApplyError> {
    for lb in lbs {
        set_server(c, lb, host, "state drain").await?;
    }
    let drained = || async {
        let mut open = 0;
        for lb in lbs {
            open += server_stat(c, lb, host).await?.sessions;
        }
        Ok::<_, ApplyError>(open == 0)
    };
    wait::held_within(drain_within, POLL, drained).await?;
    for lb in lbs {
        set_server(c, lb, host, "state maint").await?;
        runtime(
            c,
            lb,
            &format!("shutdown sessions server {}", server_path(host)?),
        )
        .await?;
    }
    Ok(())
}

/// Puts `host` back into rotation on every load balancer and waits until each reports
/// it `UP` (its health check passed).
pub async fn put_in(
    c: &Connected,
    lbs: &[String],
    host: &str,
    up_within: Duration,
) -> Result<(), ApplyError> {
    for lb in lbs {
        set_server(c, lb, host, "state ready").await?;
    }
    let deadline = Instant::now() + up_within;
    for lb in lbs {
        let up = || async {
            let stat = server_stat(c, lb, host).await?;
            Ok(if stat.status == "UP" {
                Check::Done(())
            } else {
                Check::NotYet(stat.status)
            })
        };
        let left = deadline.saturating_duration_since(Instant::now());
        wait::until(left, POLL, up, |status| {
            ApplyError::Local(format!(
                "{lb}: HAProxy still reports {host} {status} {}s after it was put back",
                up_within.as_secs()
            ))
        })
        .await?;
    }
    Ok(())
}

/// `backend/server` for the runtime API, refusing a name it would misread.
fn server_path(host: &str) -> Result<String, ApplyError> {
    let host = crate::quote::haproxy_runtime(host)
        .map_err(|e| ApplyError::Local(format!("HAProxy server name: {e}")))?;
    Ok(format!("{}/{host}", haproxy::BACKEND))
}

async fn runtime(c: &Connected, lb: &str, command: &str) -> Result<String, ApplyError> {
    let out = c
        .remote(lb)
        .run(
            "HAProxy's runtime API failed",
            &haproxy::runtime_command(command),
        )
        .await?;
    Ok(out.stdout)
}

/// `set server <backend>/<host> <what>`; HAProxy answers such a command only when it refuses it.
pub async fn set_server(c: &Connected, lb: &str, host: &str, what: &str) -> Result<(), ApplyError> {
    let command = format!("set server {} {what}", server_path(host)?);
    let answer = runtime(c, lb, &command).await?;
    match answer.trim() {
        "" => Ok(()),
        refused => Err(ApplyError::Local(format!(
            "{lb}: HAProxy refused `{command}`: {refused}"
        ))),
    }
}

async fn server_stat(c: &Connected, lb: &str, host: &str) -> Result<ServerStat, ApplyError> {
    let csv = runtime(c, lb, "show stat").await?;
    parse_server_stat(&csv, host).ok_or_else(|| {
        ApplyError::Local(format!(
            "{lb}: HAProxy has no server {host} in {}",
            haproxy::BACKEND
        ))
    })
}

/// What HAProxy's statistics say about one apiserver backend server.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerStat {
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, or a transition such as `UP 1/2`.
    pub status: String,
    /// Connections open to it now (`scur`).
    pub sessions: u64,
}

/// The row of `server` in the apiserver backend of `show stat`'s CSV.
pub fn parse_server_stat(csv: &str, server: &str) -> Option<ServerStat> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let at = |name: &str| header.iter().position(|c| *c == name);
    let (px, sv, scur, status) = (at("pxname")?, at("svname")?, at("scur")?, at("status")?);
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find_map(|row| {
            (row.get(px) == Some(&haproxy::BACKEND) && row.get(sv) == Some(&server)).then(|| {
                ServerStat {
                    status: row.get(status).unwrap_or(&"").to_string(),
                    sessions: row.get(scur).and_then(|n| n.parse().ok()).unwrap_or(0),
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_servers_state_and_sessions_from_haproxys_statistics() {
        // `show stat` as HAProxy 2.6 prints it, trimmed to the first eighteen columns.
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                   kube-apiserver,FRONTEND,,,7,9,262120,40,1,2,0,0,0,,,,,OPEN\n\
                   kube-apiserver,cp-1,0,0,3,5,,20,1,2,,0,,0,0,0,0,DRAIN\n\
                   kube-apiserver,cp-2,0,0,0,4,,20,1,2,,0,,0,0,0,0,UP 1/2\n\
                   stats,cp-1,,,0,0,,0,0,0,,,,,,,,OPEN\n";
        let stat = |s| parse_server_stat(csv, s);
        assert_eq!(
            stat("cp-1"),
            Some(ServerStat {
                status: "DRAIN".into(),
                sessions: 3
            })
        );
        assert_eq!(stat("cp-2").unwrap().status, "UP 1/2");
        assert_eq!(stat("cp-3"), None);
        assert_eq!(parse_server_stat("", "cp-1"), None);
    }

    #[test]
    fn a_server_name_the_runtime_api_would_misread_is_refused() {
        assert_eq!(server_path("cp-1").unwrap(), "kube-apiserver/cp-1");
        assert!(server_path("cp-1 state maint").is_err());
        assert!(server_path("cp-1;shutdown").is_err());
    }
}
