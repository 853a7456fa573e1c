//! Bootstrap's library entry: make one cluster (or the central node) monitored. `bootstrap`
//! and `check --repair --reinstall` both call [`run`] with typed settings; reports go to the
//! caller's [`Sink`] as they are made (the install report, then the registration's), so a
//! person sees the install's outcome while the registration still waits. The order is the
//! contract:
//!
//! 1. the inputs were checked when the settings were resolved; the Grafana token is read here,
//!    before anything is contacted;
//! 2. check helm;
//! 3. reach the API;
//! 4. read the CMM CA from the central cluster; detect, preflight and plan (reads only);
//! 5. dry run: render and stop; a failed preflight stops here too;
//! 6. ask the central Grafana (unless told not to);
//! 7. apply under the run lock: namespace, certificates, recovery of a pending release,
//!    `helm upgrade --install --wait` (skipped when the same plan is already deployed);
//! 8. wait for the operator's Prometheus, report readiness (or explain a failure with pod
//!    states and events);
//! 9. the central Grafana: register the cluster, or (central role) wait for it and issue the
//!    agents' token.

use cmm_installer::bootstrap::{prepare, Options, Prepared, Report};
use cmm_installer::helm::{kube_version_args, Helm};
use cmm_installer::kube::{connect, host_proc_version, Connected};
use cmm_installer::preflight::Check;
use cmm_installer::release::Next;
use cmm_installer::render::Heads;
use cmm_installer::tls::CentralPki;
use cmm_installer::topology::Role;
use cmm_installer::workloads;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};

use crate::exit::{installer_class, Classify, ExitCode};
use crate::ops::registration::{self, Registered, Registration, Target};
use crate::ops::{central, endpoint};
use crate::progress::Progress;
use crate::settings::{BadInput, BootstrapSettings};

/// A report as soon as it exists.
pub enum Shown<'a> {
    Install(&'a Report),
    Registered(&'a Registered),
}

/// Where [`run`] hands its reports: `bootstrap` renders them, check's reinstall keeps quiet.
pub type Sink<'a> = dyn FnMut(Shown<'_>) -> anyhow::Result<()> + Send + 'a;

/// What the install stages share once the cluster has been read.
struct Run<'a> {
    s: &'a BootstrapSettings,
    conn: Connected,
    opts: Options,
    progress: Progress,
    registration: Option<Registration>,
    /// The central material (a cluster served over mutual TLS).
    pki: Option<CentralPki>,
}

/// Install (or upgrade) CMM as `s` says.
pub async fn run(s: &BootstrapSettings, sink: &mut Sink<'_>) -> anyhow::Result<()> {
    let mut run = start(s).await?;
    // 4. Read-only: detect, preflight, plan.
    let mut prepared = run
        .progress
        .step("detect, preflight and plan", prepare(&run.conn, &run.opts))
        .await
        .classify_by(installer_class)?;
    // What would be installed, rendered once: the dry run reports it, and another release
    // holding any of its names or NodePorts stops the run here, before any change.
    let rendered = render(&run, &prepared).await?;
    if prepared.report.preflight_failed().next().is_none() {
        // (A failed preflight already names what is missing, permissions to read included.)
        coexistence(&run, &mut prepared, &rendered).await;
        if run.opts.role == Role::Central {
            grafana_secrets(&run, &mut prepared).await;
        }
    }
    let preflight_ok = prepared.report.preflight_failed().next().is_none();
    // 5. Dry run: render exactly what would be installed, change nothing.
    if s.dry_run {
        prepared.report.rendered = Some(rendered.kinds());
        prepared.report.outcome = "dry-run: nothing changed".into();
        sink(Shown::Install(&prepared.report))?;
        return preflight_verdict(&prepared.report, preflight_ok);
    }
    if !preflight_ok {
        prepared.report.outcome = "preflight failed: nothing changed".into();
        sink(Shown::Install(&prepared.report))?;
        return preflight_verdict(&prepared.report, preflight_ok);
    }
    // 6. Grafana, before the cluster is changed: a wrong URL or token fails now.
    if let Err(e) = ask_grafana(&run, &mut prepared).await {
        prepared.report.outcome = "the central Grafana check failed: nothing changed".into();
        sink(Shown::Install(&prepared.report))?;
        return Err(e.context(
            "checking the central Grafana before installing; nothing was changed \
             (pass --skip-grafana-check when Grafana cannot be reached from here yet)",
        ));
    }
    // 7-9. Apply, holding the run lock of the release for everything that writes.
    under_lock(&mut run, &mut prepared, sink).await
}

/// The install options these settings make, with helm's version as read.
pub fn options(s: &BootstrapSettings, helm_version: String) -> Options {
    Options {
        cluster: s.cluster.clone(),
        role: s.role,
        namespace: s.namespace.clone(),
        chart: s.chart.chart.clone(),
        helm_version,
        user_values: s.plan.user_values.clone(),
        central_values: None,
        sets: s.plan.sets.clone(),
        kube_metrics: s.plan.kube_metrics,
        insecure_plain_http: !s.plan.wiring.mutual_tls(),
        wiring: s.plan.wiring.clone(),
        timeout_secs: s.helm_run.timeout.as_secs(),
        pending_grace_secs: i64::try_from(s.helm_run.pending_grace.as_secs()).unwrap_or(i64::MAX),
        host_proc_version: host_proc_version(&s.helm_run.host_proc_version),
        dry_run: s.dry_run,
        now_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    }
}

/// Stages 1-3 and the central CA: everything read before the plan.
async fn start(s: &BootstrapSettings) -> anyhow::Result<Run<'_>> {
    // The Grafana step's inputs too: a bad token file or URL must not surface after the install.
    let registration = match (s.role, s.registers()) {
        (Role::Cluster, true) => Some(Registration::new(&s.grafana, &s.prometheus)?),
        _ => None,
    };
    // 2. helm, before the cluster: a missing tool should not cost an API round trip.
    let helm_version = s.chart.helm.version().await.classify_by(installer_class)?;
    // 3. The cluster. A missing kubeconfig/context is bad input; no answer is exit 5.
    let conn = connect(&s.kube).await.classify_by(installer_class)?;
    let opts = options(s, helm_version);
    let mut run = Run {
        s,
        conn,
        opts,
        progress: Progress::new(),
        registration,
        pki: None,
    };
    // The CMM CA, read (never written) from the central cluster before anything changes.
    if s.mutual_tls() && !s.dry_run {
        let pki = run
            .progress
            .step(
                "read the CMM CA from the central cluster",
                central::central_pki(&s.central),
            )
            .await?;
        if let Some(reg) = run.registration.as_mut() {
            reg.prometheus.use_central(&pki);
        }
        run.pki = Some(pki);
    }
    Ok(run)
}

async fn render(run: &Run<'_>, prepared: &Prepared) -> anyhow::Result<Heads> {
    let release = prepared.release(&run.opts);
    let mut args = Helm::template_args(&release);
    args.extend(kube_version_args(&prepared.report.server_version));
    let stream = run
        .progress
        .step("render with helm template", run.s.chart.helm.run(&args))
        .await
        .classify_by(installer_class)?;
    Heads::parse(&stream).classify(ExitCode::Chart)
}

/// Another release of the chart on this cluster holding a name or NodePort this one would
/// create (another install of the chart under CMM's names): a failed preflight line that
/// names each and the fix, before anything is changed (cmm_installer::clash).
async fn coexistence(run: &Run<'_>, prepared: &mut Prepared, rendered: &Heads) {
    let ns = &run.opts.namespace;
    let existing = match run.conn.existing_for_clash(ns).await {
        Ok(e) => e,
        Err(e) => {
            prepared.report.preflight.push(Check {
                check: "coexistence".into(),
                ok: false,
                detail: format!("cannot read what other releases hold: {e}"),
            });
            return;
        }
    };
    let clashes =
        cmm_installer::clash::judge(&rendered.objects, &existing, run.opts.cluster.release(), ns);
    let w = &run.opts.wiring;
    if run.opts.role == Role::Central && w.receiver_on_central() {
        let now = cmm_installer::clash::receiver_switch(
            &existing,
            run.opts.cluster.release(),
            ns,
            w.receiver,
            w.receiver_chosen,
        );
        prepared.report.preflight.push(Check {
            check: "receiver".into(),
            ok: now.is_none(),
            detail: match now {
                None => format!("{} stores the clusters' samples", w.receiver),
                Some(now) => format!(
                    "this central runs the {now} receiver and the default is now {}: moving \
                     leaves its samples behind (its volume is kept, nothing reads it). Keep it \
                     with --receiver {now} (agent.toml: receiver = \"{now}\"), or move with \
                     --receiver {} (docs/scaling.md, \"Choosing the receiver\")",
                    w.receiver, w.receiver
                ),
            },
        });
    }
    prepared.report.preflight.push(Check {
        check: "coexistence".into(),
        ok: clashes.is_empty(),
        detail: if clashes.is_empty() {
            "no name or NodePort of this release is held by another release".into()
        } else {
            format!(
                "another release holds what this one would create: {}. CMM's central and \
                 cluster releases share a cluster in every topology, so this is another \
                 install of the chart under CMM's names, or a push central from before the \
                 receiver had names of its own (cmm-receiver, NodePort 30091): re-run \
                 `cmm-agent bootstrap --role central` there with this version first \
                 (docs/scaling.md, \"Upgrading a push central\"), or remove the other release",
                clashes.join("; ")
            )
        },
    });
}

/// The central role: the Secrets Grafana's pod mounts (cmm_installer::grafana_secrets). The
/// admin login is made under the lock when absent; the contact points' addresses only a
/// person can give, so their absence fails preflight with the command that makes them.
async fn grafana_secrets(run: &Run<'_>, prepared: &mut Prepared) {
    let ns = &run.opts.namespace;
    let (ok, detail) = match cmm_installer::grafana_secrets::read(&run.conn, ns).await {
        Ok(state) => cmm_installer::grafana_secrets::judge(&state, ns),
        Err(e) => (false, format!("cannot read Grafana's Secrets: {e}")),
    };
    prepared.report.preflight.push(Check {
        check: "grafana-secrets".into(),
        ok,
        detail,
    });
}

/// The Grafana precheck, recorded as a preflight line (or skipped, and said so).
async fn ask_grafana(run: &Run<'_>, prepared: &mut Prepared) -> anyhow::Result<()> {
    let Some(reg) = &run.registration else {
        return Ok(());
    };
    let detail = if run.s.skip_grafana_check {
        "not checked before the install (--skip-grafana-check); registration runs at the end".into()
    } else {
        run.progress
            .step(
                "check the central Grafana",
                stop_or(reg.precheck(&run.opts.cluster, &run.opts.wiring)),
            )
            .await?
    };
    prepared.report.preflight.push(Check {
        check: "grafana".into(),
        ok: true,
        detail,
    });
    Ok(())
}

/// Stage 7 onwards, holding the release's run lock (a Lease) for everything that writes.
async fn under_lock(
    run: &mut Run<'_>,
    prepared: &mut Prepared,
    sink: &mut Sink<'_>,
) -> anyhow::Result<()> {
    let stop = crate::interrupt::stop();
    let (conn, opts) = (&run.conn, &run.opts);
    crate::interrupt::stage(
        "nothing was changed",
        "starts from the beginning, as this one did",
    );
    if !prepared.namespace_exists {
        run.progress
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
    let lock = run
        .progress
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
    // helm already watches the process-wide stop (settings::ChartSettings), which losing the
    // lock raises too.
    let result = locked(run, prepared, &stop, sink).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock");
    }
    result
}

/// Everything done under the lock: decide again on fresh state, certificates, apply, wait,
/// report readiness, and the central Grafana step.
async fn locked(
    run: &Run<'_>,
    prepared: &mut Prepared,
    stop: &cmm_installer::stop::Stop,
    sink: &mut Sink<'_>,
) -> anyhow::Result<()> {
    let (conn, opts) = (&run.conn, &run.opts);
    stop.or_stop(
        "reading the release under the lock",
        prepared.refresh_next(conn, opts),
    )
    .await
    .classify_by(installer_class)?;
    if let Next::Blocked { reason } = &prepared.next {
        prepared.report.outcome = format!("blocked: {reason}");
        sink(Shown::Install(&prepared.report))?;
        return Err(BadInput(format!(
            "release {}: {reason}",
            opts.cluster.release()
        )))
        .classify(ExitCode::Preflight);
    }
    // A blocked release changes nothing, so the certificates come after that decision.
    prepared.report.tls = run
        .progress
        .step(
            "issue or keep the TLS certificates",
            super::certificates::ensure(conn, opts, run.s, run.pki.as_ref()),
        )
        .await?;
    if opts.role == Role::Central {
        let made = stop
            .or_stop(
                "making Grafana's admin Secret",
                cmm_installer::grafana_secrets::ensure_admin(conn, &opts.namespace),
            )
            .await
            .classify_by(installer_class)?;
        prepared.report.grafana_admin = Some(if made {
            format!(
                "Secret {0} made with a generated password (never printed); read it with \
                 kubectl -n {1} get secret {0} -o jsonpath='{{.data.admin-password}}' | base64 -d",
                cmm_core::naming::GRAFANA_ADMIN_SECRET,
                opts.namespace
            )
        } else {
            format!("Secret {} kept", cmm_core::naming::GRAFANA_ADMIN_SECRET)
        });
    }
    // helm creates CRDs only when absent and never upgrades them: older operator CRDs would
    // silently drop fields CMM's values set (scrapeClasses, the `cluster` label).
    prepared.report.crds = run
        .progress
        .step(
            "bring the operator's CRDs to the chart's",
            super::crds::update(conn, &run.s.chart.helm, &opts.chart),
        )
        .await?;
    let result = apply(conn, &run.s.chart.helm, opts, prepared, &run.progress).await;
    if let Err(err) = &result {
        if ExitCode::of(err) == ExitCode::Install {
            prepared.report.outcome = format!("install failed: {err}");
            for line in explain(conn, &opts.namespace).await {
                crate::output::note(&line);
            }
        }
        sink(Shown::Install(&prepared.report))?;
        return result;
    }
    ready(run, prepared, stop).await?;
    sink(Shown::Install(&prepared.report))?;
    workloads_ready(run, prepared).await?;
    last_step(run, sink).await
}

/// 8. The Prometheus the operator makes after helm is done, then what is running now.
async fn ready(
    run: &Run<'_>,
    prepared: &mut Prepared,
    stop: &cmm_installer::stop::Stop,
) -> anyhow::Result<()> {
    let (conn, opts) = (&run.conn, &run.opts);
    if opts.role == Role::Cluster {
        let waited = run
            .progress
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
    Ok(())
}

/// Every workload ready, or exit 7 with the pods' states and events.
async fn workloads_ready(run: &Run<'_>, prepared: &Prepared) -> anyhow::Result<()> {
    let not_ready: Vec<String> = prepared
        .report
        .workloads
        .iter()
        .filter(|w| !w.is_ready())
        .map(|w| format!("{} {} {}/{}", w.kind, w.name, w.ready, w.desired))
        .collect();
    if not_ready.is_empty() {
        return Ok(());
    }
    for line in explain(&run.conn, &run.opts.namespace).await {
        crate::output::note(&line);
    }
    Err(BadInput(format!(
        "installed, but not every workload is ready: {}",
        not_ready.join(", ")
    )))
    .classify(ExitCode::Install)
}

/// Stage 9, the central Grafana, only with grafana-url. A failure here must not read as a
/// failed install: the release is in place and only `register` (or `central token`) needs
/// re-running.
async fn last_step(run: &Run<'_>, sink: &mut Sink<'_>) -> anyhow::Result<()> {
    let (s, opts) = (run.s, &run.opts);
    let step = match (&run.registration, &s.central_role) {
        (Some(reg), _) => {
            let target = Target {
                wiring: &opts.wiring,
                central: &s.central,
                pki: run.pki.as_ref(),
            };
            let find = async || endpoint::find(&run.conn, &opts.namespace, &s.prometheus).await;
            match registration::register(reg, &opts.cluster, &target, find).await {
                Ok(done) => sink(Shown::Registered(&done)).and_then(|()| done.verdict()),
                Err(e) => Err(e),
            }
            .map(|()| true)
        }
        (None, Some(role)) => {
            central::after_install(&s.grafana, role, &run.conn, &opts.namespace).await
        }
        (None, None) => Ok(false),
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
