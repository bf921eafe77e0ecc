//! Shared bench inputs: deterministic random networks and validator-like
//! request bodies, so every bench (and the PyTorch peer) sees the same data.
#![allow(dead_code)]

pub mod cpu_clock;

use cm_core::kernels::{weight_from_f64, CpuFeatures, Kernel, Mlp};
use cm_core::schema::{FEATURE_NAMES, H1, H2, IS_INTEGER, N_INPUTS};

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A network with uniform weights scaled by 1/sqrt(fan_in) and small
/// biases: about half of each ReLU layer is active, like a trained one.
pub fn random_mlp(seed: u64) -> Box<Mlp> {
    let mut r = Rng(seed);
    let mut m = Box::new(Mlp::ZERO);
    let s1 = 1.7 / (N_INPUTS as f64).sqrt();
    let s2 = 1.7 / (H1 as f64).sqrt();
    for w in m.w1.iter_mut().flatten() {
        *w = weight_from_f64(r.sym() * s1);
    }
    for w in m.w2.iter_mut().flatten() {
        *w = weight_from_f64(r.sym() * s2);
    }
    for b in m.b1.iter_mut().chain(m.b2.iter_mut()) {
        *b = (r.sym() * 0.1) as f32;
    }
    for w in m.w3.iter_mut() {
        *w = (r.sym() / (H2 as f64).sqrt()) as f32;
    }
    m
}

/// `n` standard-scale input vectors.
pub fn random_inputs(seed: u64, n: usize) -> Vec<[f32; N_INPUTS]> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| std::array::from_fn(|_| (r.sym() * 1.7) as f32))
        .collect()
}

/// What this CPU can run (the core's detection, as the host uses it).
pub fn cpu() -> CpuFeatures {
    CpuFeatures::detect()
}

/// Every kernel this CPU can run, scalar first.
pub fn kernels() -> Vec<Kernel> {
    Kernel::runnable(cpu()).collect()
}

/// `n` synapse request bodies as a validator's dendrite sends them: the
/// subnet's generator's conversations (integers as integers) with a session
/// id, the synapse's other fields, the `dendrite` and `axon` blocks with a
/// real hotkey and signature's length, and Python's `", "` / `": "`
/// separators (the layout of the request in AXON.md section 9).
pub fn request_bodies(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = cm_train::rng::Rng::new(seed);
    (0..n)
        .map(|k| {
            let v = cm_train::gen::conversation(&mut rng);
            let mut f = serde_json::Map::new();
            f.insert("session_id".into(), format!("bench-{seed}-{k:08}").into());
            for (i, name) in FEATURE_NAMES.iter().enumerate() {
                let value: serde_json::Value = if IS_INTEGER[i] {
                    (v[i] as i64).into()
                } else {
                    v[i].into()
                };
                f.insert((*name).into(), value);
            }
            let body = serde_json::json!({
                "name": "ConversionSynapse",
                "timeout": 12.0,
                "total_size": 0,
                "header_size": 0,
                "dendrite": {"status_code": null, "status_message": null, "process_time": null,
                    "ip": "10.9.9.9", "port": null, "version": 10005000,
                    "nonce": 1795626734383137861u64 + k as u64,
                    "uuid": "5c06965a-e8f3-11f1-9a7d-02fc00000001",
                    "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
                    "signature": format!("0x{}", "6c15c847ea75fffd".repeat(8))},
                "axon": {"status_code": null, "status_message": null, "process_time": null,
                    "ip": "127.0.0.1", "port": 8091, "version": null, "nonce": null, "uuid": null,
                    "hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", "signature": null},
                "computed_body_hash": "",
                "features": f,
                "prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0},
                "confidence": null,
                "response_time": 0.0,
                "miner_uid": 7
            });
            python_spacing(&serde_json::to_vec(&body).expect("json"))
        })
        .collect()
}

/// Compact JSON re-spaced the way Python's `json.dumps` writes it: a space
/// after every `,` and `:` outside strings.
fn python_spacing(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 11 / 10);
    let mut strings = cm_train::json_text::Strings::default();
    for &c in compact {
        out.push(c);
        if strings.structural(c) && (c == b',' || c == b':') {
            out.push(b' ');
        }
    }
    out
}

/// The criterion configuration every bench uses: thread CPU clock.
pub fn criterion() -> criterion::Criterion<cpu_clock::CpuClock> {
    criterion::Criterion::default().with_measurement(cpu_clock::CpuClock::from_env())
}

/// The miner identity the predict benches' answers carry (only used when a
/// body has no axon).
pub const MINER: cm_core::respond::AxonId<'static> = cm_core::respond::AxonId {
    hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    ip: "127.0.0.1",
    port: 8091,
};

/// The server's call as the request-path benches make it: `serve` on a
/// conversion body into a buffer sized for the largest bench body, the key
/// order carried from call to call, and the clock for `response_time`
/// started just before the call, as `host/src/server.rs` starts it.
pub struct ServerCall<'m> {
    server: cm_core::serve::Server<'m>,
    order: cm_core::parse::KeyOrder,
    out: Vec<u8>,
}

impl<'m> ServerCall<'m> {
    pub fn new(model: &'m cm_core::model::Model, kernel: Kernel, bodies: &[Vec<u8>]) -> Self {
        let server = cm_core::serve::Server {
            model,
            kernel,
            me: MINER,
        };
        let max_len = bodies.iter().map(Vec::len).max().unwrap_or(0);
        let cap = cm_core::serve::capacity(max_len, cm_core::serve::Route::Conversion, &server);
        ServerCall {
            server,
            order: cm_core::parse::KeyOrder::new(),
            out: vec![0u8; cap],
        }
    }

    /// Serves `body`; the answer's length.
    #[inline(always)]
    pub fn answer(&mut self, body: &[u8]) -> usize {
        let start = std::time::Instant::now();
        cm_core::serve::serve(
            std::hint::black_box(body),
            cm_core::serve::Route::Conversion,
            &self.server,
            &mut self.order,
            || start.elapsed().as_secs_f64(),
            &mut self.out,
        )
        .expect("serves")
        .len
    }
}

/// Each generated body read as `predict` reads one.
pub fn parse_all(bodies: &[Vec<u8>]) -> Vec<cm_core::parse::Features<'_>> {
    bodies
        .iter()
        .map(|b| cm_core::parse::parse_request(b).expect("generated body parses"))
        .collect()
}

/// Network inputs of parsed requests: missing features filled, then the
/// feature transform.
pub fn network_inputs(
    model: &cm_core::model::Model,
    parsed: &[cm_core::parse::Features<'_>],
) -> Vec<[f32; N_INPUTS]> {
    parsed
        .iter()
        .map(|f| cm_core::features::inputs(&model.filled(&f.values, f.present)))
        .collect()
}

/// Network inputs (after parse, fill and feature transform) of `n`
/// generated validator requests.
pub fn request_inputs(model: &cm_core::model::Model, seed: u64, n: usize) -> Vec<[f32; N_INPUTS]> {
    network_inputs(model, &parse_all(&request_bodies(seed, n)))
}
