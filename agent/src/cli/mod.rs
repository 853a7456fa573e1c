//! Command line: every clap struct of the agent, and nothing else. Every flag has a `CMM_*`
//! environment twin; precedence is flag > environment > config file > built-in default,
//! resolved in `settings`, which turns these structs into typed settings before a command
//! contacts anything.

mod commands;
mod shared;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::*;
pub use shared::*;

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
#[command(next_help_heading = "Output")]
pub struct GlobalArgs {
    /// Settings file: its keys are the long flags, `[command]` sections allowed (precedence:
    /// flag > CMM_* variable > this file > built-in default). Default: /etc/cmm/agent.toml when
    /// it exists.
    #[arg(long, env = "CMM_CONFIG", global = true, help_heading = "Settings")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "CMM_LOG_FORMAT", value_enum, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, cmm_installer=trace.
    #[arg(long, env = "CMM_LOG_LEVEL", global = true)]
    pub log_level: String,
    /// Format of the command's result on stdout.
    #[arg(long, env = "CMM_OUTPUT", value_enum, global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

impl Cli {
    /// Record which of bootstrap's settings were given (on the command line or as a `CMM_*`
    /// variable) rather than defaulted, so flags that do nothing for the chosen role can be
    /// refused instead of ignored.
    pub fn note_given(&mut self, matches: &clap::ArgMatches) {
        use clap::parser::ValueSource;
        let Command::Bootstrap(args) = &mut self.command else {
            return;
        };
        let Some(sub) = matches.subcommand_matches("bootstrap") else {
            return;
        };
        for id in sub.ids() {
            let source = match sub.value_source(id.as_str()) {
                Some(ValueSource::CommandLine) => "the command line",
                Some(ValueSource::EnvVariable) => "the environment",
                _ => continue,
            };
            args.given.push((id.as_str().to_owned(), source));
        }
    }
}

/// Settings that only mean something for one role of bootstrap (clap ids).
pub const CLUSTER_ONLY: &[&str] = &[
    "kube_metrics",
    "insecure_plain_http",
    "receiver_url",
    "agent_mode",
    "thanos_object_storage",
    "skip_grafana_check",
    "prometheus_url",
    "advertise_address",
    "prometheus_user",
    "prometheus_password_file",
    "prometheus_ca_file",
    "prometheus_tls_skip_verify",
    "skip_prometheus_check",
    "first_scrape_wait",
    "rules",
    "force",
];
pub const CENTRAL_ONLY: &[&str] = &[
    "grafana_wait",
    "registration_token_out",
    "registration_service_account",
];

// Parsed once at start-up and moved into its command: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the install plan of a fleet (central Grafana + clusters) offline with the real
    /// chart and summarise it per object kind. Without --fleet: the embedded example fleet.
    Plan(PlanArgs),
    /// Install (or upgrade) CMM on one cluster: detect the environment, check permissions and
    /// storage, plan the helm command with the fixes, then apply it. Safe to re-run.
    Bootstrap(BootstrapArgs),
    /// Free volumes of the monitoring namespace stuck in Terminating (dry run unless --yes).
    FixStorage(FixStorageArgs),
    /// Register this cluster in the central Grafana: check its Prometheus endpoint, upsert the
    /// datasource, provision its alert rules, report Grafana's health check. Safe to re-run.
    Register(RegisterArgs),
    /// Remove this cluster's datasource and alert rules from the central Grafana.
    Deregister(DeregisterArgs),
    /// Operations on the central Grafana itself (e.g. issue the registration token).
    Central(CentralArgs),
    /// Print a ClusterRole, Role and bindings holding exactly what cmm-agent does on a cluster
    /// (least privilege instead of cluster-admin), for `kubectl apply -f -`.
    Rbac(RbacArgs),
    /// Prove the whole path of this cluster, node-exporter to a Grafana alert: findings per
    /// stage; exit 0 healthy, 1 degraded, 2 failed. Reads only, unless --repair.
    Check(CheckArgs),
    /// Run check on a transient systemd timer (systemd-run); it does not survive a reboot —
    /// the packaged cmm-agent-check.timer does.
    Schedule(ScheduleArgs),
    /// The settings file (/etc/cmm/agent.toml): validate it, or show every resolved setting
    /// with its origin.
    Config(ConfigArgs),
    /// Replace this binary with the newest signed release (or --to TAG), keeping the previous
    /// one for --rollback. Refuses when dpkg or rpm owns the binary: upgrade the package.
    SelfUpdate(SelfUpdateArgs),
    /// Write the man pages and shell completions (for the package build).
    #[command(hide = true)]
    GenerateAssets(AssetsArgs),
}
