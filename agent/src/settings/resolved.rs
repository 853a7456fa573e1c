//! The typed settings each command runs on: clap's structs (`cli`) turned, once and before
//! anything is contacted, into checked values: durations as `Duration`, the cluster name as a
//! `ClusterName`, files read, the token's source decided, the topology and transport as one
//! `Wiring`. Below a command's entry nothing reads a clap struct; a bad value is exit 2 naming
//! the setting the way it was given (`layers::named`) and the fix.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cmm_central::prometheus::PrometheusTarget;
use cmm_central::register::RulesMode;
use cmm_central::retry::RetryPolicy;
use cmm_central::secret::read_secret_file;
use cmm_central::{Credentials, GrafanaClient, Secret};
use cmm_core::ClusterName;
use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;
use cmm_installer::kube::KubeTarget;
use cmm_installer::topology::{Choice, Names, Role, Wiring};

use super::token::{self, TokenSource};
use super::{check_namespace, layers, BadInput, DurationSetting};
use crate::cli;
use crate::exit::{central_class, Classify, ExitCode};

/// More attempts than this would hold an unattended run for many minutes per Grafana call.
pub const MAX_GRAFANA_RETRIES: u32 = 20;

fn usage<T>(msg: String) -> anyhow::Result<T> {
    Err(BadInput(msg)).classify(ExitCode::Usage)
}

/// The cluster's name, required (bootstrap, register, deregister).
pub fn cluster(arg: &cli::ClusterArg) -> anyhow::Result<ClusterName> {
    match &arg.cluster {
        Some(raw) => parse_cluster(raw),
        None => usage(format!(
            "{} is not set: give this cluster's name (its helm release and `cluster` label), \
             e.g. kr-mum",
            layers::named("cluster")
        )),
    }
}

fn parse_cluster(raw: &str) -> anyhow::Result<ClusterName> {
    ClusterName::parse(raw)
        .classify(ExitCode::Usage)
        .context(layers::named("cluster"))
}

/// A namespace setting, checked.
pub fn namespace(arg: &cli::NamespaceArg) -> anyhow::Result<String> {
    check_namespace(&arg.namespace)?;
    Ok(arg.namespace.clone())
}

/// The cluster a command talks to (resolved to a file and context, kubectl's way, by
/// `cmm_installer::kube::connect`).
/// The agent's cache directory, as XDG says: `$XDG_CACHE_HOME/cmm-agent`, else
/// `$HOME/.cache/cmm-agent` (the packaged unit's HOME is its state directory). `None` without
/// either: nothing is remembered.
pub fn agent_cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("cmm-agent"))
}

pub fn kube_target(args: &cli::KubeTargetArgs) -> KubeTarget {
    KubeTarget {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        central: false,
    }
}

/// The chart and helm a command renders or installs with.
#[derive(Clone)]
pub struct ChartSettings {
    pub chart: ChartSource,
    pub helm: Helm,
}

impl ChartSettings {
    pub fn resolve(args: &cli::ChartArgs) -> anyhow::Result<Self> {
        let chart = match &args.chart {
            Some(raw) => ChartSource::parse(raw).classify(ExitCode::Usage)?,
            None => ChartSource::upstream(),
        };
        Ok(Self {
            chart,
            // Every helm child, in every command, ends the same way on SIGINT/SIGTERM:
            // forwarded, given its grace, then killed (`cmm_installer::helm`).
            helm: Helm::new(args.helm.clone())
                .with_stop(crate::interrupt::stop())
                .with_version_cache(agent_cache_dir()),
        })
    }
}

/// The topology and its options, checked together (exit 2 naming the settings). `central`:
/// the central release, or a command that never sends (no receiver URL needed).
pub fn wiring(
    args: &cli::TopologyArgs,
    central: bool,
    insecure_plain_http: bool,
) -> anyhow::Result<Wiring> {
    Wiring::new(&Choice {
        topology: args.choice.topology.into(),
        receiver_url: args.receiver_url.as_deref(),
        receiver: args.receiver.map(Into::into),
        agent_mode: args.agent_mode,
        object_storage: args.thanos_object_storage,
        insecure_plain_http,
        central,
        names: Names::default(),
    })
    .classify(ExitCode::Usage)
}

/// Every YAML document of `text` parses (a values file may hold several, or none); the error
/// is where, never what (a values file may hold a password). Nothing is built: any key or
/// value YAML allows is taken, as helm takes it.
fn yaml_documents(text: &str) -> Result<(), String> {
    serde_saphyr::from_multiple::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| cmm_installer::yaml::place(&e))
}

/// What decides a release's plan besides the chart (bootstrap installs it, check compares).
#[derive(Clone)]
pub struct PlanSettings {
    /// The user's values files as (name, text); `None`: the embedded each_cluster.yaml.
    pub user_values: Option<Vec<(String, String)>>,
    pub sets: Vec<String>,
    pub kube_metrics: bool,
    /// The topology, its options and the transport.
    pub wiring: Wiring,
}

impl PlanSettings {
    pub fn resolve(
        args: &cli::PlanInputs,
        central: bool,
        insecure_plain_http: bool,
    ) -> anyhow::Result<Self> {
        for s in &args.sets {
            cmm_installer::set::check_set(s).classify(ExitCode::Usage)?;
        }
        let user_values = if args.values.is_empty() {
            None
        } else {
            let mut files = Vec::new();
            for p in &args.values {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| {
                        BadInput(format!(
                            "{} file {} cannot be read ({e}): give an existing values file",
                            layers::named("values"),
                            p.display()
                        ))
                    })
                    .classify(ExitCode::Usage)?;
                // helm would refuse it only after the namespace was made: parse it now.
                if let Err(e) = yaml_documents(&text) {
                    return usage(format!(
                        "{} file {} is not YAML ({e}): fix it, or give another values file",
                        layers::named("values"),
                        p.display()
                    ));
                }
                files.push((p.display().to_string(), text));
            }
            Some(files)
        };
        Ok(Self {
            user_values,
            sets: args.sets.clone(),
            kube_metrics: args.kube_metrics.kube_metrics,
            wiring: wiring(&args.topo, central, insecure_plain_http)?,
        })
    }
}

/// How to reach and log in to the central Grafana. The token is not read here (the central
/// bootstrap may log in with the admin Secret instead): only which source wins.
#[derive(Clone)]
pub struct GrafanaSettings {
    pub url: Option<String>,
    pub token: TokenSource,
    pub retry: RetryPolicy,
    /// A private CA for Grafana's certificate (read only when a URL is set).
    pub ca_pem: Option<String>,
}

impl GrafanaSettings {
    pub fn resolve(args: &cli::GrafanaArgs) -> anyhow::Result<Self> {
        if !(1..=MAX_GRAFANA_RETRIES).contains(&args.grafana_retries) {
            return usage(format!(
                "{} is {}: give 1 (one attempt, no retry) to {MAX_GRAFANA_RETRIES}",
                layers::named("grafana-retries"),
                args.grafana_retries
            ));
        }
        let retry = RetryPolicy {
            attempts: args.grafana_retries,
            timeout: DurationSetting::GrafanaTimeout.parse(&args.grafana_timeout)?,
            ..RetryPolicy::default()
        };
        let ca_pem = match (&args.grafana_url, &args.grafana_ca_file) {
            (Some(_), Some(path)) => Some(
                std::fs::read_to_string(path)
                    .classify(ExitCode::Usage)
                    .with_context(|| format!("reading --grafana-ca-file {}", path.display()))?,
            ),
            _ => None,
        };
        Ok(Self {
            url: args.grafana_url.clone(),
            token: token::source(args.grafana_token_file.as_deref()),
            retry,
            ca_pem,
        })
    }

    /// The service-account token from its source; none is exit 2 naming every source.
    pub fn token_credentials(&self) -> anyhow::Result<Credentials> {
        match self.token.read()? {
            Some(t) => Ok(Credentials::Token(t)),
            None => usage(
                "no Grafana token: pass --grafana-token-file FILE (or CMM_GRAFANA_TOKEN_FILE), set \
                 CMM_GRAFANA_TOKEN, or give the systemd credential grafana-token; issue one with \
                 `cmm-agent central token`"
                    .into(),
            ),
        }
    }

    /// A client logging in with `creds`; the URL is required here.
    pub fn client(&self, creds: Credentials) -> anyhow::Result<GrafanaClient> {
        let Some(url) = &self.url else {
            return usage(format!(
                "{} is required: the central Grafana's root URL, e.g. \
                 http://grafana.ops.example:3000",
                layers::named("grafana-url")
            ));
        };
        GrafanaClient::with_ca(url, creds, self.retry, self.ca_pem.as_deref())
            .classify_by(central_class)
    }

    /// The client with the token: what register, deregister and check use.
    pub fn token_client(&self) -> anyhow::Result<GrafanaClient> {
        let creds = self.token_credentials()?;
        self.client(creds)
    }
}

/// Where and how the central Grafana (and the agent) reach the cluster's Prometheus, and what
/// a registration writes; the password and CA files read.
#[derive(Clone)]
pub struct PrometheusSettings {
    pub url: Option<String>,
    pub advertise_address: Option<String>,
    pub basic_auth: Option<(String, Secret)>,
    pub ca_pem: Option<String>,
    pub tls_skip_verify: bool,
    pub skip_check: bool,
    pub first_scrape_wait: Duration,
    pub rules: RulesMode,
    pub force: bool,
    /// Given knowingly (--insecure-plain-http): an `http://` endpoint may be registered.
    pub insecure_plain_http: bool,
}

impl PrometheusSettings {
    pub fn resolve(args: &cli::EndpointArgs) -> anyhow::Result<Self> {
        let first_scrape_wait = DurationSetting::FirstScrapeWait.parse(&args.first_scrape_wait)?;
        let basic_auth = match (&args.prometheus_user, &args.prometheus_password_file) {
            (Some(user), Some(file)) => Some((
                user.clone(),
                read_secret_file(file, "the Prometheus password (--prometheus-password-file)")
                    .classify(ExitCode::Usage)?,
            )),
            _ => None,
        };
        let ca_pem = match &args.prometheus_ca_file {
            Some(ca) => Some(
                std::fs::read_to_string(ca)
                    .classify(ExitCode::Usage)
                    .with_context(|| format!("reading --prometheus-ca-file {}", ca.display()))?,
            ),
            None => None,
        };
        if let Some(url) = &args.prometheus_url {
            PrometheusTarget {
                url: url.clone(),
                ..Default::default()
            }
            .parsed_url()
            .classify_by(central_class)?;
            if !args.insecure_plain_http && cmm_central::endpoint::is_plain_http(url) {
                return usage(format!(
                    "{} {url} is plain HTTP: anyone on the path between Grafana and the cluster \
                     reads its metrics. Give an https:// endpoint, or pass {} to register it \
                     knowingly (docs/security.md)",
                    layers::named("prometheus-url"),
                    layers::named("insecure-plain-http"),
                ));
            }
        }
        Ok(Self {
            url: args.prometheus_url.clone(),
            advertise_address: args.advertise_address.clone(),
            basic_auth,
            ca_pem,
            tls_skip_verify: args.prometheus_tls_skip_verify,
            skip_check: args.skip_prometheus_check,
            first_scrape_wait,
            rules: match args.rules {
                cli::RulesArg::Provisioned => RulesMode::Provisioned,
                cli::RulesArg::Editable => RulesMode::Editable,
                cli::RulesArg::Skip => RulesMode::Skip,
            },
            force: args.force,
            insecure_plain_http: args.insecure_plain_http,
        })
    }
}

/// The central cluster as a cluster's agent reaches it: where the CMM CA and Grafana's client
/// certificate are kept (and, in thanos, the endpoints ConfigMap), and when to renew.
#[derive(Clone)]
pub struct CentralSide {
    /// The central cluster's kubeconfig context; `None`: not reachable from here.
    pub context: Option<String>,
    /// Its kubeconfig file (default: this cluster's).
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub renew_before: Duration,
}

impl CentralSide {
    /// `own`: this cluster's kubeconfig, which the central context is looked up in by default.
    pub fn resolve(args: &cli::TlsArgs, own: Option<&PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            context: args.central_context.clone(),
            kubeconfig: args.central_kubeconfig.clone().or_else(|| own.cloned()),
            namespace: args.central_namespace.clone(),
            // In certificate days (cmm_pki::clock): the same as given, outside a test.
            renew_before: cmm_pki::clock::scaled(
                DurationSetting::CertRenewBefore.parse(&args.cert_renew_before)?,
            ),
        })
    }

    /// The central cluster's kube target, when a context is set.
    pub fn target(&self) -> Option<KubeTarget> {
        self.context.as_ref().map(|c| KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: Some(c.clone()),
            central: true,
        })
    }
}

/// What a helm run of bootstrap (or of check's repairs) is bounded by.
#[derive(Clone)]
pub struct HelmRun {
    pub timeout: Duration,
    pub pending_grace: Duration,
    pub host_proc_version: PathBuf,
}

impl HelmRun {
    pub fn resolve(args: &cli::HelmRunArgs) -> anyhow::Result<Self> {
        Ok(Self {
            timeout: DurationSetting::Timeout.parse(&args.timeout)?,
            pending_grace: DurationSetting::PendingGrace.parse(&args.pending_grace)?,
            host_proc_version: args.host_proc_version.clone(),
        })
    }
}

/// The central role's last step: wait for the new Grafana, issue the agents' token.
#[derive(Clone)]
pub struct CentralRole {
    pub grafana_wait: Duration,
    pub token_out: Option<PathBuf>,
    pub service_account: String,
}

/// A token file is always a new file: refuse an existing path up front, naming the flag.
pub fn refuse_existing(path: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    usage(format!(
        "{flag} {} exists; CMM never overwrites a token file: choose a new path",
        path.display()
    ))
}

impl CentralRole {
    pub fn resolve(args: &cli::CentralBootstrapArgs) -> anyhow::Result<Self> {
        if let Some(out) = &args.registration_token_out {
            refuse_existing(out, "--registration-token-out")?;
            let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return usage(format!(
                    "--registration-token-out {}: its directory does not exist; create it first",
                    out.display()
                ));
            }
        }
        Ok(Self {
            grafana_wait: DurationSetting::GrafanaWait.parse(&args.grafana_wait)?,
            token_out: args.registration_token_out.clone(),
            service_account: args.registration_service_account.clone(),
        })
    }
}

/// `bootstrap`, typed. `check --repair --reinstall` builds one from its own settings.
#[derive(Clone)]
pub struct BootstrapSettings {
    pub cluster: ClusterName,
    pub role: Role,
    pub namespace: String,
    pub kube: KubeTarget,
    pub chart: ChartSettings,
    pub plan: PlanSettings,
    pub dry_run: bool,
    pub helm_run: HelmRun,
    pub skip_grafana_check: bool,
    pub grafana: GrafanaSettings,
    pub prometheus: PrometheusSettings,
    pub central: CentralSide,
    /// Role central only.
    pub central_role: Option<CentralRole>,
}

/// A bootstrap setting that does nothing for the chosen role is refused, not ignored:
/// someone expected it to do something. `given`: (clap id, where from) of explicit settings.
fn refuse_other_roles_settings(role: Role, given: &[(String, &str)]) -> anyhow::Result<()> {
    let (other, name) = match role {
        Role::Cluster => (cli::CENTRAL_ONLY, "cluster"),
        Role::Central => (cli::CLUSTER_ONLY, "central"),
    };
    let wrong: Vec<String> = given
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
    usage(format!(
        "{} do(es) nothing with --role {name}: remove it, or choose the other --role",
        wrong.join(", ")
    ))
}

impl BootstrapSettings {
    pub fn resolve(args: &cli::BootstrapArgs) -> anyhow::Result<Self> {
        let cluster = cluster(&args.cluster)?;
        let namespace = namespace(&args.namespace)?;
        let role = match args.role.role {
            cli::RoleArg::Cluster => Role::Cluster,
            cli::RoleArg::Central => Role::Central,
        };
        refuse_other_roles_settings(role, &args.given)?;
        let mut plan = PlanSettings::resolve(
            &args.plan,
            role == Role::Central,
            args.endpoint.insecure_plain_http,
        )?;
        let helm_run = HelmRun::resolve(&args.helm_run)?;
        let chart = ChartSettings::resolve(&args.chart)?;
        let grafana = GrafanaSettings::resolve(&args.grafana)?;
        let prometheus = PrometheusSettings::resolve(&args.endpoint)?;
        let central = CentralSide::resolve(&args.endpoint.tls, args.kube.kubeconfig.as_ref())?;
        let central_role = match role {
            Role::Central => Some(CentralRole::resolve(&args.central)?),
            Role::Cluster => None,
        };
        // The central Grafana's links (alerts, silences, dashboards, the runbook) point where
        // people reach it: the URL bootstrap waits for it at.
        if let (Role::Central, Some(url)) = (role, &grafana.url) {
            plan.sets
                .extend(cmm_installer::set::grafana_root_url(url, &plan.sets));
        }
        if role == Role::Central && grafana.url.is_some() {
            // The URL, CA file, retries and timeout, with a placeholder credential: the real
            // one may only exist once the central Grafana's admin Secret does.
            grafana.client(Credentials::Token(Secret::new("-")))?;
        }
        let s = Self {
            cluster,
            role,
            namespace,
            kube: kube_target(&args.kube),
            chart,
            plan,
            dry_run: args.dry_run,
            helm_run,
            skip_grafana_check: args.skip_grafana_check,
            grafana,
            prometheus,
            central,
            central_role,
        };
        if s.mutual_tls() && !s.dry_run && s.central.context.is_none() {
            return usage(
                "this cluster's Prometheus is served over mutual TLS by default, with a server \
                 certificate from the CMM CA on the central cluster: pass --central-context (the \
                 central cluster's kubeconfig context) so the agent can issue it, or, knowingly, \
                 --insecure-plain-http (docs/security.md)"
                    .into(),
            );
        }
        // In pull a plain-HTTP cluster takes nothing from the central cluster: a central
        // context given beside it is a contradiction the person should see, not a silent no-op.
        if s.role == Role::Cluster
            && !s.mutual_tls()
            && s.plan.wiring.topology == cmm_installer::topology::Topology::Pull
            && s.central.context.is_some()
        {
            return usage(format!(
                "{} is for mutual TLS (the CMM CA issues this cluster's certificate), and {} \
                 serves plain HTTP with none: drop one of them (docs/security.md)",
                layers::named("central-context"),
                layers::named("insecure-plain-http")
            ));
        }
        Ok(s)
    }

    /// A monitored cluster served over mutual TLS (the central role serves no Prometheus).
    pub fn mutual_tls(&self) -> bool {
        self.role == Role::Cluster && self.plan.wiring.mutual_tls()
    }

    /// Whether the last step registers (a cluster) or waits for Grafana (the central role).
    pub fn registers(&self) -> bool {
        self.grafana.url.is_some()
    }
}

/// `check`, typed.
pub struct CheckSettings {
    /// The cluster (role cluster) or the central release (role central).
    pub cluster: ClusterName,
    pub role: Role,
    pub namespace: String,
    pub kube: KubeTarget,
    pub chart: ChartSettings,
    pub plan: PlanSettings,
    pub grafana: GrafanaSettings,
    pub prometheus: PrometheusSettings,
    pub central: CentralSide,
    pub repair: bool,
    pub reinstall: bool,
    pub test_contact_points: bool,
    pub storage_warn: u8,
    pub helm_run: HelmRun,
    pub claim_wait: Duration,
}

impl CheckSettings {
    /// `Ok(None)`: no cluster name anywhere, an unconfigured host (reported, not a failure;
    /// nothing else is read, as nothing else is judged).
    pub fn resolve(args: &cli::CheckArgs) -> anyhow::Result<Option<Self>> {
        let Some(raw) = &args.cluster.cluster else {
            return Ok(None);
        };
        let cluster = parse_cluster(raw)?;
        let namespace = namespace(&args.namespace)?;
        if !(1..=100).contains(&args.storage_warn) {
            return usage(format!(
                "{} is {}: give a percentage from 1 to 100",
                layers::named("storage-warn"),
                args.storage_warn
            ));
        }
        let helm_run = HelmRun::resolve(&args.helm_run)?;
        let claim_wait = DurationSetting::ClaimWait.parse(&args.claim_wait.claim_wait)?;
        let role = match args.role.role {
            cli::RoleArg::Cluster => Role::Cluster,
            cli::RoleArg::Central => Role::Central,
        };
        let central = role == Role::Central;
        if central && args.reinstall {
            return usage(format!(
                "{} does nothing with --role central: the central release is installed by \
                 `cmm-agent bootstrap --role central`",
                layers::named("reinstall")
            ));
        }
        let mut plan =
            PlanSettings::resolve(&args.plan, central, args.endpoint.insecure_plain_http)?;
        let grafana = GrafanaSettings::resolve(&args.grafana)?;
        // The plan the central bootstrap deployed carries Grafana's root URL: the same here, or
        // the plan digest would differ from it (see BootstrapSettings::resolve).
        if let (true, Some(url)) = (central, &grafana.url) {
            plan.sets
                .extend(cmm_installer::set::grafana_root_url(url, &plan.sets));
        }
        Ok(Some(Self {
            cluster,
            role,
            namespace,
            kube: kube_target(&args.kube),
            chart: ChartSettings::resolve(&args.chart)?,
            plan,
            grafana,
            prometheus: PrometheusSettings::resolve(&args.endpoint)?,
            central: CentralSide::resolve(&args.endpoint.tls, args.kube.kubeconfig.as_ref())?,
            repair: args.repair.repair,
            reinstall: args.reinstall,
            test_contact_points: args.test_contact_points,
            storage_warn: args.storage_warn,
            helm_run,
            claim_wait,
        }))
    }

    /// `--repair --reinstall`: bootstrap of this cluster with check's own settings.
    pub fn reinstall_settings(&self) -> BootstrapSettings {
        BootstrapSettings {
            cluster: self.cluster.clone(),
            role: self.role,
            namespace: self.namespace.clone(),
            kube: self.kube.clone(),
            chart: self.chart.clone(),
            plan: self.plan.clone(),
            dry_run: false,
            helm_run: self.helm_run.clone(),
            skip_grafana_check: false,
            grafana: self.grafana.clone(),
            prometheus: self.prometheus.clone(),
            central: self.central.clone(),
            central_role: None,
        }
    }

    /// The release's role for messages and the report.
    pub fn is_central(&self) -> bool {
        self.role == Role::Central
    }
}

/// `register`, typed.
pub struct RegisterSettings {
    pub cluster: ClusterName,
    pub namespace: String,
    pub kube: KubeTarget,
    pub grafana: GrafanaSettings,
    pub prometheus: PrometheusSettings,
    pub central: CentralSide,
    pub wiring: Wiring,
}

impl RegisterSettings {
    pub fn resolve(args: &cli::RegisterArgs) -> anyhow::Result<Self> {
        Ok(Self {
            cluster: cluster(&args.cluster)?,
            // Not checked here (as before the move): a wrong one fails discovery, naming it.
            namespace: args.namespace.namespace.clone(),
            kube: kube_target(&args.kube),
            wiring: wiring(&args.topo, false, args.endpoint.insecure_plain_http)?,
            grafana: GrafanaSettings::resolve(&args.grafana)?,
            prometheus: PrometheusSettings::resolve(&args.endpoint)?,
            central: CentralSide::resolve(&args.endpoint.tls, args.kube.kubeconfig.as_ref())?,
        })
    }
}

/// `deregister`, typed. Leaving needs no receiver URL: nothing is sent.
pub struct DeregisterSettings {
    pub cluster: ClusterName,
    pub grafana: GrafanaSettings,
    pub wiring: Wiring,
    pub central: CentralSide,
}

impl DeregisterSettings {
    pub fn resolve(args: &cli::DeregisterArgs) -> anyhow::Result<Self> {
        Ok(Self {
            cluster: cluster(&args.cluster)?,
            wiring: wiring(&args.topo, true, false)?,
            grafana: GrafanaSettings::resolve(&args.grafana)?,
            central: CentralSide::resolve(&args.tls, None)?,
        })
    }
}

/// `fix-storage`, typed.
pub struct FixStorageSettings {
    pub kube: KubeTarget,
    pub namespace: String,
    pub yes: bool,
    pub claim_wait: Duration,
}

impl FixStorageSettings {
    pub fn resolve(args: &cli::FixStorageArgs) -> anyhow::Result<Self> {
        Ok(Self {
            namespace: namespace(&args.namespace)?,
            claim_wait: DurationSetting::ClaimWait.parse(&args.claim_wait.claim_wait)?,
            kube: kube_target(&args.kube),
            yes: args.yes,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::exit::ExitCode;

    /// The command line as `settings::start` reads it without a settings file: the built-in
    /// defaults applied, the given settings noted.
    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["cmm-agent"];
        argv.extend_from_slice(args);
        let matches = layers::defaults_only()
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        cli.note_given(&matches);
        cli
    }

    fn bootstrap(args: &[&str]) -> anyhow::Result<BootstrapSettings> {
        let mut argv = vec!["bootstrap"];
        argv.extend_from_slice(args);
        match cli(&argv).command {
            Command::Bootstrap(b) => BootstrapSettings::resolve(&b),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_central_grafanas_root_url_is_the_url_bootstrap_reaches_it_at() {
        let root = |extra: &[&str]| {
            let mut args = vec!["--cluster", "monitor", "--role", "central"];
            args.extend_from_slice(extra);
            bootstrap(&args).unwrap().plan.sets
        };
        assert!(root(&[]).is_empty(), "no URL, nothing to set");
        assert_eq!(
            root(&["--grafana-url", "https://grafana.example.org"]),
            [r"grafana.grafana\.ini.server.root_url=https://grafana.example.org/"]
        );
        // The operator's own value wins.
        let own = r"grafana.grafana\.ini.server.root_url=https://ops.example/grafana/";
        assert_eq!(
            root(&["--grafana-url", "http://10.0.0.5:32000", "--set", own]),
            [own]
        );
    }

    fn check(args: &[&str]) -> anyhow::Result<Option<CheckSettings>> {
        let mut argv = vec!["check"];
        argv.extend_from_slice(args);
        match cli(&argv).command {
            Command::Check(c) => CheckSettings::resolve(&c),
            _ => unreachable!(),
        }
    }

    const PLAIN: &[&str] = &["--cluster", "kr-mum", "--insecure-plain-http"];
    /// A values file helm cannot read (tabs and a broken mapping), shipped with the test.
    const BAD_YAML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/not-yaml.yaml");

    #[test]
    fn every_bad_bootstrap_value_is_exit_2_naming_its_setting() {
        let err = bootstrap(&["--insecure-plain-http"]).err().unwrap();
        assert_eq!(ExitCode::of(&err), ExitCode::Usage);
        assert!(
            err.to_string()
                .contains("--cluster / CMM_CLUSTER is not set"),
            "{err}"
        );
        let cases: &[(&[&str], &str)] = &[
            (
                &["--cluster", "Kr_Mum", "--insecure-plain-http"],
                "--cluster / CMM_CLUSTER",
            ),
            (&["--namespace", "Mon"], "--namespace"),
            (&["--timeout", "3h"], "--timeout / CMM_TIMEOUT"),
            (&["--pending-grace", "2d"], "--pending-grace"),
            (&["--cert-renew-before", "1h"], "--cert-renew-before"),
            (&["--first-scrape-wait", "2h"], "--first-scrape-wait"),
            (&["--grafana-timeout", "10 minutes"], "--grafana-timeout"),
            (&["--grafana-retries", "0"], "--grafana-retries"),
            (&["--grafana-retries", "21"], "--grafana-retries"),
            (&["--set", "kubeStateMetrics.enabled"], "has no '='"),
            (&["--values", "/nonexistent/values.yaml"], "--values"),
            (&["--values", BAD_YAML], "is not YAML"),
            (&["--chart", "oci://x"], "chart"),
            (&["--prometheus-url", "ftp://x"], "prometheus"),
        ];
        for (extra, says) in cases {
            let mut argv = if extra.contains(&"--cluster") {
                Vec::new()
            } else {
                PLAIN.to_vec()
            };
            argv.extend_from_slice(extra);
            let err = bootstrap(&argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} was taken"));
            assert_eq!(ExitCode::of(&err), ExitCode::Usage, "{argv:?}: {err:#}");
            assert!(format!("{err:#}").contains(says), "{argv:?}: {err:#}");
        }
    }

    #[test]
    fn combinations_the_wiring_and_the_roles_refuse() {
        let url = "https://10.0.0.5:30091/api/v1/write";
        let cases: &[(&[&str], &str)] = &[
            // Mutual TLS is the default: its certificate needs the central cluster.
            (&["--cluster", "kr-mum"], "--central-context"),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--topology",
                    "push",
                    "--central-context",
                    "c",
                ],
                "--receiver-url",
            ),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--topology",
                    "push",
                    "--receiver-url",
                    url,
                    "--insecure-plain-http",
                ],
                "needs mutual TLS",
            ),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--agent-mode",
                    "--insecure-plain-http",
                ],
                "--agent-mode",
            ),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--thanos-object-storage",
                    "--insecure-plain-http",
                ],
                "--thanos-object-storage",
            ),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--receiver-url",
                    url,
                    "--insecure-plain-http",
                ],
                "--receiver-url",
            ),
            // Flags of the other role are refused, not ignored.
            (
                &[
                    "--cluster",
                    "monitor",
                    "--role",
                    "central",
                    "--first-scrape-wait",
                    "1m",
                ],
                "--first-scrape-wait",
            ),
            (
                &[
                    "--cluster",
                    "kr-mum",
                    "--insecure-plain-http",
                    "--grafana-wait",
                    "1m",
                ],
                "--grafana-wait",
            ),
            (
                &[
                    "--cluster",
                    "monitor",
                    "--role",
                    "central",
                    "--registration-token-out",
                    "/nonexistent-dir/token",
                ],
                "its directory does not exist",
            ),
        ];
        for (argv, says) in cases {
            let err = bootstrap(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} was taken"));
            assert_eq!(ExitCode::of(&err), ExitCode::Usage, "{argv:?}");
            assert!(format!("{err:#}").contains(says), "{argv:?}: {err:#}");
        }
        // What the wiring allows: push with its URL and the central context; a dry run
        // needs no certificate.
        assert!(bootstrap(&[
            "--cluster",
            "kr-mum",
            "--topology",
            "push",
            "--receiver-url",
            url,
            "--central-context",
            "c"
        ])
        .is_ok());
        assert!(bootstrap(&["--cluster", "kr-mum", "--dry-run"]).is_ok());
        // The central role receives: no receiver URL of its own.
        assert!(bootstrap(&[
            "--cluster",
            "monitor",
            "--role",
            "central",
            "--topology",
            "push"
        ])
        .is_ok());
    }

    #[test]
    fn bootstrap_settings_carry_typed_values_and_the_built_in_defaults() {
        let s = bootstrap(PLAIN).unwrap();
        assert_eq!(s.cluster.as_str(), "kr-mum");
        assert_eq!(s.namespace, cmm_core::naming::DEFAULT_NAMESPACE);
        assert_eq!(s.helm_run.timeout, Duration::from_secs(600));
        assert_eq!(s.helm_run.pending_grace, Duration::from_secs(900));
        assert_eq!(s.prometheus.first_scrape_wait, Duration::from_secs(120));
        assert_eq!(s.central.renew_before, Duration::from_secs(30 * 86_400));
        assert_eq!(s.grafana.retry.attempts, 5);
        assert_eq!(
            s.plan.wiring.topology,
            cmm_installer::topology::Topology::Pull
        );
        assert!(!s.mutual_tls() && !s.registers());
        assert!(s.central_role.is_none());
        let s = bootstrap(&[
            "--cluster",
            "kr-mum",
            "--central-context",
            "hub",
            "--timeout",
            "90s",
            "--rules",
            "skip",
        ])
        .unwrap();
        assert!(s.mutual_tls());
        assert_eq!(s.helm_run.timeout, Duration::from_secs(90));
        assert_eq!(s.prometheus.rules, RulesMode::Skip);
        assert_eq!(s.central.context.as_deref(), Some("hub"));
        let s = bootstrap(&["--cluster", "monitor", "--role", "central"]).unwrap();
        assert!(!s.mutual_tls(), "the central role serves no Prometheus");
        assert_eq!(
            s.central_role.unwrap().grafana_wait,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn check_without_a_cluster_is_unconfigured_and_reinstalls_with_its_own_settings() {
        assert!(check(&[]).unwrap().is_none());
        let err = check(&["--cluster", "kr-mum", "--storage-warn", "0"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--storage-warn"), "{err}");
        let c = check(&[
            "--cluster",
            "kr-mum",
            "--insecure-plain-http",
            "--kube-metrics",
            "--timeout",
            "5m",
            "--set",
            "a=b",
        ])
        .unwrap()
        .unwrap();
        let b = c.reinstall_settings();
        assert_eq!(b.cluster, c.cluster);
        assert_eq!(b.role, Role::Cluster);
        assert!(!b.dry_run && !b.skip_grafana_check);
        assert_eq!(b.helm_run.timeout, Duration::from_secs(300));
        assert!(b.plan.kube_metrics && !b.plan.wiring.mutual_tls());
        assert_eq!(b.plan.sets, ["a=b"]);
        assert!(b.central_role.is_none());
    }

    #[test]
    fn leaving_needs_no_receiver_url_but_registering_does() {
        let dereg = |args: &[&str]| {
            let mut argv = vec!["deregister"];
            argv.extend_from_slice(args);
            match cli(&argv).command {
                Command::Deregister(d) => DeregisterSettings::resolve(&d),
                _ => unreachable!(),
            }
        };
        let reg = |args: &[&str]| {
            let mut argv = vec!["register"];
            argv.extend_from_slice(args);
            match cli(&argv).command {
                Command::Register(r) => RegisterSettings::resolve(&r),
                _ => unreachable!(),
            }
        };
        assert!(dereg(&["--cluster", "kr-mum", "--topology", "push"]).is_ok());
        let err = reg(&["--cluster", "kr-mum", "--topology", "push"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--receiver-url"), "{err}");
        assert!(dereg(&[]).err().unwrap().to_string().contains("--cluster"));
    }
}
