//! `gen`, `train` and `eval` subcommands.
use clap::Args;

#[derive(Debug, Args)]
pub struct GenArgs {}
#[derive(Debug, Args)]
pub struct TrainArgs {}
#[derive(Debug, Args)]
pub struct EvalArgs {}

pub fn gen(_a: &GenArgs) -> anyhow::Result<i32> { anyhow::bail!("gen: not built yet") }
pub fn train(_a: &TrainArgs) -> anyhow::Result<i32> { anyhow::bail!("train: not built yet") }
pub fn eval(_a: &EvalArgs, _embedded: &'static cm_core::model::Model) -> anyhow::Result<i32> { anyhow::bail!("eval: not built yet") }
