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
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
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

type HttpClient = Client<HttpConnector, Full<Bytes>>;

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
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connect error"),
            Failure::Transport => f.write_str("transport error"),
            Failure::BadAnswer(w) => write!(f, "bad answer: {w}"),
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

/// Everything that stays fixed across one probe run.
struct Plan {
    target: SocketAddrV4,
    miner: String,
    signer: Hotkey,
    timeout: f64,
    rows: Vec<Sample>,
    features: Vec<Value>,
}

/// Builds a signed request exactly as a dendrite does; returns it with the body sent.
fn build_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Value)> {
    let kp = plan
        .signer
        .keypair
        .as_ref()
        .ok_or_else(|| anyhow!("probe hotkey has no secret"))?;
    let me = &plan.signer.ss58;
    let msg =
        Message::new(nonce, me, &plan.miner, uuid, EMPTY_BODY_HASH).map_err(|e| anyhow!("{e}"))?;
    let signature = sig::sign_hex(kp, msg.as_bytes());
    let port = plan.target.port();
    let ip = plan.target.ip().to_string();
    let body = serde_json::json!({
        "name": "ConversionSynapse",
        "timeout": plan.timeout,
        "total_size": 0,
        "header_size": 0,
        "dendrite": terminal(&[
            ("ip", Value::from(DENDRITE_IP)),
            ("version", Value::from(DENDRITE_VERSION)),
            ("nonce", Value::from(nonce)),
            ("uuid", Value::from(uuid)),
            ("hotkey", Value::from(me.as_str())),
            ("signature", Value::from(signature.as_str())),
        ]),
        "axon": terminal(&[("ip", Value::from(ip.as_str())), ("port", Value::from(port)), ("hotkey", Value::from(plan.miner.as_str()))]),
        "computed_body_hash": "",
        "features": plan.features[idx].clone(),
        "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
        "confidence": null,
        "response_time": 0.0,
        "miner_uid": 0,
    });
    let bytes = serde_json::to_vec(&body)?;
    let req = Request::post(format!("http://{}/ConversionSynapse", plan.target))
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
        .header("bt_header_dendrite_signature", signature)
        .header("bt_header_input_obj_features", INPUT_OBJ_DICT)
        .header("header_size", "0")
        .header("total_size", "0")
        .header("computed_body_hash", EMPTY_BODY_HASH)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))?;
    Ok((req, body))
}

/// Checks an answer against the request and the output rules.
fn check_answer(sent: &Value, got: &Value) -> Result<(u8, f64, f64, f64), String> {
    let obj = got.as_object().ok_or("body is not an object")?;
    for (k, v) in sent.as_object().ok_or("request is not an object")? {
        if matches!(
            k.as_str(),
            "axon" | "prediction" | "confidence" | "response_time"
        ) {
            continue;
        }
        if obj.get(k) != Some(v) {
            return Err(format!("field '{k}' not echoed intact"));
        }
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
    for k in ["ip", "port", "hotkey"] {
        if ax.get(k) != sent["axon"].get(k) {
            return Err(format!("axon.{k} not echoed"));
        }
    }
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

async fn one(
    client: &HttpClient,
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<Scored, Failure> {
    let (req, sent) = build_request(plan, idx, nonce, uuid)
        .map_err(|e| Failure::BadAnswer(format!("building the request: {e}")))?;
    let t0 = Instant::now();
    let fut = async {
        let resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                Failure::Connect
            } else {
                Failure::Transport
            }
        })?;
        let status = resp.status().as_u16();
        let hdr_status = resp
            .headers()
            .get("bt_header_axon_status_code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Transport)?
            .to_bytes();
        Ok::<_, Failure>((status, hdr_status, ctype, body))
    };
    let (status, hdr_status, ctype, body) =
        match tokio::time::timeout(Duration::from_secs_f64(plan.timeout), fut).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(r) => r?,
        };
    let latency_us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if hdr_status.as_deref() != Some("200") {
        return Err(Failure::BadAnswer(
            "bt_header_axon_status_code is not 200".into(),
        ));
    }
    if !ctype.starts_with("application/json") {
        return Err(Failure::BadAnswer(format!("content-type {ctype:?}")));
    }
    let got: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::BadAnswer(format!("invalid JSON: {e}")))?;
    let (class, t, _c, rt) = check_answer(&sent, &got).map_err(Failure::BadAnswer)?;
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

/// Shared progress of all slots.
struct Progress {
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
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

async fn slot(
    client: HttpClient,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
    period: Option<Duration>,
    uuid_every: u64,
) -> Tally {
    let mut t = Tally::default();
    let mut uuid = new_uuid();
    let mut sent_with_uuid = 0u64;
    let mut last_nonce = 0u64;
    let mut ticker = period.map(|p| {
        let mut i = tokio::time::interval(p);
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
        let nonce = now_ns().max(last_nonce + 1);
        last_nonce = nonce;
        let idx = (i % plan.rows.len() as u64) as usize;
        match one(&client, &plan, idx, nonce, &uuid).await {
            Ok(s) => t.ok.push(s),
            Err(f) => {
                if t.first_failures.len() < 5 {
                    t.first_failures.push(format!("request {i}: {f}"));
                }
                *t.failures.entry(f).or_default() += 1;
            }
        }
    }
    t
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn miner_hotkey_from_health(client: &HttpClient, target: SocketAddrV4) -> Result<String> {
    let req = Request::get(format!("http://{target}/health")).body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .context("GET /health timed out")?
        .with_context(|| format!("GET http://{target}/health"))?;
    let body = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&body).context("/health is not JSON")?;
    v.get("hotkey")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("/health has no hotkey; pass --hotkey"))
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
    let features: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, s)| Value::Object(features_json(&s.raw, &format!("probe-{}-{i}", a.seed))))
        .collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(a.concurrency)
            .build(conn);
        let miner = match &a.hotkey {
            Some(h) => Hotkey::from_ss58(h)?.ss58,
            None => miner_hotkey_from_health(&client, target).await?,
        };
        let plan = Arc::new(Plan {
            target,
            miner,
            signer,
            timeout: a.timeout,
            rows,
            features,
        });
        let duration = a.duration.map(|d| Duration::from_secs_f64(d.max(0.0)));
        let progress = Arc::new(Progress {
            next: AtomicU64::new(0),
            limit: if duration.is_some() {
                None
            } else {
                Some(a.n as u64)
            },
            deadline: duration.map(|d| Instant::now() + d),
        });
        let period = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.concurrency as f64 / a.rate));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..a.concurrency)
            .map(|_| {
                tokio::spawn(slot(
                    client.clone(),
                    plan.clone(),
                    progress.clone(),
                    period,
                    a.uuid_every,
                ))
            })
            .collect();
        let mut all = Tally::default();
        for h in handles {
            let t = h.await?;
            all.ok.extend(t.ok);
            for (k, v) in t.failures {
                *all.failures.entry(k).or_default() += v;
            }
            all.first_failures.extend(t.first_failures);
        }
        let wall = t0.elapsed().as_secs_f64();
        report(a, &plan, &all, wall)
    })
}

fn report(a: &ProbeArgs, plan: &Plan, t: &Tally, wall: f64) -> Result<i32> {
    let ok = t.ok.len() as u64;
    let errors: u64 = t.failures.values().sum();
    let total = ok + errors;
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
    let thr = if wall > 0.0 { total as f64 / wall } else { 0.0 };
    println!(
        "probe: {total} requests to {} (miner {}), concurrency {}, seed {}, {} conversations",
        plan.target,
        plan.miner,
        a.concurrency,
        a.seed,
        plan.rows.len()
    );
    println!("  ok {ok}  errors {errors}");
    for (f, n) in &t.failures {
        println!("  error {f}: {n}");
    }
    for s in t.first_failures.iter().take(5) {
        println!("    e.g. {s}");
    }
    println!("  latency ms  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  max {pmax:.3}");
    println!("  throughput {thr:.1} req/s over {wall:.2} s");
    println!(
        "  miner response_time mean {resp_us:.1} us; predicted positive {:.2}%",
        pos * 100.0
    );
    let ratio = if orc > 0.0 { r0 / orc } else { 0.0 };
    println!(
        "  mean reward (response_time 0, as eval) model {r0:.6}  oracle {orc:.6}  ratio {ratio:.6}"
    );
    println!("  mean reward with the miner's response_time {rrt:.6}");
    if a.json {
        let by_status: BTreeMap<String, u64> = t
            .failures
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let j = serde_json::json!({
            "requests": total, "ok": ok, "errors": errors, "errors_by_kind": by_status,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": pmax,
            "throughput_rps": thr, "wall_s": wall,
            "mean_reward": r0, "oracle_mean_reward": orc, "reward_ratio": ratio,
            "mean_reward_with_response_time": rrt, "mean_response_time_us": resp_us,
            "positive_rate": pos,
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

    #[test]
    fn requests_verify_under_the_miner_key() {
        let miner = Hotkey::generate();
        let rows = cm_train::eval::test_set(1, 1);
        let features = vec![Value::Object(features_json(&rows[0].raw, "s"))];
        let plan = Plan {
            target: "127.0.0.1:9".parse().unwrap(),
            miner: miner.ss58.clone(),
            signer: Hotkey::generate(),
            timeout: 12.0,
            rows,
            features,
        };
        let (req, body) = build_request(&plan, 0, 1_795_626_734_383_137_861, "u-1").unwrap();
        let a = crate::gate::parse_auth(req.headers()).unwrap();
        a.verify(&miner.ss58).unwrap();
        crate::gate::check_body_hash(&a).unwrap();
        assert_eq!(
            body["dendrite"]["nonce"].as_u64(),
            Some(1_795_626_734_383_137_861)
        );
        assert!(a.verify(&plan.signer.ss58).is_err());
    }

    #[test]
    fn answer_checks_catch_broken_rules() {
        let sent = serde_json::json!({"features": {"a": 1}, "axon": {"ip": "1", "port": 2, "hotkey": "h"}, "prediction": {}});
        let good = serde_json::json!({"features": {"a": 1}, "axon": {"ip": "1", "port": 2, "hotkey": "h", "status_code": 200, "status_message": "Success"},
            "prediction": {"conversion_happened": 1, "time_to_conversion_seconds": 60.0}, "confidence": 0.9, "response_time": 0.0001});
        assert!(check_answer(&sent, &good).is_ok());
        let mut bad = good.clone();
        bad["prediction"]["time_to_conversion_seconds"] = serde_json::json!(-1.0);
        assert!(check_answer(&sent, &bad).is_err());
        let mut bad = good.clone();
        bad["features"]["a"] = serde_json::json!(2);
        assert!(check_answer(&sent, &bad).is_err());
        let mut bad = good;
        bad["confidence"] = serde_json::json!(1.5);
        assert!(check_answer(&sent, &bad).is_err());
    }

    mod end_to_end {
        //! The real server in-process on a loopback port, driven by the
        //! probe's own request builder: one row per gate decision.
        use super::super::*;
        use crate::server::{self, ConnLimits, State};
        use crate::{limits, metrics, nonce, reason::Reason, validators};
        use hyper::header::HeaderValue;
        use std::sync::Mutex;

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
                    keys: crate::sig::KeyCache::default(),
                    inflight: limits::InFlight::default(),
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
                    shutdown_grace: Duration::from_secs(2),
                };
                let srv = tokio::spawn(server::run_until(listener, state.clone(), lim, async {
                    let _ = stop_rx.await;
                }));
                let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
                let rows = cm_train::eval::test_set(3, 4);
                let features = rows.iter().map(|r| Value::Object(features_json(&r.raw, "e2e"))).collect();
                let plan = Plan { target, miner: miner.ss58.clone(), signer, timeout: 12.0, rows, features };
                let now = now_ns();

                // A good request, then its replay.
                let s = one(&client, &plan, 0, now, "u-1").await.expect("good request");
                assert!(s.reward0 > 0.0);
                let (st, h, b) = send(&client, build_request(&plan, 0, now, "u-1").unwrap().0).await;
                assert_eq!((st, &h["bt_header_axon_status_code"]), (401, &HeaderValue::from_static("401")));
                assert!(b["message"].as_str().unwrap().starts_with("Not Verified with error: Nonce"), "{b}");
                // Out-of-order but unseen nonces of the same uuid pass.
                assert!(one(&client, &plan, 1, now - 1, "u-1").await.is_ok());

                // Stale first nonce.
                let (st, _, b) = send(&client, build_request(&plan, 0, now - 60_000_000_000, "u-2").unwrap().0).await;
                assert_eq!(st, 401, "{b}");

                // Tampered signature and wrong signing context.
                let (mut req, _) = build_request(&plan, 0, now_ns(), "u-3").unwrap();
                let sig_s = req.headers()["bt_header_dendrite_signature"].to_str().unwrap().to_string();
                let flipped = format!("{}{}", &sig_s[..10], if &sig_s[10..11] == "a" { "b" } else { "a" }) + &sig_s[11..];
                req.headers_mut().insert("bt_header_dendrite_signature", flipped.parse().unwrap());
                assert_eq!(send(&client, req).await.0, 401);
                let n = now_ns();
                let (mut req, _) = build_request(&plan, 0, n, "u-4").unwrap();
                let msg = Message::new(n, &plan.signer.ss58, &plan.miner, "u-4", EMPTY_BODY_HASH).unwrap();
                let wrong = plan.signer.keypair.as_ref().unwrap().sign(schnorrkel::signing_context(b"").bytes(msg.as_bytes()));
                req.headers_mut().insert("bt_header_dendrite_signature", format!("0x{}", hex::encode(wrong.to_bytes())).parse().unwrap());
                assert_eq!(send(&client, req).await.0, 401);

                // A caller not on the list.
                let stranger = Plan {
                    target,
                    miner: plan.miner.clone(),
                    signer: Hotkey::generate(),
                    timeout: 12.0,
                    rows: plan.rows.clone(),
                    features: plan.features.clone(),
                };
                let (st, h, b) = send(&client, build_request(&stranger, 0, now_ns(), "u-5").unwrap().0).await;
                assert_eq!(st, 403);
                assert!(h["bt_header_axon_status_message"].to_str().unwrap().starts_with("Forbidden. Key is blacklisted: "));
                assert!(b["message"].as_str().unwrap().contains(&stranger.signer.ss58));

                // Ping.
                let (mut req, _) = build_request(&plan, 0, now_ns(), "u-6").unwrap();
                *req.uri_mut() = format!("http://{target}/Synapse").parse().unwrap();
                let (st, h, b) = send(&client, req).await;
                assert_eq!((st, b["axon"]["status_code"].as_u64()), (200, Some(200)));
                assert_eq!(h["bt_header_axon_status_code"], "200");
                assert_eq!(b["name"], "Synapse");

                // Unknown path, wrong method.
                let (mut req, _) = build_request(&plan, 0, now_ns(), "u-7").unwrap();
                *req.uri_mut() = format!("http://{target}/Nope").parse().unwrap();
                let (st, _, b) = send(&client, req).await;
                assert_eq!(st, 404);
                assert_eq!(b["message"], "Synapse name 'Nope' not found. Available synapses ['Synapse', 'ConversionSynapse']");
                let get = Request::get(format!("http://{target}/ConversionSynapse")).body(Full::new(Bytes::new())).unwrap();
                assert_eq!(send(&client, get).await.0, 405);

                // Bodies: missing required feature, not JSON, too large.
                let (req, mut body) = build_request(&plan, 0, now_ns(), "u-8").unwrap();
                body["features"].as_object_mut().unwrap().remove("message_ratio");
                let (st, _, b) = send(&client, with_body(req, serde_json::to_vec(&body).unwrap())).await;
                assert_eq!(st, 400);
                assert!(b["message"].as_str().unwrap().contains("message_ratio"), "{b}");
                let (req, _) = build_request(&plan, 0, now_ns(), "u-9").unwrap();
                assert_eq!(send(&client, with_body(req, "not json")).await.0, 400);
                let (req, _) = build_request(&plan, 0, now_ns(), "u-10").unwrap();
                assert_eq!(send(&client, with_body(req, vec![b' '; 100 * 1024])).await.0, 413);

                // Still up, and every refusal was counted by reason. A new
                // client: the 413 closes its connection, and a pooled client
                // may race that close with its next request.
                let fresh: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
                let r = one(&fresh, &plan, 2, now_ns(), "u-11").await;
                assert!(r.is_ok(), "{:?}", r.as_ref().err());
                let m = &state.metrics;
                for (r, n) in [
                    (Reason::NonceReplay, 1),
                    (Reason::NonceStale, 1),
                    (Reason::SignatureMismatch, 2),
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
