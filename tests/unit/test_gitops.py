"""The lab's GitOps stand-in: kustomize subset, wave order, in-memory decryption, idempotent apply (fake kube)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from chamberlain.bootstrap import Sops, Tools
from chamberlain.errors import UsageError
from chamberlain.gitops import FIELD_MANAGER, GitopsError, apply_repository, build_app
from chamberlain.gitops.build import wave_of
from chamberlain.gitops.standin import secret_for_apply
from chamberlain.intent.loader import load_repository
from chamberlain.kube.fake import FakeKube
from chamberlain.render import render_repository
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.unit.test_bootstrap_helpers import need_tools

ACME = EXAMPLES / "acme"
TEST_IDENTITY = REPO_ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"


def _fake_decrypt(path: str, text: str) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(text)
    doc.pop("sops")
    doc["stringData"] = {k: "plain" for k in doc["stringData"]}
    return secret_for_apply(doc, path)


def test_build_orders_by_wave_and_gives_generated_secrets_their_wave() -> None:
    tree = render_repository(load_repository(ACME)).files
    app = build_app(tree, "envs/dev/dev1", _fake_decrypt)
    assert app.secret_count == 2
    waves = [wave_of(o) for o in app.objects]
    assert waves == sorted(waves)
    secrets = [o for o in app.objects if o["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {"bootstrap-smtp-relay", "bootstrap-registry-pull"}
    assert all(wave_of(s) == 1 for s in secrets)
    kinds = [o["kind"] for o in app.objects]
    assert kinds.index("Namespace") < kinds.index("Secret") < kinds.index("SecretStore")


def test_secret_for_apply_folds_string_data_into_data() -> None:
    out = secret_for_apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "namespace": "b"},
                            "data": {"x": "eA=="}, "stringData": {"y": "why"}}, "f")
    assert out["data"] == {"x": "eA==", "y": base64.b64encode(b"why").decode()}
    assert "stringData" not in out
    with pytest.raises(GitopsError, match="v1 Secret"):
        secret_for_apply({"kind": "ConfigMap"}, "f")


def test_unknown_generators_and_resources_are_refused() -> None:
    tree = {"a/kustomization.yaml": "resources: [missing.yaml]\n"}
    with pytest.raises(GitopsError, match="not in the rendered output"):
        build_app(tree, "a", _fake_decrypt)
    tree = {"a/kustomization.yaml": "generators: [g.yaml]\n", "a/g.yaml": "kind: Other\n"}
    with pytest.raises(GitopsError, match="not a KSOPS generator"):
        build_app(tree, "a", _fake_decrypt)


def test_several_clusters_need_one_picked(tools: Tools) -> None:
    kube = FakeKube()
    with pytest.raises(UsageError, match="pick one with --cluster"):
        apply_repository(ACME, kube, identity=TEST_IDENTITY, tools=tools)
    with pytest.raises(UsageError, match="unknown cluster"):
        apply_repository(ACME, kube, identity=TEST_IDENTITY, tools=tools, cluster="nope")
    assert kube.applied == {}


def test_bootstrap_secrets_without_identity_apply_nothing(tools: Tools) -> None:
    kube = FakeKube()
    with pytest.raises(UsageError, match="--identity"):
        apply_repository(ACME, kube, identity=None, tools=tools, cluster="dev1")
    assert kube.applied == {}


def test_apply_acme_dev1_with_the_real_sops_is_idempotent(tools: Tools) -> None:
    need_tools("sops")
    kube = FakeKube()
    report = apply_repository(ACME, kube, identity=TEST_IDENTITY, tools=tools, cluster="dev1",
                              sops=Sops.locate(tools))
    assert [a.path for a in report.apps] == ["envs/dev/dev1", "envs/preview/dev1"]  # base owner first
    assert report.crds["created"] == 4 and report.changed  # three intent kinds and RotationRun
    assert report.apps[0].bootstrap_secrets == 2
    secret, _, manager = kube.applied[("v1", "Secret", "chamberlain-bootstrap", "bootstrap-smtp-relay")]
    assert manager == FIELD_MANAGER
    assert set(secret["data"]) == {"username", "password"} and "stringData" not in secret
    assert secret["metadata"]["labels"]["chamberlain.dev/intent"] == "smtp-relay"
    again = apply_repository(ACME, kube, identity=TEST_IDENTITY, tools=tools, cluster="dev1",
                              sops=Sops.locate(tools))
    assert not again.changed
    assert all(a.counts["created"] == a.counts["configured"] == 0 for a in again.apps)


def test_a_wrong_identity_applies_nothing(tmp_path: Path, tools: Tools) -> None:
    need_tools("sops", "age-keygen")
    from chamberlain.root import ensure_identity

    other = ensure_identity(tmp_path / "other.agekey", tools=tools).path
    kube = FakeKube()
    with pytest.raises(Exception, match="not one of the file's recipients") as err:
        apply_repository(ACME, kube, identity=other, tools=tools, cluster="dev1", sops=Sops.locate(tools))
    assert "ENC[" not in str(err.value)
    assert kube.applied == {}
