//! The one table of what each step of a run reads and writes in the cluster: helm's own
//! requests for the objects the chart renders, and the agent's. Preflight asks the API server
//! about exactly these (so a 403 can never arrive after a change), and `cmm-agent rbac` prints
//! a ClusterRole and Role holding exactly these.

use crate::topology::Topology;
use serde::Serialize;

use crate::topology::Role;

/// One permission, as a SelfSubjectAccessReview's `resourceAttributes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permission {
    pub verb: &'static str,
    /// API group; "" is the core group.
    pub group: &'static str,
    pub resource: &'static str,
    /// `None` for cluster-scoped resources (and cluster-wide checks).
    pub namespace: Option<String>,
}

impl Permission {
    /// `create daemonsets.apps in monitor`, as kubectl auth can-i spells resources.
    pub fn describe(&self) -> String {
        let res = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        match &self.namespace {
            Some(ns) => format!("{} {res} in namespace {ns}", self.verb),
            None => format!("{} {res} (cluster-wide)", self.verb),
        }
    }
}

/// Where a request lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The release namespace.
    Namespace,
    /// Cluster-scoped objects.
    Cluster,
    /// kube-system (the chart's Services for control-plane components).
    KubeSystem,
}

/// Which part of a run makes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Reads of the cluster before anything is decided (nodes, namespace, storage, release).
    Gather,
    /// The run lock (crate::lock).
    Lock,
    /// `helm upgrade --install --wait`, `helm rollback`, `helm uninstall`.
    Helm,
    /// The mutual-TLS Secrets (crate::tls): cmm-prometheus-tls on a cluster; cmm-ca and
    /// cmm-grafana-client on the central one (and cmm-receiver-tls in push).
    Tls,
    /// Waiting for workloads and the operator's Prometheus; explaining a failure.
    Wait,
    /// Finding the Prometheus endpoint for the central Grafana.
    Register,
    /// `fix-storage --yes`.
    FixStorage,
    /// `check`: the health snapshot (its `--repair` uses the Helm, Lock, Register and
    /// FixStorage entries).
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    pub step: Step,
    pub verb: &'static str,
    /// API group; "" is the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub scope: Scope,
    pub why: &'static str,
}

/// The kinds the chart renders for a role, as (group, resource, scope). Checked against the real
/// render by installer/tests/helm_render.rs, so a chart change cannot outgrow the table.
fn rendered(
    role: Role,
    kube_metrics: bool,
    topology: Topology,
) -> Vec<(&'static str, &'static str, Scope)> {
    use Scope::*;
    let mut kinds = vec![
        ("", "services", Namespace),
        // Central: Grafana's dashboards and provisioning; cluster: the mTLS proxy's files.
        ("", "configmaps", Namespace),
        ("", "serviceaccounts", Namespace),
        ("apps", "deployments", Namespace),
        ("rbac.authorization.k8s.io", "roles", Namespace),
        ("rbac.authorization.k8s.io", "rolebindings", Namespace),
        ("rbac.authorization.k8s.io", "clusterroles", Cluster),
        ("rbac.authorization.k8s.io", "clusterrolebindings", Cluster),
    ];
    match role {
        Role::Cluster => {
            kinds.extend([
                ("apps", "daemonsets", Namespace),
                // Hooks: the admission webhook's certificate Jobs.
                ("batch", "jobs", Namespace),
                ("monitoring.coreos.com", "prometheuses", Namespace),
                ("monitoring.coreos.com", "prometheusrules", Namespace),
                ("monitoring.coreos.com", "servicemonitors", Namespace),
                (
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    Cluster,
                ),
                (
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations",
                    Cluster,
                ),
            ]);
            if kube_metrics {
                kinds.push(("", "services", KubeSystem));
            }
        }
        Role::Central => kinds.extend([
            // Grafana's PersistentVolume claim (the UI-made dashboards live there).
            ("", "persistentvolumeclaims", Namespace),
        ]),
    }
    // The topology's own objects (crate::topology).
    match (role, topology) {
        (Role::Cluster, Topology::Push) => {
            kinds.push(("monitoring.coreos.com", "prometheusagents", Namespace))
        }
        // The receiver, either kind (topology::Receiver): VictoriaMetrics is a StatefulSet of
        // the release; the Prometheus receiver is operator-run, as on a cluster. One row set
        // for both keeps the table a function of the topology; a central's installer is the
        // cluster's admin, who holds both.
        (Role::Central, Topology::Push) => kinds.extend([
            ("apps", "statefulsets", Namespace),
            ("batch", "jobs", Namespace),
            ("monitoring.coreos.com", "prometheuses", Namespace),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                Cluster,
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                Cluster,
            ),
        ]),
        // Thanos Query's NetworkPolicy.
        (Role::Central, Topology::Thanos) => {
            kinds.push(("networking.k8s.io", "networkpolicies", Namespace))
        }
        _ => {}
    }
    kinds
}

fn a(
    step: Step,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    scope: Scope,
    why: &'static str,
) -> Access {
    Access {
        step,
        verb,
        group,
        resource,
        scope,
        why,
    }
}

/// Everything `bootstrap` of `role` does in the cluster, in topology pull.
pub fn bootstrap(role: Role, kube_metrics: bool) -> Vec<Access> {
    bootstrap_in(role, kube_metrics, Topology::Pull)
}

/// Everything `bootstrap` of `role` does in the cluster, in `topology`.
pub fn bootstrap_in(role: Role, kube_metrics: bool, topology: Topology) -> Vec<Access> {
    use Scope::*;
    use Step::*;
    let mut t = vec![
        a(
            Gather,
            "list",
            "",
            "nodes",
            Cluster,
            "detect the environment",
        ),
        // What another release of the chart already owns (crate::clash).
        a(
            Gather,
            "list",
            "rbac.authorization.k8s.io",
            "clusterroles",
            Cluster,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            Cluster,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            Cluster,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            Cluster,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "",
            "services",
            Cluster,
            "NodePorts and Service names another release holds",
        ),
        a(
            Gather,
            "list",
            "",
            "configmaps",
            Namespace,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "",
            "serviceaccounts",
            Namespace,
            "names another release owns",
        ),
        a(
            Gather,
            "list",
            "apps",
            "deployments",
            Namespace,
            "names another release owns",
        ),
        a(
            Gather,
            "get",
            "",
            "namespaces",
            Cluster,
            "does the namespace exist",
        ),
        a(
            Gather,
            "create",
            "",
            "namespaces",
            Cluster,
            "create the namespace",
        ),
        a(
            Gather,
            "list",
            "",
            "persistentvolumeclaims",
            Namespace,
            "stuck storage",
        ),
        a(
            Gather,
            "list",
            "",
            "persistentvolumes",
            Cluster,
            "stuck storage",
        ),
        a(
            Gather,
            "list",
            "",
            "pods",
            Namespace,
            "which pod holds a claim",
        ),
        a(
            Lock,
            "get",
            "coordination.k8s.io",
            "leases",
            Namespace,
            "read the run lock",
        ),
        a(
            Lock,
            "create",
            "coordination.k8s.io",
            "leases",
            Namespace,
            "take the run lock",
        ),
        a(
            Lock,
            "update",
            "coordination.k8s.io",
            "leases",
            Namespace,
            "renew and release it",
        ),
        // helm's release records (HELM_DRIVER=secret): listed by label, read, written on every
        // status change, and pruned to --history-max.
        a(
            Helm,
            "list",
            "",
            "secrets",
            Namespace,
            "helm's release records",
        ),
        a(
            Helm,
            "get",
            "",
            "secrets",
            Namespace,
            "helm's release records",
        ),
        a(
            Helm,
            "create",
            "",
            "secrets",
            Namespace,
            "helm's release records",
        ),
        a(
            Helm,
            "update",
            "",
            "secrets",
            Namespace,
            "helm's release records",
        ),
        a(
            Helm,
            "delete",
            "",
            "secrets",
            Namespace,
            "helm's release history limit",
        ),
        // The chart's CRDs (crds/), created on first install.
        a(
            Helm,
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Cluster,
            "the chart's CRDs",
        ),
        a(
            Helm,
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Cluster,
            "the chart's CRDs",
        ),
        // helm never upgrades CRDs: older operator CRDs are brought to the chart's by
        // server-side apply before helm runs (crate::crds).
        a(
            Helm,
            "list",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Cluster,
            "the operator's CRDs already installed, and their versions",
        ),
        a(
            Helm,
            "patch",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Cluster,
            "older operator CRDs brought to the chart's (server-side apply)",
        ),
        a(
            Tls,
            "get",
            "",
            "secrets",
            Namespace,
            "the mutual-TLS Secret (cmm-prometheus-tls; central: cmm-ca, cmm-grafana-client, in push cmm-receiver-tls)",
        ),
        a(
            Tls,
            "create",
            "",
            "secrets",
            Namespace,
            "the mutual-TLS Secret, first issue",
        ),
        a(
            Tls,
            "update",
            "",
            "secrets",
            Namespace,
            "the mutual-TLS Secret, renewal",
        ),
        // The chart's ClusterRoles and Roles grant more than this table; the API server lets
        // only an identity holding those permissions, or `escalate`/`bind`, create them (RBAC's
        // escalation prevention, pkg/registry/rbac/escalation_check.go).
        a(
            Helm,
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            Cluster,
            "create the operator's ClusterRole",
        ),
        a(
            Helm,
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            Cluster,
            "bind the operator's ClusterRole",
        ),
        a(
            Helm,
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            Namespace,
            "create the chart's Roles",
        ),
        a(
            Helm,
            "bind",
            "rbac.authorization.k8s.io",
            "roles",
            Namespace,
            "bind the chart's Roles",
        ),
        // --wait: Deployments are judged by their newest ReplicaSet, and pods are read.
        a(
            Helm,
            "list",
            "apps",
            "replicasets",
            Namespace,
            "helm --wait",
        ),
        a(Helm, "list", "", "pods", Namespace, "helm --wait"),
        a(
            Wait,
            "list",
            "apps",
            "deployments",
            Namespace,
            "workload readiness",
        ),
        a(
            Wait,
            "list",
            "apps",
            "daemonsets",
            Namespace,
            "workload readiness",
        ),
        a(
            Wait,
            "list",
            "apps",
            "statefulsets",
            Namespace,
            "the operator-made Prometheus",
        ),
        a(
            Wait,
            "list",
            "",
            "events",
            Namespace,
            "explain a failed install",
        ),
    ];
    if role == Role::Cluster {
        // Hook Jobs are watched until they finish.
        t.push(a(
            Helm,
            "list",
            "batch",
            "jobs",
            Namespace,
            "helm waits for hook Jobs",
        ));
        t.push(a(
            Helm,
            "watch",
            "batch",
            "jobs",
            Namespace,
            "helm waits for hook Jobs",
        ));
        // Bootstrap ends with a registration.
        t.extend(register());
    }
    for (group, resource, scope) in rendered(role, kube_metrics, topology) {
        for verb in ["get", "create", "patch", "delete"] {
            t.push(a(
                Helm,
                verb,
                group,
                resource,
                scope,
                "an object the chart renders",
            ));
        }
    }
    t
}

/// What `register` does in the cluster (endpoint discovery only).
pub fn register() -> Vec<Access> {
    use Scope::*;
    use Step::Register;
    vec![
        a(
            Register,
            "list",
            "",
            "services",
            Namespace,
            "find the Prometheus endpoint",
        ),
        a(
            Register,
            "list",
            "networking.k8s.io",
            "ingresses",
            Namespace,
            "find the Prometheus endpoint",
        ),
        a(
            Register,
            "list",
            "",
            "nodes",
            Cluster,
            "node addresses for the NodePort",
        ),
    ]
}

/// What `fix-storage --yes` does.
pub fn fix_storage() -> Vec<Access> {
    use Scope::*;
    use Step::FixStorage;
    vec![
        a(
            FixStorage,
            "list",
            "",
            "persistentvolumeclaims",
            Namespace,
            "stuck claims",
        ),
        a(
            FixStorage,
            "get",
            "",
            "persistentvolumeclaims",
            Namespace,
            "wait for a claim to go",
        ),
        a(
            FixStorage,
            "list",
            "",
            "persistentvolumes",
            Cluster,
            "stuck volumes",
        ),
        a(
            FixStorage,
            "patch",
            "",
            "persistentvolumes",
            Cluster,
            "clear a released volume's finalizers",
        ),
        a(
            FixStorage,
            "list",
            "",
            "pods",
            Namespace,
            "which pod holds a claim",
        ),
    ]
}

/// What `check` reads for its snapshot (crate::health::gather and the endpoint discovery).
pub fn check() -> Vec<Access> {
    use Scope::*;
    use Step::Check;
    let mut t = vec![
        a(
            Check,
            "list",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Cluster,
            "the operator's CRDs are not older than the chart's",
        ),
        a(
            Check,
            "get",
            "",
            "namespaces",
            Cluster,
            "the release namespace exists",
        ),
        a(
            Check,
            "list",
            "",
            "nodes",
            Cluster,
            "node-exporter on every schedulable node",
        ),
        a(
            Check,
            "list",
            "",
            "secrets",
            Namespace,
            "helm's release records (labels only)",
        ),
        a(
            Check,
            "list",
            "apps",
            "deployments",
            Namespace,
            "the operator",
        ),
        a(
            Check,
            "list",
            "apps",
            "daemonsets",
            Namespace,
            "node-exporter",
        ),
        a(
            Check,
            "list",
            "apps",
            "statefulsets",
            Namespace,
            "the operator-made Prometheus",
        ),
        a(
            Check,
            "list",
            "",
            "pods",
            Namespace,
            "why a workload is not ready",
        ),
        a(
            Check,
            "list",
            "",
            "persistentvolumeclaims",
            Namespace,
            "storage stuck in Terminating",
        ),
        a(
            Check,
            "list",
            "",
            "persistentvolumes",
            Cluster,
            "storage stuck in Terminating",
        ),
        a(
            Check,
            "get",
            "",
            "secrets",
            Namespace,
            "the mutual-TLS Secret: days to expiry, the self-scrape identity for probes",
        ),
        a(
            Check,
            "delete",
            "",
            "pods",
            Namespace,
            "repair, thanos: restart a Prometheus pod whose sidecar holds an old certificate",
        ),
    ];
    t.extend(register());
    t
}

/// What `check --role central` reads (crate::health::gather for the release, the central
/// Secrets, crate::consumers) and what its `--repair` writes besides the Tls and Lock entries
/// bootstrap's table already holds: the restart of what reads the certificates at start.
pub fn check_central() -> Vec<Access> {
    use Scope::*;
    use Step::Check;
    vec![
        a(
            Check,
            "get",
            "",
            "namespaces",
            Cluster,
            "the release namespace exists",
        ),
        a(
            Check,
            "list",
            "",
            "nodes",
            Cluster,
            "the environment the plan digest depends on",
        ),
        a(
            Check,
            "list",
            "",
            "secrets",
            Namespace,
            "helm's release records, the admin login",
        ),
        a(
            Check,
            "get",
            "",
            "secrets",
            Namespace,
            "the CMM CA and Grafana's client certificate",
        ),
        a(
            Check,
            "list",
            "apps",
            "deployments",
            Namespace,
            "when Grafana (and Thanos Query) last started",
        ),
        a(
            Check,
            "patch",
            "apps",
            "deployments",
            Namespace,
            "repair: restart what reads the certificates only at start",
        ),
    ]
}

/// Everything the agent of a role may do on its cluster: what `cmm-agent rbac` grants.
pub fn everything(role: Role, kube_metrics: bool) -> Vec<Access> {
    everything_in(role, kube_metrics, Topology::Pull)
}

/// [`everything`] in `topology`.
pub fn everything_in(role: Role, kube_metrics: bool, topology: Topology) -> Vec<Access> {
    let mut t = bootstrap_in(role, kube_metrics, topology);
    t.extend(fix_storage());
    match role {
        Role::Cluster => t.extend(check()),
        Role::Central => t.extend(check_central()),
    }
    t
}

/// The distinct permissions of a table, in first-seen order, for `namespace`.
pub fn permissions(table: &[Access], namespace: &str) -> Vec<Permission> {
    let mut out: Vec<Permission> = Vec::new();
    for e in table {
        let p = Permission {
            verb: e.verb,
            group: e.group,
            resource: e.resource,
            namespace: match e.scope {
                Scope::Namespace => Some(namespace.to_owned()),
                Scope::KubeSystem => Some("kube-system".to_owned()),
                Scope::Cluster => None,
            },
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Who the printed bindings grant to (`User:alice`, `Group:cmm-agents`,
/// `ServiceAccount:NAMESPACE:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl Subject {
    pub fn parse(raw: &str) -> Option<Self> {
        let (kind, rest) = raw.split_once(':')?;
        let ok = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
        match kind {
            "User" if ok(rest) => Some(Subject::User(rest.to_owned())),
            "Group" if ok(rest) => Some(Subject::Group(rest.to_owned())),
            "ServiceAccount" => {
                let (ns, name) = rest.split_once(':')?;
                (ok(ns) && ok(name)).then(|| Subject::ServiceAccount {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => None,
        }
    }

    fn json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Subject::User(n) => {
                json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": n})
            }
            Subject::Group(n) => {
                json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": n})
            }
            Subject::ServiceAccount { namespace, name } => {
                json!({"kind": "ServiceAccount", "namespace": namespace, "name": name})
            }
        }
    }
}

/// RBAC rules for the entries of `table` in one scope: one rule per (group, resource), verbs
/// sorted, so the printed role is stable.
fn rules(table: &[Access], scope: Scope) -> Vec<serde_json::Value> {
    let mut by: std::collections::BTreeMap<(&str, &str), std::collections::BTreeSet<&str>> =
        Default::default();
    for e in table.iter().filter(|e| e.scope == scope) {
        by.entry((e.group, e.resource)).or_default().insert(e.verb);
    }
    by.into_iter()
        .map(|((group, resource), verbs)| {
            serde_json::json!({"apiGroups": [group], "resources": [resource],
                               "verbs": verbs.into_iter().collect::<Vec<_>>()})
        })
        .collect()
}

/// The ClusterRole, Role(s) and bindings that hold exactly what the agent of `role` does in
/// its cluster ([`everything`]): least privilege instead of cluster-admin.
pub fn rbac_manifests(
    role: Role,
    namespace: &str,
    kube_metrics: bool,
    topology: Topology,
    subject: &Subject,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let table = everything_in(role, kube_metrics, topology);
    let name = match role {
        Role::Cluster => "cmm-agent-cluster",
        Role::Central => "cmm-agent-central",
    };
    let labels =
        json!({"app.kubernetes.io/managed-by": "cmm-agent", "app.kubernetes.io/part-of": "cmm"});
    let rbac = "rbac.authorization.k8s.io/v1";
    let mut out = vec![
        json!({"apiVersion": rbac, "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "rules": rules(&table, Scope::Cluster)}),
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
               "metadata": {"name": name, "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [subject.json()]}),
    ];
    let mut namespaced = vec![(namespace.to_owned(), Scope::Namespace)];
    if kube_metrics && namespace != "kube-system" {
        namespaced.push(("kube-system".to_owned(), Scope::KubeSystem));
    }
    for (ns, scope) in namespaced {
        out.push(json!({"apiVersion": rbac, "kind": "Role",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "rules": rules(&table, scope)}));
        out.push(json!({"apiVersion": rbac, "kind": "RoleBinding",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                        "subjects": [subject.json()]}));
    }
    out
}

/// On the central cluster: what every cluster's agent needs there and nothing more — `get` on
/// the two Secrets of the CMM CA and Grafana's client certificate (crate::tls), by name.
/// In topology thanos also `get` and `patch` on the store-endpoints ConfigMap, by name: a
/// merge patch of the agent's own key (crate::topology).
pub fn ca_reader_manifests(
    namespace: &str,
    topology: Topology,
    subject: &Subject,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let name = "cmm-agent-ca-reader";
    let labels =
        json!({"app.kubernetes.io/managed-by": "cmm-agent", "app.kubernetes.io/part-of": "cmm"});
    let rbac = "rbac.authorization.k8s.io/v1";
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                                "resourceNames": [cmm_core::naming::CA_SECRET, cmm_core::naming::GRAFANA_CLIENT_SECRET]}),
    ];
    if topology == Topology::Thanos {
        rules.push(
            json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
                          "resourceNames": [crate::topology::THANOS_ENDPOINTS_CONFIGMAP]}),
        );
    }
    vec![
        json!({"apiVersion": rbac, "kind": "Role",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "rules": rules}),
        json!({"apiVersion": rbac, "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [subject.json()]}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_readers_get_two_named_secrets_and_nothing_else() {
        let subject = Subject::parse("Group:cmm-cluster-agents").unwrap();
        let m = ca_reader_manifests("monitor", Topology::Pull, &subject);
        let rules = m[0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["verbs"], serde_json::json!(["get"]));
        assert_eq!(
            rules[0]["resourceNames"],
            serde_json::json!(["cmm-ca", "cmm-grafana-client"])
        );
        assert_eq!(m[1]["subjects"][0]["name"], "cmm-cluster-agents");
        // Thanos: also the endpoints ConfigMap, by name, to read and merge-patch its own key.
        let m = ca_reader_manifests("monitor", Topology::Thanos, &subject);
        let rules = m[0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1]["verbs"], serde_json::json!(["get", "patch"]));
        assert_eq!(
            rules[1]["resourceNames"],
            serde_json::json!(["cmm-thanos-endpoints"])
        );
    }

    #[test]
    fn every_rendered_kind_can_be_read_created_patched_and_deleted() {
        for role in [Role::Cluster, Role::Central] {
            let t = bootstrap(role, true);
            for (group, resource, scope) in rendered(role, true, Topology::Pull) {
                for verb in ["get", "create", "patch", "delete"] {
                    assert!(
                        t.iter().any(|e| e.verb == verb
                            && e.group == group
                            && e.resource == resource
                            && e.scope == scope),
                        "{role:?}: {verb} {resource}"
                    );
                }
            }
        }
    }

    #[test]
    fn permissions_are_distinct_and_scoped() {
        let perms = permissions(&bootstrap(Role::Cluster, true), "monitor");
        let mut seen = std::collections::HashSet::new();
        for p in &perms {
            assert!(seen.insert(p.describe()), "duplicate {}", p.describe());
        }
        let d: Vec<String> = perms.iter().map(Permission::describe).collect();
        for needed in [
            "update secrets in namespace monitor",
            "watch jobs.batch in namespace monitor",
            "list replicasets.apps in namespace monitor",
            "update leases.coordination.k8s.io in namespace monitor",
            "create services in namespace kube-system",
            "escalate clusterroles.rbac.authorization.k8s.io (cluster-wide)",
            "list ingresses.networking.k8s.io in namespace monitor",
        ] {
            assert!(d.iter().any(|x| x == needed), "missing {needed}");
        }
        let central: Vec<String> = permissions(&bootstrap(Role::Central, false), "monitor")
            .iter()
            .map(Permission::describe)
            .collect();
        assert!(central.contains(&"create persistentvolumeclaims in namespace monitor".to_owned()));
        assert!(!central.iter().any(|x| x.contains("prometheuses")));
    }

    #[test]
    fn the_printed_roles_hold_exactly_the_table() {
        let subject = Subject::parse("Group:cmm-agents").unwrap();
        let m = rbac_manifests(Role::Cluster, "monitor", true, Topology::Pull, &subject);
        let kinds: Vec<&str> = m.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Role",
                "RoleBinding"
            ]
        );
        // Every (verb, resource, scope) of the table is granted, and nothing else.
        let table = everything(Role::Cluster, true);
        let mut granted = 0;
        for (obj, scope) in [
            (&m[0], Scope::Cluster),
            (&m[2], Scope::Namespace),
            (&m[4], Scope::KubeSystem),
        ] {
            for rule in obj["rules"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    granted += 1;
                    assert!(
                        table.iter().any(|e| e.scope == scope
                            && rule["apiGroups"][0] == e.group
                            && rule["resources"][0] == e.resource
                            && *verb == e.verb),
                        "{rule} grants more than the table"
                    );
                }
            }
        }
        let distinct: std::collections::HashSet<_> = table
            .iter()
            .map(|e| (e.scope, e.group, e.resource, e.verb))
            .collect();
        assert_eq!(granted, distinct.len());
        assert_eq!(
            Subject::parse("ServiceAccount:ci:deployer"),
            Some(Subject::ServiceAccount {
                namespace: "ci".into(),
                name: "deployer".into()
            })
        );
        for bad in ["alice", "Robot:x", "User:", "ServiceAccount:ci"] {
            assert_eq!(Subject::parse(bad), None, "{bad}");
        }
    }
}
