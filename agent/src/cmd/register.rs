//! `cmm-agent register`: make the central Grafana watch this cluster — find the cluster's
//! Prometheus endpoint, check it answers with `cluster=<name>` series, upsert the datasource,
//! provision the cluster's alert rules, and report Grafana's own health check of the datasource.
//! Also the Grafana flags and credential resolution shared by `deregister` and `central token`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use cmm_central::endpoint::{self, DiscoveryInput, Endpoint, Via};
use cmm_central::prometheus::ClientIdentity;
use cmm_central::prometheus::PrometheusTarget;
use cmm_central::register::RulesMode;
use cmm_central::retry::RetryPolicy;
use cmm_central::secret::{read_secret_file, resolve_token};
use cmm_central::{Credentials, ErrorClass, GrafanaClient, RegisterReport, RegisterRequest};
use cmm_core::naming::{PROMETHEUS_NODEPORT_SERVICE, PROMETHEUS_SERVICE};
use cmm_core::ClusterName;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use cmm_installer::kube::Connected;
use cmm_installer::topology::Wiring;

use crate::cli::{GlobalArgs, KubeTargetArgs, Output};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::output::outln;
use crate::settings::DurationSetting;

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
    /// of the system's roots).
    #[arg(long, env = "CMM_GRAFANA_CA_FILE")]
    pub grafana_ca_file: Option<PathBuf>,
}

impl GrafanaArgs {
    pub fn retry(&self) -> anyhow::Result<RetryPolicy> {
        if !(1..=MAX_RETRIES).contains(&self.grafana_retries) {
            return usage(&format!(
                "--grafana-retries / CMM_GRAFANA_RETRIES is {}: give 1 (one attempt, no retry) \
                 to {MAX_RETRIES}",
                self.grafana_retries
            ));
        }
        Ok(RetryPolicy {
            attempts: self.grafana_retries,
            timeout: DurationSetting::GrafanaTimeout.parse(&self.grafana_timeout)?,
            ..RetryPolicy::default()
        })
    }

    /// The token from its sources; `basic` is the admin login `central token` may use instead.
    pub fn credentials(&self, basic: Option<(String, PathBuf)>) -> anyhow::Result<Credentials> {
        let env_token = std::env::var("CMM_GRAFANA_TOKEN").ok();
        let creds_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        if let Some((user, password_file)) = basic {
            let password = read_secret_file(
                &password_file,
                "the Grafana password (--grafana-password-file)",
            )
            .classify(ExitCode::Usage)?;
            return Ok(Credentials::Basic { user, password });
        }
        match resolve_token(
            self.grafana_token_file.as_deref(),
            env_token.as_deref(),
            creds_dir.as_deref(),
        )
        .classify(ExitCode::Usage)?
        {
            Some((token, origin)) => {
                tracing::debug!(?origin, "Grafana token source");
                Ok(Credentials::Token(token))
            }
            None => usage(
                "no Grafana token: pass --grafana-token-file FILE (or CMM_GRAFANA_TOKEN_FILE), set \
                 CMM_GRAFANA_TOKEN, or give the systemd credential grafana-token; issue one with \
                 `cmm-agent central token`",
            ),
        }
    }

    pub fn client(&self, basic: Option<(String, PathBuf)>) -> anyhow::Result<GrafanaClient> {
        let creds = self.credentials(basic)?;
        self.client_with(creds)
    }

    pub fn client_with(&self, creds: Credentials) -> anyhow::Result<GrafanaClient> {
        let Some(url) = &self.grafana_url else {
            return usage(
                "--grafana-url / CMM_GRAFANA_URL is required: the central Grafana's root URL, \
                 e.g. http://grafana.ops.example:3000",
            );
        };
        let ca = match &self.grafana_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .classify(ExitCode::Usage)
                    .with_context(|| format!("reading --grafana-ca-file {}", path.display()))?,
            ),
            None => None,
        };
        GrafanaClient::with_ca(url, creds, self.retry()?, ca.as_deref()).classify_by(central_class)
    }
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

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The cluster's name (its helm release and `cluster` label), e.g. kr-mum.
    #[arg(long, env = "CMM_CLUSTER")]
    pub cluster: String,
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    #[command(flatten)]
    pub kube: KubeTargetArgs,
    /// Namespace CMM installed the cluster's Prometheus in (for endpoint discovery).
    #[arg(long, env = "CMM_NAMESPACE")]
    pub namespace: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub topo: crate::cli::TopologyArgs,
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

/// Every registration input, read and checked before anything is contacted or changed: the
/// Grafana client (URL, token source, CA, retries, timeout) and the Prometheus-side settings.
pub struct Registration {
    pub client: GrafanaClient,
    pub prometheus: PrometheusAccess,
}

/// How the agent and Grafana reach the cluster's Prometheus: endpoint settings and the
/// credentials read from their files, checked before anything is contacted.
pub struct PrometheusAccess {
    basic_auth: Option<(String, cmm_central::Secret)>,
    ca_pem: Option<String>,
    /// Grafana's client certificate and the CAs to trust, from the central cluster: used for an
    /// endpoint served over mutual TLS (the proxy's port).
    mtls: Option<(ClientIdentity, String)>,
    args: EndpointArgs,
    first_scrape_wait: std::time::Duration,
}

impl Registration {
    pub fn resolve(grafana: &GrafanaArgs, endpoint: &EndpointArgs) -> anyhow::Result<Self> {
        Ok(Self {
            client: grafana.client(None)?,
            prometheus: PrometheusAccess::resolve(endpoint)?,
        })
    }

    /// The registration of `cluster` at `endpoint`, as `register` sends it.
    pub fn request(&self, cluster: ClusterName, endpoint: &Endpoint) -> RegisterRequest {
        self.prometheus.request(cluster, endpoint)
    }
}

impl PrometheusAccess {
    pub fn resolve(endpoint: &EndpointArgs) -> anyhow::Result<Self> {
        let first_scrape_wait =
            DurationSetting::FirstScrapeWait.parse(&endpoint.first_scrape_wait)?;
        let basic_auth = match (
            &endpoint.prometheus_user,
            &endpoint.prometheus_password_file,
        ) {
            (Some(user), Some(file)) => Some((
                user.clone(),
                read_secret_file(file, "the Prometheus password (--prometheus-password-file)")
                    .classify(ExitCode::Usage)?,
            )),
            _ => None,
        };
        let ca_pem = match &endpoint.prometheus_ca_file {
            Some(ca) => Some(
                std::fs::read_to_string(ca)
                    .classify(ExitCode::Usage)
                    .with_context(|| format!("reading --prometheus-ca-file {}", ca.display()))?,
            ),
            None => None,
        };
        if let Some(url) = &endpoint.prometheus_url {
            PrometheusTarget {
                url: url.clone(),
                ..Default::default()
            }
            .parsed_url()
            .classify_by(central_class)?;
        }
        Ok(Self {
            basic_auth,
            ca_pem,
            mtls: None,
            args: endpoint.clone(),
            first_scrape_wait,
        })
    }
}

impl Registration {
    /// Ask Grafana before the cluster is changed: it answers (`/api/health`) and takes the
    /// credentials (an authenticated read of the datasource this cluster would get), so a bad
    /// URL or token fails in seconds with nothing installed.
    pub async fn precheck(&self, cluster: &ClusterName, wiring: &Wiring) -> anyhow::Result<String> {
        let version = self.client.health().await.classify_by(central_class)?;
        self.client
            .datasource_by_uid(&cluster.datasource_uid())
            .await
            .classify_by(central_class)?;
        // A shared topology registers into the central release's one datasource: without it
        // the registration at the end would fail, so say it before anything is installed.
        if let Some(uid) = wiring.topology.shared_datasource_uid() {
            if self
                .client
                .datasource_by_uid(uid)
                .await
                .classify_by(central_class)?
                .is_none()
            {
                return Err(cmm_central::Error::SharedDatasourceMissing {
                    uid: uid.to_owned(),
                    topology: wiring.topology.to_string(),
                })
                .classify_by(central_class);
            }
        }
        Ok(format!(
            "Grafana {version} at {} answers and accepts the token",
            self.client.base_url()
        ))
    }
}

pub async fn run(global: &GlobalArgs, args: RegisterArgs) -> anyhow::Result<()> {
    let cluster = ClusterName::parse(&args.cluster)
        .classify(ExitCode::Usage)
        .context("--cluster / CMM_CLUSTER")?;
    let wiring = args.topo.wiring(false, false)?;
    let mut reg = Registration::resolve(&args.grafana, &args.endpoint)?;
    let mut pki = None;
    if args.endpoint.tls.central_context.is_some() {
        let central = central_pki(&args.endpoint.tls, &args.kube).await?;
        reg.prometheus.use_central(&central);
        pki = Some(central);
    }
    let shared = SharedTarget {
        wiring: &wiring,
        tls: &args.endpoint.tls,
        kube: &args.kube,
        central: pki.as_ref(),
    };
    // Push needs no address of the cluster: nothing central reaches it.
    if wiring.topology == cmm_installer::topology::Topology::Push {
        return register_shared(global, &reg, &cluster, None, &shared, true).await;
    }
    let endpoint = match &args.endpoint.prometheus_url {
        Some(url) => flag_endpoint(url),
        None => {
            let target = cmm_installer::kube::KubeTarget {
                kubeconfig: args.kube.kubeconfig.clone(),
                context: args.kube.context.clone(),
            };
            let kube = cmm_installer::kube::connect(&target)
                .await
                .classify_by(installer_class)
                .context(
                    "finding the Prometheus endpoint in Kubernetes (or pass --prometheus-url)",
                )?;
            discover(&kube, &args.namespace, &args.endpoint).await?
        }
    };
    if !wiring.central_reads_cluster() {
        return register_shared(global, &reg, &cluster, Some(&endpoint), &shared, true).await;
    }
    register_endpoint(global, &reg, cluster, &endpoint, true).await
}

impl PrometheusAccess {
    /// How the cluster's Prometheus is reached at `endpoint`, with the credentials given.
    pub fn target(&self, endpoint: &Endpoint) -> PrometheusTarget {
        let mtls = self
            .mtls
            .as_ref()
            .filter(|_| endpoint.url.starts_with("https://"));
        PrometheusTarget {
            url: endpoint.url.clone(),
            tls_skip_verify: self.args.prometheus_tls_skip_verify,
            basic_auth: self.basic_auth.clone(),
            ca_pem: self
                .ca_pem
                .clone()
                .or_else(|| mtls.map(|(_, trust)| trust.clone())),
            client: mtls.map(|(id, _)| id.clone()),
        }
    }

    /// Take Grafana's client certificate and the trusted CAs from the central material.
    pub fn use_central(&mut self, pki: &cmm_installer::tls::CentralPki) {
        self.use_identity(&pki.grafana, &pki.trust_pem);
    }

    /// Present `leaf` and trust `trust_pem` on an endpoint served over mutual TLS.
    pub fn use_identity(&mut self, leaf: &cmm_pki::Leaf, trust_pem: &str) {
        self.mtls = Some((
            ClientIdentity {
                cert_pem: leaf.cert_pem.clone(),
                key: cmm_central::Secret::new(leaf.key_pem.clone()),
            },
            trust_pem.to_owned(),
        ));
    }

    pub fn rules_mode(&self) -> RulesMode {
        match self.args.rules {
            RulesArg::Provisioned => RulesMode::Provisioned,
            RulesArg::Editable => RulesMode::Editable,
            RulesArg::Skip => RulesMode::Skip,
        }
    }

    /// The registration of `cluster` at `endpoint`, as `register` sends it.
    pub fn request(&self, cluster: ClusterName, endpoint: &Endpoint) -> RegisterRequest {
        RegisterRequest {
            cluster,
            prometheus: self.target(endpoint),
            force: self.args.force,
            rules: self.rules_mode(),
            check_prometheus: !self.args.skip_prometheus_check,
            first_scrape_wait: self.first_scrape_wait,
            prometheus_retry: RetryPolicy {
                attempts: 3,
                ..RetryPolicy::default()
            },
        }
    }

    /// The endpoint given by flag, else discovered from the cluster.
    pub async fn endpoint(&self, kube: &Connected, namespace: &str) -> anyhow::Result<Endpoint> {
        match &self.args.prometheus_url {
            Some(url) => Ok(flag_endpoint(url)),
            None => discover(kube, namespace, &self.args).await,
        }
    }
}

/// Bootstrap's last step for a monitored cluster: register it with the cluster connection
/// bootstrap already holds. `Ok(false)` when no `--grafana-url` was given (nothing to do).
pub async fn after_install(
    global: &GlobalArgs,
    reg: &Registration,
    cluster: &ClusterName,
    kube: &Connected,
    namespace: &str,
    shared: &SharedTarget<'_>,
) -> anyhow::Result<()> {
    // Bootstrap's JSON report owns stdout; a second document there would break parsers.
    let print = global.output == Output::Human;
    if shared.wiring.topology == cmm_installer::topology::Topology::Push {
        return register_shared(global, reg, cluster, None, shared, print).await;
    }
    let ep = reg.prometheus.endpoint(kube, namespace).await?;
    if !shared.wiring.central_reads_cluster() {
        return register_shared(global, reg, cluster, Some(&ep), shared, print).await;
    }
    register_endpoint(global, reg, cluster.clone(), &ep, print).await
}

/// Read the central material (CA, trust bundle, Grafana's client certificate) through the
/// central cluster's kubeconfig context. Reads only.
pub async fn central_pki(
    tls: &TlsArgs,
    kube: &crate::cli::KubeTargetArgs,
) -> anyhow::Result<cmm_installer::tls::CentralPki> {
    let Some(context) = &tls.central_context else {
        return Err(crate::settings::BadInput(
            "--central-context / CMM_CENTRAL_CONTEXT is needed for a cluster served over mutual \
             TLS: give the central cluster's kubeconfig context (where Secret cmm-ca is)"
                .into(),
        ))
        .classify(ExitCode::Usage);
    };
    let conn = central_connection(tls, kube, context).await?;
    let ns = &tls.central_namespace;
    cmm_installer::tls::load_central(&conn, ns, std::time::SystemTime::now())
        .await
        .classify_by(installer_class)?
        .ok_or_else(|| {
            crate::settings::BadInput(format!(
                    "--central-context: context {context} has no Secret {ns}/{} yet: install the central Grafana \
                     first (`cmm-agent bootstrap --role central` makes the CMM CA), or pass \
                     --central-namespace",
                    cmm_installer::tls::CA_SECRET
                ))
        })
        .classify(ExitCode::Usage)
}

/// The central cluster, through its kubeconfig context.
pub async fn central_connection(
    tls: &TlsArgs,
    kube: &crate::cli::KubeTargetArgs,
    context: &str,
) -> anyhow::Result<Connected> {
    let target = cmm_installer::kube::KubeTarget {
        kubeconfig: tls.central_kubeconfig.clone().or(kube.kubeconfig.clone()),
        context: Some(context.to_owned()),
    };
    cmm_installer::kube::connect(&target)
        .await
        .classify_by(installer_class)
        .context("connecting to the central cluster (--central-context)")
}

/// Where a registration in a shared topology writes besides Grafana, and what it may read.
pub struct SharedTarget<'a> {
    pub wiring: &'a Wiring,
    pub tls: &'a TlsArgs,
    pub kube: &'a crate::cli::KubeTargetArgs,
    /// Grafana's client certificate and the CMM CA (with the central context): the push
    /// receiver is read with it to prove the cluster's samples arrive.
    pub central: Option<&'a cmm_installer::tls::CentralPki>,
}

/// The receiver's query base from its write URL (`…/api/v1/write` → `…/`).
pub fn receiver_base(write_url: &str) -> Option<String> {
    write_url
        .strip_suffix("/api/v1/write")
        .map(|b| format!("{b}/"))
}

/// The push receiver read as Grafana reads it: its query base, and a probe presenting Grafana's
/// client certificate and trusting the CMM CAs. `None` outside push.
pub fn receiver_probe(
    wiring: &Wiring,
    pki: &cmm_installer::tls::CentralPki,
    attempts: u32,
) -> Option<(String, cmm_central::Result<cmm_central::PrometheusProbe>)> {
    let base = wiring.receiver_url.as_deref().and_then(receiver_base)?;
    let probe = cmm_central::PrometheusProbe::new(
        PrometheusTarget {
            url: base.clone(),
            ca_pem: Some(pki.trust_pem.clone()),
            client: Some(ClientIdentity {
                cert_pem: pki.grafana.cert_pem.clone(),
                key: cmm_central::Secret::new(pki.grafana.key_pem.clone()),
            }),
            ..Default::default()
        },
        RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        },
    );
    Some((base, probe))
}

/// The host of an endpoint's URL: the address the central side dials this cluster at.
pub fn endpoint_host(endpoint: &Endpoint) -> Option<String> {
    PrometheusTarget {
        url: endpoint.url.clone(),
        ..Default::default()
    }
    .parsed_url()
    .ok()?
    .host_str()
    .map(str::to_owned)
}

/// Register in push or thanos: thanos first puts the sidecar's address (the host of the
/// cluster's discovered endpoint, port 30901) into the central endpoints ConfigMap; both then
/// add the cluster to the shared rule set. Push, with the central material, finally proves the
/// receiver holds the cluster's samples (within `first-scrape-wait`).
pub async fn register_shared(
    global: &GlobalArgs,
    reg: &Registration,
    cluster: &ClusterName,
    endpoint: Option<&Endpoint>,
    shared: &SharedTarget<'_>,
    print: bool,
) -> anyhow::Result<()> {
    use cmm_installer::topology::{self, Registration as Reg};
    let (uid, store_endpoint) = match shared.wiring.registration() {
        Reg::DatasourcePerCluster => unreachable!("pull registers a datasource per cluster"),
        Reg::SharedRules { datasource_uid } => (datasource_uid, false),
        Reg::StoreEndpoint { datasource_uid } => (datasource_uid, true),
    };
    let mut lines = Vec::new();
    if store_endpoint {
        let Some(context) = &shared.tls.central_context else {
            return usage(
                "topology thanos registers the cluster's sidecar in ConfigMap cmm-thanos-endpoints on the central cluster: set central-context (--central-context / CMM_CENTRAL_CONTEXT)",
            );
        };
        let host = endpoint
            .and_then(endpoint_host)
            .ok_or_else(|| {
                Usage("no address of this cluster to register: set advertise-address".into())
            })
            .classify(ExitCode::Usage)?;
        let conn = central_connection(shared.tls, shared.kube, context).await?;
        let ns = &shared.tls.central_namespace;
        let key = topology::endpoint_key(cluster);
        let file = topology::endpoint_file(&host);
        let same = conn
            .configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key)
            .await
            .classify_by(installer_class)?
            .is_some_and(|v| v == file);
        if !same
            && !conn
                .set_configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key, Some(&file))
                .await
                .classify_by(installer_class)?
        {
            return usage(&format!(
                "ConfigMap {ns}/{} is missing on the central cluster: install the central release with `cmm-agent bootstrap --role central --topology thanos` first",
                topology::THANOS_ENDPOINTS_CONFIGMAP
            ));
        }
        lines.push(format!(
            "  store        {host}:{} in ConfigMap {ns}/{} key {key}: {}",
            topology::THANOS_GRPC_NODE_PORT,
            topology::THANOS_ENDPOINTS_CONFIGMAP,
            if same { "unchanged" } else { "written" }
        ));
    }
    let report = cmm_central::register::register_shared(
        &reg.client,
        cluster,
        uid,
        shared.wiring.topology.as_str(),
        reg.prometheus.rules_mode(),
    )
    .await
    .classify_by(central_class)?;
    // Push: the receiver holds the cluster's samples (read with Grafana's certificate).
    let probe = shared
        .central
        .and_then(|pki| receiver_probe(shared.wiring, pki, 3));
    let heard = match probe {
        Some((base, probe)) => {
            let probe = probe.classify_by(central_class)?;
            let deadline = tokio::time::Instant::now() + reg.prometheus.first_scrape_wait;
            loop {
                let n = probe
                    .cluster_series(cluster)
                    .await
                    .classify_by(central_class)?;
                if n > 0 {
                    break Some(format!("{n} `up` series of {cluster} at {base}"));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(cmm_central::Error::Prometheus {
                        url: base,
                        problem: format!(
                            "the receiver holds no sample of cluster {cluster} (waited {}s, the first-scrape-wait setting): its Prometheus does not reach receiver-url; its log names the remote-write error",
                            reg.prometheus.first_scrape_wait.as_secs()
                        ),
                    })
                    .classify(ExitCode::PrometheusCheck);
                }
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
        }
        _ => None,
    };
    if print {
        match global.output {
            Output::Json => {
                let mut v = serde_json::to_value(&report)?;
                v["topology"] = serde_json::json!(shared.wiring.describe());
                v["heard"] = serde_json::json!(heard);
                crate::output::json(&v)?;
            }
            Output::Human => {
                outln!(
                    "Cluster {} in Grafana {} (topology {})",
                    report.cluster,
                    report.grafana,
                    shared.wiring.describe()
                );
                for l in &lines {
                    outln!("{l}");
                }
                outln!(
                    "  datasource   {} (shared by every cluster; none of its own)",
                    report.datasource_uid
                );
                outln!(
                    "  alert rules  folder {}, group {}: {} ({})",
                    report.folder_uid,
                    report.group,
                    if report.clusters.is_empty() {
                        "skipped".to_owned()
                    } else {
                        format!("CmmClusterSilent expects {}", report.clusters.join(", "))
                    },
                    if report.changed {
                        "written"
                    } else {
                        "unchanged"
                    }
                );
                if let Some(h) = &heard {
                    outln!("  receiver     {h}");
                }
                outln!(
                    "  health       {}: {}",
                    if report.health.ok { "OK" } else { "FAILED" },
                    report.health.message
                );
            }
        }
    } else {
        tracing::info!(cluster = %report.cluster, datasource = %report.datasource_uid, clusters = ?report.clusters, healthy = report.health.ok, "registered (shared topology)");
    }
    if !report.health.ok {
        return Err(cmm_central::Error::Prometheus {
            url: report.datasource_uid.clone(),
            problem: format!(
                "the cluster is registered, but Grafana's health check of the shared datasource failed: {} — the central store does not answer Grafana (a central problem: `cmm-agent check` on the central node)",
                report.health.message
            ),
        })
        .classify(ExitCode::PrometheusCheck);
    }
    Ok(())
}

/// The names this cluster's server certificate must carry: every node address (the NodePort
/// answers on each), --advertise-address, the host of --prometheus-url.
pub async fn advertised_sans(
    kube: &Connected,
    args: &EndpointArgs,
) -> anyhow::Result<Vec<cmm_pki::San>> {
    let nodes = kube.nodes().await.classify_by(installer_class)?;
    let mut addrs = cmm_central::endpoint::node_addresses(&nodes);
    addrs.extend(args.advertise_address.clone());
    if let Some(url) = &args.prometheus_url {
        let target = PrometheusTarget {
            url: url.clone(),
            ..Default::default()
        };
        if let Some(host) = target
            .parsed_url()
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            addrs.push(host);
        }
    }
    cmm_installer::tls::server_sans(&addrs)
        .classify(ExitCode::Usage)
        .context("--advertise-address / --prometheus-url")
}

fn flag_endpoint(url: &str) -> Endpoint {
    Endpoint {
        url: url.to_owned(),
        via: Via::Flag,
        detail: "--prometheus-url".into(),
    }
}

async fn register_endpoint(
    global: &GlobalArgs,
    reg: &Registration,
    cluster: ClusterName,
    endpoint: &Endpoint,
    print: bool,
) -> anyhow::Result<()> {
    let grafana = &reg.client;
    let req = reg.request(cluster, endpoint);
    tracing::info!(cluster = %req.cluster, prometheus = %endpoint.url, via = %endpoint.detail, grafana = %grafana.base_url(), "registering");
    let report = cmm_central::register(grafana, &req)
        .await
        .classify_by(central_class)?;
    if print {
        print_report(global.output, endpoint, &report)?;
    } else {
        tracing::info!(cluster = %report.cluster, datasource = %report.datasource_uid, action = ?report.datasource, healthy = report.health.ok, health = %report.health.message, "registered");
    }
    finish(&report)
}

/// An unhealthy datasource after a successful write is still a failed registration for
/// scripts: the central Grafana does not reach the cluster.
pub fn finish(report: &RegisterReport) -> anyhow::Result<()> {
    if report.health.ok {
        return Ok(());
    }
    Err(cmm_central::Error::Prometheus {
        url: report.prometheus_url.clone(),
        problem: format!(
            "the datasource {} is registered, but Grafana's health check through it failed: {} \
             — the central Grafana does not reach this address (firewall, NodePort, \
             --advertise-address); fix that and re-run",
            report.datasource_uid, report.health.message
        ),
    })
    .classify(ExitCode::PrometheusCheck)
}

pub(crate) async fn discover(
    kube: &Connected,
    namespace: &str,
    args: &EndpointArgs,
) -> anyhow::Result<Endpoint> {
    let services: Vec<Service> = kube.list_in(namespace).await.classify_by(installer_class)?;
    // The published Service of CMM's values, else the main one (installs from before it, or
    // values that publish the main Service themselves).
    let named = |n: &str| {
        services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(n))
    };
    let service = named(PROMETHEUS_NODEPORT_SERVICE)
        .or_else(|| named(PROMETHEUS_SERVICE))
        .ok_or_else(|| cmm_central::Error::Discovery {
            problem: format!(
                "no Service {PROMETHEUS_SERVICE} in namespace {namespace} (context {}): install \
                 the cluster with `cmm-agent bootstrap`, pass --namespace, or --prometheus-url",
                kube.context
            ),
        })
        .classify(ExitCode::Usage)?;
    let nodes = kube.nodes().await.classify_by(installer_class)?;
    let ingresses: Vec<Ingress> = kube.list_in(namespace).await.classify_by(installer_class)?;
    endpoint::discover(&DiscoveryInput {
        service,
        nodes: &nodes,
        ingresses: &ingresses,
        advertise_address: args.advertise_address.as_deref(),
    })
    .classify_by(central_class)
}

fn print_report(output: Output, endpoint: &Endpoint, r: &RegisterReport) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let mut v = serde_json::to_value(r)?;
            v["endpoint"] = serde_json::to_value(endpoint)?;
            crate::output::json(&v)?;
        }
        Output::Human => {
            outln!("Cluster {} in Grafana {}", r.cluster, r.grafana);
            let probe = match &r.prometheus {
                Some(p) => format!(
                    "{} series carry cluster={:?}, {} targets up",
                    p.series, r.cluster, p.targets_up
                ),
                None => "not probed from here (--skip-prometheus-check)".into(),
            };
            outln!(
                "  prometheus   {} ({}): {probe}",
                r.prometheus_url,
                endpoint.detail
            );
            let action = match &r.datasource {
                cmm_central::register::DatasourceAction::Create => "created".to_owned(),
                cmm_central::register::DatasourceAction::Update { .. } => "updated".to_owned(),
                cmm_central::register::DatasourceAction::Unchanged => "unchanged".to_owned(),
                cmm_central::register::DatasourceAction::Replace { foreign_uid } => {
                    format!("created, replacing {foreign_uid} (--force)")
                }
            };
            outln!("  datasource   {}: {action}", r.datasource_uid);
            match &r.rules {
                Some(rules) => outln!(
                    "  alert rules  folder {}, group {}: {} ({:?}, {})",
                    rules.folder_uid,
                    rules.group,
                    rules.rules.join(", "),
                    rules.mode,
                    if rules.changed {
                        "written"
                    } else {
                        "unchanged"
                    }
                ),
                None => outln!("  alert rules  skipped (--rules skip)"),
            }
            if let Some(rules) = &r.rules {
                print_fleet(&rules.fleet);
            }
            outln!(
                "  health       {}: {}",
                if r.health.ok { "OK" } else { "FAILED" },
                r.health.message
            );
        }
    }
    Ok(())
}

/// The fleet rule's line, and why it was left alone when a counted cluster vanished.
pub fn print_fleet(f: &cmm_central::register::FleetReport) {
    if f.clusters.is_empty() {
        outln!("  fleet rule   none (no cluster registered)");
    } else {
        outln!("  fleet rule   counts {}", f.clusters.join(", "));
    }
    if !f.vanished.is_empty() {
        outln!(
            "  fleet rule   left unchanged: the datasource of {} is gone from Grafana although \
             it was never deregistered (the rule pages for it); register it again, or run \
             `cmm-agent deregister` for it if it was retired",
            f.vanished.join(", ")
        );
    }
}

/// Exit class of a cmm-central error.
pub fn central_class(e: &cmm_central::Error) -> ExitCode {
    match e.class() {
        ErrorClass::Usage => ExitCode::Usage,
        ErrorClass::GrafanaUnreachable => ExitCode::GrafanaUnreachable,
        ErrorClass::GrafanaAuth => ExitCode::GrafanaAuth,
        ErrorClass::GrafanaConflict => ExitCode::GrafanaConflict,
        ErrorClass::GrafanaRejected => ExitCode::GrafanaRejected,
        ErrorClass::PrometheusCheck => ExitCode::PrometheusCheck,
        ErrorClass::Internal => ExitCode::Internal,
    }
}

/// More attempts than this would hold an unattended run for many minutes per call.
const MAX_RETRIES: u32 = 20;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn usage<T>(msg: &str) -> anyhow::Result<T> {
    Err(Usage(msg.to_owned())).classify(ExitCode::Usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded() {
        let mut g = GrafanaArgs {
            grafana_url: None,
            grafana_token_file: None,
            grafana_retries: 0,
            grafana_timeout: "10s".into(),
            grafana_ca_file: None,
        };
        for n in [0, MAX_RETRIES + 1, u32::MAX] {
            g.grafana_retries = n;
            let e = g.retry().unwrap_err();
            assert_eq!(ExitCode::of(&e), ExitCode::Usage);
            assert!(e.to_string().contains("--grafana-retries"), "{e}");
        }
        g.grafana_retries = 3;
        assert_eq!(g.retry().unwrap().attempts, 3);
    }
}
