//! `cm-probe`: a validator simulator that signs exactly as a Python dendrite,
//! kept out of the server crate (the server never needs the generator, the
//! reward or an HTTP client).
//!
//! Requests carry the AXON.md §2 headers and a §3 body around a generated
//! conversation from the same seeded set `eval --seed` scores, so the reward
//! printed here is directly comparable with `eval`'s. Every answer is
//! checked: status and status headers, the echo of every request field, and
//! the subnet's output rules. `--wait-ready` polls a miner that is still
//! starting and reports when the first verified answer arrived (start-up
//! time). `--forge-every N` measures what forgers cost honest traffic.
//!
//! One file per reason to change: [`request`] (forging requests as a
//! dendrite does), [`check`] (answer checking), [`client`] (the HTTP
//! client), [`load`] (scheduling the simulated dendrites), [`report`] (the
//! tallies and the summary) and [`args`] (the command line). The signing
//! itself is the client half of `cm_host::sig`, so the probe and the
//! server read one definition of the signed message.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod args;
pub mod check;
pub mod client;
pub mod load;
pub mod report;
pub mod request;

#[cfg(test)]
mod end_to_end;

pub use args::ProbeArgs;
pub use check::check_answer;
pub use request::{
    build_forged_request, build_request, forge_signature, Plan, Sent, DENDRITE_VERSION,
};

use anyhow::{anyhow, bail, Context, Result};
use cm_host::wallet::{self, Hotkey};
use report::Tally;
use serde_json::Value;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most distinct conversations generated when `--conversations` is not given.
const MAX_DEFAULT_CONVERSATIONS: usize = 100_000;

/// Runs the probe and prints its summary; exit code 0 only with zero errors.
pub fn run(a: &ProbeArgs) -> Result<i32> {
    cm_host::init_logging("warn")?;
    let target: SocketAddrV4 = a
        .target
        .parse()
        .with_context(|| format!("--target {:?} is not IPv4:PORT", a.target))?;
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    if !(a.wait_ready.is_finite() && a.wait_ready >= 0.0) {
        bail!("--wait-ready must be a non-negative number of seconds");
    }
    if a.forge_every > 0 && a.protocol != args::ProbeProtocol::Axon {
        bail!("--forge-every forges axon-protocol signatures; use it with --protocol axon");
    }
    let signer = if a.dev {
        Hotkey::generate()
    } else {
        let p = wallet::hotkey_path(&a.wallet_path, &a.wallet_name, &a.wallet_hotkey);
        wallet::load_hotkey(&p, true)
            .context("loading the probe's signing hotkey (or use --dev)")?
    };
    let n_conv = a
        .conversations
        .unwrap_or(a.n.min(MAX_DEFAULT_CONVERSATIONS))
        .max(1);
    let rows = cm_subnet::sample::test_set(a.seed, n_conv);
    let rt = cm_host::runtime(a.workers)?;
    rt.block_on(async move {
        let wait = Duration::from_secs_f64(a.wait_ready);
        let miner = match &a.hotkey {
            Some(h) => {
                if a.wait_ready > 0.0 {
                    client::wait_for_health(target, wait).await?;
                }
                Hotkey::from_ss58(h)?.ss58
            }
            None => client::wait_for_health(target, wait)
                .await?
                .get("hotkey")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("/health has no hotkey; pass --hotkey"))?,
        };
        let plan = Arc::new(
            Plan::new(
                target,
                miner,
                signer,
                a.timeout,
                rows,
                &format!("probe-{}", a.seed),
            )?
            .with_protocol(a.protocol)
            .with_signers(request::derived_hotkeys(a.seed, a.hotkeys)),
        );
        let duration = a.duration.map(|d| Duration::from_secs_f64(d.max(0.0)));
        let progress = Arc::new(load::Progress {
            next: AtomicU64::new(0),
            limit: if duration.is_some() {
                None
            } else {
                Some(a.n as u64)
            },
            deadline: duration.map(|d| Instant::now() + d),
            first_ok_unix_ns: AtomicU64::new(0),
        });
        let period = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.concurrency as f64 / a.rate));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..a.concurrency)
            .map(|k| {
                let phase = k as f64 / a.concurrency as f64;
                tokio::spawn(load::slot(
                    plan.clone(),
                    progress.clone(),
                    period,
                    phase,
                    a.uuid_every,
                    a.forge_every,
                ))
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            let t = h.await?;
            all.ok.extend(t.ok);
            all.forged += t.forged;
            all.forged_refused += t.forged_refused;
            for (k, v) in t.failures {
                *all.failures.entry(k).or_default() += v;
            }
            all.first_failures.extend(t.first_failures);
        }
        let wall = t0.elapsed().as_secs_f64();
        let first_ok = progress.first_ok_unix_ns.load(Ordering::Relaxed);
        report::report(a, &plan, &all, wall, first_ok)
    })
}
