//! `probe`: a validator simulator that signs exactly as a Python dendrite.
//!
//! Each concurrency slot is one simulated dendrite with its own uuid and
//! strictly increasing nonces, so a run passes even against an axon with
//! Python's strict nonce rule (`serve --nonce.strict`), where concurrent
//! requests of one uuid arriving out of order would be refused. Requests carry the AXON.md
//! §2 headers and a §3 body around a generated conversation from the same
//! seeded set `eval --seed` scores, so the reward printed here is directly
//! comparable with `eval`'s. Every answer is checked: status and status
//! headers, the echo of every request field, and the subnet's output rules.
//!
//! The probe usually shares its machine with the miner it measures, so it is
//! kept cheap: each slot holds one keep-alive connection (as a dendrite's
//! session does) instead of going through a pooled client, request bodies are
//! written straight to bytes around features serialized once per
//! conversation, and answers are checked field by field against what was
//! sent, without building the request as a tree. Every request is still
//! signed on its own. `--wait-ready` polls a miner that is still starting and
//! reports when the first verified answer arrived (start-up time).
//!
//! `--forge-every N` makes every Nth request of the run a forgery: the
//! probe's own hotkey with a signature that still parses as sr25519 but does
//! not verify, so the miner has to run the curve check to refuse it. This is
//! how the cost of forgers to honest traffic is measured (a forged signature
//! spoils the verification batch it lands in). The probe expects exactly the
//! refusal the gate gives a bad signature and counts those apart from the
//! honest answers, which are checked as always.

use crate::btauth::sign as btauth_sign;
use crate::config::ProbeProtocol;
use crate::gate::EMPTY_BODY_HASH;
use crate::sig::{self, Message};
use crate::wallet::{self, Hotkey};
use crate::ProbeArgs;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use cm_core::schema::{FEATURE_NAMES, IS_INTEGER, N_FEATURES};
use cm_train::data::Sample;
use cm_train::reward::{reward, valid};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The version a bittensor 10.5.0 dendrite sends.
pub const DENDRITE_VERSION: u64 = 10_005_000;
/// Most distinct conversations generated when `--conversations` is not given.
const MAX_DEFAULT_CONVERSATIONS: usize = 100_000;
/// base64 of `{}`: the input-object header of a dict field.
const INPUT_OBJ_DICT: &str = "e30=";
/// The dendrite IP we claim (a documentation address; it is free text to the axon).
const DENDRITE_IP: &str = "127.0.0.1";

/// How often `--wait-ready` retries a refused connection.
const WAIT_READY_POLL: Duration = Duration::from_micros(200);

/// What went wrong with one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    Status(u16),
    Timeout,
    /// Could not connect (refused, e.g. after the miner shut down).
    Connect,
    /// The connection failed mid-request.
    Transport,
    BadAnswer(String),
    /// A forged request was not refused as a bad signature.
    Forged(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connect error"),
            Failure::Transport => f.write_str("transport error"),
            Failure::BadAnswer(w) => write!(f, "bad answer: {w}"),
            Failure::Forged(w) => write!(f, "forged request {w}"),
        }
    }
}

/// The result of one successful request.
struct Scored {
    latency_us: u32,
    reward0: f64,
    reward_rt: f64,
    oracle: f64,
    response_time: f64,
    positive: bool,
}

/// One slot's tallies.
#[derive(Default)]
struct Tally {
    ok: Vec<Scored>,
    /// Forged requests sent, and how many of them got the expected refusal.
    forged: u64,
    forged_refused: u64,
    failures: BTreeMap<Failure, u64>,
    first_failures: Vec<String>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A version-1-looking uuid string from random bits (the axon treats it as text).
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-11f1-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[16..20],
        &h[20..32]
    )
}

fn getrandom_fill(b: &mut [u8]) {
    if getrandom::getrandom(b).is_err() {
        // No OS randomness: fall back to the clock, which is unique enough
        // for a uuid that only has to differ between slots of one run.
        let t = now_ns().to_le_bytes();
        for (i, d) in b.iter_mut().enumerate() {
            *d = t[i % t.len()] ^ (i as u8);
        }
    }
}

/// The `features` object of a conversation, as the validator sends it
/// (integers as JSON integers, floats as floats, plus a session id).
pub fn features_json(raw: &[f64; N_FEATURES], session_id: &str) -> Map<String, Value> {
    let mut m = Map::with_capacity(N_FEATURES + 1);
    m.insert("session_id".into(), Value::String(session_id.into()));
    for i in 0..N_FEATURES {
        let v = if IS_INTEGER[i] {
            Value::from(raw[i] as i64)
        } else {
            serde_json::Number::from_f64(raw[i])
                .map(Value::Number)
                .unwrap_or(Value::Null)
        };
        m.insert(FEATURE_NAMES[i].into(), v);
    }
    m
}

#[cfg(test)]
fn terminal(pairs: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for k in crate::synapse::TERMINAL_KEYS {
        m.insert(k.into(), Value::Null);
    }
    for (k, v) in pairs {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m)
}

/// Everything that stays fixed across one probe run: where to send, the
/// miner's and our hotkeys, the `timeout` the requests carry, and the
/// conversations with their `features` objects (kept as values to check
/// the echo and as bytes to splice into request bodies). Public, with
/// [`build_request`] and [`check_answer`], so that the loopback bench sends
/// and checks exactly the probe's requests instead of keeping a copy.
pub struct Plan {
    target: SocketAddrV4,
    miner: String,
    signer: Hotkey,
    timeout: f64,
    rows: Vec<Sample>,
    /// Each conversation's `features` object, for checking the echo.
    features: Vec<Value>,
    /// The same objects serialized once, spliced into every request body.
    features_json: Vec<Vec<u8>>,
    /// How requests are signed ([`Plan::with_protocol`]; axon by default).
    protocol: ProbeProtocol,
    /// The last nonce handed out: nonces are unique across slots, since a
    /// btauth/1 miner refuses a second request of a hotkey with the same one.
    last_nonce: AtomicU64,
}

impl Plan {
    /// Serializes each row's `features` once; the session ids are
    /// `{session_prefix}-{row index}` (the probe passes `probe-{seed}`).
    pub fn new(
        target: SocketAddrV4,
        miner: String,
        signer: Hotkey,
        timeout: f64,
        rows: Vec<Sample>,
        session_prefix: &str,
    ) -> Result<Plan> {
        let features: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, s)| Value::Object(features_json(&s.raw, &format!("{session_prefix}-{i}"))))
            .collect();
        let features_json = features
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            target,
            miner,
            signer,
            timeout,
            rows,
            features,
            features_json,
            protocol: ProbeProtocol::Axon,
            last_nonce: AtomicU64::new(0),
        })
    }

    /// Signs with `protocol` instead of the axon protocol.
    pub fn with_protocol(mut self, protocol: ProbeProtocol) -> Plan {
        self.protocol = protocol;
        self
    }

    /// A nonce from the clock, above every nonce handed out before.
    fn next_nonce(&self) -> u64 {
        let now = now_ns();
        let mut last = self.last_nonce.load(Ordering::Relaxed);
        loop {
            let n = now.max(last + 1);
            match self.last_nonce.compare_exchange_weak(
                last,
                n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return n,
                Err(seen) => last = seen,
            }
        }
    }
}

/// The per-request values of one sent request, which [`check_answer`]
/// expects to find echoed in the answer.
pub struct Sent<'a> {
    /// Index of the conversation in the plan's rows.
    pub idx: usize,
    pub nonce: u64,
    /// The dendrite uuid the request was signed with.
    pub uuid: &'a str,
    /// The signature [`build_request`] returned (`0x` + hex).
    pub signature: &'a str,
}

/// The dendrite's signature over a request, as `0x` + hex.
fn sign(plan: &Plan, nonce: u64, uuid: &str) -> Result<String> {
    let kp = plan
        .signer
        .keypair
        .as_ref()
        .ok_or_else(|| anyhow!("probe hotkey has no secret"))?;
    let msg = Message::new(nonce, &plan.signer.ss58, &plan.miner, uuid, EMPTY_BODY_HASH)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(sig::sign_hex(kp, msg.as_bytes()))
}

/// The request body as a `Value`: the reference the byte writer below is
/// tested against, and what tests edit to make hostile bodies.
#[cfg(test)]
fn request_value(plan: &Plan, s: &Sent<'_>) -> Value {
    let port = plan.target.port();
    let ip = plan.target.ip().to_string();
    serde_json::json!({
        "name": "ConversionSynapse",
        "timeout": plan.timeout,
        "total_size": 0,
        "header_size": 0,
        "dendrite": terminal(&[
            ("ip", Value::from(DENDRITE_IP)),
            ("version", Value::from(DENDRITE_VERSION)),
            ("nonce", Value::from(s.nonce)),
            ("uuid", Value::from(s.uuid)),
            ("hotkey", Value::from(plan.signer.ss58.as_str())),
            ("signature", Value::from(s.signature)),
        ]),
        "axon": terminal(&[("ip", Value::from(ip.as_str())), ("port", Value::from(port)), ("hotkey", Value::from(plan.miner.as_str()))]),
        "computed_body_hash": "",
        "features": plan.features[s.idx].clone(),
        "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
        "confidence": null,
        "response_time": 0.0,
        "miner_uid": 0,
    })
}

/// Writes `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    Ok(())
}

/// The request body written straight to bytes: the same document as
/// [`request_value`], without building a tree per request (the probe
/// shares the machine with the miner it measures).
fn request_body(plan: &Plan, s: &Sent<'_>) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let feats = &plan.features_json[s.idx];
    let mut b = Vec::with_capacity(feats.len() + 1024);
    b.extend_from_slice(b"{\"name\":\"ConversionSynapse\",\"timeout\":");
    serde_json::to_writer(&mut b, &plan.timeout)?;
    b.extend_from_slice(b",\"total_size\":0,\"header_size\":0,\"dendrite\":{\"status_code\":null,\"status_message\":null,\"process_time\":null,\"ip\":");
    json_str(&mut b, DENDRITE_IP)?;
    write!(
        b,
        ",\"port\":null,\"version\":{DENDRITE_VERSION},\"nonce\":{},\"uuid\":",
        s.nonce
    )?;
    json_str(&mut b, s.uuid)?;
    b.extend_from_slice(b",\"hotkey\":");
    json_str(&mut b, &plan.signer.ss58)?;
    b.extend_from_slice(b",\"signature\":");
    json_str(&mut b, s.signature)?;
    b.extend_from_slice(
        b"},\"axon\":{\"status_code\":null,\"status_message\":null,\"process_time\":null,\"ip\":",
    );
    json_str(&mut b, &plan.target.ip().to_string())?;
    write!(
        b,
        ",\"port\":{},\"version\":null,\"nonce\":null,\"uuid\":null,\"hotkey\":",
        plan.target.port()
    )?;
    json_str(&mut b, &plan.miner)?;
    b.extend_from_slice(b",\"signature\":null},\"computed_body_hash\":\"\",\"features\":");
    b.extend_from_slice(feats);
    b.extend_from_slice(b",\"prediction\":{\"conversion_happened\":0,\"time_to_conversion_seconds\":-1.0},\"confidence\":null,\"response_time\":0.0,\"miner_uid\":0}");
    Ok(b)
}

/// A signed `ConversionSynapse` request for conversation `idx` with the
/// given nonce and uuid, headers and body laid out as a bittensor 10.5.0
/// dendrite sends them. Returns the request, a copy of its body bytes and
/// the signature (for [`Sent`]). The URI is absolute, as hyper's pooled
/// client needs; the probe's own connection sends it in origin form.
pub fn build_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    if plan.protocol == ProbeProtocol::Btauth {
        return btauth_request(plan, idx, nonce, uuid);
    }
    let signature = sign(plan, nonce, uuid)?;
    request_with(plan, idx, nonce, uuid, signature)
}

/// The same body signed as btauth/1 instead (`probe --protocol btauth`):
/// the `X-Bittensor-*` headers from `btauth::sign`, bound to the miner's
/// hotkey. That signature covers the body's hash, so it cannot sit inside
/// the body: the body's dendrite block carries an empty signature, which
/// comes back echoed like every other field (the returned signature).
fn btauth_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let kp = plan
        .signer
        .keypair
        .as_ref()
        .ok_or_else(|| anyhow!("probe hotkey has no secret"))?;
    let sent = Sent {
        idx,
        nonce,
        uuid,
        signature: "",
    };
    let body = Bytes::from(request_body(plan, &sent)?);
    let headers = btauth_sign::sign(
        btauth_sign::Key::Sr25519(kp),
        &btauth_sign::Signing {
            method: "POST",
            target: "/ConversionSynapse",
            body: &body,
            receiver_ss58: Some(&plan.miner),
            nonce_ns: nonce,
        },
    );
    let mut req = Request::post(format!("http://{}/ConversionSynapse", plan.target))
        .header("host", plan.target.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    Ok((req.body(Full::new(body.clone()))?, body, String::new()))
}

/// The same request as [`build_request`], but carrying a forged signature
/// (see [`forge_signature`]) in both the header and the body.
pub fn build_forged_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let signature = forge_signature(&sign(plan, nonce, uuid)?)?;
    request_with(plan, idx, nonce, uuid, signature)
}

/// Turns a valid signature (`0x` + hex) into one that is still a
/// well-formed sr25519 signature but no longer verifies: one bit of the
/// scalar half is flipped. The point half is left alone, so the verifier
/// cannot refuse it early for an undecodable point and has to do the full
/// curve work, as it would for a forger who knows the format. The bit is
/// the lowest one of the scalar's first (least significant) byte whose flip
/// keeps the scalar canonical (below the group order l). Bit 0 nearly
/// always does; if it does not, the scalar was l - 1, whose first byte has
/// set bits, and clearing one of them lowers the scalar. So the loop below
/// always finds one.
pub fn forge_signature(signature: &str) -> Result<String> {
    let mut b = sig::parse_signature_hex(signature).map_err(|e| anyhow!("{e}"))?;
    let scalar_low = sig::SIGNATURE_LEN / 2;
    for bit in 0..8 {
        b[scalar_low] ^= 1 << bit;
        if schnorrkel::Signature::from_bytes(&b).is_ok() {
            return Ok(format!("0x{}", hex::encode(b)));
        }
        b[scalar_low] ^= 1 << bit;
    }
    bail!("no single-bit change of {signature} stays a valid sr25519 encoding")
}

/// Lays out the request of [`build_request`] around a given signature.
fn request_with(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
    signature: String,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let me = &plan.signer.ss58;
    let body = Bytes::from(request_body(
        plan,
        &Sent {
            idx,
            nonce,
            uuid,
            signature: &signature,
        },
    )?);
    let port = plan.target.port();
    let ip = plan.target.ip().to_string();
    let req = Request::post(format!("http://{}/ConversionSynapse", plan.target))
        .header("host", plan.target.to_string())
        .header("name", "ConversionSynapse")
        .header("timeout", format!("{:?}", plan.timeout))
        .header("bt_header_axon_ip", ip)
        .header("bt_header_axon_port", port.to_string())
        .header("bt_header_axon_hotkey", plan.miner.as_str())
        .header("bt_header_dendrite_ip", DENDRITE_IP)
        .header("bt_header_dendrite_version", DENDRITE_VERSION.to_string())
        .header("bt_header_dendrite_nonce", nonce.to_string())
        .header("bt_header_dendrite_uuid", uuid)
        .header("bt_header_dendrite_hotkey", me.as_str())
        .header("bt_header_dendrite_signature", signature.as_str())
        .header("bt_header_input_obj_features", INPUT_OBJ_DICT)
        .header("header_size", "0")
        .header("total_size", "0")
        .header("computed_body_hash", EMPTY_BODY_HASH)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    Ok((req, body, signature))
}

/// Checks the JSON body of a 200 answer to a [`build_request`] request:
/// every request field echoed intact (compared as JSON values, so a miner
/// that re-serializes passes), the axon block at 200/Success with the
/// plan's address and miner hotkey, and the subnet's output rules. Returns
/// the answer's class, time to conversion, confidence and response time;
/// the error names the failed check. Status and headers are the caller's
/// to check.
pub fn check_answer(plan: &Plan, s: &Sent<'_>, got: &Value) -> Result<(u8, f64, f64, f64), String> {
    let obj = got.as_object().ok_or("body is not an object")?;
    let timeout = serde_json::Number::from_f64(plan.timeout).map(Value::Number);
    let fixed: [(&str, Option<Value>); 6] = [
        ("name", Some(Value::from("ConversionSynapse"))),
        ("timeout", timeout),
        ("total_size", Some(Value::from(0))),
        ("header_size", Some(Value::from(0))),
        ("computed_body_hash", Some(Value::from(""))),
        ("miner_uid", Some(Value::from(0))),
    ];
    for (k, v) in &fixed {
        if obj.get(*k) != v.as_ref() {
            return Err(format!("field '{k}' not echoed intact"));
        }
    }
    if obj.get("features") != plan.features.get(s.idx) {
        return Err("field 'features' not echoed intact".into());
    }
    let d = obj
        .get("dendrite")
        .and_then(Value::as_object)
        .ok_or("no dendrite object")?;
    let dendrite_ok = d.len() == crate::synapse::TERMINAL_KEYS.len()
        && ["status_code", "status_message", "process_time", "port"]
            .iter()
            .all(|k| d.get(*k) == Some(&Value::Null))
        && d.get("ip").and_then(Value::as_str) == Some(DENDRITE_IP)
        && d.get("version").and_then(Value::as_u64) == Some(DENDRITE_VERSION)
        && d.get("nonce").and_then(Value::as_u64) == Some(s.nonce)
        && d.get("uuid").and_then(Value::as_str) == Some(s.uuid)
        && d.get("hotkey").and_then(Value::as_str) == Some(plan.signer.ss58.as_str())
        && d.get("signature").and_then(Value::as_str) == Some(s.signature);
    if !dendrite_ok {
        return Err("field 'dendrite' not echoed intact".into());
    }
    let ax = obj
        .get("axon")
        .and_then(Value::as_object)
        .ok_or("no axon object")?;
    if ax.get("status_code").and_then(Value::as_u64) != Some(200)
        || ax.get("status_message").and_then(Value::as_str) != Some("Success")
    {
        return Err("axon status is not 200/Success".into());
    }
    if ax.get("ip").and_then(Value::as_str) != Some(plan.target.ip().to_string().as_str()) {
        return Err("axon.ip not echoed".into());
    }
    if ax.get("port").and_then(Value::as_u64) != Some(plan.target.port() as u64) {
        return Err("axon.port not echoed".into());
    }
    if ax.get("hotkey").and_then(Value::as_str) != Some(plan.miner.as_str()) {
        return Err("axon.hotkey not echoed".into());
    }
    check_outputs(obj)
}

/// The subnet's output rules on an answer.
fn check_outputs(obj: &Map<String, Value>) -> Result<(u8, f64, f64, f64), String> {
    let p = obj
        .get("prediction")
        .and_then(Value::as_object)
        .ok_or("no prediction object")?;
    let class = match p.get("conversion_happened").and_then(Value::as_u64) {
        Some(c @ 0..=1) => c as u8,
        _ => return Err("conversion_happened is not 0 or 1".into()),
    };
    let t = p
        .get("time_to_conversion_seconds")
        .and_then(Value::as_f64)
        .ok_or("time_to_conversion_seconds is not a number")?;
    if !valid(class, t) {
        return Err(format!("output rule broken: class {class} with time {t}"));
    }
    let c = obj
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or("confidence is not a number")?;
    if !(0.0..=1.0).contains(&c) {
        return Err(format!("confidence {c} outside [0, 1]"));
    }
    let rt = obj
        .get("response_time")
        .and_then(Value::as_f64)
        .ok_or("response_time is not a number")?;
    if !(rt.is_finite() && rt >= 0.0) {
        return Err(format!("response_time {rt} is not a non-negative number"));
    }
    Ok((class, t, c, rt))
}

/// One keep-alive connection to the miner, as a dendrite's session holds.
type Conn = SendRequest<Full<Bytes>>;

/// Opens a connection; the returned error says whether it was refused.
async fn connect(target: SocketAddrV4) -> Result<Conn, Failure> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// Sends on the slot's connection, opening a new one when there is none or
/// the miner closed it.
async fn send_on(
    conn: &mut Option<Conn>,
    target: SocketAddrV4,
    mut req: Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, Failure> {
    // hyper's connection API writes the URI as given: send origin-form, as
    // aiohttp does (the Host header is already set).
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = hyper::Uri::from(pq);
    }
    let reusable = match conn.as_mut() {
        Some(tx) if !tx.is_closed() => tx.ready().await.is_ok(),
        _ => false,
    };
    if !reusable {
        *conn = Some(connect(target).await?);
    }
    let tx = conn.as_mut().ok_or(Failure::Connect)?;
    match tx.send_request(req).await {
        Ok(r) => Ok(r),
        Err(_) => {
            *conn = None;
            Err(Failure::Transport)
        }
    }
}

/// What came back for one request: status, whether
/// `bt_header_axon_status_code` matched the status, whether the body is
/// JSON (else the content type), and the body.
struct Exchange {
    status: u16,
    hdr_matches: bool,
    json: bool,
    ctype: String,
    body: Bytes,
}

/// Sends `req` and reads the whole answer within the plan's timeout.
async fn exchange(
    conn: &mut Option<Conn>,
    plan: &Plan,
    req: Request<Full<Bytes>>,
) -> Result<Exchange, Failure> {
    let fut = async {
        let resp = send_on(conn, plan.target, req).await?;
        let status = resp.status().as_u16();
        let hdr_matches = resp
            .headers()
            .get("bt_header_axon_status_code")
            .is_some_and(|v| v.as_bytes() == status.to_string().as_bytes());
        let json = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let ctype = if json {
            String::new()
        } else {
            format!("{:?}", resp.headers().get("content-type"))
        };
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Transport)?
            .to_bytes();
        Ok::<_, Failure>(Exchange {
            status,
            hdr_matches,
            json,
            ctype,
            body,
        })
    };
    match tokio::time::timeout(Duration::from_secs_f64(plan.timeout), fut).await {
        Err(_) => {
            *conn = None;
            Err(Failure::Timeout)
        }
        Ok(Err(f)) => {
            *conn = None;
            Err(f)
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// One honest request, its answer fully checked and scored.
async fn one(
    conn: &mut Option<Conn>,
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<Scored, Failure> {
    let (req, _, signature) = build_request(plan, idx, nonce, uuid)
        .map_err(|e| Failure::BadAnswer(format!("building the request: {e}")))?;
    let t0 = Instant::now();
    let Exchange {
        status,
        hdr_matches,
        json,
        ctype,
        body,
    } = exchange(conn, plan, req).await?;
    let latency_us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if !hdr_matches {
        return Err(Failure::BadAnswer(
            "bt_header_axon_status_code is not 200".into(),
        ));
    }
    if !json {
        return Err(Failure::BadAnswer(format!("content-type {ctype}")));
    }
    let got: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::BadAnswer(format!("invalid JSON: {e}")))?;
    let sent = Sent {
        idx,
        nonce,
        uuid,
        signature: &signature,
    };
    let (class, t, _c, rt) = check_answer(plan, &sent, &got).map_err(Failure::BadAnswer)?;
    let s = &plan.rows[idx];
    Ok(Scored {
        latency_us,
        reward0: reward(class, t, s.label, s.time, 0.0).total,
        reward_rt: reward(class, t, s.label, s.time, rt).total,
        oracle: reward(s.label, s.time, s.label, s.time, 0.0).total,
        response_time: rt,
        positive: class == 1,
    })
}

/// The message a bad signature is refused with (host/README.md, gate step 8).
const SIGNATURE_MISMATCH: &str = "Not Verified with error: Signature mismatch";

/// One forged request; `Ok` only when the miner refused it exactly as a bad
/// signature: 401 in the status line and in `bt_header_axon_status_code`,
/// and a JSON body whose message says "Signature mismatch".
async fn one_forged(
    conn: &mut Option<Conn>,
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(), Failure> {
    let (req, _, _) = build_forged_request(plan, idx, nonce, uuid)
        .map_err(|e| Failure::Forged(format!("could not be built: {e}")))?;
    let x = exchange(conn, plan, req).await?;
    if x.status != 401 {
        return Err(Failure::Forged(format!("answered status {}", x.status)));
    }
    if !x.hdr_matches {
        return Err(Failure::Forged(
            "refused without bt_header_axon_status_code 401".into(),
        ));
    }
    if !x.json {
        return Err(Failure::Forged(format!(
            "refused with content-type {}",
            x.ctype
        )));
    }
    let got: Value = serde_json::from_slice(&x.body)
        .map_err(|_| Failure::Forged("refused with a body that is not JSON".into()))?;
    match got.get("message").and_then(Value::as_str) {
        Some(m) if m.starts_with(SIGNATURE_MISMATCH) => Ok(()),
        _ => Err(Failure::Forged(
            "refused for another reason than a signature mismatch".into(),
        )),
    }
}

/// Shared progress of all slots.
struct Progress {
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    /// Wall-clock time (unix ns) of the first verified answer; 0 until then.
    first_ok_unix_ns: AtomicU64,
}

impl Progress {
    fn take(&self) -> Option<u64> {
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return None;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(n) if i >= n => None,
            _ => Some(i),
        }
    }
}

/// One simulated dendrite. With a rate, slot `k` of `n` sends every
/// `period`, offset by `k/n` of a period, so the total load is spread evenly
/// instead of arriving as bursts of `n` requests at the same instant.
async fn slot(
    plan: Arc<Plan>,
    progress: Arc<Progress>,
    period: Option<Duration>,
    phase: f64,
    uuid_every: u64,
    forge_every: u64,
) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut uuid = new_uuid();
    let mut sent_with_uuid = 0u64;
    let mut ticker = period.map(|p| {
        let start = tokio::time::Instant::now() + p.mul_f64(phase);
        let mut i = tokio::time::interval_at(start, p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    while let Some(i) = progress.take() {
        if let Some(tk) = ticker.as_mut() {
            tk.tick().await;
        }
        if uuid_every > 0 && sent_with_uuid >= uuid_every {
            uuid = new_uuid();
            sent_with_uuid = 0;
        }
        sent_with_uuid += 1;
        let nonce = plan.next_nonce();
        let idx = (i % plan.rows.len() as u64) as usize;
        if forge_every > 0 && (i + 1) % forge_every == 0 {
            t.forged += 1;
            match one_forged(&mut conn, &plan, idx, nonce, &uuid).await {
                Ok(()) => t.forged_refused += 1,
                Err(f) => t.fail(i, f),
            }
            continue;
        }
        match one(&mut conn, &plan, idx, nonce, &uuid).await {
            Ok(s) => {
                if t.ok.is_empty() {
                    let _ = progress.first_ok_unix_ns.compare_exchange(
                        0,
                        now_ns(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                t.ok.push(s)
            }
            Err(f) => t.fail(i, f),
        }
    }
    t
}

impl Tally {
    fn fail(&mut self, request: u64, f: Failure) {
        if self.first_failures.len() < 5 {
            self.first_failures.push(format!("request {request}: {f}"));
        }
        *self.failures.entry(f).or_default() += 1;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// GET /health on a fresh connection; `Failure::Connect` while nothing listens.
async fn get_health(target: SocketAddrV4) -> Result<Value, Failure> {
    let mut conn = None;
    let req = Request::get(format!("http://{target}/health"))
        .header("host", target.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::BadAnswer(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send_on(&mut conn, target, req))
        .await
        .map_err(|_| Failure::Timeout)??;
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|_| Failure::Transport)?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| Failure::BadAnswer("/health is not JSON".into()))
}

/// Polls /health until the miner answers or `wait` runs out (`wait` zero: one try).
async fn wait_for_health(target: SocketAddrV4, wait: Duration) -> Result<Value> {
    let deadline = Instant::now() + wait;
    loop {
        match get_health(target).await {
            Ok(v) => return Ok(v),
            Err(Failure::Connect) if Instant::now() < deadline => {
                tokio::time::sleep(WAIT_READY_POLL).await;
            }
            Err(f) => bail!("GET http://{target}/health: {f}"),
        }
    }
}

/// Runs the probe and prints its summary; exit code 0 only with zero errors.
pub fn run(a: &ProbeArgs) -> Result<i32> {
    crate::init_logging("warn")?;
    let target: SocketAddrV4 = a
        .target
        .parse()
        .with_context(|| format!("--target {:?} is not IPv4:PORT", a.target))?;
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    if !(a.wait_ready.is_finite() && a.wait_ready >= 0.0) {
        bail!("--wait-ready must be a non-negative number of seconds");
    }
    if a.forge_every > 0 && a.protocol != ProbeProtocol::Axon {
        bail!("--forge-every forges axon-protocol signatures; use it with --protocol axon");
    }
    let signer = if a.dev {
        Hotkey::generate()
    } else {
        let p = wallet::hotkey_path(&a.wallet_path, &a.wallet_name, &a.wallet_hotkey);
        wallet::load_hotkey(&p, true)
            .context("loading the probe's signing hotkey (or use --dev)")?
    };
    let n_conv = a
        .conversations
        .unwrap_or(a.n.min(MAX_DEFAULT_CONVERSATIONS))
        .max(1);
    let rows = cm_train::eval::test_set(a.seed, n_conv);
    let rt = crate::runtime(a.workers)?;
    rt.block_on(async move {
        let wait = Duration::from_secs_f64(a.wait_ready);
        let miner = match &a.hotkey {
            Some(h) => {
                if a.wait_ready > 0.0 {
                    wait_for_health(target, wait).await?;
                }
                Hotkey::from_ss58(h)?.ss58
            }
            None => wait_for_health(target, wait)
                .await?
                .get("hotkey")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("/health has no hotkey; pass --hotkey"))?,
        };
        let plan = Arc::new(
            Plan::new(
                target,
                miner,
                signer,
                a.timeout,
                rows,
                &format!("probe-{}", a.seed),
            )?
            .with_protocol(a.protocol),
        );
        let duration = a.duration.map(|d| Duration::from_secs_f64(d.max(0.0)));
        let progress = Arc::new(Progress {
            next: AtomicU64::new(0),
            limit: if duration.is_some() {
                None
            } else {
                Some(a.n as u64)
            },
            deadline: duration.map(|d| Instant::now() + d),
            first_ok_unix_ns: AtomicU64::new(0),
        });
        let period = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.concurrency as f64 / a.rate));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..a.concurrency)
            .map(|k| {
                let phase = k as f64 / a.concurrency as f64;
                tokio::spawn(slot(
                    plan.clone(),
                    progress.clone(),
                    period,
                    phase,
                    a.uuid_every,
                    a.forge_every,
                ))
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            let t = h.await?;
            all.ok.extend(t.ok);
            all.forged += t.forged;
            all.forged_refused += t.forged_refused;
            for (k, v) in t.failures {
                *all.failures.entry(k).or_default() += v;
            }
            all.first_failures.extend(t.first_failures);
        }
        let wall = t0.elapsed().as_secs_f64();
        let first_ok = progress.first_ok_unix_ns.load(Ordering::Relaxed);
        report(a, &plan, &all, wall, first_ok)
    })
}

fn report(a: &ProbeArgs, plan: &Plan, t: &Tally, wall: f64, first_ok_unix_ns: u64) -> Result<i32> {
    let ok = t.ok.len() as u64;
    let errors: u64 = t.failures.values().sum();
    let total = ok + t.forged_refused + errors;
    let mut lat: Vec<u32> = t.ok.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let mean = |f: &dyn Fn(&Scored) -> f64| {
        if ok == 0 {
            0.0
        } else {
            t.ok.iter().map(f).sum::<f64>() / ok as f64
        }
    };
    let (r0, rrt, orc) = (
        mean(&|s| s.reward0),
        mean(&|s| s.reward_rt),
        mean(&|s| s.oracle),
    );
    let resp_us = mean(&|s| s.response_time) * 1e6;
    let pos = mean(&|s| if s.positive { 1.0 } else { 0.0 });
    let (p50, p90, p99) = (
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
    );
    let pmax = lat.last().copied().unwrap_or(0) as f64 / 1000.0;
    let per_s = |n: u64| if wall > 0.0 { n as f64 / wall } else { 0.0 };
    let (thr, ok_rps) = (per_s(total), per_s(ok));
    println!(
        "probe: {total} requests to {} (miner {}), concurrency {}, seed {}, {} conversations",
        plan.target,
        plan.miner,
        a.concurrency,
        a.seed,
        plan.rows.len()
    );
    if a.forge_every > 0 {
        println!(
            "  ok {ok}  forged refused {} of {} (1 request in {} forged)  errors {errors}",
            t.forged_refused, t.forged, a.forge_every
        );
    } else {
        println!("  ok {ok}  errors {errors}");
    }
    for (f, n) in &t.failures {
        println!("  error {f}: {n}");
    }
    for s in t.first_failures.iter().take(5) {
        println!("    e.g. {s}");
    }
    println!("  latency ms  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  max {pmax:.3}");
    if a.forge_every > 0 {
        println!("  throughput {thr:.1} req/s ({ok_rps:.1} honest verified) over {wall:.2} s");
    } else {
        println!("  throughput {thr:.1} req/s over {wall:.2} s");
    }
    println!(
        "  miner response_time mean {resp_us:.1} us; predicted positive {:.2}%",
        pos * 100.0
    );
    let ratio = if orc > 0.0 { r0 / orc } else { 0.0 };
    println!(
        "  mean reward (response_time 0, as eval) model {r0:.6}  oracle {orc:.6}  ratio {ratio:.6}"
    );
    println!("  mean reward with the miner's response_time {rrt:.6}");
    if a.wait_ready > 0.0 && first_ok_unix_ns > 0 {
        println!("  first verified answer at unix_ns {first_ok_unix_ns}");
    }
    if a.json {
        let by_status: BTreeMap<String, u64> = t
            .failures
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let j = serde_json::json!({
            "requests": total, "ok": ok, "errors": errors, "errors_by_kind": by_status,
            "forged": t.forged, "forged_refused": t.forged_refused, "ok_rps": ok_rps,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": pmax,
            "throughput_rps": thr, "wall_s": wall,
            "mean_reward": r0, "oracle_mean_reward": orc, "reward_ratio": ratio,
            "mean_reward_with_response_time": rrt, "mean_response_time_us": resp_us,
            "positive_rate": pos, "first_ok_unix_ns": first_ok_unix_ns,
            "protocol": format!("{:?}", plan.protocol).to_lowercase(),
        });
        println!("{j}");
    }
    Ok(if errors == 0 && total > 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_validator_types() {
        let rows = cm_train::eval::test_set(7, 3);
        let m = features_json(&rows[0].raw, "s");
        assert_eq!(m.len(), N_FEATURES + 1);
        assert!(m["total_messages"].is_i64());
        assert!(m["message_ratio"].is_f64());
        let body =
            serde_json::to_vec(&serde_json::json!({ "features": Value::Object(m) })).unwrap();
        assert!(cm_core::parse::parse_request(&body).is_ok());
    }

    fn test_plan(miner: &Hotkey, n: usize) -> Plan {
        let rows = cm_train::eval::test_set(1, n);
        Plan::new(
            "127.0.0.1:9".parse().unwrap(),
            miner.ss58.clone(),
            Hotkey::generate(),
            12.0,
            rows,
            "s",
        )
        .unwrap()
    }

    #[test]
    fn requests_verify_under_the_miner_key() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1);
        let (req, body, _) = build_request(&plan, 0, 1_795_626_734_383_137_861, "u-1").unwrap();
        let a = crate::gate::parse_auth(req.headers()).unwrap();
        a.verify(&miner.ss58).unwrap();
        crate::gate::check_body_hash(&a).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["dendrite"]["nonce"].as_u64(),
            Some(1_795_626_734_383_137_861)
        );
        assert!(a.verify(&plan.signer.ss58).is_err());
    }

    #[test]
    fn btauth_requests_verify_under_the_miner_key() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1).with_protocol(ProbeProtocol::Btauth);
        let (n1, n2) = (plan.next_nonce(), plan.next_nonce());
        assert!(n2 > n1);
        let (req, body, sig) = build_request(&plan, 0, n1, "u-1").unwrap();
        assert_eq!(sig, "");
        assert_eq!(
            crate::btauth::Protocol::of(req.headers()),
            crate::btauth::Protocol::Btauth
        );
        let r = crate::btauth::parse(req.headers()).unwrap();
        assert_eq!(r.nonce, n1);
        assert_eq!(r.hotkey_ss58, plan.signer.ss58);
        r.check_receiver(&miner.ss58).unwrap();
        r.verify("POST", "/ConversionSynapse", &body).unwrap();
        assert!(r.check_receiver(&plan.signer.ss58).is_err());
        let mut altered = body.to_vec();
        altered.push(b' ');
        assert!(r.verify("POST", "/ConversionSynapse", &altered).is_err());
    }

    #[test]
    fn forged_requests_parse_but_do_not_verify() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1);
        for k in 0..50u64 {
            let nonce = 1_795_626_734_383_137_861 + k;
            let (honest, _, good) = build_request(&plan, 0, nonce, "u-1").unwrap();
            // Exactly one bit differs, and it is in the scalar half.
            let g = sig::parse_signature_hex(&good).unwrap();
            let f = sig::parse_signature_hex(&forge_signature(&good).unwrap()).unwrap();
            let diff: Vec<usize> = (0..g.len()).filter(|&i| g[i] != f[i]).collect();
            assert_eq!(diff, [sig::SIGNATURE_LEN / 2]);
            assert_eq!((g[32] ^ f[32]).count_ones(), 1);
            // Signing is randomized, so the forged request carries a
            // signature of its own, which must parse and still be refused.
            let (req, body, bad) = build_forged_request(&plan, 0, nonce, "u-1").unwrap();
            assert_eq!(bad.len(), sig::SIGNATURE_HEX_LEN);
            let a = crate::gate::parse_auth(req.headers()).expect("forged signature parses");
            let err = a.verify(&miner.ss58).unwrap_err();
            assert_eq!(err.reason, crate::reason::Reason::SignatureMismatch);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["dendrite"]["signature"].as_str(), Some(bad.as_str()));
            // Every other header is the honest request's.
            let h = req.headers();
            for (name, v) in honest.headers() {
                if name != "bt_header_dendrite_signature" {
                    assert_eq!(h.get(name), Some(v), "{name}");
                }
            }
        }
        assert!(forge_signature("0x00").is_err());
    }

    #[test]
    fn written_body_equals_the_value_body() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 5);
        for idx in 0..5 {
            let nonce = 1_795_626_734_383_137_861 + idx as u64;
            let (_, bytes, signature) = build_request(&plan, idx, nonce, "u-\"q\"").unwrap();
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            let sent = Sent {
                idx,
                nonce,
                uuid: "u-\"q\"",
                signature: &signature,
            };
            assert_eq!(got, request_value(&plan, &sent));
        }
    }

    /// The answer our miner gives, made by the server's own echo code.
    fn answer_for(plan: &Plan, sent: &Sent<'_>) -> Value {
        let mut v = request_value(plan, sent);
        let a = crate::synapse::Answer {
            conversion_happened: 1,
            time_to_conversion_seconds: 60.0,
            confidence: 0.9,
        };
        let me = crate::synapse::AxonId {
            hotkey: &plan.miner,
            ip: "127.0.0.1",
            port: 9,
        };
        crate::synapse::fill_success(
            v.as_object_mut().unwrap(),
            "ConversionSynapse",
            Some(&a),
            1e-4,
            1e-4,
            &me,
        );
        v
    }

    #[test]
    fn answer_checks_catch_broken_rules() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 2);
        let sent = Sent {
            idx: 1,
            nonce: 77,
            uuid: "u",
            signature: "0x00",
        };
        let good = answer_for(&plan, &sent);
        assert!(check_answer(&plan, &sent, &good).is_ok());
        let breakages: [(&str, Value); 11] = [
            (
                "/prediction/time_to_conversion_seconds",
                serde_json::json!(-1.0),
            ),
            ("/features/total_messages", serde_json::json!(-3)),
            ("/confidence", serde_json::json!(1.5)),
            ("/dendrite/nonce", serde_json::json!(78)),
            ("/dendrite/signature", serde_json::json!("0x01")),
            ("/dendrite/port", serde_json::json!(1)),
            ("/axon/status_code", serde_json::json!(500)),
            ("/axon/hotkey", serde_json::json!("x")),
            ("/timeout", serde_json::json!(11.0)),
            ("/miner_uid", serde_json::json!(1)),
            ("/response_time", serde_json::json!(-0.5)),
        ];
        for (ptr, v) in breakages {
            let mut bad = good.clone();
            *bad.pointer_mut(ptr).unwrap() = v;
            assert!(check_answer(&plan, &sent, &bad).is_err(), "{ptr}");
        }
        let mut bad = good.clone();
        bad["features"] = plan.features[0].clone();
        assert!(
            check_answer(&plan, &sent, &bad).is_err(),
            "another row's features"
        );
        let mut bad = good;
        bad.as_object_mut().unwrap().remove("computed_body_hash");
        assert!(check_answer(&plan, &sent, &bad).is_err());
    }

    mod end_to_end {
        //! The real server in-process on a loopback port, driven by the
        //! probe's own request builder: one row per gate decision.
        use super::super::*;
        use crate::conn::ConnLimits;
        use crate::server::{self, State};
        use crate::{limits, metrics, nonce, reason::Reason, validators};
        use hyper::header::HeaderValue;
        use hyper_util::client::legacy::{connect::HttpConnector, Client};
        use hyper_util::rt::TokioExecutor;
        use std::sync::Mutex;

        /// A pooled client for the hand-made hostile requests.
        type HttpClient = Client<HttpConnector, Full<Bytes>>;

        fn model() -> &'static cm_core::model::Model {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights/model.json");
            Box::leak(
                cm_modelfile::load(&path)
                    .expect("weights/model.json loads")
                    .model,
            )
        }

        async fn send(
            client: &HttpClient,
            req: Request<Full<Bytes>>,
        ) -> (u16, hyper::HeaderMap, Value) {
            let resp = client.request(req).await.expect("request");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                headers,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }

        fn with_body(req: Request<Full<Bytes>>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
            let (parts, _) = req.into_parts();
            Request::from_parts(parts, Full::new(body.into()))
        }

        #[test]
        fn every_gate_decision() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let miner = Hotkey::generate();
                let signer = Hotkey::generate();
                let list = validators::AllowList::parse(&format!("{},10\n", signer.ss58)).unwrap();
                let state = Arc::new(State {
                    life: Arc::new(crate::lifecycle::Lifecycle::embedded(model(), "test")),
                    kernel: crate::kernel::select("auto").unwrap(),
                    hotkey_ss58: miner.ss58.clone(),
                    allow_all: false,
                    validators: Some(Arc::new(validators::Shared::new(list))),
                    nonces: Mutex::new(nonce::NonceMap::new(1000, nonce::DEFAULT_FUTURE_SKEW_NS)),
                    keys: crate::sig_batch::KeyCache::default(),
                    btauth: Mutex::new(crate::btauth::replay::ReplayStore::new(
                        crate::btauth::Window::default(),
                        crate::btauth::replay::DEFAULT_CAPACITY,
                    )),
                    inflight: limits::InFlight::default(),
                    verify: limits::VerifyBudget::new(0, 0),
                    conns: Arc::new(crate::conn::Registry::new(64, 0)),
                    conn_stats: server::ConnStats::default(),
                    rate: limits::RateLimiter::new(0.0, 0.0),
                    metrics: metrics::Metrics::default(),
                    max_inflight: 64,
                    max_body: 64 * 1024,
                    body_timeout: Duration::from_secs(5),
                    started: Instant::now(),
                    external_ip: "127.0.0.1".into(),
                    external_port: 0,
                    netuid: None,
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let target = match listener.local_addr().unwrap() {
                    std::net::SocketAddr::V4(a) => a,
                    _ => unreachable!(),
                };
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let lim = ConnLimits {
                    header_timeout: Duration::from_secs(5),
                    max_header_bytes: 16 * 1024,
                    max_connections: 64,
                    max_per_source: 0,
                    idle: Duration::ZERO,
                    write_timeout: Duration::from_secs(5),
                    shutdown_grace: Duration::from_secs(2),
                };
                let srv = tokio::spawn(server::run_until(listener, None, state.clone(), lim, async {
                    let _ = stop_rx.await;
                }));
                let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
                let rows = cm_train::eval::test_set(3, 4);
                let plan = Plan::new(target, miner.ss58.clone(), signer, 12.0, rows, "e2e").unwrap();
                let mut conn = None;
                let now = now_ns();

                // A good request, then its replay.
                let s = one(&mut conn, &plan, 0, now, "u-1").await.expect("good request");
                assert!(s.reward0 > 0.0);
                let (st, h, b) = send(&client, build_request(&plan, 0, now, "u-1").unwrap().0).await;
                assert_eq!((st, &h["bt_header_axon_status_code"]), (401, &HeaderValue::from_static("401")));
                assert!(b["message"].as_str().unwrap().starts_with("Not Verified with error: Nonce"), "{b}");
                // Out-of-order but unseen nonces of the same uuid pass.
                assert!(one(&mut conn, &plan, 1, now - 1, "u-1").await.is_ok());

                // Stale first nonce.
                let (st, _, b) = send(&client, build_request(&plan, 0, now - 60_000_000_000, "u-2").unwrap().0).await;
                assert_eq!(st, 401, "{b}");

                // Tampered signature and wrong signing context.
                let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-3").unwrap();
                let sig_s = req.headers()["bt_header_dendrite_signature"].to_str().unwrap().to_string();
                let flipped = format!("{}{}", &sig_s[..10], if &sig_s[10..11] == "a" { "b" } else { "a" }) + &sig_s[11..];
                req.headers_mut().insert("bt_header_dendrite_signature", flipped.parse().unwrap());
                assert_eq!(send(&client, req).await.0, 401);
                let n = now_ns();
                let (mut req, _, _) = build_request(&plan, 0, n, "u-4").unwrap();
                let msg = Message::new(n, &plan.signer.ss58, &plan.miner, "u-4", EMPTY_BODY_HASH).unwrap();
                let wrong = plan.signer.keypair.as_ref().unwrap().sign(schnorrkel::signing_context(b"").bytes(msg.as_bytes()));
                req.headers_mut().insert("bt_header_dendrite_signature", format!("0x{}", hex::encode(wrong.to_bytes())).parse().unwrap());
                assert_eq!(send(&client, req).await.0, 401);
                // The probe's own forgery gets exactly that refusal.
                let r = one_forged(&mut conn, &plan, 0, now_ns(), "u-1").await;
                assert!(r.is_ok(), "{:?}", r.err());

                // A caller not on the list.
                let stranger = Plan::new(target, plan.miner.clone(), Hotkey::generate(), 12.0, plan.rows.clone(), "e2e").unwrap();
                let (st, h, b) = send(&client, build_request(&stranger, 0, now_ns(), "u-5").unwrap().0).await;
                assert_eq!(st, 403);
                assert!(h["bt_header_axon_status_message"].to_str().unwrap().starts_with("Forbidden. Key is blacklisted: "));
                assert!(b["message"].as_str().unwrap().contains(&stranger.signer.ss58));

                // Ping.
                let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-6").unwrap();
                *req.uri_mut() = format!("http://{target}/Synapse").parse().unwrap();
                let (st, h, b) = send(&client, req).await;
                assert_eq!((st, b["axon"]["status_code"].as_u64()), (200, Some(200)));
                assert_eq!(h["bt_header_axon_status_code"], "200");
                assert_eq!(b["name"], "Synapse");

                // Unknown path, wrong method.
                let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-7").unwrap();
                *req.uri_mut() = format!("http://{target}/Nope").parse().unwrap();
                let (st, _, b) = send(&client, req).await;
                assert_eq!(st, 404);
                assert_eq!(b["message"], "Synapse name 'Nope' not found. Available synapses ['Synapse', 'ConversionSynapse']");
                let get = Request::get(format!("http://{target}/ConversionSynapse")).body(Full::new(Bytes::new())).unwrap();
                assert_eq!(send(&client, get).await.0, 405);

                // Bodies: missing required feature, not JSON, too large.
                let (req, body, _) = build_request(&plan, 0, now_ns(), "u-8").unwrap();
                let mut body: Value = serde_json::from_slice(&body).unwrap();
                body["features"].as_object_mut().unwrap().remove("message_ratio");
                let (st, _, b) = send(&client, with_body(req, serde_json::to_vec(&body).unwrap())).await;
                assert_eq!(st, 400);
                assert!(b["message"].as_str().unwrap().contains("message_ratio"), "{b}");
                let (req, _, _) = build_request(&plan, 0, now_ns(), "u-9").unwrap();
                assert_eq!(send(&client, with_body(req, "not json")).await.0, 400);
                let (req, _, _) = build_request(&plan, 0, now_ns(), "u-10").unwrap();
                assert_eq!(send(&client, with_body(req, vec![b' '; 100 * 1024])).await.0, 413);

                // Still up, and every refusal was counted by reason. A new
                // connection: the 413 closed the pooled client's, which may
                // race that close with its next request.
                let mut fresh = None;
                let r = one(&mut fresh, &plan, 2, now_ns(), "u-11").await;
                assert!(r.is_ok(), "{:?}", r.as_ref().err());
                let m = &state.metrics;
                for (r, n) in [
                    (Reason::NonceReplay, 1),
                    (Reason::NonceStale, 1),
                    (Reason::SignatureMismatch, 3),
                    (Reason::Blacklisted, 1),
                    (Reason::NotFound, 1),
                    (Reason::MethodNotAllowed, 1),
                    (Reason::BadFeatures, 1),
                    (Reason::BadJson, 1),
                    (Reason::BodyTooLarge, 1),
                ] {
                    assert_eq!(m.rejections(r), n, "{r:?}");
                }
                let _ = stop_tx.send(());
                tokio::time::timeout(Duration::from_secs(5), srv).await.expect("server drains").unwrap();
            });
        }
    }
}
