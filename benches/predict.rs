//! The full path a request takes inside the core, and its stages. `full`
//! times `cm_core::serve::serve`, the very function the server calls for
//! `/ConversionSynapse` (with a thread's learned key order and the same
//! `Instant` clock): request bytes -> `parse_body` -> fill + feature
//! transform -> ensemble (3 classifiers, 2 regressors when class 1) ->
//! calibration and output rules -> the whole success body written into a
//! buffer sized as the server sizes it. The stages time each step alone.
//! Uses the model compiled into the binary.
//!
//! Bodies are 256 validator-like synapse JSON bodies from the subnet's
//! generator (`cm_train::gen`), cycled so every iteration sees new bytes.
//! Throughput is in requests (`Elements(1)`).
//!
//!     cargo bench --bench predict

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cm_core::features;
use cm_core::parse::{parse_body, KeyOrder};
use cm_core::respond::{write_synapse, Filled};
use cm_core::serve::{capacity, Route, Server};

mod support;

use support::cpu_clock::CpuClock;

/// Distinct request bodies the benches cycle through.
const N_BODIES: usize = 256;

fn bench_predict(c: &mut Criterion<CpuClock>) {
    let model = conversion_miner::embedded::model();
    let bodies = support::request_bodies(2024, N_BODIES);
    let kernels = support::kernels();
    let mean_len = bodies.iter().map(Vec::len).sum::<usize>() / N_BODIES;
    let max_len = bodies.iter().map(Vec::len).max().unwrap_or(0);
    let parsed = support::parse_all(&bodies);
    let inputs = support::network_inputs(model, &parsed);
    let positives = parsed
        .iter()
        .filter(|f| {
            model
                .predict(f, cm_core::kernels::Kernel::Scalar)
                .conversion_happened
                == 1
        })
        .count();
    eprintln!("{N_BODIES} bodies, mean {mean_len} bytes, {positives} predicted class 1");

    let mut g = c.benchmark_group("predict/full");
    g.throughput(Throughput::Elements(1));
    for &k in &kernels {
        g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
            let mut call = support::ServerCall::new(model, k, &bodies);
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % N_BODIES;
                black_box(call.answer(&bodies[i]))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("predict/stage");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        let mut order = KeyOrder::new();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_BODIES;
            let body = parse_body(black_box(&bodies[i]), &mut order).expect("parses");
            black_box(body.features().expect("features").present)
        })
    });
    g.bench_function("features", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_BODIES;
            let f = &parsed[i];
            black_box(features::inputs(
                &model.filled(black_box(&f.values), f.present),
            ))
        })
    });
    for &k in &kernels {
        g.bench_function(BenchmarkId::new("ensemble", k.name()), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % N_BODIES;
                black_box(model.predict_inputs(black_box(&inputs[i]), k))
            })
        });
    }
    let preds: Vec<_> = inputs
        .iter()
        .map(|x| model.predict_inputs(x, cm_core::kernels::Kernel::Scalar))
        .collect();
    let layouts: Vec<_> = bodies
        .iter()
        .map(|b| parse_body(b, &mut KeyOrder::new()).expect("parses").layout)
        .collect();
    g.bench_function("respond", |b| {
        let server = Server {
            model,
            kernel: cm_core::kernels::Kernel::Scalar,
            me: support::MINER,
        };
        let mut out = vec![0u8; capacity(max_len, Route::Conversion, &server)];
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_BODIES;
            let f = Filled {
                name: Route::Conversion.name(),
                prediction: Some(&preds[i]),
                seconds: 1.25e-5,
                me: support::MINER,
            };
            black_box(
                write_synapse(black_box(&bodies[i]), &layouts[i], &f, &mut out).expect("fits"),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_predict
}
criterion_main!(benches);
