//! The endpoint check and Grafana's health check against a real Prometheus + node_exporter
//! (Debian packages), scraping with CMM's `cluster=<name>` relabeling.

use std::time::Duration;

use cmm_central::prometheus::PrometheusTarget;
use cmm_central::register::RulesMode;
use cmm_central::retry::RetryPolicy;
use cmm_central::{
    register, Credentials, ErrorClass, GrafanaClient, PrometheusProbe, RegisterRequest, Secret,
};
use cmm_core::ClusterName;
use cmm_testkit::grafana::{FakeGrafana, ADMIN_TOKEN};

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(3),
    }
}

fn admin_client(fake: &FakeGrafana) -> GrafanaClient {
    GrafanaClient::new(
        &fake.url,
        Credentials::Token(Secret::new(ADMIN_TOKEN)),
        fast(),
    )
    .unwrap()
}

fn req(cluster: &str, url: &str) -> RegisterRequest {
    RegisterRequest {
        cluster: ClusterName::parse(cluster).unwrap(),
        prometheus: PrometheusTarget {
            url: url.into(),
            ..Default::default()
        },
        force: false,
        rules: RulesMode::Provisioned,
        check_prometheus: true,
        prometheus_retry: fast(),
        first_scrape_wait: std::time::Duration::ZERO,
    }
}

#[tokio::test]
async fn a_labelled_prometheus_registers_and_grafana_reports_it_healthy() {
    let Some(prom) = cmm_testkit::prometheus::start("healthy", "kr-mum").await else {
        return;
    };
    let Some(fake) = FakeGrafana::start_or_skip("healthy").await else {
        return;
    };
    let g = admin_client(&fake);
    let r = register(&g, &req("kr-mum", &prom.url)).await.unwrap();
    let p = r.prometheus.unwrap();
    assert!(p.series >= 2, "{p:?}");
    assert!(p.targets_up >= 2, "{p:?}");
    assert!(r.health.ok, "{:?}", r.health);
    assert_eq!(r.health.message, "Successfully queried the Prometheus API.");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn another_clusters_prometheus_is_refused_before_grafana_is_touched() {
    let Some(prom) = cmm_testkit::prometheus::start("wrong-label", "kr-mum").await else {
        return;
    };
    let Some(fake) = FakeGrafana::start_or_skip("wrong-label").await else {
        return;
    };
    let g = admin_client(&fake);
    let err = register(&g, &req("wai-eks", &prom.url)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::PrometheusCheck);
    let text = err.to_string();
    assert!(
        text.contains("cluster=\"wai-eks\"") && text.contains("cluster=\"kr-mum\""),
        "{text}"
    );
    assert!(
        fake.requests().is_empty(),
        "Grafana was contacted: {:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_a_prometheus_check_failure() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let probe = PrometheusProbe::new(
        PrometheusTarget {
            url,
            ..Default::default()
        },
        fast(),
    )
    .unwrap();
    let err = probe
        .check(&ClusterName::parse("kr-mum").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::PrometheusCheck);
    assert!(
        err.to_string()
            .contains("did not answer after 2 attempt(s)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_prometheus_behind_tls_and_basic_auth_registers_with_its_ca_and_password() {
    use cmm_testkit::prometheus::{start_with, Options, BASIC_PASSWORD, BASIC_USER};
    let opts = Options {
        tls: true,
        basic_auth: true,
        ..Default::default()
    };
    let Some(prom) = start_with("tls-auth", "kr-mum", opts).await else {
        return;
    };
    let Some(fake) = FakeGrafana::start_or_skip("tls-auth").await else {
        return;
    };
    let g = admin_client(&fake);
    let cluster = ClusterName::parse("kr-mum").unwrap();
    let secured = PrometheusTarget {
        url: prom.url.clone(),
        basic_auth: Some((BASIC_USER.into(), Secret::new(BASIC_PASSWORD))),
        ca_pem: prom.ca_pem.clone(),
        tls_skip_verify: false,
        client: None,
    };

    // Without the CA the certificate is not trusted; with a wrong password Prometheus says 401.
    let no_ca = PrometheusTarget {
        ca_pem: None,
        ..secured.clone()
    };
    let e = PrometheusProbe::new(no_ca, fast())
        .unwrap()
        .check(&cluster)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::PrometheusCheck, "{e}");
    assert!(
        e.to_string().contains("certificate"),
        "the cause is named: {e}"
    );
    let wrong = PrometheusTarget {
        basic_auth: Some((BASIC_USER.into(), Secret::new("nope"))),
        ..secured.clone()
    };
    let e = PrometheusProbe::new(wrong, fast())
        .unwrap()
        .check(&cluster)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("refused the credentials (401)"),
        "{e}"
    );

    let mut r = req("kr-mum", &prom.url);
    r.prometheus = secured;
    let report = register(&g, &r).await.unwrap();
    assert!(report.prometheus.unwrap().series >= 2);
    // Grafana's own check used the CA and the password it was given in secureJsonData.
    assert!(report.health.ok, "{:?}", report.health);
    let secrets = fake.datasource_secrets("cmm-kr-mum");
    assert_eq!(secrets["basicAuthPassword"], BASIC_PASSWORD);
    assert!(secrets["tlsCACert"].contains("BEGIN CERTIFICATE"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// The Grafana client's CA option against the TLS Prometheus (a private CA, as most central
/// Grafanas behind a company CA): with the CA the handshake succeeds and Prometheus answers
/// (404 to /api/health); without it the certificate is refused as a setting to fix (exit 2),
/// not an unreachable Grafana. A self-signed one: grafana_trust.rs.
#[tokio::test]
async fn the_grafana_client_trusts_a_private_ca_only_when_given_it() {
    use cmm_testkit::prometheus::{start_with, Options};
    let opts = Options {
        tls: true,
        ..Default::default()
    };
    let Some(server) = start_with("grafana-ca", "kr-mum", opts).await else {
        return;
    };
    let creds = || Credentials::Token(Secret::new("t"));
    let plain = GrafanaClient::new(&server.url, creds(), fast()).unwrap();
    let e = plain.health().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Usage, "{e}");
    assert!(
        e.to_string().contains("does not trust") && e.to_string().contains("grafana-ca-file"),
        "{e}"
    );
    let trusting =
        GrafanaClient::with_ca(&server.url, creds(), fast(), server.ca_pem.as_deref()).unwrap();
    let e = trusting.health().await.unwrap_err();
    assert!(
        matches!(e, cmm_central::Error::GrafanaStatus { status: 404, .. }),
        "{e:?}"
    );
    let bad = GrafanaClient::with_ca(&server.url, creds(), fast(), Some("not a pem")).unwrap_err();
    assert!(bad.to_string().starts_with("grafana-ca-file:"), "{bad}");
}
