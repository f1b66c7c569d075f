"""``chamberlain controller run --from-cluster`` against the real kube-apiserver and OpenBao (Vault with
``CHAMBERLAIN_LAB_TEST_AUTHORITY=vault``): the controller reads no repository; it watches the Platform,
RotationPolicies and SecretIntents Flux applied to ``chamberlain-system``.

One test on the session's ``demo_world`` (the demo through handover; no lab of its own): the controller starts
from the cluster with every demo intent accepted; a NEW generated SecretIntent applied while it runs is provisioned
by the controller (a value in OpenBao, a ``value-created`` ledger entry, as the orchestrator) and then rotates on
a signed webhook; a change of that intent's rotation policy comes into force without a restart (the secret's
``policy.*`` metadata and a ``policy-change`` entry); an INVALID intent is rejected with its rule id and every
other intent keeps rotating. The controller is a real process (JSON logs), stopped with SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.intent.paths import VaultPath

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.rotation import run as runs  # noqa: E402
from chamberlain.triggers.webhook import WebhookKey, sign  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402
from tests.lab.controller_helpers import ControllerProc, post, wait_for  # noqa: E402
from tests.lab.demo_lab import World  # noqa: E402

NS, GROUP, VERSION, PLURAL = "chamberlain-system", "chamberlain.dev", "v1alpha1", "secretintents"
NEW, OTHER, INVALID = "watch-new-token", "watch-other-token", "watch-invalid"
NEW_PATH = VaultPath("secret", f"dev/team-observability/{NEW}")
OTHER_PATH = VaultPath("secret", f"dev/team-observability/{OTHER}")
EVENT_BASED = {"type": "event-based", "revokeOld": True, "maxOverlap": "1s", "failureStrategy": "retry"}


def intent_object(name: str, rotation: dict[str, Any]) -> dict[str, Any]:
    """A generated secret with no consumer (nothing to propagate to), as GitOps would apply it."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SecretIntent",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"owner": "team-observability", "purpose": "A token the lab test adds in the cluster",
                     "classification": "runtime", "environments": ["dev"],
                     "source": {"generate": {"token": {"type": "token", "bytes": 24}}}, "rotation": rotation}}


@pytest.fixture
def custom(demo_world: World) -> Iterator[Any]:
    api = kubernetes.client.CustomObjectsApi(demo_world.api)
    yield api
    for name in (NEW, OTHER, INVALID):  # the session's other tests see the demo's intents only
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise


def start_controller(w: World, base: Path, key_file: Path) -> ControllerProc:
    log = base / "controller.log"
    argv = [sys.executable, "-m", "chamberlain.cli.main", "controller", "run", "--from-cluster",
            "-e", "dev", "--cluster", "dev1", "--namespace", NS, *w.vault_args()[4:],
            "--interval", "0.5", "--evaluate-every", "1", "--lease-seconds", "4", "--identity", "from-cluster",
            "--webhook-port", "0", "--webhook-key-file", str(key_file), "--metrics-port", "0",
            "--propagation-timeout", "30"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT, start_new_session=True)
    c = ControllerProc("from-cluster", proc, log)
    c.wait_started()
    c.wait_leader()
    return c


def webhook(c: ControllerProc, key: bytes, secret: str, reason: str) -> tuple[int, dict[str, Any]]:
    import json

    body = json.dumps({"secret": secret, "reason": reason}).encode()
    return post(c.webhook_url, body, sign(body, WebhookKey(key), datetime.now(UTC)))


def finished_run(w: World, path: VaultPath, not_run: str | None = None) -> runs.RotationRun:
    def done() -> runs.RotationRun | None:
        r = runs.load(w.kv, path)
        ok = r is not None and r.finished and r.ledger_seq is not None and r.run_id != not_run
        return r if ok else None

    got: runs.RotationRun = wait_for(done, 60, f"a finished, ledgered run of {path.full}")
    return got


def test_the_controller_follows_the_cluster_provisions_new_intents_and_rejects_invalid_ones(
        demo_world: World, custom: Any, tmp_path: Path) -> None:
    w = demo_world
    key = os.urandom(32).hex().encode()
    key_file = tmp_path / "webhook.key"
    key_file.write_bytes(key + b"\n")
    key_file.chmod(0o600)
    c = start_controller(w, tmp_path, key_file)
    try:
        started = c.events("controller started")[0]
        assert started["source"] == "cluster" and started["rejected"] == [] and started["secrets"] >= 5
        ledger = LedgerReader(w.kv, "secret")
        assert not c.events("policy brought into force"), "the demo's intents are in force as Flux applied them"

        # NEW generated intents: provisioned by the controller itself, then they rotate.
        for name in (NEW, OTHER):
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, intent_object(name, EVENT_BASED))

        def recorded(path: VaultPath) -> Any:
            got = w.kv.read_metadata(path.mount, path.path)
            return got if got is not None and wk.LEDGER_SEQ in got.custom else None

        meta = wait_for(lambda: recorded(NEW_PATH), 30, "the new secret in OpenBao, recorded and ledgered")
        assert wait_for(lambda: recorded(OTHER_PATH), 30, "the other new secret provisioned")
        assert meta.current_version == 1 and meta.custom[wk.CREATED_BY] == "chamberlain"
        created = wait_for(lambda: [e for e in ledger.for_secret(NEW) if e.event == "value-created"], 15,
                           "the value-created ledger entry")
        assert created[0].actor == "controller:from-cluster" and created[0].result == "ok"
        assert c.events("initial value provisioned", secret=NEW, result="created")
        status, answer = webhook(c, key, NEW, "first rotation of a secret the cluster added")
        assert status == 200 and answer["outcome"] == "queued", (status, answer)
        first = finished_run(w, NEW_PATH)
        assert first.succeeded and first.current_version == 2

        # The intent changes in the cluster: the named policy comes into force without a restart.
        # (a merge patch: the inline fields go, or the CRD's oneOf refuses a rotation that is both)
        patch = {"spec": {"rotation": {"policy": "standard", **{k: None for k in EVENT_BASED}}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, NEW, patch)

        def in_force() -> bool:
            got = w.kv.read_metadata(NEW_PATH.mount, NEW_PATH.path)
            return got is not None and got.custom.get(wk.POLICY_NAME) == "standard"

        wait_for(in_force, 30, "the changed policy in force")
        changes = [e for e in ledger.for_secret(NEW) if e.event == "policy-change"]
        assert len(changes) == 1 and changes[0].actor == "controller:from-cluster"

        # An INVALID intent: rejected with its rule id; the others keep being served.
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                               intent_object(INVALID, {"policy": "no-such-policy"}))
        rejected = wait_for(lambda: c.events("intent rejected", secret=INVALID), 30, "the invalid intent rejected")
        assert rejected[-1]["rules"] == ["CH011"]
        assert wait_for(lambda: [e for e in c.events("scope updated") if INVALID in e["rejected"]], 15, "scope")
        assert w.kv.read_metadata("secret", f"dev/team-observability/{INVALID}") is None  # never provisioned
        status, answer = webhook(c, key, OTHER, "still served")
        assert status == 200, (status, answer)
        other = finished_run(w, OTHER_PATH)
        assert other.succeeded and other.current_version == 2
        assert webhook(c, key, INVALID, "rejected")[0] == 404

        # kubectl sees why: the rejected intent's status is Degraded with the rule id (the others keep serving).
        def degraded() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, INVALID)
            conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            d = conditions.get("Degraded")
            return d if d is not None and d["status"] == "True" else None

        cond = wait_for(degraded, 30, "the invalid intent Degraded")
        assert cond["reason"] == "Invalid" and "CH011" in cond["message"], cond
        assert ledger.verify().ok
        assert c.alive
    finally:
        code = c.terminate()
    assert code == 0, c.text()[-3000:]
    values = [v for p in (NEW_PATH, OTHER_PATH) for n in (1, 2) if (got := w.kv.read(p.mount, p.path, n)) is not None
              for v in got.data.values()]
    assert values and not any(v in c.text() for v in values), "a value in the controller's log"


def test_the_watch_against_the_api_server_delivers_changes_and_410_for_a_compacted_version(
        demo_world: World, custom: Any) -> None:
    """KubeClient's list-then-watch on the real kube-apiserver: the list's resourceVersion, an ADDED and a DELETED
    event after it, and a 410 Gone (KubeGone) for a resourceVersion older than the API server keeps."""
    from chamberlain.controller.source import RESOURCES
    from chamberlain.kube.api import KubeGone

    kube, si = demo_world.kube, RESOURCES["SecretIntent"]
    first = kube.list_custom_objects_versioned(si, NS, limit=2)
    assert first.resource_version and len(first.items) == 2 and first.next_page
    rest = kube.list_custom_objects_versioned(si, NS, limit=500, page=first.next_page)
    assert not rest.next_page and len(first.items) + len(rest.items) >= 5
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, intent_object(INVALID, EVENT_BASED))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, INVALID)
    seen = [(e.type, e.name) for e in kube.watch_custom_objects(si, NS, rest.resource_version, 2)
            if e.type != "BOOKMARK"]
    assert seen == [("ADDED", INVALID), ("DELETED", INVALID)]
    with pytest.raises(KubeGone):
        list(kube.watch_custom_objects(si, NS, "1", 2))
