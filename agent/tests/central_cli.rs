//! `cmm-agent register | deregister | central token` end to end: the real binary against the
//! fake Grafana (held to Grafana's spec and contract) and, where a healthy datasource is needed,
//! a real Prometheus + node_exporter. Asserts exit codes and that no secret reaches any output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::path::Path;

use cmm_testkit::grafana::{FakeGrafana, Role, ADMIN_TOKEN};
use serde_json::json;

use support::{clean_run as agent, texts as text};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");

fn token_file(dir: &Path, token: &str) -> String {
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn register_then_deregister_with_a_real_prometheus() {
    let Some(prom) = cmm_testkit::prometheus::start("cli-register", "kr-mum").await else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), ADMIN_TOKEN);
    let args = [
        "register",
        "--cluster",
        "kr-mum",
        "--grafana-url",
        &fake.url,
        "--grafana-token-file",
        &tf,
        "--prometheus-url",
        &prom.url,
        "--insecure-plain-http",
    ];
    // Plain HTTP only when asked for: without the flag, refused before Grafana is contacted.
    let o = agent(&args[..args.len() - 1], &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("is plain HTTP") && err.contains("--insecure-plain-http"),
        "{err}"
    );
    assert!(fake.requests().is_empty(), "Grafana was contacted");

    let o = agent(&args, &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("datasource   cmm-kr-mum: created") && out.contains("health       OK"),
        "{out}"
    );
    assert!(out.contains("INSECURE     plain HTTP"), "{out}");
    assert!(
        !out.contains(ADMIN_TOKEN) && !err.contains(ADMIN_TOKEN),
        "token leaked"
    );

    // Idempotent through the CLI too, and JSON output is machine-readable.
    let o = agent(&[&args[..], &["--output", "json"]].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["datasource"]["action"], "unchanged");
    assert_eq!(v["health"]["ok"], true);
    assert_eq!(v["endpoint"]["via"], "flag");
    assert_eq!(v["insecure"], true);
    assert_eq!(fake.count("POST", "/api/datasources"), 1);

    let o = agent(
        &[
            "deregister",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &fake.url,
            "--grafana-token-file",
            &tf,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(fake.datasources().is_empty());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn exit_codes_tell_failures_apart_and_secrets_stay_out_of_output() {
    let fake = cmm_testkit::fake_grafana!();
    fake.add_token("glsa_viewer_secret", Role::Viewer);
    let base = |url: &str| -> Vec<String> {
        [
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            url,
            "--prometheus-url",
            &cmm_testkit::dead_url(),
            "--insecure-plain-http",
            "--skip-prometheus-check",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>, token: &'static str| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = agent(&a, &[("CMM_GRAFANA_TOKEN", token)]).await;
        let (out, err) = text(&o);
        assert!(
            !out.contains(token) && !err.contains(token),
            "token leaked:\n{out}\n{err}"
        );
        (o.status.code(), out, err)
    };

    // Registered, but Grafana cannot reach the endpoint: 11, and the report says what was done.
    let (code, out, err) = run(base(&fake.url), ADMIN_TOKEN).await;
    assert_eq!(code, Some(11), "{out}\n{err}");
    assert!(out.contains("health       FAILED"), "{out}");
    assert!(
        err.contains("is registered, but Grafana's health check"),
        "{err}"
    );

    let (code, _, err) = run(base(&fake.url), "glsa_not_a_real_token").await;
    assert_eq!(code, Some(9), "{err}");
    assert!(
        err.contains("401") && err.contains("Invalid API key"),
        "{err}"
    );

    // The datasource exists from the first run, so the Viewer is refused the update.
    let (code, _, err) = run(base(&fake.url), "glsa_viewer_secret").await;
    assert_eq!(code, Some(9), "{err}");
    assert!(
        err.contains("403") && err.contains("Permissions needed: datasources:write"),
        "{err}"
    );

    let (code, _, err) = run(base(&cmm_testkit::dead_url()), ADMIN_TOKEN).await;
    assert_eq!(code, Some(8), "{err}");
    assert!(err.contains("after 2 attempt(s)"), "{err}");

    let other = FakeGrafana::start().await.unwrap();
    other.seed_datasource(json!({"uid": "legacy", "name": "kr-mum", "type": "prometheus", "access": "proxy", "url": "http://legacy:9090"}), false);
    let (code, _, err) = run(base(&other.url), ADMIN_TOKEN).await;
    assert_eq!(code, Some(10), "{err}");
    assert!(err.contains("--force"), "{err}");

    let mut bad = base(&fake.url);
    bad[2] = "Kr_Mum".into();
    let (code, _, err) = run(bad, ADMIN_TOKEN).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--cluster") && err.contains("DNS-1123"),
        "{err}"
    );

    // No token anywhere: usage, naming every source.
    let a = base(&fake.url);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = agent(&a, &[]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--grafana-token-file")
            && err.contains("CMM_GRAFANA_TOKEN")
            && err.contains("grafana-token"),
        "{err}"
    );
}

#[tokio::test]
async fn a_prometheus_of_another_cluster_exits_11_and_writes_nothing() {
    let Some(prom) = cmm_testkit::prometheus::start("cli-wrong", "wai-eks").await else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let o = agent(
        &[
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &fake.url,
            "--prometheus-url",
            &prom.url,
            "--insecure-plain-http",
        ],
        &[("CMM_GRAFANA_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(11), "{err}");
    assert!(err.contains("cluster=\"wai-eks\""), "{err}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn central_token_prints_once_or_writes_an_owner_only_file() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("admin-password");
    std::fs::write(&pw, "admin\n").unwrap();
    let pw_s = pw.display().to_string();
    let common = [
        "central",
        "token",
        "--grafana-url",
        &fake.url,
        "--grafana-user",
        "admin",
        "--grafana-password-file",
        &pw_s,
    ];

    let o = agent(&[&common[..], &["--token-name", "t1"]].concat(), &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let token = out.trim();
    assert!(
        token.starts_with("glsa_") && out.lines().count() == 1,
        "{out}"
    );
    assert!(!err.contains(token) && !err.contains("admin\n"), "{err}");

    // The issued token registers a cluster.
    let o = agent(
        &[
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &fake.url,
            "--prometheus-url",
            &cmm_testkit::dead_url(),
            "--insecure-plain-http",
            "--skip-prometheus-check",
            "--rules",
            "skip",
        ],
        &[("CMM_GRAFANA_TOKEN", token)],
    )
    .await;
    assert_eq!(o.status.code(), Some(11), "{:?}", text(&o)); // written; endpoint unreachable
    assert_eq!(fake.datasources().len(), 1);

    let out_file = dir.path().join("registrar.token");
    let of = out_file.display().to_string();
    let o = agent(
        &[
            &common[..],
            &["--token-name", "t2", "--token-out", &of, "--output", "json"],
        ]
        .concat(),
        &[],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["token"], "***");
    assert_eq!(v["service_account_created"], false);
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        written.starts_with("glsa_")
            && !out.contains(written.trim())
            && !err.contains(written.trim())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Never overwritten; JSON without a file refused.
    let o = agent(
        &[&common[..], &["--token-name", "t3", "--token-out", &of]].concat(),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let o = agent(
        &[&common[..], &["--token-name", "t4", "--output", "json"]].concat(),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--token-out"));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), written);
}

#[tokio::test]
async fn without_a_url_the_endpoint_is_discovered_from_the_clusters_nodeport() {
    let Some(prom) = cmm_testkit::prometheus::start("cli-discover", "kr-mum").await else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let kube = cmm_testkit::kube::FakeKube::start().await;
    let port = prom.port();
    // The node's address and the NodePort are where the real Prometheus listens.
    kube.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-prometheus", "namespace": "monitor"},
        "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090, "nodePort": port}]}}));
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = kube
        .write_kubeconfig(dir.path(), "kr-mum")
        .display()
        .to_string();
    let args = [
        "register",
        "--cluster",
        "kr-mum",
        "--grafana-url",
        &fake.url,
        "--kubeconfig",
        &kc,
        "--output",
        "json",
    ];
    // The Service serves plain HTTP: found, named, and not registered unless asked for.
    let o = agent(&args, &[("CMM_GRAFANA_TOKEN", ADMIN_TOKEN)]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(out.contains("is plain HTTP"), "{out}");
    assert_eq!(fake.count("POST", "/api/datasources"), 0);
    let o = agent(
        &[&args[..], &["--insecure-plain-http"]].concat(),
        &[("CMM_GRAFANA_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["endpoint"]["via"], "node-port");
    assert_eq!(v["prometheus_url"], prom.url);
    assert_eq!(v["health"]["ok"], true);
    assert!(kube.writes().is_empty(), "discovery only reads the cluster");

    // No Service: a usage error that names the way out.
    let empty = cmm_testkit::kube::FakeKube::start().await;
    let kc2 = empty
        .write_kubeconfig(dir.path(), "empty")
        .display()
        .to_string();
    let o = agent(
        &[
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &fake.url,
            "--kubeconfig",
            &kc2,
        ],
        &[("CMM_GRAFANA_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no Service cmm-prometheus") && err.contains("--prometheus-url"),
        "{err}"
    );
}

/// A helm stand-in for the apply path (no cluster for a real `helm upgrade` here); it logs
/// every invocation to helm.log beside itself.
fn helm_shim(dir: &Path) -> String {
    let path = dir.join("helm");
    let log = dir.join("helm.log");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$1\" in\n  version) echo 'v3.17.3' ;;\n  upgrade) exit 0 ;;\n  show|template) exit 0 ;;\n  *) echo \"unexpected helm $1\" >&2; exit 1 ;;\nesac\n",
            log.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path.display().to_string()
}

async fn cluster_with_prometheus_at(port: u16) -> cmm_testkit::kube::FakeKube {
    let kube = cmm_testkit::kube::FakeKube::start().await;
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    kube.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-prometheus", "namespace": "monitor"},
        "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090, "nodePort": port}]}}));
    // The StatefulSet prometheus-operator makes for the chart's Prometheus resource, ready.
    kube.insert(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "prometheus-cmm", "namespace": "monitor",
                     "labels": {"operator.prometheus.io/name": "cmm"}},
        "spec": {"replicas": 1, "serviceName": "prometheus-operated",
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "prometheus"}},
                              "spec": {"containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1}}));
    kube.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1",
            "labels": {"kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.0", "containerRuntimeVersion": "containerd://1.7.0",
                                "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "operatingSystem": "linux",
                                "architecture": "amd64"}}}));
    kube
}

#[tokio::test]
async fn bootstrap_ends_by_registering_and_says_so_when_only_registration_fails() {
    let Some(prom) = cmm_testkit::prometheus::start("cli-bootstrap", "kr-mum").await else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let port = prom.port();
    let kube = cluster_with_prometheus_at(port).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kube
        .write_kubeconfig(dir.path(), "kr-mum")
        .display()
        .to_string();
    let helm = helm_shim(dir.path());
    let chart = "https://charts.example#kube-prometheus-stack";
    // The Prometheus here is a plain one: this test is about the order of install and
    // registration, the authenticated path has its own (bootstrap_cli, installer mtls_proxy).
    let base = [
        "bootstrap",
        "--cluster",
        "kr-mum",
        "--kubeconfig",
        &kc,
        "--helm",
        &helm,
        "--chart",
        chart,
        "--insecure-plain-http",
    ];

    let o = agent(
        &[&base[..], &["--grafana-url", &fake.url]].concat(),
        &[
            ("CMM_GRAFANA_TOKEN", ADMIN_TOKEN),
            ("HOME", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("datasource   cmm-kr-mum: created") && out.contains("health       OK"),
        "{out}"
    );
    assert_eq!(fake.datasources().len(), 1);
    assert!(!out.contains(ADMIN_TOKEN) && !err.contains(ADMIN_TOKEN));

    // Grafana down before the install: it is asked first, and nothing is changed.
    let helm_log = dir.path().join("helm.log");
    let upgrades = || {
        std::fs::read_to_string(&helm_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("upgrade"))
            .count()
    };
    let installed = upgrades();
    let o = agent(
        &[&base[..], &["--grafana-url", &cmm_testkit::dead_url()]].concat(),
        &[
            ("CMM_GRAFANA_TOKEN", ADMIN_TOKEN),
            ("HOME", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(8), "{out}\n{err}");
    assert!(
        err.contains("checking the central Grafana before installing; nothing was changed")
            && err.contains("--skip-grafana-check"),
        "{err}"
    );
    assert_eq!(upgrades(), installed, "helm ran although Grafana was down");

    // A refused token: exit 9 in seconds, nothing installed.
    let o = agent(
        &[&base[..], &["--grafana-url", &fake.url]].concat(),
        &[
            ("CMM_GRAFANA_TOKEN", "glsa_not_a_valid_token"),
            ("HOME", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(9), "{out}\n{err}");
    assert_eq!(
        upgrades(),
        installed,
        "helm ran although the token was refused"
    );
    assert!(!err.contains("glsa_not_a_valid_token"), "{err}");

    // Grafana unreachable from here, check skipped: the install is fine and the error says
    // exactly that, with Grafana's code.
    let o = agent(
        &[
            &base[..],
            &[
                "--grafana-url",
                &cmm_testkit::dead_url(),
                "--skip-grafana-check",
            ],
        ]
        .concat(),
        &[
            ("CMM_GRAFANA_TOKEN", ADMIN_TOKEN),
            ("HOME", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(8), "{out}\n{err}");
    assert!(
        err.contains("helm release kr-mum is installed and ready, but registering it in the central Grafana failed")
            && err.contains("cmm-agent register --cluster kr-mum"),
        "{err}"
    );

    // Without --grafana-url, bootstrap does not contact Grafana at all.
    let before = fake.requests().len();
    let o = agent(&base, &[("HOME", dir.path().to_str().unwrap())]).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn central_bootstrap_waits_for_grafana_and_issues_the_token_from_the_admin_secret() {
    let fake = cmm_testkit::fake_grafana!();
    let kube = cluster_with_prometheus_at(30090).await;
    // admin/admin, as the fake's org admin login.
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cmm-grafana-admin", "namespace": "monitor"},
        "data": {"admin-user": "YWRtaW4=", "admin-password": "YWRtaW4="}}),
    );
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cmm-grafana-alerting", "namespace": "monitor"},
        "data": {"CMM_ALERT_EMAIL_TO": "b3BzQGV4YW1wbGUuY29t",
                 "CMM_TEAMS_WEBHOOK_URL": "aHR0cHM6Ly90ZWFtcy5leGFtcGxlL3dm"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = kube
        .write_kubeconfig(dir.path(), "central")
        .display()
        .to_string();
    let helm = helm_shim(dir.path());
    let out_file = dir.path().join("registrar.token");
    let of = out_file.display().to_string();
    fake.fail_next(3, cmm_testkit::grafana::Fault::Status(503));
    let central = [
        "bootstrap",
        "--role",
        "central",
        "--cluster",
        "central",
        "--kubeconfig",
        &kc,
        "--helm",
        &helm,
        "--chart",
        "https://charts.example#kube-prometheus-stack",
    ];
    let o = agent(
        &[
            &central[..],
            &[
                "--grafana-url",
                &fake.url,
                "--grafana-wait",
                "30s",
                "--registration-token-out",
                &of,
            ],
        ]
        .concat(),
        &[("HOME", dir.path().to_str().unwrap())],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let token = std::fs::read_to_string(&out_file).unwrap();
    assert!(token.starts_with("glsa_"));
    assert!(!out.contains(token.trim()) && !err.contains(token.trim()));
    assert_eq!(fake.service_accounts()[0]["role"], "Admin");
    let auth: Vec<_> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(
        auth.iter().all(|a| a.starts_with("Basic ")),
        "the admin login from the Secret was used"
    );

    // The CMM CA and Grafana's client certificate, made by the central run, kept by the next.
    let secrets = "/api/v1/namespaces/monitor/secrets";
    let text_of = |name: &str, key: &str| {
        let s = kube
            .get(secrets, name)
            .unwrap_or_else(|| panic!("no Secret {name}"));
        cmm_testkit::pki::secret_text(&s, key).unwrap()
    };
    let ca = text_of("cmm-ca", "tls.crt");
    let info = cmm_pki::inspect(&ca, "the CA").unwrap();
    assert!(info.is_ca, "{info:?}");
    let grafana = text_of("cmm-grafana-client", "tls.crt");
    cmm_pki::verify(
        &grafana,
        &ca,
        cmm_pki::Usage::Client,
        None,
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
    let o = agent(&central, &[("HOME", dir.path().to_str().unwrap())]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(text_of("cmm-ca", "tls.crt"), ca, "the CA was replaced");
    assert_eq!(text_of("cmm-grafana-client", "tls.crt"), grafana);
}

/// A Prometheus that is ready but has not scraped yet (`up` is empty), as right after an
/// install: register waits for the first scrape, bounded, with progress; never-scraping fails
/// with the reason seen last. Both against a real Prometheus whose scrape configs are loaded
/// later by a real reload.
#[tokio::test]
async fn register_waits_a_bounded_time_for_the_first_scrape() {
    let opts = cmm_testkit::prometheus::Options {
        unscraped: true,
        ..Default::default()
    };
    let Some(prom) = cmm_testkit::prometheus::start_with("cli-first-scrape", "kr-mum", opts).await
    else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), ADMIN_TOKEN);
    let args = |wait: &'static str| {
        vec![
            "register".to_owned(),
            "--cluster".into(),
            "kr-mum".into(),
            "--grafana-url".into(),
            fake.url.clone(),
            "--grafana-token-file".into(),
            tf.clone(),
            "--prometheus-url".into(),
            prom.url.clone(),
            "--insecure-plain-http".into(),
            "--first-scrape-wait".into(),
            wait.into(),
        ]
    };
    // Never scraped within the wait: exit 11, the reason, nothing written to Grafana.
    let a = args("2s");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = agent(&a, &[]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(11), "{err}");
    assert!(
        err.contains("has no `up` series") && err.contains("`first-scrape-wait` setting"),
        "{err}"
    );
    assert!(fake.datasources().is_empty());

    // The first scrape comes while the agent waits: it registers.
    let reload = async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        prom.start_scraping().await;
    };
    let a = args("60s");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (o, ()) = tokio::join!(agent(&a, &[]), reload);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        err.contains("waiting for Prometheus' first scrape"),
        "{err}"
    );
    assert!(out.contains("datasource   cmm-kr-mum: created"), "{out}");
}

/// Bad Grafana inputs are refused as input errors that name the setting and the fix, before
/// any contact, and never echo the secret.
#[tokio::test]
async fn credentials_in_the_url_and_multi_line_tokens_are_input_errors() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let with_userinfo = fake.url.replace("http://", "http://admin:s3cr3t-pw@");
    let tf = token_file(dir.path(), ADMIN_TOKEN);
    let o = agent(
        &[
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &with_userinfo,
            "--grafana-token-file",
            &tf,
            "--prometheus-url",
            "http://127.0.0.1:9",
            "--insecure-plain-http",
        ],
        &[],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--grafana-url")
            && err.contains("user:pass@")
            && err.contains("`grafana-token-file` setting"),
        "{err}"
    );
    assert!(
        !out.contains("s3cr3t-pw") && !err.contains("s3cr3t-pw"),
        "{err}"
    );

    let two_lines = dir.path().join("two-lines");
    std::fs::write(&two_lines, format!("{ADMIN_TOKEN}\nsecond-line\n")).unwrap();
    let tf2 = two_lines.display().to_string();
    for (source, env) in [
        (vec!["--grafana-token-file", tf2.as_str()], vec![]),
        (vec![], vec![("CMM_GRAFANA_TOKEN", "abc\u{1b}[2Jdef")]),
    ] {
        let args = [
            &[
                "register",
                "--cluster",
                "kr-mum",
                "--grafana-url",
                &fake.url,
                "--prometheus-url",
                "http://127.0.0.1:9",
                "--insecure-plain-http",
            ][..],
            &source[..],
        ]
        .concat();
        let o = agent(&args, &env).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("control character") && err.contains("single line"),
            "{err}"
        );
        assert!(
            !err.contains(ADMIN_TOKEN) && !err.contains("second-line"),
            "{err}"
        );
    }
    assert!(fake.requests().is_empty(), "Grafana was contacted");
}

/// A 5xx that persists is Grafana failing the request, not an outage: after the last retry the
/// agent shows Grafana's own message, bounded and cleaned of the token (a page in front of
/// Grafana echoes the request's headers) and of terminal escapes; a gateway's 503 stays an
/// outage (exit 8).
#[tokio::test]
async fn a_persistent_5xx_shows_grafanas_message_without_the_token_or_escapes() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), ADMIN_TOKEN);
    let args = [
        "deregister",
        "--cluster",
        "kr-mum",
        "--grafana-url",
        &fake.url,
        "--grafana-token-file",
        &tf,
    ];
    fake.fail_next(2, cmm_testkit::grafana::Fault::Echo(500));
    let o = agent(&args, &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(13), "{err}");
    assert!(
        err.contains("answered 500")
            && err.contains("on all 2 attempt(s)")
            && err.contains("Upstream error"),
        "{err}"
    );
    for text in [&out, &err] {
        assert!(!text.contains(ADMIN_TOKEN), "token echoed: {text}");
        assert!(!text.contains('\u{1b}'), "escape sequence passed through");
    }
    let longest = err.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(longest < 1200, "an unbounded line of {longest} characters");

    fake.fail_next(2, cmm_testkit::grafana::Fault::Status(503));
    let o = agent(&args, &[]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(8), "{err}");
}

/// `central token` without any credential says how to log in, and a refused password says the
/// password was refused (not "the token").
#[tokio::test]
async fn central_token_says_how_to_log_in_and_which_credential_was_refused() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let o = agent(&["central", "token", "--grafana-url", &fake.url], &[]).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--grafana-user")
            && err.contains("cmm-grafana-admin")
            && !err.contains("run `cmm-agent central token`"),
        "{err}"
    );
    assert!(fake.requests().is_empty());

    let pw = dir.path().join("pw");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let o = agent(
        &[
            "central",
            "token",
            "--grafana-url",
            &fake.url,
            "--grafana-user",
            "admin",
            "--grafana-password-file",
            pw.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(9), "{err}");
    assert!(
        err.contains("password of Grafana user \"admin\" was refused")
            && !err.contains("The token is wrong"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
}

/// Commands that change nothing needing a wind-down end at the first signal (exit 130), not
/// after bootstrap's 40 s grace.
#[tokio::test]
async fn a_register_waiting_on_a_slow_grafana_ends_at_the_first_sigint() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path(), ADMIN_TOKEN);
    fake.fail_next(
        1,
        cmm_testkit::grafana::Fault::Delay(std::time::Duration::from_secs(30)),
    );
    let child = tokio::process::Command::new(BIN)
        .args([
            "register",
            "--cluster",
            "kr-mum",
            "--grafana-url",
            &fake.url,
            "--grafana-token-file",
            &tf,
            "--prometheus-url",
            "http://127.0.0.1:9",
            "--insecure-plain-http",
            "--skip-prometheus-check",
            "--grafana-timeout",
            "1m",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The fake records a request only once it has answered: give the agent a second to start
    // and send the request the fake holds for 30 s.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let sent = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(130), "{:?}", text(&o));
    assert!(sent.elapsed().as_secs() < 5, "took {:?}", sent.elapsed());
    assert!(
        text(&o).1.contains("interrupted by SIGINT"),
        "{:?}",
        text(&o)
    );
}
