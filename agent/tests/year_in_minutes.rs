//! A year in five minutes: certificate days shortened to one second (`CMM_TEST_SECONDS_PER_DAY`,
//! honoured by debug builds only, `cmm_pki::clock`), so a leaf lives 365 s, renews 180 s before
//! its end (`cert-renew-before = "180d"`) and the CMM CA, made near the end of its life, rotates
//! early in the run. The central check and the checks of two clusters run on a schedule, as
//! their timers would, each with `--repair`; nobody else touches a certificate. The test only
//! does what the kubelet does: it copies each renewed Secret into the files the real processes
//! read.
//!
//! - cluster alpha (pull): a real Prometheus behind the rendered mutual-TLS proxy (real nginx);
//!   the fake Grafana's health check of its datasource presents the stored client certificate
//!   to that proxy, once a second, for the whole run;
//! - cluster beta (push): a real Prometheus remote-writing with its own certificate through the
//!   rendered receiver proxy (real nginx) into the default receiver, a real VictoriaMetrics run
//!   with the arguments central-receiver-victoriametrics.yaml renders.
//!
//! Over the whole run: no failed health check of alpha's datasource, no gap in beta's samples
//! at the receiver longer than two scrape intervals, beta never silent in the central check's
//! fleet table — and the timeline shows the CA rotation, the renewals and Grafana's restarts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "a test walks the whole year in order and fails by panicking"
)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use cmm_central::prometheus::{ClientIdentity, PrometheusTarget};
use cmm_central::register::{RegisterRequest, RulesMode};
use cmm_central::retry::RetryPolicy;
use cmm_central::{Credentials, GrafanaClient, Secret};
use cmm_core::ClusterName;
use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::kube::FakeKube;
use cmm_testkit::remote_write::{ProtectedReceiver, Receiver as Store, Sender};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");
/// Seconds in a certificate day for this run.
const DAY: u64 = 1;
/// How long the compressed year runs.
const RUN: Duration = Duration::from_secs(300);
/// How often each timer fires here (every 15 minutes on a host).
const TICK: Duration = Duration::from_secs(4);
/// The clusters' scrape interval.
const SCRAPE_SECS: f64 = 2.0;

async fn agent(args: &[&str], config: &str) -> Value {
    let o = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CMM_CONFIG", config)
        .env("CMM_TEST_SECONDS_PER_DAY", DAY.to_string())
        .output()
        .await
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "status {:?}\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn text_of(kube: &FakeKube, name: &str, key: &str) -> Option<String> {
    let s = kube.get("/api/v1/namespaces/monitor/secrets", name)?;
    cmm_testkit::pki::secret_text(&s, key)
}

fn config(dir: &std::path::Path, name: &str, lines: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, lines).unwrap();
    path.display().to_string()
}

/// One line of the timeline: seconds into the run, who, what.
fn note(timeline: &mut Vec<String>, start: Instant, who: &str, report: &Value) {
    for r in report["repaired"].as_array().into_iter().flatten() {
        let line = format!(
            "{:>5.0}s  {who}: {}",
            start.elapsed().as_secs_f64(),
            r.as_str().unwrap_or("")
        );
        // Past libtest's capture: the timeline is part of what CI's log shows for this test.
        let _ = writeln!(std::io::stderr(), "year: {line}");
        timeline.push(line);
    }
}

#[tokio::test]
async fn a_year_of_renewals_and_a_ca_rotation_pass_with_no_dark_minute() {
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    let test = "year-in-minutes";
    if !cmm_testkit::mtls_proxy::available(test) {
        return;
    }
    let Some(grafana) = cmm_testkit::grafana::FakeGrafana::start_or_skip(test).await else {
        return;
    };
    // This process issues the starting material with the same short days as the agent runs.
    std::env::set_var("CMM_TEST_SECONDS_PER_DAY", DAY.to_string());
    assert_eq!(
        cmm_pki::clock::day_secs(),
        DAY,
        "the day was read before it was set"
    );
    let now = SystemTime::now();
    // A CA near the end of its life: its rotation window (one leaf life plus the renewal
    // window, 545 days) opens 40 days into the run. Grafana's certificate is new.
    let born = now - Duration::from_secs((3650 - 545 - 40) * DAY);
    let ca = cmm_pki::Ca::generate(born).unwrap();
    let grafana_cert = ca
        .issue_client(cmm_core::naming::GRAFANA_CLIENT_CN, now)
        .unwrap();
    let material = cmm_testkit::pki::CentralMaterial {
        ca,
        grafana: grafana_cert,
    };

    // The receiver (push, the default VictoriaMetrics), behind the rendered receiver proxy.
    let (rconf, rrun, rargs) = support::rendered_central(
        &helm,
        &chart,
        &[
            "values/central_monitor.yaml",
            "values/overlays/central-receiver-victoriametrics.yaml",
        ],
        "cmm-receiver-mtls-proxy",
    );
    let Some(vm) = Store::start_victoriametrics(test, &rargs, "1m").await else {
        return;
    };
    let store = ProtectedReceiver::around(vm, &rconf, &rrun, &material.ca, 1).await;

    // Central cluster and Grafana.
    let central = FakeKube::start().await;
    central.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    for s in material.secrets("monitor") {
        central.insert(s);
    }
    central.insert(cmm_testkit::scene::node("central-1", &[]));
    central.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cmm-grafana", "namespace": "monitor", "generation": 1,
                     "creationTimestamp": jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "grafana"}},
                 "template": {"metadata": {"labels": {"app": "grafana"}},
                              "spec": {"containers": [{"name": "grafana", "image": "grafana"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "readyReplicas": 1, "availableReplicas": 1}}));
    grafana.seed_datasource(
        json!({"uid": "cmm_receiver", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": store.direct_url()}),
        true,
    );
    let g = GrafanaClient::new(
        &grafana.url,
        Credentials::Token(Secret::new(ADMIN_TOKEN)),
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
    )
    .unwrap();

    // Cluster alpha (pull): real Prometheus behind the rendered proxy.
    let Some(alpha_prom) = cmm_testkit::prometheus::start(test, "alpha").await else {
        return;
    };
    let sans = [
        cmm_pki::San::parse("cmm-prometheus").unwrap(),
        cmm_pki::San::parse("127.0.0.1").unwrap(),
    ];
    let alpha_secret = material.cluster_secret("monitor", "alpha", &sans);
    let text = |s: &Value, k: &str| cmm_testkit::pki::secret_text(s, k).unwrap();
    let (pconf, prun) = support::rendered_proxy(&helm, &chart);
    let alpha_proxy = cmm_testkit::mtls_proxy::RealProxy::start(
        &pconf,
        &prun,
        &cmm_testkit::mtls_proxy::TlsFiles {
            server_cert: &text(&alpha_secret, "tls.crt"),
            server_key: &text(&alpha_secret, "tls.key"),
            ca_bundle: &text(&alpha_secret, "ca.crt"),
        },
        alpha_prom.port(),
        1,
    )
    .await;
    let alpha = cmm_testkit::scene::installed_cluster(alpha_proxy.port).await;
    alpha.insert(alpha_secret);
    alpha.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-prometheus-0", "namespace": "monitor"},
        "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090,
                 "nodePort": alpha_proxy.port, "targetPort": "cmm-mtls"}]}}));
    cmm_central::register(
        &g,
        &RegisterRequest {
            cluster: ClusterName::parse("alpha").unwrap(),
            prometheus: PrometheusTarget {
                url: alpha_proxy.url(),
                basic_auth: None,
                ca_pem: Some(material.ca.cert_pem().to_owned()),
                tls_skip_verify: false,
                client: Some(ClientIdentity {
                    cert_pem: material.grafana.cert_pem.clone(),
                    key: Secret::new(material.grafana.key_pem.clone()),
                }),
            },
            force: false,
            rules: RulesMode::Provisioned,
            check_prometheus: false,
            prometheus_retry: RetryPolicy::default(),
            first_scrape_wait: Duration::ZERO,
        },
    )
    .await
    .unwrap();

    // Cluster beta (push): remote-writes with its own certificate from its Secret.
    let beta_secret = material.cluster_secret("monitor", "beta", &sans);
    let mut rw = store.remote_write(&material.ca, "beta", 2000, "1s");
    rw.client_cert_pem = text(&beta_secret, "client.crt");
    rw.client_key_pem = text(&beta_secret, "client.key");
    rw.ca_pem = text(&beta_secret, "ca.crt");
    let Some(sender) = Sender::start(test, "beta", &rw, false, "2s").await else {
        return;
    };
    let beta = cmm_testkit::scene::installed_cluster(sender.port).await;
    beta.insert(beta_secret);
    cmm_central::register::register_shared(
        &g,
        &ClusterName::parse("beta").unwrap(),
        "cmm_receiver",
        "push",
        RulesMode::Provisioned,
    )
    .await
    .unwrap();

    // Three admin hosts' settings, as each would hold them.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("grafana-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let central_kc = {
        let d = dir.path().join("central");
        std::fs::create_dir_all(&d).unwrap();
        central.write_kubeconfig(&d, "central")
    };
    let common = format!(
        "grafana-url = \"{}\"\ngrafana-token-file = \"{}\"\ngrafana-retries = 1\n\
         host-proc-version = \"/nonexistent\"\ncert-renew-before = \"180d\"\n",
        grafana.url,
        token.display()
    );
    let central_cfg = config(
        dir.path(),
        "central",
        &format!(
            "cluster = \"monitor\"\nrole = \"central\"\nkubeconfig = \"{}\"\ntopology = \"push\"\n{common}",
            central_kc.display()
        ),
    );
    let cluster_cfg = |name: &str, kube: &FakeKube, extra: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let kc = kube.write_kubeconfig(&d, name);
        config(
            dir.path(),
            name,
            &format!(
                "cluster = \"{name}\"\nkubeconfig = \"{}\"\ncentral-context = \"central\"\n\
                 central-kubeconfig = \"{}\"\n{extra}{common}",
                kc.display(),
                central_kc.display()
            ),
        )
    };
    let alpha_cfg = cluster_cfg("alpha", &alpha, "");
    let beta_cfg = cluster_cfg(
        "beta",
        &beta,
        &format!(
            "topology = \"push\"\nreceiver-url = \"{}/api/v1/write\"\n",
            store.url()
        ),
    );

    // Grafana's check of alpha's datasource, once a second, for the whole run.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = {
        let g = g.clone();
        let watching = watching.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let (mut checks, mut failures) = (0u32, Vec::new());
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                checks += 1;
                match g.datasource_health("cmm-alpha").await {
                    Ok(h) if h.ok => {}
                    other => {
                        failures.push(format!("{:.0}s: {other:?}", start.elapsed().as_secs_f64()))
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (checks, failures)
        })
    };

    // Beta was sending before the year starts: wait for its first samples at the receiver.
    let warm = Instant::now();
    loop {
        let v = g
            .proxy_query("cmm_receiver", "up{cluster=\"beta\"}")
            .await
            .unwrap();
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            // VictoriaMetrics shows a sample 30 s after it arrived (-search.latencyOffset).
            warm.elapsed() < Duration::from_secs(90),
            "beta never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The timers, and the kubelet's copies of each renewed Secret.
    let start = Instant::now();
    let mut timeline = Vec::new();
    let mut beta_rows = Vec::new();
    while start.elapsed() < RUN {
        let tick = Instant::now();
        let report = agent(&["check", "--repair", "--output", "json"], &central_cfg).await;
        note(&mut timeline, start, "central", &report);
        if let Some(row) = report["fleet"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["cluster"] == "beta"))
        {
            beta_rows.push((start.elapsed().as_secs(), row.clone()));
        }
        let report = agent(&["check", "--repair", "--output", "json"], &alpha_cfg).await;
        note(&mut timeline, start, "alpha", &report);
        let report = agent(&["check", "--repair", "--output", "json"], &beta_cfg).await;
        note(&mut timeline, start, "beta", &report);
        if let (Some(c), Some(k), Some(t)) = (
            text_of(&alpha, "cmm-prometheus-tls", "tls.crt"),
            text_of(&alpha, "cmm-prometheus-tls", "tls.key"),
            text_of(&alpha, "cmm-prometheus-tls", "ca.crt"),
        ) {
            alpha_proxy.write_tls(&cmm_testkit::mtls_proxy::TlsFiles {
                server_cert: &c,
                server_key: &k,
                ca_bundle: &t,
            });
        }
        if let (Some(c), Some(k), Some(t)) = (
            text_of(&central, "cmm-receiver-tls", "tls.crt"),
            text_of(&central, "cmm-receiver-tls", "tls.key"),
            text_of(&central, "cmm-receiver-tls", "ca.crt"),
        ) {
            store.proxy.write_tls(&cmm_testkit::mtls_proxy::TlsFiles {
                server_cert: &c,
                server_key: &k,
                ca_bundle: &t,
            });
        }
        if let (Some(t), Some(c), Some(k)) = (
            text_of(&beta, "cmm-prometheus-tls", "ca.crt"),
            text_of(&beta, "cmm-prometheus-tls", "client.crt"),
            text_of(&beta, "cmm-prometheus-tls", "client.key"),
        ) {
            sender.write_tls(&t, &c, &k);
        }
        tokio::time::sleep(TICK.saturating_sub(tick.elapsed())).await;
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (checks, failures) = watch.await.unwrap();

    // Beta's samples as the receiver stored them: the longest gap between two.
    let q = format!(
        "up{{cluster=\"beta\",job=\"node-exporter\"}}[{}s]",
        RUN.as_secs() + 30
    );
    // Through Grafana's shared datasource, which reads the receiver directly.
    let v = g.proxy_query("cmm_receiver", &q).await.unwrap();
    let stamps: Vec<f64> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[0].as_f64())
        .collect();
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let first = stamps.first().copied().unwrap_or(0.0);
    let last = stamps.last().copied().unwrap_or(0.0);
    let _ = writeln!(
        std::io::stderr(),
        "year: alpha: {checks} health checks, {} failed; beta: {} samples over {:.0}s, longest gap {gap:.1}s",
        failures.len(),
        stamps.len(),
        last - first
    );

    let count = |needle: &str| timeline.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("Secret cmm-ca: issued (rotated"), 1, "{timeline:#?}");
    assert!(
        count("Secret cmm-grafana-client: issued") >= 1,
        "{timeline:#?}"
    );
    assert!(
        count("Deployment cmm-grafana: restarted") >= 2,
        "{timeline:#?}"
    );
    assert!(
        count("alpha: renewed Secret cmm-prometheus-tls") >= 2,
        "{timeline:#?}"
    );
    assert!(
        count("beta: renewed Secret cmm-prometheus-tls") >= 2,
        "{timeline:#?}"
    );
    assert!(count("cmm-receiver-tls") >= 2, "{timeline:#?}");
    assert!(
        failures.is_empty(),
        "Grafana's check of alpha failed: {failures:#?}"
    );
    assert!(
        stamps.len() as f64 > RUN.as_secs_f64() / SCRAPE_SECS * 0.9,
        "{}",
        stamps.len()
    );
    assert!(
        gap <= 2.0 * SCRAPE_SECS + 0.5,
        "a gap of {gap:.1}s in beta's samples"
    );
    let silent: Vec<_> = beta_rows
        .iter()
        .filter(|(_, r)| r["severity"] == "failed")
        .collect();
    assert!(
        silent.is_empty(),
        "beta silent in the fleet table: {silent:#?}"
    );
    assert!(beta_rows.len() > 10);
}
