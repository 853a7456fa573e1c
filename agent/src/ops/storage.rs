//! Volumes of the monitoring namespace stuck in Terminating, freed the safe way: delete each
//! stuck claim, wait for it to go (bounded), and only then clear the finalizers of the volume
//! it held. A volume whose claim is still alive, or does not go in time, is never touched.
//! `fix-storage` and check's storage repair both carry a plan out here.

use std::time::{Duration, Instant};

use cmm_installer::kube::Connected;
use cmm_installer::storage::{StorageAction, StoragePlan};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct StorageReport {
    pub namespace: String,
    pub dry_run: bool,
    pub plan: StoragePlan,
    /// What was done, in order (empty on a dry run).
    pub done: Vec<String>,
    /// Planned actions not carried out, and why.
    pub not_done: Vec<String>,
}

/// Carry out `plan` (check's storage repair): what was done and what was not, as lines.
pub async fn apply(
    conn: &Connected,
    namespace: &str,
    plan: &StoragePlan,
    wait: Duration,
) -> Vec<String> {
    let mut report = StorageReport {
        namespace: namespace.to_owned(),
        dry_run: false,
        plan: plan.clone(),
        done: Vec::new(),
        not_done: Vec::new(),
    };
    if let Err(e) = carry_out(conn, plan, wait, &mut report).await {
        report.not_done.push(format!("storage repair stopped: {e}"));
    }
    let mut out = report.done;
    out.extend(
        report
            .not_done
            .into_iter()
            .map(|n| format!("not done: {n}")),
    );
    out
}

pub async fn carry_out(
    conn: &Connected,
    plan: &StoragePlan,
    wait: Duration,
    report: &mut StorageReport,
) -> cmm_installer::Result<()> {
    for action in &plan.actions {
        match action {
            StorageAction::AwaitClaim { namespace, name } => {
                // Already being deleted: another delete changes nothing. Wait for the
                // pvc-protection controller, bounded; then say who still holds it.
                let deadline = Instant::now() + wait;
                let gone = loop {
                    if !conn.claim_exists(namespace, name).await? {
                        break true;
                    }
                    if Instant::now() >= deadline {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                };
                if gone {
                    report.done.push(format!(
                        "claim {namespace}/{name} is gone (the pvc-protection controller let it go)"
                    ));
                } else {
                    let pods: Vec<k8s_openapi::api::core::v1::Pod> =
                        conn.list_in(namespace).await?;
                    let holders = cmm_installer::storage::pods_using(&pods, namespace, name);
                    report.not_done.push(if holders.is_empty() {
                        format!(
                            "claim {namespace}/{name} is still Terminating after {}s although no \
                             scheduled pod holds it: kube-controller-manager's pvc-protection \
                             controller removes its finalizer; check that it runs",
                            wait.as_secs()
                        )
                    } else {
                        format!(
                            "claim {namespace}/{name} is still held by pod(s) {}: delete or scale \
                             them down, then re-run",
                            holders.join(", ")
                        )
                    });
                }
            }
            StorageAction::ClearVolumeFinalizers {
                name,
                after_claim,
                risks,
                ..
            } => {
                for r in risks {
                    tracing::warn!(volume = %name, "clearing a finalizer: {r}");
                }
                if let Some(claim) = after_claim {
                    // The claim must really be gone: re-read rather than trust the plan.
                    let deadline = Instant::now() + wait;
                    let gone = loop {
                        if !conn.claim_exists(&report.namespace, claim).await? {
                            break true;
                        }
                        if Instant::now() >= deadline {
                            break false;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    };
                    if !gone {
                        report.not_done.push(format!(
                            "volume {name}: claim {}/{claim} is still there after {}s, so its finalizers were left alone",
                            report.namespace,
                            wait.as_secs()
                        ));
                        continue;
                    }
                }
                conn.clear_volume_finalizers(name).await?;
                report
                    .done
                    .push(format!("cleared finalizers of volume {name}"));
            }
        }
    }
    Ok(())
}
