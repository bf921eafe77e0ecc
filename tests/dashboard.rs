//! What an operator sees, checked in a real browser: the per-validator
//! accounting in `/status`, the built-in dashboard at `/` rendered by
//! headless Chromium, and the `eval --report` HTML.
//!
//! The server is the real binary with a validators file naming two
//! validators; they send different numbers of signed requests and a third
//! key, not on the file, is refused. `/status` must count exactly that, and
//! the page, after the browser ran its script and refreshed, must show the
//! same verified total, one table row per caller and charts with data.
//!
//! Chromium is Debian's `chromium` package (`.ci/run` installs it; nothing
//! is downloaded by the test). Without it the browser tests say SKIPPED and
//! pass on a developer machine, but fail under `CI=true`. A page's console
//! is read from Chromium's log (`--enable-logging=stderr`), where every
//! console message, error or not, is an `INFO:CONSOLE` line: our pages log
//! nothing, so any such line (a script error, a refused load, a CSP
//! violation) fails the test. The detector itself is checked on a page that
//! does log an error. Screenshots go to the test's temp dir, and to
//! docs/img/ when `CM_UPDATE_SCREENSHOTS=1`.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MINER_SEED: [u8; 32] = [31; 32];
const BIG_SEED: [u8; 32] = [32; 32];
const SMALL_SEED: [u8; 32] = [33; 32];
const STRANGER_SEED: [u8; 32] = [34; 32];
/// Requests each caller sends: different, so a swapped row shows.
const BIG_CALLS: u64 = 9;
const SMALL_CALLS: u64 = 4;
const STRANGER_CALLS: u64 = 2;
/// Stakes in the validators file.
const BIG_STAKE: f64 = 5000.0;
const SMALL_STAKE: f64 = 120.0;
/// Virtual time the browser runs the page for: the page refreshes every
/// 3 s, so at least two refreshes fit.
const DASHBOARD_BUDGET_MS: u64 = 7000;
const REPORT_BUDGET_MS: u64 = 2000;
/// Most wall time one browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Conversations in the evaluated report (small: the pictures, not the figures, are tested).
const REPORT_N: &str = "20000";
/// The chart containers of the dashboard page (host/assets/index.html).
const DASHBOARD_CHARTS: [&str; 5] = [
    "chart-rate",
    "chart-latency",
    "chart-refusals",
    "chart-confidence",
    "chart-drift",
];
/// The report's charts (train/src/report_html.rs).
const REPORT_CHARTS: [&str; 4] = ["reliability", "confusion", "time-error", "mistakes"];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Debian's chromium, or None (after saying so) outside CI; panics in CI.
fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CM_CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
        Some(PathBuf::from("/usr/bin/chromium-browser")),
    ];
    if let Some(p) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "CI is set but no chromium was found (/usr/bin/chromium or CM_CHROMIUM): \
         the browser tests cannot be skipped in CI (.ci/run installs Debian's chromium)"
    );
    eprintln!("SKIPPED: install Debian's chromium (or set CM_CHROMIUM) to run the browser tests");
    None
}

/// One headless run: `what` is `--dump-dom` or `--screenshot=PATH`.
fn browse(chrome: &Path, url: &str, what: &str, budget_ms: u64, tag: &str) -> Output {
    let profile = temp_dir(&format!("chromium-{tag}"));
    let mut cmd = Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1700",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(what)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chrome.display()));
    let started = Instant::now();
    let pid = child.id();
    // A hung browser must not hang the suite.
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < BROWSER_TIMEOUT {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        true
    });
    let out = child.wait_with_output().expect("chromium output");
    let killed = watchdog.join().unwrap_or(false);
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        !killed,
        "chromium ran longer than {BROWSER_TIMEOUT:?} on {url}"
    );
    eprintln!(
        "chromium {what} {url}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// The page's console messages from Chromium's log.
fn console_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}

/// The text inside the element with `id="id"` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> Option<String> {
    let open = dom.find(&format!("id=\"{id}\""))?;
    let start = open + dom[open..].find('>')? + 1;
    let end = start + dom[start..].find('<')?;
    Some(dom[start..end].trim().to_string())
}

/// An attribute of the element with `id="id"`.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<String> {
    let open = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..open].rfind('<')?;
    let tag_end = open + dom[open..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(v[..v.find('"')?].to_string())
}

/// Copies a screenshot into docs/img/ when asked to.
fn keep_screenshot(png: &Path, name: &str) {
    let bytes = std::fs::read(png).unwrap_or_default();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG of a drawn page ({} bytes)",
        png.display(),
        bytes.len()
    );
    if std::env::var("CM_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let dst = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/img")
            .join(name);
        std::fs::write(&dst, bytes).expect("write docs/img screenshot");
        eprintln!("updated {}", dst.display());
    }
}

fn send(server: &Server, miner: &str, who: &Signer, n: u64) -> Vec<u16> {
    (0..n)
        .map(|_| {
            let call = Call::sample("/ConversionSynapse", miner, server.addr);
            let signed = who.build(&call);
            post(server.addr, call.path, &signed.headers, &signed.body)
                .unwrap_or_else(|e| panic!("POST: {e}\n{}", server.log_text()))
                .status
        })
        .collect()
}

fn row<'a>(status: &'a Value, hotkey: &str) -> &'a Value {
    status["validators"]
        .as_array()
        .and_then(|v| v.iter().find(|r| r["hotkey"] == hotkey))
        .unwrap_or_else(|| panic!("no /status row for {hotkey}: {status:#}"))
}

#[test]
fn status_counts_each_validator_and_the_dashboard_shows_them() {
    let dir = temp_dir("dashboard");
    let miner = write_wallet_hotkey(&dir, "miner", "default", MINER_SEED);
    let (big, small, stranger) = (
        Signer::from_seed(BIG_SEED),
        Signer::from_seed(SMALL_SEED),
        Signer::from_seed(STRANGER_SEED),
    );
    let file = dir.join("validators.txt");
    std::fs::write(
        &file,
        format!("{},{BIG_STAKE}\n{},{SMALL_STAKE}\n", big.ss58, small.ss58),
    )
    .unwrap();
    let server = Server::start(&[
        "--wallet.path",
        dir.to_str().unwrap(),
        "--wallet.name",
        "miner",
        "--wallet.hotkey",
        "default",
        "--validators",
        file.to_str().unwrap(),
        "--axon.ip",
        "127.0.0.1",
    ]);
    let url = format!("http://{}/", server.metrics_addr);
    assert!(
        server
            .log_text()
            .lines()
            .any(|l| l == format!("dashboard {url}")),
        "no 'dashboard {url}' line at start-up:\n{}",
        server.log_text()
    );

    assert!(send(&server, &miner, &big, BIG_CALLS)
        .iter()
        .all(|s| *s == 200));
    assert!(send(&server, &miner, &small, SMALL_CALLS)
        .iter()
        .all(|s| *s == 200));
    assert!(send(&server, &miner, &stranger, STRANGER_CALLS)
        .iter()
        .all(|s| *s == 403));

    let status = get(server.metrics_addr, "/status")
        .expect("GET /status")
        .json();
    let rows = status["validators"].as_array().expect("validators list");
    assert_eq!(rows.len(), 3, "two validators and other: {status:#}");
    let b = row(&status, &big.ss58);
    assert_eq!(
        (b["requests"].as_u64(), b["answered"].as_u64()),
        (Some(BIG_CALLS), Some(BIG_CALLS))
    );
    assert_eq!(b["stake"].as_f64(), Some(BIG_STAKE));
    assert_eq!(b["refused"], serde_json::json!({}));
    assert_eq!(b["protocols"]["axon"].as_u64(), Some(BIG_CALLS));
    assert!(b["p50_ms"].as_f64().unwrap() > 0.0 && b["p99_ms"].as_f64() >= b["p50_ms"].as_f64());
    assert!(b["last_seen_s"].as_f64().unwrap() < 60.0);
    let s = row(&status, &small.ss58);
    assert_eq!(
        (s["requests"].as_u64(), s["answered"].as_u64()),
        (Some(SMALL_CALLS), Some(SMALL_CALLS))
    );
    assert_eq!(s["stake"].as_f64(), Some(SMALL_STAKE));
    let o = row(&status, "other");
    assert_eq!(
        (o["requests"].as_u64(), o["answered"].as_u64()),
        (Some(STRANGER_CALLS), Some(0))
    );
    assert_eq!(
        o["refused"],
        serde_json::json!({"blacklisted": STRANGER_CALLS})
    );
    assert_eq!(o["stake"], Value::Null);
    let verified = status["verified_answered"]
        .as_u64()
        .expect("verified_answered");
    assert_eq!(verified, BIG_CALLS + SMALL_CALLS);
    // /status carries /health, and agrees with /metrics.
    let health = get(server.metrics_addr, "/health").unwrap().json();
    for k in ["model_sha256", "kernel", "weights", "hotkey", "version"] {
        assert_eq!(status[k], health[k], "{k}");
    }
    assert_eq!(status["validators_listed"].as_u64(), Some(2));
    let metrics = get(server.metrics_addr, "/metrics").unwrap().text();
    // The whole page, per-validator rows included, reads back with HELP and
    // TYPE on every family and counters ending in _total.
    let page = cm_host::exposition::check(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    for family in [
        "cm_requests_total",
        "cm_confidence_total",
        "cm_request_seconds",
        "cm_validator_requests_total",
        "cm_validator_confidence_total",
        "cm_validator_request_seconds",
        "cm_verify_batches_total",
        "cm_connections_closed_total",
        "cm_model_reloads_total",
        "cm_build_info",
    ] {
        assert!(
            page.families.iter().any(|(n, _)| n == family),
            "{family} missing from /metrics:\n{metrics}"
        );
    }
    assert_eq!(
        metric_value(&metrics, "cm_success_total "),
        Some(verified as f64)
    );
    assert_eq!(
        metric_value(
            &metrics,
            &format!(
                "cm_validator_requests_total{{validator=\"{}\",protocol=\"axon\"}}",
                big.ss58
            )
        ),
        Some(BIG_CALLS as f64)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "cm_validator_refused_total{validator=\"other\",reason=\"blacklisted\"}"
        ),
        Some(STRANGER_CALLS as f64)
    );

    // The page and its assets come from the miner, with a policy that allows nothing else.
    let page = get(server.metrics_addr, "/").unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .unwrap_or("")
        .contains("default-src 'self'"));

    let Some(chrome) = chromium() else { return };
    // The detector sees a console error where there is one.
    let bad = dir.join("console-error.html");
    std::fs::write(
        &bad,
        "<!doctype html><script>console.error('deliberate')</script>",
    )
    .unwrap();
    let out = browse(
        &chrome,
        &format!("file://{}", bad.display()),
        "--dump-dom",
        500,
        "probe",
    );
    assert!(
        console_lines(&out).iter().any(|l| l.contains("deliberate")),
        "chromium's log shows no console line for a page that logs an error; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = browse(&chrome, &url, "--dump-dom", DASHBOARD_BUDGET_MS, "dom");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        console_lines(&out),
        Vec::<String>::new(),
        "console messages on the dashboard"
    );
    let refreshes: u64 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 2, "page refreshed {refreshes} times:\n{dom}");
    // No traffic since: the page's total is /status's.
    let now = get(server.metrics_addr, "/status").unwrap().json();
    assert_eq!(now["verified_answered"].as_u64(), Some(verified));
    assert_eq!(
        text_of(&dom, "verified-total"),
        Some(verified.to_string()),
        "{dom}"
    );
    for h in [big.ss58.as_str(), small.ss58.as_str(), "other"] {
        assert_eq!(
            dom.matches(&format!("data-hotkey=\"{h}\"")).count(),
            1,
            "table row for {h}"
        );
    }
    assert_eq!(dom.matches("data-hotkey=").count(), 3, "one row per caller");
    for id in DASHBOARD_CHARTS {
        let points: u64 = attr_of(&dom, id, "data-points")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        assert!(
            points > 0,
            "{id} drew nothing: {:?}",
            attr_of(&dom, id, "data-points")
        );
    }
    assert!(
        dom.matches("<canvas").count() >= DASHBOARD_CHARTS.len(),
        "uPlot canvases"
    );
    assert_eq!(
        text_of(&dom, "model-sha").as_deref(),
        status["model_sha256"].as_str()
    );

    let png = dir.join("dashboard.png");
    let out = browse(
        &chrome,
        &url,
        &format!("--screenshot={}", png.display()),
        DASHBOARD_BUDGET_MS,
        "shot",
    );
    assert_eq!(console_lines(&out), Vec::<String>::new());
    keep_screenshot(&png, "dashboard.png");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_report_opens_in_a_browser_with_four_charts() {
    let dir = temp_dir("eval-report");
    let out = Command::new(bin())
        .args(["eval", "--n", REPORT_N, "--report"])
        .arg(&dir)
        .output()
        .expect("run eval");
    assert!(
        out.status.success(),
        "eval --report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html written");
    for id in REPORT_CHARTS {
        assert_eq!(
            html.matches(&format!("data-chart=\"{id}\"")).count(),
            1,
            "{id}"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http")
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().next().unwrap_or("");
    assert!(
        html.contains(summary.split(':').next().unwrap_or("-")),
        "report names the model: {summary}"
    );

    let Some(chrome) = chromium() else { return };
    let url = format!("file://{}", report.display());
    let out = browse(&chrome, &url, "--dump-dom", REPORT_BUDGET_MS, "report");
    assert_eq!(
        console_lines(&out),
        Vec::<String>::new(),
        "console messages on the report"
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for id in REPORT_CHARTS {
        // Parsed as SVG, with marks inside.
        let fig = dom
            .split(&format!("id=\"chart-{id}\""))
            .nth(1)
            .and_then(|s| s.split("</figure>").next())
            .unwrap_or_else(|| panic!("chart {id} not in the rendered DOM"));
        assert!(fig.contains("<svg"), "{id}: no svg");
        let marks = fig.matches("<circle").count()
            + fig.matches("<rect").count()
            + fig.matches("<polyline").count();
        assert!(marks > 3, "{id}: {marks} marks");
    }
    let png = dir.join("eval-report.png");
    let out = browse(
        &chrome,
        &url,
        &format!("--screenshot={}", png.display()),
        REPORT_BUDGET_MS,
        "report-shot",
    );
    assert_eq!(console_lines(&out), Vec::<String>::new());
    keep_screenshot(&png, "eval-report.png");
    let _ = std::fs::remove_dir_all(&dir);
}
