//! What scripts read: with `--output json` stdout is exactly one JSON document, errors
//! included; with `--log-format json` every stderr line is a JSON object, progress included;
//! a closed stdout ends the output quietly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::io::Read;

use cmm_testkit::kube::FakeKube;
use serde_json::Value;
use support::{stderr as err, stdout as out, Agent};

async fn run(r: Agent, args: &[&str]) -> (Agent, std::process::Output) {
    support::run_async(r, args).await
}

#[test]
fn a_closed_stdout_ends_quietly_never_a_panic() {
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    let r = Agent::new().env("CMM_HELM", helm).env("CMM_CHART", chart);
    for args in [
        &["rbac"][..],
        &["--output", "json", "rbac"][..],
        &["plan"][..],
        &["--output", "json", "plan"][..],
    ] {
        let mut child = r.spawn(args);
        // The reader goes away before the agent writes (`| head -0`).
        drop(child.stdout.take());
        let mut e = String::new();
        child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {e}");
        assert!(!e.contains("panicked") && !e.contains("Broken pipe"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_json_document_on_stdout() {
    let r = Agent::new();
    let (r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "Kr_Mum"]).await;
    assert_eq!(o.status.code(), Some(2));
    let doc: Value = serde_json::from_str(&out(&o)).expect("one JSON document");
    let e = &doc["error"];
    assert_eq!(e["code"], "usage");
    assert_eq!(e["exit"], 2);
    assert!(
        e["message"].as_str().unwrap().contains("--cluster"),
        "{doc}"
    );
    assert!(!e["hint"].as_str().unwrap().is_empty());

    // The command line itself is wrong: still one document, from the flag or CMM_OUTPUT.
    for (r2, args) in [
        (
            Agent::new(),
            &["--output", "json", "bootstrap", "--no-such-flag"][..],
        ),
        (
            Agent::new().env("CMM_OUTPUT", "json"),
            &["check", "--repair=maybe"][..],
        ),
    ] {
        let (_r2, o) = run(r2, args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let doc: Value = serde_json::from_str(&out(&o))
            .unwrap_or_else(|_| panic!("{args:?}: stdout is not one JSON document: {:?}", out(&o)));
        assert_eq!(doc["error"]["code"], "usage", "{doc}");
        let shown = doc["error"]["message"].as_str().unwrap();
        assert!(
            shown.contains("--no-such-flag") || shown.contains("maybe"),
            "{doc}"
        );
        assert!(err(&o).contains("Usage"), "clap still explains on stderr");
    }
    // Help stays help.
    let (_r2, o) = run(Agent::new(), &["--output", "json", "bootstrap", "--help"]).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(out(&o).contains("Usage"));

    // A failure after a report: the report and the error in the same single document.
    let fake = FakeKube::start().await;
    fake.deny(
        "create",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
    );
    let kc = fake.write_kubeconfig(r.home.path(), "kr-mum");
    let helm = r.home.path().join("helm");
    support::write_executable(&helm, "#!/bin/sh\necho v3.17.3\n");
    // Plain HTTP: this is about the output's shape, not certificates (bootstrap_cli has those).
    let r = r
        .env("CMM_KUBECONFIG", kc)
        .env("CMM_HELM", &helm)
        .env("CMM_CHART", "https://charts.example#kube-prometheus-stack")
        .env("CMM_INSECURE_PLAIN_HTTP", "true");
    let (_r, o) = run(r, &["--output", "json", "bootstrap", "--cluster", "kr-mum"]).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    let doc: Value = serde_json::from_str(&out(&o)).expect("one JSON document");
    assert_eq!(doc["error"]["code"], "preflight");
    assert!(doc["preflight"].is_array(), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_make_every_stderr_line_json_progress_and_errors_included() {
    let fake = FakeKube::start().await;
    fake.insert(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "monitor"}, "status": {"phase": "Active"}}));
    fake.insert(
        serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "prometheus-cmm", "namespace": "monitor",
                     "labels": {"operator.prometheus.io/name": "cmm"}},
        "spec": {"replicas": 1, "serviceName": "prometheus-operated",
                 "selector": {"matchLabels": {"app": "p"}},
                 "template": {"metadata": {"labels": {"app": "p"}},
                              "spec": {"containers": [{"name": "prometheus", "image": "prom"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1}}),
    );
    let r = Agent::new();
    let kc = fake.write_kubeconfig(r.home.path(), "kr-mum");
    let helm = r.home.path().join("helm");
    support::write_executable(
        &helm,
        "#!/bin/sh\ncase \"$1\" in version) echo v3.17.3 ;; upgrade|show|template) exit 0 ;; *) exit 1 ;; esac\n",
    );
    let base = ["--log-format", "json", "bootstrap", "--cluster", "kr-mum"];
    // Plain HTTP: this is about the log's shape, not certificates.
    let mut r = r
        .env("CMM_KUBECONFIG", kc)
        .env("CMM_CHART", "https://charts.example#kube-prometheus-stack")
        .env("CMM_INSECURE_PLAIN_HTTP", "true");
    for (extra, ok) in [
        (vec!["--helm", helm.to_str().unwrap()], true),
        (vec!["--helm", "/nonexistent/helm"], false),
        (vec!["--timeout", "9h"], false),
    ] {
        let args = [&base[..], &extra[..]].concat();
        let (back, o) = run(r, &args).await;
        r = back;
        let e = err(&o);
        assert_eq!(o.status.code() == Some(0), ok, "{args:?}: {e}");
        assert!(!e.trim().is_empty(), "{args:?}: nothing logged");
        for line in e.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("{args:?}: not a JSON line: {line}"));
            assert!(v.is_object());
        }
        if ok {
            assert!(e.contains("\"message\":\"progress\""), "{e}");
        } else {
            assert!(e.contains("\"level\":\"ERROR\""), "{e}");
        }
    }
}

/// A host without trusted CA certificates (no ca-certificates package) cannot build an HTTP
/// client at all, plain http included: the message says what is missing and how to fix it,
/// not only reqwest's "builder error".
#[test]
fn a_host_without_ca_certificates_is_told_what_is_missing() {
    let r = Agent::new()
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .env("SSL_CERT_DIR", "/nonexistent/certs");
    let token = r.home.path().join("token");
    std::fs::write(&token, "glsa_x").unwrap();
    let o = r.run(&[
        "register",
        "--cluster",
        "kr-mum",
        "--grafana-url",
        "http://127.0.0.1:9/",
        "--grafana-token-file",
        token.to_str().unwrap(),
        "--prometheus-url",
        "http://127.0.0.1:9/",
        "--insecure-plain-http",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("no trusted CA certificates") && e.contains("ca-certificates"),
        "{e}"
    );
}
