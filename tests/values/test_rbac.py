"""`cmm-agent rbac` prints objects `kubectl apply` accepts: each validates strictly against the
Kubernetes schemas, and the rules are exactly the agent's access table (the Rust tests check the
table itself; here the printed YAML is what an admin would apply)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from test_schemas import validate_all

ROOT = Path(__file__).resolve().parents[2]


def agent_bin() -> str:
    path = os.environ.get("CMM_AGENT_BIN") or str(ROOT / "target" / "debug" / "cmm-agent")
    if os.access(path, os.X_OK):
        return path
    msg = f"{path} not built (run `cargo build -p cmm-agent`, as `scripts/dev test` does first)"
    if os.environ.get("CMM_REQUIRE_TOOLS") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "cluster"],
        ["--role", "cluster", "--kube-metrics", "--subject", "User:arn:aws:iam::111122223333:user/alice"],
        ["--role", "central", "--namespace", "grafana", "--subject", "ServiceAccount:ops:cmm-agent"],
        ["--role", "central", "--subject", "User:admin", "--ca-reader", "Group:cmm-cluster-agents"],
    ],
    ids=["cluster", "cluster-kube-metrics-user", "central-serviceaccount", "central-ca-readers"],
)
def test_printed_rbac_validates_and_binds_the_subject(crd_dir, args):
    out = subprocess.run(
        [agent_bin(), "rbac", *args], capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}
    ).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    kinds = [o["kind"] for o in objects]
    assert kinds[:2] == ["ClusterRole", "ClusterRoleBinding"] and "Role" in kinds, kinds
    errors = validate_all(objects, crd_dir, "cmm-agent rbac " + " ".join(args))
    assert not errors, "\n".join(errors)
    bindings = [o for o in objects if o["kind"].endswith("Binding")]
    for b in bindings:
        assert b["roleRef"]["name"] == b["metadata"]["name"]
        assert len(b["subjects"]) == 1
    # No wildcard anywhere: least privilege is spelled out.
    for o in objects:
        for rule in o.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (o["kind"], rule)
