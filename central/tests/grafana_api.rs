//! Registration, rules, deregistration, tokens and failure handling against the fake Grafana
//! (held to Grafana's OpenAPI spec and ../shared/contracts/GRAFANA-CONTRACT.md). Only the
//! datasource health checks that need a reachable Prometheus use a real one (tests/prometheus.rs).

use std::time::Duration;

use cmm_central::prometheus::PrometheusTarget;
use cmm_central::register::{DatasourceAction, RulesMode};
use cmm_central::retry::RetryPolicy;
use cmm_central::{
    deregister, register, Credentials, Error, ErrorClass, GrafanaClient, RegisterRequest, Secret,
};
use cmm_core::ClusterName;
use cmm_testkit::grafana::{FakeGrafana, Fault, Role, ADMIN_TOKEN};
use serde_json::json;

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        timeout: Duration::from_millis(800),
    }
}

fn client(fake: &FakeGrafana, token: &str) -> GrafanaClient {
    GrafanaClient::new(&fake.url, Credentials::Token(Secret::new(token)), fast()).unwrap()
}

/// A URL nothing listens on: the datasource is written, Grafana's health check fails.
fn request(cluster: &str, url: &str) -> RegisterRequest {
    RegisterRequest {
        cluster: ClusterName::parse(cluster).unwrap(),
        prometheus: PrometheusTarget {
            url: url.to_owned(),
            ..Default::default()
        },
        force: false,
        rules: RulesMode::Provisioned,
        check_prometheus: false,
        prometheus_retry: fast(),
        first_scrape_wait: std::time::Duration::ZERO,
    }
}

#[tokio::test]
async fn first_registration_creates_and_a_second_changes_nothing() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let url = cmm_testkit::dead_url();
    let req = request("kr-mum", &url);

    let r1 = register(&g, &req).await.unwrap();
    assert_eq!(r1.datasource, DatasourceAction::Create);
    assert_eq!(r1.datasource_uid, "cmm-kr-mum");
    // Nothing listens at the URL, so Grafana's own check through the datasource fails, and says so.
    assert!(!r1.health.ok);
    assert_eq!(r1.health.status, "ERROR");
    assert!(
        r1.health
            .message
            .contains("error returned querying the Prometheus API"),
        "{}",
        r1.health.message
    );
    let rules = r1.rules.as_ref().unwrap();
    assert!(rules.folder_created);
    let shipped: Vec<String> =
        cmm_central::rules::render(&ClusterName::parse("kr-mum").unwrap(), &fake.url)["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(rules.rules, shipped);
    assert!(rules.rules.iter().any(|t| t == "CmmClusterUnreachable"));

    let ds = fake.datasources();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["uid"], "cmm-kr-mum");
    assert_eq!(ds[0]["name"], "kr-mum");
    assert_eq!(ds[0]["access"], "proxy");
    assert_eq!(ds[0]["url"], url);
    assert_eq!(ds[0]["jsonData"]["httpMethod"], "POST");
    assert_eq!(ds[0]["jsonData"]["timeInterval"], "30s");

    let stored = fake.rules("cmm-kr-mum", "cluster-health");
    assert_eq!(stored.len(), shipped.len());
    for r in &stored {
        assert_eq!(
            r["provenance"], "api",
            "default: provisioned, not UI-editable"
        );
        assert_eq!(r["data"][0]["datasourceUid"], "cmm-kr-mum");
    }
    let uids: Vec<_> = stored.iter().map(|r| r["uid"].clone()).collect();
    let posts_before = fake.count("POST", "/api/datasources");

    let writes_before = fake.requests().iter().filter(|r| r.method != "GET").count();
    let r2 = register(&g, &req).await.unwrap();
    assert_eq!(r2.datasource, DatasourceAction::Unchanged);
    let rules2 = r2.rules.unwrap();
    assert!(!rules2.folder_created && !rules2.changed);
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert_eq!(
        writes.len(),
        writes_before,
        "a second registration writes nothing: {:?}",
        writes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fake.count("POST", "/api/datasources"),
        posts_before,
        "no second create"
    );
    assert_eq!(fake.count("PUT", "/api/datasources"), 0, "no update either");
    // The cluster's folder and the fleet rule's, each once.
    assert_eq!(fake.count("POST", "/api/folders"), 2);
    assert_eq!(fake.datasources().len(), 1);
    let again: Vec<_> = fake
        .rules("cmm-kr-mum", "cluster-health")
        .iter()
        .map(|r| r["uid"].clone())
        .collect();
    assert_eq!(
        again, uids,
        "rules keep their uids (and so their alert state)"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    // Every call carried the token as a bearer token, never in the URL.
    for r in fake.requests() {
        assert!(!r.query.contains(ADMIN_TOKEN) && !r.path.contains(ADMIN_TOKEN));
        if r.path != "/api/health" {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {ADMIN_TOKEN}").as_str())
            );
        }
    }
}

#[tokio::test]
async fn a_moved_endpoint_updates_in_place_with_the_stored_version() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    register(&g, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap();
    let new_url = cmm_testkit::dead_url();
    let r = register(&g, &request("kr-mum", &new_url)).await.unwrap();
    assert_eq!(r.datasource, DatasourceAction::Update { version: 1 });
    let ds = fake.datasources();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["url"], new_url);
    assert_eq!(ds[0]["version"], 2);
    let put = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path == "/api/datasources/uid/cmm-kr-mum")
        .unwrap();
    assert_eq!(put.body.as_ref().unwrap()["version"], 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_foreign_datasource_with_the_name_is_reported_not_overwritten_unless_forced() {
    let fake = cmm_testkit::fake_grafana!();
    let foreign = fake.seed_datasource(
        json!({"uid": "P1809F7CD0C75ACF3", "name": "kr-mum", "type": "prometheus", "access": "proxy", "url": "http://legacy:9090"}),
        false,
    );
    let g = client(&fake, ADMIN_TOKEN);
    let err = register(&g, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::GrafanaConflict);
    let text = err.to_string();
    assert!(
        text.contains("P1809F7CD0C75ACF3") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(fake.datasources(), vec![foreign.clone()], "nothing changed");
    for m in ["POST", "PUT", "DELETE"] {
        assert_eq!(fake.count(m, "/api/"), 0, "{m} sent on conflict");
    }

    let mut forced = request("kr-mum", &cmm_testkit::dead_url());
    forced.force = true;
    let r = register(&g, &forced).await.unwrap();
    assert_eq!(
        r.datasource,
        DatasourceAction::Replace {
            foreign_uid: "P1809F7CD0C75ACF3".into()
        }
    );
    let ds = fake.datasources();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["uid"], "cmm-kr-mum");
}

#[tokio::test]
async fn a_file_provisioned_datasource_that_differs_is_a_conflict_even_with_force() {
    let fake = cmm_testkit::fake_grafana!();
    fake.seed_datasource(
        json!({"uid": "cmm-kr-mum", "name": "kr-mum", "type": "prometheus", "access": "proxy", "url": "http://old:30090"}),
        true,
    );
    let g = client(&fake, ADMIN_TOKEN);
    let mut req = request("kr-mum", &cmm_testkit::dead_url());
    req.force = true;
    let err = register(&g, &req).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::GrafanaConflict);
    assert!(err.to_string().contains("additionalDataSources"), "{err}");
}

#[tokio::test]
async fn bad_token_and_missing_permission_are_told_apart() {
    let fake = cmm_testkit::fake_grafana!();
    fake.add_token("glsa_editor", Role::Editor);
    let bad = register(
        &client(&fake, "glsa_wrong"),
        &request("kr-mum", &cmm_testkit::dead_url()),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.class(), ErrorClass::GrafanaAuth);
    assert!(matches!(bad, Error::GrafanaUnauthorized { .. }), "{bad:?}");
    let text = bad.to_string();
    assert!(
        text.contains("401")
            && text.contains("Invalid API key")
            && text.contains("cmm-agent central token"),
        "{text}"
    );
    assert!(!text.contains("glsa_wrong"));

    let denied = register(
        &client(&fake, "glsa_editor"),
        &request("kr-mum", &cmm_testkit::dead_url()),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.class(), ErrorClass::GrafanaAuth);
    match &denied {
        Error::GrafanaForbidden { permissions, .. } => {
            assert_eq!(permissions.as_deref(), Some("datasources:create"))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        denied
            .to_string()
            .contains("Permissions needed: datasources:create"),
        "{denied}"
    );
    assert!(fake.datasources().is_empty());
}

#[tokio::test]
async fn outages_are_retried_with_backoff_then_reported() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    fake.fail_next(2, Fault::Status(503));
    let v = g.health().await.unwrap();
    assert_eq!(v, "11.3.0");
    assert_eq!(fake.count("GET", "/api/health"), 3, "two 503s then success");

    fake.fail_next(10, Fault::Status(502));
    let started = std::time::Instant::now();
    let err = g.health().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::GrafanaUnreachable);
    assert!(
        err.to_string().contains("3 attempt(s)") && err.to_string().contains("502"),
        "{err}"
    );
    assert_eq!(
        fake.count("GET", "/api/health"),
        6,
        "bounded: exactly 3 more attempts"
    );
    // Backoff happened: 2 delays of at least half of 10 ms and 20 ms.
    assert!(started.elapsed() >= Duration::from_millis(15));

    // A slow answer (longer than the per-attempt timeout) is a timeout, retried.
    let fake2 = cmm_testkit::fake_grafana!();
    fake2.fail_next(1, Fault::Delay(Duration::from_millis(1500)));
    let r = register(
        &client(&fake2, ADMIN_TOKEN),
        &request("kr-mum", &cmm_testkit::dead_url()),
    )
    .await
    .unwrap();
    assert_eq!(r.datasource, DatasourceAction::Create);
    assert_eq!(fake2.datasources().len(), 1);

    // Nobody listening at all.
    let nobody = GrafanaClient::new(
        &cmm_testkit::dead_url(),
        Credentials::Token(Secret::new("x")),
        fast(),
    )
    .unwrap();
    let err = register(&nobody, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::GrafanaUnreachable);
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn editable_rules_send_the_header_on_every_write_and_deregister_matches_it() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let mut req = request("wai-eks", &cmm_testkit::dead_url());
    register(&g, &req).await.unwrap();
    assert_eq!(
        fake.rules("cmm-wai-eks", "cluster-health")[0]["provenance"],
        "api"
    );

    // Switching to editable rewrites the group (Grafana allows api -> none for groups).
    req.rules = RulesMode::Editable;
    let r = register(&g, &req).await.unwrap();
    assert!(r.rules.unwrap().changed);
    for r in fake.rules("cmm-wai-eks", "cluster-health") {
        assert!(
            r.get("provenance").is_none(),
            "editable rules carry no provenance: {r}"
        );
    }
    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/folder/cmm-wai-eks/rule-groups/"))
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(puts[0].header("x-disable-provenance").is_none());
    assert!(puts[1].header("x-disable-provenance").is_some());
    // Editable and unchanged: nothing written again.
    assert!(!register(&g, &req).await.unwrap().rules.unwrap().changed);

    let d = deregister(&g, &ClusterName::parse("wai-eks").unwrap())
        .await
        .unwrap();
    assert!(d.rules_deleted && d.folder_deleted && d.datasource_deleted);
    let del = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE" && r.path.contains("/rule-groups/"))
        .unwrap();
    assert!(del.header("x-disable-provenance").is_some());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn deregister_removes_only_what_registration_made_and_can_repeat() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    register(&g, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap();
    register(&g, &request("wai-eks", &cmm_testkit::dead_url()))
        .await
        .unwrap();
    let kr = ClusterName::parse("kr-mum").unwrap();
    let d = deregister(&g, &kr).await.unwrap();
    assert!(d.datasource_deleted && d.rules_deleted && d.folder_deleted);
    let left: Vec<_> = fake
        .datasources()
        .iter()
        .map(|d| d["uid"].clone())
        .collect();
    assert_eq!(left, [json!("cmm-wai-eks")]);
    assert!(fake.rules("cmm-kr-mum", "cluster-health").is_empty());
    let shipped = cmm_central::rules::source();
    assert_eq!(
        fake.rules("cmm-wai-eks", "cluster-health").len(),
        shipped.reachability.len() + shipped.rules.len()
    );
    // Provisioned rules were deleted without the header, as they were written.
    let del = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE" && r.path.contains("/rule-groups/"))
        .unwrap();
    assert!(del.header("x-disable-provenance").is_none());

    let again = deregister(&g, &kr).await.unwrap();
    assert!(!again.datasource_deleted && !again.rules_deleted && !again.folder_deleted);

    // A foreign datasource named like the cluster is never touched.
    fake.seed_datasource(json!({"uid": "other", "name": "kr-mum", "type": "prometheus", "access": "proxy", "url": "http://x:9090"}), false);
    deregister(&g, &kr).await.unwrap();
    assert!(fake.datasources().iter().any(|d| d["uid"] == "other"));
}

#[tokio::test]
async fn basic_auth_password_goes_to_secure_json_data_only() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let mut req = request("kr-mum", &cmm_testkit::dead_url());
    req.prometheus.basic_auth = Some(("cmm".into(), Secret::new("s3cret-pw")));
    register(&g, &req).await.unwrap();
    assert_eq!(
        fake.datasource_secrets("cmm-kr-mum")["basicAuthPassword"],
        "s3cret-pw"
    );
    let ds = &fake.datasources()[0];
    assert_eq!(ds["basicAuth"], true);
    assert_eq!(ds["secureJsonFields"]["basicAuthPassword"], true);
    assert!(!ds.to_string().contains("s3cret-pw"));
    // Grafana never returns secrets, so a re-run with one always updates (and keeps it).
    let r = register(&g, &req).await.unwrap();
    assert!(matches!(r.datasource, DatasourceAction::Update { .. }));
    assert!(!format!("{req:?}").contains("s3cret-pw"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn the_registration_token_is_issued_once_and_works_for_registration() {
    let fake = cmm_testkit::fake_grafana!();
    let admin = GrafanaClient::new(
        &fake.url,
        Credentials::Basic {
            user: "admin".into(),
            password: Secret::new("admin"),
        },
        fast(),
    )
    .unwrap();
    let t = cmm_central::token::issue_token(&admin, "cmm-registrar", "cmm-1", None)
        .await
        .unwrap();
    assert!(t.service_account_created);
    assert!(t.token.expose().starts_with("glsa_"));
    assert!(!serde_json::to_string(&t)
        .unwrap()
        .contains(t.token.expose()));
    let sa = fake.service_accounts();
    assert_eq!(sa.len(), 1);
    assert_eq!(sa[0]["role"], "Admin");

    let r = register(
        &client(&fake, t.token.expose()),
        &request("kr-mum", &cmm_testkit::dead_url()),
    )
    .await
    .unwrap();
    assert_eq!(r.datasource, DatasourceAction::Create);

    let t2 = cmm_central::token::issue_token(&admin, "cmm-registrar", "cmm-2", Some(86400))
        .await
        .unwrap();
    assert!(!t2.service_account_created);
    assert_eq!(t2.service_account_id, t.service_account_id);
    assert_ne!(t2.token.expose(), t.token.expose());
    let dup = cmm_central::token::issue_token(&admin, "cmm-registrar", "cmm-2", None)
        .await
        .unwrap_err();
    assert!(dup.to_string().starts_with("token-name:"), "{dup}");
    assert_eq!(dup.setting(), Some("token-name"));
    let bad = GrafanaClient::new(
        &fake.url,
        Credentials::Basic {
            user: "admin".into(),
            password: Secret::new("nope"),
        },
        fast(),
    )
    .unwrap();
    let e = cmm_central::token::issue_token(&bad, "cmm-registrar", "cmm-3", None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("Invalid username or password"),
        "{e}"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_starting_grafana_is_waited_for_within_a_deadline() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    // Each health() call makes 3 attempts; 7 failures span three calls, then it answers.
    fake.fail_next(7, Fault::Status(503));
    let v = g.wait_healthy(Duration::from_secs(10)).await.unwrap();
    assert_eq!(v, "11.3.0");
    assert_eq!(fake.count("GET", "/api/health"), 8);

    fake.fail_next(1000, Fault::Status(503));
    let started = std::time::Instant::now();
    let err = g
        .wait_healthy(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::GrafanaUnreachable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline bounds the wait"
    );
}

#[tokio::test]
async fn deregister_keeps_a_folder_that_holds_rules_someone_added() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    register(&g, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap();
    let mut custom = cmm_central::rules::render(&ClusterName::parse("kr-mum").unwrap(), &fake.url);
    let rules = custom["rules"].as_array_mut().unwrap();
    rules.truncate(1);
    rules[0]["uid"] = json!("hand-made-1");
    rules[0]["title"] = json!("MyOwnRule");
    rules[0]["ruleGroup"] = json!("mine");
    g.put_rule_group("cmm-kr-mum", "mine", &custom, false)
        .await
        .unwrap();

    let d = deregister(&g, &ClusterName::parse("kr-mum").unwrap())
        .await
        .unwrap();
    assert!(d.rules_deleted && d.datasource_deleted && !d.folder_deleted);
    assert!(
        d.folder_kept
            .as_deref()
            .unwrap_or("")
            .contains("alert rules"),
        "{d:?}"
    );
    assert_eq!(
        fake.rules("cmm-kr-mum", "mine").len(),
        1,
        "their rule survives"
    );
    assert!(fake.rules("cmm-kr-mum", "cluster-health").is_empty());
}

/// Deleting a folder deletes its dashboards: a cluster folder where someone saved a dashboard
/// is left in place, with the reason, and the dashboard survives.
#[tokio::test]
async fn deregister_keeps_a_folder_that_holds_a_dashboard_someone_saved() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    register(&g, &request("kr-mum", &cmm_testkit::dead_url()))
        .await
        .unwrap();
    fake.add_dashboard("cmm-kr-mum", "ops-notes", "kr-mum on-call notes");
    let d = deregister(&g, &ClusterName::parse("kr-mum").unwrap())
        .await
        .unwrap();
    assert!(
        d.rules_deleted && d.datasource_deleted && !d.folder_deleted,
        "{d:?}"
    );
    let kept = d.folder_kept.as_deref().unwrap_or("");
    assert!(
        kept.contains("kr-mum on-call notes") && kept.contains("1 dashboard"),
        "{kept}"
    );
    assert_eq!(fake.dashboards().len(), 1, "their dashboard survives");
    assert_eq!(fake.count("DELETE", "/api/folders/cmm-kr-mum"), 0);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn the_fleet_rule_counts_registered_clusters_until_they_are_deregistered() {
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let dead = cmm_testkit::dead_url();
    let members = |fake: &FakeGrafana| -> Vec<String> {
        fake.rules("cmm_fleet", "fleet-health")
            .iter()
            .flat_map(|r| r["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|q| q["datasourceUid"].as_str().map(str::to_owned))
            .filter(|uid| uid != "__expr__")
            .collect()
    };

    let r = register(&g, &request("kr-mum", &dead)).await.unwrap();
    assert_eq!(r.rules.unwrap().fleet.clusters, ["kr-mum"]);
    register(&g, &request("wai-eks", &dead)).await.unwrap();
    assert_eq!(members(&fake), ["cmm-kr-mum", "cmm-wai-eks"]);
    let rule = &fake.rules("cmm_fleet", "fleet-health")[0];
    assert_eq!(rule["title"], "CmmFleetClusterMissing");
    assert_eq!(rule["execErrState"], "Alerting");

    // Someone deletes wai-eks's datasource in the UI. Grafana would refuse a rule querying it,
    // and the stored rule failing on it is what pages, so a later registration leaves the fleet
    // rule alone and says why; the new cluster still gets its own rules.
    assert!(g.delete_datasource("cmm-wai-eks").await.unwrap());
    let r = register(&g, &request("us-gke", &dead)).await.unwrap();
    let fleet = r.rules.unwrap().fleet;
    assert_eq!(fleet.clusters, ["kr-mum", "wai-eks"]);
    assert_eq!(fleet.vanished, ["wai-eks"]);
    assert_eq!(members(&fake), ["cmm-kr-mum", "cmm-wai-eks"]);
    assert!(!fake.rules("cmm-us-gke", "cluster-health").is_empty());

    // Deregistering is what takes a cluster out; then the others are counted again.
    let d = deregister(&g, &ClusterName::parse("wai-eks").unwrap())
        .await
        .unwrap();
    assert_eq!(d.fleet.clusters, ["kr-mum", "us-gke"]);
    assert!(d.fleet.vanished.is_empty());

    // A re-run writes nothing to the fleet group.
    let before = fake.requests().len();
    register(&g, &request("us-gke", &dead)).await.unwrap();
    assert!(!fake.requests()[before..]
        .iter()
        .any(|q| q.method == "PUT" && q.path.contains("cmm_fleet")));

    // The last one takes the fleet rule with it.
    let d = deregister(&g, &ClusterName::parse("kr-mum").unwrap())
        .await
        .unwrap();
    assert_eq!(d.fleet.clusters, ["us-gke"]);
    let d = deregister(&g, &ClusterName::parse("us-gke").unwrap())
        .await
        .unwrap();
    assert!(d.fleet.clusters.is_empty());
    assert!(fake.rules("cmm_fleet", "fleet-health").is_empty());
}

#[tokio::test]
async fn a_shared_topology_registers_clusters_into_one_rule_set_and_no_datasource_of_their_own() {
    use cmm_central::register::{deregister_shared, register_shared};
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let kr = ClusterName::parse("kr-mum").unwrap();
    let wai = ClusterName::parse("wai-eks").unwrap();

    // Before the central release provisions the receiver's datasource: refused, nothing written.
    let err = register_shared(&g, &kr, "cmm_receiver", "push", RulesMode::Provisioned)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Usage);
    assert!(err.to_string().contains("--topology push"), "{err}");
    assert!(fake.requests().iter().all(|r| r.method == "GET"));

    // central-receiver.yaml's datasource, as Grafana provisions it from a file.
    fake.seed_datasource(
        json!({"uid": "cmm_receiver", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": cmm_testkit::dead_url()}),
        true,
    );
    let r = register_shared(&g, &kr, "cmm_receiver", "push", RulesMode::Provisioned)
        .await
        .unwrap();
    assert!(r.changed);
    assert_eq!(r.clusters, ["kr-mum"]);
    let r = register_shared(&g, &wai, "cmm_receiver", "push", RulesMode::Provisioned)
        .await
        .unwrap();
    assert_eq!(r.clusters, ["kr-mum", "wai-eks"]);
    // The receiver does not answer here, and the report says so.
    assert!(!r.health.ok);

    // One rule set: every rule once, on the shared datasource; no cluster folder, no datasource
    // named after a cluster.
    let group = fake.rules("cmm_fleet", "shared-health");
    assert_eq!(group.len(), 1 + cmm_central::rules::source().rules.len());
    assert!(group
        .iter()
        .all(|r| r["data"][0]["datasourceUid"] == "cmm_receiver"));
    let silent = &group[0];
    assert_eq!(silent["title"], "CmmClusterSilent");
    let expr = silent["data"][0]["model"]["expr"].as_str().unwrap();
    assert!(
        expr.contains("\"kr-mum\"") && expr.contains("\"wai-eks\""),
        "{expr}"
    );
    assert!(fake.rules("cmm-kr-mum", "cluster-health").is_empty());
    assert!(fake
        .datasources()
        .iter()
        .all(|d| d["uid"] == "cmm_receiver"));

    // A re-run writes nothing.
    let before = fake.requests().len();
    let r = register_shared(&g, &wai, "cmm_receiver", "push", RulesMode::Provisioned)
        .await
        .unwrap();
    assert!(!r.changed);
    assert!(fake.requests()[before..].iter().all(|q| q.method == "GET"));

    // Deregistering takes a cluster out of the silent rule; the last one takes the group.
    assert_eq!(
        deregister_shared(&g, &kr, "cmm_receiver").await.unwrap(),
        ["wai-eks"]
    );
    let expr = fake.rules("cmm_fleet", "shared-health")[0]["data"][0]["model"]["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!expr.contains("kr-mum"), "{expr}");
    assert!(deregister_shared(&g, &wai, "cmm_receiver")
        .await
        .unwrap()
        .is_empty());
    assert!(fake.rules("cmm_fleet", "shared-health").is_empty());
}

/// A server that answers every request with `head` and then `body`, and (with `hang`) keeps the
/// connection open without finishing the body: what a broken proxy or a huge error page does.
async fn raw_server(head: String, body: Vec<u8>, hang: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            });
        }
    });
    url
}

/// The status decides before an unreadable body does: a failing Grafana with a huge error
/// page is "rejected" (13), a refusal with one is "auth" (9), and an answer that never
/// arrives whole is "unreachable" (8) — never "a bug in cmm-agent" (1).
#[tokio::test]
async fn an_unreadable_body_is_classified_by_its_status() {
    let huge = 6 << 20; // over sanitize::MAX_BODY
    let cases = [
        (500, huge, false, ErrorClass::GrafanaRejected),
        (401, huge, false, ErrorClass::GrafanaAuth),
        (403, huge, false, ErrorClass::GrafanaAuth),
        // 200, a body announced but never sent whole: the read times out.
        (200, 100, true, ErrorClass::GrafanaUnreachable),
    ];
    for (status, length, hang, want) in cases {
        let sent = if hang { vec![b'{'] } else { vec![b' '; length] };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        );
        let url = raw_server(head, sent, hang).await;
        let retry = RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            timeout: Duration::from_millis(300),
        };
        let g = GrafanaClient::new(&url, Credentials::Token(Secret::new("t")), retry).unwrap();
        let err = g.health().await.unwrap_err();
        assert_eq!(err.class(), want, "{status}: {err}");
        assert!(
            err.to_string().contains("could not be read"),
            "{status}: {err}"
        );
    }
}

/// `check`'s Grafana reads: a Grafana failing every request is one cause (`down`), judged as
/// one failed finding; a permission refused on one read is that read's own finding.
#[tokio::test]
async fn a_grafana_failing_every_read_is_one_cause_and_a_refused_read_is_its_own() {
    use cmm_central::health::{grafana_facts, judge_grafana};
    use cmm_core::finding::Severity;
    let fake = cmm_testkit::fake_grafana!();
    let c = ClusterName::parse("kr-mum").unwrap();
    let admin = client(&fake, ADMIN_TOKEN);
    // Every attempt of every read answers 500.
    fake.fail_next(100, Fault::Status(500));
    let facts = grafana_facts(&admin, &c, false).await;
    assert!(facts.down.is_some(), "{facts:?}");
    let out = judge_grafana(&c, &json!({}), RulesMode::Provisioned, &facts);
    let failed: Vec<_> = out
        .iter()
        .filter(|f| f.severity == Severity::Failed)
        .map(|f| f.id.clone())
        .collect();
    assert_eq!(failed, ["grafana.api"], "{out:?}");

    // A Viewer may read but not test contact points: only that read is refused.
    let fake = cmm_testkit::fake_grafana!();
    fake.add_token("glsa_viewer", Role::Viewer);
    fake.set_contact_points(vec![
        json!({"uid": "m", "name": "ops-mail", "type": "email",
        "settings": {"addresses": "ops@example.org"}}),
    ]);
    let viewer = client(&fake, "glsa_viewer");
    let facts = grafana_facts(&viewer, &c, true).await;
    assert!(facts.down.is_none(), "{facts:?}");
    assert!(matches!(facts.deliveries, Some(Err(_))), "{facts:?}");
    assert!(fake.notifications_sent().is_empty());
}

/// A test notification reaches people each time it is sent: a failing answer is not retried.
#[tokio::test]
async fn a_test_notification_is_sent_once_even_when_grafana_fails() {
    let fake = cmm_testkit::fake_grafana!();
    let point = json!({"uid": "m", "name": "ops-mail", "type": "email",
        "settings": {"addresses": "ops@example.org"}});
    fake.set_contact_points(vec![point.clone()]);
    fake.fail_next(1, Fault::Status(502));
    let c = client(&fake, ADMIN_TOKEN);
    assert!(c.test_contact_points(&[&point], "kr-mum").await.is_err());
    assert_eq!(fake.count("POST", "/api/alertmanager"), 1);
}

/// Registrations at the same moment each rebuild the fleet-wide groups from what they read; a
/// later write must not leave an earlier cluster out (the registration reads back and writes
/// again while its cluster is missing).
#[tokio::test]
async fn clusters_registering_at_the_same_moment_are_all_counted() {
    use cmm_central::register::register_shared;
    let fake = cmm_testkit::fake_grafana!();
    let g = client(&fake, ADMIN_TOKEN);
    let dead = cmm_testkit::dead_url();
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let runs = names.iter().map(|n| {
        let (g, dead) = (&g, &dead);
        async move { register(g, &request(n, dead)).await.unwrap() }
    });
    futures_util::future::join_all(runs).await;
    let mut counted: Vec<String> = cmm_central::rules::fleet_members(
        &g.rule_group("cmm_fleet", "fleet-health")
            .await
            .unwrap()
            .unwrap(),
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    counted.sort();
    assert_eq!(counted, names, "the fleet rule lost a racing registration");

    // The shared rule set of push and thanos, the same way.
    fake.seed_datasource(
        json!({"uid": "cmm_receiver", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": dead}),
        true,
    );
    let runs = names.iter().map(|n| {
        let g = &g;
        async move {
            let c = ClusterName::parse(n).unwrap();
            register_shared(g, &c, "cmm_receiver", "push", RulesMode::Provisioned)
                .await
                .unwrap()
        }
    });
    futures_util::future::join_all(runs).await;
    let mut expected: Vec<String> = cmm_central::rules::shared_members(
        &g.rule_group("cmm_fleet", "shared-health")
            .await
            .unwrap()
            .unwrap(),
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    expected.sort();
    assert_eq!(
        expected, names,
        "the shared rule set lost a racing registration"
    );
}
