//! `prepare` (detect + preflight + plan) through kube-rs against the fake API server: what it
//! asks the API, in the shapes the API defines, and which findings stop an install. It must
//! never write.

use cmm_core::ClusterName;
use cmm_installer::bootstrap::{prepare, Options, Prepared};
use cmm_installer::chart::ChartSource;
use cmm_installer::kube::{connect, KubeTarget};
use cmm_installer::release::Next;
use cmm_installer::topology::Role;
use cmm_testkit::kube::FakeKube;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;

fn options() -> Options {
    Options {
        cluster: ClusterName::parse("kr-mum").unwrap(),
        role: Role::Cluster,
        namespace: "monitor".into(),
        chart: ChartSource::upstream(),
        helm_version: "v3.17.3".into(),
        user_values: None,
        central_values: None,
        sets: vec![],
        kube_metrics: false,
        insecure_plain_http: false,
        wiring: cmm_installer::topology::Wiring::pull(),
        timeout_secs: 600,
        pending_grace_secs: 300,
        host_proc_version: None,
        dry_run: true,
        now_unix: NOW,
    }
}

fn namespace(phase: &str, deleting: bool) -> Value {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
                        "status": {"phase": phase}});
    if deleting {
        ns["metadata"]["deletionTimestamp"] = json!("2026-11-23T10:00:00Z");
        ns["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    ns
}

async fn run(fake: &FakeKube) -> Prepared {
    let dir = tempfile::tempdir().unwrap();
    let kc = fake.write_kubeconfig(dir.path(), "kr-mum");
    let conn = connect(&KubeTarget {
        kubeconfig: Some(kc),
        context: None,
        central: false,
    })
    .await
    .unwrap();
    let p = prepare(&conn, &options()).await.unwrap();
    assert!(
        fake.writes().is_empty(),
        "prepare wrote: {:?}",
        fake.writes()
    );
    p
}

fn check<'a>(p: &'a Prepared, name: &str) -> &'a cmm_installer::preflight::Check {
    p.report
        .preflight
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}: {:#?}", p.report.preflight))
}

#[tokio::test]
async fn access_reviews_and_reads_follow_the_api_contract() {
    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    let p = run(&fake).await;
    assert!(
        p.report.preflight_failed().next().is_none(),
        "{:#?}",
        p.report.preflight
    );
    let reqs = fake.requests();
    let bodies = |path: &str| -> Vec<Value> {
        reqs.iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone().unwrap())
            .collect()
    };
    let rules = bodies("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews");
    let reviews = bodies("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
    let table = cmm_installer::preflight::required_permissions(
        cmm_installer::topology::Role::Cluster,
        "monitor",
        false,
    );
    assert!(table.len() > 60, "{}", table.len());
    // The namespaced permissions: one rules review for the one namespace, which (complete,
    // cluster-admin's `*`) settles them all.
    assert_eq!(rules.len(), 1, "{rules:#?}");
    assert_eq!(rules[0]["kind"], "SelfSubjectRulesReview");
    assert_eq!(rules[0]["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(rules[0]["spec"], json!({"namespace": "monitor"}));
    // The cluster-scoped ones (a namespace's rules mix in RoleBindings, which grant nothing
    // cluster-scoped): the review was complete, so one access review of `*` cluster-wide,
    // which cluster-admin passes, settles them all.
    assert!(table.iter().filter(|p| p.namespace.is_none()).count() > 20);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0]["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(reviews[0]["kind"], "SelfSubjectAccessReview");
    assert_eq!(
        reviews[0]["spec"]["resourceAttributes"],
        json!({"verb": "*", "group": "*", "resource": "*"})
    );
    // helm's records are found by label, namespaced, like `helm list` does.
    assert!(reqs
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/monitor/secrets"
            && r.query
                .contains("labelSelector=owner%3Dhelm%2Cname%3Dkr-mum")));
    assert!(matches!(p.next, Next::Install));
}

/// An identity whose rules are listed in full but hold no `*` verb (a ClusterRole naming each
/// verb, as a platform team writes for an installer): the `*` review is refused, so each
/// cluster-scoped permission is asked alone, and the preflight passes on what the rules
/// grant; take one verb away and the preflight names it.
#[tokio::test]
async fn named_verbs_are_asked_one_by_one_and_a_missing_one_is_named() {
    let verbs = [
        "get", "list", "watch", "create", "update", "patch", "delete", "escalate", "bind",
    ];
    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    fake.grant_only(json!([{"verbs": verbs, "apiGroups": ["*"], "resources": ["*"]}]));
    let p = run(&fake).await;
    assert!(
        p.report.preflight_failed().next().is_none(),
        "{:#?}",
        p.report.preflight
    );
    let reviews: Vec<Value> = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| r.body.clone().unwrap()["spec"]["resourceAttributes"].clone())
        .collect();
    let table = cmm_installer::preflight::required_permissions(
        cmm_installer::topology::Role::Cluster,
        "monitor",
        false,
    );
    let cluster_scoped = table.iter().filter(|p| p.namespace.is_none()).count();
    assert_eq!(reviews.len(), 1 + cluster_scoped, "{reviews:#?}");
    assert!(reviews.contains(
        &json!({"verb": "create", "group": "apiextensions.k8s.io", "resource": "customresourcedefinitions"})
    ));

    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    let no_delete: Vec<&str> = verbs.into_iter().filter(|v| *v != "delete").collect();
    fake.grant_only(json!([{"verbs": no_delete, "apiGroups": ["*"], "resources": ["*"]}]));
    let p = run(&fake).await;
    let failed: Vec<String> = p
        .report
        .preflight_failed()
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    assert!(
        failed.iter().any(|f| f.contains("delete clusterroles")),
        "{failed:#?}"
    );
}

/// The reviews of one preflight share a few connections: each connection to a real API
/// server is a TLS handshake, and ~90 reviews fired at once used to open one each. The worst
/// case: a server whose rules review is incomplete (a webhook authorizer; the fake, given any
/// denial, answers so), where every permission is asked alone.
#[tokio::test]
async fn one_preflight_reuses_a_few_connections_for_all_its_reviews() {
    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    // Denied, and nothing CMM asks for: only the rules review changes.
    fake.deny("impersonate", "", "serviceaccounts");
    let p = run(&fake).await;
    assert!(p.report.preflight_failed().next().is_none());
    let reviews = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .count();
    assert!(reviews > 60, "{reviews}");
    // No more than kubectl's burst (10), the reads before and beside the reviews included.
    let connections = fake.connections();
    assert!(
        connections <= 10,
        "{connections} connections for {reviews} reviews"
    );
}

#[tokio::test]
async fn stuck_storage_stops_the_install_and_points_to_fix_storage() {
    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    fake.insert(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "prometheus-cmm-db-prometheus-cmm-0", "namespace": "monitor",
                     "finalizers": ["kubernetes.io/pvc-protection"], "deletionTimestamp": "2026-11-23T10:00:00Z"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}}));
    let p = run(&fake).await;
    let c = check(&p, "storage");
    assert!(
        !c.ok
            && c.detail
                .contains("cmm-agent fix-storage --namespace monitor"),
        "{c:?}"
    );
}

#[tokio::test]
async fn a_terminating_namespace_stops_the_install() {
    let fake = FakeKube::start().await;
    fake.insert(namespace("Terminating", true));
    let p = run(&fake).await;
    let c = check(&p, "namespace monitor");
    assert!(!c.ok && c.detail.contains("Terminating"), "{c:?}");
}

#[tokio::test]
async fn a_release_pending_for_seconds_is_left_to_the_helm_that_may_own_it() {
    let fake = FakeKube::start().await;
    fake.insert(namespace("Active", false));
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.kr-mum.v1", "namespace": "monitor",
                     "labels": {"owner": "helm", "name": "kr-mum", "status": "pending-install",
                                "version": "1", "createdAt": (NOW - 42).to_string()}}}),
    );
    let p = run(&fake).await;
    let c = check(&p, "release kr-mum");
    assert!(!c.ok && c.detail.contains("42s"), "{c:?}");
    assert!(matches!(p.next, Next::Blocked { .. }));
}
