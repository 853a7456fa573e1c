//! CMM's shared vocabulary.
//!
//! Names that more than one crate has to agree on (the label that tells clusters apart, the
//! object and Secret names the values files pin, the Grafana datasource naming), the one
//! `Finding` type, the duration grammar and the embedded content live here, so the agent, the
//! installer and the Grafana side cannot drift apart. A name only one crate uses stays in that
//! crate beside its code (e.g. the topology's objects in `cmm_installer::topology`); the
//! values files' tests read these names from the files themselves.

pub mod content;
pub mod datasource;
pub mod duration;
pub mod finding;
pub mod naming;

pub use naming::{ClusterName, NameError};
