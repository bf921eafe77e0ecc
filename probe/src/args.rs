//! The `probe` command line: the flags a validator-like run needs (target,
//! load shape, conversations, signing wallet), kept apart from the code that
//! acts on them so adding a flag touches one place.

use clap::Args;

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
    /// Sign with N hotkeys derived from --seed instead of the wallet's (0 = off): each request
    /// is signed by the one its nonce picks, so one probe presents N distinct callers (the
    /// rate-map flood of scripts/floods.sh). Only a miner that allows every caller answers them.
    #[arg(long = "hotkeys", env = "CM_PROBE_HOTKEYS", default_value_t = 0)]
    pub hotkeys: usize,
    /// Directory holding bittensor wallets; the probe signs with this wallet's hotkey.
    #[arg(long = "wallet.path", env = "CM_WALLET_PATH", default_value = cm_host::wallet::DEFAULT_WALLET_DIR)]
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
    /// How requests are signed: `axon` (a bittensor 10.5.0 dendrite's headers) or `btauth`
    /// (bittensor 11's btauth/1 `X-Bittensor-*` headers, whose signature covers the body).
    #[arg(long = "protocol", env = "CM_PROBE_PROTOCOL", value_enum, default_value_t = ProbeProtocol::Axon)]
    pub protocol: ProbeProtocol,
}

/// `probe --protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeProtocol {
    Axon,
    Btauth,
}
