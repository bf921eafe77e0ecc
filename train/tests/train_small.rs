//! A broken trainer must fail CI: train a small ensemble from scratch (well
//! under a minute at opt-level 3) and require it to have learned the rule,
//! through the exported file, the format's validator, and the f32 core path.

use cm_core::kernels::Kernel;
use cm_core::schema::N_FEATURES;
use cm_train::cli::{recipe, TrainArgs};
use cm_train::eval;
use cm_train::pipeline::{run, Plan};
use std::time::Instant;

#[test]
fn small_model_learns_the_rule() {
    let started = Instant::now();
    let args = TrainArgs {
        out: String::new(),
        seed: 42,
        csv: None,
        steps: 1200,
        reg_steps: 600,
        batch: 256,
        lr: 2e-3,
        lr_min: 2e-5,
        dropout: 0.05,
        cls_wd: 0.0,
        reg_wd: 1.0,
        hard_share: 0.25,
        spread: 4.0,
        frozen: 0.3,
        eval_every: 400,
        test_seed: 9001,
        test_n: 20_000,
        no_f16_snap: false,
    };
    let plan = Plan {
        seed: args.seed,
        recipe: recipe(&args),
        csv: None,
        pilot_rows: 50_000,
        heldout_rows: 5_000,
        calib_rows: 10_000,
        test_seed: args.test_seed,
        test_rows: args.test_n,
        command: "test".into(),
    };
    let (mf, m) = run(&plan).expect("training runs");
    eprintln!("{}", m.table("small model"));
    assert!(m.accuracy >= 0.97, "held-out accuracy {}", m.accuracy);
    assert!(m.mae_tp < 3.0, "MAE on true positives {}", m.mae_tp);
    assert!(m.reward_ratio > 0.95, "reward ratio {}", m.reward_ratio);

    // The file is valid for the format and gives the same answers through
    // the folded f32 core model.
    cm_modelfile::validate(&mf).expect("exported file validates");
    // The run snapped its hidden weights: f16 and f32 builds store the same.
    assert_eq!(cm_modelfile::snap::inexact_folded_weights(&mf).unwrap(), 0);
    let model = cm_modelfile::build_model(&mf).expect("folds into a core model");
    let rows = eval::test_set(9002, 5_000);
    let core = eval::score(&rows, |raw| {
        let mut r = [0f32; N_FEATURES];
        r.iter_mut().zip(raw).for_each(|(d, s)| *d = *s as f32);
        let p = model.predict_raw(&r, (1u64 << N_FEATURES) - 1, Kernel::Scalar);
        (p.conversion_happened, p.time_to_conversion_seconds as f64)
    });
    assert!(
        core.accuracy >= 0.97,
        "core path accuracy {}",
        core.accuracy
    );
    assert_eq!(core.invalid, 0);
    let secs = started.elapsed().as_secs_f64();
    eprintln!("small training test took {secs:.1} s");
}
