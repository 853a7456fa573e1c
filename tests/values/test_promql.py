"""Proof on real data: every PromQL expression of every shipped dashboard and rule, with Grafana's
variables filled in, evaluated by a real Prometheus scraping a real node_exporter set up from the
rendered values (promql_lab.py). Plus the dropped-series guard for each_cluster.yaml's metric
relabelings.

`python tests/values/promql_lab.py report` prints every expression with its outcome.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from cmm_values import require_tool
from promql_lab import Lab, free_port, metric_names

# CMM expressions that cannot return data here, and why. Anything else that returns nothing fails.
CMM_NO_DATA_HERE = {
    "rule CmmPodCrashLooping": "kube_pod_container_status_waiting_reason",
    "rule CmmDaemonSetNotScheduled": "kube_daemonset_status_desired_number_scheduled",
}
# The chart's node dashboards CMM ships on the central node (the rest are Kubernetes dashboards,
# which need kube-state-metrics, kubelet and apiserver metrics, none of which run here).
CHART_NODE_DASHBOARDS = ("chart dashboard node-rsrc-use", "chart dashboard node-cluster-rsrc-use",
                         "chart dashboard nodes /")


@pytest.fixture(scope="module")
def lab(helm_bin, chart_dir):
    node_exporter = require_tool("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    prometheus = require_tool("prometheus", "/usr/bin/prometheus")
    promtool = require_tool("promtool")
    victoria_metrics = require_tool("victoria-metrics", "/usr/bin/victoria-metrics")
    with Lab(helm_bin, chart_dir, node_exporter, prometheus, promtool, victoria_metrics) as lab:
        yield lab


@pytest.fixture(scope="module")
def outcomes(lab):
    return lab.evaluate(lab.shipped_queries())


def test_every_shipped_expression_parses(outcomes):
    bad = [f"{o.query.origin}: {o.error}" for o in outcomes if o.error and not o.query.expr.startswith("<")]
    assert not bad, "\n".join(bad)
    kinds = {o.query.kind for o in outcomes}
    assert kinds == {"cmm-dashboard", "cmm-rule", "chart-dashboard", "chart-recording", "chart-alert"}


def test_every_query_with_data_answers_alike_on_victoriametrics(lab, outcomes):
    """Push stores in VictoriaMetrics by default: each shipped dashboard query and rule that
    returns data from the cluster's Prometheus returns data there too, for the same series
    (by their labels, the metric name aside: VictoriaMetrics keeps it where Prometheus drops it
    in a few functions, and no panel or rule reads it)."""
    checked, bad = 0, []
    for o in outcomes:
        if o.query.kind not in ("cmm-dashboard", "cmm-rule", "chart-dashboard") or o.error or not o.series:
            continue
        checked += 1
        def labelsets(res):
            return sorted(tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")) for r in res)
        # Both are asked at one instant a few seconds back, when the samples up to it have
        # reached VictoriaMetrics (remote write sends within ~1 s; a loaded machine lags): at
        # "now" each store answers from its own latest sample, and a panel's `!= 0` (an idle
        # disk's IO rate) then keeps a series on one and drops it on the other. A loaded
        # machine may lag longer, so a difference is asked again, a few seconds later, twice.
        for attempt in range(3):
            at = time.time() - 5
            prom, _ = lab.query(o.query.expr, at)
            vm, err = lab.query_vm(o.query.expr, at)
            # VictoriaMetrics leaves out a series whose value is NaN (an idle interface's 0/0
            # in CmmNetworkErrors; its CHANGELOG and app/vmselect/promql/exec.go): no threshold
            # a rule compares NaN with is ever crossed, so the alert fires alike on both.
            prom = [r for r in prom if r["value"][1] != "NaN"]
            if err or labelsets(vm) == labelsets(prom):
                break
            time.sleep(3)
        if err:
            bad.append(f"{o.query.origin}: {err}")
        elif labelsets(vm) != labelsets(prom):
            bad.append(f"{o.query.origin}: {len(vm)} series, Prometheus {len(prom)} ({o.query.expr[:120]})")
    assert checked > 40, checked
    assert not bad, "\n".join(bad)


def test_cmm_dashboards_and_rules_return_data(outcomes):
    cmm = [o for o in outcomes if o.query.kind in ("cmm-dashboard", "cmm-rule")]
    assert len(cmm) > 30
    wrong = []
    for o in cmm:
        expected_missing = CMM_NO_DATA_HERE.get(o.query.origin)
        if expected_missing:
            # Stays listed only while the reason holds.
            if o.series or expected_missing not in o.missing:
                wrong.append(f"{o.query.origin}: listed as needing {expected_missing}, but {o.reason}")
        elif not o.series:
            wrong.append(f"{o.query.origin}: {o.reason}\n    {o.query.expr}")
    assert not wrong, "\n".join(wrong)


def test_chart_node_dashboards_return_data(outcomes):
    node = [o for o in outcomes if o.query.origin.startswith(CHART_NODE_DASHBOARDS)]
    assert len(node) > 20
    wrong = [f"{o.query.origin}: {o.reason}" for o in node
             # The node mixin hides all-zero series with `!= 0`: an idle disk or a host with only
             # loopback traffic shows nothing, by the dashboard's design.
             if not o.series and "!= 0" not in o.query.expr]
    assert not wrong, "\n".join(wrong)


def test_chart_node_recording_rules_return_data(outcomes):
    rec = [o for o in outcomes if o.query.kind == "chart-recording"
           and o.query.origin.startswith(("chart rule node-exporter.rules", "chart rule node.rules"))]
    assert rec
    # node.rules joins node metrics with kube_pod_info (kube-state-metrics), absent here.
    wrong = [f"{o.query.origin}: {o.reason}" for o in rec
             if not o.series and not any(m.startswith(("kube_", "node_namespace_pod")) for m in o.missing)]
    assert not wrong, "\n".join(wrong)


def test_no_shipped_query_reads_a_dropped_series(outcomes):
    dropped = [f"{o.query.origin}: {o.reason}" for o in outcomes if o.dropped]
    assert not dropped, "each_cluster.yaml's metricRelabelings drop what these read:\n" + "\n".join(dropped)


def test_the_keep_list_holds_nothing_unused(lab, outcomes):
    sm = next(o for o in lab.cluster_objs if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "cmm-node-exporter")
    keep = sm["spec"]["endpoints"][0]["metricRelabelings"][0]
    assert keep["action"] == "keep" and keep["sourceLabels"] == ["__name__"]
    kept = set(keep["regex"].split("|"))
    used = set().union(*(metric_names(o.query.expr) for o in outcomes))
    assert kept <= used, f"kept although no shipped query reads them: {sorted(kept - used)}"


def test_the_guard_catches_a_dropped_metric(lab):
    # The same check over a keep list that lost one metric a CMM dashboard reads.
    from promql_lab import Outcome, Query

    q = Query("dashboard cmm-node-detail / Memory / A", 'node_memory_MemAvailable_bytes{job="node-exporter"}',
              "cmm-dashboard")
    raw, kept = lab.names_in("raw"), lab.names_in("node-exporter") - {"node_memory_MemAvailable_bytes"}
    o = Outcome(q, dropped=sorted(n for n in metric_names(q.expr) if n in raw and n not in kept))
    assert o.dropped == ["node_memory_MemAvailable_bytes"] and "drops" in o.reason


def test_the_keep_list_drops_most_series_and_no_used_one(lab, outcomes):
    c = lab.cardinality([o.query for o in outcomes])
    assert c["used_not_kept"] == 0
    # The figure itself is reported by `scripts/dev bench`; this only guards against a keep list
    # that silently stopped dropping anything.
    assert c["kept"] < c["exposed"] / 2, c


# Interfaces a node has: its own, and one per pod under each common CNI.
HOST_INTERFACES = ("eth0", "ens5", "enp0s3", "bond0", "cni0", "flannel.1", "docker0", "lo")
POD_INTERFACES = ("veth3f2a1b", "cali1a2b3c4d5e6", "lxc0a1b2c3d", "eni1a2b3c4d5e6", "gke0a1b2c3d", "azv0a1b2c3")


def test_pod_interfaces_are_dropped_and_the_hosts_kept(lab, tmp_path):
    """A real Prometheus scrapes an exposition with host and pod interfaces through the rendered
    metricRelabelings: the pod ends (9 series each) are gone, the host's interfaces all there."""
    body = "".join(f'{m}{{device="{d}"}} 1\n'
                   for d in HOST_INTERFACES + POD_INTERFACES
                   for m in ("node_network_receive_bytes_total", "node_network_up"))
    body += 'node_filesystem_avail_bytes{device="veth-named-disk",mountpoint="/x"} 1\n'

    class Exposition(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "node-exporter",
                            "static_configs": [{"targets": [f"127.0.0.1:{server.server_address[1]}"]}],
                            "metric_relabel_configs": lab.metric_relabelings()}]}))
    proc = subprocess.Popen([lab.bins["prometheus"], f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def devices(metric):
            q = urllib.parse.urlencode({"query": f"{metric}{{job=\"node-exporter\"}}"})
            with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?{q}", timeout=5) as r:
                return {s["metric"]["device"] for s in json.load(r)["data"]["result"]}

        deadline = time.monotonic() + 60
        seen = set()
        while time.monotonic() < deadline and not seen:
            try:
                seen = devices("node_network_up")
            except OSError:
                pass
            time.sleep(0.5)
        assert seen == set(HOST_INTERFACES), seen
        assert devices("node_network_receive_bytes_total") == set(HOST_INTERFACES)
        # Only network series are judged by their device.
        assert devices("node_filesystem_avail_bytes") == {"veth-named-disk"}
    finally:
        proc.kill()
        proc.wait(timeout=10)
        server.shutdown()


# -- rule thresholds: promtool test rules over CMM's rules written as a Prometheus rule file

PROMTOOL_TESTS = {
    "evaluation_interval": "1m",
    "tests": [
        {   # a node down for 6 minutes fires CmmNodeDown; the one up does not
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="node-exporter", instance="n1", cluster="kr-mum"}', "values": "0x10"},
                {"series": 'up{job="node-exporter", instance="n2", cluster="kr-mum"}', "values": "1x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "CmmNodeDown", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "CmmNodeDown", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "job": "node-exporter", "instance": "n1", "cluster": "kr-mum"}}]},
                {"eval_time": "6m", "alertname": "CmmClusterUnreachable", "exp_alerts": []},
            ],
        },
        {   # another scrape target down for 15 minutes fires CmmScrapeTargetDown, not CmmNodeDown;
            # a filesystem node_exporter cannot read fires CmmDiskDeviceError after 10 minutes
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="kubelet", instance="k1", cluster="kr-mum"}', "values": "0x30"},
                {"series": 'up{job="node-exporter", instance="n1", cluster="kr-mum"}', "values": "1x30"},
                {"series": 'node_filesystem_device_error{job="node-exporter", instance="n1", device="nfs:/x", mountpoint="/mnt", fstype="nfs4"}', "values": "1x30"},
                {"series": 'node_filesystem_device_error{job="node-exporter", instance="n1", device="sda1", mountpoint="/", fstype="ext4"}', "values": "0x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CmmScrapeTargetDown", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CmmScrapeTargetDown", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "kubelet", "instance": "k1", "cluster": "kr-mum"}}]},
                {"eval_time": "20m", "alertname": "CmmNodeDown", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "CmmDiskDeviceError", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "node-exporter", "instance": "n1", "device": "nfs:/x",
                                    "mountpoint": "/mnt", "fstype": "nfs4"}}]},
            ],
        },
        {   # CPU: 95% busy fires after 15 minutes, 50% never
            "interval": "1m",
            "input_series": [
                {"series": 'node_cpu_seconds_total{job="node-exporter", instance="hot", mode="idle", cpu="0"}', "values": "0+3x40"},
                {"series": 'node_cpu_seconds_total{job="node-exporter", instance="calm", mode="idle", cpu="0"}', "values": "0+30x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CmmNodeCpuSaturated", "exp_alerts": []},
                {"eval_time": "25m", "alertname": "CmmNodeCpuSaturated", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "instance": "hot"}}]},
            ],
        },
        {   # memory: 5% available fires, 50% does not
            "interval": "1m",
            "input_series": [
                {"series": 'node_memory_MemAvailable_bytes{job="node-exporter", instance="full"}', "values": "5x30"},
                {"series": 'node_memory_MemTotal_bytes{job="node-exporter", instance="full"}', "values": "100x30"},
                {"series": 'node_memory_MemAvailable_bytes{job="node-exporter", instance="ok"}', "values": "50x30"},
                {"series": 'node_memory_MemTotal_bytes{job="node-exporter", instance="ok"}', "values": "100x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "CmmNodeMemorySaturated", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "node-exporter", "instance": "full"}}]},
            ],
        },
        {   # filesystems: 97% full fires AlmostFull; a read-only one at 97% does not; one losing
            # 1 GiB/h with 20 GiB left fires FillingUp after an hour; a steady one does not
            "interval": "1m",
            "input_series": [
                {"series": 'node_filesystem_avail_bytes{job="node-exporter", instance="a", device="sda1", mountpoint="/", fstype="ext4"}', "values": "3x200"},
                {"series": 'node_filesystem_size_bytes{job="node-exporter", instance="a", device="sda1", mountpoint="/", fstype="ext4"}', "values": "100x200"},
                {"series": 'node_filesystem_readonly{job="node-exporter", instance="a", device="sda1", mountpoint="/", fstype="ext4"}', "values": "0x200"},
                {"series": 'node_filesystem_avail_bytes{job="node-exporter", instance="a", device="sr0", mountpoint="/media", fstype="ext4"}', "values": "3x200"},
                {"series": 'node_filesystem_size_bytes{job="node-exporter", instance="a", device="sr0", mountpoint="/media", fstype="ext4"}', "values": "100x200"},
                {"series": 'node_filesystem_readonly{job="node-exporter", instance="a", device="sr0", mountpoint="/media", fstype="ext4"}', "values": "1x200"},
                # 20 GiB left, losing 1 GiB per hour (1/60 GiB a minute), size 100 GiB
                {"series": 'node_filesystem_avail_bytes{job="node-exporter", instance="b", device="sdb1", mountpoint="/data", fstype="xfs"}',
                 "values": "21474836480-17895697.07x200"},
                {"series": 'node_filesystem_size_bytes{job="node-exporter", instance="b", device="sdb1", mountpoint="/data", fstype="xfs"}', "values": "107374182400x200"},
                {"series": 'node_filesystem_readonly{job="node-exporter", instance="b", device="sdb1", mountpoint="/data", fstype="xfs"}', "values": "0x200"},
                {"series": 'node_filesystem_avail_bytes{job="node-exporter", instance="c", device="sdc1", mountpoint="/data", fstype="xfs"}', "values": "21474836480x200"},
                {"series": 'node_filesystem_size_bytes{job="node-exporter", instance="c", device="sdc1", mountpoint="/data", fstype="xfs"}', "values": "107374182400x200"},
                {"series": 'node_filesystem_readonly{job="node-exporter", instance="c", device="sdc1", mountpoint="/data", fstype="xfs"}', "values": "0x200"},
            ],
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": "CmmFilesystemAlmostFull", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "job": "node-exporter", "instance": "a", "device": "sda1",
                                    "mountpoint": "/", "fstype": "ext4"}}]},
                {"eval_time": "150m", "alertname": "CmmFilesystemFillingUp", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "node-exporter", "instance": "b", "device": "sdb1",
                                    "mountpoint": "/data", "fstype": "xfs"}}]},
            ],
        },
        {   # network: 5% errors fire, 0.1% do not; clock 100 ms off fires, 10 ms does not
            "interval": "1m",
            "input_series": [
                {"series": 'node_network_receive_errs_total{job="node-exporter", instance="bad", device="eth0"}', "values": "0+5x30"},
                {"series": 'node_network_transmit_errs_total{job="node-exporter", instance="bad", device="eth0"}', "values": "0x30"},
                {"series": 'node_network_receive_packets_total{job="node-exporter", instance="bad", device="eth0"}', "values": "0+100x30"},
                {"series": 'node_network_transmit_packets_total{job="node-exporter", instance="bad", device="eth0"}', "values": "0x30"},
                {"series": 'node_network_receive_errs_total{job="node-exporter", instance="good", device="eth0"}', "values": "0+1x30"},
                {"series": 'node_network_transmit_errs_total{job="node-exporter", instance="good", device="eth0"}', "values": "0x30"},
                {"series": 'node_network_receive_packets_total{job="node-exporter", instance="good", device="eth0"}', "values": "0+1000x30"},
                {"series": 'node_network_transmit_packets_total{job="node-exporter", instance="good", device="eth0"}', "values": "0x30"},
                {"series": 'node_timex_offset_seconds{job="node-exporter", instance="skewed"}', "values": "-0.1x30"},
                {"series": 'node_timex_offset_seconds{job="node-exporter", instance="synced"}', "values": "0.01x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "25m", "alertname": "CmmNetworkErrors", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "node-exporter", "instance": "bad", "device": "eth0"}}]},
                {"eval_time": "15m", "alertname": "CmmNodeClockSkew", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "node-exporter", "instance": "skewed"}}]},
            ],
        },
        {   # kube-state-metrics: a crash-looping pod and a DaemonSet short of one node
            "interval": "1m",
            "input_series": [
                {"series": 'kube_pod_container_status_waiting_reason{job="kube-state-metrics", namespace="app", pod="p", container="c", reason="CrashLoopBackOff"}', "values": "1x30"},
                {"series": 'kube_daemonset_status_desired_number_scheduled{job="kube-state-metrics", namespace="monitor", daemonset="cmm-node-exporter"}', "values": "3x30"},
                {"series": 'kube_daemonset_status_current_number_scheduled{job="kube-state-metrics", namespace="monitor", daemonset="cmm-node-exporter"}', "values": "2x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "CmmPodCrashLooping", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "kube-state-metrics", "namespace": "app", "pod": "p",
                                    "container": "c", "reason": "CrashLoopBackOff"}}]},
                {"eval_time": "20m", "alertname": "CmmDaemonSetNotScheduled", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "job": "kube-state-metrics", "namespace": "monitor",
                                    "daemonset": "cmm-node-exporter"}}]},
            ],
        },
        {   # a cluster with no `up` at all: CmmClusterUnreachable is Grafana's no-data case; as a
            # Prometheus rule its expression is simply empty, so it is checked for NOT firing when
            # targets exist (the no-data behaviour is the Grafana rule's noDataState, tested in Rust)
            "interval": "1m",
            "input_series": [{"series": 'up{job="x", instance="i", cluster="kr-mum"}', "values": "1x10"}],
            "alert_rule_test": [{"eval_time": "8m", "alertname": "CmmClusterUnreachable", "exp_alerts": []}],
        },
    ],
}


def test_rule_thresholds_with_promtool(lab, tmp_path):
    from promql_lab import cmm_rule_file

    promtool = require_tool("promtool")
    rules = tmp_path / "cmm-rules.yaml"
    rules.write_text(yaml.safe_dump(cmm_rule_file()))
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "cmm-rules.test.yaml"
    tests.write_text(yaml.safe_dump(dict(PROMTOOL_TESTS, rule_files=[str(rules)])))
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    tested = {t["alertname"] for case in PROMTOOL_TESTS["tests"] for t in case["alert_rule_test"]}
    shipped = {r["alert"] for g in cmm_rule_file()["groups"] for r in g["rules"]}
    assert tested == shipped, f"rules without a threshold test: {sorted(shipped - tested)}"


def test_promtool_notices_a_wrong_threshold(tmp_path):
    # The same test over a rule file whose CPU threshold was mistyped must fail.
    from promql_lab import cmm_rule_file

    promtool = require_tool("promtool")
    f = cmm_rule_file()
    for r in f["groups"][0]["rules"]:
        if r["alert"] == "CmmNodeCpuSaturated":
            r["expr"] = re.sub(r"> 0\.9$", "> 0.99", r["expr"])
    rules = tmp_path / "broken.yaml"
    rules.write_text(yaml.safe_dump(f))
    tests = tmp_path / "t.yaml"
    tests.write_text(yaml.safe_dump(dict(PROMTOOL_TESTS, rule_files=[str(rules)])))
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "CmmNodeCpuSaturated" in run.stdout + run.stderr
