//! `cmm-agent fix-storage`: the seed's recipe for volumes stuck in Terminating, made safe.
//! Dry run by default; with `--yes`: delete each stuck claim, wait for it to go, and only then
//! clear the finalizers of the volume it held. A volume whose claim is still alive, or whose
//! claim does not go in time, is never touched.

use std::time::{Duration, Instant};

use cmm_installer::kube::{connect, Connected};
use cmm_installer::storage::{StorageAction, StoragePlan};
use serde::Serialize;

use crate::cli::{FixStorageArgs, GlobalArgs, Output};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::output::outln;
use crate::settings::{check_namespace, kube_target, BadInput};

#[derive(Debug, Serialize)]
struct StorageReport {
    namespace: String,
    dry_run: bool,
    plan: StoragePlan,
    /// What was done, in order (empty on a dry run).
    done: Vec<String>,
    /// Planned actions not carried out, and why.
    not_done: Vec<String>,
}

pub async fn run(global: &GlobalArgs, args: FixStorageArgs) -> anyhow::Result<()> {
    check_namespace(&args.namespace)?;
    let wait = crate::settings::DurationSetting::ClaimWait.parse(&args.claim_wait)?;
    let conn = connect(&kube_target(&args.kube))
        .await
        .classify_by(installer_class)?;
    conn.server_version().await.classify_by(installer_class)?;

    let plan = conn
        .stuck_storage(&args.namespace)
        .await
        .classify_by(installer_class)?;
    let mut report = StorageReport {
        namespace: args.namespace.clone(),
        dry_run: !args.yes,
        plan: plan.clone(),
        done: Vec::new(),
        not_done: Vec::new(),
    };
    if args.yes {
        carry_out(&conn, &plan, wait, &mut report)
            .await
            .classify_by(installer_class)?;
    }
    match global.output {
        Output::Json => crate::output::json(&report)?,
        Output::Human => print_human(&report),
    }
    if !report.not_done.is_empty() {
        return Err(BadInput(format!(
            "{} action(s) were not carried out (see above); nothing unsafe was done",
            report.not_done.len()
        )))
        .classify(ExitCode::Preflight);
    }
    Ok(())
}

/// Carry out `plan` (check's storage repair): what was done and what was not, as lines.
pub(crate) async fn apply(
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

async fn carry_out(
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

fn print_human(r: &StorageReport) {
    let mode = if r.dry_run {
        " (dry run: pass --yes to act)"
    } else {
        ""
    };
    outln!("stuck storage of namespace {}{mode}:", r.namespace);
    if r.plan.is_empty() {
        outln!("  nothing is stuck");
    }
    for a in &r.plan.actions {
        match a {
            StorageAction::AwaitClaim { namespace, name } => {
                outln!("  wait for claim {namespace}/{name}: already deleted, no scheduled pod holds it; the pvc-protection controller lets it go")
            }
            StorageAction::ClearVolumeFinalizers {
                name,
                finalizers,
                after_claim,
                risks,
            } => {
                let when = after_claim
                    .as_ref()
                    .map_or_else(String::new, |c| format!(" once claim {c} is gone"));
                outln!(
                    "  clear finalizers [{}] of volume {name}{when}   (kubectl patch pv {name} -p '{{\"metadata\":{{\"finalizers\":null}}}}')",
                    finalizers.join(", ")
                );
                for r in risks {
                    outln!("    risk: {r}");
                }
            }
        }
    }
    for s in &r.plan.skipped {
        outln!("  left alone: {}: {}", s.object, s.reason);
    }
    for d in &r.done {
        outln!("  done: {d}");
    }
    for n in &r.not_done {
        outln!("  NOT done: {n}");
    }
}
