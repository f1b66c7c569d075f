"""``rotate`` shows progress while it waits: the stage of each run and the seconds waited, on stderr only. Driven
here over FakeKV/FakeKube with ESO simulated (tests/unit/test_rotate_cli.py's ESOKube) and a FakeClock, so an
hour's overlap takes no time; tests/lab/test_cli_habits.py runs the real command."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from chamberlain import wellknown as wk
from chamberlain.authority.fake import FakeKV
from chamberlain.cli.progress import ReportingClock, WaitProgress
from chamberlain.clock import FakeClock
from chamberlain.kube.api import PodTemplateState
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf
from chamberlain.service import load_valid
from chamberlain.values.markers import version_marker
from tests.conftest import EXAMPLES
from tests.unit.test_rotate_cli import ESOKube

SECRET_VALUE = "canary-old-value-123"


def _rotate(progress: WaitProgress, clock: FakeClock) -> None:
    """One manual rotation of grafana-admin (maxOverlap 1h), driven to the end through ``progress``."""
    repo = load_valid(EXAMPLES / "acme")
    platform = repo.platform
    assert platform is not None
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    placed = rm.place(platform, intents["grafana-admin"], "dev", "dev1")
    kv = FakeKV()
    data = {"username": "admin", "password": SECRET_VALUE}
    kv.write(placed.vault.mount, placed.vault.path, data, cas=0)
    kv.update_custom_metadata(placed.vault.mount, placed.vault.path, {
        wk.AUTHORITY: "vault", wk.VALUE_MARKER: version_marker(placed.vault.full, data),
        wk.CREATED_AT: "2026-01-01T00:00:00Z", "policy.type": "time-based", "policy.ttl": "90d",
        "policy.rotate-before": "7d", "policy.revoke-old": "true", "policy.max-overlap": "1h"})
    kube = ESOKube(kv, (placed.vault.mount, placed.vault.path))
    kube.workloads[("Deployment", "monitoring", "grafana")] = PodTemplateState(annotations={}, generation=1)
    reporting = ReportingClock(clock, progress)
    deps, _ = rm.build_deps(kv, kube, platform, intents, placed, actor="test", clock=reporting, poll=0.1)
    run = wf.start(kv, placed.vault, secret=placed.name, run_id="run-1", trigger="manual", reason="test",
                   now=clock.now())
    run = rm.drive(run, deps, max_wait=7200, on_step=lambda r: progress.stage(r.secret, r.stage))
    assert run.stage == "revoked"


def test_without_a_terminal_each_stage_and_the_wait_print_plain_lines() -> None:
    err = io.StringIO()
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    with WaitProgress(Console(file=err, force_terminal=False), clock) as progress:
        _rotate(progress, clock)
    lines = err.getvalue().splitlines()
    assert lines[0] == "[rotate] grafana-admin: pending"
    revoke_wait = "[rotate] grafana-admin: revoke-wait (overlap before revoking the previous version)"
    assert revoke_wait in lines and "[rotate] grafana-admin: promoted (consumers syncing)" in lines
    waits = [x for x in lines if x.startswith(revoke_wait + ", waiting")]
    # An hour's wait: every 10 s for a minute, every minute up to 10, then every 5 minutes.
    assert waits[0] == revoke_wait + ", waiting 10s" and 15 < len(waits) < 30
    assert SECRET_VALUE not in err.getvalue()


def test_on_a_terminal_a_live_status_line_shows_stage_and_seconds() -> None:
    err = io.StringIO()
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    shown: list[str] = []

    class Recording(WaitProgress):
        def waited(self) -> None:
            super().waited()
            shown.append(self.text)

    with Recording(Console(file=err, force_terminal=True, width=100), clock) as progress:
        _rotate(progress, clock)
    assert ("rotate grafana-admin: revoke-wait (overlap before revoking the previous version), waiting 3600s"
            in shown)
    text = err.getvalue()
    assert "rotate grafana-admin: revoked" in text  # the line as last drawn (it refreshes on a real-time timer)
    assert "[rotate]" not in text and SECRET_VALUE not in text + str(shown)  # no plain lines on a terminal


def test_a_reporting_clock_sleeps_as_long_in_slices() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    ticks: list[float] = []

    class Count(WaitProgress):
        def waited(self) -> None:
            ticks.append(clock.monotonic())

    reporting = ReportingClock(clock, Count(Console(file=io.StringIO()), clock), slice_seconds=1.0)
    reporting.sleep(2.5)
    reporting.sleep(0)
    assert clock.sleeps == [1.0, 1.0, 0.5, 0.0] and ticks == [1.0, 2.0, 2.5, 2.5]
    assert reporting.now() == clock.now()
