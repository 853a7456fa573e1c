//! The one renderer: every command hands its report here, and `--output` decides the form.
//! A report is data (`Render`): its JSON document (printed once by `main` when the command
//! ends, with the error added on failure) or its human lines on stdout.

mod bootstrap;
mod check;
mod plan;
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

/// A report whose two forms the command composes itself (`config`, `rbac`): the JSON document,
/// and the human text exactly as it is printed.
pub struct Document {
    pub json: serde_json::Value,
    pub text: String,
}

impl Document {
    /// The human form as lines (each printed with a newline).
    pub fn lines(json: serde_json::Value, lines: &[String]) -> Self {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        Self { json, text }
    }
}

impl Render for Document {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self.json.clone())
    }

    fn human(&self) {
        let _ = crate::output::print(&self.text);
    }
}
