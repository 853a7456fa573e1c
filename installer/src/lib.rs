//! What `cmm-agent` knows about installing CMM on a cluster: where the chart comes from, the
//! values files shipped inside the binary, how helm is run, and what a render contains.

pub mod chart;
pub mod envsubst;
pub mod error;
pub mod fleet;
pub mod helm;
pub mod render;
pub mod values;

pub use error::{Error, Result};
