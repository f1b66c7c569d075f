"""Which kubeconfig a command uses: one file or a list of them (``KUBECONFIG=a:b``) and a context.

Belongs here: :class:`KubeconfigSource` (what the user named) and what is read from it through the ``kubernetes``
client's own loader (``KubeConfigMerger``): an API client for the chosen context, and the API server URL and CA a
Vault Kubernetes auth mount needs. Files merge as kubectl merges them: the first file that sets a cluster, user,
context or the current context wins; a listed file that does not exist is skipped.

An unknown context is a usage error that names the context, the files and the contexts they hold. Errors never
quote a file's content (a kubeconfig holds tokens and keys). The ``kubernetes`` package is imported inside the
functions, so naming a kubeconfig costs nothing until a command talks to a cluster.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chamberlain.errors import UsageError


@dataclass(frozen=True)
class KubeconfigSource:
    """Kubeconfig files, merged in order (empty: the client's default, ``~/.kube/config``), and the context to
    use (None: the merged current-context). The entry point expands ``~`` (it owns the environment)."""

    files: tuple[Path, ...] = ()
    context: str | None = None

    @classmethod
    def of(cls, files: Path | str | Sequence[Path] | None, context: str | None = None) -> KubeconfigSource | None:
        """A source from a path, a ``KUBECONFIG``-style list (``a:b``) or paths; None when neither files nor a
        context are named (then a client in a pod uses its in-cluster configuration)."""
        if isinstance(files, str):
            paths = split_kubeconfig(files)
        elif isinstance(files, Path):
            paths = (files,)
        else:
            paths = tuple(files or ())
        if not paths and not context:
            return None
        return cls(paths, context or None)

    def describe(self) -> str:
        """The files, as a message names them."""
        return os.pathsep.join(str(p) for p in self.files) if self.files else _default_location()


def split_kubeconfig(value: str) -> tuple[Path, ...]:
    """``KUBECONFIG``'s list syntax (``os.pathsep``-separated; empty entries ignored, as kubectl does)."""
    return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())


def _default_location() -> str:
    """Where the client looks without a named file (its own default, ``~/.kube/config``)."""
    from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION

    return str(KUBE_CONFIG_DEFAULT_LOCATION)


def _existing(source: KubeconfigSource) -> str:
    """The files to merge, joined as the client's loader takes them: the named ones that exist (a missing one
    in a list is skipped, as kubectl does), or the client's default."""
    if not source.files:
        return _default_location()
    existing = [p for p in source.files if p.is_file()]
    if not existing:
        if len(source.files) == 1:
            raise UsageError(f"{source.files[0]}: no such kubeconfig")
        raise UsageError(f"no kubeconfig: none of {source.describe()} exists")
    return os.pathsep.join(str(p) for p in existing)


@dataclass(frozen=True)
class _Merged:
    config: Any  # the client's merged ConfigNode
    context: str  # the context chosen (asked for, or the first current-context)
    source: KubeconfigSource


def _why(exc: Exception) -> str:
    """Why a kubeconfig could not be read, in words that quote nothing of it (it holds credentials)."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return exc.strerror or "cannot be opened"
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        return f"not valid YAML at line {mark.line + 1}" if mark is not None else "not valid YAML"
    return "not a kubeconfig: clusters, users and contexts must be lists of named entries"


def _merge(source: KubeconfigSource) -> _Merged:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigMerger

    files = _existing(source)
    try:
        merger = KubeConfigMerger(files)  # type: ignore[no-untyped-call]
        config = merger.config
        if config is None:  # only the default location can be missing here
            raise UsageError(f"no kubeconfig at {source.describe()}: pass --kubeconfig or set KUBECONFIG")
        # The client's merger lets the last file's current-context win; kubectl (and we) take the first one set.
        current = next((c.get("current-context") for p in merger.paths
                        if isinstance(c := merger.config_files.get(p), dict) and c.get("current-context")), None)
        names = [str(c["name"]) for c in config.value.get("contexts") or []]
    # Not a kubeconfig (a list, a context without a name, bad YAML): the type only, since a YAML error's text
    # may quote a line of the file.
    except (ConfigException, OSError, ValueError, yaml.YAMLError, AttributeError, TypeError, KeyError) as exc:
        raise UsageError(f"{source.describe()}: cannot read the kubeconfig ({_why(exc)})") from None
    wanted = source.context or current
    if not wanted:
        raise UsageError(f"{source.describe()}: no current-context; pass --context "
                         f"(contexts there: {', '.join(names) or 'none'})")
    if wanted not in names:
        raise UsageError(f"context {wanted!r} is not in the kubeconfig {source.describe()} "
                         f"(contexts there: {', '.join(names) or 'none'})")
    config.value["current-context"] = wanted
    return _Merged(config, wanted, source)


def contexts(source: KubeconfigSource) -> tuple[list[str], str]:
    """The contexts of the merged files and the one a client would use."""
    merged = _merge(source)
    return [str(c["name"]) for c in merged.config.value.get("contexts") or []], merged.context


def api_client(source: KubeconfigSource) -> Any:
    """A ``kubernetes.client.ApiClient`` for the source's context, configured by the client's own loader."""
    import kubernetes

    from chamberlain.kube.bounded import BoundedApiClient

    merged = _merge(source)
    files = _existing(source)
    configuration = kubernetes.client.Configuration()
    try:  # what kubernetes.config.new_client_from_config does, with a client whose requests time out
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files, context=merged.context, client_configuration=configuration)
        return BoundedApiClient(configuration=configuration)
    except kubernetes.config.ConfigException as exc:
        raise UsageError(f"context {merged.context!r} of {source.describe()}: the kubeconfig is not usable "
                         f"({_reason(exc)})") from None


def cluster_endpoint(source: KubeconfigSource) -> tuple[str, str]:
    """(API server URL, CA PEM) of the source's context: what Vault's Kubernetes auth needs to review tokens of
    that cluster. Reads no credentials and runs no exec plugin."""
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import FileOrData

    merged = _merge(source)
    where = f"context {merged.context!r} of {source.describe()}"
    try:
        context = merged.config["contexts"].get_with_name(merged.context)["context"]
        node = merged.config["clusters"].get_with_name(context["cluster"])
        cluster = node["cluster"]
        server = cluster.safe_get("server")
        base = os.path.dirname(os.path.abspath(node.path)) if node.path else ""
        data = FileOrData(  # type: ignore[no-untyped-call]
            cluster, "certificate-authority", file_base_path=base).as_data()
    except (ConfigException, OSError) as exc:
        raise UsageError(f"{where}: {_reason(exc)}") from None
    if not server:
        raise UsageError(f"{where} names no cluster with a server")
    if not data:
        raise UsageError(f"{where}: its cluster has no CA; pass --kubernetes-ca-file")
    try:
        ca = base64.b64decode("".join(str(data).split()), validate=True).decode()
    except ValueError:  # not base64, or not text
        ca = ""
    if "-----BEGIN" not in ca:
        raise UsageError(f"{where}: its cluster's CA is not a PEM (certificate-authority-data is base64 of one)")
    return str(server).rstrip("/"), ca


def _reason(exc: Exception) -> str:
    """The loader's messages name keys and files, never values; still, keep only the first line, bounded."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError):
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return text[:200]


__all__ = ["KubeconfigSource", "api_client", "cluster_endpoint", "contexts",
           "split_kubeconfig"]
