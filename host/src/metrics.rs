//! Prometheus metrics, hand-written: atomics in, text exposition out.
//!
//! A metrics crate would bring a registry, dynamic labels and allocation per
//! update; the set here is fixed at compile time (routes, reasons, four
//! latency stages), so plain atomic arrays are enough and an update is one
//! relaxed `fetch_add`. Histograms store per-bucket counts and are made
//! cumulative only when `/metrics` is rendered.

use crate::btauth::Protocol;
use crate::reason::Reason;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram upper bounds in seconds (+Inf is implicit).
pub const BUCKETS_S: [f64; 16] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
    0.25, 1.0,
];
/// Buckets of a [`Histogram`]: the bounds and +Inf.
pub const N_BUCKETS: usize = BUCKETS_S.len() + 1;
/// Confidence is summed in millionths to stay in an integer atomic.
const CONFIDENCE_SCALE: f64 = 1e6;

/// A latency histogram.
pub struct Histogram {
    counts: [AtomicU64; N_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS_S.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The sample lines of one series (no HELP/TYPE); `labels` is empty or
    /// `key="value",` pairs each ending in a comma.
    pub fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Relaxed);
            match BUCKETS_S.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cum}");
                }
            }
        }
        let braced = labels.trim_end_matches(',');
        let braced = if braced.is_empty() {
            String::new()
        } else {
            format!("{{{braced}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braced} {}",
            self.sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{braced} {cum}");
    }

    /// Per-bucket counts (not cumulative); the last is the +Inf bucket.
    pub fn counts(&self) -> [u64; N_BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Relaxed))
    }
}

/// The `q` quantile (0..=1) of per-bucket counts in seconds, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does (a
/// quantile in the +Inf bucket reads as the largest finite bound); None
/// when there are no observations.
pub fn quantile(counts: &[u64; N_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&hi) = BUCKETS_S.get(i) else {
                return BUCKETS_S.last().copied();
            };
            let lo = if i == 0 { 0.0 } else { BUCKETS_S[i - 1] };
            let into = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lo + (hi - lo) * into);
        }
        below += c;
    }
    BUCKETS_S.last().copied()
}

/// Routes counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Conversion,
    Ping,
    Health,
    Metrics,
    /// `GET /status` (crate::dashboard).
    Status,
    /// The built-in dashboard page and its assets (crate::dashboard).
    Dashboard,
    Other,
}

impl Route {
    const ALL: [Route; 7] = [
        Route::Conversion,
        Route::Ping,
        Route::Health,
        Route::Metrics,
        Route::Status,
        Route::Dashboard,
        Route::Other,
    ];
    fn label(self) -> &'static str {
        match self {
            Route::Conversion => "ConversionSynapse",
            Route::Ping => "Synapse",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Status => "status",
            Route::Dashboard => "dashboard",
            Route::Other => "other",
        }
    }
}

/// Connection-level failures hyper answers (or closes) before a handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// Header block not complete within the header timeout (slow client or idle keep-alive).
    HeaderTimeout,
    /// Header block over the size or count limit (hyper answers 431).
    HeadersTooLarge,
    /// Not parseable as HTTP/1.1 (hyper answers 400).
    BadHttp,
    /// Anything else: resets, truncated messages.
    Other,
}

impl ConnError {
    const ALL: [ConnError; 4] = [
        ConnError::HeaderTimeout,
        ConnError::HeadersTooLarge,
        ConnError::BadHttp,
        ConnError::Other,
    ];

    /// Classifies a connection's error.
    pub fn of(e: &hyper::Error) -> ConnError {
        if e.is_timeout() {
            ConnError::HeaderTimeout
        } else if e.is_parse_too_large() {
            ConnError::HeadersTooLarge
        } else if e.is_parse() {
            ConnError::BadHttp
        } else {
            ConnError::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            ConnError::HeaderTimeout => "header_timeout",
            ConnError::HeadersTooLarge => "headers_too_large",
            ConnError::BadHttp => "bad_http",
            ConnError::Other => "other",
        }
    }
}

/// All counters of one server.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; Protocol::ALL.len()]; Route::ALL.len()],
    successes: AtomicU64,
    rejections: [AtomicU64; Reason::COUNT],
    conn_errors: [AtomicU64; 4],
    predictions: AtomicU64,
    positives: AtomicU64,
    confidence_micro: AtomicU64,
    pub gate: Histogram,
    pub verify: Histogram,
    pub predict: Histogram,
    pub total: Histogram,
}

/// Values sampled at render time.
pub struct Gauges<'a> {
    pub inflight: usize,
    pub nonce_keys: usize,
    pub validators: usize,
    pub uptime_s: f64,
    pub kernel: &'a str,
    pub version: &'a str,
    pub model_sha256: &'a str,
}

impl Metrics {
    /// Counts a request by route and by the authentication headers it carried.
    pub fn request(&self, r: Route, p: Protocol) {
        let i = Route::ALL
            .iter()
            .position(|&x| x == r)
            .unwrap_or(Route::ALL.len() - 1);
        self.requests[i][p.index()].fetch_add(1, Relaxed);
    }

    pub fn reject(&self, r: Reason) {
        self.rejections[r.index()].fetch_add(1, Relaxed);
    }

    pub fn conn_error(&self, e: ConnError) {
        self.conn_errors[e as usize].fetch_add(1, Relaxed);
    }

    pub fn rejections(&self, r: Reason) -> u64 {
        self.rejections[r.index()].load(Relaxed)
    }

    pub fn success(&self) {
        self.successes.fetch_add(1, Relaxed);
    }

    pub fn prediction(&self, positive: bool, confidence: f32) {
        self.predictions.fetch_add(1, Relaxed);
        if positive {
            self.positives.fetch_add(1, Relaxed);
        }
        let c = if confidence.is_finite() {
            confidence.clamp(0.0, 1.0) as f64
        } else {
            0.0
        };
        self.confidence_micro
            .fetch_add((c * CONFIDENCE_SCALE).round() as u64, Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let mut o = String::with_capacity(8192);
        let _ = writeln!(o, "# HELP cm_requests_total Requests received, by route and protocol (axon, btauth, mixed = both header sets, none = neither).\n# TYPE cm_requests_total counter");
        for (i, r) in Route::ALL.iter().enumerate() {
            for p in Protocol::ALL {
                let _ = writeln!(
                    o,
                    "cm_requests_total{{route=\"{}\",protocol=\"{}\"}} {}",
                    r.label(),
                    p.label(),
                    self.requests[i][p.index()].load(Relaxed)
                );
            }
        }
        let _ = writeln!(o, "# HELP cm_success_total Axon requests answered 200 (predictions and pings).\n# TYPE cm_success_total counter\ncm_success_total {}", self.successes.load(Relaxed));
        let _ = writeln!(o, "# HELP cm_rejections_total Requests refused, by reason.\n# TYPE cm_rejections_total counter");
        for r in Reason::ALL {
            let _ = writeln!(
                o,
                "cm_rejections_total{{reason=\"{}\",code=\"{}\"}} {}",
                r.label(),
                r.status(),
                self.rejections[r.index()].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP cm_connection_errors_total Connections ended by hyper before or between requests, by kind.\n# TYPE cm_connection_errors_total counter");
        for e in ConnError::ALL {
            let _ = writeln!(
                o,
                "cm_connection_errors_total{{kind=\"{}\"}} {}",
                e.label(),
                self.conn_errors[e as usize].load(Relaxed)
            );
        }
        let n = self.predictions.load(Relaxed);
        let pos = self.positives.load(Relaxed);
        let conf = self.confidence_micro.load(Relaxed) as f64 / CONFIDENCE_SCALE;
        let _ = writeln!(o, "# HELP cm_predictions_total Predictions served.\n# TYPE cm_predictions_total counter\ncm_predictions_total {n}");
        let _ = writeln!(o, "# HELP cm_predicted_positive_total Predictions with conversion_happened = 1.\n# TYPE cm_predicted_positive_total counter\ncm_predicted_positive_total {pos}");
        let _ = writeln!(o, "# HELP cm_confidence_sum Sum of confidences served.\n# TYPE cm_confidence_sum counter\ncm_confidence_sum {conf}");
        let (rate, mean) = if n == 0 {
            (0.0, 0.0)
        } else {
            (pos as f64 / n as f64, conf / n as f64)
        };
        let _ = writeln!(o, "# HELP cm_predicted_positive_ratio Share of predictions that are positive since start.\n# TYPE cm_predicted_positive_ratio gauge\ncm_predicted_positive_ratio {rate}");
        let _ = writeln!(o, "# HELP cm_confidence_mean Mean confidence served since start.\n# TYPE cm_confidence_mean gauge\ncm_confidence_mean {mean}");
        self.gate.render(
            &mut o,
            "cm_gate_seconds",
            "Time in the request gate before the signature check.",
        );
        self.verify.render(
            &mut o,
            "cm_verify_seconds",
            "Time verifying the sr25519 signature.",
        );
        self.predict.render(
            &mut o,
            "cm_predict_seconds",
            "Time parsing features and running the model.",
        );
        self.total.render(
            &mut o,
            "cm_request_seconds",
            "Total handler time of axon requests, body read included.",
        );
        let _ = writeln!(o, "# HELP cm_inflight Requests being handled now.\n# TYPE cm_inflight gauge\ncm_inflight {}", g.inflight);
        let _ = writeln!(o, "# HELP cm_nonce_keys hotkey:uuid keys in the nonce map.\n# TYPE cm_nonce_keys gauge\ncm_nonce_keys {}", g.nonce_keys);
        let _ = writeln!(o, "# HELP cm_validators Hotkeys on the allow-list.\n# TYPE cm_validators gauge\ncm_validators {}", g.validators);
        let _ = writeln!(o, "# HELP cm_uptime_seconds Seconds since start.\n# TYPE cm_uptime_seconds gauge\ncm_uptime_seconds {}", g.uptime_s);
        let _ = writeln!(o, "# HELP cm_kernel_info The forward kernel in use.\n# TYPE cm_kernel_info gauge\ncm_kernel_info{{kernel=\"{}\"}} 1", g.kernel);
        let _ = writeln!(
            o,
            "# HELP cm_build_info Build and model identity.\n# TYPE cm_build_info gauge\ncm_build_info{{version=\"{}\",model_sha256=\"{}\"}} 1",
            g.version, g.model_sha256
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(500));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(5));
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.000001\"} 1"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.00005\"} 2"), "{s}");
        assert!(s.contains("x_bucket{le=\"1\"} 2"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3"), "{s}");
        assert!(s.contains("x_count 3"), "{s}");
    }

    #[test]
    fn labelled_series_and_quantiles() {
        let h = Histogram::default();
        assert_eq!(quantile(&h.counts(), 0.5), None);
        for _ in 0..90 {
            h.observe(Duration::from_micros(300)); // (2.5e-4, 5e-4]
        }
        for _ in 0..10 {
            h.observe(Duration::from_secs(3)); // +Inf
        }
        let mut s = String::new();
        h.render_series(&mut s, "x", "validator=\"v\",");
        assert!(
            s.contains("x_bucket{validator=\"v\",le=\"0.0005\"} 90"),
            "{s}"
        );
        assert!(s.contains("x_count{validator=\"v\"} 100"), "{s}");
        let c = h.counts();
        // Rank 50 of the 90 in (2.5e-4, 5e-4]: 50/90 of the way up.
        let p50 = quantile(&c, 0.5).unwrap();
        assert!(
            (p50 - (2.5e-4 + 2.5e-4 * 50.0 / 90.0)).abs() < 1e-12,
            "{p50}"
        );
        assert_eq!(quantile(&c, 0.99), Some(1.0));
        assert_eq!(quantile(&c, 0.0), Some(2.5e-4));
    }

    #[test]
    fn render_counts_by_reason() {
        let m = Metrics::default();
        m.reject(Reason::Blacklisted);
        m.reject(Reason::Blacklisted);
        m.prediction(true, 0.9);
        m.prediction(false, 0.1);
        let g = Gauges {
            inflight: 0,
            nonce_keys: 0,
            validators: 0,
            uptime_s: 1.0,
            kernel: "scalar",
            version: "0.1.0",
            model_sha256: "ab",
        };
        let s = m.render(&g);
        assert!(s.contains("cm_rejections_total{reason=\"blacklisted\",code=\"403\"} 2"));
        assert!(s.contains("cm_predicted_positive_ratio 0.5"));
        assert!(s.contains("cm_confidence_mean 0.5"));
        assert!(s.contains("cm_kernel_info{kernel=\"scalar\"} 1"));
    }
}
