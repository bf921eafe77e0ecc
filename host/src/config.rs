//! Command-line flags of `serve` and `probe`.
//!
//! Flag names are bittensor's (`--wallet.name`, `--axon.port`, ...) so an
//! operator's existing command lines carry over; every flag also reads an
//! environment variable (`CM_` + the flag in upper case, dots and dashes as
//! underscores), which is how containers and systemd units usually pass them.

use clap::Args;
use std::net::Ipv4Addr;
use std::path::PathBuf;

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
    /// Most open connections; further clients wait in the kernel's accept queue.
    #[arg(
        long = "max-connections",
        env = "CM_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub max_connections: usize,
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
    /// Python's nonce rule: refuse any nonce below the newest accepted for its hotkey:uuid, even if
    /// never seen (default: accept unseen nonces that arrive out of order, within the window).
    #[arg(long = "nonce.strict", env = "CM_NONCE_STRICT")]
    pub nonce_strict: bool,
    /// Tokio worker threads (default: the number of available cores).
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

/// `conversion-miner probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Miner to query, IPv4:PORT.
    #[arg(
        long = "target",
        env = "CM_PROBE_TARGET",
        default_value = "127.0.0.1:8091"
    )]
    pub target: String,
    /// The miner's hotkey ss58 (signed into every request). Default: read from the target's /health.
    #[arg(long = "hotkey", env = "CM_PROBE_HOTKEY")]
    pub hotkey: Option<String>,
    /// Number of requests (ignored when --duration is given).
    #[arg(long = "n", env = "CM_PROBE_N", default_value_t = 1000)]
    pub n: usize,
    /// Run for this many seconds instead of a fixed count, cycling through the conversations.
    #[arg(long = "duration", env = "CM_PROBE_DURATION")]
    pub duration: Option<f64>,
    /// Requests in flight at once (one simulated dendrite, with its own uuid, per slot).
    #[arg(
        long = "concurrency",
        env = "CM_PROBE_CONCURRENCY",
        default_value_t = 8
    )]
    pub concurrency: usize,
    /// Target total request rate per second (0 = as fast as answers come back).
    #[arg(long = "rate", env = "CM_PROBE_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// Seed of the generated conversations (the same set `eval --seed` scores).
    #[arg(long = "seed", env = "CM_PROBE_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Distinct conversations to generate (default: --n, at most 100000); requests cycle through them.
    #[arg(long = "conversations", env = "CM_PROBE_CONVERSATIONS")]
    pub conversations: Option<usize>,
    /// Request timeout in seconds, sent in the `timeout` header as a dendrite does.
    #[arg(long = "timeout", env = "CM_PROBE_TIMEOUT", default_value_t = 12.0)]
    pub timeout: f64,
    /// Start a new dendrite uuid every N requests per slot (0 = one uuid per slot), to exercise the nonce map.
    #[arg(long = "uuid-every", env = "CM_PROBE_UUID_EVERY", default_value_t = 0)]
    pub uuid_every: u64,
    /// Forge every Nth request of the run (0 = none): the probe's own hotkey with one bit of
    /// the signature flipped, still well-formed. The miner must refuse each with 401 "Signature
    /// mismatch"; such refusals are counted as forged_refused, not as errors.
    #[arg(
        long = "forge-every",
        env = "CM_PROBE_FORGE_EVERY",
        default_value_t = 0
    )]
    pub forge_every: u64,
    /// Directory holding bittensor wallets; the probe signs with this wallet's hotkey.
    #[arg(long = "wallet.path", env = "CM_WALLET_PATH", default_value = crate::wallet::DEFAULT_WALLET_DIR)]
    pub wallet_path: String,
    /// Wallet name.
    #[arg(
        long = "wallet.name",
        env = "CM_WALLET_NAME",
        default_value = "default"
    )]
    pub wallet_name: String,
    /// Hotkey name; its file must hold secretPhrase, secretSeed or privateKey.
    #[arg(
        long = "wallet.hotkey",
        env = "CM_WALLET_HOTKEY",
        default_value = "default"
    )]
    pub wallet_hotkey: String,
    /// Sign with a throwaway hotkey instead of a wallet (a `serve --dev` miner allows every caller).
    #[arg(long = "dev", env = "CM_PROBE_DEV")]
    pub dev: bool,
    /// Also print the summary as one JSON line (for scripts and tests).
    #[arg(long = "json", env = "CM_PROBE_JSON")]
    pub json: bool,
    /// Keep retrying a refused connection for up to this many seconds before the run (a miner
    /// still starting), and print the wall-clock time of the first verified answer.
    #[arg(
        long = "wait-ready",
        env = "CM_PROBE_WAIT_READY",
        default_value_t = 0.0
    )]
    pub wait_ready: f64,
    /// Tokio worker threads of the probe (default: the number of available cores).
    #[arg(long = "workers", env = "CM_PROBE_WORKERS")]
    pub workers: Option<usize>,
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
