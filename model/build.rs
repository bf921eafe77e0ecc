//! Compiles `weights/model.json` into the binary.
//!
//! Reads the file through `cm-modelfile` (the one definition of the format),
//! validates every shape and value, folds the scaler, BatchNorm and target
//! scale in f64, and writes `OUT_DIR/model.rs`: a `static` model plus the
//! source's path and SHA-256, and `OUT_DIR/training_stats.json`, the one
//! part of the file kept as text (the drift reference). A bad file stops the build with `cargo::error=`
//! naming the place (`classifiers[0].layers[3] (linear).weight[5][17]: ...`).

use std::path::PathBuf;

/// The weights file, as named in the generated source and in errors
/// (relative to the workspace root, where it lives).
const WEIGHTS: &str = "weights/model.json";
/// The same file relative to this crate.
const WEIGHTS_FROM_CRATE: &str = "../weights/model.json";

fn main() {
    println!("cargo::rerun-if-changed={WEIGHTS_FROM_CRATE}");
    println!("cargo::rerun-if-changed=build.rs");
    if let Err(msg) = run() {
        // One `cargo::error=` per line: cargo shows each as an error.
        for line in msg.lines() {
            println!("cargo::error={line}");
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let out = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let path = PathBuf::from(dir).join(WEIGHTS_FROM_CRATE);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let o = cm_modelfile::codegen::build_outputs(&bytes, WEIGHTS)
        .map_err(|e| format!("{WEIGHTS}: {e}"))?;
    let out = PathBuf::from(out);
    for (name, text) in [
        ("model.rs", o.model_rs),
        ("training_stats.json", o.training_stats_json),
    ] {
        let dest = out.join(name);
        std::fs::write(&dest, text).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    Ok(())
}
