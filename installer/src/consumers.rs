//! What on the central cluster reads CMM's TLS Secrets only when it starts, and whether each
//! started after the material last changed. Grafana takes its client certificate and the trust
//! bundle from environment variables (`values/central_monitor.yaml` `envValueFrom`, resolved by
//! the kubelet when the container starts); Thanos Query reads its client certificate and root
//! CAs from files once at start (Thanos v0.36.1 `pkg/tls/options.go`). Neither sees a renewal or
//! a CA rotation until it restarts, so a renewal without a restart would leave every cluster
//! dark once the old certificate expires. The nginx proxies are not listed: they reload when
//! the kubelet updates their mounted Secret (the reload loops in the values files).
//!
//! Gather (the Deployments), decide (pure: [`judge`]), act ([`restart`], then
//! [`wait_rolled_out`], one consumer at a time).

use std::time::{Duration, SystemTime};

use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_core::naming::{GRAFANA_DEPLOYMENT, THANOS_QUERY_DEPLOYMENT};
use k8s_openapi::api::apps::v1::Deployment;

use crate::kube::Connected;
use crate::topology::Wiring;
use crate::{Error, Result};

/// The annotation `kubectl rollout restart` sets on a pod template (kubectl's
/// `pkg/polymorphichelpers/objectrestarter.go`); CMM's restart sets the same, so a restart a
/// person made counts too.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The Deployments of the central release that read the TLS Secrets at start, in the order they
/// are restarted: Grafana first (it is what people look at), then what it reads through.
pub fn consumers(wiring: &Wiring) -> Vec<&'static str> {
    let mut out = vec![GRAFANA_DEPLOYMENT];
    if wiring.query_on_central() {
        out.push(THANOS_QUERY_DEPLOYMENT);
    }
    out
}

/// When a Deployment's pods last started from a fresh template: the later of its creation and
/// its last rollout restart.
pub fn last_start(d: &Deployment) -> Option<SystemTime> {
    let created = d
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| SystemTime::from(t.0));
    let restarted = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_AT))
        .and_then(|v| v.parse::<jiff::Timestamp>().ok())
        .map(SystemTime::from);
    created.max(restarted)
}

/// Pure: one finding per consumer. `changed`: when the material it reads last changed (the
/// newer of Grafana's client certificate and the signing CA, as issued).
pub fn judge(
    namespace: &str,
    found: &[(&str, Option<Deployment>)],
    changed: SystemTime,
) -> Vec<Finding> {
    found
        .iter()
        .map(|(name, d)| {
            let subject =
                format!("Deployment {namespace}/{name} (reads the client certificate at start)");
            let Some(d) = d else {
                return Finding::failed(Stage::Workloads, "tls.consumer", subject)
                    .with("missing: the central release does not run it")
                    .repair(
                        RepairKind::Reinstall,
                        "install the central release again: `cmm-agent bootstrap --role central`",
                    );
            };
            let (want, ready) = readiness(d);
            let ready_text = format!("{ready}/{want} ready");
            match last_start(d) {
                Some(t) if t >= changed => {
                    let f = if ready >= want {
                        Finding::ok(Stage::Workloads, "tls.consumer", subject)
                    } else {
                        Finding::failed(Stage::Workloads, "tls.consumer", subject)
                    };
                    f.with(format!(
                        "{ready_text}; started after the certificates last changed ({})",
                        stamp(changed)
                    ))
                }
                last => Finding::warn(Stage::Workloads, "tls.consumer", subject)
                    .with(format!(
                        "{ready_text}; last started {} — before the certificates changed ({}): it \
                         still presents or trusts the old ones",
                        last.map_or_else(|| "at an unknown time".into(), stamp),
                        stamp(changed)
                    ))
                    .repair(
                        RepairKind::Restart,
                        "restart it (`cmm-agent check --role central --repair` does, one \
                         Deployment at a time)",
                    ),
            }
        })
        .collect()
}

fn stamp(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|_| "?".into())
}

/// (wanted, ready) replicas.
fn readiness(d: &Deployment) -> (i32, i32) {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (want, ready)
}

/// Whether a Deployment's last change has rolled out: the controller has seen it
/// (`observedGeneration`), every replica runs the new template and is available, and no old
/// one is left (the conditions of kubectl's `rollout status`, `pkg/polymorphichelpers/
/// rollout_status.go`).
pub fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else { return false };
    let generation = d.metadata.generation.unwrap_or(0);
    st.observed_generation.unwrap_or(0) >= generation
        && st.updated_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= st.updated_replicas.unwrap_or(0)
        && st.available_replicas.unwrap_or(0) >= want
}

/// Read the consumers of `topology` in `namespace`.
pub async fn gather(
    conn: &Connected,
    namespace: &str,
    wiring: &Wiring,
) -> Result<Vec<(&'static str, Option<Deployment>)>> {
    let all: Vec<Deployment> = conn.list_in(namespace).await?;
    Ok(consumers(wiring)
        .into_iter()
        .map(|name| {
            let d = all
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(name))
                .cloned();
            (name, d)
        })
        .collect())
}

/// Restart a Deployment as `kubectl rollout restart` does: a new pod-template annotation, so the
/// Deployment controller rolls its pods by the Deployment's own strategy.
pub async fn restart(conn: &Connected, namespace: &str, name: &str, now: SystemTime) -> Result<()> {
    let at = jiff::Timestamp::try_from(now)
        .ok()
        .and_then(|t| t.round(jiff::Unit::Second).ok())
        .ok_or_else(|| Error::Tls {
            what: format!("restarting Deployment {namespace}/{name}"),
            problem: "the system clock is outside the range of a timestamp".into(),
        })?;
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at.to_string()}}}}
    });
    conn.patch_deployment(namespace, name, &patch).await
}

/// Poll until the Deployment has rolled out, at most `deadline`.
pub async fn wait_rolled_out(
    conn: &Connected,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    loop {
        let all: Vec<Deployment> = conn.list_in(namespace).await?;
        let d = all
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name));
        if d.is_some_and(rolled_out) {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            return Err(Error::NotReady {
                what: format!("Deployment {namespace}/{name}"),
                message: format!(
                    "its rollout did not finish within {}s: see `kubectl -n {namespace} rollout \
                     status deployment/{name}`",
                    deadline.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A cluster's Prometheus pods in thanos: the Thanos sidecar in each reads the cluster's
/// certificate, key and CAs (Secret cmm-prometheus-tls, thanos-sidecar.yaml's `grpcServerTlsConfig`)
/// once at start, like Query, so a renewal or a CA rotation reaches it only with a new pod.
pub fn stale_pods(pods: &[k8s_openapi::api::core::v1::Pod], changed: SystemTime) -> Vec<&str> {
    let mut out: Vec<&str> = pods
        .iter()
        .filter(|p| {
            let started = p
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| SystemTime::from(t.0));
            started.is_none_or(|t| t < changed)
        })
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    out.sort_unstable();
    out
}

/// Pure: the cluster's finding on its sidecars (thanos only).
pub fn judge_pods(namespace: &str, stale: &[&str], changed: SystemTime) -> Finding {
    let subject = format!(
        "Prometheus pods in {namespace} (the Thanos sidecar reads the certificate at start)"
    );
    if stale.is_empty() {
        return Finding::ok(Stage::Endpoint, "tls.consumer", subject).with(format!(
            "started after the certificate last changed ({})",
            stamp(changed)
        ));
    }
    Finding::warn(Stage::Endpoint, "tls.consumer", subject)
        .with(format!(
            "{} started before the certificate changed ({}): the sidecar still presents the old one",
            stale.join(", "),
            stamp(changed)
        ))
        .repair(
            RepairKind::Restart,
            "restart them (`cmm-agent check --repair` deletes one pod at a time; its StatefulSet \
             makes it again)",
        )
}

/// Restart pods of a StatefulSet one at a time: delete one, wait until its successor (same
/// name, a new uid) is Ready, then the next; at most `deadline` each. With two replicas the
/// cluster keeps one answering throughout.
pub async fn restart_pods(
    conn: &Connected,
    namespace: &str,
    names: &[&str],
    deadline: Duration,
) -> Result<Vec<String>> {
    use k8s_openapi::api::core::v1::Pod;
    let mut done = Vec::new();
    for name in names {
        let old_uid = conn
            .list_in::<Pod>(namespace)
            .await?
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(*name))
            .and_then(|p| p.metadata.uid);
        conn.delete_pod(namespace, name).await?;
        let start = tokio::time::Instant::now();
        loop {
            let pods: Vec<Pod> = conn.list_in(namespace).await?;
            let back = pods.iter().find(|p| {
                p.metadata.name.as_deref() == Some(*name)
                    && p.metadata.uid != old_uid
                    && p.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            });
            if back.is_some() {
                done.push(format!(
                    "pod {name}: restarted to read the current certificate, Ready"
                ));
                break;
            }
            if start.elapsed() >= deadline {
                return Err(Error::NotReady {
                    what: format!("pod {namespace}/{name}"),
                    message: format!(
                        "not Ready again within {}s after its restart: see `kubectl -n {namespace} \
                         describe pod {name}`",
                        deadline.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(created: &str, restarted: Option<&str>, ready: i32) -> Deployment {
        let mut ann = serde_json::Map::new();
        if let Some(r) = restarted {
            ann.insert(RESTARTED_AT.into(), json!(r));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "cmm-grafana", "creationTimestamp": created, "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "template": {"metadata": {"annotations": ann}}},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                       "readyReplicas": ready, "availableReplicas": ready}
        }))
        .unwrap()
    }

    fn at(s: &str) -> SystemTime {
        SystemTime::from(s.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn a_consumer_started_before_the_renewal_is_named_with_its_restart() {
        let changed = at("2026-06-01T00:00:00Z");
        let old = deployment("2026-01-01T00:00:00Z", None, 1);
        let restarted = deployment("2026-01-01T00:00:00Z", Some("2026-06-01T00:05:00Z"), 1);
        let fresh = deployment("2026-06-02T00:00:00Z", None, 1);
        let f = judge(
            "monitor",
            &[
                ("cmm-grafana", Some(old)),
                ("a", Some(restarted)),
                ("b", Some(fresh)),
            ],
            changed,
        );
        assert_eq!(f[0].severity, cmm_core::finding::Severity::Warning);
        assert!(f[0].evidence[0].contains("still presents or trusts the old ones"));
        assert_eq!(f[0].repair.as_ref().unwrap().kind, RepairKind::Restart);
        assert_eq!(f[1].severity, cmm_core::finding::Severity::Ok);
        assert_eq!(f[2].severity, cmm_core::finding::Severity::Ok);
        let missing = judge("monitor", &[("cmm-thanos-query", None)], changed);
        assert_eq!(missing[0].severity, cmm_core::finding::Severity::Failed);
    }

    #[test]
    fn a_rollout_is_done_only_when_the_controller_saw_it_and_every_replica_moved() {
        let mut d = deployment("2026-01-01T00:00:00Z", None, 1);
        assert!(rolled_out(&d));
        d.metadata.generation = Some(3);
        assert!(!rolled_out(&d), "the controller has not seen generation 3");
        let st = d.status.as_mut().unwrap();
        st.observed_generation = Some(3);
        st.replicas = Some(2);
        assert!(!rolled_out(&d), "an old pod is still there");
    }

    #[test]
    fn only_the_pods_started_before_the_renewal_are_restarted() {
        let pod = |name: &str, started: Option<&str>| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"startTime": started}}))
            .unwrap()
        };
        let pods = [
            pod("prometheus-cmm-1", Some("2026-01-01T00:00:00Z")),
            pod("prometheus-cmm-0", Some("2026-01-01T00:00:00Z")),
            pod("prometheus-cmm-2", Some("2026-07-01T00:00:00Z")),
            pod("prometheus-cmm-3", None),
        ];
        let changed = at("2026-06-01T00:00:00Z");
        let stale = stale_pods(&pods, changed);
        assert_eq!(
            stale,
            ["prometheus-cmm-0", "prometheus-cmm-1", "prometheus-cmm-3"]
        );
        let f = judge_pods("monitor", &stale, changed);
        assert_eq!(f.severity, cmm_core::finding::Severity::Warning);
        assert!(judge_pods("monitor", &[], changed).severity == cmm_core::finding::Severity::Ok);
    }

    #[test]
    fn thanos_restarts_query_after_grafana() {
        let wiring = |t: crate::topology::Topology| {
            let mut w = Wiring::pull();
            w.topology = t;
            w
        };
        assert_eq!(
            consumers(&wiring(crate::topology::Topology::Thanos)),
            vec![GRAFANA_DEPLOYMENT, THANOS_QUERY_DEPLOYMENT]
        );
        assert_eq!(
            consumers(&wiring(crate::topology::Topology::Push)),
            vec![GRAFANA_DEPLOYMENT]
        );
    }
}
