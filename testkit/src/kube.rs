//! A fake Kubernetes API server on 127.0.0.1 (plain HTTP), for kube-rs and helm to talk to as to
//! a real one. It keeps objects as JSON and follows the API conventions the agent relies on:
//! real paths (`/api/v1/...`, `/apis/<group>/<version>/...`), verbs, status codes, `Status`
//! error bodies, finalizers holding a deleted object in Terminating, merge patches, label
//! selectors, metadata-only lists, and the two review APIs (SelfSubjectAccessReview,
//! SelfSubjectReview). It records every request so a test can prove what was *not* sent.
//!
//! It is a fake, not a conformance-tested server: no watch, no admission, and of the controllers
//! only the PVC-protection one, running beside the API as in a cluster (it drops the finalizer of
//! a Terminating claim once no scheduled pod lists it), because fix-storage depends on it.
//! Updates (PUT) follow optimistic concurrency on `resourceVersion`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

impl Recorded {
    /// A request that would change the cluster. Access/identity reviews are POSTs but create
    /// nothing (the API server does not store them), so they do not count.
    pub fn is_write(&self) -> bool {
        let review = self.path.ends_with("/selfsubjectaccessreviews")
            || self.path.ends_with("/selfsubjectrulesreviews")
            || self.path.ends_with("/selfsubjectreviews");
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") && !review
    }
}

/// A permission the fake's user lacks: matches a SelfSubjectAccessReview's resourceAttributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

#[derive(Debug)]
struct State {
    /// Key: (collection path without name, e.g. `/api/v1/namespaces/monitor/secrets`, name).
    objects: BTreeMap<(String, String), Value>,
    requests: Vec<Recorded>,
    denied: Vec<Denied>,
    /// `Some`: the identity holds exactly these RBAC rules, cluster-wide (grant_only).
    granted: Option<Vec<Value>>,
    username: String,
    groups: Vec<String>,
    git_version: String,
    /// The last resourceVersion handed out; every write gets the next one.
    resource_version: u64,
    /// kube-controller-manager down (or lagging): the pvc-protection controller does nothing.
    controllers_paused: bool,
    /// TCP connections accepted: what each would cost in TLS handshakes on a real server.
    connections: usize,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeKube {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Start on an ephemeral port of 127.0.0.1. Needs a running tokio runtime.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            objects: BTreeMap::new(),
            requests: Vec::new(),
            denied: Vec::new(),
            granted: None,
            username: "kubernetes-admin".to_owned(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
            git_version: "v1.33.1".to_owned(),
            resource_version: 100,
            controllers_paused: false,
            connections: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback({
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(&state, method, uri, headers, body) }
            }
        });
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                use axum::serve::ListenerExt;
                let counted = listener.tap_io({
                    let state = state.clone();
                    move |_| state.lock().unwrap().connections += 1
                });
                // The pvc-protection controller runs beside the API, as in a real cluster.
                let controller = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        pvc_protection(&mut state.lock().unwrap());
                    }
                });
                let _ = axum::serve(counted, app).await;
                controller.abort();
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far (each one a TLS handshake on a real, HTTPS API server).
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// A kubeconfig whose context `name` points at this fake with a bearer token.
    pub fn kubeconfig(&self, context: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {context}\nclusters:\n- name: {context}\n  cluster:\n    server: {url}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}-user\nusers:\n- name: {context}-user\n  user:\n    token: fake-token-not-a-secret\n",
            url = self.url()
        )
    }

    /// Write [`Self::kubeconfig`] to `dir/kubeconfig` and return the path.
    pub fn write_kubeconfig(&self, dir: &Path, context: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig(context)).expect("write kubeconfig");
        path
    }

    /// Store an object; its path comes from apiVersion, kind, namespace and name.
    pub fn insert(&self, mut object: Value) -> &Self {
        let (collection, name) = collection_of(&object);
        let mut s = self.state.lock().unwrap();
        object["metadata"]["resourceVersion"] = json!(s.next_rv());
        s.objects.insert((collection, name), object);
        self
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(collection.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object stored under `collection` (e.g. `/api/v1/nodes`).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Make SelfSubjectAccessReviews for this verb on `group/resource` answer not allowed, and
    /// refuse the matching requests themselves with 403 Forbidden, as RBAC would.
    pub fn deny(&self, verb: &str, group: &str, resource: &str) -> &Self {
        self.state.lock().unwrap().denied.push(Denied {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
        });
        self
    }

    /// The identity holds exactly these RBAC rules (`{verbs, apiGroups, resources}`), bound
    /// cluster-wide as a ClusterRoleBinding binds a ClusterRole: the rules review lists them
    /// (complete), an access review and the request itself are allowed only when one matches.
    pub fn grant_only(&self, rules: Value) -> &Self {
        self.state.lock().unwrap().granted = Some(rules.as_array().cloned().unwrap_or_default());
        self
    }

    /// Stop (or restart) the fake's controllers, as when kube-controller-manager is down.
    pub fn pause_controllers(&self, paused: bool) -> &Self {
        self.state.lock().unwrap().controllers_paused = paused;
        self
    }

    /// Remove an object outright (as a kubelet finishing a pod's deletion would).
    pub fn remove(&self, collection: &str, name: &str) -> &Self {
        self.state
            .lock()
            .unwrap()
            .objects
            .remove(&(collection.to_owned(), name.to_owned()));
        self
    }

    /// The identity SelfSubjectReview reports.
    pub fn set_user(&self, username: &str, groups: &[&str]) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.username = username.to_owned();
        s.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// The gitVersion `/version` reports (e.g. `v1.30.4-eks-a737599`).
    pub fn set_version(&self, git_version: &str) -> &Self {
        self.state.lock().unwrap().git_version = git_version.to_owned();
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write())
            .collect()
    }
}

/// Collection path and name of an object, as the API server would serve it.
pub fn collection_of(object: &Value) -> (String, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = resource_of(kind);
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let collection = match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{resource}"),
        None => format!("{prefix}/{resource}"),
    };
    (collection, name)
}

/// The plural resource of the kinds the agent touches.
fn resource_of(kind: &str) -> String {
    match kind {
        "PersistentVolumeClaim" => "persistentvolumeclaims".into(),
        "PersistentVolume" => "persistentvolumes".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

fn kind_of(resource: &str) -> String {
    match resource {
        "persistentvolumeclaims" => "PersistentVolumeClaim".into(),
        "persistentvolumes" => "PersistentVolume".into(),
        "configmaps" => "ConfigMap".into(),
        "daemonsets" => "DaemonSet".into(),
        "statefulsets" => "StatefulSet".into(),
        "replicasets" => "ReplicaSet".into(),
        "serviceaccounts" => "ServiceAccount".into(),
        other => {
            let singular = other.strip_suffix('s').unwrap_or(other);
            let mut c = singular.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    }
}

/// A `Status` error body exactly as the API server sends it.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut s = state.lock().unwrap();
    s.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body_json.clone(),
    });

    if path == "/version" && method == Method::GET {
        return axum::Json(json!({
            "major": "1", "minor": "33", "gitVersion": s.git_version,
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
            "platform": "linux/amd64"
        }))
        .into_response();
    }
    if method == Method::POST && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        return access_review(&s, body_json);
    }
    if method == Method::POST && path == "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews" {
        return rules_review(&s, body_json);
    }
    if method == Method::POST && path == "/apis/authentication.k8s.io/v1/selfsubjectreviews" {
        return axum::Json(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": s.username, "groups": s.groups}}
        }))
        .into_response();
    }

    let Some(route) = Route::parse(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    // RBAC: a denied permission refuses the real request too, as the API server would.
    let verb = match (&method, &route.name) {
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::PUT, _) => "update",
        (&Method::DELETE, _) => "delete",
        _ => "",
    };
    let refused = s
        .denied
        .iter()
        .any(|d| d.verb == verb && d.resource == route.resource && d.group == route.group)
        || !s.allows(verb, &route.group, &route.resource);
    if refused {
        let scope = match &route.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        let message = format!(
            "{} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            route.resource, s.username, verb, route.resource, route.group
        );
        return status(StatusCode::FORBIDDEN, "Forbidden", &message);
    }
    match (method, &route.name) {
        (Method::GET, None) => list(&s, &route, &query, &headers),
        (Method::GET, Some(name)) => match s.objects.get(&(route.collection.clone(), name.clone()))
        {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => not_found(&route, name),
        },
        (Method::POST, None) => create(&mut s, &route, body_json),
        (Method::DELETE, Some(name)) => delete(&mut s, &route, name),
        (Method::PATCH, Some(name)) => patch(&mut s, &route, name, &headers, body_json),
        (Method::PUT, Some(name)) => update(&mut s, &route, name, body_json),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

struct Route {
    collection: String,
    /// API group; "" for the core group.
    group: String,
    resource: String,
    name: Option<String>,
    namespace: Option<String>,
}

impl Route {
    /// `/api/v1[/namespaces/NS]/RES[/NAME]` or `/apis/G/V[/namespaces/NS]/RES[/NAME]`.
    fn parse(path: &str) -> Option<Route> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let base = match *parts.first()? {
            "api" => 2,
            "apis" => 3,
            _ => return None,
        };
        if parts.len() <= base {
            return None;
        }
        let prefix = parts[..base].join("/");
        let group = if base == 3 {
            parts[1].to_owned()
        } else {
            String::new()
        };
        let rest = &parts[base..];
        let (namespace, rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some((*ns).to_owned()), tail),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            [r] => (*r, None),
            [r, n] => (*r, Some((*n).to_owned())),
            _ => return None,
        };
        let collection = match &namespace {
            Some(ns) => format!("/{prefix}/namespaces/{ns}/{resource}"),
            None => format!("/{prefix}/{resource}"),
        };
        Some(Route {
            collection,
            group,
            resource: resource.to_owned(),
            name,
            namespace,
        })
    }
}

fn not_found(route: &Route, name: &str) -> Response {
    let group_resource = route.resource.clone();
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{group_resource} \"{name}\" not found"),
    )
}

fn list(s: &State, route: &Route, query: &str, headers: &HeaderMap) -> Response {
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
        .map(percent_decode)
        .unwrap_or_default();
    let wanted: Vec<(String, String)> = selector
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim_end_matches('=').to_owned(), v.to_owned()))
        .collect();
    // A cluster-wide list of a namespaced resource (`/api/v1/pods`) spans every namespace.
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|((c, _), _)| {
            c == &route.collection
                || (route.namespace.is_none()
                    && c.ends_with(&format!("/{}", route.resource))
                    && c.contains("/namespaces/"))
        })
        .map(|(_, o)| o.clone())
        .filter(|o| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()))
        })
        .collect();
    let metadata_only = headers
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
    if metadata_only {
        let items: Vec<Value> = items
            .into_iter()
            .map(|o| {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": o["metadata"]})
            })
            .collect();
        return axum::Json(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
            "metadata": {"resourceVersion": "1"}, "items": items
        }))
        .into_response();
    }
    let api_version = route
        .collection
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/")
        .split('/')
        .take(if route.collection.starts_with("/apis/") {
            2
        } else {
            1
        })
        .collect::<Vec<_>>()
        .join("/");
    axum::Json(json!({
        "apiVersion": api_version,
        "kind": format!("{}List", kind_of(&route.resource)),
        "metadata": {"resourceVersion": "1"},
        "items": items
    }))
    .into_response()
}

fn create(s: &mut State, route: &Route, body: Option<Value>) -> Response {
    let Some(mut object) = body else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body of the request was in an unknown format",
        );
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name or generateName is required",
        );
    };
    let key = (route.collection.clone(), name.clone());
    if s.objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", route.resource),
        );
    }
    if let Some(ns) = &route.namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    object["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", s.objects.len()));
    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    object["metadata"]["resourceVersion"] = json!(s.next_rv());
    if route.resource == "namespaces" {
        object["status"] = json!({"phase": "Active"});
    }
    s.objects.insert(key, object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

fn delete(s: &mut State, route: &Route, name: &str) -> Response {
    let key = (route.collection.clone(), name.to_owned());
    let Some(mut object) = s.objects.get(&key).cloned() else {
        return not_found(route, name);
    };
    // A claim's kubernetes.io/pvc-protection finalizer is not dropped by the delete itself:
    // the controller does it later (see `pvc_protection`); deleting an object that is already
    // Terminating changes nothing and answers it as it is.
    let finalizers = object["metadata"]["finalizers"]
        .as_array()
        .map_or(0, Vec::len);
    if finalizers == 0 {
        s.objects.remove(&key);
        if route.resource == "pods" {
            statefulset_recreates(s, &key, &object);
        }
        return axum::Json(object).into_response();
    }
    if object["metadata"]["deletionTimestamp"].is_null() {
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    s.objects.insert(key, object.clone());
    axum::Json(object).into_response()
}

/// PUT: replace an object, with optimistic concurrency as the API server does it. A body whose
/// `metadata.resourceVersion` differs from the stored one is refused with 409 Conflict and the
/// message of `OptimisticLockErrorMsg` (k8s.io/apiserver/pkg/registry/generic/registry/store.go,
/// wrapped by `NewConflict` in k8s.io/apimachinery/pkg/api/errors/errors.go); a missing object
/// is 404 for the kinds the agent updates (their strategies do not allow create-on-update).
fn update(s: &mut State, route: &Route, name: &str, body: Option<Value>) -> Response {
    let Some(mut object) = body else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body of the request was in an unknown format",
        );
    };
    if object["metadata"]["name"].as_str() != Some(name) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
    }
    let key = (route.collection.clone(), name.to_owned());
    let Some(stored) = s.objects.get(&key).cloned() else {
        return not_found(route, name);
    };
    let sent = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let current = stored["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if !sent.is_empty() && sent != current {
        let group_resource = if route.group.is_empty() {
            route.resource.clone()
        } else {
            format!("{}.{}", route.resource, route.group)
        };
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {group_resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    for kept in ["uid", "creationTimestamp", "namespace"] {
        object["metadata"][kept] = stored["metadata"][kept].clone();
    }
    if route.resource == "deployments" {
        object["metadata"]["generation"] = stored["metadata"]["generation"].clone();
        deployment_changed(s, &stored, &mut object);
    }
    object["metadata"]["resourceVersion"] = json!(s.next_rv());
    s.objects.insert(key, object.clone());
    axum::Json(object).into_response()
}

/// A Deployment written: the API server bumps `metadata.generation` when its spec changed
/// (pkg/registry/apps/deployment/strategy.go, `PrepareForUpdate`), and the deployment
/// controller then rolls its pods and reports it in `status` (`observedGeneration`,
/// `updatedReplicas`, `availableReplicas`; pkg/controller/deployment/sync.go). The fake has no
/// pods behind a Deployment: its controller finishes a rollout at once, unless the controllers
/// are paused (a rollout that never finishes).
fn deployment_changed(s: &State, before: &Value, object: &mut Value) {
    if before["spec"] == object["spec"] {
        return;
    }
    let generation = before["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
    object["metadata"]["generation"] = json!(generation);
    if s.controllers_paused {
        return;
    }
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    object["status"] = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    });
}

/// A pod of a StatefulSet deleted: the StatefulSet controller makes it again under the same
/// name (pkg/controller/statefulset/stateful_set_control.go: a missing ordinal is created), and
/// the kubelet starts it. The fake does both at once — a new uid, creation and start time now,
/// Ready — unless the controllers are paused.
fn statefulset_recreates(s: &mut State, key: &(String, String), gone: &Value) {
    let owned = gone["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| o.iter().any(|r| r["kind"] == "StatefulSet"));
    if !owned || s.controllers_paused {
        return;
    }
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string();
    let mut pod = gone.clone();
    pod["metadata"]["uid"] = json!(format!("recreated-{}", s.resource_version + 1));
    pod["metadata"]["creationTimestamp"] = json!(now);
    pod["metadata"]["resourceVersion"] = json!(s.next_rv());
    pod["status"] = json!({"phase": "Running", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True"}]});
    s.objects.insert(key.clone(), pod);
}

/// The pvc-protection controller (pkg/controller/volume/pvcprotection/
/// pvc_protection_controller.go): a Terminating claim loses its `kubernetes.io/pvc-protection`
/// finalizer once no *scheduled* pod (`spec.nodeName` set) lists it among its volumes
/// (`podUsesPVC`); the claim then goes if no other finalizer holds it.
fn pvc_protection(s: &mut State) {
    if s.controllers_paused {
        return;
    }
    let claims: Vec<(String, String)> = s
        .objects
        .iter()
        .filter(|((c, _), o)| {
            c.ends_with("/persistentvolumeclaims") && !o["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in claims {
        let ns = key
            .0
            .trim_start_matches("/api/v1/namespaces/")
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        if claim_in_use(s, &ns, &key.1) {
            continue;
        }
        let Some(mut object) = s.objects.get(&key).cloned() else {
            continue;
        };
        remove_finalizer(&mut object, "kubernetes.io/pvc-protection");
        if object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            s.objects.remove(&key);
        } else {
            s.objects.insert(key, object);
        }
    }
}

fn claim_in_use(s: &State, ns: &str, claim: &str) -> bool {
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    s.objects
        .iter()
        .filter(|((c, _), _)| c == &pods)
        .filter(|(_, pod)| {
            pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        })
        .any(|(_, pod)| {
            pod["spec"]["volumes"].as_array().is_some_and(|vs| {
                vs.iter()
                    .any(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some(claim))
            })
        })
}

fn remove_finalizer(object: &mut Value, finalizer: &str) {
    if let Some(list) = object["metadata"]["finalizers"].as_array_mut() {
        list.retain(|f| f.as_str() != Some(finalizer));
    }
}

fn patch(
    s: &mut State,
    route: &Route,
    name: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default();
    let apply = content_type.starts_with("application/apply-patch+yaml");
    if !content_type.starts_with("application/merge-patch+json") && !apply {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the fake only supports merge patches and server-side apply, not {content_type:?}"
            ),
        );
    }
    let key = (route.collection.clone(), name.to_owned());
    // Server-side apply creates what is absent (patch.go: forceAllowCreate for ApplyPatchType).
    // On an existing object, the applied configuration's fields win (with force=true, conflicts
    // with other managers are taken over) and fields it does not name stay: for a CRD, whose
    // `spec.versions` is an atomic list (apiextensions/v1 types.go, +listType=atomic), that is
    // the merge below. Field ownership itself is not modelled.
    if apply && !s.objects.contains_key(&key) {
        let mut object = body.unwrap_or(Value::Null);
        object["metadata"]["resourceVersion"] = json!(s.next_rv());
        s.objects.insert(key, object.clone());
        return (StatusCode::CREATED, axum::Json(object)).into_response();
    }
    // A merge patch never creates: only server-side apply may (staging/src/k8s.io/apiserver/
    // pkg/endpoints/handlers/patch.go sets forceAllowCreate for ApplyPatchType alone). The
    // thanos registration relies on this 404 to say the central ConfigMap is missing.
    let Some(mut object) = s.objects.get(&key).cloned() else {
        return not_found(route, name);
    };
    let before = object.clone();
    merge_patch(&mut object, &body.unwrap_or(Value::Null));
    if route.resource == "deployments" {
        deployment_changed(s, &before, &mut object);
    }
    object["metadata"]["resourceVersion"] = json!(s.next_rv());
    let finalizers = object["metadata"]["finalizers"]
        .as_array()
        .map_or(0, Vec::len);
    // An object being deleted goes away once its last finalizer is cleared.
    if !object["metadata"]["deletionTimestamp"].is_null() && finalizers == 0 {
        s.objects.remove(&key);
    } else {
        s.objects.insert(key, object.clone());
    }
    axum::Json(object).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// SelfSubjectRulesReview: `spec.namespace` is required (k8s.io/api authorization/v1 types.go,
/// SelfSubjectRulesReviewSpec; the server's REST handler refuses a request without one, 400
/// here). With nothing denied the identity is a cluster admin, and RBAC lists cluster-admin's
/// one rule, `*` on everything (plugin/pkg/auth/authorizer/rbac `RulesFor`). The fake's
/// denials are a deny-list, which RBAC's allow-only rules cannot state: with any, it answers
/// as a server whose other authorizer cannot list rules does (a webhook: `incomplete`, an
/// evaluation error; apiserver plugin/pkg/authorizer/webhook `RulesFor`), listing no rule, so
/// each permission is asked alone. Rules are additive: one listed grants even when the list
/// is incomplete (SubjectRulesReviewStatus' doc in the same types.go).
fn rules_review(s: &State, body: Option<Value>) -> Response {
    let mut review = body.unwrap_or_else(|| json!({}));
    if review["spec"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "no namespace on request",
        );
    }
    review["status"] = if let Some(rules) = &s.granted {
        json!({"resourceRules": rules, "nonResourceRules": [], "incomplete": false})
    } else if s.denied.is_empty() {
        json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
               "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
               "incomplete": false})
    } else {
        json!({"resourceRules": [], "nonResourceRules": [], "incomplete": true,
               "evaluationError": "webhook authorizer does not support user rule resolution"})
    };
    (StatusCode::CREATED, axum::Json(review)).into_response()
}

fn access_review(s: &State, body: Option<Value>) -> Response {
    let Some(mut review) = body else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body of the request was in an unknown format",
        );
    };
    let attrs = &review["spec"]["resourceAttributes"];
    if attrs.is_null() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.resourceAttributes: Required value",
        );
    }
    let verb = attrs["verb"].as_str().unwrap_or_default();
    let group = attrs["group"].as_str().unwrap_or_default();
    let resource = attrs["resource"].as_str().unwrap_or_default();
    // A deny-list is no RBAC rule set: the identity holds no rule of `*` in all three, so a
    // review asking `*` is refused as RBAC refuses it.
    let wildcard = [verb, group, resource].contains(&"*");
    let denied = s
        .denied
        .iter()
        .any(|d| (d.verb == verb && d.group == group && d.resource == resource) || wildcard)
        || !s.allows(verb, group, resource);
    review["status"] = if denied {
        json!({"allowed": false, "reason": ""})
    } else {
        json!({"allowed": true, "reason": "fake: allowed"})
    };
    (StatusCode::CREATED, axum::Json(review)).into_response()
}

impl State {
    /// Whether the granted rules (if any) allow `verb` on `group/resource`, as RBAC matches a
    /// rule (kubernetes pkg/apis/rbac/v1/evaluation_helpers.go: VerbMatches, APIGroupMatches,
    /// ResourceMatches): a rule's `*` matches anything, a requested `*` only a rule's `*`.
    fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let Some(rules) = &self.granted else {
            return true;
        };
        let has = |rule: &Value, key: &str, want: &str| {
            rule[key]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x == "*" || x == want)
        };
        rules.iter().any(|r| {
            has(r, "verbs", verb) && has(r, "apiGroups", group) && has(r, "resources", resource)
        })
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_api_layout() {
        let r = Route::parse("/api/v1/namespaces/monitor/persistentvolumeclaims/data").unwrap();
        assert_eq!(
            r.collection,
            "/api/v1/namespaces/monitor/persistentvolumeclaims"
        );
        assert_eq!(r.name.as_deref(), Some("data"));
        let r = Route::parse("/apis/apps/v1/namespaces/monitor/daemonsets").unwrap();
        assert_eq!(r.resource, "daemonsets");
        assert!(r.name.is_none());
        let r = Route::parse("/api/v1/namespaces/monitor").unwrap();
        assert_eq!(r.collection, "/api/v1/namespaces");
        assert_eq!(r.name.as_deref(), Some("monitor"));
        assert!(Route::parse("/healthz").is_none());
    }

    #[test]
    fn merge_patch_null_removes_a_key() {
        let mut o = json!({"metadata": {"name": "pv", "finalizers": ["a"]}});
        merge_patch(&mut o, &json!({"metadata": {"finalizers": null}}));
        assert_eq!(o, json!({"metadata": {"name": "pv"}}));
    }

    #[test]
    fn label_selectors_are_percent_decoded() {
        assert_eq!(
            percent_decode("owner%3Dhelm%2Cname%3Dkr-mum"),
            "owner=helm,name=kr-mum"
        );
    }
}
