//! The one place settings are resolved: flag > `CMM_*` variable > `/etc/cmm/agent.toml` >
//! built-in default (`layers`), the file read and checked in `file`. Commands see the parsed
//! values; messages name a setting the way it was given (`layers::named`).

pub mod durations;
pub mod file;
pub mod layers;
pub mod resolved;
pub mod rules;
pub mod token;
pub mod update;

pub use durations::DurationSetting;
pub use resolved::*;
pub use update::SelfUpdateSettings;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, FromArgMatches};

use crate::exit::{Classify, ExitCode};

/// Where the settings file is, and whether it was named (a named file must exist).
#[derive(Debug, Clone)]
pub struct ConfigLocation {
    pub path: PathBuf,
    pub explicit: bool,
}

/// The parsed command line with every layer applied.
pub struct Startup {
    pub cli: crate::cli::Cli,
    pub matches: ArgMatches,
    pub config: ConfigLocation,
}

/// Why the agent cannot start: clap's own error (usage, --help, --version), or a settings
/// file with problems (all of them).
pub enum StartError {
    /// `json`: `--output json` was asked for, so the error is a JSON document on stdout too.
    Clap { error: clap::Error, json: bool },
    File {
        config: ConfigLocation,
        problems: Vec<file::Problem>,
        json: bool,
    },
}

/// The config file's location from the command line or CMM_CONFIG, before anything else is
/// parsed (the file decides the other flags' defaults).
pub fn locate(probe: &ArgMatches) -> ConfigLocation {
    use clap::parser::ValueSource;
    match probe.get_one::<PathBuf>("config") {
        Some(p) if probe.value_source("config") != Some(ValueSource::DefaultValue) => {
            ConfigLocation {
                path: p.clone(),
                explicit: true,
            }
        }
        _ => ConfigLocation {
            path: PathBuf::from(layers::DEFAULT_CONFIG),
            explicit: false,
        },
    }
}

/// Parse `argv` with every layer: read the settings file (unless the command is `config`,
/// which reads it itself so it can report a broken one), hand its values and the built-in
/// defaults to clap, and remember each value's origin.
pub fn start(argv: &[OsString]) -> Result<Startup, StartError> {
    let probe = layers::defaults_only()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .map_err(|error| StartError::Clap { error, json: false })?;
    let config = locate(&probe);
    let json = probe
        .get_one::<crate::cli::Output>("output")
        .is_some_and(|o| *o == crate::cli::Output::Json);
    let base = layers::defaults_only();
    let file = if probe.subcommand_name() == Some("config") {
        None
    } else {
        file::load(&config.path, config.explicit, &base).map_err(|problems| StartError::File {
            config: config.clone(),
            problems,
            json,
        })?
    };
    let cmd = layers::layered(base, file.as_ref());
    let clap_error = |error| StartError::Clap { error, json };
    let matches = cmd.clone().try_get_matches_from(argv).map_err(clap_error)?;
    let cli = crate::cli::Cli::from_arg_matches(&matches).map_err(clap_error)?;
    layers::remember(layers::resolve(&cmd, &matches, file.as_ref()));
    Ok(Startup {
        cli,
        matches,
        config,
    })
}

/// Bad input found by the agent itself; the message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A namespace name (cmm_core::naming::check_namespace), named as its flag.
pub fn check_namespace(ns: &str) -> anyhow::Result<()> {
    cmm_core::naming::check_namespace(ns)
        .map_err(|p| BadInput(format!("{} {p}", layers::named("namespace"))))
        .classify(ExitCode::Usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels_up_to_63() {
        assert!(check_namespace("monitor").is_ok());
        assert!(check_namespace(&"m".repeat(63)).is_ok());
        for bad in ["", "Monitor", "-m", "m-", "m_n", &"m".repeat(64)] {
            let err = check_namespace(bad).unwrap_err();
            assert_eq!(ExitCode::of(&err), ExitCode::Usage, "{bad}");
            assert!(err.to_string().contains("--namespace"), "{err}");
        }
    }
}
