//! The one renderer: every command hands its report here, and `--output` decides the form.
//! A report is data (`Render`): its JSON document (printed once by `main` when the command
//! ends, with the error added on failure) or its human lines on stdout.

mod bootstrap;
mod check;
mod registration;

pub use check::CheckReport;
pub use registration::Left;
mod storage;
mod update;

use crate::cli::Output;

/// A command's report: the same data, two forms.
pub trait Render {
    /// The `--output json` document.
    fn json(&self) -> anyhow::Result<serde_json::Value>;
    /// The human form, through `output::outln!`.
    fn human(&self);
}

/// Print `report` as `output` asks.
pub fn emit(output: Output, report: &impl Render) -> anyhow::Result<()> {
    match output {
        Output::Json => crate::output::json(&report.json()?),
        Output::Human => {
            report.human();
            Ok(())
        }
    }
}

/// `ok` / `!!` in the human forms.
fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "!!"
    }
}
