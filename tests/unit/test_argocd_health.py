"""The Argo CD health check of SecretIntent (deploy/argocd/health.lua), run in a real Lua 5.1 interpreter (lupa's,
the language level of Argo CD's gopher-lua) against statuses :func:`compute_status` produces."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.controller.status import Consumers, compute_status
from tests.unit.test_controller_status import BACKOFF, T0, _facts, _run

lua51 = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "deploy" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def _obj(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent",
                            "metadata": {"name": "api-token", "generation": generation}}
    if status is not None:
        body["status"] = {k: v for k, v in status.items() if v is not None}
    return body


CASES = {
    "ready": (_facts(), 60, "Healthy", "Current"),
    "rotating": (_facts(active=_run()), 60, "Progressing", "InProgress"),
    "out-of-sync": (_facts(consumers=Consumers(0, 1)), 60, "Progressing", "ConsumersOutOfSync"),
    "not-provisioned": (_facts(exists=False, consumers=None), 60, "Progressing", "NotProvisioned"),
    "held": (_facts(held=True, held_run="run-3"), 60, "Degraded", "Held"),
    "overdue": (_facts(failures=2, last_failure=T0), 11 * 60, "Degraded", "Overdue"),
    "failing": (_facts(failures=1, last_failure=T0 + timedelta(minutes=8)), 9 * 60, "Degraded", "RotationFailed"),
    "invalid": (_facts(invalid=(("CH077", "ttl below the floor"),)), 60, "Degraded", "CH077"),
}


@pytest.mark.parametrize(("facts", "seconds", "want", "says"), CASES.values(), ids=CASES.keys())
def test_health_of_each_status(facts: Any, seconds: int, want: str, says: str) -> None:
    status, message = health(_obj(compute_status(facts, T0 + timedelta(seconds=seconds), BACKOFF)))
    assert status == want and says in message, (status, message)


def test_no_status_or_an_older_generation_is_progressing() -> None:
    assert health(_obj(None))[0] == "Progressing"
    current = compute_status(_facts(), T0, BACKOFF)  # observedGeneration 2
    assert health(_obj(current, generation=3)) == ("Progressing",
                                                   "waiting for the controller to observe generation 3")


def test_the_argocd_cm_snippet_embeds_the_same_script() -> None:
    cm = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.chamberlain.dev_SecretIntent"] == SCRIPT
