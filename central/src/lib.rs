//! CMM's side of the central Grafana: one HTTP client for Grafana's API, one probe for a
//! cluster's Prometheus, and the operations built on them — register a cluster (datasource,
//! health, per-cluster alert rules), deregister it, and issue the registration token.
//!
//! Decisions (what to send, whether an existing object is ours) are pure functions over typed
//! values; the async functions only fetch, decide and send.

pub mod contact;
pub mod endpoint;
pub mod error;
pub mod fleet;
pub mod grafana;
pub mod health;
pub mod prometheus;
pub mod register;
pub mod retry;
pub mod rules;
pub mod sanitize;
pub mod secret;
pub mod token;
pub mod trust;

pub use error::{Error, ErrorClass, Result};
pub use grafana::GrafanaClient;
pub use prometheus::PrometheusProbe;
pub use register::{deregister, register, DeregisterReport, RegisterReport, RegisterRequest};
pub use secret::{Credentials, Secret};
