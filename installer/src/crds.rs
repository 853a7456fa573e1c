//! The prometheus-operator CRDs already on a cluster, against the chart's own. helm creates a
//! chart's CRDs only when they are absent and never upgrades them (helm's "CRDs are not
//! upgraded" rule, pkg/action/install.go installCRDs): a cluster that once ran an older
//! kube-prometheus-stack keeps the older CRDs, and the API server prunes every field they do
//! not know. `scrapeClasses`, where each_cluster.yaml puts the `cluster` label on every
//! series, is one: nothing fails, the label is just missing. The chart's upgrade notes tell
//! people to server-side apply the new CRDs by hand; bootstrap does it under the run lock,
//! `check` reports it and `--repair` does it.
//!
//! The version is each CRD's `operator.prometheus.io/version` annotation (set by the operator's
//! CRD generation since v0.5x); the Prometheus CRD is also judged by its schema, as the field
//! that matters either is there or is not.

use serde::Serialize;
use serde_json::Value;

use crate::chart::ChartSource;
use crate::helm::Helm;
use crate::kube::Connected;
use crate::{Error, Result};

/// The annotation the operator's CRDs carry their version in.
pub const VERSION_ANNOTATION: &str = "operator.prometheus.io/version";
/// The API group of the operator's CRDs.
pub const GROUP: &str = "monitoring.coreos.com";
/// The field manager of CMM's server-side applies.
pub const FIELD_MANAGER: &str = "cmm-agent";

/// One CRD of the chart, judged against the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrdState {
    pub name: String,
    pub chart_version: String,
    /// `None`: not on the cluster (helm creates it).
    pub installed_version: Option<String>,
    pub verdict: Verdict,
    /// Why, in words, for the report.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Absent: helm creates it with the release.
    Missing,
    Current,
    /// Older than the chart's: the API server drops fields CMM's values set.
    Older,
    /// Newer than the chart's (another, newer operator installed them): left alone.
    Newer,
}

/// The CRDs `helm show crds` prints for `chart` (the subchart's `crds/` included).
pub async fn chart_crds(helm: &Helm, chart: &ChartSource) -> Result<Vec<Value>> {
    let mut args = vec!["show".to_owned(), "crds".to_owned()];
    args.extend(chart.helm_args());
    let text = helm.run(&args).await?;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, crate::yaml::large())
        .map_err(|e| Error::RenderParse {
            place: crate::yaml::place(&e),
        })?;
    Ok(docs
        .into_iter()
        .filter(|v| v["kind"] == "CustomResourceDefinition")
        .collect())
}

/// The command the chart's upgrade notes give, for someone who applies the CRDs by hand.
pub fn manual_command(chart: &ChartSource) -> String {
    format!(
        "helm show crds {} | kubectl apply --server-side --force-conflicts -f -",
        chart.helm_args().join(" ")
    )
}

/// (major, minor, patch) of a version such as `0.78.1` or `v0.65.0`.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.trim_start_matches('v').split(['.', '-', '+']);
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
    ))
}

fn name_of(crd: &Value) -> &str {
    crd["metadata"]["name"].as_str().unwrap_or_default()
}

fn version_of(crd: &Value) -> Option<&str> {
    crd["metadata"]["annotations"][VERSION_ANNOTATION].as_str()
}

/// Whether an installed Prometheus CRD's schema knows `spec.scrapeClasses` in every served
/// version (CMM's values set it; without it the API server prunes it).
fn knows_scrape_classes(crd: &Value) -> bool {
    crd["spec"]["versions"].as_array().is_some_and(|vs| {
        vs.iter().all(|v| {
            !v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["scrapeClasses"]
                .is_null()
        })
    })
}

/// Pure: each of the chart's CRDs against what the cluster holds.
pub fn judge(chart: &[Value], installed: &[Value]) -> Vec<CrdState> {
    chart
        .iter()
        .map(|want| {
            let name = name_of(want).to_owned();
            let chart_version = version_of(want).unwrap_or("?").to_owned();
            let have = installed.iter().find(|c| name_of(c) == name);
            let Some(have) = have else {
                return CrdState {
                    detail: "absent: helm creates it with the release".into(),
                    name,
                    chart_version,
                    installed_version: None,
                    verdict: Verdict::Missing,
                };
            };
            let installed_version = version_of(have).map(str::to_owned);
            let ordered = match (
                installed_version.as_deref().and_then(parse_version),
                parse_version(&chart_version),
            ) {
                (Some(i), Some(c)) => i.cmp(&c),
                // No annotation: older than any operator that writes one.
                (None, _) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Equal,
            };
            let prunes = name == "prometheuses.monitoring.coreos.com" && !knows_scrape_classes(have);
            let (verdict, detail) = match (ordered, prunes) {
                (_, true) => (
                    Verdict::Older,
                    format!(
                        "installed {} lacks spec.scrapeClasses: the API server drops the scrape class that puts the `cluster` label on every series",
                        installed_version.as_deref().unwrap_or("(no version annotation)")
                    ),
                ),
                (std::cmp::Ordering::Less, false) => (
                    Verdict::Older,
                    format!(
                        "installed {} is older than the chart's {chart_version}: fields the chart's operator and CMM's values use are dropped",
                        installed_version.as_deref().unwrap_or("(no version annotation)")
                    ),
                ),
                (std::cmp::Ordering::Equal, false) => {
                    (Verdict::Current, format!("{chart_version}, as the chart's"))
                }
                (std::cmp::Ordering::Greater, false) => (
                    Verdict::Newer,
                    format!(
                        "installed {} is newer than the chart's {chart_version}: left as it is",
                        installed_version.as_deref().unwrap_or("?")
                    ),
                ),
            };
            CrdState {
                name,
                chart_version,
                installed_version,
                verdict,
                detail,
            }
        })
        .collect()
}

impl Connected {
    /// The operator's CRDs on the cluster (`monitoring.coreos.com`).
    pub async fn operator_crds(&self) -> Result<Vec<Value>> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let all = self.list_all::<CustomResourceDefinition>().await?;
        Ok(all
            .into_iter()
            .filter(|c| c.spec.group == GROUP)
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect())
    }

    /// Server-side apply `crd` as the chart has it, taking over fields another manager (helm's
    /// create, a `kubectl apply`) set: what `kubectl apply --server-side --force-conflicts`
    /// does, the chart's upgrade notes' command.
    pub async fn apply_crd(&self, crd: &Value) -> Result<()> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::api::{Api, Patch, PatchParams};
        let name = name_of(crd).to_owned();
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(self.api_err(format!("server-side apply of CRD {name}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(name: &str, version: Option<&str>, scrape_classes: bool) -> Value {
        let mut props = json!({"replicas": {"type": "integer"}});
        if scrape_classes {
            props["scrapeClasses"] = json!({"type": "array"});
        }
        let mut c = json!({"kind": "CustomResourceDefinition", "metadata": {"name": name},
            "spec": {"group": GROUP, "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                "properties": {"spec": {"properties": props}}}}}]}});
        if let Some(v) = version {
            c["metadata"]["annotations"] = json!({VERSION_ANNOTATION: v});
        }
        c
    }

    #[test]
    fn older_missing_current_and_newer_crds_are_told_apart() {
        let p = "prometheuses.monitoring.coreos.com";
        let s = "servicemonitors.monitoring.coreos.com";
        let chart = [crd(p, Some("0.78.1"), true), crd(s, Some("0.78.1"), false)];
        let verdicts = |installed: &[Value]| -> Vec<Verdict> {
            judge(&chart, installed).iter().map(|c| c.verdict).collect()
        };
        assert_eq!(verdicts(&[]), [Verdict::Missing, Verdict::Missing]);
        assert_eq!(verdicts(&chart), [Verdict::Current, Verdict::Current]);
        assert_eq!(
            verdicts(&[crd(p, Some("0.65.1"), false), crd(s, Some("0.65.1"), false)]),
            [Verdict::Older, Verdict::Older]
        );
        assert_eq!(
            verdicts(&[crd(p, Some("0.80.0"), true), crd(s, None, false)]),
            [Verdict::Newer, Verdict::Older]
        );
        // The annotation claims the chart's version, the schema says otherwise: the schema wins.
        let lying = judge(&chart, &[crd(p, Some("0.78.1"), false)]);
        assert_eq!(lying[0].verdict, Verdict::Older);
        assert!(
            lying[0].detail.contains("scrapeClasses"),
            "{}",
            lying[0].detail
        );
        assert_eq!(parse_version("v0.78.1"), Some((0, 78, 1)));
    }

    #[test]
    fn the_manual_command_is_the_chart_notes_server_side_apply() {
        let c = ChartSource::Directory {
            path: "/charts/kube-prometheus-stack".into(),
        };
        assert_eq!(
            manual_command(&c),
            "helm show crds /charts/kube-prometheus-stack | kubectl apply --server-side --force-conflicts -f -"
        );
    }
}
