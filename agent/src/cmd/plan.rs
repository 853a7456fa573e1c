//! `cmm-agent plan`: render every release of a fleet offline with the real chart and say what
//! each would create, per object kind (`ops::plan`). Changes nothing anywhere.

use anyhow::Context;
use cmm_installer::fleet::Fleet;

use crate::cli::{GlobalArgs, PlanArgs};
use crate::exit::{Classify, ExitCode};
use crate::render;
use crate::settings::ChartSettings;

pub async fn run(global: &GlobalArgs, args: PlanArgs) -> anyhow::Result<()> {
    let settings = ChartSettings::resolve(&args.chart)?;
    let fleet = match &args.fleet {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .classify(ExitCode::Usage)
                .with_context(|| {
                    format!(
                        "reading fleet file {} (--fleet / CMM_FLEET)",
                        path.display()
                    )
                })?;
            Fleet::parse(&text, &path.display().to_string()).classify(ExitCode::Usage)?
        }
        None => Fleet::example(),
    };
    let plan = crate::ops::plan::plan(settings, &fleet).await?;
    render::emit(global.output, &plan)
}
