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
pub const OVERLAY_INSECURE_PLAIN_HTTP_YAML: &str =
    include_str!("../../values/overlays/insecure-plain-http.yaml");

// The growth paths' files, composed by the installer's topology module.
pub const OVERLAY_PUSH_YAML: &str = include_str!("../../values/overlays/push.yaml");
pub const OVERLAY_AGENT_MODE_YAML: &str = include_str!("../../values/overlays/agent-mode.yaml");
pub const OVERLAY_CENTRAL_RECEIVER_YAML: &str =
    include_str!("../../values/overlays/central-receiver.yaml");
pub const OVERLAY_THANOS_SIDECAR_YAML: &str =
    include_str!("../../values/overlays/thanos-sidecar.yaml");
pub const OVERLAY_THANOS_OBJECT_STORAGE_YAML: &str =
    include_str!("../../values/overlays/thanos-object-storage.yaml");
pub const OVERLAY_THANOS_QUERY_YAML: &str = include_str!("../../values/overlays/thanos-query.yaml");

/// `content/rules/cluster-rules.yaml`: the per-cluster alert rules registration provisions.
pub const CLUSTER_RULES_YAML: &str = include_str!("../../content/rules/cluster-rules.yaml");

/// Where each alert's `runbook_url` points: `docs/runbook.md` of this repository, one anchor
/// per alert (the lower-cased alert name, as the Markdown heading `## CmmNodeDown` gives).
pub const RUNBOOK_URL: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/runbook.md");

pub fn runbook_url(alert: &str) -> String {
    format!("{RUNBOOK_URL}#{}", alert.to_ascii_lowercase())
}
