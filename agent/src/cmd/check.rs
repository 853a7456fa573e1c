//! `cmm-agent check [--repair] [--reinstall]`: is the whole path from node-exporter to a
//! Grafana alert working for this cluster? Gather (the reads of `access::check`), judge in
//! pure functions (`cmm_installer::health`, `cmm_central::health`), print the findings once.
//! Reads only, unless `--repair` (the safe, idempotent repairs) or `--reinstall`.
//!
//! Exit 0 healthy, 1 degraded (warnings only), 2 failed — also when the check itself cannot
//! run (bad settings, no cluster), so an unattended timer never reads "healthy" by mistake.

use std::path::PathBuf;

use clap::Args;
use cmm_central::health as central_health;
use cmm_central::prometheus::PrometheusProbe;
use cmm_central::retry::RetryPolicy;
use cmm_core::finding::{Finding, RepairKind, Severity, Stage, Verdict};
use cmm_core::ClusterName;
use cmm_installer::health::{self, Expected};
use cmm_installer::kube::{connect, host_proc_version, Connected};

use crate::cli::{ChartArgs, GlobalArgs, KubeTargetArgs, Output, PlanInputs};
use crate::cmd::register::{EndpointArgs, GrafanaArgs, PrometheusAccess, Registration};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::output::outln;
use crate::settings::{check_namespace, kube_target, BadInput, DurationSetting};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster's name (its helm release and `cluster` label), e.g. kr-mum. Unset, check
    /// reports the host "not configured" (degraded, exit 1), not a failure: a freshly
    /// installed package's timer must not fail every 15 minutes before anyone edited its file.
    #[arg(help_heading = "Release", long, env = "CMM_CLUSTER")]
    pub cluster: Option<String>,
    /// Namespace of the release.
    #[arg(help_heading = "Kubernetes", long, env = "CMM_NAMESPACE")]
    pub namespace: String,
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub plan: PlanInputs,
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Carry out the safe, idempotent repairs: re-register a missing or drifted datasource or
    /// rule group, roll back a pending release under the run lock, the safe part of
    /// fix-storage. Never installs or upgrades the chart.
    #[arg(help_heading = "Repair", long, env = "CMM_REPAIR")]
    pub repair: bool,
    /// With --repair: also reinstall (`bootstrap`) when the release is missing, failed or
    /// drifted from its plan.
    #[arg(
        help_heading = "Repair",
        long,
        env = "CMM_REINSTALL",
        requires = "repair"
    )]
    pub reinstall: bool,
    /// Warn when the TSDB uses this percentage of its retention size or more (1-100).
    #[arg(help_heading = "Prometheus", long, env = "CMM_STORAGE_WARN")]
    pub storage_warn: u8,
    /// How long a repair's helm run may take, e.g. 10m.
    #[arg(help_heading = "Repair", long, env = "CMM_TIMEOUT")]
    pub timeout: String,
    /// See `bootstrap --help`: used by --reinstall.
    #[arg(help_heading = "Repair", long, env = "CMM_PENDING_GRACE")]
    pub pending_grace: String,
    /// Wait this long for claims during the storage repair, e.g. 30s.
    #[arg(help_heading = "Repair", long, env = "CMM_CLAIM_WAIT")]
    pub claim_wait: String,
    #[arg(long, env = "CMM_HOST_PROC_VERSION", hide = true)]
    pub host_proc_version: PathBuf,
}

/// The report `--output json` prints; the human renderer prints the same data.
#[derive(Debug, serde::Serialize)]
struct CheckReport {
    cluster: String,
    namespace: String,
    verdict: Verdict,
    findings: Vec<Finding>,
    /// What `--repair` changed, in order (empty without it).
    repaired: Vec<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: CheckArgs,
    config: &crate::settings::ConfigLocation,
) -> anyhow::Result<()> {
    let Some(cluster) = args.cluster.as_deref() else {
        return not_configured(global, &args, config);
    };
    // Every input first: a bad one is exit 2 with the setting named, nothing contacted.
    let cluster = ClusterName::parse(cluster)
        .classify(ExitCode::Usage)
        .context_setting("cluster")?;
    check_namespace(&args.namespace)?;
    if !(1..=100).contains(&args.storage_warn) {
        return Err(BadInput(format!(
            "{} is {}: give a percentage from 1 to 100",
            crate::settings::layers::named("storage-warn"),
            args.storage_warn
        )))
        .classify(ExitCode::Usage);
    }
    let timeout = DurationSetting::Timeout.parse(&args.timeout)?;
    DurationSetting::PendingGrace.parse(&args.pending_grace)?;
    let claim_wait = DurationSetting::ClaimWait.parse(&args.claim_wait)?;
    let user_values = args.plan.checked()?;
    let wiring = args.plan.wiring(false)?;
    let chart = crate::settings::ChartSettings::resolve(&args.chart)?;
    let mut prometheus = PrometheusAccess::resolve(&args.endpoint)?;
    let mut registration = match &args.grafana.grafana_url {
        Some(_) => Some(Registration::resolve(&args.grafana, &args.endpoint)?),
        None => None,
    };
    let renew_before =
        DurationSetting::CertRenewBefore.parse(&args.endpoint.tls.cert_renew_before)?;

    let mut report = CheckReport {
        cluster: cluster.to_string(),
        namespace: args.namespace.clone(),
        verdict: Verdict::Healthy,
        findings: Vec::new(),
        repaired: Vec::new(),
    };
    let conn = match connect(&kube_target(&args.kube)).await {
        Ok(c) => Some(c),
        Err(e) => {
            let code = installer_class(&e);
            if code == ExitCode::Usage {
                return Err(e).classify(code);
            }
            report.findings.push(
                Finding::failed(
                    Stage::Release,
                    "kubernetes.unreachable",
                    "the Kubernetes API",
                )
                .with(e.to_string()),
            );
            None
        }
    };
    // The certificates to present: Grafana's (central material, with --central-context), else
    // the cluster's own self-scrape identity, which its proxy admits too.
    let mtls = !args.plan.insecure_plain_http;
    let mut central = None;
    if let (true, Some(_)) = (mtls, &args.endpoint.tls.central_context) {
        match crate::cmd::register::central_pki(&args.endpoint.tls, &args.kube).await {
            Ok(pki) => {
                prometheus.use_central(&pki);
                if let Some(reg) = registration.as_mut() {
                    reg.prometheus.use_central(&pki);
                }
                central = Some(pki);
            }
            Err(e) => report.findings.push(
                Finding::failed(
                    Stage::Endpoint,
                    "tls.central",
                    "the CMM CA on the central cluster",
                )
                .with(format!("{e:#}")),
            ),
        }
    }
    if let (true, None, Some(conn)) = (mtls, &central, &conn) {
        if let Ok(Some((leaf, trust))) =
            cmm_installer::tls::self_identity(conn, &args.namespace).await
        {
            prometheus.use_identity(&leaf, &trust);
        }
    }
    let inputs = Inputs {
        cluster: &cluster,
        args: &args,
        user_values: &user_values,
        chart: &chart,
        prometheus: &prometheus,
        registration: registration.as_ref(),
        central: central.as_ref(),
        renew_before,
        wiring,
    };
    report.findings.extend(judge(&inputs, conn.as_ref()).await);

    if args.repair {
        if let Some(conn) = &conn {
            report.repaired = repair(&inputs, conn, &report.findings, timeout, claim_wait).await;
            if !report.repaired.is_empty() {
                // What is true now, not what was found before the repair.
                report.findings = judge(&inputs, Some(conn)).await;
            }
        }
    }
    report.verdict = Verdict::of(&report.findings);
    match global.output {
        Output::Json => crate::output::json(&report)?,
        Output::Human => print_human(&report),
    }
    for f in report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Ok)
    {
        let line = format!("{} {}: {}", f.id, f.subject, f.evidence.join("; "));
        match f.severity {
            Severity::Failed => tracing::error!(finding = %f.id, "{line}"),
            Severity::Warning => tracing::warn!(finding = %f.id, "{line}"),
            _ => {}
        }
    }
    match report.verdict {
        Verdict::Healthy => Ok(()),
        v => Err(BadInput(format!(
            "cluster {cluster} is {}: {} failed, {} warning(s)",
            match v {
                Verdict::Failed => "not monitored end to end",
                _ => "degraded",
            },
            report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Failed)
                .count(),
            report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
        )))
        .classify(if v == Verdict::Failed {
            ExitCode::CheckFailed
        } else {
            ExitCode::CheckDegraded
        }),
    }
}

/// No cluster name anywhere: the host was never configured (a package was installed and its
/// agent.toml not edited yet). One warning that says which file to edit; nothing is contacted.
fn not_configured(
    global: &GlobalArgs,
    args: &CheckArgs,
    config: &crate::settings::ConfigLocation,
) -> anyhow::Result<()> {
    let file = config.path.display().to_string();
    let report = CheckReport {
        cluster: String::new(),
        namespace: args.namespace.clone(),
        verdict: Verdict::Degraded,
        findings: vec![Finding::warn(Stage::Release, "settings.unfinished", &file)
            .with("cluster is not set (no --cluster, CMM_CLUSTER or `cluster` in the file)")
            .repair(
                RepairKind::Manual,
                format!(
                    "edit {file}: set cluster (this cluster's name) and grafana-url; put the \
                     Grafana token in /etc/cmm/grafana-token and this cluster's kubeconfig in \
                     /etc/cmm/kubeconfig (both 0600); `cmm-agent config validate` checks the file"
                ),
            )],
        repaired: Vec::new(),
    };
    match global.output {
        Output::Json => crate::output::json(&report)?,
        Output::Human => print_human(&report),
    }
    Err(BadInput(format!("not configured: edit {file}"))).classify(ExitCode::CheckDegraded)
}

struct Inputs<'a> {
    cluster: &'a ClusterName,
    args: &'a CheckArgs,
    user_values: &'a Option<Vec<(String, String)>>,
    chart: &'a crate::settings::ChartSettings,
    prometheus: &'a PrometheusAccess,
    registration: Option<&'a Registration>,
    /// The central material (CA, Grafana's client certificate), with --central-context.
    central: Option<&'a cmm_installer::tls::CentralPki>,
    renew_before: std::time::Duration,
    /// The fleet's topology: what is probed, and where the cluster's registration lives.
    wiring: cmm_installer::topology::Wiring,
}

trait SettingContext<T> {
    fn context_setting(self, key: &str) -> anyhow::Result<T>;
}

impl<T> SettingContext<T> for anyhow::Result<T> {
    fn context_setting(self, key: &str) -> anyhow::Result<T> {
        self.map_err(|e| e.context(crate::settings::layers::named(key)))
    }
}

/// One snapshot, every stage judged.
async fn judge(i: &Inputs<'_>, conn: Option<&Connected>) -> Vec<Finding> {
    let mut out = Vec::new();
    let ns = &i.args.namespace;
    let mut endpoint = None;
    if let Some(conn) = conn {
        out.extend(access_findings(conn, ns).await);
        match health::gather(conn, ns, i.cluster.release()).await {
            Ok(snap) => {
                let expected = Expected {
                    plan_digest: expected_digest(i, conn, &snap).await,
                    chart_version: i
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
        match i.prometheus.endpoint(conn, ns).await {
            Ok(ep) => endpoint = Some(ep),
            Err(e) => out.push(
                Finding::failed(
                    Stage::Endpoint,
                    "endpoint.discovery",
                    "the Prometheus endpoint",
                )
                .with(format!("{e:#}")),
            ),
        }
    }
    let Some(ep) = endpoint else {
        for (stage, id) in [
            (Stage::Prometheus, "prometheus"),
            (Stage::Grafana, "grafana"),
        ] {
            out.push(Finding::skipped(stage, id, "not judged").with("no endpoint to reach"));
        }
        return sorted(out);
    };
    let target = i.prometheus.target(&ep);
    match PrometheusProbe::new(
        target.clone(),
        RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        },
    ) {
        // An agent answers /-/ready but no query: readiness is all there is to prove here, the
        // rest is proven at the receiver (below).
        Ok(probe) if !i.wiring.queryable_on_cluster() => {
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
                    i.cluster,
                    &ep.url,
                    &facts,
                    i.args.storage_warn,
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
    match i.registration {
        Some(reg) if !i.wiring.central_reads_cluster() => {
            out.extend(shared_findings(i, reg, &ep).await)
        }
        None => out.push(
            Finding::warn(Stage::Grafana, "grafana.not-checked", "the central Grafana")
                .with("no grafana-url set: the last stage of the path is not proven")
                .repair(
                    RepairKind::Manual,
                    "set grafana-url and grafana-token-file in /etc/cmm/agent.toml",
                ),
        ),
        Some(reg) => match cmm_central::register::desired_datasource(i.cluster, &target) {
            Ok(desired) => {
                let facts = central_health::grafana_facts(&reg.client, i.cluster).await;
                out.extend(central_health::judge_grafana(
                    i.cluster,
                    &desired,
                    reg.prometheus.rules_mode(),
                    &facts,
                ));
            }
            Err(e) => out.push(
                Finding::failed(Stage::Grafana, "grafana.datasource", "datasource")
                    .with(e.to_string()),
            ),
        },
    }
    sorted(out)
}

/// The Grafana stage in push and thanos: the shared datasource, the cluster's place in the
/// shared rule set, and where the data meets (push: the receiver holds the cluster's samples;
/// thanos: the sidecar's address is in the endpoints ConfigMap).
async fn shared_findings(
    i: &Inputs<'_>,
    reg: &Registration,
    ep: &cmm_central::endpoint::Endpoint,
) -> Vec<Finding> {
    use cmm_installer::topology::{self, Topology};
    let mut out = Vec::new();
    let topo = i.wiring.topology;
    let uid = topo.shared_datasource_uid().expect("a shared topology");
    let register = |f: Finding| {
        f.repair(
            RepairKind::Register,
            format!("`cmm-agent register --topology {topo}` (or check --repair)"),
        )
    };
    match reg.client.datasource_by_uid(uid).await {
        Ok(Some(_)) => match reg.client.datasource_health(uid).await {
            Ok(h) if h.ok => out.push(
                Finding::ok(Stage::Grafana, "grafana.shared-datasource", format!("datasource {uid}"))
                    .with(format!("shared by every cluster ({topo}); Grafana's check: {}", h.message)),
            ),
            Ok(h) => out.push(
                Finding::failed(Stage::Grafana, "grafana.shared-datasource", format!("datasource {uid}"))
                    .with(format!("Grafana's check through it failed: {}", h.message))
                    .repair(RepairKind::Manual, "the central store does not answer Grafana: run `cmm-agent check` on the central node"),
            ),
            Err(e) => out.push(
                Finding::failed(Stage::Grafana, "grafana.shared-datasource", format!("datasource {uid}"))
                    .with(e.to_string()),
            ),
        },
        Ok(None) => out.push(
            Finding::failed(Stage::Grafana, "grafana.shared-datasource", format!("datasource {uid}"))
                .with(format!("the central Grafana has no datasource {uid}, which topology {topo} provisions"))
                .repair(
                    RepairKind::Manual,
                    format!("`cmm-agent bootstrap --role central --topology {topo}` on the central admin host"),
                ),
        ),
        Err(e) => out.push(
            Finding::failed(Stage::Grafana, "grafana.shared-datasource", "the central Grafana")
                .with(e.to_string()),
        ),
    }
    let subject = format!(
        "rule group {}/{}",
        cmm_central::rules::FLEET_FOLDER_UID,
        cmm_central::rules::SHARED_GROUP
    );
    match reg
        .client
        .rule_group(
            cmm_central::rules::FLEET_FOLDER_UID,
            cmm_central::rules::SHARED_GROUP,
        )
        .await
    {
        Ok(group) => {
            let members = group
                .as_ref()
                .map(cmm_central::rules::shared_members)
                .unwrap_or_default();
            if members.contains(i.cluster) {
                out.push(
                    Finding::ok(Stage::Grafana, "grafana.shared-rules", &subject).with(format!(
                        "CmmClusterSilent expects {} cluster(s), {} among them",
                        members.len(),
                        i.cluster
                    )),
                );
            } else {
                out.push(register(
                    Finding::failed(Stage::Grafana, "grafana.shared-rules", &subject).with(
                        format!(
                            "{} is not registered: nothing alerts when it goes silent",
                            i.cluster
                        ),
                    ),
                ));
            }
        }
        Err(e) => out.push(
            Finding::failed(Stage::Grafana, "grafana.shared-rules", &subject).with(e.to_string()),
        ),
    }
    match topo {
        Topology::Push => {
            let probe = i
                .central
                .and_then(|pki| crate::cmd::register::receiver_probe(&i.wiring, pki, 2));
            let base = i
                .wiring
                .receiver_url
                .as_deref()
                .and_then(crate::cmd::register::receiver_base);
            match (base, probe) {
                (_, Some((base, probe))) => {
                    let f = match probe {
                        Ok(p) => match p.cluster_series(i.cluster).await {
                            Ok(n) if n > 0 => Finding::ok(Stage::Grafana, "push.receiver", &base)
                                .with(format!("{n} `up` series of {} arrived within the lookback", i.cluster)),
                            Ok(_) => Finding::failed(Stage::Grafana, "push.receiver", &base)
                                .with(format!("the receiver holds no recent sample of {}: its Prometheus does not reach receiver-url", i.cluster))
                                .repair(RepairKind::Manual, "read the remote-write errors in the cluster's Prometheus log (docs/runbook.md#cmmclustersilent)"),
                            Err(e) => Finding::failed(Stage::Grafana, "push.receiver", &base).with(e.to_string()),
                        },
                        Err(e) => Finding::failed(Stage::Grafana, "push.receiver", &base).with(e.to_string()),
                    };
                    out.push(f);
                }
                (Some(base), None) => out.push(
                    Finding::skipped(Stage::Grafana, "push.receiver", base)
                        .with("the receiver admits only Grafana's certificate for reads: set central-context to check it"),
                ),
                (None, _) => {}
            }
        }
        Topology::Thanos => {
            let subject = format!("ConfigMap {}", topology::THANOS_ENDPOINTS_CONFIGMAP);
            let Some(context) = &i.args.endpoint.tls.central_context else {
                out.push(
                    Finding::skipped(Stage::Grafana, "thanos.endpoint", subject).with(
                        "the endpoints are on the central cluster: set central-context to check it",
                    ),
                );
                return out;
            };
            let want = crate::cmd::register::endpoint_host(ep).map(|h| topology::endpoint_file(&h));
            let key = topology::endpoint_key(i.cluster);
            let ns = &i.args.endpoint.tls.central_namespace;
            let got = match crate::cmd::register::central_connection(
                &i.args.endpoint.tls,
                &i.args.kube,
                context,
            )
            .await
            {
                Ok(conn) => conn
                    .configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:#}")),
            };
            out.push(match (got, want) {
                (Ok(Some(g)), Some(w)) if g == w => {
                    Finding::ok(Stage::Grafana, "thanos.endpoint", subject)
                        .with(format!("key {key}: {}", w.lines().last().unwrap_or("")))
                }
                (Ok(Some(_)), _) => register(
                    Finding::failed(Stage::Grafana, "thanos.endpoint", subject).with(format!(
                        "key {key} names another address than this cluster's {}",
                        ep.url
                    )),
                ),
                (Ok(None), _) => register(
                    Finding::failed(Stage::Grafana, "thanos.endpoint", subject).with(format!(
                        "no key {key}: Thanos Query does not read this cluster"
                    )),
                ),
                (Err(e), _) => Finding::failed(Stage::Grafana, "thanos.endpoint", subject).with(e),
            });
        }
        Topology::Pull => {}
    }
    out
}

/// Gather the cluster's Secret (and the names it must carry), then judge (`tls::judge`).
async fn tls_findings(i: &Inputs<'_>, conn: &Connected) -> Vec<Finding> {
    let ns = &i.args.namespace;
    let insecure = i.args.plan.insecure_plain_http;
    let state = match cmm_installer::tls::read_cluster(conn, ns).await {
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
        Some(_) => match crate::cmd::register::advertised_sans(conn, &i.args.endpoint).await {
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
    cmm_installer::tls::judge(
        &state,
        view.as_ref(),
        insecure,
        std::time::SystemTime::now(),
        i.renew_before,
    )
}

/// Issue the cluster's certificates anew under the run lock (decided again there).
async fn renew_certificates(i: &Inputs<'_>, conn: &Connected) -> String {
    let Some(central) = i.central else {
        return "certificates not renewed: set central-context (the CMM CA is on the central \
                cluster)"
            .into();
    };
    let ns = &i.args.namespace;
    let sans = match crate::cmd::register::advertised_sans(conn, &i.args.endpoint).await {
        Ok(s) => s,
        Err(e) => return format!("certificates not renewed: {e:#}"),
    };
    let holder = cmm_installer::lock::holder_identity();
    let lock = match conn.acquire_lock(ns, i.cluster.release(), &holder).await {
        Ok(l) => l,
        Err(e) => return format!("certificates not renewed: {e}"),
    };
    let result = cmm_installer::tls::ensure_cluster(
        conn,
        ns,
        i.cluster.release(),
        central,
        &sans,
        std::time::SystemTime::now(),
        i.renew_before,
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

fn sorted(mut f: Vec<Finding>) -> Vec<Finding> {
    f.sort_by_key(|f| f.stage);
    f
}

/// The permissions check's reads need, reviewed before they are made: a denied one is one
/// finding naming it and the fix, not a row of failed reads.
async fn access_findings(conn: &Connected, ns: &str) -> Vec<Finding> {
    let table = cmm_installer::access::check();
    let perms = cmm_installer::access::permissions(&table, ns);
    let answers = match conn.can_i(&perms).await {
        Ok(a) => a,
        Err(e) => {
            return vec![
                Finding::failed(Stage::Release, "kubernetes.access", "the agent's reads")
                    .with(e.to_string()),
            ]
        }
    };
    let denied: Vec<String> = perms
        .iter()
        .zip(&answers)
        .filter(|(_, (ok, _))| !ok)
        .map(|(p, _)| p.describe())
        .collect();
    if denied.is_empty() {
        return Vec::new();
    }
    let mut f = Finding::failed(Stage::Release, "kubernetes.access", "the agent's reads");
    f.evidence
        .extend(denied.into_iter().map(|d| format!("cannot {d}")));
    vec![f.repair(
        RepairKind::Manual,
        "grant them: `cmm-agent rbac --role cluster --subject KIND:NAME | kubectl apply -f -`",
    )]
}

/// The digest bootstrap would store with these settings, in this environment.
async fn expected_digest(
    i: &Inputs<'_>,
    conn: &Connected,
    snap: &health::ClusterSnapshot,
) -> Option<String> {
    let server_version = conn.server_version().await.ok()?;
    let env = cmm_installer::detect::detect(&cmm_installer::detect::Observed {
        nodes: &snap.nodes,
        api_url: &conn.api_url,
        server_version: Some(&server_version),
        host_proc_version: host_proc_version(&i.args.host_proc_version).as_deref(),
    });
    let opts = cmm_installer::bootstrap::Options {
        cluster: i.cluster.clone(),
        role: cmm_installer::topology::Role::Cluster,
        namespace: i.args.namespace.clone(),
        chart: i.chart.chart.clone(),
        helm_version: String::new(),
        user_values: i.user_values.clone(),
        central_values: None,
        sets: i.args.plan.sets.clone(),
        kube_metrics: i.args.plan.kube_metrics,
        insecure_plain_http: i.args.plan.insecure_plain_http,
        wiring: i.wiring.clone(),
        timeout_secs: 0,
        pending_grace_secs: 0,
        host_proc_version: None,
        dry_run: true,
        now_unix: 0,
    };
    Some(cmm_installer::bootstrap::plan_of(&opts, &env).2)
}

/// Carry out the repairs the findings name, each kind once; returns what was changed.
async fn repair(
    i: &Inputs<'_>,
    conn: &Connected,
    findings: &[Finding],
    timeout: std::time::Duration,
    claim_wait: std::time::Duration,
) -> Vec<String> {
    let wanted = |kind: RepairKind| {
        findings.iter().any(|f| {
            f.severity != Severity::Ok && f.repair.as_ref().is_some_and(|r| r.kind == kind)
        })
    };
    let mut done = Vec::new();
    let ns = &i.args.namespace;
    if wanted(RepairKind::Reinstall) {
        if i.args.reinstall {
            done.push(match crate::cmd::bootstrap::reinstall(i.args).await {
                Ok(()) => "reinstalled with `bootstrap` (helm upgrade --install)".to_owned(),
                Err(e) => format!("reinstall failed: {e:#}"),
            });
            // bootstrap ends by registering, and it recovers pending releases itself.
            return done;
        }
        tracing::warn!("a finding needs a reinstall; pass --reinstall (with --repair) to let check run bootstrap");
    } else if wanted(RepairKind::RecoverRelease) {
        done.push(recover_release(i, conn, timeout).await);
    }
    if wanted(RepairKind::FixStorage) {
        match conn.stuck_storage(ns).await {
            Ok(plan) => {
                let safe = cmm_installer::storage::StoragePlan {
                    actions: health::safe_storage_actions(&plan),
                    skipped: Vec::new(),
                };
                done.extend(crate::cmd::fix_storage::apply(conn, ns, &safe, claim_wait).await);
            }
            Err(e) => done.push(format!("storage repair: cannot read the plan: {e}")),
        }
    }
    if wanted(RepairKind::RenewCertificates) {
        done.push(renew_certificates(i, conn).await);
    }
    if wanted(RepairKind::Register) && !i.wiring.central_reads_cluster() {
        if let Some(reg) = i.registration {
            let ep = i.prometheus.endpoint(conn, ns).await.ok();
            let shared = crate::cmd::register::SharedTarget {
                wiring: &i.wiring,
                tls: &i.args.endpoint.tls,
                kube: &i.args.kube,
                central: i.central,
            };
            let quiet = GlobalArgs {
                config: None,
                log_format: crate::logging::LogFormat::Human,
                log_level: String::new(),
                output: Output::Json,
            };
            done.push(
                match crate::cmd::register::register_shared(
                    &quiet,
                    reg,
                    i.cluster,
                    ep.as_ref(),
                    &shared,
                    false,
                )
                .await
                {
                    Ok(()) => format!(
                        "re-registered in the shared rule set ({})",
                        i.wiring.topology
                    ),
                    Err(e) => format!("re-registration failed: {e:#}"),
                },
            );
        }
    } else if wanted(RepairKind::Register) {
        // Without the central material a datasource would be written without Grafana's client
        // certificate, and the proxy would turn Grafana away: refuse rather than break it.
        if !i.args.plan.insecure_plain_http && i.central.is_none() {
            done.push(
                "not re-registered: the datasource needs Grafana's client certificate from the \
                 central cluster; set central-context"
                    .into(),
            );
        } else if let (Some(reg), Ok(ep)) = (i.registration, i.prometheus.endpoint(conn, ns).await)
        {
            let req = reg.request(i.cluster.clone(), &ep);
            done.push(match cmm_central::register(&reg.client, &req).await {
                Ok(r) => format!(
                    "re-registered: datasource {} {:?}, rules {}",
                    r.datasource_uid,
                    r.datasource,
                    r.rules.as_ref().map_or("skipped", |x| if x.changed {
                        "written"
                    } else {
                        "unchanged"
                    })
                ),
                Err(e) => format!("re-registration failed: {e}"),
            });
        }
    }
    for d in &done {
        tracing::info!("repair: {d}");
    }
    done
}

/// `helm rollback` of a pending revision to the last good one, holding the run lock.
async fn recover_release(i: &Inputs<'_>, conn: &Connected, timeout: std::time::Duration) -> String {
    let ns = &i.args.namespace;
    let release = i.cluster.release();
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
        i.chart.helm.run(&args).await?;
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

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "✓",
        Severity::Warning => "!",
        Severity::Failed => "✗",
        Severity::Skipped => "-",
    }
}

fn print_human(r: &CheckReport) {
    if r.cluster.is_empty() {
        outln!("Not configured: {:?}", r.verdict);
    } else {
        outln!(
            "Cluster {} (namespace {}): {:?}",
            r.cluster,
            r.namespace,
            r.verdict
        );
    }
    for stage in Stage::ALL {
        let here: Vec<&Finding> = r.findings.iter().filter(|f| f.stage == stage).collect();
        if here.is_empty() {
            continue;
        }
        outln!("{}", stage.title());
        for f in here {
            outln!(
                "  {} {}: {}",
                mark(f.severity),
                f.subject,
                f.evidence.join("; ")
            );
            if let Some(rep) = &f.repair {
                if f.severity != Severity::Ok {
                    outln!("      repair ({:?}): {}", rep.kind, rep.detail);
                }
            }
        }
    }
    for d in &r.repaired {
        outln!("repaired: {d}");
    }
}
