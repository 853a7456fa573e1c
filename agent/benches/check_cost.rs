//! Benchmark (not a test): what one `cmm-agent check` costs the admin host — CPU (user + sys)
//! and peak RSS of the process — against the fake Kubernetes API and fake Grafana on 127.0.0.1,
//! each behind a real nginx terminating TLS (as a real API server and Grafana are reached), and
//! a real Prometheus scraping a real node_exporter, side by side in the same run with a shell
//! script that fetches the same facts with curl over the same HTTPS. Targets (issue 26): ≤ 50 ms
//! CPU, ≤ 20 MiB RSS, ≥ 8× cheaper than the script.
//!
//! The agent measured is the shipped one, the static release build
//! (target/x86_64-unknown-linux-musl/release/cmm-agent, `scripts/dev package`), when it exists;
//! otherwise this bench's own build, named in the output. `CMM_BENCH_AGENT` names another.
//!
//! The script uses curl for the Kubernetes reads too, on the REST paths kubectl would call:
//! kubectl needs API discovery (/api, /apis), which the fake does not serve. It only fetches;
//! it judges nothing, so it is a lower bound for "the same facts by hand".
//!
//! Run: `scripts/dev bench` (or `cargo bench -p cmm-agent --bench check_cost`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cmm_testkit::grafana::{FakeGrafana, ADMIN_TOKEN};
use cmm_testkit::scene::{installed_cluster, release};
use cmm_testkit::tls_front::TlsFront;
use nix::sys::resource::{getrusage, UsageWho};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");

/// The binary to measure: CMM_BENCH_AGENT, else the static release build, else this bench's.
fn agent_binary() -> String {
    if let Ok(b) = std::env::var("CMM_BENCH_AGENT") {
        return b;
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/x86_64-unknown-linux-musl/release/cmm-agent");
    if shipped.is_file() {
        return shipped.display().to_string();
    }
    BIN.to_owned()
}

/// A kubeconfig for `server` (https) trusting `ca_pem`, with a bearer token.
fn https_kubeconfig(dir: &Path, server: &str, ca_pem: &str) -> std::path::PathBuf {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kr-mum\nclusters:\n- name: kr-mum\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: kr-mum\n  context:\n    cluster: kr-mum\n    user: admin\nusers:\n- name: admin\n  user:\n    token: fake-token-not-a-secret\n"
        ),
    )
    .unwrap();
    path
}
const RUNS: usize = 15;

/// CPU and peak RSS of one child (and its children) from RUSAGE_CHILDREN deltas: each run's
/// processes are waited for before the next starts. ru_maxrss is the largest single process
/// seen so far, so the peak is reported as the maximum over all runs.
fn measure(mut cmd: Command) -> (Duration, u64, bool) {
    let before = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let out = cmd.output().expect("run");
    let after = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let cpu = |u: &nix::sys::resource::Usage| {
        let t = u.user_time();
        let s = u.system_time();
        Duration::from_micros(
            (t.tv_sec() * 1_000_000 + t.tv_usec() + s.tv_sec() * 1_000_000 + s.tv_usec()) as u64,
        )
    };
    (
        cpu(&after).saturating_sub(cpu(&before)),
        after.max_rss() as u64,
        out.status.code().is_some_and(|c| c <= 1),
    )
}

fn report(name: &str, mut cpu: Vec<Duration>, rss_kib: u64) {
    cpu.sort();
    let mean = cpu.iter().sum::<Duration>() / cpu.len() as u32;
    let rss = if rss_kib == 0 {
        String::new()
    } else {
        format!("  peak RSS {:>6.1} MiB", rss_kib as f64 / 1024.0)
    };
    println!(
        "{name:<38} n={:<3} CPU mean {:>7.1} ms  p50 {:>7.1} ms  max {:>7.1} ms{rss}",
        cpu.len(),
        mean.as_secs_f64() * 1e3,
        cpu[cpu.len() / 2].as_secs_f64() * 1e3,
        cpu[cpu.len() - 1].as_secs_f64() * 1e3,
    );
}

fn curl_script(dir: &Path, kube: &str, prom: &str, grafana: &str, cacert: &Path) -> String {
    let path = dir.join("facts.sh");
    let ns = format!("{kube}/api/v1/namespaces/monitor");
    let apps = format!("{kube}/apis/apps/v1/namespaces/monitor");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# The facts check reads, fetched by hand.\nset -e\nc() {{ curl -sf --cacert {cacert} -o /dev/null \"$@\"; }}\n\
             c {ns}\nc \"{ns}/secrets?labelSelector=owner%3Dhelm%2Cname%3Dkr-mum\"\nc {apps}/deployments\nc {apps}/daemonsets\n\
             c \"{apps}/statefulsets?labelSelector=operator.prometheus.io%2Fname%3Dcmm\"\nc {ns}/pods\nc {kube}/api/v1/nodes\n\
             c {ns}/persistentvolumeclaims\nc {kube}/api/v1/persistentvolumes\nc {ns}/services\n\
             c {kube}/apis/networking.k8s.io/v1/namespaces/monitor/ingresses\n\
             c {prom}/-/ready\nc \"{prom}/api/v1/targets?state=active\"\n\
             c --data-urlencode 'query=count by (cluster) ({{__name__=~\"up|node_uname_info|prometheus_build_info\"}})' {prom}/api/v1/query\n\
             c {prom}/metrics\nH=\"Authorization: Bearer $(cat {tok})\"\n\
             c -H \"$H\" {grafana}/api/datasources/uid/cmm-kr-mum\nc -H \"$H\" {grafana}/api/datasources/uid/cmm-kr-mum/health\n\
             c -H \"$H\" {grafana}/api/v1/provisioning/folder/cmm-kr-mum/rule-groups/cluster-health\n\
             c -H \"$H\" {grafana}/api/prometheus/grafana/api/v1/rules\nc -H \"$H\" {grafana}/api/v1/provisioning/contact-points\n",
            tok = dir.join("token").display(),
            cacert = cacert.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Some(prom) = cmm_testkit::prometheus::start("bench-check", "kr-mum").await else {
            eprintln!("bench needs prometheus and node_exporter: scripts/dev tools");
            return;
        };
        let port: u16 = prom.url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
        let kube = installed_cluster(port).await;
        kube.insert(release(1, "deployed", "bench"));
        let grafana = FakeGrafana::start().await.expect("fake Grafana (needs ../shared/contracts)");
        let kube_tls = TlsFront::start(&kube.url()).await;
        let grafana_tls = TlsFront::start(&grafana.url).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = https_kubeconfig(dir.path(), &kube_tls.url(), &kube_tls.ca_pem);
        // One file holding both fronts' CAs: curl's --cacert and the agent's grafana-ca-file.
        let cas = dir.path().join("cas.pem");
        std::fs::write(&cas, format!("{}{}", kube_tls.ca_pem, grafana_tls.ca_pem)).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, ADMIN_TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\ngrafana-url = \"{}\"\ngrafana-ca-file = \"{}\"\ngrafana-token-file = \"{}\"\nfirst-scrape-wait = \"30s\"\ninsecure-plain-http = true\n",
                kubeconfig.display(),
                grafana_tls.url(),
                cas.display(),
                dir.path().join("token").display()
            ),
        )
        .unwrap();
        let bin = agent_binary();
        let agent = |args: &[&str]| {
            let mut c = Command::new(&bin);
            c.args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("CMM_CONFIG", &config);
            c
        };
        let blocking = |cmd: Command| tokio::task::spawn_blocking(move || measure(cmd));
        // Register first so every Grafana read finds its object, as on a live fleet.
        assert!(agent(&["register"]).status().unwrap().success(), "register failed");

        let script = curl_script(
            dir.path(),
            &kube_tls.url(),
            prom.url.trim_end_matches('/'),
            &grafana_tls.url(),
            &cas,
        );
        let (mut a_cpu, mut a_rss, mut s_cpu, mut s_rss) = (Vec::new(), 0, Vec::new(), 0);
        // RUSAGE_CHILDREN's peak only grows: the script (curl, small) is measured first, so
        // the agent's figure is its own unless the script's was larger.
        for _ in 0..RUNS {
            let mut c = Command::new("sh");
            c.arg(&script);
            let (cpu, rss, ok) = blocking(c).await.unwrap();
            assert!(ok, "the curl script failed");
            s_cpu.push(cpu);
            s_rss = s_rss.max(rss);
        }
        for _ in 0..RUNS {
            let (cpu, rss, ok) = blocking(agent(&["check", "--output", "json"])).await.unwrap();
            assert!(ok, "check failed during the bench");
            a_cpu.push(cpu);
            a_rss = a_rss.max(rss);
        }
        println!("one check against the fakes behind HTTPS (nginx) + a real Prometheus, every stage judged; {RUNS} runs each:");
        println!("agent: {bin}");
        let ratio = s_cpu.iter().sum::<Duration>().as_secs_f64() / a_cpu.iter().sum::<Duration>().as_secs_f64();
        report("cmm-agent check", a_cpu, a_rss);
        report("curl script (same reads, no judging)", s_cpu, s_rss);
        println!("the script costs {ratio:.1}x the agent's CPU (target: >= 8x)");

        bootstrap_dry_run(&bin, dir.path()).await;
        println!("(peak RSS: the largest single process, curl for the script)");
    });
}

/// `bootstrap --dry-run` against the same HTTPS API server: the agent's own CPU, its helm
/// children excluded, beside one `helm template` of the same chart run by the agent; and the
/// API requests of one run. helm is a wrapper that records the CPU of the real
/// helm it starts (and its own), so the agent's part is the total minus that.
async fn bootstrap_dry_run(bin: &str, dir: &Path) {
    let (Ok(helm), Ok(chart)) = (std::env::var("CMM_HELM"), std::env::var("CMM_CHART")) else {
        println!(
            "bootstrap --dry-run: skipped (set CMM_HELM and CMM_CHART; scripts/dev bench does)"
        );
        return;
    };
    // A cluster CMM has not been installed on yet: its namespace and one node.
    let kube = cmm_testkit::kube::FakeKube::start().await;
    kube.insert(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "monitor"}, "status": {"phase": "Active"}}));
    kube.insert(cmm_testkit::scene::node("n1", &[]));
    let front = TlsFront::start(&kube.url()).await;
    let dir = &dir.join("bootstrap");
    std::fs::create_dir_all(dir).unwrap();
    let kubeconfig = &https_kubeconfig(dir, &front.url(), &front.ca_pem);
    let log = dir.join("helm-cpu.log");
    let wrapper = dir.join("helm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/usr/bin/python3\n# The real helm, and the CPU its whole tree (and this wrapper) used.\n\
             import resource, subprocess, sys\n\
             code = subprocess.run([{helm:?}] + sys.argv[1:]).returncode\n\
             s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n\
             with open({log:?}, 'a') as f:\n    f.write('%s %f %f\\n' % (sys.argv[1], s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime))\n\
             sys.exit(code)\n",
            log = log.display().to_string(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |bin: &str| {
        let mut c = Command::new(bin);
        c.args([
            "bootstrap",
            "--cluster",
            "kr-mum",
            "--dry-run",
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("CMM_CONFIG", "/dev/null")
        .env("KUBECONFIG", kubeconfig)
        .env("CMM_HELM", &wrapper)
        .env("CMM_CHART", &chart)
        .stdout(std::process::Stdio::null());
        c
    };
    // The first run asks helm its version once and remembers it, as the host's first run does.
    let first = tokio::task::spawn_blocking({
        let mut c = run(bin);
        move || c.stdout(std::process::Stdio::piped()).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        first.status.success(),
        "bootstrap --dry-run failed: {}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    const N: usize = 5;
    let (mut own, mut helm_cpu, mut templates) = (Vec::new(), Vec::new(), Vec::new());
    let mut requests = 0;
    for _ in 0..N {
        let _ = std::fs::remove_file(&log);
        let r0 = kube.requests().len();
        let (total, _, ok) = tokio::task::spawn_blocking({
            let c = run(bin);
            move || measure(c)
        })
        .await
        .unwrap();
        assert!(ok, "bootstrap --dry-run failed");
        requests = kube.requests().len() - r0;
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        let mut helm_total = 0.0;
        for l in lines.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cpu: f64 = f[1].parse::<f64>().unwrap() + f[2].parse::<f64>().unwrap();
            helm_total += cpu;
            if f[0] == "template" {
                templates.push(Duration::from_secs_f64(cpu));
            }
        }
        helm_cpu.push(Duration::from_secs_f64(helm_total));
        own.push(total.saturating_sub(Duration::from_secs_f64(helm_total)));
    }
    println!("bootstrap --dry-run against the HTTPS API server (helm's CPU excluded); {N} runs:");
    let own_mean = own.iter().sum::<Duration>() / N as u32;
    report("cmm-agent bootstrap --dry-run, own", own, 0);
    report("its helm children (wrapper included)", helm_cpu, 0);
    if templates.is_empty() {
        println!("no `helm template` among the children: ratio not computed");
    } else {
        let t_mean = templates.iter().sum::<Duration>() / templates.len() as u32;
        report("one helm template (inside the run)", templates, 0);
        println!(
            "agent's own / one helm template: {:.3} (target: <= 0.10)",
            own_mean.as_secs_f64() / t_mean.as_secs_f64()
        );
    }
    // Connections: nginx keeps its own to the fake, so they are counted by the test
    // (installer/tests/prepare_fake.rs, one_preflight_reuses_a_few_connections…), not here.
    println!("one bootstrap --dry-run: {requests} API requests");
}
