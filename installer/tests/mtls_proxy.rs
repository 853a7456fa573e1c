//! The authenticated path, end to end on real parts: each_cluster.yaml rendered by the real
//! helm on the real chart, its `cmm-mtls-proxy` ConfigMap run by a real nginx in front of a
//! real Prometheus listening on loopback only (as `listenLocal: true` makes it), with
//! certificates made by cmm-pki, the code the agent issues them with.

mod support;

use cmm_installer::topology::Wiring;
use std::time::{Duration, SystemTime};

use cmm_installer::bootstrap::values_for;
use cmm_installer::topology::Role;
use cmm_pki::{Ca, Leaf, San};
use cmm_testkit::mtls_proxy::{self, RealProxy, TlsFiles};
use support::{render_values, tools};

const CLUSTER: &str = "kr-mum";

/// nginx.conf and run.sh as the chart renders them for release `kr-mum`.
async fn rendered_proxy() -> Option<(String, String)> {
    let (helm, chart) = tools()?;
    let values = values_for(Role::Cluster, None, None, &Wiring::pull(), &[]);
    let r = render_values(&helm, &chart, CLUSTER, &values)
        .await
        .unwrap();
    let cm = r
        .find("ConfigMap", "cmm-mtls-proxy")
        .expect("each_cluster.yaml renders ConfigMap cmm-mtls-proxy");
    let data = &cm["data"];
    Some((
        data["nginx.conf"].as_str().unwrap().to_owned(),
        data["run.sh"].as_str().unwrap().to_owned(),
    ))
}

fn client(trust: &str, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(trust.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// (status, whether the answer carries Prometheus' data) of an instant query through the proxy.
async fn query(c: &reqwest::Client, url: &str) -> Result<(u16, bool), String> {
    let r = c
        .get(format!("{url}/api/v1/query?query=up"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Ok((status, body.contains("\"resultType\"")))
}

struct Fixture {
    ca: Ca,
    server: Leaf,
    grafana: Leaf,
}

fn issue(ca: Ca, now: SystemTime) -> Fixture {
    let sans = [
        San::parse("127.0.0.1").unwrap(),
        San::parse("::1").unwrap(),
        San::parse("cmm-prometheus").unwrap(),
    ];
    Fixture {
        server: ca.issue_server(CLUSTER, &sans, now).unwrap(),
        grafana: ca.issue_client("cmm-grafana", now).unwrap(),
        ca,
    }
}

/// What every test here runs: the rendered proxy (real nginx) in front of a real Prometheus,
/// with certificates from a fresh CMM CA. `None` (skipped, reason printed) when a tool is
/// missing; a failure instead under CMM_REQUIRE_TOOLS=1.
struct Scene {
    f: Fixture,
    proxy: RealProxy,
    prom: cmm_testkit::prometheus::RealPrometheus,
}

async fn scene(test: &str, reload_check_secs: u32) -> Option<Scene> {
    if !mtls_proxy::available(test) {
        return None;
    }
    let (conf, run) = rendered_proxy().await?;
    let prom = cmm_testkit::prometheus::start(test, CLUSTER).await?;
    let now = SystemTime::now();
    let f = issue(Ca::generate(now).unwrap(), now);
    let proxy = RealProxy::start(
        &conf,
        &run,
        &TlsFiles {
            server_cert: &f.server.cert_pem,
            server_key: &f.server.key_pem,
            ca_bundle: f.ca.cert_pem(),
        },
        prom.port(),
        reload_check_secs,
    )
    .await;
    Some(Scene { f, proxy, prom })
}

#[tokio::test]
async fn only_cmms_clients_read_the_metrics() {
    let test = "only_cmms_clients_read_the_metrics";
    let Some(Scene { f, proxy, prom }) = scene(test, 30).await else {
        return;
    };
    let now = SystemTime::now();
    let url = proxy.url();
    let trust = f.ca.cert_pem();

    // Grafana's certificate: the query goes through, and the client verified the server's
    // certificate (for 127.0.0.1) against the CMM CA alone.
    assert_eq!(
        query(&client(trust, Some(&f.grafana)), &url).await,
        Ok((200, true))
    );
    // No client certificate: refused, nothing of Prometheus comes back.
    assert_eq!(query(&client(trust, None), &url).await, Ok((400, false)));
    // A certificate named cmm-grafana, from another CA: refused.
    let other = Ca::generate(now).unwrap();
    let forged = other.issue_client("cmm-grafana", now).unwrap();
    assert_eq!(
        query(&client(trust, Some(&forged)), &url).await,
        Ok((400, false))
    );
    // The CMM CA's, but not a name this cluster admits: refused. Its own self-scrape name is.
    for (name, want) in [
        ("cmm-self-kr-mum", (200, true)),
        ("cmm-self-us-east", (403, false)),
        ("cmm-grafana-x", (403, false)),
    ] {
        let leaf = f.ca.issue_client(name, now).unwrap();
        assert_eq!(
            query(&client(trust, Some(&leaf)), &url).await,
            Ok(want),
            "{name}"
        );
    }
    // A server certificate is no client certificate.
    assert_eq!(
        query(&client(trust, Some(&f.server)), &url).await,
        Ok((400, false))
    );
    // And the client side refuses a proxy whose certificate is not from the CMM CA.
    assert!(query(&client(other.cert_pem(), Some(&f.grafana)), &url)
        .await
        .is_err());
    // Prometheus itself is on loopback only: the proxy is the one door (the pod's port).
    drop(prom);
}

/// An IPv6-only cluster reaches the proxy over IPv6 only, and a burst of large requests must
/// not fill the pod's 16Mi /tmp (the kubelet evicts a pod over its emptyDir's sizeLimit).
#[tokio::test]
async fn the_proxy_answers_over_ipv6_and_spools_nothing_to_its_small_tmp() {
    let test = "the_proxy_answers_over_ipv6_and_spools_nothing_to_its_small_tmp";
    let Some(Scene {
        f,
        proxy,
        prom: _prom,
    }) = scene(test, 30).await
    else {
        return;
    };
    let c = client(f.ca.cert_pem(), Some(&f.grafana));
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        assert_eq!(query(&c, &proxy.url_v6()).await, Ok((200, true)));
    } else if std::env::var("CMM_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{test}: CMM_REQUIRE_TOOLS=1 and this machine has no IPv6");
    } else {
        cmm_testkit::note_skip(test, "its IPv6 part: this machine has no IPv6");
    }
    // Where nginx would spool, a file: a request body written to disk would fail (500).
    proxy.forbid_spooling();
    // Grafana queries with POST; 1 MiB is far over nginx's in-memory body buffer (16k).
    let r = c
        .post(format!("{}/api/v1/query", proxy.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query=up&pad={}", "x".repeat(1 << 20)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    // A long answer streams through as well.
    let r = c
        .get(format!(
            "{}/api/v1/query_range?query=up&start=0&end=100000&step=10",
            proxy.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_renewed_ca_is_taken_without_a_restart_and_both_generations_work_meanwhile() {
    let test = "a_renewed_ca_is_taken_without_a_restart";
    let Some(Scene {
        f: old,
        mut proxy,
        prom: _prom,
    }) = scene(test, 1).await
    else {
        return;
    };
    let now = SystemTime::now();
    let url = proxy.url();
    let new = issue(Ca::generate(now + Duration::from_secs(1)).unwrap(), now);
    let both = format!("{}{}", new.ca.cert_pem(), old.ca.cert_pem());

    // Step 1 of a rotation: the Secret gets the new server certificate and trusts both CAs.
    proxy.write_tls(&TlsFiles {
        server_cert: &new.server.cert_pem,
        server_key: &new.server.key_pem,
        ca_bundle: &both,
    });
    // run.sh notices within its check interval and reloads nginx gracefully.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while query(&client(new.ca.cert_pem(), Some(&new.grafana)), &url).await != Ok((200, true)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not taken within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!proxy.exited(), "nginx was restarted, not reloaded");
    // Meanwhile Grafana's old certificate still works (it is replaced in Grafana after this).
    assert_eq!(
        query(&client(&both, Some(&old.grafana)), &url).await,
        Ok((200, true))
    );

    // Step 2, once Grafana holds the new client certificate: the old CA goes.
    proxy.write_tls(&TlsFiles {
        server_cert: &new.server.cert_pem,
        server_key: &new.server.key_pem,
        ca_bundle: new.ca.cert_pem(),
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while query(&client(&both, Some(&old.grafana)), &url).await != Ok((400, false)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the old CA was still trusted after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        query(&client(new.ca.cert_pem(), Some(&new.grafana)), &url).await,
        Ok((200, true))
    );
    assert!(!proxy.exited());
}

/// Registration gives Grafana the client certificate and the CA in secureJsonData, and
/// Grafana's own health check (the fake runs it for real, through its HTTP client with the
/// datasource's TLS settings) goes through the proxy; without them it cannot.
#[tokio::test]
async fn grafanas_health_check_proves_the_authenticated_path() {
    use cmm_central::prometheus::{ClientIdentity, PrometheusTarget};
    use cmm_central::register::{register, RegisterRequest, RulesMode};
    use cmm_central::retry::RetryPolicy;
    use cmm_central::{Credentials, GrafanaClient, Secret};

    let test = "grafanas_health_check_proves_the_authenticated_path";
    let Some(fake) = cmm_testkit::grafana::FakeGrafana::start_or_skip(test).await else {
        return;
    };
    let Some(Scene {
        f,
        proxy,
        prom: _prom,
    }) = scene(test, 30).await
    else {
        return;
    };
    let retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
    };
    let g = GrafanaClient::new(
        &fake.url,
        Credentials::Token(Secret::new(cmm_testkit::grafana::ADMIN_TOKEN)),
        retry,
    )
    .unwrap();
    let mut req = RegisterRequest {
        cluster: cmm_core::ClusterName::parse(CLUSTER).unwrap(),
        prometheus: PrometheusTarget {
            url: proxy.url(),
            ca_pem: Some(f.ca.cert_pem().to_owned()),
            ..Default::default()
        },
        force: false,
        rules: RulesMode::Skip,
        check_prometheus: false,
        prometheus_retry: retry,
        first_scrape_wait: Duration::ZERO,
    };
    // Without the client certificate the datasource is written but the proxy turns Grafana away.
    let r = register(&g, &req).await.unwrap();
    assert!(!r.health.ok, "{r:?}");
    assert!(r.health.message.contains("400"), "{}", r.health.message);

    req.prometheus.client = Some(ClientIdentity {
        cert_pem: f.grafana.cert_pem.clone(),
        key: Secret::new(f.grafana.key_pem.clone()),
    });
    req.check_prometheus = true;
    let r = register(&g, &req).await.unwrap();
    assert!(r.health.ok, "{}", r.health.message);
    // The agent's own probe took the same path (series carry cluster=kr-mum).
    assert!(
        r.prometheus.as_ref().is_some_and(|p| p.series >= 1),
        "{r:?}"
    );
    let ds = fake
        .datasources()
        .into_iter()
        .find(|d| d["uid"] == "cmm-kr-mum")
        .unwrap();
    assert_eq!(ds["jsonData"]["tlsAuth"], true);
    assert_eq!(ds["jsonData"]["tlsAuthWithCACert"], true);
    // Secrets are stored, never shown back (Grafana reports only that they are set).
    let shown = serde_json::to_string(&ds).unwrap();
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

/// The self-scrape as the operator turns the rendered ServiceMonitor endpoint into Prometheus
/// configuration (v0.78.1 pkg/prometheus/promcfg.go, addSafeTLStoYaml: `ca_file`, `cert_file`,
/// `key_file` from the Secret keys it mounts, `server_name` from serverName; the scheme as
/// given), run by a real Prometheus against the proxy: the job is up. The same job without the
/// client certificate is down: the proxy is not open to scrapers in general.
#[tokio::test]
async fn the_self_scrape_the_operator_generates_passes_the_proxy() {
    let test = "the_self_scrape_the_operator_generates_passes_the_proxy";
    let Some((helm, chart)) = tools() else {
        return;
    };
    let values = values_for(Role::Cluster, None, None, &Wiring::pull(), &[]);
    let r = render_values(&helm, &chart, CLUSTER, &values)
        .await
        .unwrap();
    let sm = r
        .find("ServiceMonitor", cmm_core::naming::PROMETHEUS_SERVICE)
        .expect("the self-scrape ServiceMonitor");
    let endpoint = sm["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["port"] == "http-web")
        .expect("the endpoint of the web port")
        .clone();
    let Some(Scene {
        f,
        proxy,
        prom: _prom,
    }) = scene(test, 30).await
    else {
        return;
    };
    let now = SystemTime::now();
    let own =
        f.ca.issue_client(&cmm_installer::tls::self_client_cn(CLUSTER), now)
            .unwrap();

    // The files the operator mounts, by the Secret keys the endpoint names.
    let dir = tempfile::tempdir().unwrap();
    let secret_data = [
        ("ca.crt", f.ca.cert_pem().to_owned()),
        ("client.crt", own.cert_pem.clone()),
        ("client.key", own.key_pem.clone()),
    ];
    let tls = &endpoint["tlsConfig"];
    let file_of = |selector: &serde_json::Value| {
        assert_eq!(selector["name"], cmm_core::naming::PROMETHEUS_TLS_SECRET);
        let key = selector["key"].as_str().unwrap();
        let (_, content) = secret_data
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("the Secret has no key {key}"));
        let path = dir.path().join(key);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let ca_file = file_of(&tls["ca"]["secret"]);
    let cert_file = file_of(&tls["cert"]["secret"]);
    let key_file = file_of(&tls["keySecret"]);
    let server_name = tls["serverName"].as_str().unwrap();
    let scheme = endpoint["scheme"].as_str().unwrap();
    let target = format!("127.0.0.1:{}", proxy.port);
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
         - job_name: self\n  scheme: {scheme}\n  static_configs: [{{targets: ['{target}']}}]\n  \
         tls_config: {{ca_file: '{ca_file}', cert_file: '{cert_file}', key_file: '{key_file}', server_name: {server_name}}}\n\
         - job_name: no-cert\n  scheme: {scheme}\n  static_configs: [{{targets: ['{target}']}}]\n  \
         tls_config: {{ca_file: '{ca_file}', server_name: {server_name}}}\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), &config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(cmm_testkit::prometheus::PROMETHEUS)
        .current_dir(dir.path())
        .arg("--config.file=prometheus.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _scraper = cmm_testkit::prometheus::Proc::new(child);
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let up = loop {
        let v: Option<serde_json::Value> = async {
            http.get(format!("http://127.0.0.1:{port}/api/v1/query?query=up"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        let result = v
            .as_ref()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default();
        if result.len() == 2 {
            break result;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scraper did not report both jobs within 45 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let of = |job: &str| {
        up.iter()
            .find(|s| s["metric"]["job"] == job)
            .map(|s| s["value"][1].as_str().unwrap().to_owned())
    };
    assert_eq!(of("self").as_deref(), Some("1"), "{up:?}");
    assert_eq!(of("no-cert").as_deref(), Some("0"), "{up:?}");
}

/// The operator's probes with `listenLocal` are exec actions inside the pod against
/// `http://localhost:9090` (v0.78.1 pkg/prometheus/promcfg.go `buildProbeHandler`, the command
/// from pkg/operator/prober.go `ExecAction`): run as written against the real Prometheus on
/// loopback, they pass. A kubelet-style HTTPS probe with no client certificate — what the
/// probes would become with `web.tlsConfig` and mandatory client auth — is refused by the
/// authenticating side, which is why that route was not taken (docs/security.md).
#[tokio::test]
async fn the_operators_exec_probes_pass_on_loopback_and_a_certless_https_probe_is_refused() {
    let test = "the_operators_exec_probes_pass_on_loopback";
    let Some(Scene { f: _f, proxy, prom }) = scene(test, 30).await else {
        return;
    };
    let probe = |url: &str| {
        let cmd = format!(
            r#"if [ -x "$(command -v curl)" ]; then exec curl --fail {url}; elif [ -x "$(command -v wget)" ]; then exec wget -q -O /dev/null {url}; else exit 1; fi"#
        );
        std::process::Command::new("sh")
            .args(["-c", &cmd])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    for path in ["/-/ready", "/-/healthy"] {
        let url = format!("http://localhost:{}{path}", prom.port());
        assert!(probe(&url), "the operator's probe of {url} failed");
    }
    let certless = std::process::Command::new("curl")
        .args(["--fail", "--silent", "--insecure"])
        .arg(format!("{}/-/ready", proxy.url()))
        .status();
    if let Ok(status) = certless {
        assert!(
            !status.success(),
            "a probe without a client certificate got through"
        );
    }
}
