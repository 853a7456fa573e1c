//! How long a certificate day is. Always 86 400 s in a release build. A debug build under test
//! may shorten it with `CMM_TEST_SECONDS_PER_DAY`, so one test runs a year of renewals and a CA
//! rotation in minutes against real nginx and Prometheus, whose clocks cannot be moved
//! (agent/tests/year_in_minutes.rs). Every lifetime, renewal window and "days left" of CMM's
//! certificates is counted in these days.

use std::sync::OnceLock;
use std::time::Duration;

const REAL_DAY: u64 = 86_400;

/// Seconds in a certificate day.
pub fn day_secs() -> u64 {
    static DAY: OnceLock<u64> = OnceLock::new();
    *DAY.get_or_init(|| {
        if cfg!(debug_assertions) {
            std::env::var("CMM_TEST_SECONDS_PER_DAY")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|s| (1..=REAL_DAY).contains(s))
                .unwrap_or(REAL_DAY)
        } else {
            REAL_DAY
        }
    })
}

/// `n` certificate days.
pub fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(day_secs()))
}

/// A duration a person gave in real time (e.g. `cert-renew-before = "30d"`), in certificate
/// days: unchanged unless a test shortened the day.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(day_secs() as f64 / REAL_DAY as f64)
}
