//! After an install: which workloads are ready, and, when they are not, the pod states and
//! warning events that explain why. Pure over listed objects.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
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

pub fn readiness(
    deployments: &[Deployment],
    daemonsets: &[DaemonSet],
    statefulsets: &[StatefulSet],
) -> Vec<Workload> {
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let mut out = Vec::new();
    for d in deployments {
        out.push(Workload {
            kind: "Deployment",
            name: name(&d.metadata),
            ready: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        });
    }
    for d in daemonsets {
        let s = d.status.clone().unwrap_or_default();
        out.push(Workload {
            kind: "DaemonSet",
            name: name(&d.metadata),
            ready: s.number_ready,
            desired: s.desired_number_scheduled,
        });
    }
    for d in statefulsets {
        out.push(Workload {
            kind: "StatefulSet",
            name: name(&d.metadata),
            ready: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        });
    }
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
        let w = readiness(&[], &[ds], &[]);
        assert_eq!((w[0].ready, w[0].desired, w[0].is_ready()), (2, 3, false));
    }
}
