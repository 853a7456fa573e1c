"""Helpers for the values tests: the real helm, the real chart, the real envsubst.

Imported by name from the test modules (a plain module, so another tier's conftest.py cannot
shadow it); the fixtures are in conftest.py.

Tool policy: a missing tool FAILS the test when CMM_REQUIRE_TOOLS=1 (CI, `scripts/dev test`)
and skips it with the reason otherwise, so a laptop without Prometheus still runs the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "values"
EACH = VALUES / "each_cluster.yaml"
CENTRAL = VALUES / "central_monitor.yaml"
# The central release's second values file (dashboards, alerting), never through envsubst.
CONTENT = VALUES / "central_content.yaml"
OVERLAYS = {
    "wsl": VALUES / "overlays" / "wsl.yaml",
    "kube-metrics": VALUES / "overlays" / "kube-metrics.yaml",
    "managed-control-plane": VALUES / "overlays" / "managed-control-plane.yaml",
    "eks-control-plane": VALUES / "overlays" / "eks-control-plane.yaml",
    "node-exporter-full": VALUES / "overlays" / "node-exporter-full.yaml",
    "insecure-plain-http": VALUES / "overlays" / "insecure-plain-http.yaml",
}
# The growth paths' files, composed by the topology (tests/values/test_topologies.py).
TOPOLOGY_OVERLAYS = {
    "push": VALUES / "overlays" / "push.yaml",
    "agent-mode": VALUES / "overlays" / "agent-mode.yaml",
    "central-receiver": VALUES / "overlays" / "central-receiver.yaml",
    "central-receiver-victoriametrics": VALUES / "overlays" / "central-receiver-victoriametrics.yaml",
    "thanos-sidecar": VALUES / "overlays" / "thanos-sidecar.yaml",
    "thanos-object-storage": VALUES / "overlays" / "thanos-object-storage.yaml",
    "thanos-query": VALUES / "overlays" / "thanos-query.yaml",
}
GOLDEN = REPO / "tests" / "golden"

CHART_VERSION = "66.1.0"
CHART_REPO = "https://prometheus-community.github.io/helm-charts"
NAMESPACE = "monitor"
# The two release (= cluster) names of the seed; every render is checked under both so nothing
# in the values depends on a particular name.
RELEASES = ("kr-mum", "wai-eks")
# Kubernetes version the renders target and are validated against (kubernetes-validate ships it).
KUBE_VERSION = "1.31.0"

# The seed's flags for Kubernetes object metrics, verbatim.
SEED_KUBE_METRICS_SETS = ("kubernetesServiceMonitors.enabled=true", "kubeStateMetrics.enabled=true")
# The seed's example for pinning Prometheus and the operator, verbatim.
SEED_NODE_SELECTOR_SETS = (
    "prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka",
    "prometheusOperator.nodeSelector.kr-mum/noderole=kafka",
)


def datasources_value(clusters: list[tuple[str, str]]) -> str:
    """CMM_DATASOURCES as docs/values.md shows it: a newline, then one flow-mapping item per cluster."""
    out = ""
    for name, url in clusters:
        out += (
            f'\n    - {{name: {name}, uid: cmm-{name}, type: prometheus, access: proxy, '
            f'url: "{url}", jsonData: {{httpMethod: POST, timeInterval: 30s}}}}'
        )
    return out


# Fixed two-cluster fleet for the central golden files and the envsubst tests.
TWO_CLUSTERS = [("kr-mum", "http://10.0.0.11:30090"), ("wai-eks", "http://10.0.1.21:30090")]


def require_tool(name: str, path: str | None = None) -> str:
    """Absolute path of a tool, or fail (CMM_REQUIRE_TOOLS=1) / skip with the reason."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(path or name)
    if found:
        return found
    msg = (
        f"{name} not found (looked for {path or name} on PATH); "
        "run `scripts/dev tools` (helm into .tools/bin, Debian packages prometheus, "
        "prometheus-node-exporter, gettext-base)"
    )
    if os.environ.get("CMM_REQUIRE_TOOLS") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def parse_objects(text: str) -> list[dict]:
    """The objects helm applies: a v1 List stands for its items (helm's pkg/kube/client.go
    builds with the resource builder's Flatten(); the chart's servicePerReplica is a List)."""
    out = []
    for d in yaml.safe_load_all(text):
        if not d:
            continue
        if d.get("kind") == "List" and d.get("apiVersion") == "v1":
            out.extend(d.get("items") or [])
        else:
            out.append(d)
    return out


def obj_id(o: dict) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o
        for o in objs
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[dict], kind: str, name: str) -> dict:
    hits = find(objs, kind, name)
    names = sorted(o["metadata"]["name"] for o in find(objs, kind))
    assert len(hits) == 1, f"expected exactly one {kind}/{name} in the render, found {len(hits)}; {kind}s: {names}"
    return hits[0]


class Render:
    """One helm render: the command (for messages), its text and its parsed objects."""

    def __init__(self, cmd: str, text: str):
        self.cmd = cmd
        self.text = text
        self.objects = parse_objects(text)


class Renderer:
    """Runs `helm template`, caching each (values, release, sets, env) combination for the session."""

    def __init__(self, helm: str, chart: str, envsubst: str | None):
        self.helm = helm
        self.chart = chart
        self.envsubst_bin = envsubst
        self._cache: dict[tuple, Render] = {}

    def _helm(self, release: str, files: list[str], sets: tuple[str, ...], stdin: str | None) -> str:
        cmd = [self.helm, "template", release, self.chart, "-n", NAMESPACE, "--kube-version", KUBE_VERSION]
        for f in files:
            cmd += ["-f", f]
        for s in sets:
            cmd += ["--set", s]
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise HelmError(" ".join(cmd), res.stderr)
        return res.stdout

    def render(self, release: str, *files: Path, sets: tuple[str, ...] = ()) -> Render:
        key = ("files", release, tuple(str(f) for f in files), sets)
        if key not in self._cache:
            paths = [str(f) for f in files]
            shown = "helm template {} CHART -n {} {}{}".format(
                release, NAMESPACE, " ".join(f"-f {Path(p).relative_to(REPO)}" for p in paths),
                "".join(f' --set "{s}"' for s in sets),
            )
            self._cache[key] = Render(shown, self._helm(release, paths, sets, None))
        return self._cache[key]

    def render_central_envsubst(self, release: str, datasources: str | None) -> Render:
        """The seed's `envsubst < central_monitor.yaml | helm install ... -f -`, as a real pipe."""
        key = ("envsubst", release, datasources)
        if key not in self._cache:
            if self.envsubst_bin is None:
                self.envsubst_bin = require_tool("envsubst")
            env = {k: v for k, v in os.environ.items() if k != "CMM_DATASOURCES"}
            if datasources is not None:
                env["CMM_DATASOURCES"] = datasources
            helm_cmd = [self.helm, "template", release, self.chart, "-n", NAMESPACE,
                        "--kube-version", KUBE_VERSION, "-f", "-", "-f", str(CONTENT)]
            with open(CENTRAL) as src:
                sub = subprocess.Popen([self.envsubst_bin], stdin=src, stdout=subprocess.PIPE, env=env)
                res = subprocess.run(helm_cmd, stdin=sub.stdout, capture_output=True, text=True, timeout=120)
                sub.stdout.close()
                assert sub.wait(timeout=30) == 0, "envsubst failed"
            shown = (f"envsubst < values/central_monitor.yaml | helm template {release} CHART -n {NAMESPACE} -f -"
                     " -f values/central_content.yaml"
                     f"  (CMM_DATASOURCES {'unset' if datasources is None else 'set'})")
            if res.returncode != 0:
                raise HelmError(shown, res.stderr)
            self._cache[key] = Render(shown, res.stdout)
        return self._cache[key]


class HelmError(AssertionError):
    def __init__(self, cmd: str, stderr: str):
        super().__init__(f"`{cmd}` failed:\n{stderr}")
        self.stderr = stderr


def _find_chart(helm: str, tmp_root: Path) -> str:
    env_chart = os.environ.get("CMM_CHART")
    if env_chart:
        if not Path(env_chart).exists():
            pytest.fail(f"CMM_CHART={env_chart} does not exist; point it at the kube-prometheus-stack "
                        f"{CHART_VERSION} directory or .tgz", pytrace=False)
        return env_chart
    shared = REPO.parent / "shared" / "charts" / "kube-prometheus-stack"
    if (shared / "Chart.yaml").exists():
        return str(shared)
    res = subprocess.run(
        [helm, "pull", "kube-prometheus-stack", "--repo", CHART_REPO, "--version", CHART_VERSION,
         "--destination", str(tmp_root)],
        capture_output=True, text=True, timeout=120,
    )
    if res.returncode == 0:
        return str(next(tmp_root.glob("kube-prometheus-stack-*.tgz")))
    msg = (f"kube-prometheus-stack {CHART_VERSION} not found: set CMM_CHART, or go online for "
           f"`helm pull` ({res.stderr.strip()})")
    if os.environ.get("CMM_REQUIRE_TOOLS") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


