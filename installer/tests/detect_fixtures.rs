//! Detection and the fixes it leads to, table-tested on real-shaped nodes
//! (tests/fixtures/nodes/*.json, schema-checked by tests/fixtures/test_fixture_schemas.py).

use cmm_installer::topology::Wiring;
use std::path::PathBuf;

use cmm_installer::bootstrap::{fixes, values_for, Choices};
use cmm_installer::detect::{detect, EnvKind, Observed};
use cmm_installer::topology::Role;
use k8s_openapi::api::core::v1::Node;

fn node(file: &str) -> Node {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/nodes")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const WSL_HOST: &str = "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) 11.2.0) #1 SMP Tue Nov 5 00:21:55 UTC 2024";

struct Case {
    fixture: &'static str,
    api_url: &'static str,
    version: &'static str,
    host: Option<&'static str>,
    kinds: &'static [EnvKind],
    fixes: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        fixture: "eks.json",
        api_url: "https://4F2A9C1D7E3B5A6C8D0E1F2A3B4C5D6E.gr7.eu-west-1.eks.amazonaws.com",
        version: "v1.31.5-eks-5d632ec",
        host: None,
        // 1.31: its scheduler and controller-manager metrics are served by the API server (taken
        // with kube metrics on; this table runs without).
        kinds: &[EnvKind::Eks, EnvKind::EksControlPlaneMetrics],
        fixes: &["managed-control-plane"],
    },
    Case {
        fixture: "gke.json",
        api_url: "https://34.78.10.20",
        version: "v1.31.6-gke.1020000",
        host: None,
        kinds: &[EnvKind::Gke],
        fixes: &["managed-control-plane"],
    },
    Case {
        fixture: "aks.json",
        api_url: "https://aks-prod-dns-8x2k1m3q.hcp.westeurope.azmk8s.io:443",
        version: "v1.30.9",
        host: None,
        kinds: &[EnvKind::Aks],
        fixes: &["managed-control-plane"],
    },
    Case {
        fixture: "docker-desktop.json",
        api_url: "https://kubernetes.docker.internal:6443",
        version: "v1.31.4",
        host: None,
        kinds: &[EnvKind::DockerDesktop],
        fixes: &["wsl-root-mount"],
    },
    Case {
        fixture: "docker-desktop-wsl2.json",
        api_url: "https://kubernetes.docker.internal:6443",
        version: "v1.31.4",
        host: Some(WSL_HOST),
        kinds: &[EnvKind::Wsl2, EnvKind::DockerDesktop],
        fixes: &["wsl-root-mount"],
    },
    Case {
        fixture: "wsl2-kubeadm.json",
        api_url: "https://172.29.141.77:6443",
        version: "v1.32.2",
        host: None,
        kinds: &[EnvKind::Wsl2],
        fixes: &["wsl-root-mount"],
    },
    Case {
        fixture: "kind.json",
        api_url: "https://127.0.0.1:40573",
        version: "v1.32.2",
        host: None,
        kinds: &[EnvKind::Kind],
        fixes: &["managed-control-plane"],
    },
    Case {
        fixture: "k3s.json",
        api_url: "https://10.20.0.11:6443",
        version: "v1.31.5+k3s1",
        host: None,
        kinds: &[EnvKind::K3s],
        fixes: &["managed-control-plane"],
    },
    Case {
        fixture: "minikube.json",
        api_url: "https://192.168.49.2:8443",
        version: "v1.32.0",
        host: None,
        kinds: &[EnvKind::Minikube],
        fixes: &["managed-control-plane"],
    },
    // An admin on WSL managing a plain on-prem cluster: nothing to fix.
    Case {
        fixture: "kubeadm-onprem.json",
        api_url: "https://10.40.8.10:6443",
        version: "v1.30.10",
        host: Some(WSL_HOST),
        kinds: &[],
        fixes: &[],
    },
];

#[test]
fn every_environment_is_recognised_with_its_fix() {
    for c in CASES {
        let nodes = [node(c.fixture)];
        let env = detect(&Observed {
            nodes: &nodes,
            api_url: c.api_url,
            server_version: Some(c.version),
            host_proc_version: c.host,
        });
        assert_eq!(env.kinds, c.kinds, "{}: {:#?}", c.fixture, env.evidence);
        let ids: Vec<&str> = fixes(&env, Choices::kube_metrics(false))
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, c.fixes, "{}", c.fixture);
        // Every finding is backed by evidence naming where it was seen.
        for k in &env.kinds {
            assert!(
                env.evidence
                    .iter()
                    .any(|e| e.kind == *k && !e.source.is_empty()),
                "{}: {k:?} without evidence",
                c.fixture
            );
        }
    }
}

#[test]
fn eks_evidence_cites_api_host_labels_and_kubelet() {
    let nodes = [node("eks.json")];
    let env = detect(&Observed {
        nodes: &nodes,
        api_url: CASES[0].api_url,
        server_version: None,
        host_proc_version: None,
    });
    let sources: Vec<&str> = env.evidence.iter().map(|e| e.source.as_str()).collect();
    assert!(
        sources.contains(&"kubeconfig cluster.server"),
        "{sources:?}"
    );
    assert!(env
        .evidence
        .iter()
        .any(|e| e.value == "eks.amazonaws.com/nodegroup=ng-monitoring"));
    assert!(env
        .evidence
        .iter()
        .any(|e| e.source.ends_with(".status.nodeInfo.kubeletVersion")
            && e.value == "v1.31.5-eks-5d632ec"));
}

#[test]
fn a_mixed_fleet_node_list_gets_both_fixes_in_overlay_order() {
    // A kind cluster on a WSL2 host: root mount and control plane both need fixing.
    let mut n = node("kind.json");
    n.status
        .as_mut()
        .unwrap()
        .node_info
        .as_mut()
        .unwrap()
        .kernel_version = "5.15.167.4-microsoft-standard-WSL2".into();
    let env = detect(&Observed {
        nodes: &[n],
        api_url: "https://127.0.0.1:40573",
        server_version: None,
        host_proc_version: None,
    });
    assert_eq!(env.kinds, [EnvKind::Wsl2, EnvKind::Kind]);
    let files = values_for(
        Role::Cluster,
        None,
        None,
        &Wiring::pull(),
        &fixes(&env, Choices::kube_metrics(true)),
    );
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "each_cluster.yaml",
            "overlays/wsl.yaml",
            "overlays/kube-metrics.yaml",
            "overlays/managed-control-plane.yaml"
        ]
    );
}
