//! Bounded retries with exponential backoff and jitter for calls to Grafana and Prometheus.
//! Only transport failures, timeouts and 5xx are retried; a 4xx is an answer, not an outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (≥ 1).
    pub attempts: u32,
    /// Delay before the first retry; doubles each retry.
    pub base_delay: Duration,
    /// Cap on one delay.
    pub max_delay: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// Ride out a Grafana pod restart (≈ 10-20 s) without hanging a script for minutes:
    /// 5 attempts, 0.5 s doubling to at most 8 s, 10 s per attempt.
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 = the first retry). `jitter` in [0, 1) spreads the
    /// delay over [half, full] of the exponential step, so agents of many clusters that failed
    /// together do not come back together.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        capped.mul_f64(0.5 + 0.5 * jitter)
    }

    /// A random jitter value; no dependency on a random crate for one number per retry.
    pub fn jitter() -> f64 {
        static STATE: AtomicU64 = AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = seed ^ STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_are_capped_and_jittered_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay(10, 0.999_999).as_millis(), 7999);
        assert_eq!(p.delay(60, 0.0), Duration::from_secs(4));
        for _ in 0..100 {
            let j = RetryPolicy::jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
