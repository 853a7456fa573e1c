"""Every rendered object validates: built-in kinds against the Kubernetes schemas of a supported
version (kubernetes-validate, strict: unknown fields are errors), monitoring.coreos.com objects
against the openAPIV3Schema of the chart's own CRDs (jsonschema, unknown fields rejected the way
the API server's strict field validation rejects them)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import re
from referencing import Registry, Resource
import pytest
import yaml

from cmm_values import KUBE_VERSION, RELEASES, obj_id
from test_central_monitor import ROUTES, render_route
from test_each_cluster import VARIANTS, render_variant


class CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML reads a bare `=` (a relabel action enum value in the CRDs) as the YAML 1.1 "value" tag."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def strict_openapi(schema):
    """OpenAPI v3 (CRD flavour) -> JSON Schema that rejects unknown fields and honours nullable."""
    if isinstance(schema, list):
        return [strict_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_openapi(v) for k, v in schema.items()}
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=1)
def crd_validators(crd_dir: str) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    files = sorted(Path(crd_dir).glob("*.yaml"))
    assert files, f"no CRDs found in {crd_dir}"
    for f in files:
        for crd in yaml.load_all(f.read_text(), Loader=CrdLoader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = strict_openapi(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
                # The API server checks metadata itself; the CRD schema leaves it open.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


@functools.lru_cache(maxsize=None)
def k8s_validator(api_version: str, kind: str):
    """kubernetes-validate's strict schema for a kind, built once: its own `validate()` rebuilds the
    schema registry (megabytes of JSON) on every call, which made this tier take minutes.
    Same files and lookup as kubernetes_validate.utils.validate."""
    want = kv.major_minor(KUBE_VERSION)
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= want][-1]
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", KUBE_VERSION)
    except FileNotFoundError:
        return None
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", KUBE_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_all(objects: list[dict], crd_dir: Path, source: str) -> list[str]:
    errors = []
    crds = crd_validators(str(crd_dir))
    for o in objects:
        key = (o.get("apiVersion"), o.get("kind"))
        if key[0].split("/")[0].endswith("monitoring.coreos.com"):
            v = crds.get(key)
            if v is None:
                errors.append(f"{obj_id(o)}: no CRD in the chart defines {key}")
                continue
            for e in sorted(v.iter_errors(o), key=lambda e: list(e.path)):
                path = ".".join(map(str, e.path))
                errors.append(f"{obj_id(o)} ({key[0]}): {path}: {e.message}")
            continue
        v = k8s_validator(*key)
        if v is None:
            errors.append(f"{obj_id(o)}: Kubernetes {KUBE_VERSION} has no schema for {key}")
            continue
        for e in sorted(v.iter_errors(o), key=lambda e: list(e.path)):
            path = ".".join(map(str, e.path))
            errors.append(f"{obj_id(o)} ({key[0]}): {path}: {e.message}")
    return [f"[{source}] {e}" for e in errors]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_cluster_render_validates(renderer, crd_dir, variant, release):
    r = render_variant(renderer, release, variant)
    errors = validate_all(r.objects, crd_dir, r.cmd)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("route", ROUTES)
def test_central_render_validates(renderer, crd_dir, route, release):
    r = render_route(renderer, release, route)
    errors = validate_all(r.objects, crd_dir, r.cmd)
    assert not errors, "\n".join(errors)


def test_validation_catches_a_bad_field(renderer, crd_dir):
    # Guard against a validator that accepts anything: a typo in a Prometheus CR and a wrong type
    # in a Deployment must both be reported, naming the object.
    r = render_variant(renderer, RELEASES[0], "base")
    bad = copy.deepcopy(r.objects)
    prom = next(o for o in bad if o["kind"] == "Prometheus")
    prom["spec"]["externalLables"] = {"cluster": "x"}
    dep = next(o for o in bad if o["kind"] == "Deployment")
    dep["spec"]["replicas"] = "one"
    errors = validate_all(bad, crd_dir, "mutated")
    assert any("Prometheus/cmm" in e and "externalLables" in e for e in errors), errors
    assert any(f"Deployment/{dep['metadata']['name']}" in e and "replicas" in e for e in errors), errors
