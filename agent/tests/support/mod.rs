//! Runs the real `cmm-agent` binary in a temp dir with a pinned environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_owned()
}

/// A tool or the chart is missing: fail when CI demands every tool, else skip with a reason.
pub fn missing(what: &str) -> Option<()> {
    if std::env::var_os("CMM_REQUIRE_TOOLS").is_some() {
        panic!("{what} is required (CMM_REQUIRE_TOOLS is set): run `scripts/dev tools`");
    }
    cmm_testkit::skip(
        "this test",
        &format!("{what} not found (run `scripts/dev tools`)"),
    );
    None
}

/// nginx.conf and run.sh of ConfigMap cmm-mtls-proxy, as the real helm renders each_cluster.yaml.
pub fn rendered_proxy(helm: &Path, chart: &Path) -> (String, String) {
    let o = std::process::Command::new(helm)
        .args(["template", "kr-mum"])
        .arg(chart)
        .args(["-n", "monitor", "-f"])
        .arg(workspace_root().join("values/each_cluster.yaml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cm = cmm_installer::render::Rendered::parse(std::str::from_utf8(&o.stdout).unwrap())
        .unwrap()
        .objects
        .into_iter()
        .find(|v: &serde_json::Value| {
            v["kind"] == "ConfigMap" && v["metadata"]["name"] == "cmm-mtls-proxy"
        })
        .expect("each_cluster.yaml renders ConfigMap cmm-mtls-proxy");
    (
        cm["data"]["nginx.conf"].as_str().unwrap().to_owned(),
        cm["data"]["run.sh"].as_str().unwrap().to_owned(),
    )
}

pub fn helm() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CMM_HELM").map(PathBuf::from),
        Some(workspace_root().join(".tools/bin/helm")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| missing("helm").map(|_| PathBuf::new()))
}

pub fn chart() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CMM_CHART").map(PathBuf::from),
        Some(workspace_root().join("../shared/charts/kube-prometheus-stack")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("Chart.yaml").is_file())
        .or_else(|| missing("the kube-prometheus-stack chart").map(|_| PathBuf::new()))
}

pub struct Agent {
    pub home: tempfile::TempDir,
    envs: Vec<(String, String)>,
    /// What has to live as long as the agent's runs (e.g. the central cluster's fake).
    kept: Vec<Box<dyn std::any::Any + Send>>,
}

impl Agent {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp home"),
            envs: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// Keep `thing` alive for as long as this agent.
    pub fn keep(mut self, thing: impl std::any::Any + Send) -> Self {
        self.kept.push(Box::new(thing));
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<Path>) -> Self {
        self.envs
            .push((k.to_owned(), v.as_ref().display().to_string()));
        self
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cmm-agent")
    }

    /// Start the agent without waiting, its output captured (for signal tests).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start cmm-agent")
    }

    /// Start the agent under `wrapper` (e.g. `unshare --pid --fork`), output captured.
    pub fn spawn_wrapped(&self, wrapper: &[&str], args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(env!("CARGO_BIN_EXE_cmm-agent"));
        self.pin(&mut cmd, args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the wrapped cmm-agent")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmm-agent"));
        self.pin(&mut cmd, args);
        cmd
    }

    fn pin(&self, cmd: &mut Command, args: &[&str]) {
        cmd.args(args)
            .current_dir(self.home.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("CMM_LOG_FORMAT", "human");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run the agent off the async runtime (the fakes serve on the test's runtime) and hand the
/// agent back with its output.
pub async fn run_async(r: Agent, args: &[&str]) -> (Agent, Output) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = r.run(&a);
        (r, out)
    })
    .await
    .expect("the agent run finished")
}

/// Run the agent binary with a cleared environment (PATH kept), bounded Grafana retries and
/// `env` on top: how the register/deregister/topology tests call it.
pub async fn clean_run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmm-agent"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CMM_GRAFANA_RETRIES", "2")
        .env("CMM_GRAFANA_TIMEOUT", "2s")
        .env("CMM_LOG_LEVEL", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// (stdout, stderr) as text.
pub fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Write an executable script (a helm stand-in).
pub fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// The proxy ConfigMap `cm` of the central release these files make, and VictoriaMetrics'
/// container arguments when they render it.
pub fn rendered_central(
    helm: &Path,
    chart: &Path,
    files: &[&str],
    cm: &str,
) -> (String, String, Vec<String>) {
    let mut cmd = std::process::Command::new(helm);
    cmd.args(["template", "monitor"])
        .arg(chart)
        .args(["-n", "monitor"]);
    for f in files {
        cmd.arg("-f").arg(workspace_root().join(f));
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let objects = cmm_installer::render::Rendered::parse(std::str::from_utf8(&o.stdout).unwrap())
        .unwrap()
        .objects;
    let cm = objects
        .iter()
        .find(|v| v["kind"] == "ConfigMap" && v["metadata"]["name"] == cm)
        .expect("the proxy's ConfigMap");
    let args = cmm_testkit::remote_write::rendered_vm_args(&objects).unwrap_or_default();
    (
        cm["data"]["nginx.conf"].as_str().unwrap().to_owned(),
        cm["data"]["run.sh"].as_str().unwrap().to_owned(),
        args,
    )
}
