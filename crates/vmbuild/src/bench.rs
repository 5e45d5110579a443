//! `vmbuild bench ...` (filled in below).
use crate::cli::BenchCommand;

pub async fn bench(_b: BenchCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
