//! Options shared by the commands that connect to hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Failure, Format, Ui};
use crate::apply::{self, ApplyError, Connected, Mode, Options, Progress};
use crate::spec::Loaded;

#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// The cluster spec.
    #[arg(short = 'f', long = "file", default_value = "cluster.yaml")]
    pub file: PathBuf,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Limit for one remote command, in seconds (kubeadm steps get ten times as long).
    #[arg(long, default_value_t = 300)]
    pub command_timeout: u64,
    /// Where per-host logs go (default: .kubeha/<cluster>/runs/<time> beside the spec).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Where the admin kubeconfig is written (default: <cluster>.kubeconfig beside the spec).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How long to wait for every node to be Ready, in seconds.
    #[arg(long, default_value_t = 600)]
    pub ready_timeout: u64,
}

impl RemoteArgs {
    pub fn spec_dir(&self) -> PathBuf {
        self.file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    pub fn kubeconfig_path(&self, cluster: &str) -> PathBuf {
        self.kubeconfig
            .clone()
            .unwrap_or_else(|| self.spec_dir().join(format!("{cluster}.kubeconfig")))
    }

    pub fn options(&self, cluster: &str) -> Options {
        // In milliseconds: with kept SSH connections a no-op takes under a second, and two
        // runs named by the second shared one folder and mixed their logs.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let run_dir = self.log_dir.clone().unwrap_or_else(|| {
            self.spec_dir()
                .join(".kubeha")
                .join(cluster)
                .join("runs")
                .join(stamp.to_string())
        });
        Options {
            concurrency: self.concurrency,
            command_timeout: Duration::from_secs(self.command_timeout),
            kubeadm_timeout: Duration::from_secs(self.command_timeout * 10),
            ready_timeout: Duration::from_secs(self.ready_timeout),
            run_dir,
            kubeconfig: self.kubeconfig_path(cluster),
            backup_dir: crate::dr::backups_dir(&self.spec_dir(), cluster),
        }
    }

    /// Connects to every host of a validated spec, runs `work` against them and closes the
    /// SSH connections whatever happened. A runtime failure says where the logs are.
    pub async fn session<T>(
        &self,
        ui: &Ui,
        loaded: Loaded,
        work: impl AsyncFnOnce(&Connected) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let connected = self.connect(ui, loaded).await?;
        let result = work(&connected).await;
        connected.progress.finish();
        let logs = connected.options.run_dir.clone();
        connected.close().await;
        result.map_err(|f| with_logs(f, &logs))
    }

    /// Like [`RemoteArgs::session`], but without the hosts in `skip` and going on without
    /// those that do not answer (see [`apply::connect_reachable`]); `work` gets the
    /// unreachable hosts and why.
    pub async fn session_reachable<T>(
        &self,
        ui: &Ui,
        loaded: Loaded,
        skip: &BTreeSet<String>,
        work: impl AsyncFnOnce(&Connected, &BTreeMap<String, String>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (options, progress) = self.prepare(ui, &loaded);
        let logs = options.run_dir.clone();
        let (connected, unreachable) =
            apply::connect_reachable(loaded.cluster, options, progress, skip)
                .await
                .map_err(|e| with_logs(runtime(e), &logs))?;
        let result = work(&connected, &unreachable).await;
        connected.progress.finish();
        connected.close().await;
        result.map_err(|f| with_logs(f, &logs))
    }

    fn prepare(&self, ui: &Ui, loaded: &Loaded) -> (Options, Arc<Progress>) {
        let mode = match ui.format {
            Format::Ndjson => Mode::Json,
            _ if ui.interactive => Mode::Terminal,
            _ => Mode::Lines,
        };
        let options = self.options(&loaded.cluster.name);
        tracing::info!(logs = %options.run_dir.display(), "per-host logs");
        tracing::debug!(?options, "run options");
        (options, Arc::new(Progress::new(mode)))
    }

    async fn connect(&self, ui: &Ui, loaded: Loaded) -> Result<Connected, Failure> {
        let (options, progress) = self.prepare(ui, &loaded);
        let logs = options.run_dir.clone();
        apply::connect(loaded.cluster, options, progress)
            .await
            .map_err(|e| with_logs(runtime(e), &logs))
    }
}

/// Points a runtime failure at the run's per-host logs (each command and its output).
fn with_logs(failure: Failure, logs: &Path) -> Failure {
    match failure {
        Failure::Runtime(message) => Failure::Runtime(format!(
            "{message}\nevery command's full output: {}/<host>.log",
            logs.display()
        )),
        other => other,
    }
}

pub fn runtime(e: ApplyError) -> Failure {
    Failure::Runtime(e.to_string())
}

/// One runtime per command: the functional core stays synchronous.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(future)
}
