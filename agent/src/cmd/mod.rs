//! One module per subcommand.

pub(crate) mod assets;
pub(crate) mod bootstrap;
pub(crate) mod central;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod deregister;
pub(crate) mod fix_storage;
mod plan;
pub(crate) mod rbac;
pub(crate) mod register;
pub(crate) mod schedule;
pub(crate) mod update;

use crate::cli::{Cli, Command};
use crate::settings::ConfigLocation;

pub async fn run(cli: Cli, config: &ConfigLocation) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(args) => plan::run(&cli.global, args).await,
        Command::Bootstrap(args) => bootstrap::run(&cli.global, args).await,
        Command::FixStorage(args) => fix_storage::run(&cli.global, args).await,
        Command::Register(args) => register::run(&cli.global, args).await,
        Command::Deregister(args) => deregister::run(&cli.global, args).await,
        Command::Central(args) => central::run(&cli.global, args).await,
        Command::Rbac(args) => rbac::run(&cli.global, args),
        Command::Check(args) => check::run(&cli.global, args, config).await,
        Command::Schedule(args) => schedule::run(&cli.global, args, config),
        Command::Config(args) => config::run(&cli.global, args, config),
        Command::SelfUpdate(args) => update::run(&cli.global, args).await,
        Command::GenerateAssets(args) => assets::run(args),
    }
}
