//! Load shedding: a global in-flight cap that sheds low-stake callers first,
//! and a per-hotkey token bucket.
//!
//! The in-flight cap works in a band below the cap rather than only at it: a
//! caller whose stake rank is `r` (0 = lowest, 1 = highest) is admitted while
//! fewer than `cap * (1 - SHED_BAND * (1 - r))` requests are in flight. So as
//! load rises the lowest-stake callers are refused first, and the highest
//! stake keeps the whole cap. Refusing is cheap and immediate, so a burst
//! degrades into quick 503s instead of everyone timing out.
//!
//! The token bucket is charged only after the signature verified, so nobody
//! can drain a validator's bucket by forging its hotkey header. Its map is
//! bounded: when full, idle (refilled) buckets are dropped, and if none are
//! idle the new caller is refused rather than growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Fraction of the cap over which callers are shed by stake rank.
pub const SHED_BAND: f64 = 0.25;
/// Default in-flight cap.
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;
/// Most hotkeys tracked by the rate limiter at once.
pub const RATE_MAP_CAPACITY: usize = 65_536;

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

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-hotkey token buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl RateLimiter {
    /// `rate` tokens per second, bucket size `burst`. A rate of 0 disables it.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        let burst = if burst >= 1.0 { burst } else { rate.max(1.0) };
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &[u8; 32], now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut map = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !map.contains_key(key) && map.len() >= RATE_MAP_CAPACITY {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if map.len() >= RATE_MAP_CAPACITY {
                return false;
            }
        }
        let b = map.entry(*key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
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
}
