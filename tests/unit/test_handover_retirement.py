"""A handover GitOps cannot undo, with fakes: the GitOps ownership check (Flux inventory, Argo CD resources), the
pure decision with the new inputs, the deferred consume (awaiting-retirement) and its ledger entries, a crash at
every checkpoint of the deferred flow in every afterHandover mode, and the retirement written into the checkout
(round-trip YAML edit, --commit). Real kube-apiserver: tests/lab/test_gitops_retirement.py."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.authority.fake import FakeKV
from chamberlain.checks.gate import validate_repository
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.handover import (
    Bootstrap,
    HandoverError,
    HandoverUnit,
    Observed,
    Step,
    VaultValue,
    hand_over,
    handover_units,
    next_step,
)
from chamberlain.handover import workflow as wf
from chamberlain.handover.declare import declare_retirement, write_retirement
from chamberlain.handover.gitops import (
    ARGO_APPLICATIONS,
    FLUX_KUSTOMIZATIONS,
    Tracking,
    applied_by,
    argo_lists,
    flux_lists,
    trackings,
)
from chamberlain.intent.loader import load_repository
from chamberlain.kube.api import CustomResource, KubeForbidden, KubeSecret
from chamberlain.kube.fake import FakeKube
from chamberlain.service import handover as service
from chamberlain.service import load_valid
from chamberlain.service.context import Caller
from tests.conftest import EXAMPLES
from tests.unit.test_handover import Crash, World, new_world
from tests.unit.test_service import FakeServers

CANARY = "canary-Rt7Yq3Mz8Lp2Wx5Nb4"
DATA = {"username": "relay-user", "password": CANARY}
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KS_NS, KS_NAME = "flux-system", "chamberlain-bootstrap-dev-dev1"
FLUX_LABELS = {wk.FLUX_NAME_LABEL: KS_NAME, wk.FLUX_NAMESPACE_LABEL: KS_NS}
PHASE_A = ["handover.write", "handover.verify", "handover.record", "handover.ledger", "handover.deferred"]
PHASE_B = ["handover.consume", "handover.retire", "handover.retired"]
MODES = ["delete", "inert", "ignore"]


@pytest.fixture
def world() -> World:
    return new_world()


@pytest.fixture(scope="module")
def smtp() -> HandoverUnit:
    return {u.intent: u for u in handover_units(load_valid(EXAMPLES / "acme"), "dev", "dev1")}["smtp-relay"]


@pytest.fixture(autouse=True)
def no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wf, "checkpoint", lambda point: None)


def crash_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def checkpoint(point: str) -> None:
        if point == name:
            raise Crash(point)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)


def flux_secret(kube: FakeKube, unit: HandoverUnit, *, listed: bool = True) -> None:
    """A bootstrap Secret as Flux's kustomize-controller applies it, and its Kustomization's inventory."""
    kube.create_secret(unit.namespace, unit.name, DATA, labels={
        wk.LABEL_CLASS: "bootstrap", wk.LABEL_INTENT: unit.intent, **FLUX_LABELS})
    set_inventory(kube, unit, listed)


def set_inventory(kube: FakeKube, unit: HandoverUnit, listed: bool) -> None:
    """Flux's inventory with (or, after the retirement reconciled, without) this unit's Secret; others kept."""
    current = kube.get_custom_object(FLUX_KUSTOMIZATIONS, KS_NS, KS_NAME) or {}
    entry = {"id": f"{unit.namespace}_{unit.name}__Secret", "v": "v1"}
    entries = [e for e in ((current.get("status") or {}).get("inventory") or {"entries": [
        {"id": "flux-system_other__ConfigMap", "v": "v1"}]})["entries"] if e != entry]
    entries += [entry] if listed else []
    kube.add_custom_object(FLUX_KUSTOMIZATIONS, {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": KS_NAME, "namespace": KS_NS}, "status": {"inventory": {"entries": entries}}})


def run(w: World, unit: HandoverUnit, **kw: Any) -> wf.UnitOutcome:
    return hand_over(unit, w.kv, w.kube, w.ledger, w.ctx, gitops=w.kube, **kw)


def custom(w: World, unit: HandoverUnit) -> dict[str, str]:
    meta = w.kv.read_metadata(unit.vault.mount, unit.vault.path)
    assert meta is not None
    return dict(meta.custom)


def events(w: World, unit: HandoverUnit) -> list[str]:
    return [e.event for e in w.ledger.for_secret(unit.intent)]


def assert_awaiting(w: World, unit: HandoverUnit) -> None:
    """Vault holds and records the value; the bootstrap Secret is untouched and still usable."""
    got = w.kv.read(unit.vault.mount, unit.vault.path)
    assert got is not None and dict(got.data) == DATA and got.version == 1
    c = custom(w, unit)
    assert c[wk.AUTHORITY] == "vault" and wk.retired_key(unit.cluster) not in c
    entry = [e for e in w.ledger.for_secret(unit.intent) if e.event == "handover"]
    assert len(entry) == 1 and c[wk.handover_seq_key(unit.cluster)] == str(entry[0].seq)
    assert entry[0].details["retirement"] == "awaiting-gitops" and entry[0].details["gitops"] == "flux"
    secret = w.kube.get_secret(unit.namespace, unit.name)
    assert secret is not None and dict(secret.data) == DATA and wk.ANNOTATION_CONSUMED not in secret.annotations


def assert_retired(w: World, unit: HandoverUnit) -> None:
    secret = w.kube.get_secret(unit.namespace, unit.name)
    if unit.after_handover == "delete":
        assert secret is None
    else:
        assert secret is not None and wk.ANNOTATION_CONSUMED in secret.annotations
        assert dict(secret.data) == ({} if unit.after_handover == "inert" else DATA)
        for key, value in wf.RETIRED_ANNOTATIONS.items():
            assert secret.annotations[key] == value
    assert events(w, unit) == ["handover", "retire"], "one entry each, whatever crashed in between"
    retire = w.ledger.for_secret(unit.intent)[-1]
    assert retire.details["gitops"] == "flux" and retire.details["after-handover"] == unit.after_handover
    assert (retire.details["environment"], retire.details["cluster"]) == (unit.environment, unit.cluster)
    c = custom(w, unit)
    assert c[wk.retired_key(unit.cluster)] == str(retire.seq)
    assert w.ledger.verify().ok
    for entry in w.ledger.entries():
        assert CANARY not in entry.model_dump_json()


# ------------------------------------------------------------------------------------------------ the check (pure)


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        pytest.param(FLUX_LABELS, {}, [Tracking("flux", KS_NS, KS_NAME)], id="flux-labels"),
        pytest.param({wk.FLUX_NAME_LABEL: KS_NAME}, {}, [], id="flux-name-without-namespace"),
        pytest.param({}, {wk.ARGOCD_TRACKING_ID: "acme-dev:/Secret:ns/s"}, [Tracking("argocd", "argocd", "acme-dev")],
                     id="argo-tracking-id"),
        pytest.param({}, {wk.ARGOCD_TRACKING_ID: "apps_acme-dev:/Secret:ns/s"},
                     [Tracking("argocd", "apps", "acme-dev")], id="argo-app-in-any-namespace"),
        pytest.param({wk.ARGOCD_INSTANCE_LABEL: "acme-dev"}, {}, [Tracking("argocd", "argocd", "acme-dev")],
                     id="argo-instance-label"),
        pytest.param({}, {}, [], id="applied-by-hand"),
    ],
)
def test_trackings(labels: dict[str, str], annotations: dict[str, str], expected: list[Tracking]) -> None:
    assert trackings(labels, annotations) == expected


@pytest.mark.parametrize(
    ("status", "listed"),
    [
        pytest.param({"inventory": {"entries": [{"id": "ns_s__Secret"}]}}, True, id="listed"),
        pytest.param({"inventory": {"entries": [{"id": "ns_s__ConfigMap"}, {"id": "ns_other__Secret"}]}}, False,
                     id="others-only"),
        pytest.param({"inventory": {"entries": []}}, False, id="empty-inventory"),
        pytest.param({}, False, id="no-status"),
    ],
)
def test_flux_lists(status: dict[str, Any], listed: bool) -> None:
    assert flux_lists({"status": status}, "ns", "s") is listed


@pytest.mark.parametrize(
    ("resource", "listed"),
    [
        pytest.param({"kind": "Secret", "version": "v1", "namespace": "ns", "name": "s"}, True, id="synced"),
        pytest.param({"kind": "Secret", "namespace": "ns", "name": "s", "requiresPruning": True}, False,
                     id="no-longer-in-git"),
        pytest.param({"kind": "Secret", "group": "x.io", "namespace": "ns", "name": "s"}, False, id="other-group"),
        pytest.param({"kind": "ConfigMap", "namespace": "ns", "name": "s"}, False, id="other-kind"),
    ],
)
def test_argo_lists(resource: dict[str, Any], listed: bool) -> None:
    assert argo_lists({"status": {"resources": [resource]}}, "ns", "s") is listed


def test_applied_by_asks_the_named_controller_and_treats_a_missing_crd_as_none() -> None:
    kube = FakeKube()
    owner = applied_by(kube, "ns", "s", FLUX_LABELS, {})
    assert not owner.applies and owner.controller == "flux"  # no Kustomization (or no CRD): nobody applies it
    kube.add_custom_object(FLUX_KUSTOMIZATIONS, {"metadata": {"name": KS_NAME, "namespace": KS_NS},
                                                 "status": {"inventory": {"entries": [{"id": "ns_s__Secret"}]}}})
    owner = applied_by(kube, "ns", "s", FLUX_LABELS, {})
    assert owner.applies and owner.describe() == f"flux Kustomization {KS_NS}/{KS_NAME}"
    kube.add_custom_object(ARGO_APPLICATIONS, {"metadata": {"name": "acme-dev", "namespace": "argocd"},
                                               "status": {"resources": [{"kind": "Secret", "namespace": "ns",
                                                                         "name": "s"}]}})
    assert applied_by(kube, "ns", "s", {wk.ARGOCD_INSTANCE_LABEL: "acme-dev"}, {}).applies
    assert not applied_by(kube, "ns", "s", {}, {}).applies


def test_not_knowing_is_never_not_managed(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()

    def forbidden(resource: CustomResource, namespace: str, name: str) -> None:
        raise KubeForbidden(resource.describe(namespace, name) + ": forbidden (403)")

    monkeypatch.setattr(kube, "get_custom_object", forbidden)
    with pytest.raises(KubeForbidden):
        applied_by(kube, "ns", "s", FLUX_LABELS, {})


# ------------------------------------------------------------------------------------------------ decision


D = Observed


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, True, True, False, gitops=True), Step.LEDGER,
                     id="recorded-gitops-applies->ledger-first"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, True, True, False, gitops=True, logged=True),
                     Step.AWAIT, id="logged-gitops-applies->await"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.DIFFERENT, True, True, False, gitops=True, logged=True),
                     Step.AWAIT, id="rotated-since-gitops-applies->await"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, True, True, False, gitops=False, logged=True),
                     Step.CONSUME, id="logged-retired-in-git->consume"),
        pytest.param(D(Bootstrap.ABSENT, VaultValue.PRESENT, True, True, False, logged=True), Step.RETIRE,
                     id="deleted-after-deferral->retire"),
        pytest.param(D(Bootstrap.CONSUMED, VaultValue.PRESENT, True, True, False, logged=True), Step.RETIRE,
                     id="inert-after-deferral->retire"),
        pytest.param(D(Bootstrap.CONSUMED, VaultValue.PRESENT, True, True, True, logged=True), Step.DONE,
                     id="retired-after-deferral->done"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.ABSENT, False, False, False, gitops=True), Step.WRITE,
                     id="gitops-does-not-delay-the-copy"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.DIFFERENT, True, False, False, gitops=True), Step.CONFLICT,
                     id="gitops-applies-conflict->conflict"),
    ],
)
def test_next_step_with_gitops(state: Observed, expected: Step) -> None:
    assert next_step(state).step is expected


# ------------------------------------------------------------------------------------------------ workflow


@pytest.mark.parametrize("mode", MODES)
def test_gitops_applies_so_consume_waits_for_git(world: World, smtp: HandoverUnit, mode: str) -> None:
    unit = dataclasses.replace(smtp, after_handover=mode)  # type: ignore[arg-type]
    flux_secret(world.kube, unit)
    first = run(world, unit)
    assert first.result == "awaiting-retirement" and first.steps == ["write", "record", "ledger"]
    assert first.gitops == f"flux Kustomization {KS_NS}/{KS_NAME}" and "retiredIn" in first.message
    assert_awaiting(world, unit)
    writes = dict(world.kv.calls)
    again = run(world, unit)  # still applied: nothing more to do, nothing written
    assert again.result == "awaiting-retirement" and again.steps == [] and again.ledger_seq == first.ledger_seq
    assert world.kv.calls["write"] == writes["write"]
    assert world.kv.calls["update_custom_metadata"] == writes["update_custom_metadata"]

    set_inventory(world.kube, unit, listed=False)  # the retirement is in Git and Flux reconciled
    done = run(world, unit)
    assert done.result == "handed-over" and done.steps == ["consume", "retire"]
    assert_retired(world, unit)
    assert run(world, unit).result == "already-handed-over"


def test_argo_cd_application_is_checked_the_same_way(world: World, smtp: HandoverUnit) -> None:
    world.kube.create_secret(smtp.namespace, smtp.name, DATA, labels={
        wk.LABEL_CLASS: "bootstrap", wk.LABEL_INTENT: smtp.intent},
        annotations={wk.ARGOCD_TRACKING_ID: f"acme-dev-dev1:/Secret:{smtp.namespace}/{smtp.name}"})
    resource = {"kind": "Secret", "version": "v1", "namespace": smtp.namespace, "name": smtp.name}
    app = {"metadata": {"name": "acme-dev-dev1", "namespace": "argocd"}, "status": {"resources": [resource]}}
    world.kube.add_custom_object(ARGO_APPLICATIONS, app)
    assert run(world, smtp).result == "awaiting-retirement"
    app["status"]["resources"] = [{**resource, "requiresPruning": True}]  # the file left Git; Prune=false keeps it
    world.kube.add_custom_object(ARGO_APPLICATIONS, app)
    assert run(world, smtp).steps == ["consume", "retire"]
    assert world.ledger.for_secret(smtp.intent)[-1].details["gitops"] == "argocd"


def test_retired_in_git_before_the_first_run_consumes_at_once(world: World, smtp: HandoverUnit) -> None:
    """The best order: Git retired it (Flux forgot it) before handover ran; one handover entry says it all."""
    flux_secret(world.kube, smtp, listed=False)
    outcome = run(world, smtp)
    assert outcome.result == "handed-over" and outcome.steps == ["write", "record", "consume", "ledger"]
    [entry] = world.ledger.for_secret(smtp.intent)
    assert entry.event == "handover" and entry.details["gitops"] == "flux" and entry.details["retirement"] == "done"
    assert custom(world, smtp)[wk.retired_key(smtp.cluster)] == str(entry.seq)


def test_applied_by_hand_consumes_at_once_and_says_none(world: World, smtp: HandoverUnit) -> None:
    world.kube.create_secret(smtp.namespace, smtp.name, DATA, labels={
        wk.LABEL_CLASS: "bootstrap", wk.LABEL_INTENT: smtp.intent})
    assert run(world, smtp).steps == ["write", "record", "consume", "ledger"]
    assert world.ledger.for_secret(smtp.intent)[0].details["gitops"] == "none"


def test_dry_run_plans_the_deferred_order(world: World, smtp: HandoverUnit) -> None:
    flux_secret(world.kube, smtp)
    outcome = run(world, smtp, dry_run=True)
    assert outcome.result == "planned" and outcome.steps == ["write", "record", "ledger", "await-retirement"]
    assert world.kv.calls["write"] == 0


def test_an_unanswerable_gitops_check_stops_before_anything_is_consumed(
        world: World, smtp: HandoverUnit, monkeypatch: pytest.MonkeyPatch) -> None:
    flux_secret(world.kube, smtp)

    def forbidden(resource: CustomResource, namespace: str, name: str) -> None:
        raise KubeForbidden(resource.describe(namespace, name) + ": forbidden (403)")

    monkeypatch.setattr(world.kube, "get_custom_object", forbidden)
    with pytest.raises(HandoverError, match="forbidden"):
        run(world, smtp)
    secret = world.kube.get_secret(smtp.namespace, smtp.name)
    assert secret is not None and dict(secret.data) == DATA


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", PHASE_A + PHASE_B)
def test_crash_at_every_checkpoint_of_the_deferred_flow_converges(
        world: World, smtp: HandoverUnit, point: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = dataclasses.replace(smtp, after_handover=mode)  # type: ignore[arg-type]
    flux_secret(world.kube, unit)
    if point in PHASE_B:
        assert run(world, unit).result == "awaiting-retirement"
        set_inventory(world.kube, unit, listed=False)
    crash_at(monkeypatch, point)
    with pytest.raises(Crash):
        run(world, unit)
    monkeypatch.setattr(wf, "checkpoint", lambda p: None)
    rerun = run(world, unit)
    if point in PHASE_A:
        assert rerun.result == "awaiting-retirement"
        assert_awaiting(world, unit)
        set_inventory(world.kube, unit, listed=False)
        rerun = run(world, unit)
    assert rerun.result in ("handed-over", "already-handed-over")
    assert_retired(world, unit)


# ------------------------------------------------------------------------------------------------ Git


FP = "sha256:" + "a" * 64


def test_declare_keeps_comments_and_order_and_is_idempotent() -> None:
    text = ("# a comment that stays\nkind: SecretIntent\nspec:\n  source:\n    bootstrap:\n"
            "      file: b.sops.yaml  # trailing\n      afterHandover: inert\n  rotation: {policy: static}\n")
    once, changed = declare_retirement(text, "dev", FP)
    assert changed and once.startswith("# a comment that stays\n") and "# trailing" in once
    assert "      retiredIn: [dev]\n      retiredFingerprint: " + FP in once
    assert once.index("retiredFingerprint") < once.index("rotation")
    twice, changed = declare_retirement(once, "prod", FP)
    assert changed and "retiredIn: [dev, prod]" in twice
    assert declare_retirement(twice, "prod", FP) == (twice, False)


def copy_acme(tmp_path: Path) -> Path:
    repo = tmp_path / "acme"
    shutil.copytree(EXAMPLES / "acme", repo)
    return repo


def test_written_retirement_validates_and_renders_without_the_file(tmp_path: Path) -> None:
    repo = copy_acme(tmp_path)
    first = write_retirement(load_repository(repo), "smtp-relay", "dev")
    second = write_retirement(load_repository(repo), "registry-pull", "dev")  # the same file, read again
    assert first.changed and second.changed and first.file == second.file == "intents/platform.yaml"
    result = validate_repository(repo)
    assert result.findings == []
    bootstrap = {i.obj.name: i.obj.spec.source.bootstrap for i in result.repo.intents}
    assert bootstrap["smtp-relay"] is not None and bootstrap["smtp-relay"].retired_in == ["dev"]
    assert bootstrap["registry-pull"] is not None and bootstrap["registry-pull"].retired_fingerprint is not None
    assert not write_retirement(load_repository(repo), "smtp-relay", "dev").changed


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin", "HOME": str(repo)}).stdout


@pytest.fixture
def servers() -> FakeServers:
    return FakeServers(kv=FakeKV(), fake_kube=FakeKube())


@pytest.fixture
def caller() -> Caller:
    return Caller("test:someone", FakeClock(T0), "run-test")


def managed(servers: FakeServers, repo: Path) -> list[HandoverUnit]:
    units = handover_units(load_valid(repo), "dev", "dev1")
    for unit in units:
        flux_secret(servers.fake_kube, unit)
    return units


def test_service_writes_the_retirement_then_consumes_after_the_push(
        tmp_path: Path, servers: FakeServers, caller: Caller) -> None:
    repo = copy_acme(tmp_path)
    units = managed(servers, repo)
    result = service.handover(repo, servers, caller, environment="dev", cluster="dev1")
    assert result.ok and [o.result for o in result.outcomes] == ["awaiting-retirement"] * len(units)
    for o in result.outcomes:
        assert o.git is not None and o.git["changed"] is True and o.git["commit"] is None
    assert validate_repository(repo).findings == []
    assert CANARY not in str(result.as_dict())
    for unit in units:  # pushed, rendered, reconciled: Flux no longer lists them
        set_inventory(servers.fake_kube, unit, listed=False)
    again = service.handover(repo, servers, caller, environment="dev", cluster="dev1")
    assert [o.result for o in again.outcomes] == ["handed-over"] * len(units)
    assert all(o.steps == ["consume", "retire"] for o in again.outcomes)


def test_commit_commits_the_intent_file_alone(tmp_path: Path, servers: FakeServers, caller: Caller) -> None:
    repo = copy_acme(tmp_path)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "notes.txt").write_text("unrelated, uncommitted\n")
    managed(servers, repo)
    options = service.GitOptions(commit=True, env={"PATH": "/usr/bin:/bin", "HOME": str(repo),
                                                   "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})
    result = service.handover(repo, servers, caller, environment="dev", cluster="dev1", git=options)
    commits = [o.git["commit"] for o in result.outcomes if o.git]
    assert len(commits) == 2 and all(commits)
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["intents/platform.yaml"]
    assert "retiredIn: [dev]" in git(repo, "show", "HEAD:intents/platform.yaml")
    assert git(repo, "status", "--porcelain").split() == ["??", "notes.txt"]


def test_commit_outside_a_work_tree_is_refused_before_anything(
        tmp_path: Path, servers: FakeServers, caller: Caller) -> None:
    repo = copy_acme(tmp_path)
    managed(servers, repo)
    options = service.GitOptions(commit=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                   "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    with pytest.raises(UsageError, match="not inside a Git work tree"):
        service.handover(repo, servers, caller, environment="dev", cluster="dev1", git=options)
    assert servers.kv.calls["write"] == 0


def test_secret_repr_never_shows_data() -> None:
    assert CANARY not in repr(KubeSecret("ns", "s", DATA))


def test_retirement_undone_by_mode() -> None:
    from chamberlain import wellknown as wk
    from chamberlain.handover import retirement_undone
    from chamberlain.kube.api import KubeSecret

    consumed = {wk.ANNOTATION_CONSUMED: "2026-12-02T00:00:00Z"}
    inert = KubeSecret("ns", "s", {}, annotations=consumed)
    refilled = KubeSecret("ns", "s", {"password": "x"}, annotations=consumed)
    plain = KubeSecret("ns", "s", {"password": "x"})
    assert not retirement_undone("delete", None, applied=False)
    assert retirement_undone("delete", plain, applied=False)  # recreated
    assert retirement_undone("delete", None, applied=True)  # listed again by a Kustomization
    assert not retirement_undone("inert", inert, applied=False)
    assert retirement_undone("inert", refilled, applied=False)
    assert not retirement_undone("ignore", refilled, applied=False)
    assert retirement_undone("ignore", plain, applied=False)  # the retirement annotations are gone
    tls = KubeSecret("ns", "s", {"tls.crt": "", "tls.key": ""}, annotations=consumed, type="kubernetes.io/tls")
    assert not retirement_undone("inert", tls, applied=False)
