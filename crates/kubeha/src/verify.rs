//! Failover drill arithmetic: what a stream of API probes says about an outage. Pure.

use std::time::Duration;

use serde::Serialize;

use crate::spec::Availability;

/// One API request made during a drill: when it started (since the drill began) and
/// whether it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill: String,
    pub requests: usize,
    pub failures: usize,
    pub success_ratio: f64,
    /// From the last success before a failure to the first success after it.
    pub longest_outage_ms: u64,
    /// Fault injected → the load balancers (or VRRP) noticed.
    pub detect_ms: Option<u64>,
    /// Fault removed → everything back in service.
    pub recover_ms: Option<u64>,
    /// Targets this drill missed; empty when it passed.
    pub violations: Vec<String>,
}

/// Requests, failures and the longest outage of a probe stream.
pub fn summarize(samples: &[Sample]) -> (usize, usize, Duration) {
    let failures = samples.iter().filter(|s| !s.ok).count();
    let mut longest = Duration::ZERO;
    let mut last_ok: Option<Duration> = None;
    let mut outage_from: Option<Duration> = None;
    for s in samples {
        if s.ok {
            if let Some(from) = outage_from.take() {
                longest = longest.max(s.at.saturating_sub(from));
            }
            last_ok = Some(s.at);
        } else if outage_from.is_none() {
            // The outage began right after the last success (or at the first failure).
            outage_from = Some(last_ok.unwrap_or(s.at));
        }
    }
    if let (Some(from), Some(end)) = (outage_from, samples.last()) {
        longest = longest.max(end.at.saturating_sub(from));
    }
    (samples.len(), failures, longest)
}

/// The API availability an operation's users had, from its probe samples: what
/// `upgrade` and control-plane changes report when they end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiAvailability {
    pub requests: usize,
    pub failures: usize,
    pub success_ratio: f64,
    /// From the last success before a failure to the first success after it.
    pub longest_outage_ms: u64,
}

impl ApiAvailability {
    pub fn from_samples(samples: &[Sample]) -> Self {
        let (requests, failures, longest) = summarize(samples);
        ApiAvailability {
            requests,
            failures,
            success_ratio: success_ratio(requests, failures),
            longest_outage_ms: longest.as_millis() as u64,
        }
    }
}

impl std::fmt::Display for ApiAvailability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "API through the endpoint: {} requests, {:.2}% succeeded, longest outage {:.1}s",
            self.requests,
            self.success_ratio * 100.0,
            self.longest_outage_ms as f64 / 1000.0
        )
    }
}

fn success_ratio(requests: usize, failures: usize) -> f64 {
    if requests == 0 {
        0.0
    } else {
        (requests - failures) as f64 / requests as f64
    }
}

pub fn report(
    drill: &str,
    samples: &[Sample],
    detect: Option<Duration>,
    recover: Option<Duration>,
    target: &Availability,
) -> DrillReport {
    let (requests, failures, longest) = summarize(samples);
    let success_ratio = success_ratio(requests, failures);
    let mut violations = Vec::new();
    if requests == 0 {
        violations.push("no API request was made".into());
    }
    if longest > target.max_api_outage {
        violations.push(format!(
            "the API was unavailable for {:.1}s, more than the {:.1}s allowed",
            longest.as_secs_f64(),
            target.max_api_outage.as_secs_f64()
        ));
    }
    if let Some(min) = target.min_success_ratio.filter(|min| success_ratio < *min) {
        violations.push(format!(
            "{:.1}% of requests succeeded, below the {:.1}% required",
            success_ratio * 100.0,
            min * 100.0
        ));
    }
    if detect.is_none() {
        violations.push("the failure was never detected".into());
    }
    if recover.is_none() {
        violations.push("the cluster did not recover".into());
    }
    DrillReport {
        drill: drill.into(),
        requests,
        failures,
        success_ratio,
        longest_outage_ms: longest.as_millis() as u64,
        detect_ms: detect.map(|d| d.as_millis() as u64),
        recover_ms: recover.map(|d| d.as_millis() as u64),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pattern: &str) -> Vec<Sample> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| Sample {
                at: Duration::from_millis(100 * i as u64),
                ok: c == '.',
            })
            .collect()
    }

    #[test]
    fn availability_counts_requests_failures_and_the_longest_gap() {
        let a = ApiAvailability::from_samples(&stream("..xxx...x."));
        assert_eq!((a.requests, a.failures), (10, 4));
        assert!((a.success_ratio - 0.6).abs() < 1e-9);
        assert_eq!(a.longest_outage_ms, 400);
        assert!(a.to_string().contains("60.00% succeeded"), "{a}");
        assert_eq!(ApiAvailability::from_samples(&[]).success_ratio, 0.0);
    }

    #[test]
    fn longest_outage_spans_from_last_success_to_next() {
        // Successes at 0 and 100 ms, failures at 200-400, success at 500: 400 ms outage.
        let (n, failed, longest) = summarize(&stream("..xxx..x."));
        assert_eq!((n, failed), (9, 4));
        assert_eq!(longest, Duration::from_millis(400));
    }

    #[test]
    fn an_outage_still_open_at_the_end_counts() {
        let (_, _, longest) = summarize(&stream("..xxxx"));
        assert_eq!(longest, Duration::from_millis(400));
        assert_eq!(summarize(&stream("....")).2, Duration::ZERO);
    }

    #[test]
    fn targets_are_enforced() {
        let target = Availability {
            max_api_outage: Duration::from_millis(300),
            min_success_ratio: Some(0.9),
        };
        let ok = report(
            "cp",
            &stream("....x....."),
            Some(Duration::from_secs(6)),
            Some(Duration::from_secs(4)),
            &target,
        );
        assert!(ok.violations.is_empty(), "{:?}", ok.violations);
        assert_eq!(ok.longest_outage_ms, 200);
        let bad = report(
            "cp",
            &stream("..xxxxx..."),
            Some(Duration::from_secs(6)),
            None,
            &target,
        );
        assert_eq!(bad.violations.len(), 3, "{:?}", bad.violations);
        assert!(bad.violations[0].contains("unavailable for 0.6s"));
        assert!(bad.violations[1].contains("50.0% of requests"));
        assert!(bad.violations[2].contains("did not recover"));
    }
}
