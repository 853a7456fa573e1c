#!/usr/bin/env python3
"""Generate values/central_content.yaml from content/ (dashboards and alerting).

    scripts/dev content            write it
    scripts/dev content --check    exit 1 if it differs from what content/ gives (the drift test)

The dashboards go in as their source text, byte for byte (helm's `|-` drops only the final
newline). Alerting files go through the grafana subchart's `tpl`, which would execute Grafana's
own `{{ ... }}` templates; every `{{` is therefore written as the helm action `{{ "{{" }}`,
which prints `{{` — helm's output is the source again (tests/values/test_content.py checks).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "content"
OUT = REPO / "values" / "central_content.yaml"
REGENERATE = "scripts/dev content"

HEADER = f"""\
# CMM: dashboards and alerting for the CENTRAL Grafana (kube-prometheus-stack 66.1.0).
# GENERATED from content/ by `{REGENERATE}` - edit content/, then regenerate.
#
# The SECOND values file of the central release, and never through envsubst: dashboards are full
# of Grafana's own $ references ($__rate_interval, ${{datasource}}) that envsubst would blank.
#
#   envsubst < central_monitor.yaml | helm upgrade --install monitor \\
#     prometheus-community/kube-prometheus-stack --version 66.1.0 -n monitor -f - -f central_content.yaml
#
# Alerting needs the Secret cmm-grafana-alerting (docs/alerting.md).
"""


class Literal(str):
    """A string dumped as a YAML literal block."""


def _literal(dumper: yaml.SafeDumper, s: Literal):
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")


class Dumper(yaml.SafeDumper):
    pass


Dumper.add_representer(Literal, _literal)


def helm_escape(value):
    """Make a value survive the chart's `tpl`: each `{{` becomes an action printing `{{`."""
    if isinstance(value, str):
        return value.replace("{{", '{{ "{{" }}')
    if isinstance(value, list):
        return [helm_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: helm_escape(v) for k, v in value.items()}
    return value


RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_UID = "cmm-runbook"
RUNBOOK_PANEL_HEIGHT = 9


def runbook_dashboard() -> str:
    """docs/runbook.md as dashboard `cmm-runbook`: one markdown text panel per `## <Alert>`
    section, ids 1, 2, ... in their order. Each rule's runbook_url opens its panel alone
    (`/d/cmm-runbook?viewPanel=<id>`, core/src/content.rs), inside the central Grafana."""
    text = RUNBOOK.read_text()
    if "$" in text or "{{" in text:
        sys.exit("docs/runbook.md: no `$` or `{{` (Grafana's text panels interpolate variables)")
    intro, *sections = text.split("\n## ")
    panels = []
    for i, section in enumerate(sections):
        alert, _, body = section.partition("\n")
        # Links to the other docs point at the repository's files, which Grafana does not serve.
        body = re.sub(r"\[([^\]]+)\]\(([a-z-]+\.md)\)", r"\1 (docs/\2)", body.strip())
        panels.append({
            "id": i + 1,
            "type": "text",
            "title": alert.strip(),
            "gridPos": {"h": RUNBOOK_PANEL_HEIGHT, "w": 24, "x": 0, "y": i * RUNBOOK_PANEL_HEIGHT},
            "options": {"mode": "markdown", "content": body + "\n"},
        })
    description = " ".join(l for l in intro.splitlines()[1:] if l.strip())
    dashboard = {
        "uid": RUNBOOK_UID,
        "title": "CMM / Runbook",
        "description": re.sub(r"\[([^\]]+)\]\(([a-z-]+\.md)\)", r"\1", description),
        "tags": ["cmm", "runbook"],
        "editable": False,
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }
    return json.dumps(dashboard, indent=2) + "\n"


def dashboards() -> dict:
    out = {RUNBOOK_UID: {"json": Literal(runbook_dashboard())}}
    for path in sorted((CONTENT / "dashboards").glob("*.json")):
        text = path.read_text()
        d = json.loads(text)  # a parse error stops the generator with the file's name
        if path.stem == RUNBOOK_UID:
            sys.exit(f"{path.relative_to(REPO)}: {RUNBOOK_UID} is generated from docs/runbook.md")
        if d.get("uid") != path.stem:
            sys.exit(f"{path.relative_to(REPO)}: uid {d.get('uid')!r} must equal the file name {path.stem!r}")
        out[path.stem] = {"json": Literal(text)}
    downloads = yaml.safe_load((CONTENT / "dashboards" / "grafana-com.yaml").read_text())
    for name, spec in downloads.items():
        if name in out:
            sys.exit(f"dashboard {name} is defined twice (JSON and grafana-com.yaml)")
        out[name] = spec
    return out


def alerting() -> dict:
    tmpl = (CONTENT / "alerting" / "templates.tmpl").read_text()
    if "$" in tmpl:
        sys.exit("content/alerting/templates.tmpl: no `$` allowed (Grafana expands $NAME in provisioning files)")
    templates = {"apiVersion": 1, "templates": [{"orgId": 1, "name": "cmm", "template": Literal(tmpl)}]}
    files = {
        "contactpoints.yaml": yaml.safe_load((CONTENT / "alerting" / "contact-points.yaml").read_text()),
        "policies.yaml": yaml.safe_load((CONTENT / "alerting" / "policies.yaml").read_text()),
        "templates.yaml": templates,
    }
    out = {}
    for name, body in files.items():
        escaped = helm_escape(body)
        if name == "templates.yaml":
            escaped["templates"][0]["template"] = Literal(escaped["templates"][0]["template"])
        out[name] = escaped
    return out


def render() -> str:
    values = {"grafana": {"dashboards": {"cmm": dashboards()}, "alerting": alerting()}}
    body = yaml.dump(values, Dumper=Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)
    return HEADER + body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the generated file has drifted")
    args = ap.parse_args()
    want = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != want:
            print(f"{OUT.relative_to(REPO)} differs from what content/ gives: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(want)
    print(f"wrote {OUT.relative_to(REPO)} ({len(want)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
