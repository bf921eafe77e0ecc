//! `conversion-miner`: one binary for serving, probing, training and predicting.
use clap::{Parser, Subcommand};
use conversion_miner::{embedded, predict};

// The static builds link musl, whose malloc serialises threads on one lock;
// mimalloc keeps per-thread heaps. Under probe load the musl build's mean
// handler time was about 17% lower with it (deploy/DEPLOY.md, step 1), for
// ~8 MB more peak RSS. glibc builds keep glibc's malloc (per-thread arenas).
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "conversion-miner", version, about = "Bittensor conversion-analytics miner: a trained model compiled in, served over the axon protocol.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up and matched once: the size of the largest
// variant (serve's many flags) costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the axon protocol to validators (use --dev to try it locally).
    Serve(Box<cm_host::ServeArgs>),
    /// Act as a validator: send signed generated conversations to a miner and score the answers.
    Probe(cm_probe::ProbeArgs),
    /// Predict from JSON lines on stdin (a synapse body or a bare features object per line).
    Predict(predict::PredictArgs),
    /// Generate validator-like conversations with ground truth as CSV.
    Gen(cm_train::cli::GenArgs),
    /// Train the ensemble and write a weights file.
    Train(cm_train::cli::TrainArgs),
    /// Recompute a generator-trained model file's training_stats (drift reference) in place; weights untouched.
    Restat(cm_train::cli::RestatArgs),
    /// Score a model with the subnet reward, next to the oracle, on a held-out seed.
    Eval(cm_train::cli::EvalArgs),
    /// Compare a request log (serve --log-requests) with the model's training distribution.
    Drift(cm_host::DriftArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Serve(a) => cm_host::serve(
            a,
            embedded::model(),
            embedded::SOURCE_SHA256,
            embedded::TRAINING_STATS_JSON,
        ),
        Cmd::Probe(a) => cm_probe::run(a),
        Cmd::Predict(a) => predict::run(a, embedded::model()),
        Cmd::Gen(a) => cm_train::cli::gen(a),
        Cmd::Train(a) => cm_train::cli::train(a),
        Cmd::Restat(a) => cm_train::cli::restat(a),
        Cmd::Eval(a) => cm_train::cli::eval(a, embedded::model()),
        Cmd::Drift(a) => cm_host::drift(a, embedded::TRAINING_STATS_JSON),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
