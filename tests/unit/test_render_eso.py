"""Every rendered ESO object validates against the openAPIV3Schema of ESO's real CRDs.

The CRDs come from the lab's ESO build (``~/.cache/chamberlain/lab/external-secrets/<version>/crds``) or from the
Go module cache. When neither is on this machine the test is skipped, and says so. Unknown fields are errors
here (as with ``kubectl apply --validate=strict``): every object schema that lists its properties gets
``additionalProperties: false`` unless it preserves unknown fields.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chamberlain import wellknown as wk
from chamberlain.intent.loader import load_repository
from chamberlain.render import eso
from chamberlain.render.yamlio import dump_yaml
from tests.conftest import EXAMPLES
from tests.unit.test_render import ACME, BASE, REPOS, docs, render

SEARCH = [
    Path.home() / ".cache" / "chamberlain" / "lab" / "external-secrets",
    Path("/root/go/pkg/mod/github.com/external-secrets"),
    Path.home() / "go" / "pkg" / "mod" / "github.com" / "external-secrets",
]


@cache
def eso_crd_dir() -> Path | None:
    for base in SEARCH:
        if not base.is_dir():
            continue
        hits = sorted(base.glob("**/external-secrets.io_externalsecrets.yaml"))
        if hits:
            return hits[-1].parent
    return None


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy in which listed properties are the only ones allowed (what pruning + strict validation means)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "properties" in node and "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
        for key in ("properties",):
            stack.extend(node.get(key, {}).values())
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            stack.extend(node.get(key, []))
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, for every served version of ESO's namespaced kinds."""
    directory = eso_crd_dir()
    assert directory is not None
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("external-secrets.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                api = f"{crd['spec']['group']}/{version['name']}"
                out[(api, crd["spec"]["names"]["kind"])] = strict(version["schema"]["openAPIV3Schema"])
    return out


needs_crds = pytest.mark.skipif(
    eso_crd_dir() is None,
    reason="ESO CRDs not found (build ESO with `chamberlain lab up` or fetch the Go module); "
    "the ESO schema check is SKIPPED",
)


@needs_crds
@pytest.mark.parametrize("name", sorted(REPOS))
def test_every_eso_object_matches_the_real_crd(name: str) -> None:
    schemas = crd_schemas()
    seen: dict[str, int] = {}
    for path, doc in docs(render(name), "envs/"):
        if not doc["apiVersion"].startswith("external-secrets.io/"):
            continue
        key = (doc["apiVersion"], doc["kind"])
        assert key in schemas, f"{path}: ESO does not serve {key}"
        errors = sorted(jsonschema.Draft4Validator(schemas[key]).iter_errors(doc), key=str)
        assert not errors, f"{path} {doc['kind']} {doc['metadata']['name']}: {errors[0].message}"
        seen[doc["kind"]] = seen.get(doc["kind"], 0) + 1
    assert {"SecretStore", "ExternalSecret", "PushSecret"} <= set(seen), seen


@needs_crds
def test_the_strict_check_catches_a_misspelled_field() -> None:
    schemas = crd_schemas()
    doc = next(d for _, d in docs(render("base"), "envs/") if d["kind"] == "ExternalSecret")
    broken = copy.deepcopy(doc)
    broken["spec"]["target"]["creationPolicy"] = "Owned"  # not an enum value
    broken["spec"]["refreshIntervall"] = "1h"
    validator = jsonschema.Draft4Validator(schemas[(doc["apiVersion"], doc["kind"])])
    messages = " ".join(e.message for e in validator.iter_errors(broken))
    assert "Owned" in messages and "refreshIntervall" in messages


@needs_crds
def test_push_secret_version_is_the_one_eso_serves() -> None:
    served = {api for api, kind in crd_schemas() if kind == "PushSecret"}
    assert served == {"external-secrets.io/v1alpha1"}
    assert ("external-secrets.io/v1", "ExternalSecret") in crd_schemas()
    assert ("external-secrets.io/v1", "SecretStore") in crd_schemas()


def _marked(doc: dict[str, Any]) -> dict[str, Any]:
    """Rendered ExternalSecrets carry the version marker already; a copy keeps tests from mutating the tree."""
    return copy.deepcopy(doc)


@needs_crds
def test_version_marker_extension_matches_the_real_crd() -> None:
    """Both shapes (key mapping and extract-everything) stay valid ExternalSecrets with the marker template."""
    schemas = crd_schemas()
    seen = set()
    for _, doc in docs(render("base"), "envs/"):
        if doc["kind"] != "ExternalSecret":
            continue
        marked = _marked(doc)
        errors = sorted(jsonschema.Draft4Validator(schemas[(doc["apiVersion"], doc["kind"])]).iter_errors(marked),
                        key=str)
        assert not errors, errors[0].message
        seen.add("data" if "dataFrom" not in doc["spec"] else "dataFrom")
    assert seen == {"data", "dataFrom"}


def test_version_marker_extension_shape() -> None:
    from chamberlain.render import eso

    doc = next(d for _, d in docs(render("base"), "envs/") if d["kind"] == "ExternalSecret" and "data" in d["spec"])
    marked = _marked(doc)
    entry = marked["spec"]["data"][-1]
    assert entry == {"secretKey": eso.METADATA_KEY, "remoteRef": {"key": entry["remoteRef"]["key"],
                                                                  "metadataPolicy": "Fetch"}}
    template = marked["spec"]["target"]["template"]
    assert template["engineVersion"] == "v2" and template["mergePolicy"] == "Replace"
    assert template["metadata"]["labels"] == doc["spec"]["target"]["template"]["metadata"]["labels"]
    assert eso.METADATA_KEY in template["metadata"]["annotations"][wk.ANNOTATION_VERSION_MARKER]
    assert template["templateFrom"][0]["target"] == "Data"
    # Rendered by default: the reader policy grants read on the metadata path (test_render_vault).
    assert eso.METADATA_KEY in str(doc)
    # Applying it twice is refused rather than silently doubling the entry.
    with pytest.raises(ValueError, match="reserved"):
        eso.add_version_marker(marked["spec"], "x")


# ------------------------------------------------------------------------------ the direct ExternalSecret writer


def _reads(path: Path) -> list[tuple[Any, str]]:
    from chamberlain.render.topology import build_topology

    repo = load_repository(path)
    assert repo.platform is not None
    topo = build_topology(repo.platform, [p.obj for p in repo.policy_index().values()],
                          [i.obj for i in repo.intent_index().values()])
    return [(read, unit.environment) for unit in topo.units for reads in unit.reads.values() for read in reads]


@pytest.mark.parametrize("path", [*REPOS.values(), EXAMPLES / "acme-tenancy"], ids=lambda p: p.name)
def test_external_secret_text_is_the_general_dump_byte_for_byte(path: Path) -> None:
    """Render writes a plain consumer's ExternalSecret directly (its hottest document); it must be exactly what
    dumping :func:`eso.external_secret` writes, and decline what it does not cover (templates)."""
    reads = _reads(path)
    assert reads
    direct = 0
    for read, env in reads:
        text = eso.external_secret_text(read, env)
        if read.parts:
            assert text is None
            continue
        assert text == dump_yaml(eso.external_secret(read, env, version_marker=True))
        direct += 1
    assert direct


def _publications(path: Path) -> list[tuple[Any, Any, str, str, str, list[Any]]]:
    from chamberlain.render.topology import build_topology

    repo = load_repository(path)
    assert repo.platform is not None
    topo = build_topology(repo.platform, [p.obj for p in repo.policy_index().values()],
                          [i.obj for i in repo.intent_index().values()])
    return [(topo.platform, unit, unit.environment, unit.cluster, ns, pubs)
            for unit in topo.units for ns, pubs in unit.publishes.items()]


def _general(platform: Any, env: str, cluster: str, ns: str, pubs: list[Any]) -> list[eso.Document]:
    return [eso.document(m) for m in eso.publisher_objects(platform, env, cluster, ns, pubs)]


@pytest.mark.parametrize("path", [*REPOS.values(), EXAMPLES / "acme-tenancy"], ids=lambda p: p.name)
def test_publisher_documents_are_the_general_dump_byte_for_byte(path: Path) -> None:
    """Render writes each publication's ServiceAccount, SecretStore and PushSecret directly; identity and text
    must be exactly what dumping :func:`eso.publisher_objects` gives."""
    publications = _publications(path)
    assert publications
    for platform, _unit, env, cluster, ns, pubs in publications:
        assert eso.publisher_documents(platform, env, cluster, ns, pubs) == _general(platform, env, cluster, ns, pubs)


@pytest.mark.parametrize("keys", [None, [], ["password"], ["yes", "a.b", "null", "Z-9", "true", "yes"], ["é"]])
@pytest.mark.parametrize("ca", [False, True])
def test_publisher_documents_quote_and_order_like_the_dumper(keys: list[str] | None, ca: bool) -> None:
    platform, _unit, env, cluster, ns, pubs = _publications(ACME if "acme" in REPOS else BASE)[0]
    authority = platform.spec.authority.model_copy(update={
        "address": "https://vault.example:8200/",
        "ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" if ca else None})
    odd_platform = platform.model_copy(update={"spec": platform.spec.model_copy(update={"authority": authority})})
    odd = [replace(pub, source=pub.source.model_copy(update={"keys": keys, "secret_name": "on"})) for pub in pubs]
    for environment in (env, "yes", "1h"):
        assert (eso.publisher_documents(odd_platform, environment, cluster, ns, odd)
                == _general(odd_platform, environment, cluster, ns, odd))


@pytest.mark.parametrize("keys", [
    None, {}, {"PASSWORD": "password"}, {"yes": "on", "a.b": "1", "x_y": "null", "Z-9": "true"},
    {"k": "é"}, {"b": "x", "a": "y", "c": "z"},
])
def test_external_secret_text_quotes_and_orders_like_the_dumper(keys: dict[str, str] | None) -> None:
    read, env = next((r, e) for r, e in _reads(ACME if "acme" in REPOS else BASE) if not r.parts)
    odd = replace(read, consumer=read.consumer.model_copy(update={"keys": keys, "secret_name": "on"}))
    for environment in (env, "yes", "1h"):
        assert eso.external_secret_text(odd, environment) == dump_yaml(
            eso.external_secret(odd, environment, version_marker=True))


def test_external_secret_text_leaves_the_reserved_key_to_the_general_path() -> None:
    read, env = next((r, e) for r, e in _reads(BASE) if not r.parts)
    odd = replace(read, consumer=read.consumer.model_copy(update={"keys": {eso.METADATA_KEY: "password"}}))
    assert eso.external_secret_text(odd, env) is None
    with pytest.raises(ValueError, match="reserved"):
        eso.external_secret(odd, env, version_marker=True)
