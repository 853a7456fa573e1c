//! `cmm-agent plan` as a user runs it: the real binary, the real helm, the real chart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use serde_json::Value;
use support::{chart, helm, stderr, stdout, Agent};

fn agent_with_tools() -> Option<Agent> {
    let helm = helm()?;
    let chart = chart()?;
    Some(Agent::new().env("CMM_HELM", helm).env("CMM_CHART", chart))
}

fn member<'a>(plan: &'a Value, release: &str) -> &'a Value {
    plan["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["release"] == release)
        .unwrap_or_else(|| panic!("no member {release} in {plan}"))
}

fn kind(m: &Value, k: &str) -> u64 {
    m["kinds"][k].as_u64().unwrap_or(0)
}

#[test]
fn the_example_fleet_renders_central_grafana_and_two_clusters() {
    let Some(agent) = agent_with_tools() else {
        return;
    };
    let out = agent.run(&["plan", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("plan is JSON");
    assert_eq!(plan["members"].as_array().unwrap().len(), 3);

    let central = member(&plan, "monitor");
    assert_eq!(central["role"], "central");
    for k in [
        "Prometheus",
        "PrometheusRule",
        "ServiceMonitor",
        "Alertmanager",
        "DaemonSet",
    ] {
        assert_eq!(kind(central, k), 0, "central must not run {k}: {central}");
    }
    assert_eq!(kind(central, "Deployment"), 1, "{central}");
    assert_eq!(kind(central, "PersistentVolumeClaim"), 1, "{central}");

    for name in ["kr-mum", "wai-eks"] {
        let c = member(&plan, name);
        assert_eq!(c["role"], "cluster");
        assert_eq!(kind(c, "Prometheus"), 1, "{c}");
        assert_eq!(kind(c, "DaemonSet"), 1, "node-exporter: {c}");
        assert_eq!(kind(c, "Alertmanager"), 0, "{c}");
    }
    // wai-eks is on a managed control plane in the example: fewer scrape targets.
    assert!(
        kind(member(&plan, "wai-eks"), "ServiceMonitor")
            <= kind(member(&plan, "kr-mum"), "ServiceMonitor")
    );
}

fn example(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn a_push_fleet_plans_a_receiver_next_to_grafana_and_senders_on_the_clusters() {
    let Some(agent) = agent_with_tools() else {
        return;
    };
    let out = agent.run(&[
        "plan",
        "--output",
        "json",
        "--fleet",
        &example("fleet-push.toml"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("plan is JSON");
    let central = member(&plan, "monitor");
    // The receiver (the example names VictoriaMetrics, the default): one StatefulSet beside
    // Grafana, no Prometheus and no operator; still nothing scraped there.
    assert_eq!(kind(central, "StatefulSet"), 1, "{central}");
    assert_eq!(kind(central, "Prometheus"), 0, "{central}");
    assert_eq!(kind(central, "DaemonSet"), 0, "{central}");
    assert_eq!(kind(central, "ServiceMonitor"), 0, "{central}");
    assert_eq!(
        central["values"][1],
        "overlays/central-receiver-victoriametrics.yaml"
    );
    assert_eq!(kind(member(&plan, "kr-mum"), "Prometheus"), 1);
    let agent_mode = member(&plan, "wai-eks");
    assert_eq!(kind(agent_mode, "PrometheusAgent"), 1, "{agent_mode}");
    assert_eq!(kind(agent_mode, "Prometheus"), 0, "{agent_mode}");
    assert_eq!(kind(agent_mode, "PrometheusRule"), 0, "{agent_mode}");
}

#[test]
fn a_thanos_fleet_plans_query_centrally_and_a_sidecar_service_per_cluster() {
    let Some(agent) = agent_with_tools() else {
        return;
    };
    let out = agent.run(&[
        "plan",
        "--output",
        "json",
        "--fleet",
        &example("fleet-thanos.toml"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("plan is JSON");
    let central = member(&plan, "monitor");
    assert_eq!(
        kind(central, "Deployment"),
        2,
        "Grafana and Thanos Query: {central}"
    );
    assert_eq!(kind(central, "NetworkPolicy"), 1, "{central}");
    assert_eq!(kind(central, "Prometheus"), 0, "{central}");
    for name in ["kr-mum", "wai-eks"] {
        let c = member(&plan, name);
        // The operator's, Prometheus' main and per-replica ones, node-exporter's, and the
        // sidecar's NodePort one the pull fleet does not have.
        assert_eq!(kind(c, "Service"), 5, "{c}");
    }
}

#[test]
fn the_human_plan_lists_kinds_per_release() {
    let Some(agent) = agent_with_tools() else {
        return;
    };
    let out = agent.run(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("central Grafana (release monitor"), "{text}");
    assert!(text.contains("monitored cluster (release kr-mum"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("DaemonSet")),
        "{text}"
    );
}

#[test]
fn a_bad_fleet_file_names_the_field_and_exits_2() {
    let agent = Agent::new().env("CMM_HELM", "/nonexistent/helm");
    let fleet = agent.home.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        "[central]\n[[clusters]]\nname = \"Kr_Mum\"\nprometheus_url = \"http://x\"\n",
    )
    .unwrap();
    let out = agent.run(&["plan", "--fleet", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("clusters[0].name"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_missing_chart_path_is_a_usage_error_naming_the_fix() {
    let out = Agent::new()
        .env("CMM_CHART", "/nonexistent/kube-prometheus-stack")
        .run(&["plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("helm pull"), "{}", stderr(&out));
}

#[test]
fn a_missing_helm_exits_3_and_says_how_to_point_at_one() {
    let Some(chart) = chart() else {
        return;
    };
    let out = Agent::new()
        .env("CMM_CHART", chart)
        .env("CMM_HELM", "/nonexistent/helm")
        .run(&["plan"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("CMM_HELM"), "{}", stderr(&out));
}

/// Every flag has a CMM_* twin, so a systemd unit or a CI job can set anything without argv.
/// Walks every subcommand, nested ones included.
#[test]
fn every_flag_has_an_environment_twin() {
    let agent = Agent::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut checked = Vec::new();
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&agent.run(&args));
        let shown = format!("cmm-agent {}", path.join(" "));
        pending.extend(subcommands(&help).into_iter().map(|c| {
            let mut p = path.clone();
            p.push(c);
            p
        }));
        let entries = flag_entries(&help);
        assert!(
            entries.len() >= 3,
            "no flags found in `{shown} --help`:\n{help}"
        );
        for e in entries {
            if e.starts_with("-h, --help") || e.starts_with("-V, --version") {
                continue;
            }
            assert!(
                e.contains("[env: CMM_"),
                "`{shown}`: flag without a CMM_* twin: {e}"
            );
        }
        checked.push(shown);
    }
    for command in [" plan", " bootstrap", " fix-storage"] {
        assert!(
            checked.iter().any(|c| c.ends_with(command)),
            "{command} not walked: {checked:?}"
        );
    }
}

fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented deeper than the command names.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// A flag's entry runs from its `--name` line to the next flag; its env twin is in it.
fn flag_entries(help: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines().skip_while(|l| !l.starts_with("Options:")) {
        let t = line.trim_start();
        if t.starts_with("--") || (t.starts_with('-') && t.contains(", --")) {
            entries.push(t.to_owned());
        } else if let Some(last) = entries.last_mut() {
            last.push(' ');
            last.push_str(t);
        }
    }
    entries
}

#[test]
fn fleet_values_are_checked_like_flags_before_helm_sees_them() {
    let agent = Agent::new().env("CMM_HELM", "/nonexistent/helm");
    let fleet = agent.home.path().join("fleet.toml");
    // The chart renders the central datasources through helm's tpl: a template in a URL would run.
    std::fs::write(
        &fleet,
        "[central]\n[[clusters]]\nname = \"kr-mum\"\nprometheus_url = \"http://{{ (lookup \\\"v1\\\" \\\"Secret\\\" \\\"\\\" \\\"\\\") }}:9090\"\n",
    )
    .unwrap();
    let out = agent.run(&["plan", "--fleet", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("clusters[0].prometheus_url") && stderr(&out).contains("tpl"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_chart_repository_points_at_an_offline_archive() {
    let Some(helm) = helm() else {
        return;
    };
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Agent::new()
        .env("CMM_HELM", helm)
        .env("CMM_CHART", format!("http://{dead}#kube-prometheus-stack"))
        .run(&["plan"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        // The library names the setting; the agent says how it was given (here: the variable).
        e.contains("cannot be reached")
            && e.contains("the setting: CMM_CHART")
            && e.contains("helm pull"),
        "{e}"
    );
}

/// A switch's CMM_* variable takes what people write for yes and no, as its help implies.
#[test]
fn boolean_variables_take_one_zero_yes_no_on_off() {
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("true", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("false", false),
    ] {
        let agent = Agent::new().env("CMM_KUBE_METRICS", value);
        let o = agent.run(&["rbac", "--role", "cluster", "--subject", "Group:x"]);
        assert_eq!(o.status.code(), Some(0), "{value}: {}", support::stderr(&o));
        let header = stdout(&o).lines().next().unwrap_or("").to_owned();
        assert_eq!(header.contains("--kube-metrics"), on, "{value}: {header}");
    }
    let o = Agent::new().env("CMM_KUBE_METRICS", "maybe").run(&[
        "rbac",
        "--role",
        "cluster",
        "--subject",
        "Group:x",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a value that is neither is refused"
    );
    assert!(support::stderr(&o).contains("maybe"));
}
