//! `probe --forge-every` against the real binary: forged signatures mixed
//! into honest load are refused as bad signatures, the honest requests
//! around them still pass every check, and the probe's counts agree with
//! each other and with the server's own counters.
//!
//! The probe exits non-zero on any failed request, including a forged one
//! that is not refused with 401 "Signature mismatch", so its exit status is
//! part of what is checked; the counts are then compared with `/metrics`,
//! which the probe does not read.

mod common;

use common::{bin, get, metric_sum, metric_value, Server};
use serde_json::Value;
use std::process::{Command, Stdio};

/// Runs `probe --dev --json` against `server` and returns its exit status,
/// summary JSON line and full output.
fn probe(server: &Server, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(bin())
        .arg("probe")
        .args(["--dev", "--json", "--target", &server.addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run probe");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let j = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON line from probe:\n{text}"));
    (out.status.success(), j, text)
}

/// The value of the metric line that starts with `prefix` (0 when absent:
/// a reason that never occurred has no line).
fn metric(server: &Server, prefix: &str) -> u64 {
    let text = get(server.metrics_addr, "/metrics")
        .expect("GET /metrics")
        .text();
    metric_value(&text, prefix).map_or(0, |v| v as u64)
}

const SUCCESS: &str = "cm_success_total ";
const MISMATCH: &str = "cm_rejections_total{reason=\"signature_mismatch\",code=\"401\"} ";

fn count(j: &Value, key: &str) -> u64 {
    j[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key} in {j}"))
}

#[test]
fn forged_requests_are_refused_and_honest_ones_still_verify() {
    let server = Server::start_dev();
    let (ok0, bad0) = (metric(&server, SUCCESS), metric(&server, MISMATCH));

    // 300 requests from 8 concurrent dendrites, every third one forged:
    // requests 3, 6, ..., 300 of the run, so exactly 100.
    let (exit_ok, j, text) = probe(
        &server,
        &["--n", "300", "--concurrency", "8", "--forge-every", "3"],
    );
    assert!(exit_ok, "probe failed:\n{text}");
    assert_eq!(count(&j, "errors"), 0, "{text}");
    assert_eq!(count(&j, "requests"), 300, "{j}");
    assert_eq!(count(&j, "forged"), 100, "{j}");
    assert_eq!(count(&j, "forged_refused"), 100, "{j}");
    assert_eq!(count(&j, "ok"), 200, "{j}");
    assert!(
        text.contains("forged refused 100 of 100 (1 request in 3 forged)"),
        "{text}"
    );
    // The honest answers were scored as usual.
    assert!(j["mean_reward"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["ok_rps"].as_f64().unwrap() > 0.0, "{j}");

    // The server saw the same split: 200 answered, 100 refused as
    // signature mismatches and nothing else refused.
    assert_eq!(metric(&server, SUCCESS) - ok0, 200);
    assert_eq!(metric(&server, MISMATCH) - bad0, 100);
    // With 1 in 3 forged, batching pauses (host/src/sig.rs); the signatures
    // then checked alone are counted, and are a part of all those checked.
    let text = get(server.metrics_addr, "/metrics").unwrap().text();
    assert!(
        text.contains("\ncm_verify_unbatched_signatures_total "),
        "{text}"
    );
    assert!(
        metric(&server, "cm_verify_unbatched_signatures_total ")
            <= metric(&server, "cm_verify_batched_signatures_total ")
    );
    let refused = metric_sum(
        &get(server.metrics_addr, "/metrics").unwrap().text(),
        "cm_rejections_total",
        "",
    ) as u64;
    assert_eq!(
        refused,
        metric(&server, MISMATCH),
        "only mismatches refused"
    );

    // Every request forged: all refused, none counted as verified, and the
    // run still passes (the refusals are what was expected).
    let (exit_ok, j, text) = probe(
        &server,
        &["--n", "40", "--concurrency", "4", "--forge-every", "1"],
    );
    assert!(exit_ok, "probe failed:\n{text}");
    assert_eq!(
        (
            count(&j, "ok"),
            count(&j, "forged"),
            count(&j, "forged_refused")
        ),
        (0, 40, 40),
        "{j}"
    );
    assert_eq!(metric(&server, MISMATCH) - bad0, 140);

    // Without the flag nothing is forged.
    let (exit_ok, j, text) = probe(&server, &["--n", "50", "--concurrency", "4"]);
    assert!(exit_ok, "probe failed:\n{text}");
    assert_eq!(
        (count(&j, "ok"), count(&j, "forged"), count(&j, "errors")),
        (50, 0, 0),
        "{j}"
    );
    assert_eq!(metric(&server, SUCCESS) - ok0, 250);
}
