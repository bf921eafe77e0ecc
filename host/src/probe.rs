//! (probe: next)
pub fn run(_a: &crate::ProbeArgs) -> anyhow::Result<i32> { anyhow::bail!("probe not built yet") }
