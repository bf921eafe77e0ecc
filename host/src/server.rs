//! The axon server's routes: what each request gets, from gate to answer.
//!
//! One handler runs a request from gate to answer inline on the runtime
//! thread: the model takes microseconds, so handing it to a blocking pool
//! would cost more than it saves. The gate's checks are [`crate::gate`]'s
//! pure functions around the batched signature check; connections and their
//! limits are [`crate::conn`]'s. Two routers: [`handle`] for the public
//! port (the synapses, and a cheap `/health`), and [`handle_ops`] for the
//! operator's listener (`--metrics.addr`, loopback by default), which holds
//! everything that is not for validators (`/metrics`, `/health`). Bodies are
//! bounded by a cap checked against `Content-Length` first and while
//! reading, with their own timeout.

use crate::accounting::{self, Outcome};
use crate::btauth::{self, replay::ReplayStore, BtauthError, Protocol};
use crate::conn::{self, Conn};
use crate::gate::{self, Reject};
use crate::limits::{InFlight, InFlightGuard, RateLimiter, VerifyBudget, VerifyPermit};
use crate::metrics::{Metrics, Route};
use crate::nonce::NonceMap;
use crate::reason::Reason;
use crate::synapse::{self, AxonId};
use crate::validators;
use bytes::Bytes;
use cm_core::kernels::Kernel;
use cm_core::parse::{KeyOrder, ParseError};
use cm_core::serve::{self as core_serve, Refused};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    pub keys: crate::sig_batch::KeyCache,
    /// btauth/1 nonces accepted inside its freshness window.
    pub btauth: Mutex<ReplayStore>,
    /// Verified requests in flight (the stake-ranked cap counts these).
    pub inflight: InFlight,
    /// Requests waiting for their signature check, per source.
    pub verify: VerifyBudget,
    /// Open connections on the public port.
    pub conns: Arc<conn::Registry>,
    /// Connection events on the public port.
    pub conn_stats: ConnStats,
    pub rate: RateLimiter,
    pub metrics: Metrics,
    pub max_inflight: usize,
    pub max_body: usize,
    pub body_timeout: Duration,
    pub started: Instant,
    pub external_ip: String,
    pub external_port: u16,
    pub netuid: Option<u16>,
    /// Per-validator counts (crate::accounting), shown by /status and /metrics.
    pub accounting: crate::accounting::Accounting,
}

type Resp = Response<Full<Bytes>>;

/// Counts of what the connection rules did (for /metrics).
#[derive(Default)]
pub struct ConnStats {
    pub refused_per_source: AtomicU64,
    pub refused_full: AtomicU64,
    pub evicted: AtomicU64,
    pub idle_closed: AtomicU64,
    pub write_timeouts: AtomicU64,
}

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

    /// The refusal's answer, counted; `caller` is a synapse request's
    /// headers and the protocol they were read as, for its validator row.
    fn reject(
        &self,
        rej: &Reject,
        t0: Instant,
        caller: Option<(&hyper::HeaderMap, Protocol)>,
    ) -> Resp {
        self.metrics.reject(rej.reason);
        if let Some((h, protocol)) = caller {
            self.account(h, protocol, Outcome::Refused(rej.reason), t0);
        }
        let req = caller.map(|(h, _)| h);
        tracing::debug!(
            reason = rej.reason.label(),
            status = rej.reason.status(),
            "refused: {}",
            rej.message()
        );
        synapse::error(rej, t0.elapsed().as_secs_f64(), req, &self.me())
    }

    /// Counts a synapse request in its caller's row (crate::accounting).
    fn account(
        &self,
        headers: &hyper::HeaderMap,
        protocol: Protocol,
        outcome: Outcome,
        t0: Instant,
    ) {
        // The caller's row is the hotkey its headers claim, in whichever
        // protocol it spoke (a request with both sets counts as axon).
        let (name, protocol) = match protocol {
            Protocol::Btauth => (btauth::H_HOTKEY, accounting::Protocol::Btauth),
            _ => (gate::H_HOTKEY, accounting::Protocol::Axon),
        };
        let hotkey = headers.get(name).and_then(|v| v.to_str().ok());
        let admitted = |k: &[u8; 32]| self.admission(k).is_some();
        self.accounting
            .record(hotkey, admitted, protocol, outcome, t0.elapsed());
    }

    /// Stake of a hotkey on the validators file, if it is on it.
    pub(crate) fn stake_of(&self, key: &[u8; 32]) -> Option<f64> {
        self.validators.as_ref()?.get(key).map(|e| e.stake)
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
        gate::lock_nonces(&self.nonces)
    }

    fn btauth_lock(&self) -> std::sync::MutexGuard<'_, ReplayStore> {
        match self.btauth.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl conn::Service for State {
    fn call(
        self: Arc<Self>,
        conn: Arc<Conn>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<Resp, Infallible>> + Send + 'static {
        handle(self, conn, req)
    }

    fn connection_event(&self, e: &conn::Event) {
        let s = &self.conn_stats;
        match e {
            conn::Event::Refused(conn::Refused::PerSource) => {
                s.refused_per_source.fetch_add(1, Relaxed);
            }
            conn::Event::Refused(conn::Refused::Full) => {
                s.refused_full.fetch_add(1, Relaxed);
            }
            conn::Event::Evicted => {
                s.evicted.fetch_add(1, Relaxed);
            }
            conn::Event::IdleClosed => {
                s.idle_closed.fetch_add(1, Relaxed);
            }
            conn::Event::Ended(conn::Ended::Error(err)) => {
                if write_timed_out(err) {
                    s.write_timeouts.fetch_add(1, Relaxed);
                } else {
                    self.metrics.conn_error(crate::metrics::ConnError::of(err));
                }
            }
            conn::Event::Ended(_) => {}
        }
    }
}

/// hyper's error came from [`crate::write_deadline`].
fn write_timed_out(e: &hyper::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The operator's listener: everything that is not for validators.
pub struct Ops(pub Arc<State>);

impl conn::Service for Ops {
    fn call(
        self: Arc<Self>,
        _conn: Arc<Conn>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<Resp, Infallible>> + Send + 'static {
        handle_ops(self.0.clone(), req)
    }
}

/// A 405 for a known path asked with the wrong method.
fn wrong_method(state: &State, req: &Request<Incoming>, allow: &'static str, t0: Instant) -> Resp {
    let rej = Reject::new(
        Reason::MethodNotAllowed,
        format!("Method Not Allowed: {} {}", req.method(), req.uri().path()),
    );
    let mut r = state.reject(&rej, t0, None);
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn is_get(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET || req.method() == Method::HEAD
}

/// A 404 naming the synapses, as the Python axon words it.
fn not_found(state: &State, path: &str, t0: Instant) -> Resp {
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

/// Routes one request on the public port. `/metrics` is not here: it is on
/// the operator's listener ([`handle_ops`]), and the public port answers it
/// with the same cheap 404 as any unknown path.
pub async fn handle(
    state: Arc<State>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let t0 = Instant::now();
    let route = match req.uri().path() {
        "/ConversionSynapse" => Route::Conversion,
        "/Synapse" => Route::Ping,
        "/health" => Route::Health,
        _ => Route::Other,
    };
    let protocol = Protocol::of(req.headers());
    state.metrics.request(route, protocol);
    Ok(match route {
        Route::Conversion | Route::Ping if req.method() != Method::POST => {
            wrong_method(&state, &req, "POST", t0)
        }
        Route::Conversion | Route::Ping => {
            use tracing::Instrument as _;
            let core_route = if route == Route::Conversion {
                core_serve::Route::Conversion
            } else {
                core_serve::Route::Ping
            };
            // Debug lines of this request name its protocol.
            let span = tracing::debug_span!("request", protocol = protocol.label());
            axon(&state, &conn, req, core_route, t0, protocol)
                .instrument(span)
                .await
        }
        Route::Health if !is_get(&req) => wrong_method(&state, &req, "GET, HEAD", t0),
        Route::Health => health(&state),
        Route::Metrics | Route::Status | Route::Dashboard | Route::Other => {
            not_found(&state, req.uri().path(), t0)
        }
    })
}

/// Routes one request on the operator's listener: every route that is not
/// for validators lives here, so they move together.
pub async fn handle_ops(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let t0 = Instant::now();
    let route = match req.uri().path() {
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
        "/status" => Route::Status,
        p if crate::dashboard::serves(p) => Route::Dashboard,
        _ => Route::Other,
    };
    state.metrics.request(route, Protocol::of(req.headers()));
    Ok(match route {
        Route::Metrics | Route::Health | Route::Status | Route::Dashboard if !is_get(&req) => {
            wrong_method(&state, &req, "GET, HEAD", t0)
        }
        Route::Metrics => metrics(&state),
        Route::Health => health(&state),
        Route::Status => crate::dashboard::status(&state),
        Route::Dashboard => crate::dashboard::asset(req.uri().path()),
        _ => not_found(&state, req.uri().path(), t0),
    })
}

/// A place in the verification budget for this connection's source
/// ([`gate::verify_permit`]), for the btauth/1 gate.
fn verify_permit<'s>(state: &'s State, conn: &Conn) -> Result<VerifyPermit<'s>, Reject> {
    gate::verify_permit(&state.verify, conn.peer.ip())
}

/// What the server records along the axon gate: the gate and verification
/// times, and the connection's proof of a validator.
struct Watch<'a> {
    state: &'a State,
    conn: &'a Conn,
    t0: Instant,
}

impl gate::Observer for Watch<'_> {
    fn admitted(&self, _: &gate::Admitted<'_>) {
        self.state.metrics.gate.observe(self.t0.elapsed());
    }
    fn checked(&self, took: Duration) {
        self.state.metrics.verify.observe(took);
    }
    fn proven(&self) {
        self.conn.mark_verified();
    }
}

/// The axon gate ([`gate::pass`]) with the server's state and the
/// connection's source address. Returns the request's place among the
/// verified requests in flight.
async fn authenticate<'s>(
    state: &'s State,
    conn: &Conn,
    headers: &hyper::HeaderMap,
    t0: Instant,
) -> Result<InFlightGuard<'s>, Reject> {
    let rank = |k: &[u8; 32]| state.admission(k);
    let shared = gate::Shared {
        own_hotkey_ss58: &state.hotkey_ss58,
        max_body: state.max_body,
        rank: &rank,
        nonces: &state.nonces,
        verify: &state.verify,
        keys: &state.keys,
        rate: &state.rate,
        inflight: &state.inflight,
        max_inflight: state.max_inflight,
    };
    let watch = Watch { state, conn, t0 };
    gate::pass(&shared, headers, conn.peer.ip(), now_ns(), &watch).await
}

fn btauth_reject(e: BtauthError) -> Reject {
    Reject::new(e.reason(), e.to_string())
}

/// The btauth/1 gate (btauth.rs), with the same allow-list, verification
/// budget, rate limit and stake-ranked in-flight cap as [`authenticate`].
/// Its signature covers the body's hash, so the body is read (under the
/// same cap and timeout, holding the source's verification permit) after
/// every header-only check and before the signature check.
async fn btauth_authenticate<'s>(
    state: &'s State,
    conn: &Conn,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    t0: Instant,
) -> Result<(InFlightGuard<'s>, Bytes), Reject> {
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > state.max_body as u64) {
        return Err(Reject::new(
            Reason::BodyTooLarge,
            format!(
                "body of {n} bytes exceeds the {} byte limit",
                state.max_body
            ),
        ));
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
    req.check_receiver(&state.hotkey_ss58)
        .map_err(btauth_reject)?;
    let window = *state.btauth_lock().window();
    req.check_fresh(&window, now_ns()).map_err(btauth_reject)?;
    if state.btauth_lock().contains(&req.hotkey, req.nonce) {
        return Err(btauth_reject(BtauthError::Replayed));
    }
    state.metrics.gate.observe(t0.elapsed());

    let permit = verify_permit(state, conn)?;
    let bytes = read_body(state, body).await?;
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let tv = Instant::now();
    let verified = req.verify(parts.method.as_str(), target, &bytes);
    state.metrics.verify.observe(tv.elapsed());
    drop(permit);
    verified.map_err(btauth_reject)?;

    // Fresh when verified (the body may have been slow), then exactly once.
    let now = now_ns();
    req.check_fresh(&window, now).map_err(btauth_reject)?;
    state
        .btauth_lock()
        .commit(&req.hotkey, req.nonce, now)
        .map_err(btauth_reject)?;
    let guard = state.inflight.enter();
    let settled = if !state.rate.allow(&req.hotkey, Instant::now()) {
        Err(Reject::new(
            Reason::RateLimited,
            format!("hotkey {} is over its rate limit", req.hotkey_ss58),
        ))
    } else if !crate::limits::admit(state.max_inflight, state.inflight.current(), rank) {
        Err(Reject::new(
            Reason::Overloaded,
            "too many requests in flight; lower-stake callers are refused first",
        ))
    } else {
        Ok(())
    };
    // As for the axon protocol: a verified, fresh caller holds its connection.
    conn.mark_verified();
    settled.map(|()| (guard, bytes))
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

thread_local! {
    /// The feature order this thread's clients send, learned by the parser
    /// (a hint: a wrong one costs nanoseconds, never a different answer).
    static KEY_ORDER: Cell<KeyOrder> = const { Cell::new(KeyOrder::new()) };
}

/// A synapse route: gate, body, then the core's whole path (parse,
/// predict, write the success body) in one call. Both protocols share all
/// of it but the gate; a request carrying both header sets is refused (400).
async fn axon(
    state: &State,
    conn: &Conn,
    req: Request<Incoming>,
    route: core_serve::Route,
    t0: Instant,
    protocol: Protocol,
) -> Resp {
    let (parts, body) = req.into_parts();
    let gated = match protocol {
        Protocol::Btauth => btauth_authenticate(state, conn, &parts, body, t0).await,
        Protocol::Mixed => Err(Reject::new(
            Reason::MixedAuth,
            "both axon (bt_header_dendrite_*) and btauth/1 (X-Bittensor-*) authentication headers; send one set",
        )),
        Protocol::Axon | Protocol::None => {
            match authenticate(state, conn, &parts.headers, t0).await {
                Ok(g) => read_body(state, body).await.map(|b| (g, b)),
                Err(rej) => Err(rej),
            }
        }
    };
    let (_in, bytes) = match gated {
        Ok(x) => x,
        Err(rej) => return state.reject(&rej, t0, Some((&parts.headers, protocol))),
    };
    // Our own work starts here, with the whole body in hand: time spent
    // waiting for the client's packets is not ours to report.
    let tb = Instant::now();
    // One model for the whole prediction, however a reload races it.
    let active = state.life.current();
    let core = core_serve::Server {
        model: active.model(),
        kernel: state.kernel,
        me: state.me(),
    };
    // Sized from the body: the answer never grows past it.
    let mut out = vec![0u8; core_serve::capacity(bytes.len(), route, &core)];
    let mut order = KEY_ORDER.get();
    let served = core_serve::serve(
        &bytes,
        route,
        &core,
        &mut order,
        || tb.elapsed().as_secs_f64(),
        &mut out,
    );
    KEY_ORDER.set(order);
    let served = match served {
        Ok(s) => s,
        Err(Refused::Parse(e)) => {
            return state.reject(&parse_error(e), t0, Some((&parts.headers, protocol)))
        }
        Err(Refused::Buffer(_)) => {
            let rej = Reject::new(
                Reason::Internal,
                "Internal Server Error: answer buffer too small",
            );
            return state.reject(&rej, t0, Some((&parts.headers, protocol)));
        }
    };
    out.truncate(served.len);
    if let (Some(f), Some(p)) = (&served.features, &served.prediction) {
        state.metrics.predict.observe(tb.elapsed());
        state
            .metrics
            .prediction(p.conversion_happened == 1, p.confidence);
        after_answer(state, f, p, &active.sha256);
    }
    state.metrics.success();
    state.metrics.total.observe(t0.elapsed());
    let prediction = served
        .prediction
        .as_ref()
        .map(|p| (p.conversion_happened == 1, p.confidence));
    state.account(
        &parts.headers,
        protocol,
        Outcome::Answered { prediction },
        t0,
    );
    if tracing::enabled!(tracing::Level::DEBUG) {
        let hk = parts
            .headers
            .get(gate::H_HOTKEY)
            .or_else(|| parts.headers.get(btauth::H_HOTKEY))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::debug!(route = route.name(), hotkey = hk, us = t0.elapsed().as_micros() as u64, class = ?served.prediction.map(|p| p.conversion_happened), "answered 200");
    }
    synapse::success(
        out,
        route.name(),
        served.seconds,
        &parts.headers,
        &state.me(),
    )
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

/// Reads the server's state for /metrics at scrape time: gauges sampled
/// now, and counters that live in other parts (crate::metrics, attached
/// by [`State::attach_metrics`]). Holds the state weakly: the registry
/// that owns it lives in the state.
pub struct Scrape(std::sync::Weak<State>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        match self.0.upgrade() {
            Some(state) => state.encode_metrics(&mut e),
            None => Ok(()),
        }
    }
}

impl State {
    /// Hands this state's scrape-time values to its registry; call once,
    /// when the state is shared.
    pub fn attach_metrics(self: &Arc<Self>) {
        let fresh = self.metrics.attach(Box::new(Scrape(Arc::downgrade(self))));
        debug_assert!(fresh, "attach_metrics called twice");
    }

    fn encode_metrics(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        use crate::metrics::{counter, counters, gauge, info};
        let (nonce_keys, validators, uptime_s) = gauges(self);
        let life = &self.life;
        let active = life.current();
        gauge(
            e,
            "cm_inflight",
            "Requests being handled now.",
            self.inflight.current(),
        )?;
        gauge(
            e,
            "cm_nonce_keys",
            "hotkey:uuid keys in the nonce map.",
            nonce_keys,
        )?;
        gauge(e, "cm_validators", "Hotkeys on the allow-list.", validators)?;
        gauge(e, "cm_uptime_seconds", "Seconds since start.", uptime_s)?;
        info(
            e,
            "cm_kernel",
            "The forward kernel in use.",
            [("kernel", self.kernel.name())],
        )?;
        info(
            e,
            "cm_build",
            "Build and model identity.",
            [
                ("version", env!("CARGO_PKG_VERSION")),
                ("model_sha256", active.sha256.as_str()),
            ],
        )?;

        let (ok, rejected) = life.reloads();
        counters(
            e,
            "cm_model_reloads",
            "Model reloads (SIGHUP or file change), by result.",
            [
                ([("result", "ok")], ok),
                ([("result", "rejected")], rejected),
            ],
        )?;
        info(
            e,
            "cm_model",
            "The model answering now.",
            [("sha256", active.sha256.as_str())],
        )?;
        if let Some(sh) = &life.shadow {
            let s = sh.stats();
            counters(
                e,
                "cm_shadow_requests",
                "Requests the shadow model also answered.",
                [([("sha256", sh.active.sha256.as_str())], s.n)],
            )?;
            counter(
                e,
                "cm_shadow_agree",
                "Requests where shadow and served model predicted the same class.",
                s.agree,
            )?;
            gauge(
                e,
                "cm_shadow_agreement_ratio",
                "Share of requests with the same class.",
                s.agreement().unwrap_or(0.0),
            )?;
            gauge(
                e,
                "cm_shadow_confidence_abs_diff_mean",
                "Mean |confidence difference|.",
                s.mean_conf_diff().unwrap_or(0.0),
            )?;
            counter(
                e,
                "cm_shadow_both_positive",
                "Requests where both models predicted a conversion.",
                s.both_positive,
            )?;
            gauge(
                e,
                "cm_shadow_time_abs_diff_seconds_mean",
                "Mean |time difference| where both predicted a conversion.",
                s.mean_time_diff().unwrap_or(0.0),
            )?;
        }
        if let Some(log) = &life.reqlog {
            log.encode_metrics(e)?;
        }
        if let Some(d) = &life.drift {
            d.encode_metrics(e)?;
        }
        self.accounting.encode_metrics(e, |k| self.stake_of(k))?;

        let (batches, sigs) = self.keys.batch_stats();
        counter(
            e,
            "cm_verify_batches",
            "Signature checks run (one batch equation, or one lone signature).",
            batches,
        )?;
        counter(
            e,
            "cm_verify_batched_signatures",
            "Signatures checked in those batches.",
            sigs,
        )?;
        counter(e, "cm_verify_unbatched_signatures", "Signatures of multi-request batches checked one by one because too many recent signatures failed.", self.keys.unbatched())?;
        counter(
            e,
            "cm_verify_table_signatures",
            "Signatures checked alone from the signer's precomputed table (allow-listed validators).",
            self.keys.table_checks(),
        )?;
        gauge(
            e,
            "cm_verify_pending",
            "Requests waiting for their signature check.",
            self.verify.current(),
        )?;
        let c = &self.conn_stats;
        gauge(
            e,
            "cm_connections_open",
            "Open connections on the public port.",
            self.conns.len(),
        )?;
        counters(
            e,
            "cm_connections_refused",
            "Connections closed on arrival, by why.",
            [
                (
                    [("reason", "per_source")],
                    c.refused_per_source.load(Relaxed),
                ),
                ([("reason", "full")], c.refused_full.load(Relaxed)),
            ],
        )?;
        counters(
            e,
            "cm_connections_closed",
            "Connections the server closed, by rule: evicted (an unverified connection giving way at the cap), idle (no verified request within --conn.idle), write_timeout (an answer left unread).",
            [
                ([("rule", "evicted")], c.evicted.load(Relaxed)),
                ([("rule", "idle")], c.idle_closed.load(Relaxed)),
                ([("rule", "write_timeout")], c.write_timeouts.load(Relaxed)),
            ],
        )
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
    let mut r = Response::new(Full::new(Bytes::from(health_json(state).to_string())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The /health document (also the start of /status).
pub(crate) fn health_json(state: &State) -> serde_json::Value {
    let (nonce_keys, validators, uptime) = gauges(state);
    let (model, shadow) = health_lifecycle(state);
    serde_json::json!({
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
    })
}

fn metrics(state: &State) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
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

/// Serves the public port and the operator's listener until `stop`
/// resolves, then drains both (each connection gets `lim.shutdown_grace`).
pub async fn run_until(
    public: tokio::net::TcpListener,
    ops: Option<tokio::net::TcpListener>,
    state: Arc<State>,
    lim: conn::ConnLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ops_task = ops.map(|l| {
        let mut rx = rx.clone();
        let ops_lim = conn::ConnLimits {
            idle: Duration::ZERO,
            ..lim.clone()
        };
        let reg = Arc::new(conn::Registry::new(ops_lim.max_connections, 0));
        let svc = Arc::new(Ops(state.clone()));
        tokio::spawn(async move {
            conn::serve(l, svc, ops_lim, reg, async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
        })
    });
    let mut rx_pub = rx;
    let public_done = conn::serve(
        public,
        state.clone(),
        lim.clone(),
        state.conns.clone(),
        async move {
            let _ = rx_pub.wait_for(|v| *v).await;
        },
    );
    tokio::pin!(public_done);
    tokio::select! {
        _ = &mut public_done => {}
        _ = stop => {
            tracing::info!(
                inflight = state.inflight.current(),
                "stopped accepting; letting in-flight requests finish (up to {:.1} s)",
                lim.shutdown_grace.as_secs_f64()
            );
            let _ = tx.send(true);
            public_done.await;
        }
    }
    if let Some(t) = ops_task {
        let _ = tx.send(true);
        let _ = t.await;
    }
}
