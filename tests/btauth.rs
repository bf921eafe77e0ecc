//! btauth/1 against the real binary, without Python: every refusal the
//! protocol adds, each with its status, metric and a good request after.
//!
//! Requests are signed with cm-host's own client half (`btauth::sign`); that
//! the signer and the server read the protocol as bittensor does is shown
//! apart, by 11.3.0's golden signatures in the unit tests and by
//! tests/interop/btauth.py (bittensor's `http_auth.sign` against this
//! server, and this signer against its `http_auth.verify`). This file runs in
//! every `cargo test`, so the gate's btauth/1 path is covered even where no
//! Python is installed.

mod common;

use cm_host::btauth::sign::{sign, Key, Signing};
use cm_host::wallet::Hotkey;
use common::{metric_value, now_ns, post, sample_features, temp_dir, write_wallet_hotkey, Server};
use serde_json::{json, Value};

const ROUTE: &str = "/ConversionSynapse";
const NS: u64 = 1_000_000_000;

struct Rig {
    server: Server,
    miner: String,
    validator: Hotkey,
}

/// The miner's wallet key (a fixed test seed).
const MINER_SEED: [u8; 32] = [0x6d; 32];

impl Rig {
    /// `serve` with the miner's wallet and a validators file naming one
    /// freshly made hotkey.
    fn start(extra: &[&str]) -> Rig {
        let validator = Hotkey::generate();
        let dir = temp_dir("btauth");
        let miner = write_wallet_hotkey(&dir, "miner", "default", MINER_SEED);
        let list = dir.join("validators.txt");
        std::fs::write(&list, format!("{},100\n", validator.ss58)).unwrap();
        let mut args = vec![
            "--wallet.path",
            dir.to_str().unwrap(),
            "--wallet.name",
            "miner",
            "--validators",
            list.to_str().unwrap(),
            "--axon.ip",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let server = Server::start(&args);
        assert_eq!(server.hotkey(), miner);
        Rig {
            server,
            miner,
            validator,
        }
    }

    fn headers(
        &self,
        who: &Hotkey,
        body: &[u8],
        receiver: Option<&str>,
        nonce: u64,
    ) -> Vec<(String, String)> {
        let kp = who.keypair.as_ref().unwrap();
        sign(
            Key::Sr25519(kp),
            &Signing {
                method: "POST",
                target: ROUTE,
                body,
                receiver_ss58: receiver,
                nonce_ns: nonce,
            },
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn good(&self, body: &[u8]) -> Vec<(String, String)> {
        self.headers(&self.validator, body, Some(&self.miner), now_ns())
    }

    fn metric(&self, line_prefix: &str) -> f64 {
        let text = self.server.metrics_text();
        metric_value(&text, line_prefix).unwrap_or(0.0)
    }

    fn rejections(&self, reason: &str, code: u16) -> f64 {
        self.metric(&format!(
            "cm_rejections_total{{reason=\"{reason}\",code=\"{code}\"}} "
        ))
    }

    /// Sends and checks the refusal: status, message start, and its metric rose by one.
    fn refused(
        &self,
        what: &str,
        headers: &[(String, String)],
        body: &[u8],
        status: u16,
        reason: &str,
        message: &str,
    ) {
        let before = self.rejections(reason, status);
        let r = post(self.server.addr, ROUTE, headers, body).unwrap();
        let got = r.json();
        assert_eq!(r.status, status, "{what}: {got}");
        let m = got["message"].as_str().unwrap_or("");
        assert!(
            m.starts_with(message),
            "{what}: message {m:?}, expected {message:?}"
        );
        assert_eq!(
            self.rejections(reason, status),
            before + 1.0,
            "{what}: metric {reason}"
        );
        self.serves();
    }

    /// A good request is answered with a prediction.
    fn serves(&self) {
        let body = body();
        let r = post(self.server.addr, ROUTE, &self.good(&body), &body).unwrap();
        let v = r.json();
        assert_eq!(
            r.status,
            200,
            "good request: {v}\n{}",
            self.server.log_text()
        );
        assert!(v["prediction"]["conversion_happened"].is_u64(), "{v}");
        assert_eq!(v["features"], sample_features());
        assert_eq!(v["axon"]["status_code"], 200);
    }
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&json!({"features": sample_features(), "miner_uid": 7})).unwrap()
}

fn with(h: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<_> = h
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    out.push((name.to_string(), value.to_string()));
    out
}

fn without(h: &[(String, String)], name: &str) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect()
}

#[test]
fn btauth_requests_are_answered_and_counted_by_protocol() {
    let rig = Rig::start(&[]);
    let line = "cm_requests_total{route=\"ConversionSynapse\",protocol=\"btauth\"} ";
    let before = rig.metric(line);
    for _ in 0..5 {
        rig.serves();
    }
    assert_eq!(rig.metric(line), before + 5.0);
    // The ping route takes btauth/1 too.
    let ping = b"{}";
    let h = rig.headers(&rig.validator, ping, Some(&rig.miner), now_ns());
    let r = post(rig.server.addr, "/Synapse", &h, ping).unwrap();
    // Signed for /ConversionSynapse, sent to /Synapse: the path is signed.
    assert_eq!(r.status, 401, "{}", r.text());
    let kp = rig.validator.keypair.as_ref().unwrap();
    let h: Vec<(String, String)> = sign(
        Key::Sr25519(kp),
        &Signing {
            method: "POST",
            target: "/Synapse",
            body: ping,
            receiver_ss58: Some(&rig.miner),
            nonce_ns: now_ns(),
        },
    )
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let r = post(rig.server.addr, "/Synapse", &h, ping).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "Synapse");
}

#[test]
fn every_btauth_refusal_has_its_status_and_metric() {
    let rig = Rig::start(&["--max-body", "4096"]);
    let b = body();
    let good = rig.good(&b);

    let mut altered: Value = serde_json::from_slice(&b).unwrap();
    altered["features"]["total_messages"] = json!(99);
    let altered = serde_json::to_vec(&altered).unwrap();
    rig.refused(
        "body altered after signing",
        &good,
        &altered,
        401,
        "signature_mismatch",
        "Not Verified with error: signature does not verify",
    );

    let other = Hotkey::generate();
    let h = rig.headers(&rig.validator, &b, Some(&other.ss58), now_ns());
    rig.refused(
        "signed for another receiver",
        &h,
        &b,
        401,
        "wrong_receiver",
        "Not Verified with error: request was signed for a different receiving hotkey",
    );
    let h = rig.headers(&rig.validator, &b, None, now_ns());
    rig.refused(
        "no receiver",
        &h,
        &b,
        401,
        "wrong_receiver",
        "Not Verified with error: missing x-bittensor-receiver",
    );

    let h = rig.good(&b);
    let r = post(rig.server.addr, ROUTE, &h, &b).unwrap();
    assert_eq!(r.status, 200);
    rig.refused(
        "exact replay",
        &h,
        &b,
        401,
        "nonce_replay",
        "Not Verified with error: this nonce was already accepted",
    );

    let h = rig.headers(&rig.validator, &b, Some(&rig.miner), now_ns() - 60 * NS);
    rig.refused(
        "nonce 60 s old",
        &h,
        &b,
        401,
        "nonce_stale",
        "Not Verified with error: nonce is 60",
    );
    let h = rig.headers(&rig.validator, &b, Some(&rig.miner), now_ns() + 5 * NS);
    rig.refused(
        "nonce 5 s ahead",
        &h,
        &b,
        401,
        "nonce_future",
        "Not Verified with error: nonce is ",
    );

    let stranger = Hotkey::generate();
    let h = rig.headers(&stranger, &b, Some(&rig.miner), now_ns());
    rig.refused(
        "signer not on the allow-list",
        &h,
        &b,
        403,
        "blacklisted",
        "Forbidden. Key is blacklisted",
    );

    let h = with(
        &rig.good(&b),
        "bt_header_dendrite_hotkey",
        &rig.validator.ss58,
    );
    rig.refused(
        "both header sets",
        &h,
        &b,
        400,
        "mixed_auth",
        "Bad Request: both axon",
    );

    let h = with(&rig.good(&b), "X-Bittensor-Version", "2");
    rig.refused(
        "unknown version",
        &h,
        &b,
        400,
        "bad_header",
        "Bad Request: unsupported x-bittensor-version",
    );
    let h = with(&rig.good(&b), "X-Bittensor-Crypto", "ecdsa");
    rig.refused(
        "unknown scheme",
        &h,
        &b,
        400,
        "bad_header",
        "Bad Request: unsupported x-bittensor-crypto",
    );
    let h = with(&rig.good(&b), "X-Bittensor-Nonce", "-5");
    rig.refused(
        "negative nonce",
        &h,
        &b,
        400,
        "bad_header",
        "Bad Request: x-bittensor-nonce is malformed",
    );
    let h = without(&rig.good(&b), "X-Bittensor-Signature");
    rig.refused(
        "no signature",
        &h,
        &b,
        401,
        "missing_auth_header",
        "Not Verified with error: missing x-bittensor-signature",
    );
    let h = with(&rig.good(&b), "X-Bittensor-Signature", "0x1234");
    rig.refused(
        "short signature",
        &h,
        &b,
        401,
        "signature_malformed",
        "Not Verified with error: x-bittensor-signature is not",
    );
    let h = with(&rig.good(&b), "X-Bittensor-Hotkey", "5Grw");
    rig.refused(
        "bad hotkey",
        &h,
        &b,
        401,
        "bad_hotkey",
        "Not Verified with error: x-bittensor-hotkey",
    );
    let big = vec![b' '; 5000];
    rig.refused(
        "body over --max-body",
        &rig.good(&big),
        &big,
        413,
        "body_too_large",
        "Payload Too Large",
    );
    let junk = b"{not json";
    rig.refused(
        "signed body that is not JSON",
        &rig.good(junk),
        junk,
        400,
        "bad_json",
        "Bad Request",
    );
}

#[test]
fn btauth_window_flags_are_honoured() {
    let rig = Rig::start(&["--btauth.max-age", "1", "--btauth.max-skew", "0.5"]);
    let b = body();
    let h = rig.headers(&rig.validator, &b, Some(&rig.miner), now_ns() - 3 * NS);
    rig.refused(
        "nonce 3 s old with --btauth.max-age 1",
        &h,
        &b,
        401,
        "nonce_stale",
        "Not Verified with error: nonce is 3",
    );
    let h = rig.headers(&rig.validator, &b, Some(&rig.miner), now_ns() + NS);
    rig.refused(
        "nonce 1 s ahead with --btauth.max-skew 0.5",
        &h,
        &b,
        401,
        "nonce_future",
        "Not Verified with error: nonce is ",
    );
}

#[test]
fn btauth_replay_store_full_refuses_with_503() {
    let rig = Rig::start(&["--btauth.capacity", "2"]);
    let b = body();
    for _ in 0..2 {
        let r = post(rig.server.addr, ROUTE, &rig.good(&b), &b).unwrap();
        assert_eq!(r.status, 200);
    }
    let before = rig.rejections("overloaded", 503);
    let r = post(rig.server.addr, ROUTE, &rig.good(&b), &b).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(rig.rejections("overloaded", 503), before + 1.0);
}
