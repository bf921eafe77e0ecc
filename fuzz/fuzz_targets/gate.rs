//! Fuzz target `gate`: the axon's request gate, on headers a client chose.
//!
//! It calls the functions the server calls, in the server's order:
//! `gate::admit` (headers, clock, allow-list and nonce state in; an
//! admitted request or a refusal out), the server's signature check
//! (`Auth::verify_batched` through a `KeyCache`), and `gate::settle`
//! (nonce commit, rate limit, in-flight cap). Headers are given as plain
//! name/value pairs through the gate's `Headers` trait, so any bytes can
//! reach it. The input is structured (`arbitrary`): a list of header edits
//! applied either to nothing or to the real request of AXON.md §9, so the
//! fuzzer spends its time past the ss58 checksum instead of rediscovering a
//! valid address. A signing mode replaces the hotkey and signature with ones
//! the harness makes over the parsed fields (a fixed test key,
//! deterministic nonce), which proves that anything the gate admits and an
//! honest dendrite signed does verify and settle, that one flipped bit never
//! verifies, and that the same request admitted again is a replay. A second
//! part runs sequences of nonce commits over several hotkeys and uuids with
//! a small capacity and checks the documented guarantee: no nonce is ever
//! accepted twice for one `hotkey:uuid`, whatever was evicted. A third feeds
//! raw strings to the leaf decoders (ss58, signature hex, float header,
//! validators file).
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cm_host::gate::{self, Auth};
use cm_host::limits::RateLimiter;
use cm_host::nonce::{self, NonceError, NonceMap};
use cm_host::reason::Reason;
use cm_host::sig::{self, SigError};
use cm_host::sig_batch::KeyCache;
use cm_host::{limits, ss58, validators};
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
/// Distinct hotkeys, and uuids per hotkey, the nonce sequences use.
const N_HOTKEYS: u8 = 4;
const N_UUIDS: u8 = 4;
/// Largest nonce-map capacity tried (small, so eviction happens).
const MAX_CAPACITY: u8 = 16;
/// Seed of the harness's own signing key.
const TEST_SEED: [u8; 32] = [7; 32];
/// One input in this many runs the curve work (the harness's signing, the
/// server's signature check and what follows it, the raw `sig::verify`).
/// sr25519 costs far more than the rest of the gate: with it on every
/// input the target ran at about 4,100 exec/s here, too slow for 10 million
/// runs in a session; the other inputs stop after `gate::admit`.
const CURVE_ONE_IN: u8 = 4;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name<'a> {
    Timeout,
    Version,
    Nonce,
    Uuid,
    Hotkey,
    Signature,
    BodyHash,
    ContentLength,
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
    /// `curve % CURVE_ONE_IN == 0` runs the signature steps.
    curve: u8,
    from_real_request: bool,
    edits: Vec<Edit<'a>>,
    signing: Signing,
    /// Clock at the gate relative to the request's nonce, in NEAR_STEP_NS.
    clock_offset: i32,
    max_inflight: u16,
    inflight: u16,
    rank: f64,
    /// Whether the caller is on the allow-list (rank `rank`).
    listed: bool,
    /// The body cap, against which `Content-Length` (if an edit set one) is judged.
    max_body: u16,
    per_hotkey: u8,
    nonce_capacity: u8,
    nonce_ops: Vec<NonceOp>,
    loose: Loose<'a>,
}

/// Header pairs as a client sent them (lower-case names, as HTTP parsers give them).
type Pairs = Vec<(String, Vec<u8>)>;

fuzz_target!(|input: Input<'_>| {
    let mut headers: Pairs = Vec::new();
    if input.from_real_request {
        for (name, value) in real_request() {
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
    }
    for e in &input.edits {
        apply(&mut headers, e);
    }
    gate_steps(&mut headers, &input);
    nonce_sequence(&input);
    admission(&input);
    leaf_decoders(&input.loose, with_curve(&input));
});

/// Whether this input runs the sr25519 steps.
fn with_curve(input: &Input<'_>) -> bool {
    input.curve % CURVE_ONE_IN == 0
}

fn real_request() -> [(&'static str, &'static str); 7] {
    [
        (gate::H_TIMEOUT, "12.0"),
        (gate::H_VERSION, "10005000"),
        (gate::H_NONCE, NONCE_9),
        (gate::H_UUID, UUID_9),
        (gate::H_HOTKEY, ALICE),
        (gate::H_SIGNATURE, SIG_9),
        (gate::H_BODY_HASH, gate::EMPTY_BODY_HASH),
    ]
}

fn header_name(n: Name<'_>) -> Option<String> {
    let s = match n {
        Name::Timeout => gate::H_TIMEOUT,
        Name::Version => gate::H_VERSION,
        Name::Nonce => gate::H_NONCE,
        Name::Uuid => gate::H_UUID,
        Name::Hotkey => gate::H_HOTKEY,
        Name::Signature => gate::H_SIGNATURE,
        Name::BodyHash => gate::H_BODY_HASH,
        Name::ContentLength => "content-length",
        Name::Other(b) => return std::str::from_utf8(b).ok().map(str::to_ascii_lowercase),
    };
    Some(s.to_owned())
}

/// Applies one edit.
fn apply(h: &mut Pairs, e: &Edit<'_>) {
    match *e {
        Edit::Set(n, v) | Edit::Append(n, v) => {
            let Some(name) = header_name(n) else {
                return;
            };
            if matches!(e, Edit::Set(..)) {
                h.retain(|(k, _)| *k != name);
            }
            h.push((name, v.to_vec()));
        }
        Edit::Remove(n) => {
            if let Some(name) = header_name(n) {
                h.retain(|(k, _)| *k != name);
            }
        }
    }
}

/// Replaces every value of `name` with `value`.
fn set(h: &mut Pairs, name: &str, value: &str) {
    h.retain(|(k, _)| k != name);
    h.push((name.to_owned(), value.as_bytes().to_vec()));
}

fn view(h: &Pairs) -> Vec<(&str, &[u8])> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
}

/// One current-thread runtime for every input, like each of the server's
/// request tasks sees (it yields once while requests queue behind it).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
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

/// The server's gate, step by step.
fn gate_steps(headers: &mut Pairs, input: &Input<'_>) {
    // The clock is set relative to the request's own nonce, so that small
    // offsets land inside the window.
    let pairs = view(headers);
    let first = gate::parse_auth(pairs.as_slice());
    let (nonce_v, uuid, body_hash) = match &first {
        Ok(a) => {
            check_auth(a);
            (a.nonce, a.uuid.to_owned(), a.body_hash.to_owned())
        }
        Err(rej) => {
            check_reject_shape(rej);
            (0, String::new(), String::new())
        }
    };
    let parsed = first.is_ok();
    drop(first);
    drop(pairs);

    // Put the harness's own signature in, over the fields as parsed.
    let mut expect_valid = None;
    let curve = with_curve(input);
    if let (true, true, Signing::Ours { flip, upper }) = (curve, parsed, &input.signing) {
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
            bytes[usize::from(*byte) % sig::SIGNATURE_LEN] ^= 1 << (bit % 8);
        }
        set(headers, gate::H_HOTKEY, kp_ss58);
        set(headers, gate::H_SIGNATURE, &to_hex(&bytes, *upper));
        expect_valid = Some(flip.is_none());
    }

    let pairs = view(headers);
    let now = nonce_v.saturating_add_signed(i64::from(input.clock_offset) * NEAR_STEP_NS);
    let capacity = usize::from(input.nonce_capacity % MAX_CAPACITY) + 1;
    let mut nonces = NonceMap::new(capacity, nonce::DEFAULT_FUTURE_SKEW_NS)
        .per_hotkey(usize::from(input.per_hotkey));
    let rank_of = |_: &[u8; 32]| input.listed.then_some(input.rank);
    let max_body = usize::from(input.max_body);
    let gate_view = gate::View {
        max_body,
        rank: &rank_of,
        nonces: &nonces,
    };
    let admitted = match gate::admit(pairs.as_slice(), now, &gate_view) {
        Ok(a) => a,
        Err(rej) => {
            check_reject_shape(&rej);
            if let Some(true) = expect_valid {
                // An honest request is refused only for a documented reason.
                assert!(
                    matches!(
                        rej.reason,
                        Reason::BodyTooLarge
                            | Reason::Blacklisted
                            | Reason::BodyHash
                            | Reason::NonceStale
                            | Reason::NonceFuture
                    ),
                    "honest request refused: {}",
                    rej.message()
                );
            }
            return;
        }
    };
    assert!(input.listed, "an unlisted caller was admitted");
    assert_eq!(admitted.now_ns, now);
    assert_eq!(
        admitted.key,
        nonce::endpoint_key(&admitted.auth.hotkey, admitted.auth.uuid)
    );
    assert!(admitted
        .auth
        .body_hash
        .eq_ignore_ascii_case(gate::EMPTY_BODY_HASH));
    check_auth(&admitted.auth);
    if !curve {
        return;
    }

    // The server's own check: the batched verification through a key cache
    // (a fresh one, so every run of an input is the same), driven to its
    // end on a current-thread runtime, as a request alone in the queue is.
    let keys = KeyCache::default();
    let verified = runtime().block_on(admitted.auth.verify_batched(BOB, &keys));
    if let Err(rej) = &verified {
        check_reject_shape(rej);
    }
    match expect_valid {
        Some(true) => assert!(verified.is_ok(), "honest signature refused: {:?}", verified),
        Some(false) => assert!(verified.is_err(), "flipped signature accepted"),
        None => {}
    }
    if verified.is_err() {
        return;
    }
    let rate = RateLimiter::new(0.0, 0.0);
    let cap = usize::from(input.max_inflight);
    let inflight = usize::from(input.inflight).max(1);
    let settled = gate::settle(
        &admitted,
        gate::Settle {
            nonces: &mut nonces,
            rate: &rate,
            now: std::time::Instant::now(),
            inflight,
            max_inflight: cap,
        },
    );
    match &settled {
        Ok(()) => assert!(limits::admit(cap, inflight, input.rank)),
        Err(rej) => {
            assert_eq!(rej.reason, Reason::Overloaded, "{}", rej.message());
            assert!(!limits::admit(cap, inflight, input.rank));
        }
    }
    // Committed either way: the same request again is a replay.
    assert_eq!(nonces.len(), 1);
    let again = gate::View {
        max_body,
        rank: &rank_of,
        nonces: &nonces,
    };
    let replay = gate::admit(pairs.as_slice(), now, &again).map(|_| ());
    assert_eq!(replay.map_err(|r| r.reason), Err(Reason::NonceReplay));
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
            let max_window = NonceMap::new(1, 0).window_ns(f64::MAX) as f64 / 1e9;
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

/// Nonce commits over a few hotkeys and uuids at a small capacity: check and
/// commit agree, the map stays bounded, and no nonce is ever accepted twice
/// for one `hotkey:uuid`, however much was evicted meanwhile.
fn nonce_sequence(input: &Input<'_>) {
    let capacity = usize::from(input.nonce_capacity % MAX_CAPACITY) + 1;
    let mut map = NonceMap::new(capacity, nonce::DEFAULT_FUTURE_SKEW_NS)
        .per_hotkey(usize::from(input.per_hotkey));
    let mut accepted: HashSet<(u128, u64)> = HashSet::new();
    for op in &input.nonce_ops {
        let hotkey = [op.key % N_HOTKEYS; 32];
        let uuid = format!("fuzz-{}", (op.key / N_HOTKEYS) % N_UUIDS);
        let key = nonce::endpoint_key(&hotkey, &uuid);
        let (n, now) = (op.nonce.ns(), op.now.ns());
        let checked = map.check(&hotkey, key, n, op.timeout_s, now);
        if let Err(e) = checked {
            check_nonce_error(e);
        }
        if !op.commit {
            continue;
        }
        let committed = map.commit(&hotkey, key, n, op.timeout_s, now);
        assert_eq!(checked, committed, "check and commit disagree");
        if committed.is_ok() {
            assert!(accepted.insert((key, n)), "nonce {n} accepted twice");
        }
        assert!(map.len() <= capacity);
        assert!(map.hotkeys() <= 2 * capacity + 1);
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

fn leaf_decoders(l: &Loose<'_>, curve: bool) {
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
    if let (true, Some((pk, s, msg))) = (curve, &l.raw_verify) {
        let _ = sig::verify(pk, msg, s);
    }
}
