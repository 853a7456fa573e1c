//! What kind of cluster this is, decided from objects the API already serves (nodes, the API
//! server's address and version) and, for local clusters only, the admin host's `/proc/version`.
//! Pure: the caller fetches, this decides, so every rule is table-tested with real-shaped nodes.
//! Every finding carries the evidence that led to it, so a surprising fix can be traced.

use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

/// An environment with a quirk CMM knows how to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvKind {
    Wsl2,
    DockerDesktop,
    Eks,
    Gke,
    Aks,
    Kind,
    K3s,
    Minikube,
    /// EKS 1.28 or newer: the API server serves kube-scheduler's and kube-controller-manager's
    /// metrics under `metrics.eks.amazonaws.com` (docs.aws.amazon.com/eks, "Fetch control
    /// plane raw metrics in Prometheus format").
    EksControlPlaneMetrics,
}

impl EnvKind {
    /// The control plane runs where Prometheus cannot scrape it: hosted by the provider, or
    /// bound to 127.0.0.1 inside a single container/process.
    pub fn hides_control_plane(self) -> bool {
        matches!(
            self,
            EnvKind::Eks
                | EnvKind::Gke
                | EnvKind::Aks
                | EnvKind::Kind
                | EnvKind::K3s
                | EnvKind::Minikube
        )
    }

    /// node-exporter's HostToContainer root mount fails to start here.
    pub fn breaks_root_mount(self) -> bool {
        matches!(self, EnvKind::Wsl2 | EnvKind::DockerDesktop)
    }
}

/// One observation behind a finding: which object/field said what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub kind: EnvKind,
    /// Where it was seen, e.g. `node/ip-10-0-1-5.ec2.internal .status.nodeInfo.kubeletVersion`.
    pub source: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// Sorted, without duplicates.
    pub kinds: Vec<EnvKind>,
    pub evidence: Vec<Evidence>,
}

impl Environment {
    pub fn is(&self, kind: EnvKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Everything detection looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub nodes: &'a [Node],
    /// The API server URL from the kubeconfig.
    pub api_url: &'a str,
    /// `/version` gitVersion, e.g. `v1.30.4-eks-a737599`.
    pub server_version: Option<&'a str>,
    /// The admin host's `/proc/version`; used only when the API server is on this host.
    pub host_proc_version: Option<&'a str>,
}

/// The minor version of a gitVersion such as `v1.30.4-eks-a737599` (30).
fn minor_version(git_version: &str) -> Option<u32> {
    let mut parts = git_version.trim_start_matches('v').split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}

pub fn detect(seen: &Observed<'_>) -> Environment {
    let mut ev: Vec<Evidence> = Vec::new();
    let mut add = |kind: EnvKind, source: String, value: &str| {
        ev.push(Evidence {
            kind,
            source,
            value: value.to_owned(),
        })
    };

    let host = api_host(seen.api_url);
    if host.ends_with(".eks.amazonaws.com") {
        add(
            EnvKind::Eks,
            "kubeconfig cluster.server".into(),
            seen.api_url,
        );
    }
    if host.ends_with(".azmk8s.io") {
        add(
            EnvKind::Aks,
            "kubeconfig cluster.server".into(),
            seen.api_url,
        );
    }
    if let Some(v) = seen.server_version {
        if v.contains("-eks-") && minor_version(v).is_some_and(|m| m >= 28) {
            add(
                EnvKind::EksControlPlaneMetrics,
                "/version gitVersion (EKS 1.28 or newer)".into(),
                v,
            );
        }
        for (needle, kind) in [
            ("-eks-", EnvKind::Eks),
            ("-gke.", EnvKind::Gke),
            ("+k3s", EnvKind::K3s),
        ] {
            if v.contains(needle) {
                add(kind, "/version gitVersion".into(), v);
            }
        }
    }

    for node in seen.nodes {
        let name = node.metadata.name.as_deref().unwrap_or("<unnamed>");
        let at = |field: &str| format!("node/{name} {field}");
        let labels = node.metadata.labels.clone().unwrap_or_default();
        for (key, value) in &labels {
            let shown = format!("{key}={value}");
            let kind = if key.starts_with("eks.amazonaws.com/") {
                Some(EnvKind::Eks)
            } else if key.starts_with("cloud.google.com/gke-") {
                Some(EnvKind::Gke)
            } else if key.starts_with("kubernetes.azure.com/") {
                Some(EnvKind::Aks)
            } else if key.starts_with("minikube.k8s.io/") {
                Some(EnvKind::Minikube)
            } else if key == "node.kubernetes.io/instance-type" && value == "k3s" {
                Some(EnvKind::K3s)
            } else {
                None
            };
            if let Some(kind) = kind {
                add(kind, at(".metadata.labels"), &shown);
            }
        }
        if name == "docker-desktop" {
            add(EnvKind::DockerDesktop, at(".metadata.name"), name);
        }
        if let Some(pid) = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()) {
            // aws:// is left out: a self-managed kubeadm cluster on EC2 carries it too.
            for (prefix, kind) in [
                ("gce://", EnvKind::Gke),
                ("azure://", EnvKind::Aks),
                ("kind://", EnvKind::Kind),
                ("k3s://", EnvKind::K3s),
            ] {
                if pid.starts_with(prefix) {
                    add(kind, at(".spec.providerID"), pid);
                }
            }
        }
        let Some(info) = node.status.as_ref().and_then(|s| s.node_info.as_ref()) else {
            continue;
        };
        let kernel = info.kernel_version.as_str();
        let kernel_lc = kernel.to_lowercase();
        if kernel_lc.contains("microsoft") || kernel.contains("WSL2") {
            add(EnvKind::Wsl2, at(".status.nodeInfo.kernelVersion"), kernel);
        }
        if kernel_lc.contains("linuxkit") {
            add(
                EnvKind::DockerDesktop,
                at(".status.nodeInfo.kernelVersion"),
                kernel,
            );
        }
        if info.os_image == "Docker Desktop" {
            add(
                EnvKind::DockerDesktop,
                at(".status.nodeInfo.osImage"),
                &info.os_image,
            );
        }
        let kubelet = info.kubelet_version.as_str();
        for (needle, kind) in [
            ("-eks-", EnvKind::Eks),
            ("-gke.", EnvKind::Gke),
            ("+k3s", EnvKind::K3s),
        ] {
            if kubelet.contains(needle) {
                add(kind, at(".status.nodeInfo.kubeletVersion"), kubelet);
            }
        }
    }

    if let Some(pv) = seen.host_proc_version {
        let pv_lc = pv.to_lowercase();
        // The admin host's kernel says nothing about a remote cluster (WSL users manage EKS too).
        if is_local_host(&host) && (pv_lc.contains("microsoft") || pv.contains("WSL2")) {
            add(EnvKind::Wsl2, "admin host /proc/version".into(), pv.trim());
        }
    }

    let mut kinds: Vec<EnvKind> = ev.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    Environment {
        kinds,
        evidence: ev,
    }
}

/// Host part of an API URL, lower-cased, without port or brackets.
pub fn api_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.to_lowercase()
}

fn is_local_host(host: &str) -> bool {
    matches!(
        host,
        "localhost" | "::1" | "kubernetes.docker.internal" | "host.docker.internal"
    ) || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_hosts_are_extracted_from_real_server_urls() {
        assert_eq!(
            api_host("https://ABC123.gr7.eu-west-1.eks.amazonaws.com"),
            "abc123.gr7.eu-west-1.eks.amazonaws.com"
        );
        assert_eq!(api_host("https://127.0.0.1:6443"), "127.0.0.1");
        assert_eq!(api_host("https://[::1]:6443/"), "::1");
        assert_eq!(
            api_host("https://kubernetes.docker.internal:6443"),
            "kubernetes.docker.internal"
        );
    }

    #[test]
    fn eks_from_1_28_serves_its_control_planes_metrics() {
        let on = |v: &str| {
            detect(&Observed {
                nodes: &[],
                api_url: "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
                server_version: Some(v),
                host_proc_version: None,
            })
            .is(EnvKind::EksControlPlaneMetrics)
        };
        assert!(on("v1.28.15-eks-7f9249a"));
        assert!(on("v1.31.5-eks-5d632ec"));
        assert!(!on("v1.27.16-eks-2f46c53"));
        assert!(!on("v1.30.4-gke.1348000"));
        assert_eq!(minor_version("v1.9.0"), Some(9));
        assert_eq!(minor_version("v2.1.0"), None);
    }

    #[test]
    fn a_wsl_admin_host_does_not_taint_a_remote_cluster() {
        let proc = "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f)";
        let remote = detect(&Observed {
            nodes: &[],
            api_url: "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
            server_version: None,
            host_proc_version: Some(proc),
        });
        assert_eq!(remote.kinds, [EnvKind::Eks]);
        let local = detect(&Observed {
            nodes: &[],
            api_url: "https://127.0.0.1:6443",
            server_version: None,
            host_proc_version: Some(proc),
        });
        assert_eq!(local.kinds, [EnvKind::Wsl2]);
        assert_eq!(local.evidence[0].source, "admin host /proc/version");
    }
}
