//! Benchmark (not a test): what the push topology costs, measured on real processes — a
//! receiver Prometheus behind central-receiver.yaml's proxy (real nginx), and "cluster"
//! Prometheus servers remote-writing into it as push.yaml configures them. The figures in
//! docs/scaling.md come from here:
//! - series per node: a real node_exporter, everything vs what each_cluster.yaml keeps;
//! - remote-write bytes per sample: the sender's own counters over a steady stretch;
//! - receiver memory per 100k series: its RSS at 100k and 200k active series (synthetic
//!   targets), and the sender's RSS for 100k series as a Prometheus and as an agent.
//!
//! Run: `cargo bench -p cmm-installer --bench scaling` (or `scripts/dev bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use cmm_installer::bootstrap::values_for;
use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;
use cmm_installer::topology::Role;
use cmm_installer::topology::{Choice, Receiver, Topology, Wiring};
use cmm_pki::Ca;
use cmm_testkit::remote_write::{
    client, metric_sum, rss_bytes, ProtectedReceiver, Sender, Synthetic,
};

const MIB: f64 = 1024.0 * 1024.0;

async fn receiver_proxy_conf() -> (String, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let helm = Helm::new(
        std::env::var_os("CMM_HELM")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools/bin/helm")),
    );
    let chart = std::env::var("CMM_CHART").unwrap_or_else(|_| {
        root.join("../shared/charts/kube-prometheus-stack")
            .display()
            .to_string()
    });
    let chart = ChartSource::parse(&chart).unwrap();
    let wiring = Wiring::new(&Choice {
        topology: Topology::Push,
        receiver: Some(Receiver::Prometheus),
        central: true,
        ..Default::default()
    })
    .unwrap();
    let values = values_for(Role::Central, None, None, &wiring, &[]);
    let r = cmm_installer::render::template(
        &helm,
        &chart,
        "monitor",
        "monitor",
        values.iter().map(|(n, t)| (n.as_str(), t.clone())),
        &[],
    )
    .await
    .expect("helm template of the central push release (CMM_HELM, CMM_CHART)");
    let data = &r.find("ConfigMap", "cmm-mtls-proxy").unwrap()["data"];
    (
        data["nginx.conf"].as_str().unwrap().to_owned(),
        data["run.sh"].as_str().unwrap().to_owned(),
    )
}

async fn query_scalar(base: &str, client: &reqwest::Client, q: &str) -> f64 {
    let v: serde_json::Value = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// Wait (bounded) until the receiver holds at least `n` head series.
async fn until_head_series(receiver: &str, n: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let have = metric_sum(receiver, "prometheus_tsdb_head_series").await;
        if have >= n || Instant::now() > deadline {
            return have;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let test = "bench scaling";
        let (conf, run) = receiver_proxy_conf().await;
        let ca = Ca::generate(SystemTime::now()).unwrap();
        let Some(store) = ProtectedReceiver::start(test, &conf, &run, &ca, "5m").await else {
            return;
        };
        let receiver_url = store.direct_url();
        let receiver = &store.receiver;
        let reader = client(
            &ca,
            &ca.issue_client("cmm-grafana", SystemTime::now()).unwrap(),
        );
        // push.yaml's queue settings.
        let rw = |cluster: &str| store.remote_write(&ca, cluster, 2000, "5s");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_bytes(receiver.pid());

        // 1. One node, everything node_exporter exposes, pushed every 2 s for 40 s.
        let a = Sender::start(test, "bench-a", &rw("bench-a"), false, "2s")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (b0, s0) = (
            a.counter("prometheus_remote_storage_bytes_total").await,
            a.counter("prometheus_remote_storage_samples_total").await,
        );
        tokio::time::sleep(Duration::from_secs(40)).await;
        let (b1, s1) = (
            a.counter("prometheus_remote_storage_bytes_total").await,
            a.counter("prometheus_remote_storage_samples_total").await,
        );
        let node_series = query_scalar(
            &store.url(),
            &reader,
            r#"count({cluster="bench-a", job="node-exporter"})"#,
        )
        .await;
        let bytes_per_sample = (b1 - b0) / (s1 - s0).max(1.0);
        println!("series per node, all of node_exporter          {node_series:>10.0}");
        println!(
            "remote write: samples sent in 40 s              {:>10.0}",
            s1 - s0
        );
        println!(
            "remote write: bytes sent (snappy protobuf)      {:>10.0}",
            b1 - b0
        );
        println!("remote write: bytes per sample                  {bytes_per_sample:>10.2}");
        drop(a);

        // 2. 100k series from one cluster, then 100k more from an agent.
        let target = Synthetic::start(100_000).await;
        let b = Sender::start_with(
            test,
            "bench-b",
            &rw("bench-b"),
            false,
            "10s",
            std::slice::from_ref(&target.addr),
        )
        .await
        .unwrap();
        let have = until_head_series(&receiver_url, 100_000.0, Duration::from_secs(180)).await;
        // A few more scrapes, so the head holds samples and chunks for every series.
        tokio::time::sleep(Duration::from_secs(40)).await;
        let at_100k = rss_bytes(receiver.pid());
        let sender_server = b.pid().map_or(0, rss_bytes);
        let c = Sender::start_with(
            test,
            "bench-c",
            &rw("bench-c"),
            true,
            "10s",
            std::slice::from_ref(&target.addr),
        )
        .await
        .unwrap();
        let have2 = until_head_series(&receiver_url, 200_000.0, Duration::from_secs(180)).await;
        tokio::time::sleep(Duration::from_secs(40)).await;
        let at_200k = rss_bytes(receiver.pid());
        let sender_agent = c.pid().map_or(0, rss_bytes);
        println!(
            "receiver RSS idle                               {:>10.1} MiB",
            idle as f64 / MIB
        );
        println!(
            "receiver RSS at {have:>7.0} head series           {:>10.1} MiB",
            at_100k as f64 / MIB
        );
        println!(
            "receiver RSS at {have2:>7.0} head series           {:>10.1} MiB",
            at_200k as f64 / MIB
        );
        println!(
            "receiver memory per 100k series (200k - 100k)   {:>10.1} MiB",
            (at_200k as f64 - at_100k as f64) / MIB
        );
        println!(
            "sender RSS, 100k series, Prometheus             {:>10.1} MiB",
            sender_server as f64 / MIB
        );
        println!(
            "sender RSS, 100k series, agent mode             {:>10.1} MiB",
            sender_agent as f64 / MIB
        );
        drop((b, c, target));
    });
}
