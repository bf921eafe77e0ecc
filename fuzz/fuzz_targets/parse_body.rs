//! Fuzz target `parse_body`: any bytes a client can send as a request body.
//!
//! The body parser is the first code that reads attacker-chosen bytes after
//! the gate, so it is fuzzed end to end the way the server uses it: parse,
//! and when the parse succeeds, predict with the model compiled into the
//! binary and write the JSON answer. Besides "never panics", every accepted
//! body must give an answer that obeys the subnet's output rules, and the
//! writer must fit any answer into [`MAX_PREDICTION_LEN`] bytes and refuse a
//! too-small buffer with an error instead of a panic or a truncated answer.
//! The server's whole path (`cm_core::serve::serve`) runs on every body too:
//! it must give exactly the parser's verdict, and a success body that fits
//! the buffer it promised and is UTF-8.
#![no_main]

use cm_core::kernels::Kernel;
use cm_core::model::Prediction;
use cm_core::parse::{parse_request, KeyOrder, ParseError};
use cm_core::respond::{write_prediction, BufferTooSmall, MAX_PREDICTION_LEN};
use cm_core::rules;
use cm_core::schema::{IS_INTEGER, N_FEATURES};
use cm_core::serve::{capacity, serve, Refused, Route, Server};
use libfuzzer_sys::fuzz_target;

/// A buffer too small for any answer (the shortest is over 60 bytes).
const SMALL_BUF: usize = 16;
/// Bytes of the fixed text around the two floats, for the short-buffer check.
const PREFIX: &[u8] = b"{\"conversion_happened\":";

fuzz_target!(|body: &[u8]| {
    check_serve(body);
    let features = match parse_request(body) {
        Ok(f) => f,
        Err(e) => {
            check_error(e);
            return;
        }
    };
    // The presence mask fits; an integer feature is whole (or infinite,
    // beyond f32), never NaN. Float features may be NaN or infinite, as
    // the synapse's floats may: the kernels clamp them.
    assert_eq!(features.present >> N_FEATURES, 0);
    for (i, v) in features.values.iter().enumerate() {
        if features.is_present(i) && IS_INTEGER[i] {
            assert!(v.is_infinite() || v.fract() == 0.0, "feature {i} accepted as {v}");
        }
    }
    assert!(features.session_id.is_some());

    let model = cm_model::model();
    let p = model.predict(&features, Kernel::Scalar);
    check_rules(&p, model.time_min, model.time_max);

    let mut small = [0u8; SMALL_BUF];
    assert_eq!(write_prediction(&p, &mut small), Err(BufferTooSmall));
    let mut large = [0u8; MAX_PREDICTION_LEN];
    let n = write_prediction(&p, &mut large).expect("MAX_PREDICTION_LEN is enough");
    assert!(n <= MAX_PREDICTION_LEN);
    assert!(large[..n].starts_with(PREFIX));
    assert_eq!(large[n - 1], b'}');
    assert!(core::str::from_utf8(&large[..n]).is_ok());
});

/// The server's path agrees with the parser and keeps its buffer promise.
fn check_serve(body: &[u8]) {
    let server = Server {
        model: cm_model::model(),
        kernel: Kernel::Scalar,
        me: cm_core::respond::AxonId {
            hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
            ip: "127.0.0.1",
            port: 8091,
        },
    };
    let mut out = vec![0u8; capacity(body.len(), Route::Conversion, &server)];
    let served = serve(
        body,
        Route::Conversion,
        &server,
        &mut KeyOrder::new(),
        || 1e-5,
        &mut out,
    );
    match (served, parse_request(body)) {
        (Ok(s), Ok(_)) => {
            assert!(s.len <= out.len());
            assert!(core::str::from_utf8(&out[..s.len]).is_ok());
        }
        (Err(Refused::Parse(a)), Err(b)) => assert_eq!(a, b),
        (got, want) => panic!("serve {got:?}, parse {want:?}"),
    }
}

/// The subnet's output rules (`cm_core::rules`), and the model's own
/// promise that a conversion's time lies inside its clamp.
fn check_rules(p: &Prediction, time_min: f32, time_max: f32) {
    if let Err(broken) = rules::check(p) {
        panic!("{broken}: {p:?}");
    }
    if p.conversion_happened == 1 {
        let t = p.time_to_conversion_seconds;
        assert!(
            (time_min..=time_max).contains(&t),
            "time {t} outside the clamp"
        );
    }
}

/// Every refusal can be shown to the client, and one about a field names it.
fn check_error(e: ParseError) {
    use std::fmt::Write as _;
    let mut s = String::new();
    write!(s, "{e}").expect("Display does not fail");
    assert!(!s.is_empty());
    if let Some(field) = e.field() {
        assert!(s.starts_with(field), "{s:?} does not name {field}");
    }
}
