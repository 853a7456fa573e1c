//! `cmm-agent deregister`: take the cluster out of the central Grafana, as the topology says
//! (`ops::registration::deregister`). Only objects under CMM's uids are touched; safe to repeat.

use crate::cli::{DeregisterArgs, GlobalArgs};
use crate::ops::registration;
use crate::render::{self, Left};
use crate::settings::DeregisterSettings;

pub async fn run(global: &GlobalArgs, args: DeregisterArgs) -> anyhow::Result<()> {
    let s = DeregisterSettings::resolve(&args)?;
    let grafana = s.grafana.token_client()?;
    let what = registration::deregister(&grafana, &s.cluster, &s.wiring, &s.central).await?;
    render::emit(
        global.output,
        &Left {
            cluster: s.cluster.as_str(),
            grafana: grafana.base_url().as_str(),
            what: &what,
        },
    )
}
