//! The generator obeys the validator's rules, the CSV loader maps columns by
//! name and points at bad cells, and the reward reproduces SUBNET.md's
//! reference averages.

use cm_core::schema::{FEATURE_NAMES, N_FEATURES};
use cm_train::csv::{self, CsvError, Row};
use cm_train::data::generated;
use cm_train::gen::{self, f, Finish, DRAWS};
use cm_train::oracle::truth;
use cm_train::reward::reward;
use cm_train::rng::Rng;

fn is_2dp(x: f64, n: i32) -> bool {
    let p = 10f64.powi(n);
    ((x * p).round() / p - x).abs() < 1e-9
}

#[test]
fn generated_conversations_follow_the_rules() {
    let mut rng = Rng::new(11);
    let n = 50_000;
    let mut converted = 0;
    for _ in 0..n {
        let v = gen::conversation(&mut rng);
        for d in DRAWS.iter() {
            let x = v[d.feature];
            match d.finish {
                Finish::Round(k) => {
                    assert!(x >= d.lo && x <= d.hi, "{} = {x}", FEATURE_NAMES[d.feature]);
                    assert!(
                        is_2dp(x, k as i32),
                        "{} = {x} not at {k}dp",
                        FEATURE_NAMES[d.feature]
                    );
                }
                Finish::Int => assert_eq!(x, x.trunc(), "{}", FEATURE_NAMES[d.feature]),
            }
        }
        assert!((8.0..=19.0).contains(&v[f::HOUR]) && (0.0..=6.0).contains(&v[f::DAY]));
        assert_eq!(
            v[f::BUSINESS_HOURS],
            if (9.0..=17.0).contains(&v[f::HOUR]) {
                1.0
            } else {
                0.0
            }
        );
        assert_eq!(
            v[f::WEEKEND],
            if v[f::DAY] == 0.0 || v[f::DAY] == 6.0 {
                1.0
            } else {
                0.0
            }
        );
        assert_eq!(
            v[f::USER_MESSAGES] + v[f::AGENT_MESSAGES],
            v[f::TOTAL_MESSAGES]
        );
        assert_eq!(
            v[f::USER_MESSAGES],
            (v[f::TOTAL_MESSAGES] / (1.0 + 1.0 / v[f::MESSAGE_RATIO])).trunc()
        );
        assert_eq!(
            v[f::DURATION_MIN],
            gen::py_round(v[f::DURATION_S] / 60.0, 4)
        );
        assert_eq!(
            v[f::CHARS_USER],
            (v[f::USER_MESSAGES] * v[f::AVG_LEN_USER]).trunc()
        );
        assert_eq!(
            v[f::CHARS_AGENT],
            (v[f::AGENT_MESSAGES] * v[f::AVG_LEN_AGENT]).trunc()
        );
        assert_eq!(
            v[f::MESSAGES_PER_MINUTE],
            gen::py_round(v[f::TOTAL_MESSAGES] / v[f::DURATION_MIN], 4)
        );
        assert_eq!(
            v[f::Q_PER_AGENT_MSG],
            gen::py_round(v[f::Q_AGENT] / v[f::AGENT_MESSAGES], 4)
        );
        assert_eq!(v[f::SEQ_AGENT], 1.0);
        assert_eq!(v[f::ENTITY_RATE], 0.0);
        // After the fix-up (and the final int pass) min <= avg <= max up to truncation.
        assert!(
            v[f::MIN_LEN_USER] <= v[f::AVG_LEN_USER]
                && v[f::AVG_LEN_USER] < v[f::MAX_LEN_USER] + 1.0
        );
        assert!(
            v[f::MIN_LEN_AGENT] <= v[f::AVG_LEN_AGENT]
                && v[f::AVG_LEN_AGENT] < v[f::MAX_LEN_AGENT] + 1.0
        );
        for k in [
            f::MIN_LEN_USER,
            f::MAX_LEN_USER,
            f::MIN_LEN_AGENT,
            f::MAX_LEN_AGENT,
        ] {
            assert_eq!(v[k], v[k].trunc());
        }
        converted += truth(&v).0 as usize;
    }
    let rate = converted as f64 / n as f64;
    assert!((0.55..0.59).contains(&rate), "conversion rate {rate}");
}

#[test]
fn same_seed_same_conversations() {
    let a: Vec<_> = (0..100)
        .scan(Rng::new(5), |r, _| Some(gen::conversation(r)))
        .collect();
    let b: Vec<_> = (0..100)
        .scan(Rng::new(5), |r, _| Some(gen::conversation(r)))
        .collect();
    let c: Vec<_> = (0..100)
        .scan(Rng::new(6), |r, _| Some(gen::conversation(r)))
        .collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn oracle_known_cases() {
    let mut v = [0.0; N_FEATURES];
    v[f::DURATION_S] = 90.0;
    v[f::MESSAGE_RATIO] = 1.5;
    v[f::ENTITIES] = 5.0;
    v[f::HAS_TARGET] = 0.0;
    assert_eq!(truth(&v), (0, -1.0)); // 90.00 is not > 90
    v[f::DURATION_S] = 90.01;
    let (c, t) = truth(&v);
    assert_eq!(c, 1);
    assert!((t - (0.7 * 90.01 - 10.0 + 5.0 * (1.0 - 0.75))).abs() < 1e-9);
    v[f::MESSAGE_RATIO] = 1.2; // not > 1.2
    assert_eq!(truth(&v).0, 0);
    v[f::HAS_TARGET] = 1.0;
    v[f::ENTITIES] = 4.0;
    assert_eq!(truth(&v).0, 1);
    v[f::ENTITIES] = 3.0;
    assert_eq!(truth(&v).0, 0);
}

fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let s = generated(&mut rng);
            Row {
                session_id: format!("s{i}"),
                raw: s.raw,
                label: s.label,
                time: s.time,
            }
        })
        .collect()
}

#[test]
fn csv_round_trip_and_any_column_order() {
    let rs = rows(200, 3);
    let mut buf = Vec::new();
    csv::write_header(&mut buf).unwrap();
    for r in &rs {
        csv::write_row(&mut buf, r).unwrap();
    }
    let back = csv::load(&buf[..]).unwrap();
    assert_eq!(back, rs);

    // Reverse every column (and add an unknown one): same rows.
    let text = String::from_utf8(buf).unwrap();
    let mut shuffled = String::new();
    for line in text.lines() {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.reverse();
        let extra = if shuffled.is_empty() { "extra" } else { "x" };
        shuffled.push_str(&format!("{extra},{}\n", cells.join(",")));
    }
    assert_eq!(csv::load(shuffled.as_bytes()).unwrap(), rs);

    // The subnet's example row loads.
    let mut hdr = String::from("session_id");
    for n in FEATURE_NAMES {
        hdr.push(',');
        hdr.push_str(n);
    }
    hdr.push_str(",conversion_happened,time_to_conversion_seconds,time_to_conversion_minutes\n");
    let example = "fe093ea6-8fb3-4856-9aee-05673faaae11,92.0000,1.5333,13,2,1,0,7.0000,11.5000,15.0000,7.0000,11.7500,11.6667,2.8723,15.0000,5.8696,9,5,4,1.2500,47.0000,62,25,235,84.0000,120,53,336,3,0.7500,0,0.0000,2,1,5,1,0.9200,0.8000,0.0000,0,0.8750,1,62.0000,1.0333\n";
    let r = csv::load(format!("{hdr}{example}").as_bytes()).unwrap();
    assert_eq!(r[0].raw[0], 92.0);
    assert_eq!(r[0].raw[33], 5.0);
    assert_eq!((r[0].label, r[0].time), (1, 62.0));
}

#[test]
fn csv_bad_cells_name_line_and_column() {
    let rs = rows(3, 4);
    let mut buf = Vec::new();
    csv::write_header(&mut buf).unwrap();
    for r in &rs {
        csv::write_row(&mut buf, r).unwrap();
    }
    let text = String::from_utf8(buf).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Corrupt line 3 (second data row), column 20 (message_ratio is feature 18 -> column 20).
    let mut cells: Vec<String> = lines[2].split(',').map(String::from).collect();
    cells[19] = "abc".into();
    lines[2] = cells.join(",");
    let err = csv::load(lines.join("\n").as_bytes()).unwrap_err();
    match &err {
        CsvError::BadCell {
            line, column, name, ..
        } => {
            assert_eq!((*line, *column, name.as_str()), (3, 20, "message_ratio"));
        }
        e => panic!("unexpected {e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("column 20") && msg.contains("message_ratio"),
        "{msg}"
    );

    let err = csv::load("session_id,conversation_duration_seconds\n".as_bytes()).unwrap_err();
    assert!(matches!(err, CsvError::MissingColumn(_)), "{err:?}");
    let short = format!("{}\n1,2,3\n", text.lines().next().unwrap());
    assert!(matches!(
        csv::load(short.as_bytes()).unwrap_err(),
        CsvError::ShortRow { line: 2, .. }
    ));
}

#[test]
fn reward_reference_averages() {
    let mut rng = Rng::new(20);
    let n = 20_000;
    let (mut oracle, mut sixty, mut zero) = (0.0, 0.0, 0.0);
    for _ in 0..n {
        let s = generated(&mut rng);
        oracle += reward(s.label, s.time, s.label, s.time, 0.0).total;
        sixty += reward(1, 60.0, s.label, s.time, 0.0).total;
        zero += reward(0, -1.0, s.label, s.time, 0.0).total;
    }
    let (o, s, z) = (oracle / n as f64, sixty / n as f64, zero / n as f64);
    assert!((o - 0.618).abs() < 0.01, "oracle {o}");
    assert!((s - 0.34).abs() < 0.015, "always 60 s {s}");
    assert!((z - 0.32).abs() < 0.015, "always 0 {z}");
    // Shapes the validator refuses score 0; latency is 20% of the total.
    assert_eq!(reward(1, 0.0, 1, 50.0, 0.0).total, 0.0);
    assert_eq!(reward(0, 3.0, 0, -1.0, 0.0).total, 0.0);
    let r = reward(0, -1.0, 0, -1.0, 30.0);
    assert!((r.total - (0.8 * 0.55 * 0.625 + 0.2 * 0.5)).abs() < 1e-12);
}
