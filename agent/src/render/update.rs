//! `self-update`'s outcome.

use super::Render;
use crate::ops::update::Outcome;
use crate::output::outln;

impl Render for Outcome {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn human(&self) {
        let o = self;
        match o.action {
            "up-to-date" => outln!("{}: {} is the newest release", o.binary.display(), o.from),
            "rolled-back" => outln!(
                "{}: rolled back from {} to {}",
                o.binary.display(),
                o.from,
                o.to
            ),
            _ => outln!(
                "{}: updated from {} to {} (signature verified; the previous binary is kept for \
                 `cmm-agent self-update --rollback`)",
                o.binary.display(),
                o.from,
                o.to
            ),
        }
    }
}
