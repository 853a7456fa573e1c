//! docs/getting-started.md, run as written: every ```sh block by bash, in order, with the real
//! `cmm-agent`; every ```text block must appear in what the block before it printed. Only the
//! page's example Grafana URL is swapped for the fake Grafana's. `helm` and `kubectl` are
//! stand-ins served by this test (there is no cluster here): kubectl's `create namespace` and
//! `create secret generic` land in the fake API server of its `--context`; helm's `upgrade`
//! plays what helm and the kubelet would do before `--wait` returns: the release record with
//! its labels, the central Grafana starting with the admin login of its Secret, and on the
//! cluster the rendered nginx proxy starting with the Secret the bootstrap issued, in front of
//! a real Prometheus, published as the NodePort Service the values render. The ```sh-root
//! block (package install, systemctl) is the package tests' (a real systemd), not run here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmm_testkit::kube::FakeKube;
use serde_json::{json, Value};

const EXAMPLE_URL: &str = "https://grafana.ops.example";

/// The page's fenced blocks, in order: (info string, body).
fn blocks(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in page.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed block in the page");
    out
}

/// A stand-in that hands its arguments to this test and waits for the answer (the exit code).
/// The directory is written into the script: the agent runs helm with an environment of its own.
const HANDSHAKE: &str = r#"req="REQ_DIR/$1-$$-$RANDOM"
printf '%s\n' "$@" > "$req.tmp" && mv "$req.tmp" "$req"
while [ ! -e "$req.done" ]; do sleep 0.05; done
exit "$(cat "$req.done")"
"#;

fn standins(dir: &Path, requests: &Path) {
    let handshake = HANDSHAKE.replace("REQ_DIR", &requests.display().to_string());
    let kubectl = format!("#!/bin/bash\nset -- kubectl \"$@\"\n{handshake}");
    let helm = format!(
        "#!/bin/bash\ncase \"$1\" in\n  version) echo v3.17.3; exit 0 ;;\n  show|template) exit 0 ;;\n  upgrade) ;;\n  *) echo \"helm $1: not in this page's path\" >&2; exit 1 ;;\nesac\nset -- helm \"$@\"\n{handshake}"
    );
    for (name, body) in [("kubectl", kubectl), ("helm", helm)] {
        support::write_executable(&dir.join(name), &body);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret_text(kube: &FakeKube, name: &str, key: &str) -> String {
    let s = kube
        .get("/api/v1/namespaces/monitor/secrets", name)
        .unwrap_or_else(|| panic!("no Secret {name}"));
    cmm_testkit::pki::secret_text(&s, key).unwrap()
}

/// The release record helm leaves (labels only: the agent never reads the release body).
fn release_record(name: &str, labels: &[(String, String)]) -> Value {
    let mut l: BTreeMap<String, String> = labels.iter().cloned().collect();
    for (k, v) in [
        ("name", name),
        ("owner", "helm"),
        ("status", "deployed"),
        ("version", "1"),
    ] {
        l.insert(k.into(), v.into());
    }
    l.insert("modifiedAt".into(), "1700000000".into());
    json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": format!("sh.helm.release.v1.{name}.v1"), "namespace": "monitor", "labels": l},
        "data": {"release": "SDRzSUFBQUFBQUFBLzZxdUJRUUFBUC8vbzB4dXRnQUFBQT09"}})
}

/// What Grafana provisions at start from central_content.yaml's `contactpoints.yaml`, its
/// `$CMM_*` expanded from the pod's environment (Secret cmm-grafana-alerting): provisioning files
/// interpolate `$ENV_VAR_NAME` in values (grafana/grafana
/// docs/sources/administration/provisioning/index.md, "Environment variables"), and file-
/// provisioned alerting resources are created at start and added to what exists (the alerting
/// file-provisioning doc), so Grafana's own default contact point stays. One item per
/// integration, as `GET /api/v1/provisioning/contact-points` lists them (the 11.3 shape the fake
/// answers in, testkit/src/grafana.rs).
fn provisioned_contact_points(kube: &FakeKube) -> Vec<Value> {
    let text =
        std::fs::read_to_string(support::workspace_root().join("values/central_content.yaml"))
            .unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
    let file = &values["grafana"]["alerting"]["contactpoints.yaml"];
    let expand = |v: &str| {
        ["CMM_ALERT_EMAIL_TO", "CMM_TEAMS_WEBHOOK_URL"]
            .iter()
            .fold(v.to_owned(), |acc, k| {
                acc.replace(
                    &format!("${k}"),
                    &secret_text(kube, "cmm-grafana-alerting", k),
                )
            })
    };
    let mut out = vec![
        json!({"uid": "cdefault0email", "name": "grafana-default-email",
        "type": "email", "settings": {"addresses": "<example@email.com>"},
        "disableResolveMessage": false}),
    ];
    for cp in file["contactPoints"].as_array().unwrap() {
        for r in cp["receivers"].as_array().unwrap() {
            let mut settings = r["settings"].clone();
            for v in settings.as_object_mut().unwrap().values_mut() {
                if let Some(t) = v.as_str() {
                    *v = json!(expand(t));
                }
            }
            out.push(
                json!({"uid": r["uid"], "name": cp["name"], "type": r["type"],
                "settings": settings, "disableResolveMessage": false}),
            );
        }
    }
    out
}

struct World {
    central: FakeKube,
    cluster: FakeKube,
    grafana: cmm_testkit::grafana::FakeGrafana,
    prometheus_port: u16,
    proxy_files: (String, String),
    work: PathBuf,
    proxy: Option<cmm_testkit::mtls_proxy::RealProxy>,
}

impl World {
    fn kube(&self, context: Option<&str>) -> &FakeKube {
        match context {
            Some("central") => &self.central,
            Some("kr-mum") => &self.cluster,
            other => panic!("the page names context {other:?}: only central and kr-mum exist"),
        }
    }

    /// One stand-in request; the exit code it answers with.
    async fn serve(&mut self, args: &[String]) -> i32 {
        match args.first().map(String::as_str) {
            Some("kubectl") => self.kubectl(&args[1..]),
            Some("helm") => self.helm_upgrade(&args[1..]).await,
            other => panic!("unknown stand-in {other:?}"),
        }
    }

    fn kubectl(&self, args: &[String]) -> i32 {
        let kube = self.kube(flag(args, "--context"));
        let ns = flag(args, "-n").unwrap_or("default");
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Some(i) = words.windows(2).position(|w| w == ["create", "namespace"]) {
            kube.insert(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": words[i + 2]}, "status": {"phase": "Active"}}));
            return 0;
        }
        let Some(i) = words
            .windows(3)
            .position(|w| w == ["create", "secret", "generic"])
        else {
            panic!("kubectl {args:?}: not in this page's path");
        };
        let mut data = serde_json::Map::new();
        for a in &words {
            if let Some(kv) = a.strip_prefix("--from-literal=") {
                let (k, v) = kv.split_once('=').unwrap();
                data.insert(k.into(), json!(b64(v)));
            } else if let Some(kv) = a.strip_prefix("--from-file=") {
                let (k, path) = kv.split_once('=').unwrap();
                let text = std::fs::read_to_string(self.work.join(path))
                    .unwrap_or_else(|e| panic!("kubectl --from-file {path}: {e}"));
                data.insert(k.into(), json!(b64(&text)));
            }
        }
        kube.insert(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": words[i + 3], "namespace": ns}, "data": data}),
        );
        0
    }

    async fn helm_upgrade(&mut self, args: &[String]) -> i32 {
        assert_eq!(args[..2], ["upgrade", "--install"], "{args:?}");
        let release = args[2].as_str();
        let kube = self.kube(flag(args, "--kube-context"));
        let labels: Vec<(String, String)> = args
            .windows(2)
            .filter(|w| w[0] == "--labels")
            .filter_map(|w| w[1].split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        if release == "monitor" {
            // Grafana's pod starts with its admin Secret's login.
            let user = secret_text(kube, "cmm-grafana-admin", "admin-user");
            let password = secret_text(kube, "cmm-grafana-admin", "admin-password");
            self.grafana.set_admin_login(&user, &password);
            self.grafana
                .set_contact_points(provisioned_contact_points(kube));
        } else {
            // The kubelet mounts the issued Secret into the proxy; the Service publishes it.
            let files = cmm_testkit::mtls_proxy::TlsFiles {
                server_cert: &secret_text(kube, "cmm-prometheus-tls", "tls.crt"),
                server_key: &secret_text(kube, "cmm-prometheus-tls", "tls.key"),
                ca_bundle: &secret_text(kube, "cmm-prometheus-tls", "ca.crt"),
            };
            let proxy = cmm_testkit::mtls_proxy::RealProxy::start(
                &self.proxy_files.0,
                &self.proxy_files.1,
                &files,
                self.prometheus_port,
                30,
            )
            .await;
            kube.insert(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "cmm-prometheus-0", "namespace": "monitor"},
                "spec": {"type": "NodePort", "ports": [{"name": "http-web", "port": 9090,
                         "nodePort": proxy.port, "targetPort": "cmm-mtls"}]}}));
            kube.insert(release_record(release, &labels));
            self.proxy = Some(proxy);
            return 0;
        }
        kube.insert(release_record(release, &labels));
        0
    }
}

/// Run one block with bash, serving its stand-ins meanwhile; (exit code, stdout + stderr).
async fn run_block(world: &mut World, body: &str, env: &[(String, String)]) -> (i32, String) {
    let req = world.work.join(".requests");
    std::fs::create_dir_all(&req).unwrap();
    let (out_path, err_path) = (req.join("out.log"), req.join("err.log"));
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", body])
        .current_dir(&world.work)
        .kill_on_drop(true)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    // Only what the page's reader has: no CMM_* of the test run (the helm and chart it uses).
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CMM_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let printed = || {
        format!(
            "{}{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), printed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "a block ran for 4 minutes:\n{body}\nprinted so far:\n{}",
            printed()
        );
        let mut pending: Vec<PathBuf> = std::fs::read_dir(&req)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_none() && !p.with_extension("done").exists())
            .collect();
        pending.sort();
        for p in pending {
            let args: Vec<String> = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            let code = world.serve(&args).await;
            std::fs::write(p.with_extension("done"), code.to_string()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_getting_started_page_runs_as_written() {
    run_page("docs/getting-started.md").await;
}

/// The Korean twin holds the same commands and the same printed lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_korean_getting_started_page_runs_as_written() {
    run_page("docs/getting-started.ko.md").await;
}

async fn run_page(page_rel: &str) {
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    if !cmm_testkit::mtls_proxy::available(page_rel) {
        return;
    }
    let Some(prom) = cmm_testkit::prometheus::start(page_rel, "kr-mum").await else {
        return;
    };
    let grafana = cmm_testkit::fake_grafana!();
    let page_path = support::workspace_root().join(page_rel);
    let page = std::fs::read_to_string(&page_path)
        .unwrap()
        .replace(EXAMPLE_URL, &grafana.url);

    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("work");
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let requests = home.path().join("work/.requests");
    std::fs::create_dir_all(&requests).unwrap();
    standins(&bin, &requests);
    std::fs::write(
        work.join("teams-workflow-url.txt"),
        "https://teams.example/workflow",
    )
    .unwrap();

    let central = FakeKube::start().await;
    central.insert(cmm_testkit::scene::node("c1", &[]));
    // The cluster as the operator and kubelet leave it once helm installed the chart.
    let cluster = cmm_testkit::scene::installed_cluster(1).await;
    let (cdir, kdir) = (home.path().join("central"), home.path().join("kr-mum"));
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::create_dir_all(&kdir).unwrap();
    let kubeconfig = format!(
        "{}:{}",
        central.write_kubeconfig(&cdir, "central").display(),
        cluster.write_kubeconfig(&kdir, "kr-mum").display()
    );
    let agent_dir = Path::new(env!("CARGO_BIN_EXE_cmm-agent")).parent().unwrap();
    let empty_config = home.path().join("agent.toml");
    std::fs::write(&empty_config, "").unwrap();
    let env = vec![
        (
            "PATH".to_owned(),
            format!(
                "{}:{}:{}",
                bin.display(),
                agent_dir.display(),
                std::env::var("PATH").unwrap()
            ),
        ),
        ("KUBECONFIG".to_owned(), kubeconfig),
        ("HOME".to_owned(), home.path().display().to_string()),
        // No /etc/cmm/agent.toml of this machine's: an empty settings file.
        ("CMM_CONFIG".to_owned(), empty_config.display().to_string()),
        (
            "CMM_HOST_PROC_VERSION".to_owned(),
            "/nonexistent".to_owned(),
        ),
    ];
    let mut world = World {
        central,
        cluster,
        grafana,
        prometheus_port: prom.port(),
        proxy_files: support::rendered_proxy(&helm, &chart),
        work,
        proxy: None,
    };

    let mut last = String::new();
    let mut ran = 0;
    for (info, body) in blocks(&page) {
        match info.as_str() {
            "sh" => {
                let (code, printed) = run_block(&mut world, &body, &env).await;
                assert_eq!(
                    code, 0,
                    "this block of {page_rel} failed:\n{body}\n{printed}"
                );
                last = printed;
                ran += 1;
            }
            "text" => {
                for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    assert!(
                        last.contains(line),
                        "{page_rel} says the block before prints\n  {line}\nbut it printed:\n{last}"
                    );
                }
            }
            "sh-root" => {}
            other => panic!("a ```{other} block: the page holds sh, sh-root and text only"),
        }
    }
    assert_eq!(ran, 5, "the page's runnable blocks");

    // What the path left: the cluster in Grafana, healthy, its rules, the token private.
    let ds = world.grafana.datasources();
    assert!(
        ds.iter().any(|d| d["uid"] == "cmm-kr-mum"
            && d["url"].as_str().unwrap().starts_with("https://127.0.0.1:")),
        "{ds:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let token = world.work.join("registrar.token");
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&token).unwrap();
    assert!(!last.contains(token.trim()));
    drop(world.proxy.take());
}
