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
//! Two scripts fetch the same facts: one with curl alone (the Kubernetes REST paths kubectl
//! would call), one reading the Kubernetes API with `kubectl get --raw` and the rest with curl,
//! as a person would. Neither judges anything, so both are lower bounds for "the same facts by
//! hand"; `--raw` skips kubectl's API discovery (the fake does not serve it), its cheapest use.
//!
//! Run: `scripts/dev bench` (or `cargo bench -p cmm-agent --bench check_cost`);
//! `CMM_BENCH_SHOW_REQUESTS=1` also prints each API request of a bootstrap dry run.
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

/// How the script reads the Kubernetes API: curl on the REST paths, or kubectl.
enum KubeReader<'a> {
    Curl,
    /// `kubectl get --raw PATH`: kubectl's own client (kubeconfig, TLS, token) without API
    /// discovery, which the fake does not serve. Discovery would only add to kubectl's cost,
    /// so this is the cheaper way to use kubectl, and the comparison leans its way.
    Kubectl {
        bin: &'a str,
        kubeconfig: &'a Path,
    },
}

/// A script fetching the facts check reads: the Kubernetes reads through `reader`, the
/// Prometheus and Grafana reads through curl. It only fetches and judges nothing.
fn facts_script(
    dir: &Path,
    name: &str,
    reader: &KubeReader<'_>,
    (kube, prom, grafana): (&str, &str, &str),
    cacert: &Path,
) -> String {
    let path = dir.join(name);
    let k = match reader {
        KubeReader::Curl => format!(
            "k() {{ curl -sf --cacert {} -o /dev/null \"{kube}$1\"; }}",
            cacert.display()
        ),
        KubeReader::Kubectl { bin, kubeconfig } => format!(
            "k() {{ {bin} --kubeconfig {} get --raw \"$1\" >/dev/null; }}",
            kubeconfig.display()
        ),
    };
    let ns = "/api/v1/namespaces/monitor";
    let apps = "/apis/apps/v1/namespaces/monitor";
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# The facts check reads, fetched by hand.\nset -e\n{k}\nc() {{ curl -sf --cacert {cacert} -o /dev/null \"$@\"; }}\n\
             k {ns}\nk \"{ns}/secrets?labelSelector=owner%3Dhelm%2Cname%3Dkr-mum\"\nk {apps}/deployments\nk {apps}/daemonsets\n\
             k \"{apps}/statefulsets?labelSelector=operator.prometheus.io%2Fname%3Dcmm\"\nk {ns}/pods\nk /api/v1/nodes\n\
             k {ns}/persistentvolumeclaims\nk /api/v1/persistentvolumes\nk {ns}/services\n\
             k /apis/networking.k8s.io/v1/namespaces/monitor/ingresses\n\
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

/// The kubectl to compare with: CMM_BENCH_KUBECTL, else `kubectl` on PATH. Google Cloud SDK's
/// `kubectl` is a dispatcher that starts a versioned kubectl beside it (kubectl.1.NN): the
/// newest of those is taken directly, so the dispatcher's own start is not charged to kubectl.
fn kubectl_binary() -> Option<String> {
    if let Ok(b) = std::env::var("CMM_BENCH_KUBECTL") {
        return Some(b);
    }
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&found).ok()?;
    let newest = std::fs::read_dir(real.parent()?)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let minor: u32 = name.strip_prefix("kubectl.1.")?.parse().ok()?;
            Some((minor, real.with_file_name(name)))
        })
        .max();
    Some(newest.map_or(real, |(_, p)| p).display().to_string())
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

        let urls = (kube_tls.url(), prom.url.trim_end_matches('/').to_owned(), grafana_tls.url());
        let urls = (urls.0.as_str(), urls.1.as_str(), urls.2.as_str());
        let mut scripts = vec![(
            "curl script (same reads, no judging)".to_owned(),
            facts_script(dir.path(), "curl.sh", &KubeReader::Curl, urls, &cas),
        )];
        let kubectl = kubectl_binary();
        match &kubectl {
            Some(bin) => scripts.push((
                "kubectl get --raw + curl script".to_owned(),
                facts_script(
                    dir.path(),
                    "kubectl.sh",
                    &KubeReader::Kubectl { bin, kubeconfig: &kubeconfig },
                    urls,
                    &cas,
                ),
            )),
            None => println!("kubectl + curl script: SKIPPED (no kubectl on PATH; set CMM_BENCH_KUBECTL)"),
        }
        // RUSAGE_CHILDREN's peak only grows: the agent is measured first, so its peak is its own.
        let (mut a_cpu, mut a_rss) = (Vec::new(), 0);
        for _ in 0..RUNS {
            let (cpu, rss, ok) = blocking(agent(&["check", "--output", "json"])).await.unwrap();
            assert!(ok, "check failed during the bench");
            a_cpu.push(cpu);
            a_rss = a_rss.max(rss);
        }
        let mut peers = Vec::new();
        for (name, script) in scripts {
            let mut s_cpu = Vec::new();
            for _ in 0..RUNS {
                let mut c = Command::new("sh");
                // kubectl keeps its caches under $HOME/.kube: a scratch home, as on a fresh host.
                c.arg(&script).env("HOME", dir.path());
                let (cpu, _, ok) = blocking(c).await.unwrap();
                assert!(ok, "the script {script} failed");
                s_cpu.push(cpu);
            }
            peers.push((name, s_cpu));
        }
        println!("one check against the fakes behind HTTPS (nginx) + a real Prometheus, every stage judged; {RUNS} runs each:");
        println!("agent: {bin}");
        if let Some(k) = &kubectl {
            println!("kubectl: {k}");
        }
        let a_total = a_cpu.iter().sum::<Duration>().as_secs_f64();
        report("cmm-agent check", a_cpu, a_rss);
        for (name, s_cpu) in peers {
            let ratio = s_cpu.iter().sum::<Duration>().as_secs_f64() / a_total;
            report(&name, s_cpu, 0);
            println!("  {name} costs {ratio:.1}x the agent's CPU (target: >= 8x)");
        }

        bootstrap_dry_run(&bin, dir.path()).await;
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
        if std::env::var_os("CMM_BENCH_SHOW_REQUESTS").is_some() {
            for r in &kube.requests()[r0..] {
                eprintln!("REQ {} {}", r.method, r.path);
            }
        }
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
