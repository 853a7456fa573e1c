//! `check --role central`: the central side judged from the central cluster's admin host with the
//! same findings, renderer and exit codes as a cluster's check. Stages: the central release, what
//! reads the TLS Secrets at start (`cmm_installer::consumers`), the CA and Grafana's client
//! certificate, Grafana itself (health, contact points), and the fleet as Grafana sees it
//! (`cmm_central::fleet`). `--repair` renews the certificates and updates every consumer in the
//! same run, and rebuilds the fleet rule, under the release's run lock.

use std::time::SystemTime;

use cmm_central::fleet::{self, FleetFacts, FleetRow, Reading};
use cmm_central::GrafanaClient;
use cmm_core::finding::{Finding, RepairKind, Severity, Stage};
use cmm_installer::health::{self, Expected};
use cmm_installer::kube::Connected;
use cmm_installer::tls::CentralPki;

use crate::settings::CheckSettings;

/// What the central check found: the findings and the fleet table.
pub struct CentralFindings {
    pub findings: Vec<Finding>,
    pub fleet: Vec<FleetRow>,
}

/// The Grafana client of the central check: the token when one is given, else the admin login
/// the central bootstrap made (Secret cmm-grafana-admin), as `bootstrap --role central` does.
pub async fn grafana_client(
    s: &CheckSettings,
    conn: &Connected,
) -> Option<anyhow::Result<GrafanaClient>> {
    s.grafana.url.as_ref()?;
    let creds = if s.grafana.token.is_given() {
        s.grafana.token_credentials()
    } else {
        crate::ops::central::admin_login(conn, &s.namespace).await
    };
    Some(creds.and_then(|c| s.grafana.client(c)))
}

/// Gather every stage and judge it.
pub async fn findings(
    s: &CheckSettings,
    conn: &Connected,
    grafana: Option<&GrafanaClient>,
) -> CentralFindings {
    let ns = &s.namespace;
    let now = SystemTime::now();
    let mut out = Vec::new();
    match health::gather(conn, ns, s.cluster.release()).await {
        Ok(snap) => {
            let expected = Expected {
                plan_digest: super::expected_digest(s, conn, &snap).await,
                chart_version: s
                    .chart
                    .chart
                    .local_version()
                    .unwrap_or_else(|| cmm_installer::chart::CHART_VERSION.to_owned()),
            };
            out.extend(health::judge_release(&snap, &expected));
        }
        Err(e) => out.push(
            Finding::failed(Stage::Release, "kubernetes.read", format!("namespace {ns}"))
                .with(e.to_string()),
        ),
    }
    let pki = match cmm_installer::tls::load_central(conn, ns, now).await {
        Ok(Some(pki)) => Some(pki),
        Ok(None) => {
            out.push(
                Finding::failed(Stage::Endpoint, "tls.central", "the CMM CA")
                    .with(format!(
                        "Secret {ns}/{} does not exist",
                        cmm_core::naming::CA_SECRET
                    ))
                    .repair(
                        RepairKind::Reinstall,
                        "`cmm-agent bootstrap --role central` makes it",
                    ),
            );
            None
        }
        Err(e) => {
            out.push(
                Finding::failed(Stage::Endpoint, "tls.central", "the CMM CA")
                    .with(e.to_string())
                    .repair(
                        RepairKind::RenewCertificates,
                        "`cmm-agent check --role central --repair` issues what is missing",
                    ),
            );
            None
        }
    };
    if let Some(pki) = &pki {
        out.push(cmm_installer::tls::judge_central_material(
            pki,
            now,
            s.central.renew_before,
        ));
        out.extend(consumer_findings(s, conn, pki).await);
        if s.plan.wiring.receiver_on_central() {
            out.push(receiver_finding(s, conn, pki, now).await);
        }
    }
    let mut rows = Vec::new();
    match grafana {
        Some(g) => {
            let facts = grafana_side(s, g, pki.as_ref()).await;
            out.extend(facts.1);
            let (r, f) = fleet::judge(&facts.0, s.plan.wiring.topology.as_str());
            rows = r;
            out.extend(f);
        }
        None => out.push(
            Finding::warn(Stage::Grafana, "grafana.not-checked", "the central Grafana")
                .with("no grafana-url set: Grafana and the fleet are not judged")
                .repair(
                    RepairKind::Manual,
                    "set grafana-url (and a token, or leave it to the admin Secret) in /etc/cmm/agent.toml",
                ),
        ),
    }
    out.sort_by_key(|f| f.stage);
    CentralFindings {
        findings: out,
        fleet: rows,
    }
}

async fn consumer_findings(s: &CheckSettings, conn: &Connected, pki: &CentralPki) -> Vec<Finding> {
    let Some(changed) = cmm_installer::tls::central_changed_at(pki) else {
        return Vec::new();
    };
    match cmm_installer::consumers::gather(conn, &s.namespace, &s.plan.wiring).await {
        Ok(found) => cmm_installer::consumers::judge(&s.namespace, &found, changed),
        Err(e) => vec![Finding::failed(
            Stage::Workloads,
            "tls.consumer",
            "what reads the client certificate at start",
        )
        .with(e.to_string())],
    }
}

/// Push: the receiver's server certificate (Secret cmm-receiver-tls), which every cluster's
/// remote write checks by the name `cmm-receiver`. Its proxy reloads a renewed Secret by itself.
async fn receiver_finding(
    s: &CheckSettings,
    conn: &Connected,
    pki: &CentralPki,
    now: SystemTime,
) -> Finding {
    use cmm_installer::tls::{decide_cluster, read_cluster, TlsAction};
    let secret = cmm_core::naming::RECEIVER_TLS_SECRET;
    let subject = format!("Secret {secret} (the push receiver)");
    let state = match read_cluster(conn, &s.namespace, secret).await {
        Ok(st) => st,
        Err(e) => {
            return Finding::failed(Stage::Endpoint, "tls.receiver", subject).with(e.to_string())
        }
    };
    let mut sans = vec![cmm_pki::San::Dns(
        cmm_installer::topology::RECEIVER_SERVER_NAME.into(),
    )];
    match crate::ops::endpoint::advertised_sans(conn, &s.prometheus).await {
        Ok(more) => sans.extend(more),
        Err(e) => {
            return Finding::failed(Stage::Endpoint, "tls.receiver", subject).with(format!("{e:#}"))
        }
    }
    match decide_cluster(&state, &pki.trust_pem, &sans, now, s.central.renew_before) {
        TlsAction::Keep { days_left } => Finding::ok(Stage::Endpoint, "tls.receiver", subject)
            .with(format!("{days_left} day(s) left")),
        TlsAction::Issue { why } => Finding::warn(Stage::Endpoint, "tls.receiver", subject)
            .with(format!("to renew: {why}"))
            .repair(
                RepairKind::RenewCertificates,
                "`cmm-agent check --role central --repair` issues it; the receiver's proxy reloads it",
            ),
    }
}

/// How the fleet is read in this topology: pull through each cluster's datasource, push and
/// thanos through the one shared datasource.
fn reading(s: &CheckSettings) -> Reading {
    match s.plan.wiring.topology.shared_datasource_uid() {
        Some(uid) => Reading::Shared {
            datasource_uid: uid.to_owned(),
        },
        None => Reading::PerCluster,
    }
}

/// Grafana's own health, its contact points, and the fleet's reads.
async fn grafana_side(
    s: &CheckSettings,
    g: &GrafanaClient,
    pki: Option<&CentralPki>,
) -> (FleetFacts, Vec<Finding>) {
    let mut out = Vec::new();
    out.push(match g.health_facts().await {
        Ok((version, db)) if db == "ok" => {
            Finding::ok(Stage::Grafana, "grafana.health", g.base_url().as_str())
                .with(format!("Grafana {version}, database ok"))
        }
        Ok((version, db)) => {
            Finding::failed(Stage::Grafana, "grafana.health", g.base_url().as_str())
                .with(format!("Grafana {version}, database {db}"))
        }
        Err(e) => Finding::failed(Stage::Grafana, "grafana.health", g.base_url().as_str())
            .with(e.to_string()),
    });
    let points = g.contact_points().await.map_err(|e| e.to_string());
    let deliveries = match (&points, s.test_contact_points) {
        (Ok(p), true) if !cmm_central::contact::real(p).is_empty() => Some(
            g.test_contact_points(&cmm_central::contact::real(p), "central check")
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    out.push(cmm_central::health::judge_contact_points(
        &points,
        deliveries.as_ref(),
    ));
    let presented = pki.map(|p| fleet::Presented {
        client: cmm_central::prometheus::ClientIdentity {
            cert_pem: p.grafana.cert_pem.clone(),
            key: cmm_central::Secret::new(p.grafana.key_pem.clone()),
        },
        trust_pem: p.trust_pem.clone(),
    });
    let facts = fleet::gather(g, reading(s), presented.as_ref()).await;
    (facts, out)
}

/// Carry out the repairs the findings name, under the release's run lock; returns what was
/// changed. Certificates first (renew or rotate, then every consumer), then the fleet rule.
pub async fn repair(
    s: &CheckSettings,
    conn: &Connected,
    grafana: Option<&GrafanaClient>,
    found: &CentralFindings,
) -> Vec<String> {
    let wanted = |id: &str, kind: RepairKind| {
        found.findings.iter().any(|f| {
            f.severity != Severity::Ok
                && f.id == id
                && f.repair.as_ref().is_some_and(|r| r.kind == kind)
        })
    };
    let renew = wanted("tls.central", RepairKind::RenewCertificates)
        || wanted("tls.receiver", RepairKind::RenewCertificates);
    let restart = wanted("tls.consumer", RepairKind::Restart);
    let fleet_rule = wanted("fleet.rule", RepairKind::Register);
    if !(renew || restart || fleet_rule) {
        return Vec::new();
    }
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn
        .acquire_lock(&s.namespace, s.cluster.release(), &holder)
        .await
    {
        Ok(l) => l,
        Err(e) => return vec![format!("nothing repaired: {e}")],
    };
    let mut done = Vec::new();
    if renew || restart {
        done.extend(certificates(s, conn, grafana, renew).await);
    }
    if fleet_rule && !crate::interrupt::stop().is_stopped() {
        if let Some(g) = grafana {
            done.push(rebuild_fleet_rule(s, g, found).await);
        }
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    done
}

/// Renew what is due (the CA rotates when due; the old CA stays trusted until it expires), give
/// every CMM datasource the new identity through the API, then restart what reads the Secrets
/// only at start, one at a time, each waited for.
async fn certificates(
    s: &CheckSettings,
    conn: &Connected,
    grafana: Option<&GrafanaClient>,
    renew: bool,
) -> Vec<String> {
    let mut done = Vec::new();
    let ns = &s.namespace;
    let now = SystemTime::now();
    if renew {
        let settings = s.reinstall_settings();
        let opts = crate::ops::install::options(&settings, String::new());
        match crate::ops::certificates::ensure(conn, &opts, &settings, None).await {
            Ok(steps) => done.extend(steps.into_iter().filter_map(|step| match step.action {
                cmm_installer::tls::TlsAction::Issue { why } => {
                    Some(format!("{}: issued ({why})", step.secret))
                }
                cmm_installer::tls::TlsAction::Keep { .. } => None,
            })),
            Err(e) => {
                done.push(format!("certificates not renewed: {e:#}"));
                return done;
            }
        }
    }
    let pki = match cmm_installer::tls::load_central(conn, ns, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return done,
        Err(e) => {
            done.push(format!("the renewed material could not be read back: {e}"));
            return done;
        }
    };
    if let Some(g) = grafana {
        let client = cmm_central::prometheus::ClientIdentity {
            cert_pem: pki.grafana.cert_pem.clone(),
            key: cmm_central::Secret::new(pki.grafana.key_pem.clone()),
        };
        match cmm_central::register::refresh_tls(g, &client, &pki.trust_pem).await {
            Ok(lines) => done.extend(lines),
            Err(e) => done.push(format!("datasources not updated: {e}")),
        }
    }
    let Some(changed) = cmm_installer::tls::central_changed_at(&pki) else {
        return done;
    };
    let found = match cmm_installer::consumers::gather(conn, ns, &s.plan.wiring).await {
        Ok(f) => f,
        Err(e) => {
            done.push(format!("consumers not read: {e}"));
            return done;
        }
    };
    for (name, d) in found {
        if crate::interrupt::stop().is_stopped() {
            break;
        }
        let stale = d
            .as_ref()
            .is_some_and(|d| cmm_installer::consumers::last_start(d).is_none_or(|t| t < changed));
        if !stale {
            continue;
        }
        let result = async {
            cmm_installer::consumers::restart(conn, ns, name, SystemTime::now()).await?;
            cmm_installer::consumers::wait_rolled_out(conn, ns, name, s.helm_run.timeout).await
        }
        .await;
        done.push(match result {
            Ok(()) => {
                format!("Deployment {name}: restarted to read the current certificates, rolled out")
            }
            // The next consumer is not restarted while one is not back: one at a time.
            Err(e) => {
                done.push(format!("Deployment {name}: restart did not finish: {e}"));
                break;
            }
        });
    }
    done
}

async fn rebuild_fleet_rule(
    s: &CheckSettings,
    g: &GrafanaClient,
    found: &CentralFindings,
) -> String {
    match reading(s) {
        Reading::PerCluster => match cmm_central::register::reconcile_fleet(g).await {
            Ok(r) if r.vanished.is_empty() => {
                format!("fleet rule rebuilt: counts {}", r.clusters.join(", "))
            }
            Ok(r) => format!(
                "fleet rule left as it is: {} registered but their datasource is gone",
                r.vanished.join(", ")
            ),
            Err(e) => format!("fleet rule not rebuilt: {e}"),
        },
        Reading::Shared { datasource_uid } => {
            let listed: Vec<&str> = found.fleet.iter().map(|r| r.cluster.as_str()).collect();
            let senders = fleet::gather(g, reading(s), None).await.senders;
            let joining: Vec<cmm_core::ClusterName> = senders
                .iter()
                .filter(|c| !listed.contains(&c.as_str()))
                .filter_map(|c| cmm_core::ClusterName::parse(c).ok())
                .collect();
            match cmm_central::register::reconcile_shared(g, &datasource_uid, &joining).await {
                Ok(now) => format!("shared rule set rebuilt: expects {}", now.join(", ")),
                Err(e) => format!("shared rule set not rebuilt: {e}"),
            }
        }
    }
}
