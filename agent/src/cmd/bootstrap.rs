//! `cmm-agent bootstrap`: make one cluster monitored. The order is the contract:
//!
//! 1. check every input (nothing touched);
//! 2. check helm;
//! 3. reach the API;
//! 4. detect, preflight and plan (reads only);
//! 5. `--dry-run`: render and stop;
//! 6. apply: namespace, recovery of a pending release, `helm upgrade --install --wait`
//!    (skipped when the same plan is already deployed);
//! 7. report workload readiness, or explain a failure with pod states and events.

use anyhow::Context;
use cmm_core::ClusterName;
use cmm_installer::bootstrap::{prepare, Options, Prepared, Report};
use cmm_installer::helm::{kube_version_args, Helm};
use cmm_installer::kube::{connect, host_proc_version, Connected};
use cmm_installer::preflight::Check;
use cmm_installer::release::Next;
use cmm_installer::render::Rendered;
use cmm_installer::topology::Role;
use cmm_installer::workloads;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};

use crate::cli::{BootstrapArgs, GlobalArgs, Output, RoleArg};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::output::outln;
use crate::progress::Progress;
use crate::settings::{check_namespace, kube_target, BadInput, ChartSettings, DurationSetting};

pub async fn run(global: &GlobalArgs, args: BootstrapArgs) -> anyhow::Result<()> {
    // 1. Inputs. Every error here names the flag and the fix; nothing has been contacted.
    let cluster = ClusterName::parse(&args.cluster)
        .classify(ExitCode::Usage)
        .context("--cluster / CMM_CLUSTER")?;
    check_namespace(&args.namespace)?;
    refuse_other_roles_flags(&args)?;
    let user_values = args.plan.checked()?;
    let wiring = args.plan.wiring(args.role == RoleArg::Central)?;
    let timeout_secs = DurationSetting::Timeout.parse(&args.timeout)?.as_secs();
    let grace = DurationSetting::PendingGrace
        .parse(&args.pending_grace)?
        .as_secs();
    let settings = ChartSettings::resolve(&args.chart)?;
    // The Grafana step's inputs too: a bad token file or URL must not surface after the install.
    let mut registration = match (args.role, &args.grafana.grafana_url) {
        (RoleArg::Cluster, Some(_)) => Some(crate::cmd::register::Registration::resolve(
            &args.grafana,
            &args.endpoint,
        )?),
        (RoleArg::Central, Some(_)) => {
            crate::cmd::central::validate_inputs(&args.grafana, &args.central)?;
            None
        }
        (_, None) => None,
    };

    let renew_before =
        DurationSetting::CertRenewBefore.parse(&args.endpoint.tls.cert_renew_before)?;
    let mtls = args.role == RoleArg::Cluster && !args.plan.insecure_plain_http;
    if mtls && !args.dry_run && args.endpoint.tls.central_context.is_none() {
        return Err(BadInput(
            "this cluster's Prometheus is served over mutual TLS by default, with a server \
             certificate from the CMM CA on the central cluster: pass --central-context (the \
             central cluster's kubeconfig context) so the agent can issue it, or, knowingly, \
             --insecure-plain-http (docs/security.md)"
                .into(),
        ))
        .classify(ExitCode::Usage);
    }

    // 2. helm, before the cluster: a missing tool should not cost an API round trip.
    let helm_version = settings.helm.version().await.classify_by(installer_class)?;

    // 3. The cluster. A missing kubeconfig/context is bad input; no answer is exit 5.
    let conn = connect(&kube_target(&args.kube))
        .await
        .classify_by(installer_class)?;

    let role = match args.role {
        RoleArg::Cluster => Role::Cluster,
        RoleArg::Central => Role::Central,
    };
    let opts = Options {
        cluster,
        role,
        namespace: args.namespace.clone(),
        chart: settings.chart.clone(),
        helm_version,
        user_values,
        central_values: None,
        sets: args.plan.sets.clone(),
        kube_metrics: args.plan.kube_metrics,
        insecure_plain_http: args.plan.insecure_plain_http,
        wiring,
        timeout_secs,
        pending_grace_secs: i64::try_from(grace).unwrap_or(i64::MAX),
        host_proc_version: host_proc_version(&args.host_proc_version),
        dry_run: args.dry_run,
        now_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let progress = Progress::new();

    // The CMM CA, read (never written) from the central cluster before anything changes.
    let central = if mtls && !args.dry_run {
        let pki = progress
            .step(
                "read the CMM CA from the central cluster",
                crate::cmd::register::central_pki(&args.endpoint.tls, &args.kube),
            )
            .await?;
        if let Some(reg) = registration.as_mut() {
            reg.prometheus.use_central(&pki);
        }
        Some(pki)
    } else {
        None
    };

    // 4. Read-only: detect, preflight, plan.
    let mut prepared = progress
        .step("detect, preflight and plan", prepare(&conn, &opts))
        .await
        .classify_by(installer_class)?;
    let preflight_ok = prepared.report.preflight_failed().next().is_none();

    // 5. Dry run: render exactly what would be installed, change nothing.
    if args.dry_run {
        let release = prepared.release(&opts);
        let mut args = Helm::template_args(&release);
        args.extend(kube_version_args(&prepared.report.server_version));
        let stream = progress
            .step("render with helm template", settings.helm.run(&args))
            .await
            .classify_by(installer_class)?;
        let rendered = Rendered::parse(&stream).classify(ExitCode::Chart)?;
        prepared.report.rendered = Some(rendered.kinds());
        prepared.report.outcome = "dry-run: nothing changed".into();
        emit(global, &prepared.report)?;
        return preflight_verdict(&prepared.report, preflight_ok);
    }
    if !preflight_ok {
        prepared.report.outcome = "preflight failed: nothing changed".into();
        emit(global, &prepared.report)?;
        return preflight_verdict(&prepared.report, preflight_ok);
    }

    // Grafana, before the cluster is changed: a wrong URL or token fails now, with nothing
    // installed.
    if let Some(reg) = &registration {
        if args.skip_grafana_check {
            prepared.report.preflight.push(Check {
                check: "grafana".into(),
                ok: true,
                detail: "not checked before the install (--skip-grafana-check); registration \
                         runs at the end"
                    .into(),
            });
        } else {
            let checked = progress
                .step(
                    "check the central Grafana",
                    stop_or(reg.precheck(&opts.cluster, &opts.wiring)),
                )
                .await;
            match checked {
                Ok(detail) => prepared.report.preflight.push(Check {
                    check: "grafana".into(),
                    ok: true,
                    detail,
                }),
                Err(e) => {
                    prepared.report.outcome =
                        "the central Grafana check failed: nothing changed".into();
                    emit(global, &prepared.report)?;
                    return Err(e.context(
                        "checking the central Grafana before installing; nothing was changed \
                         (pass --skip-grafana-check when Grafana cannot be reached from here yet)",
                    ));
                }
            }
        }
    }

    // 6. Apply, holding the run lock of the release for everything that writes.
    let stop = crate::interrupt::stop();
    let helm = settings.helm.clone().with_stop(stop.clone());
    crate::interrupt::stage(
        "nothing was changed",
        "starts from the beginning, as this one did",
    );
    if !prepared.namespace_exists {
        progress
            .step(
                &format!("create namespace {}", opts.namespace),
                stop.or_stop(
                    "creating the namespace",
                    conn.create_namespace(&opts.namespace),
                ),
            )
            .await
            .classify_by(installer_class)?;
        crate::interrupt::stage(
            format!("only namespace {} was created", opts.namespace),
            "installs into it",
        );
    }
    let holder = cmm_installer::lock::holder_identity();
    let lock = progress
        .step(
            "take the run lock",
            stop.or_stop(
                "taking the run lock",
                conn.acquire_lock(&opts.namespace, opts.cluster.release(), &holder),
            ),
        )
        .await
        .classify_by(installer_class)?;
    {
        // Losing the lock mid-run (another host took it over) stops this run like a signal.
        let (lost, stop) = (lock.lost.clone(), stop.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.stop("the run lock was lost to another run");
        });
    }
    if let Some(prev) = &lock.took_over {
        prepared.report.outcome = format!("took over the expired run lock of {prev}");
    }
    let tls = TlsPlan {
        central: central.as_ref(),
        renew_before,
    };
    let result = locked(
        global,
        &args,
        &conn,
        &helm,
        &opts,
        &mut prepared,
        &progress,
        &stop,
        registration.as_ref(),
        &tls,
    )
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    result
}

/// `check --repair --reinstall`: bootstrap with check's settings (it recovers, upgrades only
/// when the plan changed, waits and registers). Its report is not printed: check reports.
pub async fn reinstall(c: &crate::cmd::check::CheckArgs) -> anyhow::Result<()> {
    use crate::settings::layers::default_of;
    let global = GlobalArgs {
        config: None,
        log_format: crate::logging::LogFormat::Human,
        log_level: String::new(),
        output: Output::Json,
    };
    let args = BootstrapArgs {
        chart: c.chart.clone(),
        kube: c.kube.clone(),
        cluster: c.cluster.clone().unwrap_or_default(),
        role: RoleArg::Cluster,
        namespace: c.namespace.clone(),
        plan: c.plan.clone(),
        dry_run: false,
        timeout: c.timeout.clone(),
        pending_grace: c.pending_grace.clone(),
        host_proc_version: c.host_proc_version.clone(),
        skip_grafana_check: false,
        grafana: c.grafana.clone(),
        endpoint: c.endpoint.clone(),
        central: crate::cmd::central::CentralBootstrapArgs {
            grafana_wait: default_of("grafana-wait"),
            registration_token_out: None,
            registration_service_account: default_of("registration-service-account"),
        },
        given: Vec::new(),
    };
    run(&global, args).await
}

/// What bootstrap does with TLS: the central material (cluster role), and when to renew.
struct TlsPlan<'a> {
    central: Option<&'a cmm_installer::tls::CentralPki>,
    renew_before: std::time::Duration,
}

/// The TLS Secrets, under the lock and before helm: the proxy's pod cannot start without its
/// Secret, and the central role keeps the CA every cluster's certificate comes from.
async fn ensure_tls(
    conn: &Connected,
    opts: &Options,
    args: &BootstrapArgs,
    tls: &TlsPlan<'_>,
) -> anyhow::Result<Vec<cmm_installer::bootstrap::TlsStep>> {
    use cmm_installer::bootstrap::TlsStep;
    let now = std::time::SystemTime::now();
    match (opts.role, tls.central) {
        (Role::Central, _) => {
            use cmm_installer::topology::{self, Topology};
            let (pki, actions) =
                cmm_installer::tls::ensure_central(conn, &opts.namespace, now, tls.renew_before)
                    .await
                    .classify_by(installer_class)?;
            let mut steps: Vec<TlsStep> = actions
                .into_iter()
                .map(|(secret, action)| TlsStep { secret, action })
                .collect();
            match opts.wiring.topology {
                // The receiver's server certificate: the name push.yaml's clients check
                // (cmm-receiver) and the central nodes' addresses the clusters dial.
                Topology::Push => {
                    let mut sans = vec![cmm_pki::San::Dns(topology::RECEIVER_SERVER_NAME.into())];
                    sans.extend(crate::cmd::register::advertised_sans(conn, &args.endpoint).await?);
                    let action = cmm_installer::tls::ensure_cluster(
                        conn,
                        &opts.namespace,
                        topology::RECEIVER_SERVER_NAME,
                        &pki,
                        &sans,
                        now,
                        tls.renew_before,
                    )
                    .await
                    .classify_by(installer_class)?;
                    steps.push(TlsStep {
                        secret: format!(
                            "Secret {} (the receiver)",
                            cmm_core::naming::PROMETHEUS_TLS_SECRET
                        ),
                        action,
                    });
                }
                // Where the clusters' registrations put their sidecars' addresses; Query
                // mounts it (optional) and re-reads it.
                Topology::Thanos => {
                    let created = conn
                        .ensure_configmap(&opts.namespace, topology::THANOS_ENDPOINTS_CONFIGMAP)
                        .await
                        .classify_by(installer_class)?;
                    tracing::info!(
                        created,
                        "ConfigMap {} for the clusters' store endpoints",
                        topology::THANOS_ENDPOINTS_CONFIGMAP
                    );
                }
                Topology::Pull => {}
            }
            Ok(steps)
        }
        (Role::Cluster, Some(central)) => {
            let sans = crate::cmd::register::advertised_sans(conn, &args.endpoint).await?;
            let action = cmm_installer::tls::ensure_cluster(
                conn,
                &opts.namespace,
                opts.cluster.release(),
                central,
                &sans,
                now,
                tls.renew_before,
            )
            .await
            .classify_by(installer_class)?;
            Ok(vec![TlsStep {
                secret: format!("Secret {}", cmm_core::naming::PROMETHEUS_TLS_SECRET),
                action,
            }])
        }
        (Role::Cluster, None) => Ok(Vec::new()),
    }
}

/// Everything bootstrap does while it holds the run lock: decide again on fresh state, apply,
/// report readiness, wait for Prometheus, and register.
#[allow(clippy::too_many_arguments)]
async fn locked(
    global: &GlobalArgs,
    args: &BootstrapArgs,
    conn: &Connected,
    helm: &Helm,
    opts: &Options,
    prepared: &mut Prepared,
    progress: &Progress,
    stop: &cmm_installer::stop::Stop,
    registration: Option<&crate::cmd::register::Registration>,
    tls: &TlsPlan<'_>,
) -> anyhow::Result<()> {
    stop.or_stop(
        "reading the release under the lock",
        prepared.refresh_next(conn, opts),
    )
    .await
    .classify_by(installer_class)?;
    if let Next::Blocked { reason } = &prepared.next {
        prepared.report.outcome = format!("blocked: {reason}");
        emit(global, &prepared.report)?;
        return Err(BadInput(format!(
            "release {}: {reason}",
            opts.cluster.release()
        )))
        .classify(ExitCode::Preflight);
    }
    // A blocked release changes nothing, so the certificates come after that decision.
    prepared.report.tls = progress
        .step(
            "issue or keep the TLS certificates",
            ensure_tls(conn, opts, args, tls),
        )
        .await?;
    let result = apply(conn, helm, opts, prepared, progress).await;
    if let Err(err) = &result {
        if ExitCode::of(err) == ExitCode::Install {
            prepared.report.outcome = format!("install failed: {err}");
            for line in explain(conn, &opts.namespace).await {
                crate::output::note(&line);
            }
        }
        emit(global, &prepared.report)?;
        return result;
    }

    // 7. The Prometheus the operator makes after helm is done, then what is running now.
    if opts.role == Role::Cluster {
        let waited = progress
            .step(
                "wait for the operator-made Prometheus",
                stop.or_stop(
                    "waiting for Prometheus",
                    wait_for_prometheus(conn, &opts.namespace, opts.timeout_secs),
                ),
            )
            .await
            .classify_by(installer_class)?;
        if let Err(last) = waited {
            for line in explain(conn, &opts.namespace).await {
                crate::output::note(&line);
            }
            return Err(BadInput(format!(
                "helm finished, but the operator's Prometheus was not ready within {}s \
                 (--timeout): {last}",
                opts.timeout_secs
            )))
            .classify(ExitCode::Install);
        }
    }
    prepared.report.workloads = stop
        .or_stop(
            "reading workload readiness",
            readiness(conn, &opts.namespace),
        )
        .await
        .classify_by(installer_class)?;
    emit(global, &prepared.report)?;
    let not_ready: Vec<String> = prepared
        .report
        .workloads
        .iter()
        .filter(|w| !w.is_ready())
        .map(|w| format!("{} {} {}/{}", w.kind, w.name, w.ready, w.desired))
        .collect();
    if !not_ready.is_empty() {
        for line in explain(conn, &opts.namespace).await {
            crate::output::note(&line);
        }
        return Err(BadInput(format!(
            "installed, but not every workload is ready: {}",
            not_ready.join(", ")
        )))
        .classify(ExitCode::Install);
    }

    // 8. The central Grafana, only with --grafana-url. A failure here must not read as a
    // failed install: the release is in place and only `register` needs re-running.
    let step = match opts.role {
        Role::Cluster => match registration {
            Some(reg) => crate::cmd::register::after_install(
                global,
                reg,
                &opts.cluster,
                conn,
                &opts.namespace,
                &crate::cmd::register::SharedTarget {
                    wiring: &opts.wiring,
                    tls: &args.endpoint.tls,
                    kube: &args.kube,
                    central: tls.central,
                },
            )
            .await
            .map(|()| true),
            None => Ok(false),
        },
        Role::Central => {
            crate::cmd::central::after_install(&args.grafana, &args.central, conn, &opts.namespace)
                .await
        }
    };
    match step {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::info!("no --grafana-url: the central Grafana was not contacted");
            Ok(())
        }
        Err(e) => Err(e.context(match opts.role {
            Role::Cluster => format!(
                "helm release {} is installed and ready, but registering it in the central \
                 Grafana failed; no reinstall is needed: fix the cause below and run \
                 `cmm-agent register --cluster {}`",
                opts.cluster.release(),
                opts.cluster
            ),
            Role::Central => format!(
                "helm release {} (central Grafana) is installed and ready, but the Grafana step \
                 failed; no reinstall is needed: fix the cause below and run \
                 `cmm-agent central token`",
                opts.cluster.release()
            ),
        })),
    }
}

/// A flag that does nothing for the chosen role is refused, not ignored: someone expected it
/// to do something.
fn refuse_other_roles_flags(args: &BootstrapArgs) -> anyhow::Result<()> {
    let (other, role) = match args.role {
        RoleArg::Cluster => (crate::cli::CENTRAL_ONLY, "cluster"),
        RoleArg::Central => (crate::cli::CLUSTER_ONLY, "central"),
    };
    let wrong: Vec<String> = args
        .given
        .iter()
        .filter(|(id, _)| other.contains(&id.as_str()))
        .map(|(id, from)| {
            let flag = format!("--{}", id.replace('_', "-"));
            let var = format!("CMM_{}", id.to_uppercase());
            format!("{flag} / {var} (from {from})")
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(BadInput(format!(
        "{} do(es) nothing with --role {role}: remove it, or choose the other --role",
        wrong.join(", ")
    )))
    .classify(ExitCode::Usage)
}

fn preflight_verdict(report: &Report, ok: bool) -> anyhow::Result<()> {
    if ok {
        return Ok(());
    }
    let failed: Vec<String> = report
        .preflight_failed()
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    Err(BadInput(format!(
        "preflight failed, nothing was changed:\n  {}",
        failed.join("\n  ")
    )))
    .classify(ExitCode::Preflight)
}

async fn apply(
    conn: &Connected,
    helm: &Helm,
    opts: &Options,
    prepared: &mut Prepared,
    progress: &Progress,
) -> anyhow::Result<()> {
    let release_name = opts.cluster.release();
    match &prepared.next {
        Next::Rollback { to, pending, .. } => {
            crate::interrupt::stage(
                format!(
                    "`helm rollback` of {release_name} to revision {to} was stopped: revision \
                     {pending} or the rollback may be left pending"
                ),
                "finds no live lock, so it recovers the release again (rollback to the last \
                 deployed revision), then upgrades",
            );
            let args = Helm::rollback_args(
                release_name,
                &opts.namespace,
                *to,
                &conn.helm,
                opts.timeout_secs,
            );
            progress
                .step(
                    &format!("recover: helm rollback to revision {to}"),
                    helm.run(&args),
                )
                .await
                .classify(ExitCode::Install)?;
        }
        Next::Uninstall { .. } => {
            crate::interrupt::stage(
                format!("`helm uninstall` of the never-deployed {release_name} was stopped"),
                "uninstalls what is left, then installs",
            );
            let args =
                Helm::uninstall_args(release_name, &opts.namespace, &conn.helm, opts.timeout_secs);
            progress
                .step(
                    "recover: helm uninstall of the never-deployed release",
                    helm.run(&args),
                )
                .await
                .classify(ExitCode::Install)?;
        }
        _ => {}
    }
    if let Next::Unchanged { revision } = prepared.next {
        prepared.report.outcome =
            format!("unchanged: revision {revision} already deployed from this plan");
        return Ok(());
    }
    crate::interrupt::stage(
        format!(
            "`helm upgrade --install {release_name}` was stopped: helm marks the release failed \
             (or, if it was killed, leaves it pending)"
        ),
        "finds no live lock, recovers a pending release (rollback to the last deployed \
         revision, or uninstall of one that never deployed) and upgrades again",
    );
    let release = prepared.release(opts);
    let install = prepared.install(&release, &conn.helm, opts);
    let args = Helm::upgrade_install_args(&install);
    progress
        .step(
            &format!(
                "helm upgrade --install {release_name} (waits up to {}s)",
                opts.timeout_secs
            ),
            helm.run(&args),
        )
        .await
        .classify_by(|e| match e {
            cmm_installer::Error::HelmFailed { .. } => ExitCode::Install,
            other => installer_class(other),
        })?;
    prepared.report.outcome = "applied".into();
    crate::interrupt::stage(
        format!("release {release_name} is installed from this plan"),
        "finds the same plan deployed, changes nothing and re-checks readiness and registration",
    );
    Ok(())
}

/// Poll the StatefulSets the operator makes for CMM's Prometheus until they are ready or
/// `timeout_secs` pass; `Ok(Err(state))` carries the state seen last.
async fn wait_for_prometheus(
    conn: &Connected,
    ns: &str,
    timeout_secs: u64,
) -> cmm_installer::Result<Result<(), String>> {
    use cmm_core::naming::{OPERATOR_PROMETHEUS_NAME_LABEL, PROMETHEUS_CR};
    use cmm_installer::workloads::OperatorPrometheus;
    let selector = format!("{OPERATOR_PROMETHEUS_NAME_LABEL}={PROMETHEUS_CR}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
    let mut shown = String::new();
    loop {
        let sts: Vec<StatefulSet> = conn.list_labeled(ns, &selector).await?;
        let state = OperatorPrometheus::judge(&sts);
        if let OperatorPrometheus::Ready { .. } = state {
            return Ok(Ok(()));
        }
        let said = state.describe();
        if said != shown {
            tracing::info!("{said}");
            shown = said;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Err(shown));
        }
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
}

/// A read-only step that a signal may abandon.
async fn stop_or<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let stop = crate::interrupt::stop();
    tokio::select! {
        r = fut => r,
        _ = stop.stopped() => Err(cmm_installer::Error::Interrupted {
            signal: stop.reason(),
            detail: "stopped before any change".into(),
        })
        .classify_by(installer_class),
    }
}

async fn readiness(conn: &Connected, ns: &str) -> cmm_installer::Result<Vec<workloads::Workload>> {
    let d = conn.list_in::<Deployment>(ns).await?;
    let ds = conn.list_in::<DaemonSet>(ns).await?;
    let sts = conn.list_in::<StatefulSet>(ns).await?;
    Ok(workloads::readiness(&d, &ds, &sts))
}

/// Pod states and warning events; best effort, as the API may be what failed.
async fn explain(conn: &Connected, ns: &str) -> Vec<String> {
    let pods = conn.list_in::<Pod>(ns).await.unwrap_or_default();
    let events = conn.list_in::<Event>(ns).await.unwrap_or_default();
    let mut lines = workloads::explain(&pods, &events);
    if lines.is_empty() {
        lines.push(format!("no failing pod or warning event in namespace {ns}"));
    }
    lines
}

fn emit(global: &GlobalArgs, report: &Report) -> anyhow::Result<()> {
    match global.output {
        Output::Json => crate::output::json(report)?,
        Output::Human => print_human(report),
    }
    Ok(())
}

fn print_human(r: &Report) {
    let role = match r.role {
        Role::Cluster => "monitored cluster",
        Role::Central => "central Grafana",
    };
    outln!(
        "cmm bootstrap: {} ({role}), namespace {}, context {} ({})",
        r.cluster,
        r.namespace,
        r.context,
        r.api_url
    );
    if r.environment.kinds.is_empty() {
        outln!("environment: nothing special detected");
    } else {
        let kinds: Vec<String> = r
            .environment
            .kinds
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .map_or_else(|_| String::new(), |v| v.as_str().unwrap_or("").to_owned())
            })
            .collect();
        outln!("environment: {}", kinds.join(", "));
        for e in &r.environment.evidence {
            outln!("  evidence: {} = {}", e.source, e.value);
        }
    }
    let rbac_total = r
        .preflight
        .iter()
        .filter(|c| c.check.starts_with("rbac: "))
        .count();
    let rbac_ok = r
        .preflight
        .iter()
        .filter(|c| c.check.starts_with("rbac: ") && c.ok)
        .count();
    outln!("preflight:");
    let mut summarised = false;
    for c in &r.preflight {
        let rbac = c.check.starts_with("rbac: ");
        if rbac && !summarised {
            outln!(
                "  [{}] rbac: {rbac_ok}/{rbac_total} permissions allowed",
                mark(rbac_ok == rbac_total)
            );
            summarised = true;
        }
        if rbac && c.ok {
            continue;
        }
        outln!("  [{}] {}: {}", mark(c.ok), c.check, c.detail);
    }
    if r.insecure {
        outln!("INSECURE: plain HTTP, no client certificate asked (--insecure-plain-http): anyone who reaches a node reads this cluster's metrics");
    }
    for t in &r.tls {
        match &t.action {
            cmm_installer::tls::TlsAction::Keep { days_left } => {
                outln!("tls: {} kept ({days_left} day(s) left)", t.secret)
            }
            cmm_installer::tls::TlsAction::Issue { why } => {
                outln!("tls: {} issued ({why})", t.secret)
            }
        }
    }
    if r.fixes.is_empty() {
        outln!("fixes: none");
    } else {
        outln!("fixes:");
        for f in &r.fixes {
            outln!("  {} ({}): {}", f.id, f.overlay, f.reason);
        }
    }
    outln!("values: {}", r.values.join(", "));
    outln!("helm {}:", r.helm.version);
    outln!("  helm {}", r.helm.args.join(" "));
    outln!("actions:");
    for (i, a) in r.actions.iter().enumerate() {
        outln!("  {}. {}: {}", i + 1, a.action, a.detail);
    }
    if let Some(kinds) = &r.rendered {
        let total: usize = kinds.values().sum();
        outln!("rendered ({total} objects):");
        for (k, n) in kinds {
            outln!("  {k:<32} {n:>3}");
        }
    }
    if !r.workloads.is_empty() {
        outln!("workloads:");
        for w in &r.workloads {
            outln!(
                "  [{}] {} {} {}/{}",
                mark(w.is_ready()),
                w.kind,
                w.name,
                w.ready,
                w.desired
            );
        }
    }
    outln!("outcome: {}", r.outcome);
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "!!"
    }
}
