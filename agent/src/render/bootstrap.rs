//! `bootstrap`'s report.

use cmm_installer::bootstrap::Report;
use cmm_installer::topology::Role;

use super::{mark, Render};
use crate::output::outln;

impl Render for Report {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn human(&self) {
        print_human(self)
    }
}

fn print_human(r: &Report) {
    let role = match r.role {
        Role::Cluster => "monitored cluster",
        Role::Central => "central Grafana",
    };
    outln!(
        "cmm bootstrap: {} ({role}), namespace {}, context {} ({})",
        r.cluster,
        r.namespace,
        r.context,
        r.api_url
    );
    if r.environment.kinds.is_empty() {
        outln!("environment: nothing special detected");
    } else {
        let kinds: Vec<String> = r
            .environment
            .kinds
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .map_or_else(|_| String::new(), |v| v.as_str().unwrap_or("").to_owned())
            })
            .collect();
        outln!("environment: {}", kinds.join(", "));
        for e in &r.environment.evidence {
            outln!("  evidence: {} = {}", e.source, e.value);
        }
    }
    let rbac_total = r
        .preflight
        .iter()
        .filter(|c| c.check.starts_with("rbac: "))
        .count();
    let rbac_ok = r
        .preflight
        .iter()
        .filter(|c| c.check.starts_with("rbac: ") && c.ok)
        .count();
    outln!("preflight:");
    let mut summarised = false;
    for c in &r.preflight {
        let rbac = c.check.starts_with("rbac: ");
        if rbac && !summarised {
            outln!(
                "  [{}] rbac: {rbac_ok}/{rbac_total} permissions allowed",
                mark(rbac_ok == rbac_total)
            );
            summarised = true;
        }
        if rbac && c.ok {
            continue;
        }
        outln!("  [{}] {}: {}", mark(c.ok), c.check, c.detail);
    }
    if r.insecure {
        outln!("INSECURE: plain HTTP, no client certificate asked (--insecure-plain-http): anyone who reaches a node reads this cluster's metrics");
    }
    for t in &r.tls {
        match &t.action {
            cmm_installer::tls::TlsAction::Keep { days_left } => {
                outln!("tls: {} kept ({days_left} day(s) left)", t.secret)
            }
            cmm_installer::tls::TlsAction::Issue { why } => {
                outln!("tls: {} issued ({why})", t.secret)
            }
        }
    }
    if let Some(a) = &r.grafana_admin {
        outln!("grafana admin: {a}");
    }
    // Only what changed or matters: a CRD updated, or one left newer than the chart's.
    for c in r.crds.iter().filter(|c| {
        c.detail.starts_with("brought") || c.verdict == cmm_installer::crds::Verdict::Newer
    }) {
        outln!("crd: {} {}", c.name, c.detail);
    }
    if r.fixes.is_empty() {
        outln!("fixes: none");
    } else {
        outln!("fixes:");
        for f in &r.fixes {
            outln!("  {} ({}): {}", f.id, f.overlay, f.reason);
        }
    }
    outln!("values: {}", r.values.join(", "));
    outln!("helm {}:", r.helm.version);
    outln!("  helm {}", r.helm.args.join(" "));
    outln!("actions:");
    for (i, a) in r.actions.iter().enumerate() {
        outln!("  {}. {}: {}", i + 1, a.action, a.detail);
    }
    if let Some(kinds) = &r.rendered {
        let total: usize = kinds.values().sum();
        outln!("rendered ({total} objects):");
        for (k, n) in kinds {
            outln!("  {k:<32} {n:>3}");
        }
    }
    if !r.workloads.is_empty() {
        outln!("workloads:");
        for w in &r.workloads {
            outln!(
                "  [{}] {} {} {}/{}",
                mark(w.is_ready()),
                w.kind,
                w.name,
                w.ready,
                w.desired
            );
        }
    }
    outln!("outcome: {}", r.outcome);
}
