//! One module per subcommand.

mod plan;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(args) => plan::run(&cli.global, args).await,
    }
}
