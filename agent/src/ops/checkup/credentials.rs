//! The kubeconfig's way of authenticating, judged for where check runs. An exec credential
//! plugin (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`) works in an admin's
//! shell and not inside the packaged unit: there is no HOME, no ~/.aws or gcloud state, and
//! the plugin's own binary is often not on the unit's PATH. The fix is a static,
//! least-privilege kubeconfig (docs/operations.md, "A kubeconfig for the timer").

use cmm_core::finding::{Finding, RepairKind, Stage};

pub const RECIPE: &str = "give the unit a static kubeconfig: a ServiceAccount token bound to \
    what `cmm-agent rbac --role cluster` prints (docs/operations.md, \"A kubeconfig for the timer\")";

/// `exec`: the plugin's command, if the kubeconfig's user has one. `access_failed`: the API
/// did not answer the agent's review. `in_unit`: check runs under systemd.
pub fn judge(exec: Option<&str>, access_failed: bool, in_unit: bool) -> Option<Finding> {
    let plugin = exec?;
    let subject = "the kubeconfig's credentials";
    let id = "kubernetes.credentials";
    Some(match (access_failed, in_unit) {
        (true, _) => {
            Finding::failed(Stage::Release, id, subject)
                .with(format!(
                "it authenticates with the exec plugin `{plugin}`, which needs the login state \
                 of a user's shell (HOME, cloud credentials) that {} does not have",
                if in_unit { "the hardened unit" } else { "this run" }
            ))
                .repair(RepairKind::Manual, RECIPE)
        }
        (false, true) => Finding::ok(Stage::Release, id, subject)
            .with(format!("the exec plugin `{plugin}` works inside the unit")),
        (false, false) => Finding::warn(Stage::Release, id, subject)
            .with(format!(
                "it authenticates with the exec plugin `{plugin}`: it works in this shell, but \
                 not inside the packaged unit (no HOME, no cloud login there), so the timer's \
                 checks will fail"
            ))
            .repair(RepairKind::Manual, RECIPE),
    })
}

#[cfg(test)]
mod tests {
    use cmm_core::finding::Severity;

    use super::*;

    #[test]
    fn an_exec_plugin_is_named_with_the_fix_where_it_cannot_work() {
        assert!(judge(None, true, true).is_none());
        let cases = [
            (true, true, Severity::Failed),
            (true, false, Severity::Failed),
            (false, false, Severity::Warning),
            (false, true, Severity::Ok),
        ];
        for (failed, in_unit, want) in cases {
            let f = judge(Some("aws"), failed, in_unit).unwrap();
            assert_eq!(f.severity, want, "{failed} {in_unit}");
            assert!(f.evidence.iter().any(|e| e.contains("`aws`")), "{f:?}");
            if want != Severity::Ok {
                assert!(f
                    .repair
                    .unwrap()
                    .detail
                    .contains("A kubeconfig for the timer"));
            }
        }
    }
}
