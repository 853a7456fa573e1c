"""Golden renders: a values change shows up as a reviewable diff of what helm installs.

Regenerate after a deliberate change with `scripts/dev golden` (pytest -k golden with
CMM_UPDATE_GOLDEN=1). Renders are deterministic as they stand (checked below by rendering twice):
no random passwords or certificates come out of these values, so nothing is normalised.
"""

from __future__ import annotations

import difflib
import os

import pytest

from cmm_values import CENTRAL, EACH, GOLDEN, RELEASES, TWO_CLUSTERS, datasources_value

REGENERATE = "scripts/dev golden"
# Golden name -> (role, variant of test_topologies.py); one release each is enough to show a diff.
TOPOLOGY_GOLDEN = {
    "push": ("cluster", "push-agent"),
    "central-receiver": ("central", "receiver"),
    "central-receiver-victoriametrics": ("central", "receiver-victoriametrics"),
    "thanos-sidecar": ("cluster", "thanos"),
    "thanos-query": ("central", "thanos-query"),
}


def golden_render(renderer, name, release):
    if name == "each_cluster":
        return renderer.render(release, EACH)
    # The growth paths (test_topologies.py), each as its overlay's header shows it.
    if name in TOPOLOGY_GOLDEN:
        from test_topologies import render_central, render_cluster

        kind, variant = TOPOLOGY_GOLDEN[name]
        return (render_cluster if kind == "cluster" else render_central)(renderer, release, variant)
    # The central golden file is the envsubst route with a fixed two-cluster fleet.
    return renderer.render_central_envsubst(release, datasources_value(TWO_CLUSTERS))


@pytest.mark.parametrize("name,release", [
    (n, r) for n in ["each_cluster", "central_monitor"] for r in RELEASES
] + [(n, RELEASES[0]) for n in TOPOLOGY_GOLDEN])
def test_golden_render_has_not_drifted(renderer, name, release):
    r = golden_render(renderer, name, release)
    path = GOLDEN / f"{name}.{release}.yaml"
    if os.environ.get("CMM_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(r.text)
        return
    assert path.exists(), f"{path.relative_to(GOLDEN.parent.parent)} is missing: run `{REGENERATE}`"
    want = path.read_text()
    if r.text != want:
        diff = "".join(list(difflib.unified_diff(
            want.splitlines(True), r.text.splitlines(True), str(path.name), f"{r.cmd}", n=2))[:80])
        pytest.fail(
            f"the render of {name} for release {release} differs from {path.name}.\n"
            f"If the change is intended, run `{REGENERATE}` and commit tests/golden/.\n{diff}",
            pytrace=False,
        )


def test_golden_renders_are_deterministic(renderer, helm_bin, chart_dir):
    # A second, uncached helm run must give byte-identical output, or golden files would flap.
    import subprocess

    from cmm_values import KUBE_VERSION, NAMESPACE

    for path in (EACH, CENTRAL):
        out = subprocess.run(
            [helm_bin, "template", RELEASES[0], chart_dir, "-n", NAMESPACE, "--kube-version", KUBE_VERSION,
             "-f", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout
        assert out == renderer.render(RELEASES[0], path).text, f"helm output of {path.name} is not deterministic"
