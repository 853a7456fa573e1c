//! `cmm-agent plan`: render every release of a fleet offline with the real chart and say what
//! each would create, per object kind. Changes nothing anywhere.

use std::collections::BTreeMap;

use anyhow::Context;
use cmm_installer::fleet::Fleet;
use cmm_installer::topology::Role;
use serde::Serialize;

use crate::cli::{GlobalArgs, Output, PlanArgs};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::output::outln;
use crate::settings::ChartSettings;

#[derive(Debug, Serialize)]
struct FleetPlan {
    chart: cmm_installer::chart::ChartSource,
    helm_version: String,
    members: Vec<MemberPlan>,
}

#[derive(Debug, Serialize)]
struct MemberPlan {
    role: Role,
    release: String,
    namespace: String,
    values: Vec<String>,
    sets: Vec<String>,
    objects: usize,
    kinds: BTreeMap<String, usize>,
}

pub async fn run(global: &GlobalArgs, args: PlanArgs) -> anyhow::Result<()> {
    let settings = ChartSettings::resolve(&args.chart)?;
    let fleet = match &args.fleet {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .classify(ExitCode::Usage)
                .with_context(|| {
                    format!(
                        "reading fleet file {} (--fleet / CMM_FLEET)",
                        path.display()
                    )
                })?;
            Fleet::parse(&text, &path.display().to_string()).classify(ExitCode::Usage)?
        }
        None => Fleet::example(),
    };
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
    let plan = FleetPlan {
        chart: settings.chart,
        helm_version,
        members,
    };
    match global.output {
        Output::Json => crate::output::json(&plan)?,
        Output::Human => print_human(&plan),
    }
    Ok(())
}

fn print_human(plan: &FleetPlan) {
    let chart = match &plan.chart {
        cmm_installer::chart::ChartSource::Directory { path }
        | cmm_installer::chart::ChartSource::Archive { path } => path.display().to_string(),
        cmm_installer::chart::ChartSource::Repo { url, name, version } => {
            format!("{name} {version} from {url}")
        }
    };
    outln!("Fleet plan: chart {chart}, helm {}", plan.helm_version);
    for m in &plan.members {
        let role = match m.role {
            Role::Central => "central Grafana",
            Role::Cluster => "monitored cluster",
        };
        outln!();
        outln!(
            "{} (release {}, namespace {}): {} objects",
            role,
            m.release,
            m.namespace,
            m.objects
        );
        outln!("  values: {}", m.values.join(", "));
        for s in &m.sets {
            outln!("  --set {s}");
        }
        let width = m.kinds.keys().map(String::len).max().unwrap_or(0);
        for (kind, n) in &m.kinds {
            outln!("  {kind:<width$}  {n:>3}");
        }
    }
}
