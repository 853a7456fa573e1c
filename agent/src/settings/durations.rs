//! Every duration setting, in CMM's one grammar (`cmm_core::duration`), with its bounds. The
//! only place a duration setting is parsed: the typed settings (`resolved`) call it once each.

use std::time::Duration;

use super::layers;
use crate::exit::{Classify, ExitCode};

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
    Every,
}

impl DurationSetting {
    const ALL: [DurationSetting; 9] = [
        DurationSetting::Timeout,
        DurationSetting::PendingGrace,
        DurationSetting::ClaimWait,
        DurationSetting::GrafanaTimeout,
        DurationSetting::GrafanaWait,
        DurationSetting::FirstScrapeWait,
        DurationSetting::UpdateTimeout,
        DurationSetting::CertRenewBefore,
        DurationSetting::Every,
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
            // schedule's timer: more often than a minute would overlap runs.
            DurationSetting::Every => ("every", MIN, 24 * H),
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

#[cfg(test)]
mod tests {
    use super::*;

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
