//! Exit codes, one per failure class a script may want to tell apart. Documented in
//! docs/exit-codes.md; the numbers are a contract and never change meaning.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    /// Unexpected failure inside the agent.
    Internal = 1,
    /// Bad flags, bad config, bad values: nothing was changed.
    Usage = 2,
    /// A tool the agent runs (helm) is missing, too old, or failed.
    Tool = 3,
    /// The chart could not be found or rendered.
    Chart = 4,
    /// The Kubernetes API could not be reached, or refused our credentials.
    KubeUnreachable = 5,
    /// Preflight found something missing (e.g. RBAC permissions); nothing was changed.
    Preflight = 6,
    /// `helm upgrade --install` failed or the workloads did not become ready.
    Install = 7,
    /// Grafana did not answer (down, 5xx, timeout) after the retries.
    GrafanaUnreachable = 8,
    /// Grafana refused the credentials (401) or the permission (403).
    GrafanaAuth = 9,
    /// A Grafana object CMM would write belongs to someone else (use --force to take it over).
    GrafanaConflict = 10,
    /// The cluster's Prometheus endpoint did not answer, or its series lack the cluster label.
    PrometheusCheck = 11,
    /// Another cmm-agent run holds this release's lock (a Lease); nothing was changed.
    Locked = 12,
    /// Grafana answers but keeps failing or refusing the request (e.g. a 500 on every attempt
    /// of a write): not an outage; Grafana's own message is shown.
    GrafanaRejected = 13,
    /// self-update: the release feed failed, or the archive did not verify or did not start;
    /// nothing was replaced.
    Update = 14,
    /// `check`: degraded, warnings only (process status 1; see [`status`](Self::status)).
    CheckDegraded = 201,
    /// `check`: a stage failed, or the check could not run (process status 2).
    CheckFailed = 202,
    /// Stopped by SIGINT (128 + 2, as shells report it).
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15).
    Terminated = 143,
}

impl ExitCode {
    /// The code's name in docs/exit-codes.md.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Internal => "internal",
            ExitCode::Usage => "usage",
            ExitCode::Tool => "tool",
            ExitCode::Chart => "chart",
            ExitCode::KubeUnreachable => "kube-unreachable",
            ExitCode::Preflight => "preflight",
            ExitCode::Install => "install",
            ExitCode::GrafanaUnreachable => "grafana-unreachable",
            ExitCode::GrafanaAuth => "grafana-auth",
            ExitCode::GrafanaConflict => "grafana-conflict",
            ExitCode::PrometheusCheck => "prometheus-check",
            ExitCode::Locked => "locked",
            ExitCode::GrafanaRejected => "grafana-rejected",
            ExitCode::Update => "update",
            ExitCode::CheckDegraded => "degraded",
            ExitCode::CheckFailed => "failed",
            ExitCode::Interrupted => "interrupted",
            ExitCode::Terminated => "terminated",
        }
    }

    /// What to do next, in one line (the message itself names the field or the cause).
    pub fn hint(self) -> &'static str {
        match self {
            ExitCode::Ok => "",
            ExitCode::Internal => "a bug in cmm-agent: re-run with --log-level debug and report it",
            ExitCode::Usage => "fix the named input; nothing was changed",
            ExitCode::Tool => "install helm >= 3.12 or point --helm / CMM_HELM at it",
            ExitCode::Chart => "check --chart / CMM_CHART and the values; nothing was changed",
            ExitCode::KubeUnreachable => "check the kubeconfig's server, the network and the credentials",
            ExitCode::Preflight => "grant what the report names (cmm-agent rbac prints it); nothing was changed",
            ExitCode::Install => "read the pod states and events printed on stderr, fix, and re-run",
            ExitCode::GrafanaUnreachable => "check that the central Grafana runs and is reachable from here",
            ExitCode::GrafanaAuth => "issue a new token with `cmm-agent central token`, or give the role the message names",
            ExitCode::GrafanaConflict => "the object belongs to someone else: rename, or take it over with --force",
            ExitCode::PrometheusCheck => "check the cluster's Prometheus endpoint and its cluster label",
            ExitCode::Locked => "another run works on this release: wait for it, or for its lock to expire",
            ExitCode::GrafanaRejected => "Grafana fails this request: read its message and its server log",
            ExitCode::Update => "nothing was replaced: check the feed, or get a correctly signed release",
            ExitCode::CheckDegraded => "read the warnings; the path works",
            ExitCode::CheckFailed => "read the failed findings and their repairs; `check --repair` does the safe ones",
            ExitCode::Interrupted | ExitCode::Terminated => "re-run: the next run recovers what this one left",
        }
    }

    /// The code of a run stopped by `signal` (`SIGINT`, `SIGTERM`; any other stop reason is the
    /// run lock lost to another run).
    pub fn for_signal(signal: &str) -> Self {
        match signal {
            "SIGINT" => ExitCode::Interrupted,
            "SIGTERM" => ExitCode::Terminated,
            _ => ExitCode::Locked,
        }
    }

    /// The setting (its key) an error is about; `main` names it the way it was given
    /// (`settings::layers::named`): the origin the libraries cannot know.
    pub fn setting_of(err: &anyhow::Error) -> Option<&str> {
        err.chain()
            .find_map(|e| e.downcast_ref::<Classified>().and_then(Classified::setting))
    }

    /// The code attached to an error chain, or `Internal` when none was attached.
    pub fn of(err: &anyhow::Error) -> Self {
        err.chain()
            .find_map(|e| e.downcast_ref::<Classified>().map(|c| c.code))
            .unwrap_or(ExitCode::Internal)
    }
}

impl ExitCode {
    /// The process exit status. `check` reports as monitoring plugins do: 1 degraded, 2 failed.
    pub fn status(self) -> u8 {
        match self {
            ExitCode::CheckDegraded => 1,
            ExitCode::CheckFailed => 2,
            other => other as u8,
        }
    }

    /// `check` never exits with another command's code: whatever stopped it (bad settings, an
    /// unreachable cluster, a bug) means the path is not proven, status 2. Signals stay.
    pub fn for_check(self) -> Self {
        match self {
            ExitCode::Ok
            | ExitCode::CheckDegraded
            | ExitCode::Interrupted
            | ExitCode::Terminated => self,
            _ => ExitCode::CheckFailed,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.status())
    }
}

/// An error tagged with its exit class. It displays as the error it wraps, so messages are
/// unchanged; `main` finds the tag anywhere in the chain.
#[derive(Debug)]
pub struct Classified {
    pub code: ExitCode,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Classified {
    /// The setting a library error is about (its key): libraries name settings, never flags;
    /// the agent knows how each was given.
    pub fn setting(&self) -> Option<&'static str> {
        if let Some(e) = self.inner.downcast_ref::<cmm_installer::Error>() {
            return e.setting();
        }
        self.inner
            .downcast_ref::<cmm_central::Error>()
            .and_then(cmm_central::Error::setting)
    }
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// Attach an exit class to a result: `thing().classify(ExitCode::Tool)?`.
pub trait Classify<T, E> {
    fn classify(self, code: ExitCode) -> anyhow::Result<T>;
    /// The class chosen from the error itself.
    fn classify_by(self, class: impl FnOnce(&E) -> ExitCode) -> anyhow::Result<T>;
}

impl<T, E> Classify<T, E> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn classify(self, code: ExitCode) -> anyhow::Result<T> {
        self.classify_by(|_| code)
    }

    fn classify_by(self, class: impl FnOnce(&E) -> ExitCode) -> anyhow::Result<T> {
        self.map_err(|e| {
            anyhow::Error::new(Classified {
                code: class(&e),
                inner: Box::new(e),
            })
        })
    }
}

/// Exit class of a cmm-central error.
pub fn central_class(e: &cmm_central::Error) -> ExitCode {
    match e.class() {
        cmm_central::ErrorClass::Usage => ExitCode::Usage,
        cmm_central::ErrorClass::GrafanaUnreachable => ExitCode::GrafanaUnreachable,
        cmm_central::ErrorClass::GrafanaAuth => ExitCode::GrafanaAuth,
        cmm_central::ErrorClass::GrafanaConflict => ExitCode::GrafanaConflict,
        cmm_central::ErrorClass::GrafanaRejected => ExitCode::GrafanaRejected,
        cmm_central::ErrorClass::PrometheusCheck => ExitCode::PrometheusCheck,
        cmm_central::ErrorClass::Internal => ExitCode::Internal,
    }
}

/// Exit class of an installer error.
pub fn installer_class(e: &cmm_installer::Error) -> ExitCode {
    use cmm_installer::Error as E;
    match e {
        E::ChartMissing(_) | E::NotAChart { .. } | E::BadChartRef(_) | E::ChartDash(_) => {
            ExitCode::Usage
        }
        E::Fleet { .. } | E::ClusterName { .. } | E::Topology { .. } => ExitCode::Usage,
        E::HelmMissing { .. } | E::HelmTooOld { .. } | E::HelmSpawn { .. } => ExitCode::Tool,
        E::HelmFailed { .. } | E::RenderParse { .. } | E::ChartRepoUnreachable { .. } => {
            ExitCode::Chart
        }
        E::KubeconfigMissing { .. } | E::Kubeconfig { .. } | E::BadSet { .. } => ExitCode::Usage,
        E::KubeUnreachable { .. } | E::KubeApi { .. } => ExitCode::KubeUnreachable,
        E::Locked { .. } => ExitCode::Locked,
        E::NotReady { .. } => ExitCode::Install,
        E::Interrupted { signal, .. } => ExitCode::for_signal(signal),
        E::Io { .. } => ExitCode::Internal,
        E::Tls { .. } => ExitCode::Usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("helm is missing")]
    struct Missing;

    #[test]
    fn the_class_survives_context_and_the_message_is_unchanged() {
        let err = Err::<(), _>(Missing)
            .classify(ExitCode::Tool)
            .map_err(|e| e.context("planning kr-mum"))
            .unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::Tool);
        let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
        assert_eq!(chain, ["planning kr-mum", "helm is missing"]);
    }

    #[test]
    fn unclassified_errors_are_internal() {
        assert_eq!(ExitCode::of(&anyhow::anyhow!("boom")), ExitCode::Internal);
    }
}
