//! The aarch64 build (`scripts/dev package`: static, musl) run under qemu-user, as on a Graviton
//! admin host: `--version`, `plan` with the real helm and chart, `config validate`, and a
//! `check --repair` against the fake API server and fake Grafana with a real Prometheus.
//!
//! qemu-aarch64-static (Debian's qemu-user-static) emulates the agent only: the helm it starts
//! is an x86_64 process the kernel runs as usual. Without the build or qemu the test skips,
//! saying so, unless CMM_REQUIRE_PACKAGES is set (scripts/dev test builds both first).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::scene::drifted_cluster;
use serde_json::Value;

const QEMU: &str = "/usr/bin/qemu-aarch64-static";

fn aarch64_binary(test: &str) -> Option<PathBuf> {
    let bin = support::workspace_root().join("target/aarch64-unknown-linux-musl/release/cmm-agent");
    let have = bin.is_file() && Path::new(QEMU).is_file();
    match have {
        true => Some(bin),
        false if std::env::var_os("CMM_REQUIRE_PACKAGES").is_some() => panic!(
            "{test}: CMM_REQUIRE_PACKAGES is set but {} or {QEMU} is missing \
             (scripts/dev package; apt-get install qemu-user-static)",
            bin.display()
        ),
        false => {
            cmm_testkit::skip(
                test,
                "no aarch64 build or no qemu-aarch64-static (scripts/dev package)",
            );
            None
        }
    }
}

/// The ELF header's machine field: 0xB7 is aarch64 (the ELF specification's EM_AARCH64).
fn elf_machine(bin: &Path) -> u16 {
    let head = std::fs::read(bin).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([head[18], head[19]])
}

/// Run the aarch64 agent under qemu with a clean environment plus `env`.
async fn emulated(bin: &Path, home: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(QEMU);
    cmd.arg(bin)
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("CMM_LOG_FORMAT", "human");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("qemu-aarch64-static")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn the_aarch64_binary_versions_plans_validates_and_checks_under_qemu() {
    let Some(bin) = aarch64_binary(module_path!()) else {
        return;
    };
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    assert_eq!(elf_machine(&bin), 0xB7, "{} is not aarch64", bin.display());
    let home = tempfile::tempdir().unwrap();

    let o = emulated(&bin, home.path(), &["--version"], &[]).await;
    assert!(o.status.success(), "{}", text(&o));
    let version = text(&o);
    assert!(version.starts_with("cmm-agent 0.1.0\n"), "{version}");
    assert!(
        version.contains("target: aarch64-unknown-linux-musl"),
        "{version}"
    );

    // plan: the embedded example fleet rendered by the real helm and chart.
    let tools = [
        ("CMM_HELM", helm.display().to_string()),
        ("CMM_CHART", chart.display().to_string()),
    ];
    let o = emulated(&bin, home.path(), &["plan", "--output", "json"], &tools).await;
    assert!(o.status.success(), "{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["members"].as_array().unwrap().len(), 3, "{plan}");

    // config validate and check --repair against the fakes, settings from agent.toml only.
    let Some(prom) = cmm_testkit::prometheus::start("aarch64-check", "kr-mum").await else {
        return;
    };
    let kube = drifted_cluster(prom.port()).await;
    let grafana = cmm_testkit::fake_grafana!();
    let kubeconfig = kube.write_kubeconfig(home.path(), "kr-mum");
    let token = home.path().join("grafana-token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token)
            .unwrap();
        f.write_all(ADMIN_TOKEN.as_bytes()).unwrap();
    }
    let config = home.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\ngrafana-url = \"{}\"\n\
             grafana-token-file = \"{}\"\ngrafana-retries = 2\nfirst-scrape-wait = \"30s\"\n\
             insecure-plain-http = true\n",
            kubeconfig.display(),
            grafana.url,
            token.display()
        ),
    )
    .unwrap();
    let with_config = [
        ("CMM_CONFIG", config.display().to_string()),
        ("CMM_HELM", helm.display().to_string()),
        ("CMM_CHART", chart.display().to_string()),
    ];
    let o = emulated(&bin, home.path(), &["config", "validate"], &with_config).await;
    assert!(o.status.success(), "{}", text(&o));

    let o = emulated(
        &bin,
        home.path(),
        &["check", "--repair", "--output", "json"],
        &with_config,
    )
    .await;
    let out = text(&o);
    // Degraded (the release drifted from its plan): exit 1, and the repair re-registered the
    // datasource in Grafana over the emulated agent's own HTTP and TLS stack.
    assert_eq!(o.status.code(), Some(1), "{out}");
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["verdict"], "degraded", "{report}");
    assert_eq!(grafana.datasources().len(), 1, "{out}");
    assert!(!out.contains(ADMIN_TOKEN), "the token in the output");
}
