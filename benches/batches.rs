//! The predict path's stages timed in batches, for a machine shared with
//! other work: each stage runs 60 batches of 4,096 calls over the bench's
//! 256 request bodies, timed by the thread's CPU clock, and the minimum,
//! first quartile and median batch mean are printed. Interference from a
//! neighbour only ever adds time, so the minimum batch is the figure that
//! moves least from run to run; comparing two builds means running both
//! binaries alternately and reading the minima. (Criterion's `predict`
//! bench remains the reference for the figures the README quotes.)
//!
//!     cargo bench --bench batches                        # every stage
//!     cargo bench --bench batches -- ensemble full       # some stages
//!     CM_KERNEL=avx2-fma-f16c cargo bench --bench batches -- ensemble
//!
//! Stages: `ensemble` (`Model::predict_inputs`), `parse` (`parse_body` and
//! its features), `features` (fill and transform), `full` (`serve`, the
//! server's call). The kernel is the best this CPU runs unless `CM_KERNEL`
//! names another.

use std::hint::black_box;

use cm_core::features;
use cm_core::kernels::Kernel;
use cm_core::parse::{parse_body, KeyOrder};

mod support;

use support::cpu_clock::CpuClock;

/// Distinct request bodies the stages cycle through (as `predict`).
const N_BODIES: usize = 256;
/// Calls per batch.
const BATCH: usize = 4096;
/// Batches per stage.
const BATCHES: usize = 60;

/// Runs `f(i)` for `BATCHES` batches and prints the batch means.
fn batches(name: &str, clock: &CpuClock, mut f: impl FnMut(usize)) {
    let mut means: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t0 = clock.now_ns();
            for i in 0..BATCH {
                f(i % N_BODIES);
            }
            (clock.now_ns() - t0) as f64 / BATCH as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    println!(
        "{name:<10} min {:8.1} ns   p25 {:8.1} ns   median {:8.1} ns",
        means[0],
        means[BATCHES / 4],
        means[BATCHES / 2]
    );
}

fn main() {
    // `cargo bench` passes `--bench`; every other argument names a stage.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |stage: &str| wanted.is_empty() || wanted.iter().any(|w| w == stage);
    let clock = CpuClock::from_env();

    let model = conversion_miner::embedded::model();
    let bodies = support::request_bodies(2024, N_BODIES);
    let kernel = match std::env::var("CM_KERNEL") {
        Ok(name) => Kernel::from_name(&name, support::cpu()).unwrap_or_else(|e| {
            eprintln!("CM_KERNEL={name}: {e}");
            std::process::exit(2)
        }),
        Err(_) => Kernel::best(support::cpu()),
    };
    println!(
        "kernel {}, {} weights",
        kernel.name(),
        cm_core::kernels::W_NAME
    );
    let parsed = support::parse_all(&bodies);
    let inputs = support::network_inputs(model, &parsed);

    if run("ensemble") {
        batches("ensemble", &clock, |i| {
            black_box(model.predict_inputs(black_box(&inputs[i]), kernel));
        });
    }
    if run("parse") {
        let mut order = KeyOrder::new();
        batches("parse", &clock, |i| {
            let body = parse_body(black_box(&bodies[i]), &mut order).expect("parses");
            black_box(body.features().expect("features").present);
        });
    }
    if run("features") {
        batches("features", &clock, |i| {
            let f = &parsed[i];
            black_box(features::inputs(
                &model.filled(black_box(&f.values), f.present),
            ));
        });
    }
    if run("full") {
        let mut call = support::ServerCall::new(model, kernel, &bodies);
        batches("full", &clock, |i| {
            black_box(call.answer(&bodies[i]));
        });
    }
}
