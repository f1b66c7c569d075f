"""Build one rendered application into the objects a GitOps controller would apply (a kustomize subset).

Pure: reads a :class:`~chamberlain.render.RenderedTree` (text in memory) and calls a ``decrypt`` callback for each
file a KSOPS generator lists. Supported, because it is exactly what :mod:`chamberlain.render` emits:
``resources`` (files, or directories with a kustomization.yaml), ``generators`` of kind ``ksops``, and ``patches``
whose target is a kind plus an equality label selector and whose patch sets metadata labels/annotations. Anything
else is refused rather than half-understood.

Ordering: Argo CD sync waves (``argocd.argoproj.io/sync-wave``), then kind (Namespaces, CRDs and identities first),
then the order kustomize lists them in.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chamberlain import safeyaml
from chamberlain import wellknown as wk
from chamberlain.errors import ChamberlainError

Manifest = dict[str, Any]
Decrypt = Callable[[str, str], Manifest]  # (path in the tree, encrypted text) -> decrypted Secret manifest

KIND_ORDER: Mapping[str, int] = {
    "CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "Secret": 3, "Platform": 4,
    "RotationPolicy": 5, "SecretIntent": 6, "SecretStore": 7, "PushSecret": 8, "ExternalSecret": 9,
}


class GitopsError(ChamberlainError):
    """The rendered output cannot be applied as asked; nothing was applied. Never carries a value."""


@dataclass
class App:
    """One application: its objects in apply order. ``secret_count``: how many came from decrypted files."""

    path: str
    objects: list[Manifest] = field(default_factory=list)
    secret_count: int = 0

    @property
    def crds(self) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == "CustomResourceDefinition"]


def wave_of(obj: Mapping[str, Any]) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(wk.ARGOCD_SYNC_WAVE, 0))
    except (TypeError, ValueError):
        return 0


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or labels.get(key.strip()) != value.strip().lstrip("="):
            return False
    return True


def _apply_patches(objects: list[Manifest], patches: list[Any], where: str) -> None:
    for patch in patches:
        if not isinstance(patch, dict) or not isinstance(patch.get("patch"), str):
            raise GitopsError(f"{where}: only inline patches with a target are supported")
        target = patch.get("target") or {}
        body = safeyaml.load(patch["patch"])
        meta = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(meta, dict) or set(body) - {"apiVersion", "kind", "metadata"}:
            raise GitopsError(f"{where}: only metadata patches are supported by the stand-in")
        for obj in objects:
            if target.get("kind") and obj.get("kind") != target["kind"]:
                continue
            labels = obj["metadata"].get("labels") or {}
            if target.get("labelSelector") and not _selector_matches(str(target["labelSelector"]), labels):
                continue
            for section in ("labels", "annotations"):
                if isinstance(meta.get(section), dict):
                    obj["metadata"].setdefault(section, {}).update({k: str(v) for k, v in meta[section].items()})


def _collect(tree: Mapping[str, str], kdir: str, decrypt: Decrypt, seen: set[str], app: App) -> list[Manifest]:
    kpath = f"{kdir}/kustomization.yaml"
    if kpath in seen:
        raise GitopsError(f"{kpath}: is included twice (a kustomization cycle or diamond)")
    seen.add(kpath)
    text = tree.get(kpath)
    if text is None:
        raise GitopsError(f"{kpath}: not in the rendered output")
    kdoc = safeyaml.load(text) or {}
    objects: list[Manifest] = []
    for res in kdoc.get("resources") or []:
        target = posixpath.normpath(posixpath.join(kdir, str(res)))
        if target in tree:
            objects.extend(d for d in safeyaml.load_all(tree[target]) if d)
        elif f"{target}/kustomization.yaml" in tree:
            objects.extend(_collect(tree, target, decrypt, seen, app))
        else:
            raise GitopsError(f"{kpath}: resource {res} is not in the rendered output")
    for gen in kdoc.get("generators") or []:
        gpath = posixpath.normpath(posixpath.join(kdir, str(gen)))
        gdoc = safeyaml.load(tree.get(gpath, "")) if gpath in tree else None
        if not isinstance(gdoc, dict) or gdoc.get("kind") != "ksops":
            raise GitopsError(f"{kpath}: generator {gen} is not a KSOPS generator in the rendered output")
        for rel in gdoc.get("files") or []:
            fpath = posixpath.normpath(posixpath.join(kdir, str(rel)))
            if fpath not in tree:
                raise GitopsError(f"{gpath}: lists {rel}, which is not in the rendered output")
            objects.append(decrypt(fpath, tree[fpath]))
            app.secret_count += 1
    _apply_patches(objects, kdoc.get("patches") or [], kpath)
    return objects


def build_app(tree: Mapping[str, str], app_dir: str, decrypt: Decrypt) -> App:
    """The objects of the application at ``app_dir`` (e.g. ``envs/dev/dev1``), in apply order."""
    app = App(app_dir)
    objects = _collect(tree, app_dir, decrypt, set(), app)
    indexed = sorted(enumerate(objects), key=lambda p: (wave_of(p[1]), KIND_ORDER.get(p[1].get("kind", ""), 50), p[0]))
    app.objects = [o for _, o in indexed]
    return app
