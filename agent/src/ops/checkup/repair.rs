//! Check's repairs (`--repair`): each kind the findings name, once, and only the safe,
//! idempotent ones: re-register, roll back a pending release under the run lock, the safe part
//! of fix-storage, renew the certificates; a reinstall only with `--reinstall`.

use cmm_core::finding::{Finding, RepairKind, Severity};
use cmm_installer::health;
use cmm_installer::kube::Connected;

use super::Inputs;
use crate::ops::endpoint;
use crate::ops::registration::{self, Registered, Target};

/// Which repairs to carry out, in order, for these findings: each kind a finding that is not
/// ok names, once. A reinstall (only with `--reinstall`) is bootstrap, which recovers a pending
/// release and registers by itself, so it replaces the rest. Without `--reinstall`, a finding
/// asking for one does not stop the safe repairs: a pending release is still rolled back.
pub fn plan(findings: &[Finding], reinstall: bool) -> Vec<RepairKind> {
    let wanted = |kind: RepairKind| {
        findings.iter().any(|f| {
            f.severity != Severity::Ok && f.repair.as_ref().is_some_and(|r| r.kind == kind)
        })
    };
    if reinstall && wanted(RepairKind::Reinstall) {
        return vec![RepairKind::Reinstall];
    }
    [
        RepairKind::RecoverRelease,
        RepairKind::FixStorage,
        RepairKind::UpdateCrds,
        RepairKind::RenewCertificates,
        RepairKind::Restart,
        RepairKind::Register,
    ]
    .into_iter()
    .filter(|k| wanted(*k))
    .collect()
}

/// Carry out the repairs the findings name ([`plan`]); returns what was changed.
pub async fn repair(i: &Inputs<'_>, conn: &Connected, findings: &[Finding]) -> Vec<String> {
    let (timeout, claim_wait) = (i.s.helm_run.timeout, i.s.claim_wait);
    let wants_reinstall = findings.iter().any(|f| {
        f.severity != Severity::Ok
            && f.repair
                .as_ref()
                .is_some_and(|r| r.kind == RepairKind::Reinstall)
    });
    if wants_reinstall && !i.s.reinstall {
        tracing::warn!("a finding needs a reinstall; pass --reinstall (with --repair) to let check run bootstrap");
    }
    let mut done = Vec::new();
    let ns = &i.s.namespace;
    let stop = crate::interrupt::stop();
    for kind in plan(findings, i.s.reinstall) {
        // Stopped (SIGINT/SIGTERM): what was begun wound down; nothing more is started.
        if stop.is_stopped() {
            break;
        }
        match kind {
            RepairKind::Reinstall => {
                // Bootstrap with check's own settings; its reports are not shown: check reports.
                let quiet = &mut |_: crate::ops::install::Shown<'_>| Ok(());
                let settings = i.s.reinstall_settings();
                done.push(match crate::ops::install::run(&settings, quiet).await {
                    Ok(()) => "reinstalled with `bootstrap` (helm upgrade --install)".to_owned(),
                    Err(e) => format!("reinstall failed: {e:#}"),
                });
            }
            RepairKind::RecoverRelease => done.push(recover_release(i, conn, timeout).await),
            RepairKind::FixStorage => match conn.stuck_storage(ns).await {
                Ok(plan) => {
                    let safe = cmm_installer::storage::StoragePlan {
                        actions: health::safe_storage_actions(&plan),
                        skipped: Vec::new(),
                    };
                    done.extend(crate::ops::storage::apply(conn, ns, &safe, claim_wait).await);
                }
                Err(e) => done.push(format!("storage repair: cannot read the plan: {e}")),
            },
            RepairKind::UpdateCrds => done.push(update_crds(i, conn).await),
            RepairKind::RenewCertificates => {
                done.push(renew_certificates(i, conn).await);
                // A renewal here makes the sidecars stale at once: restarted in the same run.
                done.extend(restart_sidecars(i, conn).await);
            }
            RepairKind::Restart => done.extend(restart_sidecars(i, conn).await),
            RepairKind::Register => done.extend(reregister(i, conn).await),
            RepairKind::Manual => {}
        }
    }
    for d in &done {
        tracing::info!("repair: {d}");
    }
    done
}

/// Thanos: restart, one at a time, the Prometheus pods whose sidecar started before the
/// cluster's certificate was last issued (it reads it only at start), under the run lock.
async fn restart_sidecars(i: &Inputs<'_>, conn: &Connected) -> Vec<String> {
    if !i.s.plan.wiring.sidecar_on_cluster() {
        return Vec::new();
    }
    let ns = &i.s.namespace;
    let state =
        match cmm_installer::tls::read_cluster(conn, ns, cmm_core::naming::PROMETHEUS_TLS_SECRET)
            .await
        {
            Ok(s) => s,
            Err(e) => return vec![format!("sidecars not restarted: {e}")],
        };
    let Some(changed) = super::sidecar_changed(&state) else {
        return Vec::new();
    };
    let pods = match super::sidecar_pods(conn, ns).await {
        Ok(p) => p,
        Err(e) => return vec![format!("sidecars not restarted: {e}")],
    };
    let stale = cmm_installer::consumers::stale_pods(&pods, changed);
    if stale.is_empty() {
        return Vec::new();
    }
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn.acquire_lock(ns, i.s.cluster.release(), &holder).await {
        Ok(l) => l,
        Err(e) => return vec![format!("sidecars not restarted: {e}")],
    };
    let result =
        cmm_installer::consumers::restart_pods(conn, ns, &stale, i.s.helm_run.timeout).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    match result {
        Ok(lines) => lines,
        Err(e) => vec![format!("sidecars: restart did not finish: {e}")],
    }
}

/// Bring older operator CRDs to the chart's, holding the run lock (as bootstrap does).
async fn update_crds(i: &Inputs<'_>, conn: &Connected) -> String {
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn
        .acquire_lock(&i.s.namespace, i.s.cluster.release(), &holder)
        .await
    {
        Ok(l) => l,
        Err(e) => return format!("CRDs not updated: {e}"),
    };
    let result = crate::ops::crds::update(conn, &i.s.chart.helm, &i.s.chart.chart).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    match result {
        Ok(states) => {
            let updated: Vec<&str> = states
                .iter()
                .filter(|s| s.detail.starts_with("brought"))
                .map(|s| s.name.as_str())
                .collect();
            format!(
                "CRDs brought to the chart's (server-side apply): {}",
                updated.join(", ")
            )
        }
        Err(e) => format!("CRDs not updated: {e:#}"),
    }
}

/// `helm rollback` of a pending revision to the last good one, holding the run lock.
pub async fn recover_release(
    i: &Inputs<'_>,
    conn: &Connected,
    timeout: std::time::Duration,
) -> String {
    let ns = &i.s.namespace;
    let release = i.s.cluster.release();
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn.acquire_lock(ns, release, &holder).await {
        Ok(l) => l,
        Err(e) => return format!("release not recovered: {e}"),
    };
    // Decide again under the lock: another run may have recovered it meanwhile.
    let result = async {
        let secrets = conn.release_secrets(ns, release).await?;
        let revs = cmm_installer::release::revisions(&secrets, release);
        let Some(latest) = revs.last().filter(|r| r.status.starts_with("pending-")) else {
            return Ok("release no longer pending: nothing to recover".to_owned());
        };
        let Some(good) = revs
            .iter()
            .rev()
            .skip(1)
            .find(|r| r.status == "deployed" || r.status == "superseded")
        else {
            return Ok("release never deployed: only --reinstall recovers it".to_owned());
        };
        let args = cmm_installer::helm::Helm::rollback_args(
            release,
            ns,
            good.version,
            &conn.helm,
            timeout.as_secs(),
        );
        crate::interrupt::stage(
            format!(
                "`helm rollback` of {release} to revision {} was stopped: revision {} may stay \
                 pending",
                good.version, latest.version
            ),
            "finds no live lock and rolls the pending release back again (check --repair)",
        );
        i.s.chart.helm.run(&args).await?;
        Ok::<_, cmm_installer::Error>(format!(
            "rolled back pending revision {} to revision {} (helm rollback, under the run lock)",
            latest.version, good.version
        ))
    }
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    result.unwrap_or_else(|e| format!("release not recovered: {e}"))
}

/// Issue the cluster's certificates anew under the run lock (decided again there).
pub async fn renew_certificates(i: &Inputs<'_>, conn: &Connected) -> String {
    let Some(central) = i.central else {
        return "certificates not renewed: set central-context (the CMM CA is on the central \
                cluster)"
            .into();
    };
    let ns = &i.s.namespace;
    let sans = match crate::ops::endpoint::advertised_sans(conn, &i.s.prometheus).await {
        Ok(s) => s,
        Err(e) => return format!("certificates not renewed: {e:#}"),
    };
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn.acquire_lock(ns, i.s.cluster.release(), &holder).await {
        Ok(l) => l,
        Err(e) => return format!("certificates not renewed: {e}"),
    };
    let result = cmm_installer::tls::ensure_cluster(
        conn,
        ns,
        cmm_core::naming::PROMETHEUS_TLS_SECRET,
        i.s.cluster.release(),
        central,
        &sans,
        std::time::SystemTime::now(),
        i.s.central.renew_before,
    )
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    match result {
        Ok(cmm_installer::tls::TlsAction::Issue { why }) => format!(
            "renewed Secret {} ({why}); the proxy reloads it within a minute",
            cmm_core::naming::PROMETHEUS_TLS_SECRET
        ),
        Ok(cmm_installer::tls::TlsAction::Keep { days_left }) => {
            format!("certificates already renewed by another run ({days_left} day(s) left)")
        }
        Err(e) => format!("certificates not renewed: {e}"),
    }
}

/// Register again, through the one dispatch on the topology (`ops::registration`).
async fn reregister(i: &Inputs<'_>, conn: &Connected) -> Option<String> {
    let reg = i.registration?;
    let wiring = &i.s.plan.wiring;
    // Without the central material a pull datasource would be written without Grafana's client
    // certificate, and the proxy would turn Grafana away: refuse rather than break it.
    if wiring.central_reads_cluster() && wiring.mutual_tls() && i.central.is_none() {
        return Some(
            "not re-registered: the datasource needs Grafana's client certificate from the \
             central cluster; set central-context"
                .into(),
        );
    }
    let target = Target {
        wiring,
        central: &i.s.central,
        pki: i.central,
    };
    let find = async || endpoint::find(conn, &i.s.namespace, &i.s.prometheus).await;
    Some(
        match registration::register(reg, &i.s.cluster, &target, find).await {
            // Shared: a registration Grafana cannot read through is not a repair.
            Ok(done @ Registered::Shared(_)) => match done.verdict() {
                Ok(()) => done.summary(),
                Err(e) => format!("re-registration failed: {e:#}"),
            },
            Ok(done) => done.summary(),
            Err(e) => format!("re-registration failed: {e:#}"),
        },
    )
}

#[cfg(test)]
mod tests {
    use cmm_core::finding::Stage;

    use super::*;

    fn asks(kind: RepairKind) -> Finding {
        Finding::failed(Stage::Release, "x", "y").repair(kind, "do it")
    }

    #[test]
    fn each_kind_once_in_order_and_a_pending_release_is_rolled_back_without_reinstall() {
        use RepairKind::*;
        let ok = Finding::ok(Stage::Release, "ok", "y").repair(Register, "never");
        let cases: &[(&[RepairKind], bool, &[RepairKind])] = &[
            (&[], false, &[]),
            (
                &[Register, Register, FixStorage],
                false,
                &[FixStorage, Register],
            ),
            (&[Manual], false, &[]),
            // The packaged timer runs without --reinstall: the rollback still happens.
            (&[Reinstall, RecoverRelease], false, &[RecoverRelease]),
            (
                &[Reinstall, RecoverRelease, Register],
                false,
                &[RecoverRelease, Register],
            ),
            // Bootstrap recovers and registers by itself.
            (&[Reinstall, RecoverRelease, Register], true, &[Reinstall]),
            (
                &[RenewCertificates, RecoverRelease],
                true,
                &[RecoverRelease, RenewCertificates],
            ),
        ];
        for (kinds, reinstall, want) in cases {
            let mut findings: Vec<Finding> = kinds.iter().map(|k| asks(*k)).collect();
            findings.push(ok.clone());
            assert_eq!(
                plan(&findings, *reinstall),
                *want,
                "{kinds:?} reinstall={reinstall}"
            );
        }
    }
}
