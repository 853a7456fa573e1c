//! A request to stop, shared by everything a run does: the agent raises it on SIGINT/SIGTERM
//! or when the run lock is lost; long steps (helm, waits) watch it and end cleanly instead of
//! being dropped mid-way.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

#[derive(Clone, Default, Debug)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything to stop; the first reason given is kept (e.g. `SIGTERM`).
    pub fn stop(&self, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    /// Why the run was asked to stop (`SIGINT`, `SIGTERM`, `lock lost`).
    pub fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "a stop request".to_owned())
    }

    /// Run `fut` unless a stop comes first; then it is dropped (only for steps that are safe
    /// to abandon: reads and bounded waits, never a running helm).
    pub async fn or_stop<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = crate::Result<T>>,
    ) -> crate::Result<T> {
        tokio::select! {
            r = fut => r,
            _ = self.stopped() => Err(crate::Error::Interrupted {
                signal: self.reason(),
                detail: format!("stopped while {what}"),
            }),
        }
    }
}
