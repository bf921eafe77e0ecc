//! One network forward, per layer and whole, on every kernel this CPU runs.
//!
//! Throughput is in multiply-adds (`Elements`), so criterion's elem/s is
//! MAC/s (of the dense network; the kernels skip zero inputs and inactive
//! ReLU units, so they do fewer). Two workloads: `trained` is the embedded
//! model's first classifier on the inputs of generated validator requests
//! (the zero inputs and ReLU sparsity production sees), `random` a seeded
//! random network on random inputs (no zero inputs, about half the units
//! active). Inputs cycle through 64 vectors so no branch pattern is learnt
//! from one input.
//!
//!     CARGO_TARGET_DIR=... cargo bench --bench forward   # default: f16 storage
//!     cargo bench --bench forward --no-default-features    # f32 storage

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cm_core::kernels::{Mlp, W_BYTES};
use cm_core::schema::{H1, H2, N_INPUTS};

mod support;

use support::cpu_clock::CpuClock;

/// Distinct inputs the benches cycle through.
const N_SAMPLES: usize = 64;
/// Multiply-adds per layer.
const MACS_L1: u64 = (N_INPUTS * H1) as u64;
const MACS_L2: u64 = (H1 * H2) as u64;
const MACS_OUT: u64 = H2 as u64;

/// A named network and the inputs it is timed on.
type Workload = (&'static str, Box<Mlp>, Vec<[f32; N_INPUTS]>);

/// The embedded model's first classifier on the
/// network inputs of generated validator requests, and a random network on
/// random inputs.
fn workloads() -> Vec<Workload> {
    let model = conversion_miner::embedded::model();
    let requests = support::request_inputs(model, 2024, N_SAMPLES);
    let trained = Box::new(model.classifiers[0].clone());
    vec![
        ("trained", trained, requests),
        (
            "random",
            support::random_mlp(42),
            support::random_inputs(7, N_SAMPLES),
        ),
    ]
}

fn bench_forward(c: &mut Criterion<CpuClock>) {
    let kernels = support::kernels();
    eprintln!(
        "weights: {W_BYTES}-byte storage; kernels: {:?}",
        kernels.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    for (wname, m, xs) in workloads() {
        let zeros = xs.iter().flatten().filter(|v| **v == 0.0).count() as f64
            / (N_SAMPLES * N_INPUTS) as f64;
        let h1s: Vec<[f32; H1]> = xs
            .iter()
            .map(|x| m.layer1(cm_core::kernels::Kernel::Scalar, x))
            .collect();
        let h2s: Vec<[f32; H2]> = h1s
            .iter()
            .map(|h| m.layer2(cm_core::kernels::Kernel::Scalar, h))
            .collect();
        let active =
            h1s.iter().flatten().filter(|v| **v > 0.0).count() as f64 / (N_SAMPLES * H1) as f64;
        eprintln!(
            "{wname}: {:.0}% of inputs zero, {:.0}% of layer-1 units active",
            zeros * 100.0,
            active * 100.0
        );

        let mut g = c.benchmark_group(format!("forward/{wname}/network"));
        g.throughput(Throughput::Elements(MACS_L1 + MACS_L2 + MACS_OUT));
        for &k in &kernels {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % N_SAMPLES;
                    black_box(m.forward(black_box(k), black_box(&xs[i])))
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("forward/{wname}/layer1"));
        g.throughput(Throughput::Elements(MACS_L1));
        for &k in &kernels {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % N_SAMPLES;
                    black_box(m.layer1(black_box(k), black_box(&xs[i])))
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("forward/{wname}/layer2"));
        g.throughput(Throughput::Elements(MACS_L2));
        for &k in &kernels {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % N_SAMPLES;
                    black_box(m.layer2(black_box(k), black_box(&h1s[i])))
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("forward/{wname}/output"));
        g.throughput(Throughput::Elements(MACS_OUT));
        for &k in &kernels {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % N_SAMPLES;
                    black_box(m.output(black_box(k), black_box(&h2s[i])))
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_forward
}
criterion_main!(benches);
