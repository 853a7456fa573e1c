"""README's plain-helm block (and README.ko.md's), run as written by bash in a scratch copy of the repository: `helm`
and `kubectl` are stand-ins on PATH (there is no cluster here). The helm stand-in turns each
`helm upgrade --install NAME prometheus-community/kube-prometheus-stack …` into `helm template`
with the real helm and the local chart, same values files, stdin and --set; the kubectl
stand-in records which Secrets the block makes. Every Secret a pod of either release mounts
without `optional: true` must be made by a step of the block: a copy of the block that a pod
cannot start from fails here, not on someone's cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cmm_values import KUBE_VERSION, REPO

HELM_STANDIN = r"""#!/bin/bash
# README's helm, on a chart directory instead of the repository, rendering instead of installing.
set -euo pipefail
case "$1" in
  repo) exit 0 ;;
  upgrade) shift 2 ;;  # upgrade --install
  *) echo "the README block runs helm $1: the stand-in knows repo and upgrade --install" >&2; exit 1 ;;
esac
name=$1; shift 2     # NAME CHART-REFERENCE
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version) shift 2 ;;
    --create-namespace) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$REAL_HELM" template "$name" "$CHART" --kube-version "$KUBE_VERSION" "${args[@]}" > "$OUT/$name.yaml"
"""

KUBECTL_STANDIN = r"""#!/bin/bash
# README's kubectl: records what it would make; reads the files it names as kubectl would.
set -euo pipefail
echo "$*" >> "$OUT/kubectl.log"
for a in "$@"; do
  case "$a" in --from-file=*) f=${a#--from-file=}; f=${f#*=}; test -r "$f" ;; esac
done
"""


def readme_block(readme: str) -> str:
    text = (REPO / readme).read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if "helm upgrade --install kr-mum" in block:
            return block
    raise AssertionError(f"{readme} has no sh block installing kr-mum with plain helm")


def run_block(tmp: Path, helm: str, chart: str, readme: str) -> Path:
    work = tmp / "repo"
    shutil.copytree(REPO / "values", work / "values")
    (work / "teams-workflow-url.txt").write_text("https://teams.example/workflow")
    bin_dir, out = tmp / "bin", tmp / "out"
    bin_dir.mkdir()
    out.mkdir()
    for name, body in (("helm", HELM_STANDIN), ("kubectl", KUBECTL_STANDIN)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", REAL_HELM=helm, CHART=chart,
               KUBE_VERSION=KUBE_VERSION, OUT=str(out))
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block(readme)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{readme}'s plain-helm block failed:\n{res.stderr}"
    return out


def required_secrets(objects) -> set[str]:
    """Secrets a pod (or the operator, for a Prometheus CR) needs, `optional: true` left out."""
    found = set()

    def walk(v):
        if isinstance(v, dict):
            optional = v.get("optional") is True
            if isinstance(v.get("secretName"), str) and not optional:
                found.add(v["secretName"])
            for key in ("secretKeyRef", "secretRef"):
                ref = v.get(key)
                if isinstance(ref, dict) and "name" in ref and ref.get("optional") is not True:
                    found.add(ref["name"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            walk(o["spec"]["template"]["spec"])
        elif o["kind"] in ("Prometheus", "PrometheusAgent"):
            walk(o["spec"])
            found.update(o["spec"].get("secrets") or [])
    return found


def made_by_chart_jobs(objects) -> set[str]:
    """Secrets the chart's own hook Jobs make (the admission webhook's certificate:
    kube-webhook-certgen `create --secret-name=…`)."""
    return {a.split("=", 1)[1] for o in objects if o["kind"] == "Job"
            for c in o["spec"]["template"]["spec"]["containers"]
            for a in c.get("args", []) if a.startswith("--secret-name=") and "create" in c.get("args", [])}


@pytest.mark.parametrize("readme", ["README.md", "README.ko.md"])
def test_the_readme_block_makes_every_secret_its_pods_mount(tmp_path, helm_bin, chart_dir, readme):
    out = run_block(tmp_path, helm_bin, chart_dir, readme)
    log = out / "kubectl.log"
    made = set(re.findall(r"create secret generic (\S+)", log.read_text() if log.exists() else ""))
    renders = {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in out.glob("*.yaml")}
    assert set(renders) == {"kr-mum", "monitor"}, sorted(renders)
    for release, objects in renders.items():
        missing = required_secrets(objects) - made - made_by_chart_jobs(objects)
        assert not missing, (f"release {release}: its pods mount {sorted(missing)}, "
                             f"which no step of {readme}'s block makes")
    # The generated password stayed in its 0600 file, never in an argument.
    pw = tmp_path / "repo" / "admin-password.txt"
    assert pw.stat().st_mode & 0o077 == 0 and len(pw.read_text()) >= 24
    assert pw.read_text() not in log.read_text()
    # The central datasources are plain http://…:30090; the cluster serves exactly that.
    cluster = renders["kr-mum"]
    [svc] = [o for o in cluster if o["kind"] == "Service" and o["metadata"]["name"] == "cmm-prometheus-0"]
    [prom] = [o for o in cluster if o["kind"] == "Prometheus"]
    assert svc["spec"]["ports"][0]["nodePort"] == 30090
    assert not prom["spec"].get("listenLocal"), "the port would be the mutual-TLS proxy"
    ds = [o for o in renders["monitor"] if o["kind"] == "ConfigMap"
          and o["metadata"]["name"].endswith("-grafana-datasource")]
    urls = re.findall(r"url: \"?(http[^\"\s]+)", ds[0]["data"]["datasource.yaml"])
    assert "http://10.0.0.11:30090" in urls, urls


def commands(readme: str) -> list[list[str]]:
    """Each ```sh block's command lines, comments (the translated part) left out."""
    out = []
    for body in re.findall(r"```sh\n(.*?)```", (REPO / readme).read_text(), re.S):
        lines = [l.split(" #")[0].rstrip() for l in body.splitlines() if not l.lstrip().startswith("#")]
        out.append([l for l in lines if l])
    return out


def test_the_korean_readme_gives_the_same_commands():
    """README.ko.md drifted before: its blocks must hold the English README's commands."""
    assert commands("README.ko.md") == commands("README.md")
    heads = lambda r: len(re.findall(r"^#{1,3} ", re.sub(r"```.*?```", "", (REPO / r).read_text(), flags=re.S), re.M))
    assert heads("README.ko.md") == heads("README.md"), "a section is missing in one of the READMEs"


def test_the_getting_started_twins_give_the_same_commands():
    en, ko = ("docs/getting-started.md", "docs/getting-started.ko.md")
    assert commands(ko) == commands(en)
