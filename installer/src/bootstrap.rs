//! Bootstrap's plan: from what was detected and checked, the fixes, the values and the exact
//! helm command, plus the report `--output json` prints. Pure, so the same plan can be shown
//! (`--dry-run`), rendered (`helm template`) and applied without drifting apart.
//!
//! A role selects the values and the post-install step: `cluster` installs each_cluster.yaml
//! plus fixes; `central` installs the central Grafana values (the Grafana side supplies them).

use std::path::PathBuf;

use cmm_core::ClusterName;
use serde::Serialize;
use serde_json::Value;

use crate::chart::ChartSource;
use crate::detect::{detect, EnvKind, Environment, Evidence, Observed};
use crate::helm::{supports_labels, Helm, Install, KubeArgs, Release};
use crate::kube::Connected;
use crate::preflight::{rbac_checks, rbac_fix, Check};
use crate::release::{next_step, plan_digest, revisions, Next, PLAN_LABEL};
use crate::topology::Role;
use crate::topology::Wiring;
use crate::values::{materialize, Materialized, Overlay};
use crate::{Error, Result};

/// A change to the values because of the environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    pub id: &'static str,
    pub reason: String,
    /// The overlay file (as shipped under values/) that carries the fix.
    pub overlay: &'static str,
    /// The overlay's values, as helm will merge them.
    pub values: Value,
    #[serde(skip)]
    pub which: Overlay,
}

/// The first two pieces of evidence; the full list is in the report's environment section.
fn evidence_of(env: &Environment, pick: impl Fn(EnvKind) -> bool) -> String {
    let all: Vec<String> = env
        .evidence
        .iter()
        .filter(|e| pick(e.kind))
        .map(|e| format!("{} = {:?}", e.source, e.value))
        .collect();
    let mut shown = all.iter().take(2).cloned().collect::<Vec<_>>().join("; ");
    if all.len() > 2 {
        shown.push_str(&format!("; {} more", all.len() - 2));
    }
    shown
}

impl Fix {
    fn new(id: &'static str, reason: String, which: Overlay) -> Self {
        let file = which.file();
        Fix {
            id,
            reason,
            overlay: file.name,
            // The overlays are CMM's own files; a parse failure is a build defect caught by tests.
            values: serde_saphyr::from_str::<Value>(file.text).unwrap_or(Value::Null),
            which,
        }
    }
}

/// What the operator chose besides the environment (each choice is an overlay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Choices {
    pub kube_metrics: bool,
    /// No mutual TLS in front of Prometheus (overlays/insecure-plain-http.yaml).
    pub insecure_plain_http: bool,
}

impl Choices {
    pub fn kube_metrics(kube_metrics: bool) -> Self {
        Choices {
            kube_metrics,
            ..Default::default()
        }
    }
}

/// The fixes an environment needs, in the order their overlays are applied.
pub fn fixes(env: &Environment, choices: Choices) -> Vec<Fix> {
    let kube_metrics = choices.kube_metrics;
    let mut out = Vec::new();
    if env.kinds.iter().any(|k| k.breaks_root_mount()) {
        out.push(Fix::new(
            "wsl-root-mount",
            format!(
                "WSL2 / Docker Desktop: node-exporter cannot mount the host root there ({})",
                evidence_of(env, EnvKind::breaks_root_mount)
            ),
            Overlay::Wsl,
        ));
    }
    if kube_metrics {
        out.push(Fix::new(
            "kube-metrics",
            "requested with the kube-metrics setting: kube-state-metrics and the Kubernetes component ServiceMonitors".into(),
            Overlay::KubeMetrics,
        ));
    }
    if env.kinds.iter().any(|k| k.hides_control_plane()) {
        // After kube-metrics: it must switch the unreachable components off again.
        out.push(Fix::new(
            "managed-control-plane",
            format!(
                "the control plane (etcd, scheduler, controller-manager, kube-proxy metrics) is out of Prometheus' reach ({})",
                evidence_of(env, EnvKind::hides_control_plane)
            ),
            Overlay::ManagedControlPlane,
        ));
    }
    if kube_metrics && env.is(EnvKind::EksControlPlaneMetrics) {
        // After managed-control-plane: it switched the chart's scheduler and controller-manager
        // jobs off; these scrape the same components where EKS serves them.
        out.push(Fix::new(
            "eks-control-plane",
            format!(
                "EKS 1.28+ serves kube-scheduler's and kube-controller-manager's metrics through the API server (metrics.eks.amazonaws.com): scraped there ({})",
                evidence_of(env, |k| k == EnvKind::EksControlPlaneMetrics)
            ),
            Overlay::EksControlPlane,
        ));
    }
    if choices.insecure_plain_http {
        out.push(Fix::new(
            "insecure-plain-http",
            "INSECURE, requested with --insecure-plain-http: Prometheus on the NodePort as plain HTTP, readable by anyone who reaches a node".into(),
            Overlay::InsecurePlainHttp,
        ));
    }
    out
}

/// The values files of a release, in helm's order (the base file, the topology's files, then
/// each fix's overlay): [`crate::stack::stack`] with the fixes' overlays.
pub fn values_for(
    role: Role,
    user_values: Option<Vec<(String, String)>>,
    central_values: Option<String>,
    wiring: &Wiring,
    fixes: &[Fix],
) -> Vec<(String, String)> {
    let overlays: Vec<Overlay> = fixes.iter().map(|f| f.which).collect();
    crate::stack::stack(role, user_values, central_values, wiring, &overlays)
}

/// One thing bootstrap will do (or did), in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub action: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentReport {
    pub kinds: Vec<EnvKind>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HelmReport {
    pub version: String,
    /// The helm command line of the install (values as the files helm reads).
    pub args: Vec<String>,
}

/// The machine-readable bootstrap report (`--output json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub role: Role,
    pub namespace: String,
    pub context: String,
    pub api_url: String,
    /// The API server's gitVersion.
    pub server_version: String,
    pub dry_run: bool,
    pub environment: EnvironmentReport,
    pub preflight: Vec<Check>,
    pub fixes: Vec<Fix>,
    pub values: Vec<String>,
    /// Digest of chart, values and sets; stored on the release (`cmm-plan` label) so a re-run
    /// with nothing changed changes nothing.
    pub plan_digest: String,
    pub helm: HelmReport,
    pub actions: Vec<Action>,
    /// Object counts per kind of the `helm template` render (`--dry-run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<std::collections::BTreeMap<String, usize>>,
    /// Workload readiness after the install.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<crate::workloads::Workload>,
    /// The TLS material written or kept this run (mutual TLS, docs/security.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsStep>,
    /// Central role: Grafana's admin Secret, made (generated password) or kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grafana_admin: Option<String>,
    /// The operator's CRDs against the chart's, as brought before helm ran (crate::crds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crds: Vec<crate::crds::CrdState>,
    /// Plain HTTP without client authentication (--insecure-plain-http): anyone who reaches a
    /// node reads this cluster's metrics.
    pub insecure: bool,
    /// The fleet's topology (pull, push, thanos) and its options.
    pub topology: String,
    pub outcome: String,
}

/// One TLS Secret and what was done with it.
#[derive(Debug, Clone, Serialize)]
pub struct TlsStep {
    pub secret: String,
    #[serde(flatten)]
    pub action: crate::tls::TlsAction,
}

impl Report {
    pub fn preflight_failed(&self) -> impl Iterator<Item = &Check> {
        self.preflight.iter().filter(|c| !c.ok)
    }
}

/// Everything bootstrap was told, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub cluster: ClusterName,
    pub role: Role,
    pub namespace: String,
    pub chart: ChartSource,
    pub helm_version: String,
    /// `(shown name, text)` of user values files replacing the embedded base file.
    pub user_values: Option<Vec<(String, String)>>,
    /// Central role: the central values after envsubst (the Grafana side builds them).
    pub central_values: Option<String>,
    pub sets: Vec<String>,
    pub kube_metrics: bool,
    pub insecure_plain_http: bool,
    /// The fleet's topology, checked (`topology` module).
    pub wiring: Wiring,
    pub timeout_secs: u64,
    pub pending_grace_secs: i64,
    pub host_proc_version: Option<String>,
    pub dry_run: bool,
    pub now_unix: i64,
}

/// The plan, ready to show, render or apply.
pub struct Prepared {
    pub report: Report,
    pub next: Next,
    pub namespace_exists: bool,
    /// The values as temporary files for helm, in order.
    pub files: Materialized,
    pub labels: Vec<(String, String)>,
}

impl Prepared {
    pub fn release<'a>(&'a self, opts: &'a Options) -> Release<'a> {
        Release {
            name: opts.cluster.release(),
            namespace: &opts.namespace,
            chart: &opts.chart,
            values_files: &self.files.paths,
            sets: &opts.sets,
        }
    }

    /// Re-read the release's revisions and decide again. Called once the run lock is held, so
    /// the decision (and any recovery it implies) is made on the state no other run can change.
    pub async fn refresh_next(&mut self, conn: &Connected, opts: &Options) -> Result<&Next> {
        let secrets = conn
            .release_secrets(&opts.namespace, opts.cluster.release())
            .await?;
        let revs = revisions(&secrets, opts.cluster.release());
        self.next = next_step(
            &revs,
            &self.report.plan_digest,
            opts.now_unix,
            opts.pending_grace_secs,
        );
        Ok(&self.next)
    }

    pub fn install<'a>(
        &'a self,
        release: &'a Release<'a>,
        kube: &'a KubeArgs,
        opts: &Options,
    ) -> Install<'a> {
        Install {
            release,
            kube,
            timeout_secs: opts.timeout_secs,
            labels: self.labels.clone(),
        }
    }
}

/// Read-only: look at the cluster, check, and plan. Sends no write to the API server (access
/// and identity reviews create nothing).
pub async fn prepare(conn: &Connected, opts: &Options) -> Result<Prepared> {
    let server_version = conn.server_version().await?;
    // Detection should still name the provider when listing nodes is forbidden: the RBAC
    // check below reports the missing permission, with a provider-specific fix.
    let nodes = match conn.nodes().await {
        Ok(n) => n,
        Err(Error::KubeApi { code: 403, .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let env = detect(&Observed {
        nodes: &nodes,
        api_url: &conn.api_url,
        server_version: Some(&server_version),
        host_proc_version: opts.host_proc_version.as_deref(),
    });

    let mut checks = vec![Check {
        check: "kubernetes api".into(),
        ok: true,
        detail: format!(
            "{} reached, server {server_version}, {} node(s)",
            conn.api_url,
            nodes.len()
        ),
    }];

    let perms = crate::preflight::required_permissions_in(
        opts.role,
        &opts.namespace,
        opts.kube_metrics,
        opts.wiring.topology,
    );
    let answers = conn.can_i(&perms).await?;
    let rbac = rbac_checks(&perms, &answers);
    let denied = rbac.iter().filter(|c| !c.ok).count();
    checks.extend(rbac);
    if denied > 0 {
        let user = conn.whoami().await?;
        checks.push(Check {
            check: "rbac fix".into(),
            ok: false,
            detail: format!(
                "{denied} permission(s) missing for {}; {}",
                user.as_deref().unwrap_or("the current identity"),
                rbac_fix(&env, user.as_deref())
            ),
        });
    }

    if denied > 0 {
        // Reads of the namespace, its volumes and helm's records may be what is denied; the
        // install cannot go ahead anyway, so report what is missing and stop here.
        return finish(conn, opts, env, &server_version, checks, None).await;
    }

    let ns = conn.namespace(&opts.namespace).await?;
    let namespace_exists = ns.is_some();
    let ns_terminating = ns.as_ref().is_some_and(|n| {
        n.metadata.deletion_timestamp.is_some()
            || n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
    });
    checks.push(Check {
        check: format!("namespace {}", opts.namespace),
        ok: !ns_terminating,
        detail: match (&ns, ns_terminating) {
            (None, _) => "missing: will be created".into(),
            (Some(_), false) => "exists".into(),
            (Some(_), true) => format!(
                "is Terminating: wait for it to go (stuck volumes can hold it: cmm-agent fix-storage --namespace {})",
                opts.namespace
            ),
        },
    });

    // Stuck storage and helm's release records only exist inside an existing namespace.
    if namespace_exists {
        let stuck = conn.stuck_storage(&opts.namespace).await?;
        checks.push(Check {
            check: "storage".into(),
            ok: stuck.is_empty(),
            detail: if stuck.is_empty() {
                "no volume of the namespace is stuck Terminating".into()
            } else {
                format!(
                    "{} stuck claim/volume action(s), {} left alone: run `cmm-agent fix-storage --namespace {}` (dry run first, then --yes)",
                    stuck.actions.len(),
                    stuck.skipped.len(),
                    opts.namespace
                )
            },
        });
    }

    finish(
        conn,
        opts,
        env,
        &server_version,
        checks,
        Some(namespace_exists),
    )
    .await
}

/// The fixes, the values files in helm's order and the plan digest for these options in this
/// environment: pure, so `check` computes the same digest bootstrap stores.
pub fn plan_of(opts: &Options, env: &Environment) -> (Vec<Fix>, Vec<(String, String)>, String) {
    let fixes = match opts.role {
        Role::Cluster => fixes(
            env,
            Choices {
                kube_metrics: opts.kube_metrics,
                insecure_plain_http: opts.insecure_plain_http,
            },
        ),
        Role::Central => Vec::new(),
    };
    let values = values_for(
        opts.role,
        opts.user_values.clone(),
        opts.central_values.clone(),
        &opts.wiring,
        &fixes,
    );
    let mut parts: Vec<String> = opts.chart.helm_args();
    parts.push(opts.chart.local_version().unwrap_or_default());
    parts.push(opts.namespace.clone());
    for (n, t) in &values {
        parts.push(n.clone());
        parts.push(t.clone());
    }
    parts.extend(opts.sets.iter().cloned());
    let digest = plan_digest(parts.iter().map(String::as_str));
    (fixes, values, digest)
}

/// The plan proper: fixes, values, digest, release step, helm command and actions.
/// `namespace` is `None` when preflight stopped before the namespace could be read.
async fn finish(
    conn: &Connected,
    opts: &Options,
    env: Environment,
    server_version: &str,
    mut checks: Vec<Check>,
    namespace: Option<bool>,
) -> Result<Prepared> {
    let namespace_exists = namespace.unwrap_or(false);
    let (fixes, values, digest) = plan_of(opts, &env);
    // Embedded files are shown as shipped in the repository (values/...), so the printed helm
    // command can be run by hand from a checkout; user files as given.
    let value_names: Vec<String> = values
        .iter()
        .map(|(n, _)| {
            if opts
                .user_values
                .as_ref()
                .is_some_and(|u| u.iter().any(|(un, _)| un == n))
            {
                n.clone()
            } else {
                format!("values/{n}")
            }
        })
        .collect();
    let labels = if supports_labels(&opts.helm_version) {
        vec![(PLAN_LABEL.to_owned(), digest.clone())]
    } else {
        Vec::new()
    };
    let next = if namespace_exists {
        let secrets = conn
            .release_secrets(&opts.namespace, opts.cluster.release())
            .await?;
        let revs = revisions(&secrets, opts.cluster.release());
        next_step(&revs, &digest, opts.now_unix, opts.pending_grace_secs)
    } else {
        Next::Install
    };
    if namespace.is_some() {
        checks.push(Check {
            check: format!("release {}", opts.cluster.release()),
            ok: !matches!(next, Next::Blocked { .. }),
            detail: match &next {
                Next::Install => "not installed: will be installed".into(),
                Next::Upgrade { from } => format!("revision {from}: will be upgraded"),
                Next::Unchanged { revision } => format!("revision {revision} is deployed from this same plan"),
                Next::Rollback { pending, status, to } => format!(
                    "revision {pending} was left {status} by an interrupted run: will roll back to {to}, then upgrade"
                ),
                Next::Uninstall { pending, status } => format!(
                    "revision {pending} was left {status} and never deployed: will uninstall it, then install"
                ),
                Next::Blocked { reason } => reason.clone(),
            },
        });
    }

    let files = materialize(values.iter().map(|(n, t)| (n.as_str(), t.clone())))?;
    // The report shows the files as the user knows them, not the private temp copies.
    let shown_paths: Vec<PathBuf> = value_names.iter().map(PathBuf::from).collect();
    let shown_release = Release {
        name: opts.cluster.release(),
        namespace: &opts.namespace,
        chart: &opts.chart,
        values_files: &shown_paths,
        sets: &opts.sets,
    };
    let helm_args = Helm::upgrade_install_args(&Install {
        release: &shown_release,
        kube: &conn.helm,
        timeout_secs: opts.timeout_secs,
        labels: labels.clone(),
    });

    let actions = if namespace.is_some() {
        planned_actions(opts, namespace_exists, &next, &digest, &helm_args)
    } else {
        vec![Action {
            action: "none".into(),
            detail:
                "preflight failed: nothing will be done until the missing permissions are granted"
                    .into(),
        }]
    };

    let report = Report {
        cluster: opts.cluster.to_string(),
        role: opts.role,
        namespace: opts.namespace.clone(),
        context: conn.context.clone(),
        api_url: conn.api_url.clone(),
        server_version: server_version.to_owned(),
        dry_run: opts.dry_run,
        environment: EnvironmentReport {
            kinds: env.kinds,
            evidence: env.evidence,
        },
        preflight: checks,
        fixes,
        values: value_names,
        plan_digest: digest.clone(),
        helm: HelmReport {
            version: opts.helm_version.clone(),
            args: helm_args,
        },
        actions,
        rendered: None,
        workloads: Vec::new(),
        tls: Vec::new(),
        grafana_admin: None,
        crds: Vec::new(),
        insecure: opts.role == Role::Cluster && opts.insecure_plain_http,
        topology: opts.wiring.describe(),
        outcome: "planned".into(),
    };
    Ok(Prepared {
        report,
        next,
        namespace_exists,
        files,
        labels,
    })
}

/// What an apply will do, in order, once preflight has read the namespace and the release.
fn planned_actions(
    opts: &Options,
    namespace_exists: bool,
    next: &Next,
    digest: &str,
    helm_args: &[String],
) -> Vec<Action> {
    let mut actions = Vec::new();
    if !namespace_exists {
        actions.push(Action {
            action: "create-namespace".into(),
            detail: format!("create namespace {}", opts.namespace),
        });
    }
    match next {
        Next::Rollback {
            pending,
            status,
            to,
        } => actions.push(Action {
            action: "helm-rollback".into(),
            detail: format!(
                "helm rollback {} {to} (revision {pending} left {status})",
                opts.cluster
            ),
        }),
        Next::Uninstall { pending, status } => actions.push(Action {
            action: "helm-uninstall".into(),
            detail: format!(
                "helm uninstall {} (revision {pending} left {status}, never deployed)",
                opts.cluster
            ),
        }),
        _ => {}
    }
    if let Next::Unchanged { revision } = next {
        actions.push(Action {
            action: "none".into(),
            detail: format!("revision {revision} already deployed from this plan ({PLAN_LABEL}={digest}); nothing to change"),
        });
    } else {
        actions.push(Action {
            action: "helm-upgrade-install".into(),
            detail: format!("helm {}", helm_args.join(" ")),
        });
    }
    actions.push(Action {
        action: "report-workloads".into(),
        detail: format!(
            "readiness of the Deployments, DaemonSets and StatefulSets in {}",
            opts.namespace
        ),
    });

    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_follow_the_environment_and_keep_overlay_order() {
        let env = Environment {
            kinds: vec![EnvKind::Wsl2, EnvKind::Kind],
            evidence: vec![Evidence {
                kind: EnvKind::Wsl2,
                source: "node/x .status.nodeInfo.kernelVersion".into(),
                value: "5.15.153.1-microsoft-standard-WSL2".into(),
            }],
        };
        let ids: Vec<_> = fixes(&env, Choices::kube_metrics(true))
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(
            ids,
            ["wsl-root-mount", "kube-metrics", "managed-control-plane"]
        );
        assert!(fixes(&env, Choices::kube_metrics(false))[0]
            .reason
            .contains("microsoft-standard-WSL2"));
        assert!(fixes(&Environment::default(), Choices::default()).is_empty());
        for f in fixes(&env, Choices::kube_metrics(true)) {
            assert!(
                f.values.is_object(),
                "{} carries no values: {}",
                f.id,
                f.values
            );
        }
        // EKS 1.28+ with kube metrics: its control plane scraped through the API server.
        let eks = |v: &str| {
            crate::detect::detect(&crate::detect::Observed {
                nodes: &[],
                api_url: "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
                server_version: Some(v),
                host_proc_version: None,
            })
        };
        let ids = |env: &Environment, kube_metrics: bool| -> Vec<&str> {
            fixes(env, Choices::kube_metrics(kube_metrics))
                .iter()
                .map(|f| f.id)
                .collect()
        };
        assert_eq!(
            ids(&eks("v1.30.4-eks-a737599"), true),
            ["kube-metrics", "managed-control-plane", "eks-control-plane"]
        );
        assert_eq!(
            ids(&eks("v1.27.16-eks-2f46c53"), true),
            ["kube-metrics", "managed-control-plane"]
        );
        assert_eq!(
            ids(&eks("v1.30.4-eks-a737599"), false),
            ["managed-control-plane"]
        );
        let files = values_for(
            Role::Cluster,
            None,
            None,
            &Wiring::pull(),
            &fixes(&env, Choices::kube_metrics(false)),
        );
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "each_cluster.yaml",
                "overlays/wsl.yaml",
                "overlays/managed-control-plane.yaml"
            ]
        );
    }
}
