//! One answer per input whatever the CPU: every kernel this CPU runs gives
//! the same bits as the scalar kernel (the canonical arithmetic of
//! `cm_core::kernels`), on the model compiled into the binary, for every
//! network of the ensemble, for the whole `predict` answer, and for the
//! bytes `cm_core::serve::serve` (the function the server calls) writes.
//!
//! Inputs: generated validator requests (the subnet's generator, as the
//! benches build them), random network inputs of every scale, and extremes
//! (near `INPUT_LIMIT`, zeros, subnormals, mixed signs, beyond the limit,
//! NaN). Each test prints which kernels it compared and which this CPU
//! could not run.

use cm_core::kernels::{clamp_input, CpuFeatures, Kernel, INPUT_LIMIT};
use cm_core::model::{Model, Prediction};
use cm_core::parse::{parse_request, KeyOrder};
use cm_core::respond::AxonId;
use cm_core::schema::N_INPUTS;
use cm_core::serve::{capacity, serve, Route, Server};

#[path = "../benches/support/mod.rs"]
mod support;

/// Generated validator requests checked per kernel.
const N_BODIES: usize = 1500;

const ME: AxonId<'static> = AxonId {
    hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    ip: "127.0.0.1",
    port: 8091,
};

/// The SIMD kernels to compare with scalar, after saying on stderr which
/// ones this CPU cannot run.
fn simd_kernels(test: &str) -> Vec<Kernel> {
    let cpu = CpuFeatures::detect();
    let ks: Vec<Kernel> = Kernel::runnable(cpu)
        .filter(|k| *k != Kernel::Scalar)
        .collect();
    let skipped: Vec<&str> = Kernel::NAMES
        .iter()
        .copied()
        .filter(|n| Kernel::from_name(n, cpu).is_err())
        .collect();
    eprintln!(
        "{test}: compared scalar with {:?}; skipped (not on this CPU/architecture) {skipped:?}",
        ks.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    ks
}

fn pred_bits(p: &Prediction) -> (u8, u32, u32) {
    (
        p.conversion_happened,
        p.time_to_conversion_seconds.to_bits(),
        p.confidence.to_bits(),
    )
}

/// Every network of the ensemble and the whole answer, bit for bit.
fn same_answer(model: &Model, k: Kernel, x: &[f32; N_INPUTS], what: &str) {
    for (n, m) in model
        .classifiers
        .iter()
        .chain(model.regressors.iter())
        .enumerate()
    {
        let (got, want) = (m.forward(k, x), m.forward(Kernel::Scalar, x));
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{what}: network {n} on {}: {got:e} vs scalar {want:e}",
            k.name()
        );
    }
    let (got, want) = (
        model.predict_inputs(x, k),
        model.predict_inputs(x, Kernel::Scalar),
    );
    assert_eq!(
        pred_bits(&got),
        pred_bits(&want),
        "{what}: predict on {}: {got:?} vs scalar {want:?}",
        k.name()
    );
}

#[test]
fn generated_requests_get_identical_answers_and_bytes() {
    let model = conversion_miner::embedded::model();
    let ks = simd_kernels("generated_requests_get_identical_answers_and_bytes");
    let bodies = support::request_bodies(4242, N_BODIES);
    let longest = bodies.iter().map(Vec::len).max().unwrap_or(0);
    let scalar = Server {
        model,
        kernel: Kernel::Scalar,
        me: ME,
    };
    let mut want_out = vec![0u8; capacity(longest, Route::Conversion, &scalar)];
    let mut got_out = want_out.clone();
    let (mut order_s, mut order_k) = (KeyOrder::new(), KeyOrder::new());
    let mut positives = 0;
    for (i, body) in bodies.iter().enumerate() {
        let f = parse_request(body).expect("generated body parses");
        let x = cm_core::features::inputs(&model.filled(&f.values, f.present));
        // A fixed clock: the timing fields are the only bytes that may differ.
        let want = serve(
            body,
            Route::Conversion,
            &scalar,
            &mut order_s,
            || 1.5e-5,
            &mut want_out,
        )
        .expect("served");
        positives += usize::from(want.prediction.is_some_and(|p| p.conversion_happened == 1));
        for &k in &ks {
            same_answer(model, k, &x, &format!("request #{i}"));
            let server = Server {
                model,
                kernel: k,
                me: ME,
            };
            let got = serve(
                body,
                Route::Conversion,
                &server,
                &mut order_k,
                || 1.5e-5,
                &mut got_out,
            )
            .expect("served");
            assert!(
                got_out[..got.len] == want_out[..want.len],
                "request #{i}: {} served other bytes than scalar:\n{}\n{}",
                k.name(),
                String::from_utf8_lossy(&got_out[..got.len]),
                String::from_utf8_lossy(&want_out[..want.len])
            );
        }
    }
    // Both classes were answered (so the regressors ran too).
    assert!(positives > 0 && positives < N_BODIES, "{positives} class 1");
}

#[test]
fn random_and_extreme_inputs_get_identical_answers() {
    let model = conversion_miner::embedded::model();
    let ks = simd_kernels("random_and_extreme_inputs_get_identical_answers");
    let mut r = support::Rng(0xA11CE);
    let mut cases: Vec<(String, [f32; N_INPUTS])> = Vec::new();
    for n in 0..600 {
        let scale = 10f64.powi((r.next_u64() % 13) as i32 - 6);
        cases.push((
            format!("random x{scale:e} #{n}"),
            std::array::from_fn(|_| (r.sym() * scale) as f32),
        ));
    }
    let near = f32::from_bits(INPUT_LIMIT.to_bits() - 1);
    let pool = [
        INPUT_LIMIT,
        -INPUT_LIMIT,
        near,
        0.0,
        -0.0,
        f32::from_bits(1),
        f32::MIN_POSITIVE,
        1.0e-30,
        f32::MAX,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for (a, &v) in pool.iter().enumerate() {
        cases.push((format!("all {v:e}"), [v; N_INPUTS]));
        for &u in &pool[a..] {
            cases.push((
                format!("alternating {v:e} / {u:e}"),
                std::array::from_fn(|i| if i % 2 == 0 { v } else { -u }),
            ));
        }
        for n in 0..20 {
            // One edge value among ordinary inputs of mixed signs.
            let mut x: [f32; N_INPUTS] = std::array::from_fn(|_| (r.sym() * 3.0) as f32);
            x[(r.next_u64() as usize) % N_INPUTS] = v;
            cases.push((format!("one {v:e} #{n}"), x));
        }
    }
    let mut finite = 0;
    for (name, x) in &cases {
        for &k in &ks {
            same_answer(model, k, x, name);
        }
        let p = model.predict_inputs(x, Kernel::Scalar);
        finite += usize::from(p.confidence.is_finite() && p.time_to_conversion_seconds.is_finite());
        // The clamp rule: an input beyond the limit answers as at the limit.
        let clamped = x.map(clamp_input);
        assert_eq!(
            pred_bits(&p),
            pred_bits(&model.predict_inputs(&clamped, Kernel::Scalar)),
            "{name}"
        );
    }
    assert_eq!(finite, cases.len());
    eprintln!("{} inputs compared", cases.len());
}
