//! The helm release's state, read from the labels of helm's release Secrets (never their
//! payload, which holds the values), and what the next run must do with it: install, upgrade,
//! nothing (same plan already deployed), or recover a release an interrupted run left pending.
//!
//! Recovery, decided here and documented in docs/bootstrap.md:
//! - `pending-upgrade` / `pending-rollback` with an earlier working revision: `helm rollback` to
//!   the newest `deployed`/`superseded` revision, then upgrade again.
//! - `pending-install` (nothing ever worked): `helm uninstall`, then install fresh.
//! - a pending revision touched less than the grace period ago may be another helm still
//!   running: stop and say so rather than fight it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// Release label holding the digest of the plan that produced a revision (`helm --labels`).
pub const PLAN_LABEL: &str = "cmm-plan";

/// Label selector of a release's Secrets in helm's storage.
pub fn secret_selector(release: &str) -> String {
    format!("owner=helm,name={release}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    pub version: u32,
    pub status: String,
    /// helm's `modifiedAt`/`createdAt` label (unix seconds), else the Secret's creation time.
    pub modified_unix: Option<i64>,
    pub plan: Option<String>,
}

/// Revisions of `release` from its Secrets' metadata, oldest first.
pub fn revisions(secrets: &[ObjectMeta], release: &str) -> Vec<Revision> {
    let mut out: Vec<Revision> = secrets
        .iter()
        .filter_map(|m| {
            let labels = m.labels.as_ref()?;
            if labels.get("owner").map(String::as_str) != Some("helm")
                || labels.get("name").map(String::as_str) != Some(release)
            {
                return None;
            }
            Some(Revision {
                version: labels.get("version")?.parse().ok()?,
                status: labels.get("status")?.clone(),
                // helm sets createdAt on create and modifiedAt on every update.
                modified_unix: labels
                    .get("modifiedAt")
                    .or_else(|| labels.get("createdAt"))
                    .and_then(|v| v.parse().ok())
                    .or_else(|| m.creation_timestamp.as_ref().map(|t| t.0.as_second())),
                plan: labels.get(PLAN_LABEL).cloned(),
            })
        })
        .collect();
    out.sort_by_key(|r| r.version);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Next {
    Install,
    Upgrade {
        from: u32,
    },
    /// The latest deployed revision came from this very plan: nothing to do.
    Unchanged {
        revision: u32,
    },
    Rollback {
        pending: u32,
        status: String,
        to: u32,
    },
    Uninstall {
        pending: u32,
        status: String,
    },
    /// Refuse to act; the reason says what to do.
    Blocked {
        reason: String,
    },
}

/// What to do with the release, given its revisions and the digest of the planned install.
pub fn next_step(revs: &[Revision], plan: &str, now_unix: i64, grace_secs: i64) -> Next {
    let Some(latest) = revs.last() else {
        return Next::Install;
    };
    match latest.status.as_str() {
        "deployed" if latest.plan.as_deref() == Some(plan) => Next::Unchanged {
            revision: latest.version,
        },
        "pending-install" | "pending-upgrade" | "pending-rollback" => {
            if let Some(reason) = foreign_pending_in_grace(latest, now_unix, grace_secs) {
                return Next::Blocked { reason };
            }
            let good = revs
                .iter()
                .rev()
                .skip(1)
                .find(|r| r.status == "deployed" || r.status == "superseded");
            match good {
                Some(g) => Next::Rollback {
                    pending: latest.version,
                    status: latest.status.clone(),
                    to: g.version,
                },
                None => Next::Uninstall {
                    pending: latest.version,
                    status: latest.status.clone(),
                },
            }
        }
        "uninstalling" => Next::Blocked {
            reason: format!(
                "revision {} is being uninstalled: wait for `helm uninstall` to finish, then re-run",
                latest.version
            ),
        },
        _ => Next::Upgrade {
            from: latest.version,
        },
    }
}

/// Whether a pending revision may still belong to a helm that is running. This is decided
/// while the caller holds the run lock (`lock`), so a revision a CMM run left (it carries the
/// `cmm-plan` label) cannot be in use: every CMM run holds the lock while its helm runs.
/// Only a revision from a plain `helm` (no label) is protected by the grace period, and its
/// age is taken from helm's own label (the client's clock): saturating, and a time further in
/// the future than the grace itself can only be clock skew, so it cannot block forever.
fn foreign_pending_in_grace(latest: &Revision, now_unix: i64, grace_secs: i64) -> Option<String> {
    if latest.plan.is_some() {
        return None;
    }
    let Some(modified) = latest.modified_unix else {
        return Some(format!(
            "revision {} is {} and carries no time: it was not made by cmm-agent and may belong \
             to a helm still running; when it is not, recover it by hand (`helm rollback` or \
             `helm uninstall`)",
            latest.version, latest.status
        ));
    };
    let age = now_unix.saturating_sub(modified);
    if age < grace_secs.saturating_neg() {
        tracing::warn!(
            revision = latest.version,
            ahead_secs = age.unsigned_abs(),
            "a pending revision is dated in the future (clock skew on the host that ran helm); judging it by the run lock alone"
        );
        return None;
    }
    if age < grace_secs {
        return Some(format!(
            "revision {} is {} since {}s ago and was not made by cmm-agent: a plain `helm` may \
             still be running; wait, or re-run after {grace_secs}s (--pending-grace) to recover it",
            latest.version,
            latest.status,
            age.max(0)
        ));
    }
    None
}

/// A short, stable digest of everything that decides what helm installs. FNV-1a, not a
/// cryptographic hash: it only has to notice change, and it must be stable across builds.
pub fn plan_digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(version: u32, status: &str, modified: i64, plan: Option<&str>) -> ObjectMeta {
        let mut labels = json!({
            "name": "kr-mum", "owner": "helm", "status": status,
            "version": version.to_string(), "modifiedAt": modified.to_string(),
        });
        if let Some(p) = plan {
            labels[PLAN_LABEL] = json!(p);
        }
        serde_json::from_value(json!({
            "name": format!("sh.helm.release.v1.kr-mum.v{version}"),
            "namespace": "monitor",
            "labels": labels,
        }))
        .unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn same_plan_already_deployed_changes_nothing() {
        let revs = revisions(
            &[
                secret(1, "superseded", 1, Some("aa")),
                secret(2, "deployed", 2, Some("bb")),
            ],
            "kr-mum",
        );
        assert_eq!(
            next_step(&revs, "bb", NOW, 300),
            Next::Unchanged { revision: 2 }
        );
        assert_eq!(next_step(&revs, "cc", NOW, 300), Next::Upgrade { from: 2 });
        assert_eq!(next_step(&[], "cc", NOW, 300), Next::Install);
    }

    #[test]
    fn an_interrupted_upgrade_rolls_back_to_the_last_good_revision() {
        let revs = revisions(
            &[
                secret(3, "superseded", 10, None),
                secret(4, "deployed", 20, None),
                secret(5, "pending-upgrade", NOW - 3600, None),
            ],
            "kr-mum",
        );
        assert_eq!(
            next_step(&revs, "x", NOW, 300),
            Next::Rollback {
                pending: 5,
                status: "pending-upgrade".into(),
                to: 4
            }
        );
    }

    #[test]
    fn a_never_deployed_pending_install_is_uninstalled() {
        let revs = revisions(&[secret(1, "pending-install", NOW - 3600, None)], "kr-mum");
        assert!(matches!(
            next_step(&revs, "x", NOW, 300),
            Next::Uninstall { pending: 1, .. }
        ));
    }

    #[test]
    fn a_fresh_pending_revision_of_a_plain_helm_blocks_one_of_cmms_does_not() {
        let revs = revisions(&[secret(1, "pending-install", NOW - 20, None)], "kr-mum");
        let Next::Blocked { reason } = next_step(&revs, "x", NOW, 300) else {
            panic!("not blocked");
        };
        assert!(
            reason.contains("20s") && reason.contains("--pending-grace"),
            "{reason}"
        );
        // Left by a CMM run: that run held the lock, and the caller holds it now.
        let revs = revisions(
            &[secret(1, "pending-install", NOW - 20, Some("aa"))],
            "kr-mum",
        );
        assert!(matches!(
            next_step(&revs, "x", NOW, 300),
            Next::Uninstall { pending: 1, .. }
        ));
    }

    #[test]
    fn release_ages_neither_overflow_nor_block_forever_on_clock_skew() {
        for modified in [i64::MAX, NOW + 10 * 365 * 86_400, i64::MIN] {
            let revs = revisions(
                &[
                    secret(1, "deployed", 1, None),
                    secret(2, "pending-upgrade", modified, None),
                ],
                "kr-mum",
            );
            assert_eq!(
                next_step(&revs, "x", NOW, 900),
                Next::Rollback {
                    pending: 2,
                    status: "pending-upgrade".into(),
                    to: 1
                },
                "modified {modified}"
            );
        }
        // Slightly ahead (within the grace): still protected.
        let revs = revisions(&[secret(1, "pending-install", NOW + 60, None)], "kr-mum");
        assert!(matches!(
            next_step(&revs, "x", NOW, 900),
            Next::Blocked { .. }
        ));
    }

    #[test]
    fn other_releases_and_versions_sort_numerically() {
        let mut other = secret(9, "deployed", 1, None);
        other
            .labels
            .as_mut()
            .unwrap()
            .insert("name".into(), "other".into());
        let revs = revisions(
            &[
                secret(10, "deployed", 1, None),
                secret(9, "superseded", 1, None),
                other,
            ],
            "kr-mum",
        );
        assert_eq!(revs.iter().map(|r| r.version).collect::<Vec<_>>(), [9, 10]);
    }

    #[test]
    fn the_digest_changes_with_any_part_and_not_otherwise() {
        let a = plan_digest(["chart 66.1.0", "values", "x=1"]);
        assert_eq!(a, plan_digest(["chart 66.1.0", "values", "x=1"]));
        assert_ne!(a, plan_digest(["chart 66.1.0", "values", "x=2"]));
        assert_ne!(plan_digest(["ab", "c"]), plan_digest(["a", "bc"]));
        assert_eq!(a.len(), 16);
    }
}
