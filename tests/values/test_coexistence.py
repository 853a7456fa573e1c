"""The central cluster is often a monitored cluster too: the central release and that cluster's
own release, rendered together by the real helm and chart, in every topology and with the
central release in the same namespace or its own. Pull and thanos share no object name (a
cluster-wide one in any namespace, a namespaced one in the same namespace) and no NodePort, and
both renders pass the schemas. Push does not: its central receiver runs its own operator and
Prometheus under CMM's names, which bootstrap detects and refuses before any change
(installer/src/clash.rs, agent/tests/bootstrap_cli.rs)."""

from __future__ import annotations

import subprocess

import pytest

from cmm_values import CENTRAL, CONTENT, EACH, KUBE_VERSION, TOPOLOGY_OVERLAYS, Render
from test_schemas import validate_all

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "CustomResourceDefinition"}
PUSH_SETS = ("cmm.receiverUrl=https://10.0.0.5:30090/api/v1/write",)
TOPOLOGIES = {
    # cluster files, central files (before the content file), sets
    "pull": ((), (), ()),
    "push": (("push",), ("central-receiver",), PUSH_SETS),
    "thanos": (("thanos-sidecar",), ("thanos-query",), ()),
}


def render(renderer, release, namespace, files, sets=()):
    cmd = [renderer.helm, "template", release, renderer.chart, "-n", namespace, "--kube-version", KUBE_VERSION]
    for f in files:
        cmd += ["-f", str(f)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return Render(" ".join(cmd[1:]), res.stdout)


def pair(renderer, topology, central_namespace):
    cluster_files, central_files, sets = TOPOLOGIES[topology]
    cluster = render(renderer, "kr-mum", "monitor",
                     [EACH, *(TOPOLOGY_OVERLAYS[o] for o in cluster_files)], sets)
    central = render(renderer, "monitor", central_namespace,
                     [CENTRAL, *(TOPOLOGY_OVERLAYS[o] for o in central_files), CONTENT])
    return cluster, central


def identities(r, namespace):
    return {(o["kind"], None if o["kind"] in CLUSTER_SCOPED else o["metadata"].get("namespace", namespace),
             o["metadata"]["name"]) for o in r.objects}


def node_ports(r):
    return {p["nodePort"] for o in r.objects if o["kind"] == "Service"
            for p in o["spec"].get("ports", []) if "nodePort" in p}


def shared(cluster, central, central_namespace):
    return identities(cluster, "monitor") & identities(central, central_namespace), \
        node_ports(cluster) & node_ports(central)


@pytest.mark.parametrize("central_namespace", ["monitor", "central"])
@pytest.mark.parametrize("topology", ["pull", "thanos"])
def test_central_and_cluster_releases_share_nothing_and_validate(renderer, crd_dir, topology, central_namespace):
    cluster, central = pair(renderer, topology, central_namespace)
    names, ports = shared(cluster, central, central_namespace)
    assert not names, f"{cluster.cmd}\n{central.cmd}\nshared: {sorted(names, key=str)}"
    assert not ports, f"shared NodePorts {ports}"
    errors = validate_all(cluster.objects, crd_dir, cluster.cmd) + validate_all(central.objects, crd_dir, central.cmd)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("central_namespace", ["monitor", "central"])
def test_push_receiver_and_a_cluster_release_clash_as_bootstrap_says(renderer, central_namespace):
    """The case bootstrap refuses: the same cluster-wide names (the operator's, its admission
    webhooks') and NodePort 30090 in either namespace."""
    cluster, central = pair(renderer, "push", central_namespace)
    names, ports = shared(cluster, central, central_namespace)
    assert ("ClusterRole", None, "cmm-operator") in names
    assert ("ValidatingWebhookConfiguration", None, "cmm-admission") in names
    assert ports == {30090}
