"""Fixtures for the values tests (helpers live in cmm_values.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cmm_values import Renderer, _find_chart, require_tool


@pytest.fixture(scope="session")
def chart_dir(helm_bin, tmp_path_factory) -> str:
    return _find_chart(helm_bin, tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return require_tool("helm", os.environ.get("CMM_HELM"))


@pytest.fixture(scope="session")
def renderer(helm_bin, chart_dir) -> Renderer:
    return Renderer(helm_bin, chart_dir, shutil.which("envsubst"))


@pytest.fixture(scope="session")
def chart_root(chart_dir, tmp_path_factory) -> Path:
    """The chart as a directory (unpacked first when CMM_CHART is a .tgz)."""
    p = Path(chart_dir)
    if p.is_dir():
        return p
    out = tmp_path_factory.mktemp("chart-unpacked")
    import tarfile

    with tarfile.open(p) as t:
        t.extractall(out, filter="data")
    return out / "kube-prometheus-stack"


@pytest.fixture(scope="session")
def crd_dir(chart_root) -> Path:
    """The chart's own CRDs (charts/crds/crds/*.yaml)."""
    return chart_root / "charts" / "crds" / "crds"


@pytest.fixture()
def scratch():
    with tempfile.TemporaryDirectory(prefix="cmm-values-test-") as d:
        yield Path(d)
