//! Runs tests/interop/interop.py: the stock Python `bittensor` Dendrite against
//! this package's binary.
//!
//! Python and a venv with `bittensor==10.5.0` are not something `cargo test`
//! can assume, so the test needs `CM_INTEROP_PYTHON` to name that venv's
//! python (`.ci/run` builds the venv and sets it). Without it the test says so
//! and passes on a developer machine, but fails under `CI=true`: in CI a
//! missing interpreter must never turn the one check that involves a real
//! validator client into a silent pass.

use std::path::Path;
use std::process::Command;

/// Conversations the real Dendrite sends (issue 3 asks for at least 500).
const INTEROP_REQUESTS: u32 = 500;

#[test]
fn python_dendrite_against_the_binary() {
    let python = match std::env::var_os("CM_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => p,
        _ => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "CI is set but CM_INTEROP_PYTHON is not: the interop test cannot be skipped in CI \
                 (.ci/run creates the venv and exports CM_INTEROP_PYTHON)"
            );
            eprintln!(
                "SKIPPED: set CM_INTEROP_PYTHON to a python with bittensor==10.5.0 to run the interop test"
            );
            return;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/interop.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_conversion-miner"))
        .arg("--n")
        .arg(INTEROP_REQUESTS.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?} {script:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and always on failure.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "interop script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!(
            "{INTEROP_REQUESTS}/{INTEROP_REQUESTS} requests succeeded"
        )),
        "interop script passed without reporting {INTEROP_REQUESTS} successes:\n{stdout}"
    );
}
