//! The certificates' life through the fake API server's Secrets (cmm-testkit; Secrets are
//! stored and updated with resourceVersion as the API server does): issue, keep, renew in the
//! window, and a CA rotation in which, at every step, Grafana's client certificate is trusted
//! by every cluster and every cluster's server certificate by Grafana. Checked with webpki.

use std::time::{Duration, SystemTime};

use cmm_core::naming::PROMETHEUS_TLS_SECRET;
use cmm_installer::kube::{connect, Connected, KubeTarget};
use cmm_installer::tls::{
    decide_cluster, ensure_central, ensure_cluster, read_cluster, CentralPki, TlsAction,
};
use cmm_pki::{verify, San, Usage};
use cmm_testkit::kube::FakeKube;
use cmm_testkit::pki::secret_text;

const DAY: Duration = Duration::from_secs(86_400);
const WINDOW: Duration = Duration::from_secs(30 * 86_400);
const SECRETS: &str = "/api/v1/namespaces/monitor/secrets";

async fn conn(fake: &FakeKube, dir: &std::path::Path) -> Connected {
    let kc = fake.write_kubeconfig(dir, "c");
    connect(&KubeTarget {
        kubeconfig: Some(kc),
        context: None,
        central: false,
    })
    .await
    .unwrap()
}

fn sans() -> Vec<San> {
    ["cmm-prometheus", "10.0.0.5"]
        .iter()
        .map(|s| San::parse(s).unwrap())
        .collect()
}

/// The cluster's Secret as its proxy sees it: (server certificate, trusted CAs).
fn proxy_view(fake: &FakeKube) -> (String, String) {
    let s = fake.get(SECRETS, "cmm-prometheus-tls").unwrap();
    (
        secret_text(&s, "tls.crt").unwrap(),
        secret_text(&s, "ca.crt").unwrap(),
    )
}

/// Grafana and the cluster trust each other at `now`: the gap a rotation must never open.
fn both_ways(central: &CentralPki, cluster: &FakeKube, now: SystemTime, when: &str) {
    let (server, proxy_trust) = proxy_view(cluster);
    verify(
        &central.grafana.cert_pem,
        &proxy_trust,
        Usage::Client,
        None,
        now,
    )
    .unwrap_or_else(|e| panic!("{when}: the proxy refuses Grafana: {e}"));
    let name = San::parse("10.0.0.5").unwrap();
    verify(&server, &central.trust_pem, Usage::Server, Some(&name), now)
        .unwrap_or_else(|e| panic!("{when}: Grafana refuses the proxy: {e}"));
}

#[tokio::test]
async fn a_ca_rotation_never_leaves_grafana_and_a_cluster_distrusting_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (central_fake, cluster_fake) = (FakeKube::start().await, FakeKube::start().await);
    let cdir = dir.path().join("central");
    std::fs::create_dir_all(&cdir).unwrap();
    let central = conn(&central_fake, &cdir).await;
    let cluster = conn(&cluster_fake, dir.path()).await;
    let ns = "monitor";
    let t0 = SystemTime::now() - 3200 * DAY;

    // Day 0: everything is made.
    let (pki, actions) = ensure_central(&central, ns, t0, WINDOW).await.unwrap();
    assert!(
        actions
            .iter()
            .all(|(_, a)| matches!(a, TlsAction::Issue { .. })),
        "{actions:?}"
    );
    let a = ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        t0,
        WINDOW,
    )
    .await
    .unwrap();
    assert!(matches!(a, TlsAction::Issue { .. }), "{a:?}");
    both_ways(&pki, &cluster_fake, t0, "day 0");

    // Day 1: kept, nothing written.
    let writes = (central_fake.writes().len(), cluster_fake.writes().len());
    let t1 = t0 + DAY;
    let (pki, actions) = ensure_central(&central, ns, t1, WINDOW).await.unwrap();
    assert!(
        actions
            .iter()
            .all(|(_, a)| matches!(a, TlsAction::Keep { .. })),
        "{actions:?}"
    );
    let a = ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        t1,
        WINDOW,
    )
    .await
    .unwrap();
    assert_eq!(a, TlsAction::Keep { days_left: 363 });
    assert_eq!(
        writes,
        (central_fake.writes().len(), cluster_fake.writes().len())
    );

    // Inside the window (day 340 of 365): renewed, same CA.
    let t = t0 + 340 * DAY;
    let a = ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        t,
        WINDOW,
    )
    .await
    .unwrap();
    assert!(
        matches!(&a, TlsAction::Issue { why } if why.contains("inside the renewal window")),
        "{a:?}"
    );
    // A new node address is a reason too.
    let mut more = sans();
    more.push(San::parse("10.0.0.9").unwrap());
    let a = ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &more,
        t,
        WINDOW,
    )
    .await
    .unwrap();
    assert!(
        matches!(&a, TlsAction::Issue { why } if why.contains("10.0.0.9")),
        "{a:?}"
    );

    // Ten days before the rotation window: Grafana's and the cluster's leaves renewed as usual.
    let ca_end = t0 + 3650 * DAY;
    let before = ca_end - 405 * DAY;
    let (pki, _) = ensure_central(&central, ns, before, WINDOW).await.unwrap();
    ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        before,
        WINDOW,
    )
    .await
    .unwrap();
    both_ways(&pki, &cluster_fake, before, "before the rotation");
    let grafana_before = pki.grafana.cert_pem.clone();

    // The rotation: the new CA signs, the old one stays trusted; Grafana keeps its certificate.
    let r = ca_end - 394 * DAY;
    let (pki, actions) = ensure_central(&central, ns, r, WINDOW).await.unwrap();
    let ca_action = &actions
        .iter()
        .find(|(s, _)| s == "Secret cmm-ca")
        .unwrap()
        .1;
    assert!(
        matches!(ca_action, TlsAction::Issue { why } if why.starts_with("rotated")),
        "{actions:?}"
    );
    assert_eq!(
        pki.grafana.cert_pem, grafana_before,
        "Grafana's certificate changed too early"
    );
    assert_eq!(
        cmm_pki::inspect_bundle(&pki.trust_pem, "trust")
            .unwrap()
            .len(),
        2
    );
    let stored = central_fake.get(SECRETS, "cmm-ca").unwrap();
    assert!(secret_text(&stored, "previous.crt").is_some());
    // trust.crt (Grafana's CMM_TLS_CA on the envsubst route) is the same bundle.
    assert_eq!(
        secret_text(&stored, "trust.crt").unwrap().trim(),
        pki.trust_pem.trim()
    );
    // A cluster that has not run since: still fine both ways.
    both_ways(&pki, &cluster_fake, r, "rotated, cluster not yet repaired");
    // Its next run moves it to the new CA and trusts both.
    let a = ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        r,
        WINDOW,
    )
    .await
    .unwrap();
    assert!(
        matches!(&a, TlsAction::Issue { why } if why.contains("trusted CAs changed")),
        "{a:?}"
    );
    both_ways(
        &pki,
        &cluster_fake,
        r,
        "cluster repaired after the rotation",
    );
    let state = read_cluster(&cluster, ns, PROMETHEUS_TLS_SECRET)
        .await
        .unwrap();
    assert_eq!(
        decide_cluster(&state, &pki.trust_pem, &sans(), r, WINDOW),
        TlsAction::Keep { days_left: 364 }
    );

    // Grafana's renewal window: its new certificate comes from the new CA, which the repaired
    // cluster already trusts.
    let g = before + 340 * DAY;
    let (pki, _) = ensure_central(&central, ns, g, WINDOW).await.unwrap();
    assert_ne!(pki.grafana.cert_pem, grafana_before);
    both_ways(&pki, &cluster_fake, g, "Grafana renewed from the new CA");

    // The old CA's end: it leaves the trust bundle; the cluster follows on its next run.
    let end = ca_end + DAY;
    let (pki, _) = ensure_central(&central, ns, end, WINDOW).await.unwrap();
    assert_eq!(
        cmm_pki::inspect_bundle(&pki.trust_pem, "trust")
            .unwrap()
            .len(),
        1
    );
    ensure_cluster(
        &cluster,
        ns,
        PROMETHEUS_TLS_SECRET,
        "kr-mum",
        &pki,
        &sans(),
        end,
        WINDOW,
    )
    .await
    .unwrap();
    both_ways(&pki, &cluster_fake, end, "the old CA gone");
    let (_, proxy_trust) = proxy_view(&cluster_fake);
    assert_eq!(
        cmm_pki::inspect_bundle(&proxy_trust, "trust")
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_secret_missing_a_key_or_signed_elsewhere_is_issued_anew() {
    let now = SystemTime::now();
    let material = cmm_testkit::pki::CentralMaterial::at(now);
    let other = cmm_testkit::pki::CentralMaterial::at(now);
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = conn(&fake, dir.path()).await;
    let trust = material.ca.cert_pem();

    let state = read_cluster(&c, "monitor", PROMETHEUS_TLS_SECRET)
        .await
        .unwrap();
    assert_eq!(
        decide_cluster(&state, trust, &sans(), now, WINDOW),
        TlsAction::Issue {
            why: "none yet".into()
        }
    );
    // Signed by another CA, with that CA as its trust: the trusted CAs differ.
    fake.insert(other.cluster_secret("monitor", "kr-mum", &sans()));
    let state = read_cluster(&c, "monitor", PROMETHEUS_TLS_SECRET)
        .await
        .unwrap();
    assert!(matches!(
        decide_cluster(&state, trust, &sans(), now, WINDOW),
        TlsAction::Issue { why } if why.contains("trusted CAs changed")
    ));
    // Ours, whole: kept. Without its key: issued anew. Issued at the `now` decided on: a
    // certificate issued a second later (a loaded machine) would have a day more to live.
    let mut secret = material.cluster_secret_at("monitor", "kr-mum", &sans(), now);
    fake.insert(secret.clone());
    let state = read_cluster(&c, "monitor", PROMETHEUS_TLS_SECRET)
        .await
        .unwrap();
    assert_eq!(
        decide_cluster(&state, trust, &sans(), now, WINDOW),
        TlsAction::Keep { days_left: 364 }
    );
    secret["data"].as_object_mut().unwrap().remove("tls.key");
    fake.insert(secret);
    let state = read_cluster(&c, "monitor", PROMETHEUS_TLS_SECRET)
        .await
        .unwrap();
    assert_eq!(
        decide_cluster(&state, trust, &sans(), now, WINDOW),
        TlsAction::Issue {
            why: "a key is missing".into()
        }
    );
}
