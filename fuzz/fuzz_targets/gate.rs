//! Fuzz target `gate`: the axon's request gate, on headers a client chose.
//!
//! Every input goes through `gate::pass`, the one function the server's
//! axon route calls for a request (`host/src/server.rs`, `authenticate`):
//! `gate::admit` under the nonce lock (headers, clock, allow-list and nonce
//! state in), a place in the per-source verification budget for the
//! source address the fuzzer chose, the server's batched sr25519 check
//! (`Auth::verify_batched` through a `KeyCache`), then `gate::settle` (nonce
//! commit, rate limit, stake-ranked in-flight cap). The shared state it runs
//! against is the fuzzer's choice too: permits already held in the budget by
//! several sources, its total and per-source limits, requests already in
//! flight and the cap, a rate-limit bucket already partly spent. Headers are
//! given as plain name/value pairs through the gate's `Headers` trait, so
//! any bytes can reach it. The input is structured (`arbitrary`): a list of
//! header edits applied either to nothing or to the real request of AXON.md
//! §9, so the fuzzer spends its time past the ss58 checksum instead of
//! rediscovering a valid address. A signing mode replaces the hotkey and
//! signature with ones the harness makes over the parsed fields (a fixed
//! test key, deterministic nonce), which proves that anything the gate
//! admits and an honest dendrite signed does verify and settle (or is
//! refused only for a documented reason), that one flipped bit never
//! verifies, and that the same request again is a replay. A second part
//! runs sequences of nonce commits over several hotkeys and uuids with a
//! small capacity and checks the documented guarantee: no nonce is ever
//! accepted twice for one `hotkey:uuid`, whatever was evicted. A third feeds
//! raw strings to the leaf decoders (ss58, signature hex, float header,
//! validators file).
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use cm_host::gate::{self, Auth};
use cm_host::limits::{InFlight, RateLimiter, VerifyBudget};
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
/// Addresses `Source::Known` picks from, so that the request's source and
/// the holders of the budget's permits often coincide.
const KNOWN_SOURCES: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];
/// Most permits held in the verification budget before the request.
const MAX_HELD: usize = 64;
/// Rate of the rate limiter when the input enables it: slow enough that no
/// token refills during one input, so a bucket's level is what was spent.
const RATE_PER_S: f64 = 1e-6;

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

/// A source address.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Source {
    Known(u8),
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Source {
    fn ip(self) -> IpAddr {
        match self {
            Source::Known(i) => KNOWN_SOURCES[usize::from(i) % KNOWN_SOURCES.len()],
            Source::V4(b) => IpAddr::from(b),
            Source::V6(b) => IpAddr::from(b),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    from_real_request: bool,
    edits: Vec<Edit<'a>>,
    signing: Signing,
    /// Clock at the gate relative to the request's nonce, in NEAR_STEP_NS.
    clock_offset: i32,
    /// The request's source address.
    source: Source,
    /// Permits already held in the verification budget, one per entry.
    held: Vec<Source>,
    /// The budget's limits, all sources together and per source (0 = none).
    verify_total: u8,
    verify_per_source: u8,
    /// The in-flight cap (0 = none) and verified requests already in flight.
    max_inflight: u8,
    inflight: u8,
    /// The rate limit: bucket size, and tokens the caller already spent.
    rate: Option<(u8, u8)>,
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
    leaf_decoders(&input.loose);
});

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

/// What `gate::pass` reported along the way, with the checks that need the
/// admitted request made as it is reported.
#[derive(Default)]
struct Seen {
    /// The clock the request was given.
    now: u64,
    /// `admit` passed: the caller's rank and hotkey.
    admitted: RefCell<Option<(f64, [u8; 32])>>,
    checked: Cell<bool>,
    proven: Cell<bool>,
}

impl gate::Observer for Seen {
    fn admitted(&self, a: &gate::Admitted<'_>) {
        assert!(self.admitted.borrow().is_none(), "admitted twice");
        assert!(!self.checked.get() && !self.proven.get(), "out of order");
        assert_eq!(a.now_ns, self.now);
        assert_eq!(a.key, nonce::endpoint_key(&a.auth.hotkey, a.auth.uuid));
        assert!(a.auth.body_hash.eq_ignore_ascii_case(gate::EMPTY_BODY_HASH));
        check_auth(&a.auth);
        *self.admitted.borrow_mut() = Some((a.rank, a.auth.hotkey));
    }
    fn checked(&self, _took: std::time::Duration) {
        assert!(self.admitted.borrow().is_some() && !self.checked.get());
        self.checked.set(true);
    }
    fn proven(&self) {
        assert!(self.checked.get() && !self.proven.get());
        self.proven.set(true);
    }
}

/// A budget message of `gate::verify_permit`'s.
const BUDGET_SOURCE: &str =
    "too many requests from this address are waiting for signature verification";
const BUDGET_TOTAL: &str = "too many requests are waiting for signature verification";

/// The server's gate, `gate::pass`, on one request against state the input
/// chose, then the same request again.
fn gate_steps(headers: &mut Pairs, input: &Input<'_>) {
    // The clock is set relative to the request's own nonce, so that small
    // offsets land inside the window.
    let pairs = view(headers);
    let first = gate::parse_auth(pairs.as_slice());
    let (nonce_v, uuid, body_hash, mut hotkey) = match &first {
        Ok(a) => {
            check_auth(a);
            (a.nonce, a.uuid.to_owned(), a.body_hash.to_owned(), a.hotkey)
        }
        Err(rej) => {
            check_reject_shape(rej);
            (0, String::new(), String::new(), [0; 32])
        }
    };
    let parsed = first.is_ok();
    drop(first);
    drop(pairs);

    // Put the harness's own signature in, over the fields as parsed.
    let mut expect_valid = None;
    if let (true, Signing::Ours { flip, upper }) = (parsed, &input.signing) {
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
        hotkey = kp.public.to_bytes();
        expect_valid = Some(flip.is_none());
    }

    // The server's shared state, as the input chose it.
    let now = nonce_v.saturating_add_signed(i64::from(input.clock_offset) * NEAR_STEP_NS);
    let capacity = usize::from(input.nonce_capacity % MAX_CAPACITY) + 1;
    let nonces = Mutex::new(
        NonceMap::new(capacity, nonce::DEFAULT_FUTURE_SKEW_NS)
            .per_hotkey(usize::from(input.per_hotkey)),
    );
    let budget = VerifyBudget::new(
        usize::from(input.verify_total),
        usize::from(input.verify_per_source),
    );
    let source = input.source.ip();
    // Permits other requests hold (one may be refused: two sources can share
    // a counter, and the total may be reached).
    let mut held = Vec::new();
    let mut held_here = 0usize;
    for s in input.held.iter().take(MAX_HELD) {
        if let Ok(p) = budget.enter(s.ip()) {
            held.push(p);
            held_here += usize::from(s.ip() == source);
        }
    }
    let held_total = held.len();
    assert_eq!(budget.current(), held_total);
    let inflight = InFlight::default();
    let others: Vec<_> = (0..input.inflight).map(|_| inflight.enter()).collect();
    let rate = match input.rate {
        Some((burst, _)) => RateLimiter::with_capacity(RATE_PER_S, f64::from(burst), 1),
        None => RateLimiter::new(0.0, 0.0),
    };
    // The bucket of the hotkey the request carries, partly spent.
    // A bucket holds `burst` tokens (at least one) and nothing refills
    // meanwhile, so a token is left exactly when fewer were spent.
    let spent_now = std::time::Instant::now();
    let mut rate_left = true;
    if let Some((burst, spent)) = input.rate {
        for i in 0..spent {
            assert_eq!(rate.allow(&hotkey, spent_now), i < burst.max(1));
        }
        rate_left = spent < burst.max(1);
    }
    let rank_of = |_: &[u8; 32]| input.listed.then_some(input.rank);
    // A fresh key cache, so every run of an input is the same.
    let keys = KeyCache::default();
    let shared = gate::Shared {
        own_hotkey_ss58: BOB,
        max_body: usize::from(input.max_body),
        rank: &rank_of,
        nonces: &nonces,
        verify: &budget,
        keys: &keys,
        rate: &rate,
        inflight: &inflight,
        max_inflight: usize::from(input.max_inflight),
    };
    let seen = Seen {
        now,
        ..Seen::default()
    };

    // The server's gate, driven to its end on a current-thread runtime, as a
    // request alone in the verification queue is.
    let pairs = view(headers);
    let passed = runtime().block_on(gate::pass(&shared, pairs.as_slice(), source, now, &seen));
    assert_eq!(budget.current(), held_total, "a verification permit leaked");
    if let Err(rej) = &passed {
        check_reject_shape(rej);
    }
    let admitted = *seen.admitted.borrow();
    let Some((rank, admitted_key)) = admitted else {
        // Refused by `admit`.
        let rej = passed.as_ref().err().expect("neither admitted nor refused");
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
        assert!(gate::lock_nonces(&nonces).is_empty());
        return;
    };
    assert!(input.listed, "an unlisted caller was admitted");
    assert_eq!(admitted_key, hotkey);

    // The verification budget: full for this source or in total exactly
    // when the permits held say so.
    let per_source = usize::from(input.verify_per_source);
    let total = usize::from(input.verify_total);
    let must_wait =
        (per_source != 0 && held_here >= per_source) || (total != 0 && held_total >= total);
    if !seen.checked.get() {
        let rej = passed
            .as_ref()
            .err()
            .expect("admitted, unchecked, yet passed");
        assert_eq!(rej.reason, Reason::Overloaded, "{}", rej.message());
        match rej.detail.as_str() {
            BUDGET_SOURCE => assert!(per_source != 0 && held_total >= per_source),
            BUDGET_TOTAL => assert!(total != 0 && held_total >= total),
            other => panic!("refused between admit and the check: {other}"),
        }
        assert!(gate::lock_nonces(&nonces).is_empty());
        return;
    }
    assert!(!must_wait, "the budget let in a request over its share");

    // The signature check, and settle.
    if !seen.proven.get() {
        let rej = passed
            .as_ref()
            .err()
            .expect("checked, unproven, yet passed");
        assert!(
            matches!(
                rej.reason,
                Reason::SignatureMismatch | Reason::SignatureMalformed
            ),
            "{}",
            rej.message()
        );
        assert_ne!(
            expect_valid,
            Some(true),
            "honest signature refused: {}",
            rej.message()
        );
        assert!(gate::lock_nonces(&nonces).is_empty());
        return;
    }
    assert_ne!(expect_valid, Some(false), "flipped signature accepted");
    let load_ok = limits::admit(usize::from(input.max_inflight), others.len() + 1, rank);
    match &passed {
        Ok(_) => {
            assert!(rate_left && load_ok);
            assert_eq!(inflight.current(), others.len() + 1);
        }
        Err(rej) if rej.reason == Reason::RateLimited => assert!(!rate_left),
        Err(rej) => {
            assert_eq!(rej.reason, Reason::Overloaded, "{}", rej.message());
            assert!(rate_left && !load_ok);
        }
    }
    drop(passed);
    assert_eq!(inflight.current(), others.len());
    // Committed either way: the same request again is a replay, refused by
    // `admit` before any signature work.
    assert_eq!(gate::lock_nonces(&nonces).len(), 1);
    let again = Seen {
        now,
        ..Seen::default()
    };
    let replay = runtime().block_on(gate::pass(&shared, pairs.as_slice(), source, now, &again));
    assert_eq!(replay.err().map(|r| r.reason), Some(Reason::NonceReplay));
    assert!(again.admitted.borrow().is_none());
    drop(held);
    assert_eq!(budget.current(), 0);
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
