//! `cmm-agent check [--repair] [--reinstall]`: is the whole path from node-exporter to a
//! Grafana alert working for this cluster? The stages are gathered and judged in
//! `ops::checkup`; this command reads the cluster and the central material, hands the
//! findings to the renderer once, and turns the verdict into the exit code. Reads only, unless
//! `--repair` (the safe, idempotent repairs) or `--reinstall`.
//!
//! Exit 0 healthy, 1 degraded (warnings only), 2 failed — also when the check itself cannot
//! run (bad settings, no cluster), so an unattended timer never reads "healthy" by mistake.

use cmm_core::finding::{Finding, RepairKind, Severity, Stage, Verdict};
use cmm_installer::kube::{connect, Connected};

use crate::cli::{CheckArgs, GlobalArgs};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::ops::checkup::{self, Inputs};
use crate::ops::registration::{PrometheusAccess, Registration};
use crate::render::{self, CheckReport};
use crate::settings::{BadInput, CheckSettings, ConfigLocation};

pub async fn run(
    global: &GlobalArgs,
    args: CheckArgs,
    config: &ConfigLocation,
) -> anyhow::Result<()> {
    // Every input first: a bad one is exit 2 with the setting named, nothing contacted.
    let Some(s) = CheckSettings::resolve(&args)? else {
        return not_configured(global, &args.namespace.namespace, config);
    };
    let mut prometheus = PrometheusAccess::new(&s.prometheus);
    let mut registration = match &s.grafana.url {
        Some(_) => Some(Registration::new(&s.grafana, &s.prometheus)?),
        None => None,
    };
    if s.is_central() {
        return central(global, &s).await;
    }
    let mut report = CheckReport {
        cluster: s.cluster.to_string(),
        namespace: s.namespace.clone(),
        role: "cluster",
        fleet: None,
        verdict: Verdict::Healthy,
        findings: Vec::new(),
        repaired: Vec::new(),
    };
    let conn = match connect(&s.kube).await {
        Ok(c) => Some(c),
        Err(e) => {
            let code = installer_class(&e);
            if code == ExitCode::Usage {
                return Err(e).classify(code);
            }
            report.findings.push(checkup::unreachable(&s.kube, &e));
            None
        }
    };
    let central = identities(
        &s,
        conn.as_ref(),
        &mut prometheus,
        registration.as_mut(),
        &mut report,
    )
    .await;
    let inputs = Inputs {
        s: &s,
        prometheus: &prometheus,
        registration: registration.as_ref(),
        central: central.as_ref(),
    };
    report
        .findings
        .extend(checkup::findings(&inputs, conn.as_ref()).await);
    if let (true, Some(conn)) = (s.repair, &conn) {
        report.repaired = checkup::repair(&inputs, conn, &report.findings).await;
        if !report.repaired.is_empty() {
            // What is true now, not what was found before the repair.
            report.findings = checkup::findings(&inputs, Some(conn)).await;
        }
    }
    finish(global, report)
}

/// `check --role central`: the central side and the fleet (`ops::checkup::central`).
async fn central(global: &GlobalArgs, s: &CheckSettings) -> anyhow::Result<()> {
    let mut report = CheckReport {
        cluster: s.cluster.to_string(),
        namespace: s.namespace.clone(),
        role: "central",
        fleet: Some(Vec::new()),
        verdict: Verdict::Healthy,
        findings: Vec::new(),
        repaired: Vec::new(),
    };
    let conn = match connect(&s.kube).await {
        Ok(c) => c,
        Err(e) => {
            let code = installer_class(&e);
            if code == ExitCode::Usage {
                return Err(e).classify(code);
            }
            report.findings.push(checkup::unreachable(&s.kube, &e));
            return finish(global, report);
        }
    };
    let grafana = match checkup::central::grafana_client(s, &conn).await {
        Some(Ok(g)) => Some(g),
        Some(Err(e)) if ExitCode::of(&e) == ExitCode::Usage => return Err(e),
        Some(Err(e)) => {
            report.findings.push(
                Finding::failed(Stage::Grafana, "grafana.login", "the central Grafana")
                    .with(format!("{e:#}")),
            );
            None
        }
        None => None,
    };
    let mut found = checkup::central::findings(s, &conn, grafana.as_ref()).await;
    if s.repair {
        report.repaired = checkup::central::repair(s, &conn, grafana.as_ref(), &found).await;
        if !report.repaired.is_empty() {
            found = checkup::central::findings(s, &conn, grafana.as_ref()).await;
        }
    }
    report.findings.extend(found.findings);
    report.fleet = Some(found.fleet);
    finish(global, report)
}

/// Render the report once and turn its verdict into the exit code.
fn finish(global: &GlobalArgs, mut report: CheckReport) -> anyhow::Result<()> {
    report.verdict = Verdict::of(&report.findings);
    render::emit(global.output, &report)?;
    log_findings(&report.findings);
    stopped(&report)?;
    verdict(&report)
}

/// The certificates to present: Grafana's (the central material, with central-context), else
/// the cluster's own self-scrape identity, which its proxy admits too.
async fn identities(
    s: &CheckSettings,
    conn: Option<&Connected>,
    prometheus: &mut PrometheusAccess,
    registration: Option<&mut Registration>,
    report: &mut CheckReport,
) -> Option<cmm_installer::tls::CentralPki> {
    if !s.plan.wiring.mutual_tls() {
        return None;
    }
    let mut central = None;
    if s.central.context.is_some() {
        match crate::ops::central::central_pki(&s.central).await {
            Ok(pki) => {
                prometheus.use_central(&pki);
                if let Some(reg) = registration {
                    reg.prometheus.use_central(&pki);
                }
                central = Some(pki);
            }
            Err(e) => report.findings.push(
                Finding::failed(
                    Stage::Endpoint,
                    "tls.central",
                    "the CMM CA on the central cluster",
                )
                .with(format!("{e:#}")),
            ),
        }
    }
    if let (None, Some(conn)) = (&central, conn) {
        if let Ok(Some((leaf, trust))) = cmm_installer::tls::self_identity(conn, &s.namespace).await
        {
            prometheus.use_identity(&leaf, &trust);
        }
    }
    central
}

/// A stop during `--repair` ends the run as the signal says (130, 143), not as the verdict:
/// the repairs listed are what was done before it.
fn stopped(report: &CheckReport) -> anyhow::Result<()> {
    let stop = crate::interrupt::stop();
    if !stop.is_stopped() {
        return Ok(());
    }
    Err(cmm_installer::Error::Interrupted {
        signal: stop.reason(),
        detail: format!(
            "check --repair wound down; repaired before the stop: {}",
            if report.repaired.is_empty() {
                "nothing".to_owned()
            } else {
                report.repaired.join("; ")
            }
        ),
    })
    .classify_by(installer_class)
}

fn log_findings(findings: &[Finding]) {
    for f in findings.iter().filter(|f| f.severity != Severity::Ok) {
        let line = format!("{} {}: {}", f.id, f.subject, f.evidence.join("; "));
        match f.severity {
            Severity::Failed => tracing::error!(finding = %f.id, "{line}"),
            Severity::Warning => tracing::warn!(finding = %f.id, "{line}"),
            _ => {}
        }
    }
}

fn verdict(report: &CheckReport) -> anyhow::Result<()> {
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    match report.verdict {
        Verdict::Healthy => Ok(()),
        v => Err(BadInput(format!(
            "{} {} is {}: {} failed, {} warning(s)",
            if report.role == "central" {
                "central release"
            } else {
                "cluster"
            },
            report.cluster,
            match v {
                Verdict::Failed => "not monitored end to end",
                _ => "degraded",
            },
            count(Severity::Failed),
            count(Severity::Warning),
        )))
        .classify(if v == Verdict::Failed {
            ExitCode::CheckFailed
        } else {
            ExitCode::CheckDegraded
        }),
    }
}

/// No cluster name anywhere: the host was never configured (a package was installed and its
/// agent.toml not edited yet). One warning that says which file to edit; nothing is contacted.
fn not_configured(
    global: &GlobalArgs,
    namespace: &str,
    config: &ConfigLocation,
) -> anyhow::Result<()> {
    let file = config.path.display().to_string();
    let report = CheckReport {
        cluster: String::new(),
        namespace: namespace.to_owned(),
        role: "cluster",
        fleet: None,
        verdict: Verdict::Degraded,
        findings: vec![Finding::warn(Stage::Release, "settings.unfinished", &file)
            .with("cluster is not set (no --cluster, CMM_CLUSTER or `cluster` in the file)")
            .repair(
                RepairKind::Manual,
                format!(
                    "edit {file}: set cluster (this cluster's name) and grafana-url; put the \
                     Grafana token in /etc/cmm/grafana-token and this cluster's kubeconfig in \
                     /etc/cmm/kubeconfig (both 0600); `cmm-agent config validate` checks the file"
                ),
            )],
        repaired: Vec::new(),
    };
    render::emit(global.output, &report)?;
    Err(BadInput(format!("not configured: edit {file}"))).classify(ExitCode::CheckDegraded)
}
