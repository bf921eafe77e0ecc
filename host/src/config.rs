//! Command-line flags of `serve` and `drift` (`probe`'s are in the `cm-probe` crate).
//!
//! Flag names are bittensor's (`--wallet.name`, `--axon.port`, ...) so an
//! operator's existing command lines carry over; every flag also reads an
//! environment variable (`CM_` + the flag in upper case, dots and dashes as
//! underscores), which is how containers and systemd units usually pass them.

use clap::Args;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Default address of the operator's listener: loopback, so /metrics is
/// never on the public internet unless an operator puts it there.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// `conversion-miner serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory holding bittensor wallets (bittensor's default).
    #[arg(long = "wallet.path", env = "CM_WALLET_PATH", default_value = crate::wallet::DEFAULT_WALLET_DIR)]
    pub wallet_path: String,
    /// Wallet (coldkey) name; the hotkey is read from `<path>/<name>/hotkeys/<hotkey>`.
    #[arg(
        long = "wallet.name",
        env = "CM_WALLET_NAME",
        default_value = "default"
    )]
    pub wallet_name: String,
    /// Hotkey name inside the wallet. Only its public address is needed: the miner never signs.
    #[arg(
        long = "wallet.hotkey",
        env = "CM_WALLET_HOTKEY",
        default_value = "default"
    )]
    pub wallet_hotkey: String,
    /// IPv4 address to bind (Python dendrites cannot reach IPv6 axons).
    #[arg(long = "axon.ip", env = "CM_AXON_IP", default_value = "0.0.0.0")]
    pub axon_ip: Ipv4Addr,
    /// TCP port to bind; 0 picks a free one (printed as `listening on IP:PORT`).
    #[arg(long = "axon.port", env = "CM_AXON_PORT", default_value_t = 8091)]
    pub axon_port: u16,
    /// Public IPv4 validators reach us at (what `btcli axon set --ip` advertised); shown in answers and /health.
    #[arg(long = "axon.external_ip", env = "CM_AXON_EXTERNAL_IP")]
    pub axon_external_ip: Option<Ipv4Addr>,
    /// Public port validators reach us at, if a NAT or proxy maps it.
    #[arg(long = "axon.external_port", env = "CM_AXON_EXTERNAL_PORT")]
    pub axon_external_port: Option<u16>,
    /// Subnet uid this miner serves (informational: logged and shown in /health).
    #[arg(long = "netuid", env = "CM_NETUID")]
    pub netuid: Option<u16>,
    /// Development mode: a throwaway in-memory hotkey, every caller allowed, bound to 127.0.0.1. Never in production.
    #[arg(long = "dev", env = "CM_DEV")]
    pub dev: bool,
    /// Allow-list of validator hotkeys: one `ss58[,stake]` per line, `#` comments. Re-read when it changes.
    #[arg(long = "validators", env = "CM_VALIDATORS")]
    pub validators: Option<PathBuf>,
    /// Seconds between checks of the validators file for changes.
    #[arg(
        long = "validators.poll",
        env = "CM_VALIDATORS_POLL",
        default_value_t = 3.0
    )]
    pub validators_poll: f64,
    /// Accept every caller with a valid signature (for tests; logs a warning).
    #[arg(long = "allow-all", env = "CM_ALLOW_ALL")]
    pub allow_all: bool,
    /// Requests in flight above which callers are refused with 503, lowest stake first (0 = no cap).
    #[arg(long = "max-inflight", env = "CM_MAX_INFLIGHT", default_value_t = crate::limits::DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,
    /// Per-hotkey request rate in requests per second, refused with 429 above it (0 = unlimited).
    #[arg(long = "rate-limit", env = "CM_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,
    /// Hotkeys the rate limiter tracks at once (a fixed table; a newcomer displaces the idlest bucket, never refused for room).
    #[arg(long = "rate-limit.capacity", env = "CM_RATE_LIMIT_CAPACITY", default_value_t = crate::limits::RATE_MAP_CAPACITY)]
    pub rate_limit_capacity: usize,
    /// Per-hotkey burst size for --rate-limit (default: max(rate, 1)).
    #[arg(long = "rate-burst", env = "CM_RATE_BURST", default_value_t = 0.0)]
    pub rate_burst: f64,
    /// Largest request body in bytes; larger ones get 413 before being read.
    #[arg(long = "max-body", env = "CM_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: usize,
    /// Largest request header block in bytes (hyper answers 431 above it).
    #[arg(long = "max-header-bytes", env = "CM_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send a complete header block; also the keep-alive idle limit (uvicorn's is 5 s too); 0 disables.
    #[arg(
        long = "header-timeout",
        env = "CM_HEADER_TIMEOUT",
        default_value_t = 5.0
    )]
    pub header_timeout: f64,
    /// Seconds a client has to send the body once its headers passed the gate (408 after); 0 disables.
    #[arg(long = "body-timeout", env = "CM_BODY_TIMEOUT", default_value_t = 5.0)]
    pub body_timeout: f64,
    /// Most open connections; at the cap a newcomer takes the slot of the oldest connection without
    /// a verified request, or is closed if there is none.
    #[arg(
        long = "max-connections",
        env = "CM_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// Most connections from one source address; further ones are closed on arrival (0 = no limit).
    #[arg(long = "max-connections-per-ip", env = "CM_MAX_CONNECTIONS_PER_IP", default_value_t = crate::conn::DEFAULT_MAX_PER_SOURCE)]
    pub max_connections_per_ip: usize,
    /// Seconds a connection stays open after it opened or last presented a verified request,
    /// whatever else it sends (0 = no limit). At --max-connections, unverified connections give way first.
    #[arg(long = "conn.idle", env = "CM_CONN_IDLE", default_value_t = crate::conn::DEFAULT_IDLE_S)]
    pub conn_idle: f64,
    /// Seconds an answer may wait for the client to read it before the connection is closed (0 = no limit).
    #[arg(long = "write-timeout", env = "CM_WRITE_TIMEOUT", default_value_t = crate::conn::DEFAULT_WRITE_TIMEOUT_S)]
    pub write_timeout: f64,
    /// Requests waiting for signature verification at once, all sources together; 503 beyond (0 = no limit).
    #[arg(long = "verify.max-pending", env = "CM_VERIFY_MAX_PENDING", default_value_t = crate::limits::DEFAULT_VERIFY_PENDING)]
    pub verify_max_pending: usize,
    /// Of those, most from one source address (0 = no limit).
    #[arg(long = "verify.per-source", env = "CM_VERIFY_PER_SOURCE", default_value_t = crate::limits::DEFAULT_VERIFY_PER_SOURCE)]
    pub verify_per_source: usize,
    /// Address of the operator's listener (/metrics, /health, /status and the dashboard at /);
    /// keep it on loopback or a private network. `off` serves none of them.
    #[arg(long = "metrics.addr", env = "CM_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// `hotkey:uuid` keys remembered for replay protection; the oldest is evicted beyond it.
    #[arg(long = "nonce.capacity", env = "CM_NONCE_CAPACITY", default_value_t = crate::nonce::DEFAULT_CAPACITY)]
    pub nonce_capacity: usize,
    /// Seconds a nonce may be ahead of our clock (Python has no bound; keep NTP on).
    #[arg(
        long = "nonce.future_skew",
        env = "CM_NONCE_FUTURE_SKEW",
        default_value_t = 5.0
    )]
    pub nonce_future_skew: f64,
    /// uuids one hotkey keeps in the nonce map; beyond it the hotkey evicts its own oldest (and
    /// refuses that uuid's nonces for good).
    #[arg(long = "nonce.per-hotkey", env = "CM_NONCE_PER_HOTKEY", default_value_t = crate::nonce::DEFAULT_PER_HOTKEY)]
    pub nonce_per_hotkey: usize,
    /// Largest `timeout` header (seconds) that widens the nonce window; the header is unsigned.
    #[arg(long = "nonce.max-timeout", env = "CM_NONCE_MAX_TIMEOUT", default_value_t = crate::nonce::MAX_WINDOW_TIMEOUT_S)]
    pub nonce_max_timeout: f64,
    /// Python's nonce rule: refuse any nonce below the newest accepted for its hotkey:uuid, even if
    /// never seen (default: accept unseen nonces that arrive out of order, within the window).
    #[arg(long = "nonce.strict", env = "CM_NONCE_STRICT")]
    pub nonce_strict: bool,
    /// btauth/1: seconds a signed request's nonce may be behind our clock (bittensor's default).
    #[arg(long = "btauth.max-age", env = "CM_BTAUTH_MAX_AGE", default_value_t = crate::btauth::DEFAULT_MAX_AGE_S)]
    pub btauth_max_age: f64,
    /// btauth/1: seconds a signed request's nonce may be ahead of our clock (bittensor's default).
    #[arg(long = "btauth.max-skew", env = "CM_BTAUTH_MAX_SKEW", default_value_t = crate::btauth::DEFAULT_MAX_SKEW_S)]
    pub btauth_max_skew: f64,
    /// btauth/1: (hotkey, nonce) pairs remembered against replay; when full of fresh ones, new
    /// btauth/1 requests get 503 until the oldest age out.
    #[arg(long = "btauth.capacity", env = "CM_BTAUTH_CAPACITY", default_value_t = crate::btauth::replay::DEFAULT_CAPACITY)]
    pub btauth_capacity: usize,
    /// Tokio worker threads (default: the number of available cores). At a validator's rate (about
    /// 100 requests/s) `--workers 1` spends less CPU per request (160 against 193-210 µs measured,
    /// docs/MEASUREMENTS.md); more workers only pay off near full load.
    #[arg(long = "workers", env = "CM_WORKERS")]
    pub workers: Option<usize>,
    /// Forward kernel: auto, scalar, avx2-fma-f16c, avx512f or neon (avx2 and avx512 still accepted). A kernel this CPU lacks is refused at start-up.
    #[arg(long = "kernel", env = "CM_KERNEL", default_value = crate::kernel::AUTO)]
    pub kernel: String,
    /// Serve this weights file (model.json format) instead of the embedded model; refused at start-up if invalid.
    #[arg(long = "weights", env = "CM_WEIGHTS")]
    pub weights: Option<PathBuf>,
    /// Seconds between checks of the --weights file for changes (a change reloads it, as SIGHUP does).
    #[arg(long = "weights.poll", env = "CM_WEIGHTS_POLL", default_value_t = crate::lifecycle::DEFAULT_WATCH_POLL_S)]
    pub weights_poll: f64,
    /// Candidate model (model.json format) run on every request beside the served one; never changes answers.
    #[arg(long = "shadow", env = "CM_SHADOW")]
    pub shadow: Option<PathBuf>,
    /// Append every verified request's features and our prediction to JSON-lines files in this directory.
    #[arg(long = "log-requests", env = "CM_LOG_REQUESTS")]
    pub log_requests: Option<PathBuf>,
    /// Size in MB (2^20 bytes, fractions allowed) at which a request-log file is closed and a new one started.
    #[arg(long = "log-requests.max-file-mb", env = "CM_LOG_REQUESTS_MAX_FILE_MB", default_value_t = crate::reqlog::DEFAULT_MAX_FILE_MB as f64)]
    pub log_requests_max_file_mb: f64,
    /// Total MB of request-log files kept; the oldest are deleted beyond it.
    #[arg(long = "log-requests.max-total-mb", env = "CM_LOG_REQUESTS_MAX_TOTAL_MB", default_value_t = crate::reqlog::DEFAULT_MAX_TOTAL_MB as f64)]
    pub log_requests_max_total_mb: f64,
    /// PSI of a feature against the training deciles above which a drift warning is logged.
    #[arg(long = "drift.psi-warn", env = "CM_DRIFT_PSI_WARN", default_value_t = crate::drift::DEFAULT_PSI_WARN)]
    pub drift_psi_warn: f64,
    /// Requests before the first drift check, and between checks.
    #[arg(long = "drift.min-samples", env = "CM_DRIFT_MIN_SAMPLES", default_value_t = crate::drift::DEFAULT_MIN_SAMPLES)]
    pub drift_min_samples: u64,
    /// Log filter: error, warn, info, debug (per-request lines) or trace, or a tracing directive.
    #[arg(long = "log-level", env = "CM_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Seconds to let in-flight requests finish after SIGTERM or Ctrl-C.
    #[arg(
        long = "shutdown-grace",
        env = "CM_SHUTDOWN_GRACE",
        default_value_t = 10.0
    )]
    pub shutdown_grace: f64,
}

/// `conversion-miner drift`.
#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// Directory written by `serve --log-requests`.
    pub logdir: PathBuf,
    /// Compare against this model file's training stats instead of the embedded model's.
    #[arg(long = "weights")]
    pub weights: Option<PathBuf>,
    /// PSI above which a feature is flagged.
    #[arg(long = "psi-warn", default_value_t = crate::drift::DEFAULT_PSI_WARN)]
    pub psi_warn: f64,
    /// Print JSON instead of a table.
    #[arg(long = "json")]
    pub json: bool,
}
