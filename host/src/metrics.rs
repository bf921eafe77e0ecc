//! Prometheus metrics through `prometheus-client`: one [`Registry`] per
//! server, encoded in the text format (0.0.4) by the library.
//!
//! Counters the request path bumps are `prometheus-client` counters resolved
//! once, at start-up, per label value (route, reason, connection error), so a
//! request pays one relaxed `fetch_add` and never hashes or allocates a label
//! set. Latency histograms are this file's [`Histogram`]: the library's own
//! takes a lock per observation, this one is an array of atomics with the
//! fixed bounds [`BUCKETS_S`], handed to the library's encoder at scrape time.
//! Values that live elsewhere (the nonce map, per-validator rows, drift, the
//! request log, the model life cycle) are read at scrape time by collectors
//! ([`Collector`]); the server's is attached with [`Metrics::attach`] once its
//! state exists. No file writes exposition text by hand: the helpers below
//! ([`counter`], [`gauge`], [`counters`], ...) describe a family and give its
//! values to the library.
//!
//! Names follow Prometheus' conventions (`promtool check metrics` is clean):
//! a counter is registered without `_total` and the encoder appends it, so
//! `"cm_requests"` here is `cm_requests_total` on the page; an info metric
//! gets `_info` the same way; units are in the names (`_seconds`).

use crate::btauth::Protocol;
use crate::reason::Reason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet,
    EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Histogram upper bounds in seconds (+Inf is implicit).
pub const BUCKETS_S: [f64; 16] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
    0.25, 1.0,
];
/// Buckets of a [`Histogram`]: the bounds and +Inf.
pub const N_BUCKETS: usize = BUCKETS_S.len() + 1;
/// Confidence is summed in millionths to stay in an integer atomic.
pub(crate) const CONFIDENCE_SCALE: f64 = 1e6;

/// One answer's confidence in millionths, for a sum kept in an atomic: a
/// value outside [0, 1] is clamped into it, a non-finite one counts as 0.
pub(crate) fn confidence_micro(confidence: f32) -> u64 {
    let c = if confidence.is_finite() {
        confidence.clamp(0.0, 1.0) as f64
    } else {
        0.0
    };
    (c * CONFIDENCE_SCALE).round() as u64
}
/// `Content-Type` of the page [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A label set fixed at start-up (`route="..."`, `reason="...",code="..."`).
type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// A latency histogram: per-bucket counts and the sum, all atomics; clones
/// share the counts (one is registered, the other observes).
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<HistogramCounts>);

#[derive(Debug)]
struct HistogramCounts {
    counts: [AtomicU64; N_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for HistogramCounts {
    fn default() -> Self {
        HistogramCounts {
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
        self.0.counts[i].fetch_add(1, Relaxed);
        self.0
            .sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Per-bucket counts (not cumulative); the last is the +Inf bucket.
    pub fn counts(&self) -> [u64; N_BUCKETS] {
        std::array::from_fn(|i| self.0.counts[i].load(Relaxed))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let counts = self.counts();
        // The finite bounds with their own counts; the encoder makes them
        // cumulative and adds +Inf as the total.
        let buckets: [(f64, u64); BUCKETS_S.len()] =
            std::array::from_fn(|i| (BUCKETS_S[i], counts[i]));
        let sum = self.0.sum_ns.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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

/// All metrics of one server, in one registry.
pub struct Metrics {
    registry: Registry,
    requests: [[Counter; Protocol::ALL.len()]; Route::ALL.len()],
    success: Counter,
    rejections: [Counter; Reason::COUNT],
    conn_errors: [Counter; ConnError::ALL.len()],
    served: Arc<Served>,
    pub gate: Histogram,
    pub verify: Histogram,
    pub predict: Histogram,
    pub total: Histogram,
    /// The server's own collector, attached once its state exists.
    late: Late,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One counter per label set of `labels`, registered as a family; the
/// handles are returned in the same order.
fn family<const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    labels: [Labels; N],
) -> [Counter; N] {
    let f = Family::<Labels, Counter>::default();
    let handles = labels.map(|l| f.get_or_create_owned(&l));
    r.register(name, help, f);
    handles
}

impl Metrics {
    /// The registry with every family the server has; values that live
    /// outside this struct arrive through [`Metrics::attach`].
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let handles = Route::ALL.map(|x| {
            Protocol::ALL.map(|p| {
                requests.get_or_create_owned(&vec![
                    ("route", x.label().into()),
                    ("protocol", p.label().into()),
                ])
            })
        });
        r.register(
            "cm_requests",
            "Requests received, by route and protocol (axon, btauth, mixed = both header sets, none = neither).",
            requests,
        );
        let requests = handles;
        let success = Counter::default();
        r.register(
            "cm_success",
            "Axon requests answered 200 (predictions and pings).",
            success.clone(),
        );
        let rejections = family(
            &mut r,
            "cm_rejections",
            "Requests refused, by reason.",
            Reason::ALL.map(|x| {
                vec![
                    ("reason", x.label().into()),
                    ("code", x.status().to_string().into()),
                ]
            }),
        );
        let conn_errors = family(
            &mut r,
            "cm_connection_errors",
            "Connections ended by hyper before or between requests, by kind.",
            ConnError::ALL.map(|x| vec![("kind", x.label().into())]),
        );
        let served = Arc::new(Served::default());
        r.register_collector(Box::new(served.clone()));
        let mut m = Metrics {
            registry: r,
            requests,
            success,
            rejections,
            conn_errors,
            served,
            gate: Histogram::default(),
            verify: Histogram::default(),
            predict: Histogram::default(),
            total: Histogram::default(),
            late: Late::default(),
        };
        for (name, help, h) in [
            (
                "cm_gate_seconds",
                "Time in the request gate before the signature check.",
                m.gate.clone(),
            ),
            (
                "cm_verify_seconds",
                "Time verifying the sr25519 signature.",
                m.verify.clone(),
            ),
            (
                "cm_predict_seconds",
                "Time parsing features and running the model.",
                m.predict.clone(),
            ),
            (
                "cm_request_seconds",
                "Total handler time of axon requests, body read included.",
                m.total.clone(),
            ),
        ] {
            m.registry.register(name, help, h);
        }
        m.registry.register_collector(Box::new(m.late.clone()));
        m
    }

    /// Adds the collector that reads the server's state at scrape time.
    /// There is one such slot; returns false (and keeps the first) when it
    /// is already taken.
    pub fn attach(&self, c: Box<dyn Collector>) -> bool {
        self.late.0.set(c).is_ok()
    }

    /// Counts a request by route and by the authentication headers it carried.
    pub fn request(&self, r: Route, p: Protocol) {
        self.requests[r as usize][p.index()].inc();
    }

    pub fn reject(&self, r: Reason) {
        self.rejections[r.index()].inc();
    }

    pub fn conn_error(&self, e: ConnError) {
        self.conn_errors[e as usize].inc();
    }

    pub fn rejections(&self, r: Reason) -> u64 {
        self.rejections[r.index()].get()
    }

    pub fn success(&self) {
        self.success.inc();
    }

    pub fn prediction(&self, positive: bool, confidence: f32) {
        let s = &self.served;
        s.n.fetch_add(1, Relaxed);
        if positive {
            s.positive.fetch_add(1, Relaxed);
        }
        s.confidence_micro
            .fetch_add(confidence_micro(confidence), Relaxed);
    }

    /// The whole registry in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail, and no collector makes up errors.
        let _ = prometheus_text::encode(&mut o, &self.registry);
        o
    }
}

/// Predictions served: counts kept as integers (confidence in millionths)
/// so the ratio and the mean can be derived at scrape time.
#[derive(Debug, Default)]
struct Served {
    n: AtomicU64,
    positive: AtomicU64,
    confidence_micro: AtomicU64,
}

impl Collector for Served {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let n = self.n.load(Relaxed);
        let pos = self.positive.load(Relaxed);
        let conf = self.confidence_micro.load(Relaxed) as f64 / CONFIDENCE_SCALE;
        counter(&mut e, "cm_predictions", "Predictions served.", n)?;
        counter(
            &mut e,
            "cm_predicted_positive",
            "Predictions with conversion_happened = 1.",
            pos,
        )?;
        counter(
            &mut e,
            "cm_confidence",
            "Sum of the confidences served.",
            conf,
        )?;
        let (rate, mean) = if n == 0 {
            (0.0, 0.0)
        } else {
            (pos as f64 / n as f64, conf / n as f64)
        };
        gauge(
            &mut e,
            "cm_predicted_positive_ratio",
            "Share of predictions that are positive since start.",
            rate,
        )?;
        gauge(
            &mut e,
            "cm_confidence_mean",
            "Mean confidence served since start.",
            mean,
        )
    }
}

/// A collector slot filled after the registry is built.
#[derive(Clone, Debug, Default)]
struct Late(Arc<OnceLock<Box<dyn Collector>>>);

impl Collector for Late {
    fn encode(&self, e: DescriptorEncoder) -> fmt::Result {
        match self.0.get() {
            Some(c) => c.encode(e),
            None => Ok(()),
        }
    }
}

/// One unlabelled counter (`name` without `_total`; the encoder adds it).
pub fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl EncodeCounterValue,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// One unlabelled gauge.
pub fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// A counter family: one series per (labels, value).
pub fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family: one series per (labels, value).
pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram family: one series per (labels, histogram).
pub fn histograms<'h, L: EncodeLabelSet>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, &'h Histogram)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        h.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// An info metric (`name` without `_info`; the encoder adds it): a gauge
/// of 1 whose labels carry the information.
pub fn info<L>(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, labels: L) -> fmt::Result
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq,
{
    let m = e.encode_descriptor(name, help, None, MetricType::Info)?;
    Info::new(labels).encode(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::check;

    #[test]
    fn histogram_is_cumulative() {
        let mut r = Registry::default();
        let h = Histogram::default();
        r.register("x_seconds", "help", h.clone());
        h.observe(Duration::from_nanos(500));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(5));
        let mut s = String::new();
        prometheus_text::encode(&mut s, &r).unwrap();
        assert!(s.contains("x_seconds_bucket{le=\"1e-06\"} 1"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"5e-05\"} 2"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"1\"} 2"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"+Inf\"} 3"), "{s}");
        assert!(s.contains("x_seconds_count 3"), "{s}");
        check(&s).unwrap();
    }

    /// A collector with one labelled histogram, as the accounting has.
    #[derive(Debug)]
    struct OneSeries(Histogram);

    impl Collector for OneSeries {
        fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
            histograms(
                &mut e,
                "x_seconds",
                "help",
                [([("validator", "v")], &self.0)],
            )
        }
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
        let mut r = Registry::default();
        r.register_collector(Box::new(OneSeries(h.clone())));
        let mut s = String::new();
        prometheus_text::encode(&mut s, &r).unwrap();
        assert!(
            s.contains("x_seconds_bucket{validator=\"v\",le=\"0.0005\"} 90"),
            "{s}"
        );
        assert!(s.contains("x_seconds_count{validator=\"v\"} 100"), "{s}");
        check(&s).unwrap();
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
        let m = Metrics::new();
        m.reject(Reason::Blacklisted);
        m.reject(Reason::Blacklisted);
        m.request(Route::Ping, Protocol::Btauth);
        m.conn_error(ConnError::BadHttp);
        m.prediction(true, 0.9);
        m.prediction(false, 0.1);
        m.total.observe(Duration::from_micros(40));
        let s = m.render();
        assert!(s.contains("cm_rejections_total{reason=\"blacklisted\",code=\"403\"} 2"));
        assert!(s.contains("cm_rejections_total{reason=\"internal\",code=\"500\"} 0"));
        assert!(s.contains("cm_requests_total{route=\"Synapse\",protocol=\"btauth\"} 1"));
        assert!(s.contains("cm_connection_errors_total{kind=\"bad_http\"} 1"));
        assert!(s.contains("cm_predictions_total 2"));
        assert!(s.contains("cm_confidence_total 1"), "{s}");
        assert!(s.contains("cm_predicted_positive_ratio 0.5"));
        assert!(s.contains("cm_confidence_mean 0.5"));
        assert!(s.contains("cm_request_seconds_count 1"));
        assert_eq!(m.rejections(Reason::Blacklisted), 2);
    }

    /// The late collector: what the server attaches appears on the page,
    /// once; a second one is refused.
    #[derive(Debug)]
    struct Up(&'static str);

    impl Collector for Up {
        fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
            gauge(&mut e, "cm_up_test", "A test gauge.", 1.5)?;
            info(&mut e, "cm_test", "A test info.", [("kernel", self.0)])?;
            counters(
                &mut e,
                "cm_test_events",
                "Test events.",
                [([("kind", "a")], 1u64), ([("kind", "b")], 2)],
            )
        }
    }

    #[test]
    fn every_family_parses_back() {
        let m = Metrics::new();
        assert!(m.attach(Box::new(Up("scalar"))));
        assert!(!m.attach(Box::new(Up("other"))));
        m.gate.observe(Duration::from_micros(3));
        let s = m.render();
        let page = check(&s).unwrap_or_else(|e| panic!("{e}\n{s}"));
        assert!(s.contains("cm_up_test 1.5"), "{s}");
        assert!(s.contains("cm_test_info{kernel=\"scalar\"} 1"), "{s}");
        assert!(s.contains("cm_test_events_total{kind=\"b\"} 2"), "{s}");
        for (name, ty) in [
            ("cm_requests_total", "counter"),
            ("cm_success_total", "counter"),
            ("cm_rejections_total", "counter"),
            ("cm_connection_errors_total", "counter"),
            ("cm_predictions_total", "counter"),
            ("cm_confidence_total", "counter"),
            ("cm_gate_seconds", "histogram"),
            ("cm_request_seconds", "histogram"),
            ("cm_test_info", "gauge"),
        ] {
            assert!(
                page.families.iter().any(|(n, t)| n == name && t == ty),
                "{name} ({ty}) missing: {:?}",
                page.families
            );
        }
    }
}
