//! The request log: every verified request's features and our prediction as
//! one JSON line, for retraining and for the offline `drift` command.
//!
//! Answering must never wait on a disk. A request formats its line and hands
//! it to a bounded channel with `try_send`; a single writer thread owns the
//! files. A full channel (disk slower than traffic) or a failed write (disk
//! full, directory gone) drops the line and counts it, never the request.
//! Files rotate by size and the oldest are deleted to keep the directory
//! under a total cap; names carry a zero-padded timestamp so sorting by name
//! is sorting by age.

use cm_core::model::Prediction;
use cm_core::schema::N_FEATURES;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines waiting for the writer before new ones are dropped.
pub const CHANNEL_LINES: usize = 8192;
/// Default size at which a file is closed and a new one started.
pub const DEFAULT_MAX_FILE_MB: u64 = 64;
/// Default size of all log files together.
pub const DEFAULT_MAX_TOTAL_MB: u64 = 1024;
/// File name prefix and suffix.
pub const PREFIX: &str = "requests-";
pub const SUFFIX: &str = ".jsonl";
/// Fewest seconds between two warnings about failing writes.
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped_full: AtomicU64,
    dropped_write: AtomicU64,
    rotations: AtomicU64,
}

/// The sending side, held by the server.
pub struct RequestLog {
    tx: SyncSender<String>,
    c: Arc<Counters>,
}

/// Caps of the log directory.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl RequestLog {
    /// Starts the writer thread. Directory problems do not stop the server:
    /// they show up as dropped lines.
    pub fn start(dir: PathBuf, caps: Caps) -> std::io::Result<RequestLog> {
        let (tx, rx) = sync_channel(CHANNEL_LINES);
        let c = Arc::new(Counters::default());
        let cw = Arc::clone(&c);
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || Writer::new(dir, caps, cw).run(rx))?;
        Ok(RequestLog { tx, c })
    }

    /// Queues one line; never blocks.
    pub fn record(&self, values: &[f32; N_FEATURES], present: u64, p: &Prediction, sha: &str) {
        let line = format_line(now_ms(), values, present, p, sha);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.c.dropped_full.fetch_add(1, Relaxed);
            }
        }
    }

    /// This log's families on /metrics (crate::metrics).
    pub fn encode_metrics(
        &self,
        e: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        use crate::metrics::{counter, counters};
        counter(
            e,
            "cm_request_log_written",
            "Request log lines written.",
            self.c.written.load(Relaxed),
        )?;
        counters(
            e,
            "cm_request_log_dropped",
            "Request log lines dropped (the requests were answered).",
            [
                ([("reason", "full")], self.c.dropped_full.load(Relaxed)),
                ([("reason", "write")], self.c.dropped_write.load(Relaxed)),
            ],
        )?;
        counter(
            e,
            "cm_request_log_rotations",
            "Request log files started.",
            self.c.rotations.load(Relaxed),
        )
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `{"ts_ms":..,"model_sha256":"..","features":[40 values, null if absent],"prediction":{..}}`
pub fn format_line(
    ts_ms: u64,
    values: &[f32; N_FEATURES],
    present: u64,
    p: &Prediction,
    sha: &str,
) -> String {
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "{{\"ts_ms\":{ts_ms},\"model_sha256\":\"{sha}\",\"features\":["
    );
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if present & (1u64 << i) != 0 && v.is_finite() {
            let _ = write!(s, "{v}");
        } else {
            s.push_str("null");
        }
    }
    let t = if p.time_to_conversion_seconds.is_finite() {
        p.time_to_conversion_seconds
    } else {
        -1.0
    };
    let c = if p.confidence.is_finite() {
        p.confidence
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "],\"prediction\":{{\"conversion_happened\":{},\"time_to_conversion_seconds\":{t},\"confidence\":{c}}}}}",
        p.conversion_happened
    );
    s
}

/// Parses the features of one log line back: values and presence mask.
pub fn parse_line(line: &str) -> Option<([f32; N_FEATURES], u64)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let arr = v.get("features")?.as_array()?;
    if arr.len() != N_FEATURES {
        return None;
    }
    let mut values = [0f32; N_FEATURES];
    let mut present = 0u64;
    for (i, x) in arr.iter().enumerate() {
        if let Some(f) = x.as_f64() {
            values[i] = f as f32;
            present |= 1u64 << i;
        }
    }
    Some((values, present))
}

/// The log files of a directory, oldest first, with their sizes.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            v.push((e.path(), len));
        }
    }
    v.sort();
    Ok(v)
}

struct Writer {
    dir: PathBuf,
    caps: Caps,
    c: Arc<Counters>,
    file: Option<(std::io::BufWriter<std::fs::File>, PathBuf)>,
    size: u64,
    seq: u64,
    last_warn: Option<Instant>,
}

impl Writer {
    fn new(dir: PathBuf, caps: Caps, c: Arc<Counters>) -> Writer {
        Writer {
            dir,
            caps,
            c,
            file: None,
            size: 0,
            seq: 0,
            last_warn: None,
        }
    }

    fn warn(&mut self, what: &str, e: &std::io::Error) {
        let due = match self.last_warn {
            None => true,
            Some(t) => t.elapsed() >= WARN_EVERY,
        };
        if due {
            self.last_warn = Some(Instant::now());
            tracing::warn!(dir = %self.dir.display(), "request log: {what}: {e}; dropping lines until it works again");
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        self.seq += 1;
        let path = self.dir.join(format!(
            "{PREFIX}{:020}-{:06}{SUFFIX}",
            now_ms(),
            self.seq % 1_000_000
        ));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some((std::io::BufWriter::new(f), path));
        self.c.rotations.fetch_add(1, Relaxed);
        self.enforce_total();
        Ok(())
    }

    /// Deletes the oldest closed files until the directory fits the cap.
    fn enforce_total(&mut self) {
        let Ok(files) = log_files(&self.dir) else {
            return;
        };
        let current = self.file.as_ref().map(|(_, p)| p.clone());
        let mut total: u64 = files.iter().map(|(_, l)| l).sum();
        for (p, len) in files {
            if total <= self.caps.max_total_bytes {
                break;
            }
            if Some(&p) == current.as_ref() {
                continue;
            }
            if std::fs::remove_file(&p).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.file.is_some() && self.size + len > self.caps.max_file_bytes {
            if let Some((mut w, _)) = self.file.take() {
                w.flush()?;
            }
        }
        if self.file.is_none() {
            self.open()?;
        }
        let Some((w, _)) = self.file.as_mut() else {
            return Ok(());
        };
        w.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some((w, _)) = self.file.as_mut() {
            if let Err(e) = w.flush() {
                self.file = None;
                self.warn("flush failed", &e);
            }
        }
    }

    fn run(mut self, rx: Receiver<String>) {
        while let Ok(line) = rx.recv() {
            let mut next = Some(line);
            while let Some(l) = next.take() {
                match self.write(&l) {
                    Ok(()) => {
                        self.c.written.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        self.c.dropped_write.fetch_add(1, Relaxed);
                        self.file = None;
                        self.warn("write failed", &e);
                    }
                }
                next = rx.try_recv().ok();
            }
            // Queue drained: push what we have to the OS.
            self.flush();
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips() {
        let mut v = [0f32; N_FEATURES];
        v[0] = 12.5;
        v[3] = 7.0;
        let present = 0b1001;
        let p = Prediction {
            conversion_happened: 1,
            time_to_conversion_seconds: 61.5,
            confidence: 0.75,
        };
        let line = format_line(5, &v, present, &p, "ab");
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["prediction"]["confidence"], 0.75);
        assert_eq!(j["features"][1], serde_json::Value::Null);
        assert_eq!(parse_line(&line), Some((v, present)));
    }
}
