//! API requests through the endpoint every 100 ms while an operation runs, so that
//! drills, upgrades and control-plane changes report the availability users had. The
//! arithmetic on the samples is pure and lives in [`crate::verify`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use tokio::sync::Mutex;

use crate::verify::{summarize, Sample};

/// How long one probe request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_millis(100);

/// A background task reading `kube-system` every 100 ms until [`Probe::finish`].
pub struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Starts probing through `client` (a client for the API endpoint, so that the load
    /// balancers are part of what is measured).
    pub fn start(client: &kube::Client) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let api: Api<Namespace> = Api::all(client.clone());
        let store = samples.clone();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            while !*stopped.borrow() {
                let at = began.elapsed();
                let ok = tokio::time::timeout(REQUEST_TIMEOUT, api.get("kube-system"))
                    .await
                    .is_ok_and(|r| r.is_ok());
                store.lock().await.push(Sample { at, ok });
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Self {
            samples,
            stop,
            task,
        }
    }

    /// The longest outage so far (one still open counts up to the last sample), for
    /// operations that stop before the next node when it exceeds the spec's limit.
    pub async fn longest_outage(&self) -> Duration {
        summarize(&self.samples.lock().await).2
    }

    /// Stops probing and returns every sample.
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().await)
    }
}
