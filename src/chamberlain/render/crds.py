"""CustomResourceDefinitions of the intent kinds, generated from the pydantic models (one source of truth), and of
``RotationRun``, the controller's record of one rotation (a hand-written schema: it is no intent and has no model).

Belongs here: turning the JSON Schema pydantic produces into a Kubernetes *structural* OpenAPI v3 schema, and
wrapping it into a ``apiextensions.k8s.io/v1`` CRD with status subresource and printer columns. Nothing here
reads a repository: the CRDs depend only on the code.

Kubernetes accepts a narrower schema language than JSON Schema (see "Specifying a structural schema" in the
CustomResourceDefinition docs). The translation, node by node:

- ``$ref`` is inlined (CRDs cannot reference), ``title`` and ``default`` are dropped (defaults stay in the models,
  so the API server never disagrees with the code about them);
- ``Optional[X]`` (``anyOf: [X, null]``) becomes ``X``: absent fields are simply not written;
- a union of object types (the generators, and the rotation setting ``{policy}`` vs. an inline policy) becomes one
  object whose properties are the union of the variants' properties, with the enums of shared fields merged and
  only the fields every variant requires kept required. When each variant has its own disjoint required set, a
  ``oneOf`` of ``required`` lists (a value validation, allowed in structural schemas) keeps them exclusive;
- the ``oneOf`` of ``required`` lists on ``source`` is kept as is (exactly one of generate/bootstrap/publication);
- maps with key patterns (``patternProperties``) become ``additionalProperties``: Kubernetes cannot check key
  names, the checker and the controller (both pydantic) do;
- ``const`` becomes a one-element ``enum``; a numeric ``exclusiveMinimum`` becomes the OpenAPI v3.0 boolean form.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from chamberlain.intent.model import (
    GROUP,
    PLATFORMS,
    ROTATION_POLICIES,
    ROTATION_RUN_KIND,
    ROTATION_RUNS,
    SECRET_INTENTS,
    VERSION,
    Platform,
    RotationPolicy,
    SecretIntent,
)

Schema = dict[str, Any]

# Value validations Kubernetes understands; everything else pydantic may emit is dropped or translated.
_SCALAR_KEYS = (
    "description",
    "enum",
    "format",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
)
# Formats the API server validates or at least tolerates; others (pydantic's "uri", ...) are dropped.
_K8S_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "password", "uuid", "duration"}


class CRDError(Exception):
    """The models contain a construct that has no structural equivalent (a programming error, caught in tests)."""


# --------------------------------------------------------------------------------------- JSON Schema -> structural


class _Converter:
    def __init__(self, defs: Mapping[str, Schema]) -> None:
        self._defs = defs

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            seen += 1
            if seen > 32:
                raise CRDError(f"reference cycle at {schema['$ref']}")
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            # A $ref with siblings (pydantic puts a field's description next to it) keeps those siblings.
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self._defs[name], **siblings}
        return schema

    def variants(self, schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The non-null alternatives of a union, nested unions flattened; ``[schema]`` if it is no union."""
        schema = self.resolve(schema)
        union = schema.get("anyOf") or (None if _is_required_junctor(schema.get("oneOf")) else schema.get("oneOf"))
        if not union:
            return [] if schema.get("type") == "null" else [schema]
        out: list[Mapping[str, Any]] = []
        for alt in union:
            out.extend(self.variants(alt))
        return out

    def convert(self, schema: Mapping[str, Any]) -> Schema:
        schema = self.resolve(schema)
        alternatives = self.variants(schema)
        if len(alternatives) != 1 or alternatives[0] is not schema:
            if not alternatives:
                raise CRDError("a field that can only be null has no structural type")
            converted = [self.convert(a) for a in alternatives]
            merged = converted[0] if len(converted) == 1 else _merge(converted)
            if "description" in schema:
                merged = {**merged, "description": schema["description"]}
            return merged
        return self._convert_plain(schema)

    def _convert_plain(self, schema: Mapping[str, Any]) -> Schema:
        out: Schema = {}
        for key in _SCALAR_KEYS:
            if key in schema:
                out[key] = schema[key]
        if "format" in out and out["format"] not in _K8S_FORMATS:
            del out["format"]
        if "const" in schema:
            out["enum"] = [schema["const"]]
        for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(schema.get(bound), int | float) and not isinstance(schema.get(bound), bool):
                out[flag] = schema[bound]
                out[bound] = True
        kind = schema.get("type")
        if kind is None and "enum" in out:
            kind = _enum_type(out["enum"])
        if kind is None:
            raise CRDError(f"schema node without a type: {sorted(schema)}")
        out["type"] = kind
        if kind == "object":
            self._convert_object(schema, out)
        elif kind == "array":
            if "items" not in schema:
                raise CRDError("array without items")
            out["items"] = self.convert(schema["items"])
        return out

    def _convert_object(self, schema: Mapping[str, Any], out: Schema) -> None:
        props = schema.get("properties")
        if props:
            out["properties"] = {name: self.convert(sub) for name, sub in props.items()}
            if schema.get("required"):
                out["required"] = list(schema["required"])
            if _is_required_junctor(schema.get("oneOf")):
                out["oneOf"] = [{"required": list(alt["required"])} for alt in schema["oneOf"]]
            return
        values: list[Schema] = []
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            values.append(self.convert(extra))
        values.extend(self.convert(sub) for sub in (schema.get("patternProperties") or {}).values())
        if values:
            out["additionalProperties"] = values[0] if len(values) == 1 else _merge(values)
        else:
            # A free-form object (``dict[str, Any]``); the only place the API server must keep unknown fields.
            out["x-kubernetes-preserve-unknown-fields"] = True


def _is_required_junctor(alts: Any) -> bool:
    """``oneOf: [{required: [...]}, ...]`` — a pure value validation, not a type union."""
    return isinstance(alts, list) and bool(alts) and all(
        isinstance(a, Mapping) and set(a) == {"required"} for a in alts
    )


def _enum_type(values: Sequence[Any]) -> str:
    kinds = {"boolean" if isinstance(v, bool) else "integer" if isinstance(v, int) else
             "number" if isinstance(v, float) else "string" for v in values}
    if len(kinds) != 1:
        raise CRDError(f"enum mixes types {sorted(kinds)}")
    return kinds.pop()


def _merge(variants: Sequence[Schema]) -> Schema:
    """One structural schema that accepts every variant (see the module docstring)."""
    kinds = {v["type"] for v in variants}
    if len(kinds) != 1:
        raise CRDError(f"a union mixes types {sorted(kinds)}; it has no structural equivalent")
    kind = kinds.pop()
    out: Schema = {"type": kind}
    descriptions = {v.get("description") for v in variants}
    if len(descriptions) == 1 and None not in descriptions:
        out["description"] = descriptions.pop()
    if kind == "object":
        props: dict[str, Schema] = {}
        for v in variants:
            for name, sub in v.get("properties", {}).items():
                props[name] = _merge([props[name], sub]) if name in props else sub
        if props:
            out["properties"] = props
        extras = [v["additionalProperties"] for v in variants if "additionalProperties" in v]
        if extras:
            out["additionalProperties"] = _merge(extras)
        if any(v.get("x-kubernetes-preserve-unknown-fields") for v in variants):
            out["x-kubernetes-preserve-unknown-fields"] = True
        required_sets = [frozenset(v.get("required", ())) for v in variants]
        common = frozenset.intersection(*required_sets)
        if common:
            out["required"] = sorted(common)
        if all(required_sets) and _pairwise_disjoint(required_sets):
            out["oneOf"] = [{"required": sorted(r)} for r in required_sets]
        return out
    if kind == "array":
        out["items"] = _merge([v["items"] for v in variants])
        return out
    if all("enum" in v for v in variants):
        merged_enum: list[Any] = []
        for v in variants:
            merged_enum.extend(x for x in v["enum"] if x not in merged_enum)
        out["enum"] = merged_enum
    # Keep a bound only if every variant has one, and then the loosest.
    for key, pick in (("minimum", min), ("minLength", min), ("maximum", max), ("maxLength", max)):
        if all(key in v for v in variants):
            out[key] = pick(v[key] for v in variants)
    patterns = {v.get("pattern") for v in variants}
    if len(patterns) == 1 and None not in patterns:
        out["pattern"] = patterns.pop()
    return out


def _pairwise_disjoint(sets: Sequence[frozenset[str]]) -> bool:
    seen: set[str] = set()
    for s in sets:
        if seen & s:
            return False
        seen |= s
    return True


def spec_schema(model: type[BaseModel] | Schema) -> Schema:
    """The structural schema of a kind's ``spec`` (its model's ``spec`` field), refs inlined; a hand-written
    schema (``RotationRun``) is returned as is."""
    if isinstance(model, dict):
        return model
    full = model.model_json_schema(by_alias=True, mode="validation")
    converter = _Converter(full.get("$defs", {}))
    return converter.convert(full["properties"]["spec"])


# --------------------------------------------------------------------------------------------------- the CRDs

_CONDITION: Schema = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "condition type, e.g. Ready, Rotating, HandedOver"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "description": "CamelCase machine-readable reason"},
        "message": {"type": "string", "description": "human-readable detail; never a secret value"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "format": "int64"},
    },
}


def _status_schema(kind: str) -> Schema:
    props: dict[str, Schema] = {
        "observedGeneration": {"type": "integer", "format": "int64"},
        "phase": {"type": "string", "description": "where the object stands in its life cycle"},
        "conditions": {
            "type": "array",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    }
    if kind == "Platform":
        props["environments"] = {
            "type": "string",
            "description": "environment names, comma-separated (for the printer column)",
        }
    if kind == "SecretIntent":
        props["authority"] = {
            "type": "string",
            "description": "who is authoritative for the value right now (e.g. git-bootstrap, vault)",
        }
        props["currentVersion"] = {"type": "integer", "description": "KV v2 version of the value in force"}
        # Times are strings without a date-time format: one odd value must never make the API server refuse a
        # whole status update (the controller writes RFC 3339).
        for name, text in (("lastRotated", "RFC 3339 time the value last changed (rotation, creation, handover)"),
                           ("nextRotation", "RFC 3339 time the time trigger rotates next (unset: not by time)"),
                           ("expiresAt", "RFC 3339 time the value outlives its ttl"),
                           ("lastFailure", "RFC 3339 end of the last failed run of the current failure streak"),
                           ("consumersSynced", "consumer Secrets carrying the current version marker, n/m"),
                           ("heldRun", "the run that held the secret"),
                           ("activeRun", "the run in flight"),
                           ("lastRun", "the last run recorded on the secret")):
            props[name] = {"type": "string", "description": text}
        props["overdue"] = {"type": "boolean", "description": "past its ttl and not rotating"}
        props["failedRuns"] = {"type": "integer", "description": "consecutive failed runs (0 after a success)"}
        props["consumers"] = {"type": "object", "description": "consumer Secrets in sync, of those declared",
                              "properties": {"synced": {"type": "integer"}, "total": {"type": "integer"}}}
    if kind == "RotationRun":
        # The controller may publish a condition before it knows a transition time (an empty string), and one odd
        # field must never make the API server refuse a whole status update: no date-time format here.
        condition = copy.deepcopy(_CONDITION)
        condition["properties"]["lastTransitionTime"] = {
            "type": "string", "description": "RFC 3339 time of the last status change; empty when not known"}
        props["conditions"] = {**props["conditions"], "items": condition}
        props.update({
            "runId": {"type": "string", "description": "the run's id (also the object's name)"},
            "attempts": {"type": "integer", "description": "how many times the current step was attempted"},
            # nullable: the controller publishes None until promote wrote a version.
            "currentVersion": {"type": "integer", "nullable": True,
                               "description": "KV v2 version the run promoted (unset before promote)"},
            "previousVersion": {"type": "integer", "nullable": True,
                                "description": "KV v2 version in force when the run started"},
        })
    return {
        "type": "object",
        "description": "written by the chamberlain controller only",
        "properties": props,
        # The controller may record more than this schema knows without a CRD upgrade.
        "x-kubernetes-preserve-unknown-fields": True,
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

RUN_KIND = ROTATION_RUN_KIND
# Every trigger a run may record (rotation.run.TriggerKind, which a unit test keeps equal to this): the render layer
# sits below rotation, so the list is repeated here rather than imported.
RUN_TRIGGERS = ("time", "webhook", "annotation", "manual", "policy-change", "rollback", "import", "external")
_RUN_SPEC: Schema = {
    "type": "object",
    "description": "what the run was asked to do; written once when the run starts",
    "required": ["secret", "path", "trigger"],
    "properties": {
        "secret": {"type": "string", "description": "name of the SecretIntent being rotated"},
        "path": {"type": "string", "description": "Vault KV path of the value (mount and path)"},
        "trigger": {"type": "string", "description": "what started the run (time, webhook, annotation, manual, "
                                                     "policy-change, rollback, import, external: a version a "
                                                     "producer pushed, observed by the controller)",
                    "enum": list(RUN_TRIGGERS)},
        "reason": {"type": "string", "description": "why, in words; never a secret value"},
        "mode": {"type": "string", "description": "rotate, or rollback to an earlier version"},
    },
}

# A table, not code: one entry per CRD, alike on purpose (the duplicate finder pairs its rows).
_KINDS: dict[str, dict[str, Any]] = {
    "Platform": {
        "model": Platform,
        "description": "Where secrets may exist (environments, clusters) and who the runtime authority is.",
        "plural": PLATFORMS,
        "short": [],
        "columns": [
            # A printer column shows only the first value of a list, so the controller writes the joined names.
            {"name": "Environments", "type": "string", "jsonPath": ".status.environments"},
            {"name": "Authority", "type": "string", "jsonPath": ".spec.authority.address"},
            _AGE,
        ],
    },
    "RotationPolicy": {
        "model": RotationPolicy,
        "description": "A named rotation policy secrets start with: type, ttl, safety window, failure strategy.",
        "plural": ROTATION_POLICIES,
        "short": ["rotpol"],
        "columns": [
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            {"name": "TTL", "type": "string", "jsonPath": ".spec.ttl"},
            _AGE,
        ],
    },
    "SecretIntent": {
        "model": SecretIntent,
        "description": "One secret's declared life cycle: owner, purpose, class, source, rotation, consumers.",
        "plural": SECRET_INTENTS,
        "short": ["si"],
        # Every status column is written by the controller (controller.status.compute_status).
        "columns": [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Version", "type": "integer", "jsonPath": ".status.currentVersion"},
            {"name": "Last Rotated", "type": "date", "jsonPath": ".status.lastRotated"},
            # a string: kubectl shows a future date column as "<invalid>"
            {"name": "Next Rotation", "type": "string", "jsonPath": ".status.nextRotation"},
            {"name": "Consumers", "type": "string", "jsonPath": ".status.consumersSynced"},
            {"name": "Class", "type": "string", "jsonPath": ".spec.classification", "priority": 1},
            {"name": "Owner", "type": "string", "jsonPath": ".spec.owner", "priority": 1},
            _AGE,
        ],
    },
    RUN_KIND: {
        "model": _RUN_SPEC,
        "description": "One rotation of one secret, as the chamberlain controller runs it (the run record in Vault "
                       "is the source of truth; this object mirrors it for kubectl and events).",
        "plural": ROTATION_RUNS,
        "short": ["rotrun"],
        "columns": [
            {"name": "Secret", "type": "string", "jsonPath": ".spec.secret"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Trigger", "type": "string", "jsonPath": ".spec.trigger"},
            _AGE,
        ],
    },
}


def crd(kind: str, *, labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None) -> Schema:
    """The CustomResourceDefinition of one kind (an intent kind, or ``RotationRun``)."""
    info = _KINDS[kind]
    model: type[BaseModel] | Schema = info["model"]
    plural: str = info["plural"]
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["chamberlain"],
    }
    if info["short"]:
        names["shortNames"] = list(info["short"])
    metadata: Schema = {"name": f"{plural}.{GROUP}"}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    schema: Schema = {
        "type": "object",
        "description": info["description"],
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # The API server owns metadata; a CRD may not describe it beyond its type.
            "metadata": {"type": "object"},
            "spec": spec_schema(model),
            "status": _status_schema(kind),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(info["columns"]),
                }
            ],
        },
    }


def rotation_run_crd(*, labels: Mapping[str, str] | None = None,
                     annotations: Mapping[str, str] | None = None) -> Schema:
    """The CustomResourceDefinition ``rotationruns.chamberlain.dev`` (rendered with the intent CRDs)."""
    return crd(RUN_KIND, labels=labels, annotations=annotations)


def crd_kinds() -> list[str]:
    """The kinds that ship as CRDs, in a stable order."""
    return sorted(_KINDS)


def crd_name(kind: str) -> str:
    """``secretintents.chamberlain.dev`` — the CustomResourceDefinition's object name."""
    return f"{_KINDS[kind]['plural']}.{GROUP}"


def crd_file_name(kind: str) -> str:
    """``chamberlain.dev_secretintents.yaml`` — the controller-gen naming convention."""
    return f"{GROUP}_{_KINDS[kind]['plural']}.yaml"
