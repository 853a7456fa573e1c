"""values/each_cluster.yaml and its overlays, rendered by the real helm and chart."""

from __future__ import annotations

import re

import pytest

from cmm_values import (
    EACH,
    OVERLAYS,
    RELEASES,
    REPO,
    SEED_KUBE_METRICS_SETS,
    SEED_NODE_SELECTOR_SETS,
    find,
    obj_id,
    one,
)


def rust_constants() -> dict[str, str]:
    """The naming constants the Rust agent relies on (core/src/naming.rs), read from the source."""
    text = (REPO / "core" / "src" / "naming.rs").read_text()
    out = {}
    for name, value in re.findall(r'pub const (\w+): (?:&str|u16) = "?([^";]+)"?;', text):
        out[name] = value
    return out


NAMES = rust_constants()


def by_kind_name(objs):
    return sorted((o["kind"], o["metadata"]["name"]) for o in objs)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Kubernetes' toleration matching (ToleratesTaint)."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("key") and t["key"] != taint["key"]:
            continue
        op = t.get("operator", "Equal")
        if op == "Exists":
            return True
        if op == "Equal" and t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


# Taints real nodes carry: kubeadm control plane, a node being drained/unreachable, a dedicated pool.
TAINTS = [
    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    {"key": "dedicated", "value": "kafka", "effect": "NoExecute"},
    {"key": "kr-mum/noderole", "value": "kafka", "effect": "PreferNoSchedule"},
]


def apply_relabelings(relabelings: list[dict], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus relabeling (the actions CMM uses), applied to a target's labels."""
    out = dict(labels)
    for r in relabelings:
        action = r.get("action", "replace").lower()
        src = r.get("separator", ";").join(out.get(s, "") for s in r.get("sourceLabels", []))
        m = re.fullmatch(r.get("regex", "(.*)"), src)
        if action == "replace":
            if m:
                out[r["targetLabel"]] = m.expand(r.get("replacement", "$1").replace("$", "\\"))
        else:
            raise AssertionError(f"relabel action {action} not modelled by this test")
    return out


@pytest.mark.parametrize("release", RELEASES)
def test_no_grafana_or_alertmanager_in_a_cluster(renderer, release):
    r = renderer.render(release, EACH)
    offenders = [
        obj_id(o)
        for o in r.objects
        if o["kind"] == "Alertmanager"
        or re.search("grafana|alertmanager", o["metadata"]["name"])
        or o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "grafana"
    ]
    assert not offenders, f"{r.cmd} renders Grafana/Alertmanager objects: {offenders}"
    rule_groups = [g["name"] for o in find(r.objects, "PrometheusRule") for g in o["spec"]["groups"]]
    assert "alertmanager.rules" not in rule_groups
    prom = one(r.objects, "Prometheus", NAMES["FULLNAME"])
    assert "alerting" not in prom["spec"], "Prometheus must not point at an Alertmanager that does not exist"


@pytest.mark.parametrize("release", RELEASES)
def test_node_exporter_runs_on_every_node(renderer, release):
    r = renderer.render(release, EACH)
    ds = one(r.objects, "DaemonSet", NAMES["NODE_EXPORTER_DAEMONSET"])
    tolerations = ds["spec"]["template"]["spec"].get("tolerations")
    missed = [t for t in TAINTS if not tolerates(tolerations, t)]
    assert not missed, f"node-exporter would not run on nodes tainted {missed} (tolerations {tolerations})"


@pytest.mark.parametrize("release", RELEASES)
def test_every_series_and_the_external_labels_carry_the_release_as_cluster(renderer, release):
    r = renderer.render(release, EACH)
    prom = one(r.objects, "Prometheus", NAMES["FULLNAME"])["spec"]
    label = NAMES["CLUSTER_LABEL"]
    assert prom["externalLabels"] == {label: release}
    defaults = [c for c in prom.get("scrapeClasses", []) if c.get("default")]
    assert len(defaults) == 1, f"need exactly one default scrape class, got {prom.get('scrapeClasses')}"
    target = {"__address__": "10.1.2.3:9100", "job": "node-exporter", label: "spoofed"}
    relabelled = apply_relabelings(defaults[0].get("relabelings", []), target)
    assert relabelled[label] == release, f"default scrape class relabelings give {relabelled}"
    assert prom["scrapeInterval"] == NAMES["SCRAPE_INTERVAL"]


@pytest.mark.parametrize("release", RELEASES)
def test_prometheus_is_published_on_the_documented_node_port(renderer, release):
    r = renderer.render(release, EACH)
    svc = one(r.objects, "Service", NAMES["PROMETHEUS_NODEPORT_SERVICE"])["spec"]
    assert svc["type"] == "NodePort"
    assert [(p["nodePort"], p["targetPort"]) for p in svc["ports"]] == [
        (int(NAMES["PROMETHEUS_NODE_PORT"]), NAMES["MTLS_PORT_NAME"])], svc["ports"]
    # The Service must select the pods of CMM's Prometheus CR.
    assert svc["selector"]["operator.prometheus.io/name"] == NAMES["FULLNAME"]
    # The main Service stays in the cluster, and it too leads to the proxy only.
    main = one(r.objects, "Service", NAMES["PROMETHEUS_SERVICE"])["spec"]
    assert main["type"] == "ClusterIP"
    web = [p for p in main["ports"] if p["name"] == "http-web"]
    assert web[0]["targetPort"] == NAMES["MTLS_PORT_NAME"], main["ports"]
    one(r.objects, "Deployment", NAMES["OPERATOR_DEPLOYMENT"])


@pytest.mark.parametrize("release", RELEASES)
def test_the_proxy_port_is_the_only_one_on_the_nodes(renderer, release):
    """Nothing else of the release is published on the nodes: no other NodePort (the chart
    gives every port of a NodePort Service one, the config-reloader's too), no hostPort but
    node-exporter's (see docs/security.md for what that one exposes)."""
    objs = renderer.render(release, EACH).objects
    node_ports = [(o["metadata"]["name"], p.get("name"), p["nodePort"])
                  for o in find(objs, "Service") for p in o["spec"].get("ports", [])
                  if "nodePort" in p or o["spec"].get("type") in ("NodePort", "LoadBalancer")]
    assert node_ports == [(NAMES["PROMETHEUS_NODEPORT_SERVICE"], "http-web",
                           int(NAMES["PROMETHEUS_NODE_PORT"]))], node_ports
    prom = one(objs, "Prometheus", NAMES["FULLNAME"])["spec"]
    # Prometheus itself answers on loopback only; the proxy container is the pod's one door.
    assert prom["listenLocal"] is True
    proxy = [c for c in prom["containers"] if c["name"] == "cmm-mtls-proxy"]
    assert [p["name"] for p in proxy[0]["ports"]] == [NAMES["MTLS_PORT_NAME"]]
    tls = [v for v in prom["volumes"] if v["name"] == "cmm-tls"][0]
    assert tls["secret"]["secretName"] == NAMES["PROMETHEUS_TLS_SECRET"]
    assert "optional" not in tls["secret"], "a pod without its certificate must wait, not serve"


@pytest.mark.parametrize("release", RELEASES)
def test_the_self_scrape_goes_through_the_proxy_with_its_own_certificate(renderer, release):
    objs = renderer.render(release, EACH).objects
    sm = one(objs, "ServiceMonitor", NAMES["PROMETHEUS_SERVICE"])["spec"]
    web = [e for e in sm["endpoints"] if e["port"] == "http-web"][0]
    assert web["scheme"] == "https"
    tls = web["tlsConfig"]
    assert tls["serverName"] == NAMES["PROMETHEUS_TLS_SERVER_NAME"]
    secret = NAMES["PROMETHEUS_TLS_SECRET"]
    assert (tls["cert"]["secret"], tls["keySecret"], tls["ca"]["secret"]) == (
        {"name": secret, "key": "client.crt"}, {"name": secret, "key": "client.key"},
        {"name": secret, "key": "ca.crt"})
    # The proxy admits this cluster's own self-scrape name and Grafana's, no other.
    conf = one(objs, "ConfigMap", "cmm-mtls-proxy")["data"]["nginx.conf"]
    admitted = re.findall(r'"~\(\^\|,\)CN=([a-z0-9-]+)\(,\|\$\)" 1;', conf)
    assert admitted == [NAMES["GRAFANA_CLIENT_CN"], f"cmm-self-{release}"], conf


def test_the_insecure_overlay_restores_plain_http_and_still_publishes_one_port(renderer):
    objs = renderer.render("kr-mum", EACH, OVERLAYS["insecure-plain-http"]).objects
    prom = one(objs, "Prometheus", NAMES["FULLNAME"])["spec"]
    assert prom["listenLocal"] is False and "containers" not in prom and "volumes" not in prom
    svc = one(objs, "Service", NAMES["PROMETHEUS_NODEPORT_SERVICE"])["spec"]
    assert [(p["nodePort"], p["targetPort"]) for p in svc["ports"]] == [(30090, 9090)]
    sm = one(objs, "ServiceMonitor", NAMES["PROMETHEUS_SERVICE"])["spec"]
    assert all("scheme" not in e and "tlsConfig" not in e for e in sm["endpoints"])
    assert not find(objs, "ConfigMap", "cmm-mtls-proxy")


@pytest.mark.parametrize("release", RELEASES)
def test_retention_resources_and_optional_storage(renderer, release):
    prom = one(renderer.render(release, EACH).objects, "Prometheus", NAMES["FULLNAME"])["spec"]
    assert prom["retention"] and prom["retentionSize"]
    assert prom["resources"]["requests"]["memory"] and prom["resources"]["limits"]["memory"]
    # No PVC unless the user opts in (documented storageSpec).
    assert "storage" not in prom


@pytest.mark.parametrize("release", RELEASES)
def test_node_exporter_job_label_is_the_same_everywhere(renderer, release):
    r = renderer.render(release, EACH)
    sm = one(r.objects, "ServiceMonitor", NAMES["NODE_EXPORTER_DAEMONSET"])["spec"]
    svc = one(r.objects, "Service", NAMES["NODE_EXPORTER_DAEMONSET"])
    assert svc["metadata"]["labels"][sm["jobLabel"]] == NAMES["NODE_EXPORTER_JOB"]


VARIANTS = {
    "base": ((), ()),
    "wsl": (("wsl",), ()),
    "kube-metrics": (("kube-metrics",), ()),
    "managed-control-plane": (("managed-control-plane",), ()),
    "kube-metrics+managed": (("kube-metrics", "managed-control-plane"), ()),
    "eks-1.28": (("kube-metrics", "managed-control-plane", "eks-control-plane"), ()),
    "seed-kube-metrics-flags": ((), SEED_KUBE_METRICS_SETS),
    "seed-node-selector": ((), SEED_NODE_SELECTOR_SETS),
}


def render_variant(renderer, release, variant):
    overlays, sets = VARIANTS[variant]
    return renderer.render(release, EACH, *(OVERLAYS[o] for o in overlays), sets=sets)


@pytest.mark.parametrize("variant", VARIANTS)
def test_object_names_do_not_depend_on_the_release_name(renderer, variant):
    a, b = (render_variant(renderer, rel, variant) for rel in RELEASES)
    assert by_kind_name(a.objects) == by_kind_name(b.objects)


KUBE_SERVICE_MONITORS = {"cmm-apiserver", "cmm-kubelet", "cmm-coredns"}
CONTROL_PLANE_MONITORS = {"cmm-kube-etcd", "cmm-kube-scheduler", "cmm-kube-controller-manager", "cmm-kube-proxy"}


def service_monitors(r):
    return {o["metadata"]["name"] for o in find(r.objects, "ServiceMonitor")}


def alert_names(r):
    return {
        rule.get("alert")
        for o in find(r.objects, "PrometheusRule")
        for g in o["spec"]["groups"]
        for rule in g.get("rules") or []
    }


@pytest.mark.parametrize("release", RELEASES)
def test_kube_metrics_are_off_by_default(renderer, release):
    r = renderer.render(release, EACH)
    assert not find(r.objects, "Deployment", "cmm-kube-state-metrics")
    assert service_monitors(r) == {"cmm-node-exporter", "cmm-prometheus", "cmm-operator"}
    # Nothing scrapes the components, so their absent()-alerts must not fire forever.
    silenced = {"KubeAPIDown", "KubeletDown", "KubeSchedulerDown", "KubeControllerManagerDown", "KubeProxyDown"}
    assert not silenced & alert_names(r)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_rule_group_is_left_empty(renderer, variant):
    r = render_variant(renderer, RELEASES[0], variant)
    empty = [o["metadata"]["name"] for o in find(r.objects, "PrometheusRule")
             for g in o["spec"]["groups"] if not g.get("rules")]
    assert not empty, f"{r.cmd}: PrometheusRules with an empty group (disable the group instead): {empty}"


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("variant", ["seed-kube-metrics-flags", "kube-metrics"])
def test_seed_flags_and_overlay_add_kube_state_metrics_and_kubernetes_monitors(renderer, release, variant):
    r = render_variant(renderer, release, variant)
    one(r.objects, "Deployment", "cmm-kube-state-metrics")
    sms = service_monitors(r)
    missing = (KUBE_SERVICE_MONITORS | CONTROL_PLANE_MONITORS | {"cmm-kube-state-metrics"}) - sms
    assert not missing, f"{r.cmd}: missing ServiceMonitors {missing}"


@pytest.mark.parametrize("release", RELEASES)
def test_overlay_matches_the_seed_flags_and_restores_the_down_alerts(renderer, release):
    flags = render_variant(renderer, release, "seed-kube-metrics-flags")
    overlay = render_variant(renderer, release, "kube-metrics")
    only_flags = set(by_kind_name(flags.objects)) - set(by_kind_name(overlay.objects))
    assert not only_flags, f"the overlay lacks what the seed's flags render: {only_flags}"
    extra = set(by_kind_name(overlay.objects)) - set(by_kind_name(flags.objects))
    # The overlay differs from the flags only by giving the components' down-alerts back.
    assert {k for k, _ in extra} <= {"PrometheusRule"}, extra
    want = {"KubeAPIDown", "KubeletDown", "KubeSchedulerDown", "KubeControllerManagerDown", "KubeProxyDown"}
    assert want <= alert_names(overlay), want - alert_names(overlay)


@pytest.mark.parametrize("release", RELEASES)
def test_wsl_overlay_drops_the_host_root_mount(renderer, release):
    def root_mounts(r):
        spec = one(r.objects, "DaemonSet", NAMES["NODE_EXPORTER_DAEMONSET"])["spec"]["template"]["spec"]
        return [v["name"] for v in spec.get("volumes", []) if v.get("hostPath", {}).get("path") == "/"]

    assert root_mounts(renderer.render(release, EACH)), "base render should mount / (else this test proves nothing)"
    wsl = render_variant(renderer, release, "wsl")
    assert not root_mounts(wsl), f"{wsl.cmd} still mounts the host's /"


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("variant", ["managed-control-plane", "kube-metrics+managed"])
def test_managed_control_plane_stops_scraping_unreachable_components(renderer, release, variant):
    r = render_variant(renderer, release, variant)
    assert not service_monitors(r) & CONTROL_PLANE_MONITORS, f"{r.cmd}: {service_monitors(r)}"
    groups = {g["name"] for o in find(r.objects, "PrometheusRule") for g in o["spec"]["groups"]}
    leftover = {g for g in groups if re.search("etcd|scheduler|controller-manager|kube-proxy", g)}
    assert not leftover, f"{r.cmd}: rule groups for unreachable components: {leftover}"
    assert not {"KubeSchedulerDown", "KubeControllerManagerDown", "KubeProxyDown"} & alert_names(r)
    if variant == "kube-metrics+managed":
        assert KUBE_SERVICE_MONITORS <= service_monitors(r), "apiserver/kubelet/coredns stay scraped"
        assert {"KubeAPIDown", "KubeletDown"} <= alert_names(r)


@pytest.mark.parametrize("release", RELEASES)
def test_eks_control_plane_is_scraped_through_the_api_server(renderer, release):
    """EKS 1.28+: the scheduler and controller-manager that managed-control-plane.yaml stopped
    scraping on their ports are read at metrics.eks.amazonaws.com through the `kubernetes`
    Service, with the ClusterRole rule the API server asks for."""
    r = render_variant(renderer, release, "eks-1.28")
    for name, res, job in [("cmm-eks-kube-scheduler", "ksh", "kube-scheduler"),
                           ("cmm-eks-kube-controller-manager", "kcm", "kube-controller-manager")]:
        spec = one(r.objects, "ServiceMonitor", name)["spec"]
        assert spec["selector"]["matchLabels"] == {"component": "apiserver", "provider": "kubernetes"}
        assert spec["namespaceSelector"] == {"matchNames": ["default"]}
        (ep,) = spec["endpoints"]
        assert ep["path"] == f"/apis/metrics.eks.amazonaws.com/v1/{res}/container/metrics"
        assert ep["port"] == "https" and ep["scheme"] == "https"
        assert {"targetLabel": "job", "replacement": job} in ep["relabelings"]
    # The chart's own apiserver ServiceMonitor selects the same Service: the labels are real.
    api = one(r.objects, "ServiceMonitor", "cmm-apiserver")["spec"]["selector"]["matchLabels"]
    assert api == {"component": "apiserver", "provider": "kubernetes"}
    rules = one(r.objects, "ClusterRole", NAMES["FULLNAME"] + "-prometheus")["rules"]
    assert {"apiGroups": ["metrics.eks.amazonaws.com"], "resources": ["kcm/metrics", "ksh/metrics"],
            "verbs": ["get"]} in rules
    # Still nothing on the components' own ports.
    assert not service_monitors(r) & CONTROL_PLANE_MONITORS


@pytest.mark.parametrize("release", RELEASES)
def test_seed_node_selector_example_pins_prometheus_and_operator(renderer, release):
    r = render_variant(renderer, release, "seed-node-selector")
    want = {"kr-mum/noderole": "kafka"}
    assert one(r.objects, "Prometheus", NAMES["FULLNAME"])["spec"]["nodeSelector"] == want
    op = one(r.objects, "Deployment", NAMES["OPERATOR_DEPLOYMENT"])
    assert op["spec"]["template"]["spec"]["nodeSelector"] == want


def test_rust_naming_constants_were_found():
    # If naming.rs is reshaped so the regex misses a constant, the tests above would KeyError;
    # this names the problem instead.
    for key in ("FULLNAME", "PROMETHEUS_SERVICE", "NODE_EXPORTER_DAEMONSET", "OPERATOR_DEPLOYMENT",
                "NODE_EXPORTER_JOB", "PROMETHEUS_NODE_PORT", "SCRAPE_INTERVAL", "CLUSTER_LABEL",
                "DEFAULT_NAMESPACE"):
        assert key in NAMES, f"core/src/naming.rs no longer declares {key} as a literal const"
    assert NAMES["DEFAULT_NAMESPACE"] == "monitor"


def leaves(tree, prefix=()):
    """(path, value) for every scalar or list in a values tree (lists are one value)."""
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from leaves(v, prefix + (k,))
    else:
        yield prefix, tree


def chart_default(chart_root, path):
    """The chart's default for a values path: the parent's values.yaml, else the subchart's."""
    import yaml

    parent = yaml.safe_load((chart_root / "values.yaml").read_text())
    node = parent
    for i, k in enumerate(path):
        if not isinstance(node, dict) or k not in node:
            sub = chart_root / "charts" / path[0] / "values.yaml"
            if i >= 1 and sub.exists():
                node = yaml.safe_load(sub.read_text())
                for k2 in path[1:]:
                    if not isinstance(node, dict) or k2 not in node:
                        return "<absent>"
                    node = node[k2]
                return node
            return "<absent>"
        node = node[k]
    return node


# Defaults restated on purpose, each for a reason a chart upgrade must not undo.
PINNED = {
    # The central datasource URLs (and core/src/naming.rs PROMETHEUS_NODE_PORT) depend on it.
    "prometheus.service.nodePort",
}


def test_each_cluster_holds_only_overrides(chart_root):
    import yaml

    same = [".".join(p) for p, v in leaves(yaml.safe_load(EACH.read_text()))
            if chart_default(chart_root, p) == v and ".".join(p) not in PINNED]
    assert not same, f"each_cluster.yaml repeats chart defaults (keep only CMM's overrides): {same}"


def lookup(tree, path):
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            return "<absent>"
        tree = tree[k]
    return tree


@pytest.mark.parametrize("path", OVERLAYS.values(), ids=lambda p: p.name)
def test_overlays_change_something(chart_root, path):
    """Every key of an overlay changes the result of chart defaults + each_cluster.yaml."""
    import yaml

    base = yaml.safe_load(EACH.read_text())
    same = []
    for p, v in leaves(yaml.safe_load(path.read_text())):
        effective = lookup(base, p)
        if effective == "<absent>":
            effective = chart_default(chart_root, p)
        if effective == v:
            same.append(".".join(p))
    assert not same, f"{path.name} sets keys to what they already are: {same}"


@pytest.mark.parametrize("files", [(), ("insecure-plain-http",)])
def test_two_replicas_share_one_node_port(renderer, files):
    """The chart's servicePerReplica gives every replica's Service the same nodePort: a second
    replica would clash on 30090. One Service spans every replica instead."""
    r = renderer.render(RELEASES[0], EACH, *(OVERLAYS[f] for f in files),
                        sets=("prometheus.prometheusSpec.replicas=2",))
    ported = [(o["metadata"]["name"], p["nodePort"]) for o in find(r.objects, "Service")
              for p in o["spec"].get("ports", []) if "nodePort" in p]
    assert ported == [("cmm-prometheus-0", 30090)], f"{r.cmd}: {ported}"
    svc = one(r.objects, "Service", "cmm-prometheus-0")
    # Every replica's pod: no per-pod selector.
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "cmm"}
    assert one(r.objects, "Prometheus", "cmm")["spec"]["replicas"] == 2
