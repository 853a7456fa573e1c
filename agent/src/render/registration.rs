//! `register`, `deregister` and bootstrap's registration step.

use cmm_central::endpoint::is_plain_http;
use cmm_central::register::{DatasourceAction, FleetReport};

use super::Render;
use crate::ops::registration::{Deregistered, Registered};
use crate::output::outln;

impl Render for Registered {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(match self {
            Registered::PerCluster { endpoint, report } => {
                let mut v = serde_json::to_value(report)?;
                v["endpoint"] = serde_json::to_value(endpoint)?;
                v["insecure"] = serde_json::json!(is_plain_http(&report.prometheus_url));
                v
            }
            Registered::Shared(s) => {
                let mut v = serde_json::to_value(&s.report)?;
                v["topology"] = serde_json::json!(s.topology);
                v["heard"] = serde_json::json!(s.heard);
                v
            }
        })
    }

    fn human(&self) {
        match self {
            Registered::PerCluster { endpoint, report } => per_cluster(endpoint, report),
            Registered::Shared(s) => shared(s),
        }
    }
}

fn per_cluster(endpoint: &cmm_central::endpoint::Endpoint, r: &cmm_central::RegisterReport) {
    outln!("Cluster {} in Grafana {}", r.cluster, r.grafana);
    let probe = match &r.prometheus {
        Some(p) => format!(
            "{} series carry cluster={:?}, {} targets up",
            p.series, r.cluster, p.targets_up
        ),
        None => "not probed from here (--skip-prometheus-check)".into(),
    };
    outln!(
        "  prometheus   {} ({}): {probe}",
        r.prometheus_url,
        endpoint.detail
    );
    if is_plain_http(&r.prometheus_url) {
        outln!("  INSECURE     plain HTTP, asked for with --insecure-plain-http: anyone on the path between Grafana and the cluster reads its metrics");
    }
    let action = match &r.datasource {
        DatasourceAction::Create => "created".to_owned(),
        DatasourceAction::Update { .. } => "updated".to_owned(),
        DatasourceAction::Unchanged => "unchanged".to_owned(),
        DatasourceAction::Replace { foreign_uid } => {
            format!("created, replacing {foreign_uid} (--force)")
        }
    };
    outln!("  datasource   {}: {action}", r.datasource_uid);
    match &r.rules {
        Some(rules) => outln!(
            "  alert rules  folder {}, group {}: {} ({:?}, {})",
            rules.folder_uid,
            rules.group,
            rules.rules.join(", "),
            rules.mode,
            written(rules.changed)
        ),
        None => outln!("  alert rules  skipped (--rules skip)"),
    }
    if let Some(rules) = &r.rules {
        fleet(&rules.fleet);
    }
    health(r.health.ok, &r.health.message);
}

fn shared(s: &crate::ops::registration::Shared) {
    let report = &s.report;
    outln!(
        "Cluster {} in Grafana {} (topology {})",
        report.cluster,
        report.grafana,
        s.topology
    );
    if let Some(l) = &s.store {
        outln!("{l}");
    }
    outln!(
        "  datasource   {} (shared by every cluster; none of its own)",
        report.datasource_uid
    );
    outln!(
        "  alert rules  folder {}, group {}: {} ({})",
        report.folder_uid,
        report.group,
        if report.clusters.is_empty() {
            "skipped".to_owned()
        } else {
            format!("CmmClusterSilent expects {}", report.clusters.join(", "))
        },
        written(report.changed)
    );
    if let Some(h) = &s.heard {
        outln!("  receiver     {h}");
    }
    health(report.health.ok, &report.health.message);
}

fn written(changed: bool) -> &'static str {
    if changed {
        "written"
    } else {
        "unchanged"
    }
}

fn health(ok: bool, message: &str) {
    outln!(
        "  health       {}: {}",
        if ok { "OK" } else { "FAILED" },
        message
    );
}

/// The fleet rule's line, and why it was left alone when a counted cluster vanished.
fn fleet(f: &FleetReport) {
    if f.clusters.is_empty() {
        outln!("  fleet rule   none (no cluster registered)");
    } else {
        outln!("  fleet rule   counts {}", f.clusters.join(", "));
    }
    if !f.vanished.is_empty() {
        outln!(
            "  fleet rule   left unchanged: the datasource of {} is gone from Grafana although \
             it was never deregistered (the rule pages for it); register it again, or run \
             `cmm-agent deregister` for it if it was retired",
            f.vanished.join(", ")
        );
    }
}

/// `deregister`'s report, with the Grafana it spoke to.
pub struct Left<'a> {
    pub cluster: &'a str,
    pub grafana: &'a str,
    pub what: &'a Deregistered,
}

impl Render for Left<'_> {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(match self.what {
            Deregistered::PerCluster(r) => serde_json::to_value(r)?,
            Deregistered::Shared {
                topology,
                datasource_uid,
                endpoint_removed,
                clusters,
            } => serde_json::json!({
                "cluster": self.cluster,
                "topology": topology,
                "datasource_uid": datasource_uid,
                "endpoint_removed": endpoint_removed,
                "clusters": clusters,
            }),
        })
    }

    fn human(&self) {
        let said = |b: bool| if b { "removed" } else { "was not there" };
        match self.what {
            Deregistered::PerCluster(r) => {
                outln!("Cluster {} in Grafana {}", r.cluster, self.grafana);
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
                fleet(&r.fleet);
            }
            Deregistered::Shared {
                topology,
                datasource_uid,
                endpoint_removed,
                clusters,
            } => {
                outln!(
                    "Cluster {} in Grafana {} (topology {topology})",
                    self.cluster,
                    self.grafana
                );
                if let Some(had) = endpoint_removed {
                    outln!("  store        {}", said(*had));
                }
                outln!(
                    "  alert rules  CmmClusterSilent now expects: {}",
                    if clusters.is_empty() {
                        "no cluster (group removed)".to_owned()
                    } else {
                        clusters.join(", ")
                    }
                );
                outln!("  datasource   {datasource_uid}: kept (shared by every cluster)");
            }
        }
    }
}
