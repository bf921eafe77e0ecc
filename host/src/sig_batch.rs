//! The batching verifier: a key cache and a queue that lets requests
//! verifying at the same moment share one batch equation.
//!
//! Kept apart from [`crate::sig`] (what is signed and how one signature is
//! checked) because it changes for other reasons: scheduling, the pause
//! under forged traffic, and the cache's bound. Leadership of a batch is an
//! explicit step with no await inside it: a request queues its job, yields
//! once, and then, if nobody leads, takes the lead and checks one batch
//! synchronously. A request dropped while it yields never held the lead, so
//! nothing is stranded; its job is skipped by the next leader.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::sig::{Message, SigError, SIGNATURE_LEN, SIGNING_CONTEXT};
use crate::sig_table::KeyTable;
use schnorrkel::{signing_context, PublicKey, Signature};

/// Most decompressed public keys kept by a [`KeyCache`].
pub const KEY_CACHE_CAPACITY: usize = 4096;
/// Most signatures checked in one batch equation.
pub const MAX_BATCH: usize = 64;
/// Most signer tables ([`KeyTable`], about 30 KB each) a [`KeyCache`]
/// holds: the allow-list's highest stakes. 64 tables are about 2 MB, and a
/// subnet has at most 64 validators with a permit.
pub const MAX_KEY_TABLES: usize = 64;
/// Batching pauses once more than one in this many of the recent signatures
/// failed (and resumes below half that share). A failed batch costs its batch equation plus a single
/// check of every signature in it, so forged signatures make batching dearer
/// than checking alone: measured at 16 connections (docs/MEASUREMENTS.md,
/// `scripts/perf-server.sh forge`), batching saved CPU with 1 request in 100
/// forged and cost more than single checks with 1 in 10. One in 32 keeps the
/// switch on the side where batching still pays.
pub const BAD_SHARE_LIMIT: u32 = 32;
/// Signatures the bad share is judged over: the counts are halved whenever
/// this many have been seen, so old traffic fades out.
pub const BAD_SHARE_WINDOW: u32 = 512;

/// Decompressed public keys of callers whose signatures verified, and the
/// queue that lets concurrent requests share one batch verification.
///
/// Decompressing a Ristretto point (an inverse square root) is a sizeable
/// part of a verification, and validators are few and call often. Only keys
/// that produced a valid signature are kept, so forged headers cannot fill
/// the cache; when it is full it is cleared and refills with the live callers.
///
/// Batching: a single check is one double-base scalar multiplication (256
/// doublings) and a point compression. Checking n signatures together with
/// random 128-bit weights (schnorrkel's `verify_batch`, the standard
/// randomized batch equation) shares the doublings and the key's term across
/// the batch, so under load each signature costs a fraction of a single
/// check. Ristretto has no cofactor, so the batch equation holds exactly when
/// every single equation does (up to the 2^-128 chance of the random
/// weights); when a batch fails, each of its signatures is checked alone, so
/// every request gets exactly its own verdict.
///
/// Nothing waits for a batch to fill: a request queues its job and yields
/// once to the runtime (so requests whose bytes have already arrived run up
/// to this point and join); then, if nobody leads, it leads: checks one batch
/// of whatever is queued and steps down, waking a waiting request to lead the
/// next batch if more are queued. An idle server therefore checks a lone
/// request alone, at the cost of one yield, and no request leads for longer
/// than one batch.
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], PublicKey>>,
    queue: std::sync::Mutex<Queue>,
    /// Wakes a waiting request to lead when a leader stops with jobs queued.
    handoff: tokio::sync::Notify,
    /// Batches checked, and the signatures in them (for /metrics).
    batches: std::sync::atomic::AtomicU64,
    batched: std::sync::atomic::AtomicU64,
    /// Signatures checked alone, though queued together, while batching
    /// was paused (for /metrics).
    unbatched: std::sync::atomic::AtomicU64,
    /// Recent signature verdicts: how many were checked and how many failed.
    /// Only the leader touches it (one batch at a time).
    recent: std::sync::Mutex<Recent>,
    /// Precomputed tables for the allow-listed keys (see [`KeyCache::set_tables`]).
    tables: RwLock<Arc<HashMap<[u8; 32], KeyTable>>>,
    /// Single checks answered from a table (for /metrics and tests).
    table_checks: std::sync::atomic::AtomicU64,
}

/// The share of recent signatures that failed, kept as two decaying counts.
#[derive(Default)]
struct Recent {
    seen: u32,
    bad: u32,
    /// Batching is paused (logged when this changes).
    paused: bool,
}

impl Recent {
    /// Adds one batch's verdicts; returns the new pause state when it changed.
    /// Batching pauses when more than 1 in [`BAD_SHARE_LIMIT`] failed and
    /// resumes below half that share, so a share near the limit does not
    /// flip it (and the log) back and forth.
    fn record(&mut self, seen: u32, bad: u32) -> Option<bool> {
        self.seen = self.seen.saturating_add(seen);
        self.bad = self.bad.saturating_add(bad);
        while self.seen >= BAD_SHARE_WINDOW {
            self.seen /= 2;
            self.bad /= 2;
        }
        let limit = if self.paused {
            2 * BAD_SHARE_LIMIT
        } else {
            BAD_SHARE_LIMIT
        };
        let paused = self.bad.saturating_mul(limit) > self.seen;
        (paused != self.paused).then(|| {
            self.paused = paused;
            paused
        })
    }
}

/// Signatures waiting for the leader.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A request is leading: it will check a batch and then hand off.
    leader: bool,
}

/// One signature to check, with where its verdict goes.
struct Job {
    key: [u8; 32],
    pk: PublicKey,
    cached: bool,
    msg: Message,
    sig: Signature,
    reply: tokio::sync::oneshot::Sender<Result<(), SigError>>,
}

impl KeyCache {
    fn get(&self, k: &[u8; 32]) -> Option<PublicKey> {
        self.keys.lock().ok()?.get(k).copied()
    }

    fn put(&self, k: [u8; 32], pk: PublicKey) {
        if let Ok(mut m) = self.keys.lock() {
            if m.len() >= KEY_CACHE_CAPACITY {
                m.clear();
            }
            m.insert(k, pk);
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The key, decompressed once per caller.
    fn public_key(&self, pubkey: &[u8; 32]) -> Result<(PublicKey, bool), SigError> {
        match self.get(pubkey) {
            Some(pk) => Ok((pk, true)),
            None => Ok((
                PublicKey::from_bytes(pubkey).map_err(|_| SigError::BadPublicKey)?,
                false,
            )),
        }
    }

    /// [`verify`], reusing the decompressed key when this caller verified before.
    pub fn verify(
        &self,
        pubkey: &[u8; 32],
        msg: &[u8],
        sig: &[u8; SIGNATURE_LEN],
    ) -> Result<(), SigError> {
        let sig = Signature::from_bytes(sig).map_err(|_| SigError::Malformed)?;
        let (pk, cached) = self.public_key(pubkey)?;
        self.verify_alone(pubkey, pk, cached, msg, &sig)
    }

    /// One decoded signature checked on its own (from the signer's table
    /// when it has one: same verdict, about a third less CPU); a key not
    /// yet cached is kept once it verified.
    fn verify_alone(
        &self,
        pubkey: &[u8; 32],
        pk: PublicKey,
        cached: bool,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SigError> {
        let tables = self.tables();
        match tables.get(pubkey) {
            Some(t) => {
                self.table_checks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                t.verify_parsed(msg, sig)?;
            }
            None => pk
                .verify(signing_context(SIGNING_CONTEXT).bytes(msg), sig)
                .map_err(|_| SigError::Mismatch)?,
        }
        self.keep(pubkey, pk, cached);
        Ok(())
    }

    fn tables(&self) -> Arc<HashMap<[u8; 32], KeyTable>> {
        match self.tables.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the signer tables with ones for the first
    /// [`MAX_KEY_TABLES`] of `keys` (the allow-list, highest stake first)
    /// and returns how many were built. Building takes about 2 ms per key,
    /// so call it off the request path (at start and on each allow-list
    /// reload); until it returns, checks take schnorrkel's own path. Keys
    /// that are not valid points get no table (their signatures never
    /// verify either way).
    pub fn set_tables(&self, keys: &[[u8; 32]]) -> usize {
        let built: HashMap<[u8; 32], KeyTable> = keys
            .iter()
            .filter_map(|k| Some((*k, KeyTable::new(PublicKey::from_bytes(k).ok()?))))
            .take(MAX_KEY_TABLES)
            .collect();
        let n = built.len();
        let new = Arc::new(built);
        match self.tables.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        n
    }

    /// Single checks answered from a signer table so far.
    pub fn table_checks(&self) -> u64 {
        self.table_checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Caches the key of a signature that verified, unless it already was.
    fn keep(&self, pubkey: &[u8; 32], pk: PublicKey, cached: bool) {
        if !cached {
            self.put(*pubkey, pk);
        }
    }

    /// The same verdict as [`KeyCache::verify`], checked in a batch with
    /// whatever other requests are verifying at the same moment.
    pub async fn verify_batched(
        &self,
        pubkey: &[u8; 32],
        msg: Message,
        sig: &[u8; SIGNATURE_LEN],
    ) -> Result<(), SigError> {
        let sig = Signature::from_bytes(sig).map_err(|_| SigError::Malformed)?;
        let (pk, cached) = self.public_key(pubkey)?;
        let (reply, mut verdict) = tokio::sync::oneshot::channel();
        self.lock_queue().jobs.push(Job {
            key: *pubkey,
            pk,
            cached,
            msg,
            sig,
            reply,
        });
        // Let requests whose bytes have already arrived queue behind us.
        tokio::task::yield_now().await;
        loop {
            let notified = self.handoff.notified();
            tokio::pin!(notified);
            // Registered before the check below, so a hand-off between the
            // check and the wait is not missed.
            notified.as_mut().enable();
            if self.take_lead() {
                // The explicit leader step: no await until it has stepped down.
                self.lead_one_batch();
            }
            tokio::select! {
                biased;
                v = &mut verdict => {
                    // A hand-off this request consumed must not strand the queue.
                    if self.needs_leader() {
                        self.handoff.notify_one();
                    }
                    return v.unwrap_or(Err(SigError::Mismatch));
                }
                _ = &mut notified => {}
            }
        }
    }

    /// Becomes the leader when there is work and nobody leads.
    fn take_lead(&self) -> bool {
        let mut q = self.lock_queue();
        if !q.leader && !q.jobs.is_empty() {
            q.leader = true;
            true
        } else {
            false
        }
    }

    fn needs_leader(&self) -> bool {
        let q = self.lock_queue();
        !q.leader && !q.jobs.is_empty()
    }

    /// Checks up to [`MAX_BATCH`] queued jobs, steps down, and wakes a
    /// waiting request to lead if jobs are left.
    fn lead_one_batch(&self) {
        let batch: Vec<Job> = {
            let mut q = self.lock_queue();
            let n = q.jobs.len().min(MAX_BATCH);
            q.jobs.drain(..n).collect()
        };
        self.check(batch);
        let more = {
            let mut q = self.lock_queue();
            q.leader = false;
            !q.jobs.is_empty()
        };
        if more {
            self.handoff.notify_one();
        }
    }

    /// Batches checked so far and the signatures they held.
    pub fn batch_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.batches.load(Relaxed), self.batched.load(Relaxed))
    }

    /// Signatures checked alone while batching was paused by failures.
    pub fn unbatched(&self) -> u64 {
        self.unbatched.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        match self.recent.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Checks one batch and sends every job its verdict.
    fn check(&self, mut batch: Vec<Job>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Jobs of requests dropped while they waited (client gone) need no verdict.
        batch.retain(|j| !j.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        self.batches.fetch_add(1, Relaxed);
        self.batched.fetch_add(batch.len() as u64, Relaxed);
        let batching = !self.lock_recent().paused;
        if !batching && batch.len() > 1 {
            self.unbatched.fetch_add(batch.len() as u64, Relaxed);
        }
        let ok_all = batching && batch.len() > 1 && {
            // Equal keys next to each other: the batch equation merges
            // consecutive equal keys into one term.
            batch.sort_unstable_by_key(|j| j.key);
            let ts = batch
                .iter()
                .map(|j| signing_context(SIGNING_CONTEXT).bytes(j.msg.as_bytes()));
            let sigs: Vec<Signature> = batch.iter().map(|j| j.sig).collect();
            let pks: Vec<PublicKey> = batch.iter().map(|j| j.pk).collect();
            schnorrkel::verify_batch(ts, &sigs, &pks, true).is_ok()
        };
        let seen = batch.len() as u32;
        let mut bad = 0u32;
        for j in batch {
            // A lone signature, a batch with a bad one, or batching paused:
            // each on its own.
            let verdict = if ok_all {
                self.keep(&j.key, j.pk, j.cached);
                Ok(())
            } else {
                self.verify_alone(&j.key, j.pk, j.cached, j.msg.as_bytes(), &j.sig)
            };
            bad += u32::from(verdict.is_err());
            let _ = j.reply.send(verdict);
        }
        match self.lock_recent().record(seen, bad) {
            Some(true) => tracing::warn!(
                "signature batching paused: more than 1 in {BAD_SHARE_LIMIT} recent signatures \
                 did not verify (forged or corrupt); checking each alone until that clears"
            ),
            Some(false) => tracing::info!("signature batching resumed"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::vectors::*;
    use crate::sig::{parse_signature_hex, sign_hex, verify};
    use crate::ss58;
    use schnorrkel::Keypair;

    #[test]
    fn key_cache_gives_the_same_answers() {
        let cache = KeyCache::default();
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        for _ in 0..2 {
            assert_eq!(cache.verify(&pk, MESSAGE.as_bytes(), &sig), Ok(()));
            let m = Message::new(NONCE + 1, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
            assert_eq!(
                cache.verify(&pk, m.as_bytes(), &sig),
                Err(SigError::Mismatch)
            );
        }
        let bob = ss58::decode_key(BOB).unwrap();
        assert_eq!(
            cache.verify(&bob, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            cache.keys.lock().unwrap().len(),
            1,
            "only verified keys are cached"
        );
    }

    /// With tables for the allow-listed keys, single checks go through them
    /// and give the same verdicts; keys without a table keep schnorrkel's path.
    #[test]
    fn signer_tables_answer_single_checks_with_the_same_verdicts() {
        let cache = KeyCache::default();
        let alice = ss58::decode_key(ALICE).unwrap();
        let bob = ss58::decode_key(BOB).unwrap();
        // A key that is not a valid point gets no table.
        assert_eq!(cache.set_tables(&[alice, [0xff; 32]]), 1);
        let sig = parse_signature_hex(SIG).unwrap();
        let other = Message::new(NONCE + 1, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        let mut flipped = sig;
        flipped[3] ^= 1;
        assert_eq!(cache.verify(&alice, MESSAGE.as_bytes(), &sig), Ok(()));
        assert_eq!(
            cache.verify(&alice, other.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            cache.verify(&alice, MESSAGE.as_bytes(), &flipped),
            Err(SigError::Mismatch)
        );
        assert_eq!(cache.table_checks(), 3, "Alice's checks used her table");
        assert_eq!(
            cache.verify(&bob, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
        assert_eq!(cache.table_checks(), 3, "Bob has no table");
        // A reload without Alice drops her table.
        assert_eq!(cache.set_tables(&[bob]), 1);
        assert_eq!(cache.verify(&alice, MESSAGE.as_bytes(), &sig), Ok(()));
        assert_eq!(cache.table_checks(), 3);
    }

    /// Signs `n` requests from `signers` (round robin); every third one is
    /// spoiled when `spoil` is set. Returns (key, message, signature, good).
    fn signed(
        n: usize,
        signers: &[Keypair],
        spoil: bool,
    ) -> Vec<([u8; 32], Message, [u8; 64], bool)> {
        (0..n)
            .map(|i| {
                let kp = &signers[i % signers.len()];
                let m = Message::new(i as u64 + 1, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
                let mut sig = parse_signature_hex(&sign_hex(kp, m.as_bytes())).unwrap();
                let bad = spoil && i % 3 == 1;
                if bad {
                    // Same encoding rules, wrong message: sign another nonce.
                    let other =
                        Message::new(i as u64 + 1000, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
                    sig = parse_signature_hex(&sign_hex(kp, other.as_bytes())).unwrap();
                }
                (kp.public.to_bytes(), m, sig, !bad)
            })
            .collect()
    }

    /// Runs every request concurrently through `verify_batched` on a
    /// two-thread runtime; returns the verdicts in request order.
    fn run_batched(
        cache: &std::sync::Arc<KeyCache>,
        reqs: Vec<([u8; 32], Message, [u8; 64], bool)>,
    ) -> Vec<(bool, Result<(), SigError>)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = reqs
                .into_iter()
                .map(|(k, m, s, good)| {
                    let c = cache.clone();
                    tokio::spawn(async move { (good, c.verify_batched(&k, m, &s).await) })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }

    #[test]
    fn batched_verdicts_equal_single_verdicts() {
        let signers: Vec<Keypair> = (0..3).map(|_| Keypair::generate()).collect();
        for spoil in [false, true] {
            let cache = std::sync::Arc::new(KeyCache::default());
            let reqs = signed(200, &signers, spoil);
            for (k, m, s, good) in &reqs {
                assert_eq!(verify(k, m.as_bytes(), s).is_ok(), *good);
            }
            let verdicts = run_batched(&cache, reqs);
            assert_eq!(verdicts.len(), 200);
            for (i, (good, v)) in verdicts.into_iter().enumerate() {
                if good {
                    assert_eq!(v, Ok(()), "request {i}");
                } else {
                    assert_eq!(v, Err(SigError::Mismatch), "request {i}");
                }
            }
            let (batches, n) = cache.batch_stats();
            assert_eq!(n, 200, "every signature checked exactly once");
            assert!((1..=200).contains(&batches));
            let q = cache.lock_queue();
            assert!(q.jobs.is_empty() && !q.leader, "nothing left behind");
        }
    }

    #[test]
    fn bad_share_pauses_batching_and_resumes_below_half_of_it() {
        let mut r = Recent::default();
        // Exactly 1 in BAD_SHARE_LIMIT failed: still batching.
        assert_eq!(r.record(BAD_SHARE_LIMIT - 1, 0), None);
        assert_eq!(r.record(1, 1), None);
        assert!(!r.paused);
        // One more failure tips it.
        assert_eq!(r.record(1, 1), Some(true));
        // Below the limit but not below half of it: stays paused.
        assert_eq!(r.record(2 * BAD_SHARE_LIMIT, 0), None);
        assert!(r.paused, "seen {} bad {}", r.seen, r.bad);
        // Enough good ones: resumes, once.
        let more = 2 * BAD_SHARE_LIMIT * r.bad - r.seen;
        assert_eq!(r.record(more, 0), Some(false));
        assert_eq!(r.record(1, 0), None);
        // Old verdicts fade: the counts never reach the window.
        for _ in 0..10 {
            r.record(BAD_SHARE_WINDOW - 1, 0);
            assert!(r.seen < BAD_SHARE_WINDOW);
        }
        assert_eq!(r.bad, 0);
    }

    #[test]
    fn forgeries_pause_batching_and_honest_traffic_resumes_it() {
        let signers: Vec<Keypair> = (0..2).map(|_| Keypair::generate()).collect();
        let cache = std::sync::Arc::new(KeyCache::default());
        // 1 in 3 forged: the first batch fails and batching pauses; the
        // second round's concurrent requests are then checked alone. Every
        // verdict stays exact throughout.
        for round in 0..2 {
            for (i, (good, v)) in run_batched(&cache, signed(60, &signers, true))
                .into_iter()
                .enumerate()
            {
                assert_eq!(v.is_ok(), good, "round {round}, request {i}");
            }
            assert!(cache.lock_recent().paused);
        }
        assert!(
            cache.unbatched() > 0,
            "concurrent requests were checked alone while paused"
        );
        // Honest traffic only: the share of failures fades below half the
        // limit and batching resumes; after that, nothing is checked alone.
        let mut rounds = 0;
        while cache.lock_recent().paused {
            rounds += 1;
            assert!(rounds <= 20, "batching never resumed");
            let v = run_batched(&cache, signed(100, &signers, false));
            assert!(v.iter().all(|(_, v)| v.is_ok()));
        }
        let before = cache.unbatched();
        let (batches, n) = cache.batch_stats();
        assert!(run_batched(&cache, signed(100, &signers, false))
            .iter()
            .all(|(_, v)| v.is_ok()));
        assert_eq!(cache.unbatched(), before);
        let (batches2, n2) = cache.batch_stats();
        assert!(batches2 - batches < n2 - n, "batches were shared again");
    }

    #[test]
    fn batch_of_many_concurrent_requests_is_shared() {
        // 100 tasks spawned before the runtime runs any of them: the first
        // leader's yield lets the others queue, so fewer batches than requests.
        let signers = [Keypair::generate()];
        let cache = std::sync::Arc::new(KeyCache::default());
        let verdicts = run_batched(&cache, signed(100, &signers, false));
        assert!(verdicts.iter().all(|(_, v)| v.is_ok()));
        let (batches, n) = cache.batch_stats();
        assert_eq!(n, 100);
        assert!(
            batches < 100,
            "{batches} batches for 100 concurrent requests"
        );
    }

    #[test]
    fn a_request_dropped_while_it_yields_strands_nothing() {
        let signers = [Keypair::generate()];
        let cache = KeyCache::default();
        let mut reqs = signed(2, &signers, false);
        let (k2, m2, s2, _) = reqs.pop().unwrap();
        let (k1, m1, s1, _) = reqs.pop().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // Polled once (it queues and yields), then dropped: it never led.
            let mut first = Box::pin(cache.verify_batched(&k1, m1, &s1));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::future::Future::poll(first.as_mut(), &mut cx).is_pending());
            drop(first);
            assert!(!cache.lock_queue().leader);
            // The next request leads, skips the orphan and gets its verdict.
            assert_eq!(cache.verify_batched(&k2, m2, &s2).await, Ok(()));
            let q = cache.lock_queue();
            assert!(q.jobs.is_empty() && !q.leader);
        });
        assert_eq!(cache.batch_stats().1, 1, "the orphan was not verified");
    }
}
