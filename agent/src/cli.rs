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
    /// Where the settings file was looked for (filled by `settings::start`).
    #[arg(skip = crate::settings::ConfigLocation { path: crate::settings::layers::DEFAULT_CONFIG.into(), explicit: false })]
    pub config: crate::settings::ConfigLocation,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct GlobalArgs {
    /// Settings file: its keys are the long flags, `[command]` sections allowed (precedence:
    /// flag > CMM_* variable > this file > built-in default). Default: /etc/cmm/agent.toml when
    /// it exists.
    #[arg(long, env = "CMM_CONFIG", global = true)]
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

/// Where the kube-prometheus-stack chart comes from, and the helm that renders it.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Chart")]
pub struct ChartArgs {
    /// Chart: a directory, a .tgz from `helm pull`, or a repo reference REPO_URL#NAME.
    /// Default: the upstream repository, pinned to the version CMM's values are tested with.
    #[arg(long, env = "CMM_CHART")]
    pub chart: Option<String>,
    /// helm binary to run.
    #[arg(long, env = "CMM_HELM")]
    pub helm: PathBuf,
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
    Register(crate::cmd::register::RegisterArgs),
    /// Remove this cluster's datasource and alert rules from the central Grafana.
    Deregister(crate::cmd::deregister::DeregisterArgs),
    /// Operations on the central Grafana itself (e.g. issue the registration token).
    Central(crate::cmd::central::CentralArgs),
    /// Print a ClusterRole, Role and bindings holding exactly what cmm-agent does on a cluster
    /// (least privilege instead of cluster-admin), for `kubectl apply -f -`.
    Rbac(crate::cmd::rbac::RbacArgs),
    /// Prove the whole path of this cluster, node-exporter to a Grafana alert: findings per
    /// stage; exit 0 healthy, 1 degraded, 2 failed. Reads only, unless --repair.
    Check(crate::cmd::check::CheckArgs),
    /// Run check on a transient systemd timer (systemd-run); it does not survive a reboot —
    /// the packaged cmm-agent-check.timer does.
    Schedule(crate::cmd::schedule::ScheduleArgs),
    /// The settings file (/etc/cmm/agent.toml): validate it, or show every resolved setting
    /// with its origin.
    Config(crate::cmd::config::ConfigArgs),
    /// Replace this binary with the newest signed release (or --to TAG), keeping the previous
    /// one for --rollback. Refuses when dpkg or rpm owns the binary: upgrade the package.
    SelfUpdate(crate::cmd::update::SelfUpdateArgs),
    /// Write the man pages and shell completions (for the package build).
    #[command(hide = true)]
    GenerateAssets(crate::cmd::assets::AssetsArgs),
}

/// What decides the release's plan besides the chart: shared by bootstrap (which installs it)
/// and check (which compares the deployed plan with it).
#[derive(Debug, Args, Clone)]
pub struct PlanInputs {
    /// Values file(s) used instead of the embedded each_cluster.yaml (repeatable, later wins;
    /// CMM_VALUES takes a comma-separated list). Environment fixes are still layered on top.
    #[arg(
        help_heading = "Chart",
        long = "values",
        env = "CMM_VALUES",
        value_delimiter = ','
    )]
    pub values: Vec<PathBuf>,
    /// helm --set assignment passed through after the values files (repeatable; CMM_SET takes
    /// a ';'-separated list), e.g. prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka
    #[arg(
        help_heading = "Chart",
        long = "set",
        env = "CMM_SET",
        value_delimiter = ';'
    )]
    pub sets: Vec<String>,
    /// Also collect Kubernetes object and component metrics (overlays/kube-metrics.yaml).
    #[arg(help_heading = "Chart", long, env = "CMM_KUBE_METRICS")]
    pub kube_metrics: bool,
    /// INSECURE: serve Prometheus as plain HTTP on the NodePort, without the mutual-TLS proxy
    /// (overlays/insecure-plain-http.yaml). Anyone who reaches a node reads every metric; the
    /// report and `check` mark the cluster. See docs/security.md.
    #[arg(help_heading = "Chart", long, env = "CMM_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,
    #[command(flatten)]
    pub topo: TopologyArgs,
}

/// The fleet's topology: decides the values (bootstrap, check) and what a registration writes
/// (register, deregister), so every command that does either takes it.
#[derive(Debug, Args, Clone)]
pub struct TopologyArgs {
    /// How the fleet is wired, the same on every cluster and the central node: pull (Grafana
    /// queries each cluster), push (clusters remote-write to a central receiver) or thanos (a
    /// central Thanos Query reads each cluster's sidecar). See docs/scaling.md.
    #[arg(
        help_heading = "Topology",
        long,
        env = "CMM_TOPOLOGY",
        value_enum,
        default_value_t = TopologyArg::Pull
    )]
    pub topology: TopologyArg,
    /// push: the central receiver's write URL as this cluster reaches it, e.g.
    /// https://10.0.0.5:30090/api/v1/write
    #[arg(help_heading = "Topology", long, env = "CMM_RECEIVER_URL")]
    pub receiver_url: Option<String>,
    /// push: run Prometheus in agent mode (no local queries, rules or storage; overlays/agent-mode.yaml).
    #[arg(help_heading = "Topology", long, env = "CMM_AGENT_MODE")]
    pub agent_mode: bool,
    /// thanos: upload blocks to the bucket in Secret cmm-thanos-objstore (overlays/thanos-object-storage.yaml).
    #[arg(help_heading = "Topology", long, env = "CMM_THANOS_OBJECT_STORAGE")]
    pub thanos_object_storage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    Pull,
    Push,
    Thanos,
}

impl From<TopologyArg> for cmm_installer::topology::Topology {
    fn from(t: TopologyArg) -> Self {
        use cmm_installer::topology::Topology;
        match t {
            TopologyArg::Pull => Topology::Pull,
            TopologyArg::Push => Topology::Push,
            TopologyArg::Thanos => Topology::Thanos,
        }
    }
}

/// Which cluster to talk to, resolved as kubectl does.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeTargetArgs {
    /// kubeconfig file. Default: KUBECONFIG, else ~/.kube/config.
    #[arg(long, env = "CMM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context. Default: the kubeconfig's current-context.
    #[arg(long, env = "CMM_CONTEXT")]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// A monitored cluster: Prometheus + node-exporter (values/each_cluster.yaml).
    Cluster,
    /// The central Grafana (values/central_monitor.yaml).
    Central,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    /// The cluster's name: the helm release name and the `cluster` label of its series
    /// (DNS-1123 label, at most 36 characters), e.g. kr-mum.
    #[arg(help_heading = "Release", long, env = "CMM_CLUSTER")]
    pub cluster: String,
    /// What this cluster is in CMM.
    #[arg(help_heading = "Release", long, env = "CMM_ROLE", value_enum)]
    pub role: RoleArg,
    /// Namespace of the release; created if missing.
    #[arg(help_heading = "Kubernetes", long, env = "CMM_NAMESPACE")]
    pub namespace: String,
    #[command(flatten)]
    pub plan: PlanInputs,
    /// Print the plan and render it with `helm template`; change nothing.
    #[arg(help_heading = "Release", long, env = "CMM_DRY_RUN")]
    pub dry_run: bool,
    /// How long helm waits for the workloads, e.g. 600s, 10m.
    #[arg(help_heading = "Release", long, env = "CMM_TIMEOUT")]
    pub timeout: String,
    /// A release a plain `helm` (not cmm-agent) left pending for less than this may belong to a
    /// helm still running, and is not recovered. A pending release of cmm-agent's own is judged
    /// by the run lock instead (a Lease in the namespace).
    #[arg(help_heading = "Release", long, env = "CMM_PENDING_GRACE")]
    pub pending_grace: String,
    /// The admin host's kernel version file, read to recognise a local WSL2 cluster.
    #[arg(long, env = "CMM_HOST_PROC_VERSION", hide = true)]
    pub host_proc_version: PathBuf,
    /// Do not ask the central Grafana before installing (when it cannot be reached from here
    /// yet); the report says it was not checked, and registration still runs at the end.
    #[arg(help_heading = "Grafana", long, env = "CMM_SKIP_GRAFANA_CHECK")]
    pub skip_grafana_check: bool,
    /// Last step: with --grafana-url, register the cluster in the central Grafana (role
    /// cluster), or wait for the new Grafana and issue the registration token (role central).
    #[command(flatten)]
    pub grafana: crate::cmd::register::GrafanaArgs,
    #[command(flatten)]
    pub endpoint: crate::cmd::register::EndpointArgs,
    #[command(flatten)]
    pub central: crate::cmd::central::CentralBootstrapArgs,
    /// Settings given explicitly (clap id, where from); filled by `Cli::note_given`.
    #[arg(skip)]
    pub given: Vec<(String, &'static str)>,
}

#[derive(Debug, Args)]
pub struct FixStorageArgs {
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    /// Namespace whose claims (and the volumes they held) are examined.
    #[arg(long, env = "CMM_NAMESPACE")]
    pub namespace: String,
    /// Act. Without it, only print what would be done.
    #[arg(long, env = "CMM_YES")]
    pub yes: bool,
    /// How long to wait for a deleted claim to go before leaving its volume alone, e.g. 30s.
    #[arg(long, env = "CMM_CLAIM_WAIT")]
    pub claim_wait: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    /// Fleet file (TOML). Default: the example fleet embedded in the binary.
    #[arg(long, env = "CMM_FLEET")]
    pub fleet: Option<PathBuf>,
}
