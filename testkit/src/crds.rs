//! The operator CRDs an older kube-prometheus-stack left on a cluster, for the fake API server.
//!
//! The older files themselves are not shipped here (nothing from outside is copied into the
//! repository); they are derived from the chart's own CRDs by undoing, per documented fact,
//! what matters between them: kube-prometheus-stack 56.x ran prometheus-operator v0.71.2,
//! whose CRDs carry `operator.prometheus.io/version: 0.71.2`, and `spec.scrapeClasses` of the
//! Prometheus CRD arrived in v0.73.0 (prometheus-operator Documentation, "Scrape Classes":
//! "Starting with v0.73.0, Scrape Class feature is added").

use serde_json::Value;

/// The version an older chart's CRDs declare.
pub const OLDER_VERSION: &str = "0.71.2";

/// `chart_crds` (from `helm show crds`) as operator v0.71.2's: older version annotation, and
/// no `scrapeClasses` in the Prometheus CRD's schema (every served version).
pub fn as_older_chart(chart_crds: &[Value]) -> Vec<Value> {
    chart_crds
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["metadata"]["annotations"]["operator.prometheus.io/version"] =
                Value::String(OLDER_VERSION.to_owned());
            if c["metadata"]["name"] == "prometheuses.monitoring.coreos.com" {
                for v in c["spec"]["versions"].as_array_mut().into_iter().flatten() {
                    if let Some(props) = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
                        ["properties"]
                        .as_object_mut()
                    {
                        props.remove("scrapeClasses");
                    }
                }
            }
            c
        })
        .collect()
}

/// The CRDs `helm show crds CHART` prints, parsed.
pub fn from_helm(helm: &std::path::Path, chart: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new(helm)
        .args(["show", "crds"])
        .arg(chart)
        .output()
        .expect("run helm show crds");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The operator's schemas nest deeper than serde-saphyr's default bound for hostile input.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_nodes: 20_000_000, max_events: 80_000_000, max_depth: 512 },
    };
    serde_saphyr::from_multiple_with_options::<Value>(
        &String::from_utf8_lossy(&out.stdout),
        options,
    )
    .expect("helm show crds prints YAML")
    .into_iter()
    .filter(|v| v["kind"] == "CustomResourceDefinition")
    .collect()
}
