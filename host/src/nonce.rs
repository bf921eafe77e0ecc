//! Replay protection: the last accepted nonce per `hotkey:uuid`, in bounded memory.
//!
//! The rules follow the Python axon (AXON.md §5.2) with two hardenings:
//! - the first nonce of a key must lie inside `now - (4 s + timeout)` and,
//!   unlike Python, no more than a few seconds in the future; the timeout that
//!   widens the window comes from an unsigned header, so it is capped;
//! - the window applies whatever `bt_header_dendrite_version` says, because
//!   that header is not signed either.
//! Later nonces of a key must strictly increase. The map has a fixed capacity
//! and evicts the key that was *created* longest ago (FIFO): an evicted key
//! simply falls back to the window rule, which still refuses any replay older
//! than the window, so eviction never lets an old request through. Keys are
//! stored as a 128-bit BLAKE2b digest of the public key and uuid, so an entry
//! costs a few dozen bytes whatever the uuid length.

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
/// Default number of `hotkey:uuid` keys remembered.
pub const DEFAULT_CAPACITY: usize = 100_000;
const NS_PER_S: f64 = 1e9;

type KeyHash = Blake2b<U16>;

/// Why a nonce was refused. Messages mirror the Python axon's where one exists.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum NonceError {
    /// First nonce of a key, older than the window.
    TooOld { window_s: f64, age_s: f64 },
    /// Not greater than the last accepted nonce of this key (a replay).
    NotIncreasing,
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

/// Bounded last-nonce map.
pub struct NonceMap {
    last: HashMap<u128, u64>,
    order: VecDeque<u128>,
    capacity: usize,
    future_skew_ns: u64,
}

impl NonceMap {
    pub fn new(capacity: usize, future_skew_ns: u64) -> NonceMap {
        let capacity = capacity.max(1);
        NonceMap {
            last: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
            future_skew_ns,
        }
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Checks a nonce without recording it (call before the signature check).
    pub fn check(&self, key: u128, nonce: u64, timeout_s: f64, now_ns: u64) -> Result<(), NonceError> {
        if nonce > now_ns.saturating_add(self.future_skew_ns) {
            return Err(NonceError::InFuture { ahead_s: (nonce - now_ns) as f64 / NS_PER_S });
        }
        match self.last.get(&key) {
            Some(&prev) if nonce <= prev => Err(NonceError::NotIncreasing),
            Some(_) => Ok(()),
            None => {
                let t = if timeout_s.is_finite() { timeout_s.clamp(0.0, MAX_WINDOW_TIMEOUT_S) } else { 0.0 };
                let window_ns = ALLOWED_DELTA_NS + (t * NS_PER_S) as u64;
                let oldest = now_ns.saturating_sub(window_ns);
                if nonce <= oldest {
                    Err(NonceError::TooOld {
                        window_s: window_ns as f64 / NS_PER_S,
                        age_s: now_ns.saturating_sub(nonce) as f64 / NS_PER_S,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Records an accepted nonce (call after the signature verified). Checks
    /// again, so two concurrent requests with one nonce cannot both pass.
    pub fn commit(&mut self, key: u128, nonce: u64, timeout_s: f64, now_ns: u64) -> Result<(), NonceError> {
        self.check(key, nonce, timeout_s, now_ns)?;
        match self.last.get_mut(&key) {
            Some(prev) => *prev = nonce,
            None => {
                if self.last.len() >= self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.last.remove(&old);
                    }
                }
                self.last.insert(key, nonce);
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
    fn first_nonce_window() {
        let m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        // 12 s timeout: window is 16 s.
        assert!(m.check(key(0), NOW - 15 * S, 12.0, NOW).is_ok());
        assert!(matches!(m.check(key(0), NOW - 17 * S, 12.0, NOW), Err(NonceError::TooOld { .. })));
        // A huge unsigned timeout cannot widen the window past the cap.
        assert!(m.check(key(0), NOW - 1000 * S, 1e9, NOW).is_err());
        assert!(m.check(key(0), NOW - 1000 * S, f64::NAN, NOW).is_err());
        // Future bound.
        assert!(m.check(key(0), NOW + 4 * S, 12.0, NOW).is_ok());
        assert!(matches!(m.check(key(0), NOW + 6 * S, 12.0, NOW), Err(NonceError::InFuture { .. })));
    }

    #[test]
    fn strictly_increasing_per_key() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        m.commit(key(0), NOW, 12.0, NOW).unwrap();
        assert_eq!(m.check(key(0), NOW, 12.0, NOW), Err(NonceError::NotIncreasing));
        assert_eq!(m.commit(key(0), NOW - 1, 12.0, NOW), Err(NonceError::NotIncreasing));
        // Another uuid of the same hotkey is independent.
        assert!(m.check(key(1), NOW - 1, 12.0, NOW).is_ok());
        // Once stored, only increase matters (no age window), as in Python.
        m.commit(key(0), NOW + 1, 12.0, NOW + 100 * S).unwrap();
        assert!(m.commit(key(0), NOW + 2, 12.0, NOW + 100 * S).is_ok());
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
        assert_eq!(m.check(key(999), NOW, 12.0, NOW), Err(NonceError::NotIncreasing));
        assert!(m.check(key(0), NOW, 12.0, NOW).is_ok());
        assert!(m.check(key(0), NOW, 12.0, NOW + 60 * S).is_err());
    }

    #[test]
    fn messages_match_python() {
        let e = NonceError::TooOld { window_s: 16.0, age_s: 20.5 };
        assert_eq!(
            e.to_string(),
            "Nonce is too old: acceptable delta is 16.00 seconds but request was 20.50 seconds old"
        );
        assert_eq!(NonceError::NotIncreasing.to_string(), "Nonce is too old, a newer one was last processed");
    }
}
