//! Proxies, as kubectl and curl use them: the real binary reaches the fake API server and the
//! fake Grafana through a forwarding proxy on 127.0.0.1 ([`ForwardProxy`]), under names only
//! the proxy resolves, so a request that bypassed it could not have succeeded; and `NO_PROXY`
//! sends a host around it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::kube::FakeKube;
use cmm_testkit::proxy::ForwardProxy;
use support::{stderr as err, Agent};

async fn run(r: Agent, args: &[&str]) -> (Agent, std::process::Output) {
    support::run_async(r, args).await
}

/// A kubeconfig whose server is `http://kube.cmm.test:<fake's port>`, optionally with the
/// cluster's own `proxy-url`.
fn kubeconfig(r: &Agent, fake: &FakeKube, proxy_url: Option<&str>) -> std::path::PathBuf {
    let port = fake.url().rsplit(':').next().unwrap().to_owned();
    let proxy = proxy_url.map_or(String::new(), |p| format!("    proxy-url: {p}\n"));
    let path = r.home.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://kube.cmm.test:{port}\n{proxy}contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_api_is_reached_through_the_proxy_unless_no_proxy_names_it() {
    let fake = FakeKube::start().await;
    let proxy = ForwardProxy::start().await;
    let port = fake.url().rsplit(':').next().unwrap().to_owned();
    let r = Agent::new();
    let kc = kubeconfig(&r, &fake, None);
    let r = r
        .env("CMM_KUBECONFIG", &kc)
        .env("HTTPS_PROXY", proxy.url())
        .env("HTTP_PROXY", proxy.url());
    let (r, o) = run(r, &["fix-storage"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let tunnel = format!("CONNECT kube.cmm.test:{port}");
    assert!(proxy.seen().contains(&tunnel), "{:?}", proxy.seen());
    assert!(!fake.requests().is_empty());

    // NO_PROXY names the server: the agent goes direct, where the name does not resolve. The
    // error says so in words, with the URL, once.
    let before = proxy.seen().len();
    let r = r.env("NO_PROXY", "localhost,.cmm.test");
    let (_r, o) = run(r, &["fix-storage"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains(&format!("http://kube.cmm.test:{port}")) && e.contains("cannot be resolved"),
        "{e}"
    );
    assert_eq!(e.matches("cannot be resolved").count(), 1, "{e}");
    assert!(!e.contains("ServiceError") && !e.contains("ERROR"), "{e}");
    assert_eq!(proxy.seen().len(), before, "{:?}", proxy.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_proxy_url_is_used_without_any_environment() {
    let fake = FakeKube::start().await;
    let proxy = ForwardProxy::start().await;
    let r = Agent::new();
    let kc = kubeconfig(&r, &fake, Some(&proxy.url()));
    let r = r.env("CMM_KUBECONFIG", &kc);
    let (_r, o) = run(r, &["fix-storage"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        proxy
            .seen()
            .iter()
            .any(|l| l.starts_with("CONNECT kube.cmm.test:")),
        "{:?}",
        proxy.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_is_reached_through_the_proxy_unless_no_proxy_names_it() {
    let grafana = cmm_testkit::fake_grafana!();
    let proxy = ForwardProxy::start().await;
    let port = grafana.url.rsplit(':').next().unwrap().to_owned();
    let url = format!("http://grafana.cmm.test:{port}");
    let r = Agent::new();
    let tf = r.home.path().join("token");
    std::fs::write(&tf, ADMIN_TOKEN).unwrap();
    let r = r
        .env("CMM_GRAFANA_TOKEN_FILE", &tf)
        .env("CMM_GRAFANA_RETRIES", "1")
        .env("HTTP_PROXY", proxy.url())
        .env("HTTPS_PROXY", proxy.url());
    let args = ["deregister", "--cluster", "kr-mum", "--grafana-url", &url];
    let (r, o) = run(r, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        proxy
            .seen()
            .iter()
            .any(|l| l.contains(&format!("{url}/api/"))),
        "{:?}",
        proxy.seen()
    );
    assert!(!grafana.requests().is_empty());

    let before = proxy.seen().len();
    let r = r.env("NO_PROXY", "grafana.cmm.test");
    let (_r, o) = run(r, &args).await;
    assert_eq!(o.status.code(), Some(8), "{}", err(&o));
    assert_eq!(proxy.seen().len(), before, "{:?}", proxy.seen());
}

/// A server that answers every request with a web page, as a wrong port or a proxy's own
/// error page would.
async fn web_page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let body = "<html><body>It works!</body></html>";
                let _ = c
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_say_what_happened_with_the_url_and_the_fix() {
    let page = web_page_server().await;
    let refused = cmm_testkit::dead_url();
    for (server, says) in [
        (page.as_str(), "not as a Kubernetes API"),
        (refused.as_str(), "connection refused"),
    ] {
        let r = Agent::new();
        let kc = r.home.path().join("kubeconfig");
        std::fs::write(
            &kc,
            format!("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n"),
        )
        .unwrap();
        let r = r.env("CMM_KUBECONFIG", &kc);
        let (_r, o) = run(r, &["fix-storage"]).await;
        assert_eq!(o.status.code(), Some(5), "{}", err(&o));
        let e = err(&o);
        assert!(
            e.contains(server) && e.contains(says) && e.contains("check"),
            "{e}"
        );
        assert_eq!(e.matches(says).count(), 1, "{e}");
    }
}
