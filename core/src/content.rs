//! CMM's shipped content, embedded once: the values files (`values/`) and what they carry or
//! the agent provisions from `content/` (dashboards, alert rules, notification templates).
//! Paths are the ones users know from the notes and docs; the binary carries the same bytes.

/// `values/each_cluster.yaml`: every monitored cluster.
pub const EACH_CLUSTER_YAML: &str = include_str!("../../values/each_cluster.yaml");
/// `values/central_monitor.yaml`: the central Grafana; goes through envsubst.
pub const CENTRAL_MONITOR_YAML: &str = include_str!("../../values/central_monitor.yaml");
/// `values/central_content.yaml`: dashboards and alerting for the central Grafana, generated
/// from `content/` by `scripts/dev content`; a second `-f`, never through envsubst.
pub const CENTRAL_CONTENT_YAML: &str = include_str!("../../values/central_content.yaml");

pub const OVERLAY_WSL_YAML: &str = include_str!("../../values/overlays/wsl.yaml");
pub const OVERLAY_KUBE_METRICS_YAML: &str = include_str!("../../values/overlays/kube-metrics.yaml");
pub const OVERLAY_MANAGED_CONTROL_PLANE_YAML: &str =
    include_str!("../../values/overlays/managed-control-plane.yaml");
pub const OVERLAY_NODE_EXPORTER_FULL_YAML: &str =
    include_str!("../../values/overlays/node-exporter-full.yaml");
pub const OVERLAY_EKS_CONTROL_PLANE_YAML: &str =
    include_str!("../../values/overlays/eks-control-plane.yaml");
pub const OVERLAY_INSECURE_PLAIN_HTTP_YAML: &str =
    include_str!("../../values/overlays/insecure-plain-http.yaml");

// The growth paths' files, composed by the installer's topology module.
pub const OVERLAY_PUSH_YAML: &str = include_str!("../../values/overlays/push.yaml");
pub const OVERLAY_AGENT_MODE_YAML: &str = include_str!("../../values/overlays/agent-mode.yaml");
pub const OVERLAY_CENTRAL_RECEIVER_YAML: &str =
    include_str!("../../values/overlays/central-receiver.yaml");
pub const OVERLAY_CENTRAL_RECEIVER_VM_YAML: &str =
    include_str!("../../values/overlays/central-receiver-victoriametrics.yaml");
pub const OVERLAY_THANOS_SIDECAR_YAML: &str =
    include_str!("../../values/overlays/thanos-sidecar.yaml");
pub const OVERLAY_THANOS_OBJECT_STORAGE_YAML: &str =
    include_str!("../../values/overlays/thanos-object-storage.yaml");
pub const OVERLAY_THANOS_QUERY_YAML: &str = include_str!("../../values/overlays/thanos-query.yaml");

/// `content/rules/cluster-rules.yaml`: the per-cluster alert rules registration provisions.
pub const CLUSTER_RULES_YAML: &str = include_str!("../../content/rules/cluster-rules.yaml");

/// `docs/runbook.md`: one `## <Alert>` section per alert. `scripts/dev content` provisions it
/// into the central Grafana as dashboard `cmm-runbook`, one text panel per section (ids 1, 2, …
/// in the order of the sections), so every alert's link opens inside the organisation's own
/// Grafana, offline included.
pub const RUNBOOK_MD: &str = include_str!("../../docs/runbook.md");

/// The uid of the runbook dashboard in the central Grafana.
pub const RUNBOOK_DASHBOARD_UID: &str = "cmm-runbook";

/// The alerts of `docs/runbook.md`, in order: the panel of the n-th (from 0) has id n + 1.
pub fn runbook_alerts() -> Vec<&'static str> {
    RUNBOOK_MD
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect()
}

/// The runbook of `alert` in the central Grafana at `grafana_base` (its root URL, ending in
/// `/`): the runbook dashboard showing that alert's panel alone (`viewPanel`, by panel id).
pub fn runbook_url(grafana_base: &str, alert: &str) -> String {
    let base = grafana_base.trim_end_matches('/');
    match runbook_alerts().iter().position(|a| *a == alert) {
        Some(i) => format!("{base}/d/{RUNBOOK_DASHBOARD_UID}?viewPanel={}", i + 1),
        None => format!("{base}/d/{RUNBOOK_DASHBOARD_UID}"),
    }
}
