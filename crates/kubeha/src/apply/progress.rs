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
    hosts: Mutex<BTreeMap<String, HostState>>,
}

/// What one host has done so far, for the summary and for an interrupted run.
#[derive(Debug, Default)]
struct HostState {
    done: usize,
    seconds: f64,
    running: Option<String>,
    failed: Option<String>,
}

/// The one set of live lines on the terminal, shared with the diagnostics writer so a log
/// line is printed above the spinners instead of through them.
pub fn terminal_lines() -> &'static MultiProgress {
    static LINES: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    LINES.get_or_init(MultiProgress::new)
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            multi: terminal_lines().clone(),
            bars: Mutex::new(BTreeMap::new()),
            hosts: Mutex::new(BTreeMap::new()),
        }
    }

    fn emit(&self, e: Event) {
        if let Some(host) = e.host {
            let mut hosts = self.hosts.lock().expect("progress lock");
            let state = hosts.entry(host.to_string()).or_default();
            match e.status {
                Status::Started => state.running = Some(e.message.to_string()),
                Status::Done => {
                    state.running = None;
                    state.done += 1;
                    state.seconds += e.seconds.unwrap_or_default();
                }
                Status::Failed => {
                    state.running = None;
                    state.failed = Some(e.message.to_string());
                }
                Status::Info => {}
            }
        }
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
        let host = match (e.host, e.phase) {
            (Some(host), _) => host,
            (None, Some(phase)) => {
                let _ = self.multi.println(format!("==> {phase}: {}", e.message));
                return;
            }
            // What the cluster as a whole waits for gets a live line of its own.
            // "(cluster)" is no valid host name, so it never shares a host's line.
            (None, None) => "(cluster)",
        };
        // One line per host: a spinner and the time spent while a step runs, the last
        // finished step otherwise.
        let working = || {
            ProgressStyle::with_template("{spinner} {prefix:<16} {wide_msg} {elapsed:>4}")
                .expect("valid template")
        };
        let mut bars = self.bars.lock().expect("progress lock");
        let bar = bars.entry(host.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(working());
            bar.set_prefix(host.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        match e.status {
            Status::Started | Status::Info => {
                bar.set_style(working());
                bar.reset_elapsed();
                bar.set_message(e.message.to_string());
            }
            Status::Done => {
                let took = e.seconds.map_or(String::new(), |s| format!(" {s:.1}s"));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:<16} {wide_msg}")
                        .expect("valid template"),
                );
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

    /// Stops the spinners so what follows prints below them.
    pub fn finish(&self) {
        for bar in self.bars.lock().expect("progress lock").values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }

    /// For people (not in `-o ndjson`): one summary line per host below the live lines.
    pub fn print_summary(&self) {
        self.finish();
        if self.mode != Mode::Json {
            eprint!("{}", self.summary());
        }
    }

    /// Steps done and time spent per host, and how each host ended.
    pub fn summary(&self) -> String {
        let hosts = self.hosts.lock().expect("progress lock");
        let mut out = format!("{:<16} {:>5} {:>8}  STATE\n", "HOST", "STEPS", "TIME");
        for (host, s) in hosts.iter() {
            let state = match (&s.failed, &s.running) {
                (Some(failure), _) => {
                    format!("FAILED: {}", failure.lines().next().unwrap_or_default())
                }
                (None, Some(step)) => format!("stopped during: {step}"),
                (None, None) => "ok".into(),
            };
            out += &format!("{host:<16} {:>5} {:>7.1}s  {state}\n", s.done, s.seconds);
        }
        out
    }

    /// The steps that had started and not finished, by host: what an interruption cut short.
    pub fn running(&self) -> Vec<(String, String)> {
        let hosts = self.hosts.lock().expect("progress lock");
        hosts
            .iter()
            .filter_map(|(h, s)| Some((h.clone(), s.running.clone()?)))
            .collect()
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

    #[test]
    fn the_summary_says_how_each_host_ended() {
        let p = Progress::new(Mode::Lines);
        p.started("cp-1", "install kubeadm");
        p.done("cp-1", "install kubeadm", 2.0);
        p.started("cp-1", "kubeadm init");
        p.done("cp-1", "kubeadm init", 3.5);
        p.started("cp-2", "kubeadm join");
        p.started("lb", "restart haproxy");
        p.failed("lb", "exit 1");
        assert_eq!(
            p.summary(),
            "HOST             STEPS     TIME  STATE\n\
             cp-1                 2     5.5s  ok\n\
             cp-2                 0     0.0s  stopped during: kubeadm join\n\
             lb                   0     0.0s  FAILED: exit 1\n"
        );
        assert_eq!(
            p.running(),
            [("cp-2".to_string(), "kubeadm join".to_string())]
        );
    }
}
