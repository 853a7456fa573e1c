//! Kubernetes objects of a cluster CMM installed, as helm and the operator leave them, for the
//! check tests and the check benchmark to start from.

use serde_json::{json, Value};

use crate::kube::FakeKube;

/// A monitored cluster as the operator and helm leave it: release record, operator, the
/// operator-made Prometheus, node-exporter on its one node, the NodePort Service.
pub async fn installed_cluster(nodeport: u16) -> FakeKube {
    let kube = FakeKube::start().await;
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    kube.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-prometheus", "namespace": "monitor"},
        "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090, "nodePort": nodeport}]}}));
    kube.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cmm-operator", "namespace": "monitor",
                     "labels": {"chart": "kube-prometheus-stack-66.1.0"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "op"}},
                 "template": {"metadata": {"labels": {"app": "op"}}, "spec": {"containers": [{"name": "op", "image": "op"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1}}));
    kube.insert(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "prometheus-cmm", "namespace": "monitor",
                     "labels": {"operator.prometheus.io/name": "cmm"}},
        "spec": {"replicas": 1, "serviceName": "prometheus-operated",
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "prometheus"}},
                              "spec": {"containers": [{"name": "prometheus", "image": "prometheus"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1}}));
    kube.insert(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "cmm-node-exporter", "namespace": "monitor"},
        "spec": {"selector": {"matchLabels": {"app": "ne"}},
                 "template": {"metadata": {"labels": {"app": "ne"}},
                              "spec": {"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                                       "containers": [{"name": "node-exporter", "image": "ne"}]}}},
        "status": {"desiredNumberScheduled": 1, "numberReady": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0}}));
    kube.insert(node("n1", &[]));
    kube.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cmm-node-exporter-n1", "namespace": "monitor",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "cmm-node-exporter", "uid": "u1"}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "node-exporter", "image": "ne"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
    kube
}

pub fn node(name: &str, taints: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.0", "containerRuntimeVersion": "containerd://1.7.0",
                                "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                                "operatingSystem": "linux", "architecture": "amd64"}}})
}

/// [`installed_cluster`] whose deployed release carries another plan than the one check
/// expects: a degraded check (`release.plan-drift`) with every other stage working, what the
/// systemd and package tests run the unit against.
pub async fn drifted_cluster(nodeport: u16) -> FakeKube {
    let kube = installed_cluster(nodeport).await;
    kube.insert(release(1, "deployed", "a-plan-of-another-day"));
    kube
}

pub fn release(version: u32, status: &str, plan: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": format!("sh.helm.release.v1.kr-mum.v{version}"), "namespace": "monitor",
                     "labels": {"name": "kr-mum", "owner": "helm", "status": status,
                                "version": version.to_string(), "modifiedAt": "1700000000", "cmm-plan": plan}},
        "data": {"release": "SDRzSUFBQUFBQUFBLzZxdUJRUUFBUC8vbzB4dXRnQUFBQT09"}})
}
