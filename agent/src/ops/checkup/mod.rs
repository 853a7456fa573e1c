//! `check`'s stages over one snapshot. [`findings`] gathers each stage (the reads of
//! `access::check`) and hands what it read to that stage's judge, a pure function
//! (`cmm_installer::health::judge`, `cmm_installer::tls::judge`, `cmm_central::health::judge_*`,
//! [`shared::judge`]); [`repair`] carries out the safe repairs. The command renders the findings.

pub mod central;
mod credentials;
mod repair;
pub mod shared;

use cmm_central::health as central_health;
use cmm_central::prometheus::PrometheusProbe;
use cmm_central::retry::RetryPolicy;
use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_installer::health::{self, Expected};
use cmm_installer::kube::{host_proc_version, Connected};

use crate::ops::registration::{PrometheusAccess, Registration};
use crate::settings::CheckSettings;

pub use repair::repair;

/// What one check runs on: its settings, and what was read before the stages.
pub struct Inputs<'a> {
    pub s: &'a CheckSettings,
    /// How the cluster's Prometheus is reached (with a client certificate over mutual TLS).
    pub prometheus: &'a PrometheusAccess,
    /// The Grafana client, with grafana-url.
    pub registration: Option<&'a Registration>,
    /// The central material (CA, Grafana's client certificate), with central-context.
    pub central: Option<&'a cmm_installer::tls::CentralPki>,
}

/// The API could not be reached at all: one failed finding, naming an exec credential plugin
/// and the fix when the kubeconfig uses one (its likeliest cause outside a login shell).
pub fn unreachable(kube: &cmm_installer::kube::KubeTarget, e: &dyn std::fmt::Display) -> Finding {
    let mut f = Finding::failed(
        Stage::Release,
        "kubernetes.unreachable",
        "the Kubernetes API",
    )
    .with(e.to_string());
    let exec = cmm_installer::kube::exec_plugin(kube);
    let in_unit = std::env::var_os("INVOCATION_ID").is_some();
    if let Some(c) = credentials::judge(exec.as_deref(), true, in_unit) {
        f.evidence.extend(c.evidence);
        f.repair = c.repair;
    }
    f
}

/// One snapshot, every stage gathered and judged.
pub async fn findings(i: &Inputs<'_>, conn: Option<&Connected>) -> Vec<Finding> {
    let mut out = Vec::new();
    let endpoint = match conn {
        Some(conn) => cluster_findings(i, conn, &mut out).await,
        None => None,
    };
    let Some(ep) = endpoint else {
        for (stage, id) in [
            (Stage::Prometheus, "prometheus"),
            (Stage::Grafana, "grafana"),
        ] {
            out.push(Finding::skipped(stage, id, "not judged").with("no endpoint to reach"));
        }
        return sorted(out);
    };
    out.extend(prometheus_findings(i, &ep).await);
    out.extend(grafana_findings(i, &ep).await);
    sorted(out)
}

/// Stages 1 and 2 and the endpoint, from the cluster's API. An API server that does not answer
/// is one cause: one failed finding, the reads after it skipped with the reason (the endpoint
/// is still taken from prometheus-url when given).
async fn cluster_findings(
    i: &Inputs<'_>,
    conn: &Connected,
    out: &mut Vec<Finding>,
) -> Option<cmm_central::endpoint::Endpoint> {
    let ns = &i.s.namespace;
    // The packaged unit runs check under systemd, which sets INVOCATION_ID for every run.
    let in_unit = std::env::var_os("INVOCATION_ID").is_some();
    let exec = conn.exec_plugin.as_deref();
    match access_findings(conn, ns).await {
        Err(mut unanswered) => {
            // An exec plugin is the likely cause: said in the one finding, with the fix.
            if let Some(c) = credentials::judge(exec, true, in_unit) {
                unanswered.evidence.extend(c.evidence);
                unanswered.repair = c.repair;
            }
            out.push(unanswered);
            let why = "not read: the Kubernetes API did not answer (kubernetes.access)";
            out.push(
                Finding::skipped(Stage::Release, "kubernetes.read", format!("namespace {ns}"))
                    .with(why),
            );
            out.push(
                Finding::skipped(
                    Stage::Endpoint,
                    "tls.certificates",
                    format!("Secret {}", cmm_core::naming::PROMETHEUS_TLS_SECRET),
                )
                .with(why),
            );
            return match &i.s.prometheus.url {
                Some(url) => Some(crate::ops::endpoint::flag_endpoint(url)),
                None => {
                    out.push(
                        Finding::skipped(
                            Stage::Endpoint,
                            "endpoint.discovery",
                            "the Prometheus endpoint",
                        )
                        .with(why),
                    );
                    None
                }
            };
        }
        Ok(found) => {
            out.extend(found);
            out.extend(credentials::judge(exec, false, in_unit));
        }
    }
    match health::gather(conn, ns, i.s.cluster.release()).await {
        Ok(snap) => {
            let expected = Expected {
                plan_digest: expected_digest(i.s, conn, &snap).await,
                chart_version: i
                    .s
                    .chart
                    .chart
                    .local_version()
                    .unwrap_or_else(|| cmm_installer::chart::CHART_VERSION.to_owned()),
            };
            out.extend(health::judge(&snap, &expected));
        }
        Err(e) => out.push(
            Finding::failed(Stage::Release, "kubernetes.read", format!("namespace {ns}"))
                .with(e.to_string()),
        ),
    }
    out.extend(tls_findings(i, conn).await);
    out.push(
        match crate::ops::crds::gather(conn, &i.s.chart.helm, &i.s.chart.chart).await {
            Ok((_, states)) => crate::ops::crds::judge(&states, &i.s.chart.chart),
            Err(e) => Finding::skipped(Stage::Release, "crds.version", "the operator's CRDs")
                .with(format!("not compared with the chart's: {e}")),
        },
    );
    match crate::ops::endpoint::find(conn, ns, &i.s.prometheus).await {
        Ok(ep) => {
            out.extend(plain_finding(i, &ep));
            Some(ep)
        }
        Err(e) => {
            out.push(
                Finding::failed(
                    Stage::Endpoint,
                    "endpoint.discovery",
                    "the Prometheus endpoint",
                )
                .with(format!("{e:#}")),
            );
            None
        }
    }
}

/// Pull registers the endpoint as the datasource: a plain one nobody asked for is named here,
/// as `--repair` would refuse to register it.
fn plain_finding(i: &Inputs<'_>, ep: &cmm_central::endpoint::Endpoint) -> Option<Finding> {
    let pull = matches!(
        i.s.plan.wiring.registration(),
        cmm_installer::topology::Registration::DatasourcePerCluster
    );
    let plain = crate::ops::endpoint::refuse_unasked_plain(ep, i.s.prometheus.insecure_plain_http);
    match (pull, plain) {
        (true, Err(e)) => Some(
            Finding::failed(Stage::Endpoint, "endpoint.plain", &ep.url)
                .with(format!("{e:#}"))
                .repair(
                    RepairKind::Manual,
                    "give insecure-plain-http if plain HTTP was chosen, else bootstrap again with mutual TLS",
                ),
        ),
        _ => None,
    }
}

/// Stages 3 and 4: the cluster's Prometheus from here (readiness, then its series).
async fn prometheus_findings(i: &Inputs<'_>, ep: &cmm_central::endpoint::Endpoint) -> Vec<Finding> {
    let mut out = Vec::new();
    let target = i.prometheus.target(ep);
    match PrometheusProbe::new(
        target.clone(),
        RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        },
    ) {
        // An agent answers /-/ready but no query: readiness is all there is to prove here, the
        // rest is proven at the receiver (below).
        Ok(probe) if !i.s.plan.wiring.queryable_on_cluster() => {
            out.push(central_health::judge_endpoint(
                &ep.url,
                &ep.detail,
                &probe.ready().await,
            ));
            out.push(
                Finding::skipped(
                    Stage::Prometheus,
                    "prometheus",
                    format!("Prometheus at {}", ep.url),
                )
                .with("agent mode: it answers no queries; its samples are checked at the receiver"),
            );
        }
        Ok(probe) => {
            let facts = probe.facts().await;
            out.push(central_health::judge_endpoint(
                &ep.url,
                &ep.detail,
                &facts.ready,
            ));
            if facts.ready.is_ok() {
                out.extend(central_health::judge_prometheus(
                    &i.s.cluster,
                    &ep.url,
                    &facts,
                    i.s.storage_warn,
                ));
            } else {
                out.push(
                    Finding::skipped(
                        Stage::Prometheus,
                        "prometheus",
                        format!("Prometheus at {}", ep.url),
                    )
                    .with("not reachable from here (stage 4)"),
                );
            }
        }
        Err(e) => out.push(
            Finding::failed(Stage::Endpoint, "endpoint.reachable", &ep.url).with(e.to_string()),
        ),
    }
    out
}

/// Stage 5: the central Grafana (the cluster's own datasource and rules in pull, the shared
/// stage in push and thanos).
async fn grafana_findings(i: &Inputs<'_>, ep: &cmm_central::endpoint::Endpoint) -> Vec<Finding> {
    let mut out = Vec::new();
    let target = i.prometheus.target(ep);
    match i.registration {
        Some(reg) if !i.s.plan.wiring.central_reads_cluster() => {
            let facts = shared::gather(
                reg,
                &i.s.cluster,
                &i.s.plan.wiring,
                &i.s.central,
                i.central,
                ep,
            )
            .await;
            out.extend(
                facts
                    .map(|f| shared::judge(&i.s.cluster, &f))
                    .unwrap_or_default(),
            );
        }
        None => out.push(
            Finding::warn(Stage::Grafana, "grafana.not-checked", "the central Grafana")
                .with("no grafana-url set: the last stage of the path is not proven")
                .repair(
                    RepairKind::Manual,
                    "set grafana-url and grafana-token-file in /etc/cmm/agent.toml",
                ),
        ),
        Some(reg) => match cmm_central::register::desired_datasource(&i.s.cluster, &target) {
            Ok(desired) => {
                let facts = central_health::grafana_facts(
                    &reg.client,
                    &i.s.cluster,
                    i.s.test_contact_points,
                )
                .await;
                out.extend(central_health::judge_grafana(
                    &i.s.cluster,
                    &desired,
                    reg.prometheus.settings.rules,
                    &facts,
                ));
            }
            Err(e) => out.push(
                Finding::failed(Stage::Grafana, "grafana.datasource", "datasource")
                    .with(e.to_string()),
            ),
        },
    }
    out
}

/// Gather the cluster's Secret (and the names it must carry), then judge (`tls::judge`).
async fn tls_findings(i: &Inputs<'_>, conn: &Connected) -> Vec<Finding> {
    let ns = &i.s.namespace;
    let insecure = !i.s.plan.wiring.mutual_tls();
    let state =
        match cmm_installer::tls::read_cluster(conn, ns, cmm_core::naming::PROMETHEUS_TLS_SECRET)
            .await
        {
            Ok(s) => s,
            Err(e) if !insecure => {
                return vec![Finding::failed(
                    Stage::Endpoint,
                    "tls.certificates",
                    format!("Secret {}", cmm_core::naming::PROMETHEUS_TLS_SECRET),
                )
                .with(e.to_string())]
            }
            Err(_) => Default::default(),
        };
    let sans = match i.central {
        Some(_) => match crate::ops::endpoint::advertised_sans(conn, &i.s.prometheus).await {
            Ok(s) => s,
            Err(e) => {
                return vec![Finding::failed(
                    Stage::Endpoint,
                    "tls.certificates",
                    "the addresses the certificate must carry",
                )
                .with(format!("{e:#}"))]
            }
        },
        None => Vec::new(),
    };
    let view = i
        .central
        .map(|pki| cmm_installer::tls::CentralView { pki, sans: &sans });
    let mut out = cmm_installer::tls::judge(
        &state,
        view.as_ref(),
        insecure,
        std::time::SystemTime::now(),
        i.s.central.renew_before,
    );
    if i.s.plan.wiring.sidecar_on_cluster() {
        out.extend(sidecar_finding(conn, ns, &state).await);
    }
    out
}

/// Thanos: whether the Prometheus pods (their sidecars) started after the cluster's
/// certificate was last issued (`cmm_installer::consumers`).
async fn sidecar_finding(
    conn: &Connected,
    ns: &str,
    state: &cmm_installer::tls::ClusterTlsState,
) -> Option<Finding> {
    let changed = sidecar_changed(state)?;
    Some(match sidecar_pods(conn, ns).await {
        Ok(pods) => {
            let stale = cmm_installer::consumers::stale_pods(&pods, changed);
            cmm_installer::consumers::judge_pods(ns, &stale, changed)
        }
        Err(e) => Finding::failed(Stage::Endpoint, "tls.consumer", "the Prometheus pods")
            .with(e.to_string()),
    })
}

/// When the sidecar's material last changed: the server certificate's issue (a changed trust
/// bundle is always issued together with a new one).
pub(crate) fn sidecar_changed(
    state: &cmm_installer::tls::ClusterTlsState,
) -> Option<std::time::SystemTime> {
    let info = cmm_pki::inspect(state.server_cert.as_deref()?, "the server certificate").ok()?;
    Some(info.not_before + std::time::Duration::from_secs(cmm_pki::BACKDATE_SECS as u64))
}

/// The operator's Prometheus pods of this release.
pub(crate) async fn sidecar_pods(
    conn: &Connected,
    ns: &str,
) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, cmm_installer::Error> {
    let selector = format!(
        "{}={}",
        cmm_core::naming::OPERATOR_PROMETHEUS_NAME_LABEL,
        cmm_core::naming::PROMETHEUS_CR
    );
    conn.list_labeled(ns, &selector).await
}

fn sorted(mut f: Vec<Finding>) -> Vec<Finding> {
    f.sort_by_key(|f| f.stage);
    f
}

/// The permissions check's reads need, reviewed before they are made: a denied one is one
/// finding naming it and the fix, not a row of failed reads.
/// `Err`: the API server did not answer the review at all (unreachable, credentials refused).
async fn access_findings(conn: &Connected, ns: &str) -> Result<Vec<Finding>, Finding> {
    let table = cmm_installer::access::check();
    let perms = cmm_installer::access::permissions(&table, ns);
    let answers = match conn.can_i(&perms).await {
        Ok(a) => a,
        Err(e) => {
            return Err(
                Finding::failed(Stage::Release, "kubernetes.access", "the agent's reads")
                    .with(e.to_string()),
            )
        }
    };
    let denied: Vec<String> = perms
        .iter()
        .zip(&answers)
        .filter(|(_, (ok, _))| !ok)
        .map(|(p, _)| p.describe())
        .collect();
    if denied.is_empty() {
        return Ok(Vec::new());
    }
    let mut f = Finding::failed(Stage::Release, "kubernetes.access", "the agent's reads");
    f.evidence
        .extend(denied.into_iter().map(|d| format!("cannot {d}")));
    Ok(vec![f.repair(
        RepairKind::Manual,
        "grant them: `cmm-agent rbac --role cluster --subject KIND:NAME | kubectl apply -f -`",
    )])
}

/// The digest bootstrap would store with these settings, in this environment.
async fn expected_digest(
    s: &CheckSettings,
    conn: &Connected,
    snap: &health::ClusterSnapshot,
) -> Option<String> {
    let server_version = conn.server_version().await.ok()?;
    let env = cmm_installer::detect::detect(&cmm_installer::detect::Observed {
        nodes: &snap.nodes,
        api_url: &conn.api_url,
        server_version: Some(&server_version),
        host_proc_version: host_proc_version(&s.helm_run.host_proc_version).as_deref(),
    });
    let opts = cmm_installer::bootstrap::Options {
        cluster: s.cluster.clone(),
        role: s.role,
        namespace: s.namespace.clone(),
        chart: s.chart.chart.clone(),
        helm_version: String::new(),
        user_values: s.plan.user_values.clone(),
        central_values: None,
        sets: s.plan.sets.clone(),
        kube_metrics: s.plan.kube_metrics,
        insecure_plain_http: !s.plan.wiring.mutual_tls(),
        wiring: s.plan.wiring.clone(),
        timeout_secs: 0,
        pending_grace_secs: 0,
        host_proc_version: None,
        dry_run: true,
        now_unix: 0,
    };
    Some(cmm_installer::bootstrap::plan_of(&opts, &env).2)
}
