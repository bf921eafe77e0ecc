//! Replay protection: recent nonces per `hotkey:uuid`, in bounded memory.
//!
//! The Python axon (AXON.md §5.2) keeps the last nonce per key and demands
//! strict increase, so two requests a validator fires concurrently can arrive
//! out of order and the second is refused (we saw this with a real 10.5
//! dendrite sending three synapses at once). We keep the last
//! [`RECENT_PER_KEY`] accepted nonces per key instead and accept a nonce that
//! is (a) inside the time window `now - (4 s + timeout)` and no more than a
//! few seconds in the future, (b) above the oldest remembered nonce once the
//! ring is full, and (c) not in the ring. Every accepted nonce stays in the
//! ring until a larger one pushes it out, and then it is at or below the new
//! floor, so a nonce is accepted at most once per key.
//!
//! `--nonce.strict` restores Python's strict increase for operators who want
//! it. Other differences from Python, all in the safe direction: the window applies to
//! every request, not only a key's first (a legitimate nonce older than
//! `4 s + timeout` belongs to a request the dendrite has already abandoned);
//! the `timeout` that widens it is capped, since that header is unsigned; and
//! `bt_header_dendrite_version` (also unsigned) cannot switch the window off.
//! The map has a fixed capacity and evicts the key created longest ago
//! (FIFO): an evicted key falls back to the window rule, which still refuses
//! anything older than the window. Keys are a 128-bit BLAKE2b digest of the
//! public key and uuid, so an entry has a fixed size whatever the uuid length.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use core::fmt;
use std::collections::{HashMap, VecDeque};

/// Python's `ALLOWED_DELTA`: slack for the first nonce of a key, in ns.
pub const ALLOWED_DELTA_NS: u64 = 4_000_000_000;
/// Largest request `timeout` that may widen the window (the subnet uses 60 s,
/// a later branch 120 s).
pub const MAX_WINDOW_TIMEOUT_S: f64 = 120.0;
/// Default bound on how far a nonce may be ahead of our clock.
pub const DEFAULT_FUTURE_SKEW_NS: u64 = 5_000_000_000;
/// Default number of `hotkey:uuid` keys remembered. The map evicts the
/// oldest key for each new one once full, and a hash table that deletes as
/// it inserts must stay at most half full: past that, the deleted slots it
/// cannot reuse in place make it double (measured: a 57,344-key map grew to
/// 131,072 buckets and 17.2 MB of resident memory under a flood of fresh
/// uuids, docs/PERF-SERVER.md). So 28,672 keys, in a table allocated once
/// for twice that (65,536 buckets). A validator's dendrite keeps one uuid
/// for its lifetime, so a subnet's validators need a few hundred keys; the
/// rest is headroom.
pub const DEFAULT_CAPACITY: usize = 28_672;
/// Accepted nonces remembered per key: how far out of order concurrent
/// requests from one dendrite may arrive.
pub const RECENT_PER_KEY: usize = 16;
const NS_PER_S: f64 = 1e9;

type KeyHash = Blake2b<U16>;

/// Why a nonce was refused. Messages mirror the Python axon's where one exists.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum NonceError {
    /// Older than the window.
    TooOld { window_s: f64, age_s: f64 },
    /// At or below the oldest nonce still remembered for this key.
    NotIncreasing,
    /// Exactly a nonce this key already used (a replay).
    Replayed,
    /// Further ahead of our clock than the allowed skew.
    InFuture { ahead_s: f64 },
}

impl fmt::Display for NonceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NonceError::TooOld { window_s, age_s } => write!(
                f,
                "Nonce is too old: acceptable delta is {window_s:.2} seconds but request was {age_s:.2} seconds old"
            ),
            NonceError::NotIncreasing => f.write_str("Nonce is too old, a newer one was last processed"),
            NonceError::Replayed => f.write_str("Nonce was already used (replayed request)"),
            NonceError::InFuture { ahead_s } => {
                write!(f, "Nonce is {ahead_s:.2} seconds in the future; check the validator's clock")
            }
        }
    }
}

/// Digest identifying one `hotkey:uuid` endpoint.
pub fn endpoint_key(hotkey: &[u8; 32], uuid: &str) -> u128 {
    let mut h = KeyHash::new();
    h.update(hotkey);
    h.update(uuid.as_bytes());
    u128::from_le_bytes(h.finalize().into())
}

/// The most recent accepted nonces of one key (unordered, no duplicates).
///
/// Most keys only ever see one nonce (a flood of fresh uuids is the worst
/// case for memory), so the first nonce is stored inline and the ring of
/// [`RECENT_PER_KEY`] is allocated only when a second one arrives: a map
/// entry is 32 bytes instead of 152.
#[derive(Clone, Debug)]
struct Recent {
    first: u64,
    /// Every remembered nonce (the first included), once there are two.
    ring: Option<Box<Ring>>,
}

#[derive(Clone, Copy, Debug)]
struct Ring {
    nonces: [u64; RECENT_PER_KEY],
    len: u8,
}

const _: () = assert!(RECENT_PER_KEY >= 2 && RECENT_PER_KEY <= u8::MAX as usize);

impl Recent {
    fn new(n: u64) -> Recent {
        Recent {
            first: n,
            ring: None,
        }
    }

    fn slice(&self) -> &[u64] {
        match &self.ring {
            Some(r) => &r.nonces[..r.len as usize],
            None => std::slice::from_ref(&self.first),
        }
    }

    /// Lowest nonce that is refused outright: the oldest remembered, once
    /// the ring is full (before that, only the time window applies).
    fn floor(&self) -> Option<u64> {
        match &self.ring {
            Some(r) if r.len as usize >= RECENT_PER_KEY => self.slice().iter().copied().min(),
            _ => None,
        }
    }

    fn insert(&mut self, n: u64) {
        let r = self.ring.get_or_insert_with(|| {
            let mut nonces = [0; RECENT_PER_KEY];
            nonces[0] = self.first;
            Box::new(Ring { nonces, len: 1 })
        });
        let len = r.len as usize;
        if len < RECENT_PER_KEY {
            r.nonces[len] = n;
            r.len += 1;
        } else if let Some((i, _)) = r.nonces.iter().enumerate().min_by_key(|(_, v)| **v) {
            r.nonces[i] = n;
        }
    }
}

/// A key as two words: 8-byte alignment keeps a map entry at 32 bytes.
type Key = [u64; 2];

fn split(key: u128) -> Key {
    [key as u64, (key >> 64) as u64]
}

/// Bounded recent-nonce map.
pub struct NonceMap {
    recent: HashMap<Key, Recent>,
    order: VecDeque<Key>,
    capacity: usize,
    future_skew_ns: u64,
    strict: bool,
}

impl NonceMap {
    pub fn new(capacity: usize, future_skew_ns: u64) -> NonceMap {
        let capacity = capacity.max(1);
        // Sized once, at twice the keys it will hold (see DEFAULT_CAPACITY):
        // growing by doubling would leave each smaller table behind as
        // freed-but-resident heap. Untouched pages cost no RAM; an
        // operator's larger capacity grows as usual past the default.
        let initial = capacity.min(DEFAULT_CAPACITY);
        NonceMap {
            recent: HashMap::with_capacity(2 * initial),
            order: VecDeque::with_capacity(initial),
            capacity,
            future_skew_ns,
            strict: false,
        }
    }

    /// Python's rule: every nonce of a key must exceed the largest accepted
    /// so far (out-of-order arrivals are refused too).
    pub fn strict(mut self, on: bool) -> NonceMap {
        self.strict = on;
        self
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Checks a nonce without recording it (call before the signature check).
    pub fn check(
        &self,
        key: u128,
        nonce: u64,
        timeout_s: f64,
        now_ns: u64,
    ) -> Result<(), NonceError> {
        if nonce > now_ns.saturating_add(self.future_skew_ns) {
            return Err(NonceError::InFuture {
                ahead_s: (nonce - now_ns) as f64 / NS_PER_S,
            });
        }
        let t = if timeout_s.is_finite() {
            timeout_s.clamp(0.0, MAX_WINDOW_TIMEOUT_S)
        } else {
            0.0
        };
        let window_ns = ALLOWED_DELTA_NS + (t * NS_PER_S) as u64;
        if nonce <= now_ns.saturating_sub(window_ns) {
            return Err(NonceError::TooOld {
                window_s: window_ns as f64 / NS_PER_S,
                age_s: now_ns.saturating_sub(nonce) as f64 / NS_PER_S,
            });
        }
        if let Some(r) = self.recent.get(&split(key)) {
            if self.strict && r.slice().iter().any(|&m| nonce < m) {
                return Err(NonceError::NotIncreasing);
            }
            if r.floor().is_some_and(|f| nonce <= f) {
                return Err(NonceError::NotIncreasing);
            }
            if r.slice().contains(&nonce) {
                return Err(NonceError::Replayed);
            }
        }
        Ok(())
    }

    /// Records an accepted nonce (call after the signature verified). Checks
    /// again, so two concurrent requests with one nonce cannot both pass.
    pub fn commit(
        &mut self,
        key: u128,
        nonce: u64,
        timeout_s: f64,
        now_ns: u64,
    ) -> Result<(), NonceError> {
        self.check(key, nonce, timeout_s, now_ns)?;
        let key = split(key);
        match self.recent.get_mut(&key) {
            Some(r) => r.insert(nonce),
            None => {
                if self.recent.len() >= self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.recent.remove(&old);
                    }
                }
                self.recent.insert(key, Recent::new(nonce));
                self.order.push_back(key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_626_734_383_137_861;
    const S: u64 = 1_000_000_000;

    fn key(i: u32) -> u128 {
        endpoint_key(&[7; 32], &format!("uuid-{i}"))
    }

    #[test]
    fn time_window() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        // 12 s timeout: window is 16 s.
        assert!(m.check(key(0), NOW - 15 * S, 12.0, NOW).is_ok());
        assert!(matches!(
            m.check(key(0), NOW - 17 * S, 12.0, NOW),
            Err(NonceError::TooOld { .. })
        ));
        // A huge unsigned timeout cannot widen the window past the cap.
        assert!(m.check(key(0), NOW - 1000 * S, 1e9, NOW).is_err());
        assert!(m.check(key(0), NOW - 1000 * S, f64::NAN, NOW).is_err());
        // Future bound.
        assert!(m.check(key(0), NOW + 4 * S, 12.0, NOW).is_ok());
        assert!(matches!(
            m.check(key(0), NOW + 6 * S, 12.0, NOW),
            Err(NonceError::InFuture { .. })
        ));
        // The window applies to known keys too.
        m.commit(key(0), NOW, 12.0, NOW).unwrap();
        assert!(matches!(
            m.check(key(0), NOW + 1, 12.0, NOW + 100 * S),
            Err(NonceError::TooOld { .. })
        ));
    }

    #[test]
    fn each_nonce_once_per_key() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        m.commit(key(0), NOW, 12.0, NOW).unwrap();
        assert_eq!(m.check(key(0), NOW, 12.0, NOW), Err(NonceError::Replayed));
        assert_eq!(m.commit(key(0), NOW, 12.0, NOW), Err(NonceError::Replayed));
        // Another uuid of the same hotkey is independent.
        assert!(m.check(key(1), NOW, 12.0, NOW).is_ok());
    }

    #[test]
    fn out_of_order_within_the_ring() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        // Three concurrent requests arriving 3, 1, 2.
        for n in [NOW + 3, NOW + 1, NOW + 2] {
            m.commit(key(0), n, 12.0, NOW).unwrap();
        }
        for n in [NOW + 1, NOW + 2, NOW + 3] {
            assert_eq!(m.check(key(0), n, 12.0, NOW), Err(NonceError::Replayed));
        }
    }

    #[test]
    fn strict_mode_refuses_out_of_order() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS).strict(true);
        m.commit(key(0), NOW + 3, 12.0, NOW).unwrap();
        assert_eq!(
            m.check(key(0), NOW + 1, 12.0, NOW),
            Err(NonceError::NotIncreasing)
        );
        assert_eq!(
            m.check(key(0), NOW + 3, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        assert!(m.commit(key(0), NOW + 4, 12.0, NOW).is_ok());
    }

    #[test]
    fn no_replay_after_the_ring_turns_over() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        let used: Vec<u64> = (1..=100).map(|i| NOW + i * 1000).collect();
        // Arrivals swapped pairwise within blocks of four: all accepted.
        for block in used.chunks(4) {
            for &j in &[1usize, 0, 3, 2] {
                if let Some(&n) = block.get(j) {
                    m.commit(key(0), n, 12.0, NOW).unwrap();
                }
            }
        }
        for &n in &used {
            assert!(
                m.check(key(0), n, 12.0, NOW).is_err(),
                "nonce {n} accepted twice"
            );
        }
        // Below the ring's floor is refused like Python's strict rule; a
        // fresh larger one still passes.
        assert_eq!(
            m.check(key(0), NOW + 1, 12.0, NOW),
            Err(NonceError::NotIncreasing)
        );
        assert!(m.check(key(0), NOW + 1_000_000, 12.0, NOW).is_ok());
    }

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<(Key, Recent)>(), 32);
        assert_eq!(split(u128::MAX - 1), [u64::MAX - 1, u64::MAX]);
    }

    #[test]
    fn capacity_is_bounded_and_evicts_oldest() {
        let cap = 100;
        let mut m = NonceMap::new(cap, DEFAULT_FUTURE_SKEW_NS);
        for i in 0..1000 {
            m.commit(key(i), NOW, 12.0, NOW).unwrap();
            assert!(m.len() <= cap);
        }
        assert_eq!(m.len(), cap);
        assert_eq!(m.order.len(), cap);
        // Key 999 is remembered (replay refused); key 0 was evicted, so it
        // falls back to the window rule, which still refuses an old nonce.
        assert_eq!(m.check(key(999), NOW, 12.0, NOW), Err(NonceError::Replayed));
        assert!(m.check(key(0), NOW, 12.0, NOW).is_ok());
        assert!(m.check(key(0), NOW, 12.0, NOW + 60 * S).is_err());
    }

    #[test]
    fn messages_match_python() {
        let e = NonceError::TooOld {
            window_s: 16.0,
            age_s: 20.5,
        };
        assert_eq!(
            e.to_string(),
            "Nonce is too old: acceptable delta is 16.00 seconds but request was 20.50 seconds old"
        );
        assert_eq!(
            NonceError::NotIncreasing.to_string(),
            "Nonce is too old, a newer one was last processed"
        );
    }
}
