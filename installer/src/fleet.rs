//! A fleet: the central Grafana and the clusters it watches, and the helm releases that make
//! it. `cmm-agent plan` renders a whole fleet offline; bootstrap renders one member.

use std::collections::BTreeMap;

use cmm_core::datasource::prometheus_datasource;
use cmm_core::naming::DEFAULT_NAMESPACE;
use cmm_core::ClusterName;
use serde::Deserialize;

use crate::envsubst::envsubst;
use crate::stack::stack;
use crate::topology::{Choice, Names, Role, Topology, Wiring};
use crate::values::{Overlay, CENTRAL_MONITOR, DATASOURCES_VAR};
use crate::{Error, Result};

/// The fleet `cmm-agent plan` uses when given none.
pub const EXAMPLE: &str = include_str!("../../examples/fleet.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub central: Central,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Central {
    #[serde(default = "default_central_release")]
    pub release: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How the fleet is wired (`topology` module); the same for every member.
    #[serde(default)]
    pub topology: Topology,
    /// push: the receiver's write URL as the clusters reach it.
    #[serde(default)]
    pub receiver_url: Option<String>,
    /// push: what stores the samples centrally (`victoriametrics`, the default, or `prometheus`).
    #[serde(default)]
    pub receiver: Option<crate::topology::Receiver>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    /// Where the central Grafana reaches this cluster's Prometheus (pull only: in push and
    /// thanos the central side does not read the cluster's Prometheus).
    #[serde(default)]
    pub prometheus_url: Option<String>,
    /// push: Prometheus in agent mode.
    #[serde(default)]
    pub agent_mode: bool,
    /// thanos: upload blocks to the bucket of Secret cmm-thanos-objstore.
    #[serde(default)]
    pub thanos_object_storage: bool,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub overlays: Vec<Overlay>,
    /// Extra `--set` assignments, as a user would pass them to helm.
    #[serde(default)]
    pub set: Vec<String>,
}

fn default_central_release() -> String {
    "monitor".to_owned()
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// One helm release of the fleet, ready to render: values as (file name, text) in order.
#[derive(Debug, Clone)]
pub struct Member {
    pub role: Role,
    pub release: String,
    pub namespace: String,
    pub values: Vec<(String, String)>,
    pub sets: Vec<String>,
}

impl Fleet {
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let fleet: Fleet = toml::from_str(text).map_err(|e| Error::Fleet {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        // Every value is checked as its flag would be: nothing from the file reaches helm (or
        // helm's `tpl`, which renders the central datasources) unchecked.
        let bad = |field: String, problem: String| Error::Fleet {
            path: origin.to_owned(),
            message: format!("{field}: {problem}"),
        };
        ClusterName::parse(&fleet.central.release).map_err(|source| Error::ClusterName {
            field: format!("{origin}: central.release"),
            source,
        })?;
        cmm_core::naming::check_namespace(&fleet.central.namespace)
            .map_err(|p| bad("central.namespace".into(), p))?;
        let mut seen = BTreeMap::new();
        for (i, c) in fleet.clusters.iter().enumerate() {
            ClusterName::parse(&c.name).map_err(|source| Error::ClusterName {
                field: format!("{origin}: clusters[{i}].name"),
                source,
            })?;
            cmm_core::naming::check_namespace(&c.namespace)
                .map_err(|p| bad(format!("clusters[{i}].namespace"), p))?;
            match (&c.prometheus_url, fleet.central.topology) {
                (Some(url), _) => cmm_core::naming::check_prometheus_url(url)
                    .map_err(|p| bad(format!("clusters[{i}].prometheus_url"), p))?,
                (None, Topology::Pull) => {
                    return Err(bad(
                        format!("clusters[{i}].prometheus_url"),
                        "is required with topology pull: where the central Grafana reaches \
                         this cluster's Prometheus, e.g. \"https://10.0.0.11:30090\""
                            .into(),
                    ))
                }
                (None, _) => {}
            }
            fleet.wiring(i).map_err(|e| Error::Fleet {
                path: origin.to_owned(),
                message: e.to_string(),
            })?;
            for (j, set) in c.set.iter().enumerate() {
                crate::set::check_set(set)
                    .map_err(|e| bad(format!("clusters[{i}].set[{j}]"), e.to_string()))?;
            }
            if let Some(prev) = seen.insert(c.name.clone(), i) {
                return Err(Error::Fleet {
                    path: origin.to_owned(),
                    message: format!(
                        "clusters[{prev}] and clusters[{i}] are both named {:?}: every cluster needs its own name",
                        c.name
                    ),
                });
            }
        }
        // The central choices alone (a receiver only in push), before anything uses them.
        Wiring::new(&Choice {
            topology: fleet.central.topology,
            receiver: fleet.central.receiver,
            central: true,
            names: Names::fleet(0),
            ..Default::default()
        })?;
        Ok(fleet)
    }

    /// Cluster `index`'s wiring: the fleet's topology with the cluster's own options.
    pub fn wiring(&self, index: usize) -> Result<Wiring> {
        let c = &self.clusters[index];
        Wiring::new(&Choice {
            topology: self.central.topology,
            receiver_url: self.central.receiver_url.as_deref(),
            receiver: self.central.receiver,
            agent_mode: c.agent_mode,
            object_storage: c.thanos_object_storage,
            insecure_plain_http: c.overlays.contains(&Overlay::InsecurePlainHttp),
            central: false,
            names: Names::fleet(index),
        })
    }

    /// The central release's wiring.
    pub fn central_wiring(&self) -> Wiring {
        Wiring::new(&Choice {
            topology: self.central.topology,
            receiver: self.central.receiver,
            central: true,
            ..Default::default()
        })
        .expect("parse checked the central wiring")
    }

    pub fn example() -> Self {
        Self::parse(EXAMPLE, "<embedded example fleet>").expect("the embedded example fleet parses")
    }

    /// The central release's values: `central_monitor.yaml` through envsubst with the fleet's
    /// datasources, exactly as the seed's `envsubst < central_monitor.yaml | helm -f -`.
    /// In push and thanos there is no datasource per cluster: the topology's overlay gives the
    /// one datasource.
    pub fn central_values(&self) -> String {
        let per_cluster = match self.central.topology {
            Topology::Pull => &self.clusters[..],
            Topology::Push | Topology::Thanos => &[],
        };
        let datasources: Vec<_> = per_cluster
            .iter()
            .filter_map(|c| Some((c, c.prometheus_url.as_deref()?)))
            .map(|(c, url)| {
                let name = ClusterName::parse(&c.name).expect("validated in parse");
                let ds = prometheus_datasource(&name, url);
                // https is the mutual-TLS proxy's port: Grafana's certificate from its env.
                if url.starts_with("https://") {
                    cmm_core::datasource::with_tls_from_env(ds)
                } else {
                    ds
                }
            })
            .collect();
        let mut vars = BTreeMap::new();
        vars.insert(DATASOURCES_VAR.to_owned(), datasources_block(&datasources));
        envsubst(CENTRAL_MONITOR.text, &vars)
    }

    /// Every release of the fleet: central first, then clusters in file order. The stacks come
    /// from [`crate::stack::stack`], as bootstrap's do.
    pub fn members(&self) -> Vec<Member> {
        let mut out = vec![Member {
            role: Role::Central,
            release: self.central.release.clone(),
            namespace: self.central.namespace.clone(),
            values: stack(
                Role::Central,
                None,
                Some(self.central_values()),
                &self.central_wiring(),
                &[],
            ),
            sets: Vec::new(),
        }];
        for (i, c) in self.clusters.iter().enumerate() {
            let wiring = self.wiring(i).expect("validated in parse");
            out.push(Member {
                role: Role::Cluster,
                release: c.name.clone(),
                namespace: c.namespace.clone(),
                values: stack(Role::Cluster, None, None, &wiring, &c.overlays),
                sets: c.set.clone(),
            });
        }
        out
    }
}

/// The value of `CMM_DATASOURCES`: a newline, then one block-sequence item per datasource in
/// JSON (which is YAML flow syntax). central_monitor.yaml keeps the reference in a comment after
/// `additionalDataSources:`, so plain helm sees no datasources, and envsubst's newline turns the
/// items into the list.
pub fn datasources_block(datasources: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for ds in datasources {
        out.push_str("\n    - ");
        out.push_str(&serde_json::to_string(ds).expect("datasources serialise"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_fleet_is_central_plus_two_clusters() {
        let members = Fleet::example().members();
        let roles: Vec<_> = members
            .iter()
            .map(|m| (m.role, m.release.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::Central, "monitor"),
                (Role::Cluster, "kr-mum"),
                (Role::Cluster, "wai-eks")
            ]
        );
        assert_eq!(
            members[2].values[1].0,
            "overlays/managed-control-plane.yaml"
        );
    }

    fn names(m: &Member) -> Vec<&str> {
        m.values.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// `plan` renders a fleet file; bootstrap installs one cluster with the fixes it detects.
    /// For the same choices both must install the same files in the same order.
    #[test]
    fn plan_and_bootstrap_build_the_same_values_stack() {
        use crate::bootstrap::{plan_of, Options};
        use crate::detect::{EnvKind, Environment};
        let fleets = [
            include_str!("../../examples/fleet.toml"),
            include_str!("../../examples/fleet-push.toml"),
            include_str!("../../examples/fleet-thanos.toml"),
        ];
        for text in fleets {
            let fleet = Fleet::parse(text, "test").unwrap();
            for (m, member) in fleet.members().iter().enumerate() {
                let (role, wiring, env, kube_metrics, insecure) = match member.role {
                    Role::Central => (
                        Role::Central,
                        fleet.central_wiring(),
                        Environment::default(),
                        false,
                        false,
                    ),
                    Role::Cluster => {
                        let c = &fleet.clusters[m - 1];
                        // The environment that makes bootstrap pick the fleet's overlays.
                        let managed = c.overlays.contains(&Overlay::ManagedControlPlane);
                        let env = Environment {
                            kinds: if managed {
                                vec![EnvKind::Eks]
                            } else {
                                Vec::new()
                            },
                            evidence: Vec::new(),
                        };
                        (
                            Role::Cluster,
                            fleet.wiring(m - 1).unwrap(),
                            env,
                            c.overlays.contains(&Overlay::KubeMetrics),
                            c.overlays.contains(&Overlay::InsecurePlainHttp),
                        )
                    }
                };
                let opts = Options {
                    cluster: ClusterName::parse(&member.release).unwrap(),
                    role,
                    namespace: member.namespace.clone(),
                    chart: crate::chart::ChartSource::upstream(),
                    helm_version: String::new(),
                    user_values: None,
                    central_values: (role == Role::Central).then(|| fleet.central_values()),
                    sets: member.sets.clone(),
                    kube_metrics,
                    insecure_plain_http: insecure,
                    wiring,
                    timeout_secs: 0,
                    pending_grace_secs: 0,
                    host_proc_version: None,
                    dry_run: true,
                    now_unix: 0,
                };
                let (_, bootstrap_values, _) = plan_of(&opts, &env);
                assert_eq!(
                    names(member),
                    bootstrap_values
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>(),
                    "{} in {text}",
                    member.release
                );
                assert_eq!(
                    member.values, bootstrap_values,
                    "{}: the files' text",
                    member.release
                );
            }
        }
    }

    #[test]
    fn a_push_fleet_composes_the_receiver_centrally_and_push_on_every_cluster() {
        let f = Fleet::parse(
            include_str!("../../examples/fleet-push.toml"),
            "fleet-push.toml",
        )
        .unwrap();
        let m = f.members();
        assert_eq!(
            names(&m[0]),
            [
                "central_monitor.yaml",
                "overlays/central-receiver-victoriametrics.yaml",
                "central_content.yaml"
            ]
        );
        // No datasource per cluster: the receiver's is the one.
        assert!(!m[0].values[0].1.contains("cmm-kr-mum"));
        assert_eq!(
            names(&m[1]),
            [
                "each_cluster.yaml",
                "overlays/push.yaml",
                crate::topology::RECEIVER_FILE
            ]
        );
        assert_eq!(
            names(&m[2]),
            [
                "each_cluster.yaml",
                "overlays/push.yaml",
                "overlays/agent-mode.yaml",
                crate::topology::RECEIVER_FILE,
                "overlays/managed-control-plane.yaml"
            ]
        );
        assert!(m[1].values[2]
            .1
            .contains("https://10.0.0.5:30091/api/v1/write"));
    }

    #[test]
    fn a_thanos_fleet_composes_query_centrally_and_the_sidecar_on_every_cluster() {
        let f = Fleet::parse(
            include_str!("../../examples/fleet-thanos.toml"),
            "fleet-thanos.toml",
        )
        .unwrap();
        let m = f.members();
        assert_eq!(names(&m[0])[1], "overlays/thanos-query.yaml");
        assert_eq!(
            names(&m[1]),
            [
                "each_cluster.yaml",
                "overlays/thanos-sidecar.yaml",
                "overlays/thanos-object-storage.yaml"
            ]
        );
        assert_eq!(names(&m[2])[1], "overlays/thanos-sidecar.yaml");
    }

    #[test]
    fn topology_mistakes_in_a_fleet_name_the_key() {
        for (toml, needle) in [
            (
                "[central]\ntopology = \"push\"\n[[clusters]]\nname = \"a\"\n",
                "central.receiver_url",
            ),
            (
                "[central]\n[[clusters]]\nname = \"a\"\n",
                "clusters[0].prometheus_url: is required with topology pull",
            ),
            (
                "[central]\ntopology = \"thanos\"\n[[clusters]]\nname = \"a\"\nagent_mode = true\n",
                "clusters[0].agent_mode",
            ),
            (
                "[central]\ntopology = \"thanos\"\nreceiver = \"prometheus\"\n[[clusters]]\nname = \"a\"\n",
                "central.receiver = is only used with central.topology = push",
            ),
            (
                "[central]\ntopology = \"push\"\nreceiver_url = \"https://r/api/v1/write\"\n[[clusters]]\nname = \"a\"\noverlays = [\"insecure-plain-http\"]\n",
                "needs mutual TLS",
            ),
            ("[central]\ntopology = \"mesh\"\n", "mesh"),
        ] {
            let err = Fleet::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }

    #[test]
    fn an_https_cluster_gets_grafanas_certificate_from_the_environment() {
        let f = Fleet::parse(
            "[central]\n[[clusters]]\nname = \"kr-mum\"\nprometheus_url = \"https://10.0.0.11:30090\"\n\
             [[clusters]]\nname = \"lab\"\nprometheus_url = \"http://10.0.9.9:30090\"\n",
            "test",
        )
        .unwrap();
        let text = f.central_values();
        let line = |uid: &str| {
            text.lines()
                .find(|l| l.contains(&format!("\"uid\":\"{uid}\"")))
                .unwrap()
                .to_owned()
        };
        let tls = line("cmm-kr-mum");
        assert!(
            tls.contains("\"tlsAuth\":true")
                && tls.contains("\"tlsClientKey\":\"$CMM_TLS_CLIENT_KEY\""),
            "{tls}"
        );
        assert!(!line("cmm-lab").contains("tlsAuth"));
    }

    #[test]
    fn central_values_carry_one_datasource_per_cluster() {
        let text = Fleet::example().central_values();
        assert!(!text.contains("${"), "envsubst left a reference:\n{text}");
        assert!(
            text.contains("\"uid\":\"cmm-kr-mum\"") && text.contains("\"uid\":\"cmm-wai-eks\"")
        );
    }

    #[test]
    fn bad_fleets_name_the_field() {
        let err = Fleet::parse(
            "[central]\n[[clusters]]\nname = \"Bad_Name\"\nprometheus_url = \"http://x\"\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("clusters[0].name"), "{err}");
        let err = Fleet::parse(
            "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://u\"\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://u\"\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("both named"), "{err}");
        for (toml, field) in [
            ("[central]\nrelease = \"Monitor!\"\n", "central.release"),
            ("[central]\nnamespace = \"-x\"\n", "central.namespace"),
            (
                "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://{{ .Release.Name }}:1\"\n",
                "clusters[0].prometheus_url",
            ),
            (
                "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://u:p@h:1\"\n",
                "clusters[0].prometheus_url",
            ),
            (
                "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"ftp://h\"\n",
                "clusters[0].prometheus_url",
            ),
            (
                "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://h:1\"\nnamespace = \"Mon\"\n",
                "clusters[0].namespace",
            ),
            (
                "[central]\n[[clusters]]\nname = \"a\"\nprometheus_url = \"http://h:1\"\nset = [\"x\"]\n",
                "clusters[0].set[0]",
            ),
        ] {
            let err = Fleet::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(err.contains(field), "{toml}: {err}");
        }
        let err = Fleet::parse("[central]\nrelese = \"x\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("relese"), "{err}");
    }
}
