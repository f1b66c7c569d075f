"""build_missing: two builds at a time, the longest started first, results in build order (no Go run here)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chamberlain.lab import builds


def test_the_longest_build_starts_first_and_two_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    running, most = [0], [0]
    lock = threading.Lock()
    gate = threading.Barrier(2, timeout=5)

    def fake_build(cache: Path, name: str, **_: object) -> Path:
        with lock:
            started.append(name)
            running[0] += 1
            most[0] = max(most[0], running[0])
        if len(started) <= 2:
            gate.wait()  # the first two are in flight together
        with lock:
            running[0] -= 1
        return cache / name

    monkeypatch.setattr(builds, "build", fake_build)
    monkeypatch.setattr(builds, "is_built", lambda cache, comp: False)
    names = ["age", "sops", "vault", "etcd"]
    got = builds.build_missing(tmp_path, [*names, "external-secrets"], env={}, progress=lambda _m: None)
    assert started[0] == "vault" and most[0] == 2
    assert got == [tmp_path / n for n in builds.BUILD_ORDER if n in {*names, "external-secrets"}]


def test_a_failed_build_fails_the_whole_and_starts_nothing_new(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []

    def fake_build(cache: Path, name: str, **_: object) -> Path:
        started.append(name)
        raise builds.BuildError(f"{name} failed")

    monkeypatch.setattr(builds, "build", fake_build)
    monkeypatch.setattr(builds, "is_built", lambda cache, comp: False)
    with pytest.raises(builds.BuildError):
        builds.build_missing(tmp_path, list(builds.BUILD_ORDER), env={}, progress=lambda _m: None, jobs=1)
    assert len(started) == 1


def test_on_demand_components_stay_out_of_the_lab_build(tmp_path: Path) -> None:
    """gitleaks is built only by the scan benchmark that asks for it: never by build_missing or lab up."""
    comp = builds.ON_DEMAND["gitleaks"]
    assert comp.kind == "install" and comp.binaries == ("gitleaks",)
    assert "gitleaks" not in builds.COMPONENTS and "gitleaks" not in builds.BUILD_ORDER
    with pytest.raises(KeyError, match="unknown lab component"):
        builds.build_missing(tmp_path, ["gitleaks"], env={}, progress=lambda _m: None)
    assert not builds.is_built(tmp_path, comp)


def test_kubeconform_is_on_demand_too(tmp_path: Path) -> None:
    """kubeconform is built only by bench_validate_render.py --build-kubeconform, never by the lab."""
    comp = builds.ON_DEMAND["kubeconform"]
    assert comp.kind == "install" and comp.binaries == ("kubeconform",)
    assert comp.module == "github.com/yannh/kubeconform" and comp.module_version == comp.version
    assert "kubeconform" not in builds.COMPONENTS and "kubeconform" not in builds.BUILD_ORDER
    assert not builds.is_built(tmp_path, comp)
