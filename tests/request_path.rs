//! The served request path against the real binary on loopback: the bytes
//! it answers are exactly what the core's `serve` writes; a body means what
//! Python's `json.loads` and the subnet's pydantic synapse make of it; and
//! `response_time` counts only our own work, not the wait for the body.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use cm_core::kernels::Kernel;
use cm_core::parse::{parse_request, KeyOrder};
use cm_core::respond::AxonId;
use cm_core::serve::{capacity, serve, Route, Server};
use common::*;
use serde_json::Value;

const VALIDATOR_SEED: [u8; 32] = [0x5c; 32];

fn rig() -> Rig {
    Rig::start(&["--dev", "--kernel", "scalar"], VALIDATOR_SEED)
}

/// A fresh nonce for each request of a test.
fn nonce(k: u64) -> u64 {
    now_ns() + k
}

/// Headers and body of a signed request to `path` with `fields`.
fn signed(rig: &Rig, path: &str, k: u64, fields: Value) -> Signed {
    rig.validator.build(&rig.call(path, nonce(k), fields))
}

fn send(rig: &Rig, path: &str, s: &Signed) -> Response {
    post(rig.addr(), path, &s.headers, &s.body).expect("exchange")
}

/// `body` with the text `from` replaced (once, where it must be) by `to`.
fn edit(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

/// The answer's (class, time, confidence).
fn answer(r: &Response) -> (u64, f64, f64) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (
        v["prediction"]["conversion_happened"].as_u64().unwrap(),
        v["prediction"]["time_to_conversion_seconds"]
            .as_f64()
            .unwrap(),
        v["confidence"].as_f64().unwrap(),
    )
}

/// The core's prediction for a features object.
fn predicted(features: &Value) -> (u64, f64, f64) {
    let text = serde_json::to_vec(features).unwrap();
    let f = parse_request(&text).unwrap();
    let p = conversion_miner::embedded::model().predict(&f, Kernel::Scalar);
    let as_json = |x: f32| x.to_string().parse::<f64>().unwrap();
    (
        u64::from(p.conversion_happened),
        as_json(p.time_to_conversion_seconds),
        as_json(p.confidence),
    )
}

#[test]
fn served_bytes_are_what_the_core_writes() {
    let rig = rig();
    let health = get(rig.addr(), "/health").unwrap().json();
    let hotkey = health["hotkey"].as_str().unwrap().to_string();
    let ip = health["external_ip"].as_str().unwrap().to_string();
    let port = health["external_port"].as_u64().unwrap() as u16;
    let model = conversion_miner::embedded::model();
    let server = Server {
        model,
        kernel: Kernel::Scalar,
        me: AxonId {
            hotkey: &hotkey,
            ip: &ip,
            port,
        },
    };
    let conversion = synapse_fields(sample_features());
    // A ping body without an `axon` object, so `me` is written too.
    let ping = serde_json::json!({"extra": [1, "two", null]});
    for (k, (path, route, fields)) in [
        ("/ConversionSynapse", Route::Conversion, conversion),
        ("/Synapse", Route::Ping, ping),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = signed(&rig, path, k as u64, fields);
        if route == Route::Ping {
            s.body = edit(&s.body, "\"axon\":{", "\"no_axon\":{");
        }
        let live = send(&rig, path, &s);
        assert_eq!(live.status, 200, "{}", live.text());
        let v = live.json();
        // The one value that differs run to run: our measured seconds,
        // fixed to the live answer's for the direct call.
        let seconds = v["axon"]["process_time"].as_f64().unwrap();
        let header: f64 = live
            .header("bt_header_axon_process_time")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(header, seconds);
        if route == Route::Conversion {
            assert_eq!(v["response_time"].as_f64(), Some(seconds));
        }
        let mut out = vec![0u8; capacity(s.body.len(), route, &server)];
        let direct = serve(
            &s.body,
            route,
            &server,
            &mut KeyOrder::new(),
            || seconds,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&live.body),
            String::from_utf8_lossy(&out[..direct.len]),
            "{path}"
        );
        assert_eq!(live.body, &out[..direct.len]);
    }
}

#[test]
fn bodies_mean_what_python_makes_of_them() {
    let rig = rig();
    let a = sample_features();
    let mut b = sample_features();
    for (k, v) in [
        ("has_target_entity", 0.0),
        ("entities_collected_count", 1.0),
        ("message_ratio", 1.0),
        ("conversation_duration_seconds", 60.0),
    ] {
        b[k] = serde_json::json!(v);
    }
    assert_ne!(
        predicted(&a).0,
        predicted(&b).0,
        "pick features with different classes"
    );

    // Two `features` objects: the last one counts (a Python dict), not a merge.
    let s = signed(&rig, "/ConversionSynapse", 0, synapse_fields(a.clone()));
    let b_text = serde_json::to_string(&b).unwrap();
    let twice = edit(
        &s.body,
        "\"features\":",
        &format!("\"features\":{b_text},\"features\":"),
    );
    let r = post(rig.addr(), "/ConversionSynapse", &s.headers, &twice).unwrap();
    assert_eq!(answer(&r), predicted(&a));
    assert!(
        r.text().contains(&b_text),
        "the first object is echoed as sent"
    );

    // Keys written with escapes are the keys they decode to.
    let s = signed(&rig, "/ConversionSynapse", 1, synapse_fields(b.clone()));
    let escaped = edit(&s.body, "\"features\":", "\"fe\\u0061tures\":");
    let escaped = edit(&escaped, "\"session_id\":", "\"\\u0073ession_id\":");
    let escaped = edit(&escaped, "\"message_ratio\":", "\"message\\u005fratio\":");
    let r = post(rig.addr(), "/ConversionSynapse", &s.headers, &escaped).unwrap();
    assert_eq!(answer(&r), predicted(&b));

    // A lone surrogate is a string, as json.loads and pydantic's `str` take it.
    let mut lone = a.clone();
    lone["session_id"] = Value::Null;
    let s = signed(&rig, "/ConversionSynapse", 2, synapse_fields(lone));
    let body = edit(
        &s.body,
        "\"session_id\":null",
        "\"session_id\":\"\\ud800x\"",
    );
    let mut r = post(rig.addr(), "/ConversionSynapse", &s.headers, &body).unwrap();
    assert!(
        r.text().contains(r#""session_id":"\ud800x""#),
        "echoed as sent"
    );
    // (serde_json, unlike Python, refuses a lone surrogate: read around it.)
    r.body = edit(&r.body, r#""\ud800x""#, r#""x""#);
    assert_eq!(answer(&r), predicted(&a));

    // An integer feature with a fraction is refused, as the synapse refuses it.
    let mut frac = a.clone();
    frac["total_messages"] = serde_json::json!(9.5);
    let s = signed(&rig, "/ConversionSynapse", 3, synapse_fields(frac));
    let r = send(&rig, "/ConversionSynapse", &s);
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("total_messages: must be a whole number"),
        "{msg}"
    );
    // A whole number written as a float is fine.
    let mut whole = a.clone();
    whole["total_messages"] = serde_json::json!(9.0);
    let s = signed(&rig, "/ConversionSynapse", 4, synapse_fields(whole));
    assert_eq!(answer(&send(&rig, "/ConversionSynapse", &s)), predicted(&a));

    // Lax values mean what the synapse's pydantic makes of them: numeric
    // strings (whitespace, `_`, `.0`), booleans for 0/1 flags; the same
    // answer as the plain numbers (tests/interop/pydantic_meaning.py checks
    // thousands of such bodies against pydantic itself).
    let mut lax = a.clone();
    for (k, v) in a.as_object().unwrap() {
        let name = k.as_str();
        let Some(i) = cm_core::schema::FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
        else {
            continue;
        };
        let x = v.as_f64().unwrap();
        lax[name] = if cm_core::schema::IS_INTEGER[i] && (x == 0.0 || x == 1.0) {
            Value::Bool(x == 1.0)
        } else if cm_core::schema::IS_INTEGER[i] {
            Value::String(format!(" {x:.0}.00\u{3000}"))
        } else {
            Value::String(format!("{x:e}"))
        };
    }
    let s = signed(&rig, "/ConversionSynapse", 6, synapse_fields(lax));
    assert_eq!(answer(&send(&rig, "/ConversionSynapse", &s)), predicted(&a));
    // A negative count is an int to pydantic, so it is answered.
    let mut neg = a.clone();
    neg["total_messages"] = serde_json::json!(-3);
    let s = signed(&rig, "/ConversionSynapse", 7, synapse_fields(neg.clone()));
    assert_eq!(
        answer(&send(&rig, "/ConversionSynapse", &s)),
        predicted(&neg)
    );
    // A string pydantic cannot read as an int is refused, naming the field.
    let mut hex = a.clone();
    hex["total_messages"] = serde_json::json!("0x10");
    let s = signed(&rig, "/ConversionSynapse", 8, synapse_fields(hex));
    let r = send(&rig, "/ConversionSynapse", &s);
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("total_messages: a string that is not an integer"),
        "{msg}"
    );
    // The synapse's other fields must hold what the synapse takes, too: a
    // value it refuses is a 400 naming the field, one it takes is answered
    // (and echoed) like any other.
    let mut odd = synapse_fields(a.clone());
    odd["miner_uid"] = serde_json::json!("x");
    let s = signed(&rig, "/ConversionSynapse", 9, odd);
    let r = send(&rig, "/ConversionSynapse", &s);
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("miner_uid: a string that does not read"),
        "{msg}"
    );
    let mut lax = synapse_fields(a.clone());
    lax["miner_uid"] = serde_json::json!(" 7 ");
    lax["timeout"] = serde_json::json!("1_2.5");
    let s = signed(&rig, "/ConversionSynapse", 10, lax);
    let r = send(&rig, "/ConversionSynapse", &s);
    assert_eq!(answer(&r), predicted(&a));
    assert_eq!(
        r.json()["miner_uid"],
        serde_json::json!(" 7 "),
        "echoed as sent"
    );

    // Header values that are not printable ASCII are not echoed raw.
    let mut s = signed(&rig, "/ConversionSynapse", 5, synapse_fields(a.clone()));
    for (k, v) in s.headers.iter_mut() {
        if k == "bt_header_input_obj_features" {
            *v = "e30=é".into();
        }
    }
    let r = send(&rig, "/ConversionSynapse", &s);
    assert_eq!(answer(&r), predicted(&a));
    assert_eq!(r.header("bt_header_input_obj_features"), None);
    assert!(r.header("bt_header_dendrite_nonce").is_some());
}

#[test]
fn response_time_counts_from_the_whole_body() {
    /// How long the client holds the body back after its headers.
    const BODY_DELAY: Duration = Duration::from_millis(200);
    let rig = rig();
    let s = signed(
        &rig,
        "/ConversionSynapse",
        0,
        synapse_fields(sample_features()),
    );
    let bytes = encode_request(
        "POST",
        "/ConversionSynapse",
        rig.addr(),
        &s.headers,
        &s.body,
    );
    let split = bytes.len() - s.body.len();
    let mut c = TcpStream::connect(rig.addr()).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Headers now, the body later, as a 9.4.0 dendrite's aiohttp sends them.
    c.write_all(&bytes[..split]).unwrap();
    c.flush().unwrap();
    std::thread::sleep(BODY_DELAY);
    c.write_all(&bytes[split..]).unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rt = r.json()["response_time"].as_f64().unwrap();
    let header: f64 = r
        .header("bt_header_axon_process_time")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rt < 0.1, "response_time {rt} s includes the client's delay");
    assert!(header < 0.1, "process_time header {header} s");
    assert!(rt > 0.0);
}
