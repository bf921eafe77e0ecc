//! `cm-host`: the std shell around the no-alloc core. It serves the Bittensor
//! axon protocol to validators (`serve`); the validator simulator (`probe`)
//! is the `cm-probe` crate, a client of [`sig`] and [`wallet`].
//!
//! Modules, one concept each: [`ss58`] and [`sig`] (identity and signatures),
//! [`wallet`] (bittensor key files), [`nonce`], [`validators`] and [`limits`]
//! (who may call, how often), [`gate`] (the checks in order), [`sig_batch`]
//! (batched signature checks), [`synapse`] (answers a Python dendrite
//! accepts), [`reason`] (every status code in one table), [`metrics`],
//! [`accounting`] (counts per calling validator), [`dashboard`] (`/status`
//! and the built-in page), [`kernel`] (CPU detection), [`conn`] and [`write_deadline`] (connections
//! and their limits), [`server`] (routes),
//! [`lifecycle`] (the swappable served model, its reloads and the shadow
//! candidate), [`reqlog`] (the request log), [`drift`](mod@drift) (live traffic against
//! the training distribution). The wire facts all come from
//! `AXON.md`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod accounting;
pub mod btauth;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod drift;
pub mod exposition;
pub mod gate;
pub mod kernel;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod nonce;
pub mod reason;
pub mod reqlog;
pub mod server;
pub mod sig;
pub mod sig_batch;
pub mod sig_table;
pub mod ss58;
pub mod synapse;
pub mod validators;
pub mod wallet;
pub mod write_deadline;

pub use config::{DriftArgs, ServeArgs};

use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Installs the log subscriber (stderr), once.
pub fn init_logging(level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?} is not a valid filter"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    Ok(())
}

/// A multi-thread tokio runtime with `workers` threads (default: the
/// available cores), for `serve` and `probe` alike.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{name} must be a non-negative number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

const DEV_BANNER: &str = "\
*****************************************************************
*  DEVELOPMENT MODE (--dev): throwaway hotkey, EVERY caller is   *
*  allowed, bound to 127.0.0.1. Never use this on a real subnet. *
*****************************************************************";

/// `conversion-miner serve`: runs until SIGTERM or Ctrl-C. `embedded_stats_json`
/// holds the embedded model's `training_stats` (the drift reference).
pub fn serve(
    a: &ServeArgs,
    embedded: &'static cm_core::model::Model,
    embedded_sha256: &'static str,
    embedded_stats_json: &'static str,
) -> Result<i32> {
    init_logging(&a.log_level)?;

    let hotkey = if a.dev {
        let _ = writeln!(std::io::stderr(), "{DEV_BANNER}");
        tracing::warn!("--dev: throwaway hotkey, all callers allowed, loopback only");
        wallet::Hotkey::generate()
    } else {
        let p = wallet::hotkey_path(&a.wallet_path, &a.wallet_name, &a.wallet_hotkey);
        wallet::load_hotkey(&p, false)
            .context("loading the miner's hotkey (use --dev to try without a wallet)")?
    };

    let (active, training_stats) = match &a.weights {
        None => (
            lifecycle::Active {
                weights: lifecycle::Weights::Static(embedded),
                sha256: embedded_sha256.to_string(),
                source: "embedded".into(),
            },
            embedded_stats(embedded_stats_json),
        ),
        Some(p) => {
            let (a, s) =
                lifecycle::Active::from_file(p).map_err(|e| anyhow::anyhow!("--weights: {e}"))?;
            (a, Ok(s))
        }
    };
    let model_sha256 = active.sha256.clone();
    let mut life = lifecycle::Lifecycle::new(active);
    if let Some(p) = &a.shadow {
        let (cand, _) =
            lifecycle::Active::from_file(p).map_err(|e| anyhow::anyhow!("--shadow: {e}"))?;
        tracing::info!(shadow_sha256 = %cand.sha256, source = %cand.source, "shadow model loaded");
        life.shadow = Some(lifecycle::Shadow::new(cand));
    }
    match training_stats.and_then(|s| drift::Drift::new(&s, a.drift_psi_warn, a.drift_min_samples))
    {
        Ok(d) => life.drift = Some(d),
        Err(e) => tracing::warn!("drift monitor off: {e}"),
    }
    if let Some(dir) = &a.log_requests {
        let mb = |name: &str, v: f64| -> Result<u64> {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive number of MB, got {v}");
            }
            Ok((v * 1048576.0) as u64)
        };
        let caps = reqlog::Caps {
            max_file_bytes: mb("--log-requests.max-file-mb", a.log_requests_max_file_mb)?,
            max_total_bytes: mb("--log-requests.max-total-mb", a.log_requests_max_total_mb)?,
        };
        life.reqlog = Some(
            reqlog::RequestLog::start(dir.clone(), caps)
                .context("starting the request-log writer")?,
        );
        tracing::info!(dir = %dir.display(), "logging verified requests");
    }
    let life = Arc::new(life);
    let weights_poll = secs("--weights.poll", a.weights_poll)?.max(Duration::from_millis(100));
    let kernel = kernel::select(&a.kernel)?;

    let allow_all = a.dev || a.allow_all;
    if a.allow_all && !a.dev {
        tracing::warn!("--allow-all: any caller with a valid signature is served; use --validators in production");
    }
    let validators = match &a.validators {
        Some(p) => Some(Arc::new(validators::Shared::new(validators::load(p)?))),
        None => None,
    };
    if validators.is_none() && !allow_all {
        bail!("no caller would be allowed: give --validators FILE (one ss58[,stake] per line), or --allow-all for tests, or --dev");
    }

    let bind_ip = if a.dev && !a.axon_ip.is_loopback() {
        if a.axon_ip != Ipv4Addr::UNSPECIFIED {
            tracing::warn!("--dev binds 127.0.0.1, ignoring --axon.ip {}", a.axon_ip);
        }
        Ipv4Addr::LOCALHOST
    } else {
        a.axon_ip
    };
    let header_timeout = secs("--header-timeout", a.header_timeout)?;
    let body_timeout = secs("--body-timeout", a.body_timeout)?;
    let grace = secs("--shutdown-grace", a.shutdown_grace)?;
    let poll = secs("--validators.poll", a.validators_poll)?.max(Duration::from_millis(100));
    let skew = secs("--nonce.future_skew", a.nonce_future_skew)?;
    let bt_window = btauth::Window::from_secs(
        secs("--btauth.max-age", a.btauth_max_age)?.as_secs_f64(),
        secs("--btauth.max-skew", a.btauth_max_skew)?.as_secs_f64(),
    );
    let conn_idle = secs("--conn.idle", a.conn_idle)?;
    let write_timeout = secs("--write-timeout", a.write_timeout)?;
    let metrics_addr: Option<SocketAddr> = match a.metrics_addr.trim() {
        "off" | "" => None,
        s => Some(
            s.parse()
                .with_context(|| format!("--metrics.addr {s:?} is not IP:PORT or off"))?,
        ),
    };
    if a.max_body == 0 {
        bail!("--max-body must be positive");
    }

    let rt = runtime(a.workers).context("starting the tokio runtime")?;
    let workers = rt.metrics().num_workers();

    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((bind_ip, a.axon_port)))
            .await
            .with_context(|| format!("binding {bind_ip}:{}", a.axon_port))?;
        let bound = listener.local_addr()?;
        // Monitoring must never keep the miner off the subnet: a busy
        // metrics port is logged and the axon serves without it.
        let ops_listener = match metrics_addr {
            None => None,
            Some(m) => match tokio::net::TcpListener::bind(m).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!("binding --metrics.addr {m} failed ({e}); serving without /metrics");
                    None
                }
            },
        };
        let ops_bound = match &ops_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let external_ip = a
            .axon_external_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| bound.ip().to_string());
        let external_port = a.axon_external_port.unwrap_or(bound.port());
        let state = Arc::new(server::State {
            life: life.clone(),
            kernel,
            hotkey_ss58: hotkey.ss58.clone(),
            allow_all,
            validators: validators.clone(),
            nonces: Mutex::new(
                nonce::NonceMap::new(a.nonce_capacity, skew.as_nanos() as u64)
                    .strict(a.nonce_strict)
                    .per_hotkey(a.nonce_per_hotkey)
                    .max_timeout(a.nonce_max_timeout),
            ),
            keys: sig_batch::KeyCache::default(),
            btauth: Mutex::new(btauth::replay::ReplayStore::new(bt_window, a.btauth_capacity)),
            inflight: limits::InFlight::default(),
            verify: limits::VerifyBudget::new(a.verify_max_pending, a.verify_per_source),
            conns: Arc::new(conn::Registry::new(a.max_connections, a.max_connections_per_ip)),
            conn_stats: server::ConnStats::default(),
            rate: limits::RateLimiter::with_capacity(a.rate_limit.max(0.0), a.rate_burst, a.rate_limit_capacity),
            metrics: metrics::Metrics::default(),
            max_inflight: a.max_inflight,
            max_body: a.max_body,
            body_timeout,
            started: Instant::now(),
            external_ip,
            external_port,
            netuid: a.netuid,
            accounting: accounting::Accounting::default(),
        });
        state.attach_metrics();
        if let Some(path) = &a.weights {
            tokio::spawn(lifecycle::watch(path.clone(), life.clone(), weights_poll));
        } else {
            tokio::spawn(lifecycle::ignore_hup());
        }
        if let Some(shared) = &validators {
            build_key_tables(&state, shared.keys_by_stake());
        }
        if let (Some(path), Some(shared)) = (&a.validators, validators) {
            let st = state.clone();
            let on_change =
                move |list: &validators::AllowList| build_key_tables(&st, list.keys_by_stake());
            tokio::spawn(validators::watch(path.clone(), shared, poll, on_change));
        }
        tracing::info!(
            hotkey = %hotkey.ss58,
            address = %bound,
            model_sha256 = %model_sha256,
            kernel = kernel.name(),
            weights = cm_core::kernels::W_NAME,
            workers,
            netuid = ?a.netuid,
            callers = if allow_all { "all".to_string() } else { format!("{} validators", state.validators.as_ref().map(|v| v.len()).unwrap_or(0)) },
            "conversion-miner serving"
        );
        // Write errors are ignored: a closed stdout must not stop the miner.
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "miner hotkey {}", hotkey.ss58);
            let _ = writeln!(out, "listening on {bound}");
            match ops_bound {
                Some(m) => {
                    let _ = writeln!(out, "metrics on {m}");
                    let _ = writeln!(out, "dashboard {}", dashboard::url(m, None));
                }
                None => {
                    let _ = writeln!(out, "dashboard off (no operator listener: --metrics.addr)");
                }
            }
            let _ = out.flush();
        }
        server::run_until(
            listener,
            ops_listener,
            state,
            conn::ConnLimits {
                header_timeout,
                max_header_bytes: a.max_header_bytes,
                max_connections: a.max_connections,
                max_per_source: a.max_connections_per_ip,
                idle: conn_idle,
                write_timeout,
                shutdown_grace: grace,
            },
            server::shutdown_signal(),
        )
        .await;
        Ok::<(), anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(0)
}

/// The training stats inside a JSON object's `training_stats` (the binary
/// embeds only that part of its model file; a whole model.json works too).
fn embedded_stats(json: &str) -> Result<Vec<cm_modelfile::FeatureStats>, String> {
    let mut v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("embedded training stats: {e}"))?;
    serde_json::from_value(v["training_stats"].take())
        .map_err(|e| format!("embedded training_stats: {e}"))
}

/// `conversion-miner drift LOGDIR`: the live comparison, offline, from a request log.
pub fn drift(a: &DriftArgs, embedded_stats_json: &'static str) -> Result<i32> {
    let stats = match &a.weights {
        Some(p) => {
            cm_modelfile::load(p)
                .map_err(|e| anyhow::anyhow!("--weights: {e}"))?
                .file
                .training_stats
        }
        None => embedded_stats(embedded_stats_json).map_err(|e| anyhow::anyhow!(e))?,
    };
    let counts = drift::Counts::new(&stats).map_err(|e| anyhow::anyhow!(e))?;
    let files =
        reqlog::log_files(&a.logdir).with_context(|| format!("reading {}", a.logdir.display()))?;
    let (mut lines, mut bad) = (0u64, 0u64);
    for (p, _) in &files {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping {}: {e}", p.display());
                continue;
            }
        };
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            match reqlog::parse_line(l) {
                Some((v, present)) => {
                    counts.add_request(&v, present);
                    lines += 1;
                }
                None => bad += 1,
            }
        }
    }
    let rows = counts.rows();
    let drifted = rows.iter().filter(|r| r.psi > a.psi_warn).count();
    // Output errors (a closed pipe) end the command quietly, never in a panic.
    let mut out = std::io::stdout().lock();
    if a.json {
        let feats: Vec<_> = rows.iter().map(|r| serde_json::json!({"feature": r.name, "samples": r.n, "psi": r.psi, "out_of_range": r.out_of_range})).collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"files": files.len(), "requests": lines, "unreadable_lines": bad, "psi_warn": a.psi_warn, "drifted": drifted, "features": feats})
        );
    } else {
        let _ = writeln!(
            out,
            "{} files, {lines} requests, {bad} unreadable lines",
            files.len()
        );
        let _ = write!(out, "{}", drift::table(&rows, a.psi_warn));
        let _ = writeln!(out, "{drifted} features with PSI > {}", a.psi_warn);
    }
    Ok(0)
}

/// Builds the signer tables for `keys` (highest stake first) off the request path (a
/// blocking task: about 2 ms a key); checks use schnorrkel's own path
/// until they are in place.
fn build_key_tables(state: &Arc<server::State>, keys: Vec<[u8; 32]>) {
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let n = st.keys.set_tables(&keys);
        tracing::info!(
            tables = n,
            listed = keys.len(),
            ms = format_args!("{:.1}", t0.elapsed().as_secs_f64() * 1e3),
            "sr25519 tables built for the allow-listed validators"
        );
    });
}
