//! Request forging: the probe's requests, laid out and signed byte for byte
//! as a bittensor 10.5.0 dendrite sends them.
//!
//! A [`Plan`] holds what stays fixed over a run (target, hotkeys, timeout,
//! the conversations with their `features` serialized once); each request
//! then only signs and splices. Bodies are written straight to bytes rather
//! than built as a tree, because the probe usually shares its machine with
//! the miner it measures; the tree form (`request_value`, tests only) is
//! the reference the byte writer is checked against. The forged variant
//! lives here too: it is the same request with a signature that parses but
//! does not verify.

use crate::args::ProbeProtocol;
use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use cm_core::schema::{FEATURE_NAMES, IS_INTEGER, N_FEATURES};
use cm_host::btauth::sign as btauth_sign;
use cm_host::gate::EMPTY_BODY_HASH;
use cm_host::sig::{self, Message};
use cm_host::wallet::Hotkey;
use cm_subnet::sample::Sample;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Map, Value};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version a bittensor 10.5.0 dendrite sends.
pub const DENDRITE_VERSION: u64 = 10_005_000;

/// base64 of `{}`: the input-object header of a dict field.
pub(crate) const INPUT_OBJ_DICT: &str = "e30=";
/// The dendrite IP we claim (a documentation address; it is free text to the axon).
pub(crate) const DENDRITE_IP: &str = "127.0.0.1";

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A version-1-looking uuid string from random bits (the axon treats it as text).
pub(crate) fn new_uuid() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-11f1-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[16..20],
        &h[20..32]
    )
}

fn getrandom_fill(b: &mut [u8]) {
    if getrandom::getrandom(b).is_err() {
        // No OS randomness: fall back to the clock, which is unique enough
        // for a uuid that only has to differ between slots of one run.
        let t = now_ns().to_le_bytes();
        for (i, d) in b.iter_mut().enumerate() {
            *d = t[i % t.len()] ^ (i as u8);
        }
    }
}

/// The `features` object of a conversation, as the validator sends it
/// (integers as JSON integers, floats as floats, plus a session id).
pub fn features_json(raw: &[f64; N_FEATURES], session_id: &str) -> Map<String, Value> {
    let mut m = Map::with_capacity(N_FEATURES + 1);
    m.insert("session_id".into(), Value::String(session_id.into()));
    for i in 0..N_FEATURES {
        let v = if IS_INTEGER[i] {
            Value::from(raw[i] as i64)
        } else {
            serde_json::Number::from_f64(raw[i])
                .map(Value::Number)
                .unwrap_or(Value::Null)
        };
        m.insert(FEATURE_NAMES[i].into(), v);
    }
    m
}

#[cfg(test)]
fn terminal(pairs: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for k in cm_host::synapse::TERMINAL_KEYS {
        m.insert(k.into(), Value::Null);
    }
    for (k, v) in pairs {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m)
}

/// Everything that stays fixed across one probe run: where to send, the
/// miner's and our hotkeys, the `timeout` the requests carry, and the
/// conversations with their `features` objects (kept as values to check
/// the echo and as bytes to splice into request bodies). Public, with
/// [`build_request`] and [`check_answer`], so that the loopback bench sends
/// and checks exactly the probe's requests instead of keeping a copy.
pub struct Plan {
    pub(crate) target: SocketAddrV4,
    pub(crate) miner: String,
    pub(crate) signer: Hotkey,
    /// More signing hotkeys ([`Plan::with_signers`]): when not empty, each
    /// request is signed by the one its nonce picks, instead of `signer`.
    pub(crate) signers: Vec<Hotkey>,
    pub(crate) timeout: f64,
    pub(crate) rows: Vec<Sample>,
    /// Each conversation's `features` object, for checking the echo.
    pub(crate) features: Vec<Value>,
    /// The same objects serialized once, spliced into every request body.
    pub(crate) features_json: Vec<Vec<u8>>,
    /// How requests are signed ([`Plan::with_protocol`]; axon by default).
    pub(crate) protocol: ProbeProtocol,
    /// The last nonce handed out: nonces are unique across slots, since a
    /// btauth/1 miner refuses a second request of a hotkey with the same one.
    last_nonce: AtomicU64,
}

impl Plan {
    /// Serializes each row's `features` once; the session ids are
    /// `{session_prefix}-{row index}` (the probe passes `probe-{seed}`).
    pub fn new(
        target: SocketAddrV4,
        miner: String,
        signer: Hotkey,
        timeout: f64,
        rows: Vec<Sample>,
        session_prefix: &str,
    ) -> Result<Plan> {
        let features: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, s)| Value::Object(features_json(&s.raw, &format!("{session_prefix}-{i}"))))
            .collect();
        let features_json = features
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            target,
            miner,
            signer,
            signers: Vec::new(),
            timeout,
            rows,
            features,
            features_json,
            protocol: ProbeProtocol::Axon,
            last_nonce: AtomicU64::new(0),
        })
    }

    /// Signs with `protocol` instead of the axon protocol.
    pub fn with_protocol(mut self, protocol: ProbeProtocol) -> Plan {
        self.protocol = protocol;
        self
    }

    /// Signs each request with one of `signers` (picked by the request's
    /// nonce) instead of the one signer: one probe presents many callers.
    pub fn with_signers(mut self, signers: Vec<Hotkey>) -> Plan {
        self.signers = signers;
        self
    }

    /// The hotkey that signs the request carrying `nonce`: `signers[nonce %
    /// len]`; [`Plan::next_nonce`] steps that index by one per request, so the
    /// requests cycle through all `signers` in order.
    pub(crate) fn signer_for(&self, nonce: u64) -> &Hotkey {
        match self.signers.len() {
            0 => &self.signer,
            n => &self.signers[(nonce % n as u64) as usize],
        }
    }

    /// A nonce from the clock, above every nonce handed out before. With
    /// several signers it is raised (by less than their number, in ns) to
    /// the next value whose remainder picks the signer after the last one's.
    pub(crate) fn next_nonce(&self) -> u64 {
        let now = now_ns();
        let ways = self.signers.len().max(1) as u64;
        let mut last = self.last_nonce.load(Ordering::Relaxed);
        loop {
            let n = now.max(last + 1);
            let want = (last % ways + 1) % ways;
            let n = n + (want + ways - n % ways) % ways;
            match self.last_nonce.compare_exchange_weak(
                last,
                n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return n,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Prefix of the mini secrets behind [`derived_hotkeys`], so that they are
/// not the keys some other tool derives from small numbers.
const DERIVED_KEY_TAG: &[u8; 16] = b"cm-probe-hotkey\0";

/// `probe --hotkeys N`: N distinct hotkeys, the same for the same seed. Key i
/// expands the mini secret `DERIVED_KEY_TAG ‖ seed ‖ i` (little endian) as
/// Substrate expands a `secretSeed`. Throwaway keys for load runs only: anyone
/// who knows the seed can rebuild them.
pub fn derived_hotkeys(seed: u64, n: usize) -> Vec<Hotkey> {
    (0..n as u64)
        .map(|i| {
            let mut mini = [0u8; 32];
            mini[..16].copy_from_slice(DERIVED_KEY_TAG);
            mini[16..24].copy_from_slice(&seed.to_le_bytes());
            mini[24..].copy_from_slice(&i.to_le_bytes());
            // A 32-byte slice always makes a mini secret key.
            let kp = schnorrkel::MiniSecretKey::from_bytes(&mini)
                .map(|m| m.expand_to_keypair(schnorrkel::ExpansionMode::Ed25519))
                .unwrap_or_else(|_| schnorrkel::Keypair::generate());
            Hotkey::from_keypair(kp)
        })
        .collect()
}

/// The per-request values of one sent request, which [`check_answer`]
/// expects to find echoed in the answer.
pub struct Sent<'a> {
    /// Index of the conversation in the plan's rows.
    pub idx: usize,
    pub nonce: u64,
    /// The dendrite uuid the request was signed with.
    pub uuid: &'a str,
    /// The signature [`build_request`] returned (`0x` + hex).
    pub signature: &'a str,
}

/// The dendrite's signature over a request, as `0x` + hex.
fn sign(plan: &Plan, nonce: u64, uuid: &str) -> Result<String> {
    let signer = plan.signer_for(nonce);
    let kp = signer
        .keypair
        .as_ref()
        .ok_or_else(|| anyhow!("probe hotkey has no secret"))?;
    let msg = Message::new(nonce, &signer.ss58, &plan.miner, uuid, EMPTY_BODY_HASH)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(sig::sign_hex(kp, msg.as_bytes()))
}

/// The request body as a `Value`: the reference the byte writer below is
/// tested against, and what tests edit to make hostile bodies.
#[cfg(test)]
pub(crate) fn request_value(plan: &Plan, s: &Sent<'_>) -> Value {
    let port = plan.target.port();
    let ip = plan.target.ip().to_string();
    serde_json::json!({
        "name": "ConversionSynapse",
        "timeout": plan.timeout,
        "total_size": 0,
        "header_size": 0,
        "dendrite": terminal(&[
            ("ip", Value::from(DENDRITE_IP)),
            ("version", Value::from(DENDRITE_VERSION)),
            ("nonce", Value::from(s.nonce)),
            ("uuid", Value::from(s.uuid)),
            ("hotkey", Value::from(plan.signer_for(s.nonce).ss58.as_str())),
            ("signature", Value::from(s.signature)),
        ]),
        "axon": terminal(&[("ip", Value::from(ip.as_str())), ("port", Value::from(port)), ("hotkey", Value::from(plan.miner.as_str()))]),
        "computed_body_hash": "",
        "features": plan.features[s.idx].clone(),
        "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
        "confidence": null,
        "response_time": 0.0,
        "miner_uid": 0,
    })
}

/// Writes `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    Ok(())
}

/// The request body written straight to bytes: the same document as
/// [`request_value`], without building a tree per request (the probe
/// shares the machine with the miner it measures).
fn request_body(plan: &Plan, s: &Sent<'_>) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let feats = &plan.features_json[s.idx];
    let mut b = Vec::with_capacity(feats.len() + 1024);
    b.extend_from_slice(b"{\"name\":\"ConversionSynapse\",\"timeout\":");
    serde_json::to_writer(&mut b, &plan.timeout)?;
    b.extend_from_slice(b",\"total_size\":0,\"header_size\":0,\"dendrite\":{\"status_code\":null,\"status_message\":null,\"process_time\":null,\"ip\":");
    json_str(&mut b, DENDRITE_IP)?;
    write!(
        b,
        ",\"port\":null,\"version\":{DENDRITE_VERSION},\"nonce\":{},\"uuid\":",
        s.nonce
    )?;
    json_str(&mut b, s.uuid)?;
    b.extend_from_slice(b",\"hotkey\":");
    json_str(&mut b, &plan.signer_for(s.nonce).ss58)?;
    b.extend_from_slice(b",\"signature\":");
    json_str(&mut b, s.signature)?;
    b.extend_from_slice(
        b"},\"axon\":{\"status_code\":null,\"status_message\":null,\"process_time\":null,\"ip\":",
    );
    json_str(&mut b, &plan.target.ip().to_string())?;
    write!(
        b,
        ",\"port\":{},\"version\":null,\"nonce\":null,\"uuid\":null,\"hotkey\":",
        plan.target.port()
    )?;
    json_str(&mut b, &plan.miner)?;
    b.extend_from_slice(b",\"signature\":null},\"computed_body_hash\":\"\",\"features\":");
    b.extend_from_slice(feats);
    b.extend_from_slice(b",\"prediction\":{\"conversion_happened\":0,\"time_to_conversion_seconds\":-1.0},\"confidence\":null,\"response_time\":0.0,\"miner_uid\":0}");
    Ok(b)
}

/// A signed `ConversionSynapse` request for conversation `idx` with the
/// given nonce and uuid, headers and body laid out as a bittensor 10.5.0
/// dendrite sends them. Returns the request, a copy of its body bytes and
/// the signature (for [`Sent`]). The URI is absolute, as hyper's pooled
/// client needs; the probe's own connection sends it in origin form.
pub fn build_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    if plan.protocol == ProbeProtocol::Btauth {
        return btauth_request(plan, idx, nonce, uuid);
    }
    let signature = sign(plan, nonce, uuid)?;
    request_with(plan, idx, nonce, uuid, signature)
}

/// The same body signed as btauth/1 instead (`probe --protocol btauth`):
/// the `X-Bittensor-*` headers from `cm_host::btauth::sign`, bound to the
/// miner's hotkey. That signature covers the body's hash, so it cannot sit
/// inside the body: the body's dendrite block carries an empty signature,
/// which comes back echoed like every other field (the returned signature).
fn btauth_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let kp = plan
        .signer_for(nonce)
        .keypair
        .as_ref()
        .ok_or_else(|| anyhow!("probe hotkey has no secret"))?;
    let sent = Sent {
        idx,
        nonce,
        uuid,
        signature: "",
    };
    let body = Bytes::from(request_body(plan, &sent)?);
    let headers = btauth_sign::sign(
        btauth_sign::Key::Sr25519(kp),
        &btauth_sign::Signing {
            method: "POST",
            target: "/ConversionSynapse",
            body: &body,
            receiver_ss58: Some(&plan.miner),
            nonce_ns: nonce,
        },
    );
    let mut req = Request::post(format!("http://{}/ConversionSynapse", plan.target))
        .header("host", plan.target.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    Ok((req.body(Full::new(body.clone()))?, body, String::new()))
}

/// The same request as [`build_request`], but carrying a forged signature
/// (see [`forge_signature`]) in both the header and the body.
pub fn build_forged_request(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let signature = forge_signature(&sign(plan, nonce, uuid)?)?;
    request_with(plan, idx, nonce, uuid, signature)
}

/// Turns a valid signature (`0x` + hex) into one that is still a
/// well-formed sr25519 signature but no longer verifies: one bit of the
/// scalar half is flipped. The point half is left alone, so the verifier
/// cannot refuse it early for an undecodable point and has to do the full
/// curve work, as it would for a forger who knows the format. The bit is
/// the lowest one of the scalar's first (least significant) byte whose flip
/// keeps the scalar canonical (below the group order l). Bit 0 nearly
/// always does; if it does not, the scalar was l - 1, whose first byte has
/// set bits, and clearing one of them lowers the scalar. So the loop below
/// always finds one.
pub fn forge_signature(signature: &str) -> Result<String> {
    let mut b = sig::parse_signature_hex(signature).map_err(|e| anyhow!("{e}"))?;
    let scalar_low = sig::SIGNATURE_LEN / 2;
    for bit in 0..8 {
        b[scalar_low] ^= 1 << bit;
        if schnorrkel::Signature::from_bytes(&b).is_ok() {
            return Ok(format!("0x{}", hex::encode(b)));
        }
        b[scalar_low] ^= 1 << bit;
    }
    bail!("no single-bit change of {signature} stays a valid sr25519 encoding")
}

/// Lays out the request of [`build_request`] around a given signature.
fn request_with(
    plan: &Plan,
    idx: usize,
    nonce: u64,
    uuid: &str,
    signature: String,
) -> Result<(Request<Full<Bytes>>, Bytes, String)> {
    let me = &plan.signer_for(nonce).ss58;
    let body = Bytes::from(request_body(
        plan,
        &Sent {
            idx,
            nonce,
            uuid,
            signature: &signature,
        },
    )?);
    let port = plan.target.port();
    let ip = plan.target.ip().to_string();
    let req = Request::post(format!("http://{}/ConversionSynapse", plan.target))
        .header("host", plan.target.to_string())
        .header("name", "ConversionSynapse")
        .header("timeout", format!("{:?}", plan.timeout))
        .header("bt_header_axon_ip", ip)
        .header("bt_header_axon_port", port.to_string())
        .header("bt_header_axon_hotkey", plan.miner.as_str())
        .header("bt_header_dendrite_ip", DENDRITE_IP)
        .header("bt_header_dendrite_version", DENDRITE_VERSION.to_string())
        .header("bt_header_dendrite_nonce", nonce.to_string())
        .header("bt_header_dendrite_uuid", uuid)
        .header("bt_header_dendrite_hotkey", me.as_str())
        .header("bt_header_dendrite_signature", signature.as_str())
        .header("bt_header_input_obj_features", INPUT_OBJ_DICT)
        .header("header_size", "0")
        .header("total_size", "0")
        .header("computed_body_hash", EMPTY_BODY_HASH)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    Ok((req, body, signature))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn derived_hotkeys_sign_requests_as_many_callers() {
        let keys = derived_hotkeys(3, 4);
        let again = derived_hotkeys(3, 4);
        let other = derived_hotkeys(4, 4);
        let names: std::collections::HashSet<_> = keys.iter().map(|k| k.ss58.clone()).collect();
        assert_eq!(names.len(), 4);
        assert!(keys.iter().zip(&again).all(|(a, b)| a.ss58 == b.ss58));
        assert!(keys.iter().zip(&other).all(|(a, b)| a.ss58 != b.ss58));
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 2).with_signers(keys);
        let mut seen = std::collections::HashSet::new();
        let mut order = Vec::new();
        for _ in 0..8 {
            let nonce = plan.next_nonce();
            order.push(plan.signer_for(nonce).ss58.clone());
            let uuid = "u-1";
            let (req, body, _) = build_request(&plan, 1, nonce, uuid).unwrap();
            let hotkey = req.headers()["bt_header_dendrite_hotkey"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(hotkey, plan.signer_for(nonce).ss58);
            assert_ne!(hotkey, plan.signer.ss58);
            // The miner's gate verifies it as a request of that hotkey.
            let a = cm_host::gate::parse_auth(req.headers()).unwrap();
            a.verify(&miner.ss58).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["dendrite"]["hotkey"], Value::from(hotkey.as_str()));
            seen.insert(hotkey);
        }
        assert_eq!(seen.len(), 4);
        // Successive nonces cycle through the keys in order.
        assert_eq!(order[..4], order[4..]);
    }

    #[test]
    fn features_follow_validator_types() {
        let rows = cm_subnet::sample::test_set(7, 3);
        let m = features_json(&rows[0].raw, "s");
        assert_eq!(m.len(), N_FEATURES + 1);
        assert!(m["total_messages"].is_i64());
        assert!(m["message_ratio"].is_f64());
        let body =
            serde_json::to_vec(&serde_json::json!({ "features": Value::Object(m) })).unwrap();
        assert!(cm_core::parse::parse_request(&body).is_ok());
    }

    pub(crate) fn test_plan(miner: &Hotkey, n: usize) -> Plan {
        let rows = cm_subnet::sample::test_set(1, n);
        Plan::new(
            "127.0.0.1:9".parse().unwrap(),
            miner.ss58.clone(),
            Hotkey::generate(),
            12.0,
            rows,
            "s",
        )
        .unwrap()
    }

    #[test]
    fn requests_verify_under_the_miner_key() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1);
        let (req, body, _) = build_request(&plan, 0, 1_795_626_734_383_137_861, "u-1").unwrap();
        let a = cm_host::gate::parse_auth(req.headers()).unwrap();
        a.verify(&miner.ss58).unwrap();
        cm_host::gate::check_body_hash(&a).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["dendrite"]["nonce"].as_u64(),
            Some(1_795_626_734_383_137_861)
        );
        assert!(a.verify(&plan.signer.ss58).is_err());
    }

    #[test]
    fn btauth_requests_verify_under_the_miner_key() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1).with_protocol(ProbeProtocol::Btauth);
        let (n1, n2) = (plan.next_nonce(), plan.next_nonce());
        assert!(n2 > n1);
        let (req, body, sig) = build_request(&plan, 0, n1, "u-1").unwrap();
        assert_eq!(sig, "");
        assert_eq!(
            cm_host::btauth::Protocol::of(req.headers()),
            cm_host::btauth::Protocol::Btauth
        );
        let r = cm_host::btauth::parse(req.headers()).unwrap();
        assert_eq!(r.nonce, n1);
        assert_eq!(r.hotkey_ss58, plan.signer.ss58);
        r.check_receiver(&miner.ss58).unwrap();
        r.verify("POST", "/ConversionSynapse", &body).unwrap();
        assert!(r.check_receiver(&plan.signer.ss58).is_err());
        let mut altered = body.to_vec();
        altered.push(b' ');
        assert!(r.verify("POST", "/ConversionSynapse", &altered).is_err());
    }

    #[test]
    fn forged_requests_parse_but_do_not_verify() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 1);
        for k in 0..50u64 {
            let nonce = 1_795_626_734_383_137_861 + k;
            let (honest, _, good) = build_request(&plan, 0, nonce, "u-1").unwrap();
            // Exactly one bit differs, and it is in the scalar half.
            let g = sig::parse_signature_hex(&good).unwrap();
            let f = sig::parse_signature_hex(&forge_signature(&good).unwrap()).unwrap();
            let diff: Vec<usize> = (0..g.len()).filter(|&i| g[i] != f[i]).collect();
            assert_eq!(diff, [sig::SIGNATURE_LEN / 2]);
            assert_eq!((g[32] ^ f[32]).count_ones(), 1);
            // Signing is randomized, so the forged request carries a
            // signature of its own, which must parse and still be refused.
            let (req, body, bad) = build_forged_request(&plan, 0, nonce, "u-1").unwrap();
            assert_eq!(bad.len(), sig::SIGNATURE_HEX_LEN);
            let a = cm_host::gate::parse_auth(req.headers()).expect("forged signature parses");
            let err = a.verify(&miner.ss58).unwrap_err();
            assert_eq!(err.reason, cm_host::reason::Reason::SignatureMismatch);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["dendrite"]["signature"].as_str(), Some(bad.as_str()));
            // Every other header is the honest request's.
            let h = req.headers();
            for (name, v) in honest.headers() {
                if name != "bt_header_dendrite_signature" {
                    assert_eq!(h.get(name), Some(v), "{name}");
                }
            }
        }
        assert!(forge_signature("0x00").is_err());
    }

    #[test]
    fn written_body_equals_the_value_body() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 5);
        for idx in 0..5 {
            let nonce = 1_795_626_734_383_137_861 + idx as u64;
            let (_, bytes, signature) = build_request(&plan, idx, nonce, "u-\"q\"").unwrap();
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            let sent = Sent {
                idx,
                nonce,
                uuid: "u-\"q\"",
                signature: &signature,
            };
            assert_eq!(got, request_value(&plan, &sent));
        }
    }
}
