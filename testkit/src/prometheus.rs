//! A real Prometheus and node_exporter (Debian packages) on free 127.0.0.1 ports, with the
//! scrape relabeling CMM's values add (`cluster=<name>`). Optionally behind TLS (a throw-away
//! CA made with openssl) and basic auth, through Prometheus' own web config. Killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Basic-auth login of a protected test Prometheus. A test fixture, not a secret.
pub const BASIC_USER: &str = "cmm";
pub const BASIC_PASSWORD: &str = "cmm-test-password";
// bcrypt (cost 4) of BASIC_PASSWORD, as Prometheus' web config wants it.
const BASIC_BCRYPT: &str = "$2b$04$ypwT4JBI5NNEHDzDjNSQMu0Pw9fQuu521JoNK3i9GnUXOnyUcugku";

/// A child process killed (and reaped) on drop.
pub struct Proc(Child);

impl Proc {
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Serve https with a certificate for 127.0.0.1 from a fresh CA ([`RealPrometheus::ca_pem`]).
    pub tls: bool,
    /// Require [`BASIC_USER`] / [`BASIC_PASSWORD`].
    pub basic_auth: bool,
    /// Start ready but scraping nothing (as right after an install, before the first scrape);
    /// [`RealPrometheus::start_scraping`] loads the scrape configs with a real reload.
    pub unscraped: bool,
}

pub struct RealPrometheus {
    pub url: String,
    config_path: std::path::PathBuf,
    full_config: String,
    /// PEM of the CA that signed the server certificate, with `tls`.
    pub ca_pem: Option<String>,
    _dir: tempfile::TempDir,
    _prom: Proc,
    _node: Proc,
}

impl RealPrometheus {
    /// The loopback port it listens on (what a NodePort or a Service would carry in a scene).
    pub fn port(&self) -> u16 {
        self.url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a Prometheus URL ends in :PORT")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `bin` is absent: prints why the test skips, or fails it under CMM_REQUIRE_TOOLS=1.
pub fn missing(test: &str, bin: &str, hint: &str) -> bool {
    if Path::new(bin).exists() {
        return false;
    }
    if std::env::var("CMM_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{test}: CMM_REQUIRE_TOOLS=1 but {bin} is missing ({hint})");
    }
    crate::skip(test, &format!("{bin} is missing ({hint})"));
    true
}

/// Start both, or skip (None, reason printed) when the binaries are missing — a failure when
/// `CMM_REQUIRE_TOOLS=1`.
pub async fn start(test: &str, cluster_label: &str) -> Option<RealPrometheus> {
    start_with(test, cluster_label, Options::default()).await
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 in `dir`: ca.crt, server.crt, server.key.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cmm-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

pub async fn start_with(test: &str, cluster_label: &str, opts: Options) -> Option<RealPrometheus> {
    let hint = "apt-get install prometheus prometheus-node-exporter openssl; scripts/dev tools";
    if missing(test, PROMETHEUS, hint)
        || missing(test, NODE_EXPORTER, hint)
        || (opts.tls && missing(test, OPENSSL, hint))
    {
        return None;
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

    let mut web = String::new();
    let mut self_scrape = String::new();
    if opts.tls {
        make_certs(dir.path());
        web.push_str("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
        self_scrape.push_str("    scheme: https\n    tls_config: {ca_file: ca.crt}\n");
    }
    if opts.basic_auth {
        web.push_str(&format!(
            "basic_auth_users:\n  {BASIC_USER}: {BASIC_BCRYPT}\n"
        ));
        self_scrape.push_str(&format!(
            "    basic_auth: {{username: {BASIC_USER}, password: {BASIC_PASSWORD}}}\n"
        ));
    }
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
{self_scrape}    relabel_configs:
      - {{target_label: cluster, replacement: "{cluster_label}"}}
"#
    );
    let cfg = dir.path().join("prometheus.yml");
    if opts.unscraped {
        std::fs::write(&cfg, "global:\n  scrape_interval: 1s\nscrape_configs: []\n").unwrap();
    } else {
        std::fs::write(&cfg, &config).unwrap();
    }
    let mut cmd = Command::new(PROMETHEUS);
    cmd.current_dir(dir.path())
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        // each_cluster.yaml's retentionSize, as the operator passes it to Prometheus.
        .arg("--storage.tsdb.retention.size=8GB")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if opts.unscraped {
        cmd.arg("--web.enable-lifecycle");
    }
    if !web.is_empty() {
        std::fs::write(dir.path().join("web.yml"), web).unwrap();
        cmd.arg("--web.config.file=web.yml");
    }
    let prom = Proc(cmd.spawn().expect("start prometheus"));
    let scheme = if opts.tls { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{prom_port}");
    let ca_pem = opts
        .tls
        .then(|| std::fs::read_to_string(dir.path().join("ca.crt")).unwrap());

    let mut http = reqwest::Client::builder();
    if let Some(pem) = &ca_pem {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    let http = http.build().unwrap();
    // Bounded wait: ready, and both targets scraped once.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        assert!(
            Instant::now() < deadline,
            "{test}: Prometheus at {url} did not scrape both targets within 45 s"
        );
        let ok = async {
            if opts.unscraped {
                let r = http.get(format!("{url}/-/ready")).send().await.ok()?;
                return r.status().is_success().then_some(());
            }
            let mut req = http.get(format!("{url}/api/v1/query?query=up"));
            if opts.basic_auth {
                req = req.basic_auth(BASIC_USER, Some(BASIC_PASSWORD));
            }
            let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
            let up = v["data"]["result"].as_array()?;
            (up.len() >= 2 && up.iter().all(|s| s["value"][1] == "1")).then_some(())
        }
        .await;
        if ok.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Some(RealPrometheus {
        url,
        config_path: cfg,
        full_config: config,
        ca_pem,
        _dir: dir,
        _prom: prom,
        _node: node,
    })
}

impl RealPrometheus {
    /// Load the scrape configs (node_exporter and self, with the cluster label) and reload, as
    /// the config-reloader does when the operator writes the first config.
    pub async fn start_scraping(&self) {
        std::fs::write(&self.config_path, &self.full_config).unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/-/reload", self.url))
            .send()
            .await
            .expect("reload prometheus");
        assert!(r.status().is_success(), "reload: {}", r.status());
    }
}
