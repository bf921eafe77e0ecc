//! Interop with the real Python `bittensor` packages a validator may run:
//! the 9.4.0 and 10.5.0 Dendrites (tests/interop/interop.py) and bittensor
//! 11.3.0's `http_auth` signer for btauth/1 (tests/interop/btauth.py), each
//! against this package's binary; and, in the 9.4.0 and 10.5.0 venvs, the
//! meaning of lax feature values as their pydantic reads them
//! (tests/interop/pydantic_meaning.py against `predict`).
//!
//! The three versions cannot share a venv (9.4.0 needs bittensor-wallet 3.0.9,
//! which cannot read the wallets 4.x writes, and 11.x has no Dendrite), so each
//! test takes its interpreter from its own variable: `CM_INTEROP_PYTHON_94`,
//! `CM_INTEROP_PYTHON_105` (or the older `CM_INTEROP_PYTHON`) and
//! `CM_INTEROP_PYTHON_113`. `.ci/run` builds the venvs and sets all three.
//! A test whose interpreter is not given cannot run, and libtest has no
//! runtime skip, so this file uses its own harness (libtest-mimic): such a
//! test is reported as *ignored*, not passed. Under `CI=true` a missing
//! interpreter is a failure instead: in CI the checks that involve a real
//! validator client must never be silently absent.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::Path;
use std::process::Command;

/// Requests the 10.5.0 dendrite and the btauth/1 client send in their main
/// run (issues 3 and 13 ask for at least 500).
const INTEROP_REQUESTS: u32 = 500;
/// Requests the 9.4.0 dendrite sends in its main run. Fewer, to keep CI
/// short: with its pinned pydantic 2.11.4, a 9.4.0 dendrite rebuilds the
/// synapse's JSON schema for every request (`Synapse.get_required_fields`),
/// about 135 ms of client CPU each (cProfile, on this shared 2-core machine
/// at load 13), where the miner's own work is a fraction of a millisecond.
const INTEROP_REQUESTS_94: u32 = 100;
/// What both scripts print, after `N/N`, only when the main run fully succeeded.
const SUCCESS_LINE: &str = "requests succeeded and matched `predict`";
/// Bodies pydantic_meaning.py checks: its hand-picked ones (341), the
/// rest drawn at random.
const MEANING_BODIES: u32 = 3000;
/// What pydantic_meaning.py prints, after `N/N`, when every body agreed.
const MEANING_LINE: &str = "bodies read as pydantic reads them";
/// The most the mean `response_time` a 9.4.0 dendrite sees may be, in ms
/// (issue 13: our own work, which takes microseconds).
const MAX_MEAN_RESPONSE_TIME_MS: &str = "1.0";

/// One interop run: which script, with which interpreter, expecting what.
struct Client {
    name: &'static str,
    vars: &'static [&'static str],
    version: &'static str,
    requests: u32,
    script: &'static str,
    extra: &'static [&'static str],
    /// What the script prints after `N/N` on success.
    success: &'static str,
}

const CLIENTS: [Client; 5] = [
    Client {
        name: "dendrite_9_4_0_against_the_binary",
        vars: &["CM_INTEROP_PYTHON_94"],
        version: "9.4.0",
        requests: INTEROP_REQUESTS_94,
        script: "tests/interop/interop.py",
        // The subnet's live validators run 9.4.0 on aiohttp 3.10, which
        // sends headers and body apart; the miner must not count that gap.
        extra: &["--max-mean-response-time-ms", MAX_MEAN_RESPONSE_TIME_MS],
        success: SUCCESS_LINE,
    },
    Client {
        name: "dendrite_10_5_0_against_the_binary",
        vars: &["CM_INTEROP_PYTHON_105", "CM_INTEROP_PYTHON"],
        version: "10.5.0",
        requests: INTEROP_REQUESTS,
        script: "tests/interop/interop.py",
        extra: &[],
        success: SUCCESS_LINE,
    },
    Client {
        name: "btauth_11_3_0_against_the_binary",
        vars: &["CM_INTEROP_PYTHON_113"],
        version: "11.3.0",
        requests: INTEROP_REQUESTS,
        script: "tests/interop/btauth.py",
        extra: &[],
        success: SUCCESS_LINE,
    },
    // The live validators' pydantic (2.11.4 with bittensor 9.4.0) and the
    // newer one (2.14 with 10.5.0).
    Client {
        name: "pydantic_meaning_9_4_0_against_predict",
        vars: &["CM_INTEROP_PYTHON_94"],
        version: "9.4.0",
        requests: MEANING_BODIES,
        script: "tests/interop/pydantic_meaning.py",
        extra: &[],
        success: MEANING_LINE,
    },
    Client {
        name: "pydantic_meaning_10_5_0_against_predict",
        vars: &["CM_INTEROP_PYTHON_105", "CM_INTEROP_PYTHON"],
        version: "10.5.0",
        requests: MEANING_BODIES,
        script: "tests/interop/pydantic_meaning.py",
        extra: &[],
        success: MEANING_LINE,
    },
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn interpreter(c: &Client) -> Option<std::ffi::OsString> {
    c.vars
        .iter()
        .filter_map(std::env::var_os)
        .find(|p| !p.is_empty())
}

fn run(c: &Client) -> Result<(), Failed> {
    let python = interpreter(c).ok_or_else(|| {
        format!(
            "{} is not set: it must name a python with bittensor=={} (.ci/run builds the venv and exports it); \
             in CI this test may not be skipped",
            c.vars[0], c.version
        )
    })?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(c.script);
    let out = Command::new(&python)
        .arg(&script)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_conversion-miner"))
        .arg("--n")
        .arg(c.requests.to_string())
        .arg("--expect-version")
        .arg(c.version)
        .args(c.extra)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .map_err(|e| format!("cannot run {python:?} {script:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and always on failure.
    println!("{stdout}");
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            c.script, out.status
        )
        .into());
    }
    let want = format!("{n}/{n} {}", c.success, n = c.requests);
    if !stdout.contains(&want) {
        return Err(format!("{} passed without reporting '{want}':\n{stdout}", c.script).into());
    }
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // One client at a time unless told otherwise: each run is a Python
    // process and a miner, and on a 2-core machine three at once starve the
    // 9.4.0 client between its header and body writes for seconds (seen here
    // at load 17: two requests outlived the miner's 5 s body timeout).
    args.test_threads.get_or_insert(1);
    let ci = in_ci();
    let trials = CLIENTS
        .iter()
        .map(|c| {
            let missing = interpreter(c).is_none();
            if missing && !ci {
                eprintln!(
                    "interop: {} ignored: set {} to a python with bittensor=={} to run it",
                    c.name, c.vars[0], c.version
                );
            }
            Trial::test(c.name, move || run(c)).with_ignored_flag(missing && !ci)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
