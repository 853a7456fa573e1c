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
    #[command(flatten)]
    pub topo: crate::cli::TopologyArgs,
    /// thanos: where the cluster's endpoint is removed from (the central cluster).
    #[command(flatten)]
    pub tls: crate::cmd::register::TlsArgs,
}

pub async fn run(global: &GlobalArgs, args: DeregisterArgs) -> anyhow::Result<()> {
    let cluster = ClusterName::parse(&args.cluster)
        .classify(ExitCode::Usage)
        .context("--cluster / CMM_CLUSTER")?;
    // Leaving needs no receiver URL: nothing is sent.
    let wiring = args.topo.wiring(true, false)?;
    let grafana = args.grafana.client(None)?;
    if let Some(uid) = wiring.topology.shared_datasource_uid() {
        return shared(global, &args, &wiring, &grafana, &cluster, uid).await;
    }
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

/// push, thanos: out of the shared rule set (and, thanos, the endpoints ConfigMap); the
/// shared datasource stays, it is every other cluster's.
async fn shared(
    global: &GlobalArgs,
    args: &DeregisterArgs,
    wiring: &cmm_installer::topology::Wiring,
    grafana: &cmm_central::GrafanaClient,
    cluster: &ClusterName,
    uid: &str,
) -> anyhow::Result<()> {
    use cmm_installer::topology::{self, Topology};
    let mut endpoint_removed = None;
    if wiring.topology == Topology::Thanos {
        let Some(context) = &args.tls.central_context else {
            return Err(crate::settings::BadInput(
                "topology thanos: the cluster's endpoint is removed from ConfigMap \
                 cmm-thanos-endpoints on the central cluster; set central-context"
                    .into(),
            ))
            .classify(ExitCode::Usage);
        };
        let kube = crate::cli::KubeTargetArgs {
            kubeconfig: None,
            context: None,
        };
        let conn = crate::cmd::register::central_connection(&args.tls, &kube, context).await?;
        let ns = &args.tls.central_namespace;
        let key = topology::endpoint_key(cluster);
        let had = conn
            .configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key)
            .await
            .classify_by(crate::exit::installer_class)?
            .is_some();
        if had {
            conn.set_configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key, None)
                .await
                .classify_by(crate::exit::installer_class)?;
        }
        endpoint_removed = Some(had);
    }
    let left = cmm_central::register::deregister_shared(grafana, cluster, uid)
        .await
        .classify_by(central_class)?;
    match global.output {
        Output::Json => crate::output::json(&serde_json::json!({
            "cluster": cluster.as_str(),
            "topology": wiring.topology.as_str(),
            "datasource_uid": uid,
            "endpoint_removed": endpoint_removed,
            "clusters": left,
        }))?,
        Output::Human => {
            outln!(
                "Cluster {cluster} in Grafana {} (topology {})",
                grafana.base_url(),
                wiring.topology
            );
            if let Some(had) = endpoint_removed {
                outln!(
                    "  store        {}",
                    if had { "removed" } else { "was not there" }
                );
            }
            outln!(
                "  alert rules  CmmClusterSilent now expects: {}",
                if left.is_empty() {
                    "no cluster (group removed)".to_owned()
                } else {
                    left.join(", ")
                }
            );
            outln!("  datasource   {uid}: kept (shared by every cluster)");
        }
    }
    Ok(())
}
