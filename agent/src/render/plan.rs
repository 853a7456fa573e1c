//! `plan`'s fleet plan.

use cmm_installer::topology::Role;

use super::Render;
use crate::ops::plan::FleetPlan;
use crate::output::outln;

impl Render for FleetPlan {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn human(&self) {
        print_human(self)
    }
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
