//! The one client for the central Grafana's HTTP API (see ../shared/contracts/GRAFANA-CONTRACT.md
//! for the status codes and bodies it relies on).
//!
//! Every call goes through [`GrafanaClient::send`], which owns authentication, retries of
//! outages, and the mapping of 401/403 to errors that say which of the two it was.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::secret::Credentials;

/// Header that makes provisioned alert rules editable in Grafana's UI; only its presence
/// counts (contract §5.2).
pub const DISABLE_PROVENANCE: &str = "X-Disable-Provenance";

#[derive(Clone)]
pub struct GrafanaClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GrafanaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrafanaClient")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// A non-error answer: the status and the raw body, for callers that branch on 404/409.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// Grafana's `message` field, or the body as text; made fit to show (crate::sanitize).
    pub fn message(&self) -> String {
        let raw = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        crate::sanitize::shown(&raw, &[])
    }
}

/// The fields of Grafana's `dtos.DataSource` CMM reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    #[serde(default)]
    pub id: i64,
    pub uid: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub access: String,
    #[serde(default)]
    pub basic_auth: bool,
    #[serde(default)]
    pub basic_auth_user: String,
    #[serde(default)]
    pub json_data: Value,
    #[serde(default)]
    pub secure_json_fields: Value,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub version: i64,
}

/// Grafana's verdict on a datasource (`GET /api/datasources/uid/{uid}/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasourceHealth {
    pub ok: bool,
    /// `OK` or `ERROR` as Grafana says it.
    pub status: String,
    pub message: String,
}

/// Grafana's root URL, checked as every command takes it (and `config validate` checks it):
/// http(s), no user or password inside.
pub fn check_url(base: &str) -> Result<Url> {
    // Never echoed when it may hold a password (`user:pass@`).
    let shown = if base.contains('@') {
        "the URL".to_owned()
    } else {
        format!("{base:?}")
    };
    let base = Url::parse(base).map_err(|e| {
        Error::invalid(
            "grafana-url",
            format!("{shown} is not a URL ({e}): give e.g. http://grafana.example:3000"),
        )
    })?;
    if !base.username().is_empty() || base.password().is_some() {
        return Err(Error::invalid(
            "grafana-url",
            "carries a user or password (user:pass@): they would be printed and logged with \
             the URL; give the token with the `grafana-token-file` setting (or CMM_GRAFANA_TOKEN), or \
             the admin login with the `grafana-user` and `grafana-password-file` settings",
        ));
    }
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(Error::invalid(
            "grafana-url",
            format!("{base} must be an http:// or https:// URL"),
        ));
    }
    Ok(base)
}

impl GrafanaClient {
    /// `base` is Grafana's root URL (a sub-path such as `https://ops.example/grafana/` works).
    pub fn new(base: &str, credentials: Credentials, retry: RetryPolicy) -> Result<Self> {
        Self::with_ca(base, credentials, retry, None)
    }

    /// As [`new`](Self::new), also trusting `ca_pem` (a private CA in front of Grafana) on
    /// top of the system's roots.
    pub fn with_ca(
        base: &str,
        credentials: Credentials,
        retry: RetryPolicy,
        ca_pem: Option<&str>,
    ) -> Result<Self> {
        let mut base = check_url(base)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(retry.timeout.min(Duration::from_secs(5)));
        if let Some(pem) = ca_pem {
            // The file's certificates as extra roots, and a self-signed one as itself.
            builder = builder.tls_backend_preconfigured(crate::trust::grafana_tls(pem)?);
        }
        let http = builder
            .build()
            .map_err(|e| client_error("grafana-url", "grafana-ca-file", &e))?;
        Ok(Self {
            http,
            base,
            credentials,
            retry,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The same client, asking once: for a request that must not be repeated when an answer
    /// is lost (a test notification reaches people each time it is sent).
    pub(crate) fn once(&self) -> Self {
        let mut c = self.clone();
        c.retry.attempts = 1;
        c
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked in new()");
            path.pop_if_empty();
            path.push("api");
            path.extend(segments);
        }
        url
    }

    /// One call, retried on transport errors, timeouts and 5xx. 401 and 403 become errors here so
    /// every caller reports them the same way; other statuses are returned for the caller.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        self.send_query(method, segments, &[], body, headers).await
    }

    /// [`send`](Self::send) with query parameters.
    pub async fn send_query(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let path = url.path().to_owned();
        let mut last = String::new();
        // The last attempt's HTTP answer, when Grafana answered at all: a 5xx that persists is
        // Grafana failing this request, not Grafana being unreachable.
        let mut failing: Option<(u16, String)> = None;
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                let delay = self.retry.delay(attempt - 1, RetryPolicy::jitter());
                tracing::warn!(%method, %path, attempt, delay_ms = delay.as_millis() as u64, problem = %last, "retrying Grafana");
                tokio::time::sleep(delay).await;
            }
            let mut req = self.http.request(method.clone(), url.clone());
            req = match &self.credentials {
                Credentials::Token(t) => req.bearer_auth(t.expose()),
                Credentials::Basic { user, password } => {
                    req.basic_auth(user, Some(password.expose()))
                }
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            tracing::debug!(%method, %path, attempt, "grafana request");
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = describe_transport(&e);
                    if crate::trust::is_certificate_refusal(&last) {
                        // Not a Grafana to wait for: a setting to fix (exit 2), said as such.
                        return Err(Error::invalid(
                            "grafana-ca-file",
                            format!(
                                "Grafana at {} presents a certificate this host does not trust \
                                 ({last}): give the CA that signs it as grafana-ca-file, or, \
                                 if it is self-signed, Grafana's own certificate",
                                self.base
                            ),
                        ));
                    }
                    failing = None;
                    continue;
                }
            };
            let status = resp.status();
            // The status decides before the body does: a body that cannot be read (too large,
            // trickling past the timeout) still tells a failing Grafana (5xx), a refusal (401,
            // 403) and an answer that never arrived (2xx cut off) apart.
            let (answer, unreadable) =
                match crate::sanitize::read_capped(resp, crate::sanitize::MAX_BODY).await {
                    Ok(b) => (
                        Answer {
                            status,
                            body: self.without_own_secrets(b),
                        },
                        None,
                    ),
                    Err(e) => (
                        Answer {
                            status,
                            body: Vec::new(),
                        },
                        Some(format!("its body could not be read: {e}")),
                    ),
                };
            let message = || unreadable.clone().unwrap_or_else(|| answer.message());
            if status.is_server_error() {
                last = format!("{} {}", status.as_u16(), message());
                failing = Some((status.as_u16(), message()));
                continue;
            }
            if let (Some(why), true) = (&unreadable, status.is_success()) {
                // The answer never arrived whole: as a timeout, retried, then unreachable.
                last = format!("{} but {why}", status.as_u16());
                failing = None;
                continue;
            }
            return match status {
                StatusCode::UNAUTHORIZED => Err(Error::GrafanaUnauthorized {
                    method: method.to_string(),
                    path,
                    message: message(),
                    login: match &self.credentials {
                        Credentials::Basic { user, .. } => Some(user.clone()),
                        Credentials::Token(_) => None,
                    },
                }),
                StatusCode::FORBIDDEN => {
                    let message = message();
                    Err(Error::GrafanaForbidden {
                        method: method.to_string(),
                        permissions: permissions_needed(&message),
                        path,
                        message,
                    })
                }
                _ => match unreadable {
                    None => Ok(answer),
                    Some(detail) => Err(Error::GrafanaProtocol {
                        method: method.to_string(),
                        path,
                        detail,
                    }),
                },
            };
        }
        if let Some((status, message)) = failing {
            return Err(Error::GrafanaFailing {
                url: self.base.to_string(),
                write: method != Method::GET,
                method: method.to_string(),
                path,
                attempts: self.retry.attempts.max(1),
                status,
                message,
            });
        }
        Err(Error::GrafanaUnreachable {
            url: self.base.to_string(),
            method: method.to_string(),
            path,
            attempts: self.retry.attempts.max(1),
            last,
        })
    }

    /// A server or proxy may echo the request's credentials in its answer: they are replaced
    /// before the body is decoded, shown or logged.
    fn without_own_secrets(&self, body: Vec<u8>) -> Vec<u8> {
        let secret = match &self.credentials {
            Credentials::Token(t) => t.expose(),
            Credentials::Basic { password, .. } => password.expose(),
        };
        if secret.len() < 4 || !body.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            return body;
        }
        String::from_utf8_lossy(&body)
            .replace(secret, "[redacted]")
            .into_bytes()
    }

    pub(crate) fn unexpected(&self, method: &Method, segments: &[&str], a: &Answer) -> Error {
        Error::GrafanaStatus {
            method: method.to_string(),
            path: self.url(segments).path().to_owned(),
            status: a.status.as_u16(),
            message: a.message(),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        segments: &[&str],
        a: &Answer,
    ) -> Result<T> {
        serde_json::from_slice(&a.body).map_err(|e| Error::GrafanaProtocol {
            method: method.to_string(),
            path: self.url(segments).path().to_owned(),
            detail: e.to_string(),
        })
    }

    /// `GET /api/health` (unauthenticated), as Grafana says it: its version and its database's
    /// state (`ok`, or `failing` with a 503, pkg/api/health.go).
    pub async fn health_facts(&self) -> Result<(String, String)> {
        let seg = ["health"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        let v: Value = self.decode(&Method::GET, &seg, &a).unwrap_or(Value::Null);
        let db = v["database"].as_str().unwrap_or("").to_owned();
        if !a.status.is_success() && db.is_empty() {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        Ok((v["version"].as_str().unwrap_or("unknown").to_owned(), db))
    }

    /// `GET /api/health` (unauthenticated): Grafana's version once its database answers.
    pub async fn health(&self) -> Result<String> {
        let seg = ["health"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        if !a.status.is_success() {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        let v: Value = self.decode(&Method::GET, &seg, &a)?;
        if v["database"] != "ok" {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        Ok(v["version"].as_str().unwrap_or("unknown").to_owned())
    }

    /// Poll `/api/health` until Grafana answers or `deadline` passes; for a freshly installed
    /// central Grafana.
    pub async fn wait_healthy(&self, deadline: Duration) -> Result<String> {
        let start = tokio::time::Instant::now();
        loop {
            match self.health().await {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() >= deadline => return Err(e),
                Err(
                    Error::GrafanaUnreachable { .. }
                    | Error::GrafanaStatus { .. }
                    | Error::GrafanaFailing { .. },
                ) => tokio::time::sleep(self.retry.max_delay).await,
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_datasource(&self, segments: &[&str]) -> Result<Option<DataSource>> {
        let a = self.send(Method::GET, segments, None, &[]).await?;
        match a.status {
            StatusCode::OK => self.decode(&Method::GET, segments, &a).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&Method::GET, segments, &a)),
        }
    }

    /// `GET /api/datasources`: every datasource the caller may read (list items; contract §2.2).
    pub async fn list_datasources(&self) -> Result<Vec<DataSource>> {
        let seg = ["datasources"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        if a.status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        self.decode(&Method::GET, &seg, &a)
    }

    pub async fn datasource_by_uid(&self, uid: &str) -> Result<Option<DataSource>> {
        self.get_datasource(&["datasources", "uid", uid]).await
    }

    pub async fn datasource_by_name(&self, name: &str) -> Result<Option<DataSource>> {
        self.get_datasource(&["datasources", "name", name]).await
    }

    /// `POST /api/datasources`. `Ok(None)` when Grafana answers 409 (a datasource with that
    /// name or uid appeared meanwhile): the caller re-reads and decides.
    pub async fn create_datasource(&self, body: &Value) -> Result<Option<DataSource>> {
        let seg = ["datasources"];
        let a = self.send(Method::POST, &seg, Some(body), &[]).await?;
        match a.status {
            StatusCode::OK => {
                let v: Value = self.decode(&Method::POST, &seg, &a)?;
                serde_json::from_value(v["datasource"].clone())
                    .map(Some)
                    .map_err(|e| Error::GrafanaProtocol {
                        method: "POST".into(),
                        path: self.url(&seg).path().to_owned(),
                        detail: e.to_string(),
                    })
            }
            StatusCode::CONFLICT => Ok(None),
            _ => Err(self.unexpected(&Method::POST, &seg, &a)),
        }
    }

    /// `PUT /api/datasources/uid/{uid}`: a full replace of the datasource.
    pub async fn update_datasource(&self, uid: &str, body: &Value) -> Result<()> {
        let seg = ["datasources", "uid", uid];
        let a = self.send(Method::PUT, &seg, Some(body), &[]).await?;
        match a.status {
            StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => Err(Error::GrafanaConflict {
                what: format!(
                    "Grafana refused to update datasource {uid}: {}",
                    a.message()
                ),
                fix: "another datasource holds that name, or someone edited it meanwhile; \
                      re-run, or use --force to take the name over"
                    .into(),
            }),
            _ => Err(self.unexpected(&Method::PUT, &seg, &a)),
        }
    }

    /// `DELETE /api/datasources/uid/{uid}`; `false` when it did not exist.
    pub async fn delete_datasource(&self, uid: &str) -> Result<bool> {
        let seg = ["datasources", "uid", uid];
        let a = self.send(Method::DELETE, &seg, None, &[]).await?;
        match a.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&Method::DELETE, &seg, &a)),
        }
    }

    /// `GET /api/datasources/uid/{uid}/health`: Grafana's own query through the datasource, so
    /// a success proves the central Grafana reaches the cluster's Prometheus.
    pub async fn datasource_health(&self, uid: &str) -> Result<DatasourceHealth> {
        let seg = ["datasources", "uid", uid, "health"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        match a.status {
            StatusCode::OK | StatusCode::BAD_REQUEST => {
                let v: Value = self.decode(&Method::GET, &seg, &a)?;
                let status = v["status"].as_str().unwrap_or("").to_owned();
                Ok(DatasourceHealth {
                    ok: a.status == StatusCode::OK && status == "OK",
                    status,
                    message: v["message"].as_str().unwrap_or("").to_owned(),
                })
            }
            _ => Err(self.unexpected(&Method::GET, &seg, &a)),
        }
    }

    /// Create the folder unless it exists; folders are addressed by uid so the title may be
    /// renamed in the UI without CMM noticing.
    pub async fn ensure_folder(&self, uid: &str, title: &str) -> Result<bool> {
        let get = ["folders", uid];
        let a = self.send(Method::GET, &get, None, &[]).await?;
        match a.status {
            StatusCode::OK => return Ok(false),
            StatusCode::NOT_FOUND => {}
            _ => return Err(self.unexpected(&Method::GET, &get, &a)),
        }
        let seg = ["folders"];
        let body = serde_json::json!({"uid": uid, "title": title});
        let a = self.send(Method::POST, &seg, Some(&body), &[]).await?;
        match a.status {
            StatusCode::OK => Ok(true),
            // 11.3 may answer either to a duplicate uid (contract §4.1): someone made it meanwhile.
            StatusCode::CONFLICT | StatusCode::BAD_REQUEST
                if a.message().to_lowercase().contains("same uid") =>
            {
                Ok(false)
            }
            _ => Err(self.unexpected(&Method::POST, &seg, &a)),
        }
    }

    /// Titles of the dashboards in a folder (`GET /api/search?folderUIDs=…&type=dash-db`).
    pub async fn folder_dashboards(&self, uid: &str) -> Result<Vec<String>> {
        let seg = ["search"];
        let a = self
            .send_query(
                Method::GET,
                &seg,
                &[("folderUIDs", uid), ("type", "dash-db")],
                None,
                &[],
            )
            .await?;
        if !a.status.is_success() {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        let hits: Vec<Value> = self.decode(&Method::GET, &seg, &a)?;
        Ok(hits
            .iter()
            .map(|h| h["title"].as_str().unwrap_or("").to_owned())
            .collect())
    }

    /// `DELETE /api/folders/{uid}`; `false` when it did not exist.
    pub async fn delete_folder(&self, uid: &str) -> Result<bool> {
        let seg = ["folders", uid];
        let a = self.send(Method::DELETE, &seg, None, &[]).await?;
        match a.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&Method::DELETE, &seg, &a)),
        }
    }

    /// `GET …/rule-groups/{group}`; `None` when the group is empty or missing.
    pub async fn rule_group(&self, folder: &str, group: &str) -> Result<Option<Value>> {
        let seg = ["v1", "provisioning", "folder", folder, "rule-groups", group];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        match a.status {
            StatusCode::OK => self.decode(&Method::GET, &seg, &a).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&Method::GET, &seg, &a)),
        }
    }

    /// `GET /api/v1/provisioning/alert-rules/{uid}`: one rule, the only read that reports its
    /// `provenance` (a group GET does not). 404 has an empty body (contract §5.6).
    pub async fn alert_rule(&self, uid: &str) -> Result<Option<Value>> {
        let seg = ["v1", "provisioning", "alert-rules", uid];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        match a.status {
            StatusCode::OK => self.decode(&Method::GET, &seg, &a).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&Method::GET, &seg, &a)),
        }
    }

    /// Whether a stored group's rules were provisioned editable (no provenance), read from its
    /// first rule (a group is written, with one header, as a whole); `None` for an empty group.
    pub async fn group_editable(&self, group: &Value) -> Result<Option<bool>> {
        let Some(uid) = group["rules"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r["uid"].as_str())
        else {
            return Ok(None);
        };
        Ok(self
            .alert_rule(uid)
            .await?
            .map(|r| r["provenance"].as_str().unwrap_or("").is_empty()))
    }

    /// `GET /api/prometheus/grafana/api/v1/rules`: the evaluation state of every rule the
    /// caller may see (RuleResponse in the spec; `pkg/services/ngalert/api/prometheus/
    /// api_prometheus.go`). Filtered to one folder here, not by query parameter: the filter
    /// parameters differ between Grafana versions, an unknown one is ignored by Grafana.
    /// See [`groups_of_folder`] for how a group is told to be the folder's.
    pub async fn rule_statuses(&self, folder_uid: &str, folder_title: &str) -> Result<Vec<Value>> {
        let seg = ["prometheus", "grafana", "api", "v1", "rules"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        if a.status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        let v: Value = self.decode(&Method::GET, &seg, &a)?;
        Ok(groups_of_folder(&v, folder_uid, folder_title))
    }

    /// `GET /api/prometheus/grafana/api/v1/rules`, whole: the central check reads every folder's
    /// groups once and judges each cluster from the one answer.
    pub async fn all_rule_statuses(&self) -> Result<Value> {
        let seg = ["prometheus", "grafana", "api", "v1", "rules"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        if a.status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        self.decode(&Method::GET, &seg, &a)
    }

    /// An instant PromQL query through Grafana's datasource proxy
    /// (`GET /api/datasources/proxy/uid/{uid}/api/v1/query`, `ProxyDataSourceRequestWithUID` in
    /// pkg/api/dataproxy.go): Grafana forwards it with the datasource's own URL, TLS identity
    /// and credentials, so the answer is the cluster's Prometheus (or the receiver, or Query)
    /// as Grafana reaches it, in the Prometheus API's own shape.
    pub async fn proxy_query(&self, uid: &str, expr: &str) -> Result<Value> {
        let seg = ["datasources", "proxy", "uid", uid, "api", "v1", "query"];
        let a = self
            .send_query(Method::GET, &seg, &[("query", expr)], None, &[])
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        self.decode(&Method::GET, &seg, &a)
    }

    /// `GET /api/v1/provisioning/contact-points` (ContactPoints in the spec).
    pub async fn contact_points(&self) -> Result<Vec<Value>> {
        let seg = ["v1", "provisioning", "contact-points"];
        let a = self.send(Method::GET, &seg, None, &[]).await?;
        if a.status != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, &seg, &a));
        }
        self.decode(&Method::GET, &seg, &a)
    }

    /// `PUT …/rule-groups/{group}`: replaces the group (rules not listed are deleted).
    pub async fn put_rule_group(
        &self,
        folder: &str,
        group: &str,
        body: &Value,
        editable: bool,
    ) -> Result<()> {
        let seg = ["v1", "provisioning", "folder", folder, "rule-groups", group];
        let headers: &[(&str, &str)] = if editable {
            &[(DISABLE_PROVENANCE, "true")]
        } else {
            &[]
        };
        let a = self.send(Method::PUT, &seg, Some(body), headers).await?;
        match a.status {
            StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => Err(Error::GrafanaConflict {
                what: format!(
                    "Grafana refused to replace rule group {folder}/{group}: {}",
                    a.message()
                ),
                fix: "the rules were provisioned with the other editability setting or by another \
                      tool; re-run with the same --rules choice as before"
                    .into(),
            }),
            _ => Err(self.unexpected(&Method::PUT, &seg, &a)),
        }
    }

    /// `DELETE …/rule-groups/{group}`; the header must match how the rules were stored.
    pub async fn delete_rule_group(&self, folder: &str, group: &str, editable: bool) -> Result<()> {
        let seg = ["v1", "provisioning", "folder", folder, "rule-groups", group];
        let headers: &[(&str, &str)] = if editable {
            &[(DISABLE_PROVENANCE, "true")]
        } else {
            &[]
        };
        let a = self.send(Method::DELETE, &seg, None, headers).await?;
        match a.status {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.unexpected(&Method::DELETE, &seg, &a)),
        }
    }
}

/// "You'll need additional permissions … Permissions needed: datasources:create" → the list.
pub fn permissions_needed(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("Permissions needed:")?;
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

fn describe_transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("cannot connect ({})", root_cause(e))
    } else {
        root_cause(e)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Why an HTTP client could not be built, with its causes (reqwest alone says "builder
/// error"). The common cause is a host without trusted CA certificates: rustls' platform
/// verifier reads the system store (the ca-certificates package, or SSL_CERT_FILE /
/// SSL_CERT_DIR) when the client is built, even for plain http, and says "No CA certificates
/// were loaded from the system" (rustls-platform-verifier, verification/others.rs).
pub fn client_error(setting: &'static str, ca_setting: &str, e: &reqwest::Error) -> Error {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {}", causes.join(": "))
    };
    let no_roots = causes
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("no ca certificates"));
    let hint = if no_roots {
        format!(
            " — this host has no trusted CA certificates (the system store is empty: install \
             the ca-certificates package, or point SSL_CERT_FILE / SSL_CERT_DIR at a bundle), \
             or give the CA that signs the server with the `{ca_setting}` setting"
        )
    } else {
        String::new()
    };
    Error::invalid(
        setting,
        format!("cannot build an HTTP client ({detail}){hint}"),
    )
}

/// The rule-state groups of one folder. Grafana 11.3 (the chart's) names a group's folder only
/// by `file`, the folder's full path, which for CMM's top-level folders is its title: its
/// `RuleGroup` has `name`, `file`, `rules`, `interval` and no `folderUid`
/// (grafana-openapi-client-go `models/rule_group.go` at 9d96c20, generated from 11.3's spec).
/// Grafanas from 2025 on add `folderUid`; where a group has one, it decides.
pub fn groups_of_folder(response: &Value, folder_uid: &str, folder_title: &str) -> Vec<Value> {
    response["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| match g["folderUid"].as_str() {
            Some(uid) => uid == folder_uid,
            None => g["file"] == folder_title,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn permissions_are_quoted_from_grafanas_rbac_message() {
        let m = "You'll need additional permissions to perform this action. Permissions needed: datasources:create";
        assert_eq!(permissions_needed(m).as_deref(), Some("datasources:create"));
        assert_eq!(permissions_needed("Permission denied"), None);
    }

    #[test]
    fn urls_keep_a_sub_path_and_escape_segments() {
        let c = GrafanaClient::new(
            "https://ops.example/grafana",
            Credentials::Token(Secret::new("t")),
            RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(
            c.url(&["datasources", "name", "a b"]).as_str(),
            "https://ops.example/grafana/api/datasources/name/a%20b"
        );
        assert!(!format!("{c:?}").contains("\"t\""));
        for bad in ["grafana:3000", "ftp://x", "not a url"] {
            let e = GrafanaClient::new(
                bad,
                Credentials::Token(Secret::new("t")),
                RetryPolicy::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("grafana-url"), "{e}");
        }
    }

    #[test]
    fn rule_state_groups_are_the_folders_by_file_on_11_3_and_by_uid_where_given() {
        // 11.3's shape: `file` is the folder's title, no folderUid.
        let v = serde_json::json!({"status": "success", "data": {"groups": [
            {"name": "cmm-health", "file": "CMM kr-mum", "interval": 60, "rules": []},
            {"name": "cmm-health", "file": "CMM wai-eks", "interval": 60, "rules": []},
            // A later Grafana: the uid decides, even where the title matches.
            {"name": "cmm-health", "file": "CMM kr-mum", "folderUid": "other", "rules": []},
            {"name": "cmm-health", "file": "renamed", "folderUid": "cmm-kr-mum", "rules": []},
        ]}});
        let mine = groups_of_folder(&v, "cmm-kr-mum", "CMM kr-mum");
        let got: Vec<&str> = mine
            .iter()
            .map(|g| g["file"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(got, ["CMM kr-mum", "renamed"]);
        assert!(groups_of_folder(&serde_json::json!({}), "u", "t").is_empty());
    }
}
