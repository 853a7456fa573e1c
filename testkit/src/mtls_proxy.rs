//! A real nginx (Debian package) run with the proxy configuration and start script that
//! each_cluster.yaml (or a receiver's overlay) renders, in front of a real Prometheus or
//! VictoriaMetrics.
//!
//! Only deployment paths are rewritten, to this machine's: the pod's mounts (/etc/cmm-tls,
//! /etc/cmm-proxy, /tmp), the upstream (Prometheus' 127.0.0.1:9090 or VictoriaMetrics'
//! 127.0.0.1:8428), the listen port 9443 and the plain health port 8429. Every TLS and
//! admission directive, and every rewrite of a request, runs as rendered. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// The files the `cmm-prometheus-tls` Secret mounts at /etc/cmm-tls.
pub struct TlsFiles<'a> {
    pub server_cert: &'a str,
    pub server_key: &'a str,
    pub ca_bundle: &'a str,
}

pub struct RealProxy {
    pub port: u16,
    /// The plain health server's port, when the rendered conf has one (`listen 8429;`).
    pub health_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        // SIGTERM: run.sh's trap stops nginx gracefully; then make sure nothing is left.
        let _ = nix_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("tmp/nginx.pid")) {
            let _ = nix_kill(pid.trim().parse().unwrap_or(0), "KILL");
        }
    }
}

fn nix_kill(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    if pid == 0 {
        return Ok(std::process::ExitStatus::default());
    }
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
}

/// Is nginx here? Skips (false, reason printed) without it; a failure under CMM_REQUIRE_TOOLS.
pub fn available(test: &str) -> bool {
    !crate::prometheus::missing(test, NGINX, "apt-get install nginx; scripts/dev tools")
}

impl RealProxy {
    /// Start `run.sh` (which starts nginx) with the rendered `nginx_conf`, the TLS files and
    /// `upstream_port` standing for Prometheus' 127.0.0.1:9090. `reload_check_secs` is how
    /// often the script looks for renewed certificates (30 s in a pod).
    pub async fn start(
        nginx_conf: &str,
        run_sh: &str,
        tls: &TlsFiles<'_>,
        upstream_port: u16,
        reload_check_secs: u32,
    ) -> RealProxy {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["tls", "proxy", "tmp"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        let port = crate::prometheus::free_port();
        let paths = |text: &str| {
            // /tmp first: the directory made here is itself under /tmp.
            text.replace("/tmp/", &format!("{}/", root.join("tmp").display()))
                .replace("/tmp;", &format!("{};", root.join("tmp").display()))
                .replace("/etc/cmm-tls/", &format!("{}/", root.join("tls").display()))
                .replace(
                    "/etc/cmm-proxy/",
                    &format!("{}/", root.join("proxy").display()),
                )
        };
        let upstream = format!("127.0.0.1:{upstream_port}");
        let mut conf = paths(nginx_conf)
            .replace("127.0.0.1:9090", &upstream)
            .replace("127.0.0.1:8428", &upstream);
        let health_port = conf
            .contains("listen 8429;")
            .then(crate::prometheus::free_port);
        if let Some(h) = health_port {
            conf = conf.replace("listen 8429;", &format!("listen 127.0.0.1:{h};"));
        }
        assert_ne!(
            conf,
            paths(nginx_conf),
            "the rendered conf has no upstream to point here"
        );
        std::fs::write(root.join("proxy/nginx.conf"), conf).unwrap();
        // run.sh writes the listen directives; here, the loopback addresses of this machine.
        let script = paths(run_sh)
            .replace("listen 9443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace(
                "listen [::]:9443 ssl;",
                &format!("listen [::1]:{port} ssl;"),
            );
        assert!(
            script.contains(&format!("127.0.0.1:{port}")),
            "the rendered run.sh writes no listen directive to point here"
        );
        std::fs::write(root.join("proxy/run.sh"), &script).unwrap();
        // The Secret volume is mounted before the container starts.
        write_tls(&root.join("tls"), tls);
        let proxy = RealProxy {
            port,
            health_port,
            child: Command::new("/bin/sh")
                .arg(root.join("proxy/run.sh"))
                .env("CMM_RELOAD_CHECK", reload_check_secs.to_string())
                // nginx is found on PATH in the image; here it lives in /usr/sbin.
                .env("PATH", "/usr/sbin:/usr/bin:/bin")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start run.sh"),
            dir,
        };
        proxy.wait_listening().await;
        proxy
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Replace the mounted Secret's files, as the kubelet does after a Secret update.
    pub fn write_tls(&self, tls: &TlsFiles<'_>) {
        write_tls(&self.tls_dir(), tls);
    }

    /// Has nginx exited (run.sh ends when it does)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{} within 20 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The same port over IPv6 loopback (listened on where this machine has IPv6).
    pub fn url_v6(&self) -> String {
        format!("https://[::1]:{}", self.port)
    }

    /// Put files where nginx would spool bodies (client_body, proxy): any request or answer
    /// it writes to disk then fails (500), as a full emptyDir would have it evicted.
    pub fn forbid_spooling(&self) {
        for sub in ["client_body", "proxy"] {
            let p = self.dir.path().join("tmp").join(sub);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::write(&p, b"not a directory").unwrap();
        }
    }
}

fn write_tls(d: &Path, tls: &TlsFiles<'_>) {
    for (name, text) in [
        ("tls.crt", tls.server_cert),
        ("tls.key", tls.server_key),
        ("ca.crt", tls.ca_bundle),
    ] {
        let tmp = d.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, d.join(name)).unwrap();
    }
}
