//! The Secrets the central Grafana's pod cannot start without (values/central_monitor.yaml):
//! its admin login, made here with a generated password unless one exists, and the contact
//! points' addresses, which only a person can give, checked in preflight. Without them helm's
//! wait would run out on a pod stuck in CreateContainerConfigError.

use k8s_openapi::api::core::v1::Secret;

use cmm_core::naming::{GRAFANA_ADMIN_SECRET, GRAFANA_ALERTING_KEYS, GRAFANA_ALERTING_SECRET};

use crate::kube::Connected;
use crate::Result;

/// The admin Secret's keys (the chart's `grafana.admin.userKey` / `passwordKey` defaults).
pub const ADMIN_KEYS: [&str; 2] = ["admin-user", "admin-password"];

/// What the two Secrets hold now: for each, `None` when absent, else the keys left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub admin: Option<Vec<String>>,
    pub alerting: Option<Vec<String>>,
}

fn empty_keys(s: &Secret, keys: &[&str]) -> Vec<String> {
    let data = s.data.clone().unwrap_or_default();
    keys.iter()
        .filter(|k| {
            data.get(**k)
                .is_none_or(|v| String::from_utf8_lossy(&v.0).trim().is_empty())
        })
        .map(|k| (*k).to_owned())
        .collect()
}

/// Reads only.
pub async fn read(conn: &Connected, ns: &str) -> Result<State> {
    Ok(State {
        admin: conn
            .secret(ns, GRAFANA_ADMIN_SECRET)
            .await?
            .map(|s| empty_keys(&s, &ADMIN_KEYS)),
        alerting: conn
            .secret(ns, GRAFANA_ALERTING_SECRET)
            .await?
            .map(|s| empty_keys(&s, &GRAFANA_ALERTING_KEYS)),
    })
}

/// Pure: the preflight line (ok, detail). An absent admin Secret is fine (the bootstrap makes
/// it); one with empty keys, or a missing or incomplete alerting Secret, is not.
pub fn judge(state: &State, ns: &str) -> (bool, String) {
    let mut problems = Vec::new();
    let admin = match &state.admin {
        None => format!("{GRAFANA_ADMIN_SECRET}: absent, made now with a generated password"),
        Some(empty) if empty.is_empty() => format!("{GRAFANA_ADMIN_SECRET}: present, kept"),
        Some(empty) => {
            problems.push(format!(
                "Secret {GRAFANA_ADMIN_SECRET} has no value for {}: fill them, or delete the \
                 Secret to have one made with a generated password",
                empty.join(", ")
            ));
            String::new()
        }
    };
    let fix = format!(
        "kubectl -n {ns} create secret generic {GRAFANA_ALERTING_SECRET} \
         --from-literal=CMM_ALERT_EMAIL_TO='ops@example.com' \
         --from-file=CMM_TEAMS_WEBHOOK_URL=./teams-workflow-url.txt (docs/alerting.md)"
    );
    match &state.alerting {
        None => problems.push(format!(
            "no Secret {GRAFANA_ALERTING_SECRET}: the contact points' addresses, without which \
             Grafana's pod does not start; make it first: {fix}"
        )),
        Some(empty) if !empty.is_empty() => problems.push(format!(
            "Secret {GRAFANA_ALERTING_SECRET} has no value for {}: a contact point without its \
             address stops Grafana's provisioning; {fix}",
            empty.join(", ")
        )),
        Some(_) => {}
    }
    if problems.is_empty() {
        (
            true,
            format!("{admin}; {GRAFANA_ALERTING_SECRET}: present with every address"),
        )
    } else {
        (false, problems.join("; "))
    }
}

/// Make the admin Secret unless it exists (a concurrent creation is as good). The password is
/// never printed or logged; `Ok(true)` when this call made it.
pub async fn ensure_admin(conn: &Connected, ns: &str) -> Result<bool> {
    if conn.secret(ns, GRAFANA_ADMIN_SECRET).await?.is_some() {
        return Ok(false);
    }
    let password = cmm_pki::password(32).map_err(|e| crate::Error::Tls {
        what: format!("making the password of Secret {GRAFANA_ADMIN_SECRET}"),
        problem: e.to_string(),
    })?;
    let secret = crate::tls::managed_secret(
        GRAFANA_ADMIN_SECRET,
        &[],
        &[(ADMIN_KEYS[0], "admin"), (ADMIN_KEYS[1], &password)],
        None,
    );
    conn.write_secret(ns, &secret).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_starts_only_with_both_secrets_filled() {
        let full = Some(vec![]);
        let (ok, d) = judge(
            &State {
                admin: None,
                alerting: full.clone(),
            },
            "monitor",
        );
        assert!(
            ok && d.contains("made now with a generated password"),
            "{d}"
        );
        let (ok, d) = judge(
            &State {
                admin: full.clone(),
                alerting: full.clone(),
            },
            "monitor",
        );
        assert!(ok && d.contains("present, kept"), "{d}");
        let (ok, d) = judge(
            &State {
                admin: full.clone(),
                alerting: None,
            },
            "ops",
        );
        assert!(!ok, "{d}");
        assert!(
            d.contains("kubectl -n ops create secret generic cmm-grafana-alerting"),
            "{d}"
        );
        let teams = Some(vec!["CMM_TEAMS_WEBHOOK_URL".to_owned()]);
        let (ok, d) = judge(
            &State {
                admin: full,
                alerting: teams,
            },
            "monitor",
        );
        assert!(
            !ok && d.contains("no value for CMM_TEAMS_WEBHOOK_URL"),
            "{d}"
        );
        let half = Some(vec!["admin-password".to_owned()]);
        let (ok, d) = judge(
            &State {
                admin: half,
                alerting: Some(vec![]),
            },
            "monitor",
        );
        assert!(!ok && d.contains("no value for admin-password"), "{d}");
    }
}
