"""The intent CRDs: structural schemas, accepted by Kubernetes' rules, that accept exactly what we render."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from chamberlain.intent.model import GROUP, VERSION
from chamberlain.render.crds import CRDError, _merge, crd, crd_file_name, crd_kinds
from tests.unit.test_render import REPOS, docs, render
from tests.unit.test_render_eso import strict

# Keys Kubernetes rejects in a v1 CRD schema, or that have no place in ours.
FORBIDDEN = {"$ref", "$defs", "definitions", "$schema", "id", "patternProperties", "propertyNames", "const",
             "dependencies", "additionalItems", "title", "default", "discriminator"}
# Inside anyOf/oneOf/allOf/not, a structural schema may not say these (Kubernetes "structural schema" rules).
FORBIDDEN_IN_JUNCTOR = {"type", "description", "default", "additionalProperties", "nullable", "items",
                        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string"}


def structural_problems(node: dict[str, Any], where: str = "") -> list[str]:
    """Every violation of the structural-schema rules we rely on, with its JSON path."""
    problems = [f"{where}: {key}" for key in FORBIDDEN if key in node]
    if not ("type" in node or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")):
        problems.append(f"{where}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties together")
    if node.get("additionalProperties") is False or node.get("uniqueItems") is True:
        problems.append(f"{where}: additionalProperties false / uniqueItems true")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{where}: array without items")
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            problems += structural_problems(node[key], f"{where}.{key}")
    for junctor in ("anyOf", "oneOf", "allOf"):
        for i, alt in enumerate(node.get(junctor, [])):
            problems += junctor_problems(alt, node, f"{where}.{junctor}[{i}]")
    if "not" in node:
        problems += junctor_problems(node["not"], node, f"{where}.not")
    return problems


def junctor_problems(alt: dict[str, Any], parent: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}: {key} inside a junctor" for key in FORBIDDEN_IN_JUNCTOR | FORBIDDEN if key in alt]
    # Fields a junctor mentions must be specified (typed) outside it.
    for name in alt.get("required", []) + list(alt.get("properties", {})):
        if name not in parent.get("properties", {}):
            problems.append(f"{where}: {name} not declared outside the junctor")
    return problems


@pytest.mark.parametrize("kind", crd_kinds())
def test_crd_is_structural(kind: str) -> None:
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    # Only the status and nothing else may keep unknown fields.
    text = yaml.safe_dump(schema["properties"]["spec"])
    assert "x-kubernetes-preserve-unknown-fields" not in text


def test_checker_catches_non_structural_schemas() -> None:
    bad = {"type": "object", "properties": {
        "a": {"$ref": "#/x"},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "c": {"type": "object", "oneOf": [{"required": ["zzz"]}]},
    }}
    found = " ".join(structural_problems(bad))
    assert ".a: $ref" in found and ".b: no type" in found and "type inside a junctor" in found
    assert "zzz not declared" in found


@pytest.mark.parametrize("kind", crd_kinds())
def test_crd_shape(kind: str) -> None:
    doc = crd(kind)
    spec = doc["spec"]
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
    assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["name"] == VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert crd_file_name(kind) == f"{GROUP}_{spec['names']['plural']}.yaml"


@pytest.mark.parametrize(("kind", "columns"), [
    ("SecretIntent", ["Phase", "Ready", "Version", "Last Rotated", "Next Rotation", "Consumers", "Class", "Owner",
                      "Age"]),
    ("RotationPolicy", ["Type", "TTL", "Age"]),
    ("Platform", ["Environments", "Authority", "Age"]),
])
def test_printer_columns(kind: str, columns: list[str]) -> None:
    cols = crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in cols] == columns
    assert all(c["jsonPath"].startswith(".") and "[*]" not in c["jsonPath"] for c in cols)
    # a status column names a field the schema declares (the controller writes it: test_controller_status)
    status = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for c in cols:
        if c["jsonPath"].startswith(".status."):
            assert c["jsonPath"].split(".")[2].split("[")[0] in status, c


def _schema(kind: str) -> dict[str, Any]:
    return strict(crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("name", sorted(REPOS))
def test_rendered_intents_validate_against_the_crds(name: str) -> None:
    validators = {k: jsonschema.Draft4Validator(_schema(k)) for k in crd_kinds()}
    count = 0
    for path, doc in docs(render(name), "clusters/"):
        if doc["apiVersion"] == f"{GROUP}/{VERSION}":
            errors = list(validators[doc["kind"]].iter_errors(doc))
            assert not errors, f"{path} {doc['metadata']['name']}: {errors[0].message}"
            count += 1
    assert count


def _intent() -> dict[str, Any]:
    return next(d for _, d in docs(render("base"), "clusters/") if d["kind"] == "SecretIntent"
                and "generate" in d["spec"]["source"])


@pytest.mark.parametrize(("label", "mutate"), [
    ("two sources", lambda s: s["source"].update(publication={"namespace": "a", "secretName": "b"})),
    ("no source", lambda s: s.update(source={})),
    ("policy and inline", lambda s: s.update(rotation={"policy": "standard", "type": "static"})),
    ("bad class", lambda s: s.update(classification="secret")),
    ("bad generator", lambda s: s["source"]["generate"].update(x={"type": "uuid"})),
    ("bad duration", lambda s: s.update(rotation={"type": "time-based", "ttl": "90 days"})),
    ("unknown field", lambda s: s.update(colour="blue")),
])
def test_crd_rejects(label: str, mutate: Any) -> None:
    doc = copy.deepcopy(_intent())
    mutate(doc["spec"])
    assert list(jsonschema.Draft4Validator(_schema("SecretIntent")).iter_errors(doc)), label


def test_crd_accepts_inline_rotation_and_every_generator() -> None:
    doc = copy.deepcopy(_intent())
    doc["spec"]["rotation"] = {"type": "time-based", "ttl": "30d", "rotateBefore": "2d"}
    doc["spec"]["source"]["generate"] = {
        "a": {"type": "password", "length": 20, "symbols": True},
        "b": {"type": "token", "bytes": 32, "encoding": "hex"},
        "c": {"type": "bytes", "length": 64, "encoding": "base64"},
        "d": {"type": "ed25519"},
        "e": {"type": "ecdsa", "curve": "P-384"},
        "f": {"type": "rsa", "bits": 4096},
        "g": {"type": "fixed-name", "name": "svc"},
    }
    assert not list(jsonschema.Draft4Validator(_schema("SecretIntent")).iter_errors(doc))


def test_merging_incompatible_types_is_an_error() -> None:
    with pytest.raises(CRDError):
        _merge([{"type": "string"}, {"type": "integer"}])


def test_merge_keeps_exclusive_required_sets() -> None:
    merged = _merge([
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
    ])
    assert merged["oneOf"] == [{"required": ["a"]}, {"required": ["b"]}]
    assert "required" not in merged
