//! The one place settings are resolved. Today: flags and their `CMM_*` twins (clap merges
//! those); the `/etc/cmm/agent.toml` layer slots in here without touching the commands.

use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;

use crate::cli::ChartArgs;
use crate::exit::{Classify, ExitCode};

/// The chart and helm a command renders or installs with.
pub struct ChartSettings {
    pub chart: ChartSource,
    pub helm: Helm,
}

impl ChartSettings {
    pub fn resolve(args: &ChartArgs) -> anyhow::Result<Self> {
        let chart = match &args.chart {
            Some(raw) => ChartSource::parse(raw).classify(ExitCode::Usage)?,
            None => ChartSource::upstream(),
        };
        Ok(Self {
            chart,
            helm: Helm::new(args.helm.clone()),
        })
    }
}
