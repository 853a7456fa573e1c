"""docs/values.md explains every override of each_cluster.yaml and central_monitor.yaml in a
table, one row per key. A key that moved or went away in the file leaves a row that explains
nothing: every row's key must be in the file it documents (brace lists `a.{b,c}` expanded,
`prometheusSpec.` meaning `prometheus.prometheusSpec.`, `grafana.ini` and `*.yaml` one key each)."""

from __future__ import annotations

import re

import pytest
import yaml

from cmm_values import CENTRAL, CONTENT, EACH, REPO

DOC = REPO / "docs" / "values.md"


def rows(section: str) -> list[str]:
    doc = DOC.read_text()
    start = doc.index(section)
    end = doc.find("\n## ", start + len(section))
    return re.findall(r"^\| `([^`\s]+)` \|", doc[start:end], re.M)


def expand(key: str) -> list[str]:
    m = re.search(r"\{([^}]+)\}", key)
    if not m:
        return [key]
    return [x for part in m.group(1).split(",") for x in expand(key[:m.start()] + part + key[m.end():])]


def path(key: str) -> list[str]:
    key = key.replace("grafana.ini", "grafana\0ini").replace(".yaml", "\0yaml")
    if key.startswith("prometheusSpec."):
        key = "prometheus." + key
    return [p.replace("\0", ".") for p in key.split(".")]


def present(tree, parts) -> bool:
    for p in parts:
        if not isinstance(tree, dict) or p not in tree:
            return False
        tree = tree[p]
    return True


@pytest.mark.parametrize("section,files", [
    ("## each_cluster.yaml", [EACH]),
    # The central release's two files: some rows document central_content.yaml's keys.
    ("## central_monitor.yaml", [CENTRAL, CONTENT]),
])
def test_every_documented_key_is_in_its_file(section, files):
    trees = [yaml.safe_load(f.read_text()) for f in files]
    # Set on the command line, not in the file (docs/values.md says which --set).
    set_on_the_command_line = {"grafana.grafana.ini.server.root_url"}
    missing = [k for row in rows(section) for k in expand(row)
               if k not in set_on_the_command_line and not any(present(t, path(k)) for t in trees)]
    assert not missing, f"docs/values.md documents keys its file no longer has: {missing}"
