//! Development entry point: `gen`, `train` and `eval --weights` without the
//! root binary (whose build needs a weights file to exist).
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Gen(cm_train::cli::GenArgs),
    Train(cm_train::cli::TrainArgs),
}

fn main() -> anyhow::Result<()> {
    let code = match &Cli::parse().cmd {
        Cmd::Gen(a) => cm_train::cli::gen(a)?,
        Cmd::Train(a) => cm_train::cli::train(a)?,
    };
    std::process::exit(code)
}
