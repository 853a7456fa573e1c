//! helm as a subprocess. Every invocation is built here, so each error names the exact
//! arguments, and nothing secret is ever put on a command line: values travel as files.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::chart::ChartSource;
use crate::{Error, Result};

/// Oldest helm CMM supports (server-side apply of large CRDs and `--repo` on template).
pub const MIN_HELM: (u32, u32) = (3, 12);
const MIN_HELM_TEXT: &str = "3.12";

#[derive(Debug, Clone)]
pub struct Helm {
    bin: PathBuf,
}

/// What to render or install: one release of the chart.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub chart: &'a ChartSource,
    /// Values files, applied in order (later wins), as helm's `-f`.
    pub values_files: &'a [PathBuf],
    /// `--set` assignments, applied after the files.
    pub sets: &'a [String],
}

impl Helm {
    pub fn new(bin: PathBuf) -> Self {
        Self { bin }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `helm template` arguments for a release: the same values, order and namespace an
    /// install would use, so what is rendered is what would be applied.
    pub fn template_args(release: &Release<'_>) -> Vec<String> {
        let mut args = vec![
            "template".to_owned(),
            release.name.to_owned(),
            // Keep in step with `install_args`: same chart, values and namespace.
        ];
        args.extend(release.chart.helm_args());
        args.extend(Self::common_args(release));
        args
    }

    fn common_args(release: &Release<'_>) -> Vec<String> {
        let mut args = vec!["--namespace".to_owned(), release.namespace.to_owned()];
        for f in release.values_files {
            args.push("--values".to_owned());
            args.push(f.display().to_string());
        }
        for s in release.sets {
            args.push("--set".to_owned());
            args.push(s.clone());
        }
        args
    }

    /// The helm version, checked against [`MIN_HELM`].
    pub async fn version(&self) -> Result<String> {
        let out = self
            .run(&["version".into(), "--template".into(), "{{.Version}}".into()])
            .await?;
        let found = out.trim().to_owned();
        match parse_version(&found) {
            Some(v) if v >= MIN_HELM => Ok(found),
            _ => Err(Error::HelmTooOld {
                found,
                min: MIN_HELM_TEXT,
            }),
        }
    }

    /// Render a release offline; returns helm's YAML stream.
    pub async fn template(&self, release: &Release<'_>) -> Result<String> {
        self.run(&Self::template_args(release)).await
    }

    /// Run helm with `args`, returning stdout; a failure carries the arguments and stderr.
    pub async fn run(&self, args: &[String]) -> Result<String> {
        let shown = args.join(" ");
        tracing::debug!(helm = %self.bin.display(), args = %shown, "running helm");
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    Error::HelmMissing {
                        bin: self.bin.clone(),
                        min: MIN_HELM_TEXT,
                    }
                } else {
                    Error::HelmSpawn {
                        args: shown.clone(),
                        source,
                    }
                }
            })?;
        if !out.status.success() {
            return Err(Error::HelmFailed {
                args: shown,
                status: out
                    .status
                    .code()
                    .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `v3.17.3` / `3.12.0-rc.1` → (3, 17).
fn parse_version(raw: &str) -> Option<(u32, u32)> {
    let mut parts = raw.trim_start_matches('v').split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_numerically() {
        assert_eq!(parse_version("v3.17.3"), Some((3, 17)));
        assert!(parse_version("v3.9.4").unwrap() < MIN_HELM);
        assert!(parse_version("v3.12.0-rc.1").unwrap() >= MIN_HELM);
        assert!(parse_version("v4.0.0").unwrap() >= MIN_HELM);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn template_args_keep_values_order_and_namespace() {
        let chart = ChartSource::upstream();
        let files = [PathBuf::from("/v/each.yaml"), PathBuf::from("/v/wsl.yaml")];
        let sets = ["kubeStateMetrics.enabled=true".to_owned()];
        let args = Helm::template_args(&Release {
            name: "kr-mum",
            namespace: "monitor",
            chart: &chart,
            values_files: &files,
            sets: &sets,
        });
        let joined = args.join(" ");
        assert!(joined.starts_with("template kr-mum kube-prometheus-stack --repo "));
        assert!(joined.ends_with(
            "--namespace monitor --values /v/each.yaml --values /v/wsl.yaml --set kubeStateMetrics.enabled=true"
        ));
    }

    #[tokio::test]
    async fn a_missing_helm_is_named_with_the_fix() {
        let helm = Helm::new(PathBuf::from("/nonexistent/helm"));
        let err = helm.version().await.unwrap_err().to_string();
        assert!(err.contains("CMM_HELM") && err.contains("3.12"), "{err}");
    }
}
