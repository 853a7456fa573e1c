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
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}
