"""JSON Schema of the intent format for editors (``chamberlain schema``), generated from the pydantic models.

Belongs here: one draft-07 schema document that yaml-language-server (VS Code, Neovim, ...) can use to complete
and check intent files. The three kinds share one ``$defs``; the root picks the kind's schema with
``if kind == X then <X>`` — unlike a bare ``oneOf``, an editor then reports the errors of the kind the author
meant instead of those of all three. Not here: the CRD schemas (:mod:`chamberlain.render.crds`), which must obey
Kubernetes' narrower structural rules.

Use it from an intent file with a modeline::

    # yaml-language-server: $schema=./chamberlain.schema.json
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from chamberlain.intent.model import API_VERSION, KINDS

SCHEMA_ID = "https://chamberlain.dev/schemas/v1alpha1/intent.json"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def kind_json_schemas() -> dict[str, dict[str, Any]]:
    """kind -> a standalone JSON Schema of that kind (its own ``$defs``)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(KINDS):
        schema = KINDS[kind].model_json_schema(by_alias=True, mode="validation")
        out[kind] = {"$schema": DRAFT_07, **schema}
    return out


def intent_json_schema() -> dict[str, Any]:
    """One schema for any intent document (Platform, RotationPolicy or SecretIntent)."""
    kinds = sorted(KINDS)
    # One shared $defs so definitions used by several kinds appear once.
    refs, shared = models_json_schema(
        [(KINDS[k], "validation") for k in kinds], by_alias=True, ref_template="#/$defs/{model}"
    )
    branches = [
        {
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"$ref": refs[(KINDS[kind], "validation")]["$ref"]},
        }
        for kind in kinds
    ]
    return {
        "$schema": DRAFT_07,
        "$id": SCHEMA_ID,
        "title": "chamberlain intent",
        "description": "A chamberlain intent document: Platform, RotationPolicy or SecretIntent "
        f"({API_VERSION}). Several documents per file are allowed.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": kinds},
        },
        "allOf": branches,
        "$defs": shared.get("$defs", {}),
    }
