//! Load shedding: a stake-ranked cap on verified requests in flight, a
//! separate budget for signature verification with a share per source, and
//! a per-hotkey token bucket.
//!
//! The in-flight cap works in a band below the cap rather than only at it: a
//! caller whose stake rank is `r` (0 = lowest, 1 = highest) is admitted while
//! fewer than `cap * (1 - SHED_BAND * (1 - r))` requests are in flight. So as
//! load rises the lowest-stake callers are refused first, and the highest
//! stake keeps the whole cap. Refusing is cheap and immediate, so a burst
//! degrades into quick 503s instead of everyone timing out. Only requests
//! whose signature verified count: anyone can claim a listed validator's
//! hotkey, so requests still waiting for verification are bounded by
//! [`VerifyBudget`] instead, which gives each source address its own share
//! so one host's forgeries cannot queue ahead of everyone else's.
//!
//! The token bucket is charged only after the signature verified, so nobody
//! can drain a validator's bucket by forging its hotkey header. Its table has
//! a fixed size and is set-associative: a hotkey hashes (with a per-process
//! random key) to one small set of slots, and a newcomer takes the slot of
//! the set's idlest bucket. So a request costs one short lock and a scan of
//! [`RATE_WAYS`] slots, memory never grows, and a new caller is never
//! refused because the table is busy; the price is that a caller displaced
//! by a newcomer comes back to a full bucket (the limiter errs towards
//! serving).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Fraction of the cap over which callers are shed by stake rank.
pub const SHED_BAND: f64 = 0.25;
/// Default in-flight cap.
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;
/// Default number of hotkeys the rate limiter tracks at once.
pub const RATE_MAP_CAPACITY: usize = 16_384;
/// Slots per set of the rate limiter's table.
pub const RATE_WAYS: usize = 4;
/// Default number of requests verifying their signature at once, all sources together.
pub const DEFAULT_VERIFY_PENDING: usize = 512;
/// Default share of that budget one source address may hold.
pub const DEFAULT_VERIFY_PER_SOURCE: usize = 64;
/// Counters the per-source shares are kept in (sources hash onto them).
const SOURCE_SLOTS: usize = 4096;

/// Counts requests in flight.
#[derive(Default)]
pub struct InFlight {
    n: AtomicUsize,
}

/// Decrements the in-flight count when dropped.
pub struct InFlightGuard<'a> {
    owner: &'a InFlight,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.owner.n.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// Counts one request in; the guard counts it out.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.n.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { owner: self }
    }

    pub fn current(&self) -> usize {
        self.n.load(Ordering::Relaxed)
    }
}

/// The admission threshold for a caller of stake rank `rank` under `cap`.
pub fn threshold(cap: usize, rank: f64) -> usize {
    let r = if rank.is_finite() {
        rank.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let t = (cap as f64 * (1.0 - SHED_BAND * (1.0 - r))).floor() as usize;
    t.clamp(1, cap.max(1))
}

/// Whether a caller is admitted with `inflight` requests (itself included).
pub fn admit(cap: usize, inflight: usize, rank: f64) -> bool {
    cap == 0 || inflight <= threshold(cap, rank)
}

/// Requests verifying their signature, in total and per source address.
///
/// Sources hash (with a per-process random key, so nobody can aim at a
/// validator's counter) onto [`SOURCE_SLOTS`] counters; two sources sharing
/// one share it. Entering is two atomic increments, leaving two decrements.
pub struct VerifyBudget {
    total: AtomicUsize,
    max_total: usize,
    per_source: Box<[AtomicUsize]>,
    max_per_source: usize,
    hasher: std::collections::hash_map::RandomState,
}

/// One request's place in the verification budget, given back on drop.
pub struct VerifyPermit<'a> {
    budget: &'a VerifyBudget,
    slot: usize,
}

impl Drop for VerifyPermit<'_> {
    fn drop(&mut self) {
        self.budget.total.fetch_sub(1, Ordering::Relaxed);
        self.budget.per_source[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why [`VerifyBudget::enter`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetFull {
    /// All sources together hold the whole budget.
    Total,
    /// This source holds its whole share.
    Source,
}

impl VerifyBudget {
    /// `max_total` requests verifying at once, at most `max_per_source` from
    /// one source (0 = no limit, for either).
    pub fn new(max_total: usize, max_per_source: usize) -> VerifyBudget {
        VerifyBudget {
            total: AtomicUsize::new(0),
            max_total: if max_total == 0 {
                usize::MAX
            } else {
                max_total
            },
            per_source: (0..SOURCE_SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            max_per_source: if max_per_source == 0 {
                usize::MAX
            } else {
                max_per_source
            },
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A place for one request from `source`, or why there is none.
    pub fn enter(&self, source: IpAddr) -> Result<VerifyPermit<'_>, BudgetFull> {
        let slot = (self.hasher.hash_one(source) as usize) % SOURCE_SLOTS;
        if self.per_source[slot].fetch_add(1, Ordering::Relaxed) >= self.max_per_source {
            self.per_source[slot].fetch_sub(1, Ordering::Relaxed);
            return Err(BudgetFull::Source);
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            self.per_source[slot].fetch_sub(1, Ordering::Relaxed);
            return Err(BudgetFull::Total);
        }
        Ok(VerifyPermit { budget: self, slot })
    }

    /// Requests verifying now.
    pub fn current(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    key: [u8; 32],
    tokens: f64,
    at: Instant,
    used: bool,
}

/// Per-hotkey token buckets in a fixed set-associative table.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    sets: Box<[Mutex<[Bucket; RATE_WAYS]>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    /// `rate` tokens per second, bucket size `burst`. A rate of 0 disables it
    /// (and allocates no table).
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter::with_capacity(rate, burst, RATE_MAP_CAPACITY)
    }

    /// As [`RateLimiter::new`], tracking about `capacity` hotkeys (rounded
    /// up to whole sets of [`RATE_WAYS`]).
    pub fn with_capacity(rate: f64, burst: f64, capacity: usize) -> RateLimiter {
        let burst = if burst >= 1.0 { burst } else { rate.max(1.0) };
        let n = if rate > 0.0 {
            capacity.div_ceil(RATE_WAYS).max(1)
        } else {
            0
        };
        let empty = Bucket {
            key: [0; 32],
            tokens: 0.0,
            at: Instant::now(),
            used: false,
        };
        RateLimiter {
            rate,
            burst,
            sets: (0..n).map(|_| Mutex::new([empty; RATE_WAYS])).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Tokens `b` holds at `now`, refilled.
    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate).min(self.burst)
    }

    /// Takes one token for `key`; false when its bucket is empty.
    pub fn allow(&self, key: &[u8; 32], now: Instant) -> bool {
        if !self.enabled() || self.sets.is_empty() {
            return true;
        }
        let i = (self.hasher.hash_one(key) as usize) % self.sets.len();
        let mut set = match self.sets[i].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let slot = match set.iter().position(|b| b.used && b.key == *key) {
            Some(j) => j,
            None => {
                // The newcomer takes an unused slot, else the fullest
                // (idlest) bucket's: never a refusal for want of room.
                let j = set
                    .iter()
                    .enumerate()
                    .map(|(j, b)| {
                        (
                            j,
                            if b.used {
                                self.level(b, now)
                            } else {
                                f64::INFINITY
                            },
                        )
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(j, _)| j)
                    .unwrap_or(0);
                set[j] = Bucket {
                    key: *key,
                    tokens: self.burst,
                    at: now,
                    used: true,
                };
                j
            }
        };
        let b = &mut set[slot];
        b.tokens = self.level(b, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn low_stake_is_shed_first() {
        let cap = 100;
        assert_eq!(threshold(cap, 1.0), 100);
        assert_eq!(threshold(cap, 0.0), 75);
        assert!(admit(cap, 75, 0.0));
        assert!(!admit(cap, 76, 0.0));
        assert!(admit(cap, 90, 0.8));
        assert!(admit(cap, 100, 1.0));
        assert!(!admit(cap, 101, 1.0));
        assert!(admit(0, 1_000_000, 0.0), "cap 0 disables");
        assert!(admit(1, 1, 0.0), "a tiny cap still admits one");
    }

    #[test]
    fn inflight_guard_counts() {
        let f = InFlight::default();
        {
            let _a = f.enter();
            let _b = f.enter();
            assert_eq!(f.current(), 2);
        }
        assert_eq!(f.current(), 0);
    }

    #[test]
    fn token_bucket_refills() {
        let rl = RateLimiter::new(10.0, 3.0);
        let k = [1u8; 32];
        let t0 = Instant::now();
        assert!(rl.allow(&k, t0));
        assert!(rl.allow(&k, t0));
        assert!(rl.allow(&k, t0));
        assert!(!rl.allow(&k, t0));
        // Another caller has its own bucket.
        assert!(rl.allow(&[2u8; 32], t0));
        // 0.1 s refills one token at 10/s.
        assert!(rl.allow(&k, t0 + Duration::from_millis(100)));
        assert!(!rl.allow(&k, t0 + Duration::from_millis(100)));
        assert!(RateLimiter::new(0.0, 0.0).allow(&k, t0));
    }

    /// Issue 12, defect 4: with the table full of live (drained) buckets, a
    /// new caller is still served, and the table never grows.
    #[test]
    fn a_full_table_never_locks_out_a_newcomer() {
        let rl = RateLimiter::new(1.0, 1.0);
        let t0 = Instant::now();
        for i in 0..(2 * RATE_MAP_CAPACITY) as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            assert!(rl.allow(&k, t0), "caller {i} refused");
            assert!(!rl.allow(&k, t0), "caller {i} not limited");
        }
        assert_eq!(rl.sets.len() * RATE_WAYS, RATE_MAP_CAPACITY);
        assert!(rl.allow(&[0xee; 32], t0));
    }

    #[test]
    fn verify_budget_gives_each_source_its_share() {
        let b = VerifyBudget::new(8, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| b.enter(a).unwrap()).collect();
        assert_eq!(b.enter(a).err(), Some(BudgetFull::Source));
        // Another source still gets in (unless it hashed onto a's counter,
        // which a second address avoids).
        let others: Vec<IpAddr> = (2..40)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        let mut got = Vec::new();
        for ip in &others {
            if let Ok(p) = b.enter(*ip) {
                got.push(p);
            }
            if got.len() == 5 {
                break;
            }
        }
        assert_eq!(got.len(), 5);
        assert_eq!(b.current(), 8);
        assert!(b.enter(others[30]).is_err());
        drop(held);
        drop(got);
        assert_eq!(b.current(), 0);
        assert!(b.enter(a).is_ok());
    }
}
