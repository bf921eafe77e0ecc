//! The served model as a swappable value, the shadow candidate, and the
//! reload triggers (SIGHUP and a file watch).
//!
//! A request takes one `Arc<Active>` at the start of its prediction and uses
//! only that, so a swap can never mix two models in one answer: the old model
//! lives until the last request holding it finishes. The lock is held only to
//! clone or replace the `Arc` (nanoseconds), never while loading or folding a
//! file, so a slow or broken reload never stalls answering. A file that fails
//! `cm_modelfile::load` (read, parse, validate, fold) is logged and counted and
//! the current model stays. The watch polls size and mtime instead of using
//! inotify: two stat calls every few seconds cost nothing, work on every
//! filesystem, and need no extra dependency.

use crate::drift::Drift;
use crate::reqlog::RequestLog;
use cm_core::kernels::Kernel;
use cm_core::model::{Model, Prediction};
use cm_core::parse::Features;
use cm_modelfile::FeatureStats;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Default seconds between two looks at the `--weights` file.
pub const DEFAULT_WATCH_POLL_S: f64 = 2.0;

/// The model weights: compiled in, or loaded at run time.
pub enum Weights {
    Static(&'static Model),
    Owned(Box<Model>),
}

/// One model as served: weights plus where they came from.
pub struct Active {
    pub weights: Weights,
    /// SHA-256 of the model file's bytes, lowercase hex.
    pub sha256: String,
    /// `embedded` or the file path.
    pub source: String,
}

impl Active {
    pub fn model(&self) -> &Model {
        match &self.weights {
            Weights::Static(m) => m,
            Weights::Owned(b) => b,
        }
    }

    /// Loads and checks a model file.
    pub fn from_file(path: &Path) -> Result<(Active, Vec<FeatureStats>), String> {
        let l = cm_modelfile::load(path).map_err(|e| e.to_string())?;
        Ok((
            Active {
                weights: Weights::Owned(l.model),
                sha256: l.sha256,
                source: path.display().to_string(),
            },
            l.file.training_stats,
        ))
    }
}

/// Agreement between the served model and the shadow candidate.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct ShadowStats {
    /// Requests both models answered.
    pub n: u64,
    /// Requests where both predicted the same class.
    pub agree: u64,
    /// Sum of |confidence difference|.
    pub conf_abs_diff_sum: f64,
    /// Requests where both predicted a conversion.
    pub both_positive: u64,
    /// Sum of |time difference| in seconds over `both_positive`.
    pub time_abs_diff_sum: f64,
}

impl ShadowStats {
    pub fn agreement(&self) -> Option<f64> {
        (self.n > 0).then(|| self.agree as f64 / self.n as f64)
    }
    pub fn mean_conf_diff(&self) -> Option<f64> {
        (self.n > 0).then(|| self.conf_abs_diff_sum / self.n as f64)
    }
    pub fn mean_time_diff(&self) -> Option<f64> {
        (self.both_positive > 0).then(|| self.time_abs_diff_sum / self.both_positive as f64)
    }

    fn add(&mut self, served: &Prediction, cand: &Prediction) {
        self.n += 1;
        if served.conversion_happened == cand.conversion_happened {
            self.agree += 1;
        }
        let dc = (served.confidence as f64 - cand.confidence as f64).abs();
        if dc.is_finite() {
            self.conf_abs_diff_sum += dc;
        }
        if served.conversion_happened == 1 && cand.conversion_happened == 1 {
            self.both_positive += 1;
            let dt = (served.time_to_conversion_seconds as f64
                - cand.time_to_conversion_seconds as f64)
                .abs();
            if dt.is_finite() {
                self.time_abs_diff_sum += dt;
            }
        }
    }
}

/// A candidate model run on every request after the answer is computed.
pub struct Shadow {
    pub active: Active,
    stats: Mutex<ShadowStats>,
}

impl Shadow {
    pub fn new(active: Active) -> Shadow {
        Shadow {
            active,
            stats: Mutex::new(ShadowStats::default()),
        }
    }

    /// Runs the candidate on `f` and records how it compares with `served`.
    pub fn observe(&self, f: &Features<'_>, k: Kernel, served: &Prediction) {
        let cand = self.active.model().predict(f, k);
        let mut s = match self.stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.add(served, &cand);
    }

    pub fn stats(&self) -> ShadowStats {
        match self.stats.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }
}

/// Everything about the model's life that a request touches.
pub struct Lifecycle {
    active: RwLock<Arc<Active>>,
    reloads_ok: AtomicU64,
    reloads_rejected: AtomicU64,
    pub shadow: Option<Shadow>,
    pub reqlog: Option<RequestLog>,
    pub drift: Option<Drift>,
}

impl Lifecycle {
    pub fn new(active: Active) -> Lifecycle {
        Lifecycle {
            active: RwLock::new(Arc::new(active)),
            reloads_ok: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            shadow: None,
            reqlog: None,
            drift: None,
        }
    }

    /// A fixed compiled-in model, nothing else (tests).
    pub fn embedded(m: &'static Model, sha256: &str) -> Lifecycle {
        Lifecycle::new(Active {
            weights: Weights::Static(m),
            sha256: sha256.to_string(),
            source: "embedded".into(),
        })
    }

    /// The model answering right now; hold it for the whole prediction.
    pub fn current(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn install(&self, a: Active) {
        let new = Arc::new(a);
        let mut g = match self.active.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = new;
    }

    /// (ok, rejected) reload counts.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Relaxed),
            self.reloads_rejected.load(Relaxed),
        )
    }

    /// Loads `path` and swaps it in; on any failure keeps the current model.
    pub fn reload(&self, path: &Path, why: &str) -> bool {
        match Active::from_file(path) {
            Ok((a, _stats)) => {
                let old = self.current().sha256.clone();
                tracing::info!(
                    trigger = why,
                    old_sha256 = %old,
                    new_sha256 = %a.sha256,
                    source = %a.source,
                    "model reloaded"
                );
                self.install(a);
                self.reloads_ok.fetch_add(1, Relaxed);
                true
            }
            Err(e) => {
                self.reloads_rejected.fetch_add(1, Relaxed);
                tracing::warn!(
                    trigger = why,
                    kept_sha256 = %self.current().sha256,
                    "model reload rejected, keeping the current model: {e}"
                );
                false
            }
        }
    }
}

/// Without `--weights` there is nothing to reload; SIGHUP is logged and
/// ignored (its default action would end the process).
pub async fn ignore_hup() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while s.recv().await.is_some() {
            tracing::info!("SIGHUP ignored: serving the embedded model (start with --weights FILE to reload on SIGHUP)");
        }
    }
}

/// Size and mtime of a file, or None if it cannot be stat'ed.
fn stamp(p: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Reloads `path` on SIGHUP and whenever its size or mtime changes. A change
/// is acted on once it has been stable for one poll, so a file being copied
/// in is not read half-written (an atomic rename is still the safe way).
pub async fn watch(path: PathBuf, life: Arc<Lifecycle>, poll: Duration) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let mut seen = stamp(&path);
    let mut pending: Option<Option<(u64, SystemTime)>> = None;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup_fut = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fut = std::future::pending::<()>();
        tokio::select! {
            _ = hup_fut => {
                let p = path.clone();
                let l = Arc::clone(&life);
                let _ = tokio::task::spawn_blocking(move || l.reload(&p, "SIGHUP")).await;
                seen = stamp(&path);
                pending = None;
            }
            _ = tick.tick() => {
                let now = stamp(&path);
                if now == seen {
                    pending = None;
                    continue;
                }
                if pending != Some(now) {
                    // Changed since the last look: wait one more poll for it to settle.
                    pending = Some(now);
                    continue;
                }
                pending = None;
                seen = now;
                if now.is_none() {
                    tracing::warn!(path = %path.display(), "weights file is gone; keeping the current model");
                    continue;
                }
                let p = path.clone();
                let l = Arc::clone(&life);
                let _ = tokio::task::spawn_blocking(move || l.reload(&p, "file change")).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: u8, t: f32, conf: f32) -> Prediction {
        Prediction {
            conversion_happened: c,
            time_to_conversion_seconds: t,
            confidence: conf,
        }
    }

    #[test]
    fn shadow_stats_count_agreement_and_differences() {
        let mut s = ShadowStats::default();
        assert_eq!(s.agreement(), None);
        s.add(&p(1, 60.0, 0.9), &p(1, 70.0, 0.8));
        s.add(&p(0, -1.0, 0.3), &p(1, 50.0, 0.6));
        assert_eq!(s.n, 2);
        assert_eq!(s.agreement(), Some(0.5));
        assert!((s.mean_conf_diff().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(s.both_positive, 1);
        assert!((s.mean_time_diff().unwrap() - 10.0).abs() < 1e-4);
    }
}
