//! Bootstrap's plan: from what was detected and checked, the fixes, the values and the exact
//! helm command, plus the report `--output json` prints. Pure, so the same plan can be shown
//! (`--dry-run`), rendered (`helm template`) and applied without drifting apart.
//!
//! A role selects the values and the post-install step: `cluster` installs each_cluster.yaml
//! plus fixes; `central` installs the central Grafana values (the Grafana side supplies them).

use serde::Serialize;
use serde_json::Value;

use crate::detect::{EnvKind, Environment, Evidence};
use crate::fleet::Role;
use crate::preflight::Check;
use crate::values::{Overlay, EACH_CLUSTER};
use crate::{Error, Result};

/// A change to the values because of the environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    pub id: &'static str,
    pub reason: String,
    /// The overlay file (as shipped under values/) that carries the fix.
    pub overlay: &'static str,
    /// The overlay's values, as helm will merge them.
    pub values: Value,
    #[serde(skip)]
    pub which: Overlay,
}

fn overlay_values(o: Overlay) -> Value {
    // The overlays are CMM's own files; a parse failure is a build defect caught by tests.
    serde_yaml::from_str::<Value>(o.file().text).unwrap_or(Value::Null)
}

fn evidence_of(env: &Environment, pick: impl Fn(EnvKind) -> bool) -> String {
    env.evidence
        .iter()
        .filter(|e| pick(e.kind))
        .map(|e| format!("{} = {:?}", e.source, e.value))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The fixes an environment needs, in the order their overlays are applied.
pub fn fixes(env: &Environment, kube_metrics: bool) -> Vec<Fix> {
    let mut out = Vec::new();
    if env.kinds.iter().any(|k| k.breaks_root_mount()) {
        out.push(Fix {
            id: "wsl-root-mount",
            reason: format!(
                "WSL2 / Docker Desktop: node-exporter cannot mount the host root there ({})",
                evidence_of(env, EnvKind::breaks_root_mount)
            ),
            overlay: Overlay::Wsl.file().name,
            values: overlay_values(Overlay::Wsl),
            which: Overlay::Wsl,
        });
    }
    if kube_metrics {
        out.push(Fix {
            id: "kube-metrics",
            reason: "requested with --kube-metrics: kube-state-metrics and the Kubernetes component ServiceMonitors".into(),
            overlay: Overlay::KubeMetrics.file().name,
            values: overlay_values(Overlay::KubeMetrics),
            which: Overlay::KubeMetrics,
        });
    }
    if env.kinds.iter().any(|k| k.hides_control_plane()) {
        // After kube-metrics: it must switch the unreachable components off again.
        out.push(Fix {
            id: "managed-control-plane",
            reason: format!(
                "the control plane (etcd, scheduler, controller-manager, kube-proxy metrics) is out of Prometheus' reach ({})",
                evidence_of(env, EnvKind::hides_control_plane)
            ),
            overlay: Overlay::ManagedControlPlane.file().name,
            values: overlay_values(Overlay::ManagedControlPlane),
            which: Overlay::ManagedControlPlane,
        });
    }
    out
}

/// Check one `--set` argument the way helm's parser would read it, so a typo is refused before
/// anything runs: `KEY=VALUE[,KEY=VALUE...]`, keys of non-empty dot-separated segments.
pub fn check_set(raw: &str) -> Result<()> {
    let bad = |reason: String| Error::BadSet {
        raw: raw.to_owned(),
        reason,
    };
    for piece in split_unescaped_commas(raw) {
        let Some(eq) = find_unescaped(&piece, '=') else {
            return Err(bad(format!(
                "{piece:?} has no '=': write KEY=VALUE, e.g. prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka"
            )));
        };
        let key = &piece[..eq];
        if key.is_empty() {
            return Err(bad(format!("{piece:?} has an empty key before '='")));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(bad(format!("key {key:?} contains whitespace")));
        }
        for seg in split_unescaped(key, '.') {
            if seg.is_empty() {
                return Err(bad(format!(
                    "key {key:?} has an empty segment (leading, trailing or doubled '.')"
                )));
            }
            if let Some(open) = seg.find('[') {
                let idx = seg[open..]
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'));
                if open == 0
                    || !idx.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(bad(format!(
                        "key segment {seg:?}: a list index is written name[0]"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn find_unescaped(s: &str, c: char) -> Option<usize> {
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == c {
            return Some(i);
        }
    }
    None
}

fn split_unescaped(s: &str, c: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for ch in s.chars() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == c {
            out.push(String::new());
            continue;
        }
        out.last_mut().expect("non-empty").push(ch);
    }
    out
}

/// Commas separate assignments except inside `{a,b}` list values and when escaped.
fn split_unescaped_commas(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    let mut depth = 0usize;
    for ch in s.chars() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == '{' {
            depth += 1;
        } else if ch == '}' {
            depth = depth.saturating_sub(1);
        } else if ch == ',' && depth == 0 {
            out.push(String::new());
            continue;
        }
        out.last_mut().expect("non-empty").push(ch);
    }
    out
}

/// The values files of a release, in helm's order: the base file (embedded unless the user
/// gave their own), then each fix's overlay.
pub fn values_for(
    role: Role,
    user_values: Option<Vec<(String, String)>>,
    central_values: Option<String>,
    fixes: &[Fix],
) -> Vec<(String, String)> {
    let mut out = match (user_values, role) {
        (Some(files), _) => files,
        (None, Role::Cluster) => vec![(EACH_CLUSTER.name.to_owned(), EACH_CLUSTER.text.to_owned())],
        (None, Role::Central) => vec![(
            crate::values::CENTRAL_MONITOR.name.to_owned(),
            central_values.unwrap_or_else(|| crate::values::CENTRAL_MONITOR.text.to_owned()),
        )],
    };
    if role == Role::Cluster {
        for f in fixes {
            let file = f.which.file();
            out.push((file.name.to_owned(), file.text.to_owned()));
        }
    }
    out
}

/// One thing bootstrap will do (or did), in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub action: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentReport {
    pub kinds: Vec<EnvKind>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HelmReport {
    pub version: String,
    /// The helm command line of the install (values as the files helm reads).
    pub args: Vec<String>,
}

/// The machine-readable bootstrap report (`--output json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub role: Role,
    pub namespace: String,
    pub context: String,
    pub api_url: String,
    pub dry_run: bool,
    pub environment: EnvironmentReport,
    pub preflight: Vec<Check>,
    pub fixes: Vec<Fix>,
    pub values: Vec<String>,
    pub helm: HelmReport,
    pub actions: Vec<Action>,
    /// Object counts per kind of the `helm template` render (`--dry-run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<std::collections::BTreeMap<String, usize>>,
    /// Workload readiness after the install.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<crate::workloads::Workload>,
    pub outcome: String,
}

impl Report {
    pub fn preflight_failed(&self) -> impl Iterator<Item = &Check> {
        self.preflight.iter().filter(|c| !c.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_set_examples_pass_and_typos_are_named() {
        for ok in [
            "prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka",
            "kubernetesServiceMonitors.enabled=true,kubeStateMetrics.enabled=true",
            "prometheus-node-exporter.hostRootFsMount.enabled=false",
            "a.b[0]=x",
            "list={a,b}",
            "nodeSelector.kubernetes\\.io/os=linux",
            "empty=",
        ] {
            check_set(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("kubeStateMetrics.enabled", "has no '='"),
            ("=true", "empty key"),
            ("a..b=1", "empty segment"),
            ("a b=1", "whitespace"),
            ("a[x]=1", "list index"),
            ("a=1,b", "has no '='"),
        ] {
            let err = check_set(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("--set"), "{bad}: {err}");
        }
    }

    #[test]
    fn fixes_follow_the_environment_and_keep_overlay_order() {
        let env = Environment {
            kinds: vec![EnvKind::Wsl2, EnvKind::Kind],
            evidence: vec![Evidence {
                kind: EnvKind::Wsl2,
                source: "node/x .status.nodeInfo.kernelVersion".into(),
                value: "5.15.153.1-microsoft-standard-WSL2".into(),
            }],
        };
        let ids: Vec<_> = fixes(&env, true).iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            ["wsl-root-mount", "kube-metrics", "managed-control-plane"]
        );
        assert!(fixes(&env, false)[0]
            .reason
            .contains("microsoft-standard-WSL2"));
        assert!(fixes(&Environment::default(), false).is_empty());
        let files = values_for(Role::Cluster, None, None, &fixes(&env, false));
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "each_cluster.yaml",
                "overlays/wsl.yaml",
                "overlays/managed-control-plane.yaml"
            ]
        );
    }
}
