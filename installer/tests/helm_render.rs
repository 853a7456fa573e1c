//! Each environment's plan rendered by the real helm on the real chart: the fix must be in the
//! objects, not just in the plan. helm from CMM_HELM or PATH, chart from CMM_CHART or
//! ../shared/charts/kube-prometheus-stack; with CMM_REQUIRE_TOOLS=1 a missing tool fails.

mod support;

use cmm_installer::bootstrap::{fixes, values_for, Choices};
use cmm_installer::chart::ChartSource;
use cmm_installer::detect::{detect, Observed};
use cmm_installer::helm::Helm;
use cmm_installer::render::Rendered;
use cmm_installer::topology::Role;
use cmm_installer::topology::{Choice, Receiver, Topology, Wiring};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;
use support::{render_values, root, tools};

fn node(file: &str) -> Node {
    let text = std::fs::read_to_string(root().join("tests/fixtures/nodes").join(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Render the plan bootstrap makes for a cluster whose only node is `fixture`.
async fn render(
    helm: &Helm,
    chart: &ChartSource,
    fixture: &str,
    api_url: &str,
    kube_metrics: bool,
) -> Rendered {
    let nodes = [node(fixture)];
    let env = detect(&Observed {
        nodes: &nodes,
        api_url,
        server_version: None,
        host_proc_version: None,
    });
    let values = values_for(
        Role::Cluster,
        None,
        None,
        &Wiring::pull(),
        &fixes(&env, Choices::kube_metrics(kube_metrics)),
    );
    render_values(helm, chart, "kr-mum", &values)
        .await
        .unwrap_or_else(|e| panic!("{fixture}: {e}"))
}

fn mounts_host_root(r: &Rendered) -> bool {
    let ds = r
        .find("DaemonSet", cmm_core::naming::NODE_EXPORTER_DAEMONSET)
        .expect("the node-exporter DaemonSet is rendered");
    let spec = &ds["spec"]["template"]["spec"];
    let root_volume = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["hostPath"]["path"] == "/");
    let root_mount = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
        .any(|m: Value| m["mountPath"] == "/host/root");
    root_volume || root_mount
}

fn service_monitors(r: &Rendered) -> Vec<String> {
    r.of_kind("ServiceMonitor")
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_wsl_plan_renders_node_exporter_without_the_host_root_mount() {
    let Some((helm, chart)) = tools() else { return };
    for fixture in [
        "docker-desktop-wsl2.json",
        "docker-desktop.json",
        "wsl2-kubeadm.json",
    ] {
        let r = render(&helm, &chart, fixture, "https://127.0.0.1:6443", false).await;
        assert!(
            !mounts_host_root(&r),
            "{fixture}: the root mount is still rendered"
        );
    }
    // The control: a plain cluster keeps the chart's root mount.
    let plain = render(
        &helm,
        &chart,
        "kubeadm-onprem.json",
        "https://10.40.8.10:6443",
        false,
    )
    .await;
    assert!(
        mounts_host_root(&plain),
        "control: the chart default should mount the host root"
    );
}

#[tokio::test]
async fn the_eks_plan_scrapes_no_scheduler_even_with_kubernetes_metrics_on() {
    let Some((helm, chart)) = tools() else { return };
    let eks = render(
        &helm,
        &chart,
        "eks.json",
        "https://4F2A9C1D7E3B5A6C8D0E1F2A3B4C5D6E.gr7.eu-west-1.eks.amazonaws.com",
        true,
    )
    .await;
    let sms = service_monitors(&eks);
    for gone in [
        "kube-scheduler",
        "kube-controller-manager",
        "kube-etcd",
        "kube-proxy",
    ] {
        assert!(
            !sms.iter().any(|n| n.contains(gone)),
            "EKS plan still scrapes {gone}: {sms:?}"
        );
    }
    // What EKS does expose stays scraped.
    assert!(sms.iter().any(|n| n.ends_with("-apiserver")), "{sms:?}");
    assert!(sms.iter().any(|n| n.ends_with("-kubelet")), "{sms:?}");
    // The control: the same request on a self-managed cluster scrapes the scheduler.
    let plain = render(
        &helm,
        &chart,
        "kubeadm-onprem.json",
        "https://10.40.8.10:6443",
        true,
    )
    .await;
    assert!(
        service_monitors(&plain)
            .iter()
            .any(|n| n.contains("kube-scheduler")),
        "control: {:?}",
        service_monitors(&plain)
    );
}

#[tokio::test]
async fn every_environment_plan_renders() {
    let Some((helm, chart)) = tools() else { return };
    for fixture in [
        "eks.json",
        "gke.json",
        "aks.json",
        "kind.json",
        "k3s.json",
        "minikube.json",
    ] {
        let r = render(&helm, &chart, fixture, "https://10.0.0.1:6443", true).await;
        let sms = service_monitors(&r);
        assert!(
            !sms.iter().any(|n| n.contains("kube-scheduler")),
            "{fixture}: {sms:?}"
        );
        assert!(
            r.find("Prometheus", "cmm").is_some(),
            "{fixture}: no Prometheus CR"
        );
    }
}

/// The resource a kind is served as (`Prometheus` → `prometheuses`).
fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The permission table (cmm_installer::access) holds get/create/patch/delete for every kind
/// the real chart renders with CMM's values, in the namespace it lands in: a chart upgrade that
/// renders a new kind fails here, not with a 403 halfway through an install.
#[tokio::test]
async fn the_access_table_covers_every_kind_the_chart_renders() {
    let Some((helm, chart)) = tools() else { return };
    let cluster = render(
        &helm,
        &chart,
        "kubeadm-onprem.json",
        "https://10.0.0.1:6443",
        true,
    )
    .await;
    let central_values = values_for(Role::Central, None, None, &Wiring::pull(), &[]);
    let central = support::render_values(&helm, &chart, "monitor", &central_values)
        .await
        .unwrap();
    for (role, rendered) in [(Role::Cluster, &cluster), (Role::Central, &central)] {
        assert_covered(role, Topology::Pull, rendered);
    }
}

/// Every object of `rendered` is in the access table of `role` in `topology`.
fn assert_covered(role: Role, topology: Topology, rendered: &Rendered) {
    use cmm_installer::access::{bootstrap_in, Scope};
    let table = bootstrap_in(role, true, topology);
    for o in &rendered.objects {
        let kind = o["kind"].as_str().unwrap();
        let group = o["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit_once('/')
            .map_or("", |(g, _)| g);
        let scope = match o["metadata"]["namespace"].as_str() {
            Some("kube-system") => Scope::KubeSystem,
            Some(_) => Scope::Namespace,
            None => Scope::Cluster,
        };
        let resource = plural(kind);
        for verb in ["get", "create", "patch", "delete"] {
            assert!(
                table.iter().any(|e| e.verb == verb
                    && e.group == group
                    && e.resource == resource
                    && e.scope == scope),
                "{role:?} ({topology}): the chart renders {kind} ({group}/{resource}, {scope:?}) \
                 but the access table lacks {verb}"
            );
        }
    }
}

/// Each role of the growth paths (push with either receiver, thanos).
const GROWTH_PATHS: [(Topology, Role, Option<Receiver>); 5] = [
    (Topology::Push, Role::Cluster, None),
    (
        Topology::Push,
        Role::Central,
        Some(Receiver::VictoriaMetrics),
    ),
    (Topology::Push, Role::Central, Some(Receiver::Prometheus)),
    (Topology::Thanos, Role::Cluster, None),
    (Topology::Thanos, Role::Central, None),
];

/// The wiring bootstrap makes for `role` in `topology` (a push cluster sends to a receiver URL
/// in agent mode).
fn wiring_of(topology: Topology, role: Role, receiver: Option<Receiver>) -> Wiring {
    Wiring::new(&Choice {
        topology,
        receiver,
        receiver_url: (role == Role::Cluster && topology == Topology::Push)
            .then_some("https://10.0.0.5:30091/api/v1/write"),
        agent_mode: role == Role::Cluster && topology == Topology::Push,
        central: role == Role::Central,
        ..Default::default()
    })
    .unwrap()
}

/// The same for the growth paths: what each topology adds is in the table of its role.
#[tokio::test]
async fn the_access_table_covers_every_topology() {
    let Some((helm, chart)) = tools() else { return };
    for (topology, role, receiver) in GROWTH_PATHS {
        let values = values_for(role, None, None, &wiring_of(topology, role, receiver), &[]);
        let release = if role == Role::Central {
            "monitor"
        } else {
            "kr-mum"
        };
        let r = support::render_values(&helm, &chart, release, &values)
            .await
            .unwrap();
        assert_covered(role, topology, &r);
    }
}

/// Bootstrap reads a render through `Heads` (only each object's apiVersion, kind and metadata,
/// Services whole, the rest cut as text before parsing): on every role and topology's render of
/// the real chart, that is exactly the full parse cut down, and most documents were cut.
#[tokio::test]
async fn bootstraps_heads_of_every_render_are_the_whole_render_cut_down() {
    use cmm_installer::render::{stream, Heads};
    let Some((helm, chart)) = tools() else { return };
    let pull = [
        (Topology::Pull, Role::Cluster, None),
        (Topology::Pull, Role::Central, None),
    ];
    for (topology, role, receiver) in pull.into_iter().chain(GROWTH_PATHS) {
        let wiring = wiring_of(topology, role, receiver);
        let nodes = [node("kubeadm-onprem.json")];
        let env = detect(&Observed {
            nodes: &nodes,
            api_url: "https://10.0.0.1:6443",
            server_version: None,
            host_proc_version: None,
        });
        let fixes = match role {
            Role::Cluster => fixes(&env, Choices::kube_metrics(true)),
            Role::Central => Vec::new(),
        };
        let values = values_for(role, None, None, &wiring, &fixes);
        let text = stream(
            &helm,
            &chart,
            "kr-mum",
            "monitor",
            values.iter().map(|(n, t)| (n.as_str(), t.clone())),
            &[],
        )
        .await
        .unwrap();
        let whole = Rendered::parse(&text).unwrap();
        let heads = Heads::parse(&text).unwrap();
        let case = format!("{role:?} in {topology}");
        assert_eq!(heads.objects.len(), whole.objects.len(), "{case}");
        for (h, w) in heads.objects.iter().zip(&whole.objects) {
            assert_eq!(*h, cmm_installer::render::head_of(w), "{case}");
        }
        assert_eq!(heads.kinds(), whole.kinds(), "{case}");
        // Cut as text, not parsed whole and cut afterwards: only the Services (and Lists of
        // them) went to the parser whole.
        let services = whole.of_kind("Service").count();
        assert!(
            heads.parsed_whole <= services && heads.parsed_whole * 3 < whole.objects.len(),
            "{case}: {} of {} documents parsed whole ({services} Services)",
            heads.parsed_whole,
            whole.objects.len()
        );
    }
}
