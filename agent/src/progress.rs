//! Visible progress of long steps on stderr: a spinner with the elapsed time on a terminal,
//! plain timestamped lines otherwise (CI logs, journald), so a `helm --wait` of several minutes
//! never looks hung. stdout stays free for the command's result.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    tty: bool,
    start: Instant,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            // With --log-format json every line must be a JSON object: no spinner then.
            tty: std::io::stderr().is_terminal() && !crate::output::json_logs(),
            start: Instant::now(),
        }
    }

    /// A progress line: plain and timestamped, or a JSON log event.
    fn say(total: Instant, step: &str, state: &str, took: Option<f64>) {
        if crate::output::json_logs() {
            tracing::info!(
                step,
                state,
                elapsed_s = (total.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                took_s = took.map(|t| (t * 10.0).round() / 10.0),
                "progress"
            );
            return;
        }
        let at = total.elapsed().as_secs_f64();
        match took {
            Some(t) => eprintln!("[{at:>6.1}s] {step}: {state} ({t:.1}s)"),
            None => eprintln!("[{at:>6.1}s] {step} {state}"),
        }
    }

    /// Run `fut` as the step `name`, showing it while it runs and how long it took.
    pub async fn step<T, E>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let began = Instant::now();
        let total = self.start;
        if !self.tty {
            Self::say(total, name, "...", None);
        }
        let ticker = {
            let name = name.to_owned();
            let tty = self.tty;
            tokio::spawn(async move {
                const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut i = 0usize;
                loop {
                    if tty {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let mut err = std::io::stderr().lock();
                        let _ = write!(
                            err,
                            "\r\x1b[2K{} {name} ({:.0}s)",
                            FRAMES[i % FRAMES.len()],
                            began.elapsed().as_secs_f64()
                        );
                        let _ = err.flush();
                        i += 1;
                    } else {
                        // A heartbeat so a log reader sees the wait is alive.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Self::say(
                            total,
                            &name,
                            "still running",
                            Some(began.elapsed().as_secs_f64()),
                        );
                    }
                }
            })
        };
        let out = fut.await;
        ticker.abort();
        let mark = if out.is_ok() { "done" } else { "FAILED" };
        let took = began.elapsed().as_secs_f64();
        if self.tty {
            let sym = if out.is_ok() { '✓' } else { '✗' };
            eprintln!("\r\x1b[2K{sym} {name} ({took:.1}s)");
        } else {
            Self::say(total, name, mark, Some(took));
        }
        out
    }
}
