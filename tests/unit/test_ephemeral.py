"""Ephemeral environment instances (``env up|down preview/<id>``) over fakes: FakeKV for the authority, FakeKube
for the cluster (its namespace deletion removes the content at once, as the namespace controller does in time), a
fake clock. Naming and the rendered instance-reader role are pure. The same flows against the real OpenBao, ESO
and kube-apiserver: tests/lab/test_ephemeral.py."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import faults
from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.clock import FakeClock
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.kube.api import CustomResource, KubeSecret
from chamberlain.kube.fake import FakeKube
from chamberlain.lifecycle import ephemeral as eph
from chamberlain.render import render_repository
from chamberlain.service import environments
from chamberlain.service.context import Caller
from chamberlain.service.repository import load_platform
from tests.conftest import EXAMPLES, run_cli
from tests.unit.test_service import FakeServers

MOUNT = "secret"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# A second generated secret of the preview environment, read in two namespaces: an instance then has two secrets
# and two namespaces, and a value shared by two consumers must reach both.
SECOND_INTENT = """---
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: preview-db-password}
spec:
  owner: team-web
  purpose: Password of the database a preview environment brings up for itself; destroyed with the preview
  classification: runtime
  environments: [preview]
  source:
    generate:
      password: {type: password, length: 24}
  rotation: {policy: short}
  consumers:
    - {namespace: web-preview, secretName: preview-db}
    - {namespace: db-preview, secretName: preview-db}
"""


def preview_repo(dst: Path, source: Path = EXAMPLES / "acme") -> Path:
    """A copy of ``source`` whose ephemeral environment ``preview`` has two generated intents over two
    namespaces (web-preview, db-preview)."""
    shutil.copytree(source, dst)
    web = dst / "intents" / "web.yaml"
    web.write_text(web.read_text().rstrip("\n") + "\n" + SECOND_INTENT)
    return dst


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preview_repo(tmp_path_factory.mktemp("ephemeral") / "repo")


class AppliedKube(FakeKube):
    """FakeKube whose custom-object listing also sees the objects applied server-side (env up applies them; the
    plain fake keeps the two apart)."""

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]:
        found = super().list_custom_objects(resource, namespace, label)
        for (api_version, kind, ns, _name), (body, _rv, _m) in sorted(self.applied.items()):
            if (api_version == f"{resource.group}/{resource.version}" and kind.lower() + "s" == resource.plural
                    and namespace in (None, ns)):
                found.append(copy.deepcopy(body))
        return found


def _servers(**kw: Any) -> FakeServers:
    return FakeServers(fake_kube=AppliedKube(), **kw)


def _caller() -> Caller:
    return Caller("test:ci", FakeClock(T0))


def _up(repo: Path, servers: FakeServers, name: str = "preview/pr-42") -> environments.EnvResult:
    return environments.up(repo, name, servers, _caller(), wait_seconds=0)  # the fake has no ESO to wait for


def _down(repo: Path, servers: FakeServers, name: str = "preview/pr-42") -> environments.EnvResult:
    return environments.down(repo, name, servers, _caller())


def _under(servers: FakeServers, prefix: str) -> list[str]:
    return servers.kv.list(MOUNT, prefix)


def _events(servers: FakeServers) -> list[str]:
    return [e.event for e in LedgerReader(servers.kv, MOUNT).entries()]


# ------------------------------------------------------------------------------------------ naming (pure)


@pytest.mark.parametrize(("text", "why"), [
    pytest.param("dev/pr-1", "is not ephemeral", id="non-ephemeral-environment"),
    pytest.param("qa/pr-1", "not an environment of the Platform", id="unknown-environment"),
    pytest.param("preview", "name an instance as preview/<id>", id="no-id"),
    pytest.param("preview/PR-1", "DNS label", id="upper-case"),
    pytest.param("preview/pr_1", "DNS label", id="underscore"),
    pytest.param("preview/" + "a" * 21, "at most 20", id="too-long"),
    pytest.param("preview/pr-1/x", "DNS label", id="two-segments"),
])
def test_an_instance_name_is_refused_with_the_reason(repo: Path, text: str, why: str) -> None:
    _repo, platform = load_platform(repo)
    with pytest.raises(UsageError, match=why) as info:
        eph.parse_instance(platform, text)
    assert info.value.exit_code == 2  # SPEC §10: a usage error


def test_manifests_carry_the_instance_in_every_name_and_label(repo: Path) -> None:
    loaded, platform = load_platform(repo)
    instance, _env = eph.parse_instance(platform, "preview/pr-42")
    intents = eph.intents_of(platform, [i.obj for i in loaded.intents], "preview")
    assert [i.metadata.name for i in intents] == ["preview-api-token", "preview-db-password"]
    objects = eph.manifests(platform, intents, instance, "dev1")
    assert {o["metadata"].get("namespace") or o["metadata"]["name"] for o in objects} == {
        "web-preview-pr-42", "db-preview-pr-42"}
    assert all(o["metadata"]["labels"][eph.LABEL_INSTANCE] == "preview.pr-42" for o in objects)
    stores = [o for o in objects if o["kind"] == "SecretStore"]
    assert {s["spec"]["provider"]["vault"]["auth"]["kubernetes"]["role"] for s in stores} == {
        "chamberlain.preview.dev1.web-preview.instance-reader", "chamberlain.preview.dev1.db-preview.instance-reader"}
    keys = {(o["metadata"]["namespace"], ref["remoteRef"]["key"])
            for o in objects if o["kind"] == "ExternalSecret" for ref in o["spec"]["data"]}
    assert keys == {  # each namespace reads its own copy
        ("web-preview-pr-42", "preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-api-token"),
        ("web-preview-pr-42", "preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-db-password"),
        ("db-preview-pr-42", "preview/_instances/pr-42/_ns/db-preview-pr-42/team-web/preview-db-password")}
    # not GitOps objects: no sync waves, no prune hints
    assert not any(k.startswith(("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/"))
                   for o in objects for k in o["metadata"].get("annotations", {}))


def test_the_rendered_instance_reader_reads_only_its_namespaces_intents_in_an_instance(repo: Path) -> None:
    tree = render_repository(load_repository(repo))
    files = {p.rsplit("/", 1)[-1]: tree[p] for p in tree.paths() if ".instance-reader." in p}
    policy = files["chamberlain.preview.dev1.db-preview.instance-reader.hcl"]
    paths = [line.split('"')[1] for line in policy.splitlines() if line.startswith("path ")]
    own = "{{identity.entity.aliases.<<accessor:kubernetes-dev1>>.metadata.service_account_namespace}}"
    assert paths == [f"secret/data/preview/_instances/+/_ns/{own}/team-web/preview-db-password",
                     f"secret/metadata/preview/_instances/+/_ns/{own}/team-web/preview-db-password"]
    assert 'capabilities = ["read"]' in policy and "list" not in policy
    role = files["chamberlain.preview.dev1.db-preview.instance-reader.json"]
    assert '"db-preview-*"' in role and '"chamberlain-preview-reader"' in role


# ------------------------------------------------------------------------------------------ up


def test_up_generates_every_secret_and_applies_the_instances_objects(repo: Path) -> None:
    servers = _servers()
    got = _up(repo, servers)
    assert got.secrets == ["secret/preview/_instances/pr-42/team-web/preview-api-token",
                           "secret/preview/_instances/pr-42/team-web/preview-db-password"]
    assert _under(servers, "preview/_instances/pr-42/team-web/") == ["preview-api-token", "preview-db-password"]
    assert got.copies == ["secret/preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-api-token",
                          "secret/preview/_instances/pr-42/_ns/db-preview-pr-42/team-web/preview-db-password",
                          "secret/preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-db-password"]
    for written in got.copies:  # the same value and version marker as the generated one
        path = written.removeprefix("secret/")
        name = path.rsplit("/", 1)[-1]
        source = f"preview/_instances/pr-42/team-web/{name}"
        assert servers.kv.read(MOUNT, path).data == servers.kv.read(MOUNT, source).data  # type: ignore[union-attr]
        assert servers.kv.read_metadata(MOUNT, path).custom == (  # type: ignore[union-attr]
            servers.kv.read_metadata(MOUNT, source).custom)  # type: ignore[union-attr]
    assert servers.orchestrated == ["dev1"]  # as the cluster's orchestrator: no policy written
    applied = {(k[1], k[2] or k[3]) for k in servers.fake_kube.applied}
    assert ("Namespace", "web-preview-pr-42") in applied and ("Namespace", "db-preview-pr-42") in applied
    assert ("ExternalSecret", "db-preview-pr-42") in applied
    assert _events(servers) == ["value-created", "value-created"]
    assert "value" not in str(got.as_dict()).lower()


def test_up_twice_converges(repo: Path) -> None:
    servers = _servers()
    _up(repo, servers)
    before = servers.kv.read(MOUNT, "preview/_instances/pr-42/team-web/preview-api-token")
    again = _up(repo, servers)
    after = servers.kv.read(MOUNT, "preview/_instances/pr-42/team-web/preview-api-token")
    assert before is not None and after is not None and (before.version, before.data) == (after.version, after.data)
    assert _events(servers) == ["value-created", "value-created"]  # nothing new to record
    assert again.copies == [] and len(again.objects) == len(_up(repo, servers).objects)


def test_two_instances_never_collide(repo: Path) -> None:
    servers = _servers()
    _up(repo, servers, "preview/pr-1")
    _up(repo, servers, "preview/pr-2")
    one = servers.kv.read(MOUNT, "preview/_instances/pr-1/team-web/preview-api-token")
    two = servers.kv.read(MOUNT, "preview/_instances/pr-2/team-web/preview-api-token")
    assert one is not None and two is not None and one.data != two.data  # each instance its own value
    _down(repo, servers, "preview/pr-1")
    assert _under(servers, "preview/_instances/") == ["pr-2/"]
    assert servers.fake_kube.list_namespaces(f"{eph.LABEL_INSTANCE}=preview.pr-2") == [
        "db-preview-pr-2", "web-preview-pr-2"]


# ------------------------------------------------------------------------------------------ down


def test_down_leaves_nothing_of_the_instance_and_records_the_teardown(repo: Path) -> None:
    servers = _servers()
    _up(repo, servers)
    got = _down(repo, servers)
    assert got.secrets == ["secret/preview/_instances/pr-42/_ns/db-preview-pr-42/team-web/preview-db-password",
                           "secret/preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-api-token",
                           "secret/preview/_instances/pr-42/_ns/web-preview-pr-42/team-web/preview-db-password",
                           "secret/preview/_instances/pr-42/team-web/preview-api-token",
                           "secret/preview/_instances/pr-42/team-web/preview-db-password"]
    assert _under(servers, "preview/_instances/") == []  # every version and the metadata
    kube = servers.fake_kube
    assert not [k for k in kube.applied if "pr-42" in (k[2] or k[3])]
    assert "ExternalSecret/web-preview-pr-42/preview-api-token" in got.objects
    assert "Namespace/db-preview-pr-42" in got.objects
    teardown = LedgerReader(servers.kv, MOUNT).entries()[-1]
    assert teardown.event == "env-teardown" and teardown.seq == got.ledger_seq
    assert teardown.details == {"instance": "preview/pr-42", "cluster": "dev1", "secrets": "5", "namespaces": "2"}


def test_down_twice_is_fine_and_records_nothing_the_second_time(repo: Path) -> None:
    servers = _servers()
    _up(repo, servers)
    _down(repo, servers)
    again = _down(repo, servers)
    assert (again.secrets, again.objects, again.ledger_seq) == ([], [], None)
    assert _events(servers).count("env-teardown") == 1


def test_down_of_a_non_ephemeral_environment_is_refused_before_any_server(repo: Path) -> None:
    servers = _servers(refuse=AssertionError("no server may be reached"))
    with pytest.raises(UsageError, match="not ephemeral"):
        _down(repo, servers, "dev/pr-42")


@pytest.mark.parametrize("point", ["env-down.cluster-removed", "env-down.secret-removed"])
def test_an_interrupted_down_is_rerun_and_converges(repo: Path, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    class Crash(Exception):
        pass

    def crash(name: str) -> None:
        if name == point:
            raise Crash(name)

    servers = _servers()
    _up(repo, servers)
    monkeypatch.setattr(faults, "checkpoint", crash)
    with pytest.raises(Crash):
        _down(repo, servers)
    monkeypatch.undo()
    _down(repo, servers)
    assert _under(servers, "preview/_instances/") == []
    assert servers.fake_kube.list_namespaces(f"{eph.LABEL_INSTANCE}=preview.pr-42") == []
    # the crashed run recorded what it was removing (it crashed after the entry, or before it: then the re-run did)
    assert _events(servers).count("env-teardown") == (2 if point == "env-down.secret-removed" else 1)


def test_down_waits_for_terminating_namespaces_then_says_so(repo: Path) -> None:
    servers = _servers()
    _up(repo, servers)
    kube = servers.fake_kube
    kube.delete_namespace = lambda name: None  # type: ignore[method-assign]  # a finalizer that never finishes
    with pytest.raises(environments.InstanceNotGone, match="still terminating") as info:
        environments.down(repo, "preview/pr-42", servers, _caller(), wait_seconds=5)
    assert info.value.retryable and isinstance(info.value, ChamberlainError)
    assert _under(servers, "preview/_instances/") == []  # the authority's part is done meanwhile


def test_results_never_carry_a_value(repo: Path) -> None:
    servers = _servers()
    up = _up(repo, servers)
    values: list[Any] = []
    for path in ("preview-api-token", "preview-db-password"):
        got = servers.kv.read(MOUNT, f"preview/_instances/pr-42/team-web/{path}")
        assert got is not None
        values.extend(got.data.values())
    down = _down(repo, servers)
    text = str(up.as_dict()) + str(down.as_dict())
    assert not any(v in text for v in values)


class ESOAppliedKube(AppliedKube):
    """AppliedKube where a force-sync writes the consumer Secret with the current marker from the fake authority
    (what ESO does)."""

    def __init__(self, kv: Any) -> None:
        super().__init__()
        self.kv = kv

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        body = self.applied[("external-secrets.io/v1", "ExternalSecret", namespace, name)][0]
        key = body["spec"]["data"][0]["remoteRef"]["key"]
        meta = self.kv.read_metadata(MOUNT, key)
        self.secrets[(namespace, name)] = KubeSecret(
            namespace, name, {}, annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom[wk.VALUE_MARKER]})


def test_up_waits_until_every_consumer_secret_is_materialized(repo: Path) -> None:
    servers = _servers()
    servers.fake_kube = ESOAppliedKube(servers.kv)
    environments.up(repo, "preview/pr-42", servers, _caller(), wait_seconds=30)
    assert set(servers.fake_kube.secrets) == {("web-preview-pr-42", "preview-api-token"),
                                              ("web-preview-pr-42", "preview-db"), ("db-preview-pr-42", "preview-db")}


def test_up_says_which_consumer_is_not_materialized_in_time(repo: Path) -> None:
    servers = _servers()  # no ESO: nothing ever writes the consumer Secrets
    with pytest.raises(environments.NotMaterialized, match="db-preview-pr-42/preview-db") as info:
        environments.up(repo, "preview/pr-42", servers, _caller(), wait_seconds=10)
    assert info.value.retryable
    assert _under(servers, "preview/_instances/pr-42/team-web/") == ["preview-api-token", "preview-db-password"]


def test_the_cli_refuses_down_of_a_non_ephemeral_environment_with_exit_2(repo: Path) -> None:
    got = run_cli("env", "down", str(repo), "dev/pr-42", "--cluster", "dev1")  # no server is reachable here
    assert got.code == 2 and "is not ephemeral" in got.err and "Traceback" not in got.err


def test_configure_puts_the_live_accessor_into_the_templated_policy() -> None:
    from chamberlain.authority.configure import resolve_accessors
    from chamberlain.authority.model import AuthMountInfo

    text = 'path "s/data/p/_instances/+/_ns/{{identity.entity.aliases.<<accessor:kubernetes-dev1>>.metadata.x}}/o/n"'
    live = {"kubernetes-dev1": AuthMountInfo("kubernetes", accessor="auth_kubernetes_1a2b3c4d")}
    assert "aliases.auth_kubernetes_1a2b3c4d.metadata" in resolve_accessors(text, live)
    assert resolve_accessors(text, {}) == text  # the mount does not exist yet: configure enables it, then resolves


def test_configure_writes_the_instance_reader_with_the_accessor_of_the_mount_it_enabled(repo: Path) -> None:
    """Over the fake Vault (its auth mounts get an accessor when enabled, as a server's do): the first run enables
    kubernetes-dev1 and writes the policy with that mount's accessor; a second plan is empty."""
    from chamberlain.authority.configure import apply, desired_state, observe, plan
    from tests.unit.test_authority_configure import _settings
    from tests.unit.test_authority_fakes import FakeVault

    tree = render_repository(load_repository(repo))
    desired = desired_state({p[len("vault/"):]: tree[p] for p in tree.paths() if p.startswith("vault/")},
                            _settings())
    vault = FakeVault()
    apply(vault, desired, plan(desired, observe(vault, desired)))
    accessor = vault.auth.list_mounts()["kubernetes-dev1"].accessor
    text = vault.policies.read("chamberlain.preview.dev1.web-preview.instance-reader")
    assert text is not None and f"identity.entity.aliases.{accessor}.metadata" in text and "<<" not in text
    assert plan(desired, observe(vault, desired)) == []
