//! The real `cmm-agent` binary against the fake API server (cmm-testkit, 127.0.0.1): bad input
//! and its exit codes, preflight, dry run, idempotent re-runs, pending-release recovery, install
//! failures and fix-storage. Environment pinned: HOME and KUBECONFIG in a temp dir.
//!
//! helm is the real one where rendering matters (dry run); where the apply path is exercised a
//! recording shim stands in for helm (there is no cluster for a real `helm upgrade` here) and
//! the test asserts which helm commands the agent ran, in which order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use cmm_testkit::kube::FakeKube;
use serde_json::{json, Value};
use support::{chart as real_chart, helm as real_helm, stderr as err, stdout as out, Agent};

/// The chart as a repo reference: never fetched, since the helm shim renders nothing.
const REPO_CHART: &str = "https://charts.example#kube-prometheus-stack";

async fn run(r: Agent, args: &[&str]) -> (Agent, std::process::Output) {
    support::run_async(r, args).await
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A helm stand-in: logs every invocation, answers `version`, and for anything else does what
/// HELM_SHIM_<VERB> says (`ok`, or `fail`), defaulting to a failure that names the surprise.
fn helm_shim(dir: &Path, version: &str) -> PathBuf {
    let path = dir.join("helm");
    let log = dir.join("helm.log");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nenv > '{log}.env'\nfor a in \"$@\"; do case \"$a\" in */cmm-values-*) stat -c '%a %n' \"$a\" \"$(dirname \"$a\")\" >> '{log}.modes' ;; esac; done\necho \"$*\" >> '{log}'\ncase \"$1\" in\n  version) echo '{version}' ;;\n  upgrade) if [ \"$HELM_SHIM_UPGRADE\" = slow ]; then trap 'echo \"got TERM\" >> {log}; echo \"Error: UPGRADE FAILED: context canceled\" >&2; exit 1' TERM; sleep 60 & wait; exit 0; fi; [ \"$HELM_SHIM_UPGRADE\" = ok ] || {{ echo 'Error: UPGRADE FAILED: context deadline exceeded' >&2; exit 1; }} ;;\n  show|template) [ -n \"$HELM_SHIM_REAL\" ] && exec \"$HELM_SHIM_REAL\" \"$@\"; exit 0 ;;\n  rollback) [ \"$HELM_SHIM_ROLLBACK\" = ok ] || {{ echo 'unexpected rollback' >&2; exit 1; }} ;;\n  uninstall) [ \"$HELM_SHIM_UNINSTALL\" = ok ] || {{ echo 'unexpected uninstall' >&2; exit 1; }} ;;\n  *) echo \"unexpected helm $1\" >&2; exit 1 ;;\nesac\n",
            log = log.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// The environment the shim's last invocation saw, as `KEY=VALUE` lines.
fn helm_env(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("helm.log.env")).unwrap_or_default()
}

/// Wait (at most 30 s) until the helm stand-in in `dir` has been asked to upgrade.
async fn wait_for_helm_upgrade(dir: &Path) {
    let started = std::time::Instant::now();
    while !helm_log(dir).iter().any(|l| l.starts_with("upgrade")) {
        assert!(
            started.elapsed().as_secs() < 30,
            "helm upgrade never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The helm commands that act or ask the version, in order; its reads of the chart (`helm
/// template` for preflight's coexistence check, `helm show crds` under the lock) are left out.
fn helm_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("helm.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("show ") && !l.starts_with("template "))
        .map(str::to_owned)
        .collect()
}

fn fixture_node(name: &str) -> Value {
    let text = std::fs::read_to_string(
        support::workspace_root()
            .join("tests/fixtures/nodes")
            .join(name),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
           "status": {"phase": "Active"}})
}

fn release_secret(version: u32, status: &str, modified: i64, plan: Option<&str>) -> Value {
    let mut labels = json!({"name": "kr-mum", "owner": "helm", "status": status,
                            "version": version.to_string(), "modifiedAt": modified.to_string()});
    if let Some(p) = plan {
        labels["cmm-plan"] = json!(p);
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
           "metadata": {"name": format!("sh.helm.release.v1.kr-mum.v{version}"),
                        "namespace": "monitor", "labels": labels},
           "data": {"release": "SDRzSUFBQUFBQUFBLzZxdUJRUUFBUC8vbzB4dXRnQUFBQT09"}})
}

async fn fake_with(nodes: &[&str]) -> FakeKube {
    let fake = FakeKube::start().await;
    for n in nodes {
        fake.insert(fixture_node(n));
    }
    fake
}

/// One CMM CA for every test here (making a key pair per test would only cost time).
fn central_material() -> &'static cmm_testkit::pki::CentralMaterial {
    static M: std::sync::OnceLock<cmm_testkit::pki::CentralMaterial> = std::sync::OnceLock::new();
    M.get_or_init(cmm_testkit::pki::CentralMaterial::new)
}

/// A fake API server holding `nodes`, and an agent whose kubeconfig (CMM_KUBECONFIG) reaches it
/// through `context`. The central cluster is another fake (CMM_CENTRAL_KUBECONFIG, context
/// `central`) holding the CMM CA and Grafana's client certificate, as after
/// `bootstrap --role central` there.
async fn cluster(nodes: &[&str], context: &str) -> (FakeKube, Agent) {
    let fake = fake_with(nodes).await;
    let central = FakeKube::start().await;
    for s in central_material().secrets("monitor") {
        central.insert(s);
    }
    let r = Agent::new();
    let kc = fake.write_kubeconfig(r.home.path(), context);
    let central_dir = r.home.path().join("central");
    std::fs::create_dir_all(&central_dir).unwrap();
    let ckc = central.write_kubeconfig(&central_dir, "central");
    (
        fake,
        r.env("CMM_KUBECONFIG", kc)
            .env("CMM_CENTRAL_CONTEXT", "central")
            .env("CMM_CENTRAL_KUBECONFIG", ckc)
            .keep(central),
    )
}

/// The Secret an earlier run left: the cluster's certificates, from the central CA, for every
/// node address (what the agent asks of a kept certificate).
fn issued_before(fake: &FakeKube) -> Value {
    let nodes = fake.list("/api/v1/nodes");
    let mut sans = vec![cmm_pki::San::parse("cmm-prometheus").unwrap()];
    for n in &nodes {
        for a in n["status"]["addresses"].as_array().into_iter().flatten() {
            if let Ok(san) = cmm_pki::San::parse(a["address"].as_str().unwrap()) {
                sans.push(san);
            }
        }
    }
    central_material().cluster_secret("monitor", "kr-mum", &sans)
}

/// An agent for runs that stop before any cluster is reached: the central context only has to
/// be named.
fn agent() -> Agent {
    Agent::new().env("CMM_CENTRAL_CONTEXT", "central")
}

/// The StatefulSet prometheus-operator makes for CMM's Prometheus resource, with `ready` of
/// one replica ready (labels as the operator sets them: pkg/prometheus/server/statefulset.go).
fn operator_prometheus(ready: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "prometheus-cmm", "namespace": "monitor",
                     "labels": {"operator.prometheus.io/name": "cmm", "operator.prometheus.io/shard": "0",
                                "operator.prometheus.io/mode": "server", "app.kubernetes.io/managed-by": "prometheus-operator"}},
        "spec": {"replicas": 1, "serviceName": "prometheus-operated",
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "prometheus"}},
                              "spec": {"containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}]}}},
        "status": {"replicas": 1, "readyReplicas": ready, "availableReplicas": ready}})
}

/// [`cluster`] with the recording helm shim (a current helm) and the chart at [`REPO_CHART`].
async fn shimmed(nodes: &[&str], context: &str) -> (FakeKube, Agent) {
    let (fake, r) = cluster(nodes, context).await;
    fake.insert(operator_prometheus(1));
    let shim = helm_shim(r.home.path(), "v3.17.3");
    (fake, r.env("CMM_HELM", shim).env("CMM_CHART", REPO_CHART))
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/monitor/leases";

/// The writes the run made other than taking, renewing and releasing its run lock.
fn writes_besides_the_lock(fake: &FakeKube) -> Vec<cmm_testkit::kube::Recorded> {
    fake.writes()
        .into_iter()
        .filter(|w| !w.path.starts_with(LEASES))
        .collect()
}

/// The run wrote nothing but its lock, and gave the lock up at the end.
fn assert_only_the_lock_was_written(fake: &FakeKube) {
    let others = writes_besides_the_lock(fake);
    assert!(others.is_empty(), "{others:?}");
    let lease = fake
        .get(LEASES, "cmm-agent-kr-mum")
        .expect("the run took its lock");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the lock was not released: {lease}"
    );
}

/// The names of the failed preflight checks of a JSON report.
fn failed_checks(report: &Value) -> Vec<&str> {
    report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect()
}

// ---------------------------------------------------------------- bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cluster_name_is_refused_before_anything_is_contacted() {
    let (fake, r) = cluster(&["kind.json"], "kind-cmm").await;
    let r = r.env("CMM_HELM", "/nonexistent/helm");
    let (_r, o) = run(r, &["bootstrap", "--cluster", "Kr_Mum"]).await;
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("--cluster") && err(&o).contains("DNS-1123"),
        "{}",
        err(&o)
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_kubeconfig_and_unknown_context_name_the_fix() {
    let Some(helm) = real_helm() else { return };
    let r = agent().env("CMM_HELM", &helm);
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains(".kube/config") && err(&o).contains("--kubeconfig"),
        "{}",
        err(&o)
    );

    let fake = fake_with(&[]).await;
    let kc = fake.write_kubeconfig(r.home.path(), "kind-cmm");
    let r = r.env("KUBECONFIG", &kc);
    let (_r, o) = run(
        r,
        &["bootstrap", "--cluster", "kr-mum", "--context", "prod"],
    )
    .await;
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("\"prod\"") && err(&o).contains("kind-cmm"),
        "{}",
        err(&o)
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_exits_5() {
    let Some(helm) = real_helm() else { return };
    // A port nothing listens on: bind, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = agent();
    let kc = r.home.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n"),
    )
    .unwrap();
    let r = r
        .env("CMM_KUBECONFIG", &kc)
        .env("CMM_HELM", &helm)
        .env("CMM_CENTRAL_CONTEXT", "c");
    let (_r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 5, "{}", err(&o));
    assert!(
        err(&o).contains("unreachable") && err(&o).contains(&port.to_string()),
        "{}",
        err(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_missing_or_too_old_exits_3_and_chart_path_set_syntax_or_values_file_exit_2() {
    let (fake, r) = cluster(&["kind.json"], "kind-cmm").await;
    let old = helm_shim(r.home.path(), "v3.9.4");

    let r = r.env("CMM_HELM", "/nonexistent/helm");
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(err(&o).contains("CMM_HELM"), "{}", err(&o));

    let r = r.env("CMM_HELM", &old);
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(
        err(&o).contains("v3.9.4 is too old") && err(&o).contains("3.12"),
        "{}",
        err(&o)
    );

    // Bad input is refused by name (exit 2) even with this old helm: inputs are checked first.
    let mut r = r;
    for (flag, value, says) in [
        ("--chart", "/nonexistent/kps", &["helm pull"][..]),
        (
            "--chart",
            "--post-renderer=/tmp/evil",
            &["starts with '-'", "./NAME"],
        ),
        ("--timeout", "3h", &["--timeout", "outside 1s..=2h"]),
        (
            "--pending-grace",
            "1.5m",
            &["--pending-grace", "e.g. 500ms"],
        ),
        ("--set", "kubeStateMetrics.enabled", &["--set", "KEY=VALUE"]),
        (
            "--values",
            "/nonexistent/values.yaml",
            &["--values", "/nonexistent/values.yaml"],
        ),
    ] {
        let pair = format!("{flag}={value}");
        let (back, o) = run(r, &["bootstrap", "--cluster", "kr-mum", &pair]).await;
        r = back;
        assert_eq!(code(&o), 2, "{flag} {value}: {}", err(&o));
        for s in says {
            assert!(
                err(&o).contains(s),
                "{flag} {value}: {s} not in {}",
                err(&o)
            );
        }
    }
    assert!(
        fake.requests().is_empty(),
        "bad input must not reach the API"
    );
}

/// A values file or a kubeconfig that is not YAML is refused by its place (exit 2, nothing
/// asked of the cluster), and the error never quotes it: the YAML parser's own message shows
/// the lines around the fault, here a password and a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_yaml_is_named_by_line_and_its_secrets_never_show() {
    let Some(helm) = real_helm() else { return };
    let (fake, r) = cluster(&["kind.json"], "kind-cmm").await;
    let mut r = r.env("CMM_HELM", &helm);
    for (flag, text, place, secret) in [
        (
            "--values",
            "grafana:\n  adminPassword: hunter2-not-real\n  x: [\n",
            "is not YAML (at line 3, column",
            "hunter2",
        ),
        (
            "--kubeconfig",
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: sk-not-a-real-token\n    x: [\n",
            "is not YAML at line 7, column",
            "sk-not",
        ),
    ] {
        let file = r.home.path().join(format!("broken{flag}.yaml"));
        std::fs::write(&file, text).unwrap();
        let args = ["bootstrap", "--cluster", "kr-mum", flag, file.to_str().unwrap()];
        let (back, o) = run(r, &args).await;
        r = back;
        assert_eq!(code(&o), 2, "{flag}: {}", err(&o));
        assert!(err(&o).contains(place), "{flag}: {}", err(&o));
        assert!(
            !err(&o).contains(secret) && !out(&o).contains(secret),
            "{flag}: {}",
            err(&o)
        );
    }
    assert!(
        fake.requests().is_empty(),
        "bad input must not reach the API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_lists_merge_like_kubectl_and_the_token_never_shows() {
    let fake = fake_with(&[]).await;
    let r = Agent::new();
    // Two files in KUBECONFIG, one missing (skipped, as kubectl does); the context comes from
    // the second file, while the first names another current-context.
    let real = fake.write_kubeconfig(r.home.path(), "kr-mum");
    let other = r.home.path().join("other-config");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\nclusters:\n- name: elsewhere\n  cluster:\n    server: https://10.255.255.1:6443\ncontexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: e\nusers:\n- name: e\n  user:\n    token: other-token\n",
    )
    .unwrap();
    let list = format!(
        "{}:{}:{}",
        r.home.path().join("missing").display(),
        other.display(),
        real.display()
    );
    let r = r.env("KUBECONFIG", &list);
    let (_r, o) = run(
        r,
        &["--log-level", "debug", "fix-storage", "--context", "kr-mum"],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(fake.requests().iter().any(|q| q.path == "/version"));
    for text in [out(&o), err(&o)] {
        assert!(
            !text.contains("fake-token-not-a-secret"),
            "token leaked: {text}"
        );
    }
}

// ---------------------------------------------------------------- preflight

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rbac_stops_before_any_write_and_prints_the_seed_fix() {
    let (fake, r) = shimmed(&["eks.json"], "wai-eks").await;
    fake.deny(
        "create",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
    )
    .deny("create", "rbac.authorization.k8s.io", "clusterrolebindings")
    .set_user(
        "arn:aws:iam::111122223333:user/alice",
        &["system:authenticated"],
    )
    .set_version("v1.31.5-eks-5d632ec");
    let (r, o) = run(
        r,
        &["--output", "json", "bootstrap", "--cluster", "wai-eks"],
    )
    .await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    let failed = failed_checks(&report);
    assert!(
        failed.contains(
            &"rbac: create customresourcedefinitions.apiextensions.k8s.io (cluster-wide)"
        ),
        "{failed:?}"
    );
    assert!(err(&o).contains(
        "kubectl create clusterrolebinding cluster-admin-binding --clusterrole=cluster-admin --user=arn:aws:iam::111122223333:user/alice"
    ), "{}", err(&o));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    // helm was asked its version only: no install was attempted.
    assert_eq!(helm_log(r.home.path()), ["version --template {{.Version}}"]);
    assert!(fake
        .requests()
        .iter()
        .any(|q| q.path == "/apis/authentication.k8s.io/v1/selfsubjectreviews"));
}

/// Every entry of the access table, denied on its own: the run stops in preflight (exit 6),
/// names that permission, and sends no write; nothing reaches helm beyond its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_of_the_access_table_denied_alone_stops_before_any_write() {
    use cmm_installer::topology::Role;
    for (role, args) in [
        (Role::Cluster, &["bootstrap", "--cluster", "kr-mum"][..]),
        (
            Role::Central,
            &["bootstrap", "--cluster", "monitor", "--role", "central"][..],
        ),
    ] {
        let perms = cmm_installer::preflight::required_permissions(role, "monitor", false);
        assert!(perms.len() > 60, "{}", perms.len());
        for p in perms {
            let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
            fake.insert(namespace("monitor"));
            fake.deny(p.verb, p.group, p.resource);
            let (r, o) = run(r, args).await;
            let e = err(&o);
            assert_eq!(code(&o), 6, "{role:?} denied {}: {e}", p.describe());
            assert!(
                e.contains(&format!("rbac: {}", p.describe())),
                "{role:?} denied {}: not named in\n{e}",
                p.describe()
            );
            assert!(fake.writes().is_empty(), "{:?}", fake.writes());
            assert_eq!(helm_log(r.home.path()), ["version --template {{.Version}}"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_reads_become_preflight_findings_not_crashes() {
    let (fake, r) = shimmed(&["eks.json"], "wai-eks").await;
    fake.deny("list", "", "nodes")
        .deny("get", "", "namespaces")
        .set_user(
            "arn:aws:iam::111122223333:user/bob",
            &["system:authenticated"],
        )
        .set_version("v1.31.5-eks-5d632ec");
    let (_r, o) = run(
        r,
        &["--output", "json", "bootstrap", "--cluster", "wai-eks"],
    )
    .await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    // The provider is still recognised from /version, so the fix is the EKS one.
    assert_eq!(
        report["environment"]["kinds"],
        json!(["eks", "eks-control-plane-metrics"])
    );
    let failed = failed_checks(&report);
    assert!(
        failed.contains(&"rbac: list nodes (cluster-wide)"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"rbac: get namespaces (cluster-wide)"),
        "{failed:?}"
    );
    assert_eq!(report["actions"][0]["action"], "none");
    assert!(
        err(&o).contains("on EKS") && err(&o).contains("--user=arn:aws:iam::111122223333:user/bob"),
        "{}",
        err(&o)
    );
    // The forbidden namespace read was not attempted, and nothing was written.
    assert!(!fake
        .requests()
        .iter()
        .any(|q| q.path == "/api/v1/namespaces/monitor"));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_reads_are_checked_before_any_write() {
    // A user who may install the chart but not list volumes (read before the install) or
    // StatefulSets (read after it, for the readiness report).
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    fake.deny("list", "", "persistentvolumes")
        .deny("list", "apps", "statefulsets")
        .set_user("alice", &["system:authenticated"]);
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    let failed = failed_checks(&report);
    for missing in [
        "rbac: list persistentvolumes (cluster-wide)",
        "rbac: list statefulsets.apps in namespace monitor",
    ] {
        assert!(failed.contains(&missing), "{missing} not in {failed:?}");
    }
    assert!(err(&o).contains("--user=alice"), "{}", err(&o));
    assert_eq!(helm_log(r.home.path()), ["version --template {{.Version}}"]);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

// ---------------------------------------------------------------- dry run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_plans_and_renders_but_writes_nothing() {
    let (Some(helm), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let (fake, r) = cluster(&["docker-desktop-wsl2.json"], "docker-desktop").await;
    let r = r.env("CMM_HELM", &helm).env("CMM_CHART", &chart);
    let (_r, o) = run(
        r,
        &[
            "--output",
            "json",
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--dry-run",
            "--set",
            "prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka",
        ],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let r: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(r["cluster"], "kr-mum");
    assert_eq!(r["server_version"], "v1.33.1");
    assert_eq!(r["environment"]["kinds"], json!(["wsl2", "docker-desktop"]));
    assert!(r["environment"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["value"] == "Docker Desktop"));
    assert_eq!(r["fixes"][0]["id"], "wsl-root-mount");
    assert_eq!(
        r["fixes"][0]["values"]["prometheus-node-exporter"]["hostRootFsMount"]["enabled"],
        false
    );
    let args: Vec<&str> = r["helm"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let line = args.join(" ");
    assert!(line.starts_with("upgrade --install kr-mum "), "{line}");
    assert!(line.contains("--values values/each_cluster.yaml --values values/overlays/wsl.yaml --set prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka"), "{line}");
    assert!(line.contains("--kube-context docker-desktop"), "{line}");
    assert!(r["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    let actions: Vec<&str> = r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "create-namespace",
            "helm-upgrade-install",
            "report-workloads"
        ]
    );
    assert!(
        r["rendered"]["DaemonSet"].as_u64().unwrap() >= 1,
        "{}",
        r["rendered"]
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_doubles_as_a_check_and_exits_6_when_preflight_fails() {
    let (Some(helm), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let (fake, r) = cluster(&["kind.json"], "kind-cmm").await;
    fake.deny("create", "rbac.authorization.k8s.io", "clusterroles");
    let r = r.env("CMM_HELM", &helm).env("CMM_CHART", &chart);
    let (_r, o) = run(
        r,
        &[
            "--output",
            "json",
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(
        failed_checks(&report)
            .contains(&"rbac: create clusterroles.rbac.authorization.k8s.io (cluster-wide)"),
        "{report}"
    );
    // Still rendered, so the same run shows what would be installed once access is granted.
    assert!(
        report["rendered"]["DaemonSet"].as_u64().unwrap_or(0) >= 1,
        "{}",
        report["rendered"]
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

// ---------------------------------------------------------------- apply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_the_same_plan_changes_nothing() {
    let (Some(real), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let (fake, r) = cluster(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    // An earlier run issued the certificates before it ran helm.
    fake.insert(issued_before(&fake));
    fake.insert(operator_prometheus(1));
    let r = r.env("CMM_HELM", &real).env("CMM_CHART", &chart);
    // Learn the plan's digest from a dry run, then pretend it was deployed by an earlier run.
    let (r, o) = run(
        r,
        &[
            "--output",
            "json",
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let digest = serde_json::from_str::<Value>(&out(&o)).unwrap()["plan_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.insert(release_secret(1, "superseded", 1_700_000_000, None));
    fake.insert(release_secret(2, "deployed", 1_700_000_100, Some(&digest)));

    let shim = helm_shim(r.home.path(), "v3.17.3");
    let r = r.env("CMM_HELM", &shim);
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let rep: Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(
        rep["outcome"].as_str().unwrap().starts_with("unchanged"),
        "{}",
        rep["outcome"]
    );
    assert_eq!(
        helm_log(r.home.path()),
        ["version --template {{.Version}}"],
        "helm must not upgrade"
    );
    assert_only_the_lock_was_written(&fake);

    // A changed --set is a changed plan: now it upgrades.
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(
        r,
        &[
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--set",
            "prometheus.prometheusSpec.retention=30d",
        ],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let log = helm_log(r.home.path());
    assert!(
        log.iter()
            .any(|l| l.starts_with("upgrade --install kr-mum") && l.contains("--labels cmm-plan=")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upgrade_is_rolled_back_then_upgraded_and_the_namespace_created_only_when_missing(
) {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    // An earlier run issued the certificates before it ran helm.
    fake.insert(issued_before(&fake));
    fake.insert(release_secret(3, "superseded", 1_700_000_000, None));
    fake.insert(release_secret(4, "deployed", 1_700_000_100, None));
    fake.insert(release_secret(5, "pending-upgrade", 1_700_000_200, None));
    let r = r
        .env("HELM_SHIM_ROLLBACK", "ok")
        .env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(
        r,
        &["--log-level", "debug", "bootstrap", "--cluster", "kr-mum"],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let log = helm_log(r.home.path());
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[1].starts_with("rollback kr-mum 4 --namespace monitor --wait"),
        "{log:?}"
    );
    assert!(log[2].starts_with("upgrade --install kr-mum kube-prometheus-stack --repo https://charts.example --version 66.1.0"), "{log:?}");
    assert!(
        log[2].contains(&format!(
            "--kubeconfig {}",
            r.home.path().join("kubeconfig").display()
        )),
        "{log:?}"
    );
    // The namespace existed: the agent itself wrote nothing.
    assert_only_the_lock_was_written(&fake);
    // helm finds the credentials in the kubeconfig: the token is in no argv, log or output
    // (the debug log does show every helm command line).
    assert!(err(&o).contains("running helm"), "{}", err(&o));
    for text in [log.join("\n"), out(&o), err(&o)] {
        assert!(
            !text.contains("fake-token-not-a-secret"),
            "token leaked: {text}"
        );
    }
    // Progress went to stderr, step by step.
    assert!(
        err(&o).contains("recover: helm rollback to revision 4") && err(&o).contains("done ("),
        "{}",
        err(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_runs_pinned_to_the_agents_cluster_with_private_values_and_no_cmm_secrets() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let values = r.home.path().join("mine.yaml");
    std::fs::write(
        &values,
        "prometheus:\n  prometheusSpec:\n    retention: 7d\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&values, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let r = r
        .env("HELM_SHIM_UPGRADE", "ok")
        // Each would point helm elsewhere than the cluster the agent checked.
        .env("HELM_KUBEAPISERVER", "https://other-cluster.example:6443")
        .env("HELM_KUBETOKEN", "other-identity-token")
        .env("HELM_KUBEASUSER", "system:admin")
        .env("HELM_NAMESPACE", "kube-system")
        .env("HELM_DRIVER", "memory")
        .env("CMM_GRAFANA_TOKEN", "glsa_grafana_secret_value");
    let (r, o) = run(
        r,
        &[
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--values",
            values.to_str().unwrap(),
        ],
    )
    .await;
    let _ = code(&o);
    let env = helm_env(r.home.path());
    assert!(env.lines().any(|l| l == "HELM_DRIVER=secret"), "{env}");
    for gone in [
        "HELM_KUBEAPISERVER",
        "HELM_KUBETOKEN",
        "HELM_KUBEASUSER",
        "HELM_NAMESPACE",
        "CMM_",
        "glsa_grafana_secret_value",
    ] {
        assert!(!env.contains(gone), "{gone} reached helm:\n{env}");
    }
    // The user's 0600 file reached helm as a 0600 copy in a 0700 directory, gone afterwards.
    let modes = std::fs::read_to_string(r.home.path().join("helm.log.modes")).unwrap();
    let mut dirs = Vec::new();
    for line in modes.lines() {
        let (mode, path) = line.split_once(' ').unwrap();
        let expected = if path.contains("cmm-values-") && !path.ends_with(".yaml") {
            dirs.push(path.to_owned());
            "700"
        } else {
            "600"
        };
        assert_eq!(mode, expected, "{line}");
    }
    assert!(!dirs.is_empty(), "{modes}");
    for d in dirs {
        assert!(!Path::new(&d).exists(), "{d} left behind");
    }
}

fn lease(holder: &str, renewed_secs_ago: i64) -> Value {
    let renewed = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(renewed_secs_ago))
        .unwrap();
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "cmm-agent-kr-mum", "namespace": "monitor"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
                    "acquireTime": renewed.to_string(), "renewTime": renewed.to_string(),
                    "leaseTransitions": 3}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lock_of_another_run_stops_this_one_before_any_change() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    // Another host's run left the release pending and is still renewing its lock.
    fake.insert(release_secret(4, "deployed", 1_700_000_100, Some("aa")));
    fake.insert(release_secret(
        5,
        "pending-upgrade",
        1_700_000_200,
        Some("bb"),
    ));
    fake.insert(lease("admin-b/4242", 10));
    let r = r
        .env("HELM_SHIM_UPGRADE", "ok")
        .env("HELM_SHIM_ROLLBACK", "ok");
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 12, "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("admin-b/4242") && e.contains("expires in") && e.contains("nothing was changed"),
        "{e}"
    );
    // No rollback of the other run's helm, no upgrade, no write at all.
    assert_eq!(helm_log(r.home.path()), ["version --template {{.Version}}"]);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over_and_the_release_it_left_pending_recovered_at_once() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    // The run that crashed 2 minutes ago: its lock expired, its pending revision is young
    // (well inside --pending-grace) but it carries CMM's plan label.
    let young = jiff::Timestamp::now().as_second() - 120;
    fake.insert(release_secret(4, "deployed", 1_700_000_100, Some("aa")));
    fake.insert(release_secret(5, "pending-upgrade", young, Some("bb")));
    fake.insert(lease("admin-b/4242", 120));
    let r = r
        .env("HELM_SHIM_UPGRADE", "ok")
        .env("HELM_SHIM_ROLLBACK", "ok");
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let log = helm_log(r.home.path());
    assert!(log[1].starts_with("rollback kr-mum 4 "), "{log:?}");
    assert!(log[2].starts_with("upgrade --install kr-mum "), "{log:?}");
    assert!(
        err(&o).contains("took over an expired run lock"),
        "{}",
        err(&o)
    );
    let lease = fake.get(LEASES, "cmm-agent-kr-mum").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 4, "{lease}");
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_helm_releases_the_lock_removes_values_and_says_what_next() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let r = r.env("HELM_SHIM_UPGRADE", "slow");
    let home = r.home.path().to_owned();
    let child = r.spawn(&["bootstrap", "--cluster", "kr-mum"]);
    // Wait (bounded) until helm upgrade runs, then stop the agent as systemd would.
    wait_for_helm_upgrade(&home).await;
    let values_dirs: Vec<String> = std::fs::read_to_string(home.join("helm.log.modes"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_owned()))
        .collect();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(code(&o), 143, "{}", err(&o));
    let e = err(&o);
    // helm got the signal and ended on its own, within the grace.
    assert!(
        helm_log(&home).contains(&"got TERM".to_owned()),
        "{:?}",
        helm_log(&home)
    );
    assert!(
        e.contains("interrupted by SIGTERM") && e.contains("was sent SIGTERM and ended"),
        "{e}"
    );
    assert!(
        e.contains("state of the cluster: `helm upgrade --install kr-mum` was stopped")
            && e.contains("the next run: finds no live lock"),
        "{e}"
    );
    assert!(!values_dirs.is_empty());
    for p in values_dirs {
        assert!(!Path::new(&p).exists(), "{p} left behind");
    }
    let lease = fake.get(LEASES, "cmm-agent-kr-mum").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_helm_the_run_waits_for_the_prometheus_the_operator_makes() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    // helm --wait returned, but the operator has only just made the StatefulSet.
    fake.insert(operator_prometheus(0));
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    let fake = std::sync::Arc::new(fake);
    let later = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            fake.insert(operator_prometheus(1));
        })
    };
    let (_r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    later.await.unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("wait for the operator-made Prometheus")
            && e.contains("Prometheus StatefulSet 0/1 ready"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_the_operator_never_makes_fails_the_run_within_the_timeout() {
    let (fake, r) = cluster(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let shim = helm_shim(r.home.path(), "v3.17.3");
    let r = r
        .env("CMM_HELM", shim)
        .env("CMM_CHART", REPO_CHART)
        .env("HELM_SHIM_UPGRADE", "ok");
    let (_r, o) = run(r, &["bootstrap", "--cluster", "kr-mum", "--timeout", "2s"]).await;
    assert_eq!(code(&o), 7, "{}", err(&o));
    assert!(
        err(&o).contains("not ready within 2s (--timeout): the operator has not created the Prometheus StatefulSet yet"),
        "{}",
        err(&o)
    );
}

/// An agent killed outright (SIGKILL, the OOM killer) cannot forward anything; helm must still
/// not run on alone, or a later run could roll back a helm that is still working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_takes_helm_down_with_it() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let r = r.env("HELM_SHIM_UPGRADE", "slow");
    let home = r.home.path().to_owned();
    let mut child = r.spawn(&["bootstrap", "--cluster", "kr-mum"]);
    wait_for_helm_upgrade(&home).await;
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !helm_log(&home).contains(&"got TERM".to_owned()) {
        assert!(
            std::time::Instant::now() < deadline,
            "helm kept running after the agent was killed: {:?}",
            helm_log(&home)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// As PID 1 of its own PID namespace (a container's entrypoint), where the kernel drops signals
/// that have no handler: SIGTERM must still stop the run the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_sigterm_still_stops_the_run_cleanly() {
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        if std::env::var_os("CMM_REQUIRE_TOOLS").is_some() && nix_is_root() {
            panic!("unshare --pid failed as root: {probe:?}");
        }
        cmm_testkit::skip(
            module_path!(),
            "no PID namespaces here (unshare --pid needs root)",
        );
        return;
    }
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let r = r.env("HELM_SHIM_UPGRADE", "slow");
    let home = r.home.path().to_owned();
    let wrapper = r.spawn_wrapped(
        &["unshare", "--pid", "--fork", "--kill-child"],
        &["bootstrap", "--cluster", "kr-mum"],
    );
    wait_for_helm_upgrade(&home).await;
    // The agent is unshare's child: PID 1 inside, an ordinary pid outside.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", wrapper.id())).unwrap();
    let agent_pid = children
        .split_whitespace()
        .next()
        .expect("the agent runs")
        .to_owned();
    let status = std::fs::read_to_string(format!("/proc/{agent_pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "the agent is not PID 1 in its namespace:\n{status}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &agent_pid])
        .status()
        .unwrap();
    let o = tokio::task::spawn_blocking(move || wrapper.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(code(&o), 143, "{}", err(&o));
    assert!(helm_log(&home).contains(&"got TERM".to_owned()));
    let lease = fake.get(LEASES, "cmm-agent-kr-mum").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_deployed_pending_install_is_uninstalled_first() {
    let (fake, r) = shimmed(&["kind.json"], "kind-cmm").await;
    fake.insert(namespace("monitor"));
    // An earlier run issued the certificates before it ran helm.
    fake.insert(issued_before(&fake));
    fake.insert(release_secret(1, "pending-install", 1_700_000_000, None));
    let r = r
        .env("HELM_SHIM_UNINSTALL", "ok")
        .env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let log = helm_log(r.home.path());
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[1].starts_with("uninstall kr-mum --namespace monitor --wait"),
        "{log:?}"
    );
    assert!(log[2].starts_with("upgrade --install kr-mum"), "{log:?}");
    // The namespace existed and helm did the recovery: the agent itself wrote nothing.
    assert_only_the_lock_was_written(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_exits_7_and_shows_pod_states_and_events() {
    let (fake, r) = shimmed(&["wsl2-kubeadm.json"], "wsl").await;
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cmm-node-exporter-x7k2p", "namespace": "monitor"},
        "spec": {"containers": [{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.8.2"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "node-exporter", "ready": false, "restartCount": 5, "image": "quay.io/prometheus/node-exporter:v1.8.2", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}}}]}
    }));
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "cmm-node-exporter-x7k2p.17f", "namespace": "monitor"},
        "involvedObject": {"kind": "Pod", "name": "cmm-node-exporter-x7k2p", "namespace": "monitor"},
        "type": "Warning", "reason": "Failed",
        "message": "Error: failed to generate container spec: path \"/\" is mounted on \"/\" but it is not a shared or slave mount",
        "lastTimestamp": "2026-11-24T02:00:00Z"
    }));
    let (_r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 7, "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("context deadline exceeded") && e.contains("upgrade --install kr-mum"),
        "{e}"
    );
    assert!(
        e.contains("CrashLoopBackOff") && e.contains("not a shared or slave mount"),
        "{e}"
    );
    // The namespace was missing, and a first install issues the certificates the proxy needs
    // before helm runs: the two writes the agent itself made.
    let writes = writes_besides_the_lock(&fake);
    let made: Vec<(&str, &str)> = writes
        .iter()
        .map(|w| (w.method.as_str(), w.path.as_str()))
        .collect();
    assert_eq!(
        made,
        [
            ("POST", "/api/v1/namespaces"),
            ("POST", "/api/v1/namespaces/monitor/secrets")
        ],
        "{writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_are_reported_after_the_install_and_a_not_ready_one_fails_the_run() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cmm-operator", "namespace": "monitor"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cmm-operator"}},
                 "template": {"metadata": {"labels": {"app": "cmm-operator"}},
                              "spec": {"containers": [{"name": "operator", "image": "quay.io/prometheus-operator/prometheus-operator:v0.78.1"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}));
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "cmm-node-exporter", "namespace": "monitor"},
        "spec": {"selector": {"matchLabels": {"app": "ne"}},
                 "template": {"metadata": {"labels": {"app": "ne"}},
                              "spec": {"containers": [{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.8.2"}]}}},
        "status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3}}));
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let rep: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(rep["outcome"], "applied");
    assert_eq!(
        rep["workloads"],
        json!([
            {"kind": "DaemonSet", "name": "cmm-node-exporter", "ready": 3, "desired": 3},
            {"kind": "Deployment", "name": "cmm-operator", "ready": 1, "desired": 1},
            {"kind": "StatefulSet", "name": "prometheus-cmm", "ready": 1, "desired": 1}
        ])
    );

    // One node's exporter does not come up: the install is not done.
    let mut ds = fake
        .get(
            "/apis/apps/v1/namespaces/monitor/daemonsets",
            "cmm-node-exporter",
        )
        .unwrap();
    ds["status"]["numberReady"] = json!(2);
    fake.insert(ds);
    let (_r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 7, "{}", err(&o));
    assert!(
        err(&o).contains("DaemonSet cmm-node-exporter 2/3"),
        "{}",
        err(&o)
    );
}

// ---------------------------------------------------------------- fix-storage

fn stuck_claim(name: &str, terminating: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": "monitor", "uid": format!("uid-{name}"),
                        "finalizers": ["kubernetes.io/pvc-protection"],
                        "deletionTimestamp": if terminating { json!("2026-11-23T10:00:00Z") } else { Value::Null }},
           "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": format!("pv-{name}"),
                    "resources": {"requests": {"storage": "50Gi"}}},
           "status": {"phase": "Bound"}})
}

fn stuck_volume(name: &str, claim: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
           "metadata": {"name": name, "deletionTimestamp": "2026-11-23T10:00:00Z",
                        "finalizers": ["kubernetes.io/pv-protection"]},
           "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteOnce"],
                    "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "monitor", "name": claim, "uid": format!("uid-{claim}")},
                    "persistentVolumeReclaimPolicy": "Delete"},
           "status": {"phase": "Released"}})
}

/// A scheduled pod listing the claim: it holds the claim (pvc-protection counts only scheduled
/// pods).
fn pod_holding(claim: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "prometheus-cmm-0", "namespace": "monitor"},
        "spec": {"nodeName": "node-1",
                 "containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}],
                 "volumes": [{"name": "db", "persistentVolumeClaim": {"claimName": claim}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_storage_is_a_dry_run_until_yes_and_never_touches_a_live_claims_volume() {
    let (fake, r) = cluster(&[], "kr-mum").await;
    fake.insert(stuck_claim("prometheus-db", true));
    fake.insert(stuck_volume("pv-prometheus-db", "prometheus-db"));
    fake.insert(pod_holding("prometheus-db"));
    fake.insert(stuck_claim("grafana", false));
    fake.insert(stuck_volume("pv-grafana", "grafana"));
    // The live claim was re-created: the volume's claimRef remembers an older uid.
    let mut pv = fake.get("/api/v1/persistentvolumes", "pv-grafana").unwrap();
    pv["spec"]["claimRef"]["uid"] = json!("uid-of-an-older-claim");
    fake.insert(pv);

    let (r, o) = run(r, &["fix-storage"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains("persistentvolumeclaim/prometheus-db: held by pod(s) prometheus-cmm-0")
            && text.contains("dry run"),
        "{text}"
    );
    assert!(
        text.contains("left alone: persistentvolume/pv-grafana: live claim monitor/grafana names it in spec.volumeName"),
        "{text}"
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());

    // The pod goes; the pvc-protection controller lets the claim go; its volume is freed.
    fake.remove("/api/v1/namespaces/monitor/pods", "prometheus-cmm-0");
    let (_r, o) = run(r, &["--output", "json", "fix-storage", "--yes"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let writes: Vec<(String, String)> = fake
        .writes()
        .iter()
        .map(|w| (w.method.clone(), w.path.clone()))
        .collect();
    assert_eq!(
        writes,
        [(
            "PATCH".into(),
            "/api/v1/persistentvolumes/pv-prometheus-db".into()
        )],
        "no claim is deleted twice, the live claim's volume is untouched"
    );
    assert!(fake
        .get("/api/v1/persistentvolumes", "pv-prometheus-db")
        .is_none());
    assert!(fake
        .get("/api/v1/persistentvolumes", "pv-grafana")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_storage_leaves_the_volume_when_a_pod_still_mounts_the_claim() {
    let (fake, r) = cluster(&[], "kr-mum").await;
    fake.insert(stuck_claim("prometheus-db", true));
    fake.insert(stuck_volume("pv-prometheus-db", "prometheus-db"));
    fake.insert(pod_holding("prometheus-db"));
    let (_r, o) = run(r, &["fix-storage", "--yes"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("prometheus-cmm-0"), "{}", out(&o));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_storage_waits_a_bounded_time_for_a_terminating_claim_and_says_why_it_stayed() {
    // kube-controller-manager lags: the claim is unused but still Terminating.
    let (fake, r) = cluster(&[], "kr-mum").await;
    fake.pause_controllers(true);
    fake.insert(stuck_claim("prometheus-db", true));
    fake.insert(stuck_volume("pv-prometheus-db", "prometheus-db"));
    let fake = std::sync::Arc::new(fake);
    let later = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            fake.pause_controllers(false);
        })
    };
    let (r, o) = run(r, &["fix-storage", "--yes", "--claim-wait", "20s"]).await;
    later.await.unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        out(&o).contains("claim monitor/prometheus-db is gone")
            && out(&o).contains("cleared finalizers of volume pv-prometheus-db"),
        "{}",
        out(&o)
    );
    assert!(
        fake.writes().iter().all(|w| w.method != "DELETE"),
        "{:?}",
        fake.writes()
    );

    // Controllers down for good: bounded wait, then the reason, and the volume left alone.
    fake.pause_controllers(true);
    fake.insert(stuck_claim("prometheus-db", true));
    fake.insert(stuck_volume("pv-prometheus-db", "prometheus-db"));
    let (_r, o) = run(r, &["fix-storage", "--yes", "--claim-wait", "1s"]).await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    assert!(
        out(&o).contains("still Terminating after 1s although no scheduled pod holds it")
            && out(&o).contains("pvc-protection"),
        "{}",
        out(&o)
    );
    assert!(fake
        .get("/api/v1/persistentvolumes", "pv-prometheus-db")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_of_the_other_role_are_refused_and_help_groups_options_by_what_they_touch() {
    let fake = fake_with(&["kind.json"]).await;
    for (args, env, says) in [
        (
            &["--role", "central", "--prometheus-url", "http://10.0.0.1:30090"][..],
            None,
            "--prometheus-url / CMM_PROMETHEUS_URL (from the command line) do(es) nothing with --role central",
        ),
        (
            &["--registration-token-out", "/tmp/t"][..],
            None,
            "--registration-token-out / CMM_REGISTRATION_TOKEN_OUT (from the command line) do(es) nothing with --role cluster",
        ),
        (
            &["--role", "central"][..],
            Some(("CMM_KUBE_METRICS", "true")),
            "--kube-metrics / CMM_KUBE_METRICS (from the environment)",
        ),
    ] {
        let r = Agent::new();
        let kc = fake.write_kubeconfig(r.home.path(), "kind-cmm");
        let mut r = r.env("CMM_KUBECONFIG", kc);
        if let Some((k, v)) = env {
            r = r.env(k, v);
        }
        let all = [&["bootstrap", "--cluster", "kr-mum"][..], args].concat();
        let (_r, o) = run(r, &all).await;
        assert_eq!(code(&o), 2, "{all:?}: {}", err(&o));
        assert!(err(&o).contains(says), "{all:?}: {}", err(&o));
    }
    assert!(fake.requests().is_empty(), "refused input reached the API");

    let (_r, o) = run(Agent::new(), &["bootstrap", "--help"]).await;
    let help = out(&o);
    for heading in [
        "Release:",
        "Kubernetes:",
        "Chart:",
        "Grafana:",
        "Prometheus:",
        "Central Grafana (--role central):",
        "Settings:",
        "Output:",
    ] {
        assert!(
            help.lines().any(|l| l == heading),
            "{heading} missing:\n{help}"
        );
    }
    // The one setting every run needs leads; the settings file is not an output option;
    // plain HTTP belongs to the Prometheus endpoint, not the chart.
    let group_of = |flag: &str| {
        let at = help
            .find(&format!("      --{flag}"))
            .unwrap_or_else(|| panic!("--{flag}"));
        help[..at]
            .lines()
            .rev()
            .find(|l| l.ends_with(':') && !l.starts_with(' '))
            .unwrap()
            .to_owned()
    };
    let first = help
        .lines()
        .find(|l| l.ends_with(':') && !l.starts_with(' ') && *l != "Options:");
    assert_eq!(first, Some("Release:"), "{help}");
    assert_eq!(group_of("cluster"), "Release:");
    assert_eq!(group_of("config"), "Settings:");
    assert_eq!(group_of("insecure-plain-http"), "Prometheus:");
}

// ---------------------------------------------------------------- mutual TLS

/// The certificates of a first install: issued from the central CA before helm runs, for the
/// node addresses, verified here with webpki as a TLS client would; a re-run keeps them; no
/// central context is refused before anything is contacted; `--insecure-plain-http` issues none
/// and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_install_issues_the_certificates_the_proxy_needs_and_a_rerun_keeps_them() {
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let rep: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(rep["insecure"], false, "{rep:#}");
    assert_eq!(
        rep["tls"][0]["secret"], "Secret cmm-prometheus-tls",
        "{rep:#}"
    );
    assert_eq!(rep["tls"][0]["action"], "issue", "{rep:#}");

    let secret = fake
        .get("/api/v1/namespaces/monitor/secrets", "cmm-prometheus-tls")
        .expect("the proxy's Secret");
    let text = |k: &str| cmm_testkit::pki::secret_text(&secret, k).unwrap();
    let ca = central_material().ca.cert_pem();
    assert_eq!(text("ca.crt").trim(), ca.trim());
    let now = std::time::SystemTime::now();
    let node_ip = fixture_node("kubeadm-onprem.json")["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    // The name Grafana dials (a node address on the NodePort) and the self-scrape's name.
    for name in [node_ip.as_str(), "cmm-prometheus"] {
        let san = cmm_pki::San::parse(name).unwrap();
        cmm_pki::verify(
            &text("tls.crt"),
            ca,
            cmm_pki::Usage::Server,
            Some(&san),
            now,
        )
        .unwrap_or_else(|e| panic!("server certificate for {name}: {e}"));
    }
    cmm_pki::verify(&text("client.crt"), ca, cmm_pki::Usage::Client, None, now).unwrap();
    let client = cmm_pki::inspect(&text("client.crt"), "client").unwrap();
    assert!(
        client.subject.contains("cmm-self-kr-mum"),
        "{}",
        client.subject
    );
    // The keys went into the Secret only: not into the report, the log or helm's values.
    for shown in [out(&o), err(&o), helm_env(r.home.path())] {
        assert!(!shown.contains("PRIVATE KEY"), "a key was shown: {shown}");
    }

    // A re-run keeps them: no Secret is written.
    let before = fake.writes().len();
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let rep: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(rep["tls"][0]["action"], "keep", "{rep:#}");
    assert!(
        rep["tls"][0]["days_left"].as_i64().unwrap() >= 364,
        "{rep:#}"
    );
    let secret_writes: Vec<_> = fake.writes()[before..]
        .iter()
        .filter(|w| w.path.contains("/secrets"))
        .cloned()
        .collect();
    assert!(secret_writes.is_empty(), "{secret_writes:?}");
    drop(r);

    // No central context: refused by name before helm or any API is asked.
    let fake = fake_with(&["kubeadm-onprem.json"]).await;
    let r = Agent::new();
    let kc = fake.write_kubeconfig(r.home.path(), "kr-mum");
    let shim = helm_shim(r.home.path(), "v3.17.3");
    let r = r
        .env("CMM_KUBECONFIG", kc)
        .env("CMM_HELM", shim)
        .env("CMM_CHART", REPO_CHART);
    let (r, o) = run(r, &["bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("--central-context") && err(&o).contains("--insecure-plain-http"),
        "{}",
        err(&o)
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert!(helm_log(r.home.path()).is_empty());

    // Knowingly plain: no certificate, and the report says INSECURE.
    let r = r.env("HELM_SHIM_UPGRADE", "ok");
    fake.insert(namespace("monitor"));
    fake.insert(operator_prometheus(1));
    let (_r, o) = run(
        r,
        &["bootstrap", "--cluster", "kr-mum", "--insecure-plain-http"],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("INSECURE"), "{}", out(&o));
    assert!(fake
        .get("/api/v1/namespaces/monitor/secrets", "cmm-prometheus-tls")
        .is_none());
}

/// helm never upgrades CRDs: a cluster that once ran kube-prometheus-stack 56.x keeps operator
/// v0.71.2's, whose Prometheus CRD lacks spec.scrapeClasses (the `cluster` label's scrape
/// class would be dropped, silently). Bootstrap brings them to the chart's by server-side apply
/// under its run lock, before helm, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_operator_crds_are_brought_to_the_charts_before_helm() {
    let (Some(real), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    fake.insert(issued_before(&fake));
    let chart_crds = cmm_testkit::crds::from_helm(&real, &chart);
    for c in cmm_testkit::crds::as_older_chart(&chart_crds) {
        fake.insert(c);
    }
    let r = r
        .env("CMM_CHART", &chart)
        .env("HELM_SHIM_REAL", &real)
        .env("HELM_SHIM_UPGRADE", "ok");
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    let crds = report["crds"].as_array().unwrap();
    assert_eq!(crds.len(), chart_crds.len(), "{report:#}");
    let prom = crds
        .iter()
        .find(|c| c["name"] == "prometheuses.monitoring.coreos.com")
        .unwrap();
    assert!(
        prom["detail"]
            .as_str()
            .unwrap()
            .starts_with("brought from 0.71.2 to the chart's 0.78.1"),
        "{prom}"
    );
    let now = fake
        .get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "prometheuses.monitoring.coreos.com",
        )
        .unwrap();
    assert_eq!(
        now["metadata"]["annotations"]["operator.prometheus.io/version"],
        "0.78.1"
    );
    assert!(
        !now["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["scrapeClasses"]
            .is_null()
    );
    // By server-side apply, forced, as cmm-agent: the chart's upgrade notes' command.
    let applies: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/customresourcedefinitions/"))
        .collect();
    assert_eq!(applies.len(), chart_crds.len(), "{applies:?}");
    assert!(applies.iter().all(|w| w.method == "PATCH"
        && w.query.contains("fieldManager=cmm-agent")
        && w.query.contains("force=true")));
    // helm upgraded after; a second run finds nothing to bring.
    assert!(helm_log(r.home.path())
        .iter()
        .any(|l| l.starts_with("upgrade")));
    let (_r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let again: Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(again["crds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["verdict"] == "current"));
}

/// Another release holds CMM's names: here a push central (`monitor` in namespace `central`)
/// from before its receiver had names of its own, holding the operator's cluster-wide objects
/// and NodePort 30090. Bootstrap of the cluster release says so in preflight, with the fix,
/// and changes nothing, instead of helm failing halfway after the namespace and certificates
/// were made. (CMM's own releases of this version share nothing: test_coexistence.py.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_would_take_another_releases_names_is_refused_before_any_change() {
    let (Some(real), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let (fake, r) = shimmed(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let owned = json!({"meta.helm.sh/release-name": "monitor",
                       "meta.helm.sh/release-namespace": "central"});
    fake.insert(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "cmm-operator", "annotations": owned}, "rules": []}),
    );
    fake.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-prometheus-0", "namespace": "central", "annotations": owned},
        "spec": {"type": "NodePort", "ports": [{"port": 9090, "nodePort": 30090}]}}));
    let r = r.env("CMM_CHART", &chart).env("HELM_SHIM_REAL", &real);
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(code(&o), 6, "{}", err(&o));
    let report: Value = serde_json::from_str(&out(&o)).unwrap();
    let check = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "coexistence")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(check["ok"], false);
    let detail = check["detail"].as_str().unwrap();
    for said in [
        "ClusterRole cmm-operator, owned by release monitor (namespace central)",
        "NodePort 30090, taken by Service cmm-prometheus-0 in namespace central",
        "re-run `cmm-agent bootstrap --role central` there with this version first",
    ] {
        assert!(detail.contains(said), "{said}: {detail}");
    }
    // Reads only: not even the run lock is taken before preflight passes.
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert_eq!(helm_log(r.home.path()), ["version --template {{.Version}}"]);
}

/// The central cluster monitored too, in push, with the central release `monitor` in the
/// same namespace: every object of the kinds the coexistence check reads, as the real helm
/// renders the central push release, is on the cluster owned by that release. The cluster's
/// own push release passes preflight (its operator, webhooks, NodePort and proxy ConfigMap
/// are named apart from the receiver's) and a dry run ends in 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_release_beside_the_push_receiver_passes_coexistence() {
    let (Some(helm), Some(chart)) = (real_helm(), real_chart()) else {
        return;
    };
    let values = support::workspace_root().join("values");
    let o = std::process::Command::new(&helm)
        .args(["template", "monitor"])
        .arg(&chart)
        .args(["-n", "monitor", "-f"])
        .arg(values.join("central_monitor.yaml"))
        .arg("-f")
        .arg(values.join("overlays/central-receiver.yaml"))
        .arg("-f")
        .arg(values.join("central_content.yaml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (fake, r) = cluster(&["kubeadm-onprem.json"], "kr-mum").await;
    fake.insert(namespace("monitor"));
    let owned = json!({"meta.helm.sh/release-name": "monitor",
                       "meta.helm.sh/release-namespace": "monitor"});
    let read = cmm_installer::clash::CLUSTER_KINDS
        .iter()
        .chain(cmm_installer::clash::NAMESPACED_KINDS.iter());
    let kinds: Vec<&str> = read.copied().collect();
    let mut inserted = 0;
    for mut obj in cmm_installer::render::Rendered::parse(std::str::from_utf8(&o.stdout).unwrap())
        .unwrap()
        .objects
        .into_iter()
        .filter(|v: &Value| kinds.contains(&v["kind"].as_str().unwrap_or_default()))
    {
        obj["metadata"]["annotations"] = owned.clone();
        let cluster_wide =
            cmm_installer::clash::CLUSTER_KINDS.contains(&obj["kind"].as_str().unwrap());
        if !cluster_wide && obj["metadata"]["namespace"].is_null() {
            obj["metadata"]["namespace"] = json!("monitor");
        }
        fake.insert(obj);
        inserted += 1;
    }
    assert!(
        inserted > 20,
        "the central push release renders {inserted} such objects"
    );
    let r = r.env("CMM_HELM", &helm).env("CMM_CHART", &chart);
    let (_r, o) = run(
        r,
        &[
            "--output",
            "json",
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--topology",
            "push",
            "--receiver-url",
            "https://10.0.0.5:30091/api/v1/write",
            "--dry-run",
        ],
    )
    .await;
    let report: Value = serde_json::from_str(&out(&o)).unwrap_or_else(|_| panic!("{}", err(&o)));
    let check = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "coexistence")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(check["ok"], true, "{check:#}");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}
