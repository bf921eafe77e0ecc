//! The request gate: from headers to an authenticated caller, cheapest check first.
//!
//! The gate is two pure functions around the one step that cannot be pure
//! (the signature check, which the server batches across requests):
//! [`admit`] takes the headers, the clock and a read-only view of the shared
//! state and answers an [`Admitted`] request or a [`Reject`]; after the
//! signature verified, [`settle`] records the nonce, charges the rate limit
//! and applies the stake-ranked in-flight cap. Neither needs a runtime or a
//! hyper type: headers come through the small [`Headers`] trait. [`pass`]
//! strings the whole sequence together with the server's shared state
//! ([`Shared`]) and the source address: admit, a place in the per-source
//! verification budget, the batched signature check, settle. The server's
//! axon route and the `gate` fuzz target both call it, so the fuzzer runs
//! the server's gate, not a copy of its order.
//!
//! Order (DESIGN.md, AXON.md §5-6): body size from `Content-Length`, header
//! presence and syntax, the allow-list (a hash lookup), the body-hash
//! constant and the nonce window (a map lookup), and only then the sr25519
//! verification, which costs a hundred times the model. The nonce is
//! recorded only after the signature verified, so forged requests cannot
//! fill the nonce map; the rate limit is charged only for verified callers,
//! so nobody can drain a validator's bucket by forging its hotkey header;
//! and the in-flight cap counts verified requests only, so forged ones
//! waiting for verification cannot take the capacity validators need (the
//! server bounds verification work separately, per source). The body is read
//! after all of this: an unauthenticated request never gets its body buffered.

use crate::limits::{
    self, BudgetFull, InFlight, InFlightGuard, RateLimiter, VerifyBudget, VerifyPermit,
};
use crate::nonce::NonceMap;
use crate::nonce::{self, NonceError};
use crate::reason::Reason;
use crate::sig::{self, SigError};
use crate::sig_batch::KeyCache;
use crate::ss58;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `computed_body_hash` of a synapse without `required_hash_fields`: SHA3-256("").
pub const EMPTY_BODY_HASH: &str =
    "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";
/// The dendrite's default `timeout` when the header is absent (bittensor's 12 s).
pub const DEFAULT_TIMEOUT_S: f64 = 12.0;

pub const H_TIMEOUT: &str = "timeout";
pub const H_VERSION: &str = "bt_header_dendrite_version";
pub const H_NONCE: &str = "bt_header_dendrite_nonce";
pub const H_UUID: &str = "bt_header_dendrite_uuid";
pub const H_HOTKEY: &str = "bt_header_dendrite_hotkey";
pub const H_SIGNATURE: &str = "bt_header_dendrite_signature";
pub const H_BODY_HASH: &str = "computed_body_hash";

/// A refusal: why, and the detail after the reason's standard prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }

    /// The full message for the JSON body and the status header.
    pub fn message(&self) -> String {
        format!("{}{}", self.reason.prefix(), self.detail)
    }
}

impl From<NonceError> for Reject {
    fn from(e: NonceError) -> Reject {
        let reason = match e {
            NonceError::TooOld { .. } => Reason::NonceStale,
            NonceError::NotIncreasing | NonceError::Replayed => Reason::NonceReplay,
            NonceError::InFuture { .. } => Reason::NonceFuture,
        };
        Reject::new(reason, e.to_string())
    }
}

impl From<SigError> for Reject {
    fn from(e: SigError) -> Reject {
        let reason = match e {
            SigError::Mismatch => Reason::SignatureMismatch,
            _ => Reason::SignatureMalformed,
        };
        Reject::new(reason, e.to_string())
    }
}

/// The authentication headers, parsed.
#[derive(Debug, Clone)]
pub struct Auth<'a> {
    pub timeout_s: f64,
    pub hotkey_ss58: &'a str,
    pub hotkey: [u8; 32],
    pub nonce: u64,
    pub uuid: &'a str,
    pub signature: [u8; sig::SIGNATURE_LEN],
    pub body_hash: &'a str,
}

impl Auth<'_> {
    /// Digest keying this caller's nonces.
    pub fn endpoint_key(&self) -> u128 {
        nonce::endpoint_key(&self.hotkey, self.uuid)
    }

    /// The message the dendrite signed, with *our* hotkey in the axon slot.
    pub fn message(&self, own_hotkey_ss58: &str) -> Result<sig::Message, SigError> {
        sig::Message::new(
            self.nonce,
            self.hotkey_ss58,
            own_hotkey_ss58,
            self.uuid,
            self.body_hash,
        )
    }

    /// Verifies the signature.
    pub fn verify(&self, own_hotkey_ss58: &str) -> Result<(), Reject> {
        let m = self.message(own_hotkey_ss58)?;
        sig::verify(&self.hotkey, m.as_bytes(), &self.signature).map_err(Reject::from)
    }

    /// Verifies the signature through the key cache, in a batch with any
    /// other request verifying at the same moment (same verdict as
    /// [`Auth::verify`]).
    pub async fn verify_batched(
        &self,
        own_hotkey_ss58: &str,
        cache: &crate::sig_batch::KeyCache,
    ) -> Result<(), Reject> {
        let m = self.message(own_hotkey_ss58)?;
        cache
            .verify_batched(&self.hotkey, m, &self.signature)
            .await
            .map_err(Reject::from)
    }

    /// Verifies the signature on its own, with the caller's key from a cache
    /// of decompressed keys: the single-signature path. The server does not
    /// call it: it verifies through [`Auth::verify_batched`], which for a
    /// request alone in the queue does this same verification plus the
    /// queue hand-off and one yield to the runtime. Kept for
    /// `benches/signature.rs` (`check/full`), which times the check of one
    /// request without a runtime.
    pub fn verify_cached(
        &self,
        own_hotkey_ss58: &str,
        cache: &crate::sig_batch::KeyCache,
    ) -> Result<(), Reject> {
        let m = self.message(own_hotkey_ss58)?;
        cache
            .verify(&self.hotkey, m.as_bytes(), &self.signature)
            .map_err(Reject::from)
    }
}

/// Header lookup, all the gate needs of a request's headers.
pub trait Headers {
    /// The first value of header `name` (given in lower case), as sent.
    fn first(&self, name: &str) -> Option<&[u8]>;
}

impl Headers for hyper::HeaderMap {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// Name/value pairs, first match wins (names compared ignoring case).
impl Headers for [(&str, &[u8])] {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Visible ASCII and tabs: what an HTTP header value may hold as text.
fn header_text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// A header as text; `Ok(None)` when absent, an error when not visible ASCII.
fn text<'a, H: Headers + ?Sized>(h: &'a H, name: &'static str) -> Result<Option<&'a str>, Reject> {
    match h.first(name) {
        None => Ok(None),
        Some(v) => header_text(v).map(|s| Some(s.trim())).ok_or_else(|| {
            Reject::new(
                Reason::BadHeader,
                format!("header '{name}' is not ASCII text"),
            )
        }),
    }
}

fn required<'a, H: Headers + ?Sized>(
    h: &'a H,
    name: &'static str,
    missing: &'static str,
) -> Result<&'a str, Reject> {
    match text(h, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Reject::new(Reason::MissingAuth, missing)),
    }
}

/// Parses a Python `float()`-style header value (finite only).
pub fn parse_float_header(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Reads and checks every header the gate needs, without touching shared state.
pub fn parse_auth<H: Headers + ?Sized>(h: &H) -> Result<Auth<'_>, Reject> {
    let timeout_s = match text(h, H_TIMEOUT)? {
        None | Some("") => DEFAULT_TIMEOUT_S,
        Some(s) => parse_float_header(s).filter(|v| *v >= 0.0).ok_or_else(|| {
            Reject::new(
                Reason::BadHeader,
                format!("header 'timeout' is not a number: {s:.32}"),
            )
        })?,
    };
    if let Some(s) = text(h, H_VERSION)? {
        if !s.is_empty() && s.parse::<u64>().is_err() {
            return Err(Reject::new(
                Reason::BadHeader,
                format!("header '{H_VERSION}' is not an integer"),
            ));
        }
    }
    let hotkey_ss58 = required(h, H_HOTKEY, "Missing dendrite hotkey")?;
    let hotkey =
        ss58::decode_key(hotkey_ss58).map_err(|e| Reject::new(Reason::BadHotkey, e.to_string()))?;
    let nonce_s = required(h, H_NONCE, "Missing Nonce")?;
    let nonce = nonce_s.parse::<u64>().map_err(|_| {
        Reject::new(
            Reason::BadHeader,
            format!("header '{H_NONCE}' is not a non-negative integer"),
        )
    })?;
    let uuid = required(h, H_UUID, "Missing dendrite uuid")?;
    if uuid.len() > sig::MAX_UUID_LEN {
        return Err(Reject::new(
            Reason::BadHeader,
            format!(
                "header '{H_UUID}' is longer than {} characters",
                sig::MAX_UUID_LEN
            ),
        ));
    }
    let signature = sig::parse_signature_hex(required(h, H_SIGNATURE, "Missing Signature")?)?;
    let body_hash = required(h, H_BODY_HASH, "Missing computed_body_hash")?;
    if body_hash.len() > sig::BODY_HASH_HEX_LEN {
        return Err(Reject::new(
            Reason::BodyHash,
            "computed_body_hash is longer than 64 characters",
        ));
    }
    Ok(Auth {
        timeout_s,
        hotkey_ss58,
        hotkey,
        nonce,
        uuid,
        signature,
        body_hash,
    })
}

/// ConversionSynapse and the base Synapse declare no `required_hash_fields`,
/// so the only correct `computed_body_hash` is SHA3-256("") (AXON.md §4).
pub fn check_body_hash(a: &Auth<'_>) -> Result<(), Reject> {
    if a.body_hash.eq_ignore_ascii_case(EMPTY_BODY_HASH) {
        Ok(())
    } else {
        Err(Reject::new(
            Reason::BodyHash,
            format!(
                "computed_body_hash {} is not SHA3-256(\"\") = {EMPTY_BODY_HASH}; this synapse has no required_hash_fields",
                a.body_hash
            ),
        ))
    }
}

/// `Content-Length`, when present and a number.
fn content_length<H: Headers + ?Sized>(h: &H) -> Option<u64> {
    header_text(h.first("content-length")?)?.trim().parse().ok()
}

/// What [`admit`] reads of the server's state.
pub struct View<'a> {
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// Stake rank (0 lowest, 1 highest) of an allowed caller; `None` refuses it.
    pub rank: &'a dyn Fn(&[u8; 32]) -> Option<f64>,
    /// The replay state, read only.
    pub nonces: &'a NonceMap,
}

/// A request that passed every check before its signature.
#[derive(Debug, Clone)]
pub struct Admitted<'h> {
    pub auth: Auth<'h>,
    /// The caller's stake rank, for the in-flight cap.
    pub rank: f64,
    /// The caller's nonce key (`hotkey:uuid` digest).
    pub key: u128,
    /// The clock the nonce was judged against (ns since the Unix epoch).
    pub now_ns: u64,
}

/// Every check that needs no signature work, cheapest first.
pub fn admit<'h, H: Headers + ?Sized>(
    h: &'h H,
    now_ns: u64,
    v: &View<'_>,
) -> Result<Admitted<'h>, Reject> {
    if let Some(n) = content_length(h) {
        if n > v.max_body as u64 {
            return Err(Reject::new(
                Reason::BodyTooLarge,
                format!("body of {n} bytes exceeds the {} byte limit", v.max_body),
            ));
        }
    }
    let auth = parse_auth(h)?;
    let rank = (v.rank)(&auth.hotkey).ok_or_else(|| {
        Reject::new(
            Reason::Blacklisted,
            format!(
                "hotkey {} is not on this miner's validators list.",
                auth.hotkey_ss58
            ),
        )
    })?;
    check_body_hash(&auth)?;
    let key = auth.endpoint_key();
    v.nonces
        .check(&auth.hotkey, key, auth.nonce, auth.timeout_s, now_ns)?;
    Ok(Admitted {
        auth,
        rank,
        key,
        now_ns,
    })
}

/// What [`settle`] changes or reads after the signature verified.
pub struct Settle<'a> {
    pub nonces: &'a mut NonceMap,
    pub rate: &'a RateLimiter,
    /// Monotonic clock for the rate limiter.
    pub now: std::time::Instant,
    /// Verified requests in flight, this one included.
    pub inflight: usize,
    /// The in-flight cap (0 = none).
    pub max_inflight: usize,
}

/// The steps after a verified signature: the nonce is recorded (checked
/// again, so two concurrent requests with one nonce cannot both pass), the
/// rate limit charged, and the in-flight cap applied by stake rank.
pub fn settle(a: &Admitted<'_>, s: Settle<'_>) -> Result<(), Reject> {
    s.nonces.commit(
        &a.auth.hotkey,
        a.key,
        a.auth.nonce,
        a.auth.timeout_s,
        a.now_ns,
    )?;
    if !s.rate.allow(&a.auth.hotkey, s.now) {
        return Err(Reject::new(
            Reason::RateLimited,
            format!("hotkey {} is over its rate limit", a.auth.hotkey_ss58),
        ));
    }
    if !limits::admit(s.max_inflight, s.inflight, a.rank) {
        return Err(Reject::new(
            Reason::Overloaded,
            "too many requests in flight; lower-stake callers are refused first",
        ));
    }
    Ok(())
}

/// The server's shared state, as the whole gate ([`pass`]) reads and
/// changes it. Built by the server for each request (a few references), and
/// by the `gate` fuzz target with state of its own choosing. `'g` is the
/// in-flight counter's, which the admitted request's guard borrows.
pub struct Shared<'a, 'g> {
    /// This miner's hotkey: the axon slot of the message the dendrite signed.
    pub own_hotkey_ss58: &'a str,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// Stake rank of an allowed caller; `None` refuses it (see [`View::rank`]).
    pub rank: &'a (dyn Fn(&[u8; 32]) -> Option<f64> + Sync),
    /// The replay state.
    pub nonces: &'a Mutex<NonceMap>,
    /// Requests waiting for their signature check, per source.
    pub verify: &'a VerifyBudget,
    /// Decompressed keys and the batching queue of the signature check.
    pub keys: &'a KeyCache,
    pub rate: &'a RateLimiter,
    /// Verified requests in flight.
    pub inflight: &'g InFlight,
    /// The in-flight cap (0 = none).
    pub max_inflight: usize,
}

/// What the caller of [`pass`] records along the way (the server: its
/// metrics and the connection's standing). Every hook defaults to nothing.
pub trait Observer {
    /// [`admit`] passed; the signature check comes next.
    fn admitted(&self, _a: &Admitted<'_>) {}
    /// The signature check ran (whatever its verdict) and took `took`.
    fn checked(&self, _took: Duration) {}
    /// The caller proved its key with a fresh nonce: [`settle`] accepted the
    /// request, or refused it only for load (rate limit, in-flight cap).
    fn proven(&self) {}
}

/// The replay state, locked (a panic elsewhere while it was held leaves a
/// map that is still consistent: every change to it is one call).
pub fn lock_nonces(m: &Mutex<NonceMap>) -> MutexGuard<'_, NonceMap> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A place in the verification budget for a request from `source`, or the
/// 503 that says which share is full. Both protocols wait here before their
/// signature check.
pub fn verify_permit(budget: &VerifyBudget, source: IpAddr) -> Result<VerifyPermit<'_>, Reject> {
    budget.enter(source).map_err(|full| {
        Reject::new(
            Reason::Overloaded,
            match full {
                BudgetFull::Source => {
                    "too many requests from this address are waiting for signature verification"
                }
                BudgetFull::Total => "too many requests are waiting for signature verification",
            },
        )
    })
}

/// The whole gate of an axon request from `source`, as the server runs it:
/// [`admit`] (under the nonce lock), a place in the verification budget
/// ([`verify_permit`]), the batched signature check
/// ([`Auth::verify_batched`]), then [`settle`] counted among the verified
/// requests in flight. Returns the request's place in flight.
pub async fn pass<'g, H: Headers + ?Sized, O: Observer + ?Sized>(
    s: &Shared<'_, 'g>,
    h: &H,
    source: IpAddr,
    now_ns: u64,
    obs: &O,
) -> Result<InFlightGuard<'g>, Reject> {
    let admitted = {
        let nonces = lock_nonces(s.nonces);
        let view = View {
            max_body: s.max_body,
            rank: s.rank,
            nonces: &nonces,
        };
        admit(h, now_ns, &view)?
    };
    obs.admitted(&admitted);

    let permit = verify_permit(s.verify, source)?;
    let tv = Instant::now();
    let verified = admitted
        .auth
        .verify_batched(s.own_hotkey_ss58, s.keys)
        .await;
    obs.checked(tv.elapsed());
    drop(permit);
    verified?;

    let guard = s.inflight.enter();
    let settled = settle(
        &admitted,
        Settle {
            nonces: &mut lock_nonces(s.nonces),
            rate: s.rate,
            now: Instant::now(),
            inflight: s.inflight.current(),
            max_inflight: s.max_inflight,
        },
    );
    // A fresh, verified request proves its caller even when refused for
    // load; a duplicate nonce does not.
    if settled.is_ok()
        || settled
            .as_ref()
            .is_err_and(|r| matches!(r.reason, Reason::RateLimited | Reason::Overloaded))
    {
        obs.proven();
    }
    settled.map(|()| guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderMap, HeaderName, HeaderValue};
    use sha3::{Digest, Sha3_256};

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const SIG: &str = "0x6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn axon_md_request() -> Vec<(&'static str, &'static str)> {
        vec![
            ("timeout", "12.0"),
            (H_VERSION, "10005000"),
            (H_NONCE, "1795626734383137861"),
            (H_UUID, "5c06965a-e8f3-11f1-9a7d-02fc00000001"),
            (H_HOTKEY, ALICE),
            (H_SIGNATURE, SIG),
            (H_BODY_HASH, EMPTY_BODY_HASH),
        ]
    }

    #[test]
    fn empty_hash_constant_is_sha3_of_nothing() {
        assert_eq!(hex::encode(Sha3_256::digest(b"")), EMPTY_BODY_HASH);
    }

    #[test]
    fn axon_md_request_passes_for_bob_only() {
        let h = headers(&axon_md_request());
        let a = parse_auth(&h).unwrap();
        assert_eq!(a.nonce, 1795626734383137861);
        assert_eq!(a.timeout_s, 12.0);
        check_body_hash(&a).unwrap();
        a.verify(BOB).unwrap();
        // Signed for Bob's axon: a miner with another hotkey must refuse it.
        assert_eq!(
            a.verify(ALICE).unwrap_err().reason,
            Reason::SignatureMismatch
        );
    }

    fn without(name: &str) -> HeaderMap {
        let v: Vec<_> = axon_md_request()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        headers(&v)
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut v = axon_md_request();
        for p in v.iter_mut() {
            if p.0 == name {
                p.1 = Box::leak(value.to_string().into_boxed_str());
            }
        }
        headers(&v)
    }

    #[test]
    fn missing_and_malformed_headers() {
        let r = |h: HeaderMap| parse_auth(&h).unwrap_err();
        assert_eq!(
            r(without(H_SIGNATURE)).message(),
            "Not Verified with error: Missing Signature"
        );
        assert_eq!(
            r(without(H_NONCE)).message(),
            "Not Verified with error: Missing Nonce"
        );
        assert_eq!(r(without(H_HOTKEY)).reason, Reason::MissingAuth);
        assert_eq!(r(without(H_UUID)).reason, Reason::MissingAuth);
        assert_eq!(r(without(H_BODY_HASH)).reason, Reason::MissingAuth);
        assert_eq!(r(with(H_HOTKEY, "5Grw")).reason, Reason::BadHotkey);
        assert_eq!(r(with(H_NONCE, "1.5e18")).reason, Reason::BadHeader);
        assert_eq!(r(with(H_NONCE, "-1")).reason, Reason::BadHeader);
        assert_eq!(r(with("timeout", "soon")).reason, Reason::BadHeader);
        assert_eq!(r(with("timeout", "nan")).reason, Reason::BadHeader);
        assert_eq!(r(with(H_VERSION, "10.5")).reason, Reason::BadHeader);
        assert_eq!(
            r(with(H_SIGNATURE, &SIG[..100])).reason,
            Reason::SignatureMalformed
        );
        assert_eq!(r(with(H_UUID, &"u".repeat(65))).reason, Reason::BadHeader);
        // timeout and version are optional, as in Python.
        let a_h = without("timeout");
        assert_eq!(parse_auth(&a_h).unwrap().timeout_s, DEFAULT_TIMEOUT_S);
        assert!(parse_auth(&without(H_VERSION)).is_ok());
    }

    /// Which of [`Observer`]'s hooks [`pass`] called.
    #[derive(Default)]
    struct Hooks(std::cell::Cell<[bool; 3]>);

    impl Observer for Hooks {
        fn admitted(&self, _: &Admitted<'_>) {
            let [_, c, p] = self.0.get();
            self.0.set([true, c, p]);
        }
        fn checked(&self, _: Duration) {
            let [a, _, p] = self.0.get();
            self.0.set([a, true, p]);
        }
        fn proven(&self) {
            let [a, c, _] = self.0.get();
            self.0.set([a, c, true]);
        }
    }

    #[test]
    fn pass_runs_admit_budget_check_settle_in_order() {
        let now = 1_795_626_734_383_137_861 + 1_000_000;
        let rank = |k: &[u8; 32]| (ss58::encode(k) == ALICE).then_some(1.0);
        let nonces = Mutex::new(NonceMap::new(16, nonce::DEFAULT_FUTURE_SKEW_NS));
        let verify = VerifyBudget::new(4, 1);
        let keys = KeyCache::default();
        let rate = RateLimiter::new(0.0, 0.0);
        let inflight = InFlight::default();
        let shared = Shared {
            own_hotkey_ss58: BOB,
            max_body: 1024,
            rank: &rank,
            nonces: &nonces,
            verify: &verify,
            keys: &keys,
            rate: &rate,
            inflight: &inflight,
            max_inflight: 8,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run = |h: &HeaderMap, src: &str| {
            let hooks = Hooks::default();
            let r = rt.block_on(pass(&shared, h, src.parse().unwrap(), now, &hooks));
            (r.map(|_in| inflight.current()), hooks.0.get())
        };
        let (a, b) = ("10.0.0.1", "10.0.0.2");
        // This source's share is taken: refused after admit, before the check.
        let held = verify.enter(a.parse().unwrap()).unwrap();
        assert!(SIG.ends_with('b'));
        let (r, hooks) = run(&headers(&axon_md_request()), a);
        assert_eq!(
            r.unwrap_err().detail,
            "too many requests from this address are waiting for signature verification"
        );
        assert_eq!(hooks, [true, false, false]);
        // A bit flipped: checked, refused, nothing recorded.
        let forged = with(H_SIGNATURE, &format!("{}c", &SIG[..SIG.len() - 1]));
        let (r, hooks) = run(&forged, b);
        assert_eq!(r.unwrap_err().reason, Reason::SignatureMismatch);
        assert_eq!(hooks, [true, true, false]);
        assert!(lock_nonces(&nonces).is_empty());
        // From another source it passes, counted in flight while held.
        let (r, hooks) = run(&headers(&axon_md_request()), b);
        assert_eq!(r.unwrap(), 1);
        assert_eq!(hooks, [true, true, true]);
        assert_eq!((inflight.current(), verify.current()), (0, 1));
        drop(held);
        // And again it is a replay, refused by admit.
        let (r, hooks) = run(&headers(&axon_md_request()), a);
        assert_eq!(r.unwrap_err().reason, Reason::NonceReplay);
        assert_eq!(hooks, [false, false, false]);
        // An unlisted caller never reaches the budget.
        let (r, hooks) = run(&with(H_HOTKEY, BOB), b);
        assert_eq!(r.unwrap_err().reason, Reason::Blacklisted);
        assert_eq!(hooks, [false, false, false]);
    }

    #[test]
    fn wrong_body_hash_is_refused() {
        let h = with(H_BODY_HASH, &"0".repeat(64));
        let a = parse_auth(&h).unwrap();
        assert_eq!(check_body_hash(&a).unwrap_err().reason, Reason::BodyHash);
        // And the signature no longer matches either (it covers the hash).
        assert_eq!(a.verify(BOB).unwrap_err().reason, Reason::SignatureMismatch);
    }
}
