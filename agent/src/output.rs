//! stdout, written in one place.
//! - A reader that went away (`cmm-agent plan | head -1`) ends the output quietly instead of a
//!   panic from `println!` (exit 101); the command still finishes and exits with its own code.
//! - With `--output json` the command's result is one JSON document, printed by `main` when
//!   the command ends: on failure the same document carries an `error` object (code, exit,
//!   message, hint), or the error object is the document when there was no result yet.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::Value;

static CLOSED: AtomicBool = AtomicBool::new(false);
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// `--log-format json`: every stderr line is then a JSON object (see [`note`]).
pub fn set_json_logs(on: bool) {
    JSON_LOGS.store(on, Ordering::Relaxed);
}

pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// A line of explanation on stderr (pod states, events): plain, or a JSON log line.
pub fn note(text: &str) {
    if json_logs() {
        tracing::warn!("{text}");
    } else {
        eprintln!("  {text}");
    }
}
static DOCUMENT: Mutex<Option<Value>> = Mutex::new(None);

/// Write `text` to stdout; after the reader has gone, nothing more is written.
pub fn print(text: &str) -> anyhow::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("writing to stdout: {e}")),
    }
}

/// One line of human output.
pub fn line(text: &str) {
    let _ = print(&format!("{text}\n"));
}

/// `println!` for the human output: same syntax, through [`line`].
macro_rules! outln {
    () => {
        $crate::output::line("")
    };
    ($($arg:tt)*) => {
        $crate::output::line(&format!($($arg)*))
    };
}
pub(crate) use outln;

/// The command's JSON result; the last one set is printed when the command ends.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let v = serde_json::to_value(value)?;
    *DOCUMENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    Ok(())
}

/// Print the JSON document (with `--output json`), adding `error` when the command failed.
pub fn finish_json(error: Option<Value>) {
    let doc = DOCUMENT.lock().unwrap_or_else(|p| p.into_inner()).take();
    let doc = match (doc, error) {
        (Some(mut d), Some(e)) if d.is_object() => {
            d["error"] = e;
            d
        }
        (Some(d), None) => d,
        (_, Some(e)) => serde_json::json!({ "error": e }),
        (None, None) => return,
    };
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let _ = print(&format!("{text}\n"));
}
