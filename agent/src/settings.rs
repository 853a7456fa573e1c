//! The one place settings are resolved. Today: flags and their `CMM_*` twins (clap merges
//! those); the `/etc/cmm/agent.toml` layer slots in here without touching the commands.

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

/// A namespace name: a DNS-1123 label of at most 63 characters.
pub fn check_namespace(ns: &str) -> anyhow::Result<()> {
    let b = ns.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| edge(c) || c == b'-')
        && edge(b[0])
        && edge(b[b.len() - 1]);
    if ok {
        return Ok(());
    }
    Err(BadInput(format!(
        "--namespace / CMM_NAMESPACE {ns:?} is not a valid namespace: use a DNS-1123 label of at most 63 characters, e.g. monitor"
    )))
    .classify(ExitCode::Usage)
}

/// `90`, `90s`, `10m`, `1h` → seconds; `flag` names the setting in the error.
pub fn duration_secs(raw: &str, flag: &str) -> anyhow::Result<u64> {
    let raw = raw.trim();
    let (num, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if factor > 0 && n > 0 => Ok(n * factor),
        _ => Err(BadInput(format!(
            "{flag} {raw:?} is not a duration: write e.g. 90s, 10m or 1h"
        )))
        .classify(ExitCode::Usage),
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
    fn durations_take_the_units_helm_users_write() {
        assert_eq!(duration_secs("600", "--timeout").unwrap(), 600);
        assert_eq!(duration_secs("10m", "--timeout").unwrap(), 600);
        assert_eq!(duration_secs("1h", "--timeout").unwrap(), 3600);
        let err = duration_secs("10 minutes", "--timeout").unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::Usage);
        assert!(err.to_string().contains("--timeout"), "{err}");
    }
}
