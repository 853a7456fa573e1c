//! Benchmark (not a test): what the push topology costs, measured on real processes — a
//! receiver Prometheus behind central-receiver.yaml's proxy (real nginx), and "cluster"
//! Prometheus servers remote-writing into it as push.yaml configures them. The figures in
//! docs/scaling.md come from here:
//! - series per node: a real node_exporter, everything vs what each_cluster.yaml keeps;
//! - remote-write bytes per sample: the sender's own counters over a steady stretch;
//! - receiver memory per 100k series: its RSS at 100k and 200k active series (synthetic
//!   targets), and the sender's RSS for 100k series as a Prometheus and as an agent;
//! - both receivers side by side (`receivers` section): the Prometheus receiver and
//!   VictoriaMetrics (run with central-receiver-victoriametrics.yaml's rendered arguments),
//!   each behind its rendered proxy, each fed by a Prometheus agent scraping the same 100k,
//!   then 200k, synthetic series: memory per 100k series, CPU per 1k samples, disk.
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
    client, cpu_time, disk_bytes, metric_sum, rss_bytes, ProtectedReceiver, Receiver as Store,
    Sender, Synthetic,
};

const MIB: f64 = 1024.0 * 1024.0;

async fn receiver_proxy_conf() -> (String, String) {
    let (conf, run, _) = rendered_receiver(Receiver::Prometheus).await;
    (conf, run)
}

/// The receiver proxy's nginx.conf and run.sh for `receiver`, and VictoriaMetrics' arguments.
async fn rendered_receiver(receiver: Receiver) -> (String, String, Vec<String>) {
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
        receiver: Some(receiver),
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
    let data = &r.find("ConfigMap", "cmm-receiver-mtls-proxy").unwrap()["data"];
    let vm_args = cmm_testkit::remote_write::rendered_vm_args(&r.objects).unwrap_or_default();
    (
        data["nginx.conf"].as_str().unwrap().to_owned(),
        data["run.sh"].as_str().unwrap().to_owned(),
        vm_args,
    )
}

/// How many series `base` (either receiver, read directly) holds for job `synthetic`.
async fn synthetic_series(base: &str) -> f64 {
    let c = reqwest::Client::new();
    // nocache=1: VictoriaMetrics otherwise answers as of 30 s ago (Prometheus ignores it).
    let v: serde_json::Value = match c
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", r#"count({job="synthetic"})"#), ("nocache", "1")])
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// One receiver of the side-by-side run, with its feed.
struct Side {
    name: &'static str,
    store: ProtectedReceiver,
    senders: Vec<Sender>,
}

/// Both receivers, each behind its rendered proxy, fed the same synthetic series by a
/// Prometheus agent each (push.yaml's queue): 100k series, then 200k. Per receiver: RSS at
/// each size, CPU per 1k samples over a steady stretch at 200k, and its data directory.
async fn receivers_side_by_side(test: &str, ca: &Ca) {
    let mut sides = Vec::new();
    for (name, kind) in [
        (
            "Prometheus 2.42 (remote-write receiver)",
            Receiver::Prometheus,
        ),
        (
            "VictoriaMetrics 1.79 single-node",
            Receiver::VictoriaMetrics,
        ),
    ] {
        let (conf, run, args) = rendered_receiver(kind).await;
        let store = match kind {
            Receiver::Prometheus => Store::start(test, "5m").await,
            Receiver::VictoriaMetrics => Store::start_victoriametrics(test, &args, "5m").await,
        };
        let Some(store) = store else {
            println!("receivers side by side: SKIPPED ({name} is missing)");
            return;
        };
        let store = ProtectedReceiver::around(store, &conf, &run, ca, 30).await;
        sides.push(Side {
            name,
            store,
            senders: Vec::new(),
        });
    }
    let targets = [
        Synthetic::start(100_000).await,
        Synthetic::start(100_000).await,
    ];
    let mut rss = vec![Vec::new(); sides.len()];
    for (step, target) in targets.iter().enumerate() {
        let want = 100_000.0 * (step + 1) as f64;
        for side in &mut sides {
            let cluster = format!("side-{step}");
            let rw = side.store.remote_write(ca, &cluster, 2000, "5s");
            side.senders.push(
                Sender::start_with(
                    test,
                    &cluster,
                    &rw,
                    true,
                    "10s",
                    std::slice::from_ref(&target.addr),
                )
                .await
                .unwrap(),
            );
        }
        for side in &sides {
            let deadline = Instant::now() + Duration::from_secs(240);
            while synthetic_series(&side.store.direct_url()).await < want
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        // A few more scrapes (10 s apart), so every series has samples and chunks.
        tokio::time::sleep(Duration::from_secs(40)).await;
        for (i, side) in sides.iter().enumerate() {
            rss[i].push(rss_bytes(side.store.receiver.pid()));
        }
    }
    // A steady stretch at 200k series: each receiver's CPU against the samples sent to it.
    let mut cpu0 = Vec::new();
    let mut sent0 = Vec::new();
    for side in &sides {
        cpu0.push(cpu_time(side.store.receiver.pid()));
        let mut n = 0.0;
        for s in &side.senders {
            n += s.counter("prometheus_remote_storage_samples_total").await;
        }
        sent0.push(n);
    }
    tokio::time::sleep(Duration::from_secs(100)).await;
    println!(
        "receivers side by side, one stream (100k then 200k synthetic series, scraped every 10 s):"
    );
    println!(
        "{:<42} {:>12} {:>12} {:>10} {:>10} {:>14} {:>10}",
        "receiver", "RSS 100k", "RSS 200k", "MiB/100k", "slope", "CPU ms/1k smp", "disk MiB"
    );
    for (i, side) in sides.iter().enumerate() {
        let cpu = cpu_time(side.store.receiver.pid()) - cpu0[i];
        let mut n = 0.0;
        for s in &side.senders {
            n += s.counter("prometheus_remote_storage_samples_total").await;
        }
        let samples = (n - sent0[i]).max(1.0);
        println!(
            "{:<42} {:>8.1} MiB {:>8.1} MiB {:>10.1} {:>10.1} {:>14.2} {:>10.1}",
            side.name,
            rss[i][0] as f64 / MIB,
            rss[i][1] as f64 / MIB,
            rss[i][1] as f64 / MIB / 2.0,
            (rss[i][1] as f64 - rss[i][0] as f64) / MIB,
            cpu.as_secs_f64() * 1e3 / (samples / 1000.0),
            disk_bytes(&side.store.receiver.data_dir) as f64 / MIB,
        );
    }
    println!(
        "(MiB/100k: RSS at 200k series / 2; slope: RSS at 200k - at 100k; CPU over 100 s at 200k series; disk after the run)"
    );
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
        // `CMM_BENCH_SCALING=receivers`: only the side-by-side section (the others take minutes).
        if std::env::var("CMM_BENCH_SCALING").as_deref() == Ok("receivers") {
            receivers_side_by_side(test, &Ca::generate(SystemTime::now()).unwrap()).await;
            return;
        }
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
        drop((b, c, target, store));

        // 3. Both receivers on one stream.
        receivers_side_by_side(test, &ca).await;
    });
}
