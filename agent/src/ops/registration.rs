//! A cluster in the central Grafana: the one place that dispatches on the topology to register
//! (`register`, bootstrap's last step and `check --repair` all call [`register`]) and to leave
//! ([`deregister`]). Pull writes the cluster's own datasource and rules; push adds it to the
//! shared rule set; thanos also puts its sidecar's address in the endpoints ConfigMap. Reports
//! come back as data; the caller renders them.

use cmm_central::endpoint::Endpoint;
use cmm_central::prometheus::{ClientIdentity, PrometheusTarget};
use cmm_central::register::{DeregisterReport, SharedReport};
use cmm_central::retry::RetryPolicy;
use cmm_central::{GrafanaClient, RegisterReport, RegisterRequest};
use cmm_core::ClusterName;
use cmm_installer::tls::CentralPki;
use cmm_installer::topology::{self, Registration as How, Wiring};

use crate::exit::{central_class, installer_class, Classify, ExitCode};
use crate::ops::{central, endpoint as ep};
use crate::settings::{BadInput, CentralSide, GrafanaSettings, PrometheusSettings};

/// Every registration input, read and checked before anything is contacted or changed: the
/// Grafana client (URL, token, CA, retries, timeout) and the Prometheus-side settings.
pub struct Registration {
    pub client: GrafanaClient,
    pub prometheus: PrometheusAccess,
}

/// How the agent and Grafana reach the cluster's Prometheus: the settings, and the client
/// certificate to present on an endpoint served over mutual TLS (the proxy's port).
pub struct PrometheusAccess {
    pub settings: PrometheusSettings,
    /// Grafana's client certificate (or the cluster's own self-scrape one) and the CAs to trust.
    mtls: Option<(ClientIdentity, String)>,
}

impl PrometheusAccess {
    pub fn new(settings: &PrometheusSettings) -> Self {
        Self {
            settings: settings.clone(),
            mtls: None,
        }
    }

    /// How the cluster's Prometheus is reached at `endpoint`, with the credentials given.
    pub fn target(&self, endpoint: &Endpoint) -> PrometheusTarget {
        let mtls = self
            .mtls
            .as_ref()
            .filter(|_| endpoint.url.starts_with("https://"));
        PrometheusTarget {
            url: endpoint.url.clone(),
            tls_skip_verify: self.settings.tls_skip_verify,
            basic_auth: self.settings.basic_auth.clone(),
            ca_pem: self
                .settings
                .ca_pem
                .clone()
                .or_else(|| mtls.map(|(_, trust)| trust.clone())),
            client: mtls.map(|(id, _)| id.clone()),
        }
    }

    /// Take Grafana's client certificate and the trusted CAs from the central material.
    pub fn use_central(&mut self, pki: &CentralPki) {
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

    /// The registration of `cluster` at `endpoint`, as pull sends it.
    pub fn request(&self, cluster: ClusterName, endpoint: &Endpoint) -> RegisterRequest {
        RegisterRequest {
            cluster,
            prometheus: self.target(endpoint),
            force: self.settings.force,
            rules: self.settings.rules,
            check_prometheus: !self.settings.skip_check,
            first_scrape_wait: self.settings.first_scrape_wait,
            prometheus_retry: RetryPolicy {
                attempts: 3,
                ..RetryPolicy::default()
            },
        }
    }
}

impl Registration {
    /// Read the token and build the client: a bad token file or URL fails here, before any
    /// change (bootstrap resolves this before it installs).
    pub fn new(grafana: &GrafanaSettings, prometheus: &PrometheusSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: grafana.token_client()?,
            prometheus: PrometheusAccess::new(prometheus),
        })
    }

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
            let found = self
                .client
                .datasource_by_uid(uid)
                .await
                .classify_by(central_class)?;
            if found.is_none() {
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

/// Where a registration writes besides Grafana, and what it may read there.
pub struct Target<'a> {
    pub wiring: &'a Wiring,
    pub central: &'a CentralSide,
    /// Grafana's client certificate and the CMM CA (with the central context): the push
    /// receiver is read with it to prove the cluster's samples arrive.
    pub pki: Option<&'a CentralPki>,
}

/// What a registration did, by topology.
#[derive(Debug)]
pub enum Registered {
    /// Pull: the cluster's own datasource and rules.
    PerCluster {
        endpoint: Endpoint,
        report: RegisterReport,
    },
    /// Push and thanos: the cluster's place in the shared rule set.
    Shared(Shared),
}

#[derive(Debug)]
pub struct Shared {
    pub report: SharedReport,
    /// The topology's name, and as `Wiring::describe` says it (with its options).
    pub name: &'static str,
    pub topology: String,
    /// Thanos: the line saying where the sidecar's address was put.
    pub store: Option<String>,
    /// Push with the central material: the receiver holds the cluster's samples.
    pub heard: Option<String>,
}

/// Register `cluster` as the topology says. `find` gives the cluster's endpoint, and is only
/// called when the topology needs it (push needs no address: nothing central reaches it).
pub async fn register(
    reg: &Registration,
    cluster: &ClusterName,
    target: &Target<'_>,
    find: impl AsyncFnOnce() -> anyhow::Result<Endpoint>,
) -> anyhow::Result<Registered> {
    match target.wiring.registration() {
        How::DatasourcePerCluster => {
            let endpoint = find().await?;
            ep::refuse_unasked_plain(&endpoint, reg.prometheus.settings.insecure_plain_http)?;
            per_cluster(reg, cluster, endpoint).await
        }
        How::SharedRules { datasource_uid } => {
            shared(reg, cluster, datasource_uid, None, target).await
        }
        How::StoreEndpoint { datasource_uid } => {
            let endpoint = find().await?;
            let store = put_store_endpoint(cluster, &endpoint, target.central).await?;
            shared(reg, cluster, datasource_uid, Some(store), target).await
        }
    }
}

async fn per_cluster(
    reg: &Registration,
    cluster: &ClusterName,
    endpoint: Endpoint,
) -> anyhow::Result<Registered> {
    let req = reg.prometheus.request(cluster.clone(), &endpoint);
    tracing::info!(cluster = %req.cluster, prometheus = %endpoint.url, via = %endpoint.detail, grafana = %reg.client.base_url(), "registering");
    let report = cmm_central::register(&reg.client, &req)
        .await
        .classify_by(central_class)?;
    Ok(Registered::PerCluster { endpoint, report })
}

/// Thanos: the sidecar's address (the host of the cluster's endpoint, port 30901) in the
/// central endpoints ConfigMap, under this cluster's own key (no write when unchanged).
async fn put_store_endpoint(
    cluster: &ClusterName,
    endpoint: &Endpoint,
    side: &CentralSide,
) -> anyhow::Result<String> {
    if side.context.is_none() {
        return Err(BadInput(
            "topology thanos registers the cluster's sidecar in ConfigMap cmm-thanos-endpoints on the central cluster: set central-context (--central-context / CMM_CENTRAL_CONTEXT)".into(),
        ))
        .classify(ExitCode::Usage);
    }
    let host = ep::endpoint_host(endpoint)
        .ok_or_else(|| {
            BadInput("no address of this cluster to register: set advertise-address".into())
        })
        .classify(ExitCode::Usage)?;
    let conn = central::central_connection(side).await?;
    let ns = &side.namespace;
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
        return Err(BadInput(format!(
            "ConfigMap {ns}/{} is missing on the central cluster: install the central release with `cmm-agent bootstrap --role central --topology thanos` first",
            topology::THANOS_ENDPOINTS_CONFIGMAP
        )))
        .classify(ExitCode::Usage);
    }
    Ok(format!(
        "  store        {host}:{} in ConfigMap {ns}/{} key {key}: {}",
        topology::THANOS_GRPC_NODE_PORT,
        topology::THANOS_ENDPOINTS_CONFIGMAP,
        if same { "unchanged" } else { "written" }
    ))
}

/// Push and thanos: add the cluster to the shared rule set; push, with the central material,
/// then proves the receiver holds the cluster's samples (within `first-scrape-wait`).
async fn shared(
    reg: &Registration,
    cluster: &ClusterName,
    datasource_uid: &str,
    store: Option<String>,
    target: &Target<'_>,
) -> anyhow::Result<Registered> {
    let report = cmm_central::register::register_shared(
        &reg.client,
        cluster,
        datasource_uid,
        target.wiring.topology.as_str(),
        reg.prometheus.settings.rules,
    )
    .await
    .classify_by(central_class)?;
    let heard = match target.pki {
        Some(pki) => wait_for_samples(reg, cluster, target.wiring, pki).await?,
        None => None,
    };
    Ok(Registered::Shared(Shared {
        report,
        name: target.wiring.topology.as_str(),
        topology: target.wiring.describe(),
        store,
        heard,
    }))
}

/// Push: poll the receiver (read with Grafana's certificate) until it holds `up` series of
/// the cluster, for at most `first-scrape-wait`. `None` outside push.
async fn wait_for_samples(
    reg: &Registration,
    cluster: &ClusterName,
    wiring: &Wiring,
    pki: &CentralPki,
) -> anyhow::Result<Option<String>> {
    let Some((base, probe)) = ep::receiver_probe(wiring, pki, 3) else {
        return Ok(None);
    };
    let probe = probe.classify_by(central_class)?;
    let wait = reg.prometheus.settings.first_scrape_wait;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let n = probe
            .cluster_series(cluster)
            .await
            .classify_by(central_class)?;
        if n > 0 {
            return Ok(Some(format!("{n} `up` series of {cluster} at {base}")));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(cmm_central::Error::Prometheus {
                url: base,
                problem: format!(
                    "the receiver holds no sample of cluster {cluster} (waited {}s, the first-scrape-wait setting): its Prometheus does not reach receiver-url; its log names the remote-write error",
                    wait.as_secs()
                ),
            })
            .classify(ExitCode::PrometheusCheck);
        }
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
}

impl Registered {
    /// An unhealthy datasource after a successful write is still a failed registration for
    /// scripts: the central Grafana does not reach the cluster (pull) or the central store
    /// (push, thanos).
    pub fn verdict(&self) -> anyhow::Result<()> {
        let (url, problem) = match self {
            Registered::PerCluster { report, .. } if !report.health.ok => (
                report.prometheus_url.clone(),
                format!(
                    "the datasource {} is registered, but Grafana's health check through it \
                     failed: {} — the central Grafana does not reach this address (firewall, \
                     NodePort, --advertise-address); fix that and re-run",
                    report.datasource_uid, report.health.message
                ),
            ),
            Registered::Shared(s) if !s.report.health.ok => (
                s.report.datasource_uid.clone(),
                format!(
                    "the cluster is registered, but Grafana's health check of the shared datasource failed: {} — the central store does not answer Grafana (a central problem: `cmm-agent check` on the central node)",
                    s.report.health.message
                ),
            ),
            _ => return Ok(()),
        };
        Err(cmm_central::Error::Prometheus { url, problem }).classify(ExitCode::PrometheusCheck)
    }

    /// The registration as one log event (when its report is not printed).
    pub fn log(&self) {
        match self {
            Registered::PerCluster { report: r, .. } => tracing::info!(
                cluster = %r.cluster,
                datasource = %r.datasource_uid,
                action = ?r.datasource,
                healthy = r.health.ok,
                health = %r.health.message,
                "registered"
            ),
            Registered::Shared(s) => tracing::info!(
                cluster = %s.report.cluster,
                datasource = %s.report.datasource_uid,
                clusters = ?s.report.clusters,
                healthy = s.report.health.ok,
                "registered (shared topology)"
            ),
        }
    }

    /// One line for check's repair list.
    pub fn summary(&self) -> String {
        match self {
            Registered::PerCluster { report: r, .. } => format!(
                "re-registered: datasource {} {:?}, rules {}",
                r.datasource_uid,
                r.datasource,
                r.rules.as_ref().map_or("skipped", |x| if x.changed {
                    "written"
                } else {
                    "unchanged"
                })
            ),
            Registered::Shared(s) => {
                format!("re-registered in the shared rule set ({})", s.name)
            }
        }
    }
}

/// What leaving did, by topology.
#[derive(Debug)]
pub enum Deregistered {
    PerCluster(DeregisterReport),
    Shared {
        topology: &'static str,
        datasource_uid: &'static str,
        /// Thanos: whether the cluster's endpoint key was there to remove.
        endpoint_removed: Option<bool>,
        /// The clusters the shared rule set still expects.
        clusters: Vec<String>,
    },
}

/// Take `cluster` out of the central Grafana as the topology says. The shared datasource
/// stays in push and thanos: it is every other cluster's.
pub async fn deregister(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
    wiring: &Wiring,
    side: &CentralSide,
) -> anyhow::Result<Deregistered> {
    let (uid, thanos) = match wiring.registration() {
        How::DatasourcePerCluster => {
            let r = cmm_central::deregister(grafana, cluster)
                .await
                .classify_by(central_class)?;
            return Ok(Deregistered::PerCluster(r));
        }
        How::SharedRules { datasource_uid } => (datasource_uid, false),
        How::StoreEndpoint { datasource_uid } => (datasource_uid, true),
    };
    let endpoint_removed = if thanos {
        Some(remove_store_endpoint(cluster, side).await?)
    } else {
        None
    };
    let clusters = cmm_central::register::deregister_shared(grafana, cluster, uid)
        .await
        .classify_by(central_class)?;
    Ok(Deregistered::Shared {
        topology: wiring.topology.as_str(),
        datasource_uid: uid,
        endpoint_removed,
        clusters,
    })
}

/// Thanos: null this cluster's key of the endpoints ConfigMap; whether it was there.
async fn remove_store_endpoint(cluster: &ClusterName, side: &CentralSide) -> anyhow::Result<bool> {
    if side.context.is_none() {
        return Err(BadInput(
            "topology thanos: the cluster's endpoint is removed from ConfigMap \
             cmm-thanos-endpoints on the central cluster; set central-context"
                .into(),
        ))
        .classify(ExitCode::Usage);
    }
    let conn = central::central_connection(side).await?;
    let ns = &side.namespace;
    let key = topology::endpoint_key(cluster);
    let had = conn
        .configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key)
        .await
        .classify_by(installer_class)?
        .is_some();
    if had {
        conn.set_configmap_key(ns, topology::THANOS_ENDPOINTS_CONFIGMAP, &key, None)
            .await
            .classify_by(installer_class)?;
    }
    Ok(had)
}
