//! The HTTP side of answers a Python dendrite accepts (AXON.md §7-9): the
//! headers, and the JSON error body.
//!
//! The success body itself is written by the core (`cm_core::serve`): the
//! request echoed with our outputs and the axon status written in. Here the
//! same status goes into lowercase `bt_header_axon_*` headers, and the
//! request headers a Python axon echoes are echoed, but only values that
//! are printable ASCII: a header value is bytes, and anything else (raw
//! UTF-8, obs-text) is dropped rather than sent back as it came. Errors are
//! `{"message": ...}` with the matching status headers, so the validator
//! records our code and message instead of a 422.

use crate::gate::{self, Reject};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub use cm_core::parse::TERMINAL_KEYS;
pub use cm_core::respond::AxonId;

/// Request headers echoed on success, as the Python axon does (each was
/// already validated or is free text the dendrite stores as-is).
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

/// Whether a request header value may be echoed: at most
/// [`MAX_ECHO_LEN`] bytes, all printable ASCII (space to `~`).
fn echoable(v: &HeaderValue) -> bool {
    v.len() <= MAX_ECHO_LEN && v.as_bytes().iter().all(|b| (b' '..=b'~').contains(b))
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
    match req_ip.filter(|s| !s.is_empty() && s.len() <= MAX_ECHO_LEN && s.is_ascii()) {
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
        if let Some(v) = req.get(k).filter(|v| echoable(v)) {
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
        if k.as_str().starts_with(INPUT_OBJ_PREFIX) && echoable(v) {
            h.append(k.clone(), v.clone());
        }
    }
    if let Some(v) = req.get(gate::H_BODY_HASH).filter(|v| echoable(v)) {
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

    #[test]
    fn non_ascii_header_values_are_not_echoed() {
        let mut req = HeaderMap::new();
        req.insert(
            "bt_header_dendrite_uuid",
            HeaderValue::from_bytes("uuid-é".as_bytes()).unwrap(),
        );
        req.insert(
            "bt_header_dendrite_ip",
            HeaderValue::from_bytes(b"10.0.0.\xff").unwrap(),
        );
        req.insert(
            "bt_header_input_obj_features",
            HeaderValue::from_bytes(b"e3\x80=").unwrap(),
        );
        req.insert(
            "bt_header_axon_ip",
            HeaderValue::from_bytes("1.2.3.4é".as_bytes()).unwrap(),
        );
        req.insert(
            "bt_header_dendrite_nonce",
            HeaderValue::from_static("1795626734383137861"),
        );
        let r = success(b"{}".to_vec(), "ConversionSynapse", 0.5, &req, &ME);
        let h = r.headers();
        assert!(h.get("bt_header_dendrite_uuid").is_none());
        assert!(h.get("bt_header_dendrite_ip").is_none());
        assert!(h.get("bt_header_input_obj_features").is_none());
        assert_eq!(h["bt_header_axon_ip"], ME.ip);
        assert_eq!(h["bt_header_dendrite_nonce"], "1795626734383137861");
        for (_, v) in h.iter() {
            assert!(v.to_str().is_ok(), "{v:?}");
        }
    }
}
