//! Replay protection: recent nonces per `hotkey:uuid`, in bounded memory
//! that one caller cannot take from another.
//!
//! The Python axon (AXON.md §5.2) keeps the last nonce per key and demands
//! strict increase, so two requests a validator fires concurrently can arrive
//! out of order and the second is refused (we saw this with a real 10.5
//! dendrite sending three synapses at once). We keep the last
//! [`RECENT_PER_KEY`] accepted nonces per key instead and accept a nonce that
//! is (a) inside the time window `now - (4 s + timeout)` and no more than a
//! few seconds in the future, (b) above its hotkey's floor, (c) above the
//! oldest remembered nonce of its key once that key's ring is full, and (d)
//! not in the ring.
//!
//! State is grouped by hotkey. Each hotkey keeps at most `per_hotkey` uuids
//! and evicts its own oldest one beyond that; the map as a whole keeps at most
//! `capacity` uuids and, when full, evicts the oldest-created one of any
//! hotkey. Whenever a uuid is evicted its hotkey's *floor* rises to the
//! largest nonce that uuid had accepted, and every later nonce of that hotkey
//! at or below the floor is refused. So a nonce, once accepted, is refused
//! for ever after: while its uuid is remembered by the ring rule, after it is
//! evicted by the floor. A hotkey whose record is itself dropped (only once
//! more than twice `capacity` hotkeys hold nothing but a floor, which only
//! `--allow-all` makes possible) folds its floor into one global floor that
//! every hotkey new to the map starts from. Nothing is ever forgotten without
//! raising a floor over it: an evicted caller is refused, never let through
//! twice.
//!
//! The window's `timeout` term is capped (the header is unsigned), at the
//! subnet's request timeout by default. `--nonce.strict` restores Python's
//! strict increase. Keys are a 128-bit BLAKE2b digest of the public key and
//! uuid, so an entry has a fixed size whatever the uuid length.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use core::fmt;
use std::collections::{HashMap, VecDeque};

/// Python's `ALLOWED_DELTA`: slack for the first nonce of a key, in ns.
pub const ALLOWED_DELTA_NS: u64 = 4_000_000_000;
/// Default for the largest request `timeout` that may widen the window: the
/// subnet's validators send 60 s (SUBNET.md). The header is unsigned, so
/// anything larger would only widen the window for a replay.
pub const MAX_WINDOW_TIMEOUT_S: f64 = 60.0;
/// Default number of uuids one hotkey keeps before it evicts its own oldest.
/// A dendrite keeps one uuid for its life; a validator that makes a new
/// dendrite per query turns them over, and only its requests arriving more
/// than this many uuids out of order are refused (by the floor).
pub const DEFAULT_PER_HOTKEY: usize = 256;
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

/// A key as two words.
type Key = [u64; 2];

fn split(key: u128) -> Key {
    [key as u64, (key >> 64) as u64]
}

/// One hotkey's replay state.
#[derive(Debug)]
struct Owner {
    /// Every nonce at or below this is refused (raised by evictions).
    floor: u64,
    /// Its remembered uuids, oldest first.
    keys: Vec<(Key, Recent)>,
}

impl Owner {
    fn find(&self, key: Key) -> Option<&Recent> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, r)| r)
    }

    /// Forgets the oldest uuid, raising the floor over its nonces.
    fn evict_oldest(&mut self) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let (_, r) = self.keys.remove(0);
        if let Some(&top) = r.slice().iter().max() {
            self.floor = self.floor.max(top);
        }
        true
    }
}

/// Bounded replay state, grouped by hotkey.
pub struct NonceMap {
    owners: HashMap<[u8; 32], Owner>,
    /// The hotkey of every uuid created, in creation order (entries whose uuid
    /// was since evicted by its own hotkey are skipped when popped).
    order: VecDeque<[u8; 32]>,
    /// uuids remembered, over all hotkeys.
    keys: usize,
    /// The floor of hotkeys whose records were dropped; new records start here.
    global_floor: u64,
    capacity: usize,
    per_hotkey: usize,
    max_timeout_s: f64,
    future_skew_ns: u64,
    strict: bool,
}

impl NonceMap {
    pub fn new(capacity: usize, future_skew_ns: u64) -> NonceMap {
        let capacity = capacity.max(1);
        NonceMap {
            owners: HashMap::new(),
            order: VecDeque::new(),
            keys: 0,
            global_floor: 0,
            capacity,
            per_hotkey: DEFAULT_PER_HOTKEY.min(capacity),
            max_timeout_s: MAX_WINDOW_TIMEOUT_S,
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

    /// Most uuids one hotkey keeps (at least 1).
    pub fn per_hotkey(mut self, n: usize) -> NonceMap {
        self.per_hotkey = n.clamp(1, self.capacity);
        self
    }

    /// Largest `timeout` header that widens the window, in seconds.
    pub fn max_timeout(mut self, s: f64) -> NonceMap {
        self.max_timeout_s = if s.is_finite() { s.max(0.0) } else { 0.0 };
        self
    }

    /// Number of `hotkey:uuid` keys remembered.
    pub fn len(&self) -> usize {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Number of hotkeys with a record (uuids or only a floor).
    pub fn hotkeys(&self) -> usize {
        self.owners.len()
    }

    /// The window for a request's `timeout` header, in ns.
    pub fn window_ns(&self, timeout_s: f64) -> u64 {
        let t = if timeout_s.is_finite() {
            timeout_s.clamp(0.0, self.max_timeout_s)
        } else {
            0.0
        };
        ALLOWED_DELTA_NS + (t * NS_PER_S) as u64
    }

    /// Checks a nonce without recording it (call before the signature check).
    pub fn check(
        &self,
        hotkey: &[u8; 32],
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
        let window_ns = self.window_ns(timeout_s);
        if nonce <= now_ns.saturating_sub(window_ns) {
            return Err(NonceError::TooOld {
                window_s: window_ns as f64 / NS_PER_S,
                age_s: now_ns.saturating_sub(nonce) as f64 / NS_PER_S,
            });
        }
        let Some(owner) = self.owners.get(hotkey) else {
            return if nonce <= self.global_floor {
                Err(NonceError::NotIncreasing)
            } else {
                Ok(())
            };
        };
        if nonce <= owner.floor {
            return Err(NonceError::NotIncreasing);
        }
        if let Some(r) = owner.find(split(key)) {
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
        hotkey: &[u8; 32],
        key: u128,
        nonce: u64,
        timeout_s: f64,
        now_ns: u64,
    ) -> Result<(), NonceError> {
        self.check(hotkey, key, nonce, timeout_s, now_ns)?;
        let key = split(key);
        if let Some(owner) = self.owners.get_mut(hotkey) {
            if let Some((_, r)) = owner.keys.iter_mut().find(|(k, _)| *k == key) {
                r.insert(nonce);
                return Ok(());
            }
            // A new uuid: a hotkey at its own cap makes room from itself.
            if owner.keys.len() >= self.per_hotkey && owner.evict_oldest() {
                self.keys -= 1;
            }
        }
        while self.keys >= self.capacity {
            if !self.evict_oldest_anywhere() {
                break;
            }
        }
        let global_floor = self.global_floor;
        let owner = self.owners.entry(*hotkey).or_insert_with(|| Owner {
            floor: global_floor,
            keys: Vec::new(),
        });
        owner.keys.push((key, Recent::new(nonce)));
        self.keys += 1;
        self.order.push_back(*hotkey);
        self.tidy();
        Ok(())
    }

    /// Evicts the oldest uuid of the hotkey that created a uuid longest ago.
    fn evict_oldest_anywhere(&mut self) -> bool {
        while let Some(h) = self.order.pop_front() {
            if let Some(o) = self.owners.get_mut(&h) {
                if o.evict_oldest() {
                    self.keys -= 1;
                    return true;
                }
            }
        }
        false
    }

    /// Keeps the bookkeeping bounded: at most twice `capacity` entries in the
    /// creation order, and at most twice `capacity` hotkey records (those
    /// holding only a floor are folded into the global floor). Each pass is
    /// linear and runs after `capacity` growth, so amortised O(1).
    fn tidy(&mut self) {
        let limit = 2 * self.capacity;
        if self.order.len() > limit {
            // Keep, per hotkey, only as many of its newest entries as it has uuids.
            let mut left: HashMap<[u8; 32], usize> = self
                .owners
                .iter()
                .map(|(h, o)| (*h, o.keys.len()))
                .collect();
            let mut kept: VecDeque<[u8; 32]> = VecDeque::with_capacity(self.keys);
            for h in self.order.drain(..).rev() {
                if let Some(n) = left.get_mut(&h) {
                    if *n > 0 {
                        *n -= 1;
                        kept.push_front(h);
                    }
                }
            }
            self.order = kept;
        }
        if self.owners.len() > limit {
            let mut g = self.global_floor;
            self.owners.retain(|_, o| {
                let keep = !o.keys.is_empty();
                if !keep {
                    g = g.max(o.floor);
                }
                keep
            });
            self.global_floor = g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_626_734_383_137_861;
    const S: u64 = 1_000_000_000;

    const HK: [u8; 32] = [7; 32];

    fn key(i: u32) -> u128 {
        endpoint_key(&[7; 32], &format!("uuid-{i}"))
    }

    #[test]
    fn time_window() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        // 12 s timeout: window is 16 s.
        assert!(m.check(&HK, key(0), NOW - 15 * S, 12.0, NOW).is_ok());
        assert!(matches!(
            m.check(&HK, key(0), NOW - 17 * S, 12.0, NOW),
            Err(NonceError::TooOld { .. })
        ));
        // A huge unsigned timeout cannot widen the window past the cap.
        assert!(m.check(&HK, key(0), NOW - 1000 * S, 1e9, NOW).is_err());
        assert!(m.check(&HK, key(0), NOW - 1000 * S, f64::NAN, NOW).is_err());
        // Future bound.
        assert!(m.check(&HK, key(0), NOW + 4 * S, 12.0, NOW).is_ok());
        assert!(matches!(
            m.check(&HK, key(0), NOW + 6 * S, 12.0, NOW),
            Err(NonceError::InFuture { .. })
        ));
        // The window applies to known keys too.
        m.commit(&HK, key(0), NOW, 12.0, NOW).unwrap();
        assert!(matches!(
            m.check(&HK, key(0), NOW + 1, 12.0, NOW + 100 * S),
            Err(NonceError::TooOld { .. })
        ));
    }

    #[test]
    fn each_nonce_once_per_key() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        m.commit(&HK, key(0), NOW, 12.0, NOW).unwrap();
        assert_eq!(
            m.check(&HK, key(0), NOW, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        assert_eq!(
            m.commit(&HK, key(0), NOW, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        // Another uuid of the same hotkey is independent.
        assert!(m.check(&HK, key(1), NOW, 12.0, NOW).is_ok());
    }

    #[test]
    fn out_of_order_within_the_ring() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        // Three concurrent requests arriving 3, 1, 2.
        for n in [NOW + 3, NOW + 1, NOW + 2] {
            m.commit(&HK, key(0), n, 12.0, NOW).unwrap();
        }
        for n in [NOW + 1, NOW + 2, NOW + 3] {
            assert_eq!(
                m.check(&HK, key(0), n, 12.0, NOW),
                Err(NonceError::Replayed)
            );
        }
    }

    #[test]
    fn strict_mode_refuses_out_of_order() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS).strict(true);
        m.commit(&HK, key(0), NOW + 3, 12.0, NOW).unwrap();
        assert_eq!(
            m.check(&HK, key(0), NOW + 1, 12.0, NOW),
            Err(NonceError::NotIncreasing)
        );
        assert_eq!(
            m.check(&HK, key(0), NOW + 3, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        assert!(m.commit(&HK, key(0), NOW + 4, 12.0, NOW).is_ok());
    }

    #[test]
    fn no_replay_after_the_ring_turns_over() {
        let mut m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        let used: Vec<u64> = (1..=100).map(|i| NOW + i * 1000).collect();
        // Arrivals swapped pairwise within blocks of four: all accepted.
        for block in used.chunks(4) {
            for &j in &[1usize, 0, 3, 2] {
                if let Some(&n) = block.get(j) {
                    m.commit(&HK, key(0), n, 12.0, NOW).unwrap();
                }
            }
        }
        for &n in &used {
            assert!(
                m.check(&HK, key(0), n, 12.0, NOW).is_err(),
                "nonce {n} accepted twice"
            );
        }
        // Below the ring's floor is refused like Python's strict rule; a
        // fresh larger one still passes.
        assert_eq!(
            m.check(&HK, key(0), NOW + 1, 12.0, NOW),
            Err(NonceError::NotIncreasing)
        );
        assert!(m.check(&HK, key(0), NOW + 1_000_000, 12.0, NOW).is_ok());
    }

    #[test]
    fn a_ring_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<(Key, Recent)>(), 32);
        assert_eq!(split(u128::MAX - 1), [u64::MAX - 1, u64::MAX]);
    }

    #[test]
    fn capacity_is_bounded_and_an_evicted_uuid_refuses() {
        let cap = 100;
        let mut m = NonceMap::new(cap, DEFAULT_FUTURE_SKEW_NS);
        for i in 0..1000 {
            m.commit(&HK, key(i), NOW + u64::from(i), 12.0, NOW)
                .unwrap();
            assert!(m.len() <= cap);
        }
        assert_eq!(m.len(), cap);
        // Key 999 is remembered (replay refused); key 0 was evicted, and the
        // floor it left refuses its nonce all the same.
        assert_eq!(
            m.check(&HK, key(999), NOW + 999, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        assert_eq!(
            m.check(&HK, key(0), NOW, 12.0, NOW),
            Err(NonceError::NotIncreasing)
        );
        // A fresh nonce above the floor still passes on any uuid.
        assert!(m.check(&HK, key(5000), NOW + 5000, 12.0, NOW).is_ok());
    }

    /// The replay of issue 12: one allowed hotkey floods fresh uuids; another
    /// hotkey's uuids stay remembered and its captured request is refused.
    #[test]
    fn one_hotkey_cannot_evict_another() {
        let (victim, flooder) = ([1u8; 32], [2u8; 32]);
        let mut m = NonceMap::new(64, DEFAULT_FUTURE_SKEW_NS).per_hotkey(8);
        let vk = endpoint_key(&victim, "victim");
        m.commit(&victim, vk, NOW, 12.0, NOW).unwrap();
        for i in 0..10_000u64 {
            let k = endpoint_key(&flooder, &format!("f{i}"));
            m.commit(&flooder, k, NOW + i + 1, 12.0, NOW).unwrap();
            assert!(m.len() <= 9);
        }
        assert_eq!(
            m.check(&victim, vk, NOW, 12.0, NOW),
            Err(NonceError::Replayed)
        );
        assert!(m.check(&victim, vk, NOW + 1, 12.0, NOW).is_ok());
    }

    /// With more hotkeys than capacity (only `--allow-all` allows that),
    /// uuids and even whole hotkey records are dropped, but every accepted
    /// nonce stays refused.
    #[test]
    fn no_nonce_accepted_twice_when_hotkeys_overflow() {
        let cap = 32;
        let mut m = NonceMap::new(cap, DEFAULT_FUTURE_SKEW_NS);
        let mut used = Vec::new();
        for i in 0..2_000u64 {
            let hk = [
                (i % 251) as u8,
                (i / 251) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            let k = endpoint_key(&hk, "u");
            m.commit(&hk, k, NOW + i, 12.0, NOW).unwrap();
            used.push((hk, k, NOW + i));
            assert!(m.len() <= cap);
            assert!(m.hotkeys() <= 2 * cap + 1);
            assert!(m.order.len() <= 2 * cap + 1);
        }
        for (hk, k, n) in used {
            assert!(
                m.check(&hk, k, n, 12.0, NOW).is_err(),
                "nonce {n} accepted twice"
            );
        }
    }

    #[test]
    fn the_unsigned_timeout_cannot_widen_the_window_past_the_cap() {
        let m = NonceMap::new(16, DEFAULT_FUTURE_SKEW_NS);
        assert_eq!(m.window_ns(120.0), m.window_ns(MAX_WINDOW_TIMEOUT_S));
        assert!(m.check(&HK, key(0), NOW - 70 * S, 120.0, NOW).is_err());
        let m = m.max_timeout(12.0);
        assert!(m.check(&HK, key(0), NOW - 20 * S, 120.0, NOW).is_err());
        assert!(m.check(&HK, key(0), NOW - 15 * S, 120.0, NOW).is_ok());
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
