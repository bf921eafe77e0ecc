//! Shared helpers for the end-to-end tests: run the real binary, talk raw HTTP
//! to it, and sign requests the way a bittensor Dendrite does.
//!
//! The signer here is written from AXON.md alone and shares no code with
//! `cm-host`: if both sides misread the protocol the same way the interop test
//! (a real Python Dendrite) catches it, and if they read it differently this
//! file catches it without Python. The HTTP client is a few dozen lines over
//! `std::net::TcpStream` so a test can send what no well-behaved client would
//! (wrong lengths, broken JSON, oversize bodies) and see the exact status line.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use schnorrkel::{signing_context, ExpansionMode, Keypair, MiniSecretKey};
use serde_json::{json, Value};
use sha3::{Digest, Sha3_256};

/// How long the binary may take to print its listening line and answer /health.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Socket read/write timeout for one test request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The Substrate sr25519 signing context a Dendrite uses (AXON.md section 5.1).
pub const SUBSTRATE_CTX: &[u8] = b"substrate";
/// `bt_header_dendrite_version` of bittensor 10.5.0 (major*1e6 + minor*1e3 + patch).
pub const DENDRITE_VERSION: u64 = 10_005_000;
/// The `timeout` header our requests carry, in seconds.
pub const REQUEST_TIMEOUT_S: f64 = 12.0;
/// SS58 address-format prefix bittensor uses.
const SS58_PREFIX: u8 = 42;
/// The marker the server prints once its socket is bound.
const LISTEN_MARKER: &str = "listening on ";
/// What `serve` prints before the operator listener's address.
const METRICS_MARKER: &str = "metrics on ";
/// `--metrics.addr` the test servers use: a free loopback port each, so
/// parallel tests never collide.
pub const TEST_METRICS_ADDR: &str = "127.0.0.1:0";

/// Path of the binary under test, built by cargo for this integration test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_conversion-miner"))
}

/// `SHA3-256("")` in lowercase hex: the body hash of a synapse without
/// `required_hash_fields`, which is what ConversionSynapse sends (AXON.md section 4).
pub fn empty_body_hash() -> String {
    hex::encode(Sha3_256::digest(b""))
}

/// SS58 (prefix 42) of a 32-byte sr25519 public key.
pub fn ss58_encode(public: &[u8; 32]) -> String {
    use blake2::{Blake2b512, Digest as _};
    let mut payload = Vec::with_capacity(35);
    payload.push(SS58_PREFIX);
    payload.extend_from_slice(public);
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(&payload);
    let checksum = h.finalize();
    payload.extend_from_slice(&checksum[..2]);
    bs58::encode(payload).into_string()
}

/// Nanoseconds since the Unix epoch, as `time.time_ns()` gives them.
pub fn now_ns() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970");
    d.as_nanos() as u64
}

// ------------------------------------------------------------------ signer

/// A validator identity that signs requests like `bt.Dendrite`.
pub struct Signer {
    pub keypair: Keypair,
    pub ss58: String,
    /// Fixed per Dendrite object, like Python's `uuid.uuid1()` string.
    pub uuid: String,
}

static UUID_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh uuid1-shaped string; unique within this process and across runs.
pub fn fresh_uuid() -> String {
    let n = UUID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = now_ns();
    format!(
        "{:08x}-{:04x}-11f1-{:04x}-{:012x}",
        (t >> 20) as u32,
        (t >> 4) as u16,
        (n as u16) | 0x8000,
        u64::from(std::process::id()) << 16 | (n & 0xffff)
    )
}

impl Signer {
    /// Deterministic key from a 32-byte seed, expanded as Substrate does
    /// (`Keypair.create_from_seed`, AXON.md section 11).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mini = MiniSecretKey::from_bytes(&seed).expect("32-byte seed");
        let keypair = mini.expand_to_keypair(ExpansionMode::Ed25519);
        let ss58 = ss58_encode(&keypair.public.to_bytes());
        Signer {
            keypair,
            ss58,
            uuid: fresh_uuid(),
        }
    }

    /// Same key, new Dendrite object (new uuid, so a fresh nonce history).
    pub fn renew_uuid(&mut self) {
        self.uuid = fresh_uuid();
    }

    /// `0x` + hex of an sr25519 signature of `msg` under `ctx`.
    pub fn sign_with(&self, ctx: &[u8], msg: &str) -> String {
        let sig = self
            .keypair
            .sign(signing_context(ctx).bytes(msg.as_bytes()));
        format!("0x{}", hex::encode(sig.to_bytes()))
    }

    /// The exact message a Dendrite signs (AXON.md section 5.1).
    pub fn message(&self, nonce: u64, miner_ss58: &str, body_hash: &str) -> String {
        format!(
            "{nonce}.{}.{miner_ss58}.{}.{body_hash}",
            self.ss58, self.uuid
        )
    }
}

/// Everything that varies between the requests the tests send.
pub struct Call<'a> {
    pub path: &'a str,
    pub nonce: u64,
    pub ctx: &'a [u8],
    pub miner_ss58: &'a str,
    pub axon_addr: SocketAddr,
    /// Subclass fields of the synapse (features, prediction, ...); empty for a ping.
    pub fields: Value,
    /// Replace the signature after signing (for tamper tests).
    pub tamper: Option<fn(&str) -> String>,
}

impl<'a> Call<'a> {
    /// A conversion request with [`sample_features`] to `path` for the
    /// miner `miner_ss58` at `axon_addr`, nonce now, signed in the substrate
    /// context, untampered.
    pub fn sample(path: &'a str, miner_ss58: &'a str, axon_addr: SocketAddr) -> Call<'a> {
        Call {
            path,
            nonce: now_ns(),
            ctx: SUBSTRATE_CTX,
            miner_ss58,
            axon_addr,
            fields: synapse_fields(sample_features()),
            tamper: None,
        }
    }
}

/// A running server, its hotkey, and the validator identity that talks to
/// it. Each test file adds its own methods in an `impl Rig` block (an
/// inherent impl may sit in any module of the crate that defines the type),
/// because what "still serves" means differs between them.
pub struct Rig {
    pub server: Server,
    pub miner: String,
    pub validator: Signer,
}

impl Rig {
    /// `serve` with `extra` arguments, called by the key made from `validator_seed`.
    pub fn start(extra: &[&str], validator_seed: [u8; 32]) -> Rig {
        let server = Server::start(extra);
        let miner = server.hotkey();
        Rig {
            server,
            miner,
            validator: Signer::from_seed(validator_seed),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// A request to `path` for this server's hotkey and address, signed
    /// in the substrate context, untampered.
    pub fn call<'a>(&'a self, path: &'a str, nonce: u64, fields: Value) -> Call<'a> {
        Call {
            path,
            nonce,
            ctx: SUBSTRATE_CTX,
            miner_ss58: &self.miner,
            axon_addr: self.server.addr,
            fields,
            tamper: None,
        }
    }
}

/// A request as bytes on the wire: header list and JSON body.
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Signer {
    /// Headers and body the way `Dendrite.call` builds them for `call`.
    pub fn build(&self, call: &Call<'_>) -> Signed {
        let body_hash = empty_body_hash();
        let message = self.message(call.nonce, call.miner_ss58, &body_hash);
        let mut signature = self.sign_with(call.ctx, &message);
        if let Some(t) = call.tamper {
            signature = t(&signature);
        }
        let name = call.path.trim_start_matches('/');
        let dendrite_ip = "192.0.2.1";
        let mut body = json!({
            "name": name,
            "timeout": REQUEST_TIMEOUT_S,
            "total_size": 0,
            "header_size": 0,
            "dendrite": {
                "status_code": null, "status_message": null, "process_time": null,
                "ip": dendrite_ip, "port": null, "version": DENDRITE_VERSION,
                "nonce": call.nonce, "uuid": self.uuid, "hotkey": self.ss58,
                "signature": signature,
            },
            "axon": {
                "status_code": null, "status_message": null, "process_time": null,
                "ip": call.axon_addr.ip().to_string(), "port": call.axon_addr.port(),
                "version": null, "nonce": null, "uuid": null,
                "hotkey": call.miner_ss58, "signature": null,
            },
            "computed_body_hash": "",
        });
        let mut has_features = false;
        if let (Some(obj), Some(extra)) = (body.as_object_mut(), call.fields.as_object()) {
            for (k, v) in extra {
                has_features |= k == "features";
                obj.insert(k.clone(), v.clone());
            }
        }
        let mut headers = vec![
            ("name".to_string(), name.to_string()),
            ("timeout".to_string(), format!("{REQUEST_TIMEOUT_S:?}")),
            (
                "bt_header_axon_ip".to_string(),
                call.axon_addr.ip().to_string(),
            ),
            (
                "bt_header_axon_port".to_string(),
                call.axon_addr.port().to_string(),
            ),
            (
                "bt_header_axon_hotkey".to_string(),
                call.miner_ss58.to_string(),
            ),
            ("bt_header_dendrite_ip".to_string(), dendrite_ip.to_string()),
            (
                "bt_header_dendrite_version".to_string(),
                DENDRITE_VERSION.to_string(),
            ),
            (
                "bt_header_dendrite_nonce".to_string(),
                call.nonce.to_string(),
            ),
            ("bt_header_dendrite_uuid".to_string(), self.uuid.clone()),
            ("bt_header_dendrite_hotkey".to_string(), self.ss58.clone()),
            ("bt_header_dendrite_signature".to_string(), signature),
        ];
        if has_features {
            // base64 of "{}": the empty-instance marker for a required dict field.
            headers.push((
                "bt_header_input_obj_features".to_string(),
                "e30=".to_string(),
            ));
        }
        headers.push(("header_size".to_string(), "464".to_string()));
        headers.push(("total_size".to_string(), "3701".to_string()));
        headers.push(("computed_body_hash".to_string(), body_hash));
        Signed {
            headers,
            body: serde_json::to_vec(&body).expect("json"),
        }
    }
}

/// Flip the last hex digit of a signature: still well-formed, no longer valid.
pub fn flip_last_hex(sig: &str) -> String {
    let mut s = sig.to_string();
    let last = s.pop().unwrap_or('0');
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// One typical conversation, as a validator sends it: ints as ints, floats
/// with a decimal point, plus the session id.
pub fn sample_features() -> Value {
    json!({
        "session_id": "fe093ea6-8fb3-4856-9aee-05673faaae11",
        "conversation_duration_seconds": 92.0, "conversation_duration_minutes": 1.5333,
        "hour_of_day": 13, "day_of_week": 2, "is_business_hours": 1, "is_weekend": 0,
        "time_to_first_response_seconds": 7.0, "avg_response_time_seconds": 11.5,
        "max_response_time_seconds": 15.0, "min_response_time_seconds": 7.0,
        "avg_agent_response_time_seconds": 11.75, "avg_user_response_time_seconds": 11.6667,
        "response_time_stddev": 2.8723, "response_gap_max": 15.0, "messages_per_minute": 5.8696,
        "total_messages": 9, "user_messages_count": 5, "agent_messages_count": 4,
        "message_ratio": 1.25, "avg_message_length_user": 47.0, "max_message_length_user": 62,
        "min_message_length_user": 25, "total_chars_from_user": 235,
        "avg_message_length_agent": 84.0, "max_message_length_agent": 120,
        "min_message_length_agent": 53, "total_chars_from_agent": 336,
        "question_count_agent": 3, "questions_per_agent_message": 0.75, "question_count_user": 0,
        "questions_per_user_message": 0.0, "sequential_user_messages": 2,
        "sequential_agent_messages": 1, "entities_collected_count": 5, "has_target_entity": 1,
        "avg_entity_confidence": 0.92, "min_entity_confidence": 0.8,
        "entity_collection_rate": 0.0, "repeated_questions": 0, "message_alternation_rate": 0.875
    })
}

/// The subclass fields of a ConversionSynapse request with `features`.
pub fn synapse_fields(features: Value) -> Value {
    json!({
        "features": features,
        "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
        "confidence": null,
        "response_time": 0.0,
        "miner_uid": 7
    })
}

// ------------------------------------------------------------------ HTTP

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names as received (hyper sends lowercase).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes and reads one response (the request asks the server to
/// close the connection, so the response ends at its Content-Length or EOF).
///
/// The bytes are written from a second thread while this one reads: a server
/// may answer and close before it has read a large body (413), and a writer
/// blocked on a full socket buffer must not keep us from reading that answer.
/// A failed write is therefore not the verdict; the response is.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut w = s.try_clone()?;
    let bytes = request.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let r = read_response(&mut s);
    // Unblocks the writer if the server stopped reading.
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    r
}

/// Reads one HTTP/1.1 response: status line, headers, then a body framed by
/// Content-Length, chunked encoding, or EOF.
pub fn read_response(s: &mut TcpStream) -> std::io::Result<Response> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| std::io::Error::other(format!("bad chunk size {size_line:?}: {e}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Serialises a request with `Connection: close`.
pub fn encode_request(
    method: &str,
    path: &str,
    addr: SocketAddr,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        out.push_str("content-type: application/json\r\n");
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The value on the first line of Prometheus text `text` that starts with
/// `line_prefix` (a metric name, with its labels if it has any).
pub fn metric_value(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(line_prefix).map(|v| {
            v.trim()
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("metric line {l:?}: {e}"))
        })
    })
}

/// The sum of metric `name` over its label sets that contain `labels`
/// (0 if none does).
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    raw_exchange(addr, &encode_request("GET", path, addr, &[], b""))
}

pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    raw_exchange(addr, &encode_request("POST", path, addr, headers, body))
}

// ------------------------------------------------------------------ server

/// The binary running `serve` on a free loopback port; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The operator listener (`/metrics`), also on a free loopback port.
    pub metrics_addr: SocketAddr,
    /// Every line the server printed so far (stdout and stderr interleaved).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `serve` with the given extra arguments, on port 0 (the OS picks a free
    /// one, so parallel tests never collide); returns once /health answers 200.
    pub fn start(extra: &[&str]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").args(extra).args(["--axon.port", "0"]);
        if !extra.contains(&"--metrics.addr") {
            cmd.args(["--metrics.addr", TEST_METRICS_ADDR]);
        }
        cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", bin()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(bool, SocketAddr)>();
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");
        spawn_pump(out, Arc::clone(&log), tx.clone());
        spawn_pump(err, Arc::clone(&log), tx);
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        // `listening on` comes first, then `metrics on` (when there is one).
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((false, addr)) => server.addr = addr,
            _ => panic!(
                "server printed no '{LISTEN_MARKER}IP:PORT' line; output:\n{}",
                server.log_text()
            ),
        }
        if let Ok((true, addr)) = rx.recv_timeout(Duration::from_secs(5)) {
            server.metrics_addr = addr;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match get(server.addr, "/health") {
                Ok(r) if r.status == 200 => break,
                _ if Instant::now() > deadline => {
                    panic!(
                        "GET /health never answered 200; output:\n{}",
                        server.log_text()
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        server
    }

    /// `serve --dev`: throwaway hotkey, every caller allowed, loopback.
    pub fn start_dev() -> Server {
        Server::start(&["--dev"])
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The Prometheus text of the operator listener.
    pub fn metrics_text(&self) -> String {
        get(self.metrics_addr, "/metrics")
            .unwrap_or_else(|e| {
                panic!(
                    "GET /metrics on {}: {e}\noutput:\n{}",
                    self.metrics_addr,
                    self.log_text()
                )
            })
            .text()
    }

    /// One counter summed over its label sets that contain `labels` (0 if absent).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        metric_sum(&self.metrics_text(), name, labels)
    }

    /// The miner's hotkey as the start-up line names it; must agree with /health.
    pub fn hotkey(&self) -> String {
        let log = self.log_text();
        let from_log = log
            .lines()
            .filter(|l| l.contains("hotkey"))
            .find_map(find_ss58)
            .unwrap_or_else(|| panic!("no start-up line names the hotkey ss58; output:\n{log}"));
        let health = get(self.addr, "/health").expect("GET /health").json();
        assert_eq!(
            health["hotkey"],
            Value::from(from_log.as_str()),
            "/health and the log disagree: {health}"
        );
        from_log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `serve` with `args` (plus `--axon.port 0`) to its exit, which must
/// come within [`START_TIMEOUT`]; returns its status, stdout and stderr.
pub fn serve_to_exit(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .args(["--axon.port", "0", "--metrics.addr", TEST_METRICS_ADDR])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    (
        status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_pump<R: Read + Send + 'static>(
    r: R,
    log: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<(bool, SocketAddr)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if let Some(addr) = parse_listening(&line) {
                let _ = tx.send((false, addr));
            }
            if let Some(addr) = parse_after(&line, METRICS_MARKER) {
                let _ = tx.send((true, addr));
            }
            if let Ok(mut l) = log.lock() {
                l.push(line);
            }
        }
    });
}

/// `... listening on 127.0.0.1:PORT ...` -> the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    parse_after(line, LISTEN_MARKER)
}

/// The `IP:PORT` right after `marker` in `line`.
pub fn parse_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let tok: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    tok.parse().ok()
}

/// First token that looks like a prefix-42 SS58 address (48 base58 chars starting with 5).
pub fn find_ss58(line: &str) -> Option<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|t| {
            t.len() == 48
                && t.starts_with('5')
                && bs58::decode(t).into_vec().is_ok_and(|v| v.len() == 35)
        })
        .map(str::to_string)
}

/// Writes `path/name/hotkeys/hotkey` in the bittensor wallet format for a key
/// made from `seed`, so a test can start the server with a known miner hotkey.
pub fn write_wallet_hotkey(root: &Path, name: &str, hotkey: &str, seed: [u8; 32]) -> String {
    let s = Signer::from_seed(seed);
    let pubhex = format!("0x{}", hex::encode(s.keypair.public.to_bytes()));
    let file = json!({
        "publicKey": pubhex,
        "ss58Address": s.ss58,
        "secretSeed": format!("0x{}", hex::encode(seed)),
        "privateKey": format!("0x{}", hex::encode(s.keypair.secret.to_bytes())),
        "cryptoType": 1,
        "accountId": pubhex,
    });
    let dir = root.join(name).join("hotkeys");
    std::fs::create_dir_all(&dir).expect("mkdir wallet");
    std::fs::write(dir.join(hotkey), serde_json::to_vec(&file).expect("json"))
        .expect("write hotkey");
    s.ss58
}

/// A fresh empty directory under the cargo target tmp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        fresh_uuid()
    ));
    std::fs::create_dir_all(&d).expect("mkdir temp");
    d
}

// ------------------------------------------------------------------ attackers

/// A connection to `addr` from the loopback address `source` (any of
/// 127.0.0.0/8 works on Linux), so the server sees a host other than the
/// validator's 127.0.0.1. `recv_buffer` shrinks the socket's receive buffer
/// (a client that reads slowly or not at all fills it sooner).
pub fn connect_from(
    source: [u8; 4],
    addr: SocketAddr,
    recv_buffer: Option<usize>,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(n) = recv_buffer {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&SocketAddr::from((source, 0)).into())?;
    s.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(IO_TIMEOUT))?;
    t.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(t)
}

/// Attacker threads that run until the flood is dropped.
pub struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Flood {
    /// `threads` threads, each calling `step(thread index)` until stopped;
    /// a step returns how many requests it sent.
    pub fn start<F>(threads: usize, step: F) -> Flood
    where
        F: Fn(usize, &std::sync::atomic::AtomicBool) -> u64 + Send + Sync + 'static,
    {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let step = Arc::new(step);
        let threads = (0..threads)
            .map(|i| {
                let (stop, step) = (Arc::clone(&stop), Arc::clone(&step));
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed) {
                        sent += step(i, &stop);
                    }
                    sent
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stops every thread; returns the requests they sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).sum()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
