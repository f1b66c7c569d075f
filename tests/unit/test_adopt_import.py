"""``source.existingSecret``: the model, validate's rules CH120-CH122, and the import workflow
(:mod:`chamberlain.handover.adopt`) against the fake KV and fake Kubernetes (fakes: the real servers are in
tests/lab/test_migration.py). A canary value must reach the authority and nothing else."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.checks.gate import validate_repository
from chamberlain.clock import FakeClock
from chamberlain.handover import adopt as ad
from chamberlain.handover import takeover as tk
from chamberlain.intent.model import Source
from chamberlain.kube.api import OwnerRef, SecretOwners
from chamberlain.kube.fake import FakeKube
from chamberlain.service import load_valid
from tests.conftest import EXAMPLES

CANARY = "canary-Adopt-Rk29Xq7Lm"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
INTENT = """---
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {{name: {name}}}
spec:
  owner: {owner}
  purpose: adopted from an existing Secret
  classification: runtime
  environments: [dev]
  source:
    existingSecret: {{namespace: {ns}, secretName: {secret}{keys}}}
{rotation}  consumers:
    - {{namespace: {ns}, secretName: {secret}}}
"""


def _intent(name: str = "shop-db", *, ns: str = "legacy-shop", secret: str = "shop-db",  # noqa: S107 - a name
            owner: str = "team-legacy",
            keys: str = ", keys: [username, password]", rotation: str = "  rotation: {type: static}\n") -> str:
    return INTENT.format(name=name, ns=ns, secret=secret, owner=owner, keys=keys, rotation=rotation)


def _repo(tmp_path: Path, *docs: str) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", root)
    (root / "intents" / "legacy.yaml").write_text("".join(docs), encoding="utf-8")
    return root


def _rules(root: Path) -> list[tuple[str, str]]:
    return sorted((f.rule, f.message) for f in validate_repository(root).findings if f.rule.startswith("CH12"))


def test_the_source_is_one_of_four() -> None:
    src = Source.model_validate({"existingSecret": {"namespace": "a", "secretName": "b", "keys": ["k"]}})
    assert src.kind == "existingSecret" and src.existing_secret is not None
    with pytest.raises(ValueError, match="exactly one of generate, bootstrap, publication or existingSecret"):
        Source.model_validate({"existingSecret": {"namespace": "a", "secretName": "b"},
                               "generate": {"k": {"type": "token"}}})


def test_a_declared_import_validates_clean(tmp_path: Path) -> None:
    root = _repo(tmp_path, _intent())
    assert _rules(root) == []
    assert not validate_repository(root).blocking(strict=True)


def test_keys_are_required_and_one_secret_has_one_importer(tmp_path: Path) -> None:
    root = _repo(tmp_path, _intent(keys=""), _intent("shop-db-2"))
    rules = _rules(root)
    assert [r for r, _ in rules] == ["CH120", "CH120"]
    assert any("declares no keys" in m for _, m in rules)
    assert any("already imported by SecretIntent/shop-db" in m for _, m in rules)


def test_an_import_never_reads_a_protected_namespace(tmp_path: Path) -> None:
    root = _repo(tmp_path, _intent(ns="kube-system", secret="bootstrap-token"))
    assert [r for r, _ in _rules(root)] == ["CH121"]


def test_with_tenancy_only_the_holder_imports(tmp_path: Path) -> None:
    root = _repo(tmp_path, _intent(owner="team-web"), _intent("own", ns="web", secret="own-secret", owner="team-web"))
    platform = root / "platform.yaml"
    platform.write_text(platform.read_text().replace(
        "  controller: {namespace: chamberlain-system, serviceAccount: chamberlain}\n",
        "  controller: {namespace: chamberlain-system, serviceAccount: chamberlain}\n"
        "  tenancy:\n    platformOwners: [team-platform]\n    owners:\n"
        "      - {name: team-web, namespaces: [web], acceptsFrom: [team-legacy]}\n"
        "      - {name: team-legacy, namespaces: [legacy-shop]}\n"), encoding="utf-8")
    found = [(r, m) for r, m in _rules(root)]
    assert [r for r, _ in found] == ["CH121"]
    assert "held by team-legacy, not team-web" in found[0][1]


def test_an_imported_value_is_never_regenerated(tmp_path: Path) -> None:
    root = _repo(tmp_path, _intent(rotation=""))  # the Platform default: time-based
    [(rule, message)] = _rules(root)
    assert rule == "CH122" and "rotation: {type: static}" in message


# ------------------------------------------------------------------------------------------------ the workflow


@pytest.fixture
def world(tmp_path: Path) -> tuple[ad.AdoptUnit, FakeKV, FakeKube, Ledger, ad.AdoptContext]:
    repo = load_valid(_repo(tmp_path, _intent()))
    assert repo.platform is not None
    [unit] = ad.adopt_units(repo.platform, {p.obj.metadata.name: p.obj for p in repo.policies},
                            [i.obj for i in repo.intents], "dev", "dev1")
    kv = FakeKV()
    return (unit, kv, FakeKube(), Ledger(kv, "secret", clock=FakeClock(T0), cluster="dev1"),
            ad.AdoptContext(actor="test", run="run-1", clock=FakeClock(T0)))


def test_the_unit_names_the_conventional_runtime_path(world: tuple) -> None:  # type: ignore[type-arg]
    unit = world[0]
    assert (unit.vault.full, unit.source, unit.keys) == ("secret/dev/team-legacy/shop-db", "legacy-shop/shop-db",
                                                         ("password", "username"))
    assert unit.policy_name == "inline" and unit.policy is not None and unit.policy.type == "static"


def test_nothing_is_imported_without_the_marker_or_a_key(world: tuple) -> None:  # type: ignore[type-arg]
    unit, kv, kube, ledger, ctx = world
    assert ad.adopt(unit, kv, kube, ledger, ctx).result == "missing"
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": CANARY})
    out = ad.adopt(unit, kv, kube, ledger, ctx)
    assert out.result == "not-marked" and "kubectl annotate secret -n legacy-shop shop-db" in out.message
    kube.secrets.clear()
    kube.create_secret("legacy-shop", "shop-db", {"username": "u"}, annotations={wk.ANNOTATION_ADOPT: "other"})
    assert ad.adopt(unit, kv, kube, ledger, ctx).result == "not-marked"
    kube.secrets.clear()
    kube.create_secret("legacy-shop", "shop-db", {"username": "u"}, annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    out = ad.adopt(unit, kv, kube, ledger, ctx)
    assert out.result == "held" and "password" in out.message and not out.ok
    assert kv.read_metadata("secret", unit.vault.path) is None


def test_a_marked_secret_is_imported_once_and_recorded(world: tuple) -> None:  # type: ignore[type-arg]
    unit, kv, kube, ledger, ctx = world
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": CANARY, "extra": "not-declared"},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    out = ad.adopt(unit, kv, kube, ledger, ctx, dry_run=True)
    assert out.result == "planned" and kv.read_metadata("secret", unit.vault.path) is None
    out = ad.adopt(unit, kv, kube, ledger, ctx)
    assert out.result == "adopted" and out.version == 1 and out.ledger_seq is not None
    current = kv.read("secret", unit.vault.path)
    assert current is not None and dict(current.data) == {"username": "u", "password": CANARY}  # declared keys only
    custom = kv.read_metadata("secret", unit.vault.path).custom  # type: ignore[union-attr]
    assert custom["origin"] == "adopted" and custom["source"] == "legacy-shop/shop-db"
    assert custom["value-marker"] == out.marker and custom["policy.type"] == "static"
    assert ad.adopted(custom)
    # the Secret changes afterwards: the authority owns the value, nothing is read or written again
    kube.secrets.clear()
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": "changed"},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    again = ad.adopt(unit, kv, kube, ledger, ctx)
    assert again.result == "already-adopted" and again.ledger_seq == out.ledger_seq
    assert kv.read_metadata("secret", unit.vault.path).current_version == 1  # type: ignore[union-attr]
    entries = [e for e in LedgerReader(kv, "secret").entries() if e.event == "adopt"]
    assert len(entries) == 1 and entries[0].details["source"] == "legacy-shop/shop-db"
    texts = [json.dumps(out.as_dict()), json.dumps(again.as_dict()), json.dumps(custom),
             *(e.model_dump_json() for e in entries)]
    assert not any(CANARY in t for t in texts)


def test_a_different_value_at_the_path_is_a_conflict(world: tuple) -> None:  # type: ignore[type-arg]
    unit, kv, kube, ledger, ctx = world
    kv.write("secret", unit.vault.path, {"username": "u", "password": "someone else's"}, cas=0)
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": CANARY},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    out = ad.adopt(unit, kv, kube, ledger, ctx)
    assert out.result == "conflict" and CANARY not in out.message
    assert kv.read_metadata("secret", unit.vault.path).current_version == 1  # type: ignore[union-attr]


def test_an_interrupted_import_resumes_from_the_written_value(world: tuple,  # type: ignore[type-arg]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    unit, kv, kube, ledger, ctx = world
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": CANARY},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})

    class Crash(BaseException):
        pass

    def crash(point: str) -> None:
        if point == "adopt.write":
            raise Crash(point)

    monkeypatch.setattr(ad, "checkpoint", crash)
    with pytest.raises(Crash):
        ad.adopt(unit, kv, kube, ledger, ctx)
    monkeypatch.setattr(ad, "checkpoint", lambda point: None)
    out = ad.adopt(unit, kv, kube, ledger, ctx)
    assert out.result == "adopted" and out.version == 1


# ------------------------------------------------------------------------------------------------ takeover (fakes)


def _adopted_world(tmp_path: Path) -> tuple[tk.TakeoverUnit, FakeKV, FakeKube]:
    repo = load_valid(_repo(tmp_path, _intent()))
    assert repo.platform is not None
    [unit] = tk.takeover_units(repo.platform, [i.obj for i in repo.intents], "dev", "dev1")
    kv, kube = FakeKV(), FakeKube()
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": CANARY},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    [adopt_unit] = ad.adopt_units(repo.platform, {}, [i.obj for i in repo.intents], "dev", "dev1")
    ledger = Ledger(kv, "secret", clock=FakeClock(T0), cluster="dev1")
    out = ad.adopt(adopt_unit, kv, kube, ledger, ad.AdoptContext(actor="t", run="r", clock=FakeClock(T0)))
    assert out.result == "adopted"
    return unit, kv, kube


def _our_es(kube: FakeKube, marker: str | None) -> None:
    kube.external_secrets[("legacy-shop", "shop-db")] = {
        "metadata": {"name": "shop-db", "uid": "uid-new", "labels": {wk.LABEL_INTENT: "shop-db"}}}
    secret = kube.secrets[("legacy-shop", "shop-db")]
    kube.secrets[("legacy-shop", "shop-db")] = dataclasses.replace(
        secret, annotations={**secret.annotations, wk.ANNOTATION_VERSION_MARKER: marker or ""})


def _ref(kind: str, name: str, controller: bool = True) -> OwnerRef:
    return OwnerRef("external-secrets.io/v1" if kind == "ExternalSecret" else "bitnami.com/v1alpha1", kind, name,
                    f"uid-{name}", controller)


def test_decide_never_fights_another_controller(tmp_path: Path) -> None:
    unit, _, _ = _adopted_world(tmp_path)
    ours = {"metadata": {"labels": {wk.LABEL_INTENT: "shop-db"}, "uid": "u"}}
    with pytest.raises(tk.TakeoverError, match="awaiting-apply"):
        tk.decide(unit, None, None)
    with pytest.raises(tk.TakeoverError, match="not chamberlain's yet"):
        tk.decide(unit, {"metadata": {"labels": {}}}, None)
    assert tk.decide(unit, ours, None) == ("none", None)  # ESO creates it
    assert tk.decide(unit, ours, SecretOwners((), "1")) == ("swap", None)  # a plain Secret
    assert tk.decide(unit, ours, SecretOwners((_ref("ExternalSecret", "shop-db"),), "1")) == ("none", None)
    assert tk.decide(unit, ours, SecretOwners((_ref("ExternalSecret", "old"),), "1")) == (
        "swap-and-delete-old", "ExternalSecret/old")
    with pytest.raises(tk.TakeoverError, match=r"blocked: .* SealedSecret/shop-db"):
        tk.decide(unit, ours, SecretOwners((_ref("SealedSecret", "shop-db"),), "1"))


def test_a_takeover_swaps_the_controller_in_one_guarded_update(tmp_path: Path) -> None:
    unit, kv, kube = _adopted_world(tmp_path)
    assert tk.take_over(unit, kv, kube, timeout=0).result == "awaiting-apply"
    marker = kv.read_metadata("secret", unit.vault.path).custom["value-marker"]  # type: ignore[union-attr]
    _our_es(kube, marker)
    kube.secret_owner_refs[("legacy-shop", "shop-db")] = (_ref("ExternalSecret", "old"), _ref("Foo", "x", False))
    assert tk.take_over(unit, kv, kube, dry_run=True).result == "planned"
    assert kube.secret_owner_refs[("legacy-shop", "shop-db")][0].name == "old"
    out = tk.take_over(unit, kv, kube, timeout=0)
    assert (out.result, out.previous_owner, out.data_unchanged) == ("taken-over", "ExternalSecret/old", True)
    refs = kube.secret_owner_refs[("legacy-shop", "shop-db")]
    assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [
        ("Foo", "x", "uid-x", False), ("ExternalSecret", "shop-db", "uid-new", True)]
    assert tk.take_over(unit, kv, kube, timeout=0).result == "already-owned"
    assert CANARY not in json.dumps(out.as_dict())


def test_a_secret_holding_another_value_is_not_taken_over(tmp_path: Path) -> None:
    unit, kv, kube = _adopted_world(tmp_path)
    _our_es(kube, "v2:x")
    secret = kube.secrets[("legacy-shop", "shop-db")]
    kube.secrets[("legacy-shop", "shop-db")] = dataclasses.replace(secret, data={**secret.data, "extra": "k"})
    out = tk.take_over(unit, kv, kube, timeout=0)
    assert out.result == "would-change" and not out.ok
    assert ("legacy-shop", "shop-db") not in kube.secret_owner_refs


def test_adopt_verify_then_an_upstream_issued_value_is_imported(tmp_path: Path) -> None:
    """The use case over the fake servers (FakeServers, ESOKube): `adopt verify` records the value, and a value
    the provider reissues later goes in with `chamberlain import`, as for a handed-over bootstrap secret."""
    from chamberlain.service import adoption
    from chamberlain.service.context import Caller
    from chamberlain.service.importing import ImportRequest, import_value
    from tests.unit.test_service import ESOKube, FakeServers

    root = _repo(tmp_path, _intent())
    kv = FakeKV()
    kube = ESOKube(kv, {("legacy-shop", "shop-db"): "secret/dev/team-legacy/shop-db"})
    kube.external_secrets[("legacy-shop", "shop-db")] = {"metadata": {"name": "shop-db"}}
    kube.create_secret("legacy-shop", "shop-db", {"username": "u", "password": "old-value-Lp2"},
                       annotations={wk.ANNOTATION_ADOPT: "shop-db"})
    servers = FakeServers(kv=kv, fake_kube=kube)
    caller = Caller("cli:alice", FakeClock(T0), "run-1")
    dry = adoption.verify(root, servers, caller, environment="dev", cluster="dev1", dry_run=True)
    assert [o.result for o in dry.outcomes] == ["planned"]
    assert kv.read_metadata("secret", "dev/team-legacy/shop-db") is None
    done = adoption.verify(root, servers, caller, environment="dev", cluster="dev1")
    assert done.ok and [o.result for o in done.outcomes] == ["adopted"]
    new = {"username": "u", "password": CANARY}
    got = import_value(ImportRequest(root=root, name="shop-db", environment="dev", cluster="dev1",
                                     raw=json.dumps(new).encode(), source="new.json", max_wait=0.0), servers, caller)
    assert got.ok and got.result == "imported", got.as_dict()
    assert dict(kv.read("secret", "dev/team-legacy/shop-db").data) == new  # type: ignore[union-attr]
    assert CANARY not in json.dumps(got.as_dict()) + json.dumps(done.as_dict())
