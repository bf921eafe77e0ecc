//! Reading a model file: text to checked [`ModelFile`] to inference [`Model`].
//!
//! Parsing goes in steps so that errors point somewhere useful: the text to a
//! `serde_json::Value` (syntax errors with line and column), then the
//! `format`/`version` header alone (an unknown version is reported as such,
//! not as the first field it does not understand), then a walk for `null`
//! (what serde_json writes for a NaN) reporting its exact path, then the
//! typed parse through `serde_path_to_error`. Then
//! [`validate`](crate::validate::validate), then folding. `build.rs` and
//! `--weights FILE` both come through here.

use std::path::{Path, PathBuf};

use cm_core::kernels::Mlp;
use cm_core::model::Model;
use cm_core::schema::{CALIB_KNOTS, N_FEATURES};
use sha2::{Digest, Sha256};

use crate::fold::{fold_all, store};
use crate::types::{ModelFile, FORMAT_NAME, FORMAT_VERSION};
use crate::validate::{validate, ModelError};

/// A model file that could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub kind: LoadErrorKind,
}

#[derive(Debug)]
pub enum LoadErrorKind {
    Io(std::io::Error),
    Model(ModelError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            LoadErrorKind::Io(e) => write!(f, "cannot read {}: {e}", self.path.display()),
            LoadErrorKind::Model(e) => write!(f, "{}: {e}", self.path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded model and where it came from.
pub struct Loaded {
    /// The file as trained (for the f64 reference and the training stats).
    pub file: ModelFile,
    /// The folded inference model.
    pub model: Box<Model>,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parse model-file text (shapes and values are checked later, by
/// [`validate`]).
pub fn parse_model_file(text: &str) -> Result<ModelFile, ModelError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        ModelError::new(
            format!("line {} column {}", e.line(), e.column()),
            format!("invalid JSON: {e}"),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(ModelError::new("", "the file is not a JSON object"));
    };
    match obj.get("format").and_then(|v| v.as_str()) {
        Some(FORMAT_NAME) => {}
        Some(other) => {
            return Err(ModelError::new(
                "format",
                format!("unknown format {other:?}, expected {FORMAT_NAME:?}"),
            ))
        }
        None => return Err(ModelError::new("format", "missing or not a string")),
    }
    match obj.get("version") {
        Some(v) if v.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
        other => {
            return Err(ModelError::new(
                "version",
                format!(
                    "unknown format version {}, this build reads version {FORMAT_VERSION}",
                    other.map_or("(missing)".to_string(), |v| v.to_string())
                ),
            ))
        }
    }
    for (key, v) in obj {
        if key != "report" {
            find_null(key, v)?;
        }
    }
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        ModelError::new(path, e.into_inner().to_string())
    })
}

/// serde_json writes a NaN or infinite f64 as `null`; find the first one
/// with its exact path (`classifiers[0].layers[3].weight[5][17]`), which the
/// typed parse cannot give inside the internally tagged layer enum.
fn find_null(path: &str, v: &serde_json::Value) -> Result<(), ModelError> {
    use serde_json::Value;
    match v {
        Value::Null => Err(ModelError::new(
            path,
            "null where a number is expected (a NaN or infinity at export?)",
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| find_null(&format!("{path}[{i}]"), x)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, x)| find_null(&format!("{path}.{k}"), x)),
        _ => Ok(()),
    }
}

/// Validate, fold and round a parsed file into an inference model on the heap.
pub fn build_model(m: &ModelFile) -> Result<Box<Model>, ModelError> {
    validate(m)?;
    let (classifiers, regressors) = fold_all(m)?;
    // About 290 KB: built straight into a Box; only the small arrays below
    // are written after.
    let mut model = Box::new(Model {
        fill: [0.0; N_FEATURES],
        classifiers: [Mlp::ZERO, Mlp::ZERO, Mlp::ZERO],
        regressors: [Mlp::ZERO, Mlp::ZERO],
        calib_x: [0.0; CALIB_KNOTS],
        calib_y: [0.0; CALIB_KNOTS],
        time_min: 0.0,
        time_max: 0.0,
    });
    for (f, out) in classifiers.iter().zip(model.classifiers.iter_mut()) {
        store(f, out);
    }
    for (f, out) in regressors.iter().zip(model.regressors.iter_mut()) {
        store(f, out);
    }
    for (d, s) in model.fill.iter_mut().zip(&m.fill) {
        *d = *s as f32;
    }
    for (d, s) in model.calib_x.iter_mut().zip(&m.calibration.x) {
        *d = *s as f32;
    }
    for (d, s) in model.calib_y.iter_mut().zip(&m.calibration.y) {
        *d = *s as f32;
    }
    model.time_min = m.time_clamp[0] as f32;
    model.time_max = m.time_clamp[1] as f32;
    Ok(model)
}

/// Read, check and fold a model file.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    let path = path.as_ref();
    let err = |kind| LoadError {
        path: path.to_path_buf(),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| err(LoadErrorKind::Io(e)))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        err(LoadErrorKind::Model(ModelError::new(
            "",
            format!("not UTF-8: {e}"),
        )))
    })?;
    let file = parse_model_file(text).map_err(|e| err(LoadErrorKind::Model(e)))?;
    let model = build_model(&file).map_err(|e| err(LoadErrorKind::Model(e)))?;
    Ok(Loaded {
        file,
        model,
        sha256: sha256_hex(&bytes),
    })
}

/// Read, check and fold a model file into an inference model.
pub fn load_model(path: impl AsRef<Path>) -> Result<Box<Model>, LoadError> {
    load(path).map(|l| l.model)
}
