//! The agent's library: what the commands call, below their settings. Nothing here reads a
//! clap struct or imports a command (`cmd`); each entry takes typed settings (`settings`) and
//! returns reports as data for the one renderer (`render`).

pub mod central;
pub mod certificates;
pub mod checkup;
pub mod crds;
pub mod endpoint;
pub mod install;
pub mod plan;
pub mod registration;
pub mod storage;
pub mod transfer;
pub mod update;
