//! `conversion-miner predict`: JSON lines in, one answer line out per input.
//!
//! The server's parser and model, minus the network: bytes go to
//! `cm_core::parse::parse_body` (a synapse body or a bare features object)
//! and its features to the model, as in `cm_core::serve::serve`, the
//! server's path. Where the server then writes the whole synapse back, this
//! prints only the prediction (`cm_core::respond::write_prediction`). A bad
//! line gets `{"error":"..."}` naming the field and the problem, and the run
//! goes on; the exit status is 1 if any line failed. Lines are read as bytes,
//! so invalid UTF-8 is one more bad line rather than the end of the run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use cm_core::model::Model;
use cm_core::parse::{parse_body, KeyOrder};
use cm_core::respond::{write_prediction, MAX_PREDICTION_LEN};

/// Options of `predict`.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// Load this weights file (model.json format) at run time instead of the
    /// model compiled into the binary.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Forward kernel: auto (fastest this CPU runs), scalar, avx2-fma-f16c, avx512f, neon (avx2, avx512 still accepted).
    #[arg(long, value_name = "NAME", default_value = cm_host::kernel::AUTO)]
    pub kernel: String,
}

/// Run `predict` over stdin/stdout; returns the process exit status.
pub fn run(args: &PredictArgs, embedded: &'static Model) -> Result<i32> {
    let kernel = cm_host::kernel::select(&args.kernel)?;
    let loaded;
    let model: &Model = match &args.weights {
        Some(path) => {
            loaded = cm_modelfile::load_model(path)?;
            &loaded
        }
        None => embedded,
    };
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    let mut buf = [0u8; MAX_PREDICTION_LEN];
    let mut failed = 0usize;
    let mut line_no = 0usize;
    // The feature order of this input, learned line by line.
    let mut order = KeyOrder::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let body = line.trim_ascii();
        if body.is_empty() {
            continue;
        }
        let answer = parse_body(body, &mut order)
            .and_then(|b| b.features())
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let p = model.predict(&f, kernel);
                write_prediction(&p, &mut buf).map_err(|e| e.to_string())
            });
        match answer {
            Ok(len) => {
                out.write_all(&buf[..len])?;
                out.write_all(b"\n")?;
            }
            Err(msg) => {
                failed += 1;
                let err = serde_json::json!({ "error": format!("line {line_no}: {msg}") });
                writeln!(out, "{err}")?;
            }
        }
        if interactive {
            out.flush()?;
        }
    }
    out.flush().context("writing stdout")?;
    if failed > 0 {
        eprintln!("predict: {failed} of {line_no} lines failed");
    }
    Ok(i32::from(failed > 0))
}
