//! What the tests that run the real helm on the real chart share: where the tools are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cmm_installer::chart::ChartSource;
use cmm_installer::helm::Helm;
use cmm_installer::render::Rendered;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn missing(what: &str) {
    if std::env::var_os("CMM_REQUIRE_TOOLS").is_some() {
        panic!("{what} is required (CMM_REQUIRE_TOOLS is set): run `scripts/dev tools`");
    }
    cmm_testkit::skip(
        "this test",
        &format!("{what} not found (set CMM_HELM / CMM_CHART or run `scripts/dev tools`)"),
    );
}

pub fn tools() -> Option<(Helm, ChartSource)> {
    let helm = std::env::var_os("CMM_HELM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("helm"))
                    .find(|h| h.is_file())
            })
        })
        .filter(|h| h.is_file());
    let chart = std::env::var_os("CMM_CHART")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/charts/kube-prometheus-stack"));
    match (helm, chart.join("Chart.yaml").is_file()) {
        (Some(h), true) => Some((
            Helm::new(h),
            ChartSource::parse(chart.to_str().unwrap()).unwrap(),
        )),
        (None, _) => {
            missing("helm");
            None
        }
        (_, false) => {
            missing("the kube-prometheus-stack chart");
            None
        }
    }
}

/// `helm template RELEASE` in namespace monitor with these values files, parsed.
pub async fn render_values(
    helm: &Helm,
    chart: &ChartSource,
    release: &str,
    values: &[(String, String)],
) -> Result<Rendered, String> {
    cmm_installer::render::template(
        helm,
        chart,
        release,
        "monitor",
        values.iter().map(|(n, t)| (n.as_str(), t.clone())),
        &[],
    )
    .await
    .map_err(|e| e.to_string())
}
