//! `cmm-agent deregister`: remove the cluster's datasource, alert rules and rule folder from the
//! central Grafana. Only objects under CMM's uids are touched; safe to repeat.

use anyhow::Context;
use clap::Args;
use cmm_core::ClusterName;

use crate::cli::{GlobalArgs, Output};
use crate::cmd::register::{central_class, GrafanaArgs};
use crate::exit::{Classify, ExitCode};
use crate::output::outln;

#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// The cluster's name, e.g. kr-mum.
    #[arg(long, env = "CMM_CLUSTER")]
    pub cluster: String,
    #[command(flatten)]
    pub grafana: GrafanaArgs,
}

pub async fn run(global: &GlobalArgs, args: DeregisterArgs) -> anyhow::Result<()> {
    let cluster = ClusterName::parse(&args.cluster)
        .classify(ExitCode::Usage)
        .context("--cluster / CMM_CLUSTER")?;
    let grafana = args.grafana.client(None)?;
    let r = cmm_central::deregister(&grafana, &cluster)
        .await
        .classify_by(central_class)?;
    match global.output {
        Output::Json => crate::output::json(&r)?,
        Output::Human => {
            let said = |b: bool| if b { "removed" } else { "was not there" };
            outln!("Cluster {} in Grafana {}", r.cluster, grafana.base_url());
            outln!(
                "  datasource   {}: {}",
                r.datasource_uid,
                said(r.datasource_deleted)
            );
            outln!("  alert rules  {}", said(r.rules_deleted));
            match &r.folder_kept {
                Some(why) => outln!("  rule folder  kept: {why}"),
                None => outln!("  rule folder  {}", said(r.folder_deleted)),
            }
            crate::cmd::register::print_fleet(&r.fleet);
        }
    }
    Ok(())
}
