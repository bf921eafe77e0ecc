//! `btauth/1`: bittensor 11's hotkey-signed HTTP, served beside the axon protocol.
//!
//! bittensor 11 dropped the axon/dendrite stack; a validator on 11.x signs a
//! plain HTTP request with `bittensor.http_auth.sign` instead. The signed
//! payload (built by [`payload`], the one definition both our verifier and our
//! client half in [`sign`] use) is the newline-joined lines `btauth/1`, the
//! scheme, the upper-case method, the request target as sent, the lower-case
//! hex SHA-256 of the raw body, the decimal nanosecond nonce, the sender's and
//! the receiver's ss58. So unlike the axon protocol, whose signature leaves the
//! body out, a btauth/1 signature makes the body tamper-evident, and it binds
//! the request to one receiver (us) and one instant.
//!
//! The price is order: the signature can only be checked once the body is in
//! hand. The module is therefore split into pure steps the server runs
//! cheapest first: [`parse`] (header shape, no state), [`Request::check_receiver`]
//! and [`Request::check_fresh`] (a string compare and a clock read), a replay
//! lookup in [`replay::ReplayStore`], and only then, after the server has read
//! the body under its usual cap and timeout, [`Request::verify`] (SHA-256 plus
//! one sr25519 or ed25519 check). The replay store is written only after the
//! signature verified, so forged requests cannot fill it or lock a real
//! validator's nonces. Every step returns a small [`BtauthError`] whose
//! [`BtauthError::reason`] gives the status and metric label the server
//! answers with, so this file does not depend on how the gate is organised.

pub mod replay;
pub mod sign;

use crate::reason::Reason;
use crate::ss58::{self, Ss58Error};
use core::fmt;
use hyper::header::HeaderMap;
use sha2::{Digest, Sha256};

/// The protocol line that opens every signed payload.
pub const PROTOCOL: &str = "btauth/1";
/// The only `X-Bittensor-Version` value this protocol defines.
pub const VERSION: &str = "1";
/// Header names, lower case as hyper stores them.
pub const H_VERSION: &str = "x-bittensor-version";
pub const H_HOTKEY: &str = "x-bittensor-hotkey";
pub const H_RECEIVER: &str = "x-bittensor-receiver";
pub const H_NONCE: &str = "x-bittensor-nonce";
pub const H_CRYPTO: &str = "x-bittensor-crypto";
pub const H_SIGNATURE: &str = "x-bittensor-signature";
/// Every btauth/1 header: one of them present makes a request btauth/1.
pub const HEADERS: [&str; 6] = [
    H_VERSION,
    H_HOTKEY,
    H_RECEIVER,
    H_NONCE,
    H_CRYPTO,
    H_SIGNATURE,
];
/// The axon protocol's authentication headers (AXON.md §2): one of them
/// present as well makes the request ambiguous, and it is refused.
pub const AXON_AUTH_HEADERS: [&str; 4] = [
    crate::gate::H_HOTKEY,
    crate::gate::H_SIGNATURE,
    crate::gate::H_NONCE,
    crate::gate::H_UUID,
];
/// bittensor's defaults (`http_auth.DEFAULT_MAX_AGE`, `DEFAULT_ALLOWED_SKEW`), in seconds.
pub const DEFAULT_MAX_AGE_S: f64 = 10.0;
pub const DEFAULT_MAX_SKEW_S: f64 = 2.0;
/// Both schemes sign with 64 bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Digits of the largest u64 nonce.
const MAX_NONCE_DIGITS: usize = 20;
/// Longest `X-Bittensor-Crypto` value worth reading (`sr25519`, `ed25519`, `0`, `1`).
const MAX_CRYPTO_LEN: usize = 16;
/// sp-core's sr25519 signing context, which bittensor's keys sign under (AXON.md §11).
pub const SR25519_CONTEXT: &[u8] = b"substrate";
/// bittensor's crypto type codes (`bittensor.wallets.CRYPTO_TYPE_NAMES`).
const CRYPTO_CODE_ED25519: &str = "0";
const CRYPTO_CODE_SR25519: &str = "1";
const NS_PER_S: f64 = 1e9;

/// The signature scheme a request declares (absent header: sr25519).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sr25519,
    Ed25519,
}

impl Scheme {
    /// The canonical name, as it goes into the payload and the header.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sr25519 => "sr25519",
            Scheme::Ed25519 => "ed25519",
        }
    }

    /// Reads `X-Bittensor-Crypto` as bittensor does: a name in any case, or the numeric code.
    pub fn parse(s: &str) -> Option<Scheme> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sr25519") || s == CRYPTO_CODE_SR25519 {
            Some(Scheme::Sr25519)
        } else if s.eq_ignore_ascii_case("ed25519") || s == CRYPTO_CODE_ED25519 {
            Some(Scheme::Ed25519)
        } else {
            None
        }
    }
}

/// Which authentication a request carries, for routing, metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// No authentication header at all (health checks, scanners).
    None,
    /// The axon protocol's `bt_header_dendrite_*` headers only.
    Axon,
    /// `X-Bittensor-*` headers only.
    Btauth,
    /// Both sets: refused, since the two could name different callers.
    Mixed,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::None,
        Protocol::Axon,
        Protocol::Btauth,
        Protocol::Mixed,
    ];

    /// Index into per-protocol arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::None => "none",
            Protocol::Axon => "axon",
            Protocol::Btauth => "btauth",
            Protocol::Mixed => "mixed",
        }
    }

    /// Looks only at which header names are present.
    pub fn of(h: &HeaderMap) -> Protocol {
        let bt = HEADERS.iter().any(|n| h.contains_key(*n));
        let axon = AXON_AUTH_HEADERS.iter().any(|n| h.contains_key(*n));
        match (axon, bt) {
            (false, false) => Protocol::None,
            (true, false) => Protocol::Axon,
            (false, true) => Protocol::Btauth,
            (true, true) => Protocol::Mixed,
        }
    }
}

/// Why a btauth/1 request was refused. Messages never echo the signature.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum BtauthError {
    /// A required header is absent.
    Missing(&'static str),
    /// A header appears more than once.
    Repeated(&'static str),
    /// A header is not visible ASCII, or does not parse.
    Malformed(&'static str),
    /// `X-Bittensor-Version` is not `1`.
    UnsupportedVersion,
    /// `X-Bittensor-Crypto` names no scheme we know.
    UnsupportedScheme,
    /// `X-Bittensor-Hotkey` is not an ss58 address.
    BadHotkey(Ss58Error),
    /// The signature is not 64 bytes of hex.
    SignatureEncoding,
    /// No `X-Bittensor-Receiver`: we only serve requests bound to us.
    NoReceiver,
    /// Signed for another hotkey.
    WrongReceiver,
    /// The nonce is older than the window.
    Stale { age_s: f64, max_age_s: f64 },
    /// The nonce is further ahead of our clock than the skew allows.
    Future { ahead_s: f64, max_skew_s: f64 },
    /// This (hotkey, nonce) was already accepted.
    Replayed,
    /// The replay store is full of nonces still inside the window.
    ReplayStoreFull,
    /// The key bytes are not a valid public key of the scheme.
    BadPublicKey,
    /// The signature bytes are not a valid signature of the scheme.
    SignatureMalformed,
    /// Well-formed, but it does not verify over the payload.
    Mismatch,
}

impl BtauthError {
    /// Status and metric label, shared with the axon protocol's refusals.
    pub fn reason(&self) -> Reason {
        match self {
            BtauthError::Missing(_) => Reason::MissingAuth,
            BtauthError::Repeated(_)
            | BtauthError::Malformed(_)
            | BtauthError::UnsupportedVersion
            | BtauthError::UnsupportedScheme => Reason::BadHeader,
            BtauthError::BadHotkey(_) => Reason::BadHotkey,
            BtauthError::SignatureEncoding
            | BtauthError::BadPublicKey
            | BtauthError::SignatureMalformed => Reason::SignatureMalformed,
            BtauthError::NoReceiver | BtauthError::WrongReceiver => Reason::WrongReceiver,
            BtauthError::Stale { .. } => Reason::NonceStale,
            BtauthError::Future { .. } => Reason::NonceFuture,
            BtauthError::Replayed => Reason::NonceReplay,
            BtauthError::ReplayStoreFull => Reason::Overloaded,
            BtauthError::Mismatch => Reason::SignatureMismatch,
        }
    }
}

impl fmt::Display for BtauthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BtauthError::Missing(h) => write!(f, "missing {h}"),
            BtauthError::Repeated(h) => write!(f, "{h} appears more than once"),
            BtauthError::Malformed(h) => write!(f, "{h} is malformed"),
            BtauthError::UnsupportedVersion => {
                write!(f, "unsupported {H_VERSION} (expected {VERSION:?})")
            }
            BtauthError::UnsupportedScheme => {
                write!(f, "unsupported {H_CRYPTO} (sr25519 or ed25519)")
            }
            BtauthError::BadHotkey(e) => write!(f, "{H_HOTKEY}: {e}"),
            BtauthError::SignatureEncoding => write!(
                f,
                "{H_SIGNATURE} is not 0x followed by {} hex characters",
                2 * SIGNATURE_LEN
            ),
            BtauthError::NoReceiver => write!(
                f,
                "missing {H_RECEIVER}: this miner serves only requests bound to its hotkey"
            ),
            BtauthError::WrongReceiver => {
                f.write_str("request was signed for a different receiving hotkey")
            }
            BtauthError::Stale { age_s, max_age_s } => write!(
                f,
                "nonce is {age_s:.2} s old, outside the {max_age_s:.2} s freshness window"
            ),
            BtauthError::Future { ahead_s, max_skew_s } => write!(
                f,
                "nonce is {ahead_s:.2} s in the future (at most {max_skew_s:.2} s allowed); check the caller's clock"
            ),
            BtauthError::Replayed => f.write_str("this nonce was already accepted from this hotkey"),
            BtauthError::ReplayStoreFull => f.write_str(
                "too many recent btauth/1 nonces to remember; retry in a few seconds",
            ),
            BtauthError::BadPublicKey => {
                f.write_str("hotkey is not a valid public key for the declared scheme")
            }
            BtauthError::SignatureMalformed => {
                f.write_str("signature bytes are not valid for the declared scheme")
            }
            BtauthError::Mismatch => {
                f.write_str("signature does not verify against the claimed hotkey")
            }
        }
    }
}

impl std::error::Error for BtauthError {}

/// The freshness window: how far back and ahead of our clock a nonce may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub max_age_ns: u64,
    pub max_skew_ns: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window::from_secs(DEFAULT_MAX_AGE_S, DEFAULT_MAX_SKEW_S)
    }
}

impl Window {
    /// From seconds (negative or non-finite values count as zero).
    pub fn from_secs(max_age_s: f64, max_skew_s: f64) -> Window {
        let ns = |s: f64| {
            if s.is_finite() && s > 0.0 {
                (s * NS_PER_S).min(u64::MAX as f64) as u64
            } else {
                0
            }
        };
        Window {
            max_age_ns: ns(max_age_s),
            max_skew_ns: ns(max_skew_s),
        }
    }

    /// True when a nonce this old is outside the window at `now_ns`: the
    /// freshness check and the replay store's expiry share this one rule,
    /// so a nonce leaves the store exactly when it could no longer pass.
    pub fn expired(&self, nonce: u64, now_ns: u64) -> bool {
        now_ns.saturating_sub(nonce) > self.max_age_ns
    }

    /// Checks a nonce against our clock (bittensor compares with `>`, so the edges pass).
    pub fn check(&self, nonce: u64, now_ns: u64) -> Result<(), BtauthError> {
        if self.expired(nonce, now_ns) {
            return Err(BtauthError::Stale {
                age_s: (now_ns - nonce) as f64 / NS_PER_S,
                max_age_s: self.max_age_ns as f64 / NS_PER_S,
            });
        }
        let ahead = nonce.saturating_sub(now_ns);
        if ahead > self.max_skew_ns {
            return Err(BtauthError::Future {
                ahead_s: ahead as f64 / NS_PER_S,
                max_skew_s: self.max_skew_ns as f64 / NS_PER_S,
            });
        }
        Ok(())
    }
}

/// The btauth/1 headers of one request, parsed and bounded.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub scheme: Scheme,
    pub hotkey_ss58: &'a str,
    pub hotkey: [u8; ss58::PUBKEY_LEN],
    /// `X-Bittensor-Receiver` as sent (checked by [`Request::check_receiver`]).
    pub receiver: Option<&'a str>,
    pub nonce: u64,
    pub signature: [u8; SIGNATURE_LEN],
}

/// One header as trimmed ASCII; `None` when absent, an error when repeated or not text.
fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, BtauthError> {
    let mut all = h.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(BtauthError::Repeated(name));
    }
    v.to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| BtauthError::Malformed(name))
}

fn required<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, BtauthError> {
    match header(h, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(BtauthError::Missing(name)),
    }
}

/// Decimal digits only (no sign, no `_`), at most a u64.
fn parse_nonce(s: &str) -> Result<u64, BtauthError> {
    if s.is_empty() || s.len() > MAX_NONCE_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BtauthError::Malformed(H_NONCE));
    }
    s.parse().map_err(|_| BtauthError::Malformed(H_NONCE))
}

/// `0x` + 128 hex characters; bittensor also accepts the bare hex, so do we.
pub fn parse_signature(s: &str) -> Result<[u8; SIGNATURE_LEN], BtauthError> {
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    if hex_part.len() != 2 * SIGNATURE_LEN {
        return Err(BtauthError::SignatureEncoding);
    }
    let mut out = [0u8; SIGNATURE_LEN];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| BtauthError::SignatureEncoding)?;
    Ok(out)
}

/// Reads the btauth/1 headers, without touching any state or the body.
pub fn parse(h: &HeaderMap) -> Result<Request<'_>, BtauthError> {
    match header(h, H_VERSION)? {
        None | Some("") => return Err(BtauthError::Missing(H_VERSION)),
        Some(VERSION) => {}
        Some(_) => return Err(BtauthError::UnsupportedVersion),
    }
    let hotkey_ss58 = required(h, H_HOTKEY)?;
    let hotkey = ss58::decode_key(hotkey_ss58).map_err(BtauthError::BadHotkey)?;
    let nonce = parse_nonce(required(h, H_NONCE)?)?;
    let scheme = match header(h, H_CRYPTO)? {
        None => Scheme::Sr25519,
        Some(s) if s.len() > MAX_CRYPTO_LEN => return Err(BtauthError::UnsupportedScheme),
        Some(s) => Scheme::parse(s).ok_or(BtauthError::UnsupportedScheme)?,
    };
    let signature = parse_signature(required(h, H_SIGNATURE)?)?;
    let receiver = header(h, H_RECEIVER)?;
    Ok(Request {
        scheme,
        hotkey_ss58,
        hotkey,
        receiver,
        nonce,
        signature,
    })
}

/// Lower-case hex SHA-256 of the raw body.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The exact bytes a btauth/1 signature covers (`http_auth.build_payload`).
/// `receiver` of `None` writes `-`, the unbound form, which we sign for
/// others but never accept ourselves.
pub fn payload(
    scheme: Scheme,
    method: &str,
    target: &str,
    body: &[u8],
    nonce: u64,
    sender_ss58: &str,
    receiver_ss58: Option<&str>,
) -> Vec<u8> {
    let hash = body_sha256_hex(body);
    let nonce = nonce.to_string();
    let method = method.to_ascii_uppercase();
    let lines = [
        PROTOCOL,
        scheme.name(),
        &method,
        target,
        &hash,
        &nonce,
        sender_ss58,
        receiver_ss58.unwrap_or("-"),
    ];
    lines.join("\n").into_bytes()
}

/// Checks one signature over `msg` under `scheme`.
pub fn verify_signature(
    scheme: Scheme,
    key: &[u8; ss58::PUBKEY_LEN],
    msg: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<(), BtauthError> {
    match scheme {
        Scheme::Sr25519 => {
            let pk =
                schnorrkel::PublicKey::from_bytes(key).map_err(|_| BtauthError::BadPublicKey)?;
            let s = schnorrkel::Signature::from_bytes(sig)
                .map_err(|_| BtauthError::SignatureMalformed)?;
            pk.verify_simple(SR25519_CONTEXT, msg, &s)
                .map_err(|_| BtauthError::Mismatch)
        }
        Scheme::Ed25519 => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
                .map_err(|_| BtauthError::BadPublicKey)?;
            let s = ed25519_dalek::Signature::from_bytes(sig);
            // Strict: refuses small-order keys and non-canonical encodings,
            // which no honest signer produces.
            vk.verify_strict(msg, &s).map_err(|_| BtauthError::Mismatch)
        }
    }
}

impl Request<'_> {
    /// The request must be bound to us: a missing receiver is refused too.
    pub fn check_receiver(&self, own_ss58: &str) -> Result<(), BtauthError> {
        match self.receiver {
            None | Some("") => Err(BtauthError::NoReceiver),
            Some(r) if r == own_ss58 => Ok(()),
            Some(_) => Err(BtauthError::WrongReceiver),
        }
    }

    /// The nonce against our clock.
    pub fn check_fresh(&self, window: &Window, now_ns: u64) -> Result<(), BtauthError> {
        window.check(self.nonce, now_ns)
    }

    /// The signature over the payload rebuilt from what we received: the
    /// method and request target as the request line gave them, and the raw
    /// body bytes.
    pub fn verify(&self, method: &str, target: &str, body: &[u8]) -> Result<(), BtauthError> {
        let msg = payload(
            self.scheme,
            method,
            target,
            body,
            self.nonce,
            self.hotkey_ss58,
            self.receiver,
        );
        verify_signature(self.scheme, &self.hotkey, &msg, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn payload_lines_in_order() {
        let p = payload(
            Scheme::Sr25519,
            "post",
            "/ConversionSynapse?x=1",
            b"",
            42,
            ALICE,
            Some(BOB),
        );
        let want = format!(
            "btauth/1\nsr25519\nPOST\n/ConversionSynapse?x=1\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n42\n{ALICE}\n{BOB}"
        );
        assert_eq!(String::from_utf8(p).unwrap(), want);
        let unbound = payload(Scheme::Ed25519, "GET", "/", b"x", 1, ALICE, None);
        assert!(String::from_utf8(unbound)
            .unwrap()
            .ends_with(&format!("\n{ALICE}\n-")));
    }

    #[test]
    fn protocol_is_read_from_header_names() {
        assert_eq!(Protocol::of(&headers(&[])), Protocol::None);
        assert_eq!(
            Protocol::of(&headers(&[(crate::gate::H_HOTKEY, ALICE)])),
            Protocol::Axon
        );
        assert_eq!(
            Protocol::of(&headers(&[("X-Bittensor-Receiver", BOB)])),
            Protocol::Btauth
        );
        assert_eq!(
            Protocol::of(&headers(&[
                ("X-Bittensor-Version", "1"),
                (crate::gate::H_SIGNATURE, "0x00")
            ])),
            Protocol::Mixed
        );
        // computed_body_hash alone does not make a request an axon one.
        assert_eq!(
            Protocol::of(&headers(&[
                (crate::gate::H_BODY_HASH, "x"),
                ("X-Bittensor-Version", "1")
            ])),
            Protocol::Btauth
        );
    }

    fn good() -> Vec<(&'static str, String)> {
        vec![
            ("X-Bittensor-Version", "1".into()),
            ("X-Bittensor-Hotkey", ALICE.into()),
            ("X-Bittensor-Receiver", BOB.into()),
            ("X-Bittensor-Nonce", "1700000000000000000".into()),
            ("X-Bittensor-Signature", format!("0x{}", "ab".repeat(64))),
        ]
    }

    fn parse_with(
        edit: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> Result<Scheme, BtauthError> {
        let mut v = good();
        edit(&mut v);
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let h = headers(&pairs);
        parse(&h).map(|r| r.scheme)
    }

    fn set(v: &mut [(&'static str, String)], name: &str, value: &str) {
        for p in v.iter_mut() {
            if p.0.eq_ignore_ascii_case(name) {
                p.1 = value.into();
            }
        }
    }

    #[test]
    fn header_shape() {
        assert_eq!(parse_with(|_| {}), Ok(Scheme::Sr25519));
        let h = good();
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let hm = headers(&pairs);
        let r = parse(&hm).unwrap();
        assert_eq!(r.nonce, 1_700_000_000_000_000_000);
        assert_eq!(r.receiver, Some(BOB));
        assert_eq!(r.signature, [0xab; 64]);

        let e = |edit: fn(&mut Vec<(&'static str, String)>)| parse_with(edit).unwrap_err();
        assert_eq!(
            e(|v| v.retain(|p| p.0 != "X-Bittensor-Version")),
            BtauthError::Missing(H_VERSION)
        );
        assert_eq!(
            e(|v| set(v, "x-bittensor-version", "2")),
            BtauthError::UnsupportedVersion
        );
        assert_eq!(
            e(|v| v.retain(|p| p.0 != "X-Bittensor-Hotkey")),
            BtauthError::Missing(H_HOTKEY)
        );
        assert!(matches!(
            e(|v| set(v, H_HOTKEY, "5Grw")),
            BtauthError::BadHotkey(_)
        ));
        for bad in [
            "-1",
            "+5",
            "1_000",
            "1.5",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            let r = parse_with(|v| set(v, H_NONCE, bad));
            assert_eq!(r, Err(BtauthError::Malformed(H_NONCE)), "{bad}");
        }
        assert_eq!(
            e(|v| set(v, H_SIGNATURE, "0x1234")),
            BtauthError::SignatureEncoding
        );
        assert_eq!(
            e(|v| set(v, H_SIGNATURE, &"zz".repeat(64))),
            BtauthError::SignatureEncoding
        );
        assert_eq!(
            e(|v| v.push(("X-Bittensor-Crypto", "ecdsa".into()))),
            BtauthError::UnsupportedScheme
        );
        assert_eq!(
            e(|v| v.push(("X-Bittensor-Nonce", "5".into()))),
            BtauthError::Repeated(H_NONCE)
        );
        // Bare hex, the numeric codes and any case are accepted, as bittensor does.
        assert_eq!(
            parse_with(|v| set(v, H_SIGNATURE, &"ab".repeat(64))),
            Ok(Scheme::Sr25519)
        );
        assert_eq!(
            parse_with(|v| v.push(("X-Bittensor-Crypto", "ED25519".into()))),
            Ok(Scheme::Ed25519)
        );
        assert_eq!(
            parse_with(|v| v.push(("X-Bittensor-Crypto", "0".into()))),
            Ok(Scheme::Ed25519)
        );
        assert_eq!(
            parse_with(|v| v.push(("X-Bittensor-Crypto", "1".into()))),
            Ok(Scheme::Sr25519)
        );
        // A missing receiver parses; the receiver check refuses it.
        let v: Vec<(&str, String)> = good()
            .into_iter()
            .filter(|p| p.0 != "X-Bittensor-Receiver")
            .collect();
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let hm = headers(&pairs);
        let r = parse(&hm).unwrap();
        assert_eq!(r.check_receiver(BOB), Err(BtauthError::NoReceiver));
    }

    #[test]
    fn every_error_has_a_refusal_status() {
        for e in [
            BtauthError::Missing(H_NONCE),
            BtauthError::WrongReceiver,
            BtauthError::NoReceiver,
            BtauthError::Stale {
                age_s: 60.0,
                max_age_s: 10.0,
            },
            BtauthError::Replayed,
            BtauthError::Mismatch,
            BtauthError::SignatureEncoding,
        ] {
            assert_eq!(e.reason().status(), 401, "{e}");
        }
        assert_eq!(BtauthError::UnsupportedVersion.reason().status(), 400);
        assert_eq!(BtauthError::ReplayStoreFull.reason().status(), 503);
    }

    #[test]
    fn window_edges() {
        let w = Window::from_secs(10.0, 2.0);
        let now = 1_000_000_000_000u64;
        assert!(w.check(now - 10_000_000_000, now).is_ok());
        assert!(matches!(
            w.check(now - 10_000_000_001, now),
            Err(BtauthError::Stale { .. })
        ));
        assert!(w.check(now + 2_000_000_000, now).is_ok());
        assert!(matches!(
            w.check(now + 2_000_000_001, now),
            Err(BtauthError::Future { .. })
        ));
        assert!(matches!(
            w.check(now - 60_000_000_000, now),
            Err(BtauthError::Stale { .. })
        ));
        assert!(matches!(w.check(0, now), Err(BtauthError::Stale { .. })));
        assert!(matches!(
            w.check(u64::MAX, now),
            Err(BtauthError::Future { .. })
        ));
        assert_eq!(
            Window::from_secs(f64::NAN, -1.0),
            Window {
                max_age_ns: 0,
                max_skew_ns: 0
            }
        );
    }

    #[test]
    fn receiver_binding() {
        let r = Request {
            scheme: Scheme::Sr25519,
            hotkey_ss58: ALICE,
            hotkey: ss58::decode_key(ALICE).unwrap(),
            receiver: Some(BOB),
            nonce: 1,
            signature: [0; 64],
        };
        assert_eq!(r.check_receiver(BOB), Ok(()));
        assert_eq!(r.check_receiver(ALICE), Err(BtauthError::WrongReceiver));
    }

    /// Signed by bittensor 11.3.0's `http_auth.sign` (sr25519 key `//Alice`;
    /// ed25519 key from the seed [`PY_ED_SEED`]; receiver `//Bob`, the body
    /// below, a fixed nonce),
    /// the second of each with a target long enough to push the payload past
    /// 256 bytes, where some Substrate signers switch to signing a hash.
    const PY_BODY: &[u8] = br#"{"features":{"session_id":"abc"}}"#;
    const PY_NONCE: &str = "1765000000000000000";
    const PY_ED_SEED: [u8; 32] = [7; 32];
    const PY_ED: &str = "5HMuAqymF33H73ZiBpmZ3TigFzHCopV9doyb9UfQdyDgZMUp";
    const PY_VECTORS: [(&str, &str, bool, &str); 4] = [
        (ALICE, "", false, "0xe27569f8b00a8cf1b57b4b80f6a2fce521eee138871717d68c049f0c079832400023ec55d15bc953ccfa04da0542082c2212e36c5a17e2a34a1b2f4fc476118e"),
        (ALICE, "", true, "0xd427d8538e599d5f85edbbed493c9c4b7c79ce1a32429d24bc76783f75c8f06d371bfdd16804982a2897059da5a587f91a756061cc4b9fe096bfa7e40ef48e81"),
        (PY_ED, "ed25519", false, "0xdd8462d3a96ab5cff17bd34374781a62b17e16fbb7c6e25da5d9cb92cf17769f92571555cb6738f3a30e00ede3b8cf42a938ff894f315cab2d27cf9a22322307"),
        (PY_ED, "ed25519", true, "0xf43c6d6f266644d9d26da3026668031a0b9aed40b47781d5b12346e5653881ac52a7e7adfb14cbdce2f19192cbd3a096f9f3a74a5d992dd14aa3e62f0a442703"),
    ];

    #[test]
    fn bittensor_11_3_signatures_verify() {
        for (sender, crypto, long, sig) in PY_VECTORS {
            let target = if long {
                format!("/ConversionSynapse?q={}", "x".repeat(300))
            } else {
                "/ConversionSynapse".to_string()
            };
            let mut pairs = vec![
                ("X-Bittensor-Version", "1"),
                ("X-Bittensor-Hotkey", sender),
                ("X-Bittensor-Nonce", PY_NONCE),
                ("X-Bittensor-Signature", sig),
                ("X-Bittensor-Receiver", BOB),
            ];
            if !crypto.is_empty() {
                pairs.push(("X-Bittensor-Crypto", crypto));
            }
            let h = headers(&pairs);
            let r = parse(&h).unwrap();
            assert!(
                r.verify("POST", &target, PY_BODY).is_ok(),
                "{sender} {crypto} long={long}"
            );
            assert_eq!(r.verify("POST", &target, b"{}"), Err(BtauthError::Mismatch));
            if crypto == "ed25519" {
                // ed25519 signing is deterministic: our signer gives the same bytes.
                let sk = ed25519_dalek::SigningKey::from_bytes(&PY_ED_SEED);
                let ours = sign::sign(
                    sign::Key::Ed25519(&sk),
                    &sign::Signing {
                        method: "POST",
                        target: &target,
                        body: PY_BODY,
                        receiver_ss58: Some(BOB),
                        nonce_ns: PY_NONCE.parse().unwrap(),
                    },
                );
                assert!(ours.contains(&("X-Bittensor-Hotkey", sender.to_string())));
                assert!(ours.contains(&("X-Bittensor-Signature", sig.to_string())));
            }
        }
    }
}
