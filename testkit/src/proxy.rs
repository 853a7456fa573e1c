//! A small forwarding HTTP proxy on 127.0.0.1, as a corporate proxy is to the agent: it takes
//! `CONNECT host:port` tunnels (what kube-rs and reqwest use for https, and kube-rs for every
//! server) and absolute-form requests (`GET http://host:port/path`, what reqwest sends for
//! http), and records each. Names are resolved here, not by the client: any host under
//! [`TEST_DOMAIN`] is 127.0.0.1, so a client that bypasses the proxy cannot resolve them at
//! all, which is how a test proves the proxy was (or was not) used.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Names only this proxy resolves (to 127.0.0.1); `.test` is reserved (RFC 2606), so no real
/// resolver answers for them.
pub const TEST_DOMAIN: &str = "cmm.test";

pub struct ForwardProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ForwardProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(client, seen.clone()));
                }
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request line the proxy received, e.g. `CONNECT kube.cmm.test:4321`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// `kube.cmm.test:4321` → `127.0.0.1:4321`; other names are resolved normally.
fn upstream(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((host, port)) if host == TEST_DOMAIN || host.ends_with(&format!(".{TEST_DOMAIN}")) => {
            format!("127.0.0.1:{port}")
        }
        _ => authority.to_owned(),
    }
}

async fn serve(client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(client);
    let mut head = Vec::new();
    // The request head, bounded: a proxy must not buffer without limit.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line == "\r\n" || line == "\n";
        head.push(line);
        if end || head.len() > 100 {
            break;
        }
    }
    let first = head.first().cloned().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    seen.lock().unwrap().push(format!("{method} {target}"));
    if method == "CONNECT" {
        let Ok(mut up) = TcpStream::connect(upstream(target)).await else {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let mut client = reader.into_inner();
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        return;
    }
    // Absolute form: http://host:port/path → connect there, send the head on unchanged (an
    // HTTP/1.1 server accepts the absolute form), then relay both ways.
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Ok(mut up) = TcpStream::connect(upstream(&authority)).await else {
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if up.write_all(head.concat().as_bytes()).await.is_err() {
        return;
    }
    let buffered = reader.buffer().to_vec();
    if !buffered.is_empty() && up.write_all(&buffered).await.is_err() {
        return;
    }
    let mut client = reader.into_inner();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}
