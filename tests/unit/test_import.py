"""``chamberlain import`` with fakes: the value parser, the imported rotator, the use case through the rotation
workflow (new version, force-sync, restart, ledger entry with trigger import), every refusal changing nothing, a
crash after staging resumed from Vault and one before staging failing cleanly — and a canary value that must
reach Vault's data and nothing else. Real Vault, kube-apiserver and ESO: tests/lab/test_import.py."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.handover import handover_units
from chamberlain.kube.api import PodTemplateState
from chamberlain.rotation import manual as rm
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators.base import RotationContext, RotatorConfigError
from chamberlain.rotation.rotators.imported import MAX_IMPORT_BYTES, ImportedRotator, ValueRefused, parse_values
from chamberlain.rotation.run import RunActive
from chamberlain.service import handover, load_valid
from chamberlain.service.context import Caller
from chamberlain.service.importing import ImportRequest, NotHandedOver, import_value
from tests.conftest import EXAMPLES, run_cli
from tests.unit.test_service import ESOKube, FakeServers

ACME = EXAMPLES / "acme"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PATH = "dev/team-platform/smtp-relay"
FULL = "secret/" + PATH
OLD = {"username": "relay-user", "password": "old-Pq8Wz3Lk5Mn2Xr7"}
CANARY = "canary-Imp0rt-Vx9Qm4Tz7Lw2Rk5"
NEW = {"username": "relay-user", "password": CANARY}


# ------------------------------------------------------------------------------------------------ parsing


KEYS = ["password", "username"]


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        pytest.param(b"username: relay-user\npassword: " + CANARY.encode() + b"\n", None, NEW, id="yaml"),
        pytest.param(json.dumps(NEW).encode(), None, NEW, id="json"),
        pytest.param(CANARY.encode() + b"\n", "password", NEW, id="raw-one-trailing-newline-dropped"),
        pytest.param(CANARY.encode() + b"\r\n", "password", NEW, id="raw-crlf-dropped"),
        pytest.param(CANARY.encode() + b"\n\n", "password", {**NEW, "password": CANARY + "\n"},
                     id="raw-a-second-newline-is-kept"),
        pytest.param(b"password: '0123'\nusername: relay-user\n", None, {"password": "0123", "username": "relay-user"},
                     id="quoted-digits"),
    ],
)
def test_parse_values(raw: bytes, key: str | None, expected: dict[str, str]) -> None:
    assert parse_values(raw, source="f", keys=KEYS, current=OLD, key=key) == expected


@pytest.mark.parametrize(
    ("raw", "key", "why"),
    [
        pytest.param(b"", None, "empty", id="empty-file"),
        pytest.param(b"x" * (MAX_IMPORT_BYTES + 1), None, "larger than", id="too-large"),
        pytest.param(b"\xff\xfe" + CANARY.encode(), None, "not UTF-8", id="not-utf8"),
        pytest.param(CANARY.encode(), None, "not a mapping", id="a-bare-string"),
        pytest.param(b"- " + CANARY.encode(), None, "not a mapping", id="a-list"),
        pytest.param(b"password: " + CANARY.encode() + b"\n", None, "missing username", id="missing-key"),
        pytest.param(b"password: a-value\nusername: u\nextra: x\n", None, "unknown extra", id="extra-key"),
        pytest.param(b"password: 12345\nusername: u\n", None, "password: the value is not a string", id="int"),
        pytest.param(b"password: yes\nusername: u\n", None, "not a string", id="yaml11-bool"),
        pytest.param(b"password: {a: b}\nusername: u\n", None, "not a string", id="nested"),
        pytest.param(b"password: ''\nusername: u\n", None, "empty value", id="empty-value"),
        pytest.param(b"password: x\npassword: y\nusername: u\n", None, "appears twice", id="duplicate-key"),
        pytest.param(b"password: &a " + CANARY.encode() + b"\nusername: *a\n", None, "anchors", id="alias"),
        pytest.param(b"password: [" + CANARY.encode() + b"\n", None, "not valid YAML", id="syntax-error"),
        pytest.param(b"'bad key!': x\n", None, "not a Kubernetes Secret key", id="bad-key-name"),
        pytest.param(b"\n", "password", "empty value", id="raw-only-a-newline"),
        pytest.param(CANARY.encode(), "token", "not a key of the secret", id="raw-unknown-key"),
    ],
)
def test_parse_refusals_name_the_problem_never_the_value(raw: bytes, key: str | None, why: str) -> None:
    with pytest.raises(ValueRefused, match=why) as err:
        parse_values(raw, source="value.yaml", keys=KEYS, current=OLD, key=key)
    assert CANARY not in str(err.value) and err.value.exit_code == 2


def test_imported_rotator_stages_the_supplied_value_and_nothing_else() -> None:
    intent = next(i.obj for i in load_valid(ACME).intents if i.obj.name == "smtp-relay")
    ctx = RotationContext(intent=intent, now=T0, current=OLD)
    pending = ImportedRotator(NEW).create_pending(ctx)
    assert dict(pending.data) == NEW and pending.rotated == {"password"}
    assert CANARY not in repr(ImportedRotator(NEW)) and CANARY not in repr(pending)
    with pytest.raises(RotatorConfigError, match="interrupted before its value was staged"):
        ImportedRotator().create_pending(ctx)
    with pytest.raises(RotatorConfigError, match="equals the current version"):
        ImportedRotator(OLD).create_pending(ctx)
    with pytest.raises(RotatorConfigError, match="keys changed"):
        ImportedRotator({"password": CANARY}).create_pending(ctx)


# ------------------------------------------------------------------------------------------------ the use case


@pytest.fixture
def caller() -> Caller:
    return Caller("cli:alice", FakeClock(T0), "run-test")


@pytest.fixture
def servers(caller: Caller) -> FakeServers:
    """acme's dev1 after the handover of smtp-relay (afterHandover delete), with its consumer and workload."""
    kv = FakeKV()
    kube = ESOKube(kv, {("notifications", "smtp-relay"): FULL})
    kube.workloads[("Deployment", "notifications", "notifier")] = PodTemplateState(annotations={}, generation=1)
    kube.external_secrets[("notifications", "smtp-relay")] = {"metadata": {"name": "smtp-relay"}}
    s = FakeServers(kv=kv, fake_kube=kube)
    for unit in handover_units(load_valid(ACME), "dev", "dev1"):
        kube.create_secret(unit.namespace, unit.name, OLD, labels={
            wk.LABEL_CLASS: "bootstrap", wk.LABEL_INTENT: unit.intent})
    assert handover.handover(ACME, s, caller, environment="dev", cluster="dev1").ok
    return s


def request(raw: bytes = b"", **kw: Any) -> ImportRequest:
    fields: dict[str, Any] = {"root": ACME, "name": "smtp-relay", "environment": "dev", "cluster": "dev1",
                              "raw": raw or json.dumps(NEW).encode(), "source": "new.json", "max_wait": 0.0}
    fields.update(kw)
    return ImportRequest(**fields)


def blobs(s: FakeServers) -> list[str]:
    """Everything chamberlain wrote that is not the secret's own data: ledger, custom_metadata, run records,
    staged versions, annotations, events."""
    out = [e.model_dump_json() for e in LedgerReader(s.kv, "secret").entries()]
    for (_mount, path), stored in s.kv._store.items():
        out.append(json.dumps(stored.custom))
        if path.startswith("_chamberlain/runs/"):
            out.extend(json.dumps(v) for v in stored.versions)
    out.extend(json.dumps(dict(x.annotations)) for x in s.fake_kube.secrets.values())
    out.extend(repr(e) for e in s.fake_kube.events)
    out.extend(repr(w) for w in s.fake_kube.workloads.values())
    return out


def test_import_goes_through_the_rotation_workflow(servers: FakeServers, caller: Caller) -> None:
    result = import_value(request(), servers, caller)
    assert result.ok and result.result == "imported", result.as_dict()
    row = result.as_dict()
    assert (row["trigger"], row["stage"], row["previousVersion"], row["version"]) == ("import", "done", 1, 2)
    assert row["workloadsRestarted"] == ["Deployment/notifications/notifier"]
    current = servers.kv.read("secret", PATH)
    assert current is not None and dict(current.data) == NEW and current.version == 2
    custom = servers.kv.read_metadata("secret", PATH).custom  # type: ignore[union-attr]
    assert custom[wk.VALUE_VERSION] == "2" and custom[wk.LAST_REASON] == "upstream-issued value imported"
    consumer = servers.fake_kube.get_secret("notifications", "smtp-relay")
    assert consumer is not None and consumer.annotations[wk.ANNOTATION_VERSION_MARKER] == custom[wk.VALUE_MARKER]
    entry = LedgerReader(servers.kv, "secret").for_secret("smtp-relay")[-1]
    assert (entry.event, entry.details["trigger"], entry.actor, entry.result) == ("rotation", "import", "cli:alice",
                                                                                  "ok")
    assert entry.details["staged"] == "destroyed" and entry.details["rotated"] == "password"
    assert entry.details["note.origin"] == "upstream"
    staged = servers.kv._store[("secret", "_chamberlain/pending/" + PATH)]
    assert staged.destroyed == {1}
    for blob in [*blobs(servers), json.dumps(row)]:
        assert CANARY not in blob
    again = import_value(request(), servers, caller)  # the same value: nothing to do
    assert again.ok and again.result == "unchanged" and servers.kv.read("secret", PATH).version == 2  # type: ignore[union-attr]


def test_one_key_keeps_the_others(servers: FakeServers, caller: Caller) -> None:
    result = import_value(request(CANARY.encode() + b"\n", key="password"), servers, caller)
    assert result.ok
    assert dict(servers.kv.read("secret", PATH).data) == NEW  # type: ignore[union-attr]


def generated(servers: FakeServers, caller: Caller) -> None:
    handover.provision(ACME, servers, caller, environment="dev", cluster="dev1")


@pytest.mark.parametrize(
    ("change", "error", "why"),
    [
        pytest.param({"name": "nope"}, UsageError, "unknown secret", id="unknown-intent"),
        pytest.param({"name": "grafana-admin"}, UsageError, "not bootstrap", id="generated-source"),
        pytest.param({"environment": None}, UsageError, "--environment", id="no-environment"),
        pytest.param({"environment": "prod", "cluster": "prod-eu1"}, NotHandedOver, "not handed over in prod",
                     id="not-handed-over"),
        pytest.param({"raw": b"password: x\n"}, ValueRefused, "missing username", id="malformed"),
        pytest.param({"source_path": ACME / "bootstrap" / "x.yaml"}, UsageError, "inside the intent repository",
                     id="file-in-the-repo"),
        pytest.param({"reason": " "}, UsageError, "--reason", id="empty-reason"),
    ],
)
def test_refusals_change_nothing(servers: FakeServers, caller: Caller, change: dict[str, Any],
                                 error: type[ChamberlainError], why: str) -> None:
    before = (dict(servers.kv.calls), len(LedgerReader(servers.kv, "secret").entries()))
    with pytest.raises(error, match=why) as err:
        import_value(request(**change), servers, caller)
    assert CANARY not in str(err.value)
    assert servers.kv.calls["write"] == before[0]["write"]
    assert len(LedgerReader(servers.kv, "secret").entries()) == before[1]
    assert servers.kv.read("secret", PATH).version == 1  # type: ignore[union-attr]


def test_a_run_in_flight_refuses_the_import(servers: FakeServers, caller: Caller) -> None:
    vault = rm.place(load_valid(ACME).platform, next(  # type: ignore[arg-type]
        i.obj for i in load_valid(ACME).intents if i.obj.name == "smtp-relay"), "dev", "dev1").vault
    wf.start(servers.kv, vault, secret="smtp-relay", run_id="run-other", trigger="manual", reason="x", now=T0)
    with pytest.raises(RunActive, match="run-other"):
        import_value(request(), servers, caller)
    assert servers.kv.read("secret", PATH).version == 1  # type: ignore[union-attr]


def test_a_held_secret_refuses_the_import(servers: FakeServers, caller: Caller) -> None:
    servers.kv.update_custom_metadata("secret", PATH, {wk.HELD: "true", wk.HELD_RUN: "run-x"})
    with pytest.raises(wf.SecretHeld):
        import_value(request(), servers, caller)


def test_crash_after_staging_resumes_from_vault_with_the_same_import(
        servers: FakeServers, caller: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    class Crash(BaseException):
        pass

    def checkpoint(point: str) -> None:
        if point == "rotation.stage":
            raise Crash(point)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)
    with pytest.raises(Crash):
        import_value(request(), servers, caller)
    monkeypatch.setattr(wf, "checkpoint", lambda p: None)
    staged = servers.kv.read("secret", "_chamberlain/pending/" + PATH)
    assert staged is not None and staged.data["password"] == CANARY  # the value is in Vault, not only in a file
    record = runs.load(servers.kv, rm.place(load_valid(ACME).platform, next(  # type: ignore[arg-type]
        i.obj for i in load_valid(ACME).intents if i.obj.name == "smtp-relay"), "dev", "dev1").vault)
    assert record is not None and record.stage == "pending" and record.trigger == "import"
    assert CANARY not in record.model_dump_json()
    with pytest.raises(RunActive):  # a different value may not take over the run
        import_value(request(json.dumps({**NEW, "password": "other-" + CANARY}).encode()), servers, caller)
    again = import_value(request(), servers, caller)  # the same value: the same run, resumed from what was staged
    assert again.ok and again.as_dict()["run"] == record.run_id
    assert [e.details["trigger"] for e in LedgerReader(servers.kv, "secret").entries()
            if e.event == "rotation"] == ["import"]


def test_a_run_interrupted_before_staging_fails_when_resumed_and_changes_nothing(
        servers: FakeServers, caller: Caller) -> None:
    """What the controller does with an import run it adopts at ``pending``: its own rotator for the intent, which
    the workflow replaces by a value-less imported rotator — never a generated value."""
    repo = load_valid(ACME)
    assert repo.platform is not None
    intents = {i.obj.name: i.obj for i in repo.intents}
    placed = rm.place(repo.platform, intents["smtp-relay"], "dev", "dev1")
    run = wf.start(servers.kv, placed.vault, secret="smtp-relay", run_id="run-cut", trigger="import", reason="x",
                   now=T0)
    deps, _ = rm.build_deps(servers.kv, servers.fake_kube, repo.platform, intents, placed, actor="controller",
                            clock=caller.clock)
    run = rm.drive(run, deps, max_wait=0)
    assert run.stage == "failed" and "interrupted before its value was staged" in (run.last_error or "")
    assert servers.kv.read("secret", PATH).version == 1  # type: ignore[union-attr]


def test_the_cli_never_takes_a_value_from_argv(tmp_path: Path) -> None:
    result = run_cli("import", "smtp-relay", str(ACME), "-e", "dev", "--from-file", "-", "--value", CANARY)
    assert result.code == 2 and "never taken from the command line" in result.err
    assert CANARY not in result.out + result.err


def test_the_cli_refuses_a_value_file_in_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "acme"
    shutil.copytree(ACME, repo)
    (repo / "new.yaml").write_text(f"password: {CANARY}\nusername: u\n")
    result = run_cli("import", "smtp-relay", str(repo), "-e", "dev", "-c", "dev1", "--from-file",
                     str(repo / "new.yaml"))
    assert result.code == 2 and "inside the intent repository" in result.err
    assert CANARY not in result.out + result.err
