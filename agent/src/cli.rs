//! Command line. Every flag has a `CMM_*` environment twin; precedence is flag > environment >
//! config file > built-in default, resolved in `settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "cmm-agent",
    version,
    about = "Make Kubernetes clusters monitored from one central Grafana (CMM)",
    long_about = "cmm-agent installs kube-prometheus-stack on a cluster with CMM's values, fixes the \
                  environment's quirks, and registers the cluster's Prometheus in the central Grafana."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, env = "CMM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, cmm_installer=trace.
    #[arg(long, env = "CMM_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Format of the command's result on stdout.
    #[arg(long, env = "CMM_OUTPUT", value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// Where the kube-prometheus-stack chart comes from, and the helm that renders it.
#[derive(Debug, Args, Clone)]
pub struct ChartArgs {
    /// Chart: a directory, a .tgz from `helm pull`, or a repo reference REPO_URL#NAME.
    /// Default: the upstream repository, pinned to the version CMM's values are tested with.
    #[arg(long, env = "CMM_CHART")]
    pub chart: Option<String>,
    /// helm binary to run.
    #[arg(long, env = "CMM_HELM", default_value = "helm")]
    pub helm: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the install plan of a fleet (central Grafana + clusters) offline with the real
    /// chart and summarise it per object kind. Without --fleet: the embedded example fleet.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    /// Fleet file (TOML). Default: the example fleet embedded in the binary.
    #[arg(long, env = "CMM_FLEET")]
    pub fleet: Option<PathBuf>,
}
