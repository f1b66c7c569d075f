"""Internal distribution (SPEC §5a), on fakes and files only: CH112 (a publication without ``keys``, a warning) and
CH113 (a consumer in the producer namespace, an error) with file, line and what to do; the rendered PushSecret
pushes exactly the declared keys; ESO's ``managed-by`` marker survives chamberlain's metadata writes, which never
create a path; the policy sync leaves ESO's internal paths alone. Real ESO and Vault: tests/lab/test_distribution.py.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.authority.errors import Forbidden, InvalidRequest, NotFound
from chamberlain.authority.fake import FakeKV
from chamberlain.authority.kv import merge_custom_metadata
from chamberlain.checks.registry import load_checks
from chamberlain.controller.source import IN_CLUSTER_CHECKS
from chamberlain.intent.model import SecretIntent
from chamberlain.rotation import policy_sync
from chamberlain.rotation.manual import place
from tests.conftest import CORPUS, run_cli
from tests.unit.test_controller import PLATFORM

ESO_MARK = {wk.ESO_PUSH_MANAGED_BY: wk.ESO_PUSH_MANAGER}
HEADER = ("apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: cache-auth}\nspec:\n"
          "  owner: team-app\n  purpose: Password of the cache, written by its operator\n"
          "  classification: derived\n  rotation: {type: static}\n")


def _repo(tmp_path: Path, publication: str, consumers: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "intents" / "pub.yaml").write_text(
        HEADER + f"  source:\n    publication: {publication}\n  consumers:\n{consumers}")
    return repo


def _findings(repo: Path, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    result = run_cli("validate", str(repo), "-o", "json", *extra)
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)["results"], result.out + result.err


APP = "    - {namespace: app, secretName: cache-auth, keys: {REDIS_PASSWORD: password}}\n"


def test_ch112_is_a_warning_with_file_line_and_the_keys_to_add(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "{namespace: cache, secretName: cache-auth}", APP)
    code, results, _ = _findings(repo)
    assert code == 0  # valid repositories stay valid
    [f] = [r for r in results if r["rule"] == "CH112"]
    assert (f["file"], f["line"], f["severity"]) == ("intents/pub.yaml", 10, "warning")
    assert "add keys: [password]" in str(f["message"]) and "cache/cache-auth" in str(f["message"])
    assert "§5a" in str(f["message"])
    code, _, _ = _findings(repo, "--strict")
    assert code == 1


def test_ch112_flags_an_empty_keys_list_and_not_a_declared_one(tmp_path: Path) -> None:
    empty = _repo(tmp_path / "a", "{namespace: cache, secretName: cache-auth, keys: []}",
                  "    - {namespace: app, secretName: cache-auth}\n")
    [f] = [r for r in _findings(empty)[1] if r["rule"] == "CH112"]
    assert "an empty keys list" in str(f["message"]) and "naming each key consumers need" in str(f["message"])
    declared = _repo(tmp_path / "b", "{namespace: cache, secretName: cache-auth, keys: [password]}", APP)
    code, results, _ = _findings(declared, "--strict")
    assert code == 0 and results == []


def test_ch113_rejects_a_consumer_in_the_producer_namespace(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "{namespace: cache, secretName: cache-auth, keys: [password]}",
                 APP + "    - namespace: cache\n      secretName: cache-auth-copy\n")
    code, results, _ = _findings(repo)
    assert code == 1
    [f] = [r for r in results if r["rule"] == "CH113"]
    assert (f["file"], f["line"], f["severity"]) == ("intents/pub.yaml", 13, "error")
    message = str(f["message"])
    assert "cache/cache-auth-copy" in message and "cache/cache-auth already is" in message
    assert "gets no distribution" in message


def test_ch113_rejects_a_same_namespace_intent_written_into_the_cluster() -> None:
    from chamberlain.controller.source import build_scope, parse
    from tests.unit.test_controller_source import acme_objects, with_spec

    assert "same-namespace-use" in IN_CLUSTER_CHECKS and "same-namespace-use" in load_checks()
    objects = acme_objects()
    [app] = [o for o in objects if o.name == "orders-db-app"]
    assert isinstance(app.model, SecretIntent)
    copy = {"namespace": "databases", "secretName": "orders-db-copy"}
    bad = parse("SecretIntent", with_spec(app.model, consumers=[*app.model.model_dump(
        by_alias=True, exclude_none=True, mode="json")["spec"]["consumers"], copy]))
    built = build_scope([o for o in objects if o is not app] + [bad], "dev", "dev1")
    assert {n: sorted({f.rule for f in fs}) for n, fs in built.rejected.items()} == {"orders-db-app": ["CH113"]}


@pytest.mark.parametrize("example", ["acme", "acme-tenancy"])
def test_the_examples_declare_keys_and_distribute_only_across_namespaces(example: str) -> None:
    result = run_cli("validate", str(Path(__file__).resolve().parents[2] / "examples" / example), "-o", "json",
                     "--strict")
    assert result.code == 0, result.out + result.err
    assert not [r for r in json.loads(result.out)["results"] if r["rule"] in ("CH112", "CH113")]


# ------------------------------------------------------------------------------------------------ render


def test_the_push_secret_pushes_exactly_the_declared_keys() -> None:
    from tests.unit.test_render import REPOS, docs, render

    if "acme" not in REPOS:
        pytest.skip("examples/acme is not there yet")
    [ps] = [d for _, d in docs(render("acme")) if d["kind"] == "PushSecret"
            and d["metadata"]["name"] == "chamberlain-dev-publish-orders-db-app"]
    assert ps["metadata"]["namespace"] == "databases"
    assert ps["spec"]["selector"] == {"secret": {"name": "orders-db-app"}}
    assert ps["spec"]["data"] == [
        {"match": {"secretKey": k, "remoteRef": {"remoteKey": "dev/dev1/databases/orders-db-app", "property": k}}}
        for k in ("password", "username")]
    assert ps["spec"]["deletionPolicy"] == "None"


# ------------------------------------------------------------------------------------------------ ESO's marker


def test_a_metadata_merge_keeps_esos_marker_and_never_writes_it() -> None:
    current = {**ESO_MARK, "other": "x"}
    assert merge_custom_metadata(current, {"value-marker": "v2:abc"}) == {**current, "value-marker": "v2:abc"}
    assert merge_custom_metadata(current, ESO_MARK) == current  # unchanged: allowed
    with pytest.raises(InvalidRequest, match="belongs to ESO"):
        merge_custom_metadata(current, {wk.ESO_PUSH_MANAGED_BY: "chamberlain"})
    with pytest.raises(InvalidRequest):
        merge_custom_metadata({}, ESO_MARK)  # not even on a path ESO has not pushed yet


def test_the_kv_never_creates_a_path_by_writing_its_metadata() -> None:
    """What a premature write would do: metadata without ESO's marker makes ESO refuse every later push."""
    kv = FakeKV()
    with pytest.raises(NotFound):
        kv.update_custom_metadata("platform-data", "dev/dev1/databases/orders-db-app", {"intent": "orders-db-app"})
    assert kv.read_metadata("platform-data", "dev/dev1/databases/orders-db-app") is None


def _derived(name: str) -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": name},
        "spec": {"owner": "shop", "purpose": "tests", "classification": "derived",
                 "source": {"publication": {"namespace": "db", "secretName": name, "keys": ["password"]}},
                 "rotation": {"type": "static"},
                 "consumers": [{"namespace": "shop", "secretName": name}]},
    })


def test_the_policy_sync_leaves_internal_paths_to_eso() -> None:
    """ESO pushed (its marker only): the policy of a derived secret is no drift chamberlain would write there."""
    kv = FakeKV()
    placed = place(PLATFORM, _derived("orders-db-app"), "dev", "dev1")
    assert placed.vault.mount == "pd"
    kv.write("pd", placed.vault.path, {"password": "x" * 20}, cas=0)
    kv._store[("pd", placed.vault.path)].custom = dict(ESO_MARK)  # what ESO's push leaves, written by ESO
    assert policy_sync.plan(kv, PLATFORM, {}, [placed]) == []


class _Orchestrator(FakeKV):
    """A fake with the orchestrator's grant on the internal mounts: metadata only (a data read there is 403)."""

    def read(self, mount: str, path: str, version: int | None = None) -> Any:
        if mount in ("pd", "pc"):
            raise Forbidden(f"read {mount}/{path}: permission denied (403)")
        return super().read(mount, path, version)


def test_status_reports_a_published_secret_without_reading_the_internal_mount() -> None:
    """`chamberlain status` failed as a whole (403 on a run-record path in platform-data) once ESO had pushed."""
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.rotation.manual import secret_status

    kv = _Orchestrator()
    placed = place(PLATFORM, _derived("orders-db-app"), "dev", "dev1")
    FakeKV.write(kv, "pd", placed.vault.path, {"password": "x" * 20}, cas=0)  # what ESO pushed
    kv._store[("pd", placed.vault.path)].custom = dict(ESO_MARK)
    row = secret_status(kv, LedgerReader(kv, "secret"), None, placed, datetime(2030, 1, 1, tzinfo=UTC))
    assert (row["authority"], row["exists"], row["run"]) == ("producer", True, None)
