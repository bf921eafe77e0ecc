//! The real `conversion-miner predict` binary: stdin lines in, answers out,
//! errors naming the field, and the exit status.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_conversion-miner");
const GOOD: &str = r#"{"session_id":"a","conversation_duration_seconds":120.5,"has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}"#;

fn run(args: &[&str], stdin: &str) -> (i32, Vec<serde_json::Value>, String) {
    let mut child = Command::new(BIN)
        .arg("predict")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A run refused at start-up (bad --weights or --kernel) exits without
    // reading stdin: a broken pipe here is expected then.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.code().unwrap(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_valid_answer(v: &serde_json::Value) {
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{v}");
    let class = obj["conversion_happened"].as_u64().unwrap();
    let t = obj["time_to_conversion_seconds"].as_f64().unwrap();
    let c = obj["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c), "{v}");
    match class {
        0 => assert_eq!(t, -1.0, "{v}"),
        1 => assert!(t > 0.0, "{v}"),
        _ => panic!("class {class}"),
    }
}

#[test]
fn good_lines_answer_and_exit_zero() {
    let body = format!(
        r#"{{"name":"ConversionSynapse","dendrite":{{"nonce":1795626734383137861}},"features":{GOOD},"prediction":{{"conversion_happened":0,"time_to_conversion_seconds":-1.0}}}}"#
    );
    let input = format!("{GOOD}\n\n   \n{body}\r\n{GOOD}");
    let (code, lines, _) = run(&["--kernel", "scalar"], &input);
    assert_eq!(code, 0);
    assert_eq!(
        lines.len(),
        3,
        "empty lines are skipped, the last line needs no newline"
    );
    for l in &lines {
        assert_valid_answer(l);
    }
    // A synapse body and the bare features object it wraps get the same answer.
    assert_eq!(lines[0], lines[1]);
    // The answer agrees with the library on the embedded model.
    let f = cm_core::parse::parse_request(GOOD.as_bytes()).unwrap();
    let p = conversion_miner::embedded::model().predict(&f, cm_core::kernels::Kernel::Scalar);
    assert_eq!(
        lines[0]["conversion_happened"].as_u64().unwrap(),
        u64::from(p.conversion_happened)
    );
    assert_eq!(
        lines[0]["confidence"].as_f64().unwrap() as f32,
        p.confidence
    );
    assert_eq!(
        lines[0]["time_to_conversion_seconds"].as_f64().unwrap() as f32,
        p.time_to_conversion_seconds
    );
}

#[test]
fn bad_lines_get_errors_naming_the_field_and_exit_one() {
    let bad = [
        (
            r#"{"session_id":"a","has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}"#,
            "conversation_duration_seconds: required field is missing",
        ),
        (
            r#"{"features":{"session_id":"a","conversation_duration_seconds":null,"has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}}"#,
            "conversation_duration_seconds: wrong JSON type",
        ),
        (
            r#"{"session_id":"a","conversation_duration_seconds":9,"has_target_entity":1e999,"entities_collected_count":5,"message_ratio":1.5}"#,
            "has_target_entity: not a finite number",
        ),
        (
            r#"{"session_id":"a","conversation_duration_seconds":9,"has_target_entity":-0.5,"entities_collected_count":5,"message_ratio":1.5}"#,
            "has_target_entity: must be a whole number",
        ),
        (
            r#"{"session_id":"a","conversation_duration_seconds":9,"has_target_entity":1,"entities_collected_count":5,"message_ratio":"1.5x"}"#,
            "message_ratio: a string that is not a number",
        ),
        (
            r#"{"session_id":"a","conversation_duration_seconds":9,"has_target_entity":1,"entities_collected_count":"1e1","message_ratio":1.5}"#,
            "entities_collected_count: a string that is not an integer",
        ),
        (
            r#"{"conversation_duration_seconds":9,"has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}"#,
            "session_id: required field is missing",
        ),
        ("not json", "the body is not a JSON object"),
        (r#"{"session_id":"a""#, "invalid JSON"),
    ];
    let mut input = String::new();
    for (line, _) in &bad {
        input += line;
        input += "\n";
        input += GOOD;
        input += "\n";
    }
    let (code, lines, stderr) = run(&[], &input);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 2 * bad.len());
    for (i, (_, want)) in bad.iter().enumerate() {
        let err = lines[2 * i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", lines[2 * i]));
        assert!(
            err.contains(want),
            "line {}: {err:?} lacks {want:?}",
            2 * i + 1
        );
        assert!(err.starts_with(&format!("line {}: ", 2 * i + 1)), "{err}");
        // The run goes on after a bad line.
        assert_valid_answer(&lines[2 * i + 1]);
    }
    assert!(
        stderr.contains(&format!("{} of {} lines failed", bad.len(), 2 * bad.len())),
        "{stderr}"
    );
}

#[test]
fn invalid_utf8_is_one_bad_line() {
    let mut child = Command::new(BIN)
        .args(["predict"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = b"{\"session_id\":\"\xff\xfe\"}\n".to_vec();
    input.extend_from_slice(GOOD.as_bytes());
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("invalid JSON"), "{}", lines[0]);
    assert!(lines[1].starts_with("{\"conversion_happened\":"));
}

#[test]
fn weights_option_loads_a_file_and_refuses_a_bad_one() {
    let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/model.json");
    let (code_file, from_file, _) = run(&["--weights", weights], GOOD);
    let (code_emb, embedded, _) = run(&[], GOOD);
    assert_eq!((code_file, code_emb), (0, 0));
    // The same file loaded at run time gives the same answer as the embedded copy.
    assert_eq!(from_file, embedded);

    let dir = std::env::temp_dir().join(format!("cm-predict-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("model.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weights).unwrap()).unwrap();
    v["regressors"][0]["layers"][5]["bias"] = serde_json::json!([]);
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, lines, stderr) = run(&["--weights", bad.to_str().unwrap()], GOOD);
    assert_eq!(code, 2);
    assert!(lines.is_empty());
    assert!(
        stderr.contains("regressors[0].layers[5] (linear).bias"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let (code, _, stderr) = run(&["--kernel", "sse9"], GOOD);
    assert_eq!(code, 2);
    assert!(stderr.contains("sse9"), "{stderr}");
}
