//! Benchmark (not a test): the agent's own work before helm runs — detection, preflight (63
//! access reviews with --kube-metrics; namespace, storage and release reads) and planning —
//! against the fake API on 127.0.0.1, compared with `helm template` of the same plan on the
//! real chart. Target: the agent's part under 1 s.
//! Run: `cargo bench -p cmm-installer --bench bootstrap_plan`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cmm_core::ClusterName;
use cmm_installer::bootstrap::{prepare, Options};
use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;
use cmm_installer::kube::{connect, KubeTarget};
use cmm_installer::topology::Role;
use cmm_testkit::kube::FakeKube;
use serde_json::json;

fn stats(name: &str, mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    let mean = runs.iter().sum::<Duration>() / runs.len() as u32;
    println!(
        "{name:<40} n={:<3} mean {:>8.2} ms  p50 {:>8.2} ms  max {:>8.2} ms",
        runs.len(),
        mean.as_secs_f64() * 1e3,
        runs[runs.len() / 2].as_secs_f64() * 1e3,
        runs[runs.len() - 1].as_secs_f64() * 1e3
    );
    mean
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let fake = FakeKube::start().await;
        let node: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/nodes/eks.json")).unwrap(),
        )
        .unwrap();
        // A ten-node cluster with an existing namespace and release history, as on a re-run.
        for i in 0..10 {
            let mut n = node.clone();
            n["metadata"]["name"] = json!(format!("ip-192-168-12-{i}.eu-west-1.compute.internal"));
            fake.insert(n);
        }
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitor"}, "status": {"phase": "Active"}}));
        for v in 1..=3 {
            fake.insert(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": format!("sh.helm.release.v1.wai-eks.v{v}"), "namespace": "monitor",
                "labels": {"owner": "helm", "name": "wai-eks", "version": v.to_string(),
                           "status": if v == 3 { "deployed" } else { "superseded" }, "modifiedAt": "1700000000"}}}));
        }
        let dir = tempfile::tempdir().unwrap();
        let kc = fake.write_kubeconfig(dir.path(), "wai-eks");

        let chart_dir = std::env::var_os("CMM_CHART")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/charts/kube-prometheus-stack"));
        let chart = if chart_dir.join("Chart.yaml").is_file() {
            ChartSource::parse(chart_dir.to_str().unwrap()).unwrap()
        } else {
            ChartSource::upstream()
        };
        let opts = Options {
            cluster: ClusterName::parse("wai-eks").unwrap(),
            role: Role::Cluster,
            namespace: "monitor".into(),
            chart: chart.clone(),
            helm_version: "v3.17.3".into(),
            user_values: None,
            central_values: None,
            sets: vec!["prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka".into()],
            kube_metrics: true,
            insecure_plain_http: false,
            wiring: cmm_installer::topology::Wiring::pull(),
            timeout_secs: 600,
            pending_grace_secs: 300,
            host_proc_version: None,
            dry_run: true,
            now_unix: 1_800_000_000,
        };

        let mut agent = Vec::new();
        let mut last = None;
        for _ in 0..30 {
            let t = Instant::now();
            // Connecting is part of the work: a real run builds its client once per invocation.
            let conn = connect(&KubeTarget { kubeconfig: Some(kc.clone()), context: None, central: false })
                .await
                .unwrap();
            let p = prepare(&conn, &opts).await.unwrap();
            agent.push(t.elapsed());
            last = Some(p);
        }
        let prepared = last.unwrap();
        assert!(prepared.report.preflight_failed().next().is_none());
        let agent_mean = stats("agent: connect+detect+preflight+plan", agent);
        println!(
            "  (per run: {} API requests to the fake)",
            fake.requests().len() / 30
        );

        let helm_bin = std::env::var_os("CMM_HELM")
            .map(PathBuf::from)
            .or_else(|| Some(root.join(".tools/bin/helm")).filter(|p| p.is_file()))
            .or_else(|| Some(PathBuf::from("/usr/local/bin/helm")).filter(|p| p.is_file()));
        match (helm_bin, chart_dir.join("Chart.yaml").is_file()) {
            (Some(h), true) => {
                let helm = Helm::new(h);
                let release = prepared.release(&opts);
                let mut runs = Vec::new();
                for _ in 0..5 {
                    let t = Instant::now();
                    helm.template(&release).await.unwrap();
                    runs.push(t.elapsed());
                }
                let helm_mean = stats("helm template (same plan, real chart)", runs);
                println!(
                    "ratio agent / helm template: {:.3} (agent {:.1}% of a render)",
                    agent_mean.as_secs_f64() / helm_mean.as_secs_f64(),
                    100.0 * agent_mean.as_secs_f64() / helm_mean.as_secs_f64()
                );
            }
            _ => println!("helm template: skipped (helm or the chart not found; set CMM_HELM / CMM_CHART)"),
        }
        let verdict = if agent_mean < Duration::from_secs(1) { "met" } else { "MISSED" };
        println!("target: agent part under 1 s: {verdict}");
    });
}
