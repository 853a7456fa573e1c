//! What `cmm-agent --version` says: the build, and what it was built to drive.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("CMM_COMMIT");

/// The long form of `--version`: one `key: value` line each, so scripts can grep a line.
pub fn long() -> String {
    format!(
        "{VERSION}\ncommit: {COMMIT}\nchart: kube-prometheus-stack {}\nhelm: {} or newer\n\
         target: {}",
        cmm_installer::chart::CHART_VERSION,
        cmm_installer::helm::MIN_HELM_TEXT,
        self_update::get_target(),
    )
}
