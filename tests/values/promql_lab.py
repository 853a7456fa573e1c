"""A real Prometheus scraping a real node_exporter, set up from the RENDERED values, and every
shipped PromQL expression collected for it.

Used by test_promql.py (the proof on real data, the dropped-series test) and by
`scripts/dev bench` (`python tests/values/promql_lab.py cardinality`: series kept / series used).

The Prometheus is configured as each_cluster.yaml configures the cluster's one: the CR's scrape
interval class relabelings (the `cluster` label), the node-exporter ServiceMonitor's metric
relabelings, node_exporter started with the DaemonSet's collector flags, and the chart's
PrometheusRules loaded as rule files, so the chart's recording rules (which its node dashboards
read) are evaluated. A second job, `raw`, scrapes the same node_exporter WITHOUT CMM's metric
relabelings: what the chart's default would keep. Only 127.0.0.1; every wait is bounded.

Given a VictoriaMetrics binary, the lab also runs one with the arguments
central-receiver-victoriametrics.yaml renders, and the Prometheus remote-writes everything to it
with the `extra_label` the receiver proxy adds for this cluster: push's default store, holding the
same samples, recording rules' outputs included, for the same queries.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cmm_values import CENTRAL, CONTENT, EACH, REPO, TOPOLOGY_OVERLAYS, find, one, parse_objects  # noqa: E402

RELEASE = "kr-mum"
NODE_JOB = "node-exporter"
RAW_JOB = "raw"
SELF_JOB = "cmm-prometheus"
DEADLINE_S = 60.0
# Grafana's variables, as Grafana would fill them for a 1 s scrape interval in this lab.
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
    # aggregation operators may take `by (...)` before their parenthesis
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "limitk", "limit_ratio",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def relabel(r: dict) -> dict:
    """A CR RelabelConfig (camelCase) -> Prometheus config (snake_case, lower-case action)."""
    out = {snake(k): v for k, v in r.items()}
    if "action" in out:
        out["action"] = out["action"].lower()
    return out


@dataclass
class Query:
    origin: str  # where it is shipped, e.g. "dashboard cmm-node-detail / Memory / A"
    expr: str  # with Grafana's variables substituted
    kind: str  # "cmm-dashboard", "cmm-rule", "chart-dashboard", "chart-recording", "chart-alert"


@dataclass
class Outcome:
    query: Query
    error: str | None = None
    series: int = 0
    missing: list[str] = field(default_factory=list)  # metrics nothing here exposes
    dropped: list[str] = field(default_factory=list)  # metrics CMM's relabelings drop

    @property
    def reason(self) -> str:
        if self.query.expr.startswith("<"):
            return self.query.expr[1:-1]
        if self.error:
            return f"does not parse/evaluate: {self.error}"
        if self.dropped:
            return f"uses {', '.join(self.dropped)}, which each_cluster.yaml drops"
        if self.series:
            return "returns data"
        if self.missing:
            return f"needs {', '.join(self.missing)}, which nothing here exposes"
        return "no series: the condition is false on this host"


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {}, by/without/on/ignoring/group_x lists) or durations."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^{}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        tail = s[m.end():].lstrip()
        word = m.group(0)
        if tail.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matcher text) for every vector selector with a metric name."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace("{", "\0").replace("}", "\1"), expr)
    out = []
    for name in metric_names(expr):
        for m in re.finditer(rf"(?<![A-Za-z0-9_:]){re.escape(name)}(?![A-Za-z0-9_:(])\s*(\{{[^}}]*\}})?", s):
            matchers = (m.group(1) or "{}").replace("\0", "{").replace("\1", "}")
            out.append((name, matchers))
    return out


def reads_node_exporter(matchers: str) -> bool:
    """Whether a selector's job matcher admits node_exporter's job (no job matcher admits all)."""
    m = re.search(r'\bjob\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', matchers)
    if not m:
        return True
    op, value = m.groups()
    hit = re.fullmatch(value, NODE_JOB) is not None if "~" in op else value == NODE_JOB
    return hit if op in ("=", "=~") else not hit


def substitute(expr: str, values: dict[str, str]) -> str:
    def one_var(m):
        name = m.group(1) or m.group(2)
        if name in values:
            return values[name]
        raise KeyError(name)

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one_var, expr)


def label_values_to_promql(q: str) -> str | None:
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
    if m:
        return f"group by ({m.group(2)}) ({m.group(1)})"
    return None


def dashboard_queries(d: dict, origin: str, kind: str, values: dict[str, str]) -> list[Query]:
    out = []
    panels = list(d.get("panels", []))
    for row in d.get("rows", []):  # the old (schema 14) layout some chart dashboards still use
        panels += row.get("panels", [])
    for p in list(panels):
        panels += p.get("panels", [])
    for p in panels:
        for t in p.get("targets", []):
            if t.get("expr"):
                where = f"{origin} / {p.get('title', '?')} / {t.get('refId', '?')}"
                try:
                    out.append(Query(where, substitute(t["expr"], values), kind))
                except KeyError as e:
                    out.append(Query(where, f"<Grafana variable ${e.args[0]} has no value in the lab>", kind))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        promql = label_values_to_promql(q or "")
        if promql:
            try:
                out.append(Query(f"{origin} / variable {v['name']}", substitute(promql, values), kind))
            except KeyError as e:
                out.append(Query(f"{origin} / variable {v['name']}",
                                 f"<Grafana variable ${e.args[0]} has no value in the lab>", kind))
    return out


def helm_render(helm: str, chart: str, *files: Path) -> list[dict]:
    cmd = [helm, "template", RELEASE, chart, "-n", "monitor", "--kube-version", "1.31.0"]
    for f in files:
        cmd += ["-f", str(f)]
    return parse_objects(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout)


def cmm_rules() -> list[dict]:
    src = yaml.safe_load((REPO / "content" / "rules" / "cluster-rules.yaml").read_text())
    return [dict(r, expr=r["expr"].replace("${CLUSTER}", RELEASE)) for r in src["reachability"] + src["rules"]]


def prometheus_condition(r: dict) -> str:
    """A CMM rule's condition in PromQL, as Grafana's threshold expression evaluates it."""
    op, t = r["op"], r["threshold"]
    expr = f"({r['expr']})"
    if op == "gt":
        return f"{expr} > {t}"
    if op == "lt":
        return f"{expr} < {t}"
    if op == "within_range":
        return f"{expr} > {t[0]} < {t[1]}"
    if op == "outside_range":
        return f"({expr} < {t[0]}) or ({expr} > {t[1]})"
    raise ValueError(f"{r['alert']}: unknown op {op}")


def cmm_rule_file() -> dict:
    """CMM's rules as a Prometheus rule file: what `promtool test rules` evaluates. Annotations
    stay out: Grafana's template language ($values) is not Prometheus'."""
    rules = []
    for r in cmm_rules():
        rule = {"alert": r["alert"], "expr": prometheus_condition(r), "labels": {"severity": r["severity"]}}
        if r["for"] != "0s":
            rule["for"] = r["for"]
        rules.append(rule)
    return {"groups": [{"name": "cmm-cluster-health", "rules": rules}]}


class Lab:
    """node_exporter + Prometheus, started from the rendered values; a context manager."""

    def __init__(self, helm: str, chart: str, node_exporter: str, prometheus: str, promtool: str,
                 victoria_metrics: str | None = None):
        self.helm, self.chart = helm, chart
        self.bins = {"node_exporter": node_exporter, "prometheus": prometheus, "promtool": promtool,
                     "victoria_metrics": victoria_metrics}
        self.vm_base: str | None = None
        self.cluster_objs = helm_render(helm, chart, EACH)
        self.central_objs = helm_render(helm, chart, CENTRAL, CONTENT)
        self.procs: dict[str, subprocess.Popen] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="cmm-promql-"))

    # -- configuration from the render
    def node_exporter_args(self) -> list[str]:
        ds = one(self.cluster_objs, "DaemonSet", "cmm-node-exporter")
        args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        return [a for a in args if not a.startswith(("--path.", "--web.listen-address"))]

    def metric_relabelings(self) -> list[dict]:
        sm = one(self.cluster_objs, "ServiceMonitor", "cmm-node-exporter")
        return [relabel(r) for r in sm["spec"]["endpoints"][0].get("metricRelabelings", [])]

    def rule_groups(self) -> list[dict]:
        groups = []
        for pr in find(self.cluster_objs, "PrometheusRule"):
            groups += pr["spec"]["groups"]
        return groups

    def victoria_metrics_args(self) -> list[str]:
        objs = helm_render(self.helm, self.chart, CENTRAL, TOPOLOGY_OVERLAYS["central-receiver-victoriametrics"])
        sts = one(objs, "StatefulSet", "cmm-receiver-vm")
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        return [a for a in args if not a.startswith(("-httpListenAddr=", "-storageDataPath="))]

    def config(self, ne_port: int, prom_port: int) -> dict:
        cr = one(self.cluster_objs, "Prometheus", "cmm")["spec"]
        cls = next(c for c in cr["scrapeClasses"] if c.get("default"))
        target_relabel = [relabel(r) for r in cls.get("relabelings", [])]

        def job(name, port, metric_relabel):
            return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    "relabel_configs": target_relabel, "metric_relabel_configs": metric_relabel}

        return {
            # 1 s instead of the CR's 30 s, only so the lab has rates within seconds.
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "external_labels": cr.get("externalLabels", {})},
            "rule_files": [str(self.tmp / "chart-rules.yaml")],
            "scrape_configs": [
                job(NODE_JOB, ne_port, self.metric_relabelings()),
                job(RAW_JOB, ne_port, []),
                job(SELF_JOB, prom_port, []),
            ],
        }

    # -- processes
    def __enter__(self) -> Lab:
        ne_port, prom_port = free_port(), free_port()
        groups = self.rule_groups()
        for g in groups:
            g.pop("interval", None)  # evaluate every group each second here
        (self.tmp / "chart-rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        cfg = self.tmp / "prometheus.yml"
        config = self.config(ne_port, prom_port)
        if self.bins["victoria_metrics"]:
            vm_port = free_port()
            self.vm_base = f"http://127.0.0.1:{vm_port}"
            # What the receiver proxy sends on for cmm-self-kr-mum's writes.
            config["remote_write"] = [{"url": f"{self.vm_base}/api/v1/write?extra_label=cluster={RELEASE}",
                                       "queue_config": {"batch_send_deadline": "1s"}}]
        cfg.write_text(yaml.safe_dump(config))
        check = subprocess.run([self.bins["promtool"], "check", "config", str(cfg)],
                               capture_output=True, text=True, timeout=60)
        if check.returncode:
            raise AssertionError(f"promtool rejects the lab's config:\n{check.stdout}{check.stderr}")
        self.logs = {n: self.tmp / f"{n}.log" for n in ("node_exporter", "prometheus", "victoria_metrics")}
        if self.vm_base:
            with open(self.logs["victoria_metrics"], "w") as log:
                self.procs["victoria_metrics"] = subprocess.Popen(
                    [self.bins["victoria_metrics"], *self.victoria_metrics_args(),
                     f"-httpListenAddr={self.vm_base.removeprefix('http://')}",
                     f"-storageDataPath={self.tmp / 'vm-data'}"],
                    stdout=log, stderr=subprocess.STDOUT)
        with open(self.logs["node_exporter"], "w") as log:
            self.procs["node_exporter"] = subprocess.Popen(
                [self.bins["node_exporter"], f"--web.listen-address=127.0.0.1:{ne_port}", *self.node_exporter_args()],
                stdout=log, stderr=subprocess.STDOUT)
        with open(self.logs["prometheus"], "w") as log:
            self.procs["prometheus"] = subprocess.Popen(
                [self.bins["prometheus"], f"--config.file={cfg}", f"--storage.tsdb.path={self.tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{prom_port}"
        self.ne_url = f"http://127.0.0.1:{ne_port}/metrics"
        try:
            # Rates need two scrapes; the chart's node recording rules need one evaluation after.
            self.wait_for("the chart's node recording rules",
                          lambda: self.query("instance:node_cpu_utilisation:rate5m")[0]
                          and self.query(f'count(up{{job="{SELF_JOB}"}} == 1)')[0])
            time.sleep(3)
            if self.vm_base:
                self.wait_for("the same samples in VictoriaMetrics",
                              lambda: self.query_vm("instance:node_cpu_utilisation:rate5m")[0]
                              and self.query_vm(f'count(rate(node_cpu_seconds_total{{job="{NODE_JOB}"}}[1m]))')[0])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.procs.values():
            p.kill()
        for p in self.procs.values():
            p.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)

    def wait_for(self, what, probe):
        deadline = time.monotonic() + DEADLINE_S
        last = None
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited with {p.returncode} waiting for {what}:\n"
                                         f"{self.logs[name].read_text()[-3000:]}")
            try:
                if probe():
                    return
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.3)
        raise AssertionError(f"timed out after {DEADLINE_S:.0f}s waiting for {what} (last: {last!r})")

    # -- HTTP API
    def _get(self, path: str, params: list[tuple[str, str]]) -> dict:
        url = f"{self.base}{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:  # 400/422 carry Prometheus' error as JSON
            return json.load(e)

    def query(self, promql: str, at: float | None = None) -> tuple[list, str | None]:
        """An instant query, now or at the Unix time `at`."""
        body = self._get("/api/v1/query", [("query", promql)] + ([("time", f"{at:.3f}")] if at else []))
        if body.get("status") != "success":
            return [], body.get("error", str(body))
        return body["data"]["result"], None

    def query_vm(self, promql: str, at: float | None = None) -> tuple[list, str | None]:
        """The same instant query at VictoriaMetrics. nocache=1: it otherwise answers as of 30 s
        ago (-search.latencyOffset), longer than this lab has run; Grafana and the check see that
        delay, which the push tests on real processes cover."""
        assert self.vm_base, "the lab runs no VictoriaMetrics"
        params = [("query", promql), ("nocache", "1")] + ([("time", f"{at:.3f}")] if at else [])
        url = f"{self.vm_base}/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:
            body = {"status": "error", "error": e.read().decode(errors="replace")[:300]}
        if body.get("status") != "success":
            return [], body.get("error", str(body))
        return body["data"]["result"], None

    def series(self, match: str) -> list[dict]:
        body = self._get("/api/v1/series", [("match[]", match)])
        assert body.get("status") == "success", body
        return body["data"]

    def names_in(self, job: str) -> set[str]:
        return {s["__name__"] for s in self.series(f'{{job="{job}"}}')}

    # -- the shipped queries
    def instance(self) -> str:
        res, _ = self.query(f'node_uname_info{{job="{NODE_JOB}"}}')
        return res[0]["metric"]["instance"]

    def shipped_queries(self) -> list[Query]:
        # Only the variables CMM's and the chart's node dashboards have; the others (job,
        # namespace, node, ...) belong to Kubernetes dashboards and are reported as unfilled.
        values = dict(GRAFANA_INTERVALS, cluster=RELEASE, instance=self.instance())
        out: list[Query] = []
        for p in sorted((REPO / "content" / "dashboards").glob("*.json")):
            out += dashboard_queries(json.loads(p.read_text()), f"dashboard {p.stem}", "cmm-dashboard", values)
        for r in cmm_rules():
            out.append(Query(f"rule {r['alert']}", r["expr"], "cmm-rule"))
        fleet = yaml.safe_load((REPO / "content" / "rules" / "cluster-rules.yaml").read_text())["fleet"]
        out.append(Query(f"rule {fleet['alert']} (one cluster's query)", fleet["expr"].replace("${CLUSTER}", RELEASE),
                         "cmm-rule"))
        for cm in find(self.central_objs, "ConfigMap"):
            if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
                continue
            for key, text in cm["data"].items():
                out += dashboard_queries(json.loads(text), f"chart dashboard {key[:-5]}", "chart-dashboard", values)
        for g in self.rule_groups():
            for r in g["rules"]:
                kind = "chart-recording" if "record" in r else "chart-alert"
                out.append(Query(f"chart rule {g['name']} / {r.get('record') or r.get('alert')}", r["expr"], kind))
        return out

    def evaluate(self, queries: list[Query]) -> list[Outcome]:
        present = {s["__name__"] for s in self.series('{__name__=~".+"}')}
        raw, kept = self.names_in(RAW_JOB), self.names_in(NODE_JOB)
        out = []
        for q in queries:
            res, err = self.query(q.expr)
            o = Outcome(q, error=err, series=len(res))
            names = metric_names(q.expr)
            o.dropped = sorted({n for n, m in selectors(q.expr)
                                if n in raw and n not in kept and reads_node_exporter(m)})
            o.missing = sorted(n for n in names if n not in present)
            out.append(o)
        return out

    # -- cardinality
    def cardinality(self, queries: list[Query]) -> dict:
        """Series node_exporter exposes (the chart's default keeps all), series CMM keeps, and
        series some shipped query reads: the union of every selector's matches, read on the
        unrelabelled job so a drop cannot hide what is used."""

        def key(s):
            return frozenset((k, v) for k, v in s.items() if k not in ("job",))

        synthetic = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"}
        def scraped(s):  # not Prometheus' own per-target series, not a recording rule's output
            return s["__name__"] not in synthetic and ":" not in s["__name__"]

        raw = {key(s) for s in self.series(f'{{job="{RAW_JOB}"}}') if scraped(s)}
        kept = {key(s) for s in self.series(f'{{job="{NODE_JOB}"}}') if scraped(s)}
        raw_names = {dict(k)["__name__"] for k in raw}
        used = set()
        for q in queries:
            for name, matchers in selectors(q.expr):
                if name not in raw_names or not reads_node_exporter(matchers):
                    continue
                inner = matchers.strip()[1:-1].strip()
                inner = re.sub(r'\bjob\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?', "", inner).strip().rstrip(",")
                sel = f'{name}{{{inner + ", " if inner else ""}job="{RAW_JOB}"}}'
                used |= {key(s) for s in self.series(sel)}
        return {"exposed": len(raw), "kept": len(kept), "used": len(used),
                "chart_default_ratio": len(raw) / max(len(used), 1),
                "cmm_ratio": len(kept) / max(len(used), 1),
                "used_not_kept": len(used - kept)}


def lab_from_env() -> Lab:
    import os
    import shutil

    helm = os.environ.get("CMM_HELM") or str(REPO / ".tools" / "bin" / "helm")
    chart = os.environ.get("CMM_CHART") or str(REPO.parent / "shared" / "charts" / "kube-prometheus-stack")
    return Lab(helm, chart, "/usr/bin/prometheus-node-exporter", shutil.which("prometheus") or "/usr/bin/prometheus",
               shutil.which("promtool") or "/usr/bin/promtool", shutil.which("victoria-metrics"))


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else "report"
    with lab_from_env() as lab:
        queries = lab.shipped_queries()
        if what == "cardinality":
            c = lab.cardinality(queries)
            print(f"node_exporter series exposed on this host      : {c['exposed']}")
            print(f"series some shipped dashboard or rule reads    : {c['used']}")
            print(f"kept by the chart's default (no metric drops)  : {c['exposed']}  -> kept/used {c['chart_default_ratio']:.2f}")
            print(f"kept by each_cluster.yaml's metric relabelings : {c['kept']}  -> kept/used {c['cmm_ratio']:.2f}"
                  f"  (target <= 1.30)")
            print(f"used series CMM drops                          : {c['used_not_kept']}")
            return 0
        for o in lab.evaluate(queries):
            print(f"{o.query.kind:16} {o.query.origin}: {o.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
