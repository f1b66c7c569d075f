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


# ------------------------------------------------------------ kube-controller-manager and Flux


def test_kube_controller_manager_is_a_component_of_its_own_from_the_same_release() -> None:
    kcm, api = builds.COMPONENTS["kube-controller-manager"], builds.COMPONENTS["kube-apiserver"]
    assert (kcm.module, kcm.module_version, kcm.staging_replaces_version, kcm.ldflags) == \
        (api.module, api.module_version, api.staging_replaces_version, api.ldflags)
    # kube-apiserver's binaries are what they were, so a cache built before kcm existed stays valid.
    assert api.binaries == ("kube-apiserver", "kubectl")
    assert kcm.binaries == ("kube-controller-manager",)
    text = builds.wrapper_go_mod(kcm, builds.staging_replaces(UPSTREAM, "v0.34.4"))
    assert "tool (\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n)" in text


@pytest.mark.parametrize("name", ["flux-source-controller", "flux-kustomize-controller"])
def test_flux_wrappers_restate_the_upstream_replaces(name: str) -> None:
    comp = builds.COMPONENTS[name]
    module = comp.module
    text = builds.wrapper_go_mod(comp)
    assert f"\t{module} {comp.module_version}\n" in text
    # The upstream's ./api replace, re-pointed at the tag of the same release.
    assert f"\t{module}/api => {module}/api {comp.version}\n" in text
    assert "\tgithub.com/opencontainers/go-digest => github.com/opencontainers/go-digest v1.0.1-0.2022" in text
    assert f"tool (\n\t{module}\n)" in text
    assert ("config/crd/bases", "crds") in comp.assets
    assert builds.tidy_argv(comp) == ["go", "mod", "tidy", "-e"]


def test_flux_controllers_are_one_release() -> None:
    assert builds.FLUX_SOURCE_VERSION == builds.FLUX_KUSTOMIZE_VERSION
    kustomize = builds.wrapper_go_mod(builds.COMPONENTS["flux-kustomize-controller"])
    assert "\tsigs.k8s.io/kustomize/api => sigs.k8s.io/kustomize/api v0.21.1\n" in kustomize
    source = builds.wrapper_go_mod(builds.COMPONENTS["flux-source-controller"])
    assert "\tgithub.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.0\n" in source


def test_only_components_with_unservable_test_imports_tidy_tolerantly() -> None:
    strict = [n for n, c in builds.COMPONENTS.items() if builds.tidy_argv(c) == ["go", "mod", "tidy"]]
    assert set(strict) == set(builds.COMPONENTS) - {"flux-source-controller", "flux-kustomize-controller"}


def test_build_order_names_every_component_once() -> None:
    assert sorted(builds.BUILD_ORDER) == sorted(builds.COMPONENTS)
    order = builds.BUILD_ORDER
    assert order.index("kube-controller-manager") == order.index("kube-apiserver") + 1


def test_tool_paths_report_what_is_missing_without_raising(tmp_path: Path) -> None:
    tools = builds.tool_paths(tmp_path, {"PATH": str(tmp_path)})
    every_binary = {b for c in builds.COMPONENTS.values() for b in c.binaries}
    assert every_binary | {"bao", "postgres", "git"} == set(tools)
    assert tools["kube-controller-manager"].path is None
    assert "build kube-controller-manager" in tools["kube-controller-manager"].detail
    assert tools["git"].as_dict()["available"] is False  # not on that PATH
    assert tools["source-controller"].as_dict() == {
        "path": None, "available": False, "source": "flux-source-controller", "version": builds.FLUX_SOURCE_VERSION,
        "detail": "not built: python -m chamberlain.lab build flux-source-controller"}


def test_tool_paths_find_a_built_binary(tmp_path: Path) -> None:
    path = builds.binary(tmp_path, "kube-controller-manager")
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    found = builds.tool_paths(tmp_path, {})["kube-controller-manager"]
    assert found.path == path and found.as_dict()["available"] is True
    assert path.parent.parent.name == builds.KUBERNETES_VERSION
    assert path.parent.parent.parent.name == "kube-controller-manager"


def test_promtool_is_a_plain_go_install_stamped_with_its_release() -> None:
    comp = builds.COMPONENTS["promtool"]
    # Prometheus 3.x is published as Go module v0.3xx.y: v3.16.0 is v0.316.0
    major, minor, patch = comp.version.lstrip("v").split(".")
    assert comp.kind == "install" and comp.module_version == f"v0.{int(major) * 100 + int(minor)}.{patch}"
    assert f"-X github.com/prometheus/common/version.Version={comp.version.lstrip('v')}" in builds.go_ldflags(comp)
    assert comp.binaries == ("promtool",)


def test_helm_is_a_plain_go_install_with_its_kubernetes_version_stamped(tmp_path: Path) -> None:
    comp = builds.COMPONENTS["helm"]
    assert comp.kind == "install" and comp.binaries == ("helm",) and "helm" in builds.BUILD_ORDER
    flags = builds.go_ldflags(comp)
    assert f"-X helm.sh/helm/v3/internal/version.version={builds.HELM_VERSION}" in flags
    # `helm template` assumes this Kubernetes version; the chart needs >= 1.30 (ValidatingAdmissionPolicy).
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in flags
    assert builds.tool_paths(tmp_path, {})["helm"].detail == "not built: python -m chamberlain.lab build helm"
