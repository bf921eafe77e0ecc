//! End-to-end tests of `conversion-miner serve`: the real binary on a free
//! loopback port, spoken to over raw HTTP with requests signed as a bittensor
//! Dendrite signs them (tests/common).
//!
//! Each test starts its own server, so a failure in one case cannot hide or
//! cause another, and every hostile case ends by checking that the same
//! server still answers a good request correctly: a gate that rejects the bad
//! request by falling over would otherwise pass. The status codes and
//! messages are the Python axon's (AXON.md section 6) where it defines one; the
//! cases Python answers with a generic 500 (bad JSON, missing input) get the
//! codes cm-host chose, named in the constants below.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// Blacklisted caller (AXON.md section 6).
const FORBIDDEN: u16 = 403;
/// Signature, nonce or signing-context failure (AXON.md sections 5.2, 6).
const NOT_VERIFIED: u16 = 401;
/// Unknown synapse path.
const NOT_FOUND: u16 = 404;
/// A signed request whose body is not JSON (Python answers a generic 500;
/// cm-host says 400, whose fault it is).
const BAD_JSON: u16 = 400;
/// A signed request without the `features` input, or without a required feature.
const MISSING_INPUT: u16 = 400;
/// A body over the server's cap.
const TOO_LARGE: u16 = 413;
/// A body over cm-host's default cap (`--max-body`, 64 KiB); a real
/// ConversionSynapse body is about 3 KB.
const OVERSIZE_BYTES: usize = 1024 * 1024;
/// Seeds of the test identities.
const VALIDATOR_SEED: [u8; 32] = [7; 32];
const STRANGER_SEED: [u8; 32] = [9; 32];
const MINER_SEED: [u8; 32] = [11; 32];
/// How far in the past a "stale" first nonce is: beyond 4 s + the 12 s timeout.
const STALE_BY_NS: u64 = 60_000_000_000;
/// Good requests that push a nonce out of cm-host's per-key memory (it keeps
/// the last 16 per `hotkey:uuid`); more than enough either way.
const RING_FLUSH_REQUESTS: usize = 20;
/// How far in the future a nonce is that the server should refuse.
const FUTURE_BY_NS: u64 = 120_000_000_000;

/// This file's way of sending requests through the shared [`Rig`] and
/// checking that it still serves.
impl Rig {
    fn dev() -> Rig {
        Rig::start(&["--dev"], VALIDATOR_SEED)
    }

    fn send_as(&self, who: &Signer, call: &Call<'_>) -> Response {
        self.post_signed(call.path, &who.build(call))
    }

    fn post_signed(&self, path: &str, signed: &Signed) -> Response {
        post(self.addr(), path, &signed.headers, &signed.body).unwrap_or_else(|e| {
            panic!(
                "POST {path}: {e}\nserver output:\n{}",
                self.server.log_text()
            )
        })
    }

    fn send(&self, call: &Call<'_>) -> Response {
        self.send_as(&self.validator, call)
    }

    /// A correct ConversionSynapse request must succeed with a valid answer.
    fn assert_serves(&mut self) -> Value {
        let call = self.call(
            "/ConversionSynapse",
            now_ns(),
            synapse_fields(sample_features()),
        );
        let signed = self.validator.build(&call);
        let request: Value = serde_json::from_slice(&signed.body).expect("json");
        let r = self.post_signed(call.path, &signed);
        assert!(
            self.server.alive(),
            "server exited; output:\n{}",
            self.server.log_text()
        );
        assert_success(&r, &request);
        r.json()
    }
}

/// The checks a Dendrite makes on a success (AXON.md section 7), plus ours on the prediction.
fn assert_success(r: &Response, request: &Value) {
    assert_eq!(
        r.status,
        200,
        "expected 200, got {}: {}",
        r.status,
        r.text()
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    assert_eq!(
        r.header("bt_header_axon_status_code"),
        Some("200"),
        "headers {:?}",
        r.headers
    );
    assert_eq!(r.header("bt_header_axon_status_message"), Some("Success"));
    let pt: f64 = r
        .header("bt_header_axon_process_time")
        .and_then(|v| v.parse().ok())
        .expect("process_time header");
    assert!(pt.is_finite() && pt >= 0.0, "process_time {pt}");
    for (k, _) in &r.headers {
        assert_eq!(k, &k.to_ascii_lowercase(), "header names must be lowercase");
    }
    let body = r.json();
    let axon = &body["axon"];
    assert_eq!(axon["status_code"], json!(200), "axon block {axon}");
    assert_eq!(axon["status_message"], json!("Success"));
    let d = &body["dendrite"];
    assert!(
        d.is_object(),
        "dendrite must be echoed as an object, got {d}"
    );
    for k in ["nonce", "uuid", "hotkey", "signature", "version"] {
        // The nonce is above 2^53: equality here also proves it never went through f64.
        assert_eq!(d[k], request["dendrite"][k], "dendrite.{k} not echoed");
    }
    let outputs = [
        "prediction",
        "confidence",
        "response_time",
        "axon",
        "dendrite",
        "total_size",
        "header_size",
    ];
    for (k, v) in request.as_object().expect("request object") {
        if !outputs.contains(&k.as_str()) {
            assert_eq!(&body[k], v, "input field {k} not echoed intact");
        }
    }
    if request.get("features").is_some() {
        let p = &body["prediction"];
        let class = p["conversion_happened"]
            .as_u64()
            .expect("conversion_happened int");
        let t = p["time_to_conversion_seconds"]
            .as_f64()
            .expect("time float");
        let conf = body["confidence"].as_f64().expect("confidence float");
        assert!(class <= 1, "class {class}");
        if class == 0 {
            assert_eq!(t, -1.0, "class 0 must have time -1.0");
        } else {
            assert!(t > 0.0 && t.is_finite(), "class 1 with time {t}");
        }
        assert!((0.0..=1.0).contains(&conf), "confidence {conf}");
        let rt = body["response_time"].as_f64().expect("response_time float");
        assert!(
            (0.0..1.0).contains(&rt),
            "response_time {rt} must be our own processing seconds"
        );
    }
}

/// An error answer: the code, JSON `{"message": ...}` containing `needle`, and
/// the matching status header the Dendrite reads.
fn assert_error(r: &Response, status: u16, needle: &str) {
    assert_eq!(
        r.status,
        status,
        "expected {status}, got {}: {}",
        r.status,
        r.text()
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error content-type {ct:?}"
    );
    let body = r.json();
    let msg = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message string in {body}"));
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
    assert_eq!(
        r.header("bt_header_axon_status_code"),
        Some(status.to_string().as_str()),
        "status header"
    );
}

/// What `conversion-miner predict` says for one input line.
fn offline_prediction(features: &Value) -> Value {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("predict")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn predict");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{features}").expect("write predict input");
    drop(stdin);
    let out = child.wait_with_output().expect("predict output");
    assert!(
        out.status.success(),
        "predict failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default())
        .expect("predict json")
}

#[test]
fn signer_matches_the_axon_md_vector() {
    // AXON.md section 5.1: a real 10.5.0 Dendrite's signature, signer //Alice.
    let alice =
        hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d").unwrap();
    let alice: [u8; 32] = alice.try_into().unwrap();
    assert_eq!(
        ss58_encode(&alice),
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    );
    let msg = "1795626734383137861.5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.\
               5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty.5c06965a-e8f3-11f1-9a7d-02fc00000001.\
               a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";
    let sig = hex::decode("6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b").unwrap();
    let sig = schnorrkel::Signature::from_bytes(&sig).unwrap();
    let pk = schnorrkel::PublicKey::from_bytes(&alice).unwrap();
    let ctx = schnorrkel::signing_context(SUBSTRATE_CTX);
    assert!(pk.verify(ctx.bytes(msg.as_bytes()), &sig).is_ok());
    assert!(pk
        .verify(schnorrkel::signing_context(b"").bytes(msg.as_bytes()), &sig)
        .is_err());
    assert_eq!(
        empty_body_hash(),
        "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
    );
    // Our own signatures verify the same way.
    let me = Signer::from_seed(VALIDATOR_SEED);
    let s = me.sign_with(SUBSTRATE_CTX, msg);
    let s = schnorrkel::Signature::from_bytes(&hex::decode(&s[2..]).unwrap()).unwrap();
    assert!(me
        .keypair
        .public
        .verify(ctx.bytes(msg.as_bytes()), &s)
        .is_ok());
}

#[test]
fn good_request_matches_offline_predict() {
    let mut rig = Rig::dev();
    let body = rig.assert_serves();
    let want = offline_prediction(&sample_features());
    let p = &body["prediction"];
    assert_eq!(
        p["conversion_happened"], want["conversion_happened"],
        "server {body} vs predict {want}"
    );
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        (a - b).abs() <= 1e-6 * a.abs().max(1.0)
    };
    assert!(
        close(
            &p["time_to_conversion_seconds"],
            &want["time_to_conversion_seconds"]
        ),
        "{body} vs {want}"
    );
    assert!(
        close(&body["confidence"], &want["confidence"]),
        "{body} vs {want}"
    );
    // Many good requests in a row on one server.
    for _ in 0..50 {
        rig.assert_serves();
    }
}

#[test]
fn synapse_ping() {
    let mut rig = Rig::dev();
    let call = rig.call("/Synapse", now_ns(), json!({}));
    let signed = rig.validator.build(&call);
    let request: Value = serde_json::from_slice(&signed.body).unwrap();
    let r = rig.post_signed(call.path, &signed);
    assert_success(&r, &request);
    assert_eq!(r.json()["name"], json!("Synapse"));
    rig.assert_serves();
}

#[test]
fn bad_signature_is_401() {
    let mut rig = Rig::dev();
    let mut call = rig.call(
        "/ConversionSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    );
    call.tamper = Some(flip_last_hex);
    assert_error(&rig.send(&call), NOT_VERIFIED, "Not Verified");
    // Not hex at all, and absent.
    call.tamper = Some(|_| "0xnothex".to_string());
    call.nonce = now_ns();
    assert_error(&rig.send(&call), NOT_VERIFIED, "Not Verified");
    let mut signed = rig.validator.build(&rig.call(
        "/ConversionSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    ));
    signed
        .headers
        .retain(|(k, _)| k != "bt_header_dendrite_signature");
    let r = post(
        rig.addr(),
        "/ConversionSynapse",
        &signed.headers,
        &signed.body,
    )
    .unwrap();
    assert_error(&r, NOT_VERIFIED, "Not Verified");
    rig.assert_serves();
}

#[test]
fn wrong_signing_context_is_401() {
    let mut rig = Rig::dev();
    for ctx in [&b""[..], b"polkadot", b"substrat"] {
        let mut call = rig.call(
            "/ConversionSynapse",
            now_ns(),
            synapse_fields(sample_features()),
        );
        call.ctx = ctx;
        assert_error(&rig.send(&call), NOT_VERIFIED, "Not Verified");
    }
    rig.assert_serves();
}

#[test]
fn signature_for_another_miner_is_401() {
    // Signed for a different axon hotkey: the server must check against its own.
    let mut rig = Rig::dev();
    let other = Signer::from_seed(MINER_SEED).ss58;
    let mut call = rig.call(
        "/ConversionSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    );
    call.miner_ss58 = &other;
    assert_error(&rig.send(&call), NOT_VERIFIED, "Not Verified");
    rig.assert_serves();
}

#[test]
fn replayed_nonce_is_401() {
    let mut rig = Rig::dev();
    let sign_at = |rig: &Rig, nonce: u64| {
        let call = rig.call(
            "/ConversionSynapse",
            nonce,
            synapse_fields(sample_features()),
        );
        rig.validator.build(&call)
    };
    let first = sign_at(&rig, now_ns());
    let request: Value = serde_json::from_slice(&first.body).unwrap();
    assert_success(&rig.post_signed("/ConversionSynapse", &first), &request);
    // The same signed request again, byte for byte.
    assert_error(
        &rig.post_signed("/ConversionSynapse", &first),
        NOT_VERIFIED,
        "Nonce",
    );
    // cm-host accepts an unseen nonce that arrives out of order on the same
    // uuid (a Dendrite's concurrent requests do), once.
    let nonce = request["dendrite"]["nonce"].as_u64().unwrap();
    let earlier = sign_at(&rig, nonce - 1);
    let request: Value = serde_json::from_slice(&earlier.body).unwrap();
    assert_success(&rig.post_signed("/ConversionSynapse", &earlier), &request);
    assert_error(
        &rig.post_signed("/ConversionSynapse", &earlier),
        NOT_VERIFIED,
        "Nonce",
    );
    // Still refused after many newer requests have pushed it out of the
    // server's per-key memory.
    for _ in 0..RING_FLUSH_REQUESTS {
        rig.assert_serves();
    }
    assert_error(
        &rig.post_signed("/ConversionSynapse", &first),
        NOT_VERIFIED,
        "Nonce",
    );
    assert_error(
        &rig.post_signed("/ConversionSynapse", &earlier),
        NOT_VERIFIED,
        "Nonce",
    );
    rig.assert_serves();
}

#[test]
fn strict_nonce_mode_refuses_out_of_order() {
    // `--nonce.strict` is the Python axon's rule: strictly increasing per uuid.
    let mut rig = Rig::start(&["--dev", "--nonce.strict"], VALIDATOR_SEED);
    let body = rig.assert_serves();
    let nonce = body["dendrite"]["nonce"].as_u64().unwrap();
    let earlier = rig.call(
        "/ConversionSynapse",
        nonce - 1,
        synapse_fields(sample_features()),
    );
    assert_error(&rig.send(&earlier), NOT_VERIFIED, "Nonce");
    rig.assert_serves();
}

#[test]
fn stale_and_future_nonces_are_401() {
    let mut rig = Rig::dev();
    // A first nonce from a new uuid that is older than 4 s + timeout.
    rig.validator.renew_uuid();
    let call = rig.call(
        "/ConversionSynapse",
        now_ns() - STALE_BY_NS,
        synapse_fields(sample_features()),
    );
    assert_error(&rig.send(&call), NOT_VERIFIED, "Nonce is too old");
    // cm-host also bounds clock skew into the future (Python does not).
    rig.validator.renew_uuid();
    let call = rig.call(
        "/ConversionSynapse",
        now_ns() + FUTURE_BY_NS,
        synapse_fields(sample_features()),
    );
    assert_error(&rig.send(&call), NOT_VERIFIED, "Nonce");
    rig.assert_serves();
}

#[test]
fn unknown_path_is_404() {
    let mut rig = Rig::dev();
    let call = rig.call(
        "/NoSuchSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    );
    assert_error(&rig.send(&call), NOT_FOUND, "NoSuchSynapse");
    let r = get(rig.addr(), "/nothing/here").unwrap();
    assert_eq!(r.status, NOT_FOUND, "{}", r.text());
    assert!(r.json()["message"].is_string());
    rig.assert_serves();
}

#[test]
fn non_json_body_is_refused() {
    let mut rig = Rig::dev();
    // Correctly signed headers (the signature does not cover the body) with a
    // fresh nonce each time, so the refusal is about the body, not a replay.
    for junk in [
        &b"this is not json{"[..],
        b"",
        b"{\"features\": {\"message_ratio\": 1.2",
    ] {
        let signed = rig.validator.build(&rig.call(
            "/ConversionSynapse",
            now_ns(),
            synapse_fields(sample_features()),
        ));
        let r = post(rig.addr(), "/ConversionSynapse", &signed.headers, junk).unwrap();
        let shown = String::from_utf8_lossy(junk);
        assert_eq!(r.status, BAD_JSON, "body {shown:?}: {}", r.text());
        assert!(
            r.json()["message"].is_string(),
            "body {shown:?}: {}",
            r.text()
        );
    }
    rig.assert_serves();
}

#[test]
fn missing_features_is_refused() {
    let mut rig = Rig::dev();
    let mut fields = synapse_fields(sample_features());
    fields.as_object_mut().unwrap().remove("features");
    assert_error(
        &rig.send(&rig.call("/ConversionSynapse", now_ns(), fields)),
        MISSING_INPUT,
        "features",
    );
    // A required feature missing inside `features` names that feature.
    let mut f = sample_features();
    f.as_object_mut().unwrap().remove("message_ratio");
    let call = rig.call("/ConversionSynapse", now_ns(), synapse_fields(f));
    assert_error(&rig.send(&call), MISSING_INPUT, "message_ratio");
    rig.assert_serves();
}

#[test]
fn oversize_body_is_413() {
    let mut rig = Rig::dev();
    let mut f = sample_features();
    f["padding"] = json!("x".repeat(OVERSIZE_BYTES));
    let call = rig.call("/ConversionSynapse", now_ns(), synapse_fields(f));
    assert_error(&rig.send(&call), TOO_LARGE, "");
    // A Content-Length that promises more than the cap, without sending it.
    let signed = rig.validator.build(&rig.call(
        "/ConversionSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    ));
    let mut req = format!(
        "POST /ConversionSynapse HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        rig.addr()
    );
    for (k, v) in &signed.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {OVERSIZE_BYTES}\r\n\r\n{{"
    ));
    let r = raw_exchange(rig.addr(), req.as_bytes()).unwrap();
    assert_eq!(r.status, TOO_LARGE, "{}", r.text());
    rig.assert_serves();
}

#[test]
fn validators_file_admits_only_listed_hotkeys() {
    let dir = temp_dir("validators");
    let miner = write_wallet_hotkey(&dir, "miner", "default", MINER_SEED);
    let validator = Signer::from_seed(VALIDATOR_SEED);
    let stranger = Signer::from_seed(STRANGER_SEED);
    let file = dir.join("validators.txt");
    std::fs::write(
        &file,
        format!("# test allow-list\n{}, 1000\n", validator.ss58),
    )
    .unwrap();
    let wallet_path = dir.to_str().unwrap();
    let server = Server::start(&[
        "--wallet.path",
        wallet_path,
        "--wallet.name",
        "miner",
        "--wallet.hotkey",
        "default",
        "--validators",
        file.to_str().unwrap(),
        "--axon.ip",
        "127.0.0.1",
    ]);
    assert_eq!(
        server.hotkey(),
        miner,
        "server must serve the wallet's hotkey"
    );
    let mut rig = Rig {
        server,
        miner,
        validator,
    };
    let call = rig.call(
        "/ConversionSynapse",
        now_ns(),
        synapse_fields(sample_features()),
    );
    assert_error(&rig.send_as(&stranger, &call), FORBIDDEN, "Forbidden");
    // A forged caller header with a bad ss58 is refused before any crypto.
    let mut signed = rig.validator.build(&call);
    for (k, v) in signed.headers.iter_mut() {
        if k == "bt_header_dendrite_hotkey" {
            *v = "5notanaddress".to_string();
        }
    }
    let r = post(rig.addr(), call.path, &signed.headers, &signed.body).unwrap();
    assert!(
        r.status == FORBIDDEN || r.status == NOT_VERIFIED,
        "bad ss58: {} {}",
        r.status,
        r.text()
    );
    rig.assert_serves();
    // The listed key's sr25519 table is built in the background at start;
    // from then on its lone signatures are checked from the table, and
    // still verify.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let from_table = |rig: &Rig| {
        metric_value(
            &rig.server.metrics_text(),
            "cm_verify_table_signatures_total ",
        )
        .unwrap_or(0.0)
    };
    while from_table(&rig) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no signature was checked from the validator's table; output:\n{}",
            rig.server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        rig.assert_serves();
    }
    assert!(
        rig.server.log_text().contains("sr25519 tables built"),
        "the start-up log says the tables were built"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
