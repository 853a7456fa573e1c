//! Diagnostics go to stderr through tracing; stdout is kept for the command's own output so
//! `--output json` stays machine-readable.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human lines, coloured on a terminal.
    Human,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    // kube-rs logs every failed request at ERROR itself; the agent says it once, in words
    // (cmm_installer::kube::in_words). A filter that names kube explicitly keeps its choice.
    let directives = if level.contains("kube") {
        level.to_owned()
    } else {
        format!("{level},kube_client=off")
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| {
        anyhow::anyhow!(
            "--log-level / CMM_LOG_LEVEL {level:?} is not a valid filter ({e}): use e.g. info, debug or cmm_installer=debug"
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr {
            journal: stderr_is_journal(),
        });
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// Whether stderr is connected to the journal: systemd sets `JOURNAL_STREAM` to the device and
/// inode of that stream (systemd.exec(5)), so a redirected stderr does not count.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// stderr; for the journal each line starts with its syslog priority (`<3>` error, `<4>`
/// warning, `<6>` info, `<7>` debug), which journald reads with SyslogLevelPrefix=yes (its
/// default), so `journalctl -p warning` finds the agent's warnings.
#[derive(Clone, Copy)]
struct Stderr {
    journal: bool,
}

struct Line {
    prefix: &'static str,
    buf: Vec<u8>,
}

impl std::io::Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        use std::io::Write;
        let mut out = Vec::with_capacity(self.buf.len() + 8);
        for line in self.buf.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(line);
        }
        let _ = std::io::stderr().lock().write_all(&out);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Box<dyn std::io::Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Box::new(std::io::stderr())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if !self.journal {
            return Box::new(std::io::stderr());
        }
        let prefix = match *meta.level() {
            tracing::Level::ERROR => "<3>",
            tracing::Level::WARN => "<4>",
            tracing::Level::INFO => "<6>",
            _ => "<7>",
        };
        Box::new(Line {
            prefix,
            buf: Vec::new(),
        })
    }
}
