//! The btauth/1 replay store: every (hotkey, nonce) accepted inside the window.
//!
//! bittensor's own store is a set with an expiry queue. Ours is one ordered
//! set keyed by nonce first, because a nonce is a timestamp: everything older
//! than the window is a prefix of the set and leaves in one `split_off`, by
//! the same rule ([`Window::expired`]) that refuses a stale request, so no
//! nonce can leave the store while it could still pass the freshness check.
//! Memory is bounded by a capacity fixed at start: when the store is full of
//! nonces still inside the window, new btauth/1 requests are refused (503)
//! rather than an unexpired entry forgotten, which would reopen its replay.
//! Only verified requests are inserted, so filling it takes valid signatures
//! from callers the allow-list admits.

use super::{BtauthError, Window};
use crate::ss58::PUBKEY_LEN;
use std::collections::BTreeSet;

/// Default entries remembered: the default 12 s window at about 5,000
/// btauth/1 requests a second, roughly 4 MB when full (an entry is a 40-byte
/// key in a B-tree node).
pub const DEFAULT_CAPACITY: usize = 65_536;

type Entry = (u64, [u8; PUBKEY_LEN]);

/// Accepted (nonce, hotkey) pairs still inside the window.
pub struct ReplayStore {
    window: Window,
    capacity: usize,
    seen: BTreeSet<Entry>,
}

impl ReplayStore {
    pub fn new(window: Window, capacity: usize) -> ReplayStore {
        ReplayStore {
            window,
            capacity: capacity.max(1),
            seen: BTreeSet::new(),
        }
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// True when this pair was already accepted: a cheap refusal before the
    /// body is read. Not a substitute for [`ReplayStore::commit`], which is
    /// what makes acceptance exactly-once.
    pub fn contains(&self, hotkey: &[u8; PUBKEY_LEN], nonce: u64) -> bool {
        self.seen.contains(&(nonce, *hotkey))
    }

    /// Records a verified request's nonce; refuses it when already present
    /// (a replay, or two copies racing) or when the store is full.
    pub fn commit(
        &mut self,
        hotkey: &[u8; PUBKEY_LEN],
        nonce: u64,
        now_ns: u64,
    ) -> Result<(), BtauthError> {
        self.expire(now_ns);
        let entry = (nonce, *hotkey);
        if self.seen.contains(&entry) {
            return Err(BtauthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(BtauthError::ReplayStoreFull);
        }
        self.seen.insert(entry);
        Ok(())
    }

    /// Drops every nonce the freshness check would now refuse.
    fn expire(&mut self, now_ns: u64) {
        let oldest_fresh = now_ns.saturating_sub(self.window.max_age_ns);
        debug_assert!(!self.window.expired(oldest_fresh, now_ns));
        if self
            .seen
            .first()
            .is_some_and(|&(n, _)| self.window.expired(n, now_ns))
        {
            self.seen = self.seen.split_off(&(oldest_fresh, [0; PUBKEY_LEN]));
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_nonce_is_accepted_once_per_hotkey() {
        let mut st = ReplayStore::new(Window::from_secs(10.0, 2.0), 16);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let now = 100 * S;
        assert_eq!(st.commit(&a, now, now), Ok(()));
        assert!(st.contains(&a, now));
        assert_eq!(st.commit(&a, now, now + S), Err(BtauthError::Replayed));
        // Same nonce from another hotkey is a different request.
        assert_eq!(st.commit(&b, now, now), Ok(()));
        assert_eq!(st.len(), 2);
    }

    #[test]
    fn entries_leave_exactly_when_they_turn_stale() {
        let w = Window::from_secs(10.0, 2.0);
        let mut st = ReplayStore::new(w, 16);
        let k = [7u8; 32];
        let n = 100 * S;
        st.commit(&k, n, n).unwrap();
        // At the last instant the nonce is still fresh, it is still remembered.
        let edge = n + 10 * S;
        assert!(w.check(n, edge).is_ok());
        st.commit(&[8u8; 32], edge, edge).unwrap();
        assert!(st.contains(&k, n));
        // One nanosecond later it is stale, and only then forgotten.
        st.commit(&[9u8; 32], edge + 1, edge + 1).unwrap();
        assert!(w.check(n, edge + 1).is_err());
        assert!(!st.contains(&k, n));
        assert_eq!(st.len(), 2);
    }

    #[test]
    fn full_store_refuses_instead_of_forgetting() {
        let mut st = ReplayStore::new(Window::from_secs(10.0, 2.0), 3);
        let now = 100 * S;
        for i in 0..3u8 {
            st.commit(&[i; 32], now, now).unwrap();
        }
        assert_eq!(
            st.commit(&[9; 32], now, now),
            Err(BtauthError::ReplayStoreFull)
        );
        // Every remembered nonce is still refused as a replay.
        for i in 0..3u8 {
            assert_eq!(st.commit(&[i; 32], now, now), Err(BtauthError::Replayed));
        }
        // Once they expire there is room again.
        assert_eq!(st.commit(&[9; 32], now + 11 * S, now + 11 * S), Ok(()));
        assert_eq!(st.len(), 1);
    }

    #[test]
    fn future_nonces_stay_until_they_age_out() {
        let mut st = ReplayStore::new(Window::from_secs(10.0, 2.0), 8);
        let now = 100 * S;
        st.commit(&[1; 32], now + 2 * S, now).unwrap();
        st.commit(&[2; 32], now + 11 * S, now + 11 * S).unwrap();
        assert!(st.contains(&[1; 32], now + 2 * S));
        assert_eq!(
            st.commit(&[1; 32], now + 2 * S, now + 12 * S),
            Err(BtauthError::Replayed)
        );
    }
}
