"""Data flow with real processes: a real node_exporter scraped by a real Prometheus whose config is
generated from the RENDERED Prometheus CR (external labels and the default scrape class'
relabelings), so a series queried through the HTTP API proves the `cluster` label arrives.

Only 127.0.0.1; every wait is bounded; the processes are always killed.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from cmm_values import EACH, RELEASES, one, require_tool
from promql_lab import free_port, relabel
from test_each_cluster import NAMES

DEADLINE_S = 30.0


# One definition of the CR -> Prometheus translation, shared with the content lab.
relabel_to_prometheus = relabel


def prometheus_config(cr_spec: dict, job: str, target: str, scrape_interval: str) -> dict:
    default_classes = [c for c in cr_spec.get("scrapeClasses", []) if c.get("default")]
    assert len(default_classes) == 1, cr_spec.get("scrapeClasses")
    return {
        "global": {
            "scrape_interval": cr_spec["scrapeInterval"],
            "external_labels": cr_spec.get("externalLabels", {}),
        },
        "scrape_configs": [
            {
                "job_name": job,
                # Faster than the CR's interval only so the test does not wait 30 s for a scrape.
                "scrape_interval": scrape_interval,
                "static_configs": [{"targets": [target]}],
                "relabel_configs": [relabel_to_prometheus(r) for r in default_classes[0].get("relabelings", [])],
            }
        ],
    }


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def query(base: str, promql: str) -> list[dict]:
    body = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, probe, procs: dict[str, subprocess.Popen], logs: dict[str, Path]):
    deadline = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                pytest.fail(f"{name} exited with {p.returncode} while waiting for {what}:\n"
                            f"{logs[name].read_text()[-3000:]}")
        try:
            got = probe()
            if got:
                return got
            last = got
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.3)
    pytest.fail(f"timed out after {DEADLINE_S:.0f}s waiting for {what} (last: {last!r})")


@pytest.mark.parametrize("release", RELEASES)
def test_scraped_series_carry_the_cluster_label(renderer, scratch, release):
    node_exporter = require_tool("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    prometheus = require_tool("prometheus", "/usr/bin/prometheus")
    promtool = require_tool("promtool")

    cr = one(renderer.render(release, EACH).objects, "Prometheus", NAMES["FULLNAME"])["spec"]
    label = NAMES["CLUSTER_LABEL"]
    job = NAMES["NODE_EXPORTER_JOB"]
    ne_port, prom_port = free_port(), free_port()
    config = scratch / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(cr, job, f"127.0.0.1:{ne_port}", "1s")))
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"promtool rejects the config generated from the CR:\n{check.stdout}{check.stderr}"

    logs = {"node_exporter": scratch / "node_exporter.log", "prometheus": scratch / "prometheus.log"}
    procs: dict[str, subprocess.Popen] = {}
    try:
        with open(logs["node_exporter"], "w") as log:
            procs["node_exporter"] = subprocess.Popen(
                [node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        with open(logs["prometheus"], "w") as log:
            procs["prometheus"] = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={scratch / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{prom_port}"

        up = wait_for(
            f'up{{{label}="{release}"}} == 1',
            lambda: [s for s in query(base, f'up{{{label}="{release}"}}') if s["value"][1] == "1"],
            procs, logs,
        )
        assert up[0]["metric"]["job"] == job

        uname = query(base, "node_uname_info")
        assert uname, "node_exporter series missing"
        assert {s["metric"].get(label) for s in uname} == {release}, uname
        # Nothing leaks from the other release name.
        other = next(r for r in RELEASES if r != release)
        assert query(base, f'up{{{label}="{other}"}}') == []

        cfg = yaml.safe_load(get_json(f"{base}/api/v1/status/config")["data"]["yaml"])
        assert cfg["global"]["external_labels"] == {label: release}
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait(timeout=10)
