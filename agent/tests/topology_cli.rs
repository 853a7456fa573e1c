//! The growth paths through the real binary: the topology setting refused in combinations that
//! cannot work, push and thanos registrations into the fake Grafana (and, thanos, the fake
//! central API server's endpoints ConfigMap), and the central bootstrap making what each
//! topology needs. Processes are real where health matters (a real receiver Prometheus).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::path::Path;

use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::kube::FakeKube;
use serde_json::{json, Value};

const CONFIGMAPS: &str = "/api/v1/namespaces/monitor/configmaps";

use support::{clean_run as agent, texts as text};

fn token_file(dir: &Path) -> String {
    let p = dir.join("token");
    std::fs::write(&p, format!("{ADMIN_TOKEN}\n")).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn topologies_that_cannot_work_are_refused_before_anything_is_contacted() {
    // No kubeconfig, helm or Grafana exists here: exit 2 proves nothing was reached for.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    for (args, needle) in [
        (&["--topology", "push"][..], "--receiver-url"),
        (
            &[
                "--topology",
                "push",
                "--receiver-url",
                "http://10.0.0.5:30091/api/v1/write",
            ][..],
            "must be https://",
        ),
        (
            &["--topology", "thanos", "--insecure-plain-http"][..],
            "needs mutual TLS",
        ),
        (&["--agent-mode"][..], "--agent-mode"),
    ] {
        let o = agent(
            &[&["bootstrap", "--cluster", "kr-mum"][..], args].concat(),
            &[("HOME", home), ("CMM_CENTRAL_CONTEXT", "central")],
        )
        .await;
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}\n{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The same settings from the environment, as a systemd unit gives them.
    let o = agent(
        &["bootstrap", "--cluster", "kr-mum"],
        &[
            ("HOME", home),
            ("CMM_TOPOLOGY", "push"),
            ("CMM_CENTRAL_CONTEXT", "central"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--receiver-url"), "{}", text(&o).1);
}

#[tokio::test]
async fn push_registers_into_the_shared_rule_set_and_deregisters_out_of_it() {
    let test = "push_registers_into_the_shared_rule_set_and_deregisters_out_of_it";
    let Some(receiver) = cmm_testkit::remote_write::Receiver::start(test, "5m").await else {
        return;
    };
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path());
    let base = [
        "--cluster",
        "kr-mum",
        "--grafana-url",
        &fake.url,
        "--grafana-token-file",
        &tf,
        "--topology",
        "push",
    ];
    let push = [
        &["register"][..],
        &base[..],
        &["--receiver-url", "https://10.0.0.5:30091/api/v1/write"],
    ]
    .concat();

    // Before the central release provisions the receiver's datasource: exit 2 naming the fix.
    let o = agent(&push, &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("--role central --topology push"), "{err}");
    assert!(fake.requests().iter().all(|r| r.method == "GET"));

    // central-receiver.yaml's datasource (here on a real Prometheus, for Grafana's check).
    fake.seed_datasource(
        json!({"uid": "cmm_receiver", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": format!("http://127.0.0.1:{}", receiver.port)}),
        true,
    );
    let o = agent(&push, &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("CmmClusterSilent expects kr-mum"), "{out}");
    assert!(out.contains("none of its own"), "{out}");
    // Nothing per cluster: no datasource, no cluster folder.
    assert_eq!(fake.datasources().len(), 1);
    assert!(fake.rules("cmm-kr-mum", "cluster-health").is_empty());
    assert!(!fake.rules("cmm_fleet", "shared-health").is_empty());
    assert!(!out.contains(ADMIN_TOKEN) && !err.contains(ADMIN_TOKEN));

    let o = agent(&[&["deregister"][..], &base[..]].concat(), &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("no cluster (group removed)"), "{out}");
    assert!(fake.rules("cmm_fleet", "shared-health").is_empty());
    assert_eq!(fake.datasources().len(), 1, "the shared datasource stays");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// A fake central cluster holding the CMM CA (as after `bootstrap --role central`), its
/// kubeconfig written under `dir`.
async fn central_cluster(dir: &Path) -> (FakeKube, String) {
    let central = FakeKube::start().await;
    for s in cmm_testkit::pki::CentralMaterial::new().secrets("monitor") {
        central.insert(s);
    }
    let kc = central
        .write_kubeconfig(dir, "central")
        .display()
        .to_string();
    (central, kc)
}

#[tokio::test]
async fn thanos_registers_the_sidecar_in_the_central_endpoints_configmap() {
    let fake = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let tf = token_file(dir.path());
    let (central, ckc) = central_cluster(dir.path()).await;
    fake.seed_datasource(
        json!({"uid": "cmm_thanos", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": cmm_testkit::dead_url()}),
        true,
    );
    let base = [
        "--cluster",
        "kr-mum",
        "--grafana-url",
        &fake.url,
        "--grafana-token-file",
        &tf,
        "--topology",
        "thanos",
        "--central-context",
        "central",
        "--central-kubeconfig",
        &ckc,
    ];
    let register = [
        &["register"][..],
        &base[..],
        &["--prometheus-url", "https://10.0.0.11:30090"],
    ]
    .concat();

    // The central release has not made the ConfigMap yet: exit 2, naming the command.
    let o = agent(&register, &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("--role central --topology thanos"), "{err}");

    let before = central.writes().len();
    central.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cmm-thanos-endpoints", "namespace": "monitor"},
        "data": {"wai-eks.yaml": "- targets: [\"10.0.1.21:30901\"]\n"}}));
    let o = agent(&register, &[]).await;
    let (out, err) = text(&o);
    // Grafana's check of Thanos Query fails here (nothing answers): registered, and said so.
    assert!(out.contains("key kr-mum.yaml: written"), "{out}\n{err}");
    let cm = central.get(CONFIGMAPS, "cmm-thanos-endpoints").unwrap();
    let file: Value = serde_saphyr::from_str(cm["data"]["kr-mum.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(file, json!([{"targets": ["10.0.0.11:30901"]}]));
    // Another cluster's key is untouched: each writes only its own.
    assert_eq!(
        cm["data"]["wai-eks.yaml"],
        "- targets: [\"10.0.1.21:30901\"]\n"
    );
    let patches: Vec<_> = central.writes()[before..]
        .iter()
        .filter(|w| w.path.contains("configmaps"))
        .cloned()
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].method, "PATCH");
    assert_eq!(
        o.status.code(),
        Some(11),
        "a shared datasource that does not answer fails the run (prometheus-check): {err}"
    );

    // A re-run writes the ConfigMap no more.
    let o = agent(&register, &[]).await;
    assert!(
        text(&o).0.contains("key kr-mum.yaml: unchanged"),
        "{:?}",
        text(&o)
    );
    let writes = central.writes()[before..]
        .iter()
        .filter(|w| w.path.contains("configmaps"))
        .count();
    assert_eq!(writes, 1);

    // Deregister takes its key out, and only its key.
    let o = agent(&[&["deregister"][..], &base[..]].concat(), &[]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let cm = central.get(CONFIGMAPS, "cmm-thanos-endpoints").unwrap();
    assert!(cm["data"].get("kr-mum.yaml").is_none(), "{cm}");
    assert!(cm["data"].get("wai-eks.yaml").is_some(), "{cm}");
}

/// helm that answers `version` and accepts `upgrade` (there is no cluster to install into).
fn helm_shim(dir: &Path) -> String {
    let path = dir.join("helm");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$1\" in\n  version) echo 'v3.17.3' ;;\n  upgrade) exit 0 ;;\n  show|template) exit 0 ;;\n  *) echo \"unexpected helm $1\" >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// A fake central cluster before its first install: a namespace and one node.
async fn bare_central(dir: &Path) -> (FakeKube, String) {
    let kube = FakeKube::start().await;
    kube.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"},
        "status": {"phase": "Active"}}),
    );
    kube.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "c1",
            "labels": {"kubernetes.io/os": "linux"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.0", "containerRuntimeVersion": "containerd://1.7.0",
                                "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                                "operatingSystem": "linux", "architecture": "amd64"}}}));
    // The contact points' addresses: only a person can give them (docs/alerting.md).
    kube.insert(alerting_secret());
    let kc = kube.write_kubeconfig(dir, "central").display().to_string();
    (kube, kc)
}

fn alerting_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cmm-grafana-alerting", "namespace": "monitor"},
        "data": {"CMM_ALERT_EMAIL_TO": "b3BzQGV4YW1wbGUuY29t",
                 "CMM_TEAMS_WEBHOOK_URL": "aHR0cHM6Ly90ZWFtcy5leGFtcGxlL3dm"}})
}

fn central_args<'a>(kc: &'a str, helm: &'a str) -> Vec<&'a str> {
    vec![
        "--output",
        "json",
        "bootstrap",
        "--role",
        "central",
        "--cluster",
        "monitor",
        "--kubeconfig",
        kc,
        "--helm",
        helm,
        "--chart",
        "https://charts.example#kube-prometheus-stack",
    ]
}

/// Grafana's pod mounts its admin and alerting Secrets. The admin one is made with a generated
/// password (read back by the documented kubectl line, never printed) and kept by the next
/// run; without the alerting one the run stops in preflight naming the command that makes it,
/// and changes nothing, instead of helm's wait running out on a pod that cannot start.
#[tokio::test]
async fn the_central_bootstrap_makes_grafanas_admin_secret_and_asks_for_the_alerting_one() {
    let dir = tempfile::tempdir().unwrap();
    let (kube, kc) = bare_central(dir.path()).await;
    let helm = helm_shim(dir.path());
    let home = [("HOME", dir.path().to_str().unwrap())];
    let secrets = "/api/v1/namespaces/monitor/secrets";
    let o = agent(&central_args(&kc, &helm), &home).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let admin = kube
        .get(secrets, "cmm-grafana-admin")
        .expect("the admin Secret");
    let password = cmm_testkit::pki::secret_text(&admin, "admin-password").unwrap();
    assert_eq!(password.len(), 32);
    assert_eq!(
        cmm_testkit::pki::secret_text(&admin, "admin-user").unwrap(),
        "admin"
    );
    assert!(!out.contains(&password) && !err.contains(&password));
    let rep: Value = serde_json::from_str(&out).unwrap();
    let said = rep["grafana_admin"].as_str().unwrap();
    assert!(
        said.contains("generated password")
            && said.contains("kubectl -n monitor get secret cmm-grafana-admin"),
        "{said}"
    );
    // The next run keeps it.
    let o = agent(&central_args(&kc, &helm), &home).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    let again = kube.get(secrets, "cmm-grafana-admin").unwrap();
    assert_eq!(
        cmm_testkit::pki::secret_text(&again, "admin-password").unwrap(),
        password
    );

    // A central cluster without the alerting Secret: preflight, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let (kube, kc) = bare_central(dir.path()).await;
    kube.remove(secrets, "cmm-grafana-alerting");
    let helm = helm_shim(dir.path());
    let o = agent(
        &central_args(&kc, &helm),
        &[("HOME", dir.path().to_str().unwrap())],
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}\n{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    let check = rep["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "grafana-secrets")
        .unwrap_or_else(|| panic!("{rep:#}"));
    assert_eq!(check["ok"], false);
    assert!(check["detail"]
        .as_str()
        .unwrap()
        .contains("kubectl -n monitor create secret generic cmm-grafana-alerting"));
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
}

#[tokio::test]
async fn the_central_bootstrap_makes_what_its_topology_needs() {
    for topology in ["push", "thanos"] {
        let dir = tempfile::tempdir().unwrap();
        let (kube, kc) = bare_central(dir.path()).await;
        let helm = helm_shim(dir.path());
        let o = agent(
            &[central_args(&kc, &helm), vec!["--topology", topology]].concat(),
            &[("HOME", dir.path().to_str().unwrap())],
        )
        .await;
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{topology}: {out}\n{err}");
        let rep: Value = serde_json::from_str(&out).unwrap();
        assert!(
            rep["topology"].as_str().unwrap().starts_with(topology),
            "{rep:#}"
        );
        let values: Vec<&str> = rep["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let overlay = if topology == "push" {
            "values/overlays/central-receiver-victoriametrics.yaml"
        } else {
            "values/overlays/thanos-query.yaml"
        };
        assert_eq!(values[1], overlay, "{values:?}");
        let secrets = "/api/v1/namespaces/monitor/secrets";
        let receiver = kube.get(secrets, "cmm-receiver-tls");
        let endpoints = kube.get(CONFIGMAPS, "cmm-thanos-endpoints");
        if topology == "push" {
            // The receiver's certificate: the name push.yaml's clients check, from the CMM CA
            // this same run made, and the central node's address.
            let s = receiver.expect("the receiver's Secret");
            let ca = kube.get(secrets, "cmm-ca").unwrap();
            let ca = cmm_testkit::pki::secret_text(&ca, "tls.crt").unwrap();
            let cert = cmm_testkit::pki::secret_text(&s, "tls.crt").unwrap();
            let now = std::time::SystemTime::now();
            for name in ["cmm-receiver", "10.0.0.5"] {
                cmm_pki::verify(
                    &cert,
                    &ca,
                    cmm_pki::Usage::Server,
                    Some(&cmm_pki::San::parse(name).unwrap()),
                    now,
                )
                .unwrap_or_else(|e| panic!("receiver certificate for {name}: {e}"));
            }
            assert!(endpoints.is_none());
        } else {
            assert!(receiver.is_none(), "thanos has no receiver");
            let cm = endpoints.expect("the endpoints ConfigMap, empty until clusters register");
            assert!(cm["data"].as_object().is_none_or(|d| d.is_empty()), "{cm}");
        }
        assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
    }
}

/// A central installed with the Prometheus receiver keeps it across an agent whose default is
/// VictoriaMetrics: the run stops in preflight, before any change, naming both ways on; the
/// receiver named explicitly goes ahead with that one's file.
#[tokio::test]
async fn a_new_default_receiver_never_replaces_the_one_a_central_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (kube, kc) = bare_central(dir.path()).await;
    // What central-receiver.yaml's release left: the chart's Service of the receiver.
    kube.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cmm-receiver-prometheus", "namespace": "monitor",
            "annotations": {"meta.helm.sh/release-name": "monitor",
                            "meta.helm.sh/release-namespace": "monitor"}},
        "spec": {"ports": [{"port": 9090}]}}));
    let log = dir.path().join("helm.log");
    let helm = dir.path().join("helm");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\ncase \"$1\" in\n  version) echo 'v3.17.3' ;;\n  upgrade|show|template) exit 0 ;;\n  *) exit 1 ;;\nesac\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helm = helm.display().to_string();
    let home = [("HOME", dir.path().to_str().unwrap())];

    let o = agent(
        &[central_args(&kc, &helm), vec!["--topology", "push"]].concat(),
        &home,
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "preflight: {out}\n{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    let check = rep["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "receiver")
        .unwrap_or_else(|| panic!("no receiver check: {rep:#}"));
    assert_eq!(check["ok"], false, "{check}");
    let detail = check["detail"].as_str().unwrap();
    for needle in [
        "runs the prometheus receiver",
        "--receiver prometheus",
        "--receiver victoriametrics",
    ] {
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!calls.contains("upgrade"), "helm ran {calls}");
    assert!(kube
        .get("/api/v1/namespaces/monitor/secrets", "cmm-receiver-tls")
        .is_none());

    let o = agent(
        &[
            central_args(&kc, &helm),
            vec!["--topology", "push", "--receiver", "prometheus"],
        ]
        .concat(),
        &home,
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rep["values"][1], "values/overlays/central-receiver.yaml",
        "{rep:#}"
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("upgrade"));
}
