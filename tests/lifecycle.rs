//! Operator life-cycle, end to end on the real binary: a model swapped under
//! load (SIGHUP and the file watch, a broken file refused), a shadow model
//! compared on live traffic, the request log's rotation and size cap, a log
//! directory that cannot be written, and the offline `drift` command.
//!
//! Load comes from `conversion-miner probe`, which signs like a dendrite and
//! exits non-zero on any failed request, so "no request dropped during a
//! swap" is its exit status.

mod common;

use common::{bin, get, metric_value, parse_after, parse_listening, temp_dir, TEST_METRICS_ADDR};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a reload or a counter may take to show.
const SETTLE: Duration = Duration::from_secs(10);

/// `serve --dev` with extra flags; killed on drop. Unlike `common::Server`
/// it keeps the child so the test can signal it.
struct Miner {
    child: Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Miner {
    fn start(extra: &[&str]) -> Miner {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(["--dev", "--axon.port", "0"])
            .args(["--metrics.addr", TEST_METRICS_ADDR])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (Arc::clone(&log), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if let Some(a) = parse_listening(&line) {
                        let _ = tx.send((false, a));
                    }
                    if let Some(a) = parse_after(&line, "metrics on ") {
                        let _ = tx.send((true, a));
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut addr = None;
        let mut metrics_addr = None;
        while addr.is_none() || metrics_addr.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((false, a)) => addr = Some(a),
                Ok((true, a)) => metrics_addr = Some(a),
                Err(_) => panic!("no listening lines: {:?}", log.lock().unwrap()),
            }
        }
        let (addr, metrics_addr) = (addr.unwrap(), metrics_addr.unwrap());
        Miner {
            child,
            addr,
            metrics_addr,
            log,
        }
    }

    fn health(&self) -> Value {
        get(self.addr, "/health").expect("GET /health").json()
    }

    fn metrics(&self) -> String {
        get(self.metrics_addr, "/metrics")
            .expect("GET /metrics")
            .text()
    }

    fn metric(&self, line_prefix: &str) -> f64 {
        let text = self.metrics();
        metric_value(&text, line_prefix)
            .unwrap_or_else(|| panic!("no metric {line_prefix} in\n{text}"))
    }

    fn hup(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(st.success());
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until `f` holds, or panics with `what` and the server log.
    fn wait_for(&self, what: &str, mut f: impl FnMut(&Miner) -> bool) {
        let deadline = Instant::now() + SETTLE;
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn probe_cmd(addr: SocketAddr, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("probe")
        .args(["--dev", "--json", "--target", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The probe's JSON summary line; asserts it exited 0 with zero errors.
fn probe_ok(out: Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("probe json line");
    assert_eq!(j["errors"], 0, "{j}");
    j
}

fn source_model() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/model.json");
    serde_json::from_slice(&std::fs::read(p).expect("read weights/model.json")).unwrap()
}

fn sha256_of(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `v` next to `dest` and renames it over `dest` (how an operator
/// should install a model); returns the new file's SHA-256.
fn install(v: &Value, dest: &Path) -> String {
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(v).unwrap()).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
    sha256_of(dest)
}

/// A retrained-looking variant: same weights, different report, so a
/// different file and SHA.
fn variant(tag: &str) -> Value {
    let mut m = source_model();
    m["report"]["lifecycle_test_variant"] = Value::from(tag);
    m
}

fn copy_model(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/model.json"),
        &p,
    )
    .unwrap();
    p
}

#[test]
fn model_swaps_under_load_without_a_failed_request() {
    let dir = temp_dir("lifecycle-swap");
    let weights = copy_model(&dir, "model.json");
    let sha0 = sha256_of(&weights);
    let w = weights.to_str().unwrap();
    let m = Miner::start(&["--weights", w, "--weights.poll", "0.2"]);
    assert_eq!(m.health()["model"]["sha256"], sha0.as_str());
    assert_eq!(m.health()["model"]["source"], w);
    // The build's weight storage, as the core defines it.
    assert_eq!(m.health()["weights"], cm_core::kernels::W_NAME);

    let load = probe_cmd(
        m.addr,
        &[
            "--duration",
            "6",
            "--concurrency",
            "4",
            "--conversations",
            "500",
        ],
    )
    .spawn()
    .expect("spawn probe");
    std::thread::sleep(Duration::from_millis(700));

    // 1. A valid new file and SIGHUP: the served SHA follows.
    let sha1 = install(&variant("one"), &weights);
    assert_ne!(sha1, sha0);
    m.hup();
    m.wait_for("the SIGHUP reload", |m| {
        m.health()["model"]["sha256"] == sha1.as_str()
    });

    // 2. A broken file and SIGHUP: refused, the SHA stays, the refusal is counted.
    let tmp = weights.with_extension("tmp");
    std::fs::write(
        &tmp,
        b"{\"format\": \"conversion-miner-model\", \"version\": 1, ",
    )
    .unwrap();
    std::fs::rename(&tmp, &weights).unwrap();
    m.hup();
    m.wait_for("the rejected reload", |m| {
        m.health()["model"]["reloads_rejected"].as_u64() >= Some(1)
    });
    assert_eq!(m.health()["model"]["sha256"], sha1.as_str());

    // 3. A valid file and no signal: the file watch picks it up.
    let sha2 = install(&variant("two"), &weights);
    m.wait_for("the file-watch reload", |m| {
        m.health()["model"]["sha256"] == sha2.as_str()
    });

    let summary = probe_ok(load.wait_with_output().unwrap());
    assert!(summary["requests"].as_u64().unwrap() > 100, "{summary}");
    assert!(m.metric("cm_model_reloads_total{result=\"ok\"}") >= 2.0);
    assert!(m.metric("cm_model_reloads_total{result=\"rejected\"}") >= 1.0);
    assert!(
        m.log_text().contains("model reload rejected"),
        "no warning logged:\n{}",
        m.log_text()
    );
}

#[test]
fn a_broken_weights_file_is_refused_at_start() {
    let dir = temp_dir("lifecycle-broken");
    let p = dir.join("broken.json");
    std::fs::write(&p, b"{}").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--dev", "--axon.port", "0", "--weights"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--weights"));
}

/// Runs 300 probe requests against a miner shadowing `shadow`; returns
/// (/health shadow block, positives the served model predicted).
fn shadow_run(shadow: &Path) -> (Value, f64) {
    let m = Miner::start(&["--shadow", shadow.to_str().unwrap()]);
    probe_ok(
        probe_cmd(m.addr, &["--n", "300", "--concurrency", "4", "--seed", "7"])
            .output()
            .unwrap(),
    );
    let h = m.health();
    assert_eq!(h["shadow"]["requests"], 300, "{h}");
    (h["shadow"].clone(), m.metric("cm_predicted_positive_total"))
}

#[test]
fn shadow_model_reports_agreement_and_never_changes_answers() {
    let dir = temp_dir("lifecycle-shadow");
    let same = copy_model(&dir, "same.json");
    let (s, positives_same) = shadow_run(&same);
    assert_eq!(s["agreement"], 1.0, "{s}");
    assert_eq!(s["mean_abs_confidence_diff"], 0.0, "{s}");
    assert_eq!(s["sha256"], sha256_of(&same).as_str());

    // A candidate whose classifiers lean towards "converted".
    let mut m = source_model();
    for c in m["classifiers"].as_array_mut().unwrap() {
        let last = c["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .rev()
            .find(|l| l["type"] == "linear")
            .unwrap();
        let b = last["bias"][0].as_f64().unwrap();
        last["bias"][0] = Value::from(b + 50.0);
    }
    let shifted = dir.join("shifted.json");
    std::fs::write(&shifted, serde_json::to_vec(&m).unwrap()).unwrap();
    let (s, positives_shifted) = shadow_run(&shifted);
    let agreement = s["agreement"].as_f64().unwrap();
    assert!(agreement < 1.0, "{s}");
    assert!(s["mean_abs_confidence_diff"].as_f64().unwrap() > 0.0, "{s}");
    // The served answers are the same whichever shadow runs.
    assert_eq!(positives_same, positives_shifted);
}

/// `conversion-miner drift --json DIR`, which must succeed, as JSON.
fn offline_drift(dir: &Path) -> Value {
    let out = Command::new(bin())
        .args(["drift", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read_log_lines(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        for l in std::fs::read_to_string(&p).unwrap().lines() {
            out.push(
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", p.display())),
            );
        }
    }
    out
}

#[test]
fn request_log_rotates_caps_and_feeds_offline_drift() {
    let dir = temp_dir("lifecycle-log");
    let logdir = dir.join("requests");
    // ~10 KB files, ~40 KB in all: 400 lines of ~600 bytes rotate many times.
    let m = Miner::start(&[
        "--log-requests",
        logdir.to_str().unwrap(),
        "--log-requests.max-file-mb",
        "0.01",
        "--log-requests.max-total-mb",
        "0.04",
    ]);
    probe_ok(
        probe_cmd(m.addr, &["--n", "400", "--concurrency", "4"])
            .output()
            .unwrap(),
    );
    m.wait_for("400 lines written", |m| {
        m.metric("cm_request_log_written_total") == 400.0
    });
    assert!(m.metric("cm_request_log_rotations_total") >= 10.0);
    assert_eq!(
        m.metric("cm_request_log_dropped_total{reason=\"write\"}"),
        0.0
    );
    let mut total = 0;
    let mut n_files = 0;
    for e in std::fs::read_dir(&logdir).unwrap() {
        let len = e.unwrap().metadata().unwrap().len();
        assert!(
            len <= 10 * 1024 + 1024,
            "file of {len} bytes over the file cap"
        );
        total += len;
        n_files += 1;
    }
    // The cap is checked when a file is started: old files are deleted down to it.
    assert!(
        total <= 40 * 1024 + 10 * 1024 + 1024,
        "{total} bytes over the total cap"
    );
    assert!(n_files >= 3, "{n_files} files");
    let lines = read_log_lines(&logdir);
    assert!(
        !lines.is_empty() && lines.len() < 400,
        "{} lines kept",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l["features"].as_array().unwrap().len(), 40, "{l}");
        assert!(l["prediction"]["conversion_happened"].is_u64(), "{l}");
        assert_eq!(l["model_sha256"], m.health()["model_sha256"]);
    }

    // Offline drift reads the same files.
    let j = offline_drift(&logdir);
    assert_eq!(j["requests"], lines.len() as u64, "{j}");
    assert_eq!(j["unreadable_lines"], 0);
    assert_eq!(j["features"].as_array().unwrap().len(), 40);
    // The live monitor exposes one PSI per feature.
    let metrics = m.metrics();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("cm_feature_psi{"))
            .count(),
        40
    );
}

#[test]
fn offline_drift_matches_the_live_monitor_and_flags_a_shift() {
    let dir = temp_dir("lifecycle-drift");
    let logdir = dir.join("requests");
    let m = Miner::start(&["--log-requests", logdir.to_str().unwrap()]);
    probe_ok(
        probe_cmd(m.addr, &["--n", "300", "--concurrency", "2"])
            .output()
            .unwrap(),
    );
    m.wait_for("300 lines written", |m| {
        m.metric("cm_request_log_written_total") == 300.0
    });
    let j = offline_drift(&logdir);
    assert_eq!(j["requests"], 300);
    let metrics = m.metrics();
    for f in j["features"].as_array().unwrap() {
        let name = f["feature"].as_str().unwrap();
        let live: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cm_feature_psi{{feature=\"{name}\"}} ")))
            .unwrap_or_else(|| panic!("no live PSI for {name}"))
            .parse()
            .unwrap();
        let off = f["psi"].as_f64().unwrap();
        assert!(
            (live - off).abs() < 1e-9,
            "{name}: live {live} offline {off}"
        );
    }

    // Shift one feature of every logged line far above its training range:
    // drift must flag it, and only the shifted feature changes.
    let mut shifted = String::new();
    for l in read_log_lines(&logdir) {
        let mut l = l;
        let v = l["features"][0].as_f64().unwrap_or(0.0);
        l["features"][0] = Value::from(v + 1.0e6);
        shifted.push_str(&l.to_string());
        shifted.push('\n');
    }
    let shifted_dir = dir.join("shifted");
    std::fs::create_dir_all(&shifted_dir).unwrap();
    std::fs::write(
        shifted_dir.join("requests-00000000000000000001-000001.jsonl"),
        shifted,
    )
    .unwrap();
    let s = offline_drift(&shifted_dir);
    let f0 = &s["features"][0];
    assert!(f0["psi"].as_f64().unwrap() > 0.2, "{f0}");
    assert_eq!(f0["out_of_range"], 1.0, "{f0}");
    assert_eq!(s["features"][1]["psi"], j["features"][1]["psi"]);
}

#[test]
fn an_unwritable_log_dir_drops_lines_not_requests() {
    let dir = temp_dir("lifecycle-nolog");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let logdir = file.join("requests");
    let m = Miner::start(&["--log-requests", logdir.to_str().unwrap()]);
    probe_ok(
        probe_cmd(m.addr, &["--n", "50", "--concurrency", "2"])
            .output()
            .unwrap(),
    );
    m.wait_for("50 dropped lines", |m| {
        m.metric("cm_request_log_dropped_total{reason=\"write\"}") == 50.0
    });
    assert_eq!(m.metric("cm_request_log_written_total"), 0.0);
    assert!(m.metric("cm_success_total") >= 50.0);
}
