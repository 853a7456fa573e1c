//! `check`, the cluster's side: one snapshot of the namespace (the reads `access::check`
//! lists), judged by pure functions into findings for the stages helm release, workloads and
//! storage.

use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_core::naming::{
    NODE_EXPORTER_DAEMONSET, OPERATOR_DEPLOYMENT, OPERATOR_PROMETHEUS_NAME_LABEL, PROMETHEUS_CR,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::kube::Connected;
use crate::release::{revisions, Revision};
use crate::storage::{StorageAction, StoragePlan};
use crate::workloads::OperatorPrometheus;
use crate::Result;

/// Everything the cluster stages judge, read once.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub namespace: String,
    pub release: String,
    pub namespace_exists: bool,
    pub revisions: Vec<Revision>,
    pub deployments: Vec<Deployment>,
    pub daemonsets: Vec<DaemonSet>,
    /// The StatefulSets the operator made for CMM's Prometheus.
    pub prometheus: Vec<StatefulSet>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub storage: StoragePlan,
}

/// What the cluster should run: from the same settings bootstrap plans with.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The digest bootstrap would store (`cmm-plan`); `None` when it could not be computed.
    pub plan_digest: Option<String>,
    pub chart_version: String,
}

/// Read the snapshot: namespace, helm's release records (labels only), the workloads, their
/// pods, the nodes and stuck storage.
pub async fn gather(conn: &Connected, namespace: &str, release: &str) -> Result<ClusterSnapshot> {
    let mut snap = ClusterSnapshot {
        namespace: namespace.to_owned(),
        release: release.to_owned(),
        ..Default::default()
    };
    snap.namespace_exists = conn.namespace(namespace).await?.is_some();
    snap.nodes = conn.nodes().await?;
    if !snap.namespace_exists {
        return Ok(snap);
    }
    let secrets = conn.release_secrets(namespace, release).await?;
    snap.revisions = revisions(&secrets, release);
    let selector = format!("{OPERATOR_PROMETHEUS_NAME_LABEL}={PROMETHEUS_CR}");
    let (deployments, daemonsets, prometheus, pods, storage) = tokio::try_join!(
        conn.list_in::<Deployment>(namespace),
        conn.list_in::<DaemonSet>(namespace),
        conn.list_labeled::<StatefulSet>(namespace, &selector),
        conn.list_in::<Pod>(namespace),
        conn.stuck_storage(namespace),
    )?;
    snap.deployments = deployments;
    snap.daemonsets = daemonsets;
    snap.prometheus = prometheus;
    snap.pods = pods;
    snap.storage = storage;
    Ok(snap)
}

/// Findings of the release, workload and storage stages.
pub fn judge(s: &ClusterSnapshot, expected: &Expected) -> Vec<Finding> {
    let mut out = judge_release(s, expected);
    let installed = out.iter().all(|f| f.id != "release.missing");
    if installed {
        out.extend(judge_workloads(s));
    } else {
        out.push(
            Finding::skipped(
                Stage::Workloads,
                "workloads",
                format!("namespace {}", s.namespace),
            )
            .with("nothing to judge: the release is not installed"),
        );
    }
    out.extend(judge_storage(s));
    out
}

pub fn judge_release(s: &ClusterSnapshot, expected: &Expected) -> Vec<Finding> {
    let subject = format!("helm release {}/{}", s.namespace, s.release);
    let reinstall = format!(
        "install it: `cmm-agent bootstrap --cluster {}` (or `check --reinstall`)",
        s.release
    );
    let Some(latest) = s.revisions.last() else {
        let why = if s.namespace_exists {
            format!(
                "no helm release records of {} in namespace {}",
                s.release, s.namespace
            )
        } else {
            format!("namespace {} does not exist", s.namespace)
        };
        return vec![Finding::failed(Stage::Release, "release.missing", subject)
            .with(why)
            .repair(RepairKind::Reinstall, reinstall)];
    };
    let rev = format!("revision {} is {}", latest.version, latest.status);
    let mut out = Vec::new();
    match latest.status.as_str() {
        "deployed" => {
            let f = match (&latest.plan, &expected.plan_digest) {
                (Some(have), Some(want)) if have == want => {
                    Finding::ok(Stage::Release, "release.deployed", &subject)
                        .with(format!("{rev}, from the plan these settings make ({want})"))
                }
                (Some(have), Some(want)) => {
                    Finding::warn(Stage::Release, "release.plan-drift", &subject)
                        .with(format!("{rev} from plan {have}; these settings plan {want}"))
                        .with("the chart, values or --set changed since the last bootstrap")
                        .repair(RepairKind::Reinstall, "apply the current plan: `cmm-agent check --reinstall` or `cmm-agent bootstrap`")
                }
                (None, _) => Finding::warn(Stage::Release, "release.plan-unknown", &subject)
                    .with(format!("{rev} without a cmm-plan label: installed by plain helm (or helm < 3.13)"))
                    .repair(RepairKind::Reinstall, "let cmm-agent own it: `cmm-agent bootstrap` (changes nothing if the values are the same)"),
                (Some(_), None) => Finding::ok(Stage::Release, "release.deployed", &subject)
                    .with(format!("{rev} (the expected plan could not be computed here)")),
            };
            out.push(f);
        }
        "pending-install" | "pending-upgrade" | "pending-rollback" => {
            let good = s
                .revisions
                .iter()
                .rev()
                .skip(1)
                .find(|r| r.status == "deployed" || r.status == "superseded");
            let f = Finding::failed(Stage::Release, "release.pending", &subject).with(format!(
                "{rev}: a helm run was interrupted, or is still running"
            ));
            out.push(match good {
                Some(g) => f.repair(
                    RepairKind::RecoverRelease,
                    format!(
                        "roll back to revision {} under the run lock (`helm rollback {} {}`)",
                        g.version, s.release, g.version
                    ),
                ),
                None => f
                    .with("no earlier revision ever worked")
                    .repair(RepairKind::Reinstall, reinstall),
            });
        }
        other => out.push(
            Finding::failed(Stage::Release, "release.failed", &subject)
                .with(rev.clone())
                .with(if other == "failed" {
                    "the last helm upgrade failed; its pods and events say why".to_owned()
                } else {
                    format!("status {other} is not deployed")
                })
                .repair(RepairKind::Reinstall, reinstall),
        ),
    }
    // The chart version the workloads run, from the operator Deployment's `chart` label.
    let want = format!("kube-prometheus-stack-{}", expected.chart_version);
    if let Some(have) = operator(s).and_then(|d| d.metadata.labels.as_ref()?.get("chart").cloned())
    {
        out.push(if have == want {
            Finding::ok(
                Stage::Release,
                "release.chart",
                format!("Deployment {}/{OPERATOR_DEPLOYMENT}", s.namespace),
            )
            .with(format!("chart {have}"))
        } else {
            Finding::warn(
                Stage::Release,
                "release.chart",
                format!("Deployment {}/{OPERATOR_DEPLOYMENT}", s.namespace),
            )
            .with(format!(
                "runs chart {have}; CMM's values are made for {want}"
            ))
            .repair(
                RepairKind::Reinstall,
                "upgrade to the chart CMM targets: `cmm-agent check --reinstall`",
            )
        });
    }
    out
}

fn operator(s: &ClusterSnapshot) -> Option<&Deployment> {
    s.deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(OPERATOR_DEPLOYMENT))
}

pub fn judge_workloads(s: &ClusterSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    let ns = &s.namespace;
    out.push(match operator(s) {
        None => Finding::failed(
            Stage::Workloads,
            "workloads.operator",
            format!("Deployment {ns}/{OPERATOR_DEPLOYMENT}"),
        )
        .with("missing")
        .repair(
            RepairKind::Reinstall,
            "reinstall: `cmm-agent check --reinstall`",
        ),
        Some(d) => {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let have = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let f = if have >= want {
                Finding::ok
            } else {
                Finding::failed
            };
            f(
                Stage::Workloads,
                "workloads.operator",
                format!("Deployment {ns}/{OPERATOR_DEPLOYMENT}"),
            )
            .with(format!("{have}/{want} ready"))
        }
    });
    let prom = OperatorPrometheus::judge(&s.prometheus);
    let subject =
        format!("Prometheus {ns}/{PROMETHEUS_CR} (StatefulSet prometheus-{PROMETHEUS_CR})");
    out.push(
        match &prom {
            OperatorPrometheus::Ready { .. } => {
                Finding::ok(Stage::Workloads, "workloads.prometheus", subject)
            }
            _ => Finding::failed(Stage::Workloads, "workloads.prometheus", subject),
        }
        .with(prom.describe()),
    );
    out.push(judge_node_exporter(s));
    // Why a not-ready pod is not ready, in the pods' own words.
    let waiting: Vec<String> = crate::workloads::explain(&s.pods, &[]);
    if !waiting.is_empty()
        && out
            .iter()
            .any(|f| f.severity == cmm_core::finding::Severity::Failed)
    {
        if let Some(f) = out
            .iter_mut()
            .rfind(|f| f.severity == cmm_core::finding::Severity::Failed)
        {
            f.evidence.extend(waiting.into_iter().take(4));
        }
    }
    out
}

/// node-exporter on every schedulable node; the nodes it misses and why.
pub fn judge_node_exporter(s: &ClusterSnapshot) -> Finding {
    let subject = format!("DaemonSet {}/{NODE_EXPORTER_DAEMONSET}", s.namespace);
    let Some(ds) = s
        .daemonsets
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(NODE_EXPORTER_DAEMONSET))
    else {
        return Finding::failed(Stage::Workloads, "workloads.node-exporter", subject)
            .with("missing: no node is measured")
            .repair(
                RepairKind::Reinstall,
                "reinstall: `cmm-agent check --reinstall`",
            );
    };
    let tolerations = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let pods: Vec<&Pod> = s
        .pods
        .iter()
        .filter(|p| {
            p.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter()
                    .any(|r| r.kind == "DaemonSet" && r.name == NODE_EXPORTER_DAEMONSET)
            })
        })
        .collect();
    let schedulable: Vec<&Node> = s
        .nodes
        .iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .collect();
    let mut missing = Vec::new();
    for node in &schedulable {
        let name = node.metadata.name.as_deref().unwrap_or("<node>");
        let pod = pods
            .iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name));
        match pod {
            Some(p) if pod_ready(p) => {}
            Some(p) => missing.push(format!(
                "{name}: pod {} not ready ({})",
                p.metadata.name.as_deref().unwrap_or(""),
                pod_reason(p)
            )),
            None => missing.push(format!(
                "{name}: no node-exporter pod ({})",
                node_reason(node, &tolerations)
            )),
        }
    }
    let counted = format!(
        "{}/{} schedulable node(s) measured",
        schedulable.len() - missing.len(),
        schedulable.len()
    );
    if missing.is_empty() {
        return Finding::ok(Stage::Workloads, "workloads.node-exporter", subject).with(counted);
    }
    let mut f = Finding::failed(Stage::Workloads, "workloads.node-exporter", subject).with(counted);
    f.evidence.extend(missing);
    f
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_reason(p: &Pod) -> String {
    let status = p.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "{}: {}{}",
                c.name,
                w.reason.as_deref().unwrap_or("waiting"),
                w.message
                    .as_deref()
                    .map(|m| format!(" — {}", cut(m)))
                    .unwrap_or_default()
            ))
        })
        .collect::<Vec<_>>();
    if !waiting.is_empty() {
        return waiting.join("; ");
    }
    status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "no status yet".into())
}

fn cut(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Why the DaemonSet has no pod on a node: a taint it does not tolerate, or the node's own
/// trouble (not Ready, memory/disk/PID pressure).
fn node_reason(node: &Node, tolerations: &[k8s_openapi::api::core::v1::Toleration]) -> String {
    let mut why = Vec::new();
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "True") => {}
            ("Ready", s) => why.push(format!("node Ready={s}")),
            ("MemoryPressure" | "DiskPressure" | "PIDPressure", "True") => {
                why.push(c.type_.clone())
            }
            _ => {}
        }
    }
    for t in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        // Toleration.ToleratesTaint (k8s.io/api/core/v1/toleration.go): an empty effect
        // matches every effect; an empty key with Exists matches every key; Equal (the
        // default operator) compares values.
        let tolerated = tolerations.iter().any(|tol| {
            let effect_ok = tol
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == t.effect);
            let key = tol.key.as_deref().unwrap_or("");
            let exists = tol.operator.as_deref() == Some("Exists");
            let key_ok = if key.is_empty() { exists } else { key == t.key };
            let value_ok =
                exists || tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("");
            effect_ok && key_ok && value_ok
        });
        if !tolerated {
            why.push(format!(
                "taint {}={}:{} not tolerated",
                t.key,
                t.value.as_deref().unwrap_or(""),
                t.effect
            ));
        }
    }
    if why.is_empty() {
        "not scheduled yet; see the DaemonSet's events".into()
    } else {
        why.join(", ")
    }
}

pub fn judge_storage(s: &ClusterSnapshot) -> Vec<Finding> {
    let subject = format!("claims and volumes of namespace {}", s.namespace);
    if s.storage.is_empty() {
        return vec![Finding::ok(Stage::Storage, "storage.terminating", subject)
            .with("nothing stuck in Terminating")];
    }
    let mut f = Finding::failed(Stage::Storage, "storage.terminating", subject);
    for a in &s.storage.actions {
        f.evidence.push(match a {
            StorageAction::AwaitClaim { namespace, name } => {
                format!("claim {namespace}/{name} is Terminating and no scheduled pod holds it")
            }
            StorageAction::ClearVolumeFinalizers {
                name,
                finalizers,
                risks,
                ..
            } => format!(
                "volume {name} is Terminating, held by finalizers {}{}",
                finalizers.join(", "),
                if risks.is_empty() {
                    String::new()
                } else {
                    " (clearing them has a risk: fix-storage says which)".into()
                }
            ),
        });
    }
    for sk in &s.storage.skipped {
        f.evidence
            .push(format!("{}: left alone, {}", sk.object, sk.reason));
    }
    let safe = safe_storage_actions(&s.storage);
    vec![if safe.is_empty() {
        f.repair(RepairKind::Manual, format!("`cmm-agent fix-storage --namespace {}` shows what it would do and the risks; act with --yes", s.namespace))
    } else {
        f.repair(RepairKind::FixStorage, format!("{} safe step(s) of fix-storage: wait out claims no pod holds, then clear volume finalizers that carry no CSI risk", safe.len()))
    }]
}

/// The part of a fix-storage plan `check --repair` may do unasked: every step but clearing a
/// finalizer whose removal risks leaving a disk attached or orphaned.
pub fn safe_storage_actions(plan: &StoragePlan) -> Vec<StorageAction> {
    plan.actions
        .iter()
        .filter(|a| match a {
            StorageAction::AwaitClaim { .. } => true,
            StorageAction::ClearVolumeFinalizers { risks, .. } => risks.is_empty(),
        })
        .cloned()
        .collect()
}
