"""The growth paths, rendered by the real helm and chart: push (overlays/push.yaml, agent-mode.yaml
on the clusters, central-receiver-victoriametrics.yaml or central-receiver.yaml on the central node) and Thanos (thanos-sidecar.yaml,
thanos-object-storage.yaml on the clusters, thanos-query.yaml on the central node). Nothing of
Thanos runs here: these renders and their schema checks are what is verified of it."""

from __future__ import annotations

import re

import pytest
import yaml

from cmm_values import CENTRAL, CONTENT, EACH, OVERLAYS as ENV_OVERLAYS, RELEASES, TOPOLOGY_OVERLAYS, HelmError, find, obj_id, one

OVERLAYS = {**ENV_OVERLAYS, **TOPOLOGY_OVERLAYS}
from test_schemas import validate_all

RECEIVER_URL = "https://10.0.0.5:30091/api/v1/write"
PUSH_SETS = (f"cmm.receiverUrl={RECEIVER_URL}",)

CLUSTER_VARIANTS = {
    "push": (("push",), PUSH_SETS),
    "push-agent": (("push", "agent-mode"), PUSH_SETS),
    "thanos": (("thanos-sidecar",), ()),
    "thanos-object-storage": (("thanos-sidecar", "thanos-object-storage"), ()),
}
CENTRAL_VARIANTS = {
    "receiver": "central-receiver",
    "receiver-victoriametrics": "central-receiver-victoriametrics",
    "thanos-query": "thanos-query",
}


def render_cluster(renderer, release, variant):
    overlays, sets = CLUSTER_VARIANTS[variant]
    return renderer.render(release, EACH, *(OVERLAYS[o] for o in overlays), sets=sets)


def render_central(renderer, release, variant):
    # Plain helm, as the overlays' headers show: no envsubst, the overlay gives the datasource.
    return renderer.render(release, CENTRAL, OVERLAYS[CENTRAL_VARIANTS[variant]], CONTENT)


def prometheus_cr(r):
    crs = [o for o in r.objects if o["kind"] in ("Prometheus", "PrometheusAgent")]
    assert len(crs) == 1, f"{r.cmd}: {[obj_id(o) for o in crs]}"
    return crs[0]


def node_ports(r):
    return sorted(
        (p["nodePort"], o["metadata"]["name"], p["name"])
        for o in find(r.objects, "Service")
        for p in o["spec"].get("ports", [])
        if "nodePort" in p
    )


def datasources(r):
    # cmm-grafana-datasource; cmm-receiver-grafana-datasource in push (the receiver's fullname).
    [cm] = [o for o in find(r.objects, "ConfigMap") if o["metadata"]["name"].endswith("-grafana-datasource")]
    return yaml.safe_load(cm["data"]["datasource.yaml"]).get("datasources") or []


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("variant", CLUSTER_VARIANTS)
def test_cluster_topology_renders_validate(renderer, crd_dir, release, variant):
    r = render_cluster(renderer, release, variant)
    errors = validate_all(r.objects, crd_dir, r.cmd)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("variant", CENTRAL_VARIANTS)
def test_central_topology_renders_validate(renderer, crd_dir, release, variant):
    r = render_central(renderer, release, variant)
    errors = validate_all(r.objects, crd_dir, r.cmd)
    assert not errors, "\n".join(errors)


def test_push_without_a_receiver_url_stops_helm_naming_the_key(renderer):
    with pytest.raises(HelmError) as e:
        renderer.render(RELEASES[0], EACH, OVERLAYS["push"])
    assert "cmm.receiverUrl is required" in str(e.value)


@pytest.mark.parametrize("variant", ["push", "push-agent"])
def test_push_writes_to_the_receiver_with_the_clusters_own_certificate(renderer, variant):
    r = render_cluster(renderer, "kr-mum", variant)
    spec = prometheus_cr(r)["spec"]
    [rw] = spec["remoteWrite"]
    assert rw["url"] == RECEIVER_URL
    tls = rw["tlsConfig"]
    assert tls["serverName"] == "cmm-receiver"
    assert tls["cert"]["secret"] == {"name": "cmm-prometheus-tls", "key": "client.crt"}
    assert tls["keySecret"] == {"name": "cmm-prometheus-tls", "key": "client.key"}
    # The cluster label survives: on every scraped series (scrape class) and as external label,
    # and no write relabeling drops or rewrites it.
    assert spec["externalLabels"] == {"cluster": "kr-mum"}
    [cls] = spec["scrapeClasses"]
    assert cls["relabelings"][0]["targetLabel"] == "cluster" and cls["relabelings"][0]["replacement"] == "kr-mum"
    assert "writeRelabelConfigs" not in rw
    # Still only the proxy's port on the nodes, with Prometheus on loopback.
    assert spec["listenLocal"] is True
    assert [p[0] for p in node_ports(r)] == [30090]


def test_agent_mode_is_a_prometheus_agent_with_nothing_left_to_evaluate(renderer):
    r = render_cluster(renderer, "kr-mum", "push-agent")
    cr = prometheus_cr(r)
    assert cr["kind"] == "PrometheusAgent"
    assert not find(r.objects, "PrometheusRule")
    # The chart points its Services at the agent's pods.
    svc = one(r.objects, "Service", "cmm-prometheus-0")
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "prometheus-agent",
                                       "operator.prometheus.io/name": "cmm"}
    assert [c["name"] for c in cr["spec"]["containers"]] == ["cmm-mtls-proxy"]


@pytest.mark.parametrize("release", RELEASES)
def test_receiver_is_a_protected_prometheus_and_grafanas_one_datasource(renderer, release):
    r = render_central(renderer, release, "receiver")
    spec = prometheus_cr(r)["spec"]
    assert spec["enableRemoteWriteReceiver"] is True
    assert spec["listenLocal"] is True
    assert [c["name"] for c in spec["containers"]] == ["cmm-mtls-proxy"]
    assert spec["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # Nothing scraped on the central node: no node-exporter, no ServiceMonitor.
    assert not find(r.objects, "DaemonSet") and not find(r.objects, "ServiceMonitor")
    assert node_ports(r) == [(30091, "cmm-receiver-external", "http-web")]
    assert one(r.objects, "Service", "cmm-receiver-external")["spec"]["ports"][0]["targetPort"] == "cmm-mtls"
    # Grafana's URL names the chart's Service of the receiver's Prometheus.
    assert one(r.objects, "Service", "cmm-receiver-prometheus")
    [ds] = datasources(r)
    assert ds["uid"] == "cmm_receiver" and ds["url"] == f"https://cmm-receiver-prometheus.monitor.svc:9090"
    assert ds["jsonData"]["tlsAuth"] and ds["jsonData"]["serverName"] == "cmm-receiver"
    assert ds["secureJsonData"]["tlsClientKey"] == "$CMM_TLS_CLIENT_KEY"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["cmm-tls"]["secret"]["secretName"] == "cmm-receiver-tls"
    conf = one(r.objects, "ConfigMap", vols["cmm-proxy"]["configMap"]["name"])["data"]["nginx.conf"]
    # Writes only from a cluster's own certificate; reads only from Grafana's.
    assert "location = /api/v1/write" in conf and "$cmm_role != writer" in conf
    assert "$cmm_role != reader" in conf


@pytest.mark.parametrize("release", RELEASES)
def test_victoriametrics_receiver_stamps_the_writers_name_and_is_grafanas_one_datasource(renderer, release):
    r = render_central(renderer, release, "receiver-victoriametrics")
    # No operator and no Prometheus on the central node: one StatefulSet of the release.
    assert not [o for o in r.objects if o["kind"] in ("Prometheus", "PrometheusAgent")]
    assert not find(r.objects, "DaemonSet") and not find(r.objects, "ServiceMonitor")
    assert not [d for d in find(r.objects, "Deployment") if "operator" in d["metadata"]["name"]]
    sts = one(r.objects, "StatefulSet", "cmm-receiver-vm")
    pod = sts["spec"]["template"]["spec"]
    vm, proxy = pod["containers"]
    assert vm["name"] == "victoria-metrics" and vm["image"].endswith(":v1.79.5")
    # Only the proxy is the way in; the store answers on the pod's loopback.
    assert "-httpListenAddr=127.0.0.1:8428" in vm["args"]
    assert [p["containerPort"] for p in proxy["ports"]] == [9443, 8429]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/health", "port": "health"}
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert node_ports(r) == [(30091, "cmm-receiver-external", "http-web")]
    [ds] = datasources(r)
    assert ds["uid"] == "cmm_receiver" and ds["url"] == "https://cmm-receiver-vm.monitor.svc:9443"
    assert ds["jsonData"]["serverName"] == "cmm-receiver"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["cmm-tls"]["secret"]["secretName"] == "cmm-receiver-tls"
    conf = one(r.objects, "ConfigMap", vols["cmm-proxy"]["configMap"]["name"])["data"]["nginx.conf"]
    # The writer's name is the only cluster label a write can carry; readers see a list.
    assert "extra_label=cluster=$cmm_writer;" in conf
    assert re.search(r"location / \{\s*return 403;\s*\}", conf), "paths outside the list are not refused"


@pytest.mark.parametrize("overlay", ["central-receiver", "central-receiver-victoriametrics"])
def test_receiver_names_no_cluster(renderer, overlay):
    # One file for every fleet: adding a cluster changes nothing on the central node.
    text = (OVERLAYS[overlay]).read_text()
    assert "kr-mum" not in text and "wai-eks" not in text


@pytest.mark.parametrize("release", RELEASES)
def test_thanos_sidecar_serves_grpc_with_mutual_tls_on_one_node_port(renderer, release):
    r = render_cluster(renderer, release, "thanos")
    spec = prometheus_cr(r)["spec"]
    t = spec["thanos"]
    assert t["grpcServerTlsConfig"] == {
        "certFile": "/etc/cmm-tls/tls.crt", "keyFile": "/etc/cmm-tls/tls.key", "caFile": "/etc/cmm-tls/ca.crt"}
    # The files come from the pod's Secret volume, mounted into the sidecar by name.
    [vm] = t["volumeMounts"]
    assert vm["mountPath"] == "/etc/cmm-tls"
    vol = next(v for v in spec["volumes"] if v["name"] == vm["name"])
    assert vol["secret"]["secretName"] == "cmm-prometheus-tls"
    assert t["httpListenLocal"] is True
    ports = node_ports(r)
    assert (30901, "cmm-thanos-external", "grpc") in ports
    assert len({p[0] for p in ports}) == len(ports), f"two Services on one node port: {ports}"
    assert "objectStorageConfig" not in t


def test_both_thanos_services_on_node_ports_do_not_collide(renderer):
    # The chart gives both Thanos Services the same node ports by default; the overlay moves one.
    r = renderer.render("kr-mum", EACH, OVERLAYS["thanos-sidecar"],
                        sets=("prometheus.thanosService.enabled=true", "prometheus.thanosService.type=NodePort"))
    ports = node_ports(r)
    assert len({p[0] for p in ports}) == len(ports), f"two Services on one node port: {ports}"


def test_object_storage_is_an_existing_secret_never_a_value(renderer):
    r = render_cluster(renderer, "kr-mum", "thanos-object-storage")
    t = prometheus_cr(r)["spec"]["thanos"]
    assert t["objectStorageConfig"] == {"name": "cmm-thanos-objstore", "key": "objstore.yml"}
    assert not [o for o in find(r.objects, "Secret") if "objstore" in o["metadata"]["name"]]


@pytest.mark.parametrize("release", RELEASES)
def test_thanos_query_reads_registered_endpoints_with_grafanas_certificate(renderer, release):
    r = render_central(renderer, release, "thanos-query")
    dep = one(r.objects, "Deployment", "cmm-thanos-query")
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    args = c["args"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    sd = next(a.split("=", 1)[1] for a in args if a.startswith("--store.sd-files="))
    assert sd == mounts["endpoints"] + "/*.yaml"
    assert vols["endpoints"]["configMap"] == {"name": "cmm-thanos-endpoints", "optional": True}
    assert "--grpc-client-tls-secure" in args
    flag = lambda name: next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))
    assert flag("grpc-client-tls-cert").startswith(mounts["client"] + "/")
    assert vols["client"]["secret"]["secretName"] == "cmm-grafana-client"
    # Only the CA bundle of cmm-ca reaches the pod, never the CA key.
    assert vols["ca"]["secret"]["items"] == [{"key": "trust.crt", "path": "trust.crt"}]
    assert flag("grpc-client-tls-ca") == mounts["ca"] + "/trust.crt"
    # Same Thanos release as the sidecars.
    sidecar = yaml.safe_load(OVERLAYS["thanos-sidecar"].read_text())
    assert c["image"].endswith(":" + sidecar["prometheus"]["prometheusSpec"]["thanos"]["version"])
    [ds] = datasources(r)
    assert ds["uid"] == "cmm_thanos" and ds["url"] == "http://cmm-thanos-query.monitor.svc:10902"
    # No Prometheus, operator or CRDs on the central node in this topology.
    assert not [o for o in r.objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not find(r.objects, "CustomResourceDefinition")
    np = one(r.objects, "NetworkPolicy", "cmm-thanos-query")
    assert np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "grafana"}


def effective_before(chart_default, chart_root, base: dict, path):
    tree = base
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            return chart_default(chart_root, path)
        tree = tree[k]
    return tree


@pytest.mark.parametrize("overlay,base", [
    ("push", EACH), ("agent-mode", EACH), ("thanos-sidecar", EACH), ("thanos-object-storage", EACH),
    ("central-receiver", CENTRAL), ("central-receiver-victoriametrics", CENTRAL), ("thanos-query", CENTRAL),
])
def test_topology_overlays_hold_only_overrides(chart_root, overlay, base):
    from test_each_cluster import chart_default, leaves

    base_values = yaml.safe_load(base.read_text())
    values = yaml.safe_load(OVERLAYS[overlay].read_text())
    same = [".".join(p) for p, v in leaves(values)
            if p[0] != "cmm" and effective_before(chart_default, chart_root, base_values, p) == v]
    assert not same, f"overlays/{overlay}.yaml repeats what is already in force: {same}"
