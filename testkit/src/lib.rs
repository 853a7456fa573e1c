//! Fakes of the remote APIs CMM talks to, served over real HTTP on 127.0.0.1 so the real
//! clients (kube-rs, reqwest) are exercised end to end. They are fakes: they follow the
//! documented contracts (Kubernetes API conventions, Grafana's OpenAPI spec and
//! ../shared/contracts/GRAFANA-CONTRACT.md) and record every request so tests can assert what
//! was, and was not, sent.

pub mod grafana;
pub mod kube;
/// Not a fake: a real Prometheus and node_exporter (Debian packages) run for endpoint checks.
pub mod prometheus;
