//! HTTP round trips on loopback against the real server process.
//!
//! The bench starts the binary cargo built next to it
//! (`conversion-miner serve --dev --axon.port 0 --log-level error`: the
//! quick-start command on a port the OS picks, without the drift monitor's
//! warn lines in the bench output; no per-request line is logged at the
//! default level either) and talks to it over 127.0.0.1 with hyper's pooled
//! client on one keep-alive connection, as a dendrite's aiohttp session
//! does. A separate process rather than cm-host's server in-process: it is
//! exactly what an operator runs (its own runtime, worker threads and
//! allocator), and the bench depends only on the command line, not on the
//! server's internal state struct.
//!
//! Ids (`Elements(1)` = one request):
//! - `roundtrip/health`: `GET /health`, the floor of hyper + loopback + one
//!   small JSON answer.
//! - `roundtrip/ping`: a signed `/Synapse` ping: the same plus the gate
//!   (headers, nonce, sr25519 verification) and the echo of the synapse.
//! - `roundtrip/conversion`: a signed `ConversionSynapse` around the probe's
//!   conversations (`eval --seed 1`): the same plus parsing and the model.
//!
//! The requests are the probe's: `cm_probe::build_request` makes the
//! conversion request, and the ping is that request with the
//! ConversionSynapse's own fields taken out. The clock runs from handing the
//! request to the client until the whole answer body is in; signing and
//! building the request (the validator's work) and checking the answer
//! happen outside it. Every request carries a fresh nonce, and every answer
//! is checked (status 200, the axon status headers and JSON, the echo of
//! every request field, the subnet's output rules through the probe's
//! `check_answer`, and the prediction equal to the embedded model's on the
//! same kernel), so an error stops the bench instead of being timed.
//!
//! Wall-clock time (criterion's `WallTime`), not the thread CPU clock of the
//! other benches: a round trip spends most of its time in another process,
//! which the bench thread's CPU clock does not see. On the shared 2-core
//! development machine the figures therefore include waiting for a core.
//! For the share that is the server's own work, each bench also prints the
//! server process's CPU time per request (`/proc/<pid>/stat`, warm-up
//! included), which the load of other jobs inflates much less.
//!
//!     cargo bench --bench roundtrip
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use cm_core::kernels::Kernel;
use cm_host::synapse::f32_to_json;
use cm_host::wallet::Hotkey;
use cm_probe::{build_request, check_answer, Plan, Sent};

/// Conversations cycled through (the probe's set for `--seed 1`).
const N_CONVERSATIONS: usize = 256;
const PROBE_SEED: u64 = 1;
/// How long the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// One request's limit; anything slower is a failure, not a sample.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The `timeout` the requests carry, as a dendrite's default.
const SYNAPSE_TIMEOUT_S: f64 = 12.0;
/// The ping synapse's name and path.
const PING: &str = "Synapse";
/// The fields a `ConversionSynapse` adds to the base synapse, and the input
/// object header of its `features` field: what the ping leaves out.
const CONVERSION_FIELDS: [&str; 5] = [
    "features",
    "prediction",
    "confidence",
    "response_time",
    "miner_uid",
];
const FEATURES_INPUT_OBJ_HEADER: &str = "bt_header_input_obj_features";
/// Idle connections are dropped by the client before the server's 5 s
/// keep-alive limit closes them, so no request races a closing socket.
const POOL_IDLE: Duration = Duration::from_secs(2);
/// Printed by `serve` on stdout (host/README.md, start-up output).
const LISTEN_MARKER: &str = "listening on ";
const HOTKEY_MARKER: &str = "miner hotkey ";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The server process; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddrV4,
    hotkey: String,
}

impl Server {
    fn start() -> Server {
        let bin = env!("CARGO_BIN_EXE_conversion-miner");
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--dev", "--axon.port", "0", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Flags also come from CM_* variables; the bench's environment must
        // not change what is measured.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CM_") {
                cmd.env_remove(k);
            }
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and
            // only makes one async-signal-safe system call (prctl); it
            // allocates nothing and touches no lock.
            unsafe {
                cmd.pre_exec(|| {
                    // A killed bench must not leave a server running.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading so the server never writes into a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut addr, mut hotkey) = (None, None);
        while addr.is_none() || hotkey.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    panic!("server printed no address within {START_TIMEOUT:?}: {e}");
                }
            };
            if let Some(a) = line.strip_prefix(LISTEN_MARKER) {
                addr = Some(a.trim().parse::<SocketAddrV4>().expect("IPv4 address"));
            } else if let Some(h) = line.strip_prefix(HOTKEY_MARKER) {
                hotkey = Some(h.trim().to_string());
            }
        }
        Server {
            child,
            addr: addr.expect("address"),
            hotkey: hotkey.expect("hotkey"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: `pid` is our child, not yet waited for, so the id
            // cannot have been reused by another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) the server process has used so far, from
/// `/proc/<pid>/stat`; None where there is no procfs.
fn server_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// Fewest requests for which the per-request CPU figure is printed: the
/// clock behind it ticks every 10 ms (a `cargo test` pass sends one).
const MIN_REQUESTS_FOR_CPU: u64 = 1000;

/// Prints the server's CPU time per request over one bench (warm-up
/// included), next to criterion's wall-clock figure.
fn report_cpu(id: &str, pid: u32, cpu0: Option<f64>, requests: u64) {
    if let (Some(a), Some(b)) = (cpu0, server_cpu_s(pid)) {
        if requests >= MIN_REQUESTS_FOR_CPU {
            eprintln!(
                "{id}: server process CPU {:.1} us per request ({requests} requests, {:.2} s CPU)",
                (b - a) * 1e6 / requests as f64,
                b - a
            );
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One simulated dendrite: the probe's plan (our key, the miner, the
/// conversations), a uuid and increasing nonces.
struct Dendrite {
    plan: Plan,
    uuid: String,
    last_nonce: u64,
    target: SocketAddrV4,
}

impl Dendrite {
    fn next_nonce(&mut self) -> u64 {
        self.last_nonce = now_ns().max(self.last_nonce + 1);
        self.last_nonce
    }

    /// The probe's signed `ConversionSynapse` request for conversation
    /// `idx`, with its nonce and signature for checking the answer.
    fn conversion(&mut self, idx: usize) -> (Request<Full<Bytes>>, u64, String) {
        let nonce = self.next_nonce();
        let (req, _, signature) =
            build_request(&self.plan, idx, nonce, &self.uuid).expect("probe request");
        (req, nonce, signature)
    }

    /// A signed ping: the probe's request with the ConversionSynapse fields
    /// and their header taken out, renamed and sent to `/Synapse`. The
    /// signature covers the nonce, both hotkeys, the uuid and the constant
    /// body hash, none of which change. Returns the body as sent.
    fn ping(&mut self) -> (Request<Full<Bytes>>, Value) {
        let nonce = self.next_nonce();
        let (req, body, _) =
            build_request(&self.plan, 0, nonce, &self.uuid).expect("probe request");
        let (mut parts, _) = req.into_parts();
        let mut body: Value = serde_json::from_slice(&body).expect("probe body is JSON");
        let obj = body.as_object_mut().expect("probe body is an object");
        for k in CONVERSION_FIELDS {
            obj.remove(k);
        }
        obj.insert("name".into(), PING.into());
        parts.uri = format!("http://{}/{PING}", self.target)
            .parse()
            .expect("ping URI");
        parts.headers.remove(FEATURES_INPUT_OBJ_HEADER);
        parts.headers.insert("name", HeaderValue::from_static(PING));
        let bytes = serde_json::to_vec(&body).expect("json");
        (
            Request::from_parts(parts, Full::new(Bytes::from(bytes))),
            body,
        )
    }
}

/// Sends one request; returns the status, headers, whole body and the time
/// from send to the last body byte.
async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Bytes, Duration) {
    let t0 = Instant::now();
    let fut = async {
        let resp = client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts.status, parts.headers, body))
    };
    let (status, headers, body) = match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Err(_) => panic!("no answer within {REQUEST_TIMEOUT:?}"),
        Ok(Err(e)) => panic!("request failed: {e}"),
        Ok(Ok(x)) => x,
    };
    (status, headers, body, t0.elapsed())
}

/// A 200 with the axon's success headers and a JSON object body.
fn success_json(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    if status != StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if h("bt_header_axon_status_code") != Some("200") {
        return Err("bt_header_axon_status_code is not 200".into());
    }
    if !h("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(format!("content-type {:?}", h("content-type")));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if !v.is_object() {
        return Err("body is not a JSON object".into());
    }
    Ok(v)
}

/// The ping's checks: the echo of every request field and the axon block's
/// success status with our address.
fn check_echo(sent: &Value, got: &Value) -> Result<(), String> {
    for (k, v) in sent.as_object().ok_or("request is not an object")? {
        if k == "axon" {
            continue;
        }
        if got.get(k) != Some(v) {
            return Err(format!("field '{k}' not echoed intact"));
        }
    }
    let ax = got.get("axon").ok_or("no axon object")?;
    if ax.get("status_code").and_then(Value::as_u64) != Some(200)
        || ax.get("status_message").and_then(Value::as_str) != Some("Success")
    {
        return Err("axon status is not 200/Success".into());
    }
    for k in ["ip", "port", "hotkey"] {
        if ax.get(k) != sent["axon"].get(k) {
            return Err(format!("axon.{k} not echoed"));
        }
    }
    Ok(())
}

/// What the embedded model answers on the server's kernel, as the server
/// writes it into the JSON.
#[derive(Clone, Copy, Debug)]
struct Expected {
    class: u8,
    time: f64,
    confidence: f64,
}

/// The class, time and confidence [`check_answer`] read against the
/// embedded model's answer (the server writes `f32`s, so equal up to
/// printing them).
fn check_model(got: (u8, f64, f64), want: &Expected) -> Result<(), String> {
    let (class, t, c) = got;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(1.0);
    if class != want.class || !close(t, want.time) || !close(c, want.confidence) {
        return Err(format!(
            "answer ({class}, {t}, {c}) differs from the embedded model's {want:?}"
        ));
    }
    Ok(())
}

/// Reads /health once: the served model and kernel must be the ones the
/// expected answers are computed with.
fn health_of(rt: &tokio::runtime::Runtime, client: &HttpClient, server: &Server) -> Value {
    let req = Request::get(format!("http://{}/health", server.addr))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, body, _) = rt.block_on(send(client, req));
    assert_eq!(status, StatusCode::OK, "/health");
    assert!(headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json")));
    serde_json::from_slice(&body).expect("/health is JSON")
}

fn bench_roundtrip(c: &mut Criterion) {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client: HttpClient = {
        let _guard = rt.enter();
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(1)
            .build(conn)
    };

    let health = health_of(&rt, &client, &server);
    assert_eq!(health["hotkey"], server.hotkey.as_str(), "/health hotkey");
    assert_eq!(
        health["model_sha256"],
        conversion_miner::embedded::SOURCE_SHA256,
        "the server must answer with the embedded model"
    );
    let kernel_name = health["kernel"].as_str().expect("/health kernel");
    let kernel = Kernel::from_name(kernel_name, cm_host::kernel::detect()).expect("kernel");
    eprintln!(
        "server {} (pid {}), kernel {kernel_name}, hotkey {}",
        server.addr,
        server.child.id(),
        server.hotkey
    );

    // The probe's conversations, as `probe --seed 1` plans them.
    let plan = Plan::new(
        server.addr,
        server.hotkey.clone(),
        Hotkey::generate(),
        SYNAPSE_TIMEOUT_S,
        cm_train::eval::test_set(PROBE_SEED, N_CONVERSATIONS),
        &format!("probe-{PROBE_SEED}"),
    )
    .expect("probe plan");
    let mut dendrite = Dendrite {
        plan,
        uuid: "7a3c1e52-ca55-11f1-8000-02fc00000001".into(),
        last_nonce: 0,
        target: server.addr,
    };
    // What the model answers on each, parsed from the request body as the
    // server parses it.
    let model = conversion_miner::embedded::model();
    let expected: Vec<Expected> = (0..N_CONVERSATIONS)
        .map(|i| {
            let nonce = dendrite.next_nonce();
            let (_, body, _) =
                build_request(&dendrite.plan, i, nonce, &dendrite.uuid).expect("probe request");
            let parsed = cm_core::parse::parse_request(&body).expect("probe body parses");
            let p = model.predict(&parsed, kernel);
            Expected {
                class: p.conversion_happened,
                time: f32_to_json(p.time_to_conversion_seconds),
                confidence: f32_to_json(p.confidence),
            }
        })
        .collect();
    let mut verified = [0u64; 3];

    let pid = server.child.id();
    let mut g = c.benchmark_group("roundtrip");
    g.throughput(Throughput::Elements(1));
    let cpu0 = server_cpu_s(pid);
    g.bench_function("health", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let req = Request::get(format!("http://{}/health", server.addr))
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    let (status, headers, body, took) = send(&client, req).await;
                    total += took;
                    assert_eq!(status, StatusCode::OK, "/health");
                    assert!(headers.get("content-type").is_some());
                    let v: Value = serde_json::from_slice(&body).expect("/health is JSON");
                    assert!(
                        v["status"] == "ok" && v["hotkey"] == server.hotkey.as_str(),
                        "/health answer: {v}"
                    );
                    verified[0] += 1;
                }
                total
            })
        })
    });
    report_cpu("roundtrip/health", pid, cpu0, verified[0]);
    let cpu0 = server_cpu_s(pid);
    g.bench_function("ping", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (req, sent) = dendrite.ping();
                    let (status, headers, body, took) = send(&client, req).await;
                    total += took;
                    success_json(status, &headers, &body)
                        .and_then(|got| check_echo(&sent, &got))
                        .unwrap_or_else(|e| panic!("ping: {e}"));
                    verified[1] += 1;
                }
                total
            })
        })
    });
    report_cpu("roundtrip/ping", pid, cpu0, verified[1]);
    let cpu0 = server_cpu_s(pid);
    g.bench_function("conversion", |b| {
        let mut i = 0;
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i = (i + 1) % N_CONVERSATIONS;
                    let (req, nonce, signature) = dendrite.conversion(i);
                    let (status, headers, body, took) = send(&client, req).await;
                    total += took;
                    let sent = Sent {
                        idx: i,
                        nonce,
                        uuid: &dendrite.uuid,
                        signature: &signature,
                    };
                    success_json(status, &headers, &body)
                        .and_then(|got| {
                            let (class, t, c, _) = check_answer(&dendrite.plan, &sent, &got)?;
                            check_model((class, t, c), &expected[i])
                        })
                        .unwrap_or_else(|e| panic!("conversion request {i}: {e}"));
                    verified[2] += 1;
                }
                total
            })
        })
    });
    report_cpu("roundtrip/conversion", pid, cpu0, verified[2]);
    g.finish();
    eprintln!(
        "checked answers: health {}, ping {}, conversion {} (all 200 and well-formed)",
        verified[0], verified[1], verified[2]
    );
    drop(client);
    drop(server);
}

criterion_group!(benches, bench_roundtrip);
criterion_main!(benches);
