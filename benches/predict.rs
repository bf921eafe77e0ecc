//! The full predict path a request takes inside the core, and its stages:
//! request bytes -> `parse_request` -> fill + feature transform -> ensemble
//! (3 classifiers, 2 regressors when class 1) -> calibration and output
//! rules -> response JSON bytes. Uses the model compiled into the binary.
//!
//! Bodies are 256 validator-like synapse JSON bodies from the subnet's
//! generator (`cm_train::gen`), cycled so every iteration sees new bytes.
//! Throughput is in requests (`Elements(1)`).
//!
//!     cargo bench --bench predict

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cm_core::features;
use cm_core::parse::parse_request;
use cm_core::respond::{write_prediction, MAX_PREDICTION_LEN};

mod support;

use support::cpu_clock::CpuClock;

/// Distinct request bodies the benches cycle through.
const N_BODIES: usize = 256;

fn bench_predict(c: &mut Criterion<CpuClock>) {
    let model = conversion_miner::embedded::model();
    let bodies = support::request_bodies(2024, N_BODIES);
    let kernels = support::kernels();
    let mean_len = bodies.iter().map(Vec::len).sum::<usize>() / N_BODIES;
    let parsed: Vec<_> = bodies
        .iter()
        .map(|b| parse_request(b).expect("generated body parses"))
        .collect();
    let inputs: Vec<_> = parsed
        .iter()
        .map(|f| features::inputs(&model.filled(&f.values, f.present)))
        .collect();
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
            let mut out = [0u8; MAX_PREDICTION_LEN];
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % N_BODIES;
                let f = parse_request(black_box(&bodies[i])).expect("parses");
                let p = model.predict(&f, k);
                black_box(write_prediction(&p, &mut out).expect("fits"))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("predict/stage");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_BODIES;
            black_box(
                parse_request(black_box(&bodies[i]))
                    .expect("parses")
                    .present,
            )
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
    g.bench_function("respond", |b| {
        let mut out = [0u8; MAX_PREDICTION_LEN];
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_BODIES;
            black_box(write_prediction(black_box(&preds[i]), &mut out).expect("fits"))
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
