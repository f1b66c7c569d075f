"""``/metrics``, ``/healthz`` and ``/readyz``: the pure decisions, then the real HTTP server on loopback in front
of a controller over the fakes (FakeKV, FakeKube from test_controller's World: no lab servers involved)."""

from __future__ import annotations

import gzip
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from chamberlain.controller.app import ControllerApp
from chamberlain.controller.probes import Check, ProbeServer, liveness, parse_address, probe_app, readiness
from tests.unit.test_controller import World


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


# ------------------------------------------------------------------------------------------------ decisions


def test_liveness_fails_when_the_loop_stops_ticking_or_its_thread_ends() -> None:
    assert liveness(loop_alive=True, last_beat=None, started=0, now=299, stall_seconds=300).ok  # starting
    assert not liveness(loop_alive=True, last_beat=None, started=0, now=301, stall_seconds=300).ok
    assert liveness(loop_alive=True, last_beat=1000, started=0, now=1100, stall_seconds=300).ok
    stuck = liveness(loop_alive=True, last_beat=1000, started=0, now=1400, stall_seconds=300)
    assert not stuck.ok and "no tick finished for 400 s" in stuck.detail
    assert not liveness(loop_alive=False, last_beat=1000, started=0, now=1000).ok


def test_readiness_needs_scope_authority_and_api_server_but_not_leadership() -> None:
    def ok(**kw: Any) -> dict[str, bool]:
        args = {"scope_loaded": True, "ticked": True, "authority_ok": True, "kube_reachable": True, **kw}
        return {c.name: c.ok for c in readiness(**args)}

    assert all(ok().values()) and all(ok(kube_reachable=None).values())  # None: no leader election
    assert ok(ticked=False) == {"scope": True, "authority": False, "kubernetes": False}
    assert ok(authority_ok=False) == {"scope": True, "authority": False, "kubernetes": True}
    assert ok(kube_reachable=False) == {"scope": True, "authority": True, "kubernetes": False}
    assert not ok(scope_loaded=False)["scope"]


@pytest.mark.parametrize(("text", "address"), [
    ("0.0.0.0:9102", ("0.0.0.0", 9102)), ("127.0.0.1:0", ("127.0.0.1", 0)),  # noqa: S104
    ("[::]:9102", ("::", 9102)), (":9102", ("0.0.0.0", 9102)), ("localhost:80", ("localhost", 80)),  # noqa: S104
])
def test_metrics_addresses_parse(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["9102", "host:", "host:http", "1.2.3.4:70000", "::1:9102"])
def test_bad_metrics_addresses_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|brackets"):
        parse_address(text)


# ------------------------------------------------------------------------------------- the server, on loopback


def test_the_probe_server_routes_metrics_and_answers_probes_with_json() -> None:
    registry = CollectorRegistry()
    state = {"ready": False}
    app = probe_app(lambda: [generate_latest(registry)], lambda: [Check("loop", True, "ticking")],
                    lambda: [Check("scope", state["ready"], "x")])
    server = ProbeServer(("127.0.0.1", 0), app)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert _get(f"{base}/healthz") == (200, {"status": "ok", "checks": {"loop": {"ok": True,
                                                                                      "detail": "ticking"}}})
        assert _get(f"{base}/readyz")[0] == 503
        state["ready"] = True
        assert _get(f"{base}/readyz")[0] == 200
        assert _get(f"{base}/metrics")[0] == 200
        assert _get(f"{base}/nope")[0] == 404
        request = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(resp.read()) == generate_latest(registry)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def running() -> Iterator[tuple[World, ControllerApp]]:
    world = World()
    app = ControllerApp(world.controller(identity="replica-a"), interval=0.01, metrics_address=("127.0.0.1", 0))
    app.start()
    yield world, app
    app.stop(timeout=5)


def _wait_for(url: str, status: int) -> tuple[int, Any]:
    got: tuple[int, Any] = (0, None)
    done = threading.Event()
    for _ in range(200):
        got = _get(url)
        if got[0] == status:
            return got
        done.wait(0.02)
    return got


def test_a_running_controller_serves_metrics_and_probes_on_one_address(running: tuple[World, ControllerApp]
                                                                       ) -> None:
    _world, app = running
    assert app.metrics_url is not None
    base = app.metrics_url.removesuffix("/metrics")
    status, body = _wait_for(f"{base}/readyz", 200)
    assert status == 200 and set(body["checks"]) == {"scope", "authority", "kubernetes"}
    assert _get(f"{base}/healthz")[0] == 200
    status, text = _get(app.metrics_url)
    assert status == 200
    for name in ("chamberlain_build_info{", "process_cpu_seconds_total", "python_info{",
                 "chamberlain_loop_last_tick_timestamp_seconds", "chamberlain_authority_up 1.0",
                 'chamberlain_secret_ttl_seconds{path="', "chamberlain_leader 1.0"):
        assert name in text, name


def test_a_follower_is_ready_and_an_unreachable_api_server_or_authority_is_not(
        running: tuple[World, ControllerApp]) -> None:
    world, app = running
    assert app.metrics_url is not None
    base = app.metrics_url.removesuffix("/metrics")
    assert _wait_for(f"{base}/readyz", 200)[0] == 200
    # a second replica over the same world follows, and is ready all the same (readiness is not leadership)
    follower = ControllerApp(world.controller(identity="replica-b"), interval=0.01, metrics_address=("127.0.0.1", 0))
    follower.start()
    try:
        assert follower.metrics_url is not None
        status, body = _wait_for(follower.metrics_url.replace("/metrics", "/readyz"), 200)
        assert status == 200 and not follower.controller.is_leader
    finally:
        follower.stop(timeout=5)
    world.kube.down = True
    world.clock.advance(5)  # the API server is asked at the next Lease renewal: a third of the lease duration
    status, body = _wait_for(f"{base}/readyz", 503)
    assert status == 503 and body["checks"]["kubernetes"]["ok"] is False
    assert _get(f"{base}/healthz")[0] == 200  # alive all the same: a restart would not bring the API server back
    world.kube.down = False
    world.clock.advance(1)  # a failed renewal is tried again at every tick
    assert _wait_for(f"{base}/readyz", 200)[0] == 200
    world.kv.down = True
    status, body = _wait_for(f"{base}/readyz", 503)
    assert status == 503 and body["checks"]["authority"] == {"ok": False, "detail": (
        "the authority was unreachable at the last tick")}
    world.kv.down = False


def test_a_stuck_loop_fails_liveness(running: tuple[World, ControllerApp]) -> None:
    _world, app = running
    assert app.metrics_url is not None
    base = app.metrics_url.removesuffix("/metrics")
    assert _wait_for(f"{base}/healthz", 200)[0] == 200
    app.stall_seconds = 0.0  # as if the last tick were older than the limit
    status, body = _wait_for(f"{base}/healthz", 503)
    assert status == 503 and "no tick finished" in body["checks"]["loop"]["detail"]


# ------------------------------------------------------------------------------------------ the command line


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics-address", "9102"], "--metrics-address: not HOST:PORT"),
    (["--metrics-address", "0.0.0.0:9102", "--metrics-port", "9102"], "not both"),
    (["--log-level", "loud"], "--log-level is debug, info, warning or error"),
])
def test_controller_run_refuses_bad_probe_and_log_options(args: list[str], message: str) -> None:
    from tests.conftest import CORPUS, run_cli

    result = run_cli("controller", "run", str(CORPUS / "acme"), "-e", "dev", "--cluster", "dev1", *args)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err
