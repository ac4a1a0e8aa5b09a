//! Thin helpers over bollard: connecting, naming, label filters and running commands in containers.

use std::collections::HashMap;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Context, Error, Result};

/// Label on everything a lab creates (containers, network, volumes): the lab's name.
pub const LABEL_LAB: &str = "dev.kubeha.lab";
/// Label on containers: the host's name (`mirror` for the package mirror).
pub const LABEL_HOST: &str = "dev.kubeha.lab.host";
pub const LABEL_ROLES: &str = "dev.kubeha.lab.roles";
pub const LABEL_ADDRESS: &str = "dev.kubeha.lab.address";
/// Label on the mirror container: hash of the extra .debs it was started with.
pub const LABEL_EXTRAS: &str = "dev.kubeha.lab.extras";

pub const MIRROR_HOST: &str = "mirror";

pub fn network_name(lab: &str) -> String {
    format!("kubeha-lab-{lab}")
}

pub fn container_name(lab: &str, host: &str) -> String {
    format!("kubeha-lab-{lab}-{host}")
}

pub fn containerd_volume_name(lab: &str, host: &str) -> String {
    format!("kubeha-lab-{lab}-{host}-containerd")
}

/// Connects to the local engine, speaking the newest API version both sides know.
pub async fn connect() -> Result<Docker> {
    Docker::connect_with_local_defaults()
        .context("connecting to the Docker Engine")?
        .negotiate_version()
        .await
        .context("talking to the Docker Engine (is it running, and may this user use it?)")
}

/// The `filters` argument selecting one lab's objects.
pub fn lab_filter(lab: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{LABEL_LAB}={lab}")])])
}

pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What a command run in a container printed, and how it exited.
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ExecOutput {
    /// Ok when the command exited 0; otherwise an error with its stderr.
    pub fn checked(self, context: impl FnOnce() -> String) -> Result<ExecOutput> {
        if self.exit_code == 0 {
            Ok(self)
        } else {
            Err(Error::Failed {
                context: context(),
                detail: format!("exit code {}: {}", self.exit_code, self.stderr.trim()),
            })
        }
    }
}

/// Runs `argv` as root in `container` (no shell unless argv starts one) with extra `env`.
pub async fn exec(
    docker: &Docker,
    container: &str,
    argv: &[&str],
    env: &[String],
) -> Result<ExecOutput> {
    let what = || format!("running {:?} in {container}", argv.first().unwrap_or(&""));
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                env: Some(env.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .context(what())?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.context(what())?
    {
        while let Some(chunk) = output.next().await {
            match chunk.context(what())? {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message)
                }
                other => stdout.extend_from_slice(&other.into_bytes()),
            }
        }
    }
    let inspected = docker.inspect_exec(&created.id).await.context(what())?;
    Ok(ExecOutput {
        exit_code: inspected.exit_code.unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Retries `probe` every half second until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    context: impl FnOnce() -> String,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if probe().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                context: context(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
