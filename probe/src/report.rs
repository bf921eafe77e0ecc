//! Reporting: what each request's outcome is tallied as, and the summary a
//! run prints (text, and one JSON line with `--json`).
//!
//! The summary's reward lines use the subnet reward with `response_time` 0,
//! as `eval --seed` does, so the two are directly comparable.

use crate::request::Plan;
use crate::ProbeArgs;
use anyhow::Result;
use std::collections::BTreeMap;

/// What went wrong with one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failure {
    Status(u16),
    Timeout,
    /// Could not connect (refused, e.g. after the miner shut down).
    Connect,
    /// The connection failed mid-request.
    Transport,
    BadAnswer(String),
    /// A forged request was not refused as a bad signature.
    Forged(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connect error"),
            Failure::Transport => f.write_str("transport error"),
            Failure::BadAnswer(w) => write!(f, "bad answer: {w}"),
            Failure::Forged(w) => write!(f, "forged request {w}"),
        }
    }
}

/// The result of one successful request.
pub(crate) struct Scored {
    pub(crate) latency_us: u32,
    pub(crate) reward0: f64,
    pub(crate) reward_rt: f64,
    pub(crate) oracle: f64,
    pub(crate) response_time: f64,
    pub(crate) positive: bool,
}

/// One slot's tallies.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: Vec<Scored>,
    /// Forged requests sent, and how many of them got the expected refusal.
    pub(crate) forged: u64,
    pub(crate) forged_refused: u64,
    pub(crate) failures: BTreeMap<Failure, u64>,
    pub(crate) first_failures: Vec<String>,
}

impl Tally {
    pub(crate) fn fail(&mut self, request: u64, f: Failure) {
        if self.first_failures.len() < 5 {
            self.first_failures.push(format!("request {request}: {f}"));
        }
        *self.failures.entry(f).or_default() += 1;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(crate) fn report(
    a: &ProbeArgs,
    plan: &Plan,
    t: &Tally,
    wall: f64,
    first_ok_unix_ns: u64,
) -> Result<i32> {
    let ok = t.ok.len() as u64;
    let errors: u64 = t.failures.values().sum();
    let total = ok + t.forged_refused + errors;
    let mut lat: Vec<u32> = t.ok.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let mean = |f: &dyn Fn(&Scored) -> f64| {
        if ok == 0 {
            0.0
        } else {
            t.ok.iter().map(f).sum::<f64>() / ok as f64
        }
    };
    let (r0, rrt, orc) = (
        mean(&|s| s.reward0),
        mean(&|s| s.reward_rt),
        mean(&|s| s.oracle),
    );
    let resp_us = mean(&|s| s.response_time) * 1e6;
    let pos = mean(&|s| if s.positive { 1.0 } else { 0.0 });
    let (p50, p90, p99) = (
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
    );
    let pmax = lat.last().copied().unwrap_or(0) as f64 / 1000.0;
    let per_s = |n: u64| if wall > 0.0 { n as f64 / wall } else { 0.0 };
    let (thr, ok_rps) = (per_s(total), per_s(ok));
    println!(
        "probe: {total} requests to {} (miner {}), concurrency {}, seed {}, {} conversations",
        plan.target,
        plan.miner,
        a.concurrency,
        a.seed,
        plan.rows.len()
    );
    if a.forge_every > 0 {
        println!(
            "  ok {ok}  forged refused {} of {} (1 request in {} forged)  errors {errors}",
            t.forged_refused, t.forged, a.forge_every
        );
    } else {
        println!("  ok {ok}  errors {errors}");
    }
    for (f, n) in &t.failures {
        println!("  error {f}: {n}");
    }
    for s in t.first_failures.iter().take(5) {
        println!("    e.g. {s}");
    }
    println!("  latency ms  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  max {pmax:.3}");
    if a.forge_every > 0 {
        println!("  throughput {thr:.1} req/s ({ok_rps:.1} honest verified) over {wall:.2} s");
    } else {
        println!("  throughput {thr:.1} req/s over {wall:.2} s");
    }
    println!(
        "  miner response_time mean {resp_us:.1} us; predicted positive {:.2}%",
        pos * 100.0
    );
    let ratio = if orc > 0.0 { r0 / orc } else { 0.0 };
    println!(
        "  mean reward (response_time 0, as eval) model {r0:.6}  oracle {orc:.6}  ratio {ratio:.6}"
    );
    println!("  mean reward with the miner's response_time {rrt:.6}");
    if a.wait_ready > 0.0 && first_ok_unix_ns > 0 {
        println!("  first verified answer at unix_ns {first_ok_unix_ns}");
    }
    if a.json {
        let by_status: BTreeMap<String, u64> = t
            .failures
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let j = serde_json::json!({
            "requests": total, "ok": ok, "errors": errors, "errors_by_kind": by_status,
            "forged": t.forged, "forged_refused": t.forged_refused, "ok_rps": ok_rps,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": pmax,
            "throughput_rps": thr, "wall_s": wall,
            "mean_reward": r0, "oracle_mean_reward": orc, "reward_ratio": ratio,
            "mean_reward_with_response_time": rrt, "mean_response_time_us": resp_us,
            "positive_rate": pos, "first_ok_unix_ns": first_ok_unix_ns,
            "protocol": format!("{:?}", plan.protocol).to_lowercase(),
        });
        println!("{j}");
    }
    Ok(if errors == 0 && total > 0 { 0 } else { 1 })
}
