//! Per-cluster alert rules. Grafana-managed rules query exactly one datasource, so one rule
//! cannot watch many clusters through a variable (grafana/grafana#82758): every cluster gets
//! its own copy of the template in `central/rules/cluster-rules.json`, bound to its datasource.
//!
//! Layout: one folder per cluster (uid `cmm-<cluster>`, title `CMM <cluster>`) holding one
//! group, [`GROUP`]. A folder per cluster rather than one shared folder because Grafana wants
//! rule titles unique per folder, and the titles (NodeDown, …) are the same for every cluster.

use serde_json::Value;

use cmm_core::naming::NODE_EXPORTER_JOB;
use cmm_core::ClusterName;

/// The template, shipped in the binary.
pub const TEMPLATE: &str = include_str!("../rules/cluster-rules.json");

/// Name of the rule group in each cluster's folder.
pub const GROUP: &str = "cluster-health";

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

/// The `AlertRuleGroup` body for `PUT …/folder/{folder}/rule-groups/{GROUP}`.
pub fn render(cluster: &ClusterName) -> Value {
    let mut v: Value = serde_json::from_str(TEMPLATE).expect("the shipped rule template is JSON");
    if let Some(o) = v.as_object_mut() {
        o.remove("_comment");
    }
    let subst = [
        ("${CLUSTER}", cluster.as_str().to_owned()),
        ("${DATASOURCE_UID}", cluster.datasource_uid()),
        ("${FOLDER_UID}", folder_uid(cluster)),
        ("${GROUP}", GROUP.to_owned()),
        // The job label is pinned by the values files; one definition keeps rules and values in step.
        ("${NODE_EXPORTER_JOB}", NODE_EXPORTER_JOB.to_owned()),
        ("${RULE_UID_PREFIX}", rule_uid_prefix(cluster)),
    ];
    fill(&mut v, &subst);
    v
}

// Substituting inside parsed strings, not the raw text, so no value can break the JSON.
fn fill(v: &mut Value, subst: &[(&str, String)]) {
    match v {
        Value::String(s) => {
            for (k, val) in subst {
                if s.contains(k) {
                    *s = s.replace(k, val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill(x, subst)),
        Value::Object(o) => o.values_mut().for_each(|x| fill(x, subst)),
        _ => {}
    }
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

    fn is_camel_case(s: &str) -> bool {
        s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && s.chars().all(|c| c.is_ascii_alphanumeric())
    }

    #[test]
    fn every_rule_is_bound_to_the_clusters_datasource_and_complete() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let g = render(&c);
        assert!(!TEMPLATE.is_empty() && g.get("_comment").is_none());
        assert_eq!(g["folderUid"], "cmm-kr-mum");
        assert_eq!(g["interval"], 60);
        let rules = g["rules"].as_array().unwrap();
        let titles: Vec<&str> = rules.iter().map(|r| r["title"].as_str().unwrap()).collect();
        assert_eq!(
            titles,
            ["NodeDown", "ScrapeTargetDown", "FilesystemAlmostFull"]
        );
        for r in rules {
            let t = r["title"].as_str().unwrap();
            assert!(is_camel_case(t), "{t}");
            assert_eq!(r["folderUID"], "cmm-kr-mum", "{t}");
            assert_eq!(r["ruleGroup"], GROUP, "{t}");
            assert_eq!(r["labels"]["cluster"], "kr-mum", "{t}");
            assert!(["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()));
            for k in ["summary", "description", "runbook_url"] {
                assert!(!r["annotations"][k].as_str().unwrap().is_empty(), "{t} {k}");
            }
            assert!(r["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .starts_with("https://"));
            let data = r["data"].as_array().unwrap();
            let prom: Vec<_> = data
                .iter()
                .filter(|q| q["datasourceUid"] != "__expr__")
                .collect();
            assert!(!prom.is_empty(), "{t}");
            for q in prom {
                assert_eq!(q["datasourceUid"], "cmm-kr-mum", "{t}");
            }
            let cond = r["condition"].as_str().unwrap();
            assert!(
                data.iter().any(|q| q["refId"] == cond),
                "{t}: condition {cond}"
            );
            let uid = r["uid"].as_str().unwrap();
            assert!(
                uid.len() <= 40 && uid.starts_with(&rule_uid_prefix(&c)),
                "{uid}"
            );
        }
        // The job selector is the one the values files pin, so NodeDown watches node-exporter.
        let node_down = g["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["title"] == "NodeDown")
            .unwrap();
        assert_eq!(
            node_down["data"][0]["model"]["expr"],
            format!("up{{job=\"{NODE_EXPORTER_JOB}\"}}")
        );
        assert!(!serde_json::to_string(&g).unwrap().contains("${"));
    }

    #[test]
    fn rule_uids_are_stable_distinct_per_cluster_and_fit_with_the_longest_name() {
        let a = ClusterName::parse("kr-mum").unwrap();
        let b = ClusterName::parse("wai-eks").unwrap();
        assert_eq!(rule_uid_prefix(&a), rule_uid_prefix(&a));
        assert_ne!(rule_uid_prefix(&a), rule_uid_prefix(&b));
        let long = ClusterName::parse(&"x".repeat(cmm_core::naming::MAX_CLUSTER_NAME_LEN)).unwrap();
        for r in render(&long)["rules"].as_array().unwrap() {
            assert!(r["uid"].as_str().unwrap().len() <= 40);
        }
        assert!(folder_uid(&long).len() <= 40);
    }

    #[test]
    fn a_stored_group_matches_only_when_nothing_would_change() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let want = render(&c);
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
        let other = render(&ClusterName::parse("wai-eks").unwrap());
        assert!(!stored_matches(&other, &stored, false, Some(false)));
    }
}
