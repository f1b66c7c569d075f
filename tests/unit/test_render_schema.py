"""``chamberlain schema``: the editor JSON Schema accepts every valid intent document and rejects broken ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chamberlain.schema import DRAFT_07, intent_json_schema, kind_json_schemas
from tests.unit.test_render import REPOS


def intent_documents(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("chamberlain.dev/"):
                out.append(doc)
    return out


def validator() -> jsonschema.Draft7Validator:
    schema = intent_json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_schema_is_draft_07_and_json_serializable() -> None:
    schema = intent_json_schema()
    assert schema["$schema"] == DRAFT_07
    assert json.loads(json.dumps(schema, sort_keys=True)) == schema
    assert schema["properties"]["kind"]["enum"] == ["Platform", "RotationPolicy", "SecretIntent"]


@pytest.mark.parametrize("name", sorted(REPOS))
def test_valid_repositories_validate(name: str) -> None:
    v = validator()
    documents = intent_documents(REPOS[name])
    assert documents
    for doc in documents:
        errors = list(v.iter_errors(doc))
        assert not errors, (doc["metadata"]["name"], errors[0].message)


@pytest.mark.parametrize(("label", "mutate"), [
    ("unknown kind", lambda d: d.update(kind="Secret")),
    ("wrong apiVersion", lambda d: d.update(apiVersion="chamberlain.dev/v1")),
    ("missing owner", lambda d: d["spec"].pop("owner")),
    ("unknown field", lambda d: d["spec"].update(colour="blue")),
    ("two sources", lambda d: d["spec"]["source"].update(bootstrap={"file": "x.sops.yaml"})),
    ("bad classification", lambda d: d["spec"].update(classification="secret")),
])
def test_broken_documents_are_reported(label: str, mutate: Any) -> None:
    doc = copy.deepcopy(next(d for d in intent_documents(REPOS["base"]) if d["kind"] == "SecretIntent"))
    mutate(doc)
    assert list(validator().iter_errors(doc)), label


def test_errors_name_the_kind_the_author_meant() -> None:
    # With if/then, a SecretIntent's error is about SecretIntent fields, not about Platform's.
    doc = {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "x"},
           "spec": {"owner": "a"}}
    messages = " ".join(e.message for e in validator().iter_errors(doc))
    assert "purpose" in messages and "environments" not in messages


def test_per_kind_schemas() -> None:
    schemas = kind_json_schemas()
    assert sorted(schemas) == ["Platform", "RotationPolicy", "SecretIntent"]
    for schema in schemas.values():
        jsonschema.Draft7Validator.check_schema(schema)
