//! The whole training run: statistics, five networks in parallel, the
//! calibration, the held-out evaluation of the exported file, the report.
//!
//! Every random stream is derived from one seed, and the held-out test
//! conversations come from the plain `eval`/`gen` stream of a different seed,
//! which training never draws from, so the figures in the report are the
//! ones `conversion-miner eval --seed <test_seed>` reproduces.

use crate::csv::Row;
use crate::data::{self, generated, Sample, Scaler, Source};
use crate::eval::{self, Metrics};
use crate::export::{self, Extras};
use crate::rng::Rng;
use crate::trainer::{self, Heldout, Recipe, Task, Trained};
use cm_core::schema::{H1, H2, N_CLASSIFIERS, N_FEATURES, N_INPUTS, N_REGRESSORS};
use cm_modelfile::ModelFile;
use serde_json::json;
use std::time::Instant;

/// Stream labels for `Rng::derive`.
const STREAM_PILOT: u64 = 1;
const STREAM_HELDOUT: u64 = 2;
const STREAM_CALIB: u64 = 3;
const STREAM_SPLIT: u64 = 4;
const STREAM_SNAP: u64 = 5;
const STREAM_NET: u64 = 100;

/// Inputs of a run besides the recipe.
pub struct Plan {
    pub seed: u64,
    pub recipe: Recipe,
    /// Rows from the subnet CSV instead of the generator, with their file name.
    pub csv: Option<(String, Vec<Row>)>,
    pub pilot_rows: usize,
    pub heldout_rows: usize,
    pub calib_rows: usize,
    pub test_seed: u64,
    pub test_rows: usize,
    /// The command line, for the report.
    pub command: String,
}

fn gen_rows(rng: &mut Rng, n: usize) -> Vec<Sample> {
    (0..n).map(|_| generated(rng)).collect()
}

/// The generated rows `training_stats` (and the scaler) of a run with
/// `seed` come from; `n` is the report's `data.statistics_rows`.
pub fn statistics_rows(seed: u64, n: usize) -> Vec<Sample> {
    gen_rows(&mut Rng::derive(seed, STREAM_PILOT), n)
}

/// The rows a stream of the run draws from: the generator, or the CSV's
/// training split.
fn source<'a>(plan: &Plan, train_rows: &'a [Sample], rng: Rng) -> Source<'a> {
    match &plan.csv {
        None => Source::Generator(rng),
        Some(_) => Source::Rows {
            rows: train_rows,
            rng,
        },
    }
}

/// Round every network's folded hidden weights onto the f16 grid, then
/// refit each regressor's last layer through the snapped layers (on its own
/// stream of converted rows, both regressors in parallel).
fn snap_f16(
    mf: &mut ModelFile,
    plan: &Plan,
    train_rows: &[Sample],
    rows: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    cm_modelfile::snap::snap_model(mf)
        .map_err(|e| anyhow::anyhow!("rounding the weights to f16: {e}"))?;
    let (scaler, target) = (&mf.scaler, (mf.target.mean, mf.target.std));
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|sc| {
        let handles: Vec<_> = mf
            .regressors
            .iter_mut()
            .enumerate()
            .map(|(j, net)| {
                let rng = Rng::derive(plan.seed, STREAM_SNAP + j as u64);
                let mut src = source(plan, train_rows, rng);
                sc.spawn(move || trainer::refit_file_regressor(net, scaler, target, &mut src, rows))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("refit thread panicked"))
            .collect()
    });
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let inexact = cm_modelfile::snap::inexact_folded_weights(mf)
        .map_err(|e| anyhow::anyhow!("folding the snapped model: {e}"))?;
    anyhow::ensure!(
        inexact == 0,
        "{inexact} folded weights are still not exact in f16 after snapping"
    );
    eprintln!(
        "hidden weights rounded onto the f16 grid, regressors' last layer refitted ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Train, calibrate, evaluate; returns the model file and the test metrics.
pub fn run(plan: &Plan) -> anyhow::Result<(ModelFile, Metrics)> {
    let started = Instant::now();
    let r = &plan.recipe;
    let seed = plan.seed;
    // Rows for statistics, progress and calibration.
    let (stat_rows, heldout_rows, calib_rows, train_rows): (
        Vec<Sample>,
        Vec<Sample>,
        Vec<Sample>,
        Vec<Sample>,
    ) = match &plan.csv {
        None => (
            statistics_rows(seed, plan.pilot_rows),
            gen_rows(&mut Rng::derive(seed, STREAM_HELDOUT), plan.heldout_rows),
            gen_rows(&mut Rng::derive(seed, STREAM_CALIB), plan.calib_rows),
            Vec::new(),
        ),
        Some((_, rows)) => {
            let mut all: Vec<Sample> = rows.iter().map(Sample::from).collect();
            if all.len() < 100 {
                anyhow::bail!(
                    "the CSV has {} rows; training needs at least 100",
                    all.len()
                );
            }
            let mut rng = Rng::derive(seed, STREAM_SPLIT);
            for i in (1..all.len()).rev() {
                let j = rng.int_inclusive(0, i as i64) as usize;
                all.swap(i, j);
            }
            let n_hold = all.len() / 10;
            let heldout = all[..n_hold].to_vec();
            let calib = all[n_hold..2 * n_hold].to_vec();
            let train = all[2 * n_hold..].to_vec();
            (train.clone(), heldout, calib, train)
        }
    };
    let scaler = Scaler::fit(&stat_rows, r.spread);
    let stats = data::feature_stats(&stat_rows);
    let fill: Vec<f64> = stats.iter().map(|s| s[0]).collect();
    let times: Vec<f64> = stat_rows
        .iter()
        .filter(|s| s.label == 1)
        .map(|s| s.time)
        .collect();
    if times.len() < 2 {
        anyhow::bail!("no converted rows to train the regressors on");
    }
    let t_mean = times.iter().sum::<f64>() / times.len() as f64;
    let t_std = (times.iter().map(|t| (t - t_mean).powi(2)).sum::<f64>() / times.len() as f64)
        .sqrt()
        .max(1e-6);
    let heldout = Heldout {
        x: scaler.matrix(&heldout_rows),
        rows: heldout_rows,
    };
    let conv_rate =
        stat_rows.iter().filter(|s| s.label == 1).count() as f64 / stat_rows.len() as f64;
    eprintln!(
        "data: {} statistics rows, conversion rate {:.2}%, converted time mean {t_mean:.2} s std {t_std:.2} s; {:.1} s",
        stat_rows.len(),
        100.0 * conv_rate,
        started.elapsed().as_secs_f64()
    );

    // Five networks, each with its own data stream and initialisation.
    let jobs: Vec<(String, Task)> = (0..N_CLASSIFIERS)
        .map(|i| (format!("cls{i}"), Task::Classify))
        .chain((0..N_REGRESSORS).map(|i| {
            (
                format!("reg{i}"),
                Task::Regress {
                    mean: t_mean,
                    std: t_std,
                },
            )
        }))
        .collect();
    let trained: Vec<Trained> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(j, (name, task))| {
                let src = source(plan, &train_rows, Rng::derive(seed, STREAM_NET + j as u64));
                let (scaler, heldout) = (&scaler, &heldout);
                let net_seed = seed ^ ((j as u64 + 1) << 32);
                sc.spawn(move || trainer::train_net(name, *task, r, src, scaler, heldout, net_seed))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("training thread panicked"))
            .collect()
    });
    let train_secs = started.elapsed().as_secs_f64();

    let classifiers: Vec<_> = trained[..N_CLASSIFIERS]
        .iter()
        .map(|t| export::network(&t.net, None, true))
        .collect();
    let regressors: Vec<_> = trained[N_CLASSIFIERS..]
        .iter()
        .map(|t| export::network(&t.net, t.last_f64.as_ref(), false))
        .collect();
    let extras = Extras {
        scaler,
        fill,
        stats: export::training_stats(&stat_rows),
        target: (t_mean, t_std),
        time_clamp: [1.0, 600.0],
    };
    let identity = cm_modelfile::Calibration {
        x: (0..cm_core::schema::CALIB_KNOTS)
            .map(|i| i as f64 / 16.0)
            .collect(),
        y: (0..cm_core::schema::CALIB_KNOTS)
            .map(|i| i as f64 / 16.0)
            .collect(),
    };
    let mut mf = export::model_file(classifiers, regressors, &extras, identity, json!({}));
    if r.snap_f16 {
        snap_f16(&mut mf, plan, &train_rows, r.refit_rows)?;
    }
    let pairs: Vec<(f64, u8)> = calib_rows
        .iter()
        .map(|s| (export::predict_f64(&mf, &s.raw).2, s.label))
        .collect();
    mf.calibration = export::fit_calibration(&pairs);
    cm_modelfile::validate(&mf)
        .map_err(|e| anyhow::anyhow!("the exported model file is invalid: {e}"))?;

    let (test_rows, test_desc) = match &plan.csv {
        None => (
            eval::test_set(plan.test_seed, plan.test_rows),
            format!(
                "{} fresh generated conversations, seed {} (the `gen`/`eval` stream)",
                plan.test_rows, plan.test_seed
            ),
        ),
        Some(_) => (
            heldout.rows.clone(),
            format!("{} held-out CSV rows (10% split)", heldout.rows.len()),
        ),
    };
    let metrics = eval::score(&test_rows, |raw: &[f64; N_FEATURES]| {
        let (c, t, _, _) = export::predict_f64(&mf, raw);
        (c, t)
    });
    let total_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}",
        metrics.table("held-out test, f64 forward of the exported file")
    );
    for (s, c, _) in metrics.wrong.iter().take(12) {
        eprintln!(
            "  wrong: predicted {c}, truth {} (duration {}, message_ratio {}, entities {}, has_target {})",
            s.label, s.raw[0], s.raw[18], s.raw[33], s.raw[34]
        );
    }

    let data_desc = match &plan.csv {
        None => json!({
            "source": "generator (train/src/gen.rs: the validator's draws, SUBNET.md), labels from the oracle rule",
            "fresh_data": "every batch is newly generated; each network has its own stream",
            "statistics_rows": stat_rows.len(),
            "conversion_rate": conv_rate,
            "rows_seen_per_classifier": r.cls_steps * r.batch,
            "rows_seen_per_regressor": r.reg_steps * r.batch,
            "calibration_rows": calib_rows.len(),
        }),
        Some((file, rows)) => json!({
            "source": format!("subnet training CSV {file}"),
            "rows": rows.len(),
            "split": "80% train / 10% calibration / 10% held-out test, shuffled with the run seed",
            "conversion_rate": conv_rate,
        }),
    };
    mf.report = json!({
        "trained_by": "conversion-miner train (crate cm-train)",
        "seed": seed,
        "data": data_desc,
        "architecture": format!("{N_INPUTS} inputs -> Linear {H1} -> BatchNorm -> ReLU -> Dropout -> Linear {H2} -> ReLU -> Linear 1; {N_CLASSIFIERS} classifiers (mean of sigmoids), {N_REGRESSORS} regressors (mean, converted rows only, last layer refitted by f64 least squares)"),
        "f16_snap": if r.snap_f16 { "W1 and W2 after folding rounded onto the f16 grid (exact in f16 and f32 builds alike); regressors' last layer refitted again through the rounded layers" } else { "none: an f16 build rounds the trained weights" },
        "settings": r,
        "spread_inputs": data::SPREAD_INPUTS.iter().map(|&i| cm_core::schema::FEATURE_NAMES[i]).collect::<Vec<_>>(),
        "networks_heldout": jobs.iter().zip(&trained).map(|((n, _), t)| json!({"network": n, "metric": t.heldout_metric})).collect::<Vec<_>>(),
        "test": {
            "data": test_desc,
            "evaluated_with": "f64 forward of this file (train/src/export.rs), response_time = 0 for model and oracle",
            "metrics": &metrics,
        },
        "timing": {
            "training_seconds": train_secs,
            "total_seconds": total_secs,
            "threads": jobs.len(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        },
        "commands": {
            "train": plan.command,
            "eval": match &plan.csv {
                None => format!("conversion-miner eval --n {} --seed {}", plan.test_rows, plan.test_seed),
                Some(_) => "the test rows are the CSV's own held-out split; `conversion-miner eval --weights FILE` scores generated conversations instead".to_string(),
            },
        },
    });
    eprintln!("training {train_secs:.1} s, whole run {total_secs:.1} s (wall clock)");
    Ok((mf, metrics))
}
