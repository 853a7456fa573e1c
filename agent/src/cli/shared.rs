//! Flag groups more than one command takes: each flag is declared once, here, and flattened
//! into the commands (`commands`). No attribute carries a default: the built-in defaults are
//! in `settings::layers::DEFAULTS`, where `--help`, `config show` and the run read them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
    #[command(flatten)]
    pub kube_metrics: KubeMetricsArg,
    #[command(flatten)]
    pub topo: TopologyArgs,
}

/// The fleet's topology: decides the values (bootstrap, check) and what a registration writes
/// (register, deregister), so every command that does either takes it.
#[derive(Debug, Args, Clone)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub choice: TopologyChoice,
    /// push: the central receiver's write URL as this cluster reaches it, e.g.
    /// https://10.0.0.5:30091/api/v1/write
    #[arg(help_heading = "Topology", long, env = "CMM_RECEIVER_URL")]
    pub receiver_url: Option<String>,
    /// push, central: what stores every cluster's samples: victoriametrics (the default; its
    /// proxy stamps each sample with its sender's certificate name) or prometheus
    /// (overlays/central-receiver-victoriametrics.yaml or overlays/central-receiver.yaml).
    #[arg(help_heading = "Topology", long, env = "CMM_RECEIVER", value_enum)]
    pub receiver: Option<ReceiverArg>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiverArg {
    #[value(name = "victoriametrics")]
    VictoriaMetrics,
    Prometheus,
}

impl From<ReceiverArg> for cmm_installer::topology::Receiver {
    fn from(r: ReceiverArg) -> Self {
        use cmm_installer::topology::Receiver;
        match r {
            ReceiverArg::VictoriaMetrics => Receiver::VictoriaMetrics,
            ReceiverArg::Prometheus => Receiver::Prometheus,
        }
    }
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

/// How to reach and authenticate to the central Grafana. The token itself is never a flag: it
/// comes from a file, `CMM_GRAFANA_TOKEN`, or the systemd credential `grafana-token`.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Grafana")]
pub struct GrafanaArgs {
    /// Root URL of the central Grafana, e.g. http://grafana.ops.example:3000 (required by
    /// register, deregister and central token; for bootstrap it turns on registration).
    #[arg(long, env = "CMM_GRAFANA_URL")]
    pub grafana_url: Option<String>,
    /// File holding the Grafana service-account token. Without it: env CMM_GRAFANA_TOKEN, then
    /// $CREDENTIALS_DIRECTORY/grafana-token (systemd LoadCredential=).
    #[arg(long, env = "CMM_GRAFANA_TOKEN_FILE")]
    pub grafana_token_file: Option<PathBuf>,
    /// Attempts per Grafana call while it is down, answers 5xx or times out (≥ 1).
    #[arg(long, env = "CMM_GRAFANA_RETRIES")]
    pub grafana_retries: u32,
    /// Timeout of one Grafana call, e.g. 10s, 500ms, 1m.
    #[arg(long, env = "CMM_GRAFANA_TIMEOUT")]
    pub grafana_timeout: String,
    /// PEM file of a private CA that signs the central Grafana's certificate (trusted on top
    /// of the system's roots), or of Grafana's own self-signed certificate (trusted as exactly
    /// itself).
    #[arg(long, env = "CMM_GRAFANA_CA_FILE")]
    pub grafana_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RulesArg {
    /// Provisioned through the API: shown as provisioned, not editable in Grafana's UI.
    Provisioned,
    /// Sent with X-Disable-Provenance: editable in the UI (the next register overwrites edits).
    Editable,
    /// No alert rules.
    Skip,
}

/// Where and how the central Grafana reaches the cluster's Prometheus, and what registration
/// writes. Shared with `bootstrap`, whose last step is a registration.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Prometheus")]
pub struct EndpointArgs {
    /// The Prometheus URL as the central Grafana reaches it; skips discovery from Kubernetes.
    #[arg(long, env = "CMM_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Node address the central Grafana reaches this cluster's NodePort at (NAT, VIP), instead
    /// of a node's ExternalIP/InternalIP.
    #[arg(long, env = "CMM_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// Basic-auth user in front of the cluster's Prometheus (an Ingress with auth).
    #[arg(
        long,
        env = "CMM_PROMETHEUS_USER",
        requires = "prometheus_password_file"
    )]
    pub prometheus_user: Option<String>,
    /// File holding the basic-auth password; stored in Grafana's encrypted secureJsonData.
    #[arg(
        long,
        env = "CMM_PROMETHEUS_PASSWORD_FILE",
        requires = "prometheus_user"
    )]
    pub prometheus_password_file: Option<PathBuf>,
    /// PEM file of the CA that signs the Prometheus endpoint's certificate.
    #[arg(long, env = "CMM_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Do not verify the endpoint's TLS certificate (test setups only).
    #[arg(long, env = "CMM_PROMETHEUS_TLS_SKIP_VERIFY")]
    pub prometheus_tls_skip_verify: bool,
    /// Do not probe Prometheus from here (when only the central node can reach it); Grafana's
    /// health check still runs.
    #[arg(long, env = "CMM_SKIP_PROMETHEUS_CHECK")]
    pub skip_prometheus_check: bool,
    /// How long a ready Prometheus may answer `up` with nothing (no first scrape yet, as right
    /// after an install) before registration fails; at least two scrape intervals (30s each).
    #[arg(long, env = "CMM_FIRST_SCRAPE_WAIT")]
    pub first_scrape_wait: String,
    /// Alert rules for the cluster.
    #[arg(long, env = "CMM_RULES", value_enum)]
    pub rules: RulesArg,
    /// Replace a datasource with the cluster's name that CMM did not make.
    #[arg(long, env = "CMM_FORCE")]
    pub force: bool,
    /// INSECURE: this cluster's Prometheus is plain HTTP. bootstrap serves it so on the NodePort,
    /// without the mutual-TLS proxy (overlays/insecure-plain-http.yaml); register, bootstrap and
    /// check accept an `http://` endpoint only with it. Anyone who reaches a node reads every
    /// metric; every report and `check` mark the cluster. See docs/security.md.
    #[arg(long, env = "CMM_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Where the CMM CA is kept, and when certificates are renewed (docs/security.md).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Mutual TLS")]
pub struct TlsArgs {
    /// kubeconfig context of the central cluster, where the CMM CA (Secret cmm-ca) and
    /// Grafana's client certificate (Secret cmm-grafana-client) are kept: this cluster's server
    /// certificate is issued from it, and registration gives Grafana its client certificate.
    #[arg(long, env = "CMM_CENTRAL_CONTEXT")]
    pub central_context: Option<String>,
    /// kubeconfig file holding that context. Default: the same one as this cluster's.
    #[arg(long, env = "CMM_CENTRAL_KUBECONFIG")]
    pub central_kubeconfig: Option<PathBuf>,
    /// Namespace of the central release, where those Secrets are.
    #[arg(long, env = "CMM_CENTRAL_NAMESPACE")]
    pub central_namespace: String,
    /// Renew a certificate when less than this is left of it, e.g. 30d.
    #[arg(long, env = "CMM_CERT_RENEW_BEFORE")]
    pub cert_renew_before: String,
}

/// What `bootstrap --role central` does after helm: wait for Grafana, issue the token.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Central Grafana (--role central)")]
pub struct CentralBootstrapArgs {
    /// How long to wait for the new central Grafana's /api/health, e.g. 300s, 5m.
    #[arg(long, env = "CMM_GRAFANA_WAIT")]
    pub grafana_wait: String,
    /// Issue the cluster agents' registration token into this new file (mode 0600).
    #[arg(long = "registration-token-out", env = "CMM_REGISTRATION_TOKEN_OUT")]
    pub registration_token_out: Option<PathBuf>,
    /// Service account of that token; created if missing.
    #[arg(
        long = "registration-service-account",
        env = "CMM_REGISTRATION_SERVICE_ACCOUNT"
    )]
    pub registration_service_account: String,
}

/// The fleet's topology, alone: what `rbac` needs (the chart renders other kinds per topology)
/// and the first of [`TopologyArgs`]. The default (pull) is in `settings::layers::DEFAULTS`.
#[derive(Debug, Args, Clone)]
pub struct TopologyChoice {
    /// How the fleet is wired, the same on every cluster and the central node: pull (Grafana
    /// queries each cluster), push (clusters remote-write to a central receiver) or thanos (a
    /// central Thanos Query reads each cluster's sidecar). See docs/scaling.md.
    #[arg(help_heading = "Topology", long, env = "CMM_TOPOLOGY", value_enum)]
    pub topology: TopologyArg,
}

/// `--kube-metrics`: bootstrap and check install it (an overlay), rbac grants what it needs.
#[derive(Debug, Args, Clone)]
pub struct KubeMetricsArg {
    /// Also collect Kubernetes object and component metrics (overlays/kube-metrics.yaml;
    /// for rbac: the Services in kube-system it needs).
    #[arg(help_heading = "Chart", long, env = "CMM_KUBE_METRICS")]
    pub kube_metrics: bool,
}

/// `--cluster`, one declaration for bootstrap, register, deregister and check. Optional here:
/// `settings` requires it with a message naming every way to give it, except for check, which
/// reports an unconfigured host instead (a fresh package's timer must not fail).
#[derive(Debug, Args, Clone)]
pub struct ClusterArg {
    /// The cluster's name: the helm release name and the `cluster` label of its series
    /// (DNS-1123 label, at most 36 characters), e.g. kr-mum.
    #[arg(help_heading = "Release", long, env = "CMM_CLUSTER")]
    pub cluster: Option<String>,
}

/// `--namespace`, one declaration for every command that works in CMM's namespace.
#[derive(Debug, Args, Clone)]
pub struct NamespaceArg {
    /// Namespace of CMM's release (bootstrap creates it if missing; fix-storage examines its
    /// claims; register and check discover the Prometheus endpoint in it).
    #[arg(help_heading = "Kubernetes", long, env = "CMM_NAMESPACE")]
    pub namespace: String,
}

/// What a helm run of bootstrap or of check's repairs is bounded by.
#[derive(Debug, Args, Clone)]
pub struct HelmRunArgs {
    /// How long helm may take: bootstrap's install and its wait for the workloads, the
    /// rollback or reinstall of check's repairs, e.g. 600s, 10m.
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
}

/// `--claim-wait`: fix-storage and check's storage repair.
#[derive(Debug, Args, Clone)]
pub struct ClaimWaitArg {
    /// How long to wait for a deleted claim to go before leaving its volume alone, e.g. 30s.
    #[arg(help_heading = "Repair", long, env = "CMM_CLAIM_WAIT")]
    pub claim_wait: String,
}

/// `--role`: bootstrap installs it, rbac grants what it needs.
#[derive(Debug, Args, Clone)]
pub struct RoleChoice {
    /// What this cluster is in CMM.
    #[arg(help_heading = "Release", long, env = "CMM_ROLE", value_enum)]
    pub role: RoleArg,
}

/// `--repair`: check repairs; schedule's check does.
#[derive(Debug, Args, Clone)]
pub struct RepairArg {
    /// Carry out the safe, idempotent repairs: re-register a missing or drifted datasource or
    /// rule group, roll back a pending release under the run lock, the safe part of
    /// fix-storage. Never installs or upgrades the chart.
    #[arg(help_heading = "Repair", long, env = "CMM_REPAIR")]
    pub repair: bool,
}
