//! `cmm-agent self-update [--to TAG] [--allow-downgrade] | --rollback`: the settings checked
//! (`settings::update`), the work in `ops::update`, the outcome rendered.

use crate::cli::{GlobalArgs, SelfUpdateArgs};
use crate::ops::update;
use crate::render;
use crate::settings::SelfUpdateSettings;

pub async fn run(global: &GlobalArgs, args: SelfUpdateArgs) -> anyhow::Result<()> {
    // Every input first, then every refusal, then the network.
    let settings = SelfUpdateSettings::resolve(&args)?;
    let outcome = update::run(&settings).await?;
    render::emit(global.output, &outcome)
}
