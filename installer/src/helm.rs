//! helm as a subprocess. Every invocation is built here, so each error names the exact
//! arguments, and nothing secret is ever put on a command line: values travel as files.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::chart::ChartSource;
use crate::{Error, Result};

/// Oldest helm CMM supports (server-side apply of large CRDs and `--repo` on template).
pub const MIN_HELM: (u32, u32) = (3, 12);
pub const MIN_HELM_TEXT: &str = "3.12";

#[derive(Debug, Clone)]
pub struct Helm {
    bin: PathBuf,
    stop: crate::stop::Stop,
    /// Where helm's version is remembered per binary (crate::helm_cache); `None`: always ask.
    version_cache: Option<PathBuf>,
}

/// How long helm gets to finish after it is asked to stop. helm 3 cancels its context on
/// SIGINT/SIGTERM (cmd/helm/upgrade.go and install.go upstream) and then records the release as
/// failed rather than leaving it pending, which takes a few seconds of API calls.
pub const HELM_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

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

/// Which cluster helm talks to: the same kubeconfig and context the agent resolved, so helm
/// and kube-rs can never act on two different clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeArgs {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl KubeArgs {
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(k) = &self.kubeconfig {
            args.push("--kubeconfig".to_owned());
            args.push(k.display().to_string());
        }
        if let Some(c) = &self.context {
            args.push("--kube-context".to_owned());
            args.push(c.clone());
        }
        args
    }
}

/// An install of a release onto a cluster.
#[derive(Debug, Clone)]
pub struct Install<'a> {
    pub release: &'a Release<'a>,
    pub kube: &'a KubeArgs,
    pub timeout_secs: u64,
    /// Release labels (`--labels`, helm >= 3.13), e.g. the plan digest.
    pub labels: Vec<(String, String)>,
}

/// `--kube-version` for `helm template` from the API server's gitVersion, so a dry run renders
/// with the cluster's capabilities rather than helm's built-in default:
/// `v1.31.5-eks-5d632ec` → `1.31.5`.
pub fn kube_version_args(git_version: &str) -> Vec<String> {
    let core = git_version
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        vec!["--kube-version".to_owned(), core.to_owned()]
    } else {
        Vec::new()
    }
}

/// helm >= 3.13 stores `--labels` on the release; older helm rejects the flag.
pub fn supports_labels(version: &str) -> bool {
    parse_version(version).is_some_and(|v| v >= (3, 13))
}

impl Helm {
    pub fn new(bin: PathBuf) -> Self {
        Self {
            bin,
            stop: crate::stop::Stop::new(),
            version_cache: None,
        }
    }

    /// Remember helm's version in `dir` (the agent's cache directory), per binary.
    pub fn with_version_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.version_cache = dir;
        self
    }

    /// Stop helm (SIGTERM, then after [`HELM_STOP_GRACE`] SIGKILL) when `stop` is raised.
    pub fn with_stop(mut self, stop: crate::stop::Stop) -> Self {
        self.stop = stop;
        self
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

    /// `helm upgrade --install`: idempotent install-or-upgrade of one release, waiting for its
    /// workloads. No `--atomic`: a failed release is left in place so its events can be shown,
    /// and the next run upgrades or recovers it.
    pub fn upgrade_install_args(install: &Install<'_>) -> Vec<String> {
        let release = install.release;
        let mut args = vec![
            "upgrade".to_owned(),
            "--install".to_owned(),
            release.name.to_owned(),
        ];
        args.extend(release.chart.helm_args());
        args.extend(Self::common_args(release));
        args.extend([
            "--wait".to_owned(),
            "--timeout".to_owned(),
            format!("{}s", install.timeout_secs),
            // Bounded history: ten clusters re-running daily must not pile up release Secrets.
            "--history-max".to_owned(),
            "10".to_owned(),
        ]);
        for (k, v) in &install.labels {
            args.push("--labels".to_owned());
            args.push(format!("{k}={v}"));
        }
        args.extend(install.kube.args());
        args
    }

    /// `helm rollback` of a release to `revision`, waiting for it.
    pub fn rollback_args(
        name: &str,
        namespace: &str,
        revision: u32,
        kube: &KubeArgs,
        timeout_secs: u64,
    ) -> Vec<String> {
        Self::recovery_args(
            ["rollback", name, &revision.to_string()],
            namespace,
            kube,
            timeout_secs,
        )
    }

    /// `helm uninstall` of a release that never deployed.
    pub fn uninstall_args(
        name: &str,
        namespace: &str,
        kube: &KubeArgs,
        timeout_secs: u64,
    ) -> Vec<String> {
        Self::recovery_args(["uninstall", name], namespace, kube, timeout_secs)
    }

    /// A recovery step on an existing release: it must reach the same namespace and cluster
    /// as the install, and finish before the upgrade that follows it starts.
    fn recovery_args<const N: usize>(
        head: [&str; N],
        namespace: &str,
        kube: &KubeArgs,
        timeout_secs: u64,
    ) -> Vec<String> {
        let mut args: Vec<String> = head.iter().map(|&a| a.to_owned()).collect();
        args.extend([
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--wait".to_owned(),
            "--timeout".to_owned(),
            format!("{timeout_secs}s"),
        ]);
        args.extend(kube.args());
        args
    }

    /// The helm version, checked against [`MIN_HELM`].
    pub async fn version(&self) -> Result<String> {
        let key = self.version_cache.as_ref().and_then(|_| {
            let path = std::env::var_os("PATH");
            crate::helm_cache::resolve(&self.bin, path.as_deref())
                .and_then(|b| crate::helm_cache::key(&b))
        });
        let remembered = match (&self.version_cache, &key) {
            (Some(dir), Some(k)) => crate::helm_cache::lookup(dir, k),
            _ => None,
        };
        let found = match remembered {
            Some(v) => v,
            None => {
                let out = self
                    .run(&["version".into(), "--template".into(), "{{.Version}}".into()])
                    .await?;
                let v = out.trim().to_owned();
                // Only a version that passes is remembered: a refused one is asked again, so
                // the upgrade that fixes it is seen at once.
                let passes = parse_version(&v).is_some_and(|p| p >= MIN_HELM);
                if let (Some(dir), Some(k), true) = (&self.version_cache, &key, passes) {
                    crate::helm_cache::store(dir, k, &v);
                }
                v
            }
        };
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
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        pin_env(&mut cmd, std::env::vars_os().map(|(k, _)| k));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: a terminal's Ctrl-C reaches the agent only, which forwards it
        // (and waits), and a stop reaches helm's children (plugins, post-renderers) too.
        #[cfg(unix)]
        cmd.process_group(0);
        // If the agent itself is killed outright (SIGKILL, OOM), helm must not run on alone: a
        // later run would find the lock expired and roll back a helm that is still working.
        // The kernel sends SIGTERM to helm when the thread that started it dies; tokio's worker
        // threads live as long as the runtime, which is the agent's lifetime.
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent, as required between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let spawn_err = |source: std::io::Error| {
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
        };
        if self.stop.is_stopped() {
            return Err(Error::Interrupted {
                signal: self.stop.reason(),
                detail: format!("`helm {shown}` was not started"),
            });
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id();
        let output = child.wait_with_output();
        tokio::pin!(output);
        let out = tokio::select! {
            out = &mut output => out.map_err(spawn_err)?,
            _ = self.stop.stopped() => {
                return Err(self.stop_child(pid, output, &shown).await);
            }
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // helm's own words for a repository it cannot fetch (pkg/repo/chartrepo.go:
            // "looks like %q is not a valid chart repository or cannot be reached").
            if stderr.contains("is not a valid chart repository or cannot be reached") {
                if let Some(url) = args
                    .iter()
                    .position(|a| a == "--repo")
                    .and_then(|i| args.get(i + 1))
                {
                    return Err(Error::ChartRepoUnreachable {
                        url: url.clone(),
                        stderr: stderr.trim().lines().last().unwrap_or("").to_owned(),
                    });
                }
            }
            return Err(Error::HelmFailed {
                args: shown,
                status: out
                    .status
                    .code()
                    .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                stderr: bounded_stderr(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Helm {
    /// Forward the stop to helm as SIGTERM, give it [`HELM_STOP_GRACE`] to record its state,
    /// then kill it (dropping the output future kills the child: `kill_on_drop`).
    async fn stop_child(
        &self,
        pid: Option<u32>,
        output: std::pin::Pin<
            &mut (impl std::future::Future<Output = std::io::Result<std::process::Output>> + ?Sized),
        >,
        shown: &str,
    ) -> Error {
        let signal = self.stop.reason();
        let group = pid
            .and_then(|p| i32::try_from(p).ok())
            .map(|p| nix::unistd::Pid::from_raw(-p));
        let signal_group = |sig| {
            if let Some(g) = group {
                let _ = nix::sys::signal::kill(g, sig);
            }
        };
        signal_group(nix::sys::signal::Signal::SIGTERM);
        let verb = shown.split(' ').next().unwrap_or("helm");
        let detail = match tokio::time::timeout(HELM_STOP_GRACE, output).await {
            Ok(Ok(out)) => format!(
                "`helm {verb}` was sent SIGTERM and ended (exit {}): {}",
                out.status
                    .code()
                    .map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
            ),
            Ok(Err(e)) => format!("`helm {verb}` was sent SIGTERM; waiting for it failed: {e}"),
            Err(_) => {
                signal_group(nix::sys::signal::Signal::SIGKILL);
                format!(
                    "`helm {verb}` did not end within {}s of SIGTERM and was killed",
                    HELM_STOP_GRACE.as_secs()
                )
            }
        };
        Error::Interrupted { signal, detail }
    }
}

/// helm's stderr for an error message: control characters dropped (a chart or server may put
/// escapes in it) and at most the last 2000 characters, where helm puts its `Error:` line.
fn bounded_stderr(raw: &[u8]) -> String {
    const MAX: usize = 2000;
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    let text = text.trim();
    let n = text.chars().count();
    if n <= MAX {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(n - MAX).collect();
    format!("… (first {} characters cut) {tail}", n - MAX)
}

/// helm reads these to pick its cluster, identity and release storage (the list is what
/// `helm env` of helm 3.17 prints; pkg/cli/environment.go upstream). Any of them set in the
/// agent's environment would let helm act on another server or as another user than the one
/// the agent checked, or keep its releases where the agent does not look: removed.
const HELM_TARGET_VARS: &[&str] = &[
    "HELM_KUBEAPISERVER",
    "HELM_KUBEASGROUPS",
    "HELM_KUBEASUSER",
    "HELM_KUBECAFILE",
    "HELM_KUBECONTEXT",
    "HELM_KUBEINSECURE_SKIP_TLS_VERIFY",
    "HELM_KUBETLS_SERVER_NAME",
    "HELM_KUBETOKEN",
    "HELM_NAMESPACE",
    "HELM_DRIVER_SQL_CONNECTION_STRING",
];

/// The environment helm runs with: the agent reads release state from Secrets, so helm must
/// store it there (`HELM_DRIVER=secret`); the cluster comes only from the `--kubeconfig` and
/// `--kube-context` arguments (or the same KUBECONFIG the agent resolved); and nothing of the
/// agent's own settings reaches the child, as some `CMM_*` variables carry secrets
/// (`CMM_GRAFANA_TOKEN`).
fn pin_env(cmd: &mut tokio::process::Command, present: impl Iterator<Item = std::ffi::OsString>) {
    for key in present {
        let Some(k) = key.to_str() else { continue };
        let kube_override = k.starts_with("HELM_KUBE") || HELM_TARGET_VARS.contains(&k);
        if kube_override || k.starts_with("CMM_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HELM_DRIVER", "secret");
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

    #[test]
    fn upgrade_install_targets_the_resolved_cluster_and_waits() {
        let chart = ChartSource::upstream();
        let files = [PathBuf::from("/v/each.yaml")];
        let release = Release {
            name: "wai-eks",
            namespace: "monitor",
            chart: &chart,
            values_files: &files,
            sets: &[],
        };
        let kube = KubeArgs {
            kubeconfig: Some(PathBuf::from("/home/a/.kube/config")),
            context: Some("wai-eks-admin".into()),
        };
        let args = Helm::upgrade_install_args(&Install {
            release: &release,
            kube: &kube,
            timeout_secs: 600,
            labels: vec![("cmm-plan".into(), "0123".into())],
        });
        let joined = args.join(" ");
        assert!(
            joined.starts_with("upgrade --install wai-eks kube-prometheus-stack --repo "),
            "{joined}"
        );
        for part in [
            "--namespace monitor --values /v/each.yaml",
            "--wait --timeout 600s",
            "--labels cmm-plan=0123",
            "--kubeconfig /home/a/.kube/config --kube-context wai-eks-admin",
        ] {
            assert!(joined.contains(part), "{part} not in {joined}");
        }
        assert!(!joined.contains("--atomic"));
        let kube_tail = "--kubeconfig /home/a/.kube/config --kube-context wai-eks-admin";
        assert_eq!(
            Helm::rollback_args("wai-eks", "monitor", 4, &kube, 300).join(" "),
            format!("rollback wai-eks 4 --namespace monitor --wait --timeout 300s {kube_tail}")
        );
        assert_eq!(
            Helm::uninstall_args("wai-eks", "monitor", &kube, 300).join(" "),
            format!("uninstall wai-eks --namespace monitor --wait --timeout 300s {kube_tail}")
        );
        assert!(supports_labels("v3.17.3") && !supports_labels("v3.12.3"));
    }

    #[test]
    fn kube_version_drops_provider_suffixes() {
        assert_eq!(
            kube_version_args("v1.31.5-eks-5d632ec"),
            ["--kube-version", "1.31.5"]
        );
        assert_eq!(
            kube_version_args("v1.31.5+k3s1"),
            ["--kube-version", "1.31.5"]
        );
        assert_eq!(
            kube_version_args("v1.31.6-gke.1020000"),
            ["--kube-version", "1.31.6"]
        );
        assert!(kube_version_args("weird").is_empty());
    }

    #[test]
    fn helm_stderr_is_bounded_and_cleaned() {
        let mut raw = b"\x1b[31mwarning\x07 ".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 5000));
        raw.extend(b"\nError: UPGRADE FAILED: boom");
        let s = bounded_stderr(&raw);
        assert!(
            s.ends_with("Error: UPGRADE FAILED: boom") && s.contains("cut"),
            "{s}"
        );
        assert!(!s.contains('\u{1b}') && s.chars().count() < 2100);
    }

    #[tokio::test]
    async fn helms_version_is_asked_once_per_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let bin = dir.path().join("helm");
        let write = |version: &str| {
            std::fs::write(
                &bin,
                format!(
                    "#!/bin/sh\necho \"$1\" >> {}\nprintf {version}\n",
                    calls.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("v3.17.3");
        let cache = dir.path().join("cache");
        let helm = Helm::new(bin.clone()).with_version_cache(Some(cache.clone()));
        let asked = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        assert_eq!(helm.version().await.unwrap(), "v3.17.3");
        assert_eq!(helm.version().await.unwrap(), "v3.17.3");
        assert_eq!(asked(), 1, "the second run asked helm again");
        // An upgraded helm is asked again; a too-old one is still refused, and not remembered.
        write("v3.18.10");
        assert_eq!(helm.version().await.unwrap(), "v3.18.10");
        assert_eq!(asked(), 2);
        write("v3.9.0");
        assert!(helm.version().await.is_err());
        assert!(helm.version().await.is_err());
        assert_eq!(asked(), 4, "a refused version is never remembered");
        // Without a cache directory every run asks.
        let plain = Helm::new(bin);
        let _ = plain.version().await;
        assert_eq!(asked(), 5);
    }

    #[tokio::test]
    async fn a_missing_helm_is_named_with_the_fix() {
        let helm = Helm::new(PathBuf::from("/nonexistent/helm"));
        let err = helm.version().await.unwrap_err();
        assert_eq!(err.setting(), Some("helm"));
        let err = err.to_string();
        assert!(
            err.contains("`helm` setting") && err.contains("3.12"),
            "{err}"
        );
    }
}
