//! Load scheduling: each concurrency slot is one simulated dendrite with its
//! own uuid and strictly increasing nonces, so a run passes even against an
//! axon with Python's strict nonce rule (`serve --nonce.strict`), where
//! concurrent requests of one uuid arriving out of order would be refused.
//! With `--rate`, the slots' sends are spread evenly over each period.
//!
//! `--forge-every N` makes every Nth request of the run a forgery (see
//! [`crate::request::forge_signature`]); the slot expects exactly the
//! refusal the gate gives a bad signature and counts those apart from the
//! honest answers, which are checked as always.

use crate::check::check_answer;
use crate::check::check_forged_refusal;
use crate::client::{exchange, Conn, Exchange};
use crate::report::{Failure, Scored, Tally};
use crate::request::{build_forged_request, build_request, new_uuid, now_ns, Plan, Sent};
use cm_subnet::reward::reward;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One honest request, its answer fully checked and scored.
pub(crate) async fn one(
    conn: &mut Option<Conn>,
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<Scored, Failure> {
    let (req, _, signature) = build_request(plan, idx, nonce, uuid)
        .map_err(|e| Failure::BadAnswer(format!("building the request: {e}")))?;
    let t0 = Instant::now();
    let Exchange {
        status,
        hdr_matches,
        json,
        ctype,
        body,
    } = exchange(conn, plan, req).await?;
    let latency_us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if !hdr_matches {
        return Err(Failure::BadAnswer(
            "bt_header_axon_status_code is not 200".into(),
        ));
    }
    if !json {
        return Err(Failure::BadAnswer(format!("content-type {ctype}")));
    }
    let got: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::BadAnswer(format!("invalid JSON: {e}")))?;
    let sent = Sent {
        idx,
        nonce,
        uuid,
        signature: &signature,
    };
    let (class, t, _c, rt) = check_answer(plan, &sent, &got).map_err(Failure::BadAnswer)?;
    let s = &plan.rows[idx];
    Ok(Scored {
        latency_us,
        reward0: reward(class, t, s.label, s.time, 0.0).total,
        reward_rt: reward(class, t, s.label, s.time, rt).total,
        oracle: reward(s.label, s.time, s.label, s.time, 0.0).total,
        response_time: rt,
        positive: class == 1,
    })
}

/// One forged request; `Ok` only when the miner refused it exactly as a bad
/// signature ([`check_forged_refusal`]).
pub(crate) async fn one_forged(
    conn: &mut Option<Conn>,
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(), Failure> {
    let (req, _, _) = build_forged_request(plan, idx, nonce, uuid)
        .map_err(|e| Failure::Forged(format!("could not be built: {e}")))?;
    let x = exchange(conn, plan, req).await?;
    check_forged_refusal(&x).map_err(Failure::Forged)
}

/// Shared progress of all slots.
pub(crate) struct Progress {
    pub(crate) next: AtomicU64,
    pub(crate) limit: Option<u64>,
    pub(crate) deadline: Option<Instant>,
    /// Wall-clock time (unix ns) of the first verified answer; 0 until then.
    pub(crate) first_ok_unix_ns: AtomicU64,
}

impl Progress {
    fn take(&self) -> Option<u64> {
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return None;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(n) if i >= n => None,
            _ => Some(i),
        }
    }
}

/// One simulated dendrite. With a rate, slot `k` of `n` sends every
/// `period`, offset by `k/n` of a period, so the total load is spread evenly
/// instead of arriving as bursts of `n` requests at the same instant.
pub(crate) async fn slot(
    plan: Arc<Plan>,
    progress: Arc<Progress>,
    period: Option<Duration>,
    phase: f64,
    uuid_every: u64,
    forge_every: u64,
) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut uuid = new_uuid();
    let mut sent_with_uuid = 0u64;
    let mut ticker = period.map(|p| {
        let start = tokio::time::Instant::now() + p.mul_f64(phase);
        let mut i = tokio::time::interval_at(start, p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    while let Some(i) = progress.take() {
        if let Some(tk) = ticker.as_mut() {
            tk.tick().await;
        }
        if uuid_every > 0 && sent_with_uuid >= uuid_every {
            uuid = new_uuid();
            sent_with_uuid = 0;
        }
        sent_with_uuid += 1;
        let nonce = plan.next_nonce();
        let idx = (i % plan.rows.len() as u64) as usize;
        if forge_every > 0 && (i + 1) % forge_every == 0 {
            t.forged += 1;
            match one_forged(&mut conn, &plan, idx, nonce, &uuid).await {
                Ok(()) => t.forged_refused += 1,
                Err(f) => t.fail(i, f),
            }
            continue;
        }
        match one(&mut conn, &plan, idx, nonce, &uuid).await {
            Ok(s) => {
                if t.ok.is_empty() {
                    let _ = progress.first_ok_unix_ns.compare_exchange(
                        0,
                        now_ns(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                t.ok.push(s)
            }
            Err(f) => t.fail(i, f),
        }
    }
    t
}
