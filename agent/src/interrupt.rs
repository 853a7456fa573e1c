//! SIGINT and SIGTERM. The first one raises the run's [`Stop`]: helm is sent SIGTERM and given
//! a bounded time, waits end, the run lock is released and temporary files are removed as the
//! command unwinds, and `main` prints the state the cluster is left in. A second signal, or a
//! run that has not unwound within [`HARD_STOP`], ends the process at once.
//!
//! Handlers are installed explicitly, which also makes the agent stoppable as PID 1 in a
//! container (the kernel drops default-action signals sent to PID 1).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cmm_installer::stop::Stop;

/// Longest time from the first signal to exit: helm's grace plus the lock release.
pub const HARD_STOP: Duration = Duration::from_secs(40);

static STOP: OnceLock<Stop> = OnceLock::new();
static STAGE: Mutex<Option<Stage>> = Mutex::new(None);

/// What an interruption at this point leaves behind, and what the next run will do.
#[derive(Debug, Clone)]
pub struct Stage {
    pub left: String,
    pub next: String,
}

/// The process-wide stop request.
pub fn stop() -> Stop {
    STOP.get_or_init(Stop::new).clone()
}

/// Record where the run is, for the message an interruption prints.
pub fn stage(left: impl Into<String>, next: impl Into<String>) {
    *STAGE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Stage {
        left: left.into(),
        next: next.into(),
    });
}

pub fn current_stage() -> Option<Stage> {
    STAGE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Listen for SIGINT/SIGTERM on the runtime. Returns a future that resolves when the process
/// must end without waiting any longer: a second signal, or `grace` after the first. A command
/// that does not wind down on the stop request (it only reads, or sends single requests that
/// are safe to abandon) passes zero and ends at the first signal.
pub fn install(
    grace: Duration,
) -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let stop = stop();
    Ok(async move {
        let first = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        stop.stop(first);
        if grace.is_zero() {
            return first;
        }
        tracing::warn!(
            signal = first,
            "stopping: forwarding to helm, releasing the run lock"
        );
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = tokio::time::sleep(grace) => {}
        }
        first
    })
}
