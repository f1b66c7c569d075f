"""The drills' shared proof: version markers before vs after, and ESO's "synced since" reading. Pure, except the
snapshot over an in-memory stand-in for the cluster (a fake, said so)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.drill import report
from chamberlain.kube.api import CustomResource


@pytest.mark.parametrize(("after", "matched", "changed", "missing"), [
    pytest.param({("a", "s"): "m1", ("b", "t"): "m2"}, 2, (), (), id="all-same"),
    pytest.param({("a", "s"): "m1", ("b", "t"): "m9"}, 1, ("b/t",), (), id="regenerated"),
    pytest.param({("a", "s"): "m1"}, 1, (), ("b/t",), id="gone"),
    pytest.param({("a", "s"): "m1", ("b", "t"): ""}, 1, (), ("b/t",), id="unmarked-after"),
])
def test_compare_markers(after: dict[tuple[str, str], str], matched: int, changed: tuple[str, ...],
                         missing: tuple[str, ...]) -> None:
    c = report.compare_markers({("a", "s"): "m1", ("b", "t"): "m2"}, after)
    assert (c.secrets, c.matched, c.changed, c.missing) == (2, matched, changed, missing)
    assert c.ok is (matched == 2)


def test_nothing_to_compare_is_not_ok() -> None:
    assert not report.compare_markers({}, {}).ok
    assert not report.compare_markers({("a", "s"): ""}, {("a", "s"): ""}).ok


def test_report_json_shape() -> None:
    r = report.DrillReport("authority-loss", report.compare_markers({("a", "s"): "m"}, {("a", "s"): "m"}), 12.345,
                           ledger_verified=True, regenerated=0, steps=[report.Step("backup", 1.0, {"bytes": 3})])
    d = r.as_dict()
    assert {k: d[k] for k in ("ok", "secrets", "matched", "rtoSeconds")} == {
        "ok": True, "secrets": 1, "matched": 1, "rtoSeconds": 12.35}
    assert d["steps"] == [{"step": "backup", "seconds": 1.0, "bytes": 3}]
    assert not report.DrillReport("x", r.comparison, 1.0, ledger_verified=False).ok
    assert not report.DrillReport("x", r.comparison, 1.0, regenerated=1).ok


def _es(refreshed: str | None, ready: str = "True") -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready}]}
    if refreshed:
        status["refreshTime"] = refreshed
    return {"metadata": {"namespace": "n", "name": "es", "labels": {wk.MANAGED_BY: wk.MANAGER}},
            "spec": {"target": {"name": "sec"}}, "status": status}


@pytest.mark.parametrize(("es", "expected"), [
    pytest.param(_es("2026-01-01T00:00:10Z"), True, id="after"),
    pytest.param(_es("2026-01-01T00:00:05Z"), True, id="same-second"),
    pytest.param(_es("2026-01-01T00:00:04Z"), False, id="before"),
    pytest.param(_es("2026-01-01T00:00:10Z", "False"), False, id="not-ready"),
    pytest.param(_es(None), False, id="never"),
])
def test_synced_since(es: dict[str, Any], expected: bool) -> None:
    assert report.synced_since(es, datetime(2026, 1, 1, 0, 0, 5, 500000, tzinfo=UTC)) is expected


class FakeCluster:
    """In-memory stand-in for the Kubernetes API (a fake): ExternalSecrets and consumer Secret annotations."""

    def __init__(self) -> None:
        self.es = [_es("2026-01-01T00:00:10Z"),
                   {"metadata": {"namespace": "x", "name": "other", "labels": {wk.MANAGED_BY: "helm"}}}]
        self.annotations = {("n", "sec"): {wk.ANNOTATION_VERSION_MARKER: "mk"}}
        self.kicked: list[str] = []

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]:
        return list(self.es)

    def get_secret_annotations(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.annotations.get((namespace, name))

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.kicked.append(f"{namespace}/{name}")


def test_snapshot_reads_only_chamberlain_consumers() -> None:
    kube = FakeCluster()
    refs = report.consumer_secrets(kube)
    assert refs == [("n", "sec")]
    assert report.snapshot_markers(kube, refs) == {("n", "sec"): "mk"}
    assert report.resync(kube, "s") == 1 and kube.kicked == ["n/es"]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert report.wait_resynced(kube, since, 5, stamp="t", sleep=lambda _s: None) >= 0
