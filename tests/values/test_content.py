"""The central content (content/ -> values/central_content.yaml): generated without drift, carried
byte for byte through both of the notes' routes, small enough for a ConfigMap, valid against
Grafana's dashboard schema, and free of the repeated-row datasource trap.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from cmm_values import CENTRAL, CONTENT, REPO, RELEASES, TWO_CLUSTERS, datasources_value, find, one, require_tool

sys.path.insert(0, str(REPO / "scripts"))
import content as generator  # noqa: E402  (scripts/content.py)

SOURCES = REPO / "content"
DASHBOARDS = sorted((SOURCES / "dashboards").glob("*.json"))
PROVIDER_CM = "cmm-grafana-dashboards-cmm"
GRAFANA_CM = "cmm-grafana"
# Kubernetes refuses a ConfigMap whose data exceeds 1 MiB (k8s.io/api core/v1 ConfigMap docs;
# enforced as MaxSecretSize-like validation in pkg/apis/core/validation: validateConfigMap).
CONFIGMAP_LIMIT = 1024 * 1024
ROUTES = ("plain-helm", "envsubst-two-clusters")


class Yaml12Loader(yaml.SafeLoader):
    """YAML as Grafana's go-yaml reads it: a bare `=` (helm's toYaml of a matcher's operator)
    is a string, not PyYAML's YAML 1.1 `value` tag."""


Yaml12Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:value"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load12(text: str):
    return yaml.load(text, Loader=Yaml12Loader)


def render(renderer, release, route):
    if route == "plain-helm":
        return renderer.render(release, CENTRAL, CONTENT)
    return renderer.render_central_envsubst(release, datasources_value(TWO_CLUSTERS))


def test_generated_file_has_not_drifted_from_content():
    want = generator.render()
    assert CONTENT.read_text() == want, (
        f"values/central_content.yaml differs from what content/ gives: run `{generator.REGENERATE}`"
    )


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ROUTES)
def test_every_dashboard_arrives_byte_identical(renderer, release, route):
    r = render(renderer, release, route)
    data = one(r.objects, "ConfigMap", PROVIDER_CM)["data"]
    want = [f"{p.stem}.json" for p in DASHBOARDS] + [f"{generator.RUNBOOK_UID}.json"]
    assert sorted(data) == sorted(want), r.cmd
    for p in DASHBOARDS:
        # The chart writes `json` with `|-`: only the source's final newline is dropped.
        assert data[f"{p.stem}.json"] == p.read_text().rstrip("\n"), f"{r.cmd}: {p.name} changed on the way"
    runbook = generator.runbook_dashboard().rstrip("\n")
    assert data[f"{generator.RUNBOOK_UID}.json"] == runbook, f"{r.cmd}: the runbook changed on the way"


def test_envsubst_would_have_broken_the_dashboards(renderer):
    # Why the content is a second file: GNU envsubst blanks every reference, set or not.
    envsubst = renderer.envsubst_bin or require_tool("envsubst")
    text = CONTENT.read_text()
    out = subprocess.run([envsubst], input=text, capture_output=True, text=True, check=True).stdout
    assert "$__rate_interval" in text and "$__rate_interval" not in out


@pytest.mark.parametrize("route", ROUTES)
def test_alerting_files_arrive_as_written(renderer, route):
    r = render(renderer, RELEASES[0], route)
    cm = one(r.objects, "ConfigMap", GRAFANA_CM)["data"]
    contact = yaml.safe_load(cm["contactpoints.yaml"])
    assert contact == yaml.safe_load((SOURCES / "alerting" / "contact-points.yaml").read_text()), r.cmd
    policies = load12(cm["policies.yaml"])
    assert policies == yaml.safe_load((SOURCES / "alerting" / "policies.yaml").read_text()), r.cmd
    templates = yaml.safe_load(cm["templates.yaml"])["templates"]
    # The chart's `tpl` ran over it and left Grafana's own {{ ... }} intact.
    assert templates == [{"orgId": 1, "name": "cmm", "template": (SOURCES / "alerting" / "templates.tmpl").read_text()}]
    names = {c["name"] for c in contact["contactPoints"]}
    routes = policies["policies"][0]
    assert routes["receiver"] in names and {x["receiver"] for x in routes["routes"]} <= names
    assert routes["group_by"][0] == "cluster", "one notification is about one cluster"
    by_severity = {tuple(x["object_matchers"][0]): x["receiver"] for x in routes["routes"]}
    assert by_severity[("severity", "=", "critical")] == "cmm-critical"
    used = set(re.findall(r'template "([^"]+)"', cm["contactpoints.yaml"]))
    defined = set(re.findall(r'define "([^"]+)"', templates[0]["template"]))
    assert used and used <= defined, f"contact points use undefined templates: {used - defined}"


@pytest.mark.parametrize("route", ROUTES)
def test_contact_point_secrets_come_from_the_environment(renderer, route):
    r = render(renderer, RELEASES[0], route)
    cm = one(r.objects, "ConfigMap", GRAFANA_CM)["data"]
    for cp in yaml.safe_load(cm["contactpoints.yaml"])["contactPoints"]:
        for rcv in cp["receivers"]:
            secret_key = {"email": "addresses", "teams": "url"}[rcv["type"]]
            assert re.fullmatch(r"\$CMM_[A-Z_]+", rcv["settings"][secret_key]), rcv
    dep = one(r.objects, "Deployment", "cmm-grafana")
    grafana = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "grafana")
    # Required: without it the contact points would be provisioned with an empty address.
    assert {"secretRef": {"name": "cmm-grafana-alerting", "optional": False}} in grafana["envFrom"]


@pytest.mark.parametrize("route", ROUTES)
def test_every_configmap_fits_the_kubernetes_limit(renderer, route):
    r = render(renderer, RELEASES[0], route)
    for cm in find(r.objects, "ConfigMap"):
        size = sum(len(k.encode()) + len(v.encode()) for k, v in (cm.get("data") or {}).items())
        assert size < CONFIGMAP_LIMIT, f"ConfigMap {cm['metadata']['name']} holds {size} bytes"
    provider = one(r.objects, "ConfigMap", PROVIDER_CM)
    size = sum(len(v.encode()) for v in provider["data"].values())
    print(f"dashboard provider ConfigMap: {size} bytes of {CONFIGMAP_LIMIT}")


def _unknown_fields(src, round_trip, path=""):
    out = []
    if isinstance(src, dict):
        for k, v in src.items():
            if not isinstance(round_trip, dict) or k not in round_trip:
                out.append(f"{path}/{k}")
            else:
                out += _unknown_fields(v, round_trip[k], f"{path}/{k}")
    elif isinstance(src, list) and isinstance(round_trip, list):
        for i, (a, b) in enumerate(zip(src, round_trip)):
            out += _unknown_fields(a, b, f"{path}[{i}]")
    return out


def schema_problems(d: dict) -> list[str]:
    """Fields Grafana's dashboard schema does not know: the SDK's models (generated from the
    schema) drop them on a round trip."""
    from grafana_foundation_sdk.models.dashboard import Dashboard

    rt = json.loads(json.dumps(Dashboard.from_json(d).to_json(),
                               default=lambda o: o.to_json() if hasattr(o, "to_json") else str(o)))
    return _unknown_fields(d, rt)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_match_grafanas_schema(path):
    d = json.loads(path.read_text())
    assert schema_problems(d) == [], f"{path.name}: fields outside Grafana 11.3's dashboard schema"
    assert d["uid"] == path.stem and len(d["uid"]) <= 40
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"


def test_schema_check_catches_a_misspelt_field():
    d = json.loads(DASHBOARDS[0].read_text())
    d["panels"][1]["titel"] = "typo"
    assert schema_problems(d) == ["/panels[1]/titel"]


def _panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


def test_fleet_rows_each_query_their_own_datasource():
    d = json.loads((SOURCES / "dashboards" / "cmm-fleet-overview.json").read_text())
    variables = d["templating"]["list"]
    # grafana/grafana#87997: a query variable (label_values ...) used inside a repeated row is
    # resolved once, against the first datasource. The fleet dashboard therefore has none.
    assert [(v["name"], v["type"]) for v in variables] == [("datasource", "datasource")]
    assert variables[0]["multi"] and variables[0]["includeAll"]
    rows = [p for p in d["panels"] if p["type"] == "row"]
    assert len(rows) == 1 and rows[0]["repeat"] == "datasource"
    # Grafana repeats a row with everything below it up to the next row.
    in_row = [p for p in d["panels"] if p["type"] != "row"]
    assert in_row
    for ds in [name for name, _ in TWO_CLUSTERS]:
        # What Grafana does for each selected datasource: substitute it into the row's copy.
        copy = json.loads(json.dumps(in_row).replace("${datasource}", ds))
        for p in copy:
            assert p["datasource"]["uid"] == ds, p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == ds, (p["title"], t["refId"])
                used = set(re.findall(r"\$\{?(\w+)", t["expr"])) - {"__rate_interval", "__interval", "__range"}
                assert not used, f"{p['title']}: {used} would be resolved against another datasource"


def test_node_detail_variables_follow_the_datasource():
    d = json.loads((SOURCES / "dashboards" / "cmm-node-detail.json").read_text())
    v = {x["name"]: x for x in d["templating"]["list"]}
    assert list(v) == ["datasource", "cluster", "instance"]
    for name in ("cluster", "instance"):
        assert v[name]["datasource"]["uid"] == "${datasource}"
    assert '$cluster' in v["instance"]["query"]["query"]
    for p in _panels(d):
        for t in p["targets"]:
            assert 'instance="$instance"' in t["expr"] and 'cluster="$cluster"' in t["expr"], p["title"]


@pytest.mark.parametrize("route", ROUTES)
def test_grafana_com_dashboard_is_pinned_and_mapped(renderer, route):
    r = render(renderer, RELEASES[0], route)
    script = one(r.objects, "ConfigMap", GRAFANA_CM)["data"]["download_dashboards.sh"]
    spec = yaml.safe_load((SOURCES / "dashboards" / "grafana-com.yaml").read_text())["node-exporter-full"]
    url = f"https://grafana.com/api/dashboards/{spec['gnetId']}/revisions/{spec['revision']}/download"
    assert url in script
    # Revision 37 has no import placeholder to map (its panels read `${datasource}`, its own
    # variable): the download is stored as it comes, with no sed that would do nothing.
    download = script[script.index(url):]
    download = download[: download.index("node-exporter-full.json")]
    assert "sed" not in download and "DS_PROMETHEUS" not in script, download
    assert "/var/lib/grafana/dashboards/cmm/node-exporter-full.json" in script


@pytest.mark.parametrize("route", ROUTES)
def test_chart_dashboards_show_the_cluster_variable_in_the_cmm_folder(renderer, route):
    r = render(renderer, RELEASES[0], route)
    node = json.loads(one(r.objects, "ConfigMap", "cmm-node-rsrc-use")["data"]["node-rsrc-use.json"])
    cluster = next(v for v in node["templating"]["list"] if v["name"] == "cluster")
    assert cluster["hide"] == 0, "multicluster switch off: the cluster variable is hidden"
    providers = yaml.safe_load(one(r.objects, "ConfigMap", "cmm-grafana-config-dashboards")["data"]["provider.yaml"])
    assert {p["folder"] for p in providers["providers"]} == {"CMM"}


def test_every_alert_has_a_runbook_section():
    rules = yaml.safe_load((SOURCES / "rules" / "cluster-rules.yaml").read_text())
    alerts = [r["alert"] for r in rules["reachability"] + rules["rules"]] + [
        rules["fleet"]["alert"], rules["silent"]["alert"]]
    sections = re.findall(r"^## (\w+)$", (REPO / "docs" / "runbook.md").read_text(), re.M)
    assert sorted(sections) == sorted(alerts), "docs/runbook.md needs exactly one section per alert"
    for a in alerts:
        assert re.fullmatch(r"Cmm[A-Z][A-Za-z]+", a), a


def test_the_runbook_is_served_by_grafana_one_panel_per_alert_in_the_rules_order():
    """Each rule's runbook_url (core/src/content.rs) is `<grafana>/d/cmm-runbook?viewPanel=<n>`,
    n counting docs/runbook.md's sections from 1: the dashboard must have that panel, titled
    with that alert, holding that section's text, and pass Grafana's schema."""
    d = json.loads(generator.runbook_dashboard())
    assert schema_problems(d) == [], "the runbook dashboard is outside Grafana 11.3's schema"
    md = (REPO / "docs" / "runbook.md").read_text()
    sections = re.findall(r"^## (\w+)$", md, re.M)
    assert [(p["id"], p["title"]) for p in d["panels"]] == [(i + 1, a) for i, a in enumerate(sections)]
    node_down = next(p for p in d["panels"] if p["title"] == "CmmNodeDown")
    assert node_down["type"] == "text" and node_down["options"]["mode"] == "markdown"
    assert "node-exporter on a node has not been scraped" in node_down["options"]["content"]
    assert not re.search(r"\]\([a-z-]+\.md\)", json.dumps(d)), "links to files Grafana does not serve"
