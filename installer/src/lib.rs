//! Everything `cmm-agent` does to a cluster, below the command line, in two halves. The modules
//! import each other without a circle (`python3 scripts/shape.py` lists any):
//!
//! - **The install plan**: decisions as pure functions over typed values (`fixes`, `plan_of`,
//!   `judge*`, `decide_*`), the reads they need made elsewhere. [`topology`] (how the fleet is wired, the role a
//!   release plays, the values files each role installs), [`values`] and [`envsubst`] (the
//!   embedded files), [`set`] (helm `--set` checks), [`stack`] (the values files of a release, in order), [`fleet`] (a whole fleet's plan),
//!   [`detect`] (environment quirks from what the API showed), [`bootstrap`] (the fixes, the
//!   plan and its digest), [`access`] (the one table of reads and writes) and [`preflight`]
//!   (that table asked of the API server), [`release`] (helm's release records), [`health`],
//!   [`workloads`] and [`storage`] (judgements over a snapshot), [`chart`], [`helm`] and
//!   [`render`] (running helm; [`preflight`] and `bootstrap::prepare` also ask the API server).
//! - **Cluster access**: [`kube`] (the one Kubernetes client), [`lock`] (the run lock, a
//!   Lease), [`tls`] (the CMM CA and the certificates issued from it), [`proxy`] and [`stop`].
//!
//! `ARCHITECTURE.md` at the repository root draws the same map for the whole workspace.

pub mod access;
pub mod bootstrap;
pub mod chart;
pub mod clash;
pub mod consumers;
pub mod crds;
pub mod detect;
pub mod envsubst;
pub mod error;
pub mod fleet;
pub mod grafana_secrets;
pub mod health;
pub mod helm;
pub mod helm_cache;
pub mod kube;
pub mod lock;
pub mod preflight;
pub mod proxy;
pub mod release;
pub mod render;
pub mod set;
pub mod stack;
pub mod stop;
pub mod storage;
pub mod tls;
pub mod topology;
pub mod values;
pub mod workloads;
pub mod yaml;

pub use error::{Error, Result};
