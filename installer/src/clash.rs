//! Two releases of the chart on one cluster: what this release would create that another
//! release already owns (a cluster-wide object, an object of the same name in the namespace,
//! a NodePort). helm would refuse it only after the namespace and certificates were made
//! ("exists and cannot be imported into the current release: invalid ownership metadata",
//! pkg/action/validate.go); bootstrap asks first and changes nothing. CMM's central and
//! cluster releases share no name in any topology (tests/values/test_coexistence.py); what is
//! left is another install of the chart under CMM's names, or a push central from before its
//! receiver had names of its own.

use serde::Serialize;
use serde_json::Value;

/// helm's ownership annotations (pkg/action/validate.go).
pub const RELEASE_NAME: &str = "meta.helm.sh/release-name";
pub const RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// An object already on the cluster, as far as a clash is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Existing {
    pub kind: String,
    /// `None`: cluster-scoped.
    pub namespace: Option<String>,
    pub name: String,
    /// The helm release owning it (name, namespace), if any.
    pub owner: Option<(String, String)>,
    pub node_ports: Vec<i32>,
}

impl Existing {
    pub fn from_meta(
        kind: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        node_ports: Vec<i32>,
    ) -> Self {
        let ann = meta.annotations.clone().unwrap_or_default();
        Existing {
            kind: kind.to_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            owner: match (ann.get(RELEASE_NAME), ann.get(RELEASE_NAMESPACE)) {
                (Some(n), Some(ns)) => Some((n.clone(), ns.clone())),
                _ => None,
            },
            node_ports,
        }
    }

    fn owned_by(&self, release: &str, namespace: &str) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|(r, ns)| r == release && ns == namespace)
    }

    fn described(&self) -> String {
        let at = self
            .namespace
            .as_ref()
            .map_or(String::new(), |ns| format!(" in namespace {ns}"));
        let by = self
            .owner
            .as_ref()
            .map_or("no helm release".to_owned(), |(r, ns)| {
                format!("release {r} (namespace {ns})")
            });
        format!("{} {}{at}, owned by {by}", self.kind, self.name)
    }
}

/// The kinds whose existing objects bootstrap reads for this check.
pub const CLUSTER_KINDS: [&str; 4] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];
pub const NAMESPACED_KINDS: [&str; 4] = ["Service", "ConfigMap", "ServiceAccount", "Deployment"];

fn node_ports(o: &Value) -> Vec<i32> {
    o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter_map(|p| i32::try_from(p).ok())
        .collect()
}

/// Pure: each thing `rendered` (this release, `release` in `namespace`) would take that another
/// release (or no release) already holds, in words.
pub fn judge(
    rendered: &[Value],
    existing: &[Existing],
    release: &str,
    namespace: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for o in rendered {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let ns = if CLUSTER_KINDS.contains(&kind) {
            None
        } else if NAMESPACED_KINDS.contains(&kind) {
            Some(
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(namespace)
                    .to_owned(),
            )
        } else {
            continue;
        };
        if let Some(e) = existing.iter().find(|e| {
            e.kind == kind && e.name == name && e.namespace == ns && !e.owned_by(release, namespace)
        }) {
            out.push(e.described());
        }
        for port in node_ports(o) {
            if let Some(e) = existing.iter().find(|e| {
                e.node_ports.contains(&port)
                    && !e.owned_by(release, namespace)
                    && !(e.kind == kind && e.name == name && e.namespace == ns)
            }) {
                out.push(format!("NodePort {port}, taken by {}", e.described()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl crate::kube::Connected {
    /// The objects of [`CLUSTER_KINDS`] cluster-wide, every Service (for NodePorts), and the
    /// objects of [`NAMESPACED_KINDS`] in `namespace` (reads only).
    pub async fn existing_for_clash(&self, namespace: &str) -> crate::Result<Vec<Existing>> {
        use k8s_openapi::api::admissionregistration::v1::{
            MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
        };
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        let mut out = Vec::new();
        let meta = |kind: &str, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            Existing::from_meta(kind, m, Vec::new())
        };
        for o in self.list_all::<ClusterRole>().await? {
            out.push(meta("ClusterRole", &o.metadata));
        }
        for o in self.list_all::<ClusterRoleBinding>().await? {
            out.push(meta("ClusterRoleBinding", &o.metadata));
        }
        for o in self.list_all::<MutatingWebhookConfiguration>().await? {
            out.push(meta("MutatingWebhookConfiguration", &o.metadata));
        }
        for o in self.list_all::<ValidatingWebhookConfiguration>().await? {
            out.push(meta("ValidatingWebhookConfiguration", &o.metadata));
        }
        for o in self.list_all::<Service>().await? {
            let ports = o
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|p| p.node_port)
                .collect();
            out.push(Existing::from_meta("Service", &o.metadata, ports));
        }
        for o in self.list_in::<ConfigMap>(namespace).await? {
            out.push(meta("ConfigMap", &o.metadata));
        }
        for o in self.list_in::<ServiceAccount>(namespace).await? {
            out.push(meta("ServiceAccount", &o.metadata));
        }
        for o in self.list_in::<Deployment>(namespace).await? {
            out.push(meta("Deployment", &o.metadata));
        }
        Ok(out)
    }
}

/// Push, central: the Service each receiver's files make, by which an installed one is known.
const RECEIVER_SERVICES: [(crate::topology::Receiver, &str); 2] = [
    (
        crate::topology::Receiver::Prometheus,
        "cmm-receiver-prometheus",
    ),
    (
        crate::topology::Receiver::VictoriaMetrics,
        "cmm-receiver-vm",
    ),
];

/// Push, central: the receiver this release runs now, when it is not the one `want` names and
/// `want` was only the default. Moving to the other store leaves every sample of the old one
/// behind (helm deletes it; its volume is kept but nothing reads it), so that must be asked
/// for by name, never arrive with a new version's default.
pub fn receiver_switch(
    existing: &[Existing],
    release: &str,
    namespace: &str,
    want: crate::topology::Receiver,
    chosen: bool,
) -> Option<crate::topology::Receiver> {
    if chosen {
        return None;
    }
    RECEIVER_SERVICES
        .iter()
        .filter(|(r, _)| *r != want)
        .find(|(_, service)| {
            existing.iter().any(|e| {
                e.kind == "Service"
                    && e.name == *service
                    && e.namespace.as_deref() == Some(namespace)
                    && e.owned_by(release, namespace)
            })
        })
        .map(|(r, _)| *r)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn existing(
        kind: &str,
        ns: Option<&str>,
        name: &str,
        owner: (&str, &str),
        ports: &[i32],
    ) -> Existing {
        Existing {
            kind: kind.into(),
            namespace: ns.map(str::to_owned),
            name: name.into(),
            owner: Some((owner.0.into(), owner.1.into())),
            node_ports: ports.to_vec(),
        }
    }

    #[test]
    fn names_and_node_ports_of_another_release_are_clashes_its_own_are_not() {
        let rendered = [
            json!({"kind": "ClusterRole", "metadata": {"name": "cmm-operator"}}),
            json!({"kind": "Service", "metadata": {"name": "cmm-prometheus-0", "namespace": "monitor"},
                   "spec": {"ports": [{"nodePort": 30090}]}}),
            json!({"kind": "Prometheus", "metadata": {"name": "cmm"}}),
        ];
        // A push central of release `monitor` (namespace `central`) from before the receiver's names.
        let central = [
            existing(
                "ClusterRole",
                None,
                "cmm-operator",
                ("monitor", "central"),
                &[],
            ),
            existing(
                "Service",
                Some("central"),
                "cmm-prometheus-0",
                ("monitor", "central"),
                &[30090],
            ),
        ];
        let clashes = judge(&rendered, &central, "kr-mum", "monitor");
        assert_eq!(clashes.len(), 2, "{clashes:?}");
        assert!(clashes[0]
            .contains("ClusterRole cmm-operator, owned by release monitor (namespace central)"));
        assert!(clashes[1]
            .starts_with("NodePort 30090, taken by Service cmm-prometheus-0 in namespace central"));
        // Its own objects, on a re-run: no clash.
        let own = [
            existing(
                "ClusterRole",
                None,
                "cmm-operator",
                ("kr-mum", "monitor"),
                &[],
            ),
            existing(
                "Service",
                Some("monitor"),
                "cmm-prometheus-0",
                ("kr-mum", "monitor"),
                &[30090],
            ),
        ];
        assert!(judge(&rendered, &own, "kr-mum", "monitor").is_empty());
    }

    #[test]
    fn a_default_never_swaps_the_receiver_a_central_runs() {
        use crate::topology::Receiver::{Prometheus, VictoriaMetrics};
        let prom = [existing(
            "Service",
            Some("monitor"),
            "cmm-receiver-prometheus",
            ("monitor", "monitor"),
            &[],
        )];
        // Installed with the Prometheus receiver; the new default would replace it.
        assert_eq!(
            receiver_switch(&prom, "monitor", "monitor", VictoriaMetrics, false),
            Some(Prometheus)
        );
        // Asked for by name: the operator chose the move.
        assert_eq!(
            receiver_switch(&prom, "monitor", "monitor", VictoriaMetrics, true),
            None
        );
        // Kept: nothing to say.
        assert_eq!(
            receiver_switch(&prom, "monitor", "monitor", Prometheus, false),
            None
        );
        // Another release's, or a new central: not this release's store.
        assert_eq!(
            receiver_switch(&prom, "other", "monitor", VictoriaMetrics, false),
            None
        );
        assert_eq!(
            receiver_switch(&[], "monitor", "monitor", VictoriaMetrics, false),
            None
        );
    }
}
