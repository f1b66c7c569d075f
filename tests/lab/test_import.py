"""``chamberlain import`` against the real lab (the session's demo lab: Vault, kube-apiserver, the real ESO), after
the demo's real handover of ``smtp-relay``: an upstream-issued value becomes version n+1 in Vault with chamberlain's
metadata, the ExternalSecret is force-refreshed and ESO rewrites the consumer Secret, the declared Deployment gets
the restart annotation, the ledger gets one ``rotation`` entry with trigger ``import``. A canary value is fed in
through stdin and must reach Vault's data and the consumer Secret — and no output, record, entry or annotation."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chamberlain import wellknown as wk
from tests.conftest import REPO_ROOT
from tests.lab.demo_lab import World, materialize, wait_for

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.intent.paths import PENDING_PREFIX, RUNS_PREFIX  # noqa: E402

NAME, NS, SECRET, WORKLOAD = "smtp-relay", "notifications", "smtp-relay", "notifier"
MOUNT, PATH = "secret", "dev/team-platform/smtp-relay"
CANARY = "canary-UpstreamIssued-Qx7Lm2Vz9Rk4"


def _import(w: World, stdin: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """The real CLI in a child process, the value on stdin (never on the command line)."""
    driver = "from chamberlain.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", driver, "import", NAME, str(w.repo), *w.vault_args(),
                           "--from-file", "-", "-o", "json", *extra], input=stdin, capture_output=True,
                          timeout=180, cwd=REPO_ROOT, check=False)


def test_an_upstream_issued_value_reaches_vault_eso_and_the_workload(demo_world: World) -> None:
    w = demo_world
    materialize(w, NS, SECRET, WORKLOAD, MOUNT, PATH)
    before = w.kv.read_metadata(MOUNT, PATH)
    assert before.custom["authority"] == "vault" and before.custom["origin"] == "bootstrap"
    current = dict(w.kv.read(MOUNT, PATH).data)
    new = {**current, "password": CANARY}

    proc = _import(w, json.dumps(new).encode(), "--reason", "provider rotated the SMTP password")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, out + err
    assert CANARY not in out + err
    row = json.loads(out)
    assert row["result"] == "imported" and row["trigger"] == "import" and row["stage"] == "done"
    assert (row["previousVersion"], row["version"]) == (before.current_version, before.current_version + 1)
    assert row["workloadsRestarted"] == [f"Deployment/{NS}/{WORKLOAD}"]
    print(f"\n[import] {NAME}: v{row['previousVersion']} -> v{row['version']}, propagated through ESO in "
          f"{row['propagationSeconds']:.2f}s, restarted {row['workloadsRestarted']}")

    meta = w.kv.read_metadata(MOUNT, PATH)
    assert meta.current_version == before.current_version + 1
    assert meta.custom["last-run"] == row["run"] and meta.custom["last-result"] == f"{row['run']}:ok"
    assert meta.custom["last-reason"] == "provider rotated the SMTP password"
    assert dict(w.kv.read(MOUNT, PATH).data) == new

    core = kubernetes.client.CoreV1Api(w.api)
    consumer = core.read_namespaced_secret(SECRET, NS)
    assert consumer.metadata.annotations[wk.ANNOTATION_VERSION_MARKER] == meta.custom["value-marker"]
    assert base64.b64decode(consumer.data["SMTP_PASSWORD"]).decode() == CANARY  # ESO wrote the new value
    es = kubernetes.client.CustomObjectsApi(w.api).get_namespaced_custom_object(
        "external-secrets.io", "v1", NS, "externalsecrets", SECRET)
    assert es["metadata"]["annotations"][wk.ESO_FORCE_SYNC].startswith(row["run"])
    apps = kubernetes.client.AppsV1Api(w.api)
    template = apps.read_namespaced_deployment(WORKLOAD, NS).spec.template.metadata.annotations or {}
    assert template[wk.ANNOTATION_RESTART_BATCH] == row["run"] and wk.ANNOTATION_RESTARTED_AT in template

    ledger = LedgerReader(w.kv, MOUNT)
    [entry] = [e for e in ledger.for_secret(NAME) if e.event == "rotation"]
    assert (entry.run, entry.result, entry.details["trigger"]) == (row["run"], "ok", "import")
    assert entry.actor.startswith("cli:") and entry.reason == "provider rotated the SMTP password"
    assert ledger.verify().ok

    # the canary is only in the secret's data: not in the ledger, metadata, run record, events, annotations
    texts = [e.model_dump_json() for e in ledger.entries()] + [json.dumps(meta.custom)]
    texts.append(json.dumps(dict(w.kv.read(MOUNT, f"{RUNS_PREFIX}/{PATH}").data)))
    texts.append(str(core.list_namespaced_event(NS).to_dict()))
    texts.append(json.dumps(consumer.metadata.annotations) + json.dumps(template) + json.dumps(es))
    for text in texts:
        assert CANARY not in text
    staged = w.kv.read_metadata(MOUNT, f"{PENDING_PREFIX}/{PATH}")
    assert staged.versions[staged.current_version] is True, "the staged copy is destroyed"

    again = _import(w, json.dumps(new).encode())  # the same value again: nothing to do
    assert again.returncode == 0 and json.loads(again.stdout)["result"] == "unchanged"
    assert w.kv.read_metadata(MOUNT, PATH).current_version == meta.current_version


def test_refusals_against_the_real_servers_change_nothing(demo_world: World, tmp_path: Path) -> None:
    w = demo_world
    version = w.kv.read_metadata(MOUNT, PATH).current_version
    bad = _import(w, b"password: " + CANARY.encode() + b"\n")  # the username is missing
    assert bad.returncode == 2 and b"missing username" in bad.stderr and CANARY.encode() not in bad.stderr
    generated = subprocess.run(
        [sys.executable, "-c", "from chamberlain.cli.main import main; main()", "import", "grafana-admin",
         str(w.repo), *w.vault_args(), "--from-file", "-"], input=b"password: x\n", capture_output=True,
        timeout=60, cwd=REPO_ROOT, check=False)
    assert generated.returncode == 2 and b"not bootstrap" in generated.stderr
    assert w.kv.read_metadata(MOUNT, PATH).current_version == version
    wait_for(lambda: True, 1, "nothing")
