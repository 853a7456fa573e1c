//! The fleet as the central Grafana sees it: one row per registered cluster (its datasource as
//! Grafana checks it, the newest sample, its rules, what fires) and the fleet rule against the
//! registrations. [`gather`] reads; [`judge`] is pure and makes the rows and the findings.

use std::collections::BTreeMap;

use cmm_core::finding::{Finding, RepairKind, Severity, Stage};
use cmm_core::naming::CLUSTER_LABEL;
use cmm_core::ClusterName;
use serde::Serialize;
use serde_json::Value;

use crate::grafana::{groups_of_folder, DatasourceHealth, GrafanaClient};
use crate::rules;

type Read<T> = std::result::Result<T, String>;

/// Seconds since each cluster's newest `up` sample, by its `cluster` label. `timestamp()` is the
/// sample's own time, so an instant query answers for samples within Prometheus' 5-minute
/// look-back; a cluster silent for longer is simply absent.
pub const NEWEST_SAMPLE_QUERY: &str = "time() - max by (cluster) (timestamp(up))";

/// A sample older than this (four 30 s scrape intervals) is late: warned.
pub const LATE_AFTER_SECS: f64 = 120.0;

/// Why the newest sample was not read: the datasource's own check failed first.
const NOT_READ: &str = "not read: the datasource fails Grafana's check";

/// A cluster's agent renews its certificate 30 days (its default `cert-renew-before`) before
/// the end; fewer days left than a week means its timer has stopped.
const CERT_WARN_DAYS: i64 = 7;

/// How many datasources are read at once: a fleet of a hundred must not open a hundred
/// connections through one Grafana.
const CONCURRENT_READS: usize = 8;

/// How the clusters are read: each through its own datasource (pull), or all through one
/// (push: the receiver; thanos: Query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    PerCluster,
    Shared { datasource_uid: String },
}

/// What was read about one cluster.
#[derive(Debug, Clone)]
pub struct Member {
    pub cluster: ClusterName,
    /// Grafana's own check of the cluster's datasource (the shared one's, in push and thanos).
    pub health: Read<DatasourceHealth>,
    /// Seconds since its newest sample; `None`: no sample in the look-back.
    pub newest_sample: Read<Option<f64>>,
    /// Days left on the cluster's server certificate, where the central side can see it.
    pub cert_days_left: Option<i64>,
}

/// The reads [`judge`] works from.
#[derive(Debug, Clone)]
pub struct FleetFacts {
    pub reading: Reading,
    /// Registered clusters: CMM's datasources (pull) or the shared rule set's members.
    pub registered: Read<Vec<ClusterName>>,
    /// The clusters the fleet rule (pull: CmmFleetClusterMissing) counts; `None`: no rule.
    pub fleet_rule: Read<Option<Vec<ClusterName>>>,
    pub members: Vec<Member>,
    /// Grafana's rule-state answer, whole.
    pub rule_states: Read<Value>,
    /// Shared topologies: every cluster label with a sample in the look-back, registered or not.
    pub senders: Vec<String>,
}

/// One row of the fleet table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetRow {
    pub cluster: String,
    pub topology: String,
    pub severity: Severity,
    /// `ok`, or Grafana's message.
    pub datasource: String,
    pub newest_sample_seconds: Option<f64>,
    /// Rules Grafana evaluates for the cluster, and how.
    pub rules: String,
    pub firing: Vec<String>,
    pub cert_days_left: Option<i64>,
}

/// The identity Grafana presents to the clusters, for reading each cluster's server certificate
/// as Grafana meets it (pull: the agent dials the datasource's URL itself).
#[derive(Debug, Clone)]
pub struct Presented {
    pub client: crate::prometheus::ClientIdentity,
    pub trust_pem: String,
}

/// Read the fleet through Grafana. Each read fails on its own and is judged as such. With
/// `presented`, each pull cluster's server certificate is read too (its days left).
pub async fn gather(
    g: &GrafanaClient,
    reading: Reading,
    presented: Option<&Presented>,
) -> FleetFacts {
    use futures_util::stream::{self, StreamExt};
    let datasources = g.list_datasources().await;
    let (registered, fleet_rule) = match &reading {
        Reading::PerCluster => {
            let group = g
                .rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP)
                .await;
            (
                datasources
                    .as_ref()
                    .map(|d| rules::registered_clusters(d))
                    .map_err(ToString::to_string),
                group
                    .map(|g| g.as_ref().map(rules::fleet_members))
                    .map_err(|e| e.to_string()),
            )
        }
        Reading::Shared { .. } => {
            let group = g
                .rule_group(rules::FLEET_FOLDER_UID, rules::SHARED_GROUP)
                .await
                .map_err(|e| e.to_string());
            let members = group
                .as_ref()
                .map(|g| g.as_ref().map(rules::shared_members).unwrap_or_default())
                .map_err(Clone::clone);
            (
                members,
                group.map(|g| g.as_ref().map(rules::shared_members)),
            )
        }
    };
    let rule_states = g.all_rule_statuses().await.map_err(|e| e.to_string());
    let clusters = registered.clone().unwrap_or_default();
    let mut senders = Vec::new();
    let members = match &reading {
        Reading::PerCluster => {
            let datasources = &datasources;
            stream::iter(clusters)
                .map(|c| async move {
                    let uid = c.datasource_uid();
                    let health = g.datasource_health(&uid).await.map_err(|e| e.to_string());
                    // Through a datasource Grafana cannot reach, the proxy answers 502 after
                    // the client's retries: the failed health check already says it.
                    let newest_sample = match &health {
                        Ok(h) if h.ok => g
                            .proxy_query(&uid, NEWEST_SAMPLE_QUERY)
                            .await
                            .map_err(|e| e.to_string())
                            .map(|v| ages_by_cluster(&v).get(c.as_str()).copied()),
                        _ => Err(NOT_READ.into()),
                    };
                    let url = datasources
                        .as_ref()
                        .ok()
                        .and_then(|d| d.iter().find(|d| d.uid == uid))
                        .map(|d| d.url.clone());
                    let cert_days_left = match (url, presented, &health) {
                        (Some(url), Some(p), Ok(h)) if h.ok => server_cert_days(&url, p).await,
                        _ => None,
                    };
                    Member {
                        health,
                        newest_sample,
                        cluster: c,
                        cert_days_left,
                    }
                })
                .buffered(CONCURRENT_READS)
                .collect()
                .await
        }
        Reading::Shared { datasource_uid } => {
            let health = g
                .datasource_health(datasource_uid)
                .await
                .map_err(|e| e.to_string());
            let ages = match &health {
                Ok(h) if h.ok => g
                    .proxy_query(datasource_uid, NEWEST_SAMPLE_QUERY)
                    .await
                    .map(|v| ages_by_cluster(&v))
                    .map_err(|e| e.to_string()),
                _ => Err(NOT_READ.to_owned()),
            };
            senders = ages
                .as_ref()
                .map(|a| a.keys().cloned().collect())
                .unwrap_or_default();
            clusters
                .into_iter()
                .map(|c| Member {
                    health: health.clone(),
                    newest_sample: ages.clone().map(|a| a.get(c.as_str()).copied()),
                    cluster: c,
                    cert_days_left: None,
                })
                .collect()
        }
    };
    FleetFacts {
        reading,
        registered,
        fleet_rule,
        members,
        rule_states,
        senders,
    }
}

/// Days left on the server certificate at `url`, dialled with Grafana's identity; `None` when it
/// cannot be read (plain HTTP, or no answer: the health check already says why).
async fn server_cert_days(url: &str, p: &Presented) -> Option<i64> {
    let target = crate::prometheus::PrometheusTarget {
        url: url.to_owned(),
        basic_auth: None,
        ca_pem: Some(p.trust_pem.clone()),
        tls_skip_verify: false,
        client: Some(p.client.clone()),
    };
    let retry = crate::retry::RetryPolicy {
        attempts: 1,
        ..crate::retry::RetryPolicy::default()
    };
    let probe = crate::prometheus::PrometheusProbe::new(target, retry).ok()?;
    probe
        .server_cert_days_left(std::time::SystemTime::now())
        .await
        .ok()
        .flatten()
}

/// A Prometheus instant-vector answer as `cluster` → value.
pub fn ages_by_cluster(answer: &Value) -> BTreeMap<String, f64> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let cluster = s["metric"][CLUSTER_LABEL].as_str()?.to_owned();
            let value = s["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((cluster, value))
        })
        .collect()
}

/// The rows and the findings: one finding per cluster (stage Fleet) and one for the fleet rule.
pub fn judge(facts: &FleetFacts, topology: &str) -> (Vec<FleetRow>, Vec<Finding>) {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    match &facts.registered {
        Err(e) => out.push(
            Finding::failed(Stage::Fleet, "fleet.registered", "the registered clusters")
                .with(format!("not read from Grafana: {e}")),
        ),
        Ok(c) if c.is_empty() => out.push(
            Finding::warn(Stage::Fleet, "fleet.registered", "the registered clusters")
                .with("no cluster is registered yet")
                .repair(
                    RepairKind::Manual,
                    "run `cmm-agent bootstrap` on each cluster's admin host (docs/getting-started.md)",
                ),
        ),
        Ok(c) => out.push(
            Finding::ok(Stage::Fleet, "fleet.registered", "the registered clusters")
                .with(format!("{} cluster(s), {topology}", c.len())),
        ),
    }
    for m in &facts.members {
        let (row, finding) = judge_member(m, facts, topology);
        rows.push(row);
        out.push(finding);
    }
    if let Some(f) = judge_fleet_rule(facts) {
        out.push(f);
    }
    (rows, out)
}

fn judge_member(m: &Member, facts: &FleetFacts, topology: &str) -> (FleetRow, Finding) {
    let subject = format!("cluster {}", m.cluster);
    let mut severity = Severity::Ok;
    let mut evidence = Vec::new();
    let mut raise = |s: Severity, why: String, evidence: &mut Vec<String>| {
        severity = severity.max(s);
        evidence.push(why);
    };
    let datasource = match &m.health {
        Ok(h) if h.ok => "ok".to_owned(),
        Ok(h) => {
            raise(
                Severity::Failed,
                format!("Grafana's check of its datasource fails: {}", h.message),
                &mut evidence,
            );
            h.message.clone()
        }
        Err(e) => {
            raise(
                Severity::Failed,
                format!("Grafana's check of its datasource did not answer: {e}"),
                &mut evidence,
            );
            "unknown".to_owned()
        }
    };
    let newest = match &m.newest_sample {
        Ok(Some(age)) => {
            if *age > LATE_AFTER_SECS {
                raise(
                    Severity::Warning,
                    format!("newest sample {age:.0} s old (late after {LATE_AFTER_SECS:.0} s)"),
                    &mut evidence,
                );
            }
            Some(*age)
        }
        Ok(None) => {
            raise(
                Severity::Failed,
                "no sample in the last 5 minutes: the cluster is silent".into(),
                &mut evidence,
            );
            None
        }
        Err(e) if e == NOT_READ => None,
        Err(e) => {
            raise(
                Severity::Failed,
                format!("its samples could not be read through Grafana: {e}"),
                &mut evidence,
            );
            None
        }
    };
    let (rules_text, rule_severity, firing) = rule_state(&m.cluster, facts);
    if rule_severity != Severity::Ok {
        raise(rule_severity, format!("rules: {rules_text}"), &mut evidence);
    }
    if !firing.is_empty() {
        evidence.push(format!("firing: {}", firing.join(", ")));
    }
    match m.cert_days_left {
        Some(days) if days <= 0 => raise(
            Severity::Failed,
            "its server certificate has expired".into(),
            &mut evidence,
        ),
        Some(days) if days < CERT_WARN_DAYS => raise(
            Severity::Warning,
            format!(
                "its server certificate has {days} day(s) left: its agent renews it 30 days \
                 before the end, so its timer has not run for a while"
            ),
            &mut evidence,
        ),
        _ => {}
    }
    if evidence.is_empty() {
        evidence.push(format!(
            "datasource ok, newest sample {} s old, {rules_text}",
            newest.map_or("?".into(), |a| format!("{a:.0}"))
        ));
    }
    let mut f = Finding::new(Stage::Fleet, "fleet.cluster", severity, subject);
    f.evidence = evidence;
    if severity != Severity::Ok {
        f = f.repair(
            RepairKind::Manual,
            format!(
                "on {}'s admin host: `cmm-agent check --repair` (docs/operations.md, \"The central host\")",
                m.cluster
            ),
        );
    }
    (
        FleetRow {
            cluster: m.cluster.to_string(),
            topology: topology.to_owned(),
            severity,
            datasource,
            newest_sample_seconds: newest,
            rules: rules_text,
            firing,
            cert_days_left: m.cert_days_left,
        },
        f,
    )
}

/// The cluster's rules as Grafana evaluates them: in pull its own group in its own folder, in
/// push and thanos the shared group (which must list it). Returns text, severity, firing alerts.
fn rule_state(cluster: &ClusterName, facts: &FleetFacts) -> (String, Severity, Vec<String>) {
    let Ok(states) = &facts.rule_states else {
        return ("rule state not read".into(), Severity::Warning, Vec::new());
    };
    let groups: Vec<Value> = match &facts.reading {
        Reading::PerCluster => groups_of_folder(
            states,
            &rules::folder_uid(cluster),
            &rules::folder_title(cluster),
        )
        .into_iter()
        .filter(|g| g["name"] == rules::GROUP)
        .collect(),
        Reading::Shared { .. } => {
            groups_of_folder(states, rules::FLEET_FOLDER_UID, rules::FLEET_FOLDER_TITLE)
                .into_iter()
                .filter(|g| g["name"] == rules::SHARED_GROUP)
                .collect()
        }
    };
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    if rules.is_empty() {
        return ("no rule evaluated".into(), Severity::Warning, Vec::new());
    }
    let errors = rules.iter().filter(|r| r["health"] == "error").count();
    let mut firing: Vec<String> = rules
        .iter()
        .filter(|r| {
            let own_folder = facts.reading == Reading::PerCluster && r["state"] == "firing";
            // Alert instances carry the cluster label in every topology; in the shared group it
            // is how one cluster's alerts are told from another's.
            let own_instance = r["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"][CLUSTER_LABEL] == cluster.as_str()
                    && a["state"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("Alerting"))
            });
            own_folder || own_instance
        })
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    firing.dedup();
    let text = format!("{} rule(s), {errors} in error", rules.len());
    let severity = if errors > 0 {
        Severity::Failed
    } else {
        Severity::Ok
    };
    (text, severity, firing)
}

/// The fleet rule must count exactly the registered clusters: a registration racing another
/// may have left one out (each rebuilds the group from what it read).
fn judge_fleet_rule(facts: &FleetFacts) -> Option<Finding> {
    let (subject, what) = match facts.reading {
        Reading::PerCluster => ("the fleet rule CmmFleetClusterMissing", "counts"),
        // In push and thanos the registrations are the shared group's members: it is its own
        // reference, nothing to compare it with but the clusters that send.
        Reading::Shared { .. } => return judge_shared_members(facts),
    };
    let registered = facts.registered.as_ref().ok()?;
    let counted = match &facts.fleet_rule {
        Err(e) => {
            return Some(
                Finding::failed(Stage::Fleet, "fleet.rule", subject).with(format!("not read: {e}")),
            )
        }
        Ok(None) if registered.is_empty() => return None,
        Ok(None) => Vec::new(),
        Ok(Some(c)) => c.clone(),
    };
    let missing: Vec<&str> = registered
        .iter()
        .filter(|c| !counted.contains(c))
        .map(ClusterName::as_str)
        .collect();
    let extra: Vec<&str> = counted
        .iter()
        .filter(|c| !registered.contains(c))
        .map(ClusterName::as_str)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Some(
            Finding::ok(Stage::Fleet, "fleet.rule", subject).with(format!(
                "{what} the {} registered cluster(s)",
                registered.len()
            )),
        );
    }
    let mut f = Finding::failed(Stage::Fleet, "fleet.rule", subject);
    if !missing.is_empty() {
        f = f.with(format!("does not count registered {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        // A datasource deleted by hand: the stored rule fails on it, which is what pages.
        f = f.with(format!(
            "counts {} whose datasource is gone (never deregistered)",
            extra.join(", ")
        ));
    }
    Some(f.repair(
        RepairKind::Register,
        "`cmm-agent check --role central --repair` rebuilds it from the datasources; a cluster \
         whose datasource was deleted by hand: `cmm-agent deregister` it, or register it again",
    ))
}

/// Shared topologies: a cluster that sends samples but is not in the shared group is one whose
/// registration lost a race (or was deregistered while its agent still runs): CmmClusterSilent
/// would never page for it.
fn judge_shared_members(facts: &FleetFacts) -> Option<Finding> {
    let subject = "the shared rule set's clusters (CmmClusterSilent)";
    let registered = facts.registered.as_ref().ok()?;
    let unlisted: Vec<&str> = facts
        .senders
        .iter()
        .filter(|s| !registered.iter().any(|c| c.as_str() == s.as_str()))
        .map(String::as_str)
        .collect();
    if unlisted.is_empty() {
        return Some(
            Finding::ok(Stage::Fleet, "fleet.rule", subject).with(format!(
                "expects the {} registered cluster(s)",
                registered.len()
            )),
        );
    }
    Some(
        Finding::failed(Stage::Fleet, "fleet.rule", subject)
            .with(format!(
                "{} send(s) samples but is not expected: its silence would page nobody",
                unlisted.join(", ")
            ))
            .repair(
                RepairKind::Register,
                "`cmm-agent check --role central --repair` adds every sending cluster; a cluster \
                 meant to be gone: stop its agent, then `cmm-agent deregister` it",
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name(s: &str) -> ClusterName {
        ClusterName::parse(s).unwrap()
    }

    fn healthy(c: &str, age: f64) -> Member {
        Member {
            cluster: name(c),
            health: Ok(DatasourceHealth {
                ok: true,
                status: "OK".into(),
                message: "Successfully queried the Prometheus API.".into(),
            }),
            newest_sample: Ok(Some(age)),
            cert_days_left: Some(300),
        }
    }

    fn states(clusters: &[&str], firing_in: &str) -> Value {
        let groups: Vec<Value> = clusters
            .iter()
            .map(|c| {
                json!({"name": rules::GROUP, "file": format!("CMM {c}"), "rules": [
                    {"name": "CmmTargetDown", "health": "ok",
                     "state": if *c == firing_in { "firing" } else { "inactive" }},
                    {"name": "CmmNodeDown", "health": "ok", "state": "inactive"}
                ]})
            })
            .collect();
        json!({"status": "success", "data": {"groups": groups}})
    }

    fn pull(members: Vec<Member>, rule: Option<Vec<&str>>) -> FleetFacts {
        FleetFacts {
            reading: Reading::PerCluster,
            registered: Ok(members.iter().map(|m| m.cluster.clone()).collect()),
            fleet_rule: Ok(rule.map(|r| r.into_iter().map(name).collect())),
            members,
            rule_states: Ok(states(&["alpha", "beta"], "beta")),
            senders: Vec::new(),
        }
    }

    #[test]
    fn each_registered_cluster_is_one_row_a_person_reads_at_a_glance() {
        let mut down = healthy("beta", 400.0);
        down.health = Ok(DatasourceHealth {
            ok: false,
            status: "ERROR".into(),
            message: "remote error: tls: bad certificate".into(),
        });
        let facts = pull(
            vec![healthy("alpha", 12.0), down],
            Some(vec!["alpha", "beta"]),
        );
        let (rows, findings) = judge(&facts, "pull");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].severity, Severity::Ok);
        assert_eq!(rows[0].rules, "2 rule(s), 0 in error");
        assert_eq!(rows[1].severity, Severity::Failed);
        assert_eq!(rows[1].datasource, "remote error: tls: bad certificate");
        assert_eq!(rows[1].firing, vec!["CmmTargetDown"]);
        let beta = findings
            .iter()
            .find(|f| f.subject == "cluster beta")
            .unwrap();
        assert!(beta.evidence.iter().any(|e| e.contains("400 s old")));
        let rule = findings.iter().find(|f| f.id == "fleet.rule").unwrap();
        assert_eq!(rule.severity, Severity::Ok, "{rule:?}");
    }

    #[test]
    fn a_silent_cluster_and_a_missing_rule_group_are_named() {
        let mut silent = healthy("beta", 0.0);
        silent.newest_sample = Ok(None);
        let mut facts = pull(
            vec![healthy("alpha", 5.0), silent],
            Some(vec!["alpha", "beta"]),
        );
        facts.rule_states = Ok(states(&["alpha"], ""));
        let (rows, findings) = judge(&facts, "pull");
        assert_eq!(rows[1].severity, Severity::Failed);
        assert_eq!(rows[1].rules, "no rule evaluated");
        let beta = findings
            .iter()
            .find(|f| f.subject == "cluster beta")
            .unwrap();
        assert!(beta.evidence.iter().any(|e| e.contains("silent")));
        assert!(beta
            .evidence
            .iter()
            .any(|e| e.contains("no rule evaluated")));
    }

    #[test]
    fn a_fleet_rule_that_lost_a_race_is_failed_with_its_repair() {
        let facts = pull(
            vec![healthy("alpha", 5.0), healthy("beta", 5.0)],
            Some(vec!["alpha"]),
        );
        let (_, findings) = judge(&facts, "pull");
        let rule = findings.iter().find(|f| f.id == "fleet.rule").unwrap();
        assert_eq!(rule.severity, Severity::Failed);
        assert!(rule.evidence[0].contains("does not count registered beta"));
        assert_eq!(rule.repair.as_ref().unwrap().kind, RepairKind::Register);
        // No rule at all with clusters registered is the same defect.
        let facts = pull(vec![healthy("alpha", 5.0)], None);
        let (_, findings) = judge(&facts, "pull");
        let rule = findings.iter().find(|f| f.id == "fleet.rule").unwrap();
        assert_eq!(rule.severity, Severity::Failed);
    }

    #[test]
    fn in_a_shared_topology_firing_alerts_are_told_apart_by_their_cluster_label() {
        let states = json!({"status": "success", "data": {"groups": [
            {"name": rules::SHARED_GROUP, "file": rules::FLEET_FOLDER_TITLE, "rules": [
                {"name": "CmmClusterSilent", "health": "ok", "state": "firing", "alerts": [
                    {"labels": {"cluster": "beta"}, "state": "Alerting"}]},
                {"name": "CmmTargetDown", "health": "ok", "state": "inactive", "alerts": []}
            ]}
        ]}});
        let facts = FleetFacts {
            reading: Reading::Shared {
                datasource_uid: "cmm_receiver".into(),
            },
            registered: Ok(vec![name("alpha"), name("beta")]),
            fleet_rule: Ok(Some(vec![name("alpha"), name("beta")])),
            members: vec![healthy("alpha", 3.0), healthy("beta", 3.0)],
            rule_states: Ok(states),
            senders: vec!["alpha".into(), "beta".into()],
        };
        let (rows, findings) = judge(&facts, "push");
        assert!(rows[0].firing.is_empty());
        assert_eq!(rows[1].firing, vec!["CmmClusterSilent"]);
        let rule = findings.iter().find(|f| f.id == "fleet.rule").unwrap();
        assert_eq!(rule.severity, Severity::Ok);
        // A sender whose registration lost a race: CmmClusterSilent would never page for it.
        let mut lost = facts.clone();
        lost.registered = Ok(vec![name("alpha")]);
        lost.members.truncate(1);
        let (_, findings) = judge(&lost, "push");
        let rule = findings.iter().find(|f| f.id == "fleet.rule").unwrap();
        assert_eq!(rule.severity, Severity::Failed);
        assert!(rule.evidence[0].starts_with("beta send(s) samples"));
    }

    #[test]
    fn a_cluster_whose_certificate_runs_out_unrenewed_is_named() {
        let mut late = healthy("beta", 5.0);
        late.cert_days_left = Some(3);
        let facts = pull(
            vec![healthy("alpha", 5.0), late],
            Some(vec!["alpha", "beta"]),
        );
        let (rows, findings) = judge(&facts, "pull");
        assert_eq!(rows[0].severity, Severity::Ok);
        assert_eq!(rows[1].severity, Severity::Warning);
        assert_eq!(rows[1].cert_days_left, Some(3));
        let beta = findings
            .iter()
            .find(|f| f.subject == "cluster beta")
            .unwrap();
        assert!(
            beta.evidence.iter().any(|e| e.contains("3 day(s) left")),
            "{beta:?}"
        );
    }

    #[test]
    fn ages_are_read_from_a_prometheus_vector() {
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"cluster": "alpha"}, "value": [1700000000.0, "14.5"]},
            {"metric": {}, "value": [1700000000.0, "3"]}
        ]}});
        let a = ages_by_cluster(&v);
        assert_eq!(a.get("alpha"), Some(&14.5));
        assert_eq!(a.len(), 1);
    }
}
