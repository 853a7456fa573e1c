//! stdout, written in one place: a reader that went away (`cmm-agent plan | head -1`) ends the
//! command quietly instead of a panic from `println!` (exit 101).

use std::io::Write;

/// Write `text` to stdout. A closed pipe is not an error: the reader has what it wanted.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("writing to stdout: {e}")),
    }
}
