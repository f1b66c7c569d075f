"""``chamberlain rotate`` and ``chamberlain status`` against the real lab, after a real Phase 0 → handover.

The session's demo lab (``tests/lab/demo_lab.py``: the demo's phases through handover on a fresh lab, a copy of
examples/acme whose ``grafana-admin`` has a 3-second maxOverlap, so the revoke step finishes inside the command).
The rendered output was applied by the demo; the SecretStore of ``monitoring`` is pointed at the lab's loopback
Vault with the lab CA (the rendered one names the in-cluster address), the real ESO materializes the consumer
Secret, and then ``chamberlain rotate`` must: bump the Vault version by exactly one, get the new marker through the
real ESO to the consumer Secret, restart the declared Deployment once, write one verified ``rotation`` ledger
entry; ``chamberlain status`` shows the consumer in sync. No value appears in any output.
"""

from __future__ import annotations

import json

import pytest

from chamberlain import wellknown as wk
from tests.conftest import run_cli
from tests.lab.demo_lab import World, materialize

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.intent.paths import PENDING_PREFIX  # noqa: E402

NAME, NS, SECRET, WORKLOAD = "grafana-admin", "monitoring", "grafana-admin", "grafana"
MOUNT, PATH = "secret", "dev/team-observability/grafana-admin"


@pytest.fixture
def world(demo_world: World) -> World:
    return demo_world


def _materialize(w: World) -> str:
    return materialize(w, NS, SECRET, WORKLOAD, MOUNT, PATH)


@pytest.mark.vault_compat
def test_manual_rotation_propagates_through_real_eso_and_status_shows_it(world: World) -> None:
    w = world
    _materialize(w)
    before = w.kv.read_metadata(MOUNT, PATH).current_version
    staging = f"{PENDING_PREFIX}/{PATH}"
    staging_before = w.kv.read_metadata(MOUNT, staging)
    old_values = list(w.kv.read(MOUNT, PATH).data.values())
    apps = kubernetes.client.AppsV1Api(w.api)
    template_before = apps.read_namespaced_deployment(WORKLOAD, NS).spec.template.metadata.annotations or {}
    assert "chamberlain.dev/restartedAt" not in template_before

    result = run_cli("rotate", NAME, str(w.repo), "--reason", "test", "-o", "json", *w.vault_args())
    assert result.code == 0, result.out + result.err
    report = json.loads(result.out)  # progress went to stderr: stdout is the JSON alone
    # Not a terminal here: one plain progress line per stage, the wait for ESO among them.
    assert f"[rotate] {NAME}: promoted (consumers syncing)" in result.err.splitlines()
    [run] = report["runs"]
    assert run["ok"] and run["stage"] == "revoked" and run["finished"]
    assert run["previousVersion"] == before and run["version"] == before + 1
    assert run["workloadsRestarted"] == [f"Deployment/{NS}/{WORKLOAD}"]
    assert isinstance(run["propagationSeconds"], float) and run["propagationSeconds"] < 60
    print(f"\n[rotate] {NAME}: v{before} -> v{before + 1}, propagated through ESO in "
          f"{run['propagationSeconds']:.2f}s, restarted {run['workloadsRestarted']}")

    meta = w.kv.read_metadata(MOUNT, PATH)
    assert meta.current_version == before + 1
    new_marker = meta.custom["value-marker"]
    assert meta.custom["last-run"] == run["run"] and meta.custom["last-result"] == f"{run['run']}:ok"
    ann = w.kube.get_secret_annotations(NS, SECRET)
    assert ann is not None and ann[wk.ANNOTATION_VERSION_MARKER] == new_marker
    template = apps.read_namespaced_deployment(WORKLOAD, NS).spec.template.metadata.annotations or {}
    assert "chamberlain.dev/restartedAt" in template and template["chamberlain.dev/restart-batch"] == run["run"]

    ledger = LedgerReader(w.kv, MOUNT)
    rotations = [e for e in ledger.for_secret(NAME) if e.event == "rotation"]
    assert len(rotations) == 1 and rotations[0].run == run["run"] and rotations[0].result == "ok"
    assert ledger.verify().ok

    # A generated value is kept in memory from the draw to the promote write: the staging path is not touched (its
    # version neither read at start nor written), so no copy of the new values is ever stored beside them.
    after = w.kv.read_metadata(MOUNT, staging)
    assert (after.current_version if after else 0) == (staging_before.current_version if staging_before else 0)

    status = run_cli("status", str(w.repo), "-o", "json", *w.vault_args())
    assert status.code == 0, status.err
    rows = {r["secret"]: r for r in json.loads(status.out)["secrets"]}
    row = rows[NAME]
    assert row["authority"] == "vault" and row["classification"] == "runtime"
    assert row["version"] == before + 1 and not row["held"]
    assert row["lastRotation"]["run"] == run["run"] and row["lastRotation"]["result"] == "ok"
    assert row["lastRotation"]["reason"] == "test" and row["nextDue"]
    assert row["consumers"] == [{"namespace": NS, "secret": SECRET, "exists": True, "inSync": True}]
    text = run_cli("status", str(w.repo), *w.vault_args())
    assert text.code == 0 and NAME in text.out

    # Canaries: neither the old nor the new values appear in any output.
    new_values = list(w.kv.read(MOUNT, PATH).data.values())
    outputs = result.out + result.err + status.out + status.err + text.out + text.err
    for value in old_values + new_values:
        if len(value) >= 8:
            assert value not in outputs


def test_policy_drift_is_planned_then_applied_as_one_audited_policy_change(world: World) -> None:
    """A Git change of a policy reaches Vault only through `policy apply`: plan shows the field, apply writes it and
    one policy-change ledger entry, and a second plan (and `chamberlain plan`'s drift part) is clean."""
    w = world
    args = w.vault_args()
    first = run_cli("policy", "plan", str(w.repo), "-o", "json", *args)
    assert first.code == 0, first.out + first.err
    assert json.loads(first.out)["drift"] == []
    f = w.repo / "intents" / "observability.yaml"
    text = f.read_text()
    assert "ttl: 30d" in text
    f.write_text(text.replace("ttl: 30d", "ttl: 20d", 1))  # log-shipper-token's inline policy

    plan = run_cli("policy", "plan", str(w.repo), "-o", "json", *args)
    assert plan.code == 1, plan.out + plan.err
    [drift] = json.loads(plan.out)["drift"]
    assert drift["secret"] == "log-shipper-token"
    assert {"field": "ttl", "git": "20d", "inForce": "30d"} in drift["fields"]

    applied = run_cli("policy", "apply", str(w.repo), "--reason", "ttl 30d -> 20d", "-o", "json", *args)
    assert applied.code == 0 and json.loads(applied.out)["applied"] == 1, applied.out + applied.err
    meta = w.kv.read_metadata(MOUNT, "dev/team-observability/log-shipper-token")
    assert meta.custom["policy.ttl"] == "20d"
    changes = [e for e in LedgerReader(w.kv, MOUNT).for_secret("log-shipper-token") if e.event == "policy-change"]
    assert len(changes) == 1 and changes[0].reason == "ttl 30d -> 20d" and changes[0].details["ttl"] == "30d -> 20d"
    assert LedgerReader(w.kv, MOUNT).verify().ok

    again = run_cli("policy", "apply", str(w.repo), "-o", "json", *args)
    assert again.code == 0 and json.loads(again.out)["applied"] == 0
    assert run_cli("policy", "plan", str(w.repo), *args).code == 0
