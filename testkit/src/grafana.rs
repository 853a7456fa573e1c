//! A fake of the Grafana HTTP API subset CMM uses, held to Grafana's contract: every request
//! body is validated against the schema Grafana's own OpenAPI spec names for that endpoint
//! (loaded at test time from ../shared/contracts/grafana-api-merged.json, never copied), and
//! answers use the status codes and bodies of ../shared/contracts/GRAFANA-CONTRACT.md (§ numbers
//! below refer to it). It is a fake: where the contract marks something UNCONFIRMED, the choice
//! made here is said in a comment.
//!
//! It records every request, can inject outages (5xx, slow answers) and knows tokens of
//! different roles, so tests can assert idempotency, retries, 401 vs 403 and secrecy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The spec and a validator for the Swagger 2.0 schema subset its definitions use.

/// Where the spec is read from: `CMM_GRAFANA_SPEC`, else `../shared/contracts/` beside the repo.
pub fn spec_path() -> PathBuf {
    if let Ok(p) = std::env::var("CMM_GRAFANA_SPEC") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/contracts/grafana-api-merged.json")
}

#[derive(Debug)]
pub struct Spec {
    doc: Value,
}

impl Spec {
    pub fn load() -> anyhow::Result<Self> {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "Grafana's OpenAPI spec not found at {} ({e}): put grafana-api-merged.json in \
                 ../shared/contracts or point CMM_GRAFANA_SPEC at it",
                path.display()
            )
        })?;
        let doc: Value = serde_json::from_str(&text)?;
        anyhow::ensure!(
            doc["swagger"] == "2.0" && doc["definitions"].is_object(),
            "{} is not Grafana's Swagger 2.0 spec",
            path.display()
        );
        Ok(Self { doc })
    }

    /// The body schema the spec names for an operation, e.g. ("/datasources", "post").
    pub fn body_schema(&self, path: &str, method: &str) -> Option<&Value> {
        self.doc["paths"][path][method]["parameters"]
            .as_array()?
            .iter()
            .find(|p| p["in"] == "body")
            .map(|p| &p["schema"])
    }

    /// The schema the spec documents for an operation's answer with this status, if any.
    pub fn response_schema(&self, path: &str, method: &str, status: u16) -> Option<&Value> {
        let mut r = &self.doc["paths"][path][method]["responses"][status.to_string()];
        if let Some(name) = r["$ref"]
            .as_str()
            .and_then(|x| x.strip_prefix("#/responses/"))
        {
            r = &self.doc["responses"][name];
        }
        r.get("schema")
    }

    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.doc["definitions"].get(name)
    }

    /// Violations of `schema` by `value`; empty when it conforms. Stricter than Grafana in one
    /// way, on purpose: a property the schema does not list is a violation (Grafana's decoder
    /// ignores it silently, which hides a misspelt field such as `folderUid` for `folderUID`).
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out);
        out
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..16 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix("#/definitions/") {
                    Some(name) => s = &self.doc["definitions"][name],
                    None => return s,
                },
                None => return s,
            }
        }
        s
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let s = self.resolve(schema);
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, v, at, out);
            }
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                _ => true,
            };
            if !ok {
                out.push(format!("{at}: expected {t}, got {v}"));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                out.push(format!(
                    "{at}: {v} is not one of {}",
                    Value::Array(e.clone())
                ));
            }
        }
        if let Some(text) = v.as_str() {
            let len = text.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    out.push(format!("{at}: shorter than {min}"));
                }
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    out.push(format!("{at}: longer than {max}"));
                }
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                if char_class_match(p, text) == Some(false) {
                    out.push(format!("{at}: {text:?} does not match {p}"));
                }
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                self.check(items, x, &format!("{at}[{i}]"), out);
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = r.as_str() {
                    if !obj.contains_key(name) {
                        out.push(format!("{at}: required property {name:?} is missing"));
                    }
                }
            }
            for (k, x) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, x, &format!("{at}.{k}"), out),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            out.push(format!("{at}: property {k:?} is not allowed"))
                        }
                        Some(ap @ Value::Object(_)) => self.check(ap, x, &format!("{at}.{k}"), out),
                        _ if props.is_some() => out.push(format!(
                            "{at}: property {k:?} is not in the spec's schema (Grafana would ignore it)"
                        )),
                        _ => {}
                    },
                }
            }
        }
    }
}

/// `^[…]+$` / `^[…]*$` patterns (the only kind the schemas CMM sends use); `None` for others.
fn char_class_match(pattern: &str, text: &str) -> Option<bool> {
    let inner = pattern.strip_prefix("^[")?;
    let (class, plus) = if let Some(c) = inner.strip_suffix("]+$") {
        (c, true)
    } else {
        (inner.strip_suffix("]*$")?, false)
    };
    let chars: Vec<char> = class
        .replace("\\-", "-")
        .replace("\\_", "_")
        .chars()
        .collect();
    let allowed = |c: char| {
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    Some((!plus || !text.is_empty()) && text.chars().all(allowed))
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "Viewer" => Some(Role::Viewer),
            "Editor" => Some(Role::Editor),
            "Admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The built-in roles' permissions for the actions these endpoints check (§2, §3, §5.1).
    /// Fake's choice: Viewer and Editor may read datasources (UNCONFIRMED in the contract);
    /// only Admin creates, updates, deletes them and writes provisioning.
    fn allows(self, action: &str) -> bool {
        match action {
            "datasources:query"
            | "datasources:read"
            | "folders:read"
            | "alert.provisioning:read"
            | "alert.rules:read" => true,
            "folders:create" | "folders:delete" | "alert.notifications:write" => {
                self >= Role::Editor
            }
            _ => self == Role::Admin,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and `{"message":"Internal Server Error"}`-style body.
    Status(u16),
    /// Sleep this long before handling (longer than the client's timeout = a timeout).
    Delay(Duration),
    /// Answer with this status and an HTML error page that echoes the request's headers, with
    /// terminal escapes, as a misconfigured proxy or debug page in front of Grafana may.
    Echo(u16),
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Datasource {
    dto: Value,
    secure: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct StoredRule {
    rule: Value,
    /// "api" or "" (none), §5.2.
    provenance: String,
}

#[derive(Debug, Default)]
struct GroupState {
    interval: i64,
    rules: Vec<StoredRule>,
}

#[derive(Debug, Default)]
struct ServiceAccount {
    dto: Value,
    token_names: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: i64,
    tokens: BTreeMap<String, Role>,
    basic: BTreeMap<String, (String, Role)>,
    datasources: Vec<Datasource>,
    folders: BTreeMap<String, Value>,
    /// Dashboards by uid, each with its `folderUid` (made in the UI or provisioned by others).
    dashboards: BTreeMap<String, Value>,
    groups: BTreeMap<(String, String), GroupState>,
    service_accounts: Vec<ServiceAccount>,
    /// Evaluation health by rule uid, as the scheduler would report it: (health, lastError).
    rule_health: BTreeMap<String, (String, String)>,
    /// `None`: Grafana's default contact point only (Grafana gives it a generated uid).
    contact_points: Option<Vec<Value>>,
    /// Grafana's `[smtp] enabled` (off by default, conf/defaults.ini).
    smtp: bool,
    /// Integrations whose test notification fails, by uid, with Grafana's error.
    failing_integrations: BTreeMap<String, String>,
    /// Test notifications sent: (contact point, integration type).
    sent: Vec<(String, String)>,
    faults: Vec<Fault>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
}

impl Inner {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Shared {
    spec: Spec,
    inner: Mutex<Inner>,
    http: reqwest::Client,
}

/// The fake, listening on 127.0.0.1 until dropped.
pub struct FakeGrafana {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The admin token a fresh fake accepts.
pub const ADMIN_TOKEN: &str = "glsa_fakeAdminToken0123456789abcdef_0a1b2c3d";

impl FakeGrafana {
    /// Start with one org-Admin token ([`ADMIN_TOKEN`]) and the basic-auth user admin/admin.
    pub async fn start() -> anyhow::Result<Self> {
        let spec = Spec::load()?;
        let mut inner = Inner::default();
        inner.tokens.insert(ADMIN_TOKEN.to_owned(), Role::Admin);
        inner
            .basic
            .insert("admin".into(), ("admin".into(), Role::Admin));
        let shared = Arc::new(Shared {
            spec,
            inner: Mutex::new(inner),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// Start, or — when the spec is absent — skip the calling test with a printed reason, unless
    /// `CMM_REQUIRE_TOOLS=1`, where a missing spec is a failure.
    pub async fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start().await {
            Ok(f) => Some(f),
            Err(e) if std::env::var("CMM_REQUIRE_TOOLS").as_deref() == Ok("1") => {
                panic!("{test}: CMM_REQUIRE_TOOLS=1 and the fake Grafana cannot start: {e}")
            }
            Err(e) => {
                crate::skip(test, &e.to_string());
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_token(&self, token: &str, role: Role) {
        self.lock().tokens.insert(token.to_owned(), role);
    }

    /// The admin login Grafana starts with, replacing admin/admin: the chart passes
    /// `grafana.admin.existingSecret`'s keys as GF_SECURITY_ADMIN_USER/_PASSWORD, read once
    /// when the pod starts (the grafana chart's deployment template, `_pod.tpl`).
    pub fn set_admin_login(&self, user: &str, password: &str) {
        let mut g = self.lock();
        g.basic.clear();
        g.basic
            .insert(user.to_owned(), (password.to_owned(), Role::Admin));
    }

    /// The next `n` requests meet `fault` (queued faults apply in order).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut g = self.lock();
        for _ in 0..n {
            g.faults.push(fault.clone());
        }
    }

    /// Seed a datasource as if someone else made it (`read_only`: file-provisioned).
    pub fn seed_datasource(&self, body: Value, read_only: bool) -> Value {
        let mut g = self.lock();
        let id = g.id();
        let mut dto = dto_from(&body, id, 1);
        dto["readOnly"] = json!(read_only);
        g.datasources.push(Datasource {
            dto: dto.clone(),
            secure: BTreeMap::new(),
        });
        dto
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }

    /// Spec violations seen in request bodies; tests assert this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn datasources(&self) -> Vec<Value> {
        self.lock()
            .datasources
            .iter()
            .map(|d| d.dto.clone())
            .collect()
    }

    /// The secrets stored for a datasource (never returned by the API itself).
    pub fn datasource_secrets(&self, uid: &str) -> BTreeMap<String, String> {
        self.lock()
            .datasources
            .iter()
            .find(|d| d.dto["uid"] == uid)
            .map(|d| d.secure.clone())
            .unwrap_or_default()
    }

    pub fn folders(&self) -> Vec<Value> {
        self.lock().folders.values().cloned().collect()
    }

    /// A dashboard someone saved into `folder` (as the UI does).
    pub fn add_dashboard(&self, folder: &str, uid: &str, title: &str) {
        self.lock().dashboards.insert(
            uid.to_owned(),
            json!({"uid": uid, "title": title, "folderUid": folder}),
        );
    }

    pub fn dashboards(&self) -> Vec<Value> {
        self.lock().dashboards.values().cloned().collect()
    }

    /// Rules of a group, each with `provenance` as stored.
    pub fn rules(&self, folder: &str, group: &str) -> Vec<Value> {
        self.lock()
            .groups
            .get(&(folder.to_owned(), group.to_owned()))
            .map(|g| g.rules.iter().map(rule_out).collect())
            .unwrap_or_default()
    }

    /// Make the scheduler report `health` (ok, error, nodata) for the rule with `uid`.
    pub fn set_rule_health(&self, uid: &str, health: &str, last_error: &str) {
        self.lock()
            .rule_health
            .insert(uid.to_owned(), (health.to_owned(), last_error.to_owned()));
    }

    /// Turn Grafana's `[smtp]` on or off (off, as in a fresh Grafana).
    pub fn set_smtp(&self, enabled: bool) {
        self.lock().smtp = enabled;
    }

    /// Make the integration `uid` fail its test notification with `error`.
    pub fn fail_integration(&self, uid: &str, error: &str) {
        self.lock()
            .failing_integrations
            .insert(uid.to_owned(), error.to_owned());
    }

    /// The test notifications sent so far: (contact point, integration type).
    pub fn notifications_sent(&self) -> Vec<(String, String)> {
        self.lock().sent.clone()
    }

    /// Replace the contact points (e.g. with an SMTP one the central values configure).
    pub fn set_contact_points(&self, points: Vec<Value>) {
        self.lock().contact_points = Some(points);
    }

    /// Stored rule uids of a group, for tests that change one.
    pub fn rule_uids(&self, folder: &str, group: &str) -> Vec<String> {
        self.rules(folder, group)
            .iter()
            .filter_map(|r| r["uid"].as_str().map(str::to_owned))
            .collect()
    }

    /// Delete a rule group behind CMM's back (drift).
    pub fn drop_group(&self, folder: &str, group: &str) {
        self.lock()
            .groups
            .remove(&(folder.to_owned(), group.to_owned()));
    }

    /// Change a datasource's URL behind CMM's back (drift).
    pub fn set_datasource_url(&self, uid: &str, url: &str) {
        let mut g = self.lock();
        if let Some(d) = g.datasources.iter_mut().find(|d| d.dto["uid"] == uid) {
            d.dto["url"] = json!(url);
        }
    }

    pub fn service_accounts(&self) -> Vec<Value> {
        self.lock()
            .service_accounts
            .iter()
            .map(|s| s.dto.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

fn reply(status: u16, body: Value) -> (u16, Value) {
    (status, body)
}

fn msg(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "message": message }))
}

fn errutil(status: u16, id: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"statusCode": status, "messageId": id, "message": message}),
    )
}

/// §0.4: the RBAC denial body.
fn denied(action: &str) -> (u16, Value) {
    (
        403,
        json!({
            "accessErrorId": "ACE0123456789",
            "message": format!("You'll need additional permissions to perform this action. Permissions needed: {action}"),
            "title": "Access denied",
        }),
    )
}

/// §0.3: 401 bodies are errutil errors with sorted keys and a traceID.
fn unauthorized(message: &str, id: &str) -> (u16, Value) {
    (
        401,
        json!({"extra": null, "message": message, "messageId": id, "statusCode": 401, "traceID": ""}),
    )
}

const EMPTY: u16 = 0xFFFF;

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 8 << 20)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body_json: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };

    let fault = {
        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.faults.is_empty() {
            None
        } else {
            Some(g.faults.remove(0))
        }
    };
    let (status, answer, pretty) = match fault {
        Some(Fault::Status(code)) => {
            let (s, b) = msg(code, "Internal Server Error");
            (s, Some(b), false)
        }
        Some(Fault::Echo(code)) => {
            let echoed: String = parts
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
                .collect();
            let page = format!(
                "\u{1b}[2J<html><body><h1>Upstream error</h1><pre>{echoed}</pre>{}</body></html>",
                "padding ".repeat(2000)
            );
            (code, Some(Value::String(page)), false)
        }
        delay => {
            // A delayed answer is the normal answer, late: long enough, a client timeout.
            if let Some(Fault::Delay(d)) = delay {
                tokio::time::sleep(d).await;
            }
            route(
                &shared,
                &method,
                &path,
                &query,
                &parts.headers,
                &bytes,
                &body_json,
            )
            .await
        }
    };
    {
        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query,
            headers,
            body: body_json,
            status: if status == EMPTY { 404 } else { status },
        });
    }
    if status == EMPTY {
        return StatusCode::NOT_FOUND.into_response();
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer {
        None => code.into_response(),
        // A raw page (Fault::Echo), not JSON.
        Some(Value::String(page)) => Response::builder()
            .status(code)
            .header("content-type", "text/html")
            .body(Body::from(page))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Some(v) => {
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            } else {
                v.to_string()
            };
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(text))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// Authenticate (§0.2/§0.3): the caller's role, or the 401 answer.
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<Role, (u16, Value)> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("Unauthorized", "auth.unauthorized"));
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return inner
            .tokens
            .get(token.trim())
            .copied()
            .ok_or_else(|| unauthorized("Invalid API key", "api-key.invalid"));
    }
    if let Some(b64) = auth.strip_prefix("Basic ") {
        let decoded = b64decode(b64.trim()).unwrap_or_default();
        let (user, pass) = decoded.split_once(':').unwrap_or(("", ""));
        if user == "api_key" {
            return inner
                .tokens
                .get(pass)
                .copied()
                .ok_or_else(|| unauthorized("Invalid API key", "api-key.invalid"));
        }
        return match inner.basic.get(user) {
            Some((p, role)) if p == pass => Ok(*role),
            _ => Err(unauthorized(
                "Invalid username or password",
                "password-auth.failed",
            )),
        };
    }
    Err(unauthorized("Unauthorized", "auth.unauthorized"))
}

fn b64decode(s: &str) -> Option<String> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|x| *x == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

fn valid_uid(uid: &str) -> bool {
    uid.len() <= 40
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

type Answer = (u16, Option<Value>, bool);

fn json_answer((s, v): (u16, Value)) -> Answer {
    (s, Some(v), false)
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &[u8],
    body: &Option<Value>,
) -> Answer {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.first() != Some(&"api") {
        return (EMPTY, None, false);
    }
    let segs = &segs[1..];
    // §1: /api/health is unauthenticated and pretty-printed.
    if segs == ["health"] && (method == Method::GET || method == Method::HEAD) {
        return (
            200,
            Some(json!({"database": "ok", "version": "11.3.0", "commit": "fake"})),
            true,
        );
    }

    // Health check probes the datasource's URL for real, outside the lock.
    if segs.len() == 4 && segs[0] == "datasources" && segs[1] == "uid" && segs[3] == "health" {
        return json_answer(health(shared, headers, segs[2]).await);
    }

    // The datasource proxy forwards to the datasource's URL for real, outside the lock.
    if segs.len() > 4 && segs[..3] == ["datasources", "proxy", "uid"] && method == Method::GET {
        return json_answer(proxy(shared, headers, segs[3], &segs[4..].join("/"), query).await);
    }

    let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let role = match authenticate(&g, headers) {
        Ok(r) => r,
        Err(a) => return json_answer(a),
    };

    // The spec's body schema for this operation, by its templated path.
    let templated = templated_path(segs);
    let m = method.as_str().to_ascii_lowercase();
    if let Some(schema) = shared.spec.body_schema(&templated, &m) {
        let Some(b) = body else {
            if !raw.is_empty() {
                return json_answer(msg(400, "bad request data"));
            }
            g.violations.push(format!(
                "{method} {path}: no JSON body where the spec wants one"
            ));
            return json_answer(msg(400, "bad request data"));
        };
        let v = shared.spec.validate(schema, b);
        if !v.is_empty() {
            let text = format!("{method} {path}: {}", v.join("; "));
            g.violations.push(text.clone());
            return json_answer(msg(400, &format!("bad request data (fake: {text})")));
        }
    }
    let body = body.clone().unwrap_or(Value::Null);
    let ans = match (method.as_str(), segs) {
        ("GET", ["datasources"]) => need(role, "datasources:read").unwrap_or_else(|| {
            reply(
                200,
                Value::Array(g.datasources.iter().map(|d| list_item(&d.dto)).collect()),
            )
        }),
        ("GET", ["datasources", "uid", uid]) => {
            need(role, "datasources:read").unwrap_or_else(|| get_ds(&g, |d| d["uid"] == *uid))
        }
        ("GET", ["datasources", "name", name]) => {
            need(role, "datasources:read").unwrap_or_else(|| get_ds(&g, |d| d["name"] == *name))
        }
        ("POST", ["datasources"]) => {
            need(role, "datasources:create").unwrap_or_else(|| add_ds(&mut g, &body))
        }
        ("PUT", ["datasources", "uid", uid]) => {
            need(role, "datasources:write").unwrap_or_else(|| update_ds(&mut g, uid, &body))
        }
        ("DELETE", ["datasources", "uid", uid]) => {
            need(role, "datasources:delete").unwrap_or_else(|| delete_ds(&mut g, uid))
        }
        ("GET", ["folders", uid]) => {
            need(role, "folders:read").unwrap_or_else(|| match g.folders.get(*uid) {
                Some(f) => reply(200, f.clone()),
                None => reply(
                    404,
                    json!({"message": "folder not found", "status": "not-found"}),
                ),
            })
        }
        ("POST", ["folders"]) => {
            need(role, "folders:create").unwrap_or_else(|| create_folder(&mut g, &body))
        }
        ("DELETE", ["folders", uid]) => {
            need(role, "folders:delete").unwrap_or_else(|| delete_folder(&mut g, uid, query))
        }
        ("GET", ["v1", "provisioning", "alert-rules", uid]) => {
            need(role, "alert.provisioning:read").unwrap_or_else(|| get_rule(&g, uid))
        }
        ("GET", ["v1", "provisioning", "folder", f, "rule-groups", grp]) => {
            need(role, "alert.provisioning:read").unwrap_or_else(|| get_group(&g, f, grp))
        }
        ("PUT", ["v1", "provisioning", "folder", f, "rule-groups", grp]) => {
            let prov = provenance(headers);
            need(role, "alert.provisioning:write")
                .unwrap_or_else(|| put_group(&mut g, f, grp, &body, prov))
        }
        ("DELETE", ["v1", "provisioning", "folder", f, "rule-groups", grp]) => {
            let prov = provenance(headers);
            need(role, "alert.provisioning:write")
                .unwrap_or_else(|| delete_group(&mut g, f, grp, prov))
        }
        ("GET", ["prometheus", "grafana", "api", "v1", "rules"]) => {
            need(role, "alert.rules:read").unwrap_or_else(|| rule_statuses(&g))
        }
        ("GET", ["v1", "provisioning", "contact-points"]) => {
            need(role, "alert.provisioning:read").unwrap_or_else(|| contact_points(&g))
        }
        ("POST", ["alertmanager", "grafana", "config", "api", "v1", "receivers", "test"]) => {
            need(role, "alert.notifications:write").unwrap_or_else(|| test_receivers(&mut g, &body))
        }
        // §4.2: no RBAC middleware, sign-in only.
        ("GET", ["search"]) => search(&g, query),
        ("GET", ["serviceaccounts", "search"]) => {
            need(role, "serviceaccounts:read").unwrap_or_else(|| search_sa(&g, query))
        }
        ("POST", ["serviceaccounts"]) => {
            need(role, "serviceaccounts:create").unwrap_or_else(|| create_sa(&mut g, role, &body))
        }
        ("POST", ["serviceaccounts", id, "tokens"]) => {
            need(role, "serviceaccounts:write").unwrap_or_else(|| create_token(&mut g, id, &body))
        }
        _ => (EMPTY, Value::Null),
    };
    if ans.0 == EMPTY {
        return (EMPTY, None, false);
    }
    // The fake holds its own success answers to the spec's response schema too. Skipped where
    // the contract documents that Grafana's body differs from its spec (DELETE datasource adds
    // `id`, §2.7; folder deletion is not in the contract).
    let documented_differently = matches!(
        (method.as_str(), segs),
        ("DELETE", ["datasources", ..]) | ("DELETE", ["folders", ..])
    );
    if (200..300).contains(&ans.0) && !documented_differently {
        if let Some(schema) = shared.spec.response_schema(&templated, &m, ans.0) {
            let v = shared.spec.validate(schema, &ans.1);
            if !v.is_empty() {
                g.violations.push(format!(
                    "fake's answer to {method} {path}: {}",
                    v.join("; ")
                ));
            }
        }
    }
    json_answer(ans)
}

fn need(role: Role, action: &str) -> Option<(u16, Value)> {
    (!role.allows(action)).then(|| denied(action))
}

fn provenance(headers: &HeaderMap) -> &'static str {
    // §5.2: presence alone counts.
    if headers.contains_key("x-disable-provenance") {
        ""
    } else {
        "api"
    }
}

fn templated_path(segs: &[&str]) -> String {
    let t: Vec<&str> = match segs {
        ["datasources", "uid", _] => vec!["datasources", "uid", "{uid}"],
        ["datasources", "name", _] => vec!["datasources", "name", "{name}"],
        ["folders", _] => vec!["folders", "{folder_uid}"],
        ["v1", "provisioning", "alert-rules", _] => {
            vec!["v1", "provisioning", "alert-rules", "{UID}"]
        }
        ["v1", "provisioning", "folder", _, "rule-groups", _] => {
            vec![
                "v1",
                "provisioning",
                "folder",
                "{FolderUID}",
                "rule-groups",
                "{Group}",
            ]
        }
        ["serviceaccounts", id, "tokens"] if *id != "search" => {
            vec!["serviceaccounts", "{serviceAccountId}", "tokens"]
        }
        other => other.to_vec(),
    };
    format!("/{}", t.join("/"))
}

// ---- datasources (§2)

/// A datasource as `GET /api/datasources` lists it: `DataSourceListItemDTO` lacks
/// basicAuthUser, withCredentials, secureJsonFields and version and adds typeName
/// (contract §2.1; pkg/api/dtos/datasource.go, the list built in pkg/api/datasources.go).
fn list_item(dto: &Value) -> Value {
    let mut item = dto.clone();
    if let Some(o) = item.as_object_mut() {
        for k in [
            "basicAuthUser",
            "withCredentials",
            "secureJsonFields",
            "version",
        ] {
            o.remove(k);
        }
        let name = match o.get("type").and_then(Value::as_str) {
            Some("prometheus") => "Prometheus",
            Some(other) => other,
            None => "",
        }
        .to_owned();
        o.insert("typeName".into(), Value::String(name));
    }
    item
}

fn dto_from(body: &Value, id: i64, version: i64) -> Value {
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let b = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
    json!({
        "id": id,
        "uid": s("uid"),
        "orgId": 1,
        "name": s("name"),
        "type": s("type"),
        "typeLogoUrl": format!("public/app/plugins/datasource/{}/img/logo.svg", s("type")),
        "access": s("access"),
        "url": s("url"),
        "user": s("user"),
        "database": s("database"),
        "basicAuth": b("basicAuth"),
        "basicAuthUser": s("basicAuthUser"),
        "withCredentials": b("withCredentials"),
        "isDefault": b("isDefault"),
        "jsonData": body.get("jsonData").cloned().unwrap_or_else(|| json!({})),
        "secureJsonFields": {},
        "version": version,
        "readOnly": false,
    })
}

fn get_ds(g: &Inner, pred: impl Fn(&Value) -> bool) -> (u16, Value) {
    match g.datasources.iter().find(|d| pred(&d.dto)) {
        Some(d) => reply(200, d.dto.clone()),
        // §2.4: capital D, the handler's own string.
        None => msg(404, "Data source not found"),
    }
}

fn secure_fields(secure: &BTreeMap<String, String>) -> Value {
    Value::Object(secure.keys().map(|k| (k.clone(), json!(true))).collect())
}

fn url_ok(url: &str) -> bool {
    url.is_empty() || reqwest::Url::parse(url).is_ok()
}

fn add_ds(g: &mut Inner, body: &Value) -> (u16, Value) {
    let ty = body["type"].as_str().unwrap_or("");
    let access = body["access"].as_str().unwrap_or("");
    if ty.is_empty() || access.is_empty() {
        return msg(400, "bad request data");
    }
    if !url_ok(body["url"].as_str().unwrap_or("")) {
        return msg(400, "Validation error, invalid URL");
    }
    let mut b = body.clone();
    if b["name"].as_str().unwrap_or("").is_empty() {
        // 11.x: an empty name becomes the type, then type-1, … (§2.3).
        let mut name = ty.to_owned();
        let mut i = 0;
        while g.datasources.iter().any(|d| d.dto["name"] == name.as_str()) {
            i += 1;
            name = format!("{ty}-{i}");
        }
        b["name"] = json!(name);
    }
    let name = b["name"].as_str().unwrap_or("").to_owned();
    if name.chars().count() > 190 {
        return errutil(400, "datasource.nameInvalid", "Invalid datasource name.");
    }
    if g.datasources.iter().any(|d| d.dto["name"] == name.as_str()) {
        return msg(409, "data source with the same name already exists");
    }
    let uid = b["uid"].as_str().unwrap_or("").to_owned();
    if uid.is_empty() {
        let n = g.next_id + 1;
        b["uid"] = json!(format!("a{n:035x}"));
    } else {
        // 11.x accepts a malformed uid unless failWrongDSUID is on (§2.3); the fake follows
        // 12.x and refuses it, so a client bug cannot hide behind 11.x's leniency.
        if !valid_uid(&uid) {
            return errutil(400, "datasource.uidInvalid", "Invalid datasource UID.");
        }
        if g.datasources.iter().any(|d| d.dto["uid"] == uid.as_str()) {
            return msg(409, "data source with the same uid already exists");
        }
    }
    if g.datasources.is_empty() {
        b["isDefault"] = json!(true);
    }
    let id = g.id();
    let mut dto = dto_from(&b, id, 1);
    let secure: BTreeMap<String, String> = b["secureJsonData"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    dto["secureJsonFields"] = secure_fields(&secure);
    g.datasources.push(Datasource {
        dto: dto.clone(),
        secure,
    });
    reply(
        200,
        json!({"datasource": dto, "id": id, "message": "Datasource added", "name": name}),
    )
}

fn update_ds(g: &mut Inner, uid: &str, body: &Value) -> (u16, Value) {
    for k in ["name", "type", "access"] {
        if body[k].as_str().unwrap_or("").is_empty() {
            return msg(400, "bad request data");
        }
    }
    if !url_ok(body["url"].as_str().unwrap_or("")) {
        return msg(400, "Validation error, invalid URL");
    }
    let Some(idx) = g.datasources.iter().position(|d| d.dto["uid"] == uid) else {
        return msg(404, "Data source not found");
    };
    if g.datasources[idx].dto["readOnly"] == true {
        return msg(403, "Cannot update read-only data source");
    }
    let name = body["name"].as_str().unwrap_or("");
    if g.datasources
        .iter()
        .enumerate()
        .any(|(i, d)| i != idx && d.dto["name"] == name)
    {
        return msg(
            409,
            "Failed to update datasource: data source with the same name already exists",
        );
    }
    let stored_version = g.datasources[idx].dto["version"].as_i64().unwrap_or(0);
    let sent = body["version"].as_i64().unwrap_or(0);
    if sent != 0 && stored_version > sent {
        return msg(
            409,
            "Datasource has already been updated by someone else. Please reload and try again",
        );
    }
    let new_version = if sent != 0 {
        sent + 1
    } else {
        stored_version + 1
    };
    let id = g.datasources[idx].dto["id"].as_i64().unwrap_or(0);
    let mut b = body.clone();
    if b["uid"].as_str().unwrap_or("").is_empty() {
        b["uid"] = json!(uid);
    }
    let mut dto = dto_from(&b, id, new_version);
    dto["isDefault"] = g.datasources[idx].dto["isDefault"].clone();
    if body.get("isDefault").is_some() {
        dto["isDefault"] = body["isDefault"].clone();
    }
    // §2.6: stored secrets survive unless overwritten.
    let mut secure = std::mem::take(&mut g.datasources[idx].secure);
    if let Some(o) = body["secureJsonData"].as_object() {
        for (k, v) in o {
            secure.insert(k.clone(), v.as_str().unwrap_or("").to_owned());
        }
    }
    dto["secureJsonFields"] = secure_fields(&secure);
    g.datasources[idx] = Datasource {
        dto: dto.clone(),
        secure,
    };
    reply(
        200,
        json!({"datasource": dto, "id": id, "message": "Datasource updated", "name": name}),
    )
}

fn delete_ds(g: &mut Inner, uid: &str) -> (u16, Value) {
    let Some(idx) = g.datasources.iter().position(|d| d.dto["uid"] == uid) else {
        return msg(404, "Data source not found");
    };
    if g.datasources[idx].dto["readOnly"] == true {
        return msg(403, "Cannot delete read-only data source");
    }
    let d = g.datasources.remove(idx);
    reply(
        200,
        json!({"id": d.dto["id"], "message": "Data source deleted"}),
    )
}

/// §2.8: Grafana runs the instant query `1+1` through the datasource. So does the fake, against
/// the datasource's real URL, so a health answer here means the URL answers Prometheus' API.
/// How Grafana's HTTP client reaches a datasource: its URL, basic auth, CA, and client
/// certificate as stored (pkg/services/datasources/service/datasource.go, dsTLSOptions), for the
/// health check and the datasource proxy alike.
struct DsClient {
    client: reqwest::Client,
    url: String,
    basic: Option<(String, Option<String>)>,
}

async fn ds_client(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    uid: &str,
) -> Result<DsClient, (u16, Value)> {
    let target = {
        let g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let role = match authenticate(&g, headers) {
            Ok(r) => r,
            Err(a) => return Err(a),
        };
        if let Some(d) = need(role, "datasources:query") {
            return Err(d);
        }
        if !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(msg(400, "UID is invalid"));
        }
        match g.datasources.iter().find(|d| d.dto["uid"] == uid) {
            Some(d) => (
                d.dto["url"].as_str().unwrap_or("").to_owned(),
                d.dto["basicAuth"] == true,
                d.dto["basicAuthUser"].as_str().unwrap_or("").to_owned(),
                d.secure.get("basicAuthPassword").cloned(),
                // Grafana's HTTP client settings: a custom CA only with tlsAuthWithCACert.
                (d.dto["jsonData"]["tlsAuthWithCACert"] == true)
                    .then(|| d.secure.get("tlsCACert").cloned())
                    .flatten(),
                d.dto["jsonData"]["tlsSkipVerify"] == true,
                // A client certificate only with tlsAuth, cert and key from secureJsonData
                // (pkg/services/datasources/service/datasource.go, dsTLSOptions).
                (d.dto["jsonData"]["tlsAuth"] == true)
                    .then(|| {
                        Some(format!(
                            "{}\n{}",
                            d.secure.get("tlsClientCert")?.trim_end(),
                            d.secure.get("tlsClientKey")?
                        ))
                    })
                    .flatten(),
            ),
            None => return Err(msg(500, "Unable to load datasource metadata")),
        }
    };
    let (url, basic, user, password, ca, skip_verify, identity) = target;
    let client = if ca.is_some() || skip_verify || identity.is_some() {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .tls_danger_accept_invalid_certs(skip_verify);
        if let Some(pem) = &identity {
            match reqwest::Identity::from_pem(pem.as_bytes()) {
                Ok(id) => b = b.identity(id),
                Err(e) => {
                    return Err(reply(
                        400,
                        json!({"message": format!("failed to parse the TLS client certificate: {e} - There was an error returned querying the Prometheus API."), "status": "ERROR"}),
                    ))
                }
            }
        }
        if let Some(pem) = &ca {
            match reqwest::Certificate::from_pem(pem.as_bytes()) {
                Ok(c) => b = b.add_root_certificate(c),
                Err(e) => {
                    return Err(reply(
                        400,
                        json!({"message": format!("failed to parse tlsCACert: {e} - There was an error returned querying the Prometheus API."), "status": "ERROR"}),
                    ))
                }
            }
        }
        match b.build() {
            Ok(c) => c,
            Err(e) => return Err(msg(500, &format!("fake: {e}"))),
        }
    } else {
        shared.http.clone()
    };
    Ok(DsClient {
        client,
        url,
        basic: basic.then_some((user, password)),
    })
}

async fn health(shared: &Arc<Shared>, headers: &HeaderMap, uid: &str) -> (u16, Value) {
    let DsClient { client, url, basic } = match ds_client(shared, headers, uid).await {
        Ok(c) => c,
        Err(a) => return a,
    };
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let mut req = client
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=1%2B1");
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, password);
    }
    let problem = match req.send().await {
        Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
            Ok(v) if v["status"] == "success" => {
                return reply(
                    200,
                    json!({
                        "details": {"application": "Prometheus", "features": {"rulerApiEnabled": false}},
                        "message": "Successfully queried the Prometheus API.",
                        "status": "OK",
                    }),
                )
            }
            Ok(v) => format!("unexpected answer {v}"),
            Err(e) => format!("error reading Prometheus' answer: {e}"),
        },
        Ok(resp) => format!("bad_response: {}", resp.status()),
        Err(e) => format!("Post \"{endpoint}\": {e}"),
    };
    reply(
        400,
        json!({
            "message": format!("{problem} - There was an error returned querying the Prometheus API."),
            "status": "ERROR",
        }),
    )
}

/// `GET /api/datasources/proxy/uid/{uid}/{route}` (pkg/api/dataproxy.go
/// `ProxyDataSourceRequestWithUID`, needing datasources:query): Grafana forwards the request to
/// the datasource's URL with its own client settings and passes the answer back as it came; an
/// upstream it cannot reach is a 502 (pkg/api/pluginproxy/ds_proxy.go, the reverse proxy's
/// error handler).
async fn proxy(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    uid: &str,
    route: &str,
    query: &str,
) -> (u16, Value) {
    let DsClient { client, url, basic } = match ds_client(shared, headers, uid).await {
        Ok(c) => c,
        Err(a) => return a,
    };
    let mut target = format!("{}/{route}", url.trim_end_matches('/'));
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    let mut req = client.get(&target);
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, password);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.json::<Value>().await {
                Ok(v) => (status, v),
                Err(e) => msg(502, &format!("fake: the upstream answer is not JSON: {e}")),
            }
        }
        Err(_) => msg(502, "Bad Gateway"),
    }
}

// ---- folders (§4.1)

fn create_folder(g: &mut Inner, body: &Value) -> (u16, Value) {
    let title = body["title"].as_str().unwrap_or("");
    if title.is_empty() {
        return msg(400, "folder title cannot be empty");
    }
    let mut uid = body["uid"].as_str().unwrap_or("").to_owned();
    if uid.len() > 40 {
        return msg(400, "uid too long, max 40 characters");
    }
    if !valid_uid(&uid) {
        return msg(400, "uid contains illegal characters");
    }
    if uid.is_empty() {
        uid = format!("f{:08x}", g.next_id + 1);
    }
    if g.folders.contains_key(&uid) {
        // UNCONFIRMED for 11.3 (§7.4): the fake answers 409.
        return msg(409, "a folder/dashboard with the same uid already exists");
    }
    let id = g.id();
    let f = json!({
        "id": id, "uid": uid, "title": title,
        "url": format!("/dashboards/f/{uid}/{}", title.to_lowercase().replace(' ', "-")),
        "version": 1, "canSave": true, "canEdit": true, "canAdmin": true, "canDelete": true,
        "hasAcl": false,
    });
    g.folders.insert(uid, f.clone());
    reply(200, f)
}

fn delete_folder(g: &mut Inner, uid: &str, query: &str) -> (u16, Value) {
    let Some(f) = g.folders.get(uid).cloned() else {
        return reply(
            404,
            json!({"message": "folder not found", "status": "not-found"}),
        );
    };
    let has_rules = g
        .groups
        .iter()
        .any(|((folder, _), grp)| folder == uid && !grp.rules.is_empty());
    // Fake's choice (the contract is silent): a folder holding alert rules is only deleted with
    // forceDeleteRules=true, as Grafana's UI warns.
    if has_rules && !query.contains("forceDeleteRules=true") {
        return msg(400, "folder cannot be deleted: folder contains alert rules");
    }
    g.folders.remove(uid);
    g.groups.retain(|(folder, _), _| folder != uid);
    // Deleting a folder deletes the dashboards in it (Grafana's folder service deletes the
    // folder's children with it: pkg/services/folder/folderimpl/folder.go, Delete).
    g.dashboards.retain(|_, d| d["folderUid"] != uid);
    reply(
        200,
        json!({"id": f["id"], "message": format!("Folder {} deleted", f["title"].as_str().unwrap_or("")), "title": f["title"]}),
    )
}

// ---- alert-rule provisioning (§5)

fn rule_out(r: &StoredRule) -> Value {
    let mut v = r.rule.clone();
    if r.provenance.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.remove("provenance");
        }
    } else {
        v["provenance"] = json!(r.provenance);
    }
    v
}

/// A group GET carries no provenance: Grafana's `AlertRuleService.GetRuleGroup`
/// (pkg/services/ngalert/provisioning/alert_rules.go) builds the group without setting its
/// `Provenance`, and `ApiAlertRuleGroupFromAlertRuleGroup` (pkg/services/ngalert/api/compat.go)
/// stamps that empty value on every rule, where `omitempty` drops it. Only the single-rule GET
/// (§5.6) reports a rule's provenance.
/// §5.6: one rule with its provenance; a missing uid is 404 with an empty body.
fn get_rule(g: &Inner, uid: &str) -> (u16, Value) {
    g.groups
        .values()
        .flat_map(|grp| grp.rules.iter())
        .find(|r| r.rule["uid"] == uid)
        .map_or((EMPTY, Value::Null), |r| reply(200, rule_out(r)))
}

/// The rule-state API (`RuleResponse` in the spec; pkg/services/ngalert/api/prometheus/
/// api_prometheus.go): every group with its rules; a rule the scheduler has not reported on
/// has health "ok" and state "inactive" (RuleStatusMutatorGenerator says so on purpose).
/// In Grafana 11.3's shape: a group names its folder only by `file` (the folder's title for a
/// top-level folder) and neither a group nor a rule carries `folderUid` or a uid
/// (grafana-openapi-client-go `models/rule_group.go` and `models/alerting_rule.go` at 9d96c20,
/// generated from the spec four days before 11.3.0; `folderUid` first appears in April 2025).
fn rule_statuses(g: &Inner) -> (u16, Value) {
    let groups: Vec<Value> = g
        .groups
        .iter()
        .filter(|(_, grp)| !grp.rules.is_empty())
        .map(|((folder, name), grp)| {
            let title = g
                .folders
                .get(folder)
                .and_then(|f| f["title"].as_str())
                .unwrap_or(folder);
            json!({
                "name": name, "file": title, "interval": grp.interval,
                "rules": grp.rules.iter().map(|r| {
                    let uid = r.rule["uid"].as_str().unwrap_or("");
                    let (health, error) = g.rule_health.get(uid).cloned()
                        .unwrap_or_else(|| ("ok".into(), String::new()));
                    let mut v = json!({
                        "name": r.rule["title"],
                        "query": "", "health": health, "type": "alerting", "state": "inactive",
                        "annotations": r.rule["annotations"].clone(),
                        "labels": r.rule["labels"].clone(),
                        "activeAt": "0001-01-01T00:00:00Z",
                        "lastEvaluation": "0001-01-01T00:00:00Z",
                    });
                    if !error.is_empty() {
                        v["lastError"] = json!(error);
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    reply(
        200,
        json!({"status": "success", "data": {"groups": groups}}),
    )
}

/// `GET /api/v1/provisioning/contact-points`; a fresh Grafana has its default one, mailing
/// a placeholder (alertmanagerDefaultConfiguration, pkg/setting/setting_unified_alerting.go).
fn contact_points(g: &Inner) -> (u16, Value) {
    let points = g.contact_points.clone().unwrap_or_else(|| {
        vec![
            json!({"uid": "cdefault0email", "name": "grafana-default-email", "type": "email",
            "settings": {"addresses": "<example@email.com>"}, "disableResolveMessage": false}),
        ]
    });
    reply(200, Value::Array(points))
}

/// `POST /api/alertmanager/grafana/config/api/v1/receivers/test` as Grafana 11.3 answers it:
/// each integration's `uid` must be a stored one, whose secrets Grafana loads (`LoadSecureSettings`,
/// 400 "unknown receiver" otherwise); an e-mail integration fails with `ErrSmtpNotEnabled`
/// unless `[smtp]` is on (pkg/services/notifications/models.go); the answer is a
/// `TestReceiversResult` (pkg/services/ngalert/api/tooling/definitions/alertmanager.go), 200
/// when every integration sent and 207 when some did not (`statusForTestReceivers`,
/// pkg/services/ngalert/api/api_alertmanager.go: an SMTP or network error is neither invalid
/// configuration nor a timeout).
fn test_receivers(g: &mut Inner, body: &Value) -> (u16, Value) {
    let stored = match contact_points(g) {
        (_, Value::Array(p)) => p,
        _ => Vec::new(),
    };
    let mut receivers = Vec::new();
    let mut failed = 0;
    for r in body["receivers"].as_array().into_iter().flatten() {
        let mut configs = Vec::new();
        for c in r["grafana_managed_receiver_configs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let uid = c["uid"].as_str().unwrap_or_default();
            let Some(point) = stored.iter().find(|p| p["uid"] == uid) else {
                return reply(
                    400,
                    json!({"message": format!("unknown receiver: {uid}"), "error": "unknown receiver"}),
                );
            };
            let kind = point["type"].as_str().unwrap_or_default().to_owned();
            let error = match g.failing_integrations.get(uid) {
                Some(e) => Some(e.clone()),
                None if kind == "email" && !g.smtp => Some(
                    "SMTP not configured, check your grafana.ini config file's [smtp] section"
                        .to_owned(),
                ),
                None => None,
            };
            let name = r["name"].as_str().unwrap_or_default().to_owned();
            if error.is_none() {
                g.sent.push((name.clone(), kind));
            } else {
                failed += 1;
            }
            let mut result = json!({"name": name, "uid": uid,
                "status": if error.is_none() { "ok" } else { "failed" }});
            if let Some(e) = error {
                result["error"] = Value::String(e);
            }
            configs.push(result);
        }
        receivers.push(json!({"name": r["name"], "grafana_managed_receiver_configs": configs}));
    }
    reply(
        if failed == 0 { 200 } else { 207 },
        json!({"alert": body["alert"], "receivers": receivers,
               "notified_at": "2026-12-07T00:00:00Z"}),
    )
}

fn get_group(g: &Inner, folder: &str, group: &str) -> (u16, Value) {
    match g.groups.get(&(folder.to_owned(), group.to_owned())) {
        Some(grp) if !grp.rules.is_empty() => reply(
            200,
            json!({
                "title": group, "folderUid": folder, "interval": grp.interval,
                "rules": grp.rules.iter().map(|r| {
                    let mut v = rule_out(r);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("provenance");
                    }
                    v
                }).collect::<Vec<_>>(),
            }),
        ),
        _ => errutil(404, "alerting.alert-rule.notFound", "Not found"),
    }
}

/// §5.2: group writes allow same→same, none→anything, api→none.
fn provenance_change_ok(stored: &str, incoming: &str) -> bool {
    stored == incoming || stored.is_empty() || (stored == "api" && incoming.is_empty())
}

fn put_group(g: &mut Inner, folder: &str, group: &str, body: &Value, prov: &str) -> (u16, Value) {
    let interval = body["interval"].as_i64().unwrap_or(0);
    if interval <= 0 || interval % 10 != 0 {
        return msg(
            400,
            &format!("invalid alert rule: interval ({interval}s) should be non-zero and divided exactly by scheduler interval: 10"),
        );
    }
    if !g.folders.contains_key(folder) {
        // 11.x behaviour with a missing folder is UNCONFIRMED (§5.9); the fake answers 400.
        return msg(400, "invalid alert rule: folder does not exist");
    }
    let key = (folder.to_owned(), group.to_owned());
    let Some(rules) = body["rules"].as_array() else {
        // `rules` omitted: only the interval changes.
        g.groups.entry(key).or_default().interval = interval;
        return reply(200, body.clone());
    };
    let mut titles = std::collections::BTreeSet::new();
    for r in rules {
        let title = r["title"].as_str().unwrap_or("");
        if !titles.insert(title.to_owned()) {
            return msg(
                400,
                &format!("invalid alert rule: rule title {title:?} is not unique in the group"),
            );
        }
        // Titles are unique per folder, across groups.
        let clash = g.groups.iter().any(|((f, grp), st)| {
            f == folder && grp != group && st.rules.iter().any(|s| s.rule["title"] == title)
        });
        if clash {
            return msg(400, &format!("conflicting alert rule found [title: '{title}', namespace_uid: '{folder}']: a conflicting alert rule is found: rule title under the same organisation and folder should be unique"));
        }
        let uid = r["uid"].as_str().unwrap_or("");
        if !uid.is_empty() {
            let elsewhere = g.groups.iter().any(|(k, st)| {
                *k != (folder.to_owned(), group.to_owned())
                    && st.rules.iter().any(|s| s.rule["uid"] == uid)
            });
            if elsewhere {
                return errutil(409, "alerting.alert-rule.conflict", &format!("alert rule [rule_uid: '{uid}'] conflicts with existing: rule UID under the same organisation should be unique"));
            }
        }
        for q in r["data"].as_array().into_iter().flatten() {
            let ds = q["datasourceUid"].as_str().unwrap_or("");
            if ds != "__expr__" && !g.datasources.iter().any(|d| d.dto["uid"] == ds) {
                // Wording UNCONFIRMED; the status is what matters: a rule needs its datasource.
                return msg(
                    400,
                    &format!(
                        "invalid alert rule: failed to build query '{}': data source not found",
                        q["refId"].as_str().unwrap_or("")
                    ),
                );
            }
        }
    }
    let stored = g.groups.get(&key);
    if let Some(st) = stored {
        for s in &st.rules {
            if !provenance_change_ok(&s.provenance, prov) {
                return errutil(
                    409,
                    "alerting.provenanceMismatch",
                    &format!(
                        "cannot update with provided provenance '{prov}', needs '{}'",
                        s.provenance
                    ),
                );
            }
        }
    }
    let mut next = Vec::new();
    for r in rules {
        let mut rule = r.clone();
        let uid = r["uid"].as_str().unwrap_or("").to_owned();
        let existing = stored.and_then(|st| {
            st.rules
                .iter()
                .find(|s| !uid.is_empty() && s.rule["uid"] == uid.as_str())
        });
        let id = match existing {
            Some(e) => e.rule["id"].as_i64().unwrap_or(0),
            None => g.next_id + 1 + next.len() as i64,
        };
        if uid.is_empty() {
            rule["uid"] = json!(format!("r{id:012x}"));
        }
        // Each rule is forced into the group (syncGroupRuleFields).
        rule["folderUID"] = json!(folder);
        rule["ruleGroup"] = json!(group);
        rule["orgID"] = json!(1);
        rule["id"] = json!(id);
        rule["updated"] = json!("2024-01-01T00:00:00Z");
        next.push(StoredRule {
            rule,
            provenance: prov.to_owned(),
        });
    }
    g.next_id += next.len() as i64;
    g.groups.insert(
        key,
        GroupState {
            interval,
            rules: next,
        },
    );
    // 200 echoes the request (§5.9): generated uids are not in it.
    let mut echo = body.clone();
    echo["title"] = json!(group);
    echo["folderUid"] = json!(folder);
    reply(200, echo)
}

fn delete_group(g: &mut Inner, folder: &str, group: &str, prov: &str) -> (u16, Value) {
    let key = (folder.to_owned(), group.to_owned());
    let Some(st) = g.groups.get(&key) else {
        return errutil(404, "alerting.alert-rule.notFound", "Not found");
    };
    for s in &st.rules {
        if !provenance_change_ok(&s.provenance, prov) {
            return errutil(
                409,
                "alerting.provenanceMismatch",
                &format!(
                    "cannot delete with provided provenance '{prov}', needs '{}'",
                    s.provenance
                ),
            );
        }
    }
    g.groups.remove(&key);
    (204, Value::Null)
}

// ---- service accounts (§3)

fn query_param(query: &str, key: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://fake/?{query}")).ok()?;
    let found = url.query_pairs().find(|(k, _)| k == key);
    found.map(|(_, v)| v.into_owned())
}

/// §4.2 `GET /api/search`: dashboards (`dash-db`) filtered by `folderUIDs` and `type`.
fn search(g: &Inner, query: &str) -> (u16, Value) {
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let folders: Vec<&str> = params
        .iter()
        .filter(|(k, _)| *k == "folderUIDs")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    let kind = params.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    if kind.is_some_and(|t| t != "dash-db") {
        return reply(200, json!([]));
    }
    let hits: Vec<Value> = g
        .dashboards
        .values()
        .filter(|d| {
            folders.is_empty() || folders.iter().any(|f| d["folderUid"].as_str() == Some(f))
        })
        .enumerate()
        .map(|(i, d)| {
            json!({"id": 100 + i, "uid": d["uid"], "title": d["title"], "type": "dash-db",
                   "uri": format!("db/{}", d["uid"].as_str().unwrap_or("")),
                   "url": format!("/d/{}", d["uid"].as_str().unwrap_or("")),
                   "slug": "", "tags": [], "isStarred": false, "orgId": 1,
                   "folderUid": d["folderUid"]})
        })
        .collect();
    reply(200, Value::Array(hits))
}

fn search_sa(g: &Inner, query: &str) -> (u16, Value) {
    let q = query_param(query, "query").unwrap_or_default();
    let hits: Vec<Value> = g
        .service_accounts
        .iter()
        .filter(|s| s.dto["name"].as_str().unwrap_or("").contains(&q))
        .map(|s| s.dto.clone())
        .collect();
    reply(
        200,
        json!({"totalCount": hits.len(), "serviceAccounts": hits, "page": 1, "perPage": 1000}),
    )
}

fn create_sa(g: &mut Inner, caller: Role, body: &Value) -> (u16, Value) {
    let name = body["name"].as_str().unwrap_or("");
    if name.is_empty() {
        return msg(400, "Bad request data");
    }
    let role_s = body["role"].as_str().unwrap_or("Viewer");
    let role = match role_s {
        "None" => None,
        r => match Role::parse(r) {
            Some(r) => Some(r),
            None => {
                return errutil(
                    400,
                    "serviceaccounts.ErrInvalidRoleSpecified",
                    "invalid role specified",
                )
            }
        },
    };
    if role.is_some_and(|r| r > caller) {
        return errutil(
            403,
            "serviceaccounts.ErrRoleForbidden",
            "can not assign a role higher than user's role",
        );
    }
    let slug = name.to_lowercase().replace(' ', "-");
    if g.service_accounts
        .iter()
        .any(|s| s.dto["name"] == name || s.dto["login"] == format!("sa-1-{slug}").as_str())
    {
        // 400, not 409 (§3.1).
        return errutil(
            400,
            "serviceaccounts.ErrAlreadyExists",
            "service account already exists",
        );
    }
    let id = g.id();
    let dto = json!({
        "id": id, "uid": format!("sa{id:08x}"), "name": name, "login": format!("sa-1-{slug}"),
        "orgId": 1, "isDisabled": body["isDisabled"].as_bool().unwrap_or(false),
        "role": role_s, "tokens": 0, "avatarUrl": "/avatar/fake",
    });
    g.service_accounts.push(ServiceAccount {
        dto: dto.clone(),
        token_names: Vec::new(),
    });
    reply(201, dto)
}

fn create_token(g: &mut Inner, id: &str, body: &Value) -> (u16, Value) {
    let Ok(id) = id.parse::<i64>() else {
        return msg(400, "Service Account ID is invalid");
    };
    let name = body["name"].as_str().unwrap_or("").to_owned();
    if name.is_empty() {
        return msg(400, "Bad request data");
    }
    if g.service_accounts
        .iter()
        .any(|s| s.token_names.contains(&name))
    {
        // Unique per org; 400 although the spec lists 409 (§3.2).
        return errutil(
            400,
            "serviceaccounts.ErrTokenAlreadyExists",
            "service account token with given name already exists in the organization",
        );
    }
    let token_id = g.id();
    let Some(sa) = g.service_accounts.iter_mut().find(|s| s.dto["id"] == id) else {
        return errutil(
            404,
            "serviceaccounts.ErrNotFound",
            "service account not found",
        );
    };
    sa.token_names.push(name.clone());
    sa.dto["tokens"] = json!(sa.token_names.len());
    let role = sa.dto["role"].as_str().and_then(Role::parse);
    let key = format!(
        "glsa_fake{token_id:024x}_{:08x}",
        (token_id as u32).wrapping_mul(2654435761)
    );
    if let Some(r) = role {
        g.tokens.insert(key.clone(), r);
    }
    reply(200, json!({"id": token_id, "name": name, "key": key}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validator_catches_what_grafana_would_choke_on() {
        let Ok(spec) = Spec::load() else {
            if std::env::var("CMM_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("spec missing at {}", spec_path().display());
            }
            crate::skip(
                module_path!(),
                &format!("spec missing at {}", spec_path().display()),
            );
            return;
        };
        let group = spec
            .body_schema(
                "/v1/provisioning/folder/{FolderUID}/rule-groups/{Group}",
                "put",
            )
            .unwrap();
        let rule = json!({"title": "T", "folderUID": "f", "ruleGroup": "g", "orgID": 1,
            "condition": "C", "data": [{"refId": "A", "datasourceUid": "x",
            "relativeTimeRange": {"from": 600, "to": 0}, "model": {"expr": "up"}}],
            "noDataState": "OK", "execErrState": "Error", "for": "5m"});
        assert!(spec
            .validate(group, &json!({"interval": 60, "rules": [rule.clone()]}))
            .is_empty());
        let mut bad = rule.clone();
        bad["noDataState"] = json!("Maybe");
        bad.as_object_mut().unwrap().remove("for");
        bad["folderUid"] = json!("f");
        bad["uid"] = json!("has space");
        bad["data"][0]["relativeTimeRange"]["from"] = json!("10m");
        let v = spec
            .validate(group, &json!({"interval": 60, "rules": [bad]}))
            .join("\n");
        for want in [
            "\"Maybe\" is not one of",
            "required property \"for\"",
            "\"folderUid\" is not in the spec",
            "does not match",
            "expected integer",
        ] {
            assert!(v.contains(want), "missing {want:?} in:\n{v}");
        }
        let ds = spec.body_schema("/datasources", "post").unwrap();
        assert!(spec
            .validate(
                ds,
                &json!({"name": "a", "type": "prometheus", "access": "proxy",
            "jsonData": {"anything": 1}, "secureJsonData": {"basicAuthPassword": "x"}})
            )
            .is_empty());
        assert!(!spec
            .validate(ds, &json!({"secureJsonData": {"p": 1}}))
            .is_empty());
    }

    #[test]
    fn the_fakes_own_answers_follow_the_spec() {
        let Ok(spec) = Spec::load() else {
            crate::skip(
                module_path!(),
                &format!("spec missing at {}", spec_path().display()),
            );
            return;
        };
        let mut g = Inner::default();
        let (status, answer) = add_ds(
            &mut g,
            &json!({"name": "a", "uid": "cmm-a", "type": "prometheus", "access": "proxy"}),
        );
        let schema = spec
            .response_schema("/datasources", "post", status)
            .unwrap();
        assert!(spec.validate(schema, &answer).is_empty());
        let schema = spec
            .response_schema("/datasources/name/{name}", "get", 200)
            .unwrap();
        let (_, dto) = get_ds(&g, |d| d["name"] == "a");
        assert!(spec.validate(schema, &dto).is_empty());
        let mut wrong = dto.clone();
        wrong["version"] = json!("1");
        assert!(!spec.validate(schema, &wrong).is_empty());
        let (status, sa) = create_sa(
            &mut g,
            Role::Admin,
            &json!({"name": "cmm", "role": "Admin"}),
        );
        let schema = spec
            .response_schema("/serviceaccounts", "post", status)
            .unwrap();
        assert!(spec.validate(schema, &sa).is_empty(), "{sa}");
        let (status, tok) = create_token(&mut g, "2", &json!({"name": "t"}));
        let schema = spec
            .response_schema("/serviceaccounts/{serviceAccountId}/tokens", "post", status)
            .unwrap();
        assert!(spec.validate(schema, &tok).is_empty(), "{tok}");
        let (status, f) = create_folder(&mut g, &json!({"uid": "f", "title": "F"}));
        let schema = spec.response_schema("/folders", "post", status).unwrap();
        assert!(spec.validate(schema, &f).is_empty(), "{f}");
    }

    #[test]
    fn char_classes() {
        assert_eq!(
            char_class_match("^[a-zA-Z0-9-_]+$", "cmm-kr_mum9"),
            Some(true)
        );
        assert_eq!(char_class_match("^[a-zA-Z0-9-_]+$", "a.b"), Some(false));
        assert_eq!(char_class_match("^[a-zA-Z0-9-_]+$", ""), Some(false));
        assert_eq!(char_class_match("^[a-zA-Z0-9\\-\\_]*$", ""), Some(true));
        assert_eq!(char_class_match("^a+b$", "x"), None);
        assert_eq!(
            b64decode("YWRtaW46YWRtaW4=").as_deref(),
            Some("admin:admin")
        );
    }
}
