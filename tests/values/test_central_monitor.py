"""values/central_monitor.yaml: Grafana only, cluster datasources through the real envsubst."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from cmm_values import (
    CENTRAL,
    CONTENT,
    RELEASES,
    TWO_CLUSTERS,
    HelmError,
    datasources_value,
    find,
    obj_id,
    one,
    require_tool,
)

DATASOURCE_CM = "cmm-grafana-datasource"
GRAFANA = "cmm-grafana"


def rust_datasources_value(clusters):
    """CMM_DATASOURCES exactly as the agent builds it (installer/src/fleet.rs datasources_block):
    "\\n    - " + compact JSON per cluster, in the shape of core/src/datasource.rs."""
    out = ""
    for name, url in clusters:
        ds = {"name": name, "uid": f"cmm-{name}", "type": "prometheus", "access": "proxy", "url": url,
              "isDefault": False, "jsonData": {"httpMethod": "POST", "timeInterval": "30s"}}
        out += "\n    - " + json.dumps(ds, separators=(",", ":"))
    return out


# How central_monitor.yaml reaches helm: the seed's plain `-f`, and its envsubst pipe.
ROUTES = {
    "plain-helm": None,
    "envsubst-unset": ("unset",),
    "envsubst-two-clusters": ("yaml", TWO_CLUSTERS),
    "envsubst-agent-json": ("json", TWO_CLUSTERS),
}


def render_route(renderer, release, route):
    spec = ROUTES[route]
    if spec is None:
        return renderer.render(release, CENTRAL, CONTENT)
    if spec[0] == "unset":
        return renderer.render_central_envsubst(release, None)
    value = datasources_value(spec[1]) if spec[0] == "yaml" else rust_datasources_value(spec[1])
    return renderer.render_central_envsubst(release, value)


def datasources(r) -> list[dict]:
    cm = one(r.objects, "ConfigMap", DATASOURCE_CM)
    doc = yaml.safe_load(cm["data"]["datasource.yaml"])
    assert doc["apiVersion"] == 1
    return doc.get("datasources") or []


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ROUTES)
def test_central_renders_grafana_only(renderer, release, route):
    r = render_route(renderer, release, route)
    crs = [obj_id(o) for o in r.objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not crs, f"{r.cmd}: monitoring.coreos.com objects on the central node: {crs}"
    not_grafana = [
        obj_id(o)
        for o in r.objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "grafana"
        and not o["metadata"].get("labels", {}).get("app", "").endswith("-grafana")
    ]
    assert not not_grafana, f"{r.cmd}: objects that are not Grafana's: {not_grafana}"
    workloads = [obj_id(o) for o in r.objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")]
    assert workloads == [f"Deployment/{GRAFANA}"]
    assert not [o for o in r.objects if o["kind"] == "CustomResourceDefinition"]


@pytest.mark.parametrize("release", RELEASES)
def test_grafana_keeps_ui_dashboards_on_one_pvc_and_recreates(renderer, release):
    r = renderer.render(release, CENTRAL)
    pvcs = find(r.objects, "PersistentVolumeClaim")
    assert [p["metadata"]["name"] for p in pvcs] == [GRAFANA]
    dep = one(r.objects, "Deployment", GRAFANA)
    assert dep["spec"]["strategy"]["type"] == "Recreate", "RWO volume + RollingUpdate deadlocks"
    vols = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "storage", "persistentVolumeClaim": {"claimName": GRAFANA}} in vols


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ["plain-helm", "envsubst-unset"])
def test_no_cluster_datasources_without_cmm_datasources(renderer, release, route):
    r = render_route(renderer, release, route)
    assert datasources(r) == [], f"{r.cmd}: the chart's default/Alertmanager datasources must be off"


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ["envsubst-two-clusters", "envsubst-agent-json"])
def test_envsubst_gives_exactly_the_clusters_given(renderer, release, route):
    r = render_route(renderer, release, route)
    got = {d["uid"]: d for d in datasources(r)}
    assert sorted(got) == ["cmm-kr-mum", "cmm-wai-eks"], f"{r.cmd}: {sorted(got)}"
    for name, url in TWO_CLUSTERS:
        d = got[f"cmm-{name}"]
        assert (d["name"], d["type"], d["access"], d["url"]) == (name, "prometheus", "proxy", url)
        assert d["jsonData"] == {"httpMethod": "POST", "timeInterval": "30s"}
    assert not [d for d in got.values() if d.get("isDefault")], "no datasource may claim to be the default"


def test_the_file_has_exactly_one_envsubst_reference_in_a_comment(renderer):
    text = CENTRAL.read_text()
    refs = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assert refs == {"CMM_DATASOURCES"}, f"envsubst would replace every one of {refs}"
    assert text.count("$") == 1, "any other $ would be eaten or mangled by envsubst"
    # GNU envsubst agrees on what it would substitute (`--variables` lists a format's references).
    if renderer.envsubst_bin is None:
        renderer.envsubst_bin = require_tool("envsubst")
    listed = subprocess.run([renderer.envsubst_bin, "--variables", text], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["CMM_DATASOURCES"], listed.stdout
    line = next(ln for ln in text.splitlines() if "$" in ln)
    key, _, comment = line.partition("#")
    assert key.strip() == "additionalDataSources:", f"the reference must trail the key in a comment: {line!r}"
    assert "CMM_DATASOURCES" in comment


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ROUTES)
def test_no_secret_literal_in_the_render(renderer, release, route):
    r = render_route(renderer, release, route)
    assert "prom-operator" not in r.text, "the chart's default admin password leaked into the render"
    assert not find(r.objects, "Secret"), "no Secret may be rendered from values (they are created beforehand)"
    dep = one(r.objects, "Deployment", GRAFANA)
    containers = dep["spec"]["template"]["spec"]["containers"]
    for c in containers:
        for e in c.get("env", []):
            if re.search("PASSWORD|SECRET|TOKEN|_USER$", e["name"]):
                assert "value" not in e, f"{c['name']}: env {e['name']} has a literal value"
                assert e["valueFrom"]["secretKeyRef"]["name"] == "cmm-grafana-admin", e
    grafana = next(c for c in containers if c["name"] == "grafana")
    assert {"secretRef": {"name": "cmm-grafana-smtp", "optional": True}} in grafana.get("envFrom", [])
    ini = one(r.objects, "ConfigMap", GRAFANA)["data"]["grafana.ini"]
    assert not re.search(r"(?im)^\s*password\s*=", ini), f"a password in grafana.ini:\n{ini}"


def test_leaked_secret_guard_is_still_armed(renderer):
    # assertNoLeakedSecrets must stay on: a literal SMTP password makes the render fail.
    with pytest.raises(HelmError, match="smtp.password"):
        renderer.render(RELEASES[0], CENTRAL, sets=("grafana.grafana\\.ini.smtp.password=hunter2",))


@pytest.mark.parametrize("release", RELEASES)
def test_dashboard_provider_and_alerting_sections_are_valid(renderer, release):
    r = renderer.render(release, CENTRAL, CONTENT)
    cm = one(r.objects, "ConfigMap", GRAFANA)["data"]
    providers = yaml.safe_load(cm["dashboardproviders.yaml"])["providers"]
    cmm = next(p for p in providers if p["name"] == "cmm")
    dep = one(r.objects, "Deployment", GRAFANA)
    grafana = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "grafana")
    mounts = {m["mountPath"] for m in grafana["volumeMounts"]}
    # The provider directory lives on the PVC and must exist when Grafana starts: the chart's
    # download-dashboards init container creates it on the same volume.
    path = cmm["options"]["path"]
    storage = {m["mountPath"]: m["name"] for m in grafana["volumeMounts"]}["/var/lib/grafana"]
    assert path.startswith("/var/lib/grafana/") and storage == "storage"
    init = {c["name"]: c for c in dep["spec"]["template"]["spec"].get("initContainers", [])}
    assert {"name": "storage", "mountPath": "/var/lib/grafana"} in init["download-dashboards"]["volumeMounts"]
    assert f"mkdir -p {path}" in cm["download_dashboards.sh"], f"nothing creates {path}"
    contact = yaml.safe_load(cm["contactpoints.yaml"])
    assert contact["apiVersion"] == 1 and {c["name"] for c in contact["contactPoints"]} >= {"cmm-critical"}
    assert "/etc/grafana/provisioning/alerting/contactpoints.yaml" in mounts
    # Node dashboards ship although no node-exporter runs centrally.
    assert find(r.objects, "ConfigMap", "cmm-nodes")


@pytest.mark.parametrize("route", ROUTES)
def test_central_names_do_not_depend_on_the_release_name(renderer, route):
    a, b = (render_route(renderer, rel, route) for rel in RELEASES)
    assert sorted(map(obj_id, a.objects)) == sorted(map(obj_id, b.objects))


def test_central_holds_only_overrides(chart_root):
    from test_each_cluster import chart_default, leaves

    values = yaml.safe_load(CENTRAL.read_text())
    same = [".".join(p) for p, v in leaves(values) if chart_default(chart_root, p) == v]
    assert not same, f"central_monitor.yaml repeats chart defaults: {same}"


@pytest.mark.parametrize("release", RELEASES)
def test_an_mtls_datasource_takes_grafanas_certificate_from_the_environment(renderer, release):
    """The envsubst route to a cluster behind the mutual-TLS proxy: the datasource names three
    environment variables (Grafana expands `$NAME` in provisioning files), and Grafana's
    Deployment gets them from the Secrets the agent makes, optional so a Grafana without them
    still starts. No certificate or key reaches the render."""
    ds = {"name": "kr-mum", "uid": "cmm-kr-mum", "type": "prometheus", "access": "proxy",
          "url": "https://10.0.0.11:30090", "isDefault": False,
          "jsonData": {"httpMethod": "POST", "timeInterval": "30s", "tlsAuth": True,
                       "tlsAuthWithCACert": True},
          "secureJsonData": {"tlsClientCert": "$CMM_TLS_CLIENT_CERT",
                             "tlsClientKey": "$CMM_TLS_CLIENT_KEY", "tlsCACert": "$CMM_TLS_CA"}}
    r = renderer.render_central_envsubst(release, "\n    - " + json.dumps(ds, separators=(",", ":")))
    got = datasources(r)[0]
    # envsubst does not rescan what it put in: the references reach Grafana as written.
    assert got["secureJsonData"] == ds["secureJsonData"], got
    containers = one(r.objects, "Deployment", GRAFANA)["spec"]["template"]["spec"]["containers"]
    grafana = next(c for c in containers if c["name"] == "grafana")
    env = {e["name"]: e for e in grafana.get("env", [])}
    want = {"CMM_TLS_CLIENT_CERT": ("cmm-grafana-client", "tls.crt"),
            "CMM_TLS_CLIENT_KEY": ("cmm-grafana-client", "tls.key"),
            "CMM_TLS_CA": ("cmm-ca", "trust.crt")}
    for name, (secret, key) in want.items():
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref.get("optional")) == (secret, key, True), env[name]
    assert "BEGIN" not in r.text


def test_the_documented_root_url_reaches_grafana_ini(renderer):
    """docs/values.md's one value for the plain-helm route, as bootstrap --role central sets it
    from --grafana-url (installer/src/set.rs): Grafana builds every notification's links from it."""
    docs = (CENTRAL.parents[1] / "docs" / "values.md").read_text()
    documented = re.search(r"--set '(grafana\.grafana\\\.ini\.server\.root_url=[^']+)'", docs)
    assert documented, "docs/values.md shows the root_url --set"
    r = renderer.render(RELEASES[0], CENTRAL, CONTENT, sets=(documented.group(1),))
    ini = one(r.objects, "ConfigMap", GRAFANA)["data"]["grafana.ini"]
    server = ini[ini.index("[server]"):].split("\n[")[0]
    assert "\nroot_url = https://grafana.example.org/" in server, ini
