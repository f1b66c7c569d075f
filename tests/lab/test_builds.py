"""Unit tests of the pure parts of :mod:`chamberlain.lab.builds` (no Go, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.lab import builds
from chamberlain.settings import Settings

UPSTREAM = """\
module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // comment
\tgithub.com/x/y v1.0.0 => github.com/z/y v1.0.1
)

replace github.com/a/b => ../b
"""


def test_local_replaces_finds_directory_replaces_only() -> None:
    assert builds.local_replaces(UPSTREAM) == ["k8s.io/api", "k8s.io/client-go", "github.com/a/b"]


def test_staging_replaces_pin_k8s_modules_to_tag() -> None:
    lines = [r.line() for r in builds.staging_replaces(UPSTREAM, "v0.34.4")]
    assert lines == ["k8s.io/api => k8s.io/api v0.34.4", "k8s.io/client-go => k8s.io/client-go v0.34.4"]


def test_wrapper_go_mod_for_kubernetes() -> None:
    comp = builds.COMPONENTS["kube-apiserver"]
    text = builds.wrapper_go_mod(comp, builds.staging_replaces(UPSTREAM, "v0.34.4"))
    assert f"\tk8s.io/kubernetes {builds.KUBERNETES_VERSION}\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.34.4\n" in text
    assert "tool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kubectl\n)" in text
    assert text.startswith("// Generated")


def test_versions_are_stamped_into_kubernetes_binaries() -> None:
    flags = builds.go_ldflags(builds.COMPONENTS["kube-apiserver"])
    assert f"-X k8s.io/component-base/version.gitVersion={builds.KUBERNETES_VERSION}" in flags
    assert "-X k8s.io/component-base/version.gitMinor=34" in flags
    assert flags.startswith("-s -w")


def test_cache_layout_is_keyed_by_version(tmp_path: Path) -> None:
    cache = Settings.from_environ({"CHAMBERLAIN_CACHE_DIR": str(tmp_path)}, tmp_path / "home").lab_cache
    assert builds.binary(cache, "etcd") == tmp_path / "lab" / "etcd" / builds.ETCD_VERSION / "bin" / "etcd"
    assert builds.binary(cache, "kubectl").parent.parent.name == builds.KUBERNETES_VERSION
    assert not builds.is_built(cache, builds.COMPONENTS["etcd"])


def test_go_starts_from_the_callers_environment_with_the_build_settings_on_top() -> None:
    base = {"PATH": "/opt/go/bin", "GOFLAGS": "-buildvcs=false -mod=vendor", "GOMAXPROCS": "8"}
    assert builds._go_env(base, gobin=Path("/c/bin")) == {
        "PATH": "/opt/go/bin",
        "GOFLAGS": "-buildvcs=false -mod=mod",
        "GOMAXPROCS": "8",
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
        "GOBIN": "/c/bin",
    }
    assert base["GOFLAGS"] == "-buildvcs=false -mod=vendor"  # the caller's mapping is left alone


def test_unknown_component_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        builds.build_missing(tmp_path, ["no-such-server"], env={}, progress=lambda _m: None)
