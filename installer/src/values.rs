//! CMM's values files, shipped inside the binary so an offline admin host needs nothing but
//! the agent and the chart. The same files are the product for plain `helm` users; the bytes
//! are embedded once, in `cmm_core::content`.

use std::path::PathBuf;

use cmm_core::content;

use crate::{Error, Result};

/// A values file: its name (as shipped under `values/`) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValuesFile {
    pub name: &'static str,
    pub text: &'static str,
}

pub const EACH_CLUSTER: ValuesFile = ValuesFile {
    name: "each_cluster.yaml",
    text: content::EACH_CLUSTER_YAML,
};

pub const CENTRAL_MONITOR: ValuesFile = ValuesFile {
    name: "central_monitor.yaml",
    text: content::CENTRAL_MONITOR_YAML,
};

/// Dashboards and alerting for the central release: helm's second values file, after
/// `central_monitor.yaml` went through envsubst. It never goes through envsubst itself: it is
/// full of Grafana's own `$` references (`$__rate_interval`, `${datasource}`).
pub const CENTRAL_CONTENT: ValuesFile = ValuesFile {
    name: "central_content.yaml",
    text: content::CENTRAL_CONTENT_YAML,
};

/// Environment variable the central file takes its cluster datasources from (envsubst route).
pub const DATASOURCES_VAR: &str = "CMM_DATASOURCES";

/// Overlays applied on top of `each_cluster.yaml` for an environment's quirks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Overlay {
    /// WSL2 / Docker Desktop: node-exporter's root mount fails there.
    Wsl,
    /// kube-state-metrics and the Kubernetes component ServiceMonitors.
    KubeMetrics,
    /// EKS/GKE/AKS: control-plane components cannot be scraped.
    ManagedControlPlane,
    /// EKS 1.28+ with kube metrics: the scheduler and controller-manager through the API server.
    EksControlPlane,
    /// Every node_exporter series, for the Node Exporter Full dashboard (a fleet's choice).
    NodeExporterFull,
    /// No mutual TLS: plain HTTP on the NodePort, readable by anyone who reaches a node.
    InsecurePlainHttp,
}

impl Overlay {
    pub const ALL: [Overlay; 6] = [
        Overlay::Wsl,
        Overlay::KubeMetrics,
        Overlay::ManagedControlPlane,
        Overlay::EksControlPlane,
        Overlay::NodeExporterFull,
        Overlay::InsecurePlainHttp,
    ];

    pub fn file(self) -> ValuesFile {
        match self {
            Overlay::Wsl => WSL,
            Overlay::KubeMetrics => KUBE_METRICS,
            Overlay::ManagedControlPlane => MANAGED_CONTROL_PLANE,
            Overlay::EksControlPlane => EKS_CONTROL_PLANE,
            Overlay::NodeExporterFull => NODE_EXPORTER_FULL,
            Overlay::InsecurePlainHttp => INSECURE_PLAIN_HTTP,
        }
    }
}

pub const WSL: ValuesFile = ValuesFile {
    name: "overlays/wsl.yaml",
    text: content::OVERLAY_WSL_YAML,
};
pub const KUBE_METRICS: ValuesFile = ValuesFile {
    name: "overlays/kube-metrics.yaml",
    text: content::OVERLAY_KUBE_METRICS_YAML,
};
pub const MANAGED_CONTROL_PLANE: ValuesFile = ValuesFile {
    name: "overlays/managed-control-plane.yaml",
    text: content::OVERLAY_MANAGED_CONTROL_PLANE_YAML,
};
pub const EKS_CONTROL_PLANE: ValuesFile = ValuesFile {
    name: "overlays/eks-control-plane.yaml",
    text: content::OVERLAY_EKS_CONTROL_PLANE_YAML,
};
pub const NODE_EXPORTER_FULL: ValuesFile = ValuesFile {
    name: "overlays/node-exporter-full.yaml",
    text: content::OVERLAY_NODE_EXPORTER_FULL_YAML,
};
pub const INSECURE_PLAIN_HTTP: ValuesFile = ValuesFile {
    name: "overlays/insecure-plain-http.yaml",
    text: content::OVERLAY_INSECURE_PLAIN_HTTP_YAML,
};
pub const PUSH: ValuesFile = ValuesFile {
    name: "overlays/push.yaml",
    text: content::OVERLAY_PUSH_YAML,
};
pub const AGENT_MODE: ValuesFile = ValuesFile {
    name: "overlays/agent-mode.yaml",
    text: content::OVERLAY_AGENT_MODE_YAML,
};
pub const CENTRAL_RECEIVER: ValuesFile = ValuesFile {
    name: "overlays/central-receiver.yaml",
    text: content::OVERLAY_CENTRAL_RECEIVER_YAML,
};
pub const CENTRAL_RECEIVER_VM: ValuesFile = ValuesFile {
    name: "overlays/central-receiver-victoriametrics.yaml",
    text: content::OVERLAY_CENTRAL_RECEIVER_VM_YAML,
};
pub const THANOS_SIDECAR: ValuesFile = ValuesFile {
    name: "overlays/thanos-sidecar.yaml",
    text: content::OVERLAY_THANOS_SIDECAR_YAML,
};
pub const THANOS_OBJECT_STORAGE: ValuesFile = ValuesFile {
    name: "overlays/thanos-object-storage.yaml",
    text: content::OVERLAY_THANOS_OBJECT_STORAGE_YAML,
};
pub const THANOS_QUERY: ValuesFile = ValuesFile {
    name: "overlays/thanos-query.yaml",
    text: content::OVERLAY_THANOS_QUERY_YAML,
};

/// Every overlay, as shipped (packages put them under values/overlays/): the one list of
/// their names. The operator's and the environment's ([`Overlay`]), then the topologies'.
pub const OVERLAYS: [ValuesFile; 13] = [
    WSL,
    KUBE_METRICS,
    MANAGED_CONTROL_PLANE,
    EKS_CONTROL_PLANE,
    NODE_EXPORTER_FULL,
    INSECURE_PLAIN_HTTP,
    PUSH,
    AGENT_MODE,
    CENTRAL_RECEIVER,
    CENTRAL_RECEIVER_VM,
    THANOS_SIDECAR,
    THANOS_OBJECT_STORAGE,
    THANOS_QUERY,
];

/// Values written to a private temporary directory for helm's `--values`; removed on drop.
/// Files, not `--set`, so nothing from them shows on a command line. The directory is 0700 and
/// each file 0600 from its creation (never widened by the umask): a user's values file may hold
/// a password. An interrupted run still removes them, because signals end a run by unwinding to
/// here (see the agent's `interrupt` module), never by `process::exit`.
pub struct Materialized {
    dir: tempfile::TempDir,
    pub paths: Vec<PathBuf>,
}

/// Write `(file name, text)` pairs, in order, for helm to read.
pub fn materialize<'a>(files: impl IntoIterator<Item = (&'a str, String)>) -> Result<Materialized> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("cmm-values-");
    // tempfile creates directories 0777 less the umask (0755 under the usual 022).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = builder
        .tempdir()
        .map_err(Error::io("creating a temporary directory for values files"))?;
    let mut paths = Vec::new();
    for (i, (name, text)) in files.into_iter().enumerate() {
        // Index first: the same overlay name may appear for two releases in one plan.
        let path = dir
            .path()
            .join(format!("{i:02}-{}", name.replace('/', "_")));
        write_private(&path, text.as_bytes())
            .map_err(Error::io(format!("writing {}", path.display())))?;
        paths.push(path);
    }
    Ok(Materialized { dir, paths })
}

impl Materialized {
    /// The private directory holding the files (tests check it is gone after a run).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Create `path` as a new file readable by its owner only and write `bytes` into it.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    // No fsync: helm reads the file from the page cache while it lives, and it is removed when
    // helm is done; forcing it to disk only cost each run a journal commit (issue 26).
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn values_for_helm_are_owner_only_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let m = materialize([("secret.yaml", "password: hunter2\n".to_owned())]).unwrap();
        let dir = m.dir().to_owned();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&m.paths[0]), 0o600);
        drop(m);
        assert!(!dir.exists());
    }
}
