//! `plan`'s work: render every release of a fleet offline with the real chart and count what
//! each would create, per object kind. Changes nothing anywhere.

use std::collections::BTreeMap;

use cmm_installer::fleet::Fleet;
use cmm_installer::topology::Role;
use serde::Serialize;

use crate::exit::{installer_class, Classify, ExitCode};
use crate::settings::ChartSettings;

#[derive(Debug, Serialize)]
pub struct FleetPlan {
    pub chart: cmm_installer::chart::ChartSource,
    pub helm_version: String,
    pub members: Vec<MemberPlan>,
}

#[derive(Debug, Serialize)]
pub struct MemberPlan {
    pub role: Role,
    pub release: String,
    pub namespace: String,
    pub values: Vec<String>,
    pub sets: Vec<String>,
    pub objects: usize,
    pub kinds: BTreeMap<String, usize>,
}

/// Render every member of `fleet` with `chart`.
pub async fn plan(chart: ChartSettings, fleet: &Fleet) -> anyhow::Result<FleetPlan> {
    let settings = chart;
    let helm_version = settings.helm.version().await.classify(ExitCode::Tool)?;
    if let Some(v) = settings.chart.local_version() {
        if v != cmm_installer::chart::CHART_VERSION {
            tracing::warn!(
                found = %v,
                tested = cmm_installer::chart::CHART_VERSION,
                "the chart's version differs from the one CMM's values are tested with"
            );
        }
    }

    let mut members = Vec::new();
    for m in fleet.members() {
        tracing::info!(release = %m.release, role = ?m.role, "rendering");
        let rendered = cmm_installer::render::template(
            &settings.helm,
            &settings.chart,
            &m.release,
            &m.namespace,
            m.values.iter().map(|(n, t)| (n.as_str(), t.clone())),
            &m.sets,
        )
        .await
        .classify_by(installer_class)?;
        members.push(MemberPlan {
            role: m.role,
            release: m.release.clone(),
            namespace: m.namespace.clone(),
            values: m.values.iter().map(|(n, _)| n.clone()).collect(),
            sets: m.sets.clone(),
            objects: rendered.objects.len(),
            kinds: rendered.kinds(),
        });
    }
    Ok(FleetPlan {
        chart: settings.chart,
        helm_version,
        members,
    })
}
