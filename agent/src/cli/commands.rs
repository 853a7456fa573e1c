//! Each command's flags: its own, and the shared groups (`shared`) flattened in. The commands
//! never read these structs below their entry: `settings` turns them into typed values first.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::shared::*;

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    // The one setting every run needs comes first in --help (its group, Release, leads).
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    #[command(flatten)]
    pub role: RoleChoice,
    #[command(flatten)]
    pub namespace: NamespaceArg,
    #[command(flatten)]
    pub plan: PlanInputs,
    /// Print the plan and render it with `helm template`; change nothing.
    #[arg(help_heading = "Release", long, env = "CMM_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    pub helm_run: HelmRunArgs,
    /// Do not ask the central Grafana before installing (when it cannot be reached from here
    /// yet); the report says it was not checked, and registration still runs at the end.
    #[arg(help_heading = "Grafana", long, env = "CMM_SKIP_GRAFANA_CHECK")]
    pub skip_grafana_check: bool,
    /// Last step: with --grafana-url, register the cluster in the central Grafana (role
    /// cluster), or wait for the new Grafana and issue the registration token (role central).
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub central: CentralBootstrapArgs,
    /// Settings given explicitly (clap id, where from); filled by `Cli::note_given`.
    #[arg(skip)]
    pub given: Vec<(String, &'static str)>,
}

#[derive(Debug, Args)]
pub struct FixStorageArgs {
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// Act. Without it, only print what would be done.
    #[arg(long, env = "CMM_YES")]
    pub yes: bool,
    #[command(flatten)]
    pub claim_wait: ClaimWaitArg,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    /// Fleet file (TOML). Default: the example fleet embedded in the binary.
    #[arg(long, env = "CMM_FLEET")]
    pub fleet: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    #[command(flatten)]
    pub namespace: NamespaceArg,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub topo: TopologyArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Unset, check reports the host "not configured" (degraded, exit 1), not a failure.
    /// With --role central: the central release's name.
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// cluster: this cluster's path to the central Grafana. central: the central side itself
    /// (its release, Grafana, the CA and client certificate and what reads them, the fleet).
    #[command(flatten)]
    pub role: RoleChoice,
    #[command(flatten)]
    pub namespace: NamespaceArg,
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
    #[command(flatten)]
    pub repair: RepairArg,
    /// With --repair: also reinstall (`bootstrap`) when the release is missing, failed or
    /// drifted from its plan.
    #[arg(
        help_heading = "Repair",
        long,
        env = "CMM_REINSTALL",
        requires = "repair"
    )]
    pub reinstall: bool,
    /// Send one test notification through each contact point of the central Grafana (its
    /// receiver test, as the UI's Test button): proves an alert reaches someone, and people
    /// receive it. Without it, contact points are reported "unverified".
    #[arg(help_heading = "Grafana", long, env = "CMM_TEST_CONTACT_POINTS")]
    pub test_contact_points: bool,
    /// Warn when the TSDB uses this percentage of its retention size or more (1-100).
    #[arg(help_heading = "Prometheus", long, env = "CMM_STORAGE_WARN")]
    pub storage_warn: u8,
    #[command(flatten)]
    pub helm_run: HelmRunArgs,
    #[command(flatten)]
    pub claim_wait: ClaimWaitArg,
}

#[derive(Debug, Args)]
pub struct DeregisterArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    #[command(flatten)]
    pub topo: TopologyArgs,
    /// thanos: where the cluster's endpoint is removed from (the central cluster).
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct CentralArgs {
    #[command(subcommand)]
    pub command: CentralCommand,
}

#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// Issue a registration token for cluster agents (service account with role Admin).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    /// Log in as this Grafana user (an org admin, e.g. admin on a fresh install) instead of a
    /// token; the password comes from --grafana-password-file.
    #[arg(long, env = "CMM_GRAFANA_USER", requires = "grafana_password_file")]
    pub grafana_user: Option<String>,
    /// File holding that user's password.
    #[arg(long, env = "CMM_GRAFANA_PASSWORD_FILE", requires = "grafana_user")]
    pub grafana_password_file: Option<PathBuf>,
    /// Service account the token belongs to; created if missing.
    #[arg(long, env = "CMM_SERVICE_ACCOUNT")]
    pub service_account: String,
    /// Name of the new token (unique per Grafana org). Default: cmm-<unix time>.
    #[arg(long, env = "CMM_TOKEN_NAME")]
    pub token_name: Option<String>,
    /// Token lifetime in seconds; 0 = does not expire.
    #[arg(long, env = "CMM_TOKEN_TTL")]
    pub token_ttl: u64,
    /// Write the token to this new file (mode 0600; an existing file is never overwritten)
    /// instead of stdout.
    #[arg(long, env = "CMM_TOKEN_OUT")]
    pub token_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RbacArgs {
    #[command(flatten)]
    pub role: RoleChoice,
    #[command(flatten)]
    pub namespace: NamespaceArg,
    #[command(flatten)]
    pub kube_metrics: KubeMetricsArg,
    /// Who is granted: User:NAME, Group:NAME or ServiceAccount:NAMESPACE:NAME (e.g. the IAM
    /// user an EKS access entry maps, or the agent host's service account).
    #[arg(long, env = "CMM_RBAC_SUBJECT")]
    pub subject: String,
    /// With --role central: also let this subject (the clusters' agents, as the central
    /// cluster knows them) read the CMM CA and Grafana's client certificate, by name and
    /// nothing else: what bootstrap, register and check --repair on a cluster host read there.
    #[arg(long, env = "CMM_RBAC_CA_READER")]
    pub ca_reader: Option<String>,
    /// The chart renders other kinds per topology (a receiver on the central node in push,
    /// Thanos Query's NetworkPolicy in thanos, an agent's CR on the clusters), and in thanos the
    /// clusters' agents also patch their key of the central endpoints ConfigMap.
    #[command(flatten)]
    pub topology: TopologyChoice,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a settings file: every problem at once, each with file, line, key and the fix.
    /// Exit 0 when valid, 2 when not.
    Validate {
        /// The file. Default: --config / CMM_CONFIG, else /etc/cmm/agent.toml.
        file: Option<PathBuf>,
    },
    /// Print every setting of a command as it resolves now (environment, file, defaults),
    /// each with where it came from; secrets show their source, never their value.
    Show {
        /// The command whose settings to show, e.g. `bootstrap` or `central token`.
        /// Default: check, the command the systemd timer runs.
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Run check this often, e.g. 15m, 1h (1m to 24h).
    #[arg(long, env = "CMM_EVERY")]
    pub every: String,
    /// The scheduled check also repairs (check --repair).
    #[command(flatten)]
    pub repair: RepairArg,
    /// Show the transient timer's state instead of making one.
    #[arg(long, env = "CMM_SCHEDULE_STATUS", conflicts_with = "remove")]
    pub status: bool,
    /// Stop and remove the transient timer.
    #[arg(long, env = "CMM_SCHEDULE_REMOVE")]
    pub remove: bool,
    /// Name of the transient units (UNIT.timer, UNIT.service).
    #[arg(long, env = "CMM_SCHEDULE_UNIT")]
    pub unit: String,
}

#[derive(Debug, Args)]
pub struct SelfUpdateArgs {
    /// Release feed: the base URL of a GitHub-compatible releases API (GitHub Enterprise:
    /// https://HOST/api/v3, or a mirror serving the same paths).
    #[arg(long, env = "CMM_UPDATE_FEED")]
    pub update_feed: String,
    /// The repository whose releases are installed, OWNER/NAME.
    #[arg(long, env = "CMM_UPDATE_REPO")]
    pub update_repo: String,
    /// Install this release tag (e.g. v0.2.0) instead of the newest.
    #[arg(long, env = "CMM_UPDATE_TO")]
    pub to: Option<String>,
    /// With --to: allow a release older than the running one.
    #[arg(long, env = "CMM_ALLOW_DOWNGRADE", requires = "to")]
    pub allow_downgrade: bool,
    /// Put back the binary the last self-update replaced (kept as .cmm-agent.previous).
    #[arg(long, env = "CMM_ROLLBACK", conflicts_with_all = ["to", "allow_downgrade"])]
    pub rollback: bool,
    /// The whole update's time, release listing and download included, e.g. 5m. Each answer
    /// is also capped at 128 MiB.
    #[arg(long, env = "CMM_UPDATE_TIMEOUT")]
    pub update_timeout: String,
}

#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Directory to write man/, completions/ and values/ into (created).
    pub out: PathBuf,
}
