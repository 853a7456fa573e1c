//! The one place settings are resolved. Today: flags and their `CMM_*` twins (clap merges
//! those); the `/etc/cmm/agent.toml` layer slots in here without touching the commands.

use std::time::Duration;

use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;

use crate::cli::ChartArgs;
use crate::exit::{Classify, ExitCode};

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
        .map_err(|p| BadInput(format!("--namespace / CMM_NAMESPACE {p}")))
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
}

impl DurationSetting {
    fn spec(self) -> (&'static str, Duration, Duration) {
        const S: Duration = Duration::from_secs(1);
        const MIN: Duration = Duration::from_secs(60);
        const H: Duration = Duration::from_secs(3600);
        match self {
            DurationSetting::Timeout => ("--timeout / CMM_TIMEOUT", S, 2 * H),
            DurationSetting::PendingGrace => ("--pending-grace / CMM_PENDING_GRACE", S, 24 * H),
            DurationSetting::ClaimWait => ("--claim-wait / CMM_CLAIM_WAIT", S, H),
            DurationSetting::GrafanaTimeout => (
                "--grafana-timeout / CMM_GRAFANA_TIMEOUT",
                Duration::from_millis(100),
                5 * MIN,
            ),
            DurationSetting::GrafanaWait => ("--grafana-wait / CMM_GRAFANA_WAIT", S, H),
            DurationSetting::FirstScrapeWait => (
                "--first-scrape-wait / CMM_FIRST_SCRAPE_WAIT",
                Duration::ZERO,
                H,
            ),
        }
    }

    /// Parse `raw` for this setting; an error names the flag, its variable and the fix.
    pub fn parse(self, raw: &str) -> anyhow::Result<Duration> {
        let (name, min, max) = self.spec();
        cmm_core::duration::parse(raw, name, min, max).classify(ExitCode::Usage)
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
