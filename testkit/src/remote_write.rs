//! Not a fake: the push topology on real processes (Debian's Prometheus 2.42, node_exporter
//! and VictoriaMetrics 1.79). A receiver (a Prometheus with `--web.enable-remote-write-receiver`
//! or a VictoriaMetrics single-node run with the arguments its overlay renders), and
//! "cluster" Prometheus servers (optionally in agent mode) that scrape a node_exporter and
//! remote-write what they scrape, as the operator configures them from push.yaml.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::prometheus::{free_port, missing, Proc, NODE_EXPORTER, PROMETHEUS};

/// Debian's `victoria-metrics` package.
pub const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

/// A receiver: stores what it is sent, scrapes nothing (central-receiver.yaml's Prometheus).
pub struct Receiver {
    pub port: u16,
    pub data_dir: PathBuf,
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Start one; `lookback` is `--query.lookback-delta` (Prometheus: 5m), which decides how
    /// long a series with no new sample still answers an instant query.
    pub async fn start(test: &str, lookback: &str) -> Option<Receiver> {
        if missing(
            test,
            PROMETHEUS,
            "apt-get install prometheus; scripts/dev tools",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global: {}\nscrape_configs: []\n").unwrap();
        let port = free_port();
        let data_dir = dir.path().join("data");
        let child = Command::new(PROMETHEUS)
            .current_dir(dir.path())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // What enableRemoteWriteReceiver makes the operator pass (promcfg.go).
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--query.lookback-delta={lookback}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the receiver");
        let r = Receiver {
            port,
            data_dir,
            proc: Proc::new(child),
            _dir: dir,
        };
        wait_ready(test, &format!("http://127.0.0.1:{port}")).await;
        Some(r)
    }

    /// A VictoriaMetrics single-node run with `rendered_args` (the container's arguments as
    /// central-receiver-victoriametrics.yaml renders them), only its listen address and
    /// storage path pointed at this machine. `lookback` is `-search.maxStalenessInterval`,
    /// which stands for Prometheus' lookback delta: how long a series with no new sample
    /// still answers an instant query (VictoriaMetrics' app/vmselect/promql/eval.go).
    pub async fn start_victoriametrics(
        test: &str,
        rendered_args: &[String],
        lookback: &str,
    ) -> Option<Receiver> {
        if missing(
            test,
            VICTORIA_METRICS,
            "apt-get install victoria-metrics; scripts/dev tools",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let data_dir = dir.path().join("data");
        let mut args: Vec<String> = rendered_args
            .iter()
            .map(|a| {
                if a.starts_with("-httpListenAddr=") {
                    format!("-httpListenAddr=127.0.0.1:{port}")
                } else if a.starts_with("-storageDataPath=") {
                    format!("-storageDataPath={}", data_dir.display())
                } else {
                    a.clone()
                }
            })
            .collect();
        assert!(
            args.iter().any(|a| a.ends_with(&format!(":{port}"))),
            "the rendered arguments set no -httpListenAddr: {rendered_args:?}"
        );
        args.push(format!("-search.maxStalenessInterval={lookback}"));
        let child = Command::new(VICTORIA_METRICS)
            .current_dir(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics");
        let r = Receiver {
            port,
            data_dir,
            proc: Proc::new(child),
            _dir: dir,
        };
        wait_healthy(test, &format!("http://127.0.0.1:{port}/health")).await;
        Some(r)
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }
}

async fn wait_healthy(test: &str, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{test}: {url} not OK within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The remote-write section of a sender, as the operator generates it from the Prometheus
/// CR's `remoteWrite` item (pkg/prometheus/promcfg.go generateRemoteWriteConfig): the URL, the
/// TLS files the Secret is mounted as, the server name, the queue's batch size and deadline.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    pub name: String,
    pub url: String,
    pub server_name: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub max_samples_per_send: u64,
    pub batch_send_deadline: String,
}

/// A cluster's Prometheus (or agent) and its node_exporter.
pub struct Sender {
    pub cluster: String,
    pub port: u16,
    prom: Option<Proc>,
    _node: Proc,
    _dir: tempfile::TempDir,
}

impl Sender {
    /// Start node_exporter and a Prometheus scraping it every `scrape_interval` with the
    /// `cluster` label (each_cluster.yaml's scrape class and external label), remote-writing
    /// to `rw`. `agent`: `--enable-feature=agent`, as a PrometheusAgent runs.
    pub async fn start(
        test: &str,
        cluster: &str,
        rw: &RemoteWrite,
        agent: bool,
        scrape_interval: &str,
    ) -> Option<Sender> {
        Self::start_with(test, cluster, rw, agent, scrape_interval, &[]).await
    }

    /// [`start`](Self::start), also scraping `extra_targets` (host:port, job `synthetic`).
    pub async fn start_with(
        test: &str,
        cluster: &str,
        rw: &RemoteWrite,
        agent: bool,
        scrape_interval: &str,
        extra_targets: &[String],
    ) -> Option<Sender> {
        let hint = "apt-get install prometheus prometheus-node-exporter; scripts/dev tools";
        if missing(test, PROMETHEUS, hint) || missing(test, NODE_EXPORTER, hint) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (f, text) in [
            ("ca.crt", &rw.ca_pem),
            ("client.crt", &rw.client_cert_pem),
            ("client.key", &rw.client_key_pem),
        ] {
            std::fs::write(d.join(f), text).unwrap();
        }
        let node_port = free_port();
        let node = Proc::new(
            Command::new(NODE_EXPORTER)
                .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start node_exporter"),
        );
        let port = free_port();
        let mode = if agent { "agent" } else { "server" };
        let replica = if agent {
            "prom-agent-cmm-0"
        } else {
            "prometheus-cmm-0"
        };
        // External labels as the operator sets them (its own `prometheus` and
        // `prometheus_replica`, then the CR's externalLabels).
        let config = format!(
            r#"global:
  scrape_interval: {scrape_interval}
  external_labels:
    cluster: "{cluster}"
    prometheus: monitor/cmm
    prometheus_replica: {replica}
scrape_configs:
  - job_name: node-exporter
    static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
    relabel_configs:
      - {{target_label: cluster, replacement: "{cluster}"}}
  - job_name: prometheus-{mode}
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
    relabel_configs:
      - {{target_label: cluster, replacement: "{cluster}"}}
{extra}remote_write:
  - name: {name}
    url: "{url}"
    tls_config:
      ca_file: {dir}/ca.crt
      cert_file: {dir}/client.crt
      key_file: {dir}/client.key
      server_name: {server_name}
    queue_config:
      max_samples_per_send: {max}
      batch_send_deadline: {deadline}
"#,
            extra = if extra_targets.is_empty() {
                String::new()
            } else {
                format!(
                    "  - job_name: synthetic\n    scrape_timeout: 10s\n    static_configs: [{{targets: {}}}]\n    relabel_configs:\n      - {{target_label: cluster, replacement: \"{cluster}\"}}\n",
                    serde_json::to_string(extra_targets).unwrap()
                )
            },
            name = rw.name,
            url = rw.url,
            dir = d.display(),
            server_name = rw.server_name,
            max = rw.max_samples_per_send,
            deadline = rw.batch_send_deadline,
        );
        std::fs::write(d.join("prometheus.yml"), config).unwrap();
        let mut cmd = Command::new(PROMETHEUS);
        cmd.current_dir(d)
            .arg("--config.file=prometheus.yml")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if agent {
            cmd.arg("--enable-feature=agent")
                .arg(format!("--storage.agent.path={}", d.join("wal").display()));
        } else {
            cmd.arg(format!("--storage.tsdb.path={}", d.join("data").display()));
        }
        let prom = Proc::new(cmd.spawn().expect("start the sender"));
        wait_ready(test, &format!("http://127.0.0.1:{port}")).await;
        Some(Sender {
            cluster: cluster.to_owned(),
            port,
            prom: Some(prom),
            _node: node,
            _dir: dir,
        })
    }

    /// Replace the TLS files its remote write reads, as the kubelet updates the mounted Secret
    /// after a renewal. Prometheus reads the client certificate again for each new connection
    /// and the CA file when it changes (prometheus/common `config/http_config.go`).
    pub fn write_tls(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) {
        for (f, text) in [
            ("ca.crt", ca_pem),
            ("client.crt", cert_pem),
            ("client.key", key_pem),
        ] {
            let path = self._dir.path().join(f);
            let tmp = self._dir.path().join(format!(".{f}.new"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(tmp, path).unwrap();
        }
    }

    /// The sender Prometheus' process id (for its memory).
    pub fn pid(&self) -> Option<u32> {
        self.prom.as_ref().map(Proc::id)
    }

    /// Cut the sender off as a lost network or a dead node would: SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        self.prom.take();
    }

    /// The sender's own counter `name` (summed over its series) from /metrics.
    pub async fn counter(&self, name: &str) -> f64 {
        metric_sum(&format!("http://127.0.0.1:{}", self.port), name).await
    }
}

/// Sum of every sample of `name` in a /metrics page.
pub async fn metric_sum(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("read /metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU time (user + system) a process has used so far (from /proc; clock ticks of 10 ms).
/// The VictoriaMetrics container's arguments in a render of the central push release
/// (central-receiver-victoriametrics.yaml's StatefulSet), or `None` when the render holds
/// the other receiver: what [`Receiver::start_victoriametrics`] runs with.
pub fn rendered_vm_args(objects: &[serde_json::Value]) -> Option<Vec<String>> {
    let vm = objects
        .iter()
        .find(|v| v["kind"] == "StatefulSet" && v["metadata"]["name"] == "cmm-receiver-vm")?;
    let c = &vm["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["name"], "victoria-metrics",
        "the StatefulSet's first container"
    );
    Some(serde_json::from_value(c["args"].clone()).expect("the container's args are strings"))
}

pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Bytes under `dir`, every file counted (a store's disk use).
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident memory of a process, bytes (from /proc).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

async fn wait_ready(test: &str, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/-/ready")).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{test}: Prometheus at {base} not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A scrape target with `series` series of one gauge (labels like a pod's), for sizing.
/// Served on 127.0.0.1 until dropped.
pub struct Synthetic {
    pub addr: String,
    _task: tokio::task::JoinHandle<()>,
}

impl Synthetic {
    pub async fn start(series: usize) -> Synthetic {
        use std::fmt::Write;
        let mut body = String::with_capacity(series * 100);
        body.push_str("# TYPE cmm_bench_gauge gauge\n");
        for i in 0..series {
            let _ = writeln!(
                body,
                "cmm_bench_gauge{{namespace=\"ns-{}\",pod=\"pod-{}-{:05}\",container=\"c\"}} {}",
                i % 50,
                i / 1000,
                i,
                i % 97
            );
        }
        let body = std::sync::Arc::new(body);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let b = body.clone();
                async move { (*b).clone() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Synthetic { addr, _task: task }
    }
}

/// A [`Receiver`] behind the receiver proxy: a real nginx running central-receiver.yaml's
/// rendered `nginx_conf` and `run_sh`, with a server certificate from `ca` for the name the
/// clusters check (`cmm-receiver`) and 127.0.0.1.
pub struct ProtectedReceiver {
    pub receiver: Receiver,
    pub proxy: crate::mtls_proxy::RealProxy,
}

impl ProtectedReceiver {
    pub async fn start(
        test: &str,
        nginx_conf: &str,
        run_sh: &str,
        ca: &cmm_pki::Ca,
        lookback: &str,
    ) -> Option<ProtectedReceiver> {
        Self::start_with_reload(test, nginx_conf, run_sh, ca, lookback, 30).await
    }

    /// [`start`](Self::start), the proxy looking for a renewed Secret every
    /// `reload_check_secs` (30 in a pod).
    pub async fn start_with_reload(
        test: &str,
        nginx_conf: &str,
        run_sh: &str,
        ca: &cmm_pki::Ca,
        lookback: &str,
        reload_check_secs: u32,
    ) -> Option<ProtectedReceiver> {
        if !crate::mtls_proxy::available(test) {
            return None;
        }
        let receiver = Receiver::start(test, lookback).await?;
        Some(Self::around(receiver, nginx_conf, run_sh, ca, reload_check_secs).await)
    }

    /// `receiver` (either kind) behind the rendered proxy, the certificates from `ca`.
    pub async fn around(
        receiver: Receiver,
        nginx_conf: &str,
        run_sh: &str,
        ca: &cmm_pki::Ca,
        reload_check_secs: u32,
    ) -> ProtectedReceiver {
        let name = "cmm-receiver";
        let server = ca
            .issue_server(
                name,
                &[
                    cmm_pki::San::parse(name).unwrap(),
                    cmm_pki::San::parse("127.0.0.1").unwrap(),
                ],
                std::time::SystemTime::now(),
            )
            .unwrap();
        let proxy = crate::mtls_proxy::RealProxy::start(
            nginx_conf,
            run_sh,
            &crate::mtls_proxy::TlsFiles {
                server_cert: &server.cert_pem,
                server_key: &server.key_pem,
                ca_bundle: ca.cert_pem(),
            },
            receiver.port,
            reload_check_secs,
        )
        .await;
        ProtectedReceiver { receiver, proxy }
    }

    /// The proxy's base URL (what Grafana's datasource and the clusters' URL point at).
    pub fn url(&self) -> String {
        self.proxy.url()
    }

    /// The receiver itself, unprotected (its own /metrics, for sizing).
    pub fn direct_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.receiver.port)
    }

    /// How `cluster` sends here: its own certificate (`cmm-self-<cluster>`) from `ca`, the
    /// server name `cmm-receiver`, batches of `max_samples` within `deadline`.
    pub fn remote_write(
        &self,
        ca: &cmm_pki::Ca,
        cluster: &str,
        max_samples: u64,
        deadline: &str,
    ) -> RemoteWrite {
        let me = ca
            .issue_client(&format!("cmm-self-{cluster}"), std::time::SystemTime::now())
            .unwrap();
        RemoteWrite {
            name: "cmm-central".into(),
            url: format!("{}/api/v1/write", self.url()),
            server_name: "cmm-receiver".into(),
            ca_pem: ca.cert_pem().to_owned(),
            client_cert_pem: me.cert_pem,
            client_key_pem: me.key_pem,
            max_samples_per_send: max_samples,
            batch_send_deadline: deadline.to_owned(),
        }
    }
}

/// An HTTPS client trusting only `ca` and presenting `identity`.
pub fn client(ca: &cmm_pki::Ca, identity: &cmm_pki::Leaf) -> reqwest::Client {
    let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.cert_pem().as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
