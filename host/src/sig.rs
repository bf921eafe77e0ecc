//! The dendrite's sr25519 signature: message layout, encoding and checks.
//!
//! A Python dendrite signs `"{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}"`
//! with the Substrate signing context `b"substrate"` (AXON.md §5.1), where
//! `axon_hotkey` is *our own* hotkey. The message is assembled into a stack
//! buffer because every field has a known maximum length; anything longer
//! than that cannot be a real request and is refused before any curve work.
//! The server checks signatures through [`KeyCache`], which caches
//! decompressed keys and checks concurrent requests in one batch equation.

use core::fmt;
use schnorrkel::{signing_context, Keypair, PublicKey, Signature};

/// Substrate's signing context, which bittensor-wallet uses.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";
/// sr25519 signature length in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// `0x` followed by the signature in hex.
pub const SIGNATURE_HEX_LEN: usize = 2 + 2 * SIGNATURE_LEN;
/// Longest message we assemble: a u64 nonce (20 digits), two 48-character
/// addresses, a uuid with room to spare, a 64-character hash and 4 dots.
pub const MAX_MESSAGE_LEN: usize = 20 + 48 + 48 + 64 + 64 + 4;
/// Longest `bt_header_dendrite_uuid` we accept (a uuid1 string is 36).
pub const MAX_UUID_LEN: usize = 64;
/// Length of the `computed_body_hash` header (SHA3-256 in hex).
pub const BODY_HASH_HEX_LEN: usize = 64;

/// Why a signature check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigError {
    /// Not `0x` + 128 hex characters.
    BadEncoding,
    /// The bytes are not a valid sr25519 signature (e.g. not canonical).
    Malformed,
    /// The public key bytes are not a valid Ristretto point.
    BadPublicKey,
    /// Well-formed, but it does not verify over the expected message.
    Mismatch,
    /// A message part is longer than any real request could make it.
    MessageTooLong,
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigError::BadEncoding => "signature is not 0x followed by 128 hex characters",
            SigError::Malformed => "signature bytes are not a valid sr25519 signature",
            SigError::BadPublicKey => "dendrite hotkey is not a valid sr25519 public key",
            SigError::Mismatch => "Signature mismatch",
            SigError::MessageTooLong => "signed fields are too long",
        })
    }
}

impl std::error::Error for SigError {}

/// The signed message, on the stack.
pub struct Message {
    buf: [u8; MAX_MESSAGE_LEN],
    len: usize,
}

impl Message {
    /// Assembles `nonce.dendrite_hotkey.axon_hotkey.uuid.body_hash`.
    pub fn new(
        nonce: u64,
        dendrite_hotkey: &str,
        axon_hotkey: &str,
        uuid: &str,
        body_hash: &str,
    ) -> Result<Self, SigError> {
        let mut m = Message {
            buf: [0; MAX_MESSAGE_LEN],
            len: 0,
        };
        let mut digits = [0u8; 20];
        m.push(format_u64(nonce, &mut digits))?;
        for part in [dendrite_hotkey, axon_hotkey, uuid, body_hash] {
            m.push(b".")?;
            m.push(part.as_bytes())?;
        }
        Ok(m)
    }

    fn push(&mut self, s: &[u8]) -> Result<(), SigError> {
        let end = self
            .len
            .checked_add(s.len())
            .ok_or(SigError::MessageTooLong)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(SigError::MessageTooLong)?;
        dst.copy_from_slice(s);
        self.len = end;
        Ok(())
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes `n` in decimal into `out` and returns the digits.
fn format_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

/// Parses `0x` + 128 hex characters (either case) into 64 bytes.
pub fn parse_signature_hex(s: &str) -> Result<[u8; SIGNATURE_LEN], SigError> {
    let hex_part = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or(SigError::BadEncoding)?;
    if hex_part.len() != 2 * SIGNATURE_LEN {
        return Err(SigError::BadEncoding);
    }
    let mut out = [0u8; SIGNATURE_LEN];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SigError::BadEncoding)?;
    Ok(out)
}

/// Verifies a dendrite signature under the Substrate context.
pub fn verify(pubkey: &[u8; 32], msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> Result<(), SigError> {
    verify_with_context(SIGNING_CONTEXT, pubkey, msg, sig)
}

/// Verifies under an explicit context (tests show a wrong one fails).
pub fn verify_with_context(
    ctx: &[u8],
    pubkey: &[u8; 32],
    msg: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<(), SigError> {
    let pk = PublicKey::from_bytes(pubkey).map_err(|_| SigError::BadPublicKey)?;
    let sig = Signature::from_bytes(sig).map_err(|_| SigError::Malformed)?;
    pk.verify(signing_context(ctx).bytes(msg), &sig)
        .map_err(|_| SigError::Mismatch)
}

/// Most decompressed public keys kept by a [`KeyCache`].
pub const KEY_CACHE_CAPACITY: usize = 4096;
/// Most signatures checked in one batch equation.
pub const MAX_BATCH: usize = 64;
/// Batching pauses once more than one in this many of the recent signatures
/// failed (and resumes below half that share). A failed batch costs its batch equation plus a single
/// check of every signature in it, so forged signatures make batching dearer
/// than checking alone: measured at 16 connections (docs/PERF-SERVER.md,
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
/// Nothing waits for a batch to fill: a request that finds no leader becomes
/// the leader, yields once to the runtime (so requests whose bytes have
/// already arrived run up to this point and join), then checks one batch of
/// whatever is queued and steps down, waking a waiting request to lead the
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

/// Leadership of one batch. The batch is checked on drop, so a leader whose
/// request is abandoned while it yields (client gone) still answers every
/// request queued behind it.
struct Leader<'a>(&'a KeyCache);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.0.lead_one_batch();
    }
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

    /// One decoded signature checked on its own; a key not yet cached is
    /// kept once it verified.
    fn verify_alone(
        &self,
        pubkey: &[u8; 32],
        pk: PublicKey,
        cached: bool,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SigError> {
        pk.verify(signing_context(SIGNING_CONTEXT).bytes(msg), sig)
            .map_err(|_| SigError::Mismatch)?;
        self.keep(pubkey, pk, cached);
        Ok(())
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
        let mut yielded = false;
        loop {
            let notified = self.handoff.notified();
            tokio::pin!(notified);
            // Registered before the check below, so a hand-off between the
            // check and the wait is not missed.
            notified.as_mut().enable();
            if self.take_lead() {
                let leader = Leader(self);
                if !yielded {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                drop(leader);
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

/// Signs as a dendrite does and returns `0x` + hex.
pub fn sign_hex(kp: &Keypair, msg: &[u8]) -> String {
    let sig = kp.sign(signing_context(SIGNING_CONTEXT).bytes(msg));
    let mut s = String::with_capacity(SIGNATURE_HEX_LEN);
    s.push_str("0x");
    s.push_str(&hex::encode(sig.to_bytes()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ss58;

    // AXON.md §5.1: a real bittensor 10.5.0 dendrite signature (//Alice -> //Bob).
    const NONCE: u64 = 1795626734383137861;
    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const UUID: &str = "5c06965a-e8f3-11f1-9a7d-02fc00000001";
    const EMPTY_HASH: &str = "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";
    const SIG: &str = "0x6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b";
    const MESSAGE: &str = "1795626734383137861.5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty.5c06965a-e8f3-11f1-9a7d-02fc00000001.a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";

    #[test]
    fn message_layout_matches_spec() {
        let m = Message::new(NONCE, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        assert_eq!(m.as_bytes(), MESSAGE.as_bytes());
        let m0 = Message::new(0, "a", "b", "c", "d").unwrap();
        assert_eq!(m0.as_bytes(), b"0.a.b.c.d");
        let mx = Message::new(u64::MAX, "a", "b", "c", "d").unwrap();
        assert_eq!(mx.as_bytes(), b"18446744073709551615.a.b.c.d");
    }

    #[test]
    fn python_vector_verifies() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        assert_eq!(verify(&pk, MESSAGE.as_bytes(), &sig), Ok(()));
    }

    #[test]
    fn changed_nonce_fails() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        let m = Message::new(NONCE + 1, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        assert_eq!(verify(&pk, m.as_bytes(), &sig), Err(SigError::Mismatch));
    }

    #[test]
    fn wrong_context_or_signer_fails() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        assert_eq!(
            verify_with_context(b"", &pk, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
        let bob = ss58::decode_key(BOB).unwrap();
        assert_eq!(
            verify(&bob, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
    }

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
    fn abandoned_leader_still_answers_the_queue() {
        let signers = [Keypair::generate()];
        let cache = KeyCache::default();
        let mut reqs = signed(2, &signers, false);
        let (k2, m2, s2, _) = reqs.pop().unwrap();
        let (k1, m1, s1, _) = reqs.pop().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // The leader is polled once (it queues and yields) and dropped.
            let mut leader = Box::pin(cache.verify_batched(&k1, m1, &s1));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::future::Future::poll(leader.as_mut(), &mut cx).is_pending());
            drop(leader);
            {
                let q = cache.lock_queue();
                assert!(q.jobs.is_empty() && !q.leader);
            }
            // The next request leads itself.
            assert_eq!(cache.verify_batched(&k2, m2, &s2).await, Ok(()));
        });
    }

    #[test]
    fn encoding_errors() {
        assert_eq!(parse_signature_hex(&SIG[2..]), Err(SigError::BadEncoding));
        assert_eq!(parse_signature_hex(&SIG[..128]), Err(SigError::BadEncoding));
        let mut s = SIG.to_string();
        s.replace_range(5..6, "z");
        assert_eq!(parse_signature_hex(&s), Err(SigError::BadEncoding));
        assert!(parse_signature_hex(&SIG.to_uppercase().replacen("0X", "0x", 1)).is_ok());
        let long = "x".repeat(MAX_MESSAGE_LEN);
        assert_eq!(
            Message::new(1, &long, BOB, UUID, EMPTY_HASH).err(),
            Some(SigError::MessageTooLong)
        );
    }

    #[test]
    fn own_signatures_round_trip() {
        let kp = Keypair::generate();
        let m = Message::new(7, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        let s = sign_hex(&kp, m.as_bytes());
        assert_eq!(s.len(), SIGNATURE_HEX_LEN);
        let sig = parse_signature_hex(&s).unwrap();
        assert_eq!(verify(&kp.public.to_bytes(), m.as_bytes(), &sig), Ok(()));
    }
}
