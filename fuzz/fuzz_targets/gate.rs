//! Fuzz target `gate`: the axon's request gate, on headers a client chose.
//!
//! `cm_host::server`'s gate is private and tied to a running server (clock,
//! shared state), so this target drives the same public steps in the same
//! order: `gate::parse_auth` on a header map, `gate::check_body_hash`,
//! `limits::admit`, the nonce map's `check`, the sr25519 `verify`, and the
//! nonce map's `commit`. The input is structured (`arbitrary`): a list of
//! header edits applied either to an empty map or to the real request of
//! AXON.md §9, so the fuzzer spends its time past the ss58 checksum instead
//! of rediscovering a valid address. A signing mode replaces the hotkey and
//! signature with ones the harness makes over the parsed fields (a fixed
//! test key, deterministic nonce), which proves that anything the parser
//! accepts and an honest dendrite signed does verify, and that one flipped
//! bit never does. A second part runs sequences of nonce commits against a
//! small mirror of the documented semantics (FIFO eviction of keys, each
//! nonce at most once per remembered key). A third feeds raw strings to the
//! leaf decoders (ss58, signature hex, float header, validators file).
#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cm_host::gate::{self, Auth};
use cm_host::nonce::{self, NonceError, NonceMap};
use cm_host::sig::{self, SigError};
use cm_host::{limits, ss58, validators};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use schnorrkel::context::attach_rng;
use schnorrkel::{signing_context, ExpansionMode, Keypair, MiniSecretKey};

/// The validator (//Alice) and miner (//Bob) of AXON.md §9.
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const NONCE_9: &str = "1795626734383137861";
const UUID_9: &str = "5c06965a-e8f3-11f1-9a7d-02fc00000001";
const SIG_9: &str = "0x6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b";
/// Reference time for nonces: the nonce of AXON.md §9, in ns.
const BASE_NS: u64 = 1_795_626_734_383_137_861;
/// Granularity of the "near" nonce and clock offsets: 10 µs, so an `i32`
/// spans about ±6 hours and small values land inside the 4 s + timeout window.
const NEAR_STEP_NS: i64 = 10_000;
/// Distinct endpoint keys the nonce sequences use.
const N_KEYS: u8 = 8;
/// Largest nonce-map capacity tried (small, so eviction happens).
const MAX_CAPACITY: u8 = 16;
/// Seed of the harness's own signing key.
const TEST_SEED: [u8; 32] = [7; 32];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name<'a> {
    Timeout,
    Version,
    Nonce,
    Uuid,
    Hotkey,
    Signature,
    BodyHash,
    Other(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Edit<'a> {
    /// Replace every value of the header.
    Set(Name<'a>, &'a [u8]),
    /// Add a value after the existing ones (the gate reads the first).
    Append(Name<'a>, &'a [u8]),
    Remove(Name<'a>),
}

#[derive(Arbitrary, Debug)]
enum Signing {
    /// Keep whatever signature header the edits left.
    AsSent,
    /// Sign the parsed fields with the test key; optionally flip one bit of
    /// the signature (byte index, bit index) and optionally send it in upper case.
    Ours { flip: Option<(u8, u8)>, upper: bool },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Instant64 {
    /// `BASE_NS + n * NEAR_STEP_NS`.
    Near(i32),
    Raw(u64),
}

impl Instant64 {
    fn ns(self) -> u64 {
        match self {
            Instant64::Near(n) => BASE_NS.saturating_add_signed(i64::from(n) * NEAR_STEP_NS),
            Instant64::Raw(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct NonceOp {
    key: u8,
    nonce: Instant64,
    now: Instant64,
    timeout_s: f64,
    commit: bool,
}

#[derive(Arbitrary, Debug)]
struct Loose<'a> {
    ss58: &'a str,
    signature: &'a str,
    float: &'a str,
    validators_file: &'a str,
    raw_verify: Option<([u8; 32], [u8; 64], &'a [u8])>,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    from_real_request: bool,
    edits: Vec<Edit<'a>>,
    signing: Signing,
    /// Clock at the gate relative to the request's nonce, in NEAR_STEP_NS.
    clock_offset: i32,
    max_inflight: u16,
    inflight: u16,
    rank: f64,
    nonce_capacity: u8,
    nonce_ops: Vec<NonceOp>,
    loose: Loose<'a>,
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    if input.from_real_request {
        for (name, value) in real_request() {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    for e in &input.edits {
        apply(&mut headers, e);
    }
    gate_steps(&mut headers, &input);
    nonce_sequence(&input);
    admission(&input);
    leaf_decoders(&input.loose);
});

fn real_request() -> [(HeaderName, &'static str); 7] {
    [
        (HeaderName::from_static(gate::H_TIMEOUT), "12.0"),
        (HeaderName::from_static(gate::H_VERSION), "10005000"),
        (HeaderName::from_static(gate::H_NONCE), NONCE_9),
        (HeaderName::from_static(gate::H_UUID), UUID_9),
        (HeaderName::from_static(gate::H_HOTKEY), ALICE),
        (HeaderName::from_static(gate::H_SIGNATURE), SIG_9),
        (
            HeaderName::from_static(gate::H_BODY_HASH),
            gate::EMPTY_BODY_HASH,
        ),
    ]
}

fn header_name(n: Name<'_>) -> Option<HeaderName> {
    let s = match n {
        Name::Timeout => gate::H_TIMEOUT,
        Name::Version => gate::H_VERSION,
        Name::Nonce => gate::H_NONCE,
        Name::Uuid => gate::H_UUID,
        Name::Hotkey => gate::H_HOTKEY,
        Name::Signature => gate::H_SIGNATURE,
        Name::BodyHash => gate::H_BODY_HASH,
        Name::Other(b) => return HeaderName::from_bytes(b).ok(),
    };
    Some(HeaderName::from_static(s))
}

/// Applies one edit; names or values hyper's parser would never produce are skipped.
fn apply(h: &mut HeaderMap, e: &Edit<'_>) {
    match *e {
        Edit::Set(n, v) | Edit::Append(n, v) => {
            let (Some(name), Ok(value)) = (header_name(n), HeaderValue::from_bytes(v)) else {
                return;
            };
            if matches!(e, Edit::Set(..)) {
                h.insert(name, value);
            } else {
                h.append(name, value);
            }
        }
        Edit::Remove(n) => {
            if let Some(name) = header_name(n) {
                h.remove(name);
            }
        }
    }
}

fn test_key() -> &'static (Keypair, String) {
    static KEY: OnceLock<(Keypair, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let kp = MiniSecretKey::from_bytes(&TEST_SEED)
            .expect("32 bytes")
            .expand_to_keypair(ExpansionMode::Ed25519);
        let ss58 = ss58::encode(&kp.public.to_bytes());
        (kp, ss58)
    })
}

/// A fixed "random" source, so a signature depends only on the input and
/// every run of a corpus file is the same.
struct FixedRng;

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        0x5eed_5eed
    }
    fn next_u64(&mut self) -> u64 {
        0x5eed_5eed_5eed_5eed
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0x5e);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

fn to_hex(bytes: &[u8], upper: bool) -> String {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push(char::from(digits[usize::from(b >> 4)]));
        s.push(char::from(digits[usize::from(b & 0xf)]));
    }
    s
}

/// The header part of the server's gate, in its order.
fn gate_steps(headers: &mut HeaderMap, input: &Input<'_>) {
    let auth = match gate::parse_auth(headers) {
        Ok(a) => a,
        Err(rej) => {
            check_reject_shape(&rej);
            return;
        }
    };
    check_auth(&auth);
    let (nonce_v, uuid, body_hash) = (auth.nonce, auth.uuid.to_owned(), auth.body_hash.to_owned());
    drop(auth);

    // Put the harness's own signature in, over the fields as parsed.
    let mut expect_valid = None;
    if let Signing::Ours { flip, upper } = input.signing {
        let (kp, kp_ss58) = test_key();
        let msg = match sig::Message::new(nonce_v, kp_ss58, BOB, &uuid, &body_hash) {
            Ok(m) => m,
            // uuid and body hash are capped at 64 characters each, so the
            // message always fits.
            Err(e) => panic!("accepted headers make no message: {e}"),
        };
        let t = attach_rng(
            signing_context(sig::SIGNING_CONTEXT).bytes(msg.as_bytes()),
            FixedRng,
        );
        let mut bytes = kp.sign(t).to_bytes();
        if let Some((byte, bit)) = flip {
            bytes[usize::from(byte) % sig::SIGNATURE_LEN] ^= 1 << (bit % 8);
        }
        let hotkey = HeaderValue::from_str(kp_ss58).expect("ss58 is ASCII");
        let signature = HeaderValue::from_str(&to_hex(&bytes, upper)).expect("hex is ASCII");
        headers.insert(HeaderName::from_static(gate::H_HOTKEY), hotkey);
        headers.insert(HeaderName::from_static(gate::H_SIGNATURE), signature);
        expect_valid = Some(flip.is_none());
    }
    let auth = match gate::parse_auth(headers) {
        Ok(a) => a,
        Err(rej) => panic!("re-signed headers refused: {}", rej.message()),
    };

    let body_ok = gate::check_body_hash(&auth);
    if let Err(rej) = &body_ok {
        check_reject_shape(rej);
    }
    let body_hash_is_empty = auth.body_hash.eq_ignore_ascii_case(gate::EMPTY_BODY_HASH);
    assert_eq!(body_ok.is_ok(), body_hash_is_empty);

    let key = auth.endpoint_key();
    assert_eq!(key, nonce::endpoint_key(&auth.hotkey, auth.uuid));
    let now = auth
        .nonce
        .saturating_add_signed(i64::from(input.clock_offset) * NEAR_STEP_NS);
    let capacity = usize::from(input.nonce_capacity % MAX_CAPACITY) + 1;
    let mut nonces = NonceMap::new(capacity, nonce::DEFAULT_FUTURE_SKEW_NS);
    let fresh = nonces.check(key, auth.nonce, auth.timeout_s, now);
    if let Err(e) = fresh {
        check_nonce_error(e);
        assert!(
            !matches!(e, NonceError::Replayed | NonceError::NotIncreasing),
            "empty map: {e}"
        );
    }

    // The server verifies only requests whose nonce passed (the curve work
    // is the gate's dearest step); a harness-signed request is verified
    // whatever its nonce, to check the signature invariant.
    if fresh.is_err() && expect_valid.is_none() {
        return;
    }
    let verified = auth.verify(BOB);
    if let Err(rej) = &verified {
        check_reject_shape(rej);
    }
    match expect_valid {
        Some(true) => assert!(verified.is_ok(), "honest signature refused: {:?}", verified),
        Some(false) => assert!(verified.is_err(), "flipped signature accepted"),
        None => {}
    }
    if verified.is_err() || fresh.is_err() {
        return;
    }
    nonces
        .commit(key, auth.nonce, auth.timeout_s, now)
        .expect("commit after a passing check on the same state");
    assert_eq!(nonces.len(), 1);
    // The same request again is a replay.
    assert_eq!(
        nonces.check(key, auth.nonce, auth.timeout_s, now),
        Err(NonceError::Replayed)
    );
}

fn check_auth(a: &Auth<'_>) {
    assert!(
        a.timeout_s.is_finite() && a.timeout_s >= 0.0,
        "timeout {}",
        a.timeout_s
    );
    assert!(!a.uuid.is_empty() && a.uuid.len() <= sig::MAX_UUID_LEN);
    assert!(!a.body_hash.is_empty() && a.body_hash.len() <= sig::BODY_HASH_HEX_LEN);
    let (prefix, key) = ss58::decode(a.hotkey_ss58).expect("parse_auth decoded it");
    assert_eq!(key, a.hotkey);
    assert_eq!(ss58::encode_with_prefix(prefix, &key), a.hotkey_ss58);
}

fn check_reject_shape(rej: &gate::Reject) {
    let status = rej.reason.status();
    assert!((400..600).contains(&status), "status {status}");
    assert!(!rej.message().is_empty());
}

fn check_nonce_error(e: NonceError) {
    match e {
        NonceError::TooOld { window_s, age_s } => {
            let max_window = (nonce::ALLOWED_DELTA_NS as f64) / 1e9 + nonce::MAX_WINDOW_TIMEOUT_S;
            assert!(
                (4.0..=max_window + 1e-6).contains(&window_s),
                "window {window_s}"
            );
            assert!(age_s >= 0.0 && age_s.is_finite());
        }
        NonceError::InFuture { ahead_s } => assert!(ahead_s > 0.0 && ahead_s.is_finite()),
        NonceError::NotIncreasing | NonceError::Replayed => {}
        _ => {}
    }
    assert!(!e.to_string().is_empty());
}

/// Nonce commits against a mirror of the documented rules: keys are evicted
/// oldest-created first once `capacity` are remembered, and while a key is
/// remembered none of its accepted nonces is accepted again.
fn nonce_sequence(input: &Input<'_>) {
    let capacity = usize::from(input.nonce_capacity % MAX_CAPACITY) + 1;
    let mut map = NonceMap::new(capacity, nonce::DEFAULT_FUTURE_SKEW_NS);
    let mut live: VecDeque<u128> = VecDeque::new();
    let mut accepted: HashMap<u128, HashSet<u64>> = HashMap::new();
    for op in &input.nonce_ops {
        let key = nonce::endpoint_key(&[op.key % N_KEYS; 32], "fuzz");
        let (n, now) = (op.nonce.ns(), op.now.ns());
        let checked = map.check(key, n, op.timeout_s, now);
        if let Err(e) = checked {
            check_nonce_error(e);
        }
        if !op.commit {
            continue;
        }
        let committed = map.commit(key, n, op.timeout_s, now);
        assert_eq!(checked, committed, "check and commit disagree");
        if committed.is_err() {
            continue;
        }
        if let Some(seen) = accepted.get(&key) {
            assert!(
                !seen.contains(&n),
                "nonce {n} accepted twice for a remembered key"
            );
        }
        if !live.contains(&key) {
            if live.len() >= capacity {
                if let Some(old) = live.pop_front() {
                    accepted.remove(&old);
                }
            }
            live.push_back(key);
        }
        accepted.entry(key).or_default().insert(n);
        assert_eq!(map.len(), live.len());
        assert!(map.len() <= capacity);
    }
}

fn admission(input: &Input<'_>) {
    let cap = usize::from(input.max_inflight);
    let t = limits::threshold(cap, input.rank);
    assert!((1..=cap.max(1)).contains(&t), "threshold {t} for cap {cap}");
    // A lone request is always admitted, whatever the caller's rank.
    assert!(limits::admit(cap, 1, input.rank));
    let _ = limits::admit(cap, usize::from(input.inflight), input.rank);
}

fn leaf_decoders(l: &Loose<'_>) {
    match ss58::decode(l.ss58) {
        Ok((prefix, key)) => assert_eq!(ss58::encode_with_prefix(prefix, &key), l.ss58),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match sig::parse_signature_hex(l.signature) {
        Ok(bytes) => {
            assert_eq!(l.signature.len(), sig::SIGNATURE_HEX_LEN);
            assert!(l.signature[2..].eq_ignore_ascii_case(&to_hex(&bytes, false)[2..]));
        }
        Err(e) => assert_eq!(e, SigError::BadEncoding),
    }
    if let Some(v) = gate::parse_float_header(l.float) {
        assert!(v.is_finite());
    }
    if let Err(e) = validators::AllowList::parse(l.validators_file) {
        assert!(e.line >= 1);
    }
    if let Some((pk, s, msg)) = &l.raw_verify {
        let _ = sig::verify(pk, msg, s);
    }
}
