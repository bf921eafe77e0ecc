//! The success body by splicing: the request bytes with our fields swapped in.
//!
//! Echoing through `serde_json::Value` (parse to a tree, edit, serialize)
//! cost more than the model itself; the answer differs from the request in
//! only six top-level values (`name`, `prediction`, `confidence`,
//! `response_time`, and the `axon` block's status). So we scan the top
//! level once, validating the JSON grammar on the way (every string, number
//! and nesting level, with a depth limit), and copy the request around the
//! replaced spans. Every value we do not own goes back byte for byte, which
//! is a stricter echo than a re-serialization. Anything unusual (escaped
//! top-level keys, a repeated key we replace, a `dendrite` that is not an
//! object, invalid UTF-8, too deep) returns `None` and the caller takes the
//! `Value` path, which handles every valid JSON document.

use crate::synapse::{self, Answer, AxonId};
use serde_json::Value;

/// Deepest nesting we scan (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 128;

/// Top-level keys whose values we replace or inspect.
const KEYS: [&str; 6] = [
    "name",
    "axon",
    "dendrite",
    "prediction",
    "confidence",
    "response_time",
];
const K_NAME: usize = 0;
const K_AXON: usize = 1;
const K_DENDRITE: usize = 2;
const K_PREDICTION: usize = 3;
const K_CONFIDENCE: usize = 4;
const K_RESPONSE_TIME: usize = 5;

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End of the string starting at `b[i] == '"'`; checks escapes and control bytes.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = b.get(i + 2..i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
    None
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// End of the number at `i` (RFC 8259 grammar).
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return None;
        }
        i = j;
    }
    Some(i)
}

/// End of the value starting at `i` (no leading whitespace).
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                if b.get(j) != Some(&b'"') {
                    return None;
                }
                j = ws(b, string_end(b, j)?);
                if b.get(j) != Some(&b':') {
                    return None;
                }
                j = ws(b, value_end(b, ws(b, j + 1), depth + 1)?);
                match b.get(j)? {
                    b',' => j = ws(b, j + 1),
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'[' => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Some(j + 1);
            }
            loop {
                j = ws(b, value_end(b, j, depth + 1)?);
                match b.get(j)? {
                    b',' => j = ws(b, j + 1),
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b't' => b.get(i..i + 4).filter(|s| *s == b"true").map(|_| i + 4),
        b'f' => b.get(i..i + 5).filter(|s| *s == b"false").map(|_| i + 5),
        b'n' => b.get(i..i + 4).filter(|s| *s == b"null").map(|_| i + 4),
        _ => number_end(b, i),
    }
}

/// Byte spans of the interesting top-level values, and where the object closes.
struct TopLevel {
    spans: [Option<(usize, usize)>; KEYS.len()],
    close: usize,
    empty: bool,
}

fn scan(b: &[u8]) -> Option<TopLevel> {
    let mut t = TopLevel {
        spans: [None; KEYS.len()],
        close: 0,
        empty: true,
    };
    let mut j = ws(b, 0);
    if b.get(j) != Some(&b'{') {
        return None;
    }
    j = ws(b, j + 1);
    if b.get(j) == Some(&b'}') {
        t.close = j;
        return (ws(b, j + 1) == b.len()).then_some(t);
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return None;
        }
        let kend = string_end(b, j)?;
        let key = &b[j + 1..kend - 1];
        if key.contains(&b'\\') {
            return None;
        }
        j = ws(b, kend);
        if b.get(j) != Some(&b':') {
            return None;
        }
        let vstart = ws(b, j + 1);
        let vend = value_end(b, vstart, 1)?;
        if let Some(k) = KEYS.iter().position(|k| k.as_bytes() == key) {
            if t.spans[k].is_some() {
                return None;
            }
            t.spans[k] = Some((vstart, vend));
        }
        t.empty = false;
        j = ws(b, vend);
        match b.get(j)? {
            b',' => j = ws(b, j + 1),
            b'}' => {
                t.close = j;
                return (ws(b, j + 1) == b.len()).then_some(t);
            }
            _ => return None,
        }
    }
}

fn json_f64(x: f64) -> String {
    match serde_json::Number::from_f64(x) {
        Some(n) => n.to_string(),
        None => "null".into(),
    }
}

/// The success body, or `None` when the caller must take the `Value` path.
pub fn splice_success(
    body: &[u8],
    name: &str,
    answer: Option<&Answer>,
    response_time_s: f64,
    process_time_s: f64,
    me: &AxonId<'_>,
) -> Option<Vec<u8>> {
    std::str::from_utf8(body).ok()?;
    let t = scan(body)?;
    match t.spans[K_DENDRITE] {
        Some((s, _)) if body[s] == b'{' => {}
        _ => return None,
    }
    // The axon block: small, so edit it as a tree.
    let axon_json = {
        let mut holder = serde_json::Map::new();
        if let Some((s, e)) = t.spans[K_AXON] {
            if body[s] == b'{' {
                let v: Value = serde_json::from_slice(&body[s..e]).ok()?;
                holder.insert("axon".into(), v);
            }
        }
        holder.insert("dendrite".into(), Value::Object(serde_json::Map::new()));
        synapse::fill_success(&mut holder, name, None, response_time_s, process_time_s, me);
        serde_json::to_string(holder.get("axon")?).ok()?
    };
    let mut repl: Vec<(usize, String)> = Vec::with_capacity(5);
    let mut missing: Vec<(usize, String)> = Vec::with_capacity(5);
    let mut put = |k: usize, v: String| match t.spans[k] {
        Some(_) => repl.push((k, v)),
        None => missing.push((k, v)),
    };
    put(K_NAME, serde_json::to_string(name).ok()?);
    put(K_AXON, axon_json);
    if let Some(a) = answer {
        put(
            K_PREDICTION,
            format!(
                "{{\"conversion_happened\":{},\"time_to_conversion_seconds\":{}}}",
                a.conversion_happened,
                json_f64(a.time_to_conversion_seconds)
            ),
        );
        put(K_CONFIDENCE, json_f64(a.confidence));
        put(K_RESPONSE_TIME, json_f64(response_time_s));
    }
    repl.sort_by_key(|(k, _)| t.spans[*k].map(|s| s.0));
    let mut out = Vec::with_capacity(body.len() + 256);
    let mut at = 0;
    for (k, v) in &repl {
        let (s, e) = t.spans[*k]?;
        out.extend_from_slice(&body[at..s]);
        out.extend_from_slice(v.as_bytes());
        at = e;
    }
    out.extend_from_slice(&body[at..t.close]);
    let mut first = t.empty;
    for (k, v) in &missing {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(KEYS[*k].as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&body[t.close..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: AxonId<'static> = AxonId {
        hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
        ip: "127.0.0.1",
        port: 8091,
    };
    const A: Answer = Answer {
        conversion_happened: 1,
        time_to_conversion_seconds: 63.2,
        confidence: 0.875,
    };

    fn via_value(body: &[u8], answer: Option<&Answer>) -> Value {
        let mut v: Value = serde_json::from_slice(body).unwrap();
        synapse::fill_success(
            v.as_object_mut().unwrap(),
            "ConversionSynapse",
            answer,
            1e-4,
            1e-4,
            &ME,
        );
        v
    }

    fn same(body: &str, answer: Option<&Answer>) {
        let out = splice_success(
            body.as_bytes(),
            "ConversionSynapse",
            answer,
            1e-4,
            1e-4,
            &ME,
        )
        .unwrap_or_else(|| panic!("splice refused {body}"));
        let got: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        let mut want = via_value(body.as_bytes(), answer);
        // The Value path also fills missing TerminalInfo keys of `dendrite`; splice leaves it verbatim.
        want["dendrite"] = got["dendrite"].clone();
        assert_eq!(got, want, "\n{}", String::from_utf8_lossy(&out));
    }

    const AXON_MD: &str = r#"{"name": "ConversionSynapse", "timeout": 12.0, "total_size": 3701, "header_size": 0, "dendrite": {"status_code": null, "status_message": null, "process_time": null, "ip": "10.9.9.9", "port": null, "version": 10005000, "nonce": 1795626734383137861, "uuid": "5c06965a-e8f3-11f1-9a7d-02fc00000001", "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "signature": "0x6c15"}, "axon": {"status_code": null, "status_message": null, "process_time": null, "ip": "127.0.0.1", "port": 18393, "version": null, "nonce": null, "uuid": null, "hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "signature": null}, "computed_body_hash": "", "features": {"session_id": "s\u00e9\"x", "message_ratio": 1.25, "total_messages": 9, "e": -1.5e-7, "l": [1, 2.0, true, false, null, {}, []]}, "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}, "confidence": null, "response_time": 0.0, "miner_uid": 0}"#;

    #[test]
    fn matches_the_value_path() {
        same(AXON_MD, Some(&A));
        same(AXON_MD, None);
        same(r#"{"dendrite":{},"features":{"a":1}}"#, Some(&A));
        same(
            r#"{"dendrite":{},"axon":null,"features":{"a":1}}"#,
            Some(&A),
        );
        same(
            r#"  {"dendrite" : { } , "axon" : {"port": 1}, "x": "}{][,:"}  "#,
            Some(&A),
        );
    }

    #[test]
    fn echoes_untouched_bytes_verbatim() {
        let out = splice_success(
            AXON_MD.as_bytes(),
            "ConversionSynapse",
            Some(&A),
            0.0,
            0.0,
            &ME,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(r#""nonce": 1795626734383137861"#));
        assert!(s.contains(r#""e": -1.5e-7"#));
        assert!(s.contains(
            r#""prediction": {"conversion_happened":1,"time_to_conversion_seconds":63.2}"#
        ));
        assert!(s.contains(r#""confidence": 0.875"#));
    }

    #[test]
    fn refuses_what_it_cannot_splice() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"dendrite":null}"#,
            r#"{"features":{}}"#,
            r#"{"dendrite":{},"name":"a","name":"b"}"#,
            r#"{"dendrite":{},"n\u0061me":"a"}"#,
            r#"{"dendrite":{},"x":01}"#,
            r#"{"dendrite":{},"x":1.}"#,
            r#"{"dendrite":{},"x":"\q"}"#,
            r#"{"dendrite":{},"x":tru}"#,
            r#"{"dendrite":{},"x":1,}"#,
            r#"{"dendrite":{}} x"#,
            "{\"dendrite\":{},\"x\":\"\u{1}\"}",
        ] {
            assert!(
                splice_success(bad.as_bytes(), "S", Some(&A), 0.0, 0.0, &ME).is_none(),
                "{bad}"
            );
        }
        let deep = format!(
            "{{\"dendrite\":{{}},\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(splice_success(deep.as_bytes(), "S", None, 0.0, 0.0, &ME).is_none());
        assert!(splice_success(&[b'{', 0xff, b'}'], "S", None, 0.0, 0.0, &ME).is_none());
    }

    #[test]
    fn never_panics_on_truncations() {
        let b = AXON_MD.as_bytes();
        for n in 0..b.len() {
            let r = splice_success(&b[..n], "S", Some(&A), 0.0, 0.0, &ME);
            if let Some(out) = r {
                serde_json::from_slice::<Value>(&out).unwrap();
            }
        }
    }

    /// Random documents: splice agrees with the `Value` path whenever it
    /// answers, and answers for every document without escaped keys.
    #[test]
    fn random_documents_agree_with_the_value_path() {
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
                "a", "name", "axon", "\\\"", "\\u00e9", "é", "}", "{", ",", ":", "[", "dendrite",
                "x y",
            ];
            let n = r.below(4);
            let body: String = (0..n)
                .map(|_| parts[r.below(parts.len() as u64) as usize])
                .collect();
            format!("\"{body}\"")
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
                    let n = r.below(4);
                    let items: Vec<String> = (0..n)
                        .map(|i| {
                            format!(
                                "{}\"k{i}\"{}:{}{}",
                                ws(r),
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
        let mut spliced = 0;
        for _ in 0..3000 {
            let mut fields = vec![format!("\"dendrite\":{{\"nonce\":{}}}", r.below(1 << 60))];
            for k in [
                "name",
                "axon",
                "prediction",
                "confidence",
                "response_time",
                "features",
                "miner_uid",
            ] {
                if r.below(3) > 0 {
                    fields.push(format!(
                        "\"{k}\"{}:{}{}",
                        ws(&mut r),
                        ws(&mut r),
                        value(&mut r, 0)
                    ));
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
            let answer = if r.below(2) == 0 { Some(&A) } else { None };
            match splice_success(doc.as_bytes(), "ConversionSynapse", answer, 1e-4, 1e-4, &ME) {
                Some(_) => {
                    same(&doc, answer);
                    spliced += 1;
                }
                None => panic!("splice refused a valid document: {doc}"),
            }
        }
        assert_eq!(spliced, 3000);
    }
}
