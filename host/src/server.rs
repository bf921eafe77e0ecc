//! The axon server: hyper HTTP/1.1 on tokio, routes, and the request path.
//!
//! One handler runs a request from gate to answer inline on the runtime
//! thread: the model takes microseconds, so handing it to a blocking pool
//! would cost more than it saves. Connections are bounded by a semaphore,
//! headers by hyper's size limit and read timeout, bodies by a cap checked
//! against `Content-Length` first and while reading, with their own timeout.
//! Shutdown stops accepting, lets every in-flight request finish (hyper's
//! graceful close), and gives up after a grace period.

use crate::btauth::{self, replay::ReplayStore, BtauthError, Protocol};
use crate::echo;
use crate::gate::{self, Auth, Reject};
use crate::limits::{self, InFlight, RateLimiter};
use crate::metrics::{Gauges, Metrics, Route};
use crate::nonce::NonceMap;
use crate::reason::Reason;
use crate::synapse::{self, Answer, AxonId};
use crate::validators;
use bytes::Bytes;
use cm_core::kernels::Kernel;
use cm_core::parse::{parse_request, ParseError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The synapse route names, as the Python axon lists them in its 404.
pub const CONVERSION_SYNAPSE: &str = "ConversionSynapse";
pub const PING_SYNAPSE: &str = "Synapse";
/// Longest path segment quoted back in a 404 message.
const MAX_QUOTED_NAME: usize = 64;

/// Everything a request handler reads.
pub struct State {
    /// The served model (swappable), shadow, request log and drift monitor.
    pub life: Arc<crate::lifecycle::Lifecycle>,
    pub kernel: Kernel,
    pub hotkey_ss58: String,
    pub allow_all: bool,
    pub validators: Option<Arc<validators::Shared>>,
    pub nonces: Mutex<NonceMap>,
    pub keys: crate::sig::KeyCache,
    /// btauth/1 nonces accepted inside its freshness window.
    pub btauth: Mutex<ReplayStore>,
    pub inflight: InFlight,
    pub rate: RateLimiter,
    pub metrics: Metrics,
    pub max_inflight: usize,
    pub max_body: usize,
    pub body_timeout: Duration,
    pub started: Instant,
    pub external_ip: String,
    pub external_port: u16,
    pub netuid: Option<u16>,
}

type Resp = Response<Full<Bytes>>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

impl State {
    fn me(&self) -> AxonId<'_> {
        AxonId {
            hotkey: &self.hotkey_ss58,
            ip: &self.external_ip,
            port: self.external_port,
        }
    }

    fn reject(&self, rej: &Reject, t0: Instant, req: Option<&hyper::HeaderMap>) -> Resp {
        self.metrics.reject(rej.reason);
        tracing::debug!(
            reason = rej.reason.label(),
            status = rej.reason.status(),
            "refused: {}",
            rej.message()
        );
        synapse::error(rej, t0.elapsed().as_secs_f64(), req, &self.me())
    }

    /// Stake rank of an allowed caller, or None when the caller is not allowed.
    fn admission(&self, key: &[u8; 32]) -> Option<f64> {
        let entry = self.validators.as_ref().and_then(|v| v.get(key));
        match entry {
            Some(e) => Some(e.rank),
            None if self.allow_all => Some(0.0),
            None => None,
        }
    }

    fn nonce_lock(&self) -> std::sync::MutexGuard<'_, NonceMap> {
        match self.nonces.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn btauth_lock(&self) -> std::sync::MutexGuard<'_, ReplayStore> {
        match self.btauth.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Routes one request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let t0 = Instant::now();
    let path = req.uri().path();
    let route = match path {
        "/ConversionSynapse" => Route::Conversion,
        "/Synapse" => Route::Ping,
        "/health" => Route::Health,
        "/metrics" => Route::Metrics,
        _ => Route::Other,
    };
    let protocol = Protocol::of(req.headers());
    state.metrics.request(route, protocol);
    let method_ok = match route {
        Route::Conversion | Route::Ping => req.method() == Method::POST,
        Route::Health | Route::Metrics => {
            req.method() == Method::GET || req.method() == Method::HEAD
        }
        Route::Other => true,
    };
    if !method_ok {
        let rej = Reject::new(
            Reason::MethodNotAllowed,
            format!("Method Not Allowed: {} {}", req.method(), path),
        );
        let mut r = state.reject(&rej, t0, None);
        let allow = if matches!(route, Route::Conversion | Route::Ping) {
            "POST"
        } else {
            "GET, HEAD"
        };
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }
    Ok(match route {
        Route::Conversion | Route::Ping => {
            use tracing::Instrument as _;
            let name = if route == Route::Conversion {
                CONVERSION_SYNAPSE
            } else {
                PING_SYNAPSE
            };
            // Debug lines of this request name its protocol.
            let span = tracing::debug_span!("request", protocol = protocol.label());
            axon(&state, req, name, t0, protocol).instrument(span).await
        }
        Route::Health => health(&state),
        Route::Metrics => metrics(&state),
        Route::Other => {
            let name: String = path
                .split('/')
                .nth(1)
                .unwrap_or("")
                .chars()
                .take(MAX_QUOTED_NAME)
                .collect();
            let rej = Reject::new(
                Reason::NotFound,
                format!("Synapse name '{name}' not found. Available synapses ['{PING_SYNAPSE}', '{CONVERSION_SYNAPSE}']"),
            );
            state.reject(&rej, t0, None)
        }
    })
}

fn content_length(h: &hyper::HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The header-only part of the gate (everything before the body is read).
async fn gate(state: &State, headers: &hyper::HeaderMap, t0: Instant) -> Result<(), Reject> {
    if let Some(n) = content_length(headers) {
        if n > state.max_body as u64 {
            return Err(Reject::new(
                Reason::BodyTooLarge,
                format!(
                    "body of {n} bytes exceeds the {} byte limit",
                    state.max_body
                ),
            ));
        }
    }
    let auth: Auth<'_> = gate::parse_auth(headers)?;
    let rank = state.admission(&auth.hotkey).ok_or_else(|| {
        Reject::new(
            Reason::Blacklisted,
            format!(
                "hotkey {} is not on this miner's validators list.",
                auth.hotkey_ss58
            ),
        )
    })?;
    if !limits::admit(state.max_inflight, state.inflight.current(), rank) {
        return Err(Reject::new(
            Reason::Overloaded,
            "too many requests in flight; lower-stake callers are refused first",
        ));
    }
    gate::check_body_hash(&auth)?;
    let key = auth.endpoint_key();
    let now = now_ns();
    state
        .nonce_lock()
        .check(key, auth.nonce, auth.timeout_s, now)?;
    state.metrics.gate.observe(t0.elapsed());

    let tv = Instant::now();
    let verified = auth.verify_batched(&state.hotkey_ss58, &state.keys).await;
    state.metrics.verify.observe(tv.elapsed());
    verified?;

    state
        .nonce_lock()
        .commit(key, auth.nonce, auth.timeout_s, now)?;
    if !state.rate.allow(&auth.hotkey, Instant::now()) {
        return Err(Reject::new(
            Reason::RateLimited,
            format!("hotkey {} is over its rate limit", auth.hotkey_ss58),
        ));
    }
    Ok(())
}

fn btauth_reject(e: BtauthError) -> Reject {
    Reject::new(e.reason(), e.to_string())
}

/// The btauth/1 gate (btauth.rs): the same allow-list, in-flight cap and rate
/// limit as [`gate`], but its signature covers the body's hash, so the body
/// is read (under the same cap and timeout) after every header-only check
/// and before the signature check.
async fn btauth_gate(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    t0: Instant,
) -> Result<Bytes, Reject> {
    if let Some(n) = content_length(&parts.headers) {
        if n > state.max_body as u64 {
            return Err(Reject::new(
                Reason::BodyTooLarge,
                format!(
                    "body of {n} bytes exceeds the {} byte limit",
                    state.max_body
                ),
            ));
        }
    }
    let req = btauth::parse(&parts.headers).map_err(btauth_reject)?;
    let rank = state.admission(&req.hotkey).ok_or_else(|| {
        Reject::new(
            Reason::Blacklisted,
            format!(
                "hotkey {} is not on this miner's validators list.",
                req.hotkey_ss58
            ),
        )
    })?;
    if !limits::admit(state.max_inflight, state.inflight.current(), rank) {
        return Err(Reject::new(
            Reason::Overloaded,
            "too many requests in flight; lower-stake callers are refused first",
        ));
    }
    req.check_receiver(&state.hotkey_ss58)
        .map_err(btauth_reject)?;
    let window = *state.btauth_lock().window();
    req.check_fresh(&window, now_ns()).map_err(btauth_reject)?;
    if state.btauth_lock().contains(&req.hotkey, req.nonce) {
        return Err(btauth_reject(BtauthError::Replayed));
    }
    state.metrics.gate.observe(t0.elapsed());

    let bytes = read_body(state, body).await?;
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let tv = Instant::now();
    let verified = req.verify(parts.method.as_str(), target, &bytes);
    state.metrics.verify.observe(tv.elapsed());
    verified.map_err(btauth_reject)?;

    // Fresh when verified (the body may have been slow), then exactly once.
    let now = now_ns();
    req.check_fresh(&window, now).map_err(btauth_reject)?;
    state
        .btauth_lock()
        .commit(&req.hotkey, req.nonce, now)
        .map_err(btauth_reject)?;
    if !state.rate.allow(&req.hotkey, Instant::now()) {
        return Err(Reject::new(
            Reason::RateLimited,
            format!("hotkey {} is over its rate limit", req.hotkey_ss58),
        ));
    }
    Ok(bytes)
}

async fn read_body(state: &State, body: Incoming) -> Result<Bytes, Reject> {
    let limited = Limited::new(body, state.max_body);
    let wait = if state.body_timeout.is_zero() {
        Duration::MAX
    } else {
        state.body_timeout
    };
    match tokio::time::timeout(wait, limited.collect()).await {
        Err(_) => Err(Reject::new(
            Reason::BodyTimeout,
            format!(
                "body not received within {:.1} s",
                state.body_timeout.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::new(
            Reason::BodyTooLarge,
            format!("body exceeds the {} byte limit", state.max_body),
        )),
        Ok(Err(e)) => Err(Reject::new(
            Reason::BodyRead,
            format!("reading the body failed: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn parse_error(e: ParseError) -> Reject {
    match e {
        ParseError::Json(_) | ParseError::NotAnObject => {
            Reject::new(Reason::BadJson, e.to_string())
        }
        _ => Reject::new(Reason::BadFeatures, e.to_string()),
    }
}

/// The general echo: any valid JSON object, through a `Value` tree.
fn echo_via_value(
    bytes: &[u8],
    name: &str,
    answer: Option<&Answer>,
    elapsed: f64,
    me: &AxonId<'_>,
) -> Result<Vec<u8>, Reject> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Reject::new(Reason::BadJson, format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| Reject::new(Reason::BadJson, "the body is not a JSON object"))?;
    synapse::fill_success(obj, name, answer, elapsed, elapsed, me);
    serde_json::to_vec(&value)
        .map_err(|e| Reject::new(Reason::Internal, format!("Internal Server Error: {e}")))
}

/// A synapse route: gate, body, model, answer. Both protocols share all of
/// it but the gate; a request carrying both header sets is refused (400).
async fn axon(
    state: &State,
    req: Request<Incoming>,
    name: &str,
    t0: Instant,
    protocol: Protocol,
) -> Resp {
    let _in = state.inflight.enter();
    let (parts, body) = req.into_parts();
    let bytes = match protocol {
        Protocol::Btauth => btauth_gate(state, &parts, body, t0).await,
        Protocol::Mixed => Err(Reject::new(
            Reason::MixedAuth,
            "both axon (bt_header_dendrite_*) and btauth/1 (X-Bittensor-*) authentication headers; send one set",
        )),
        Protocol::Axon | Protocol::None => match gate(state, &parts.headers, t0).await {
            Ok(()) => read_body(state, body).await,
            Err(rej) => Err(rej),
        },
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(rej) => return state.reject(&rej, t0, Some(&parts.headers)),
    };
    let tp = Instant::now();
    let answer = if name == CONVERSION_SYNAPSE {
        match parse_request(&bytes) {
            Ok(f) => {
                // One model for the whole prediction, however a reload races it.
                let active = state.life.current();
                let p = active.model().predict(&f, state.kernel);
                let answer = Answer {
                    conversion_happened: p.conversion_happened,
                    time_to_conversion_seconds: synapse::f32_to_json(p.time_to_conversion_seconds),
                    confidence: synapse::f32_to_json(p.confidence),
                };
                state.metrics.predict.observe(tp.elapsed());
                after_answer(state, &f, &p, &active.sha256);
                Some(answer)
            }
            Err(e) => return state.reject(&parse_error(e), t0, Some(&parts.headers)),
        }
    } else {
        None
    };
    if let Some(a) = &answer {
        state
            .metrics
            .prediction(a.conversion_happened == 1, a.confidence as f32);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let out =
        match echo::splice_success(&bytes, name, answer.as_ref(), elapsed, elapsed, &state.me()) {
            Some(out) => out,
            None => match echo_via_value(&bytes, name, answer.as_ref(), elapsed, &state.me()) {
                Ok(out) => out,
                Err(rej) => return state.reject(&rej, t0, Some(&parts.headers)),
            },
        };
    state.metrics.success();
    state.metrics.total.observe(t0.elapsed());
    if tracing::enabled!(tracing::Level::DEBUG) {
        let hk = parts
            .headers
            .get(gate::H_HOTKEY)
            .or_else(|| parts.headers.get(btauth::H_HOTKEY))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::debug!(route = name, hotkey = hk, us = t0.elapsed().as_micros() as u64, class = ?answer.map(|a| a.conversion_happened), "answered 200");
    }
    synapse::success(out, name, elapsed, &parts.headers, &state.me())
}

/// Work that never changes the answer: request log, drift counts, shadow model.
fn after_answer(
    state: &State,
    f: &cm_core::parse::Features<'_>,
    p: &cm_core::model::Prediction,
    sha: &str,
) {
    let life = &state.life;
    if let Some(log) = &life.reqlog {
        log.record(&f.values, f.present, p, sha);
    }
    if let Some(d) = &life.drift {
        d.observe(&f.values, f.present);
    }
    if let Some(sh) = &life.shadow {
        sh.observe(f, state.kernel, p);
    }
}

fn opt(x: Option<f64>) -> serde_json::Value {
    x.map(serde_json::Value::from)
        .unwrap_or(serde_json::Value::Null)
}

/// The lifecycle part of /health.
fn health_lifecycle(state: &State) -> (serde_json::Value, serde_json::Value) {
    let life = &state.life;
    let active = life.current();
    let (ok, rejected) = life.reloads();
    let model = serde_json::json!({
        "sha256": active.sha256,
        "source": active.source,
        "reloads_ok": ok,
        "reloads_rejected": rejected,
    });
    let shadow = match &life.shadow {
        None => serde_json::Value::Null,
        Some(sh) => {
            let s = sh.stats();
            serde_json::json!({
                "sha256": sh.active.sha256,
                "source": sh.active.source,
                "requests": s.n,
                "agreement": opt(s.agreement()),
                "mean_abs_confidence_diff": opt(s.mean_conf_diff()),
                "both_positive": s.both_positive,
                "mean_abs_time_diff_s": opt(s.mean_time_diff()),
            })
        }
    };
    (model, shadow)
}

/// The lifecycle part of /metrics.
fn metrics_lifecycle(state: &State, o: &mut String) {
    use std::fmt::Write as _;
    let life = &state.life;
    let active = life.current();
    let (ok, rejected) = life.reloads();
    let _ = writeln!(o, "# HELP cm_model_reloads_total Model reloads (SIGHUP or file change), by result.\n# TYPE cm_model_reloads_total counter\ncm_model_reloads_total{{result=\"ok\"}} {ok}\ncm_model_reloads_total{{result=\"rejected\"}} {rejected}");
    let _ = writeln!(o, "# HELP cm_model_info The model answering now.\n# TYPE cm_model_info gauge\ncm_model_info{{sha256=\"{}\"}} 1", active.sha256);
    if let Some(sh) = &life.shadow {
        let s = sh.stats();
        let _ = writeln!(o, "# HELP cm_shadow_requests_total Requests the shadow model also answered.\n# TYPE cm_shadow_requests_total counter\ncm_shadow_requests_total{{sha256=\"{}\"}} {}", sh.active.sha256, s.n);
        let _ = writeln!(o, "# HELP cm_shadow_agree_total Requests where shadow and served model predicted the same class.\n# TYPE cm_shadow_agree_total counter\ncm_shadow_agree_total {}", s.agree);
        let _ = writeln!(o, "# HELP cm_shadow_agreement_ratio Share of requests with the same class.\n# TYPE cm_shadow_agreement_ratio gauge\ncm_shadow_agreement_ratio {}", s.agreement().unwrap_or(0.0));
        let _ = writeln!(o, "# HELP cm_shadow_confidence_abs_diff_mean Mean |confidence difference|.\n# TYPE cm_shadow_confidence_abs_diff_mean gauge\ncm_shadow_confidence_abs_diff_mean {}", s.mean_conf_diff().unwrap_or(0.0));
        let _ = writeln!(o, "# HELP cm_shadow_both_positive_total Requests where both models predicted a conversion.\n# TYPE cm_shadow_both_positive_total counter\ncm_shadow_both_positive_total {}", s.both_positive);
        let _ = writeln!(o, "# HELP cm_shadow_time_abs_diff_seconds_mean Mean |time difference| where both predicted a conversion.\n# TYPE cm_shadow_time_abs_diff_seconds_mean gauge\ncm_shadow_time_abs_diff_seconds_mean {}", s.mean_time_diff().unwrap_or(0.0));
    }
    if let Some(log) = &life.reqlog {
        log.render(o);
    }
    if let Some(d) = &life.drift {
        d.render(o);
    }
}

fn gauges(state: &State) -> (usize, usize, f64) {
    let nonce_keys = state.nonce_lock().len();
    let validators = state.validators.as_ref().map(|v| v.len()).unwrap_or(0);
    (
        nonce_keys,
        validators,
        state.started.elapsed().as_secs_f64(),
    )
}

fn health(state: &State) -> Resp {
    let (nonce_keys, validators, uptime) = gauges(state);
    let (model, shadow) = health_lifecycle(state);
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "model_sha256": model["sha256"],
        "model": model,
        "shadow": shadow,
        "kernel": state.kernel.name(),
        "weights": cm_core::kernels::W_NAME,
        "uptime_s": uptime,
        "hotkey": state.hotkey_ss58,
        "netuid": state.netuid,
        "external_ip": state.external_ip,
        "external_port": state.external_port,
        "allow_all": state.allow_all,
        "validators": validators,
        "inflight": state.inflight.current(),
        "nonce_keys": nonce_keys,
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn metrics(state: &State) -> Resp {
    let (nonce_keys, validators, uptime_s) = gauges(state);
    let active = state.life.current();
    let mut text = state.metrics.render(&Gauges {
        inflight: state.inflight.current(),
        nonce_keys,
        validators,
        uptime_s,
        kernel: state.kernel.name(),
        version: env!("CARGO_PKG_VERSION"),
        model_sha256: &active.sha256,
    });
    metrics_lifecycle(state, &mut text);
    {
        use std::fmt::Write as _;
        let (batches, sigs) = state.keys.batch_stats();
        let _ = writeln!(text, "# HELP cm_verify_batches_total Signature checks run (one batch equation, or one lone signature).\n# TYPE cm_verify_batches_total counter\ncm_verify_batches_total {batches}");
        let _ = writeln!(text, "# HELP cm_verify_batched_signatures_total Signatures checked in those batches.\n# TYPE cm_verify_batched_signatures_total counter\ncm_verify_batched_signatures_total {sigs}");
        let alone = state.keys.unbatched();
        let _ = writeln!(text, "# HELP cm_verify_unbatched_signatures_total Signatures of multi-request batches checked one by one because too many recent signatures failed.\n# TYPE cm_verify_unbatched_signatures_total counter\ncm_verify_unbatched_signatures_total {alone}");
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Connection-level limits.
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Resolves when SIGTERM or Ctrl-C arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// Accepts connections until SIGTERM or Ctrl-C, then drains.
pub async fn run(listener: tokio::net::TcpListener, state: Arc<State>, lim: ConnLimits) {
    run_until(listener, state, lim, shutdown_signal()).await
}

/// Accepts connections until `stop` resolves, then drains.
pub async fn run_until(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    lim: ConnLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout((!lim.header_timeout.is_zero()).then_some(lim.header_timeout))
        .max_header_size(lim.max_header_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(lim.max_connections.max(1)));
    let signal = stop;
    tokio::pin!(signal);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut signal => break,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let fut = graceful.watch(conn);
        let st_conn = state.clone();
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                st_conn
                    .metrics
                    .conn_error(crate::metrics::ConnError::of(&e));
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        inflight = state.inflight.current(),
        "stopped accepting; letting in-flight requests finish (up to {:.1} s)",
        lim.shutdown_grace.as_secs_f64()
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(lim.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
