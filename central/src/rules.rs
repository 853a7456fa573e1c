//! Per-cluster alert rules. Grafana-managed rules query exactly one datasource, so one rule
//! cannot watch many clusters through a variable (grafana/grafana#82758): every cluster gets
//! its own copy of the rules in `content/rules/cluster-rules.yaml`, bound to its datasource.
//!
//! Layout: one folder per cluster (uid `cmm-<cluster>`, title `CMM <cluster>`) holding one
//! group, [`GROUP`]. A folder per cluster rather than one shared folder because Grafana wants
//! rule titles unique per folder, and the titles (CmmNodeDown, …) are the same for every cluster.
//!
//! One unreachable cluster, one alert: the reachability rule alerts on no data and on errors;
//! every other rule is set to OK in both states, so a datasource that stops answering does not
//! turn each of them into an error notification of its own.

use serde::Deserialize;
use serde_json::{json, Value};

use cmm_core::content::{runbook_url, CLUSTER_RULES_YAML};
use cmm_core::ClusterName;

/// Name of the rule group in each cluster's folder.
pub const GROUP: &str = "cluster-health";

/// The rule source as shipped (`content/rules/cluster-rules.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Evaluation interval of the group, seconds.
    pub interval: u64,
    /// Rules that alert when the cluster does not answer (no data or an error).
    pub reachability: Vec<RuleSource>,
    /// Every other rule: quiet (OK) on no data and on errors.
    pub rules: Vec<RuleSource>,
    /// The one fleet-wide rule: registered clusters vs. clusters answering.
    pub fleet: FleetSource,
    /// The shared topologies' reachability rule: registered clusters not heard from.
    pub silent: FleetSource,
}

/// A rule over the registered clusters, built anew by every (de)registration: the fleet rule
/// and the shared topologies' silent rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSource {
    pub alert: String,
    pub severity: String,
    #[serde(rename = "for")]
    pub pending: String,
    /// Fleet rule: run on each registered cluster's datasource (`${CLUSTER}`), a cluster answers
    /// when it returns a value > 0. Silent rule: `${REGISTERED}` becomes one series per
    /// registered cluster.
    pub expr: String,
    pub summary: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    pub alert: String,
    pub severity: String,
    #[serde(rename = "for")]
    pub pending: String,
    pub expr: String,
    /// Grafana's threshold evaluator: `gt`, `lt`, `within_range`, `outside_range`.
    pub op: String,
    pub threshold: Threshold,
    pub summary: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    One(f64),
    Range([f64; 2]),
}

impl Threshold {
    fn params(&self) -> Vec<f64> {
        match self {
            Threshold::One(x) => vec![*x],
            Threshold::Range(r) => r.to_vec(),
        }
    }
}

/// Folder and group of the fleet rule. The uid has an underscore, which no cluster name (a DNS
/// label) can have, so it cannot meet a cluster's folder `cmm-<cluster>`.
pub const FLEET_FOLDER_UID: &str = "cmm_fleet";
pub const FLEET_FOLDER_TITLE: &str = "CMM fleet";
pub const FLEET_GROUP: &str = "fleet-health";

/// The shipped rules, parsed (the source is embedded, so a parse error is a build defect that
/// the unit tests catch).
pub fn source() -> Source {
    serde_saphyr::from_str(CLUSTER_RULES_YAML).expect("content/rules/cluster-rules.yaml parses")
}

pub fn folder_uid(cluster: &ClusterName) -> String {
    // Folder and datasource uids live in different namespaces, so they may share the form.
    cluster.datasource_uid()
}

pub fn folder_title(cluster: &ClusterName) -> String {
    format!("CMM {cluster}")
}

/// Rule uids must stay stable across runs (a group PUT matches rules by uid; a new uid would
/// reset the alert's state) and fit 40 characters with a long cluster name, hence a hash.
pub fn rule_uid_prefix(cluster: &ClusterName) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("cmm-{h:08x}")
}

/// The registered clusters, as Grafana holds them: datasources CMM made (uid `cmm-<name>` for
/// the cluster name it carries), sorted so the fleet rule does not change with list order.
pub fn registered_clusters(datasources: &[crate::grafana::DataSource]) -> Vec<ClusterName> {
    let mut out: Vec<ClusterName> = datasources
        .iter()
        .filter(|d| d.kind == "prometheus")
        .filter_map(|d| ClusterName::parse(&d.name).ok())
        .filter(|c| {
            datasources
                .iter()
                .any(|d| d.uid == c.datasource_uid() && d.name == c.as_str())
        })
        .collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup_by(|a, b| a.as_str() == b.as_str());
    out
}

/// An instant PromQL query on a cluster's datasource, as a rule's data node.
fn query_node(ref_id: &str, datasource_uid: &str, expr: &str, legend: Option<&str>) -> Value {
    let mut model = json!({
        "refId": ref_id,
        "expr": expr,
        "instant": true,
        "range": false,
        "intervalMs": 1000,
        "maxDataPoints": 43200
    });
    if let Some(l) = legend {
        model["legendFormat"] = json!(l);
    }
    json!({
        "refId": ref_id,
        "queryType": "",
        "datasourceUid": datasource_uid,
        // An instant query: Grafana evaluates it at `now - to`; the look-back of range
        // functions is in the expression itself.
        "relativeTimeRange": {"from": 600, "to": 0},
        "model": model
    })
}

/// A server-side expression node (`math`, `threshold`, …); `extra` adds its own fields.
fn expression_node(ref_id: &str, kind: &str, expression: &str, extra: Value) -> Value {
    let mut model = json!({
        "refId": ref_id,
        "type": kind,
        "expression": expression,
        "datasource": {"type": "__expr__", "uid": "__expr__"}
    });
    if let (Some(m), Value::Object(e)) = (model.as_object_mut(), extra) {
        m.extend(e);
    }
    json!({
        "refId": ref_id,
        "queryType": "",
        "datasourceUid": "__expr__",
        "relativeTimeRange": {"from": 0, "to": 0},
        "model": model
    })
}

fn threshold(op: &str, params: Vec<f64>) -> Value {
    json!({"conditions": [{"type": "query", "evaluator": {"type": op, "params": params}}]})
}

/// The clusters a stored fleet rule counts (its queries' datasources, `cmm-<cluster>`).
pub fn fleet_members(group: &Value) -> Vec<ClusterName> {
    group["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["data"].as_array().cloned().unwrap_or_default())
        .filter_map(|q| {
            let uid = q["datasourceUid"].as_str()?;
            let name = uid.strip_prefix(cmm_core::naming::DATASOURCE_UID_PREFIX)?;
            ClusterName::parse(name).ok()
        })
        .collect()
}

/// The fleet rule group for `PUT …/folder/cmm_fleet/rule-groups/fleet-health`: one query per
/// registered cluster (refIds `A0`, `A1`, … on each cluster's datasource), a math expression
/// `M` = registered − answering, and the condition `M > 0`. `None` for an empty fleet.
///
/// A Grafana rule fails as a whole when one of its queries fails (server-side expressions run
/// as one pipeline; a query error leaves every expression depending on it unevaluated), so
/// an unreachable cluster puts this rule in its error state: set to Alerting, which is how a
/// cluster whose datasource was removed outside CMM still pages.
pub fn render_fleet(clusters: &[ClusterName], grafana_base: &str) -> Option<Value> {
    if clusters.is_empty() {
        return None;
    }
    let f = source().fleet;
    let mut data: Vec<Value> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let expr = f.expr.replace("${CLUSTER}", c.as_str());
            query_node(
                &format!("A{i}"),
                &c.datasource_uid(),
                &expr,
                Some(c.as_str()),
            )
        })
        .collect();
    let answering: Vec<String> = (0..clusters.len())
        .map(|i| format!("($A{i} > 0)"))
        .collect();
    let expression = format!("{} - ({})", clusters.len(), answering.join(" + "));
    data.push(expression_node("M", "math", &expression, json!({})));
    data.push(expression_node(
        "C",
        "threshold",
        "M",
        threshold("gt", vec![0.0]),
    ));
    let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
    Some(json!({
        "title": FLEET_GROUP,
        "folderUid": FLEET_FOLDER_UID,
        "interval": source().interval,
        "rules": [{
            "uid": "cmm_fleet-cluster-missing",
            "title": f.alert,
            "folderUID": FLEET_FOLDER_UID,
            "ruleGroup": FLEET_GROUP,
            "orgID": 1,
            "condition": "C",
            "data": data,
            "noDataState": "OK",
            "execErrState": "Alerting",
            "for": f.pending,
            "labels": {"severity": f.severity, "cluster": "_fleet"},
            "annotations": {
                "summary": f.summary,
                "description": format!("{} Registered: {}.", f.description.trim_end(), names.join(", ")),
                "runbook_url": runbook_url(grafana_base, &f.alert),
            },
            "isPaused": false
        }]
    }))
}

/// The shared topologies' group in the fleet folder: the whole rule set once, on one datasource.
pub const SHARED_GROUP: &str = "shared-health";

/// `${REGISTERED}` of the silent rule: one `{cluster="<name>"}` series per registered cluster.
/// The names are validated DNS labels, so they cannot break the PromQL string.
pub fn registered_vector(clusters: &[ClusterName]) -> String {
    clusters
        .iter()
        .map(|c| format!("label_replace(vector(1), \"cluster\", \"{c}\", \"\", \"\")"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The PromQL of CmmClusterSilent for these registered clusters: one series per silent one.
pub fn silent_expr(clusters: &[ClusterName]) -> String {
    source()
        .silent
        .expr
        .replace("${REGISTERED}", &registered_vector(clusters))
}

/// The clusters a stored shared group expects to hear from (the silent rule's `cluster` names).
pub fn shared_members(group: &Value) -> Vec<ClusterName> {
    let silent = source().silent.alert;
    let mut out: Vec<ClusterName> = group["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["title"] == silent.as_str())
        .flat_map(|r| r["data"].as_array().cloned().unwrap_or_default())
        .filter_map(|q| q["model"]["expr"].as_str().map(str::to_owned))
        .flat_map(|e| {
            e.split("\"cluster\", \"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter_map(|n| ClusterName::parse(&n).ok())
        .collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup_by(|a, b| a.as_str() == b.as_str());
    out
}

/// The shared topologies' rule group for `PUT …/folder/cmm_fleet/rule-groups/shared-health`:
/// every rule once, on `datasource_uid` (the receiver or Thanos Query), alert instances told
/// apart by their series' `cluster` label, plus CmmClusterSilent over the registered clusters.
/// `None` for an empty fleet.
pub fn render_shared(
    clusters: &[ClusterName],
    datasource_uid: &str,
    grafana_base: &str,
) -> Option<Value> {
    if clusters.is_empty() {
        return None;
    }
    let src = source();
    // Per-cluster texts name the cluster; here it is each alert's own label.
    let fill = |s: &str| s.replace("${CLUSTER}", "{{ $labels.cluster }}");
    let s = &src.silent;
    let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
    let mut rules = vec![json!({
        "uid": format!("{FLEET_FOLDER_UID}-{}", slug(&s.alert)),
        "title": s.alert,
        "folderUID": FLEET_FOLDER_UID,
        "ruleGroup": SHARED_GROUP,
        "orgID": 1,
        "condition": "C",
        "data": [
            query_node("A", datasource_uid, &silent_expr(clusters), None),
            expression_node("C", "threshold", "A", threshold("gt", vec![0.0])),
        ],
        // No series: every registered cluster is heard. An error: the store itself is gone.
        "noDataState": "OK",
        "execErrState": "Alerting",
        "for": s.pending,
        "labels": {"severity": s.severity},
        "annotations": {
            "summary": s.summary,
            "description": format!("{} Registered: {}.", s.description.trim_end(), names.join(", ")),
            "runbook_url": runbook_url(grafana_base, &s.alert),
        },
        "isPaused": false
    })];
    for r in &src.rules {
        rules.push(json!({
            "uid": format!("{FLEET_FOLDER_UID}-{}", slug(&r.alert)),
            "title": r.alert,
            "folderUID": FLEET_FOLDER_UID,
            "ruleGroup": SHARED_GROUP,
            "orgID": 1,
            "condition": "C",
            "data": [
                query_node("A", datasource_uid, &r.expr, None),
                expression_node("C", "threshold", "A", threshold(&r.op, r.threshold.params())),
            ],
            // Quiet on no data and errors, as per cluster: CmmClusterSilent is the one that pages.
            "noDataState": "OK",
            "execErrState": "OK",
            "for": r.pending,
            "labels": {"severity": r.severity},
            "annotations": {
                "summary": fill(&r.summary),
                "description": fill(&r.description),
                "runbook_url": runbook_url(grafana_base, &r.alert),
            },
            "isPaused": false
        }));
    }
    Some(json!({
        "title": SHARED_GROUP,
        "folderUid": FLEET_FOLDER_UID,
        "interval": src.interval,
        "rules": rules,
    }))
}

/// `CmmNodeDown` -> `node-down`: the stable tail of a rule's uid.
fn slug(alert: &str) -> String {
    let name = alert.strip_prefix("Cmm").unwrap_or(alert);
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The `AlertRuleGroup` body for `PUT …/folder/{folder}/rule-groups/{GROUP}`.
pub fn render(cluster: &ClusterName, grafana_base: &str) -> Value {
    let src = source();
    let folder = folder_uid(cluster);
    let rules: Vec<Value> = src
        .reachability
        .iter()
        .map(|r| (r, "Alerting", "Alerting"))
        .chain(src.rules.iter().map(|r| (r, "OK", "OK")))
        .map(|(r, no_data, exec_err)| rule(cluster, &folder, r, (no_data, exec_err), grafana_base))
        .collect();
    json!({
        "title": GROUP,
        "folderUid": folder,
        "interval": src.interval,
        "rules": rules,
    })
}

fn rule(
    cluster: &ClusterName,
    folder: &str,
    r: &RuleSource,
    (no_data, exec_err): (&str, &str),
    grafana_base: &str,
) -> Value {
    // Plain text replacement inside each string: the cluster name is validated (DNS label), so
    // it cannot break PromQL quoting or a Go template.
    let fill = |s: &str| s.replace("${CLUSTER}", cluster.as_str());
    json!({
        "uid": format!("{}-{}", rule_uid_prefix(cluster), slug(&r.alert)),
        "title": r.alert,
        "folderUID": folder,
        "ruleGroup": GROUP,
        "orgID": 1,
        "condition": "C",
        "data": [
            query_node("A", &cluster.datasource_uid(), &fill(&r.expr), None),
            expression_node("C", "threshold", "A", threshold(&r.op, r.threshold.params())),
        ],
        "noDataState": no_data,
        "execErrState": exec_err,
        "for": r.pending,
        "labels": {
            "severity": r.severity,
            "cluster": cluster.as_str(),
        },
        "annotations": {
            "summary": fill(&r.summary),
            "description": fill(&r.description),
            "runbook_url": runbook_url(grafana_base, &r.alert),
        },
        "isPaused": false
    })
}

/// Whether the stored group already is what [`render`] produced, with the same editability:
/// then a registration sends no write at all. Grafana adds fields (ids, timestamps, org), so
/// the rendered group must be contained in the stored one, not equal to it.
/// `stored_editable` comes from the single-rule GET: a group GET carries no provenance.
pub fn stored_matches(
    desired: &Value,
    stored: &Value,
    editable: bool,
    stored_editable: Option<bool>,
) -> bool {
    let rules_of = |v: &Value| v["rules"].as_array().cloned().unwrap_or_default();
    let (want, have) = (rules_of(desired), rules_of(stored));
    stored_editable == Some(editable)
        && numbers_equal(&desired["interval"], &stored["interval"])
        && want.len() == have.len()
        && want.iter().all(|w| {
            have.iter()
                .find(|h| h["uid"] == w["uid"])
                .is_some_and(|h| contained(w, h, true))
        })
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

// `top` skips `orgID`: Grafana overwrites it with the caller's org.
fn contained(want: &Value, have: &Value, top: bool) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| {
            (top && k == "orgID") || h.get(k).is_some_and(|hv| contained(v, hv, false))
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| contained(a, b, false))
        }
        (Value::Number(_), Value::Number(_)) => numbers_equal(want, have),
        _ => want == have,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://grafana.example.org/";

    #[test]
    fn the_shared_group_holds_every_rule_once_on_the_one_datasource() {
        let names = ["wai-eks", "kr-mum"].map(|n| ClusterName::parse(n).unwrap());
        let g = render_shared(&names, "cmm_receiver", BASE).unwrap();
        assert_eq!(g["folderUid"], FLEET_FOLDER_UID);
        let rules = g["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1 + source().rules.len());
        for r in rules {
            let t = r["title"].as_str().unwrap();
            assert_eq!(r["data"][0]["datasourceUid"], "cmm_receiver", "{t}");
            // No rule is pinned to one cluster: the label comes from the series.
            assert!(r["labels"].get("cluster").is_none(), "{t}");
            let text = serde_json::to_string(r).unwrap();
            assert!(!text.contains("${"), "{t}: {text}");
            assert!(r["uid"].as_str().unwrap().len() <= 40);
        }
        assert!(rules[1]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.cluster }}"));
        // The silent rule names exactly the registered clusters, and reads back as them.
        assert_eq!(rules[0]["title"], "CmmClusterSilent");
        assert_eq!(rules[0]["execErrState"], "Alerting");
        let members: Vec<String> = shared_members(&g).iter().map(|c| c.to_string()).collect();
        assert_eq!(members, ["kr-mum", "wai-eks"]);
        assert!(render_shared(&[], "cmm_receiver", BASE).is_none());
    }

    fn is_camel_case(s: &str) -> bool {
        s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && s.chars().all(|c| c.is_ascii_alphanumeric())
    }

    #[test]
    fn every_rule_is_bound_to_the_clusters_datasource_and_complete() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let g = render(&c, BASE);
        assert_eq!(g["folderUid"], "cmm-kr-mum");
        assert_eq!(g["interval"], 60);
        let rules = g["rules"].as_array().unwrap();
        assert!(rules.len() >= 11, "the full set: {}", rules.len());
        let mut uids = std::collections::BTreeSet::new();
        for r in rules {
            let t = r["title"].as_str().unwrap();
            assert!(is_camel_case(t) && t.starts_with("Cmm"), "{t}");
            assert_eq!(r["folderUID"], "cmm-kr-mum", "{t}");
            assert_eq!(r["ruleGroup"], GROUP, "{t}");
            assert_eq!(r["labels"]["cluster"], "kr-mum", "{t}");
            assert!(["critical", "warning", "info"]
                .contains(&r["labels"]["severity"].as_str().unwrap()));
            for k in ["summary", "description", "runbook_url"] {
                assert!(!r["annotations"][k].as_str().unwrap().is_empty(), "{t} {k}");
            }
            // The runbook inside the same Grafana: its dashboard, this alert's panel alone.
            let panel = cmm_core::content::runbook_alerts()
                .iter()
                .position(|a| *a == t)
                .unwrap_or_else(|| panic!("{t} has no section in docs/runbook.md"));
            assert_eq!(
                r["annotations"]["runbook_url"],
                format!(
                    "https://grafana.example.org/d/cmm-runbook?viewPanel={}",
                    panel + 1
                )
            );
            assert!(r["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("kr-mum"));
            let data = r["data"].as_array().unwrap();
            assert_eq!(data[0]["datasourceUid"], "cmm-kr-mum", "{t}");
            assert_eq!(data[1]["datasourceUid"], "__expr__", "{t}");
            assert_eq!(data[1]["model"]["expression"], "A", "{t}");
            assert_eq!(r["condition"], "C");
            let uid = r["uid"].as_str().unwrap();
            assert!(
                uid.len() <= 40 && uid.starts_with(&rule_uid_prefix(&c)),
                "{uid}"
            );
            assert!(uids.insert(uid.to_owned()), "duplicate uid {uid}");
        }
        assert!(!serde_json::to_string(&g).unwrap().contains("${"));
    }

    #[test]
    fn only_the_reachability_rule_alerts_when_the_cluster_does_not_answer() {
        let g = render(&ClusterName::parse("kr-mum").unwrap(), BASE);
        let loud: Vec<&str> = g["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["noDataState"] != "OK" || r["execErrState"] != "OK")
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        assert_eq!(loud, ["CmmClusterUnreachable"]);
        let unreachable = &g["rules"][0];
        assert_eq!(unreachable["noDataState"], "Alerting");
        assert_eq!(unreachable["execErrState"], "Alerting");
        assert_eq!(unreachable["labels"]["severity"], "critical");
        // Its query is the cluster's own `up`: a datasource answering for another cluster
        // (a reused address) returns no data for this one, and so alerts.
        assert_eq!(
            unreachable["data"][0]["model"]["expr"],
            "count(up{cluster=\"kr-mum\"})"
        );
    }

    #[test]
    fn the_fleet_rule_counts_every_registered_cluster_on_its_own_datasource() {
        let names = ["kr-mum", "wai-eks"].map(|n| ClusterName::parse(n).unwrap());
        assert!(render_fleet(&[], BASE).is_none());
        let g = render_fleet(&names, BASE).unwrap();
        assert_eq!(g["folderUid"], FLEET_FOLDER_UID);
        let r = &g["rules"][0];
        assert_eq!(r["title"], "CmmFleetClusterMissing");
        // Loud on errors (a vanished datasource), quiet on no data (CmmClusterUnreachable's case).
        assert_eq!(r["execErrState"], "Alerting");
        assert_eq!(r["noDataState"], "OK");
        let data = r["data"].as_array().unwrap();
        assert_eq!(data[0]["datasourceUid"], "cmm-kr-mum");
        assert_eq!(data[1]["datasourceUid"], "cmm-wai-eks");
        assert_eq!(data[1]["model"]["expr"], "count(up{cluster=\"wai-eks\"})");
        assert_eq!(
            data[2]["model"]["expression"],
            "2 - (($A0 > 0) + ($A1 > 0))"
        );
        assert_eq!(r["condition"], "C");
        assert_eq!(data[3]["model"]["expression"], "M");
        assert!(r["annotations"]["description"]
            .as_str()
            .unwrap()
            .ends_with("Registered: kr-mum, wai-eks."));
        let members: Vec<String> = fleet_members(&g).iter().map(|c| c.to_string()).collect();
        assert_eq!(members, ["kr-mum", "wai-eks"]);
        // The fleet folder can never be a cluster's folder.
        assert!(ClusterName::parse("fleet").unwrap().datasource_uid() != FLEET_FOLDER_UID);
    }

    #[test]
    fn only_cmm_datasources_count_as_registered() {
        // As `GET /api/datasources` lists them (contract §2.2).
        let ds = |uid: &str, name: &str, kind: &str| -> crate::grafana::DataSource {
            serde_json::from_value(json!({"uid": uid, "name": name, "type": kind})).unwrap()
        };
        let got = registered_clusters(&[
            ds("cmm-wai-eks", "wai-eks", "prometheus"),
            ds("other", "kr-mum", "prometheus"),
            ds("cmm-logs", "logs", "loki"),
            ds("cmm-kr-mum", "kr-mum", "prometheus"),
        ]);
        let names: Vec<&str> = got.iter().map(ClusterName::as_str).collect();
        assert_eq!(names, ["kr-mum", "wai-eks"]);
    }

    #[test]
    fn node_rules_watch_the_job_the_values_files_pin() {
        let src = source();
        let node_down = src.rules.iter().find(|r| r.alert == "CmmNodeDown").unwrap();
        assert_eq!(
            node_down.expr,
            format!("up{{job=\"{}\"}}", cmm_core::naming::NODE_EXPORTER_JOB)
        );
        assert_eq!(slug("CmmFilesystemFillingUp"), "filesystem-filling-up");
    }

    #[test]
    fn rule_uids_are_stable_distinct_per_cluster_and_fit_with_the_longest_name() {
        let a = ClusterName::parse("kr-mum").unwrap();
        let b = ClusterName::parse("wai-eks").unwrap();
        assert_eq!(rule_uid_prefix(&a), rule_uid_prefix(&a));
        assert_ne!(rule_uid_prefix(&a), rule_uid_prefix(&b));
        let long = ClusterName::parse(&"x".repeat(cmm_core::naming::MAX_CLUSTER_NAME_LEN)).unwrap();
        for r in render(&long, BASE)["rules"].as_array().unwrap() {
            assert!(r["uid"].as_str().unwrap().len() <= 40);
        }
        assert!(folder_uid(&long).len() <= 40);
    }

    #[test]
    fn a_stored_group_matches_only_when_nothing_would_change() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let want = render(&c, BASE);
        // What Grafana's group GET returns: the same, plus its own fields, floats for numbers,
        // and no provenance (that comes from the single-rule GET).
        let mut stored = want.clone();
        for r in stored["rules"].as_array_mut().unwrap() {
            r["id"] = serde_json::json!(7);
            r["updated"] = serde_json::json!("2024-01-01T00:00:00Z");
            r["orgID"] = serde_json::json!(2);
        }
        stored["interval"] = serde_json::json!(60.0);
        assert!(stored_matches(&want, &stored, false, Some(false)));
        assert!(
            !stored_matches(&want, &stored, true, Some(false)),
            "editability differs"
        );
        assert!(
            !stored_matches(&want, &stored, false, None),
            "editability unknown"
        );
        let mut edited = stored.clone();
        edited["rules"][0]["for"] = serde_json::json!("1m");
        assert!(!stored_matches(&want, &edited, false, Some(false)));
        let mut fewer = stored.clone();
        fewer["rules"].as_array_mut().unwrap().pop();
        assert!(!stored_matches(&want, &fewer, false, Some(false)));
        let other = render(&ClusterName::parse("wai-eks").unwrap(), BASE);
        assert!(!stored_matches(&other, &stored, false, Some(false)));
    }
}
