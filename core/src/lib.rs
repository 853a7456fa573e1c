//! CMM's shared vocabulary.
//!
//! Every name that more than one part of CMM has to agree on — the label that tells clusters
//! apart, the object names the values files pin, the Grafana datasource naming — is defined
//! here once, so the agent, the values files' tests and the Grafana side cannot drift apart.

pub mod content;
pub mod datasource;
pub mod duration;
pub mod finding;
pub mod naming;

pub use naming::{ClusterName, NameError};
