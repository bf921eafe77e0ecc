//! Host side of conversion-miner (std): axon server and probe.
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {}
#[derive(Debug, Args)]
pub struct ProbeArgs {}

pub fn serve(_a: &ServeArgs, _embedded: &'static cm_core::model::Model, _embedded_sha256: &'static str) -> anyhow::Result<i32> { anyhow::bail!("serve: not built yet") }
pub fn probe(_a: &ProbeArgs) -> anyhow::Result<i32> { anyhow::bail!("probe: not built yet") }
