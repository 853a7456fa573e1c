//! `cmm-agent bootstrap`: make one cluster monitored. The settings are resolved (every input
//! checked, nothing contacted), then `ops::install` runs; its reports are rendered as they come.

use crate::cli::{BootstrapArgs, GlobalArgs, Output};
use crate::ops::install::{self, Shown};
use crate::render;
use crate::settings::BootstrapSettings;

pub async fn run(global: &GlobalArgs, args: BootstrapArgs) -> anyhow::Result<()> {
    let settings = BootstrapSettings::resolve(&args)?;
    let output = global.output;
    let mut sink = move |shown: Shown<'_>| match shown {
        Shown::Install(report) => render::emit(output, report),
        // Bootstrap's JSON report owns stdout: a second document there would break parsers.
        Shown::Registered(done) if output == Output::Human => render::emit(output, done),
        Shown::Registered(done) => {
            done.log();
            Ok(())
        }
    };
    install::run(&settings, &mut sink).await
}
