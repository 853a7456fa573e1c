//! Findings: what `check` judged, as data. One type for every stage, so one renderer prints
//! them (human and JSON) and the verdict and exit code follow from the list alone.

use serde::Serialize;

/// The stages of the path from node-exporter to a Grafana alert, in the order each one's
/// output feeds the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Release,
    Workloads,
    Prometheus,
    Endpoint,
    Grafana,
    Storage,
    /// The central check: the registered clusters as Grafana sees them.
    Fleet,
}

impl Stage {
    /// The stages of a cluster's check, in the order the report shows them.
    pub const ALL: [Stage; 6] = [
        Stage::Release,
        Stage::Workloads,
        Stage::Prometheus,
        Stage::Endpoint,
        Stage::Grafana,
        Stage::Storage,
    ];

    /// The stages of the central check (`check --role central`), in order.
    pub const CENTRAL: [Stage; 5] = [
        Stage::Release,
        Stage::Workloads,
        Stage::Endpoint,
        Stage::Grafana,
        Stage::Fleet,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Stage::Release => "1. helm release",
            Stage::Workloads => "2. operator, Prometheus, node-exporter",
            Stage::Prometheus => "3. Prometheus: targets, labels, storage",
            Stage::Endpoint => "4. endpoint as Grafana reaches it",
            Stage::Grafana => "5. central Grafana: datasource, rules, contact points",
            Stage::Storage => "6. storage",
            Stage::Fleet => "the fleet, as the central Grafana sees it",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Ok,
    /// Works, but something needs attention (the run is degraded, exit 1).
    Warning,
    /// This part of the path is broken (exit 2).
    Failed,
    /// Not judged: an earlier stage failed or the setting to judge it is missing.
    Skipped,
}

/// What `check --repair` (or a person) can do about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// `register`, `recover-release`, `fix-storage`, `renew-certificates`, `reinstall` or
    /// `manual`.
    pub kind: RepairKind,
    /// What would be done, in words a person can also follow by hand.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairKind {
    /// Re-register the datasource and the rule group (safe, idempotent: `--repair`).
    Register,
    /// `helm rollback` of a pending revision to the last good one, under the run lock
    /// (`--repair`).
    RecoverRelease,
    /// The safe part of fix-storage: stuck claims no pod holds, volumes without CSI risk
    /// (`--repair`).
    FixStorage,
    /// Issue the cluster's certificates anew from the central CMM CA, under the run lock
    /// (`--repair`, with the central cluster's context set).
    RenewCertificates,
    /// Restart what reads a certificate only when it starts (Grafana, Thanos Query, a Thanos
    /// sidecar), one at a time, each waited for.
    Restart,
    /// Server-side apply the chart's operator CRDs over older ones, under the run lock
    /// (`--repair`).
    UpdateCrds,
    /// `helm upgrade --install` through bootstrap: only with `--reinstall`.
    Reinstall,
    /// Nothing the agent does by itself; the detail says what a person should do.
    Manual,
}

impl RepairKind {
    /// Whether `--repair` alone may carry it out.
    pub fn is_safe(self) -> bool {
        matches!(
            self,
            RepairKind::Register
                | RepairKind::UpdateCrds
                | RepairKind::RecoverRelease
                | RepairKind::FixStorage
                | RepairKind::RenewCertificates
                | RepairKind::Restart
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `release.deployed`, `grafana.datasource.url`: scripts match on it.
    pub id: String,
    pub stage: Stage,
    pub severity: Severity,
    /// What was judged, e.g. `DaemonSet monitor/cmm-node-exporter`.
    pub subject: String,
    /// What was seen, one fact a line.
    pub evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

impl Finding {
    pub fn new(stage: Stage, id: &str, severity: Severity, subject: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            stage,
            severity,
            subject: subject.into(),
            evidence: Vec::new(),
            repair: None,
        }
    }

    pub fn ok(stage: Stage, id: &str, subject: impl Into<String>) -> Self {
        Self::new(stage, id, Severity::Ok, subject)
    }

    pub fn warn(stage: Stage, id: &str, subject: impl Into<String>) -> Self {
        Self::new(stage, id, Severity::Warning, subject)
    }

    pub fn failed(stage: Stage, id: &str, subject: impl Into<String>) -> Self {
        Self::new(stage, id, Severity::Failed, subject)
    }

    pub fn skipped(stage: Stage, id: &str, subject: impl Into<String>) -> Self {
        Self::new(stage, id, Severity::Skipped, subject)
    }

    pub fn with(mut self, evidence: impl Into<String>) -> Self {
        self.evidence.push(evidence.into());
        self
    }

    pub fn repair(mut self, kind: RepairKind, detail: impl Into<String>) -> Self {
        self.repair = Some(Repair {
            kind,
            detail: detail.into(),
        });
        self
    }
}

/// The overall state, from the findings alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Healthy,
    Degraded,
    Failed,
}

impl Verdict {
    pub fn of(findings: &[Finding]) -> Self {
        if findings.iter().any(|f| f.severity == Severity::Failed) {
            Verdict::Failed
        } else if findings.iter().any(|f| f.severity == Severity::Warning) {
            Verdict::Degraded
        } else {
            Verdict::Healthy
        }
    }

    /// `check`'s exit status: 0 healthy, 1 degraded, 2 failed.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Failed => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_finding_decides_and_skipped_ones_do_not_count() {
        let ok = Finding::ok(Stage::Release, "a", "x");
        let skipped = Finding::skipped(Stage::Grafana, "b", "y");
        let warn = Finding::warn(Stage::Storage, "c", "z");
        let failed = Finding::failed(Stage::Prometheus, "d", "w");
        assert_eq!(
            Verdict::of(&[ok.clone(), skipped.clone()]),
            Verdict::Healthy
        );
        assert_eq!(Verdict::of(&[ok.clone(), warn.clone()]), Verdict::Degraded);
        assert_eq!(Verdict::of(&[warn, failed, ok]).exit_code(), 2);
        assert_eq!(Verdict::of(&[]).exit_code(), 0);
        assert!(!RepairKind::Reinstall.is_safe() && RepairKind::Register.is_safe());
    }
}
