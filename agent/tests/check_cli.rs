//! `cmm-agent check` end to end: the real binary against the fake Kubernetes API and the fake
//! Grafana (both held to their upstream behaviour where a decision depends on it) and a real
//! Prometheus scraping a real node_exporter. Settings come from an agent.toml, as under systemd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::path::Path;
use std::process::Output;

use cmm_testkit::grafana::{FakeGrafana, ADMIN_TOKEN};
use cmm_testkit::scene::{drifted_cluster, installed_cluster, node, release};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");

async fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id} in {report:#}"))
}

/// The scenes (cmm_testkit::scene) are installs served over plain HTTP, chosen knowingly: the
/// Prometheus behind them is a plain one. The authenticated path has its own tests below.
const PLAIN: &str = "insecure-plain-http = true";

/// agent.toml as an admin writes it once: everything check needs, no flag.
fn write_config(
    dir: &Path,
    kubeconfig: &Path,
    grafana: &FakeGrafana,
    helm: &Path,
    chart: &Path,
) -> String {
    let token = dir.join("grafana-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\nhelm = \"{}\"\nchart = \"{}\"\n\
             grafana-url = \"{}\"\ngrafana-token-file = \"{}\"\ngrafana-retries = 1\n\
             first-scrape-wait = \"0s\"\nhost-proc-version = \"/nonexistent\"\n\
             {PLAIN}\n[check]\nstorage-warn = 90\n",
            kubeconfig.display(),
            helm.display(),
            chart.display(),
            grafana.url,
            token.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn check_proves_each_stage_names_what_breaks_and_repairs_the_safe_part() {
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    let Some(prom) = cmm_testkit::prometheus::start("cli-check", "kr-mum").await else {
        return;
    };
    let port = prom.port();
    let kube = installed_cluster(port).await;
    let grafana = cmm_testkit::fake_grafana!();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    let config = write_config(dir.path(), &kubeconfig, &grafana, &helm, &chart);
    let env = [("CMM_CONFIG", config.as_str())];

    // The plan bootstrap would install with these settings: check must compute the same one.
    let o = agent(&["bootstrap", "--dry-run", "--output", "json"], &env).await;
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let digest = plan["plan_digest"].as_str().unwrap().to_owned();
    kube.insert(release(1, "superseded", "older"));
    kube.insert(release(2, "deployed", &digest));

    // Registered, with a real contact point: every stage healthy, exit 0, nothing written.
    let o = agent(&["register"], &env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    grafana.set_contact_points(vec![
        json!({"uid": "smtp", "name": "ops-mail", "type": "email",
        "settings": {"addresses": "ops@example.org"}}),
    ]);
    let writes_before = (
        kube.writes().len(),
        grafana
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count(),
    );
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    assert_eq!(o.status.code(), Some(0));
    for id in [
        "release.deployed",
        "release.chart",
        "workloads.operator",
        "workloads.prometheus",
        "workloads.node-exporter",
        "prometheus.ready",
        "prometheus.targets",
        "prometheus.cluster-label",
        "endpoint.reachable",
        "grafana.datasource",
        "grafana.datasource-health",
        "grafana.rules",
        "grafana.rule-state",
        "grafana.contact-points",
        "storage.terminating",
        "tls.insecure",
    ] {
        assert_eq!(finding(&report, id)["severity"], "ok", "{id}: {report:#}");
    }
    // Knowingly plain, and marked so in every check.
    assert!(
        finding(&report, "tls.insecure")["evidence"][0]
            .as_str()
            .unwrap()
            .starts_with("INSECURE"),
        "{report:#}"
    );
    assert!(
        finding(&report, "grafana.datasource")["evidence"]
            .to_string()
            .contains("INSECURE: plain HTTP"),
        "{report:#}"
    );
    // The same plain endpoint, with plain HTTP not asked for (a host whose agent.toml lost the
    // line): named as a failure, and --repair would not register it.
    let o = agent(
        &["check", "--output", "json"],
        &[env[0], ("CMM_INSECURE_PLAIN_HTTP", "0")],
    )
    .await;
    let unasked: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let plain = finding(&unasked, "endpoint.plain");
    assert_eq!(plain["severity"], "failed", "{unasked:#}");
    assert!(
        plain["evidence"]
            .to_string()
            .contains("insecure-plain-http"),
        "{plain}"
    );
    assert_ne!(o.status.code(), Some(0));
    let writes_after = (
        kube.writes().len(),
        grafana
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count(),
    );
    assert_eq!(
        writes_before, writes_after,
        "check without --repair wrote something"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(ADMIN_TOKEN));
    // An e-mail contact point is configuration, not proof: said so, and how to prove it.
    let cp = finding(&report, "grafana.contact-points")["evidence"].to_string();
    assert!(
        cp.contains("ops-mail (email): unverified") && cp.contains("--test-contact-points"),
        "{cp}"
    );
    assert!(grafana.notifications_sent().is_empty());

    // Asked to prove it, on a Grafana whose SMTP is off (its default): not deliverable.
    let o = agent(
        &["check", "--test-contact-points", "--output", "json"],
        &env,
    )
    .await;
    let tested: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let cp = finding(&tested, "grafana.contact-points");
    assert_eq!(cp["severity"], "failed", "{cp}");
    assert!(
        cp["evidence"]
            .to_string()
            .contains("not deliverable: SMTP not configured"),
        "{cp}"
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // With SMTP on, the test notification goes out: deliverable, healthy again.
    grafana.set_smtp(true);
    let o = agent(
        &["check", "--test-contact-points", "--output", "json"],
        &env,
    )
    .await;
    let tested: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let cp = finding(&tested, "grafana.contact-points");
    assert_eq!(cp["severity"], "ok", "{cp}");
    assert!(
        cp["evidence"]
            .to_string()
            .contains("ops-mail (email): deliverable"),
        "{cp}"
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        grafana.notifications_sent(),
        vec![("ops-mail".to_owned(), "email".to_owned())]
    );

    // Human output: one line per finding, grouped by stage, with marks.
    let o = agent(&["check"], &env).await;
    let human = String::from_utf8_lossy(&o.stdout);
    assert!(
        human.contains("1. helm release") && human.contains("5. central Grafana"),
        "{human}"
    );
    assert!(
        human.contains("✓ DaemonSet monitor/cmm-node-exporter: 1/1 schedulable node(s) measured"),
        "{human}"
    );

    // A second node whose taint node-exporter does not tolerate: failed, naming node and why.
    kube.insert(node(
        "n2",
        &[json!({"key": "dedicated", "value": "kafka", "effect": "NoExecute"})],
    ));
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let ne = finding(&report, "workloads.node-exporter");
    assert_eq!(ne["severity"], "failed");
    let ev = ne["evidence"].to_string();
    assert!(
        ev.contains("1/2")
            && ev.contains("n2")
            && ev.contains("taint dedicated=kafka:NoExecute not tolerated"),
        "{ev}"
    );
    kube.remove("/api/v1/nodes", "n2");

    // Drift in Grafana: the datasource points elsewhere and the rule group is gone.
    grafana.set_datasource_url("cmm-kr-mum", "http://10.9.9.9:30090");
    grafana.drop_group("cmm-kr-mum", "cluster-health");
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let ds = finding(&report, "grafana.datasource");
    assert_eq!(ds["severity"], "failed");
    assert!(
        ds["evidence"][0].as_str().unwrap().contains("10.9.9.9"),
        "{ds}"
    );
    assert_eq!(ds["repair"]["kind"], "register");
    assert_eq!(finding(&report, "grafana.rules")["severity"], "failed");

    // --repair re-registers and reports what it changed; the re-judged state is healthy.
    let o = agent(&["check", "--repair", "--output", "json"], &env).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        report["repaired"][0]
            .as_str()
            .unwrap()
            .starts_with("re-registered"),
        "{report:#}"
    );
    assert_eq!(
        grafana.datasources()[0]["url"],
        prom.url.trim_end_matches('/')
    );
    assert!(!grafana.rule_uids("cmm-kr-mum", "cluster-health").is_empty());
    assert!(
        kube.writes().is_empty(),
        "a Grafana repair wrote to the cluster: {:?}",
        kube.writes()
    );

    // A rule that fails to evaluate fails the stage with Grafana's error; no data degrades.
    let uids = grafana.rule_uids("cmm-kr-mum", "cluster-health");
    grafana.set_rule_health(&uids[0], "error", "failed to execute query A: bad_data");
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(finding(&report, "grafana.rule-state")["evidence"]
        .to_string()
        .contains("bad_data"));
    grafana.set_rule_health(&uids[0], "nodata", "");
    let o = agent(&["check", "--output", "json"], &env).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "no data is degraded: {}",
        text(&o)
    );
    grafana.set_rule_health(&uids[0], "ok", "");

    // Only Grafana's placeholder contact point: alerts reach nobody, degraded.
    grafana.set_contact_points(vec![
        json!({"uid": "cdefault0email", "name": "grafana-default-email", "type": "email",
        "settings": {"addresses": "<example@email.com>"}}),
    ]);
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        finding(&report, "grafana.contact-points")["severity"],
        "warning"
    );

    // The release drifted from its plan (values changed since bootstrap): a warning whose
    // repair is a reinstall, which --repair alone does not do.
    kube.insert(release(3, "deployed", "someotherplan"));
    let o = agent(&["check", "--repair", "--output", "json"], &env).await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        finding(&report, "release.plan-drift")["repair"]["kind"],
        "reinstall"
    );
    assert!(
        report["repaired"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(kube.writes().is_empty());
    assert!(
        grafana.violations().is_empty(),
        "{:?}",
        grafana.violations()
    );
}

/// An installed cluster whose release has revision 2 pending over a deployed revision 1.
async fn pending_release() -> (
    tempfile::TempDir,
    cmm_testkit::kube::FakeKube,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let kube = installed_cluster(30090).await;
    kube.insert(release(1, "deployed", "p1"));
    kube.insert(release(2, "pending-upgrade", "p2"));
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    (dir, kube, kubeconfig)
}

#[tokio::test]
async fn a_pending_release_is_rolled_back_under_the_lock_by_repair() {
    let (dir, kube, kubeconfig) = pending_release().await;
    let log = dir.path().join("helm.log");
    let helm = dir.path().join("helm");
    support::write_executable(
        &helm,
        // `helm show crds` (check reads the chart's CRDs) answers as a chart without any.
        &format!(
            "#!/bin/sh\n[ \"$1\" = show ] && exit 0\necho \"$*\" >> '{}'\n",
            log.display()
        ),
    );
    let args = [
        "check",
        "--cluster",
        "kr-mum",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--helm",
        helm.to_str().unwrap(),
        "--prometheus-url",
        &cmm_testkit::dead_url(),
        "--insecure-plain-http",
        "--output",
        "json",
    ];
    let o = agent(&args, &[]).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(o.status.code(), Some(2));
    let pending = finding(&report, "release.pending");
    assert_eq!(pending["repair"]["kind"], "recover-release");
    assert!(!log.exists(), "check without --repair ran helm");

    let o = agent(&[&args[..], &["--repair"]].concat(), &[]).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let helm_ran = std::fs::read_to_string(&log).unwrap();
    assert!(
        helm_ran.starts_with("rollback kr-mum 1 --namespace monitor"),
        "{helm_ran}"
    );
    assert!(
        report["repaired"][0]
            .as_str()
            .unwrap()
            .contains("rolled back pending revision 2 to revision 1"),
        "{report:#}"
    );
    // The lock was taken and released (holder cleared) around the rollback.
    let lease = kube
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/monitor/leases",
            "cmm-agent-kr-mum",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null() || lease["spec"]["holderIdentity"] == "",
        "{lease}"
    );
    // Unreachable endpoint: stage 4 fails with the address, stage 3 is skipped, not failed twice.
    assert_eq!(finding(&report, "endpoint.reachable")["severity"], "failed");
    assert_eq!(finding(&report, "prometheus")["severity"], "skipped");
}

/// SIGTERM (systemd stopping the unit) during the repair's rollback: helm gets the signal,
/// the lock is released, and the exit is the signal's, not the verdict's.
#[tokio::test]
async fn sigterm_during_the_repairs_rollback_stops_helm_releases_the_lock_and_exits_143() {
    let (dir, kube, kubeconfig) = pending_release().await;
    let log = dir.path().join("helm.log");
    let helm = dir.path().join("helm");
    // A rollback that takes long, and says when it is told to stop.
    support::write_executable(
        &helm,
        &format!(
            "#!/bin/sh\n[ \"$1\" = show ] && exit 0\necho \"$*\" >> '{0}'\ntrap 'echo got TERM >> {0}; exit 143' TERM\nsleep 60 &\nwait\n",
            log.display()
        ),
    );
    let child = std::process::Command::new(BIN)
        .args([
            "check",
            "--repair",
            "--cluster",
            "kr-mum",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--helm",
            helm.to_str().unwrap(),
            "--prometheus-url",
            &cmm_testkit::dead_url(),
            "--insecure-plain-http",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until helm rollback runs, then stop the agent as systemd would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.starts_with("rollback")) {
        assert!(
            std::time::Instant::now() < deadline,
            "helm rollback never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(143), "{e}");
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("got TERM"),
        "helm was not told to stop"
    );
    assert!(e.contains("interrupted by SIGTERM"), "{e}");
    assert!(e.contains("`helm rollback` of kr-mum"), "{e}");
    let lease = kube
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/monitor/leases",
            "cmm-agent-kr-mum",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null() || lease["spec"]["holderIdentity"] == "",
        "the run lock stayed held: {lease}"
    );
}

#[tokio::test]
async fn bad_settings_fail_with_status_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "cluster = \"kr-mum\"\n[check]\nstorage-warn = \"lots\"\nrepiar = true\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let o = agent(&["check"], &[("CMM_CONFIG", p.as_str())]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{p}:3: [check] storage-warn")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:4: [check] repiar")) && err.contains("did you mean `repair`?"),
        "{err}"
    );
    // config validate lists the same problems on stdout, all at once.
    let o = agent(&["config", "validate", &p], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        2,
        "{}",
        text(&o)
    );
}

/// A host whose settings name no cluster yet (a fresh package): degraded, exit 1, and said as
/// a warning with the fix, never as an error line.
#[tokio::test]
async fn an_unconfigured_host_is_degraded_and_says_so_without_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "").unwrap();
    let p = path.display().to_string();
    let o = agent(&["check"], &[("CMM_CONFIG", p.as_str())]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("error"), "{err}");
    assert!(
        err.contains("degraded (exit 1, not a failure): not configured: edit"),
        "{err}"
    );
}

/// `schedule --status` on a host without systemd (this one): exit 3 naming systemctl's
/// answer, not an empty line and 0.
#[tokio::test]
async fn schedule_status_without_systemd_says_so() {
    if std::path::Path::new("/run/systemd/system").exists() {
        cmm_testkit::note_skip(
            "schedule_status_without_systemd_says_so",
            "this host runs systemd",
        );
        return;
    }
    let o = agent(&["schedule", "--status"], &[]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("systemctl list-timers failed"),
        "{}",
        text(&o)
    );
}

/// A central context that is not in the kubeconfig is named as the central-context setting,
/// not as this cluster's `context` / `kubeconfig`.
#[tokio::test]
async fn a_wrong_central_context_is_named_as_such() {
    let kube = cmm_testkit::kube::FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kube.write_kubeconfig(dir.path(), "kr-mum");
    let kc = kc.display().to_string();
    let o = agent(
        &[
            "check",
            "--cluster",
            "kr-mum",
            "--kubeconfig",
            &kc,
            "--central-context",
            "nosuch",
        ],
        &[],
    )
    .await;
    let all = text(&o);
    assert!(
        all.contains("context \"nosuch\" is not in it (from the central-context setting)")
            && all.contains("as the `central-context` setting"),
        "{all}"
    );
    assert!(!all.contains("as the `context` setting"), "{all}");
}

/// A plain-HTTP pull cluster takes nothing from the central cluster: --central-context beside
/// --insecure-plain-http is refused, before anything is contacted, naming both.
#[tokio::test]
async fn insecure_plain_http_with_a_central_context_is_refused() {
    let o = agent(
        &[
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--insecure-plain-http",
            "--central-context",
            "central",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--central-context is for mutual TLS")
            && err.contains("--insecure-plain-http"),
        "{err}"
    );
}

/// What every command refuses, `config validate` refuses too, all at once with each line:
/// the four a package user met (a cluster name that is no DNS label, a namespace with
/// capitals, `user:pass@` in the Grafana URL, a retry count over its bound). Before, the
/// file was "valid" and the timer it let start failed every run. The password is not repeated.
#[tokio::test]
async fn config_validate_refuses_what_the_commands_refuse_with_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "cluster = \"Kr_Mum\"\nnamespace = \"Monitor\"\n\
         grafana-url = \"https://admin:hunter2@grafana.ops.example\"\n\
         grafana-retries = 99\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let o = agent(&["config", "validate", &p], &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for (line, key) in [
        (1, "cluster"),
        (2, "namespace"),
        (3, "grafana-url"),
        (4, "grafana-retries"),
    ] {
        assert!(out.contains(&format!("{p}:{line}: {key}")), "{key}: {out}");
    }
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));
    // The command the timer runs stops on the same file before anything is contacted.
    let o = agent(&["check"], &[("CMM_CONFIG", p.as_str())]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("hunter2"));
    // A file that is not there names no line of it.
    let gone = dir.path().join("gone.toml").display().to_string();
    let o = agent(&["config", "validate", &gone], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("{gone}: cannot be read")),
        "{}",
        text(&o)
    );
}

/// The systemd tier: the shipped units verify, the hardened service runs the real binary
/// against the fakes with the token from LoadCredential, its exit status and journal are what
/// check decided, the timer fires, and `schedule` makes a transient timer that fires and goes.
#[tokio::test]
async fn under_a_real_systemd_the_hardened_unit_checks_repairs_and_the_timers_fire() {
    use cmm_testkit::systemd::Systemd;
    let Some(root) = cmm_testkit::systemd::root_or_skip(module_path!()) else {
        return;
    };
    let Some(prom) = cmm_testkit::prometheus::start("systemd-check", "kr-mum").await else {
        return;
    };
    let port = prom.port();
    let kube = drifted_cluster(port).await;
    let grafana = cmm_testkit::fake_grafana!();
    let host = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(host.path(), "kr-mum");

    // Install as a package would: binary, units, config; the token and kubeconfig only as
    // root-only files the unit hands over as credentials (DynamicUser cannot read them).
    let grafana_url = grafana.url.clone();
    let sd = tokio::task::spawn_blocking(move || {
        Systemd::boot_scratch(&root, |up| {
            use std::os::unix::fs::PermissionsExt;
            // A state directory an older run of the root left would be migrated by systemd to
            // /var/lib/private (DynamicUser) with a rename, which an overlay refuses (EXDEV).
            cmm_testkit::systemd::whiteout(up, "var/lib/cmm-agent");
            cmm_testkit::systemd::whiteout(up, "var/lib/private/cmm-agent");
            let etc = up.join("etc/cmm");
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::create_dir_all(up.join("usr/bin")).unwrap();
            std::fs::create_dir_all(up.join("etc/systemd/system")).unwrap();
            std::fs::copy(BIN, up.join("usr/bin/cmm-agent")).unwrap();
            let units = support::workspace_root().join("systemd");
            for u in ["cmm-agent-check.service", "cmm-agent-check.timer"] {
                std::fs::copy(units.join(u), up.join("etc/systemd/system").join(u)).unwrap();
            }
            std::fs::copy(&kubeconfig, etc.join("kubeconfig")).unwrap();
            std::fs::write(etc.join("grafana-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
            for f in ["kubeconfig", "grafana-token"] {
                std::fs::set_permissions(etc.join(f), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
            }
            std::fs::write(
                etc.join("agent.toml"),
                format!(
                    "cluster = \"kr-mum\"\ngrafana-url = \"{grafana_url}\"\n\
                     grafana-retries = 2\nfirst-scrape-wait = \"30s\"\n{PLAIN}\n"
                ),
            )
            .unwrap();
        })
    })
    .await
    .unwrap();

    let verify = sd.sh("systemd-analyze verify /etc/systemd/system/cmm-agent-check.service /etc/systemd/system/cmm-agent-check.timer && echo VERIFIED");
    assert!(verify.contains("VERIFIED"), "{verify}");

    // One run of the service: degraded (the release drifted from its plan, Grafana's default
    // contact point only), so exit 1 and the unit still succeeds; --repair registered the
    // datasource through the hardening, with the credential.
    let sd = tokio::task::spawn_blocking(move || {
        sd.sh("systemctl start cmm-agent-check.service");
        sd
    })
    .await
    .unwrap();
    // This boot's lines only (the root's journal may keep earlier boots). A finished oneshot
    // is unloaded, so its properties are gone: the journal is the record.
    let journal = sd.sh("journalctl -b -u cmm-agent-check.service -o cat --no-pager");
    assert!(
        journal.contains("Finished cmm-agent-check.service"),
        "the unit failed: {journal}"
    );
    assert!(journal.contains("release.plan-drift"), "{journal}");
    // The status check decided (1, degraded) is what it logged; SuccessExitStatus=1 keeps the
    // unit green.
    assert!(
        journal.contains(r#""code":"degraded","exit":1"#),
        "{journal}"
    );
    assert!(journal.contains("re-registered"), "{journal}");
    assert!(!journal.contains(ADMIN_TOKEN), "token in the journal");
    // Warnings land at the journal's warning priority (4), errors at 3.
    let warn = sd.sh("journalctl -b -u cmm-agent-check.service -p 4..4 -o cat --no-pager");
    assert!(warn.contains("release.plan-drift"), "priorities: {warn}");
    assert_eq!(
        grafana.datasources().len(),
        1,
        "the repair did not reach Grafana"
    );
    // The hardening held: /usr is read-only for the service.
    let ro = sd.sh("systemd-run --wait --pipe -p ProtectSystem=strict -p NoNewPrivileges=yes sh -c 'touch /usr/x 2>&1 || true'");
    assert!(ro.contains("Read-only file system"), "{ro}");

    // The packaged timer fires (its schedule shortened by a drop-in for the test).
    sd.sh(&format!(
        "{SHORT_TIMER} > /etc/systemd/system/cmm-agent-check.timer.d/test.conf"
    ));
    let runs = |sd: &Systemd, unit: &str| {
        sd.sh(&format!("journalctl -b -u {unit} -o cat --no-pager"))
            .matches("Finished ")
            .count()
    };
    let before = runs(&sd, "cmm-agent-check.service");
    let sd = tokio::task::spawn_blocking(move || {
        sd.sh("systemctl daemon-reload && systemctl start cmm-agent-check.timer");
        sd.wait_for("the packaged timer fires", 60, || {
            runs(&sd, "cmm-agent-check.service") > before
        });
        sd.sh("systemctl stop cmm-agent-check.timer");
        // schedule: a transient timer that fires, says it does not survive a reboot, and goes.
        let made = sd.sh("CMM_CONFIG=/etc/cmm/agent.toml /usr/bin/cmm-agent schedule --every 1m --unit cmm-test-schedule");
        assert!(made.contains("does NOT survive a reboot"), "{made}");
        assert!(sd.sh("systemctl list-timers --all --no-pager").contains("cmm-test-schedule.timer"));
        let status = sd.sh("/usr/bin/cmm-agent schedule --status --unit cmm-test-schedule");
        assert!(status.contains("cmm-test-schedule.timer"), "{status}");
        // It fires (60 s, plus up to 30 s of timer accuracy) and runs check with the token.
        sd.wait_for("the scheduled timer fires and check finishes", 150, || {
            runs(&sd, "cmm-test-schedule.service") > 0
        });
        let ran = sd.sh("journalctl -b -u cmm-test-schedule.service -o cat --no-pager");
        assert!(ran.contains(r#""code":"degraded","exit":1"#), "{ran}");
        sd.sh("/usr/bin/cmm-agent schedule --remove --unit cmm-test-schedule");
        assert!(!sd.sh("systemctl list-timers --all --no-pager").contains("cmm-test-schedule.timer"));
        sd
    })
    .await
    .unwrap();
    drop(sd);
}

/// A drop-in (printed by this shell command) that makes the packaged timer fire a second
/// after it starts, instead of every 15 minutes.
const SHORT_TIMER: &str = "mkdir -p /etc/systemd/system/cmm-agent-check.timer.d && printf \
    '[Timer]\\nOnBootSec=\\nOnUnitActiveSec=\\nOnCalendar=\\nRandomizedDelaySec=0\\nOnActiveSec=1s\\n'";

/// The sample config that ships is valid, and `config show` names each value's origin.
#[tokio::test]
async fn the_sample_config_validates_and_show_names_origins() {
    let sample = support::workspace_root().join("examples/agent.toml");
    let s = sample.display().to_string();
    let o = agent(&["config", "validate", &s], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = agent(
        &["config", "show", "check", "--output", "json"],
        &[
            ("CMM_CONFIG", s.as_str()),
            ("CMM_NAMESPACE", "ops"),
            ("CMM_GRAFANA_TOKEN", "glsa_secret_value"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let get = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(get("cluster")["origin"]["line"], 9);
    // In --help's order, without the hidden test seams.
    let keys: Vec<&str> = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys[..4],
        ["cluster", "role", "namespace", "kubeconfig"],
        "{keys:?}"
    );
    assert!(!keys.contains(&"host-proc-version"), "{keys:?}");
    assert_eq!(get("namespace")["origin"]["variable"], "CMM_NAMESPACE");
    assert_eq!(get("namespace")["values"][0], "ops");
    assert_eq!(get("storage-warn")["values"][0], "80");
    assert_eq!(
        get("timeout")["origin"]["from"],
        "default",
        "[bootstrap] timeout must not reach check"
    );
    assert!(v["grafana_token"]
        .as_str()
        .unwrap()
        .contains("CMM_GRAFANA_TOKEN"));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("glsa_secret_value"),
        "a secret value shown"
    );
}

/// The certificates' remaining life, as check reports it, and `check --repair` renewing them
/// from the central CA under the run lock before they run out; without the central context the
/// repair is named, not attempted.
#[tokio::test]
async fn check_reports_days_to_expiry_and_repair_renews_before_the_end() {
    use std::time::{Duration, SystemTime};
    let Some(prom) = cmm_testkit::prometheus::start("cli-check-tls", "kr-mum").await else {
        return;
    };
    let kube = installed_cluster(prom.port()).await;
    kube.insert(release(1, "deployed", "some-plan"));
    let central = cmm_testkit::kube::FakeKube::start().await;
    let material = cmm_testkit::pki::CentralMaterial::new();
    for s in material.secrets("monitor") {
        central.insert(s);
    }
    // Issued 340 days ago: 25 days left of 365, inside the default 30-day window.
    let issued = SystemTime::now() - Duration::from_secs(340 * 86_400);
    let sans = [
        cmm_pki::San::parse("cmm-prometheus").unwrap(),
        cmm_pki::San::parse("127.0.0.1").unwrap(),
    ];
    kube.insert(material.cluster_secret_at("monitor", "kr-mum", &sans, issued));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    let cdir = dir.path().join("central");
    std::fs::create_dir_all(&cdir).unwrap();
    let central_kc = central.write_kubeconfig(&cdir, "central");
    let write = |name: &str, central_lines: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\nhost-proc-version = \"/nonexistent\"\n{central_lines}",
                kubeconfig.display()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let with_central = write(
        "with-central.toml",
        &format!(
            "central-context = \"central\"\ncentral-kubeconfig = \"{}\"\n",
            central_kc.display()
        ),
    );
    let alone = write("alone.toml", "");
    let secret = || {
        kube.get("/api/v1/namespaces/monitor/secrets", "cmm-prometheus-tls")
            .unwrap()
    };
    let before = secret();
    let check = |args: &'static [&'static str], config: &str| {
        let config = config.to_owned();
        async move {
            let o = agent(args, &[("CMM_CONFIG", &config)]).await;
            let report: Value =
                serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
            (o, report)
        }
    };

    // Without the central context: the days left, and what to set to renew.
    let (_, report) = check(&["check", "--output", "json"], &alone).await;
    let tls = finding(&report, "tls.certificates");
    assert_eq!(tls["severity"], "warning", "{report:#}");
    let ev = tls["evidence"].to_string();
    assert!(ev.contains("server certificate: 24 day(s) left"), "{ev}");
    assert!(
        ev.contains("self-scrape certificate: 24 day(s) left"),
        "{ev}"
    );
    assert_eq!(tls["repair"]["kind"], "manual");
    assert!(tls["repair"]["detail"]
        .as_str()
        .unwrap()
        .contains("central-context"));
    let (o, _) = check(&["check", "--repair", "--output", "json"], &alone).await;
    assert_eq!(
        secret()["data"],
        before["data"],
        "renewed without the CA: {}",
        text(&o)
    );

    // With it: the same finding, now repairable; the CA's and Grafana's life too.
    let (_, report) = check(&["check", "--output", "json"], &with_central).await;
    let tls = finding(&report, "tls.certificates");
    assert_eq!(tls["severity"], "warning", "{report:#}");
    assert_eq!(tls["repair"]["kind"], "renew-certificates", "{report:#}");
    let c = finding(&report, "tls.central");
    assert_eq!(c["severity"], "ok", "{report:#}");
    assert!(
        c["evidence"].to_string().contains("CA: 3649 day(s) left"),
        "{c}"
    );
    assert_eq!(
        secret()["data"],
        before["data"],
        "check without --repair wrote"
    );

    let (o, report) = check(&["check", "--repair", "--output", "json"], &with_central).await;
    let repaired = report["repaired"].to_string();
    assert!(
        repaired.contains("renewed Secret cmm-prometheus-tls"),
        "{report:#}"
    );
    let tls = finding(&report, "tls.certificates");
    assert_eq!(tls["severity"], "ok", "{report:#}");
    assert!(
        tls["evidence"]
            .to_string()
            .contains("server certificate: 364 day(s) left"),
        "{tls}"
    );
    // What it wrote verifies against the CA for the address the central Grafana dials.
    let now = SystemTime::now();
    let s = secret();
    let text_of = |k: &str| cmm_testkit::pki::secret_text(&s, k).unwrap();
    cmm_pki::verify(
        &text_of("tls.crt"),
        material.ca.cert_pem(),
        cmm_pki::Usage::Server,
        Some(&cmm_pki::San::parse("127.0.0.1").unwrap()),
        now,
    )
    .unwrap();
    // Under the run lock, given back at the end.
    let lease = kube
        .get(
            "/apis/coordination.k8s.io/v1/namespaces/monitor/leases",
            "cmm-agent-kr-mum",
        )
        .expect("the repair took the run lock");
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    assert!(
        !o.stdout.windows(11).any(|w| w == b"PRIVATE KEY"),
        "a key in the report"
    );

    // Renewed means renewed: the next repair has nothing to do.
    let (_, report) = check(&["check", "--repair", "--output", "json"], &with_central).await;
    assert!(
        !report["repaired"].to_string().contains("renewed"),
        "{report:#}"
    );
}

/// Push (docs/scaling.md): check judges the shared datasource, the cluster's place in the shared
/// rules and its samples at the receiver — a real receiver behind the rendered receiver proxy
/// (real nginx), fed by a real Prometheus sending as kr-mum — and `--repair` registers it.
#[tokio::test]
async fn in_push_check_proves_the_samples_at_the_receiver_and_repairs_the_registration() {
    push_check_on(
        "in_push_check_proves_the_samples_at_the_receiver",
        "values/overlays/central-receiver.yaml",
    )
    .await;
}

/// The same with VictoriaMetrics as the receiver (the default), run with its rendered arguments.
#[tokio::test]
async fn in_push_check_proves_the_samples_at_a_victoriametrics_receiver() {
    push_check_on(
        "in_push_check_proves_the_samples_at_a_victoriametrics_receiver",
        "values/overlays/central-receiver-victoriametrics.yaml",
    )
    .await;
}

async fn push_check_on(test: &str, receiver_file: &str) {
    use cmm_testkit::remote_write::{ProtectedReceiver, Receiver as Store, Sender};
    if !cmm_testkit::mtls_proxy::available(test) {
        return;
    }
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    let Some(prom) = cmm_testkit::prometheus::start(test, "kr-mum").await else {
        return;
    };
    // The receiver proxy's configuration as the real helm renders the central push release.
    let dir = tempfile::tempdir().unwrap();
    let (nginx_conf, run_sh, vm_args) = support::rendered_central(
        &helm,
        &chart,
        &["values/central_monitor.yaml", receiver_file],
        "cmm-receiver-mtls-proxy",
    );
    let store = if vm_args.is_empty() {
        Store::start(test, "10s").await
    } else {
        Store::start_victoriametrics(test, &vm_args, "10s").await
    };
    let Some(store) = store else {
        return;
    };
    let material = cmm_testkit::pki::CentralMaterial::new();
    let store = ProtectedReceiver::around(store, &nginx_conf, &run_sh, &material.ca, 30).await;
    let rw = store.remote_write(&material.ca, "kr-mum", 2000, "1s");
    let mut sender = Sender::start(test, "kr-mum", &rw, false, "1s")
        .await
        .unwrap();

    let kube = installed_cluster(prom.port()).await;
    kube.insert(release(1, "deployed", "some-plan"));
    let sans = [
        cmm_pki::San::parse("cmm-prometheus").unwrap(),
        cmm_pki::San::parse("127.0.0.1").unwrap(),
    ];
    kube.insert(material.cluster_secret("monitor", "kr-mum", &sans));
    let central = cmm_testkit::kube::FakeKube::start().await;
    for s in material.secrets("monitor") {
        central.insert(s);
    }
    let grafana = cmm_testkit::fake_grafana!();
    grafana.seed_datasource(
        json!({"uid": "cmm_receiver", "name": "CMM fleet", "type": "prometheus", "access": "proxy",
               "url": store.direct_url()}),
        true,
    );
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    let cdir = dir.path().join("central");
    std::fs::create_dir_all(&cdir).unwrap();
    let central_kc = central.write_kubeconfig(&cdir, "central");
    let token = dir.path().join("grafana-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\nhost-proc-version = \"/nonexistent\"\n\
             grafana-url = \"{}\"\ngrafana-token-file = \"{}\"\ngrafana-retries = 1\n\
             central-context = \"central\"\ncentral-kubeconfig = \"{}\"\n\
             topology = \"push\"\nreceiver-url = \"{}/api/v1/write\"\n",
            kubeconfig.display(),
            grafana.url,
            token.display(),
            central_kc.display(),
            store.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let check = |repair: bool| {
        let config = config.clone();
        async move {
            let mut args = vec!["check", "--output", "json"];
            if repair {
                args.push("--repair");
            }
            let o = agent(&args, &[("CMM_CONFIG", &config)]).await;
            let report: Value =
                serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
            report
        }
    };

    // The samples arrive within a few batches (VictoriaMetrics shows them 30 s later); not
    // registered yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let report = loop {
        let r = check(false).await;
        if finding(&r, "push.receiver")["severity"] == "ok" || std::time::Instant::now() > deadline
        {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    let f = finding(&report, "push.receiver");
    assert_eq!(f["severity"], "ok", "{report:#}");
    assert!(
        f["evidence"].to_string().contains("series of kr-mum"),
        "{f}"
    );
    assert_eq!(
        finding(&report, "grafana.shared-datasource")["severity"],
        "ok",
        "{report:#}"
    );
    let rules = finding(&report, "grafana.shared-rules");
    assert_eq!(rules["severity"], "failed", "{report:#}");
    assert_eq!(rules["repair"]["kind"], "register", "{report:#}");
    // No per-cluster datasource is expected in push.
    assert!(
        !report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "grafana.datasource"),
        "{report:#}"
    );

    let report = check(true).await;
    assert!(
        report["repaired"]
            .to_string()
            .contains("shared rule set (push)"),
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "grafana.shared-rules")["severity"],
        "ok",
        "{report:#}"
    );
    assert!(grafana
        .datasources()
        .iter()
        .all(|d| d["uid"] == "cmm_receiver"));

    // The sender is lost: once its samples leave the receiver's lookback, check says so
    // (VictoriaMetrics answers an instant query as of 30 s ago, -search.latencyOffset).
    sender.kill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(75);
    let report = loop {
        let r = check(false).await;
        if finding(&r, "push.receiver")["severity"] == "failed"
            || std::time::Instant::now() > deadline
        {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    let f = finding(&report, "push.receiver");
    assert_eq!(f["severity"], "failed", "{report:#}");
    assert!(
        f["evidence"]
            .to_string()
            .contains("no recent sample of kr-mum"),
        "{f}"
    );
    let text = report.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains(ADMIN_TOKEN));
}

/// An API server that does not answer is one cause: one failed finding naming it, and the
/// reads that would have followed skipped with the reason, not a row of failures.
#[tokio::test]
async fn an_unreachable_api_server_is_one_failed_finding() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n",
            cmm_testkit::dead_url()
        ),
    )
    .unwrap();
    let o = agent(
        &[
            "check",
            "--cluster",
            "kr-mum",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--helm",
            "/bin/false",
            "--insecure-plain-http",
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let failed: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "failed")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["kubernetes.access"], "{report:#}");
    // As a person reads it: every stage shown, none of its lines twice.
    let human = agent(
        &[
            "check",
            "--cluster",
            "kr-mum",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--helm",
            "/bin/false",
            "--insecure-plain-http",
        ],
        &[],
    )
    .await;
    let shown = String::from_utf8_lossy(&human.stdout);
    for title in [
        "1. helm release",
        "2. operator",
        "3. Prometheus",
        "4. endpoint",
        "5. central Grafana",
        "6. storage",
    ] {
        assert!(
            shown.lines().any(|l| l.starts_with(title)),
            "{title} missing:\n{shown}"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for l in shown.lines() {
        if !l.starts_with(' ') {
            seen.clear(); // a new stage
        } else {
            assert!(seen.insert(l), "a line twice in one stage:\n{shown}");
        }
    }
    for id in ["kubernetes.read", "tls.certificates", "endpoint.discovery"] {
        let f = finding(&report, id);
        assert_eq!(f["severity"], "skipped", "{f}");
        assert!(
            f["evidence"].to_string().contains("kubernetes.access"),
            "{f}"
        );
    }
    assert_eq!(o.status.code(), Some(2));
}

/// The findings of a `check` run with only a kubeconfig (nothing installed): what the API
/// answered about the agent's credentials.
async fn credential_findings(kubeconfig: &Path) -> Value {
    let o = agent(
        &[
            "check",
            "--cluster",
            "kr-mum",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--helm",
            "/bin/false",
            "--insecure-plain-http",
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))
}

fn severity_of(report: &Value, id: &str) -> Option<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .map(|f| f["severity"].as_str().unwrap().to_owned())
}

/// docs/operations.md's recipe for the timer's kubeconfig, run as written where it can be
/// here (kubectl's answers stand in for a cluster): its rbac line prints a binding for the
/// ServiceAccount, and its here-document writes a 0600 kubeconfig check connects with. An
/// exec-plugin kubeconfig is named, with the recipe, whether it works here or not.
#[tokio::test]
async fn the_timer_kubeconfig_recipe_works_and_an_exec_plugin_is_named() {
    let docs =
        std::fs::read_to_string(support::workspace_root().join("docs/operations.md")).unwrap();
    let section = &docs[docs.find("### A kubeconfig for the timer").unwrap()..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];

    let rbac = block
        .lines()
        .find(|l| l.starts_with("cmm-agent rbac"))
        .unwrap();
    let args: Vec<&str> = rbac
        .split('|')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    let o = agent(&args, &[]).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.contains("kind: ServiceAccount") && out.contains("name: cmm-agent"),
        "{out}"
    );

    let kube = cmm_testkit::kube::FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("kubeconfig");
    let start = block.find("umask 077").unwrap();
    let end = block.find("unset TOKEN").unwrap();
    let script = block[start..end].replace("/etc/cmm/kubeconfig", written.to_str().unwrap());
    let ca = cmm_pki::Ca::generate(std::time::SystemTime::now()).unwrap();
    use base64::Engine as _;
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("SERVER", kube.url())
        .env(
            "CA",
            base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
        )
        .env("TOKEN", "sa-token-not-a-secret")
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let report = credential_findings(&written).await;
    assert_ne!(
        severity_of(&report, "kubernetes.access").as_deref(),
        Some("failed"),
        "{report:#}"
    );
    assert_eq!(
        severity_of(&report, "kubernetes.credentials"),
        None,
        "{report:#}"
    );

    // An exec plugin that works in this shell: warned, with the recipe.
    let plugin = dir.path().join("fake-cloud-login");
    support::write_executable(
        &plugin,
        "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}'\n",
    );
    let exec_config = |command: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {command}\n      interactiveMode: Never\n",
            kube.url()
        )
    };
    let exec_kc = dir.path().join("exec-kubeconfig");
    std::fs::write(&exec_kc, exec_config(plugin.to_str().unwrap())).unwrap();
    let report = credential_findings(&exec_kc).await;
    let f = finding(&report, "kubernetes.credentials");
    assert_eq!(f["severity"], "warning", "{report:#}");
    assert!(
        f["repair"]["detail"]
            .to_string()
            .contains("A kubeconfig for the timer"),
        "{f}"
    );
    // One that cannot run here (as in the unit): the one failed finding says why and the fix.
    std::fs::write(&exec_kc, exec_config("aws")).unwrap();
    let report = credential_findings(&exec_kc).await;
    let f = finding(&report, "kubernetes.unreachable");
    assert_eq!(f["severity"], "failed", "{report:#}");
    assert!(
        f["evidence"].to_string().contains("exec plugin `aws`"),
        "{f}"
    );
    assert!(
        f["repair"]["detail"]
            .to_string()
            .contains("A kubeconfig for the timer"),
        "{f}"
    );
}

/// CRDs older than the chart's operator (as kube-prometheus-stack 56.x left them) are named
/// by check with the fix; `--repair` brings them to the chart's under the run lock.
#[tokio::test]
async fn check_names_older_operator_crds_and_repair_brings_them_to_the_charts() {
    let (Some(helm), Some(chart)) = (support::helm(), support::chart()) else {
        return;
    };
    let kube = cmm_testkit::kube::FakeKube::start().await;
    let chart_crds = cmm_testkit::crds::from_helm(&helm, &chart);
    for c in cmm_testkit::crds::as_older_chart(&chart_crds) {
        kube.insert(c);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    let args = [
        "check",
        "--cluster",
        "kr-mum",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--helm",
        helm.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
        "--insecure-plain-http",
        "--output",
        "json",
    ];
    let o = agent(&args, &[]).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let f = finding(&report, "crds.version");
    assert_eq!(f["severity"], "warning", "{f}");
    assert_eq!(f["repair"]["kind"], "update-crds", "{f}");
    assert!(
        f["evidence"]
            .to_string()
            .contains("lacks spec.scrapeClasses"),
        "{f}"
    );
    assert!(
        f["repair"]["detail"]
            .to_string()
            .contains("kubectl apply --server-side --force-conflicts"),
        "{f}"
    );
    assert!(kube.writes().is_empty(), "check without --repair wrote");

    let o = agent(&[&args[..], &["--repair"]].concat(), &[]).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(
        finding(&report, "crds.version")["severity"],
        "ok",
        "{report:#}"
    );
    assert!(
        report["repaired"]
            .to_string()
            .contains("CRDs brought to the chart's"),
        "{report:#}"
    );
}

/// Thanos: each Prometheus pod's sidecar reads the cluster's certificate once, at start (Thanos
/// v0.36.1 pkg/tls/options.go). A pod started before the certificate was issued is named, and
/// `--repair` restarts it — delete, its StatefulSet makes it again — under the run lock.
#[tokio::test]
async fn in_thanos_a_sidecar_older_than_its_certificate_is_restarted() {
    let kube = installed_cluster(cmm_testkit::prometheus::free_port()).await;
    kube.insert(release(1, "deployed", "some-plan"));
    let material = cmm_testkit::pki::CentralMaterial::new();
    let sans = [
        cmm_pki::San::parse("cmm-prometheus").unwrap(),
        cmm_pki::San::parse("127.0.0.1").unwrap(),
    ];
    kube.insert(material.cluster_secret("monitor", "kr-mum", &sans));
    kube.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "prometheus-cmm-0", "namespace": "monitor", "uid": "first",
                     "labels": {"operator.prometheus.io/name": "cmm"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                          "name": "prometheus-cmm", "uid": "s1"}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "prometheus", "image": "p"},
                                                  {"name": "thanos-sidecar", "image": "t"}]},
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True"}]}}));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\nhost-proc-version = \"/nonexistent\"\n\
             topology = \"thanos\"\ntimeout = \"20s\"\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [("CMM_CONFIG", config.as_str())];
    let o = agent(&["check", "--output", "json"], &env).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let f = finding(&report, "tls.consumer");
    assert_eq!(f["severity"], "warning", "{report:#}");
    assert_eq!(f["repair"]["kind"], "restart", "{report:#}");
    assert!(
        f["evidence"].to_string().contains("prometheus-cmm-0"),
        "{f}"
    );

    let o = agent(&["check", "--repair", "--output", "json"], &env).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert!(
        report["repaired"]
            .to_string()
            .contains("pod prometheus-cmm-0: restarted"),
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "tls.consumer")["severity"],
        "ok",
        "{report:#}"
    );
    let pod = kube
        .get("/api/v1/namespaces/monitor/pods", "prometheus-cmm-0")
        .unwrap();
    assert_ne!(pod["metadata"]["uid"], "first", "{pod}");
    assert!(kube
        .writes()
        .iter()
        .any(|w| w.method == "DELETE" && w.path.ends_with("/pods/prometheus-cmm-0")));
}
