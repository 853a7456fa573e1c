//! Names CMM pins across every cluster and the central Grafana.

use std::fmt;

/// The label every series and every Prometheus external label carries; its value is the
/// cluster's name, which is also the helm release name.
pub const CLUSTER_LABEL: &str = "cluster";

/// `fullnameOverride` used in `values/each_cluster.yaml`: object names (and so the self-monitoring
/// `job` labels) are identical in every cluster whatever the release name.
pub const FULLNAME: &str = "cmm";

/// Objects the values files name; kept here because the agent looks them up by name.
pub const PROMETHEUS_SERVICE: &str = "cmm-prometheus";
/// The Service the central Grafana reaches: a NodePort to the mutual-TLS proxy only, across
/// every replica (values' extraManifests; named as the chart's servicePerReplica named it).
pub const PROMETHEUS_NODEPORT_SERVICE: &str = "cmm-prometheus-0";
/// The proxy container's port name; a Service targeting it is served over mutual TLS.
pub const MTLS_PORT_NAME: &str = "cmm-mtls";
/// The cluster's Secret the proxy and the self-scrape mount: server certificate and key
/// (tls.crt, tls.key), the trusted CAs (ca.crt), the self-scrape client (client.crt, client.key).
pub const PROMETHEUS_TLS_SECRET: &str = "cmm-prometheus-tls";
/// The DNS name every server certificate carries besides the advertised addresses: the
/// self-scrape's tlsConfig.serverName (the scrape dials a pod IP, which changes).
pub const PROMETHEUS_TLS_SERVER_NAME: &str = "cmm-prometheus";
/// The central release's Secret holding the CMM CA (tls.crt/tls.key, previous.crt, trust.crt):
/// kept by the central bootstrap, read by every cluster's agent.
pub const CA_SECRET: &str = "cmm-ca";
/// The central release's Secret holding Grafana's client certificate (tls.crt, tls.key).
pub const GRAFANA_CLIENT_SECRET: &str = "cmm-grafana-client";
/// Common name of the central Grafana's client certificate (the proxies admit it).
pub const GRAFANA_CLIENT_CN: &str = "cmm-grafana";
/// Grafana's admin login (values/central_monitor.yaml `grafana.admin.existingSecret`), keys
/// `admin-user`, `admin-password`; made by the central bootstrap unless it exists.
pub const GRAFANA_ADMIN_SECRET: &str = "cmm-grafana-admin";
/// The contact points' addresses (central_monitor.yaml `envFromSecrets`, not optional).
pub const GRAFANA_ALERTING_SECRET: &str = "cmm-grafana-alerting";
/// The variables central_content.yaml's contact points expand, each needed non-empty.
pub const GRAFANA_ALERTING_KEYS: [&str; 2] = ["CMM_ALERT_EMAIL_TO", "CMM_TEAMS_WEBHOOK_URL"];
/// The datasource jsonData key that names, by SHA-256 fingerprints, the client certificate and
/// CAs its secureJsonData holds: Grafana never returns secureJsonData, so this is how `check`
/// sees a datasource left with an older certificate.
pub const DATASOURCE_TLS_IDENTITY_KEY: &str = "cmmTlsIdentity";
/// The environment variables central_monitor.yaml gives Grafana from Secrets cmm-grafana-client
/// (tls.crt, tls.key) and cmm-ca (trust.crt), for datasources of the envsubst route to refer to.
pub const GRAFANA_TLS_ENV_CERT: &str = "CMM_TLS_CLIENT_CERT";
pub const GRAFANA_TLS_ENV_KEY: &str = "CMM_TLS_CLIENT_KEY";
pub const GRAFANA_TLS_ENV_CA: &str = "CMM_TLS_CA";
pub const NODE_EXPORTER_DAEMONSET: &str = "cmm-node-exporter";
pub const OPERATOR_DEPLOYMENT: &str = "cmm-operator";
/// The central release's Grafana (the chart's `<fullname>-grafana`, fullnameOverride `cmm`).
pub const GRAFANA_DEPLOYMENT: &str = "cmm-grafana";
/// Thanos Query on the central cluster (values/overlays/thanos-query.yaml).
pub const THANOS_QUERY_DEPLOYMENT: &str = "cmm-thanos-query";
/// The Prometheus custom resource the chart creates (its name is the fullname).
pub const PROMETHEUS_CR: &str = FULLNAME;
/// Label the operator puts on the StatefulSets it makes for a Prometheus resource, valued with
/// the resource's name (`PrometheusNameLabelName`, pkg/prometheus of prometheus-operator).
pub const OPERATOR_PROMETHEUS_NAME_LABEL: &str = "operator.prometheus.io/name";

/// `job` label of node-exporter series (from the chart's `jobLabel`), the same in every cluster.
pub const NODE_EXPORTER_JOB: &str = "node-exporter";

/// NodePort the cluster's Prometheus is published on (values/each_cluster.yaml).
pub const PROMETHEUS_NODE_PORT: u16 = 30090;

/// The push receiver's own names (values/overlays/central-receiver.yaml): the central cluster
/// may run a cluster release too, which holds the names above (tests/values/test_coexistence.py).
pub const RECEIVER_FULLNAME: &str = "cmm-receiver";
/// Its write endpoint on every central node; not 30090, which a cluster release there keeps.
pub const RECEIVER_NODE_PORT: u16 = 30091;
/// Its server certificate (server name cmm-receiver) and the CMM trust bundle.
pub const RECEIVER_TLS_SECRET: &str = "cmm-receiver-tls";

/// Prometheus' scrape interval in values/each_cluster.yaml; Grafana's datasources are told the
/// same so `$__rate_interval` covers at least four scrapes.
pub const SCRAPE_INTERVAL: &str = "30s";

/// Namespace CMM installs into unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "monitor";

/// Prefix of the Grafana datasource uid CMM owns: `cmm-<cluster>`.
pub const DATASOURCE_UID_PREFIX: &str = "cmm-";

/// Grafana refuses uids longer than 40 characters (`MaxUIDLength` in its shortid generator).
pub const GRAFANA_MAX_UID_LEN: usize = 40;

/// Helm refuses release names longer than 53 characters.
pub const HELM_MAX_RELEASE_LEN: usize = 53;

/// The longest cluster name whose datasource uid `cmm-<name>` still fits Grafana's uid limit.
/// This, not helm's 53, is the binding limit.
pub const MAX_CLUSTER_NAME_LEN: usize = GRAFANA_MAX_UID_LEN - DATASOURCE_UID_PREFIX.len();

/// A validated cluster name: a DNS-1123 label short enough to be a helm release name and to
/// make a Grafana datasource uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ClusterName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("cluster name is empty: give the cluster's name, e.g. kr-mum")]
    Empty,
    #[error(
        "cluster name {name:?} is {len} characters; the limit is {max} (the Grafana datasource uid \
         \"cmm-<name>\" must fit Grafana's 40-character uid limit): choose a shorter name"
    )]
    TooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error(
        "cluster name {name:?} is not a DNS-1123 label: use lower-case letters, digits and '-', \
         starting and ending with a letter or digit (e.g. kr-mum)"
    )]
    NotDns1123 { name: String },
}

impl ClusterName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_CLUSTER_NAME_LEN {
            return Err(NameError::TooLong {
                name: raw.to_owned(),
                len: raw.len(),
                max: MAX_CLUSTER_NAME_LEN,
            });
        }
        let bytes = raw.as_bytes();
        let inner_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !inner_ok || !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return Err(NameError::NotDns1123 {
                name: raw.to_owned(),
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The helm release name: the cluster's name, so `{{ .Release.Name }}` in the values files
    /// yields the `cluster` label without a per-cluster edit.
    pub fn release(&self) -> &str {
        &self.0
    }

    /// uid of the cluster's datasource in the central Grafana.
    pub fn datasource_uid(&self) -> String {
        format!("{DATASOURCE_UID_PREFIX}{}", self.0)
    }

    /// Display name of the cluster's datasource in the central Grafana.
    pub fn datasource_name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClusterName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A namespace name: a DNS-1123 label of at most 63 characters. The error says what is wrong;
/// the caller names the setting.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    let b = ns.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| edge(c) || c == b'-')
        && edge(b[0])
        && edge(b[b.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{ns:?} is not a valid namespace: use a DNS-1123 label of at most 63 characters, e.g. monitor"
        ))
    }
}

/// A URL the central Grafana reaches a cluster's Prometheus at, as it lands in a datasource:
/// http(s), a host, no credentials, query or fragment, and nothing helm's `tpl` would execute
/// (the chart renders `additionalDataSources` through `tpl`), within Grafana's 255 characters.
pub fn check_prometheus_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.len() > 255 {
        return Err("is longer than 255 characters, Grafana's limit for a datasource URL".into());
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "{}\"'`\\<>|^".contains(*c))
    {
        return Err(format!(
            "{url:?} contains {c:?}, which a URL does not need and helm's tpl or YAML would interpret"
        ));
    }
    if rest.split('/').next().unwrap_or("").contains('@') {
        return Err(format!(
            "{url:?} carries credentials: give them to the datasource separately, never in the URL"
        ));
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "{url:?} has a query or fragment: give the base URL only"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_cluster_names() {
        for n in ["kr-mum", "wai-eks", "a", "c0", "monitor"] {
            assert_eq!(ClusterName::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_what_helm_or_grafana_would_reject() {
        assert_eq!(ClusterName::parse(""), Err(NameError::Empty));
        for bad in ["Kr-mum", "-a", "a-", "a_b", "a.b", "kr mum", "ü"] {
            assert!(
                matches!(ClusterName::parse(bad), Err(NameError::NotDns1123 { .. })),
                "{bad}"
            );
        }
        let long = "a".repeat(MAX_CLUSTER_NAME_LEN + 1);
        assert!(matches!(
            ClusterName::parse(&long),
            Err(NameError::TooLong {
                len: 37,
                max: 36,
                ..
            })
        ));
    }

    #[test]
    fn the_longest_allowed_name_makes_a_valid_grafana_uid_and_release() {
        let name = ClusterName::parse(&"x".repeat(MAX_CLUSTER_NAME_LEN)).unwrap();
        assert_eq!(name.datasource_uid().len(), GRAFANA_MAX_UID_LEN);
        assert!(name.release().len() <= HELM_MAX_RELEASE_LEN);
    }

    #[test]
    fn errors_name_the_fix() {
        let msg = ClusterName::parse("Bad_Name").unwrap_err().to_string();
        assert!(
            msg.contains("DNS-1123") && msg.contains("lower-case"),
            "{msg}"
        );
    }
}
