//! What a run shows while it works: a spinner per host on a terminal, plain lines
//! otherwise (both on stderr), or JSON events (one per line on stdout, `-o ndjson`) for
//! CI. The events' schema is documented in the README and pinned by the test below.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Lines,
    Json,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Started,
    Done,
    Failed,
    Info,
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
}

pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn emit(&self, e: Event) {
        match self.mode {
            Mode::Json => println!("{}", serde_json::to_string(&e).expect("events serialize")),
            Mode::Lines => {
                let who = e.host.map_or(String::new(), |h| format!("[{h}] "));
                let what = e.phase.map_or(String::new(), |p| format!("{p}: "));
                let took = e.seconds.map_or(String::new(), |s| format!(" ({s:.1}s)"));
                let mark = match e.status {
                    Status::Started => "...",
                    Status::Done => "ok",
                    Status::Failed => "FAILED",
                    Status::Info => "",
                };
                eprintln!("{who}{what}{} {mark}{took}", e.message);
            }
            Mode::Terminal => self.terminal(&e),
        }
    }

    fn terminal(&self, e: &Event) {
        let Some(host) = e.host else {
            let phase = e.phase.map_or(String::new(), |p| format!("{p}: "));
            let _ = self.multi.println(format!("==> {phase}{}", e.message));
            return;
        };
        let mut bars = self.bars.lock().expect("progress lock");
        let bar = bars.entry(host.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<16} {wide_msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(host.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        match e.status {
            Status::Started | Status::Info => bar.set_message(e.message.to_string()),
            Status::Done => {
                let took = e.seconds.map_or(String::new(), |s| format!(" {s:.1}s"));
                bar.set_message(format!("{} ✓{took}", e.message));
            }
            Status::Failed => {
                let _ = self.multi.println(format!("✗ {host}: {}", e.message));
                bar.abandon_with_message(format!("FAILED: {}", e.message));
            }
        }
    }

    fn event<'a>(
        status: Status,
        host: Option<&'a str>,
        phase: Option<&'a str>,
        message: &'a str,
        seconds: Option<f64>,
    ) -> Event<'a> {
        Event {
            event: "progress",
            status,
            host,
            phase,
            message,
            seconds,
        }
    }

    pub fn phase(&self, phase: &str) {
        self.emit(Self::event(
            Status::Info,
            None,
            Some(phase),
            "started",
            None,
        ));
    }

    pub fn phase_done(&self, phase: &str, seconds: f64) {
        self.emit(Self::event(
            Status::Done,
            None,
            Some(phase),
            "finished",
            Some(seconds),
        ));
    }

    pub fn started(&self, host: &str, message: &str) {
        self.emit(Self::event(
            Status::Started,
            Some(host),
            None,
            message,
            None,
        ));
    }

    pub fn done(&self, host: &str, message: &str, seconds: f64) {
        self.emit(Self::event(
            Status::Done,
            Some(host),
            None,
            message,
            Some(seconds),
        ));
    }

    pub fn failed(&self, host: &str, message: &str) {
        self.emit(Self::event(Status::Failed, Some(host), None, message, None));
    }

    pub fn info(&self, message: &str) {
        self.emit(Self::event(Status::Info, None, None, message, None));
    }

    /// Stops the spinners so the final report prints below them.
    pub fn finish(&self) {
        for bar in self.bars.lock().expect("progress lock").values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README documents these shapes as stable: a change here is a breaking change.
    #[test]
    fn events_keep_their_documented_shape() {
        let json = |e: Event| serde_json::to_value(e).unwrap();
        assert_eq!(
            json(Progress::event(
                Status::Started,
                Some("cp-1"),
                None,
                "kubeadm join",
                None
            )),
            serde_json::json!({"event": "progress", "status": "started", "host": "cp-1", "message": "kubeadm join"})
        );
        assert_eq!(
            json(Progress::event(
                Status::Done,
                None,
                Some("prepare"),
                "finished",
                Some(1.5)
            )),
            serde_json::json!({"event": "progress", "status": "done", "phase": "prepare", "message": "finished", "seconds": 1.5})
        );
        assert_eq!(
            json(Progress::event(
                Status::Failed,
                Some("lb"),
                None,
                "boom",
                None
            ))["status"],
            "failed"
        );
        assert_eq!(
            json(Progress::event(Status::Info, None, None, "note", None))["status"],
            "info"
        );
    }
}
