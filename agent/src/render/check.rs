//! `check`'s report: findings by stage (the one `Finding` type of `cmm_core::finding`).

use cmm_central::fleet::FleetRow;
use cmm_core::finding::{Finding, Severity, Stage, Verdict};

use super::Render;
use crate::output::outln;

/// The report `--output json` prints; the human renderer prints the same data.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    /// The cluster, or with `role` central the central release.
    pub cluster: String,
    pub namespace: String,
    /// `cluster` or `central`.
    pub role: &'static str,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Role central: one row per registered cluster, as the central Grafana sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Vec<FleetRow>>,
    /// What `--repair` changed, in order (empty without it).
    pub repaired: Vec<String>,
}

impl Render for CheckReport {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn human(&self) {
        print_human(self)
    }
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "✓",
        Severity::Warning => "!",
        Severity::Failed => "✗",
        Severity::Skipped => "-",
    }
}

fn print_human(r: &CheckReport) {
    if r.cluster.is_empty() {
        outln!("Not configured: {:?}", r.verdict);
    } else if let Some(rows) = &r.fleet {
        outln!(
            "Central release {} (namespace {}): {:?}",
            r.cluster,
            r.namespace,
            r.verdict
        );
        print_fleet(rows);
    } else {
        outln!(
            "Cluster {} (namespace {}): {:?}",
            r.cluster,
            r.namespace,
            r.verdict
        );
    }
    let stages: &[Stage] = if r.fleet.is_some() {
        &Stage::CENTRAL
    } else {
        &Stage::ALL
    };
    let configured = !r.cluster.is_empty();
    for &stage in stages {
        let here: Vec<&Finding> = r.findings.iter().filter(|f| f.stage == stage).collect();
        if here.is_empty() {
            // Every stage is shown, so a person sees what was not looked at this run.
            if configured {
                outln!("{}", title(stage, r.fleet.is_some()));
                outln!("  - nothing judged in this stage this run");
            }
            continue;
        }
        outln!("{}", title(stage, r.fleet.is_some()));
        for f in here {
            outln!(
                "  {} {}: {}",
                mark(f.severity),
                f.subject,
                f.evidence.join("; ")
            );
            if let Some(rep) = &f.repair {
                if f.severity != Severity::Ok {
                    outln!("      repair ({:?}): {}", rep.kind, rep.detail);
                }
            }
        }
    }
    for d in &r.repaired {
        outln!("repaired: {d}");
    }
}

/// The central check's stages under their own names: the same findings, another subject.
fn title(stage: Stage, central: bool) -> &'static str {
    match (central, stage) {
        (false, s) => s.title(),
        (true, Stage::Release) => "1. central release",
        (true, Stage::Workloads) => "2. what reads the certificates at start",
        (true, Stage::Endpoint) => "3. the CMM CA and Grafana's client certificate",
        (true, Stage::Grafana) => "4. Grafana: health, contact points",
        (true, Stage::Fleet) => "5. the fleet: one finding per cluster, the fleet rule",
        (true, s) => s.title(),
    }
}

/// The fleet table: one line per cluster, the worst first, so a red row is read first.
fn print_fleet(rows: &[FleetRow]) {
    if rows.is_empty() {
        outln!("Fleet: no cluster registered");
        return;
    }
    let mut rows: Vec<&FleetRow> = rows.iter().collect();
    rows.sort_by(|a, b| {
        rank(b.severity)
            .cmp(&rank(a.severity))
            .then(a.cluster.cmp(&b.cluster))
    });
    let width = rows
        .iter()
        .map(|r| r.cluster.len())
        .max()
        .unwrap_or(7)
        .max(7);
    outln!(
        "  {:<width$}  {:<6}  {:<10}  {:>8}  {:<24}  {:>9}  firing",
        "cluster",
        "state",
        "datasource",
        "newest",
        "rules",
        "cert days"
    );
    for r in rows {
        let ds = if r.datasource == "ok" {
            "ok"
        } else {
            "FAILING"
        };
        outln!(
            "  {:<width$}  {:<6}  {:<10}  {:>8}  {:<24}  {:>9}  {}",
            r.cluster,
            match r.severity {
                Severity::Ok => "ok",
                Severity::Warning => "WARN",
                Severity::Failed => "FAILED",
                Severity::Skipped => "-",
            },
            ds,
            r.newest_sample_seconds
                .map_or_else(|| "none".to_owned(), |s| format!("{s:.0}s")),
            r.rules,
            r.cert_days_left
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            if r.firing.is_empty() {
                "-".to_owned()
            } else {
                r.firing.join(", ")
            }
        );
    }
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Failed => 3,
        Severity::Warning => 2,
        Severity::Skipped => 1,
        Severity::Ok => 0,
    }
}
