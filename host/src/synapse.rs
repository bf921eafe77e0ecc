//! Building answers a Python dendrite accepts (AXON.md §7-9).
//!
//! Success: the request JSON echoed as received (kept as `serde_json::Value`,
//! so 19-digit nonces stay exact), our outputs filled in, and the axon block
//! set to 200/"Success"/process_time, in both the JSON and lowercase
//! `bt_header_axon_*` headers. The dendrite copies every field of the answer
//! over its local synapse, so anything we did not echo would be reset on the
//! validator's side; `dendrite` is never sent as null (that crashes it).
//! Errors: `{"message": ...}` with the matching status headers, so the
//! validator records our code and message instead of a 422.

use crate::gate::{self, Reject};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{Map, Number, Value};

/// Keys of a bittensor `TerminalInfo`; all ten are always present.
pub const TERMINAL_KEYS: [&str; 10] = [
    "status_code",
    "status_message",
    "process_time",
    "ip",
    "port",
    "version",
    "nonce",
    "uuid",
    "hotkey",
    "signature",
];

/// Request headers echoed verbatim on success, as the Python axon does
/// (each was already validated or is free text the dendrite stores as-is).
const ECHO_TEXT: [&str; 6] = [
    "bt_header_dendrite_ip",
    "bt_header_dendrite_version",
    "bt_header_dendrite_nonce",
    "bt_header_dendrite_uuid",
    "bt_header_dendrite_hotkey",
    "bt_header_dendrite_signature",
];
/// Echoed only when they parse as integers: the dendrite int()s them and a
/// failure there turns the whole answer into a 422.
const ECHO_INT: [&str; 2] = ["header_size", "total_size"];
/// Prefix of the input-object headers, echoed as the Python axon does.
const INPUT_OBJ_PREFIX: &str = "bt_header_input_obj_";
/// Longest header value we echo.
const MAX_ECHO_LEN: usize = 256;

/// What the model answered, in the synapse's units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answer {
    pub conversion_happened: u8,
    pub time_to_conversion_seconds: f64,
    pub confidence: f64,
}

/// Our identity as the axon.
pub struct AxonId<'a> {
    pub hotkey: &'a str,
    pub ip: &'a str,
    pub port: u16,
}

/// f32 model outputs as the shortest f64 that prints like the f32, so a
/// validator sees `63.2`, not `63.20000076293945`.
pub fn f32_to_json(x: f32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let mut buf = [0u8; 32];
    let n = {
        use std::io::Write;
        let mut w = &mut buf[..];
        let _ = write!(w, "{x}");
        32 - w.len()
    };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(x as f64)
}

fn num(x: f64) -> Value {
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn terminal(entries: &[(&str, Value)]) -> Value {
    let mut m = Map::with_capacity(TERMINAL_KEYS.len());
    for k in TERMINAL_KEYS {
        m.insert(k.to_string(), Value::Null);
    }
    for (k, v) in entries {
        m.insert((*k).to_string(), v.clone());
    }
    Value::Object(m)
}

/// Fills a request object into a success body.
pub fn fill_success(
    body: &mut Map<String, Value>,
    name: &str,
    answer: Option<&Answer>,
    response_time_s: f64,
    process_time_s: f64,
    me: &AxonId<'_>,
) {
    body.insert("name".into(), Value::String(name.into()));
    if let Some(a) = answer {
        let mut p = Map::with_capacity(2);
        p.insert(
            "conversion_happened".into(),
            Value::from(a.conversion_happened),
        );
        p.insert(
            "time_to_conversion_seconds".into(),
            num(a.time_to_conversion_seconds),
        );
        body.insert("prediction".into(), Value::Object(p));
        body.insert("confidence".into(), num(a.confidence));
        body.insert("response_time".into(), num(response_time_s));
    }
    let status = [
        ("status_code", Value::from(200u16)),
        ("status_message", Value::String("Success".into())),
        ("process_time", num(process_time_s)),
    ];
    match body.get_mut("axon") {
        Some(Value::Object(ax)) => {
            for k in TERMINAL_KEYS {
                ax.entry(k).or_insert(Value::Null);
            }
            for (k, v) in status {
                ax.insert(k.into(), v);
            }
        }
        _ => {
            let mut e: Vec<(&str, Value)> = status.into_iter().collect();
            e.push(("hotkey", Value::String(me.hotkey.into())));
            e.push(("ip", Value::String(me.ip.into())));
            e.push(("port", Value::from(me.port)));
            body.insert("axon".into(), terminal(&e));
        }
    }
    match body.get_mut("dendrite") {
        Some(Value::Object(d)) => {
            for k in TERMINAL_KEYS {
                d.entry(k).or_insert(Value::Null);
            }
        }
        _ => {
            body.insert("dendrite".into(), terminal(&[]));
        }
    }
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Replaces anything a header value cannot carry.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn axon_headers(
    h: &mut HeaderMap,
    status: u16,
    message: &str,
    process_time_s: f64,
    req: Option<&HeaderMap>,
    me: &AxonId<'_>,
) {
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    put(h, "bt_header_axon_status_code", itoa_u16(status).as_str());
    put(h, "bt_header_axon_status_message", &header_safe(message));
    put(
        h,
        "bt_header_axon_process_time",
        &format!("{process_time_s}"),
    );
    put(h, "bt_header_axon_hotkey", me.hotkey);
    let req_ip = req
        .and_then(|r| r.get("bt_header_axon_ip"))
        .and_then(|v| v.to_str().ok());
    let req_port = req
        .and_then(|r| r.get("bt_header_axon_port"))
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u16>().ok());
    match req_ip.filter(|s| !s.is_empty() && s.len() <= MAX_ECHO_LEN) {
        Some(ip) => put(h, "bt_header_axon_ip", ip),
        None => put(h, "bt_header_axon_ip", me.ip),
    }
    put(
        h,
        "bt_header_axon_port",
        itoa_u16(req_port.unwrap_or(me.port)).as_str(),
    );
}

fn itoa_u16(v: u16) -> String {
    v.to_string()
}

/// Copies the request headers a Python axon echoes on success.
fn echo_request_headers(h: &mut HeaderMap, req: &HeaderMap, name: &str) {
    if let Ok(v) = HeaderValue::from_str(name) {
        h.insert(HeaderName::from_static("name"), v);
    }
    if let Some(t) = req
        .get(gate::H_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| gate::parse_float_header(s.trim()).map(|_| s))
    {
        put(h, "timeout", t.trim());
    }
    for k in ECHO_TEXT {
        if let Some(v) = req.get(k).filter(|v| v.len() <= MAX_ECHO_LEN) {
            h.insert(HeaderName::from_static(k), v.clone());
        }
    }
    for k in ECHO_INT {
        if let Some(v) = req.get(k).filter(|v| {
            v.to_str()
                .map(|s| s.trim().parse::<u64>().is_ok())
                .unwrap_or(false)
        }) {
            h.insert(HeaderName::from_static(k), v.clone());
        }
    }
    for (k, v) in req.iter() {
        if k.as_str().starts_with(INPUT_OBJ_PREFIX) && v.len() <= MAX_ECHO_LEN {
            h.append(k.clone(), v.clone());
        }
    }
    if let Some(v) = req
        .get(gate::H_BODY_HASH)
        .filter(|v| v.len() <= MAX_ECHO_LEN)
    {
        h.insert(HeaderName::from_static(gate::H_BODY_HASH), v.clone());
    }
}

/// A 200 answer with the full header set.
pub fn success(
    body: Vec<u8>,
    name: &str,
    process_time_s: f64,
    req: &HeaderMap,
    me: &AxonId<'_>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    echo_request_headers(h, req, name);
    axon_headers(h, 200, "Success", process_time_s, Some(req), me);
    r
}

/// `{"message": ...}` with the matching status headers.
pub fn error(
    rej: &Reject,
    process_time_s: f64,
    req: Option<&HeaderMap>,
    me: &AxonId<'_>,
) -> Response<Full<Bytes>> {
    let msg = rej.message();
    let status = rej.reason.status();
    let body = serde_json::to_vec(&serde_json::json!({ "message": msg }))
        .unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    axon_headers(r.headers_mut(), status, &msg, process_time_s, req, me);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;

    const ME: AxonId<'static> = AxonId {
        hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
        ip: "127.0.0.1",
        port: 8091,
    };

    #[test]
    fn f32_prints_short() {
        assert_eq!(f32_to_json(63.2), 63.2);
        assert_eq!(f32_to_json(-1.0), -1.0);
        assert_eq!(f32_to_json(0.998), 0.998);
        assert_eq!(f32_to_json(f32::NAN), 0.0);
    }

    #[test]
    fn success_echoes_and_fills() {
        let req = r#"{"name": "ConversionSynapse", "timeout": 12.0, "total_size": 3701, "header_size": 0,
          "dendrite": {"status_code": null, "status_message": null, "process_time": null, "ip": "10.9.9.9", "port": null, "version": 10005000, "nonce": 1795626734383137861, "uuid": "u", "hotkey": "h", "signature": "0x00"},
          "axon": {"status_code": null, "status_message": null, "process_time": null, "ip": "127.0.0.1", "port": 18393, "version": null, "nonce": null, "uuid": null, "hotkey": "x", "signature": null},
          "computed_body_hash": "", "features": {"session_id": "s", "message_ratio": 1.25}, "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
          "confidence": null, "response_time": 0.0, "miner_uid": 3}"#;
        let mut v: Value = serde_json::from_str(req).unwrap();
        let a = Answer {
            conversion_happened: 1,
            time_to_conversion_seconds: 63.2,
            confidence: 0.9,
        };
        fill_success(
            v.as_object_mut().unwrap(),
            "ConversionSynapse",
            Some(&a),
            1e-5,
            2e-5,
            &ME,
        );
        let out: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(out["dendrite"]["nonce"].as_u64(), Some(1795626734383137861));
        assert_eq!(out["axon"]["status_code"], 200);
        assert_eq!(out["axon"]["status_message"], "Success");
        assert_eq!(out["axon"]["port"], 18393);
        assert_eq!(out["prediction"]["conversion_happened"], 1);
        assert_eq!(out["prediction"]["time_to_conversion_seconds"], 63.2);
        assert_eq!(out["confidence"], 0.9);
        assert_eq!(out["miner_uid"], 3);
        assert_eq!(out["features"]["message_ratio"], 1.25);
        assert_eq!(out["timeout"], 12.0);
    }

    #[test]
    fn missing_terminals_are_never_null() {
        let mut v = serde_json::json!({"dendrite": null, "axon": 5});
        fill_success(v.as_object_mut().unwrap(), "Synapse", None, 0.0, 0.0, &ME);
        assert!(v["dendrite"].is_object());
        assert_eq!(v["dendrite"].as_object().unwrap().len(), 10);
        assert_eq!(v["axon"]["status_code"], 200);
        assert_eq!(v["axon"]["hotkey"], ME.hotkey);
        assert!(
            v.get("prediction").is_none(),
            "a ping carries no prediction"
        );
    }

    #[test]
    fn error_has_json_and_headers() {
        let rej = Reject::new(Reason::Blacklisted, "not a validator.");
        let r = error(&rej, 0.001, None, &ME);
        assert_eq!(r.status(), 403);
        let h = r.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["bt_header_axon_status_code"], "403");
        assert_eq!(
            h["bt_header_axon_status_message"],
            "Forbidden. Key is blacklisted: not a validator."
        );
        assert_eq!(h["bt_header_axon_port"], "8091");
    }

    #[test]
    fn success_headers_echo_and_parse() {
        let mut req = HeaderMap::new();
        req.insert("timeout", HeaderValue::from_static("12.0"));
        req.insert("total_size", HeaderValue::from_static("big"));
        req.insert("header_size", HeaderValue::from_static("464"));
        req.insert("bt_header_axon_port", HeaderValue::from_static("18393"));
        req.insert(
            "bt_header_dendrite_nonce",
            HeaderValue::from_static("1795626734383137861"),
        );
        req.insert(
            "bt_header_input_obj_features",
            HeaderValue::from_static("e30="),
        );
        let r = success(b"{}".to_vec(), "ConversionSynapse", 0.5, &req, &ME);
        let h = r.headers();
        assert_eq!(h["name"], "ConversionSynapse");
        assert_eq!(h["timeout"], "12.0");
        assert!(
            h.get("total_size").is_none(),
            "unparseable sizes are not echoed"
        );
        assert_eq!(h["header_size"], "464");
        assert_eq!(h["bt_header_axon_port"], "18393");
        assert_eq!(h["bt_header_axon_status_code"], "200");
        assert_eq!(h["bt_header_axon_process_time"], "0.5");
        assert_eq!(h["bt_header_dendrite_nonce"], "1795626734383137861");
        assert_eq!(h["bt_header_input_obj_features"], "e30=");
    }
}
