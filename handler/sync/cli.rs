//! `handler sync` arguments. Placeholder until issue 4 lands.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {}

pub async fn run(_state: crate::app::AppState, _args: SyncArgs) -> anyhow::Result<i32> {
    anyhow::bail!("sync is not built yet")
}
