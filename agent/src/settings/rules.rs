//! Checks of one setting's value that need no other setting, by its key: the same functions
//! the commands' `resolve` calls, so `config validate` refuses what a command would refuse
//! (a cluster name that is no DNS label, `user:pass@` in a URL, a bound), with the file's line.
//! Rules between settings (push without a receiver URL, …) stay in `resolve`.

use super::resolved::MAX_GRAFANA_RETRIES;

/// `Err(problem)` when the command taking `key` would refuse `raw`; `Ok` for keys without a
/// rule of their own (their clap parser and the duration bounds check them).
pub fn check(key: &str, raw: &str) -> Result<(), String> {
    match key {
        "cluster" => cmm_core::ClusterName::parse(raw)
            .map(drop)
            .map_err(|e| e.to_string()),
        "namespace" | "central-namespace" => cmm_core::naming::check_namespace(raw),
        "grafana-url" => cmm_central::grafana::check_url(raw)
            .map(drop)
            .map_err(problem_of),
        "prometheus-url" => cmm_central::prometheus::PrometheusTarget {
            url: raw.to_owned(),
            ..Default::default()
        }
        .parsed_url()
        .map(drop)
        .map_err(problem_of),
        "receiver-url" => cmm_installer::topology::check_receiver_url(raw),
        "grafana-retries" => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_GRAFANA_RETRIES).contains(&n) => Ok(()),
            _ => Err(format!(
                "is {raw}: give 1 (one attempt, no retry) to {MAX_GRAFANA_RETRIES}"
            )),
        },
        _ => Ok(()),
    }
}

/// The problem without the field name the central crate puts first (the caller names the key).
fn problem_of(e: cmm_central::Error) -> String {
    match e {
        cmm_central::Error::Invalid { problem, .. } => problem,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_command_refuses_is_refused_by_key() {
        for (key, bad) in [
            ("cluster", "Kr_Mum"),
            ("cluster", &"a".repeat(40)),
            ("namespace", "Monitor"),
            ("central-namespace", "-x"),
            ("grafana-url", "http://admin:secret@grafana:3000"),
            ("grafana-url", "grafana:3000"),
            ("grafana-url", "ftp://admin:secret@grafana"),
            ("grafana-url", "http://admin:secret@grafana:99999"),
            ("prometheus-url", "http://u:p@10.0.0.1:30090"),
            ("prometheus-url", "http://10.0.0.1:30090/?x=1"),
            ("receiver-url", "http://10.0.0.5:30091/api/v1/write"),
            ("grafana-retries", "99"),
            ("grafana-retries", "0"),
        ] {
            let err = check(key, bad).expect_err(key);
            assert!(
                !err.contains("secret"),
                "{key}: the password is not repeated: {err}"
            );
        }
        for (key, good) in [
            ("cluster", "kr-mum"),
            ("namespace", "monitor"),
            ("grafana-url", "https://grafana.ops.example/"),
            ("prometheus-url", "https://10.0.0.11:30090"),
            ("receiver-url", "https://10.0.0.5:30091/api/v1/write"),
            ("grafana-retries", "20"),
            ("log-level", "anything: not a rule of this module"),
        ] {
            assert_eq!(check(key, good), Ok(()), "{key}");
        }
    }
}
