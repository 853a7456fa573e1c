//! `fix-storage`.

use cmm_installer::storage::StorageAction;

use super::Render;
use crate::ops::storage::StorageReport;
use crate::output::outln;

impl Render for StorageReport {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn human(&self) {
        print_human(self)
    }
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
