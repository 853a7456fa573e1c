//! `check`'s report: findings by stage (the one `Finding` type of `cmm_core::finding`).

use cmm_core::finding::{Finding, Severity, Stage, Verdict};

use super::Render;
use crate::output::outln;

/// The report `--output json` prints; the human renderer prints the same data.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    pub cluster: String,
    pub namespace: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
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
    } else {
        outln!(
            "Cluster {} (namespace {}): {:?}",
            r.cluster,
            r.namespace,
            r.verdict
        );
    }
    let configured = !r.cluster.is_empty();
    for stage in Stage::ALL {
        let here: Vec<&Finding> = r.findings.iter().filter(|f| f.stage == stage).collect();
        if here.is_empty() {
            // Every stage is shown, so a person sees what was not looked at this run.
            if configured {
                outln!("{}", stage.title());
                outln!("  - nothing judged in this stage this run");
            }
            continue;
        }
        outln!("{}", stage.title());
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
