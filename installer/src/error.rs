use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("chart {0:?} does not exist: give a chart directory, a .tgz from `helm pull prometheus-community/kube-prometheus-stack --version 66.1.0`, or REPO_URL#CHART")]
    ChartMissing(PathBuf),
    #[error("chart {path:?} is not a helm chart (no Chart.yaml): point the `chart` setting at the kube-prometheus-stack directory")]
    NotAChart { path: PathBuf },
    #[error("chart {0:?}: a part starts with '-', which helm would take for one of its flags; write a local path as ./NAME")]
    ChartDash(String),
    #[error("chart reference {0:?} is not understood: use a directory, a .tgz file, or REPO_URL#CHART[@VERSION]")]
    BadChartRef(String),
    #[error(
        "helm ({bin:?}) was not found: install helm >= {min} or point the `helm` setting at it"
    )]
    HelmMissing { bin: PathBuf, min: &'static str },
    #[error("helm {found} is too old: CMM needs helm >= {min}; upgrade helm or point the `helm` setting at a newer one")]
    HelmTooOld { found: String, min: &'static str },
    #[error("the chart repository {url} cannot be reached ({stderr}). Offline or behind a firewall: on a machine with access run `helm pull prometheus-community/kube-prometheus-stack --version 66.1.0`, copy the .tgz here and name it in the `chart` setting (or a proxy with HTTPS_PROXY)")]
    ChartRepoUnreachable { url: String, stderr: String },
    #[error("`helm {args}` failed (exit {status}): {stderr}")]
    HelmFailed {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `helm {args}`: {source}")]
    HelmSpawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("helm printed output that is not YAML {place}")]
    RenderParse { place: String },
    #[error("fleet file {path:?}: {message}")]
    Fleet { path: String, message: String },
    #[error("invalid cluster name in {field}: {source}")]
    ClusterName {
        field: String,
        #[source]
        source: cmm_core::NameError,
    },
    #[error("kubeconfig {path} (from {from}) does not exist: set the `{setting}` setting or KUBECONFIG, or create ~/.kube/config (e.g. `aws eks update-kubeconfig`)")]
    KubeconfigMissing {
        path: String,
        from: &'static str,
        /// The key of the setting to fix (`kubeconfig`, or `central-kubeconfig`).
        setting: &'static str,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        path: String,
        message: String,
        /// The key of the setting to fix: the kubeconfig's or the context's, this cluster's
        /// or the central cluster's.
        setting: &'static str,
    },
    #[error("the Kubernetes API at {url} is unreachable: {message}")]
    KubeUnreachable { url: String, message: String },
    #[error("{what}: the API server answered {code} {reason}: {message}")]
    KubeApi {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("another cmm-agent run holds the lock of this release (Lease {lease}, holder {holder}): {detail}; nothing was changed. Wait for it to finish, or re-run after the lease expires")]
    Locked {
        lease: String,
        holder: String,
        detail: String,
    },
    #[error("{what}: {problem}")]
    Tls { what: String, problem: String },
    #[error("{what} did not become ready: {message}")]
    NotReady { what: String, message: String },
    #[error("interrupted by {signal}: {detail}")]
    Interrupted { signal: String, detail: String },
    #[error("topology: {message}")]
    Topology { message: String },
    #[error("the `set` value {raw:?} is not understood: {reason}")]
    BadSet { raw: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The setting (its key, the long flag's name) an input error is about, for the agent to
    /// say where that value came from.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            Error::ChartMissing(_)
            | Error::NotAChart { .. }
            | Error::BadChartRef(_)
            | Error::ChartDash(_)
            | Error::ChartRepoUnreachable { .. } => Some("chart"),
            Error::HelmMissing { .. } | Error::HelmTooOld { .. } => Some("helm"),
            Error::KubeconfigMissing { setting, .. } | Error::Kubeconfig { setting, .. } => {
                Some(setting)
            }
            Error::BadSet { .. } => Some("set"),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
