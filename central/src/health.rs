//! `check`, the Prometheus and Grafana side: the reads, then pure judgements into findings for
//! the stages Prometheus, endpoint and Grafana.

use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_core::naming::CLUSTER_LABEL;
use cmm_core::ClusterName;
use serde_json::Value;

use crate::contact::{self, Delivery};
use crate::grafana::{DataSource, DatasourceHealth, GrafanaClient};
use crate::prometheus::PrometheusFacts;
use crate::register::RulesMode;
use crate::rules;

type Read<T> = std::result::Result<T, String>;

/// The reads of the Grafana stage.
#[derive(Debug, Clone)]
pub struct GrafanaFacts {
    /// The Grafana these facts were read from (its root URL): the rules' runbook links name it.
    pub base: String,
    /// Every read failed for one reason that is Grafana's as a whole (unreachable, failing,
    /// the token refused, its certificate untrusted): that reason, judged once.
    pub down: Option<String>,
    pub datasource: Read<Option<DataSource>>,
    /// Grafana's own query through the datasource (only asked when it exists).
    pub health: Option<Read<DatasourceHealth>>,
    pub group: Read<Option<Value>>,
    pub group_editable: Option<bool>,
    /// The rule groups of the cluster's folder in the rule-state API.
    pub rule_states: Read<Vec<Value>>,
    pub contact_points: Read<Vec<Value>>,
    /// With `--test-contact-points`: what each real contact point did with a test notification.
    pub deliveries: Option<Read<Vec<Delivery>>>,
}

/// A failure that every read of Grafana would share.
fn grafana_wide(e: &crate::Error) -> bool {
    matches!(
        e,
        crate::Error::GrafanaUnreachable { .. }
            | crate::Error::GrafanaFailing { .. }
            | crate::Error::GrafanaUnauthorized { .. }
            | crate::Error::Invalid { .. }
    )
}

/// Read what the Grafana stage judges. Each read fails on its own, so one refused permission
/// still leaves the others judged; when all fail for one Grafana-wide reason, that is one
/// cause (`down`). `test_contact_points`: also send a test notification through each real
/// contact point (opt-in: people receive it).
pub async fn grafana_facts(
    g: &GrafanaClient,
    cluster: &ClusterName,
    test_contact_points: bool,
) -> GrafanaFacts {
    let uid = cluster.datasource_uid();
    let folder = rules::folder_uid(cluster);
    let title = rules::folder_title(cluster);
    let (datasource, group, rule_states, contact_points) = tokio::join!(
        g.datasource_by_uid(&uid),
        g.rule_group(&folder, rules::GROUP),
        g.rule_statuses(&folder, &title),
        g.contact_points()
    );
    let down = match (&datasource, &group, &rule_states, &contact_points) {
        (Err(a), Err(b), Err(c), Err(d)) if [a, b, c, d].into_iter().all(grafana_wide) => {
            Some(a.to_string())
        }
        _ => None,
    };
    let datasource = datasource.map_err(|e| e.to_string());
    let health = match &datasource {
        Ok(Some(_)) => Some(g.datasource_health(&uid).await.map_err(|e| e.to_string())),
        _ => None,
    };
    let group = group.map_err(|e| e.to_string());
    let group_editable = match &group {
        Ok(Some(v)) => g.group_editable(v).await.ok().flatten(),
        _ => None,
    };
    let deliveries = match (&contact_points, test_contact_points) {
        (Ok(points), true) if !contact::real(points).is_empty() => Some(
            g.test_contact_points(&contact::real(points), cluster.as_str())
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    GrafanaFacts {
        base: g.base_url().to_string(),
        down,
        datasource,
        health,
        group,
        group_editable,
        rule_states: rule_states.map_err(|e| e.to_string()),
        contact_points: contact_points.map_err(|e| e.to_string()),
        deliveries,
    }
}

/// Stage 3: ready, targets healthy, every series labelled, storage headroom.
pub fn judge_prometheus(
    cluster: &ClusterName,
    url: &str,
    facts: &PrometheusFacts,
    storage_warn_percent: u8,
) -> Vec<Finding> {
    let st = Stage::Prometheus;
    let subject = format!("Prometheus at {url}");
    if let Err(e) = &facts.ready {
        return vec![Finding::failed(st, "prometheus.ready", subject).with(e.clone())];
    }
    let mut out = vec![Finding::ok(st, "prometheus.ready", &subject).with("/-/ready answers 200")];
    out.push(match &facts.targets {
        Err(e) => Finding::failed(st, "prometheus.targets", "scrape targets").with(e.clone()),
        Ok(t) if t.is_empty() => Finding::failed(st, "prometheus.targets", "scrape targets")
            .with("no active target: it scrapes nothing (ServiceMonitors not selected?)"),
        Ok(t) => {
            let down: Vec<_> = t.iter().filter(|t| t.health != "up").collect();
            let counted = format!("{}/{} target(s) up", t.len() - down.len(), t.len());
            if down.is_empty() {
                Finding::ok(st, "prometheus.targets", "scrape targets").with(counted)
            } else {
                let mut f = Finding::warn(st, "prometheus.targets", "scrape targets").with(counted);
                for d in down.iter().take(5) {
                    f.evidence.push(format!(
                        "{} {} is {}: {}",
                        d.job,
                        d.instance,
                        d.health,
                        if d.last_error.is_empty() {
                            "no error recorded"
                        } else {
                            &d.last_error
                        }
                    ));
                }
                if down.len() > 5 {
                    f.evidence.push(format!("{} more down", down.len() - 5));
                }
                f
            }
        }
    });
    let label = format!("{CLUSTER_LABEL}={:?} on every series", cluster.as_str());
    out.push(match &facts.clusters {
        Err(e) => Finding::failed(st, "prometheus.cluster-label", label).with(e.clone()),
        Ok(seen) => {
            let wrong: Vec<String> = seen
                .iter()
                .filter(|(c, _)| c != cluster.as_str())
                .map(|(c, n)| format!("{n} series with {CLUSTER_LABEL}={c:?}"))
                .collect();
            let right: u64 = seen.iter().filter(|(c, _)| c == cluster.as_str()).map(|(_, n)| n).sum();
            if seen.is_empty() {
                Finding::failed(st, "prometheus.cluster-label", label)
                    .with("no up, node_uname_info or prometheus_build_info series yet")
            } else if wrong.is_empty() {
                Finding::ok(st, "prometheus.cluster-label", label)
                    .with(format!("{right} sampled series carry it"))
            } else {
                let mut f = Finding::failed(st, "prometheus.cluster-label", label)
                    .with("this Prometheus labels series for another cluster name (installed under another release name?)");
                f.evidence.extend(wrong);
                f.repair(RepairKind::Reinstall, format!("install it as release {cluster}: `cmm-agent check --reinstall`"))
            }
        }
    });
    out.push(match &facts.tsdb {
        Err(e) => Finding::warn(st, "prometheus.storage", "TSDB storage").with(e.clone()),
        Ok(u) if u.limit <= 0.0 => Finding::warn(st, "prometheus.storage", "TSDB storage")
            .with(format!("{} used, no size retention: only the time retention bounds it", bytes(u.used))),
        Ok(u) => {
            let pct = 100.0 * u.used / u.limit;
            let text = format!("{} of {} retention size used ({pct:.0}%)", bytes(u.used), bytes(u.limit));
            if pct >= f64::from(storage_warn_percent) {
                Finding::warn(st, "prometheus.storage", "TSDB storage").with(text).with(format!(
                    "at or over {storage_warn_percent}% (storage-warn): the oldest blocks go before the time retention ends"
                ))
            } else {
                Finding::ok(st, "prometheus.storage", "TSDB storage").with(text)
            }
        }
    });
    out
}

fn bytes(b: f64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

/// Stage 4: the endpoint Grafana is given answers from this host.
pub fn judge_endpoint(url: &str, via: &str, ready: &Read<()>) -> Finding {
    let subject = format!("{url} ({via})");
    match ready {
        Ok(()) => Finding::ok(Stage::Endpoint, "endpoint.reachable", subject)
            .with("answers /-/ready from this host"),
        Err(e) => Finding::failed(Stage::Endpoint, "endpoint.reachable", subject)
            .with(e.clone())
            .repair(
                RepairKind::Manual,
                "open the NodePort on the nodes' firewall, or give the address Grafana reaches (advertise-address, prometheus-url)",
            ),
    }
}

/// Stage 5: datasource (exists, current URL, Grafana's health check), rule group (exists,
/// matches), rule states, contact points.
pub fn judge_grafana(
    cluster: &ClusterName,
    desired: &Value,
    mode: RulesMode,
    facts: &GrafanaFacts,
) -> Vec<Finding> {
    let st = Stage::Grafana;
    let uid = cluster.datasource_uid();
    let ds_subject = format!("datasource {uid}");
    let register = |what: &str| {
        format!("re-register: {what} (`cmm-agent check --repair` or `cmm-agent register`)")
    };
    if let Some(cause) = &facts.down {
        return grafana_down(cause);
    }
    let mut out = Vec::new();
    match &facts.datasource {
        Err(e) => out.push(Finding::failed(st, "grafana.datasource", ds_subject).with(e.clone())),
        Ok(None) => out.push(
            Finding::failed(st, "grafana.datasource", ds_subject)
                .with("missing: the central Grafana does not show this cluster")
                .repair(RepairKind::Register, register("create it")),
        ),
        Ok(Some(ds)) => {
            let want_url = desired["url"].as_str().unwrap_or("");
            out.push(if ds.url != want_url {
                Finding::failed(st, "grafana.datasource", &ds_subject)
                    .with(format!("points at {}, the cluster's endpoint is {want_url}", ds.url))
                    .repair(RepairKind::Register, register("point it at the current endpoint"))
            } else if !crate::register::settings_match(desired, ds) {
                let key = cmm_core::naming::DATASOURCE_TLS_IDENTITY_KEY;
                let stale_tls = desired["jsonData"].get(key).is_some()
                    && ds.json_data.get(key) != desired["jsonData"].get(key);
                if stale_tls {
                    Finding::warn(st, "grafana.datasource", &ds_subject)
                        .with(format!("points at {want_url}, but holds another client certificate or CA than the central cluster's current ones (renewed or rotated)"))
                        .repair(RepairKind::Register, register("give it the current certificates"))
                } else {
                    Finding::warn(st, "grafana.datasource", &ds_subject)
                        .with(format!("points at {want_url}, but its settings differ from CMM's (edited in the UI?)"))
                        .repair(RepairKind::Register, register("restore CMM's settings"))
                }
            } else {
                Finding::ok(st, "grafana.datasource", &ds_subject).with(if crate::endpoint::is_plain_http(want_url) {
                    format!("points at {want_url}; INSECURE: plain HTTP (insecure-plain-http), anyone on the path reads this cluster's metrics")
                } else {
                    format!("points at {want_url}")
                })
            });
            out.push(match &facts.health {
                Some(Ok(h)) if h.ok => Finding::ok(st, "grafana.datasource-health", "Grafana's health check of the datasource")
                    .with(h.message.clone()),
                Some(Ok(h)) => Finding::failed(st, "grafana.datasource-health", "Grafana's health check of the datasource")
                    .with(format!("{}: {}", h.status, h.message))
                    .repair(RepairKind::Manual, "the central Grafana does not reach the endpoint: firewall, NodePort, advertise-address"),
                Some(Err(e)) => Finding::failed(st, "grafana.datasource-health", "Grafana's health check of the datasource").with(e.clone()),
                None => Finding::skipped(st, "grafana.datasource-health", "Grafana's health check of the datasource"),
            });
        }
    }
    let folder = rules::folder_uid(cluster);
    let group_subject = format!("rule group {folder}/{}", rules::GROUP);
    if mode == RulesMode::Skip {
        out.push(Finding::skipped(st, "grafana.rules", group_subject).with("rules = skip"));
    } else {
        let want = rules::render(cluster, &facts.base);
        out.push(match &facts.group {
            Err(e) => Finding::failed(st, "grafana.rules", group_subject).with(e.clone()),
            Ok(None) => Finding::failed(st, "grafana.rules", group_subject)
                .with("missing: no alert fires for this cluster")
                .repair(RepairKind::Register, register("provision the rules")),
            Ok(Some(have)) => {
                let editable = mode == RulesMode::Editable;
                if rules::stored_matches(&want, have, editable, facts.group_editable) {
                    Finding::ok(st, "grafana.rules", group_subject).with(format!(
                        "{} rule(s) as CMM provisions them",
                        want["rules"].as_array().map_or(0, Vec::len)
                    ))
                } else {
                    Finding::warn(st, "grafana.rules", group_subject)
                        .with("differs from CMM's template (edited, or an older agent wrote it)")
                        .repair(RepairKind::Register, register("rewrite the group"))
                }
            }
        });
        out.push(judge_rule_states(&folder, &facts.rule_states));
    }
    out.push(judge_contact_points(
        &facts.contact_points,
        facts.deliveries.as_ref(),
    ));
    out
}

/// One Grafana-wide cause: one failed finding, and the rest of the stage skipped with the
/// reason (not four failures saying the same thing).
fn grafana_down(cause: &str) -> Vec<Finding> {
    let st = Stage::Grafana;
    let mut out = vec![Finding::failed(st, "grafana.api", "the central Grafana's API").with(cause)];
    for id in [
        "grafana.datasource",
        "grafana.rules",
        "grafana.rule-state",
        "grafana.contact-points",
    ] {
        out.push(
            Finding::skipped(st, id, "not judged")
                .with("the central Grafana's API failed every read (grafana.api)"),
        );
    }
    out
}

/// Rule health in the rule-state API: `ok`, `error` (lastError says why) or `nodata`; alert
/// instances in `NoData`/`Error` states (`state.FormatStateAndReason`). A rule Grafana has not
/// scheduled yet reports `ok` (api_prometheus.go, RuleStatusMutatorGenerator).
pub fn judge_rule_states(folder: &str, groups: &Read<Vec<Value>>) -> Finding {
    let st = Stage::Grafana;
    let subject = format!("rule evaluation in folder {folder}");
    let groups = match groups {
        Err(e) => return Finding::failed(st, "grafana.rule-state", subject).with(e.clone()),
        Ok(g) => g,
    };
    let rules: Vec<&Value> = groups
        .iter()
        .filter(|g| g["name"] == rules::GROUP)
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    if rules.is_empty() {
        return Finding::warn(st, "grafana.rule-state", subject)
            .with("Grafana evaluates no rule of this cluster yet");
    }
    let (mut errors, mut nodata, mut firing) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?");
        let health = r["health"].as_str().unwrap_or("");
        let instance_states: Vec<&str> = r["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["state"].as_str())
            .collect();
        if health == "error" || instance_states.iter().any(|s| s.starts_with("Error")) {
            let why = r["lastError"]
                .as_str()
                .filter(|e| !e.is_empty())
                .unwrap_or("evaluation error");
            errors.push(format!("{name}: {}", crate::sanitize::shown(why, &[])));
        } else if health == "nodata" || instance_states.iter().any(|s| s.starts_with("NoData")) {
            nodata.push(format!("{name}: no data"));
        }
        if r["state"] == "firing" {
            firing.push(name.to_owned());
        }
    }
    let mut f = if !errors.is_empty() {
        Finding::failed(st, "grafana.rule-state", subject)
    } else if !nodata.is_empty() {
        Finding::warn(st, "grafana.rule-state", subject)
    } else {
        Finding::ok(st, "grafana.rule-state", subject)
    };
    f.evidence.push(format!(
        "{} of {} rule(s) evaluate cleanly",
        rules.len() - errors.len() - nodata.len(),
        rules.len()
    ));
    f.evidence.extend(errors);
    f.evidence.extend(nodata);
    if !firing.is_empty() {
        f.evidence
            .push(format!("firing now: {}", firing.join(", ")));
    }
    f
}

/// Whether an alert reaches someone. Without a test notification only the configuration is
/// seen: a real contact point is "unverified" (not a fault: exit 0), and the finding says how
/// to prove it. With one, each is deliverable or not, as Grafana's attempt says.
pub fn judge_contact_points(
    points: &Read<Vec<Value>>,
    tested: Option<&Read<Vec<Delivery>>>,
) -> Finding {
    let st = Stage::Grafana;
    let id = "grafana.contact-points";
    let subject = "contact points";
    let configure =
        "configure SMTP (grafana.ini [smtp]) or MS Teams in central_monitor.yaml (docs/central.md)";
    let points = match points {
        Err(e) => return Finding::failed(st, id, subject).with(e.clone()),
        Ok(p) => p,
    };
    let real = contact::real(points);
    let named = |p: &&Value| {
        format!(
            "{} ({})",
            p["name"].as_str().unwrap_or("?"),
            p["type"].as_str().unwrap_or("?")
        )
    };
    if points.is_empty() {
        return Finding::failed(st, id, subject)
            .with("none: an alert reaches nobody")
            .repair(RepairKind::Manual, configure);
    }
    if real.is_empty() {
        return Finding::warn(st, id, subject)
            .with(format!(
                "only Grafana's default, mailing {}: an alert reaches nobody",
                contact::PLACEHOLDER
            ))
            .repair(RepairKind::Manual, configure);
    }
    let deliveries = match tested {
        None => {
            return Finding::ok(st, id, subject).with(format!(
                "{}: unverified (whether Grafana can send through them, e.g. its SMTP is on, \
                 is not visible without sending); prove it with `cmm-agent check \
                 --test-contact-points`, which sends one test notification through each",
                real.iter().map(named).collect::<Vec<_>>().join(", ")
            ))
        }
        Some(Err(e)) => {
            return Finding::warn(st, id, subject).with(format!(
                "unverified: the test notification could not be sent: {e}"
            ))
        }
        Some(Ok(d)) => d,
    };
    let line = |d: &Delivery| match &d.error {
        None => format!(
            "{} ({}): deliverable, a test notification was sent",
            d.name, d.kind
        ),
        Some(e) => format!("{} ({}): not deliverable: {e}", d.name, d.kind),
    };
    let evidence: Vec<String> = deliveries.iter().map(line).collect();
    let sent = deliveries.iter().filter(|d| d.delivered).count();
    let f = if sent == deliveries.len() {
        Finding::ok(st, id, subject)
    } else if sent > 0 {
        Finding::warn(st, id, subject).repair(RepairKind::Manual, configure)
    } else {
        Finding::failed(st, id, subject).repair(RepairKind::Manual, configure)
    };
    let mut f = f;
    f.evidence.extend(evidence);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{ClientIdentity, PrometheusTarget};
    use cmm_core::finding::Severity;
    use cmm_core::ClusterName;

    fn delivery(name: &str, kind: &str, error: Option<&str>) -> Delivery {
        Delivery {
            name: name.into(),
            kind: kind.into(),
            delivered: error.is_none(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn contact_points_say_only_what_is_known() {
        let mail = serde_json::json!({"uid": "m", "name": "ops-mail", "type": "email",
            "settings": {"addresses": "ops@example.org"}});
        let default = serde_json::json!({"uid": "d", "name": "grafana-default-email",
            "type": "email", "settings": {"addresses": "<example@email.com>"}});
        let smtp_off = "SMTP not configured, check your grafana.ini config file's [smtp] section";
        type Case = (
            Vec<Value>,
            Option<Read<Vec<Delivery>>>,
            Severity,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (vec![], None, Severity::Failed, "none"),
            (
                vec![default.clone()],
                None,
                Severity::Warning,
                "only Grafana's default",
            ),
            (
                vec![default, mail.clone()],
                None,
                Severity::Ok,
                "ops-mail (email): unverified",
            ),
            (
                vec![mail.clone()],
                Some(Ok(vec![delivery("ops-mail", "email", Some(smtp_off))])),
                Severity::Failed,
                "ops-mail (email): not deliverable: SMTP not configured",
            ),
            (
                vec![mail.clone()],
                Some(Ok(vec![
                    delivery("ops-mail", "email", Some(smtp_off)),
                    delivery("chat", "teams", None),
                ])),
                Severity::Warning,
                "chat (teams): deliverable",
            ),
            (
                vec![mail.clone()],
                Some(Ok(vec![delivery("ops-mail", "email", None)])),
                Severity::Ok,
                "ops-mail (email): deliverable",
            ),
            (
                vec![mail],
                Some(Err("403".into())),
                Severity::Warning,
                "unverified: the test notification could not be sent",
            ),
        ];
        for (points, tested, severity, says) in cases {
            let f = judge_contact_points(&Ok(points), tested.as_ref());
            assert_eq!(f.severity, severity, "{f:?}");
            assert!(f.evidence.iter().any(|e| e.contains(says)), "{says}: {f:?}");
        }
    }

    #[test]
    fn one_grafana_wide_cause_is_one_failed_finding() {
        let facts = GrafanaFacts {
            base: "http://grafana.example/".into(),
            down: Some(
                "Grafana at http://g/ answered 500 to GET /api/datasources/uid/cmm-kr-mum".into(),
            ),
            datasource: Err("500".into()),
            health: None,
            group: Err("500".into()),
            group_editable: None,
            rule_states: Err("500".into()),
            contact_points: Err("500".into()),
            deliveries: None,
        };
        let c = ClusterName::parse("kr-mum").unwrap();
        let out = judge_grafana(&c, &Value::Null, RulesMode::Provisioned, &facts);
        let failed: Vec<_> = out
            .iter()
            .filter(|f| f.severity == Severity::Failed)
            .collect();
        assert_eq!(failed.len(), 1, "{out:?}");
        assert_eq!(failed[0].id, "grafana.api");
        assert!(out
            .iter()
            .filter(|f| f.id != "grafana.api")
            .all(|f| f.severity == Severity::Skipped
                && f.evidence.iter().any(|e| e.contains("(grafana.api)"))));
    }

    const CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUBw==\n-----END CERTIFICATE-----\n";
    const OTHER: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUCA==\n-----END CERTIFICATE-----\n";

    fn desired(client: &str) -> Value {
        let target = PrometheusTarget {
            url: "https://10.0.0.5:30090".into(),
            ca_pem: Some(CA.into()),
            client: Some(ClientIdentity {
                cert_pem: client.into(),
                key: crate::Secret::new("not a key".to_owned()),
            }),
            ..Default::default()
        };
        crate::register::desired_datasource(&ClusterName::parse("kr-mum").unwrap(), &target)
            .unwrap()
    }

    /// What Grafana shows of a datasource written with `body`: everything but secureJsonData.
    fn stored(body: &Value) -> DataSource {
        DataSource {
            id: 1,
            uid: body["uid"].as_str().unwrap().into(),
            name: body["name"].as_str().unwrap().into(),
            kind: "prometheus".into(),
            url: body["url"].as_str().unwrap().into(),
            access: "proxy".into(),
            basic_auth: false,
            basic_auth_user: String::new(),
            json_data: body["jsonData"].clone(),
            secure_json_fields: serde_json::json!({"tlsClientCert": true}),
            read_only: false,
            version: 1,
        }
    }

    fn datasource_finding(desired: &Value, ds: DataSource) -> Finding {
        let facts = GrafanaFacts {
            base: "http://grafana.example/".into(),
            down: None,
            deliveries: None,
            datasource: Ok(Some(ds)),
            health: None,
            group: Ok(None),
            group_editable: None,
            rule_states: Ok(Vec::new()),
            contact_points: Ok(Vec::new()),
        };
        let c = ClusterName::parse("kr-mum").unwrap();
        judge_grafana(&c, desired, RulesMode::Skip, &facts)
            .into_iter()
            .find(|f| f.id == "grafana.datasource")
            .unwrap()
    }

    #[test]
    fn a_datasource_holding_another_client_certificate_is_drifted() {
        // Written with the certificate the central cluster holds: in order, secrets and all.
        let now = desired(CA);
        let f = datasource_finding(&now, stored(&now));
        assert_eq!(f.severity, Severity::Ok, "{f:?}");
        // Written before Grafana's certificate was renewed: the fingerprint tells.
        let before = desired(OTHER);
        let f = datasource_finding(&now, stored(&before));
        assert_eq!(f.severity, Severity::Warning, "{f:?}");
        assert!(
            f.evidence[0].contains("another client certificate"),
            "{f:?}"
        );
        assert_eq!(f.repair.unwrap().kind, RepairKind::Register);
    }
}
