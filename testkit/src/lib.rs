//! Fakes of the remote APIs CMM talks to, served over real HTTP on 127.0.0.1 so the real
//! clients (kube-rs, reqwest) are exercised end to end. They are fakes: they follow the
//! documented contracts (Kubernetes API conventions, Grafana's OpenAPI spec and
//! ../shared/contracts/GRAFANA-CONTRACT.md) and record every request so tests can assert what
//! was, and was not, sent.

pub mod crds;
pub mod grafana;
pub mod kube;
/// Not a fake: a real nginx running the mutual-TLS proxy configuration each_cluster.yaml renders.
pub mod mtls_proxy;
/// CMM's central TLS material (a real CA, made by cmm-pki) as Secrets for the fake API server.
pub mod pki;
/// Not a fake: a real Prometheus and node_exporter (Debian packages) run for endpoint checks.
pub mod prometheus;
/// Not a fake of a remote API: a forwarding proxy between the agent and the fakes.
pub mod proxy;
pub mod releases;
/// Not a fake: real Prometheus servers remote-writing into a real receiver (the push topology).
pub mod remote_write;
pub mod scene;
/// Not a fake: a real systemd as PID 1 in namespaces over a Debian root.
pub mod systemd;
/// Not a fake: a real nginx terminating TLS in front of a fake (benchmarks over HTTPS).
pub mod tls_front;

/// A `http://127.0.0.1:PORT` URL nothing listens on: the port was bound and released, so a
/// connection is refused at once (an unreachable Grafana or Prometheus without a slow timeout).
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    format!("http://{}", l.local_addr().expect("local address"))
}

/// A test that cannot run here says "SKIPPED" where people see it: straight to the process's
/// stderr, past libtest's capture (which takes only the print macros), so the line shows even
/// though libtest reports the test as passed. Under CI (`CI=true`) a skip is a failure.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run here, and CI=true does not allow a skip: {why}");
    }
    note_skip(test, why);
}

/// As [`skip`], for a part of a test that this machine cannot have (no IPv6): said, never fatal.
pub fn note_skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Start a [`grafana::FakeGrafana`], or return from the calling test when the spec it is held
/// to is absent (it fails instead under `CMM_REQUIRE_TOOLS`).
#[macro_export]
macro_rules! fake_grafana {
    () => {
        match $crate::grafana::FakeGrafana::start_or_skip(module_path!()).await {
            Some(f) => f,
            None => return,
        }
    };
}
