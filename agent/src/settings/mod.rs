//! The one place settings are resolved: flag > `CMM_*` variable > `/etc/cmm/agent.toml` >
//! built-in default (`layers`), the file read and checked in `file`. Commands see the parsed
//! values; messages name a setting the way it was given (`layers::named`).

pub mod file;
pub mod layers;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, FromArgMatches};

use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;

use crate::cli::ChartArgs;
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
    Clap(clap::Error),
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
        .map_err(StartError::Clap)?;
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
    let matches = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(StartError::Clap)?;
    let cli = crate::cli::Cli::from_arg_matches(&matches).map_err(StartError::Clap)?;
    layers::remember(layers::resolve(&cmd, &matches, file.as_ref()));
    Ok(Startup {
        cli,
        matches,
        config,
    })
}

impl crate::cli::PlanInputs {
    /// The topology and its options, checked together (exit 2 naming the settings).
    pub fn wiring(&self, central: bool) -> anyhow::Result<cmm_installer::topology::Wiring> {
        self.topo.wiring(central, self.insecure_plain_http)
    }

    /// Check the `--set`s and read the user's values files (`None`: the embedded file).
    pub fn checked(&self) -> anyhow::Result<Option<Vec<(String, String)>>> {
        for s in &self.sets {
            cmm_installer::set::check_set(s).classify(ExitCode::Usage)?;
        }
        if self.values.is_empty() {
            return Ok(None);
        }
        let mut files = Vec::new();
        for p in &self.values {
            let text = std::fs::read_to_string(p)
                .map_err(|e| {
                    BadInput(format!(
                        "{} file {} cannot be read ({e}): give an existing values file",
                        layers::named("values"),
                        p.display()
                    ))
                })
                .classify(ExitCode::Usage)?;
            files.push((p.display().to_string(), text));
        }
        Ok(Some(files))
    }
}

/// The chart and helm a command renders or installs with.
pub struct ChartSettings {
    pub chart: ChartSource,
    pub helm: Helm,
}

impl ChartSettings {
    pub fn resolve(args: &ChartArgs) -> anyhow::Result<Self> {
        let chart = match &args.chart {
            Some(raw) => ChartSource::parse(raw).classify(ExitCode::Usage)?,
            None => ChartSource::upstream(),
        };
        Ok(Self {
            chart,
            helm: Helm::new(args.helm.clone()),
        })
    }
}

/// The cluster a command talks to: the kubeconfig and context as given (resolution to a file
/// and a context, kubectl's way, happens in `cmm_installer::kube::connect`).
pub fn kube_target(args: &crate::cli::KubeTargetArgs) -> cmm_installer::kube::KubeTarget {
    cmm_installer::kube::KubeTarget {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    }
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

/// Every duration setting and its bounds, in CMM's one grammar (`cmm_core::duration`).
#[derive(Debug, Clone, Copy)]
pub enum DurationSetting {
    Timeout,
    PendingGrace,
    ClaimWait,
    GrafanaTimeout,
    GrafanaWait,
    FirstScrapeWait,
    UpdateTimeout,
    CertRenewBefore,
}

impl DurationSetting {
    const ALL: [DurationSetting; 8] = [
        DurationSetting::Timeout,
        DurationSetting::PendingGrace,
        DurationSetting::ClaimWait,
        DurationSetting::GrafanaTimeout,
        DurationSetting::GrafanaWait,
        DurationSetting::FirstScrapeWait,
        DurationSetting::UpdateTimeout,
        DurationSetting::CertRenewBefore,
    ];

    /// (setting key = long flag, min, max)
    fn spec(self) -> (&'static str, Duration, Duration) {
        const S: Duration = Duration::from_secs(1);
        const MIN: Duration = Duration::from_secs(60);
        const H: Duration = Duration::from_secs(3600);
        match self {
            DurationSetting::Timeout => ("timeout", S, 2 * H),
            DurationSetting::PendingGrace => ("pending-grace", S, 24 * H),
            DurationSetting::ClaimWait => ("claim-wait", S, H),
            DurationSetting::GrafanaTimeout => {
                ("grafana-timeout", Duration::from_millis(100), 5 * MIN)
            }
            DurationSetting::GrafanaWait => ("grafana-wait", S, H),
            DurationSetting::FirstScrapeWait => ("first-scrape-wait", Duration::ZERO, H),
            DurationSetting::UpdateTimeout => ("update-timeout", S, 30 * MIN),
            // At least a day, so renewal has a window to happen in; under half a leaf's year,
            // so a fresh certificate is never already due.
            DurationSetting::CertRenewBefore => ("cert-renew-before", 24 * H, 180 * 24 * H),
        }
    }

    /// The duration setting behind a config key, if it is one.
    pub fn for_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.spec().0 == key)
    }

    /// Parse `raw` for this setting; an error names the setting as it was given and the fix.
    pub fn parse(self, raw: &str) -> anyhow::Result<Duration> {
        let (key, min, max) = self.spec();
        cmm_core::duration::parse(raw, &layers::named(key), min, max).classify(ExitCode::Usage)
    }

    /// The same check for a value in agent.toml (the caller names file, line and key).
    pub fn check(self, raw: &str) -> Result<(), String> {
        let (_, min, max) = self.spec();
        cmm_core::duration::parse(raw, "the value", min, max)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl crate::cli::TopologyArgs {
    /// The topology and its options, checked together (exit 2 naming the settings).
    pub fn wiring(
        &self,
        central: bool,
        insecure_plain_http: bool,
    ) -> anyhow::Result<cmm_installer::topology::Wiring> {
        use cmm_installer::topology::{Choice, Names, Wiring};
        Wiring::new(&Choice {
            topology: self.topology.into(),
            receiver_url: self.receiver_url.as_deref(),
            agent_mode: self.agent_mode,
            object_storage: self.thanos_object_storage,
            insecure_plain_http,
            central,
            names: Names::default(),
        })
        .classify(ExitCode::Usage)
    }
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

    #[test]
    fn durations_take_the_units_helm_users_write_within_bounds() {
        let t = DurationSetting::Timeout;
        assert_eq!(t.parse("600").unwrap(), Duration::from_secs(600));
        assert_eq!(t.parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(t.parse("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["10 minutes", "3h", "0s"] {
            let err = t.parse(bad).unwrap_err();
            assert_eq!(ExitCode::of(&err), ExitCode::Usage);
            assert!(err.to_string().contains("--timeout / CMM_TIMEOUT"), "{err}");
        }
        assert_eq!(
            DurationSetting::GrafanaTimeout.parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(DurationSetting::FirstScrapeWait
            .parse("0s")
            .unwrap()
            .is_zero());
    }
}
