//! What `cmm-agent` knows about installing CMM on a cluster: where the chart comes from, the
//! values files shipped inside the binary, how helm is run, and what a render contains.

pub mod access;
pub mod bootstrap;
pub mod chart;
pub mod detect;
pub mod envsubst;
pub mod error;
pub mod fleet;
pub mod health;
pub mod helm;
pub mod kube;
pub mod lock;
pub mod preflight;
pub mod proxy;
pub mod release;
pub mod render;
pub mod stop;
pub mod storage;
pub mod tls;
pub mod topology;
pub mod values;
pub mod workloads;

pub use error::{Error, Result};
