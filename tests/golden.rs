//! Golden tests: the compiled model against the f64 reference.
//!
//! The binary's model went through folding (scaler, BatchNorm, target scale),
//! rounding to the build's weight storage (f16 by default, exact for the
//! snapped shipped file; f32 with `--no-default-features`), code generation
//! and the kernels, which compute in f32. The reference runs
//! the file *as trained*, layer by layer in f64
//! (`cm_modelfile::reference`). Agreement on fixed inputs checks all of that
//! at once. Tolerances (stated, per answer):
//! - mean probability: absolute 1e-4;
//! - class: identical, unless the reference probability is within 1e-4 of 0.5;
//! - time (both say converted): absolute 1e-3 s;
//! - confidence: absolute 1e-4 times the calibration's steepest slope (at
//!   least 1e-4).
//!
//! Inputs: hand-written bodies (bare and full synapse, with and without
//! optional features) and 200 validator-like conversations from a seeded RNG.

use cm_core::kernels::{CpuFeatures, Kernel};
use cm_core::parse::parse_request;
use cm_core::schema::{FEATURE_NAMES, IS_INTEGER, N_FEATURES};
use cm_modelfile::reference;
use cm_modelfile::ModelFile;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/model.json");
const P_TOL: f64 = 1e-4;
const TIME_TOL: f64 = 1e-3;

fn file() -> ModelFile {
    cm_modelfile::parse_model_file(&std::fs::read_to_string(WEIGHTS).unwrap()).unwrap()
}

/// Small deterministic generator (xorshift64*), Box-Muller normals.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
        let z = (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos();
        (mean + sd * z).clamp(lo, hi)
    }
    fn int(&mut self, lo: u64, hi: u64) -> f64 {
        (lo + self.next() % (hi - lo + 1)) as f64
    }
}

/// One validator-like conversation (SUBNET.md's draws, derived fields recomputed).
fn conversation(r: &mut Rng) -> [f64; N_FEATURES] {
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let d = r2(r.normal(100.0, 20.0, 60.0, 150.0));
    let h = r.int(8, 19);
    let w = r.int(0, 6);
    let tot = r.normal(8.0, 2.0, 4.0, 20.0).trunc();
    let mr = r2(r.normal(1.3, 0.3, 1.0, 2.0));
    let u = (tot / (1.0 + 1.0 / mr)).trunc();
    let a = tot - u;
    let alu = r2(r.normal(40.0, 5.0, 20.0, 60.0));
    let ala = r2(r.normal(75.0, 10.0, 50.0, 100.0));
    let qa = r.normal(3.0, 1.0, 1.0, 5.0).trunc();
    let qu = r.normal(1.0, 0.5, 0.0, 3.0).trunc();
    [
        d,
        d / 60.0,
        h,
        w,
        f64::from((9.0..=17.0).contains(&h)),
        f64::from(w == 0.0 || w == 6.0),
        r2(r.normal(10.0, 3.0, 5.0, 20.0)),
        r2(r.normal(15.0, 2.0, 10.0, 20.0)),
        r2(r.normal(18.0, 2.5, 15.0, 25.0)),
        r2(r.normal(10.0, 2.0, 5.0, 15.0)),
        r2(r.normal(15.0, 2.0, 10.0, 20.0)),
        r2(r.normal(15.0, 2.0, 10.0, 20.0)),
        r2(r.normal(3.0, 1.0, 0.0, 5.0)),
        r2(r.normal(18.0, 2.5, 15.0, 25.0)),
        tot / (d / 60.0),
        tot,
        u,
        a,
        mr,
        alu,
        r.normal(50.0, 5.0, 30.0, 70.0).trunc(),
        r.normal(30.0, 5.0, 15.0, 45.0).trunc(),
        (u * alu).trunc(),
        ala,
        r.normal(100.0, 15.0, 70.0, 130.0).trunc(),
        r.normal(50.0, 10.0, 30.0, 80.0).trunc(),
        (a * ala).trunc(),
        qa,
        if a > 0.0 { qa / a } else { 0.0 },
        qu,
        if u > 0.0 { qu / u } else { 0.0 },
        r.normal(2.0, 1.0, 1.0, 4.0).trunc(),
        1.0,
        r.normal(4.0, 1.5, 1.0, 6.0).trunc(),
        r.int(0, 1),
        r.normal(0.9, 0.02, 0.8, 0.95),
        r.normal(0.85, 0.03, 0.8, 0.9),
        0.0,
        r.int(0, 1),
        r.normal(0.9, 0.1, 0.7, 1.0),
    ]
}

/// A bare features object with every feature.
fn to_json(raw: &[f64; N_FEATURES], id: usize) -> String {
    let mut s = format!("{{\"session_id\":\"golden-{id}\"");
    for (i, v) in raw.iter().enumerate() {
        if IS_INTEGER[i] {
            s += &format!(",\"{}\":{}", FEATURE_NAMES[i], *v as u64);
        } else {
            s += &format!(",\"{}\":{v:?}", FEATURE_NAMES[i]);
        }
    }
    s + "}"
}

/// Every kernel this CPU runs (the core's detection), scalar first.
fn kernels() -> Vec<Kernel> {
    Kernel::runnable(CpuFeatures::detect()).collect()
}

/// Compare one request body; returns whether the reference said converted.
fn check(m: &ModelFile, body: &str, k: Kernel) -> u8 {
    let f = parse_request(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
    // Raw f64 features as the reference sees them: the body's numbers, or
    // the file's fill for a missing feature.
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let feats = json.get("features").unwrap_or(&json);
    let mut raw = [0.0f64; N_FEATURES];
    for (i, r) in raw.iter_mut().enumerate() {
        *r = feats
            .get(FEATURE_NAMES[i])
            .and_then(|v| v.as_f64())
            .unwrap_or(m.fill[i]);
        assert_eq!(f.is_present(i), feats.get(FEATURE_NAMES[i]).is_some());
    }
    // The core derives missing minutes from the seconds (Model::filled).
    if feats.get(FEATURE_NAMES[1]).is_none() {
        raw[1] = raw[0] / 60.0;
    }
    let model = conversion_miner::embedded::model();
    let (class_ref, time_ref, conf_ref) = reference::predict_f64(m, &raw);
    let p_ref = reference::probability_f64(m, &raw);
    let x = cm_core::features::inputs(&model.filled(&f.values, f.present));
    let p = f64::from(model.probability(&x, k));
    let got = model.predict(&f, k);
    let ctx = format!("kernel {} body {body}", k.name());
    assert!(
        (p - p_ref).abs() <= P_TOL,
        "p {p} vs reference {p_ref}: {ctx}"
    );
    if (p_ref - 0.5).abs() > P_TOL {
        assert_eq!(got.conversion_happened, class_ref, "class: {ctx}");
    }
    if got.conversion_happened == 0 {
        assert_eq!(got.time_to_conversion_seconds, -1.0);
    } else if class_ref == 1 {
        let t = f64::from(got.time_to_conversion_seconds);
        assert!(
            (t - time_ref).abs() <= TIME_TOL,
            "time {t} vs reference {time_ref}: {ctx}"
        );
    }
    let slope = m
        .calibration
        .x
        .windows(2)
        .zip(m.calibration.y.windows(2))
        .map(|(x, y)| (y[1] - y[0]) / (x[1] - x[0]))
        .fold(1.0f64, f64::max);
    let c = f64::from(got.confidence);
    assert!(
        (c - conf_ref).abs() <= P_TOL * slope + 1e-6,
        "confidence {c} vs {conf_ref}: {ctx}"
    );
    class_ref
}

const HAND_WRITTEN: [&str; 5] = [
    // Minimal bare object: everything optional filled from the file.
    r#"{"session_id":"h1","conversation_duration_seconds":120.5,"has_target_entity":1,"entities_collected_count":5,"message_ratio":1.5}"#,
    r#"{"session_id":"h2","conversation_duration_seconds":61.0,"has_target_entity":0,"entities_collected_count":1,"message_ratio":1.0}"#,
    // Full synapse body with integers written as floats and extra keys.
    r#"{"name":"ConversionSynapse","timeout":12.0,"dendrite":{"nonce":1795626734383137861,"uuid":"u"},"features":{"session_id":"h3","conversation_duration_seconds":95.25,"conversation_duration_minutes":1.5875,"hour_of_day":14.0,"day_of_week":2.0,"is_business_hours":1.0,"is_weekend":0.0,"total_messages":9.0,"user_messages_count":5.0,"agent_messages_count":4.0,"message_ratio":1.25,"has_target_entity":1.0,"entities_collected_count":3.0,"test_pk":"x"},"prediction":{"conversion_happened":0,"time_to_conversion_seconds":-1.0},"confidence":null}"#,
    r#"{"features":{"session_id":"h4","conversation_duration_seconds":149.99,"has_target_entity":1,"entities_collected_count":6,"message_ratio":2.0,"avg_message_length_user":0.0,"user_messages_count":0,"agent_messages_count":0}}"#,
    r#"{"session_id":"h5","conversation_duration_seconds":90.0,"has_target_entity":0,"entities_collected_count":4,"message_ratio":1.2,"hour_of_day":23,"day_of_week":6}"#,
];

#[test]
fn hand_written_match_reference() {
    let m = file();
    for k in kernels() {
        for body in HAND_WRITTEN {
            check(&m, body, k);
        }
    }
}

#[test]
fn generated_match_reference() {
    let m = file();
    let mut rng = Rng(0x5EED_C0FF_EE00_0001);
    let bodies: Vec<String> = (0..200)
        .map(|i| to_json(&conversation(&mut rng), i))
        .collect();
    for k in kernels() {
        let positives: usize = bodies.iter().map(|b| usize::from(check(&m, b, k))).sum();
        // The comparison only means something if both classes occur.
        eprintln!(
            "kernel {}: reference says converted for {positives} of 200",
            k.name()
        );
        assert!(
            (1..200).contains(&positives),
            "only one class among 200 inputs"
        );
    }
}

/// Raw feature values at the edges of f32 (and beyond the kernels' input
/// limit), for the kernels' rule on extreme inputs.
const EXTREMES: [f32; 13] = [
    f32::MAX,
    -f32::MAX,
    1.0e38,
    -1.0e38,
    1.0e20,
    -1.0e20,
    cm_core::kernels::INPUT_LIMIT * 4.0,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    f32::from_bits(1),
    f32::from_bits(0x007f_ffff),
    -f32::from_bits(0x0040_0000),
    0.0,
];

/// Requests whose features sit at the extremes: each extreme on every
/// feature, each on one feature with the others at their fill values,
/// alternations, and seeded random mixes.
fn extreme_cases(fill: &[f32; N_FEATURES]) -> Vec<(String, [f32; N_FEATURES])> {
    let mut out = Vec::new();
    for v in EXTREMES {
        out.push((format!("every feature {v:e}"), [v; N_FEATURES]));
        for i in 0..N_FEATURES {
            let mut raw = *fill;
            raw[i] = v;
            out.push((format!("{} = {v:e}", FEATURE_NAMES[i]), raw));
        }
        for w in [f32::MAX, -f32::MAX, f32::MIN_POSITIVE] {
            out.push((
                format!("alternating {v:e}, {w:e}"),
                std::array::from_fn(|i| if i % 2 == 0 { v } else { w }),
            ));
        }
    }
    let mut rng = Rng(0xE87E_3E5E_ED00_0007);
    for n in 0..400 {
        let raw = std::array::from_fn(|i| {
            if rng.next().is_multiple_of(3) {
                fill[i]
            } else {
                EXTREMES[(rng.next() % EXTREMES.len() as u64) as usize]
            }
        });
        out.push((format!("mix #{n}"), raw));
    }
    out
}

/// Issue 12, defect 7: one input gets one answer whatever the CPU. On every
/// kernel this CPU runs, requests with features at the extremes of f32 get
/// the same class; with a feature at 1e20 or beyond (clamped, saturating)
/// the same time and confidence to the bit, with only tiny values within
/// the golden tolerances (there the answer is an ordinary one and kernels
/// round differently). The networks cannot overflow on clamped inputs
/// (`Mlp::activation_bound`, printed). A kernel this CPU lacks is reported
/// as skipped.
#[test]
fn extreme_inputs_get_one_answer_on_every_kernel() {
    let model = conversion_miner::embedded::model();
    for (i, m) in model
        .classifiers
        .iter()
        .chain(&model.regressors)
        .enumerate()
    {
        let b = m.activation_bound();
        assert!(b < 1e30, "network {i}: activation bound {b:e}");
        eprintln!("network {i}: activation bound {b:e} at INPUT_LIMIT");
    }
    let cpu = CpuFeatures::detect();
    for name in Kernel::NAMES {
        if let Err(e) = Kernel::from_name(name, cpu) {
            eprintln!("kernel {name} SKIPPED: {e}");
        }
    }
    let ks = kernels();
    let all = (1u64 << N_FEATURES) - 1;
    let cases = extreme_cases(&model.fill);
    let mut mismatches = Vec::new();
    let mut classes = [0usize; 2];
    for (name, raw) in &cases {
        let want = model.predict_raw(raw, all, Kernel::Scalar);
        classes[usize::from(want.conversion_happened)] += 1;
        // With a feature at 1e20 or beyond, the answer saturates and must be
        // equal to the bit. With only tiny values the answer is an ordinary
        // one, where kernels differ by rounding (FMA or not, order of
        // addition) as on any input: same class, time and confidence within
        // the golden tolerances.
        let large = raw.iter().any(|v| v.abs() >= 1.0e20);
        for &k in &ks[1..] {
            let got = model.predict_raw(raw, all, k);
            let same = got.conversion_happened == want.conversion_happened
                && if large {
                    got.time_to_conversion_seconds.to_bits()
                        == want.time_to_conversion_seconds.to_bits()
                        && got.confidence.to_bits() == want.confidence.to_bits()
                } else {
                    f64::from(
                        (got.time_to_conversion_seconds - want.time_to_conversion_seconds).abs(),
                    ) <= TIME_TOL
                        && f64::from((got.confidence - want.confidence).abs()) <= P_TOL
                };
            if !same {
                mismatches.push(format!(
                    "{name}: kernel {} {got:?} vs scalar {want:?}",
                    k.name()
                ));
            }
        }
    }
    eprintln!(
        "{} extreme cases on {:?}: scalar says class 0 for {}, class 1 for {}",
        cases.len(),
        ks.iter().map(|k| k.name()).collect::<Vec<_>>(),
        classes[0],
        classes[1]
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}
