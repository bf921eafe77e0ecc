//! A model's evaluation as pictures: one self-contained HTML file with four
//! inline SVG charts, written by `eval --report DIR` and by `train` next to
//! the weights it writes.
//!
//! The file must open on an offline machine and in a browser that runs no
//! script, so the charts are drawn here, as SVG text, with no JavaScript, no
//! external style sheet and no font beyond the browser's own. The four
//! pictures answer the questions the JSON numbers leave open: is the
//! confidence a probability (reliability diagram), which way does the model
//! err (confusion matrix), where are the time predictions off (signed time
//! error against conversation duration, true positives only), and do the
//! class mistakes sit on the ground truth's thresholds (conversation duration
//! near 90 s, message ratio near 1.2; SUBNET.md, "The ground truth") or
//! somewhere a rule cannot explain. Scatter plots keep every mistake but at
//! most [`MAX_POINTS`] other rows, taken at an even stride, so the file stays
//! small whatever the test set's size.

use crate::data::Sample;
use cm_core::schema::{idx, N_FEATURES};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Name of the report inside its directory.
pub const FILE_NAME: &str = "report.html";
/// Most background points in one scatter plot.
pub const MAX_POINTS: usize = 2500;
/// Most mistakes drawn in the thresholds plot.
pub const MAX_MISTAKES: usize = 5000;
/// Bins of the reliability diagram.
pub const RELIABILITY_BINS: usize = 10;
/// The ground truth's duration threshold, seconds.
pub const DURATION_THRESHOLD_S: f64 = 90.0;
/// The ground truth's message-ratio threshold.
pub const RATIO_THRESHOLD: f64 = 1.2;
/// Time error at which the subnet's regression reward reaches 0, seconds.
pub const REWARD_ZERO_ERR_S: f64 = 15.0;
/// "Near a threshold": within this many seconds of 90 s ...
const NEAR_DURATION_S: f64 = 5.0;
/// ... or this much of a 1.2 message ratio.
const NEAR_RATIO: f64 = 0.05;
/// Chart size in SVG user units.
const W: f64 = 640.0;
const H: f64 = 420.0;
/// Plot area margins (left, right, top, bottom).
const ML: f64 = 64.0;
const MR: f64 = 20.0;
const MT: f64 = 20.0;
const MB: f64 = 52.0;

/// One conversation with the truth and the model's answer.
#[derive(Clone, Copy, Debug)]
pub struct Scored {
    pub raw: [f64; N_FEATURES],
    pub label: u8,
    pub time: f64,
    pub class: u8,
    pub t_pred: f64,
    pub confidence: f64,
}

impl Scored {
    fn duration(&self) -> f64 {
        self.raw[idx::CONVERSATION_DURATION_SECONDS]
    }
    fn ratio(&self) -> f64 {
        self.raw[idx::MESSAGE_RATIO]
    }
    /// Whether the entity branch of the rule alone makes the truth 1.
    fn entity_rule(&self) -> bool {
        self.raw[idx::HAS_TARGET_ENTITY] == 1.0 && self.raw[idx::ENTITIES_COLLECTED_COUNT] >= 4.0
    }
}

/// Runs `predict` (class, seconds, confidence) over `rows`.
pub fn score_rows<F: FnMut(&[f64; N_FEATURES]) -> (u8, f64, f64)>(
    rows: &[Sample],
    mut predict: F,
) -> Vec<Scored> {
    rows.iter()
        .map(|s| {
            let (class, t_pred, confidence) = predict(&s.raw);
            Scored {
                raw: s.raw,
                label: s.label,
                time: s.time,
                class,
                t_pred,
                confidence,
            }
        })
        .collect()
}

/// Writes `dir/report.html` (creating `dir`) and returns its path.
pub fn write(dir: &Path, title: &str, summary: &str, rows: &[Scored]) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, html(title, summary, rows))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Scores the model file at `path` (folded as `serve --weights` runs it) on
/// the `eval --seed seed --n n` conversations and writes the report next to
/// the file.
pub fn for_model_file(path: &str, seed: u64, n: usize) -> anyhow::Result<PathBuf> {
    let model = cm_modelfile::load_model(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let rows = crate::eval::test_set(seed, n);
    let scored = score_rows(&rows, |raw| {
        let mut r32 = [0f32; N_FEATURES];
        for (d, s) in r32.iter_mut().zip(raw) {
            *d = *s as f32;
        }
        let all = (1u64 << N_FEATURES) - 1;
        let p = model.predict_raw(&r32, all, cm_core::kernels::Kernel::Scalar);
        (
            p.conversion_happened,
            p.time_to_conversion_seconds as f64,
            p.confidence as f64,
        )
    });
    // score() asks for the rows in order: hand back the answers just computed.
    let mut next = scored.iter();
    let m = crate::eval::score(&rows, |_| {
        next.next()
            .map(|s| (s.class, s.t_pred))
            .unwrap_or((0, -1.0))
    });
    let label = format!("{path}; {n} conversations, seed {seed}");
    let dir = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write(
        dir,
        &format!("Training report: {path}"),
        &m.table(&label),
        &scored,
    )
}

/// The whole HTML document.
pub fn html(title: &str, summary: &str, rows: &[Scored]) -> String {
    let mut o = String::with_capacity(256 * 1024);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<pre id=\"summary\">{s}</pre>\n<div class=\"grid\">\n",
        t = esc(title),
        s = esc(summary)
    );
    o.push_str(&reliability(rows));
    o.push_str(&confusion(rows));
    o.push_str(&time_error(rows));
    o.push_str(&mistakes(rows));
    o.push_str("</div>\n<p class=\"note\">Written by <code>conversion-miner eval --report</code> (or <code>train</code>); no script, no network.</p>\n</body></html>\n");
    o
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#1d2430;background:#fff}\
h1{font-size:1.3em}pre{background:#f4f5f7;padding:.6em;overflow:auto}\
.grid{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0;flex:1 1 560px;max-width:680px}\
figcaption{font-weight:bold;margin-bottom:.3em}figcaption span{font-weight:normal;color:#556;display:block}\
svg{width:100%;height:auto;border:1px solid #e3e6eb}.note{color:#667;font-size:.85em}\
text{font-family:system-ui,sans-serif;font-size:12px;fill:#334}";

/// HTML/XML text escape.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A linear map from data to the plot area, with axes.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn new(x: (f64, f64), y: (f64, f64)) -> Frame {
        let fix = |(a, b): (f64, f64)| if b > a { (a, b) } else { (a - 1.0, a + 1.0) };
        let (x0, x1) = fix(x);
        let (y0, y1) = fix(y);
        Frame { x0, x1, y0, y1 }
    }
    fn px(&self, x: f64) -> f64 {
        ML + (x - self.x0) / (self.x1 - self.x0) * (W - ML - MR)
    }
    fn py(&self, y: f64) -> f64 {
        H - MB - (y - self.y0) / (self.y1 - self.y0) * (H - MT - MB)
    }
    fn inside(&self, x: f64, y: f64) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }

    /// Frame, grid, tick labels and axis titles.
    fn axes(&self, o: &mut String, xlabel: &str, ylabel: &str) {
        let _ = write!(
            o,
            "<rect x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\" fill=\"#fafbfc\" stroke=\"#99a\"/>",
            W - ML - MR,
            H - MT - MB
        );
        for t in ticks(self.x0, self.x1) {
            let x = self.px(t);
            let _ = write!(o, "<line x1=\"{x:.1}\" y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e3e6eb\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", H - MB, H - MB + 16.0, fmt_tick(t));
        }
        for t in ticks(self.y0, self.y1) {
            let y = self.py(t);
            let _ = write!(o, "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e3e6eb\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", W - MR, ML - 6.0, y + 4.0, fmt_tick(t));
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            (ML + W - MR) / 2.0,
            H - 12.0,
            esc(xlabel),
            (MT + H - MB) / 2.0,
            esc(ylabel)
        );
    }
}

/// About six round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut v = Vec::new();
    while t <= hi + step * 1e-9 && v.len() < 20 {
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

fn fmt_tick(t: f64) -> String {
    if t == t.round() && t.abs() < 1e6 {
        format!("{t:.0}")
    } else {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn open(o: &mut String, id: &str, title: &str, note: &str) {
    let _ = write!(
        o,
        "<figure id=\"chart-{id}\"><figcaption>{}<span>{}</span></figcaption>\
         <svg data-chart=\"{id}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(note),
        esc(title)
    );
}

fn close(o: &mut String) {
    o.push_str("</svg></figure>\n");
}

/// Legend entries (colour, text) in the plot's top-left corner.
fn legend(o: &mut String, entries: &[(&str, &str)]) {
    for (i, (color, text)) in entries.iter().enumerate() {
        let y = MT + 14.0 + 16.0 * i as f64;
        let _ = write!(o, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>", ML + 10.0, y - 9.0, ML + 26.0, y, esc(text));
    }
}

/// Indices of `n` items thinned to at most `max` at an even stride.
fn stride(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let step = n.div_ceil(max.max(1)).max(1);
    (0..n).step_by(step)
}

/// Confidence against the observed conversion rate, per confidence bin.
fn reliability(rows: &[Scored]) -> String {
    let mut n = [0usize; RELIABILITY_BINS];
    let mut conf = [0f64; RELIABILITY_BINS];
    let mut pos = [0usize; RELIABILITY_BINS];
    for r in rows {
        let c = if r.confidence.is_finite() {
            r.confidence.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let b = ((c * RELIABILITY_BINS as f64) as usize).min(RELIABILITY_BINS - 1);
        n[b] += 1;
        conf[b] += c;
        pos[b] += usize::from(r.label == 1);
    }
    let total = rows.len().max(1) as f64;
    let ece: f64 = (0..RELIABILITY_BINS)
        .filter(|&b| n[b] > 0)
        .map(|b| n[b] as f64 / total * (conf[b] / n[b] as f64 - pos[b] as f64 / n[b] as f64).abs())
        .sum();
    let mut o = String::new();
    open(
        &mut o,
        "reliability",
        "Reliability diagram",
        &format!(
            "mean confidence against the observed conversion rate per confidence bin; bars: share of rows per bin; expected calibration error {ece:.4}"
        ),
    );
    let f = Frame::new((0.0, 1.0), (0.0, 1.0));
    f.axes(&mut o, "confidence (bin mean)", "observed conversion rate");
    let bw = (f.px(1.0) - f.px(0.0)) / RELIABILITY_BINS as f64;
    for b in 0..RELIABILITY_BINS {
        let share = n[b] as f64 / total;
        let (x, y) = (f.px(b as f64 / RELIABILITY_BINS as f64), f.py(share));
        let _ = write!(o, "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#c6dbef\" opacity=\"0.7\"><title>{} rows</title></rect>", x + 1.0, bw - 2.0, f.py(0.0) - y, n[b]);
    }
    let _ = write!(o, "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"5 4\"/>", f.px(0.0), f.py(0.0), f.px(1.0), f.py(1.0));
    let pts: Vec<(f64, f64, usize)> = (0..RELIABILITY_BINS)
        .filter(|&b| n[b] > 0)
        .map(|b| (conf[b] / n[b] as f64, pos[b] as f64 / n[b] as f64, n[b]))
        .collect();
    let path: Vec<String> = pts
        .iter()
        .map(|(x, y, _)| format!("{:.1},{:.1}", f.px(*x), f.py(*y)))
        .collect();
    let _ = write!(
        o,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for (x, y, k) in &pts {
        let _ = write!(o, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"><title>confidence {x:.3}, observed {y:.3}, {k} rows</title></circle>", f.px(*x), f.py(*y));
    }
    legend(
        &mut o,
        &[
            ("#1f77b4", "model"),
            ("#888", "perfect calibration"),
            ("#c6dbef", "rows per bin (share)"),
        ],
    );
    close(&mut o);
    o
}

/// Truth against prediction, counts and shares.
fn confusion(rows: &[Scored]) -> String {
    let mut m = [[0usize; 2]; 2];
    for r in rows {
        m[usize::from(r.label == 1)][usize::from(r.class == 1)] += 1;
    }
    let total = rows.len().max(1) as f64;
    let acc = (m[0][0] + m[1][1]) as f64 / total;
    let mut o = String::new();
    open(
        &mut o,
        "confusion",
        "Confusion matrix",
        &format!(
            "rows: truth, columns: prediction; accuracy {:.4}%",
            100.0 * acc
        ),
    );
    let (cw, ch) = (200.0, 140.0);
    let (x0, y0) = ((W - 2.0 * cw) / 2.0 + 30.0, 70.0);
    let names = ["no conversion (0)", "conversion (1)"];
    for t in 0..2 {
        for p in 0..2 {
            let c = m[t][p];
            let share = c as f64 / total;
            let right = t == p;
            // Right cells in blue, wrong in red, darker for larger shares.
            let alpha = 0.12 + 0.8 * share.sqrt();
            let color = if right { "31,119,180" } else { "214,39,40" };
            let (x, y) = (x0 + p as f64 * cw, y0 + t as f64 * ch);
            let _ = write!(o, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cw}\" height=\"{ch}\" fill=\"rgba({color},{alpha:.3})\" stroke=\"#fff\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"font-size:22px;font-weight:bold\">{c}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.3}% {}</text>", x + cw / 2.0, y + ch / 2.0, x + cw / 2.0, y + ch / 2.0 + 22.0, 100.0 * share, match (t, p) { (1, 1) => "TP", (0, 0) => "TN", (0, _) => "FP", _ => "FN" });
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 8.0,
            y0 + t as f64 * ch + ch / 2.0 + 4.0,
            names[t]
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + t as f64 * cw + cw / 2.0,
            y0 - 10.0,
            names[t]
        );
    }
    let _ = write!(o, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"font-weight:bold\">predicted</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"font-weight:bold\">truth</text>", x0 + cw, y0 - 34.0, x0 - 90.0, y0 + 2.0 * ch + 28.0);
    close(&mut o);
    o
}

/// Signed time error of true positives against conversation duration.
fn time_error(rows: &[Scored]) -> String {
    let tp: Vec<&Scored> = rows
        .iter()
        .filter(|r| r.label == 1 && r.class == 1)
        .collect();
    let errs: Vec<f64> = tp.iter().map(|r| r.t_pred - r.time).collect();
    let mae = errs.iter().map(|e| e.abs()).sum::<f64>() / errs.len().max(1) as f64;
    let beyond = errs.iter().filter(|e| e.abs() >= REWARD_ZERO_ERR_S).count();
    let mut o = String::new();
    open(
        &mut o,
        "time-error",
        "Time error against conversation duration (true positives)",
        &format!(
            "predicted minus true seconds to conversion; {} true positives, MAE {mae:.3} s, {beyond} at or beyond the ±{REWARD_ZERO_ERR_S} s where the time reward reaches 0; line: mean |error| per duration bin",
            tp.len()
        ),
    );
    // The error axis fits the data (a good model's errors are a small
    // fraction of a second), capped at twice the reward-zero error.
    let (mut xmax, mut emax) = (DURATION_THRESHOLD_S * 2.0, 1e-3f64);
    for (r, e) in tp.iter().zip(&errs) {
        xmax = xmax.max(r.duration());
        emax = emax.max(e.abs());
    }
    let emax = emax.min(REWARD_ZERO_ERR_S * 2.0) * 1.1;
    let f = Frame::new((0.0, xmax * 1.02), (-emax, emax));
    f.axes(&mut o, "conversation duration (s)", "time error (s)");
    let _ = write!(
        o,
        "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#444\"/>",
        W - MR,
        y = f.py(0.0)
    );
    for s in [-1.0, 1.0] {
        let v = s * REWARD_ZERO_ERR_S;
        if f.inside(0.0, v) {
            let _ = write!(o, "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5 4\"/>", W - MR, y = f.py(v));
        }
    }
    for i in stride(tp.len(), MAX_POINTS) {
        let (x, e) = (tp[i].duration(), errs[i].clamp(-emax, emax));
        let _ = write!(
            o,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"#1f77b4\" opacity=\"0.45\"/>",
            f.px(x),
            f.py(e)
        );
    }
    // Mean |error| in 20 duration bins over the plotted range.
    const BINS: usize = 20;
    let mut sum = [0f64; BINS];
    let mut cnt = [0usize; BINS];
    for (r, e) in tp.iter().zip(&errs) {
        let b = ((r.duration() / (xmax * 1.02) * BINS as f64) as usize).min(BINS - 1);
        sum[b] += e.abs();
        cnt[b] += 1;
    }
    let line: Vec<String> = (0..BINS)
        .filter(|&b| cnt[b] > 0)
        .map(|b| {
            let x = (b as f64 + 0.5) / BINS as f64 * xmax * 1.02;
            format!(
                "{:.1},{:.1}",
                f.px(x),
                f.py((sum[b] / cnt[b] as f64).min(emax))
            )
        })
        .collect();
    let _ = write!(
        o,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>",
        line.join(" ")
    );
    legend(
        &mut o,
        &[
            ("#1f77b4", "one true positive"),
            ("#ff7f0e", "mean |error| per bin"),
            ("#d62728", "reward-zero error (±15 s)"),
        ],
    );
    close(&mut o);
    o
}

/// Class mistakes on the (duration, message ratio) plane with the rule's thresholds.
fn mistakes(rows: &[Scored]) -> String {
    let wrong: Vec<&Scored> = rows.iter().filter(|r| r.class != r.label).collect();
    let near = wrong
        .iter()
        .filter(|r| {
            (r.duration() - DURATION_THRESHOLD_S).abs() <= NEAR_DURATION_S
                || (r.ratio() - RATIO_THRESHOLD).abs() <= NEAR_RATIO
        })
        .count();
    let by_entity = wrong.iter().filter(|r| r.entity_rule()).count();
    let fp = wrong.iter().filter(|r| r.class == 1).count();
    let mut o = String::new();
    open(
        &mut o,
        "mistakes",
        "Mistakes against the rule's thresholds",
        &format!(
            "{} wrong classes ({fp} false positives, {} false negatives); {near} within {NEAR_DURATION_S} s of {DURATION_THRESHOLD_S} s or {NEAR_RATIO} of a {RATIO_THRESHOLD} message ratio; {by_entity} where the entity rule alone decides the truth; grey: a sample of right answers",
            wrong.len(),
            wrong.len() - fp
        ),
    );
    // Centre on the thresholds: twice their value, or wider to hold every mistake.
    let (mut xmax, mut ymax) = (DURATION_THRESHOLD_S * 2.0, RATIO_THRESHOLD * 2.0);
    for r in &wrong {
        xmax = xmax.max(r.duration());
        ymax = ymax.max(r.ratio());
    }
    let f = Frame::new((0.0, xmax * 1.02), (0.0, ymax * 1.02));
    f.axes(
        &mut o,
        "conversation duration (s)",
        "message ratio (user / agent)",
    );
    let right: Vec<&Scored> = rows.iter().filter(|r| r.class == r.label).collect();
    for i in stride(right.len(), MAX_POINTS) {
        let r = right[i];
        if f.inside(r.duration(), r.ratio()) {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"#bbb\" opacity=\"0.5\"/>",
                f.px(r.duration()),
                f.py(r.ratio())
            );
        }
    }
    let (tx, ty) = (f.px(DURATION_THRESHOLD_S), f.py(RATIO_THRESHOLD));
    let _ = write!(o, "<line x1=\"{tx:.1}\" y1=\"{MT}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#444\" stroke-dasharray=\"5 4\"/><line x1=\"{ML}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#444\" stroke-dasharray=\"5 4\"/>", H - MB, W - MR);
    let _ = write!(o, "<text x=\"{:.1}\" y=\"{:.1}\">90 s</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">ratio 1.2</text>", tx + 4.0, MT + 12.0, W - MR - 4.0, ty - 4.0);
    for i in stride(wrong.len(), MAX_MISTAKES) {
        let r = wrong[i];
        let (x, y) = (f.px(r.duration()), f.py(r.ratio()));
        let color = if r.class == 1 { "#d62728" } else { "#1f77b4" };
        if r.entity_rule() {
            let _ = write!(o, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>", x - 4.0, y - 4.0);
        } else {
            let _ = write!(
                o,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{color}\" opacity=\"0.8\"/>"
            );
        }
    }
    legend(
        &mut o,
        &[
            ("#d62728", "false positive"),
            ("#1f77b4", "false negative (squares: entity rule decides)"),
            ("#bbb", "right answers (sample)"),
        ],
    );
    close(&mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(duration: f64, ratio: f64, label: u8, class: u8, conf: f64) -> Scored {
        let mut raw = [0.0; N_FEATURES];
        raw[idx::CONVERSATION_DURATION_SECONDS] = duration;
        raw[idx::MESSAGE_RATIO] = ratio;
        Scored {
            raw,
            label,
            time: if label == 1 { 0.7 * duration } else { -1.0 },
            class,
            t_pred: if class == 1 {
                0.7 * duration + 2.0
            } else {
                -1.0
            },
            confidence: conf,
        }
    }

    #[test]
    fn four_charts_with_the_counts_they_are_given() {
        let rows = vec![
            row(95.0, 1.3, 1, 1, 0.9),
            row(120.0, 1.5, 1, 1, 0.8),
            row(89.0, 1.3, 0, 1, 0.6),   // FP next to 90 s
            row(100.0, 1.22, 1, 0, 0.4), // FN next to 1.2
            row(30.0, 0.5, 0, 0, 0.05),
        ];
        let h = html("t <&>", "summary", &rows);
        for id in ["reliability", "confusion", "time-error", "mistakes"] {
            assert_eq!(
                h.matches(&format!("data-chart=\"{id}\"")).count(),
                1,
                "{id}"
            );
        }
        assert!(h.contains("t &lt;&amp;&gt;"));
        assert!(h.contains("2 wrong classes (1 false positives, 1 false negatives); 2 within"));
        assert!(h.contains("2 true positives, MAE 2.000 s"));
        assert!(!h.contains("<script"), "the report runs no script");
        assert!(
            !h.contains("NaN") && !h.contains("inf\""),
            "every coordinate is finite"
        );
    }

    #[test]
    fn an_empty_set_still_draws_four_charts() {
        let h = html("empty", "", &[]);
        assert_eq!(h.matches("<svg").count(), 4);
        assert!(!h.contains("NaN"));
    }

    #[test]
    fn train_s_report_lands_next_to_the_model_file() {
        // A copy of the shipped model, so weights/report.html is left alone.
        let dir = std::env::temp_dir().join(format!("cm-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("model.json");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../weights/model.json"),
            &model,
        )
        .unwrap();
        let p = for_model_file(model.to_str().unwrap(), 777, 300).unwrap();
        assert_eq!(p, dir.join(FILE_NAME));
        let h = std::fs::read_to_string(&p).unwrap();
        assert_eq!(h.matches("<svg").count(), 4);
        assert!(h.contains("300 conversations, seed 777: n=300"), "{h}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(-33.0, 33.0);
        assert!(t.contains(&0.0) && t.first().unwrap() >= &-33.0 && t.last().unwrap() <= &33.0);
        assert_eq!(fmt_tick(0.6000000000000001), "0.6");
        assert_eq!(stride(10, 3).collect::<Vec<_>>(), vec![0, 4, 8]);
    }
}
