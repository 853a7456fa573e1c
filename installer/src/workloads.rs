//! After an install: which workloads are ready, and, when they are not, the pod states and
//! warning events that explain why. Pure over listed objects.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: &'static str,
    pub name: String,
    pub ready: i32,
    pub desired: i32,
}

impl Workload {
    pub fn is_ready(&self) -> bool {
        self.ready >= self.desired
    }
}

/// The operator-made Prometheus, judged from the StatefulSets carrying its name label. helm's
/// `--wait` covers only what helm created; the operator makes these afterwards, so right after
/// an install there may be none yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum OperatorPrometheus {
    /// The operator has not made a StatefulSet yet (it may still be starting).
    NotCreated,
    /// Made, not every replica ready.
    Starting {
        ready: i32,
        desired: i32,
    },
    Ready {
        replicas: i32,
    },
}

impl OperatorPrometheus {
    pub fn judge(statefulsets: &[StatefulSet]) -> Self {
        if statefulsets.is_empty() {
            return OperatorPrometheus::NotCreated;
        }
        let (mut ready, mut desired) = (0, 0);
        for s in statefulsets {
            desired += s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            ready += s
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
        }
        if desired > 0 && ready >= desired {
            OperatorPrometheus::Ready { replicas: ready }
        } else {
            OperatorPrometheus::Starting { ready, desired }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            OperatorPrometheus::NotCreated => {
                "the operator has not created the Prometheus StatefulSet yet".into()
            }
            OperatorPrometheus::Starting { ready, desired } => {
                format!("Prometheus StatefulSet {ready}/{desired} ready")
            }
            OperatorPrometheus::Ready { replicas } => format!("Prometheus ready ({replicas})"),
        }
    }
}

pub fn readiness(
    deployments: &[Deployment],
    daemonsets: &[DaemonSet],
    statefulsets: &[StatefulSet],
) -> Vec<Workload> {
    // Deployments and StatefulSets count replicas the same way; an unset `replicas` means 1,
    // as the API server defaults it.
    let replicated = |kind, meta: &ObjectMeta, ready: Option<i32>, desired: Option<i32>| Workload {
        kind,
        name: meta.name.clone().unwrap_or_default(),
        ready: ready.unwrap_or(0),
        desired: desired.unwrap_or(1),
    };
    let mut out: Vec<Workload> = deployments
        .iter()
        .map(|d| {
            replicated(
                "Deployment",
                &d.metadata,
                d.status.as_ref().and_then(|s| s.ready_replicas),
                d.spec.as_ref().and_then(|s| s.replicas),
            )
        })
        .chain(statefulsets.iter().map(|d| {
            replicated(
                "StatefulSet",
                &d.metadata,
                d.status.as_ref().and_then(|s| s.ready_replicas),
                d.spec.as_ref().and_then(|s| s.replicas),
            )
        }))
        .chain(daemonsets.iter().map(|d| {
            let s = d.status.as_ref();
            Workload {
                kind: "DaemonSet",
                name: d.metadata.name.clone().unwrap_or_default(),
                ready: s.map_or(0, |s| s.number_ready),
                desired: s.map_or(0, |s| s.desired_number_scheduled),
            }
        }))
        .collect();
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

/// Lines explaining a failed install: pods that are not running/ready with their container
/// states, then the namespace's Warning events, newest last.
pub fn explain(pods: &[Pod], events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for p in pods {
        let name = p.metadata.name.as_deref().unwrap_or("<pod>");
        let Some(status) = &p.status else { continue };
        let phase = status.phase.as_deref().unwrap_or("Unknown");
        let mut problems = Vec::new();
        for cs in status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
        {
            if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                problems.push(format!(
                    "{}: waiting {} {}",
                    cs.name,
                    w.reason.as_deref().unwrap_or(""),
                    w.message.as_deref().unwrap_or("")
                ));
            } else if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
                if t.exit_code != 0 {
                    problems.push(format!(
                        "{}: terminated {} (exit {})",
                        cs.name,
                        t.reason.as_deref().unwrap_or(""),
                        t.exit_code
                    ));
                }
            } else if !cs.ready {
                problems.push(format!(
                    "{}: not ready (restarts {})",
                    cs.name, cs.restart_count
                ));
            }
        }
        if phase == "Pending" {
            for c in status.conditions.iter().flatten() {
                if c.status == "False" {
                    if let Some(m) = &c.message {
                        problems.push(format!("{}: {m}", c.type_));
                    }
                }
            }
        }
        if !problems.is_empty() || (phase != "Running" && phase != "Succeeded") {
            out.push(format!(
                "pod {name} {phase}: {}",
                problems
                    .iter()
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    let mut warnings: Vec<&Event> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    warnings.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    for e in warnings {
        out.push(format!(
            "event {}/{} {}: {}",
            e.involved_object.kind.as_deref().unwrap_or(""),
            e.involved_object.name.as_deref().unwrap_or(""),
            e.reason.as_deref().unwrap_or(""),
            e.message.as_deref().unwrap_or("").trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_crashing_node_exporter_is_explained_by_pod_state_and_event() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "cmm-node-exporter-x7k2p", "namespace": "monitor"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "node-exporter", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}}
            }]}
        }))
        .unwrap();
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "namespace": "monitor"},
            "involvedObject": {"kind": "Pod", "name": "cmm-node-exporter-x7k2p"},
            "type": "Warning", "reason": "Failed",
            "message": "Error: failed to start container: path / is mounted on / but it is not a shared or slave mount",
            "lastTimestamp": "2026-01-01T00:00:10Z"
        }))
        .unwrap();
        let lines = explain(&[pod], &[event]);
        assert!(lines[0].contains("CrashLoopBackOff"), "{lines:?}");
        assert!(
            lines[1].contains("not a shared or slave mount"),
            "{lines:?}"
        );
    }

    #[test]
    fn readiness_compares_ready_with_desired() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "cmm-node-exporter"},
            "status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 2}
        }))
        .unwrap();
        // No status yet and replicas left to the API server's default of 1.
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "prometheus-cmm"},
            "spec": {"selector": {}, "template": {}, "serviceName": "prometheus-operated"}
        }))
        .unwrap();
        let dep: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "cmm-operator"},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"readyReplicas": 2}
        }))
        .unwrap();
        let w = readiness(&[dep], &[ds], &[sts]);
        let seen: Vec<_> = w
            .iter()
            .map(|w| (w.kind, w.name.as_str(), w.ready, w.desired, w.is_ready()))
            .collect();
        assert_eq!(
            seen,
            [
                ("DaemonSet", "cmm-node-exporter", 2, 3, false),
                ("Deployment", "cmm-operator", 2, 2, true),
                ("StatefulSet", "prometheus-cmm", 0, 1, false),
            ]
        );
    }
}
