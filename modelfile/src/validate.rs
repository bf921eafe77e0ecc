//! Every check a model file must pass before it is folded or served.
//!
//! `build.rs` and `--weights FILE` run the same function, so a file the
//! build would refuse is refused at start-up too, with the same message.
//! Shapes are checked against the dimensions `cm-core` was compiled with, not
//! against the file's own `in`/`out` fields alone, and every number is
//! checked for finiteness. Each error names the place exactly
//! (`classifiers[1].layers[3] (linear).weight[5][17]`), so a bad export can be
//! found without a debugger.
//!
//! The network layout is fixed (the seed's architecture, dropout omitted as
//! it is the identity at inference):
//! `linear(47→64), batchnorm(64), relu, linear(64→32), relu, linear(32→1)`
//! (`N_INPUTS`, `H1` and `H2` of `cm_core::schema`),
//! then `sigmoid` for a classifier and nothing for a regressor.

use std::fmt;

use cm_core::kernels::weight_fits;
use cm_core::schema::{
    CALIB_KNOTS, ENGINEERED_NAMES, FEATURE_NAMES, H1, H2, N_CLASSIFIERS, N_FEATURES, N_INPUTS,
    N_REGRESSORS,
};

use crate::types::{Layer, ModelFile, Network, DRIFT_BINS, FORMAT_NAME, FORMAT_VERSION};

/// Deciles stored per feature in `training_stats`.
pub const N_DECILES: usize = 9;

/// A refused model file: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// Path into the file, e.g. `regressors[0].layers[5] (linear).bias[0]`.
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

impl ModelError {
    pub fn new(at: impl Into<String>, problem: impl Into<String>) -> Self {
        ModelError {
            at: at.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.at, self.problem)
        }
    }
}

impl std::error::Error for ModelError {}

/// What kind of layer is expected at each position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Linear { n_in: usize, n_out: usize },
    Batchnorm { dim: usize },
    Relu,
    Sigmoid,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Linear { .. } => "linear",
            Kind::Batchnorm { .. } => "batchnorm",
            Kind::Relu => "relu",
            Kind::Sigmoid => "sigmoid",
        }
    }
}

/// Output width of every network.
pub const N_OUT: usize = 1;

const BODY: [Kind; 6] = [
    Kind::Linear {
        n_in: N_INPUTS,
        n_out: H1,
    },
    Kind::Batchnorm { dim: H1 },
    Kind::Relu,
    Kind::Linear {
        n_in: H1,
        n_out: H2,
    },
    Kind::Relu,
    Kind::Linear {
        n_in: H2,
        n_out: N_OUT,
    },
];

/// Name of a stored layer.
pub fn layer_name(l: &Layer) -> &'static str {
    match l {
        Layer::Linear { .. } => "linear",
        Layer::Batchnorm { .. } => "batchnorm",
        Layer::Relu => "relu",
        Layer::Sigmoid => "sigmoid",
    }
}

/// Check a whole model file.
pub fn validate(m: &ModelFile) -> Result<(), ModelError> {
    if m.format != FORMAT_NAME {
        return Err(ModelError::new(
            "format",
            format!("unknown format {:?}, expected {FORMAT_NAME:?}", m.format),
        ));
    }
    if m.version != FORMAT_VERSION {
        return Err(ModelError::new(
            "version",
            format!(
                "unknown format version {}, this build reads version {FORMAT_VERSION}",
                m.version
            ),
        ));
    }
    check_len("features", m.features.len(), N_FEATURES)?;
    for (i, (got, want)) in m.features.iter().zip(FEATURE_NAMES.iter()).enumerate() {
        if got != want {
            return Err(ModelError::new(
                format!("features[{i}]"),
                format!("is {got:?}, expected {want:?} (canonical order)"),
            ));
        }
    }
    check_len("inputs", m.inputs.len(), N_INPUTS)?;
    let input_names = FEATURE_NAMES.iter().chain(ENGINEERED_NAMES.iter());
    for (i, (got, want)) in m.inputs.iter().zip(input_names).enumerate() {
        if got != want {
            return Err(ModelError::new(
                format!("inputs[{i}]"),
                format!("is {got:?}, expected {want:?}"),
            ));
        }
    }
    check_vec("fill", &m.fill, N_FEATURES)?;
    check_vec("scaler.mean", &m.scaler.mean, N_INPUTS)?;
    check_vec("scaler.std", &m.scaler.std, N_INPUTS)?;
    check_positive("scaler.std", &m.scaler.std)?;

    check_len("classifiers", m.classifiers.len(), N_CLASSIFIERS)?;
    for (i, n) in m.classifiers.iter().enumerate() {
        check_network(&format!("classifiers[{i}]"), n, true)?;
    }
    check_len("regressors", m.regressors.len(), N_REGRESSORS)?;
    for (i, n) in m.regressors.iter().enumerate() {
        check_network(&format!("regressors[{i}]"), n, false)?;
    }

    check_finite("target.mean", m.target.mean)?;
    check_finite("target.std", m.target.std)?;
    if m.target.std <= 0.0 {
        return Err(ModelError::new(
            "target.std",
            format!("{} is not positive", m.target.std),
        ));
    }

    check_vec("calibration.x", &m.calibration.x, CALIB_KNOTS)?;
    check_vec("calibration.y", &m.calibration.y, CALIB_KNOTS)?;
    let (cx, cy) = (&m.calibration.x, &m.calibration.y);
    if cx.first() != Some(&0.0) || cx.last() != Some(&1.0) {
        return Err(ModelError::new(
            "calibration.x",
            "must start at 0 and end at 1",
        ));
    }
    for i in 1..CALIB_KNOTS {
        if cx[i] <= cx[i - 1] {
            return Err(ModelError::new(
                format!("calibration.x[{i}]"),
                format!("{} does not exceed the previous knot {}", cx[i], cx[i - 1]),
            ));
        }
        if cy[i] < cy[i - 1] {
            return Err(ModelError::new(
                format!("calibration.y[{i}]"),
                format!(
                    "{} is below the previous value {} (must be non-decreasing)",
                    cy[i],
                    cy[i - 1]
                ),
            ));
        }
    }
    for (i, y) in cy.iter().enumerate() {
        if !(0.0..=1.0).contains(y) {
            return Err(ModelError::new(
                format!("calibration.y[{i}]"),
                format!("{y} is outside [0, 1]"),
            ));
        }
    }

    let [lo, hi] = m.time_clamp;
    check_finite("time_clamp[0]", lo)?;
    check_finite("time_clamp[1]", hi)?;
    if !(lo > 0.0 && hi > lo) {
        return Err(ModelError::new(
            "time_clamp",
            format!("[{lo}, {hi}] must satisfy 0 < min < max"),
        ));
    }
    if !(lo as f32 > 0.0 && (hi as f32).is_finite()) {
        return Err(ModelError::new(
            "time_clamp",
            "does not fit f32 with min > 0",
        ));
    }

    check_len("training_stats", m.training_stats.len(), N_FEATURES)?;
    for (i, s) in m.training_stats.iter().enumerate() {
        let at = format!("training_stats[{i}]");
        if s.name != FEATURE_NAMES[i] {
            return Err(ModelError::new(
                format!("{at}.name"),
                format!("is {:?}, expected {:?}", s.name, FEATURE_NAMES[i]),
            ));
        }
        for (f, v) in [
            ("mean", s.mean),
            ("std", s.std),
            ("min", s.min),
            ("max", s.max),
        ] {
            check_finite(&format!("{at}.{f}"), v)?;
        }
        check_vec(&format!("{at}.deciles"), &s.deciles, N_DECILES)?;
        if !s.shares.is_empty() {
            let at = format!("{at}.shares ({})", s.name);
            check_len(&at, s.shares.len(), DRIFT_BINS)?;
            for (k, v) in s.shares.iter().enumerate() {
                if !v.is_finite() || !(0.0..=1.0).contains(v) {
                    return Err(ModelError::new(
                        format!("{at}[{k}]"),
                        format!("is {v}, not a share in [0, 1]"),
                    ));
                }
            }
            let sum: f64 = s.shares.iter().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(ModelError::new(at, format!("sum to {sum}, not 1")));
            }
        }
    }
    Ok(())
}

fn check_network(at: &str, n: &Network, classifier: bool) -> Result<(), ModelError> {
    let mut want: Vec<Kind> = BODY.to_vec();
    if classifier {
        want.push(Kind::Sigmoid);
    }
    for (li, kind) in want.iter().enumerate() {
        let Some(layer) = n.layers.get(li) else {
            return Err(ModelError::new(
                format!("{at}.layers[{li}]"),
                format!(
                    "missing layer: expected {} here ({} layers found, {} expected)",
                    kind.name(),
                    n.layers.len(),
                    want.len()
                ),
            ));
        };
        let lat = format!("{at}.layers[{li}] ({})", layer_name(layer));
        match (kind, layer) {
            (
                Kind::Linear { n_in, n_out },
                Layer::Linear {
                    n_in: fin,
                    n_out: fout,
                    weight,
                    bias,
                },
            ) => {
                check_len(&format!("{lat}.in"), *fin, *n_in)?;
                check_len(&format!("{lat}.out"), *fout, *n_out)?;
                check_len(&format!("{lat}.weight (rows)"), weight.len(), *n_out)?;
                for (r, row) in weight.iter().enumerate() {
                    check_vec(&format!("{lat}.weight[{r}]"), row, *n_in)?;
                }
                check_vec(&format!("{lat}.bias"), bias, *n_out)?;
            }
            (
                Kind::Batchnorm { dim },
                Layer::Batchnorm {
                    dim: fdim,
                    mean,
                    var,
                    gamma,
                    beta,
                    eps,
                },
            ) => {
                check_len(&format!("{lat}.dim"), *fdim, *dim)?;
                check_vec(&format!("{lat}.mean"), mean, *dim)?;
                check_vec(&format!("{lat}.var"), var, *dim)?;
                check_vec(&format!("{lat}.gamma"), gamma, *dim)?;
                check_vec(&format!("{lat}.beta"), beta, *dim)?;
                check_finite(&format!("{lat}.eps"), *eps)?;
                if *eps < 0.0 {
                    return Err(ModelError::new(
                        format!("{lat}.eps"),
                        format!("{eps} is negative"),
                    ));
                }
                for (i, v) in var.iter().enumerate() {
                    if !(*v >= 0.0 && v + eps > 0.0) {
                        return Err(ModelError::new(
                            format!("{lat}.var[{i}]"),
                            format!("{v} (+ eps {eps}) is not positive"),
                        ));
                    }
                }
            }
            (Kind::Relu, Layer::Relu) | (Kind::Sigmoid, Layer::Sigmoid) => {}
            (k, _) => {
                return Err(ModelError::new(
                    format!("{at}.layers[{li}]"),
                    format!("is {}, expected {}", layer_name(layer), k.name()),
                ));
            }
        }
    }
    if n.layers.len() > want.len() {
        let li = want.len();
        return Err(ModelError::new(
            format!("{at}.layers[{li}]"),
            format!(
                "unexpected extra layer {} ({} layers found, {} expected)",
                layer_name(&n.layers[li]),
                n.layers.len(),
                want.len()
            ),
        ));
    }
    Ok(())
}

/// Check that a count matches.
pub fn check_len(at: &str, got: usize, want: usize) -> Result<(), ModelError> {
    if got == want {
        Ok(())
    } else {
        Err(ModelError::new(
            at,
            format!("wrong shape: {got} entries, expected {want}"),
        ))
    }
}

/// Check that a number is finite.
pub fn check_finite(at: &str, v: f64) -> Result<(), ModelError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ModelError::new(at, format!("{v} is not a finite number")))
    }
}

/// Check a vector's length and that every element is finite.
pub fn check_vec(at: &str, v: &[f64], want: usize) -> Result<(), ModelError> {
    check_len(at, v.len(), want)?;
    for (i, x) in v.iter().enumerate() {
        check_finite(&format!("{at}[{i}]"), *x)?;
    }
    Ok(())
}

fn check_positive(at: &str, v: &[f64]) -> Result<(), ModelError> {
    for (i, x) in v.iter().enumerate() {
        if *x <= 0.0 {
            return Err(ModelError::new(
                format!("{at}[{i}]"),
                format!("{x} is not positive"),
            ));
        }
    }
    Ok(())
}

/// Check a folded weight for the storage type (f32, or f16 with `f16-weights`).
pub fn check_storable(at: &str, v: f64) -> Result<(), ModelError> {
    if weight_fits(v) {
        Ok(())
    } else {
        Err(ModelError::new(
            at,
            format!("{v} does not fit the weight storage type"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ModelFile {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../weights/model.json");
        let text = std::fs::read_to_string(path).expect("weights/model.json");
        crate::parse_model_file(&text).expect("parses")
    }

    #[test]
    fn shares_are_optional_but_checked_when_present() {
        let mut m = shipped();
        assert!(m.training_stats.iter().all(|s| s.shares.len() == 10));
        validate(&m).unwrap();
        // An older file without shares.
        let mut old = m.clone();
        for s in &mut old.training_stats {
            s.shares.clear();
        }
        validate(&old).unwrap();
        let name = m.training_stats[3].name.clone();
        let good = m.training_stats[3].shares.clone();
        let bad: [Vec<f64>; 4] = [
            good[..9].to_vec(),
            good.iter().map(|x| x * 1.01).collect(),
            {
                let mut v = good.clone();
                v[0] = f64::NAN;
                v
            },
            {
                let mut v = vec![0.0; 10];
                v[0] = 1.5;
                v[1] = -0.5;
                v
            },
        ];
        for b in bad {
            m.training_stats[3].shares = b.clone();
            let e = validate(&m).expect_err(&format!("{b:?} accepted"));
            assert!(e.at.contains(&name), "{e}");
            assert!(e.at.starts_with("training_stats[3].shares"), "{e}");
        }
    }
}
