//! Diagnostic: where a model file's time errors fall (by entities/target, duration, ratio).
use cm_train::{eval, export};
fn main() {
    let path = std::env::args().nth(1).expect("model file");
    let mf: cm_modelfile::ModelFile =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = eval::test_set(4242, 50_000);
    let mut by_e = std::collections::BTreeMap::new();
    let mut by_d = std::collections::BTreeMap::new();
    let mut by_r = std::collections::BTreeMap::new();
    for s in rows.iter().filter(|s| s.label == 1) {
        let x: Vec<f64> = {
            let v = cm_modelfile::transform::inputs_f64(&s.raw);
            (0..47)
                .map(|i| (v[i] - mf.scaler.mean[i]) / mf.scaler.std[i])
                .collect()
        };
        let ts: Vec<f64> = mf
            .regressors
            .iter()
            .map(|n| export::forward_f64(n, &x) * mf.target.std + mf.target.mean)
            .collect();
        let e = ((ts[0] + ts[1]) / 2.0 - s.time).abs();
        let e0 = ts[0] - s.time;
        let k = (s.raw[34] as i32, s.raw[33] as i32);
        let a = by_e.entry(k).or_insert((0.0, 0.0, 0usize));
        a.0 += e;
        a.1 += e0;
        a.2 += 1;
        let d = (s.raw[0] / 10.0).floor() as i32 * 10;
        let a = by_d.entry(d).or_insert((0.0, 0.0, 0usize));
        a.0 += e;
        a.1 += e0;
        a.2 += 1;
        let r = (s.raw[18] * 10.0).floor() as i32;
        let a = by_r.entry(r).or_insert((0.0, 0.0, 0usize));
        a.0 += e;
        a.1 += e0;
        a.2 += 1;
    }
    for (name, m) in [("(has_target, entities)", &by_e)] {
        println!("{name}");
        for (k, (s, b, n)) in m.iter() {
            println!(
                "  {k:?}: n {n} MAE {:.4} bias0 {:.4}",
                s / *n as f64,
                b / *n as f64
            );
        }
    }
    for (name, m) in [("duration/10", &by_d), ("ratio*10", &by_r)] {
        println!("{name}");
        for (k, (s, b, n)) in m.iter() {
            println!(
                "  {k:?}: n {n} MAE {:.4} bias0 {:.4}",
                s / *n as f64,
                b / *n as f64
            );
        }
    }
}
