"""The central cluster is often a monitored cluster too: the central release and that cluster's
own release, rendered together by the real helm and chart, in every topology and with the
central release in the same namespace or its own. No object name is shared (a cluster-wide one
in any namespace, a namespaced one in the same namespace), no NodePort, no Secret the agent
makes, and both renders pass the schemas. In push the central receiver runs a second operator:
each operator reconciles exactly its own Prometheus (bootstrap still refuses whatever another
release holds: installer/src/clash.rs, agent/tests/bootstrap_cli.rs)."""

from __future__ import annotations

import re
import subprocess

import pytest

from cmm_values import REPO, CENTRAL, CONTENT, EACH, KUBE_VERSION, TOPOLOGY_OVERLAYS, Render
from test_schemas import validate_all

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "CustomResourceDefinition"}
PUSH_SETS = ("cmm.receiverUrl=https://10.0.0.5:30091/api/v1/write",)
TOPOLOGIES = {
    # cluster files, central files (before the content file), sets
    "pull": ((), (), ()),
    "push": (("push",), ("central-receiver-victoriametrics",), PUSH_SETS),
    "push-prometheus-receiver": (("push",), ("central-receiver",), PUSH_SETS),
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


def secrets(r):
    """Every Secret the release's pods or Prometheus CRs name (made by the agent, not rendered)."""
    out = set()

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("secretName"), str):
                out.add(v["secretName"])
            if isinstance(v.get("secret"), dict) and isinstance(v["secret"].get("name"), str):
                out.add(v["secret"]["name"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for o in r.objects:
        walk(o.get("spec"))
    return out


def selects(selector: str, labels: dict) -> bool:
    """A label selector of `k=v` / `k!=v` terms, as the operator's --prometheus-instance-selector
    reads it (apimachinery labels.Parse: `!=` also matches objects without the label)."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        else:
            k, v = term.split("=", 1)
            if labels.get(k) != v:
                return False
    return True


def operator_selector(r):
    [dep] = [o for o in r.objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    return next((a.split("=", 1)[1] for a in args if a.startswith("--prometheus-instance-selector=")), "")


@pytest.mark.parametrize("central_namespace", ["monitor", "central"])
@pytest.mark.parametrize("topology", ["pull", "push", "thanos"])
def test_central_and_cluster_releases_share_nothing_and_validate(renderer, crd_dir, topology, central_namespace):
    cluster, central = pair(renderer, topology, central_namespace)
    names, ports = shared(cluster, central, central_namespace)
    assert not names, f"{cluster.cmd}\n{central.cmd}\nshared: {sorted(names, key=str)}"
    assert not ports, f"shared NodePorts {ports}"
    if central_namespace == "monitor":
        both = secrets(cluster) & secrets(central)
        assert not both, f"one Secret for two releases in one namespace: {both}"
    errors = validate_all(cluster.objects, crd_dir, cluster.cmd) + validate_all(central.objects, crd_dir, central.cmd)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("cluster_files", [("push",), ("push", "agent-mode"), ()])
def test_each_operator_reconciles_its_own_prometheus_only(renderer, cluster_files):
    """Two operators on one cluster would both rewrite each Prometheus' StatefulSet; the
    selectors split them by the receiver's mark."""
    cluster = render(renderer, "kr-mum", "monitor", [EACH, *(TOPOLOGY_OVERLAYS[o] for o in cluster_files)],
                     PUSH_SETS if cluster_files else ())
    central = render(renderer, "monitor", "monitor",
                     [CENTRAL, TOPOLOGY_OVERLAYS["central-receiver"], CONTENT])
    crs = {(r_name, o["metadata"]["name"]): o["metadata"].get("labels", {})
           for r_name, r in (("cluster", cluster), ("central", central)) for o in r.objects
           if o["kind"] in ("Prometheus", "PrometheusAgent")}
    assert len(crs) == 2, crs
    for r_name, r in (("cluster", cluster), ("central", central)):
        sel = operator_selector(r)
        assert sel, f"the {r_name} operator reconciles every Prometheus on the cluster"
        mine = {k for k, labels in crs.items() if selects(sel, labels)}
        assert mine == {k for k in crs if k[0] == r_name}, f"{r_name} operator ({sel}) reconciles {mine}"


def naming_port(name):
    text = (REPO / "core" / "src" / "naming.rs").read_text()
    return int(re.search(rf"pub const {name}: u16 = (\d+);", text).group(1))


def test_node_ports_are_the_ones_the_agent_knows(renderer):
    """The agent tells clusters where to write and checks ports by core/src/naming.rs; the
    values must render the same: the clusters' 30090 (every pull datasource depends on it),
    the receiver's own."""
    cluster, central = pair(renderer, "push", "monitor")
    assert node_ports(cluster) == {naming_port("PROMETHEUS_NODE_PORT")}
    assert node_ports(central) == {naming_port("RECEIVER_NODE_PORT")}
