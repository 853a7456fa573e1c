//! Volumes stuck in Terminating after a monitoring namespace was torn down, and the seed's way
//! out: delete the claim first; clear a volume's finalizers only once no claim uses it. PVs are
//! cluster-wide but their claims live in the release namespace, so a PV is in scope when its
//! `claimRef` points into that namespace.
//!
//! Pure: `plan` decides from listed objects; the caller carries the actions out and re-reads
//! before clearing any finalizer (a claim may outlive its delete while a pod still mounts it).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum StorageAction {
    /// `kubectl delete pvc NAME -n NS`: lets the PVC-protection controller finish it once no
    /// pod mounts it.
    DeleteClaim { namespace: String, name: String },
    /// `kubectl patch pv NAME -p '{"metadata":{"finalizers":null}}'`, only after the claim is
    /// gone. `after_claim` names the claim that must be gone first, if any.
    ClearVolumeFinalizers {
        name: String,
        finalizers: Vec<String>,
        after_claim: Option<String>,
    },
}

/// Something stuck that CMM leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub object: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoragePlan {
    pub actions: Vec<StorageAction>,
    pub skipped: Vec<Skipped>,
}

impl StoragePlan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.skipped.is_empty()
    }
}

fn terminating<T: Metadata<Ty = ObjectMeta>>(o: &T) -> bool {
    o.metadata().deletion_timestamp.is_some()
}

fn finalizers<T: Metadata<Ty = ObjectMeta>>(o: &T) -> Vec<String> {
    o.metadata().finalizers.clone().unwrap_or_default()
}

/// Pods of `namespace` that mount claim `name`.
fn pods_using<'a>(pods: &'a [Pod], namespace: &str, claim: &str) -> Vec<&'a str> {
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.volumes.iter().flatten().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim)
                })
            })
        })
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

/// Decide what to do about stuck storage of `namespace`.
pub fn plan(
    namespace: &str,
    claims: &[PersistentVolumeClaim],
    volumes: &[PersistentVolume],
    pods: &[Pod],
) -> StoragePlan {
    let mut out = StoragePlan::default();
    let claim = |name: &str| {
        claims.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(name)
        })
    };

    for c in claims
        .iter()
        .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
        .filter(|c| terminating(*c))
    {
        let name = c.metadata.name.clone().unwrap_or_default();
        let users = pods_using(pods, namespace, &name);
        if !users.is_empty() {
            out.skipped.push(Skipped {
                object: format!("persistentvolumeclaim/{name}"),
                reason: format!(
                    "still mounted by pod(s) {}: it finishes deleting when they are gone; CMM does not delete pods",
                    users.join(", ")
                ),
            });
            continue;
        }
        out.actions.push(StorageAction::DeleteClaim {
            namespace: namespace.to_owned(),
            name,
        });
    }

    for v in volumes.iter().filter(|v| terminating(*v)) {
        let name = v.metadata.name.clone().unwrap_or_default();
        let Some(cref) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        if cref.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let fins = finalizers(v);
        if fins.is_empty() {
            continue;
        }
        let claim_name = cref.name.clone().unwrap_or_default();
        // A claim with another uid is a new claim that reused the name; it does not hold this PV.
        let holder = claim(&claim_name).filter(|c| {
            cref.uid.is_none() || c.metadata.uid.is_none() || c.metadata.uid == cref.uid
        });
        match holder {
            None => out.actions.push(StorageAction::ClearVolumeFinalizers {
                name,
                finalizers: fins,
                after_claim: None,
            }),
            Some(c) if !terminating(c) => out.skipped.push(Skipped {
                object: format!("persistentvolume/{name}"),
                reason: format!(
                    "bound to live claim {namespace}/{claim_name}: CMM never touches a volume a claim still uses"
                ),
            }),
            Some(_) => {
                let queued = out.actions.iter().any(|a| {
                    matches!(a, StorageAction::DeleteClaim { name, .. } if *name == claim_name)
                });
                if queued {
                    out.actions.push(StorageAction::ClearVolumeFinalizers {
                        name,
                        finalizers: fins,
                        after_claim: Some(claim_name),
                    });
                } else {
                    out.skipped.push(Skipped {
                        object: format!("persistentvolume/{name}"),
                        reason: format!(
                            "its claim {namespace}/{claim_name} is still mounted; free the claim first"
                        ),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(name: &str, terminating: bool) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name, "namespace": "monitor", "uid": format!("uid-{name}"),
                "finalizers": ["kubernetes.io/pvc-protection"],
                "deletionTimestamp": if terminating { json!("2026-01-01T00:00:00Z") } else { json!(null) },
            },
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": format!("pv-{name}"),
                     "resources": {"requests": {"storage": "50Gi"}}},
            "status": {"phase": "Bound"}
        }))
        .unwrap()
    }

    fn pv(name: &str, claim: &str, ns: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "deletionTimestamp": "2026-01-01T00:00:00Z",
                         "finalizers": ["kubernetes.io/pv-protection", "external-provisioner.volume.kubernetes.io/finalizer"]},
            "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteOnce"],
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": format!("uid-{claim}")},
                     "persistentVolumeReclaimPolicy": "Delete"},
            "status": {"phase": "Released"}
        }))
        .unwrap()
    }

    fn pod_mounting(claim: &str) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "prometheus-cmm-0", "namespace": "monitor"},
            "spec": {"containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}],
                     "volumes": [{"name": "db", "persistentVolumeClaim": {"claimName": claim}}]}
        }))
        .unwrap()
    }

    #[test]
    fn claim_first_then_the_volume_it_held() {
        let p = plan(
            "monitor",
            &[pvc("db", true)],
            &[pv("pv-db", "db", "monitor")],
            &[],
        );
        assert_eq!(
            p.actions,
            [
                StorageAction::DeleteClaim {
                    namespace: "monitor".into(),
                    name: "db".into()
                },
                StorageAction::ClearVolumeFinalizers {
                    name: "pv-db".into(),
                    finalizers: vec![
                        "kubernetes.io/pv-protection".into(),
                        "external-provisioner.volume.kubernetes.io/finalizer".into()
                    ],
                    after_claim: Some("db".into()),
                }
            ]
        );
    }

    #[test]
    fn a_volume_with_a_live_claim_is_never_touched() {
        let p = plan(
            "monitor",
            &[pvc("db", false)],
            &[pv("pv-db", "db", "monitor")],
            &[],
        );
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.skipped[0].reason.contains("live claim"), "{p:?}");
    }

    #[test]
    fn a_mounted_claim_is_left_and_the_pod_named() {
        let p = plan(
            "monitor",
            &[pvc("db", true)],
            &[pv("pv-db", "db", "monitor")],
            &[pod_mounting("db")],
        );
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.skipped[0].reason.contains("prometheus-cmm-0"), "{p:?}");
    }

    #[test]
    fn orphaned_volumes_of_the_namespace_only() {
        let p = plan(
            "monitor",
            &[],
            &[pv("pv-a", "gone", "monitor"), pv("pv-b", "gone", "team-x")],
            &[],
        );
        assert_eq!(p.actions.len(), 1);
        assert!(
            matches!(&p.actions[0], StorageAction::ClearVolumeFinalizers { name, after_claim: None, .. } if name == "pv-a")
        );
    }
}
