//! A real nginx (Debian package) terminating TLS in front of a fake on 127.0.0.1, so a client
//! pays what it pays against a real API server or Grafana behind HTTPS: the handshake, the
//! certificate checks, the encryption. The server certificate is issued for 127.0.0.1 by a CA
//! of its own; the client is given that CA. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::mtls_proxy::NGINX;

pub struct TlsFront {
    pub port: u16,
    /// The CA that issued the front's certificate (PEM), for the client's trust.
    pub ca_pem: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsFront {
    /// Serve `https://127.0.0.1:<port>` and forward to `upstream` (`http://127.0.0.1:N`) over
    /// kept-alive HTTP/1.1, as a load balancer in front of an API server does.
    pub async fn start(upstream: &str) -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let now = SystemTime::now();
        let ca = cmm_pki::Ca::generate(now).expect("a CA");
        let leaf = ca
            .issue_server(
                "tls-front",
                &[cmm_pki::San::parse("127.0.0.1").unwrap()],
                now,
            )
            .expect("a server certificate");
        std::fs::write(root.join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(root.join("tls.key"), &leaf.key_pem).unwrap();
        let port = crate::prometheus::free_port();
        let r = root.display();
        let upstream = upstream.trim_end_matches('/');
        std::fs::write(
            root.join("nginx.conf"),
            format!(
                "worker_processes 1;\ndaemon off;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n\
                 client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
                 fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n\
                 scgi_temp_path {r}/scgi;\n  upstream fake {{ server {host}; keepalive 16; }}\n\
                 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {r}/tls.crt;\n\
                 ssl_certificate_key {r}/tls.key;\n    location / {{\n\
                 proxy_pass http://fake;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
                 proxy_buffering off;\n    }}\n  }}\n}}\n",
                host = upstream.trim_start_matches("http://"),
            ),
        )
        .unwrap();
        let child = Command::new(NGINX)
            .args(["-e", &format!("{r}/error.log"), "-c"])
            .arg(root.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let front = TlsFront {
            port,
            ca_pem: ca.cert_pem().to_owned(),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        front
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA written to a file (PEM), for clients that take a path.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.crt");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}
