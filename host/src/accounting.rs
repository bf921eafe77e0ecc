//! Per-validator accounting: who calls this miner, how often, and what they get.
//!
//! Every request to a synapse route ends in one [`Accounting::record`] call,
//! answered or refused, and is counted in one row. A row belongs to one
//! hotkey the gate admits (on the validators file, or anyone under
//! `--allow-all`/`--dev`); everything else (strangers, requests without a
//! readable hotkey header, admitted callers once the table is full) lands in
//! the single `other` row. So memory is bounded whatever callers do: at most
//! [`MAX_ROWS`] named rows plus `other`, each a fixed block of atomics
//! ([`ROW_BYTES`] bytes, about 1 KB; with the map about 260 KB at most),
//! never freed while the server runs,
//! which keeps the hot path a read-locked map lookup and relaxed adds. A
//! refusal is counted under the hotkey its header *claims* (before the
//! signature check that is all there is), so a forger can add refusals to a
//! validator's row but never answers. Rows are keyed by the header's text;
//! only a hotkey not yet in the table is decoded and looked up in the
//! allow-list.
//!
//! Requests per second over the last minutes come from a ring of
//! [`RATE_SLOTS`] counters of [`RATE_SLOT_S`] seconds per row; each counter
//! carries the slot number it counts, so a slot left from five minutes ago
//! reads as zero without any timer task clearing it.

use crate::metrics::{self, quantile, Histogram, CONFIDENCE_SCALE, N_BUCKETS};
use crate::reason::Reason;
use crate::ss58;
use prometheus_client::encoding::DescriptorEncoder;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most hotkeys with a row of their own (a subnet has 256 uids, of which at
/// most 64 hold validator permits); later ones are counted as `other`.
pub const MAX_ROWS: usize = 256;
/// Label of the row for everyone without a row of their own.
pub const OTHER: &str = "other";
/// Seconds per requests-per-second sample.
pub const RATE_SLOT_S: u64 = 5;
/// Samples kept per row: five minutes.
pub const RATE_SLOTS: usize = 60;
/// Confidence histogram bins over [0, 1].
pub const CONF_BINS: usize = 10;
/// Bits of a rate cell holding the count; the slot number sits above them.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Size of one row, for the memory bound above.
pub const ROW_BYTES: usize = std::mem::size_of::<Row>();

/// How a request reached us. The label is the `protocol` value in
/// `/metrics` and `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The bittensor axon protocol over HTTP (AXON.md).
    Axon,
    /// btauth/1, bittensor 11's signed HTTP (crate::btauth).
    Btauth,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Axon, Protocol::Btauth];
    pub const COUNT: usize = Protocol::ALL.len();

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Axon => "axon",
            Protocol::Btauth => "btauth",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Answered 200; `prediction` is (positive, confidence) when the answer
    /// carried one (a ping does not).
    Answered {
        prediction: Option<(bool, f32)>,
    },
    Refused(Reason),
}

/// The counters of one caller (or of `other`).
pub struct Row {
    key: Option<[u8; 32]>,
    label: Box<str>,
    requests: [AtomicU64; Protocol::COUNT],
    answered: AtomicU64,
    refused: [AtomicU64; Reason::COUNT],
    latency: Histogram,
    /// Milliseconds since the table's start, plus one (0 = never).
    last_seen_ms: AtomicU64,
    predictions: AtomicU64,
    positives: AtomicU64,
    confidence_micro: AtomicU64,
    confidence_bins: [AtomicU64; CONF_BINS],
    /// `slot << COUNT_BITS | count` per cell, slot = unix seconds / RATE_SLOT_S.
    rate: [AtomicU64; RATE_SLOTS],
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// The bin of a confidence (non-finite counts as 0).
fn conf_bin(c: f32) -> usize {
    let c = if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((c * CONF_BINS as f32) as usize).min(CONF_BINS - 1)
}

impl Row {
    fn new(key: Option<[u8; 32]>, label: &str) -> Row {
        Row {
            key,
            label: label.into(),
            requests: zeros(),
            answered: AtomicU64::new(0),
            refused: zeros(),
            latency: Histogram::default(),
            last_seen_ms: AtomicU64::new(0),
            predictions: AtomicU64::new(0),
            positives: AtomicU64::new(0),
            confidence_micro: AtomicU64::new(0),
            confidence_bins: zeros(),
            rate: zeros(),
        }
    }

    fn record(&self, p: Protocol, outcome: Outcome, elapsed: Duration, seen_ms: u64, slot: u64) {
        self.requests[p.index()].fetch_add(1, Relaxed);
        self.latency.observe(elapsed);
        self.last_seen_ms.fetch_max(seen_ms + 1, Relaxed);
        self.bump_rate(slot);
        match outcome {
            Outcome::Refused(r) => {
                self.refused[r.index()].fetch_add(1, Relaxed);
            }
            Outcome::Answered { prediction } => {
                self.answered.fetch_add(1, Relaxed);
                if let Some((positive, conf)) = prediction {
                    self.predictions.fetch_add(1, Relaxed);
                    if positive {
                        self.positives.fetch_add(1, Relaxed);
                    }
                    self.confidence_micro
                        .fetch_add(metrics::confidence_micro(conf), Relaxed);
                    self.confidence_bins[conf_bin(conf)].fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Adds one to the current slot's cell, restarting a cell left from an
    /// older slot; a cell already on a newer slot is left alone.
    fn bump_rate(&self, slot: u64) {
        let cell = &self.rate[(slot % RATE_SLOTS as u64) as usize];
        let mut cur = cell.load(Relaxed);
        loop {
            let next = match (cur >> COUNT_BITS).cmp(&slot) {
                std::cmp::Ordering::Greater => return,
                std::cmp::Ordering::Equal if cur & COUNT_MASK == COUNT_MASK => return,
                std::cmp::Ordering::Equal => cur + 1,
                std::cmp::Ordering::Less => (slot << COUNT_BITS) | 1,
            };
            match cell.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Requests in each of the last [`RATE_SLOTS`] slots up to `slot`, oldest first.
    fn rate_counts(&self, slot: u64) -> Vec<u64> {
        (0..RATE_SLOTS as u64)
            .rev()
            .map(|back| {
                let s = slot.saturating_sub(back);
                let cell = self.rate[(s % RATE_SLOTS as u64) as usize].load(Relaxed);
                if back <= slot && cell >> COUNT_BITS == s {
                    cell & COUNT_MASK
                } else {
                    0
                }
            })
            .collect()
    }

    fn requests(&self) -> u64 {
        self.requests.iter().map(|a| a.load(Relaxed)).sum()
    }
}

/// A row's numbers at one moment, for `/status` and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// SS58 address, or [`OTHER`].
    pub hotkey: String,
    pub requests: u64,
    pub answered: u64,
    /// Non-zero refusal counts by reason label.
    pub refused: Vec<(&'static str, u64)>,
}

/// The table of rows.
pub struct Accounting {
    started: Instant,
    rows: RwLock<HashMap<Box<str>, Arc<Row>>>,
    other: Row,
}

impl Default for Accounting {
    fn default() -> Self {
        Accounting {
            started: Instant::now(),
            rows: RwLock::new(HashMap::new()),
            other: Row::new(None, OTHER),
        }
    }
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ratio(num: u64, den: u64) -> Value {
    if den == 0 {
        Value::Null
    } else {
        Value::from(num as f64 / den as f64)
    }
}

fn ms(q: Option<f64>) -> Value {
    q.map(|s| Value::from(s * 1e3)).unwrap_or(Value::Null)
}

impl Accounting {
    /// Counts one request to a synapse route. `hotkey` is the
    /// `bt_header_dendrite_hotkey` header when there is one; `admitted`
    /// says whether the gate lets that key in (it decides who gets a row).
    pub fn record(
        &self,
        hotkey: Option<&str>,
        admitted: impl Fn(&[u8; 32]) -> bool,
        protocol: Protocol,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let seen_ms = self.started.elapsed().as_millis().min(u64::MAX as u128 / 2) as u64;
        let slot = unix_s() / RATE_SLOT_S;
        match hotkey.and_then(|h| self.row(h, admitted)) {
            Some(row) => row.record(protocol, outcome, elapsed, seen_ms, slot),
            None => self.other.record(protocol, outcome, elapsed, seen_ms, slot),
        }
    }

    /// The row of `hotkey`, created if the key is admitted and there is room.
    fn row(&self, hotkey: &str, admitted: impl Fn(&[u8; 32]) -> bool) -> Option<Arc<Row>> {
        let found = match self.rows.read() {
            Ok(g) => g.get(hotkey).cloned(),
            Err(p) => p.into_inner().get(hotkey).cloned(),
        };
        if found.is_some() {
            return found;
        }
        let key = ss58::decode_key(hotkey).ok()?;
        if !admitted(&key) {
            return None;
        }
        let mut rows = match self.rows.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(r) = rows.get(hotkey) {
            return Some(r.clone());
        }
        if rows.len() >= MAX_ROWS {
            return None;
        }
        let row = Arc::new(Row::new(Some(key), hotkey));
        rows.insert(hotkey.into(), row.clone());
        Some(row)
    }

    /// Named rows (by address) then `other`.
    fn all(&self) -> Vec<Arc<Row>> {
        let mut v: Vec<Arc<Row>> = match self.rows.read() {
            Ok(g) => g.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        v.sort_by(|a, b| a.label.cmp(&b.label));
        v
    }

    /// `named` then `other`.
    fn with_other<'a>(&'a self, named: &'a [Arc<Row>]) -> Vec<&'a Row> {
        named
            .iter()
            .map(|r| &**r)
            .chain(std::iter::once(&self.other))
            .collect()
    }

    /// Named rows, in address order, then `other`, as plain numbers.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let snap = |r: &Row| Snapshot {
            hotkey: r.label.to_string(),
            requests: r.requests(),
            answered: r.answered.load(Relaxed),
            refused: Reason::ALL
                .iter()
                .map(|x| (x.label(), r.refused[x.index()].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        };
        let named = self.all();
        self.with_other(&named).into_iter().map(snap).collect()
    }

    /// The `/status` part: `validators` (one object per row that saw a
    /// request; `stake` from `stake_of`) and the totals the dashboard draws.
    pub fn status(&self, stake_of: impl Fn(&[u8; 32]) -> Option<f64>) -> Value {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let slot = now.as_secs() / RATE_SLOT_S;
        // The current slot is partly over: its rate is over the part gone.
        let into_slot = (now.as_secs_f64() - (slot * RATE_SLOT_S) as f64).max(1.0);
        let named = self.all();
        let rows = self.with_other(&named);
        let mut list = Vec::with_capacity(rows.len());
        let mut latency = [0u64; N_BUCKETS];
        let mut conf_bins = [0u64; CONF_BINS];
        let mut refused_total: Vec<u64> = vec![0; Reason::COUNT];
        let (mut answered, mut predictions, mut positives) = (0u64, 0u64, 0u64);
        for r in rows {
            let requests = r.requests();
            if requests == 0 {
                continue;
            }
            let lat = r.latency.counts();
            for (t, c) in latency.iter_mut().zip(lat) {
                *t += c;
            }
            for (t, c) in conf_bins.iter_mut().zip(&r.confidence_bins) {
                *t += c.load(Relaxed);
            }
            let mut refused = Map::new();
            for x in Reason::ALL {
                let c = r.refused[x.index()].load(Relaxed);
                refused_total[x.index()] += c;
                if c > 0 {
                    refused.insert(x.label().into(), c.into());
                }
            }
            let mut protocols = Map::new();
            for p in Protocol::ALL {
                protocols.insert(p.label().into(), r.requests[p.index()].load(Relaxed).into());
            }
            let a = r.answered.load(Relaxed);
            let np = r.predictions.load(Relaxed);
            let pos = r.positives.load(Relaxed);
            answered += a;
            predictions += np;
            positives += pos;
            let last = r.last_seen_ms.load(Relaxed);
            let counts = r.rate_counts(slot);
            let rate: Vec<f64> = counts
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let span = if k + 1 == RATE_SLOTS {
                        into_slot
                    } else {
                        RATE_SLOT_S as f64
                    };
                    *c as f64 / span
                })
                .collect();
            list.push(json!({
                "hotkey": &*r.label,
                "stake": r.key.as_ref().and_then(&stake_of),
                "requests": requests,
                "answered": a,
                "refused": refused,
                "last_seen_s": if last == 0 { Value::Null } else { Value::from(now_ms.saturating_sub(last - 1) as f64 / 1e3) },
                "p50_ms": ms(quantile(&lat, 0.5)),
                "p99_ms": ms(quantile(&lat, 0.99)),
                "protocols": protocols,
                "predictions": np,
                "positive_share": ratio(pos, np),
                "mean_confidence": if np == 0 { Value::Null } else { Value::from(r.confidence_micro.load(Relaxed) as f64 / CONFIDENCE_SCALE / np as f64) },
                "rate": rate,
            }));
        }
        let mut refused = Map::new();
        for x in Reason::ALL {
            if refused_total[x.index()] > 0 {
                refused.insert(x.label().into(), refused_total[x.index()].into());
            }
        }
        json!({
            "validators": list,
            "max_rows": MAX_ROWS,
            "rate_slot_s": RATE_SLOT_S,
            // Unix time at which the last rate sample's slot starts.
            "rate_last_slot_start": slot * RATE_SLOT_S,
            "verified_answered": answered,
            "refused": refused,
            "predictions": predictions,
            "positive_share": ratio(positives, predictions),
            "confidence_bins": conf_bins.to_vec(),
            "latency_ms": {
                "p50": ms(quantile(&latency, 0.5)),
                "p90": ms(quantile(&latency, 0.9)),
                "p99": ms(quantile(&latency, 0.99)),
            },
        })
    }

    /// The per-caller families on /metrics (crate::metrics), label
    /// `validator` (an address or `other`); rows without requests are left
    /// out.
    pub fn encode_metrics(
        &self,
        e: &mut DescriptorEncoder<'_>,
        stake_of: impl Fn(&[u8; 32]) -> Option<f64>,
    ) -> std::fmt::Result {
        let named = self.all();
        let mut live = self.with_other(&named);
        live.retain(|r| r.requests() > 0);
        fn v(r: &Row) -> [(&'static str, &str); 1] {
            [("validator", &r.label)]
        }
        metrics::counters(
            e,
            "cm_validator_requests",
            "Synapse requests by caller (validator = hotkey, or other) and protocol.",
            live.iter().flat_map(|r| {
                Protocol::ALL.map(|p| {
                    (
                        [("validator", r.label.as_ref()), ("protocol", p.label())],
                        r.requests[p.index()].load(Relaxed),
                    )
                })
            }),
        )?;
        metrics::counters(
            e,
            "cm_validator_answered",
            "Synapse requests answered 200, by caller.",
            live.iter().map(|r| (v(r), r.answered.load(Relaxed))),
        )?;
        metrics::counters(
            e,
            "cm_validator_refused",
            "Synapse requests refused, by caller (as its header claims) and reason; reasons never seen are left out.",
            live.iter().flat_map(|r| {
                Reason::ALL.into_iter().filter_map(|x| {
                    let c = r.refused[x.index()].load(Relaxed);
                    (c > 0).then(|| ([("validator", r.label.as_ref()), ("reason", x.label())], c))
                })
            }),
        )?;
        metrics::counters(
            e,
            "cm_validator_predictions",
            "Predictions served, by caller.",
            live.iter().map(|r| (v(r), r.predictions.load(Relaxed))),
        )?;
        metrics::counters(
            e,
            "cm_validator_predicted_positive",
            "Predictions with conversion_happened = 1, by caller.",
            live.iter().map(|r| (v(r), r.positives.load(Relaxed))),
        )?;
        metrics::counters(
            e,
            "cm_validator_confidence",
            "Sum of the confidences served, by caller.",
            live.iter().map(|r| {
                (
                    v(r),
                    r.confidence_micro.load(Relaxed) as f64 / CONFIDENCE_SCALE,
                )
            }),
        )?;
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            - self.started.elapsed().as_secs_f64();
        metrics::gauges(
            e,
            "cm_validator_last_seen_timestamp_seconds",
            "Unix time of the caller's last request.",
            live.iter().filter_map(|r| {
                let last = r.last_seen_ms.load(Relaxed);
                (last > 0).then(|| (v(r), base + (last - 1) as f64 / 1e3))
            }),
        )?;
        metrics::gauges(
            e,
            "cm_validator_stake",
            "The caller's stake in the validators file.",
            live.iter()
                .filter_map(|r| Some((v(r), r.key.as_ref().and_then(&stake_of)?))),
        )?;
        metrics::histograms(
            e,
            "cm_validator_request_seconds",
            "Handler time of synapse requests (answered or refused), by caller.",
            live.iter().map(|r| (v(r), &r.latency)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const MS: Duration = Duration::from_millis(1);

    /// The accounting's families through a registry, as /metrics shows
    /// them, each stake read as `stake`; the page is checked for the
    /// conventions (crate::exposition::check).
    fn render(a: &Arc<Accounting>, stake: Option<f64>) -> String {
        struct Page(Arc<Accounting>, Option<f64>);
        impl std::fmt::Debug for Page {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Page")
            }
        }
        impl prometheus_client::collector::Collector for Page {
            fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
                self.0.encode_metrics(&mut e, |_| self.1)
            }
        }
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(Page(a.clone(), stake)));
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &r).unwrap();
        if let Err(e) = crate::exposition::check(&s) {
            panic!("{e}\n{s}");
        }
        s
    }

    fn answered(p: bool, c: f32) -> Outcome {
        Outcome::Answered {
            prediction: Some((p, c)),
        }
    }

    #[test]
    fn rows_for_admitted_hotkeys_and_other_for_the_rest() {
        let a = Accounting::default();
        let alice = ss58::decode_key(ALICE).unwrap();
        let only_alice = |k: &[u8; 32]| *k == alice;
        for _ in 0..3 {
            a.record(
                Some(ALICE),
                only_alice,
                Protocol::Axon,
                answered(true, 0.9),
                MS,
            );
        }
        a.record(
            Some(ALICE),
            only_alice,
            Protocol::Axon,
            Outcome::Refused(Reason::NonceReplay),
            MS,
        );
        a.record(
            Some(BOB),
            only_alice,
            Protocol::Axon,
            Outcome::Refused(Reason::Blacklisted),
            MS,
        );
        a.record(
            Some("not an address"),
            only_alice,
            Protocol::Axon,
            Outcome::Refused(Reason::BadHotkey),
            MS,
        );
        a.record(
            None,
            only_alice,
            Protocol::Axon,
            Outcome::Refused(Reason::MissingAuth),
            MS,
        );
        let s = a.snapshot();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].hotkey, ALICE);
        assert_eq!((s[0].requests, s[0].answered), (4, 3));
        assert_eq!(s[0].refused, vec![("nonce_replay", 1)]);
        assert_eq!(s[1].hotkey, OTHER);
        assert_eq!((s[1].requests, s[1].answered), (3, 0));
        assert_eq!(
            s[1].refused,
            vec![
                ("missing_auth_header", 1),
                ("bad_hotkey", 1),
                ("blacklisted", 1)
            ]
        );
        let st = a.status(|k| (*k == alice).then_some(1500.0));
        let v = &st["validators"][0];
        assert_eq!(v["hotkey"], ALICE);
        assert_eq!(v["stake"], 1500.0);
        assert_eq!(v["positive_share"], 1.0);
        assert!((v["mean_confidence"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(v["protocols"]["axon"], 4);
        assert_eq!(st["validators"][1]["stake"], Value::Null);
        assert_eq!(st["verified_answered"], 3);
        assert_eq!(st["confidence_bins"][9], 3);
        assert_eq!(st["refused"]["blacklisted"], 1);
        // Every request of the last seconds is in the latest rate sample
        // (or the one before, if a slot boundary passed meanwhile).
        let rate = v["rate"].as_array().unwrap();
        assert_eq!(rate.len(), RATE_SLOTS);
        assert!(rate[RATE_SLOTS - 2..]
            .iter()
            .any(|r| r.as_f64().unwrap() > 0.0));
        let p50 = v["p50_ms"].as_f64().unwrap();
        assert!(p50 > 0.5 && p50 <= 1.0, "{p50}");
    }

    #[test]
    fn the_table_stops_growing_at_max_rows() {
        let a = Arc::new(Accounting::default());
        let mut addrs = Vec::new();
        for i in 0..MAX_ROWS + 5 {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            addrs.push(ss58::encode(&k));
        }
        for h in &addrs {
            a.record(Some(h), |_| true, Protocol::Axon, answered(false, 0.1), MS);
        }
        let s = a.snapshot();
        assert_eq!(s.len(), MAX_ROWS + 1);
        let other = s.last().unwrap();
        assert_eq!((other.hotkey.as_str(), other.requests), (OTHER, 5));
        let text = render(&a, None);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("cm_validator_answered_total{"))
                .count(),
            MAX_ROWS + 1
        );
    }

    #[test]
    fn rate_cells_restart_on_a_new_slot_and_ignore_older_ones() {
        let r = Row::new(None, OTHER);
        r.bump_rate(1000);
        r.bump_rate(1000);
        r.bump_rate(1001);
        assert_eq!(&r.rate_counts(1001)[RATE_SLOTS - 2..], &[2, 1]);
        // Sixty slots later the same cell counts afresh; slot 1001 is
        // still in the window until slot 1061.
        r.bump_rate(1000 + RATE_SLOTS as u64);
        let c = r.rate_counts(1000 + RATE_SLOTS as u64);
        assert_eq!((c[0], c[RATE_SLOTS - 1], c.iter().sum::<u64>()), (1, 1, 2));
        let c = r.rate_counts(1001 + RATE_SLOTS as u64);
        assert_eq!(
            c.iter().sum::<u64>(),
            1,
            "slot 1001 is older than the window"
        );
        // A late writer for the old slot does not disturb the newer cell.
        r.bump_rate(1000);
        assert_eq!(r.rate_counts(1000 + RATE_SLOTS as u64)[RATE_SLOTS - 1], 1);
    }

    #[test]
    fn metrics_carry_the_validator_label() {
        let a = Arc::new(Accounting::default());
        a.record(
            Some(ALICE),
            |_| true,
            Protocol::Axon,
            answered(false, 0.2),
            MS,
        );
        a.record(
            Some(ALICE),
            |_| true,
            Protocol::Axon,
            Outcome::Answered { prediction: None },
            MS,
        );
        let t = render(&a, Some(7.0));
        for want in [
            format!("cm_validator_requests_total{{validator=\"{ALICE}\",protocol=\"axon\"}} 2"),
            format!("cm_validator_answered_total{{validator=\"{ALICE}\"}} 2"),
            format!("cm_validator_predictions_total{{validator=\"{ALICE}\"}} 1"),
            format!("cm_validator_predicted_positive_total{{validator=\"{ALICE}\"}} 0"),
            format!("cm_validator_stake{{validator=\"{ALICE}\"}} 7"),
            format!("cm_validator_request_seconds_count{{validator=\"{ALICE}\"}} 2"),
        ] {
            assert!(t.contains(&want), "{want} missing from\n{t}");
        }
        assert!(
            !t.contains("validator=\"other\""),
            "other saw no request:\n{t}"
        );
    }

    #[test]
    fn memory_per_row_is_what_the_docs_say() {
        // The module doc quotes about 1 KB per row.
        assert!((800..=1200).contains(&ROW_BYTES), "{ROW_BYTES}");
    }
}
