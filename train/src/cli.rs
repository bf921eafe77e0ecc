//! `gen`, `train`, `eval` and `restat` subcommands.
//!
//! Thin wrappers: argument parsing and I/O here, the work in the modules. The
//! defaults of `train` are the shipped recipe, so the README's command is
//! just `conversion-miner train --out weights/model.json`.

use crate::csv;
use crate::eval;
use crate::pipeline::{self, Plan};
use crate::rng::Rng;
use crate::trainer::Recipe;
use anyhow::Context;
use clap::Args;
use cm_core::kernels::Kernel;
use cm_core::schema::N_FEATURES;
use std::io::{BufWriter, Write};

/// Bits of `present` with every feature given.
const ALL_PRESENT: u64 = (1u64 << N_FEATURES) - 1;
/// Stream label of the session ids, apart from the conversations' stream.
const STREAM_SESSION_ID: u64 = 0x5E55;

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Conversations to generate.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Seed; `eval --seed S` scores exactly the conversations `gen --seed S` writes.
    #[arg(long, default_value_t = 777)]
    pub seed: u64,
    /// Output CSV file, or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub out: String,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Where to write the model file.
    #[arg(long, default_value = "weights/model.json")]
    pub out: String,
    /// Seed of every random stream of the run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Train from the subnet's CSV instead of the generator (80/10/10 split).
    #[arg(long)]
    pub csv: Option<String>,
    /// Adam steps per classifier.
    #[arg(long, default_value_t = 24_000)]
    pub steps: usize,
    /// Adam steps per regressor.
    #[arg(long, default_value_t = 48_000)]
    pub reg_steps: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    /// Final learning rate (cosine decay from the peak).
    #[arg(long, default_value_t = 2e-6)]
    pub lr_min: f32,
    /// Dropout probability while BatchNorm trains (0 in the frozen phase).
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f32,
    /// AdamW weight decay of the classifiers' hidden weights.
    #[arg(long, default_value_t = 0.0)]
    pub cls_wd: f32,
    /// AdamW weight decay of the regressors' hidden weights.
    #[arg(long, default_value_t = 3.0)]
    pub reg_wd: f32,
    /// Share of each batch replayed from the hard-example pool.
    #[arg(long, default_value_t = 0.25)]
    pub hard_share: f64,
    /// Std divisor for duration and message-ratio inputs.
    #[arg(long, default_value_t = 4.0)]
    pub spread: f64,
    /// Share of steps with BatchNorm frozen at population statistics.
    #[arg(long, default_value_t = 0.3)]
    pub frozen: f64,
    /// Steps between progress lines.
    #[arg(long, default_value_t = 1000)]
    pub eval_every: usize,
    /// Seed of the held-out test set in the report (the `eval --seed` stream).
    #[arg(long, default_value_t = 777)]
    pub test_seed: u64,
    /// Size of that test set.
    #[arg(long, default_value_t = 100_000)]
    pub test_n: usize,
    /// Keep the trained hidden weights as they are instead of rounding them
    /// (after folding) onto the f16 grid and refitting the regressors' last
    /// layer. Without the rounding, an f16 build of the file answers
    /// slightly differently from an f32 build.
    #[arg(long)]
    pub no_f16_snap: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Conversations to score.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Seed of the conversations (as `gen --seed`).
    #[arg(long, default_value_t = 777)]
    pub seed: u64,
    /// Score this model file (validated and folded at run time, as
    /// `serve --weights` does) instead of the embedded model.
    #[arg(long)]
    pub weights: Option<String>,
    /// With --weights: score the file's unfolded f64 reference forward instead.
    #[arg(long, requires = "weights")]
    pub f64: bool,
    /// Fail (exit 1) when accuracy is below this.
    #[arg(long)]
    pub min_accuracy: Option<f64>,
    /// Also write DIR/report.html: the evaluation as pictures (report_html).
    #[arg(long, value_name = "DIR")]
    pub report: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestatArgs {
    /// Model file whose `training_stats` are recomputed and rewritten in place.
    #[arg(long, default_value = "weights/model.json")]
    pub model: String,
}

/// Recomputes a generator-trained model file's `training_stats` (mean, std,
/// min, max, deciles and drift-bin shares) from the statistics rows its
/// report names (`seed`, `data.statistics_rows`), and rewrites the file with
/// every other field as it was: no weight is retrained or touched.
pub fn restat(a: &RestatArgs) -> anyhow::Result<i32> {
    let path = &a.model;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mf = cm_modelfile::parse_model_file(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let report = &mf.report;
    let generated = report["data"]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("generator"));
    anyhow::ensure!(
        generated,
        "{path}: the report's data.source is not the generator; its statistics rows cannot be regenerated"
    );
    let seed = report["seed"]
        .as_u64()
        .with_context(|| format!("{path}: report.seed is not an unsigned integer"))?;
    let n = report["data"]["statistics_rows"]
        .as_u64()
        .filter(|n| *n > 0)
        .with_context(|| format!("{path}: report.data.statistics_rows is not a positive integer"))?
        as usize;
    let rows = pipeline::statistics_rows(seed, n);
    let stats = crate::export::training_stats(&rows);
    // serde_json's parser can be one ulp off on some numbers, so the old
    // values are compared loosely, and the file is not re-serialised from
    // the parsed struct: only the text of `training_stats` is replaced.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
    let moved = mf
        .training_stats
        .iter()
        .zip(&stats)
        .filter(|(old, new)| {
            let olds = [old.mean, old.std, old.min, old.max];
            let news = [new.mean, new.std, new.min, new.max];
            old.deciles.len() != new.deciles.len()
                || olds.iter().zip(&news).any(|(a, b)| !close(*a, *b))
                || old
                    .deciles
                    .iter()
                    .zip(&new.deciles)
                    .any(|(a, b)| !close(*a, *b))
        })
        .count();
    let replacement = serde_json::to_string_pretty(&stats)?.replace('\n', "\n  ");
    let out = replace_top_level_value(&text, "training_stats", &replacement)
        .with_context(|| format!("{path}: no top-level \"training_stats\" array found"))?;
    // Read back: every other field exactly as before (same text), the new
    // statistics up to the parser's last digit.
    let mut check =
        cm_modelfile::parse_model_file(&out).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    cm_modelfile::validate(&check).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let back = std::mem::replace(&mut check.training_stats, mf.training_stats.clone());
    let same_stats = back.len() == stats.len()
        && back.iter().zip(&stats).all(|(b, s)| {
            let nums = |f: &cm_modelfile::FeatureStats| {
                let mut v = vec![f.mean, f.std, f.min, f.max];
                v.extend(&f.deciles);
                v.extend(&f.shares);
                v
            };
            let (nb, ns) = (nums(b), nums(s));
            b.name == s.name
                && nb.len() == ns.len()
                && nb.iter().zip(&ns).all(|(x, y)| close(*x, *y))
        });
    anyhow::ensure!(
        check == mf && same_stats,
        "{path}: the rewritten file does not read back as intended"
    );
    std::fs::write(path, out).with_context(|| format!("writing {path}"))?;
    eprintln!(
        "rewrote training_stats of {path} from {n} statistics rows (seed {seed}); \
         {moved} feature(s) had other mean/std/min/max/deciles than before"
    );
    Ok(0)
}

/// `text` (pretty JSON as `train` writes it: top-level keys indented two
/// spaces) with the value of top-level `key` replaced by `value`; None if
/// the key is not found or its value does not end.
fn replace_top_level_value(text: &str, key: &str, value: &str) -> Option<String> {
    let tag = format!("\n  \"{key}\": ");
    let start = text.find(&tag)? + tag.len();
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut strings = crate::json_text::Strings::default();
    let mut end = None;
    for (i, &c) in bytes.iter().enumerate().skip(start) {
        if !strings.structural(c) {
            continue;
        }
        match c {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    end = Some(i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end?;
    Some(format!("{}{}{}", &text[..start], value, &text[end..]))
}

fn session_id(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    // UUID v4 layout.
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

pub fn gen(a: &GenArgs) -> anyhow::Result<i32> {
    let out: Box<dyn Write> = if a.out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out))?)
    };
    let mut w = BufWriter::new(out);
    csv::write_header(&mut w)?;
    let mut rng = Rng::new(a.seed);
    let mut ids = Rng::derive(a.seed, STREAM_SESSION_ID);
    for _ in 0..a.n {
        let s = crate::data::generated(&mut rng);
        let row = csv::Row {
            session_id: session_id(&mut ids),
            raw: s.raw,
            label: s.label,
            time: s.time,
        };
        csv::write_row(&mut w, &row)?;
    }
    w.flush()?;
    Ok(0)
}

pub fn recipe(a: &TrainArgs) -> Recipe {
    Recipe {
        cls_steps: a.steps,
        reg_steps: a.reg_steps,
        batch: a.batch,
        lr_max: a.lr,
        lr_min: a.lr_min,
        warmup: 0.02,
        frozen: a.frozen,
        dropout: a.dropout,
        cls_weight_decay: a.cls_wd,
        reg_weight_decay: a.reg_wd,
        hard_share: a.hard_share,
        hard_per_step: (a.batch / 16).max(1),
        pool: 32 * a.batch,
        spread: a.spread,
        refit_rows: 200_000,
        snap_f16: !a.no_f16_snap,
        eval_every: a.eval_every,
    }
}

pub fn train(a: &TrainArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.batch >= 16, "--batch must be at least 16");
    anyhow::ensure!(
        a.steps >= 10 && a.reg_steps >= 10,
        "--steps and --reg-steps must be at least 10"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&a.dropout),
        "--dropout must be in [0, 1)"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&a.hard_share),
        "--hard-share must be in [0, 1)"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.frozen),
        "--frozen must be in [0, 1]"
    );
    anyhow::ensure!(a.spread > 0.0, "--spread must be positive");
    let csv = match &a.csv {
        None => None,
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
            let rows =
                csv::load(std::io::BufReader::new(f)).with_context(|| format!("loading {path}"))?;
            eprintln!("loaded {} rows from {path}", rows.len());
            Some((path.clone(), rows))
        }
    };
    let command = std::iter::once("conversion-miner".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let plan = Plan {
        seed: a.seed,
        recipe: recipe(a),
        csv,
        pilot_rows: 200_000,
        heldout_rows: 20_000,
        calib_rows: 50_000,
        test_seed: a.test_seed,
        test_rows: a.test_n,
        command,
    };
    let (mf, m) = pipeline::run(&plan)?;
    let text = serde_json::to_string_pretty(&mf)?;
    if let Some(dir) = std::path::Path::new(&a.out).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(&a.out, text + "\n").with_context(|| format!("writing {}", a.out))?;
    eprintln!(
        "wrote {} (held-out accuracy {:.4}%, MAE on TP {:.4} s)",
        a.out,
        100.0 * m.accuracy,
        m.mae_tp
    );
    let report = crate::report_html::for_model_file(&a.out, a.test_seed, a.test_n)?;
    eprintln!("wrote {}", report.display());
    Ok(0)
}

/// A model under evaluation: raw features to (class, seconds, confidence).
type Predictor = Box<dyn Fn(&[f64; N_FEATURES]) -> (u8, f64, f64)>;

pub fn eval(a: &EvalArgs, embedded: &'static cm_core::model::Model) -> anyhow::Result<i32> {
    let rows = eval::test_set(a.seed, a.n);
    let folded = |model: &cm_core::model::Model, raw: &[f64; N_FEATURES]| {
        let mut r32 = [0f32; N_FEATURES];
        for (d, s) in r32.iter_mut().zip(raw.iter()) {
            *d = *s as f32;
        }
        let p = model.predict_raw(&r32, ALL_PRESENT, Kernel::Scalar);
        (
            p.conversion_happened,
            p.time_to_conversion_seconds as f64,
            p.confidence as f64,
        )
    };
    // (class, seconds, confidence) of each model kind.
    let (label, predict): (String, Predictor) = match &a.weights {
        None => (
            format!(
                "embedded model, {} weights, scalar kernel",
                cm_core::kernels::W_NAME
            ),
            Box::new(move |raw| folded(embedded, raw)),
        ),
        Some(path) if a.f64 => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            let mf = cm_modelfile::parse_model_file(&text)
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            cm_modelfile::validate(&mf).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            (
                format!("{path}, f64 reference forward (unfolded)"),
                Box::new(move |raw| {
                    let (c, t, _, conf) = crate::export::predict_f64(&mf, raw);
                    (c, t, conf)
                }),
            )
        }
        Some(path) => {
            let model =
                cm_modelfile::load_model(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            (
                format!(
                    "{path}, folded at run time, {} weights, scalar kernel",
                    cm_core::kernels::W_NAME
                ),
                Box::new(move |raw| folded(&model, raw)),
            )
        }
    };
    let scored = crate::report_html::score_rows(&rows, predict);
    // score() asks for the rows in order: hand back the answers just computed.
    let mut next = scored.iter();
    let m = eval::score(&rows, |_| {
        next.next()
            .map(|s| (s.class, s.t_pred))
            .unwrap_or((0, -1.0))
    });
    let label = format!("{label}; {} conversations, seed {}", a.n, a.seed);
    if let Some(dir) = &a.report {
        let path = crate::report_html::write(
            std::path::Path::new(dir),
            &format!("Evaluation report: {label}"),
            &m.table(&label),
            &scored,
        )?;
        eprintln!("wrote {}", path.display());
    }
    // A closed stdout (e.g. piped into `head`) is not worth a panic.
    let _ = writeln!(std::io::stdout(), "{}", m.table(&label));
    if let Some(min) = a.min_accuracy {
        if m.accuracy < min {
            eprintln!("accuracy {:.6} is below --min-accuracy {min}", m.accuracy);
            return Ok(1);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::replace_top_level_value;

    #[test]
    fn only_the_named_top_level_value_is_replaced() {
        let text = "{\n  \"a\": [1, \"]\\\"[\", {\"x\": [2]}],\n  \"training_stats\": [\n    {\"n\": \"}]\"}\n  ],\n  \"report\": {\"training_stats\": 1}\n}\n";
        let out = replace_top_level_value(text, "training_stats", "[\n    7\n  ]").unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": [1, \"]\\\"[\", {\"x\": [2]}],\n  \"training_stats\": [\n    7\n  ],\n  \"report\": {\"training_stats\": 1}\n}\n"
        );
        assert!(replace_top_level_value(text, "missing", "1").is_none());
        assert!(replace_top_level_value("{\n  \"t\": [1, 2", "t", "1").is_none());
    }
}
