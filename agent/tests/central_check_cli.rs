//! `cmm-agent check --role central` end to end: the real binary against the fake Kubernetes API
//! (the central cluster) and the fake Grafana, whose datasource health check and proxy really
//! dial each cluster with the datasource's own client certificate: here a real nginx running the
//! rendered mutual-TLS proxy in front of a real Prometheus (cluster alpha), and a dead address
//! (cluster beta).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::process::Output;
use std::time::{Duration, SystemTime};

use cmm_central::prometheus::{ClientIdentity, PrometheusTarget};
use cmm_central::register::{RegisterRequest, RulesMode};
use cmm_central::retry::RetryPolicy;
use cmm_central::{Credentials, GrafanaClient, Secret};
use cmm_core::ClusterName;
use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::kube::FakeKube;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");
const DAY: u64 = 86_400;

async fn agent(args: &[&str], config: &str) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CMM_CONFIG", config)
        .output()
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn json_run(args: &[&str], config: &str) -> (Output, Value) {
    let o = agent(args, config).await;
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    (o, v)
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id} in {report:#}"))
}

fn row<'a>(report: &'a Value, cluster: &str) -> &'a Value {
    report["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == cluster)
        .unwrap_or_else(|| panic!("no row {cluster} in {report:#}"))
}

fn release_record(plan: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.monitor.v1", "namespace": "monitor",
                     "labels": {"name": "monitor", "owner": "helm", "status": "deployed",
                                "version": "1", "modifiedAt": "1700000000", "cmm-plan": plan}},
        "data": {"release": "SDRzSUFBQUFBQUFBLzZxdUJRUUFBUC8vbzB4dXRnQUFBQT09"}})
}

fn grafana_deployment(created: SystemTime) -> Value {
    let created = jiff::Timestamp::try_from(created)
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cmm-grafana", "namespace": "monitor", "generation": 1,
                     "creationTimestamp": created.to_string()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "grafana"}},
                              "spec": {"containers": [{"name": "grafana", "image": "grafana"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "readyReplicas": 1, "availableReplicas": 1}})
}

fn secret_text(kube: &FakeKube, name: &str, key: &str) -> String {
    let s = kube
        .get("/api/v1/namespaces/monitor/secrets", name)
        .unwrap_or_else(|| panic!("no Secret {name}"));
    cmm_testkit::pki::secret_text(&s, key).unwrap()
}

/// What both central tests start from: cluster alpha behind the rendered mutual-TLS proxy (real
/// nginx, real Prometheus) registered with Grafana's certificate of `material`, cluster beta at
/// an address nothing answers, the central cluster with `material`'s Secrets, Grafana's
/// Deployment started `grafana_started` and the release record of the plan these settings make.
struct World {
    _prom: cmm_testkit::prometheus::RealPrometheus,
    _proxy: cmm_testkit::mtls_proxy::RealProxy,
    _dir: tempfile::TempDir,
    central: FakeKube,
    grafana: cmm_testkit::grafana::FakeGrafana,
    g: GrafanaClient,
    material: cmm_testkit::pki::CentralMaterial,
    config: String,
}

async fn world(
    test: &str,
    material: cmm_testkit::pki::CentralMaterial,
    grafana_started: SystemTime,
) -> Option<World> {
    let (helm, chart) = (support::helm()?, support::chart()?);
    if !cmm_testkit::mtls_proxy::available(test) {
        return None;
    }
    let prom = cmm_testkit::prometheus::start(test, "alpha").await?;
    let grafana = cmm_testkit::grafana::FakeGrafana::start_or_skip(test).await?;
    let now = SystemTime::now();
    let sans = [
        cmm_pki::San::parse("cmm-prometheus").unwrap(),
        cmm_pki::San::parse("127.0.0.1").unwrap(),
    ];
    let server = material.ca.issue_server("alpha", &sans, now).unwrap();
    let (conf, run_sh) = support::rendered_proxy(&helm, &chart);
    let proxy = cmm_testkit::mtls_proxy::RealProxy::start(
        &conf,
        &run_sh,
        &cmm_testkit::mtls_proxy::TlsFiles {
            server_cert: &server.cert_pem,
            server_key: &server.key_pem,
            ca_bundle: material.ca.cert_pem(),
        },
        prom.port(),
        30,
    )
    .await;

    // The central cluster: its Secrets, Grafana (started after the certificates were made),
    // the alerting addresses, the release record.
    let central = FakeKube::start().await;
    central.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    for s in material.secrets("monitor") {
        central.insert(s);
    }
    central.insert(cmm_testkit::pki::secret(
        "monitor",
        "cmm-grafana-alerting",
        &[
            ("CMM_ALERT_EMAIL_TO", "ops@example.org"),
            (
                "CMM_TEAMS_WEBHOOK_URL",
                "https://example.webhook.office.com/x",
            ),
        ],
    ));
    central.insert(grafana_deployment(grafana_started));
    central.insert(cmm_testkit::scene::node("n1", &[]));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = central.write_kubeconfig(dir.path(), "central");
    let token = dir.path().join("grafana-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"monitor\"\nrole = \"central\"\nkubeconfig = \"{}\"\nhelm = \"{}\"\n\
             chart = \"{}\"\ngrafana-url = \"{}\"\ngrafana-token-file = \"{}\"\n\
             grafana-retries = 1\nhost-proc-version = \"/nonexistent\"\n",
            kubeconfig.display(),
            helm.display(),
            chart.display(),
            grafana.url,
            token.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (_, plan) = json_run(&["bootstrap", "--dry-run", "--output", "json"], &config).await;
    central.insert(release_record(plan["plan_digest"].as_str().unwrap()));

    // Two clusters registered as their agents would: alpha over mutual TLS with Grafana's
    // certificate of the day, beta at an address nothing answers.
    let g = GrafanaClient::new(
        &grafana.url,
        Credentials::Token(Secret::new(ADMIN_TOKEN)),
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
    )
    .unwrap();
    let register = |name: &str, target: PrometheusTarget| RegisterRequest {
        cluster: ClusterName::parse(name).unwrap(),
        prometheus: target,
        force: false,
        rules: RulesMode::Provisioned,
        check_prometheus: false,
        prometheus_retry: RetryPolicy::default(),
        first_scrape_wait: Duration::ZERO,
    };
    let alpha = PrometheusTarget {
        url: proxy.url(),
        basic_auth: None,
        ca_pem: Some(material.ca.cert_pem().to_owned()),
        tls_skip_verify: false,
        client: Some(ClientIdentity {
            cert_pem: material.grafana.cert_pem.clone(),
            key: Secret::new(material.grafana.key_pem.clone()),
        }),
    };
    let dead = cmm_testkit::prometheus::free_port();
    let beta = PrometheusTarget {
        url: format!("http://127.0.0.1:{dead}"),
        basic_auth: None,
        ca_pem: None,
        tls_skip_verify: false,
        client: None,
    };
    cmm_central::register(&g, &register("alpha", alpha))
        .await
        .unwrap();
    cmm_central::register(&g, &register("beta", beta))
        .await
        .unwrap();
    grafana.set_contact_points(vec![
        json!({"uid": "smtp", "name": "ops-mail", "type": "email",
        "settings": {"addresses": "ops@example.org"}}),
    ]);
    // What a registration that lost a race leaves: the fleet rule without beta.
    let lost = cmm_central::rules::render_fleet(
        &[ClusterName::parse("alpha").unwrap()],
        grafana.url.as_str(),
    )
    .unwrap();
    g.put_rule_group(
        cmm_central::rules::FLEET_FOLDER_UID,
        cmm_central::rules::FLEET_GROUP,
        &lost,
        false,
    )
    .await
    .unwrap();

    Some(World {
        _prom: prom,
        _proxy: proxy,
        _dir: dir,
        central,
        grafana,
        g,
        material,
        config,
    })
}

/// A year's end in one run: Grafana's client certificate is 25 days from its end, one
/// registration lost its place in the fleet rule, one cluster is unreachable. The central check
/// shows each in its table and findings; `--repair` renews the certificate, hands it to the
/// mutual-TLS datasource through the API, restarts Grafana (it reads the certificate from its
/// environment at start), rebuilds the fleet rule — and Grafana's own check of cluster alpha,
/// now presenting the new certificate to the real proxy, still passes.
#[tokio::test]
async fn the_central_check_shows_the_fleet_and_repair_renews_without_a_dark_cluster() {
    let now = SystemTime::now();
    // The central material as bootstrap made it 340 days ago: 25 days left on Grafana's
    // certificate, inside the default 30-day window; Grafana started a day after.
    let issued = now - Duration::from_secs(340 * DAY);
    let material = cmm_testkit::pki::CentralMaterial::at(issued);
    let Some(w) = world("central-check", material, issued + Duration::from_secs(DAY)).await else {
        return;
    };
    let World {
        central,
        grafana,
        g,
        material,
        config,
        ..
    } = &w;
    let config = config.as_str();
    // 1. The check: one row per cluster, each defect a finding; nothing written.
    let writes = central.writes().len();
    let (o, report) = json_run(&["check", "--output", "json"], config).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(report["role"], "central");
    let a = row(&report, "alpha");
    assert_eq!(a["severity"], "ok", "{report:#}");
    assert_eq!(a["datasource"], "ok");
    assert!(a["newest_sample_seconds"].as_f64().unwrap() < 120.0, "{a}");
    // Read from the certificate alpha's real proxy presents (issued today for a year).
    assert!(
        (364..=365).contains(&a["cert_days_left"].as_i64().unwrap()),
        "{a}"
    );
    let alpha_rules = grafana
        .rule_uids("cmm-alpha", cmm_central::rules::GROUP)
        .len();
    assert!(alpha_rules > 0);
    assert_eq!(
        a["rules"],
        format!("{alpha_rules} rule(s), 0 in error"),
        "{a}"
    );
    let b = row(&report, "beta");
    assert_eq!(b["severity"], "failed", "{report:#}");
    assert_ne!(b["datasource"], "ok");
    let rule = finding(&report, "fleet.rule");
    assert_eq!(rule["severity"], "failed", "{report:#}");
    assert!(rule["evidence"]
        .to_string()
        .contains("does not count registered beta"));
    let tls = finding(&report, "tls.central");
    assert_eq!(tls["severity"], "warning", "{report:#}");
    assert!(
        tls["evidence"]
            .to_string()
            .contains("Grafana's client certificate: to renew: expires in 24 day(s)"),
        "{tls}"
    );
    assert_eq!(
        finding(&report, "tls.consumer")["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "release.deployed")["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "grafana.health")["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        central.writes().len(),
        writes,
        "check without --repair wrote"
    );

    // The same as a person reads it: the table, the worst row first.
    let o = agent(&["check"], config).await;
    let out = String::from_utf8_lossy(&o.stdout);
    if std::env::var_os("CMM_SHOW").is_some() {
        eprintln!("{out}");
    }
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("cluster "))
        .take(3)
        .collect();
    assert!(
        table[1].trim_start().starts_with("beta") && table[1].contains("FAILED"),
        "{out}"
    );
    assert!(
        table[2].trim_start().starts_with("alpha") && table[2].contains(" ok "),
        "{out}"
    );

    // 2. --repair: renewed, handed over, restarted, rebuilt; alpha never goes dark.
    let old_cert = secret_text(central, "cmm-grafana-client", "tls.crt");
    let (o, report) = json_run(&["check", "--repair", "--output", "json"], config).await;
    let repaired = report["repaired"].to_string();
    assert!(
        repaired.contains("Secret cmm-grafana-client: issued"),
        "{report:#}"
    );
    assert!(
        repaired.contains("datasource cmm-alpha: given Grafana's current client certificate"),
        "{report:#}"
    );
    assert!(
        repaired.contains("Deployment cmm-grafana: restarted"),
        "{report:#}"
    );
    assert!(
        repaired.contains("fleet rule rebuilt: counts alpha, beta"),
        "{report:#}"
    );
    let new_cert = secret_text(central, "cmm-grafana-client", "tls.crt");
    assert_ne!(new_cert, old_cert);
    assert_eq!(
        finding(&report, "tls.central")["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "tls.consumer")["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "fleet.rule")["severity"],
        "ok",
        "{report:#}"
    );
    // Grafana's health check of alpha now presents the new certificate to the real nginx.
    assert_eq!(row(&report, "alpha")["severity"], "ok", "{report:#}");
    let ds = g.datasource_by_uid("cmm-alpha").await.unwrap().unwrap();
    let want = cmm_central::register::tls_identity(&new_cert, material.ca.cert_pem()).unwrap();
    assert_eq!(ds.json_data["cmmTlsIdentity"], want.as_str());
    let d = central
        .get(
            "/apis/apps/v1/namespaces/monitor/deployments",
            "cmm-grafana",
        )
        .unwrap();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d}"
    );
    assert!(
        !o.stdout.windows(11).any(|w| w == b"PRIVATE KEY"),
        "a key in the report"
    );
    let lease = central
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/monitor/leases",
            "cmm-agent-monitor",
        )
        .expect("the repair took the run lock");
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");

    // 3. Beta deregistered: healthy, and a second repair has nothing to do.
    cmm_central::deregister(g, &ClusterName::parse("beta").unwrap())
        .await
        .unwrap();
    let (o, report) = json_run(&["check", "--repair", "--output", "json"], config).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report["repaired"], json!([]), "{report:#}");
    assert_eq!(report["fleet"].as_array().unwrap().len(), 1);
}

/// A rollout that does not finish is reported, waited for no longer than the timeout, and
/// nothing after it is restarted.
#[tokio::test]
async fn a_restart_that_does_not_roll_out_is_bounded_and_named() {
    let central = FakeKube::start().await;
    central.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    let material = cmm_testkit::pki::CentralMaterial::new();
    for s in material.secrets("monitor") {
        central.insert(s);
    }
    // Grafana started before the certificates it should present.
    central.insert(grafana_deployment(
        SystemTime::now() - Duration::from_secs(30 * DAY),
    ));
    central.insert(release_record("a-plan-of-another-day"));
    central.pause_controllers(true);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = central.write_kubeconfig(dir.path(), "central");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"monitor\"\nrole = \"central\"\nkubeconfig = \"{}\"\n\
             host-proc-version = \"/nonexistent\"\ntimeout = \"3s\"\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let (_, report) = json_run(&["check", "--output", "json"], &config).await;
    let c = finding(&report, "tls.consumer");
    assert_eq!(c["severity"], "warning", "{report:#}");
    assert!(c["evidence"]
        .to_string()
        .contains("still presents or trusts the old ones"));
    let started = std::time::Instant::now();
    let (o, report) = json_run(&["check", "--repair", "--output", "json"], &config).await;
    assert!(started.elapsed() < Duration::from_secs(30), "{}", text(&o));
    assert!(
        report["repaired"]
            .to_string()
            .contains("Deployment cmm-grafana: restart did not finish"),
        "{report:#}"
    );
    assert_eq!(o.status.code(), Some(1), "degraded: {}", text(&o));
}

/// A CA rotation from the central side: the CA is inside its rotation window (a leaf's year plus
/// the renewal window before its end). `--repair` makes the next CA and keeps the old one
/// trusted; Grafana keeps its certificate of the old CA (every cluster's proxy still trusts only
/// that one), the datasource is given the trust bundle of both, Grafana restarts to read it —
/// and Grafana's check of alpha, whose proxy knows only the old CA, passes throughout. Each
/// cluster moves to the new CA on its own next `check --repair`.
#[tokio::test]
async fn a_ca_rotation_keeps_every_cluster_reachable_while_both_cas_are_trusted() {
    let now = SystemTime::now();
    let born = now - Duration::from_secs((cmm_pki::CA_VALIDITY_DAYS as u64 - 360) * DAY);
    let ca = cmm_pki::Ca::generate(born).unwrap();
    let grafana_cert = ca
        .issue_client(
            cmm_core::naming::GRAFANA_CLIENT_CN,
            now - Duration::from_secs(10 * DAY),
        )
        .unwrap();
    let material = cmm_testkit::pki::CentralMaterial {
        ca,
        grafana: grafana_cert,
    };
    let Some(w) = world(
        "central-rotation",
        material,
        now - Duration::from_secs(9 * DAY),
    )
    .await
    else {
        return;
    };
    let (o, report) = json_run(&["check", "--output", "json"], &w.config).await;
    let tls = finding(&report, "tls.central");
    assert_eq!(tls["severity"], "warning", "{}", text(&o));
    assert!(
        tls["evidence"]
            .to_string()
            .contains("CA: to renew: 359 day(s) left, inside the rotation window"),
        "{tls}"
    );
    let old_ca = w.material.ca.cert_pem().to_owned();
    let old_grafana = secret_text(&w.central, "cmm-grafana-client", "tls.crt");

    let (o, report) = json_run(&["check", "--repair", "--output", "json"], &w.config).await;
    let repaired = report["repaired"].to_string();
    assert!(
        repaired.contains("Secret cmm-ca: issued (rotated"),
        "{}",
        text(&o)
    );
    assert!(
        repaired.contains("datasource cmm-alpha: given"),
        "{report:#}"
    );
    assert!(
        repaired.contains("Deployment cmm-grafana: restarted"),
        "{report:#}"
    );
    let new_ca = secret_text(&w.central, "cmm-ca", "tls.crt");
    assert_ne!(new_ca, old_ca);
    assert_eq!(
        secret_text(&w.central, "cmm-ca", "previous.crt").trim(),
        old_ca.trim()
    );
    let trust = secret_text(&w.central, "cmm-ca", "trust.crt");
    assert!(trust.contains(new_ca.trim()) && trust.contains(old_ca.trim()));
    // Grafana's certificate stays the old CA's until its own renewal window.
    assert_eq!(
        secret_text(&w.central, "cmm-grafana-client", "tls.crt"),
        old_grafana
    );
    let ds = w.g.datasource_by_uid("cmm-alpha").await.unwrap().unwrap();
    let want = cmm_central::register::tls_identity(&old_grafana, &trust).unwrap();
    assert_eq!(ds.json_data["cmmTlsIdentity"], want.as_str());
    // No gap: Grafana's check of alpha passes right after the rotation.
    assert_eq!(row(&report, "alpha")["severity"], "ok", "{report:#}");
    let tls = finding(&report, "tls.central");
    assert_eq!(tls["severity"], "ok", "{report:#}");
    assert!(
        tls["evidence"]
            .to_string()
            .contains("a CA rotation is under way"),
        "{tls}"
    );
    assert_eq!(
        finding(&report, "tls.consumer")["severity"],
        "ok",
        "{report:#}"
    );
}
