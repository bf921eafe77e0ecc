//! The allow-list of validator hotkeys and their stakes.
//!
//! The file is deliberately dumb (one `ss58[,stake]` per line, `#` comments)
//! so an operator can write it by hand or from a cron job that reads the
//! metagraph. It is re-read when its modification time or size changes; a
//! file that fails to parse is refused whole and the previous list stays in
//! force, so a half-written file never opens or closes the door by accident.
//! Each entry carries its stake rank in [0, 1] (0 = lowest stake), which the
//! in-flight cap uses to refuse the lowest-stake callers first.

use crate::ss58;
use core::fmt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Default interval between checks of the file's modification time.
pub const DEFAULT_POLL: Duration = Duration::from_secs(3);
/// Largest validators file we read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One allowed caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    pub stake: f64,
    /// Position among the distinct stakes, 0 = lowest, 1 = highest.
    pub rank: f64,
}

/// A parsed validators file.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    entries: HashMap<[u8; 32], Entry>,
}

/// Where and why a validators file failed to parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

impl AllowList {
    /// Parses the file format: `ss58[,stake]` per line, `#` starts a comment,
    /// blank lines are skipped, a repeated hotkey keeps the last stake.
    pub fn parse(text: &str) -> Result<AllowList, ParseError> {
        let mut stakes: HashMap<[u8; 32], f64> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |what: String| ParseError { line: i + 1, what };
            let mut parts = line.splitn(2, ',');
            let addr = parts.next().unwrap_or("").trim();
            let key = ss58::decode_key(addr).map_err(|e| err(format!("{addr:?}: {e}")))?;
            let stake = match parts.next().map(str::trim) {
                None => 0.0,
                Some(s) => match s.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => v,
                    _ => return Err(err(format!("stake {s:?} is not a non-negative number"))),
                },
            };
            stakes.insert(key, stake);
        }
        let mut distinct: Vec<f64> = stakes.values().copied().collect();
        distinct.sort_by(|a, b| a.total_cmp(b));
        distinct.dedup();
        let top = distinct.len().saturating_sub(1);
        let entries = stakes
            .into_iter()
            .map(|(k, stake)| {
                let pos = distinct.partition_point(|&s| s < stake);
                let rank = if top == 0 {
                    1.0
                } else {
                    pos as f64 / top as f64
                };
                (k, Entry { stake, rank })
            })
            .collect();
        Ok(AllowList { entries })
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Entry> {
        self.entries.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listed keys, highest stake first (ties in key order, so the
    /// order is the same on every load of the same file).
    pub fn keys_by_stake(&self) -> Vec<[u8; 32]> {
        let mut keys: Vec<([u8; 32], f64)> =
            self.entries.iter().map(|(k, e)| (*k, e.stake)).collect();
        keys.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        keys.into_iter().map(|(k, _)| k).collect()
    }
}

/// Reads and parses a validators file.
pub fn load(path: &Path) -> anyhow::Result<AllowList> {
    use anyhow::Context;
    let meta =
        std::fs::metadata(path).with_context(|| format!("validators file {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!(
            "validators file {} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    AllowList::parse(&text).with_context(|| format!("validators file {}", path.display()))
}

/// The list in force, swappable while requests read it.
pub struct Shared {
    current: RwLock<Arc<AllowList>>,
}

impl Shared {
    pub fn new(list: AllowList) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(list)),
        }
    }

    /// Looks a caller up in the list in force.
    pub fn get(&self, key: &[u8; 32]) -> Option<Entry> {
        match self.current.read() {
            Ok(g) => g.get(key),
            Err(p) => p.into_inner().get(key),
        }
    }

    pub fn len(&self) -> usize {
        match self.current.read() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`AllowList::keys_by_stake`] of the list in force.
    pub fn keys_by_stake(&self) -> Vec<[u8; 32]> {
        match self.current.read() {
            Ok(g) => g.keys_by_stake(),
            Err(p) => p.into_inner().keys_by_stake(),
        }
    }

    pub fn replace(&self, list: AllowList) {
        let new = Arc::new(list);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls `path` and swaps in a new list whenever the file changes and
/// parses; `on_change` sees each new list before it is swapped in.
pub async fn watch(
    path: PathBuf,
    shared: Arc<Shared>,
    poll: Duration,
    on_change: impl Fn(&AllowList) + Send + 'static,
) {
    let mut last = stamp(&path);
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match load(&path) {
            Ok(list) => {
                tracing::info!(path = %path.display(), validators = list.len(), "validators file reloaded");
                on_change(&list);
                shared.replace(list);
            }
            Err(e) => {
                tracing::warn!("validators file not reloaded, keeping the previous list: {e:#}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

    #[test]
    fn keys_by_stake_lists_the_highest_stake_first() {
        let list = AllowList::parse(&format!("{ALICE},5\n{BOB},50\n{CHARLIE},7\n")).unwrap();
        let order: Vec<String> = list.keys_by_stake().iter().map(ss58::encode).collect();
        assert_eq!(order, [BOB, CHARLIE, ALICE]);
    }

    #[test]
    fn parses_stakes_comments_and_ranks() {
        let text = format!("# validators\n{ALICE}, 1500.5  # big\n\n  {BOB}\n{CHARLIE},10\n");
        let l = AllowList::parse(&text).unwrap();
        assert_eq!(l.len(), 3);
        let a = l.get(&ss58::decode_key(ALICE).unwrap()).unwrap();
        let b = l.get(&ss58::decode_key(BOB).unwrap()).unwrap();
        let c = l.get(&ss58::decode_key(CHARLIE).unwrap()).unwrap();
        assert_eq!((a.stake, a.rank), (1500.5, 1.0));
        assert_eq!((b.stake, b.rank), (0.0, 0.0));
        assert_eq!((c.stake, c.rank), (10.0, 0.5));
        assert!(l.get(&[0; 32]).is_none());
    }

    #[test]
    fn single_entry_has_top_rank_and_empty_is_ok() {
        let l = AllowList::parse(ALICE).unwrap();
        assert_eq!(l.get(&ss58::decode_key(ALICE).unwrap()).unwrap().rank, 1.0);
        assert!(AllowList::parse("# nobody\n\n").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let e = AllowList::parse(&format!("{ALICE}\nnot-an-address\n")).unwrap_err();
        assert_eq!(e.line, 2);
        let e = AllowList::parse(&format!("{ALICE},-3\n")).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(AllowList::parse(&format!("{ALICE},NaN")).is_err());
        assert!(AllowList::parse(&format!("{ALICE},lots")).is_err());
    }

    #[test]
    fn shared_swaps() {
        let s = Shared::new(AllowList::parse(ALICE).unwrap());
        let k = ss58::decode_key(BOB).unwrap();
        assert!(s.get(&k).is_none());
        s.replace(AllowList::parse(BOB).unwrap());
        assert!(s.get(&k).is_some());
        assert_eq!(s.len(), 1);
    }
}
