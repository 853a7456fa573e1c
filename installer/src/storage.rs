//! Volumes stuck in Terminating after a monitoring namespace was torn down, and the seed's way
//! out: the claim goes first; a volume's finalizers are cleared only once no claim uses it. PVs
//! are cluster-wide but their claims live in the release namespace, so a PV is in scope when its
//! `claimRef` points into that namespace.
//!
//! As Kubernetes really behaves: a claim that is already Terminating is not helped by another
//! delete. The pvc-protection controller (kube-controller-manager,
//! pkg/controller/volume/pvcprotection/pvc_protection_controller.go) removes its finalizer once
//! no *scheduled* pod lists it in its volumes; until then it stays. So CMM names the pods that
//! hold it, or waits a bounded time for it to go.
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
    /// The claim is already being deleted and no scheduled pod holds it: wait (bounded) for the
    /// pvc-protection controller to let it go.
    AwaitClaim { namespace: String, name: String },
    /// `kubectl patch pv NAME -p '{"metadata":{"finalizers":null}}'`, only after the claim is
    /// gone. `after_claim` names the claim that must be gone first, if any.
    ClearVolumeFinalizers {
        name: String,
        finalizers: Vec<String>,
        after_claim: Option<String>,
        /// What clearing each non-trivial finalizer risks, said before it is done.
        risks: Vec<String>,
    },
}

/// What removing a volume finalizer skips. `kubernetes.io/pv-protection` only guards against
/// deleting a volume a claim is bound to (checked here first); the CSI ones stand for work a
/// controller has not finished on real storage.
pub fn finalizer_risk(finalizer: &str) -> Option<String> {
    if let Some(driver) = finalizer.strip_prefix("external-attacher/") {
        Some(format!(
            "{finalizer}: CSI driver {} may still have the disk attached to a node \
             (`kubectl get volumeattachment`); clearing it can leave the disk attached and \
             orphaned in the storage backend",
            driver.replace('-', ".")
        ))
    } else if finalizer.starts_with("external-provisioner.volume.kubernetes.io/")
        || finalizer.contains("provisioner")
    {
        Some(format!(
            "{finalizer}: the provisioner has not deleted the backing disk yet; clearing it \
             removes the volume object and may leave the disk behind (delete it in the \
             storage backend by hand)"
        ))
    } else {
        None
    }
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

/// Pods of `namespace` that hold claim `name` the way the pvc-protection controller counts
/// them: scheduled (a `nodeName`) and listing the claim among their volumes, whatever their
/// phase (`podUsesPVC` in pvc_protection_controller.go).
pub fn pods_using<'a>(pods: &'a [Pod], namespace: &str, claim: &str) -> Vec<&'a str> {
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        })
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
                    "held by pod(s) {}: the pvc-protection controller lets it go when they are \
                     gone; CMM does not delete pods (delete or scale them down, then re-run)",
                    users.join(", ")
                ),
            });
            continue;
        }
        out.actions.push(StorageAction::AwaitClaim {
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
        // A live claim that names this volume in spec.volumeName holds it, whatever uid the
        // volume's claimRef remembers (a stale uid after a claim was re-created).
        if let Some(live) = claims.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && !terminating(*c)
                && c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name.as_str())
        }) {
            out.skipped.push(Skipped {
                object: format!("persistentvolume/{name}"),
                reason: format!(
                    "live claim {namespace}/{} names it in spec.volumeName: it is in use; CMM \
                     never touches a volume a claim still uses",
                    live.metadata.name.as_deref().unwrap_or("")
                ),
            });
            continue;
        }
        // A claim with another uid is a new claim that reused the name; it does not hold this PV.
        let holder = claim(&claim_name).filter(|c| {
            cref.uid.is_none() || c.metadata.uid.is_none() || c.metadata.uid == cref.uid
        });
        let risks: Vec<String> = fins.iter().filter_map(|f| finalizer_risk(f)).collect();
        match holder {
            None => out.actions.push(StorageAction::ClearVolumeFinalizers {
                name,
                finalizers: fins,
                after_claim: None,
                risks,
            }),
            Some(c) if !terminating(c) => out.skipped.push(Skipped {
                object: format!("persistentvolume/{name}"),
                reason: format!(
                    "bound to live claim {namespace}/{claim_name}: CMM never touches a volume a claim still uses"
                ),
            }),
            Some(_) => {
                let queued = out.actions.iter().any(|a| {
                    matches!(a, StorageAction::AwaitClaim { name, .. } if *name == claim_name)
                });
                if queued {
                    out.actions.push(StorageAction::ClearVolumeFinalizers {
                        name,
                        finalizers: fins,
                        after_claim: Some(claim_name),
                        risks,
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
            "spec": {"nodeName": "node-1", "containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}],
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
                StorageAction::AwaitClaim {
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
                    risks: vec![finalizer_risk(
                        "external-provisioner.volume.kubernetes.io/finalizer"
                    )
                    .unwrap()],
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

    #[test]
    fn an_unscheduled_pod_does_not_hold_a_claim() {
        let mut pending = pod_mounting("db");
        pending.spec.as_mut().unwrap().node_name = None;
        let p = plan("monitor", &[pvc("db", true)], &[], &[pending]);
        assert!(
            matches!(p.actions[0], StorageAction::AwaitClaim { .. }),
            "{p:?}"
        );
    }

    #[test]
    fn a_live_claim_naming_the_volume_holds_it_despite_a_stale_uid() {
        // The claim was re-created under the same name: a new uid, bound to the same volume.
        let mut live = pvc("db", false);
        live.metadata.uid = Some("uid-new".into());
        let p = plan("monitor", &[live], &[pv("pv-db", "db", "monitor")], &[]);
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.skipped[0].reason.contains("spec.volumeName"), "{p:?}");
    }

    #[test]
    fn csi_attacher_and_provisioner_finalizers_carry_their_risk() {
        let r = finalizer_risk("external-attacher/ebs-csi-aws-com").unwrap();
        assert!(
            r.contains("attached") && r.contains("volumeattachment"),
            "{r}"
        );
        assert!(finalizer_risk("kubernetes.io/pv-protection").is_none());
    }
}
