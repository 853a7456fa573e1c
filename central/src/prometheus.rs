//! The one client for a cluster's Prometheus endpoint: is it ready, and do its series carry the
//! cluster's label? Run before Grafana is touched, so a wrong URL or a cluster installed under
//! another name fails early and changes nothing.

use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use cmm_core::naming::CLUSTER_LABEL;
use cmm_core::ClusterName;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::secret::Secret;

/// How to reach the cluster's Prometheus: the same settings go into Grafana's datasource.
#[derive(Debug, Clone, Default)]
pub struct PrometheusTarget {
    pub url: String,
    pub basic_auth: Option<(String, Secret)>,
    /// PEM of a CA that signs the endpoint's certificate.
    pub ca_pem: Option<String>,
    pub tls_skip_verify: bool,
    /// The client certificate the endpoint's mutual-TLS proxy asks for (CMM's default).
    pub client: Option<ClientIdentity>,
}

/// A TLS client certificate and its key (PEM). The key is a [`Secret`]: it goes to Grafana's
/// secureJsonData and into the agent's own TLS client, nowhere else.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key: Secret,
}

impl PrometheusTarget {
    /// The URL, checked: http(s), a host, no query, no credentials inside.
    pub fn parsed_url(&self) -> Result<Url> {
        let url = Url::parse(&self.url).map_err(|e| {
            Error::invalid(
                "prometheus-url",
                format!(
                    "{:?} is not a URL ({e}): give e.g. http://10.0.0.11:30090",
                    self.url
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid(
                "prometheus-url",
                format!("{url} must be an http:// or https:// URL with a host"),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "prometheus-url",
                "carries credentials: use the `prometheus-user` and `prometheus-password-file` settings instead, \
                 so the password is not stored in the URL",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::invalid(
                "prometheus-url",
                format!("{url} has a query or fragment: give the Prometheus base URL only"),
            ));
        }
        if url.as_str().len() > 255 {
            return Err(Error::invalid(
                "prometheus-url",
                "is longer than 255 characters, Grafana's limit for a datasource URL",
            ));
        }
        Ok(url)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub url: String,
    /// Number of `up` series.
    pub series: usize,
    /// Of which `up == 1`.
    pub targets_up: usize,
}

pub struct PrometheusProbe {
    http: reqwest::Client,
    target: PrometheusTarget,
    base: Url,
    retry: RetryPolicy,
}

impl PrometheusProbe {
    pub fn new(target: PrometheusTarget, retry: RetryPolicy) -> Result<Self> {
        let base = target.parsed_url()?;
        // tls_info: the server's certificate is kept with each answer, for its days left.
        let mut builder = reqwest::Client::builder()
            .timeout(retry.timeout)
            .tls_info(true);
        // A given CA is the only one trusted for the endpoint (the CMM CA, or the private CA
        // of prometheus-ca-file): the system's store is then not loaded at all, which a run
        // otherwise pays once per client (~440 files read).
        if let Some(pem) = &target.ca_pem {
            builder = builder.tls_certs_only(pem_certificates(pem, "prometheus-ca-file")?);
        } else if base.scheme() == "http" {
            // Plain HTTP (--insecure-plain-http) opens no TLS connection: no system store to
            // load for it (reqwest's default would read it while building the client).
            builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
        }
        if target.tls_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(id) = &target.client {
            let pem = format!("{}\n{}", id.cert_pem.trim_end(), id.key.expose());
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
                Error::invalid(
                    "client certificate",
                    "is not a PEM certificate with its private key: re-issue it (cmm-agent check --repair)",
                )
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| {
            crate::grafana::client_error("prometheus-url", "prometheus-ca-file", &e)
        })?;
        Ok(Self {
            http,
            target,
            base,
            retry,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, String)> {
        let url = self.url(path);
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(self.retry.delay(attempt - 1, RetryPolicy::jitter())).await;
            }
            let mut req = self.http.get(url.clone()).query(query);
            if let Some((user, pw)) = &self.target.basic_auth {
                req = req.basic_auth(user, Some(pw.expose()));
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text =
                        match crate::sanitize::read_capped(resp, crate::sanitize::MAX_BODY).await {
                            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                            Err(e) => return Err(self.fail(e)),
                        };
                    if status >= 500 {
                        last = format!("answered {status}");
                        continue;
                    }
                    return Ok((status, text));
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        "timed out".into()
                    } else {
                        // The root cause says "certificate", "refused", … where the top does not.
                        let mut cause: &dyn std::error::Error = &e;
                        while let Some(next) = cause.source() {
                            cause = next;
                        }
                        format!("cannot connect: {cause}")
                    };
                }
            }
        }
        Err(self.fail(format!(
            "{} did not answer after {} attempt(s): {last}; check the address is reachable from \
             here (NodePort open, the `advertise-address` setting)",
            url.path(),
            self.retry.attempts.max(1)
        )))
    }

    /// A piece of Prometheus' answer, fit to show (no password, no control characters).
    fn shown(&self, body: &str) -> String {
        let pw = self.target.basic_auth.as_ref().map(|(_, p)| p.expose());
        crate::sanitize::shown(body, pw.as_slice())
    }

    fn fail(&self, problem: String) -> Error {
        Error::Prometheus {
            url: self.base.to_string(),
            problem,
        }
    }

    /// `/-/ready`, then `up`: every series must carry `cluster=<name>`. No wait for a first
    /// scrape (see [`check_within`](Self::check_within)).
    pub async fn check(&self, cluster: &ClusterName) -> Result<ProbeReport> {
        self.check_within(cluster, std::time::Duration::ZERO).await
    }

    /// As [`check`](Self::check), but a Prometheus that is starting (`/-/ready` answers 503) or
    /// ready without a scrape yet (`up` is empty) is asked again every few seconds for up to
    /// `first_scrape`; then the run fails with the reason seen last. A freshly installed
    /// Prometheus is in exactly that state for up to one scrape interval after it is ready.
    pub async fn check_within(
        &self,
        cluster: &ClusterName,
        first_scrape: std::time::Duration,
    ) -> Result<ProbeReport> {
        let start = tokio::time::Instant::now();
        let poll = std::time::Duration::from_secs(3)
            .min(first_scrape.max(std::time::Duration::from_millis(100)));
        let mut said = String::new();
        loop {
            let attempt = self.check_once(cluster).await;
            let reason = match &attempt {
                Err(Error::Prometheus { problem, .. }) if is_not_yet(problem) => problem.clone(),
                _ => return attempt,
            };
            let waited = start.elapsed();
            if waited >= first_scrape {
                if first_scrape.is_zero() {
                    return attempt;
                }
                return Err(self.fail(format!(
                    "{reason} — still so after waiting {}s for the first scrape \
                     (the `first-scrape-wait` setting)",
                    waited.as_secs()
                )));
            }
            if reason != said {
                tracing::info!(
                    waited_secs = waited.as_secs(),
                    limit_secs = first_scrape.as_secs(),
                    "waiting for Prometheus' first scrape: {reason}"
                );
                said = reason;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// At a store shared by the fleet (the push receiver): how many `up` series of `cluster`
    /// answer now, i.e. had a sample within the store's lookback. 0: not heard from.
    pub async fn cluster_series(&self, cluster: &ClusterName) -> Result<usize> {
        let q = format!("count(up{{{CLUSTER_LABEL}=\"{cluster}\"}})");
        let (status, body) = self.get("api/v1/query", &[("query", &q)]).await?;
        if status != 200 {
            return Err(self.fail(format!(
                "the query `{q}` failed with {status}: {}",
                self.shown(&body)
            )));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| self.fail(format!("the answer to `{q}` is not Prometheus' JSON: {e}")))?;
        Ok(v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(0, |n| n as usize))
    }

    async fn check_once(&self, cluster: &ClusterName) -> Result<ProbeReport> {
        let (status, body) = self.get("-/ready", &[]).await?;
        if status == 401 || status == 403 {
            return Err(self.fail(format!(
                "refused the credentials ({status}): check the `prometheus-user` and `prometheus-password-file` settings"
            )));
        }
        if status != 200 {
            return Err(self.fail(format!(
                "{NOT_READY} (/-/ready answered {status}: {})",
                self.shown(&body)
            )));
        }
        let (status, body) = self.get("api/v1/query", &[("query", "up")]).await?;
        if status != 200 {
            return Err(self.fail(format!(
                "the query `up` failed with {status}: {}",
                self.shown(&body)
            )));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| self.fail(format!("the answer to `up` is not Prometheus' JSON: {e}")))?;
        evaluate_up(&v, cluster)
            .map(|(series, targets_up)| ProbeReport {
                url: self.base.to_string(),
                series,
                targets_up,
            })
            .map_err(|p| self.fail(p))
    }
}

/// One active scrape target (`/api/v1/targets`, Prometheus' `web/api/v1/api.go`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub job: String,
    pub instance: String,
    /// `up`, `down` or `unknown`.
    pub health: String,
    pub last_error: String,
}

/// How full the TSDB is, from Prometheus' own `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TsdbUsage {
    /// Blocks plus WAL, bytes.
    pub used: f64,
    /// `--storage.tsdb.retention.size` in bytes; 0 when only a time retention is set.
    pub limit: f64,
}

/// The reads `check` makes of Prometheus, each answered or failed on its own.
#[derive(Debug, Clone)]
pub struct PrometheusFacts {
    pub ready: std::result::Result<(), String>,
    pub targets: std::result::Result<Vec<Target>, String>,
    /// `count by (cluster)` of a few series every CMM Prometheus has: the label values seen.
    pub clusters: std::result::Result<Vec<(String, u64)>, String>,
    pub tsdb: std::result::Result<TsdbUsage, String>,
}

impl PrometheusProbe {
    /// `/-/ready` answers 200.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        match self.get("-/ready", &[]).await {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("/-/ready answered {status}: {}", self.shown(&body))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Days left on the server certificate the endpoint presents (through its mutual-TLS proxy,
    /// as Grafana meets it); `Ok(None)` over plain HTTP.
    pub async fn server_cert_days_left(
        &self,
        now: std::time::SystemTime,
    ) -> std::result::Result<Option<i64>, String> {
        if self.base.scheme() != "https" {
            return Ok(None);
        }
        let resp = self
            .http
            .get(self.url("-/ready"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let Some(der) = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
        else {
            return Ok(None);
        };
        let info =
            cmm_pki::inspect_der(der, "the server certificate").map_err(|e| e.to_string())?;
        let left = info
            .not_after
            .duration_since(now)
            .map_or(0, |d| (d.as_secs() / cmm_pki::clock::day_secs()) as i64);
        Ok(Some(left))
    }

    async fn json(&self, path: &str, query: &[(&str, &str)]) -> std::result::Result<Value, String> {
        let (status, body) = self.get(path, query).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{path} answered {status}: {}", self.shown(&body)));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{path}: not Prometheus' JSON: {e}"))?;
        if v["status"] != "success" {
            return Err(format!("{path}: {}", self.shown(&v["error"].to_string())));
        }
        Ok(v)
    }

    /// Every read of `check`, concurrently.
    pub async fn facts(&self) -> PrometheusFacts {
        let (ready, targets, clusters, tsdb) = tokio::join!(
            self.ready(),
            self.targets(),
            self.cluster_labels(),
            self.tsdb_usage()
        );
        PrometheusFacts {
            ready,
            targets,
            clusters,
            tsdb,
        }
    }

    pub async fn targets(&self) -> std::result::Result<Vec<Target>, String> {
        let v = self.json("api/v1/targets", &[("state", "active")]).await?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Target {
                job: t["labels"]["job"].as_str().unwrap_or("").to_owned(),
                instance: t["labels"]["instance"].as_str().unwrap_or("").to_owned(),
                health: t["health"].as_str().unwrap_or("unknown").to_owned(),
                last_error: self.shown(t["lastError"].as_str().unwrap_or("")),
            })
            .collect())
    }

    /// The `cluster` values on `up` and on node-exporter's and Prometheus' own info series.
    pub async fn cluster_labels(&self) -> std::result::Result<Vec<(String, u64)>, String> {
        let q = format!(
            "count by ({CLUSTER_LABEL}) ({{__name__=~\"up|node_uname_info|prometheus_build_info\"}})"
        );
        let v = self.json("api/v1/query", &[("query", &q)]).await?;
        Ok(v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["metric"][CLUSTER_LABEL].as_str().unwrap_or("").to_owned(),
                    s["value"][1]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                )
            })
            .collect())
    }

    /// Blocks + WAL against the size retention, from Prometheus' own `/metrics` (no self-scrape
    /// needed). Names from prometheus/tsdb/db.go and tsdb/wlog/wlog.go.
    pub async fn tsdb_usage(&self) -> std::result::Result<TsdbUsage, String> {
        let (status, body) = self.get("metrics", &[]).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        parse_tsdb_usage(&body)
    }
}

/// The TSDB gauges out of Prometheus' text exposition.
pub fn parse_tsdb_usage(text: &str) -> std::result::Result<TsdbUsage, String> {
    let gauge = |name: &str| -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let blocks = gauge("prometheus_tsdb_storage_blocks_bytes")
        .ok_or("its /metrics has no prometheus_tsdb_storage_blocks_bytes")?;
    Ok(TsdbUsage {
        used: blocks + gauge("prometheus_tsdb_wal_storage_size_bytes").unwrap_or(0.0),
        limit: gauge("prometheus_tsdb_retention_limit_bytes").unwrap_or(0.0),
    })
}

/// The states a Prometheus passes through right after an install, before it can answer `up`.
fn is_not_yet(problem: &str) -> bool {
    problem.starts_with(NOT_READY) || problem.starts_with(NO_UP)
}

const NOT_READY: &str = "is not ready";
const NO_UP: &str = "has no `up` series";

/// The certificates of a PEM bundle; an error naming `field` when there is none (reqwest
/// accepts some non-PEM input silently, which would leave the CA untrusted without a word).
pub fn pem_certificates(pem: &str, field: &'static str) -> Result<Vec<reqwest::Certificate>> {
    let certs = if pem.contains("-----BEGIN CERTIFICATE-----") {
        reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| Error::invalid(field, format!("is not a PEM certificate bundle: {e}")))?
    } else {
        Vec::new()
    };
    if certs.is_empty() {
        return Err(Error::invalid(
            field,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate file",
        ));
    }
    Ok(certs)
}

/// Judge the answer to `up`: (series, targets up), or what is wrong with it.
pub fn evaluate_up(
    answer: &Value,
    cluster: &ClusterName,
) -> std::result::Result<(usize, usize), String> {
    if answer["status"] != "success" {
        return Err(format!(
            "the query `up` did not succeed: {}",
            answer["error"]
        ));
    }
    let result = answer["data"]["result"]
        .as_array()
        .ok_or("the answer to `up` has no data.result")?;
    if result.is_empty() {
        return Err(format!(
            "{NO_UP}: it scrapes nothing yet (wait for the first scrape, or check its \
             ServiceMonitors)"
        ));
    }
    let mut wrong: Vec<String> = Vec::new();
    let mut up = 0;
    for s in result {
        let labels = &s["metric"];
        let value = labels[CLUSTER_LABEL].as_str().unwrap_or("");
        if value != cluster.as_str() {
            wrong.push(format!(
                "{}{{job={:?}, instance={:?}}} has {CLUSTER_LABEL}={value:?}",
                "up",
                labels["job"].as_str().unwrap_or(""),
                labels["instance"].as_str().unwrap_or("")
            ));
        }
        if s["value"][1] == "1" {
            up += 1;
        }
    }
    if !wrong.is_empty() {
        let n = wrong.len();
        wrong.truncate(3);
        return Err(format!(
            "{n} of {} `up` series do not carry {CLUSTER_LABEL}={:?} (e.g. {}): this is another \
             cluster's Prometheus, or it was installed without CMM's values for this cluster name",
            result.len(),
            cluster.as_str(),
            wrong.join("; ")
        ));
    }
    Ok((result.len(), up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up(series: &[(&str, &str, &str)]) -> Value {
        let result: Vec<Value> = series
            .iter()
            .map(|(job, cluster, v)| {
                let mut m = json!({"__name__": "up", "job": job, "instance": "10.0.0.1:9100"});
                if !cluster.is_empty() {
                    m["cluster"] = json!(cluster);
                }
                json!({"metric": m, "value": [1700000000.0, v]})
            })
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn series_must_all_carry_the_clusters_label() {
        let c = ClusterName::parse("kr-mum").unwrap();
        assert_eq!(
            evaluate_up(
                &up(&[("node-exporter", "kr-mum", "1"), ("x", "kr-mum", "0")]),
                &c
            ),
            Ok((2, 1))
        );
        let e = evaluate_up(&up(&[("node-exporter", "", "1")]), &c).unwrap_err();
        assert!(
            e.contains("cluster=\"kr-mum\"") && e.contains("job=\"node-exporter\""),
            "{e}"
        );
        let e = evaluate_up(&up(&[("n", "wai-eks", "1"), ("n", "kr-mum", "1")]), &c).unwrap_err();
        assert!(e.starts_with("1 of 2") && e.contains("another"), "{e}");
        let e = evaluate_up(&up(&[]), &c).unwrap_err();
        assert!(e.contains("scrapes nothing"), "{e}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_by_name() {
        let t = PrometheusTarget {
            url: "https://10.0.0.1:30090".into(),
            ca_pem: Some("not a certificate".into()),
            ..Default::default()
        };
        let e = PrometheusProbe::new(t, RetryPolicy::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("prometheus-ca-file") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
    }

    #[test]
    fn bad_urls_name_the_flag_and_keep_passwords_out() {
        for (url, hint) in [
            ("10.0.0.1:30090", "prometheus-url"),
            ("http://u:p@10.0.0.1:30090", "prometheus-password-file"),
            ("http://10.0.0.1:30090/?x=1", "query"),
        ] {
            let t = PrometheusTarget {
                url: url.into(),
                ..Default::default()
            };
            let e = t.parsed_url().unwrap_err().to_string();
            assert!(e.contains(hint), "{url}: {e}");
            assert!(!e.contains("u:p"), "{e}");
        }
    }
}
