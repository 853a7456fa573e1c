//! One module per subcommand.

mod bootstrap;
mod fix_storage;
mod plan;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(args) => plan::run(&cli.global, args).await,
        Command::Bootstrap(args) => bootstrap::run(&cli.global, args).await,
        Command::FixStorage(args) => fix_storage::run(&cli.global, args).await,
    }
}
