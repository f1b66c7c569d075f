"""``chamberlain playbook compromise`` against the real lab (the session's ``demo_world``: the demo through
handover, real OpenBao/Vault and ESO; no lab of its own).

A compromise of the ``web`` namespace: the dry run lists what the namespace exposes (the storefront's session key,
rotatable; the search endpoint, published by an operator, to reissue by hand) and changes nothing; the playbook
then rotates the session key through the durable workflow with the reason recorded on the run, in the secret's
metadata and in its ledger entry, and the new version reaches the consumer Secret through the real ESO. No value
appears in any output. The custody and root-rotation playbooks run in ``test_authority_custody.py`` (their lab).
"""

from __future__ import annotations

import json

import pytest

from chamberlain import wellknown as wk
from tests.conftest import run_cli
from tests.lab.demo_lab import World, materialize, wait_for

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402

NAME, NS, SECRET, WORKLOAD = "storefront-session", "web", "storefront-session", "storefront"
MOUNT, PATH = "secret", "dev/team-web/storefront-session"
REASON = "INC-42: session key pasted in a public channel"


@pytest.mark.vault_compat
def test_a_compromised_namespace_rotates_what_it_exposes_with_the_reason(demo_world: World) -> None:
    w = demo_world
    # A 2-second overlap in force (through Git and `policy apply`, as an operator would), so the run finishes and
    # writes its ledger entry inside the command; the standard policy's hour would leave it waiting to revoke.
    f = w.repo / "intents" / "web.yaml"
    doc = "metadata: {name: storefront-session}"
    head, _, tail = f.read_text().partition(doc)
    assert tail and "\n  rotation:" not in tail.split("\n---")[0]
    f.write_text(head + doc + tail.replace("\n  consumers:", "\n  rotation: {type: time-based, ttl: 90d, "
                                           "rotateBefore: 7d, revokeOld: true, maxOverlap: 2s, failureStrategy: "
                                           "retry}\n  consumers:", 1))
    applied = run_cli("policy", "apply", str(w.repo), "--reason", "playbook test: short overlap", *w.vault_args())
    assert applied.code == 0, applied.out + applied.err
    materialize(w, NS, SECRET, WORKLOAD, MOUNT, PATH)
    before = w.kv.read_metadata(MOUNT, PATH).current_version
    old_values = list(w.kv.read(MOUNT, PATH).data.values())

    dry = run_cli("playbook", "compromise", str(w.repo), "--namespace", NS, "--dry-run", "-o", "json",
                  *w.vault_args())
    assert dry.code == 0, dry.err
    plan = json.loads(dry.out)
    assert plan["toRotate"] == [NAME] and "search-endpoint" in plan["manual"]
    assert w.kv.read_metadata(MOUNT, PATH).current_version == before

    result = run_cli("playbook", "compromise", str(w.repo), "--namespace", NS, "--reason", REASON, "--yes",
                     "--max-wait", "15", "-o", "json", *w.vault_args())
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    [run] = data["runs"]
    assert run["secret"] == NAME and run["ok"] and run["stage"] == "revoked" and run["version"] == before + 1
    why = f"compromise of namespace {NS}: {REASON}"
    assert run["reason"] == why
    meta = w.kv.read_metadata(MOUNT, PATH)
    assert meta.current_version == before + 1 and meta.custom["last-reason"] == why
    [entry] = [e for e in LedgerReader(w.kv, MOUNT).for_secret(NAME) if e.event == "rotation"]
    assert entry.reason == why and entry.run == run["run"]
    marker = meta.custom["value-marker"]
    wait_for(lambda: (w.kube.get_secret_annotations(NS, SECRET) or {}).get(wk.ANNOTATION_VERSION_MARKER) == marker,
             60, "the consumer Secret carrying the new version")
    for value in [*old_values, *w.kv.read(MOUNT, PATH).data.values()]:
        assert value not in dry.out + dry.err + result.out + result.err
