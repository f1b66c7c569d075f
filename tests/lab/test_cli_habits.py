"""``--context`` and a multi-file ``KUBECONFIG`` against the real lab apiserver (issue 12, item 7).

The session's demo lab (``tests/lab/demo_lab.py``). ``KUBECONFIG`` lists a decoy kubeconfig first and the lab's
second: the decoy's current-context (a closed port) wins, as with kubectl, unless ``--context chamberlain-lab``
picks the lab's. ``chamberlain status`` then logs in to the real OpenBao through Kubernetes auth (a TokenRequest at
the lab apiserver, under the chosen context) and reads the consumer Secrets' annotations there. Read-only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.lab.demo_lab import World

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

LAB_CONTEXT = "chamberlain-lab"  # the lab kubeconfig's only context (chamberlain.lab.servers)


def _decoy(path: Path) -> Path:
    """A kubeconfig whose current-context points at a closed port, with a context of the lab's cluster name
    that must not shadow the lab's (the lab's file declares its own, later: first file wins, per name)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "decoy",
        "clusters": [{"name": "decoy", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "decoy", "user": {"token": "decoy-token"}}],
        "contexts": [{"name": "decoy", "context": {"cluster": "decoy", "user": "decoy"}}],
    }))
    return path


def test_status_uses_the_context_of_a_merged_kubeconfig(demo_world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    w = demo_world
    decoy = _decoy(tmp_path / "decoy.yaml")
    merged = f"{decoy}:{w.lab.kubeconfig}"
    monkeypatch.setenv("KUBECONFIG", merged)
    where = ["-e", "dev", "--cluster", "dev1", "--vault-addr", w.lab.authority.address,
             "--vault-cacert", str(w.lab.pki.ca.cert)]

    chosen = run_cli("status", str(w.repo), *where, "--context", LAB_CONTEXT, "-o", "json")
    assert chosen.code == 0, chosen.err
    rows = {r["secret"]: r for r in json.loads(chosen.out)["secrets"]}
    grafana = rows["grafana-admin"]
    assert grafana["cluster"] == "dev1" and grafana["exists"] and grafana["version"] >= 1
    # Every consumer Secret was looked up at the lab apiserver (an unreachable one would say "error").
    assert grafana["consumers"] and all("error" not in c and c["exists"] is not None for c in grafana["consumers"])
    print(f"\n[cli] KUBECONFIG={merged} --context {LAB_CONTEXT}: status of {len(rows)} secrets, grafana-admin "
          f"v{grafana['version']}, consumers {grafana['consumers']}")

    # Without --context the first file's current-context (the decoy) is used, as kubectl would: the Kubernetes
    # login fails there, with a message and no traceback.
    decoyed = run_cli("status", str(w.repo), *where, "-o", "json")
    assert decoyed.code == 1 and "unreachable" in decoyed.err and "Traceback" not in decoyed.err
    assert decoyed.out == ""

    # The same files through the flag, and a context neither file has: a usage error naming it and the files.
    unknown = run_cli("status", str(w.repo), *where, "--kubeconfig", merged, "--context", "prod")
    assert unknown.code == 2
    assert "context 'prod' is not in the kubeconfig" in unknown.err and str(w.lab.kubeconfig) in unknown.err
    assert f"decoy, {LAB_CONTEXT}" in unknown.err and "decoy-token" not in unknown.err
