//! One network's training loop: fresh batches, hard-example replay, Adam with
//! warm-up and cosine decay, then a frozen-BatchNorm phase.
//!
//! The loop is the same for classifiers (BCE on the logit) and regressors
//! (squared error on the scaled time, converted rows only); [`Task`] picks
//! the loss. Hard examples: after every step the highest-loss fresh rows of
//! the batch go into a replay pool, and a fixed share of every later batch is
//! drawn from that pool, so the rare rows that sit next to a sharp edge in
//! the data are seen many times instead of once. The last phase freezes the
//! BatchNorm statistics at their population values (measured over fresh
//! data) and trains on, so the exported network equals the optimised one.

use crate::data::{Sample, Scaler, Source};
use crate::nn::{Adam, BnMode, Cache, Net, B3, W3};
use crate::rng::Rng;
use cm_core::schema::{H1, H2, N_INPUTS};
use nalgebra::DMatrix;
use std::time::Instant;

/// Everything that shapes a training run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recipe {
    pub cls_steps: usize,
    pub reg_steps: usize,
    pub batch: usize,
    #[serde(serialize_with = "short_f32")]
    pub lr_max: f32,
    #[serde(serialize_with = "short_f32")]
    pub lr_min: f32,
    /// Share of steps spent warming the learning rate up.
    pub warmup: f64,
    /// Share of steps trained with BatchNorm frozen at population statistics.
    pub frozen: f64,
    #[serde(serialize_with = "short_f32")]
    pub dropout: f32,
    /// AdamW decay of the hidden weights, classifiers and regressors.
    #[serde(serialize_with = "short_f32")]
    pub cls_weight_decay: f32,
    #[serde(serialize_with = "short_f32")]
    pub reg_weight_decay: f32,
    /// Share of each batch replayed from the hard-example pool.
    pub hard_share: f64,
    /// Rows of each batch's fresh part that enter the pool.
    pub hard_per_step: usize,
    pub pool: usize,
    /// Std divisor of the spread inputs (see `data::SPREAD_INPUTS`).
    pub spread: f64,
    /// Converted rows used for the regressors' least-squares refit.
    pub refit_rows: usize,
    /// Round the folded hidden weights of every network onto the f16 grid
    /// (`cm_modelfile::snap`), then refit the regressors' last layer again,
    /// so f16 and f32 builds of the file answer identically.
    pub snap_f16: bool,
    pub eval_every: usize,
}

/// An f32 setting as the decimal it was typed as (`0.05`, not
/// `0.05000000074505806`) in the report.
fn short_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(format!("{x}").parse::<f64>().unwrap_or(*x as f64))
}

/// What a network learns.
#[derive(Clone, Copy, Debug)]
pub enum Task {
    Classify,
    /// Seconds = output * std + mean.
    Regress {
        mean: f64,
        std: f64,
    },
}

/// Held-out rows for the progress display.
pub struct Heldout {
    pub x: DMatrix<f32>,
    pub rows: Vec<Sample>,
}

/// A trained network; for regressors, the refitted last layer in f64.
pub struct Trained {
    pub net: Net,
    pub last_f64: Option<(Vec<f64>, f64)>,
    pub heldout_metric: f64,
}

fn lr_at(r: &Recipe, step: usize, steps: usize) -> f32 {
    let warm = ((steps as f64 * r.warmup) as usize).max(1);
    if step < warm {
        return r.lr_max * (0.1 + 0.9 * step as f32 / warm as f32);
    }
    let t = (step - warm) as f64 / (steps - warm).max(1) as f64;
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
    (r.lr_min as f64 + (r.lr_max - r.lr_min) as f64 * cos) as f32
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Binary cross-entropy of a logit, stable for large |z|.
fn bce(z: f32, y: f32) -> f32 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// Held-out figure: accuracy (classifier) or MAE in seconds on converted rows (regressor).
pub fn heldout_metric(net: &Net, task: Task, h: &Heldout) -> f64 {
    let mut c = Cache::default();
    net.forward_eval(&h.x, &mut c);
    match task {
        Task::Classify => {
            let right = h
                .rows
                .iter()
                .zip(c.out.iter())
                .filter(|(s, &z)| (z >= 0.0) == (s.label == 1))
                .count();
            right as f64 / h.rows.len() as f64
        }
        Task::Regress { mean, std } => {
            let (mut sum, mut n) = (0.0, 0usize);
            for (s, &z) in h.rows.iter().zip(c.out.iter()) {
                if s.label == 1 {
                    sum += (z as f64 * std + mean - s.time).abs();
                    n += 1;
                }
            }
            sum / n.max(1) as f64
        }
    }
}

fn target(task: Task, s: &Sample) -> f32 {
    match task {
        Task::Classify => s.label as f32,
        Task::Regress { mean, std } => ((s.time - mean) / std) as f32,
    }
}

/// Set BatchNorm statistics to their population values over `batches` fresh batches.
fn population_stats(
    net: &mut Net,
    task: Task,
    src: &mut Source,
    scaler: &Scaler,
    batch: usize,
    batches: usize,
) {
    let mut x = DMatrix::zeros(batch, N_INPUTS);
    let mut z1 = DMatrix::zeros(batch, H1);
    let (mut s1, mut s2) = (vec![0.0f64; H1], vec![0.0f64; H1]);
    for _ in 0..batches {
        for i in 0..batch {
            let s = match task {
                Task::Classify => src.draw(),
                Task::Regress { .. } => src.draw_converted(),
            };
            scaler.put(&s.raw, &mut x, i);
        }
        net.layer1(&x, &mut z1);
        for j in 0..H1 {
            for &v in z1.column(j).iter() {
                s1[j] += v as f64;
                s2[j] += (v as f64) * (v as f64);
            }
        }
    }
    let n = (batch * batches) as f64;
    for j in 0..H1 {
        let m = s1[j] / n;
        net.run_mean[j] = m as f32;
        net.run_var[j] = (s2[j] / n - m * m).max(0.0) as f32;
    }
}

/// Least-squares refit (f64) of a regressor's last layer on converted rows.
fn refit_last_layer(
    net: &Net,
    task: Task,
    src: &mut Source,
    scaler: &Scaler,
    rows: usize,
) -> (Vec<f64>, f64) {
    let Task::Regress { mean, std } = task else {
        unreachable!("refit is for regressors")
    };
    const CHUNK: usize = 4096;
    let dim = H2 + 1;
    let mut ata = nalgebra::DMatrix::<f64>::zeros(dim, dim);
    let mut atb = nalgebra::DVector::<f64>::zeros(dim);
    let mut x = DMatrix::zeros(CHUNK, N_INPUTS);
    let mut ys = vec![0.0f64; CHUNK];
    let mut c = Cache::default();
    let mut done = 0;
    while done < rows {
        for (i, y) in ys.iter_mut().enumerate() {
            let s = src.draw_converted();
            scaler.put(&s.raw, &mut x, i);
            *y = (s.time - mean) / std;
        }
        net.forward_eval(&x, &mut c);
        let mut a = nalgebra::DMatrix::<f64>::from_element(CHUNK, dim, 1.0);
        for j in 0..H2 {
            for i in 0..CHUNK {
                a[(i, j)] = c.a2[(i, j)] as f64;
            }
        }
        ata += a.tr_mul(&a);
        atb += a.tr_mul(&nalgebra::DVector::from_column_slice(&ys));
        done += CHUNK;
    }
    solve_last_layer(ata, &atb, || {
        let w = (0..H2).map(|j| net.p[W3][j] as f64).collect();
        (w, net.p[B3][0] as f64)
    })
}

/// Solve the normal equations `ata · [w; b] = atb` of a last-layer fit
/// (`H2` weights and a bias); `keep` gives the layer to leave in place when
/// they are singular even after the ridge.
fn solve_last_layer(
    mut ata: nalgebra::DMatrix<f64>,
    atb: &nalgebra::DVector<f64>,
    keep: impl FnOnce() -> (Vec<f64>, f64),
) -> (Vec<f64>, f64) {
    let dim = H2 + 1;
    // A whisper of ridge keeps dead units (all-zero columns) solvable.
    let ridge = 1e-9 * (ata.trace() / dim as f64);
    for i in 0..dim {
        ata[(i, i)] += ridge;
    }
    let sol = match ata.clone().cholesky() {
        Some(ch) => ch.solve(atb),
        None => match ata.lu().solve(atb) {
            Some(v) => v,
            None => return keep(),
        },
    };
    (sol.rows(0, H2).iter().copied().collect(), sol[H2])
}

/// Least-squares refit (f64) of an exported regressor's last layer through
/// the file's own f64 forward pass, on `rows` converted rows of `src`: run
/// after its hidden layers were snapped to f16 (`cm_modelfile::snap`), so
/// the output layer absorbs what the rounding moved. `net` must have the
/// validated regressor layout; the target is scaled as in training.
pub fn refit_file_regressor(
    net: &mut cm_modelfile::Network,
    scaler: &cm_modelfile::Scaler,
    target: (f64, f64),
    src: &mut Source,
    rows: usize,
) -> anyhow::Result<()> {
    use cm_modelfile::Layer;
    let hidden = cm_modelfile::Network {
        layers: net.layers.get(..5).unwrap_or_default().to_vec(),
    };
    let (w_old, b_old) = match net.layers.get(5) {
        Some(Layer::Linear { weight, bias, .. }) if weight.len() == 1 && bias.len() == 1 => {
            (weight[0].clone(), bias[0])
        }
        _ => anyhow::bail!("refit: the regressor's layer 5 is not its 64 -> 1 output layer"),
    };
    let dim = H2 + 1;
    let mut ata = nalgebra::DMatrix::<f64>::zeros(dim, dim);
    let mut atb = nalgebra::DVector::<f64>::zeros(dim);
    let mut a = nalgebra::DVector::<f64>::zeros(dim);
    for _ in 0..rows {
        let s = src.draw_converted();
        let x = cm_modelfile::reference::scale(scaler, &s.raw);
        let h2 = cm_modelfile::reference::network_f64(&hidden, &x);
        if h2.len() != H2 {
            anyhow::bail!(
                "refit: the regressor's hidden layers give {} values, not {H2}",
                h2.len()
            );
        }
        a.rows_mut(0, H2).copy_from_slice(&h2);
        a[H2] = 1.0;
        ata.syger(1.0, &a, &a, 1.0);
        atb.axpy((s.time - target.0) / target.1, &a, 1.0);
    }
    ata.fill_upper_triangle_with_lower_triangle();
    let (w, b) = solve_last_layer(ata, &atb, || (w_old, b_old));
    net.layers[5] = Layer::Linear {
        n_in: H2,
        n_out: 1,
        weight: vec![w],
        bias: vec![b],
    };
    Ok(())
}

/// Train one network.
pub fn train_net(
    name: &str,
    task: Task,
    r: &Recipe,
    mut src: Source,
    scaler: &Scaler,
    heldout: &Heldout,
    seed: u64,
) -> Trained {
    let mut rng = Rng::derive(seed, 0xA11CE);
    let mut net = Net::new(&mut rng);
    let mut adam = Adam::new(&net);
    adam.weight_decay = match task {
        Task::Classify => r.cls_weight_decay,
        Task::Regress { .. } => r.reg_weight_decay,
    };
    let mut grads = net.zeros_like();
    let mut cache = Cache::default();
    let b = r.batch;
    let steps = match task {
        Task::Classify => r.cls_steps,
        Task::Regress { .. } => r.reg_steps,
    };
    let freeze_at = ((steps as f64) * (1.0 - r.frozen)) as usize;
    let mut x = DMatrix::zeros(b, N_INPUTS);
    let mut y = vec![0.0f32; b];
    let mut dout = DMatrix::zeros(b, 1);
    let mut losses = vec![(0.0f32, 0usize); b];
    let mut pool: Vec<([f32; N_INPUTS], f32)> = Vec::with_capacity(r.pool);
    let mut pool_pos = 0usize;
    let started = Instant::now();
    let mut loss_avg = 0.0f64;
    let mut metric = f64::NAN;
    for step in 0..steps {
        if step == freeze_at {
            population_stats(&mut net, task, &mut src, scaler, b, 64);
            net.mode = BnMode::Frozen;
        }
        let lr = lr_at(r, step, steps);
        let dropout = if net.mode == BnMode::Batch {
            r.dropout
        } else {
            0.0
        };
        let n_hard = if pool.len() >= b {
            ((b as f64) * r.hard_share) as usize
        } else {
            0
        };
        let n_fresh = b - n_hard;
        for i in 0..n_fresh {
            let s = match task {
                Task::Classify => src.draw(),
                Task::Regress { .. } => src.draw_converted(),
            };
            scaler.put(&s.raw, &mut x, i);
            y[i] = target(task, &s);
        }
        for i in n_fresh..b {
            let (row, t) = &pool[rng.int_inclusive(0, pool.len() as i64 - 1) as usize];
            for k in 0..N_INPUTS {
                x[(i, k)] = row[k];
            }
            y[i] = *t;
        }
        net.forward_train(&x, dropout, &mut rng, &mut cache);
        let mut loss_sum = 0.0f64;
        for i in 0..b {
            let z = cache.out[i];
            let (l, d) = match task {
                Task::Classify => (bce(z, y[i]), sigmoid(z) - y[i]),
                Task::Regress { .. } => {
                    let e = z - y[i];
                    (e * e, 2.0 * e)
                }
            };
            dout[i] = d / b as f32;
            losses[i] = (l, i);
            loss_sum += l as f64;
        }
        net.backward(&x, &dout, &mut cache, &mut grads);
        adam.step(&mut net, &grads, lr);
        // Hard-example mining over the fresh rows.
        if r.hard_per_step > 0 && r.pool > 0 {
            let k = r.hard_per_step.min(n_fresh);
            let fresh = &mut losses[..n_fresh];
            fresh.select_nth_unstable_by(n_fresh - k, |a, b| a.0.total_cmp(&b.0));
            for &(_, i) in fresh[n_fresh - k..].iter() {
                let mut row = [0.0f32; N_INPUTS];
                for (kk, v) in row.iter_mut().enumerate() {
                    *v = x[(i, kk)];
                }
                if pool.len() < r.pool {
                    pool.push((row, y[i]));
                } else {
                    pool[pool_pos] = (row, y[i]);
                    pool_pos = (pool_pos + 1) % r.pool;
                }
            }
        }
        loss_avg = if step == 0 {
            loss_sum / b as f64
        } else {
            0.98 * loss_avg + 0.02 * loss_sum / b as f64
        };
        if (step + 1) % r.eval_every == 0 || step + 1 == steps {
            metric = heldout_metric(&net, task, heldout);
            let what = match task {
                Task::Classify => format!("held-out acc {:.4}%", 100.0 * metric),
                Task::Regress { .. } => format!("held-out MAE {metric:.4} s"),
            };
            eprintln!(
                "[{name}] step {:>6}/{steps} loss {loss_avg:.3e} lr {lr:.2e} bn {:?} {what} ({:.0} s)",
                step + 1,
                net.mode,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let last_f64 = match task {
        Task::Regress { .. } => {
            let fit = refit_last_layer(&net, task, &mut src, scaler, r.refit_rows);
            for j in 0..H2 {
                net.p[W3][j] = fit.0[j] as f32;
            }
            net.p[B3][0] = fit.1 as f32;
            metric = heldout_metric(&net, task, heldout);
            eprintln!("[{name}] least-squares refit of the last layer: held-out MAE {metric:.4} s");
            Some(fit)
        }
        Task::Classify => None,
    };
    Trained {
        net,
        last_f64,
        heldout_metric: metric,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean absolute error in seconds of one file regressor on `rows`
    /// converted rows of the generator stream `seed`.
    fn regressor_mae(m: &cm_modelfile::ModelFile, j: usize, seed: u64, rows: usize) -> f64 {
        let mut src = Source::Generator(Rng::derive(seed, 1));
        let mut sum = 0.0;
        for _ in 0..rows {
            let s = src.draw_converted();
            let x = cm_modelfile::reference::scaled_inputs(m, &s.raw);
            let secs = cm_modelfile::reference::network_f64(&m.regressors[j], &x)[0] * m.target.std
                + m.target.mean;
            sum += (secs - s.time).abs();
        }
        sum / rows as f64
    }

    /// The file-domain refit finds a working last layer from nothing: with
    /// the shipped regressor's output layer zeroed, it brings the error
    /// back to within 10% of the shipped layer's, on rows it did not fit.
    #[test]
    fn refit_recovers_a_regressors_last_layer() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../weights/model.json"
        ))
        .unwrap();
        let mut m = cm_modelfile::parse_model_file(&text).unwrap();
        let shipped = regressor_mae(&m, 0, 42, 5_000);
        if let Some(cm_modelfile::Layer::Linear { weight, bias, .. }) =
            m.regressors[0].layers.get_mut(5)
        {
            weight[0].iter_mut().for_each(|w| *w = 0.0);
            bias[0] = 0.0;
        }
        let zeroed = regressor_mae(&m, 0, 42, 5_000);
        assert!(
            zeroed > 10.0 * shipped,
            "zeroing must hurt: {zeroed} vs {shipped}"
        );
        let mut src = Source::Generator(Rng::derive(7, 1));
        let (scaler, target) = (m.scaler.clone(), (m.target.mean, m.target.std));
        refit_file_regressor(&mut m.regressors[0], &scaler, target, &mut src, 40_000).unwrap();
        let refit = regressor_mae(&m, 0, 42, 5_000);
        assert!(
            refit <= 1.1 * shipped,
            "refit {refit} s vs shipped {shipped} s"
        );
        // A network without the output layer is refused, not indexed.
        let mut cut = m.regressors[0].clone();
        cut.layers.truncate(5);
        assert!(refit_file_regressor(&mut cut, &scaler, target, &mut src, 10).is_err());
    }
}
