"""Does stakater Reloader already roll this workload when this Secret changes? Pure decisions over annotations.

Reloader watches Secrets and rolls the workloads that ask for it. A restart target chamberlain also rolls would
restart twice per rotation (the failure debounced restarts exist to avoid), and two controllers would own one
decision. So chamberlain never rolls a workload Reloader rolls for the rotated Secret: propagation leaves it to
Reloader and reports it, and ``chamberlain plan`` reports every Reloader annotation on a restart target as a
conflict, so the owner can remove one of the two.

Reloader reads the workload's annotations; the pod template's are read as well, because newer releases honour
them there too and skipping a restart Reloader will do is the safe side (a double restart is the failure).
"""

from __future__ import annotations

from collections.abc import Mapping

from chamberlain import wellknown as wk

# The annotations that make Reloader roll a workload on a Secret change (ConfigMap-only ones are not ours).
SECRET_ANNOTATIONS = (wk.RELOADER_AUTO, wk.RELOADER_SECRET_AUTO, wk.RELOADER_SECRET_RELOAD, wk.RELOADER_SEARCH)


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def reloader_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """The Secret-related Reloader annotations present (an explicit ``"false"`` opt-out does not count)."""
    return {k: annotations[k] for k in SECRET_ANNOTATIONS
            if k in annotations and annotations[k].strip().lower() != "false"}


def reloader_reason(annotations: Mapping[str, str], secret: str,
                    secret_annotations: Mapping[str, str] | None = None) -> str | None:
    """The annotation by which Reloader rolls a workload (its annotations, workload and pod template merged)
    when the Secret ``secret`` changes, or None when Reloader leaves it alone. ``secret_annotations``: the
    Secret's own annotations, needed only for search mode (``reloader.stakater.com/match``)."""
    if _true(annotations.get(wk.RELOADER_AUTO)):
        return wk.RELOADER_AUTO
    if _true(annotations.get(wk.RELOADER_SECRET_AUTO)):
        return wk.RELOADER_SECRET_AUTO
    names = annotations.get(wk.RELOADER_SECRET_RELOAD)
    if names is not None and secret in {n.strip() for n in names.split(",")}:
        return wk.RELOADER_SECRET_RELOAD
    if _true(annotations.get(wk.RELOADER_SEARCH)) and _true((secret_annotations or {}).get(wk.RELOADER_MATCH)):
        return wk.RELOADER_SEARCH
    return None


def needs_secret_annotations(annotations: Mapping[str, str]) -> bool:
    """Only search mode depends on the Secret's own annotations; otherwise they need not be read."""
    return _true(annotations.get(wk.RELOADER_SEARCH))


__all__ = ["SECRET_ANNOTATIONS", "needs_secret_annotations", "reloader_annotations", "reloader_reason"]
