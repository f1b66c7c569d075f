"""Malformed Kubernetes manifests and kustomizations in an intent repository never crash a repository command.

A ``kind`` (or ``metadata.name``, ``apiVersion``...) that is a mapping or a list, and a kustomization whose
``patches`` or ``resources`` is a scalar or a mapping, once ended ``validate``, ``render`` and ``inventory`` with an
internal error (TypeError: unhashable type). Such a document is no object kubectl or kustomize would apply, so it
is ignored like a YAML file that is no manifest: the example's findings stay exactly what they were.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, run_cli

Mutation = Callable[[dict[str, Any]], None]

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly-report, namespace: payments}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: report
              image: busybox
              envFrom: [{secretRef: {name: payments-api}}]
"""

# file -> what it holds (the first document is mutated); the CronJob is added to the copy.
TARGETS = {
    "apps/payments/deployment.yaml": "Deployment",
    "apps/billing/statefulset.yaml": "StatefulSet",
    "apps/logging/daemonset.yaml": "DaemonSet",
    "apps/databases/orders-db.yaml": "CNPG Cluster",
    "bootstrap/namespace.yaml": "Namespace",
    "apps/payments/cronjob.yaml": "CronJob",
}


def _set(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key] = value
    return mutate


def _set_meta(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["metadata"][key] = value
    return mutate


SHAPES: dict[str, Mutation] = {
    "kind-mapping": _set("kind", {"a": 1}),
    "kind-list": _set("kind", ["x"]),
    "kind-int": _set("kind", 5),
    "kind-null": _set("kind", None),
    "name-mapping": _set_meta("name", {"a": 1}),
    "name-list": _set_meta("name", ["a"]),
    "namespace-list": _set_meta("namespace", ["a"]),
    "namespace-mapping": _set_meta("namespace", {"a": 1}),
    "metadata-int": _set("metadata", 5),
    "metadata-list": _set("metadata", ["a"]),
    "apiVersion-mapping": _set("apiVersion", {}),
    "apiVersion-list": _set("apiVersion", ["v1"]),
}

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: x-\n"
KUSTOMIZE_FIELDS = ("patches", "patchesStrategicMerge", "patchesJson6902", "resources", "bases", "components")
KUSTOMIZE_SHAPES = {
    "int": "5",
    "mapping": "{a: 1}",
    "string": "x.yaml",
    "bool": "true",
    "bad-items": "[5, {path: [a]}, {path: 7}, {path: {b: 1}}, [c], null, {patch: 5}, {patch: [a], target: 5}]",
}


def _copy(example: str, into: Path) -> Path:
    repo = into / "repo"
    shutil.copytree(EXAMPLES / example, repo)
    (repo / "apps" / "payments" / "cronjob.yaml").write_text(CRONJOB)
    return repo


def _findings(repo: Path) -> list[dict[str, Any]]:
    """validate's findings, after render and inventory also ran on ``repo`` without an internal error."""
    runs = {
        "validate": run_cli("validate", str(repo), "--no-cache", "-o", "json"),
        "render": run_cli("render", str(repo), "-o", str(repo.parent / "out"), "--no-cache"),
        "inventory": run_cli("inventory", str(repo), "-o", "json"),
    }
    for command, result in runs.items():
        output = result.out + result.err
        assert result.code in (0, 1), (command, output[-3000:])
        assert "internal error" not in output and "Traceback" not in output, (command, output[-3000:])
    json.loads(runs["inventory"].out)
    results = json.loads(runs["validate"].out)["results"]
    assert isinstance(results, list)
    return results


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {ex: _findings(_copy(ex, tmp_path_factory.mktemp(ex))) for ex in ("acme", "acme-tenancy")}


@pytest.mark.parametrize("example", ["acme", "acme-tenancy"])
def test_the_unmodified_example_validates_clean(example: str, baseline: dict[str, list[dict[str, Any]]]) -> None:
    assert baseline[example] == []
    result = run_cli("validate", str(EXAMPLES / example), "--no-cache", "-o", "json")
    assert result.code == 0 and json.loads(result.out)["results"] == []


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("rel", sorted(TARGETS), ids=lambda rel: TARGETS[rel].replace(" ", "-"))
@pytest.mark.parametrize("example", ["acme", "acme-tenancy"])
def test_a_malformed_manifest_is_ignored_not_a_crash(example: str, rel: str, shape: str, tmp_path: Path,
                                                      baseline: dict[str, list[dict[str, Any]]]) -> None:
    repo = _copy(example, tmp_path)
    path = repo / rel
    docs = list(yaml.safe_load_all(path.read_text()))
    SHAPES[shape](docs[0])
    path.write_text(yaml.safe_dump_all(docs))
    assert _findings(repo) == baseline[example]


@pytest.mark.parametrize("shape", sorted(KUSTOMIZE_SHAPES))
@pytest.mark.parametrize("field", KUSTOMIZE_FIELDS)
def test_a_malformed_kustomization_list_is_ignored_not_a_crash(field: str, shape: str, tmp_path: Path,
                                                               baseline: dict[str, list[dict[str, Any]]]) -> None:
    repo = _copy("acme", tmp_path)
    text = KUSTOMIZATION + f"{field}: {KUSTOMIZE_SHAPES[shape]}\n"
    (repo / "kustomization.yaml").write_text(text)
    (repo / "apps" / "kustomization.yaml").write_text(text)
    assert _findings(repo) == baseline["acme"]


def test_a_patch_path_among_malformed_items_is_still_a_patch(tmp_path: Path) -> None:
    repo = _copy("acme", tmp_path)
    overlay = repo / "overlays" / "prod"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        KUSTOMIZATION.replace("namePrefix: x-\n", "")
        + "patches: [5, {path: [a]}, {path: 7}, null, {path: intent-patch.yaml}]\n")
    (overlay / "intent-patch.yaml").write_text(  # a partial SecretIntent: only a patch may be one
        "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: payments-api}\n"
        "spec:\n  environments: [prod]\n")
    result = run_cli("validate", str(repo), "--no-cache", "-o", "json")
    report = json.loads(result.out)
    assert result.code == 0, report
    assert [(e["path"], e["reason"]) for e in report["exclusions"]] == [
        ("overlays/prod/intent-patch.yaml", "kustomize-patch")]


@pytest.mark.parametrize("kind", ["{a: 1}", "[SecretIntent]"])
def test_a_chamberlain_document_with_a_malformed_kind_is_still_ch003(kind: str, tmp_path: Path) -> None:
    repo = _copy("acme", tmp_path)
    (repo / "intents" / "odd.yaml").write_text(
        f"apiVersion: chamberlain.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: odd}}\n")
    result = run_cli("validate", str(repo), "--no-cache", "-o", "json")
    assert result.code == 1, result.out + result.err
    results = json.loads(result.out)["results"]
    assert [(r["file"], r["line"], r["rule"]) for r in results] == [("intents/odd.yaml", 2, "CH003")]
    assert "unknown kind" in results[0]["message"] and repr(yaml.safe_load(kind)) in results[0]["message"]


# ------------------------------------------------------------------------------------------------ !!binary

def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_a_secret_whose_kind_is_binary_is_still_a_secret_to_the_checks(tmp_path: Path) -> None:
    """Go's YAML (kubectl, Flux, Argo CD) decodes ``!!binary`` to its text: applied, this is a plaintext Secret."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", repo)
    (repo / "manifests").mkdir(exist_ok=True)
    (repo / "manifests" / "hidden.yaml").write_text(
        f"apiVersion: !!binary {_b64('v1')}\nkind: !!binary {_b64('Secret')}\n"
        f"metadata: {{name: !!binary {_b64('db')}, namespace: payments}}\n"
        f"stringData: {{password: !!binary {_b64('plain-value-zq')}}}\n")
    result = run_cli("validate", str(repo), "--no-cache", "-o", "json")
    assert result.code == 1, result.err
    found = json.loads(result.out)["results"]
    assert any(f["rule"] == "CH020" and f["file"] == "manifests/hidden.yaml" for f in found), found
    assert "plain-value-zq" not in result.out + result.err


def test_an_intent_whose_api_version_is_binary_is_validated_as_intent(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", repo)
    intent = next(p for p in sorted((repo / "intents").glob("*.yaml")) if "kind: SecretIntent" in p.read_text())
    text = intent.read_text()
    at = text.index("kind: SecretIntent")
    start = text.rindex("apiVersion: chamberlain.dev/v1alpha1", 0, at)
    end = start + len("apiVersion: chamberlain.dev/v1alpha1")
    intent.write_text(text[:start] + f"apiVersion: !!binary {_b64('chamberlain.dev/v1alpha1')}" + text[end:]
                      .replace("spec:", "spec:\n  unknownField: refused", 1))
    result = run_cli("validate", str(repo), "--no-cache", "-o", "json")
    assert result.code == 1, "the intent is read, so its schema error is found"
    assert any(f["file"] == intent.relative_to(repo).as_posix() and f["severity"] == "error"
               and "unknownField" in f["message"] for f in json.loads(result.out)["results"])
