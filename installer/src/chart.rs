//! Where the kube-prometheus-stack chart comes from: the upstream repository (pinned), a
//! `helm pull` archive, or an unpacked directory (offline installs, as in the seed notes).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The chart version CMM's values files are tested against.
pub const CHART_VERSION: &str = "66.1.0";
pub const CHART_NAME: &str = "kube-prometheus-stack";
pub const UPSTREAM_REPO: &str = "https://prometheus-community.github.io/helm-charts";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChartSource {
    Directory {
        path: PathBuf,
    },
    Archive {
        path: PathBuf,
    },
    Repo {
        url: String,
        name: String,
        version: String,
    },
}

impl ChartSource {
    pub fn upstream() -> Self {
        ChartSource::Repo {
            url: UPSTREAM_REPO.to_owned(),
            name: CHART_NAME.to_owned(),
            version: CHART_VERSION.to_owned(),
        }
    }

    /// `REPO_URL#CHART[@VERSION]`, a `.tgz`/`.tar.gz` file, or a directory holding Chart.yaml.
    pub fn parse(raw: &str) -> Result<Self> {
        // helm would read a leading '-' as one of its own flags (`--post-renderer=…`), not as
        // the chart: a path like that must be written ./-name.
        if raw.starts_with('-') || raw.split(['#', '@']).any(|p| p.starts_with('-')) {
            return Err(Error::ChartDash(raw.to_owned()));
        }
        if let Some((url, chart)) = raw.split_once('#') {
            let (name, version) = match chart.split_once('@') {
                Some((n, v)) => (n, v),
                None => (chart, CHART_VERSION),
            };
            let scheme_ok = ["https://", "http://", "oci://", "file://"]
                .iter()
                .any(|s| url.starts_with(s));
            if !scheme_ok || name.is_empty() || version.is_empty() {
                return Err(Error::BadChartRef(raw.to_owned()));
            }
            return Ok(ChartSource::Repo {
                url: url.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
        let path = Path::new(raw);
        if !path.exists() {
            return Err(Error::ChartMissing(path.to_owned()));
        }
        if path.is_dir() {
            if !path.join("Chart.yaml").is_file() {
                return Err(Error::NotAChart {
                    path: path.to_owned(),
                });
            }
            return Ok(ChartSource::Directory {
                path: path.to_owned(),
            });
        }
        if raw.ends_with(".tgz") || raw.ends_with(".tar.gz") {
            return Ok(ChartSource::Archive {
                path: path.to_owned(),
            });
        }
        Err(Error::BadChartRef(raw.to_owned()))
    }

    /// The chart's part of a helm command line: `<chart> [--repo URL --version V]`.
    pub fn helm_args(&self) -> Vec<String> {
        match self {
            ChartSource::Directory { path } | ChartSource::Archive { path } => {
                vec![path.display().to_string()]
            }
            ChartSource::Repo { url, name, version } => vec![
                name.clone(),
                "--repo".into(),
                url.clone(),
                "--version".into(),
                version.clone(),
            ],
        }
    }

    /// The version a local chart declares in its Chart.yaml, when it can be read.
    pub fn local_version(&self) -> Option<String> {
        let ChartSource::Directory { path } = self else {
            return None;
        };
        let text = std::fs::read_to_string(path.join("Chart.yaml")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("version:"))
            .map(|v| v.trim().trim_matches('"').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_reference_pins_the_tested_version_unless_told() {
        let c = ChartSource::parse("https://charts.example#kube-prometheus-stack").unwrap();
        assert_eq!(
            c.helm_args(),
            [
                "kube-prometheus-stack",
                "--repo",
                "https://charts.example",
                "--version",
                "66.1.0"
            ]
        );
        let c = ChartSource::parse("oci://registry.example/charts#kps@67.0.0").unwrap();
        assert_eq!(c.helm_args()[4], "67.0.0");
    }

    #[test]
    fn a_reference_helm_would_read_as_a_flag_is_refused() {
        for bad in [
            "--post-renderer=/tmp/x",
            "-x",
            "https://charts.example#-kps",
            "https://charts.example#kps@--devel",
        ] {
            let err = ChartSource::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("starts with '-'") && err.contains("./"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_path_names_the_fix() {
        let err = ChartSource::parse("/nonexistent/kps")
            .unwrap_err()
            .to_string();
        assert!(err.contains("helm pull"), "{err}");
    }

    #[test]
    fn a_directory_without_chart_yaml_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = ChartSource::parse(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, Error::NotAChart { .. }));
    }

    #[test]
    fn archives_and_directories_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "name: x\nversion: 66.1.0\n").unwrap();
        let c = ChartSource::parse(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(c.local_version().as_deref(), Some("66.1.0"));
        let tgz = dir.path().join("kube-prometheus-stack-66.1.0.tgz");
        std::fs::write(&tgz, b"").unwrap();
        assert!(matches!(
            ChartSource::parse(tgz.to_str().unwrap()).unwrap(),
            ChartSource::Archive { .. }
        ));
    }
}
