//! A real Prometheus and node_exporter (Debian packages) on free 127.0.0.1 ports, with the
//! scrape relabeling CMM's values add (`cluster=<name>`). Killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct RealPrometheus {
    pub url: String,
    _dir: tempfile::TempDir,
    _prom: Proc,
    _node: Proc,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start both, or skip (None, reason printed) when the binaries are missing — a failure when
/// `CMM_REQUIRE_TOOLS=1`.
pub async fn start(test: &str, cluster_label: &str) -> Option<RealPrometheus> {
    for bin in [PROMETHEUS, NODE_EXPORTER] {
        if !Path::new(bin).exists() {
            if std::env::var("CMM_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("{test}: CMM_REQUIRE_TOOLS=1 but {bin} is missing (scripts/dev tools installs it)");
            }
            eprintln!("SKIP {test}: {bin} is missing (apt-get install prometheus prometheus-node-exporter)");
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let node_port = free_port();
    let node = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let node = Proc(node);
    let prom_port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node-exporter
    static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
    relabel_configs:
      - {{target_label: cluster, replacement: "{cluster_label}"}}
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{prom_port}"]}}]
    relabel_configs:
      - {{target_label: cluster, replacement: "{cluster_label}"}}
"#
    );
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let prom = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prom = Proc(prom);
    let url = format!("http://127.0.0.1:{prom_port}");
    // Bounded wait: ready, and both targets scraped once.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        assert!(
            Instant::now() < deadline,
            "{test}: Prometheus at {url} did not scrape both targets within 45 s"
        );
        let ok = async {
            let r = http
                .get(format!("{url}/api/v1/query?query=up"))
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            let n = v["data"]["result"].as_array()?.len();
            (n >= 2).then_some(())
        }
        .await;
        if ok.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Some(RealPrometheus {
        url,
        _dir: dir,
        _prom: prom,
        _node: node,
    })
}
