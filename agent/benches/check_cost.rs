//! Benchmark (not a test): what one `cmm-agent check` costs the admin host — CPU (user + sys)
//! and peak RSS of the process — against the fake Kubernetes API and fake Grafana on 127.0.0.1
//! and a real Prometheus scraping a real node_exporter, side by side in the same run with a
//! shell script that fetches the same facts with curl. Targets: < 100 ms CPU, < 30 MiB RSS.
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
use nix::sys::resource::{getrusage, UsageWho};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");
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
    println!(
        "{name:<34} n={:<3} CPU mean {:>7.1} ms  p50 {:>7.1} ms  max {:>7.1} ms  peak RSS {:>6.1} MiB",
        cpu.len(),
        mean.as_secs_f64() * 1e3,
        cpu[cpu.len() / 2].as_secs_f64() * 1e3,
        cpu[cpu.len() - 1].as_secs_f64() * 1e3,
        rss_kib as f64 / 1024.0
    );
}

fn curl_script(dir: &Path, kube: &str, prom: &str, grafana: &str) -> String {
    let path = dir.join("facts.sh");
    let ns = format!("{kube}/api/v1/namespaces/monitor");
    let apps = format!("{kube}/apis/apps/v1/namespaces/monitor");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# The facts check reads, fetched by hand.\nset -e\nc() {{ curl -sf -o /dev/null \"$@\"; }}\n\
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
            tok = dir.join("token").display()
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
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kube.write_kubeconfig(dir.path(), "kr-mum");
        let token = dir.path().join("token");
        std::fs::write(&token, ADMIN_TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "cluster = \"kr-mum\"\nkubeconfig = \"{}\"\ngrafana-url = \"{}\"\ngrafana-token-file = \"{}\"\nfirst-scrape-wait = \"30s\"\ninsecure-plain-http = true\n",
                kubeconfig.display(),
                grafana.url,
                dir.path().join("token").display()
            ),
        )
        .unwrap();
        let agent = |args: &[&str]| {
            let mut c = Command::new(BIN);
            c.args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("CMM_CONFIG", &config);
            c
        };
        let blocking = |cmd: Command| tokio::task::spawn_blocking(move || measure(cmd));
        // Register first so every Grafana read finds its object, as on a live fleet.
        assert!(agent(&["register"]).status().unwrap().success(), "register failed");

        let script = curl_script(dir.path(), &kube.url(), prom.url.trim_end_matches('/'), &grafana.url);
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
        println!("one check against the fakes + a real Prometheus, every stage judged; {RUNS} runs each:");
        report("cmm-agent check", a_cpu, a_rss);
        report("curl script (same reads, no judging)", s_cpu, s_rss);
        println!("(peak RSS: the largest single process, curl for the script)");
    });
}
