//! The one place that decides how a fleet is wired: `pull` (the central Grafana queries every
//! cluster's Prometheus), `push` (every cluster remote-writes to a central receiver) or
//! `thanos` (a central Thanos Query reads every cluster's sidecar). From the topology come the
//! values files each role installs, in order, and how a cluster is registered; bootstrap,
//! `plan` and `check` all ask here instead of assuming pull.

use serde::{Deserialize, Serialize};

use crate::values::{
    ValuesFile, AGENT_MODE, CENTRAL_RECEIVER, CENTRAL_RECEIVER_VM, PUSH, THANOS_OBJECT_STORAGE,
    THANOS_QUERY, THANOS_SIDECAR,
};
use crate::{Error, Result};

/// What a release is in the fleet: the central Grafana, or a monitored cluster. Each role
/// installs its own values files ([`Wiring::cluster_files`], [`Wiring::central_file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Central,
    Cluster,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One datasource per cluster; Grafana reaches each Prometheus (NodePort, mutual TLS).
    #[default]
    Pull,
    /// Clusters send; one receiver next to Grafana stores everything, told apart by `cluster`.
    Push,
    /// Clusters keep their data; a central Thanos Query fans out to their sidecars over gRPC.
    Thanos,
}

impl Topology {
    pub const ALL: [Topology; 3] = [Topology::Pull, Topology::Push, Topology::Thanos];

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Pull => "pull",
            Topology::Push => "push",
            Topology::Thanos => "thanos",
        }
    }

    /// The central Grafana's one datasource in the shared topologies (`None`: one per cluster).
    /// Not `cmm-…`: that prefix is a cluster's datasource, and a cluster may be named `receiver`.
    pub fn shared_datasource_uid(self) -> Option<&'static str> {
        match self {
            Topology::Pull => None,
            Topology::Push => Some(RECEIVER_DATASOURCE_UID),
            Topology::Thanos => Some(THANOS_DATASOURCE_UID),
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What stores the clusters' samples in push, on the central cluster. Both sit behind the same
/// mutual-TLS proxy at the same address, so a cluster's release is the same for either.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Receiver {
    /// VictoriaMetrics single-node (central-receiver-victoriametrics.yaml): its proxy stamps
    /// each sample with the cluster its certificate names, so no cluster can write as another;
    /// about a third of the Prometheus receiver's memory (docs/scaling.md).
    #[default]
    #[serde(rename = "victoriametrics")]
    VictoriaMetrics,
    /// A Prometheus with the remote-write receiver (central-receiver.yaml): stores the
    /// `cluster` label each sender wrote.
    Prometheus,
}

impl Receiver {
    pub const ALL: [Receiver; 2] = [Receiver::VictoriaMetrics, Receiver::Prometheus];

    pub fn as_str(self) -> &'static str {
        match self {
            Receiver::VictoriaMetrics => "victoriametrics",
            Receiver::Prometheus => "prometheus",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The datasource both receivers' files provision.
pub const RECEIVER_DATASOURCE_UID: &str = "cmm_receiver";
/// The datasource thanos-query.yaml provisions.
pub const THANOS_DATASOURCE_UID: &str = "cmm_thanos";
/// The name the receiver's server certificate carries and push.yaml's clients check.
pub const RECEIVER_SERVER_NAME: &str = "cmm-receiver";
/// The ConfigMap on the central cluster holding one store-endpoint file per cluster.
pub const THANOS_ENDPOINTS_CONFIGMAP: &str = "cmm-thanos-endpoints";
/// The node port of each cluster's sidecar gRPC (thanos-sidecar.yaml, the chart's default).
pub const THANOS_GRPC_NODE_PORT: u16 = 30901;

/// How a cluster appears in the central Grafana.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Registration {
    /// Pull: its own datasource and its own copy of the rules.
    DatasourcePerCluster,
    /// Push: nothing of its own. The receiver's datasource and one rule set serve every
    /// cluster; registering adds the name to the list `CmmClusterSilent` expects to hear from.
    SharedRules { datasource_uid: &'static str },
    /// Thanos: its sidecar's address in the endpoints ConfigMap, plus the shared rule set on
    /// the Thanos Query datasource, as in push.
    StoreEndpoint { datasource_uid: &'static str },
}

/// A topology with what it needs besides its name, checked: what every command builds from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wiring {
    pub topology: Topology,
    /// Push: the receiver's write URL as the clusters reach it.
    pub receiver_url: Option<String>,
    /// Push: what stores the samples centrally (the default in every other topology).
    pub receiver: Receiver,
    /// Whether `receiver` was given rather than defaulted: only a given one may replace the
    /// receiver a central already runs (`clash::receiver_switch`).
    pub receiver_chosen: bool,
    /// Push: Prometheus in agent mode (overlays/agent-mode.yaml).
    pub agent_mode: bool,
    /// Thanos: upload blocks to the bucket of Secret cmm-thanos-objstore.
    pub object_storage: bool,
    /// How the central side reaches a cluster's Prometheus.
    pub transport: Transport,
}

/// How the central side reaches a cluster's Prometheus: through the mutual-TLS proxy with a
/// certificate from the CMM CA (the default), or as the seed's plain HTTP
/// (`--insecure-plain-http`, overlays/insecure-plain-http.yaml), which only pull can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    #[default]
    MutualTls,
    PlainHttp,
}

/// The raw choices, as settings or a fleet file give them; [`Wiring::new`] checks them.
#[derive(Debug, Clone, Default)]
pub struct Choice<'a> {
    pub topology: Topology,
    pub receiver_url: Option<&'a str>,
    /// `None`: not given (push takes the default).
    pub receiver: Option<Receiver>,
    pub agent_mode: bool,
    pub object_storage: bool,
    /// No mutual TLS (--insecure-plain-http): only pull can do without certificates.
    pub insecure_plain_http: bool,
    /// For the central release (it receives, so it needs no receiver URL of its own) and for
    /// commands that never send (deregister).
    pub central: bool,
    /// How each setting is called where it came from (flag or fleet key), for messages.
    pub names: Names,
}

#[derive(Debug, Clone)]
pub struct Names {
    pub topology: String,
    pub receiver_url: String,
    pub receiver: String,
    pub agent_mode: String,
    pub object_storage: String,
    pub insecure: String,
}

impl Default for Names {
    /// The agent's flags.
    fn default() -> Self {
        Names {
            topology: "--topology".into(),
            receiver_url: "--receiver-url".into(),
            receiver: "--receiver".into(),
            agent_mode: "--agent-mode".into(),
            object_storage: "--thanos-object-storage".into(),
            insecure: "--insecure-plain-http".into(),
        }
    }
}

impl Names {
    /// A fleet file's keys, for cluster `index` (`plan`).
    pub fn fleet(index: usize) -> Self {
        Names {
            topology: "central.topology =".into(),
            receiver_url: "central.receiver_url".into(),
            receiver: "central.receiver =".into(),
            agent_mode: format!("clusters[{index}].agent_mode"),
            object_storage: format!("clusters[{index}].thanos_object_storage"),
            insecure: format!("clusters[{index}].overlays insecure-plain-http"),
        }
    }
}

impl Wiring {
    pub fn pull() -> Self {
        Wiring::default()
    }

    /// Whether the cluster's Prometheus is served over mutual TLS (needs the CMM CA).
    pub fn mutual_tls(&self) -> bool {
        self.transport == Transport::MutualTls
    }

    /// Check a choice: every combination that would install something broken is refused here,
    /// naming the settings, before anything is contacted.
    pub fn new(c: &Choice<'_>) -> Result<Self> {
        let n = &c.names;
        let bad = |message: String| Error::Topology { message };
        if c.insecure_plain_http && c.topology != Topology::Pull {
            return Err(bad(format!(
                "{} {} needs mutual TLS (the clusters' certificates authenticate them to the central \
                 side); drop {}, or use {} pull",
                n.topology, c.topology, n.insecure, n.topology
            )));
        }
        if c.agent_mode && c.topology != Topology::Push {
            return Err(bad(format!(
                "{} only makes sense with {} push (an agent answers no queries); drop it or choose push",
                n.agent_mode, n.topology
            )));
        }
        if c.object_storage && c.topology != Topology::Thanos {
            return Err(bad(format!(
                "{} only makes sense with {} thanos; drop it or choose thanos",
                n.object_storage, n.topology
            )));
        }
        if c.receiver.is_some() && c.topology != Topology::Push {
            return Err(bad(format!(
                "{} is only used with {} push; drop it",
                n.receiver, n.topology
            )));
        }
        let receiver_url = match (c.topology, c.receiver_url) {
            (Topology::Push, None) if c.central => None,
            (Topology::Push, None) => {
                return Err(bad(format!(
                "{} push needs {}: the central receiver's write URL as this cluster reaches it, \
                     e.g. https://10.0.0.5:30091/api/v1/write",
                n.topology, n.receiver_url
            )))
            }
            (Topology::Push, Some(url)) => {
                check_receiver_url(url).map_err(|p| bad(format!("{} {p}", n.receiver_url)))?;
                Some(url.to_owned())
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "{} is only used with {} push; drop it",
                    n.receiver_url, n.topology
                )))
            }
            (_, None) => None,
        };
        Ok(Wiring {
            topology: c.topology,
            receiver_url,
            receiver: c.receiver.unwrap_or_default(),
            receiver_chosen: c.receiver.is_some(),
            agent_mode: c.agent_mode,
            object_storage: c.object_storage,
            transport: if c.insecure_plain_http {
                Transport::PlainHttp
            } else {
                Transport::MutualTls
            },
        })
    }

    /// The topology's files for a monitored cluster, in helm's order after the base file
    /// (environment fixes follow them). The receiver URL is a generated file, not `--set`:
    /// values never go on a command line.
    pub fn cluster_files(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let mut push = |f: ValuesFile| out.push((f.name, f.text.to_owned()));
        match self.topology {
            Topology::Pull => {}
            Topology::Push => {
                push(PUSH);
                if self.agent_mode {
                    push(AGENT_MODE);
                }
            }
            Topology::Thanos => {
                push(THANOS_SIDECAR);
                if self.object_storage {
                    push(THANOS_OBJECT_STORAGE);
                }
            }
        }
        if let Some(url) = &self.receiver_url {
            // JSON is YAML; the URL was checked to hold nothing tpl would read.
            out.push((
                RECEIVER_FILE,
                format!(
                    "# Generated by cmm-agent from the receiver-url setting.\ncmm:\n  receiverUrl: {}\n",
                    serde_json::to_string(url).expect("a string serialises")
                ),
            ));
        }
        out
    }

    /// The topology's file for the central release, between central_monitor.yaml and
    /// central_content.yaml.
    pub fn central_file(&self) -> Option<ValuesFile> {
        match self.topology {
            Topology::Pull => None,
            Topology::Push => Some(match self.receiver {
                Receiver::VictoriaMetrics => CENTRAL_RECEIVER_VM,
                Receiver::Prometheus => CENTRAL_RECEIVER,
            }),
            Topology::Thanos => Some(THANOS_QUERY),
        }
    }

    pub fn registration(&self) -> Registration {
        match (self.topology, self.topology.shared_datasource_uid()) {
            (Topology::Push, Some(datasource_uid)) => Registration::SharedRules { datasource_uid },
            (Topology::Thanos, Some(datasource_uid)) => {
                Registration::StoreEndpoint { datasource_uid }
            }
            _ => Registration::DatasourcePerCluster,
        }
    }

    /// Whether the cluster's own Prometheus answers queries (an agent does not): `check` and
    /// registration probe it only then.
    pub fn queryable_on_cluster(&self) -> bool {
        !self.agent_mode
    }

    /// Push: the central release runs the receiver, with a server certificate of its own.
    pub fn receiver_on_central(&self) -> bool {
        self.topology == Topology::Push
    }

    /// Thanos: the central release runs Query, which reads Grafana's client certificate at start.
    pub fn query_on_central(&self) -> bool {
        self.topology == Topology::Thanos
    }

    /// Thanos: each cluster's Prometheus pods carry a sidecar that reads the cluster's
    /// certificate at start.
    pub fn sidecar_on_cluster(&self) -> bool {
        self.topology == Topology::Thanos
    }

    /// Whether the central Grafana reaches the cluster (pull) rather than the other way round.
    pub fn central_reads_cluster(&self) -> bool {
        self.topology == Topology::Pull
    }

    /// One line for reports: `push (agent mode) to https://…`.
    pub fn describe(&self) -> String {
        let mut s = self.topology.to_string();
        if self.agent_mode {
            s.push_str(" (agent mode)");
        }
        if self.object_storage {
            s.push_str(" (object storage)");
        }
        if let Some(url) = &self.receiver_url {
            s.push_str(&format!(" to {url}"));
        } else if self.topology == Topology::Push {
            s.push_str(&format!(" ({} receiver)", self.receiver));
        }
        s
    }
}

/// The generated values file carrying the receiver URL (shown under this name in plans).
pub const RECEIVER_FILE: &str = "cmm-receiver-url.yaml";

/// A receiver URL push.yaml can carry: https (the receiver admits only mutual TLS), a host, a
/// path (Prometheus' receiver is POST /api/v1/write), nothing helm's tpl or YAML would read.
pub fn check_receiver_url(url: &str) -> std::result::Result<(), String> {
    cmm_core::naming::check_prometheus_url(url)?;
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "{url:?} must be https://: the central receiver admits clusters by their certificates"
        ));
    };
    if !rest.contains('/') || rest.ends_with('/') && rest.matches('/').count() == 1 {
        return Err(format!(
            "{url:?} has no path: the receiver's write endpoint is /api/v1/write"
        ));
    }
    Ok(())
}

/// The store-endpoint file a cluster registers in [`THANOS_ENDPOINTS_CONFIGMAP`] (Thanos' file
/// discovery format, one target: its sidecar's gRPC address as the central node dials it).
pub fn endpoint_file(host: &str) -> String {
    format!(
        "# Registered by cmm-agent.\n- targets: [{}]\n",
        serde_json::to_string(&format!("{host}:{THANOS_GRPC_NODE_PORT}")).expect("serialises")
    )
}

/// The key of a cluster's file in the endpoints ConfigMap (Query reads `*.yaml`).
pub fn endpoint_key(cluster: &cmm_core::ClusterName) -> String {
    format!("{}.yaml", cluster.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(topology: Topology) -> Choice<'static> {
        Choice {
            topology,
            ..Default::default()
        }
    }

    #[test]
    fn pull_adds_nothing_and_registers_a_datasource_per_cluster() {
        let w = Wiring::new(&choice(Topology::Pull)).unwrap();
        assert!(w.cluster_files().is_empty());
        assert_eq!(w.central_file(), None);
        assert_eq!(w.registration(), Registration::DatasourcePerCluster);
        assert!(w.central_reads_cluster());
    }

    #[test]
    fn a_receiver_is_only_taken_with_push_and_named_as_given() {
        for t in [Topology::Pull, Topology::Thanos] {
            let err = Wiring::new(&Choice {
                receiver: Some(Receiver::Prometheus),
                central: true,
                ..choice(t)
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("--receiver is only used with --topology push"),
                "{err}"
            );
        }
        for r in Receiver::ALL {
            assert_eq!(Receiver::parse(r.as_str()), Some(r));
            let w = Wiring::new(&Choice {
                receiver: Some(r),
                central: true,
                ..choice(Topology::Push)
            })
            .unwrap();
            assert_eq!(w.describe(), format!("push ({r} receiver)"));
        }
        assert_eq!(Receiver::parse("victoria-metrics"), None);
    }

    #[test]
    fn push_composes_its_overlays_in_order_with_the_url_as_a_file() {
        let w = Wiring::new(&Choice {
            receiver_url: Some("https://10.0.0.5:30091/api/v1/write"),
            agent_mode: true,
            ..choice(Topology::Push)
        })
        .unwrap();
        let files = w.cluster_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "overlays/push.yaml",
                "overlays/agent-mode.yaml",
                RECEIVER_FILE
            ]
        );
        let v: serde_json::Value = serde_saphyr::from_str(&files[2].1).unwrap();
        assert_eq!(
            v["cmm"]["receiverUrl"],
            "https://10.0.0.5:30091/api/v1/write"
        );
        // VictoriaMetrics unless told otherwise; the cluster's files are the same for both.
        assert_eq!(w.central_file(), Some(CENTRAL_RECEIVER_VM));
        let prom = Wiring::new(&Choice {
            receiver_url: Some("https://10.0.0.5:30091/api/v1/write"),
            receiver: Some(Receiver::Prometheus),
            agent_mode: true,
            ..choice(Topology::Push)
        })
        .unwrap();
        assert_eq!(prom.central_file(), Some(CENTRAL_RECEIVER));
        assert_eq!(prom.cluster_files(), files);
        assert_eq!(
            w.registration(),
            Registration::SharedRules {
                datasource_uid: "cmm_receiver"
            }
        );
        assert!(!w.queryable_on_cluster() && !w.central_reads_cluster());
    }

    #[test]
    fn thanos_adds_the_sidecar_and_registers_an_endpoint() {
        let w = Wiring::new(&Choice {
            object_storage: true,
            ..choice(Topology::Thanos)
        })
        .unwrap();
        let names: Vec<&str> = w.cluster_files().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "overlays/thanos-sidecar.yaml",
                "overlays/thanos-object-storage.yaml"
            ]
        );
        assert_eq!(w.central_file(), Some(THANOS_QUERY));
        assert!(matches!(
            w.registration(),
            Registration::StoreEndpoint { .. }
        ));
    }

    #[test]
    fn broken_combinations_are_refused_naming_the_settings() {
        for (c, needle) in [
            (choice(Topology::Push), "--receiver-url"),
            (
                Choice {
                    receiver_url: Some("http://10.0.0.5:30091/api/v1/write"),
                    ..choice(Topology::Push)
                },
                "must be https://",
            ),
            (
                Choice {
                    receiver_url: Some("https://10.0.0.5:30090"),
                    ..choice(Topology::Push)
                },
                "no path",
            ),
            (
                Choice {
                    receiver_url: Some("https://{{ .Values.x }}/api/v1/write"),
                    ..choice(Topology::Push)
                },
                "--receiver-url",
            ),
            (
                Choice {
                    receiver_url: Some("https://r/api/v1/write"),
                    ..choice(Topology::Pull)
                },
                "only used with --topology push",
            ),
            (
                Choice {
                    agent_mode: true,
                    ..choice(Topology::Thanos)
                },
                "--agent-mode",
            ),
            (
                Choice {
                    object_storage: true,
                    ..choice(Topology::Push)
                },
                "--thanos-object-storage",
            ),
            (
                Choice {
                    insecure_plain_http: true,
                    ..choice(Topology::Thanos)
                },
                "--insecure-plain-http",
            ),
        ] {
            let err = Wiring::new(&c).unwrap_err().to_string();
            assert!(err.contains(needle), "{c:?}: {err}");
        }
    }

    #[test]
    fn every_overlay_in_the_repository_is_embedded_and_packaged_as_it_is() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../values/overlays");
        let shipped = crate::values::OVERLAYS;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("overlays/{}", path.file_name().unwrap().to_str().unwrap());
            let f = shipped
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{name} is neither an Overlay nor a topology file"));
            assert_eq!(f.text, std::fs::read_to_string(&path).unwrap(), "{name}");
        }
    }

    #[test]
    fn the_endpoint_file_is_thanos_file_discovery() {
        let text = endpoint_file("10.0.0.11");
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!([{"targets": ["10.0.0.11:30901"]}]));
    }
}
