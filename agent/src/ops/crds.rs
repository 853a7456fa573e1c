//! The operator's CRDs brought to the chart's: bootstrap does it under the run lock before
//! helm, `check` judges them and `check --repair` does it (cmm_installer::crds has the why).

use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_installer::chart::ChartSource;
use cmm_installer::crds::{self, CrdState, Verdict};
use cmm_installer::helm::Helm;
use cmm_installer::kube::Connected;

use crate::exit::{installer_class, Classify};
use crate::settings::BadInput;

/// How long reading the chart's CRDs may take (helm fetches a repository chart).
const CHART_READ: std::time::Duration = std::time::Duration::from_secs(60);

/// The chart's CRDs and how the cluster's compare (reads only).
pub async fn gather(
    conn: &Connected,
    helm: &Helm,
    chart: &ChartSource,
) -> cmm_installer::Result<(Vec<serde_json::Value>, Vec<CrdState>)> {
    // A repository chart is fetched by helm: bounded, as check runs every 15 minutes.
    let want = tokio::time::timeout(CHART_READ, crds::chart_crds(helm, chart))
        .await
        .map_err(|_| cmm_installer::Error::Io {
            context: "`helm show crds`".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within {}s (a repository chart that cannot be fetched?)",
                    CHART_READ.as_secs()
                ),
            ),
        })??;
    let have = conn.operator_crds().await?;
    let states = crds::judge(&want, &have);
    Ok((want, states))
}

/// Server-side apply every chart CRD the cluster holds in an older version. The caller holds
/// the run lock. A refusal names the command a cluster admin runs instead.
pub async fn update(
    conn: &Connected,
    helm: &Helm,
    chart: &ChartSource,
) -> anyhow::Result<Vec<CrdState>> {
    let (want, mut states) = gather(conn, helm, chart)
        .await
        .classify_by(installer_class)?;
    for state in states.iter_mut().filter(|s| s.verdict == Verdict::Older) {
        let Some(crd) = want
            .iter()
            .find(|c| c["metadata"]["name"] == state.name.as_str())
        else {
            continue;
        };
        if let Err(e) = conn.apply_crd(crd).await {
            return Err(BadInput(format!(
                "CRD {} is older than the chart's ({}) and cannot be updated from here ({e}): \
                 as a cluster admin run `{}`, then run this again",
                state.name,
                state.detail,
                crds::manual_command(chart)
            )))
            .classify(crate::exit::ExitCode::Preflight);
        }
        state.detail = format!(
            "brought from {} to the chart's {} (server-side apply)",
            state.installed_version.as_deref().unwrap_or("(no version)"),
            state.chart_version
        );
        state.installed_version = Some(state.chart_version.clone());
        state.verdict = Verdict::Current;
    }
    Ok(states)
}

/// Pure: check's finding over the CRD states (`None`: no CRD read, e.g. helm unavailable).
pub fn judge(states: &[CrdState], chart: &ChartSource) -> Finding {
    let st = Stage::Release;
    let subject = "the operator's CRDs";
    let older: Vec<String> = states
        .iter()
        .filter(|s| s.verdict == Verdict::Older)
        .map(|s| format!("{}: {}", s.name, s.detail))
        .collect();
    if older.is_empty() {
        let version = states.first().map_or("?", |s| s.chart_version.as_str());
        return Finding::ok(st, "crds.version", subject).with(format!(
            "{} CRD(s) as the chart's {version} or newer; none older",
            states
                .iter()
                .filter(|s| s.verdict != Verdict::Missing)
                .count()
        ));
    }
    let mut f = Finding::warn(st, "crds.version", subject).repair(
        RepairKind::UpdateCrds,
        format!(
            "server-side apply the chart's CRDs (`cmm-agent check --repair`, or by hand: `{}`)",
            crds::manual_command(chart)
        ),
    );
    f.evidence.extend(older);
    f
}
