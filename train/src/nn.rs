//! The seed's MLP in f32 on nalgebra matrices, with hand-written backward
//! passes and Adam.
//!
//! Shape: 47 inputs -> Linear 128 -> BatchNorm -> ReLU -> Dropout -> Linear 64
//! -> ReLU -> Linear 1. A batch is a column-major `B x n` matrix, so every
//! per-feature BatchNorm statistic walks one contiguous column. Products go
//! straight to `matrixmultiply::sgemm` (the kernel nalgebra itself uses)
//! because it takes arbitrary strides: `A^T B` and `A B^T` cost no copies.
//!
//! BatchNorm has two modes. `Batch` is the usual training mode. `Frozen`
//! uses the stored statistics, i.e. exactly what inference computes; the
//! trainer switches to it for the last phase so that the exported network
//! is the one that was optimised, not an approximation of it.

use crate::rng::Rng;
use cm_core::schema::{H1, H2, N_INPUTS};
use nalgebra::DMatrix;

pub const BN_EPS: f32 = 1e-5;
/// Momentum of the running BatchNorm statistics (PyTorch's default).
pub const BN_MOMENTUM: f32 = 0.1;

/// Parameter slots.
pub const W1: usize = 0;
pub const B1: usize = 1;
pub const GAMMA: usize = 2;
pub const BETA: usize = 3;
pub const W2: usize = 4;
pub const B2: usize = 5;
pub const W3: usize = 6;
pub const B3: usize = 7;
pub const N_PARAMS: usize = 8;

/// `c = alpha * op(a) * op(b) + beta * c`, `op` = transpose when the flag is set.
pub fn gemm(
    alpha: f32,
    a: &DMatrix<f32>,
    ta: bool,
    b: &DMatrix<f32>,
    tb: bool,
    beta: f32,
    c: &mut DMatrix<f32>,
) {
    let (m, k) = if ta {
        (a.ncols(), a.nrows())
    } else {
        (a.nrows(), a.ncols())
    };
    let (k2, n) = if tb {
        (b.ncols(), b.nrows())
    } else {
        (b.nrows(), b.ncols())
    };
    assert!(
        k == k2 && c.nrows() == m && c.ncols() == n,
        "gemm shape mismatch"
    );
    // Column-major: element (i, j) at i + j * nrows.
    let (rsa, csa) = if ta {
        (a.nrows() as isize, 1)
    } else {
        (1, a.nrows() as isize)
    };
    let (rsb, csb) = if tb {
        (b.nrows() as isize, 1)
    } else {
        (1, b.nrows() as isize)
    };
    let csc = c.nrows() as isize;
    // SAFETY: the pointers come from live, correctly sized matrices; the
    // strides above address exactly their m x k, k x n and m x n elements
    // (shapes asserted), and `c` is borrowed mutably so nothing aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            1,
            csc,
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    Batch,
    Frozen,
}

/// One network's parameters and BatchNorm statistics.
#[derive(Clone, Debug)]
pub struct Net {
    pub p: Vec<DMatrix<f32>>,
    pub run_mean: Vec<f32>,
    pub run_var: Vec<f32>,
    pub mode: BnMode,
}

/// Activations kept for the backward pass.
#[derive(Default)]
pub struct Cache {
    z1: DMatrix<f32>,
    xhat: DMatrix<f32>,
    ybn: DMatrix<f32>,
    mask: DMatrix<f32>,
    a1: DMatrix<f32>,
    z2: DMatrix<f32>,
    pub a2: DMatrix<f32>,
    pub out: DMatrix<f32>,
    inv_std: Vec<f32>,
    // gradient scratch
    d2: DMatrix<f32>,
    d1: DMatrix<f32>,
}

fn randn(rng: &mut Rng, r: usize, c: usize, std: f64) -> DMatrix<f32> {
    DMatrix::from_fn(r, c, |_, _| (rng.std_normal() * std) as f32)
}

fn zeros(r: usize, c: usize) -> DMatrix<f32> {
    DMatrix::zeros(r, c)
}

fn ensure(m: &mut DMatrix<f32>, r: usize, c: usize) {
    if m.nrows() != r || m.ncols() != c {
        *m = DMatrix::zeros(r, c);
    }
}

impl Net {
    /// He-initialised network.
    pub fn new(rng: &mut Rng) -> Net {
        let p = vec![
            randn(rng, N_INPUTS, H1, (2.0 / N_INPUTS as f64).sqrt()),
            zeros(H1, 1),
            DMatrix::from_element(H1, 1, 1.0),
            zeros(H1, 1),
            randn(rng, H1, H2, (2.0 / H1 as f64).sqrt()),
            zeros(H2, 1),
            randn(rng, H2, 1, (1.0 / H2 as f64).sqrt()),
            zeros(1, 1),
        ];
        Net {
            p,
            run_mean: vec![0.0; H1],
            run_var: vec![1.0; H1],
            mode: BnMode::Batch,
        }
    }

    pub fn zeros_like(&self) -> Vec<DMatrix<f32>> {
        self.p.iter().map(|m| zeros(m.nrows(), m.ncols())).collect()
    }

    /// Layer-1 pre-activations `x W1 + b1` into `z1`.
    pub fn layer1(&self, x: &DMatrix<f32>, z1: &mut DMatrix<f32>) {
        let b = x.nrows();
        ensure(z1, b, H1);
        gemm(1.0, x, false, &self.p[W1], false, 0.0, z1);
        for j in 0..H1 {
            let bj = self.p[B1][j];
            for v in z1.column_mut(j).iter_mut() {
                *v += bj;
            }
        }
    }

    /// Training forward pass. `dropout` is the drop probability; the output
    /// (one value per row) is left in `c.out`.
    pub fn forward_train(&mut self, x: &DMatrix<f32>, dropout: f32, rng: &mut Rng, c: &mut Cache) {
        let b = x.nrows();
        self.layer1(x, &mut c.z1);
        ensure(&mut c.xhat, b, H1);
        ensure(&mut c.ybn, b, H1);
        ensure(&mut c.mask, b, H1);
        ensure(&mut c.a1, b, H1);
        c.inv_std.resize(H1, 0.0);
        let keep_scale = if dropout > 0.0 {
            1.0 / (1.0 - dropout)
        } else {
            1.0
        };
        for j in 0..H1 {
            let z = c.z1.column(j);
            let (mean, var) = match self.mode {
                BnMode::Batch => {
                    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / b as f64;
                    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / b as f64;
                    let unbiased = var * b as f64 / (b as f64 - 1.0).max(1.0);
                    self.run_mean[j] =
                        (1.0 - BN_MOMENTUM) * self.run_mean[j] + BN_MOMENTUM * mean as f32;
                    self.run_var[j] =
                        (1.0 - BN_MOMENTUM) * self.run_var[j] + BN_MOMENTUM * unbiased as f32;
                    (mean as f32, var as f32)
                }
                BnMode::Frozen => (self.run_mean[j], self.run_var[j]),
            };
            let inv = 1.0 / (var + BN_EPS).sqrt();
            c.inv_std[j] = inv;
            let (g, be) = (self.p[GAMMA][j], self.p[BETA][j]);
            for i in 0..b {
                let xh = (c.z1[(i, j)] - mean) * inv;
                c.xhat[(i, j)] = xh;
                let y = g * xh + be;
                c.ybn[(i, j)] = y;
                let m = if dropout > 0.0 {
                    if rng.uniform() < dropout as f64 {
                        0.0
                    } else {
                        keep_scale
                    }
                } else {
                    1.0
                };
                c.mask[(i, j)] = m;
                c.a1[(i, j)] = y.max(0.0) * m;
            }
        }
        self.tail(b, c);
    }

    /// Layers 2 and 3 from `c.a1`.
    fn tail(&self, b: usize, c: &mut Cache) {
        ensure(&mut c.z2, b, H2);
        ensure(&mut c.a2, b, H2);
        ensure(&mut c.out, b, 1);
        gemm(1.0, &c.a1, false, &self.p[W2], false, 0.0, &mut c.z2);
        for j in 0..H2 {
            let bj = self.p[B2][j];
            for i in 0..b {
                let z = c.z2[(i, j)] + bj;
                c.z2[(i, j)] = z;
                c.a2[(i, j)] = z.max(0.0);
            }
        }
        gemm(1.0, &c.a2, false, &self.p[W3], false, 0.0, &mut c.out);
        let b3 = self.p[B3][0];
        for v in c.out.iter_mut() {
            *v += b3;
        }
    }

    /// Inference forward (stored BatchNorm statistics, no dropout): outputs in
    /// `c.out`, last hidden layer in `c.a2`.
    pub fn forward_eval(&self, x: &DMatrix<f32>, c: &mut Cache) {
        let b = x.nrows();
        self.layer1(x, &mut c.z1);
        ensure(&mut c.a1, b, H1);
        for j in 0..H1 {
            let inv = 1.0 / (self.run_var[j] + BN_EPS).sqrt();
            let (g, be, mu) = (self.p[GAMMA][j], self.p[BETA][j], self.run_mean[j]);
            for i in 0..b {
                c.a1[(i, j)] = (g * (c.z1[(i, j)] - mu) * inv + be).max(0.0);
            }
        }
        self.tail(b, c);
    }

    /// Backward pass of the last `forward_train`, given d(loss)/d(out) per row.
    pub fn backward(
        &self,
        x: &DMatrix<f32>,
        dout: &DMatrix<f32>,
        c: &mut Cache,
        g: &mut [DMatrix<f32>],
    ) {
        let b = x.nrows();
        gemm(1.0, &c.a2, true, dout, false, 0.0, &mut g[W3]);
        g[B3][0] = dout.iter().sum();
        ensure(&mut c.d2, b, H2);
        gemm(1.0, dout, false, &self.p[W3], true, 0.0, &mut c.d2);
        for j in 0..H2 {
            let mut s = 0.0f32;
            for i in 0..b {
                if c.z2[(i, j)] <= 0.0 {
                    c.d2[(i, j)] = 0.0;
                }
                s += c.d2[(i, j)];
            }
            g[B2][j] = s;
        }
        gemm(1.0, &c.a1, true, &c.d2, false, 0.0, &mut g[W2]);
        ensure(&mut c.d1, b, H1);
        gemm(1.0, &c.d2, false, &self.p[W2], true, 0.0, &mut c.d1);
        for j in 0..H1 {
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for i in 0..b {
                let dy = if c.ybn[(i, j)] > 0.0 {
                    c.d1[(i, j)] * c.mask[(i, j)]
                } else {
                    0.0
                };
                c.d1[(i, j)] = dy;
                sdy += dy as f64;
                sdyx += (dy * c.xhat[(i, j)]) as f64;
            }
            g[GAMMA][j] = sdyx as f32;
            g[BETA][j] = sdy as f32;
            let gamma = self.p[GAMMA][j];
            let inv = c.inv_std[j];
            match self.mode {
                BnMode::Batch => {
                    // dz = gamma*inv/B * (B*dy - sum(dy) - xhat*sum(dy*xhat))
                    let k = gamma * inv / b as f32;
                    let (mdy, mdyx) = (sdy as f32, sdyx as f32);
                    for i in 0..b {
                        let dy = c.d1[(i, j)];
                        c.d1[(i, j)] = k * (b as f32 * dy - mdy - c.xhat[(i, j)] * mdyx);
                    }
                }
                BnMode::Frozen => {
                    let k = gamma * inv;
                    for v in c.d1.column_mut(j).iter_mut() {
                        *v *= k;
                    }
                }
            }
            g[B1][j] = c.d1.column(j).iter().sum();
        }
        gemm(1.0, x, true, &c.d1, false, 0.0, &mut g[W1]);
    }
}

/// Adam state for one network.
pub struct Adam {
    m: Vec<DMatrix<f32>>,
    v: Vec<DMatrix<f32>>,
    t: i32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW) on the hidden layers' weights `W1`, `W2`:
    /// each step multiplies them by `1 - lr * weight_decay`. It pulls the
    /// weights of inputs that carry no signal to zero instead of leaving them
    /// wherever the gradient noise walked them.
    pub weight_decay: f32,
}

impl Adam {
    pub fn new(net: &Net) -> Adam {
        Adam {
            m: net.zeros_like(),
            v: net.zeros_like(),
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    pub fn step(&mut self, net: &mut Net, g: &[DMatrix<f32>], lr: f32) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        let step = lr * bc2.sqrt() / bc1;
        for k in 0..N_PARAMS {
            if self.weight_decay > 0.0 && (k == W1 || k == W2) {
                let keep = 1.0 - lr * self.weight_decay;
                net.p[k].iter_mut().for_each(|w| *w *= keep);
            }
            let p = net.p[k].as_mut_slice();
            let m = self.m[k].as_mut_slice();
            let v = self.v[k].as_mut_slice();
            for (((p, m), v), &g) in p
                .iter_mut()
                .zip(m.iter_mut())
                .zip(v.iter_mut())
                .zip(g[k].as_slice())
            {
                *m = self.beta1 * *m + (1.0 - self.beta1) * g;
                *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
                *p -= step * *m / (v.sqrt() + self.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite-difference check of the whole backward pass in both BN modes.
    #[test]
    fn gradients_match_finite_differences() {
        for mode in [BnMode::Batch, BnMode::Frozen] {
            let mut rng = Rng::new(3);
            let mut net = Net::new(&mut rng);
            for j in 0..H1 {
                net.run_mean[j] = 0.1 * (j as f32).sin();
                net.run_var[j] = 1.0 + 0.5 * (j as f32).cos();
            }
            net.mode = mode;
            let b = 16;
            let x = randn(&mut rng, b, N_INPUTS, 1.0);
            let t = randn(&mut rng, b, 1, 1.0);
            let loss = |net: &mut Net| -> f64 {
                let mut c = Cache::default();
                let saved = (net.run_mean.clone(), net.run_var.clone());
                net.forward_train(&x, 0.0, &mut Rng::new(0), &mut c);
                net.run_mean = saved.0;
                net.run_var = saved.1;
                c.out
                    .iter()
                    .zip(t.iter())
                    .map(|(&o, &y)| 0.5 * ((o - y) as f64).powi(2))
                    .sum()
            };
            let mut c = Cache::default();
            let saved = (net.run_mean.clone(), net.run_var.clone());
            net.forward_train(&x, 0.0, &mut Rng::new(0), &mut c);
            net.run_mean = saved.0;
            net.run_var = saved.1;
            let dout = &c.out - &t;
            let mut g = net.zeros_like();
            net.backward(&x, &dout, &mut c, &mut g);
            for k in 0..N_PARAMS {
                for idx in [0usize, 5, 17] {
                    if idx >= net.p[k].len() {
                        continue;
                    }
                    let h = 1e-2f32;
                    let orig = net.p[k].as_slice()[idx];
                    net.p[k].as_mut_slice()[idx] = orig + h;
                    let lp = loss(&mut net);
                    net.p[k].as_mut_slice()[idx] = orig - h;
                    let lm = loss(&mut net);
                    net.p[k].as_mut_slice()[idx] = orig;
                    let num = (lp - lm) / (2.0 * h as f64);
                    let ana = g[k].as_slice()[idx] as f64;
                    let tol = 2e-2 * (1.0 + num.abs());
                    assert!(
                        (num - ana).abs() < tol,
                        "{mode:?} param {k}[{idx}]: numeric {num} analytic {ana}"
                    );
                }
            }
        }
    }
}
