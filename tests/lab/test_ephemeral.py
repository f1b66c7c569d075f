"""Ephemeral environment instances against the real servers of the session's demo lab (OpenBao, kube-apiserver
with kube-controller-manager, the real ESO): the demo's repository plus a second preview intent read in a second
namespace, the authority configured for it by ``authority configure`` as its configurator, then the real CLI.

``env up preview/<id>`` generates each secret at the instance's paths as the cluster's orchestrator and ESO
materializes it in the instance's namespaces through the rendered ``instance-reader`` roles; a second instance
gets its own values and namespaces. ``env down`` removes the ExternalSecrets, SecretStores and namespaces (the
namespace controller takes the consumer Secrets with them), every version and all metadata under the instance
prefix, and records ``env-teardown`` in the signed ledger: afterwards nothing of the instance is found in the
authority or the cluster. A crash in the middle of ``down`` (a fault point, ``CHAMBERLAIN_CRASH_AT``) is re-run
and converges; ``down`` of a non-ephemeral environment exits 2 and touches nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from tests.conftest import REPO_ROOT, CliResult, run_cli
from tests.lab.demo_lab import World, wait_for
from tests.unit.test_ephemeral import preview_repo

pytestmark = pytest.mark.lab
pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.authority.errors import Forbidden  # noqa: E402
from chamberlain.authority.vault import login_kubernetes  # noqa: E402
from chamberlain.clock import SystemClock  # noqa: E402
from chamberlain.lifecycle.ephemeral import LABEL_INSTANCE  # noqa: E402
from chamberlain.service import authority, environments  # noqa: E402
from chamberlain.service.context import Caller, ConnectionOptions, LiveServers  # noqa: E402

MOUNT = "secret"
AUTH_MOUNT = "kubernetes-dev1"
SECRETS = {"preview-api-token": ("web-preview", "preview-api-token", "API_TOKEN", "token"),
           "preview-db-password": ("db-preview", "preview-db", "password", "password")}
CONSUMERS = [("web-preview", "preview-api-token", "preview-api-token"), ("web-preview", "preview-db",
             "preview-db-password"), ("db-preview", "preview-db", "preview-db-password")]
ES = ("external-secrets.io", "v1")


@dataclass
class Env:
    w: World
    repo: Path
    conn: ConnectionOptions

    def conn_args(self) -> list[str]:
        return [a for a in self.w.vault_args() if a not in ("-e", "dev")]

    def cli(self, *args: str) -> CliResult:
        """``chamberlain env ARGS`` through the real entry point (its error boundary and exit codes), in this
        process: a child's start costs seconds."""
        return run_cli("env", args[0], str(self.repo), *args[1:], *self.conn_args(), "-o", "json")

    def crash(self, *args: str, at: str) -> subprocess.CompletedProcess[str]:
        """The real CLI in a child process that dies at the fault point ``at`` (os._exit, like a SIGKILL)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
        env["CHAMBERLAIN_CRASH_AT"] = at
        return subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "env", args[0], str(self.repo),
                               *args[1:], *self.conn_args()], capture_output=True, text=True, env=env,
                              cwd=REPO_ROOT, timeout=180, check=False)

    def run(self, action: str, name: str) -> dict[str, Any]:
        """What ``chamberlain env up|down`` runs, in this process (a child's start costs seconds each): the same
        connection options, logged in as dev1's orchestrator through Kubernetes auth."""
        call = environments.up if action == "up" else environments.down
        with LiveServers(self.conn, SystemClock()) as servers:
            return call(self.repo, name, servers, Caller("lab:ci", SystemClock()), cluster="dev1",
                        wait_seconds=90).as_dict()

    def vault_data(self, instance: str, intent: str) -> dict[str, str] | None:
        got = self.w.kv.read(MOUNT, f"preview/_instances/{instance}/team-web/{intent}")
        return None if got is None else dict(got.data)

    def materialized(self, instance: str) -> dict[tuple[str, str], dict[str, str]]:
        """Each consumer Secret of the instance once ESO wrote it with the Vault secret's current marker."""
        out: dict[tuple[str, str], dict[str, str]] = {}

        def synced() -> bool:
            for ns, secret, intent in CONSUMERS:
                ns = f"{ns}-{instance}"
                got = self.w.kube.get_secret(ns, secret)
                meta = self.w.kv.read_metadata(MOUNT, f"preview/_instances/{instance}/team-web/{intent}")
                if got is None or meta is None or \
                        got.annotations.get(wk.ANNOTATION_VERSION_MARKER) != meta.custom.get(wk.VALUE_MARKER):
                    return False
                out[(ns, secret)] = dict(got.data)
            return True

        wait_for(synced, 90, f"ESO materializes every consumer Secret of preview/{instance}")
        return out

    def leftovers(self, instance: str) -> list[str]:
        """Everything of the instance still found, in the authority or the cluster (read as the orchestrator and
        the lab's admin)."""
        found = [f"vault:{k}" for k in self.w.kv.list(MOUNT, "preview/_instances/") if k == f"{instance}/"]
        found += [f"vault:{intent}" for intent in SECRETS
                  if self.w.kv.read_metadata(MOUNT, f"preview/_instances/{instance}/team-web/{intent}") is not None]
        core = kubernetes.client.CoreV1Api(self.w.api)
        custom = kubernetes.client.CustomObjectsApi(self.w.api)
        selector = f"{LABEL_INSTANCE}=preview.{instance}"
        found += [f"namespace:{n.metadata.name}" for n in core.list_namespace(label_selector=selector).items]
        found += [f"namespace:{n.metadata.name}" for n in core.list_namespace().items
                  if n.metadata.name.endswith(f"-preview-{instance}")]
        for plural in ("externalsecrets", "secretstores"):
            found += [f"{plural}:{o['metadata']['name']}" for o in custom.list_cluster_custom_object(
                *ES, plural, label_selector=selector)["items"]]
        found += [f"secret:{s.metadata.namespace}/{s.metadata.name}"
                  for s in core.list_secret_for_all_namespaces().items
                  if s.metadata.namespace.endswith(f"-preview-{instance}")]
        return sorted(set(found))


@pytest.fixture(scope="module")
def env(demo_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The demo's repository with a second preview intent; the authority configured for it (the new
    instance-reader role of db-preview) by its configurator, as ``chamberlain authority configure`` does."""
    w = demo_world
    base = tmp_path_factory.mktemp("ephemeral")
    repo = preview_repo(base / "repo", source=w.repo)
    jwt = base / "reviewer.jwt"
    jwt.write_text(w.kube.service_account_token("vault-system", "vault-auth", [], 24 * 3600))
    jwt.chmod(0o600)
    options = authority.ConfigureOptions(audit_file=str(w.lab.authority.audit_log), token_reviewer_jwt_file=jwt)
    conn = ConnectionOptions(vault_addr=w.lab.authority.address, vault_cacert=w.lab.pki.ca.cert,
                             kubeconfig=w.lab.kubeconfig)
    with LiveServers(conn, SystemClock()) as servers:
        result = authority.configure(authority.Selection(repo, None, "dev1", options), servers,
                                     Caller("lab:test", SystemClock()))
    added = {c.name for c in result.changes if c.action == "add"}
    assert "kubernetes-dev1/chamberlain.preview.dev1.db-preview.instance-reader" in added or any(
        "db-preview.instance-reader" in n for n in added), added
    e = Env(w, repo, conn)
    yield e
    for instance in ("pr-1", "pr-2"):  # whatever a failed test left
        e.run("down", f"preview/{instance}")


def test_up_generates_and_materializes_each_instance_apart(env: Env) -> None:
    env.run("up", "preview/pr-2")
    cli = env.cli("up", "preview/pr-1", "--cluster", "dev1")  # the real command: it waits until ESO is done
    assert cli.code == 0, cli.out + cli.err
    first = json.loads(cli.out)
    assert sorted(first["secrets"]) == [f"secret/preview/_instances/pr-1/team-web/{n}" for n in sorted(SECRETS)]
    assert "Namespace/db-preview-pr-1" in first["objects"] and "Namespace/web-preview-pr-1" in first["objects"]
    one, two = env.materialized("pr-1"), env.materialized("pr-2")
    for instance, secrets in (("pr-1", one), ("pr-2", two)):
        token = env.vault_data(instance, "preview-api-token")
        password = env.vault_data(instance, "preview-db-password")
        assert token is not None and password is not None
        assert secrets[(f"web-preview-{instance}", "preview-api-token")]["API_TOKEN"] == token["token"]
        # one value, read in both namespaces of the instance
        assert secrets[(f"web-preview-{instance}", "preview-db")]["password"] == password["password"]
        assert secrets[(f"db-preview-{instance}", "preview-db")]["password"] == password["password"]
    assert env.vault_data("pr-1", "preview-api-token") != env.vault_data("pr-2", "preview-api-token")
    assert not any(v in cli.out + cli.err for d in one.values() for v in d.values())

    before = env.w.kv.read_metadata(MOUNT, "preview/_instances/pr-1/team-web/preview-api-token")
    env.run("up", "preview/pr-1")  # up twice converges: the same versions, nothing new
    after = env.w.kv.read_metadata(MOUNT, "preview/_instances/pr-1/team-web/preview-api-token")
    assert before is not None and after is not None and after.current_version == before.current_version == 1


def test_down_of_a_non_ephemeral_environment_is_refused(env: Env) -> None:
    got = env.cli("down", "dev/pr-1", "--cluster", "dev1")
    assert got.code == 2, got.out + got.err
    assert "is not ephemeral" in got.err and "Traceback" not in got.err
    assert env.w.kv.read_metadata(MOUNT, "dev/team-platform/smtp-relay") is not None  # dev untouched


def test_an_instance_reads_only_its_own_namespaces_copies(env: Env) -> None:
    """The rendered instance-reader role, as configure wrote it (its policy templated on the Kubernetes auth
    alias's ``service_account_namespace``, the accessor put in by configure): ESO's ServiceAccount in
    ``web-preview-pr-1`` reads its namespace's copies, and is refused another instance's, another namespace's of
    its own instance, and the generated originals. The value itself is never read here."""
    w = env.w
    jwt = w.kube.service_account_token("web-preview-pr-1", "chamberlain-preview-reader", ["vault"])
    reader = login_kubernetes(w.lab.authority.address, w.lab.pki.ca.cert, AUTH_MOUNT,
                              "chamberlain.preview.dev1.web-preview.instance-reader", jwt, clock=SystemClock())
    own = reader.kv.read_metadata(MOUNT, "preview/_instances/pr-1/_ns/web-preview-pr-1/team-web/preview-api-token")
    assert own is not None and own.custom.get(wk.VALUE_MARKER)
    for path in ("preview/_instances/pr-2/_ns/web-preview-pr-2/team-web/preview-api-token",  # another instance
                 "preview/_instances/pr-1/_ns/web-preview-pr-2/team-web/preview-api-token",  # its id, not its ns
                 "preview/_instances/pr-1/_ns/db-preview-pr-1/team-web/preview-db-password",  # another namespace
                 "preview/_instances/pr-1/team-web/preview-api-token"):  # the original
        with pytest.raises(Forbidden):
            reader.kv.read(MOUNT, path)


def test_an_interrupted_down_resumes_and_nothing_of_the_instance_survives(env: Env) -> None:
    env.materialized("pr-1")
    crashed = env.crash("down", "preview/pr-1", "--cluster", "dev1", at="env-down.secret-removed")
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    assert len(env.leftovers("pr-1")) >= 2  # killed after the first secret: one is still there, and its prefix

    done = env.run("down", "preview/pr-1")
    assert len(done["secrets"]) == 4  # of 2 originals and 3 copies, the first copy went before the crash
    assert env.leftovers("pr-1") == []
    again = env.run("down", "preview/pr-1")  # down twice is fine, and records nothing
    assert (again["secrets"], again["objects"], again["ledgerSeq"]) == ([], [], None)

    teardowns = [e for e in LedgerReader(env.w.kv, MOUNT).entries()
                 if e.event == "env-teardown" and e.details.get("instance") == "preview/pr-1"]
    assert [e.details["secrets"] for e in teardowns] == ["5", "4"]  # the crashed run, then the one that finished
    assert teardowns[-1].seq == done["ledgerSeq"]

    assert env.materialized("pr-2")  # the other instance is untouched
    env.run("down", "preview/pr-2")
    assert env.leftovers("pr-2") == []

