//! The success body the core writes, against a model of what a Python axon
//! answers: the request read by `serde_json`, our fields set in the tree
//! (AXON.md sections 7 and 9), compared as JSON values. Plus the byte-level
//! promises the tree cannot see: untouched members go back byte for byte,
//! the buffer bound holds, and a short buffer is an error, not a cut.

use cm_core::model::Prediction;
use cm_core::parse::{parse_body, KeyOrder, TERMINAL_KEYS};
use cm_core::respond::{max_synapse_len, write_synapse, AxonId, BufferTooSmall, Filled};
use serde_json::{json, Map, Value};

const ME: AxonId<'static> = AxonId {
    hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    ip: "127.0.0.1",
    port: 8091,
};
const P: Prediction = Prediction {
    conversion_happened: 1,
    time_to_conversion_seconds: 63.2,
    confidence: 0.875,
};
const SECONDS: f64 = 1.25e-5;

/// The request of AXON.md section 9 with our synapse's fields.
const AXON_MD: &str = r#"{"name": "ConversionSynapse", "timeout": 12.0, "total_size": 3701, "header_size": 0, "dendrite": {"status_code": null, "status_message": null, "process_time": null, "ip": "10.9.9.9", "port": null, "version": 10005000, "nonce": 1795626734383137861, "uuid": "5c06965a-e8f3-11f1-9a7d-02fc00000001", "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "signature": "0x6c15"}, "axon": {"status_code": null, "status_message": null, "process_time": null, "ip": "127.0.0.1", "port": 18393, "version": null, "nonce": null, "uuid": null, "hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "signature": null}, "computed_body_hash": "", "features": {"session_id": "s\u00e9\"x", "message_ratio": 1.25, "total_messages": 9, "e": -1.5e-7, "l": [1, 2.0, true, false, null, {}, []]}, "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}, "confidence": null, "response_time": 0.0, "miner_uid": 0}"#;

fn filled(prediction: Option<&Prediction>) -> Filled<'_> {
    Filled {
        name: "ConversionSynapse",
        prediction,
        seconds: SECONDS,
        me: ME,
    }
}

/// The core's answer to `body`.
fn written(body: &[u8], prediction: Option<&Prediction>) -> Vec<u8> {
    let parsed = parse_body(body, &mut KeyOrder::new())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    let f = filled(prediction);
    let mut out = vec![0u8; max_synapse_len(body.len(), &f)];
    let n = write_synapse(body, &parsed.layout, &f, &mut out).expect("bound holds");
    out.truncate(n);
    out
}

/// An f32 as a JSON reader sees the shortest text of it.
fn f32_value(x: f32) -> Value {
    json!(x.to_string().parse::<f64>().unwrap())
}

fn terminal(pairs: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for k in TERMINAL_KEYS {
        m.insert(k.into(), Value::Null);
    }
    for (k, v) in pairs {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m)
}

/// What a Python axon's answer holds, as a tree.
fn model(body: &[u8], prediction: Option<&Prediction>) -> Value {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    let o = v.as_object_mut().unwrap();
    o.insert("name".into(), json!("ConversionSynapse"));
    if let Some(p) = prediction {
        o.insert(
            "prediction".into(),
            json!({"conversion_happened": p.conversion_happened,
                   "time_to_conversion_seconds": f32_value(p.time_to_conversion_seconds)}),
        );
        o.insert("confidence".into(), f32_value(p.confidence));
        o.insert("response_time".into(), json!(SECONDS));
    }
    let status = [
        ("status_code", json!(200)),
        ("status_message", json!("Success")),
        ("process_time", json!(SECONDS)),
    ];
    match o.get_mut("axon") {
        Some(Value::Object(ax)) => {
            for k in TERMINAL_KEYS {
                ax.entry(k).or_insert(Value::Null);
            }
            for (k, v) in status {
                ax.insert(k.into(), v);
            }
        }
        _ => {
            let mut e = status.to_vec();
            e.push(("ip", json!(ME.ip)));
            e.push(("port", json!(ME.port)));
            e.push(("hotkey", json!(ME.hotkey)));
            o.insert("axon".into(), terminal(&e));
        }
    }
    if !o.get("dendrite").is_some_and(Value::is_object) {
        o.insert("dendrite".into(), terminal(&[]));
    }
    v
}

fn same(body: &str, prediction: Option<&Prediction>) {
    let out = written(body.as_bytes(), prediction);
    let got: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    let want = model(body.as_bytes(), prediction);
    assert_eq!(got, want, "\n{body}\n{}", String::from_utf8_lossy(&out));
}

#[test]
fn matches_the_python_axon_answer() {
    same(AXON_MD, Some(&P));
    same(AXON_MD, None);
    same(r#"{"dendrite":{},"features":{"a":1}}"#, Some(&P));
    same(
        r#"{"dendrite":{},"axon":null,"features":{"a":1}}"#,
        Some(&P),
    );
    same(
        r#"  {"dendrite" : { } , "axon" : {"port": 1}, "x": "}{][,:"}  "#,
        Some(&P),
    );
    same("{}", Some(&P));
    same("{}", None);
    same(r#"{"dendrite":null,"axon":[1]}"#, None);
    same(r#"{"axon":{ }, "dendrite":7}"#, Some(&P));
}

#[test]
fn untouched_members_go_back_byte_for_byte() {
    let out = String::from_utf8(written(AXON_MD.as_bytes(), Some(&P))).unwrap();
    // Everything up to the axon block's first value is the request's.
    let cut = AXON_MD.find(r#""axon": {"status_code": "#).unwrap() + 24;
    assert_eq!(out[..cut], AXON_MD[..cut]);
    assert!(out.contains(r#""nonce": 1795626734383137861"#));
    assert!(out.contains(r#""e": -1.5e-7"#));
    assert!(out.contains(r#""session_id": "s\u00e9\"x""#));
    assert!(out
        .contains(r#""prediction": {"conversion_happened":1,"time_to_conversion_seconds":63.2}"#));
    assert!(
        out.contains(r#""axon": {"status_code": 200, "status_message": "Success", "process_time": 0.0000125, "ip": "127.0.0.1""#),
        "{out}"
    );
    assert!(out.contains(r#""confidence": 0.875, "response_time": 0.0000125, "miner_uid": 0}"#));
}

#[test]
fn repeated_and_escaped_members_are_the_ones_python_keeps() {
    // Python keeps the last of a repeated key; the answer rewrites that one.
    let body = r#"{"name":"a","dendrite":{},"n\u0061me":"b","axon":{"status_code":1,"st\u0061tus_code":2},"axon":{"port":3}}"#;
    same(body, Some(&P));
    let out = String::from_utf8(written(body.as_bytes(), Some(&P))).unwrap();
    assert!(out.starts_with(r#"{"name":"a","dendrite":{},"n\u0061me":"ConversionSynapse","axon":{"status_code":1,"st\u0061tus_code":2},"axon":{"port":3,"#));
}

#[test]
fn bound_holds_at_the_worst_and_short_buffers_fail() {
    let p = Prediction {
        conversion_happened: 1,
        time_to_conversion_seconds: -1.1754942e-38,
        confidence: -1.1754942e-38,
    };
    let quotes = "\"\u{1}".repeat(40);
    let me = AxonId {
        hotkey: &quotes,
        ip: &quotes,
        port: 65535,
    };
    let f = Filled {
        name: &quotes,
        prediction: Some(&p),
        seconds: -2.2250738585072014e-308,
        me,
    };
    for body in [
        "{}",
        r#"{"axon":0}"#,
        r#"{"name":0,"axon":{},"dendrite":0,"prediction":0,"confidence":0,"response_time":0}"#,
        r#"{"axon":{"status_code":0,"status_message":0,"process_time":0}}"#,
    ] {
        let b = body.as_bytes();
        let layout = parse_body(b, &mut KeyOrder::new()).unwrap().layout;
        let cap = max_synapse_len(b.len(), &f);
        let mut out = vec![0u8; cap];
        let n = write_synapse(b, &layout, &f, &mut out).unwrap();
        assert!(n <= cap, "{body}: {n} > {cap}");
        serde_json::from_slice::<Value>(&out[..n]).unwrap();
        for short in [0, 1, n / 2, n - 1] {
            let mut out = vec![0u8; short];
            assert_eq!(
                write_synapse(b, &layout, &f, &mut out),
                Err(BufferTooSmall),
                "{body} into {short}"
            );
        }
    }
}

#[test]
fn never_panics_on_truncations() {
    let b = AXON_MD.as_bytes();
    for n in 0..b.len() {
        if let Ok(parsed) = parse_body(&b[..n], &mut KeyOrder::new()) {
            let f = filled(Some(&P));
            let mut out = vec![0u8; max_synapse_len(n, &f)];
            let len = write_synapse(&b[..n], &parsed.layout, &f, &mut out).unwrap();
            serde_json::from_slice::<Value>(&out[..len]).unwrap();
        }
    }
}

/// Random documents: the answer always equals the model's.
#[test]
fn random_documents_agree_with_the_model() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
    fn ws(r: &mut Rng) -> &'static str {
        [" ", "", "\n", "  ", "\t", ""][r.below(6) as usize]
    }
    fn string(r: &mut Rng) -> String {
        let parts = [
            "a", "name", "axon", "\\\"", "\\u00e9", "é", "}", "{", ",", ":", "[", "dendrite", "x y",
        ];
        let n = r.below(4);
        let body: String = (0..n)
            .map(|_| parts[r.below(parts.len() as u64) as usize])
            .collect();
        format!("\"{body}\"")
    }
    fn key(r: &mut Rng, k: &str) -> String {
        // Sometimes spelled with an escape, which means the same key.
        if r.below(4) == 0 {
            let mut chars = k.chars();
            let c = chars.next().unwrap();
            format!("\"\\u{:04x}{}\"", c as u32, chars.as_str())
        } else {
            format!("\"{k}\"")
        }
    }
    fn value(r: &mut Rng, depth: u32) -> String {
        let pick = if depth > 4 { r.below(5) } else { r.below(7) };
        match pick {
            0 => "null".into(),
            1 => ["true", "false"][r.below(2) as usize].into(),
            2 => [
                "0",
                "-1",
                "1.5",
                "1e-7",
                "-0.25E+3",
                "1795626734383137861",
                "12.0",
            ][r.below(7) as usize]
                .into(),
            3 | 4 => string(r),
            5 => {
                let n = r.below(4);
                let items: Vec<String> = (0..n)
                    .map(|_| format!("{}{}{}", ws(r), value(r, depth + 1), ws(r)))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let n = r.below(5);
                let keys = ["status_code", "port", "process_time", "k", "hotkey"];
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let k = keys[r.below(keys.len() as u64) as usize];
                        format!(
                            "{}{}{}:{}{}",
                            ws(r),
                            key(r, k),
                            ws(r),
                            ws(r),
                            value(r, depth + 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let mut fields = Vec::new();
        for k in [
            "name",
            "axon",
            "dendrite",
            "prediction",
            "confidence",
            "response_time",
            "features",
            "miner_uid",
            "axon",
            "name",
        ] {
            if r.below(3) > 0 {
                let k = key(&mut r, k);
                let v = value(&mut r, 0);
                fields.push(format!("{k}{}:{}{v}", ws(&mut r), ws(&mut r)));
            }
        }
        for i in (1..fields.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            fields.swap(i, j);
        }
        let doc = format!(
            "{}{{{}}}{}",
            ws(&mut r),
            fields.join(&format!(",{}", ws(&mut r))),
            ws(&mut r)
        );
        assert!(
            serde_json::from_str::<Value>(&doc).is_ok(),
            "generator made invalid JSON: {doc}"
        );
        let prediction = if r.below(2) == 0 { Some(&P) } else { None };
        same(&doc, prediction);
    }
}
