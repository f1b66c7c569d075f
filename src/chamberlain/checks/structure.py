"""Repository-shape rules: exactly one Platform (CH007), unique object names per kind (CH008), and paths of
chamberlain files that can be shown as they are (CH129)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.walk import unshowable


@check("platform-count")
def platform_count(repo: Repository) -> Iterator[Finding]:
    if not repo.platforms:
        # Point at the first intent file when there is one: that is where the author is looking.
        anchor = repo.intents[0].file if repo.intents else "."
        left_out = [e for e in repo.exclusions if e.reason not in ("symlink", "special-file")]
        why = (f" ({len(left_out)} paths were left out: ignore files or rendered output, see the exclusions; an "
               "ignore file that ignores everything leaves nothing to validate)") if left_out else ""
        yield Finding(anchor, None, "CH007", f"no Platform found; an intent repository declares exactly one{why}")
        return
    first = repo.platforms[0]
    for extra in repo.platforms[1:]:
        yield Finding(
            extra.file, extra.line, "CH007",
            f"second Platform {extra.obj.metadata.name!r}; the first is in {first.file}:{first.line}",
            object=f"Platform/{extra.obj.metadata.name}",
        )


def _duplicates(kind: str, objects: Sequence[Loaded[Any]]) -> Iterable[Finding]:
    seen: dict[str, Loaded[Any]] = {}
    for item in objects:
        name = item.obj.metadata.name
        if name in seen:
            first = seen[name]
            yield Finding(
                item.file, item.line, "CH008",
                f"{kind} {name!r} is declared twice; first in {first.file}:{first.line}",
                object=f"{kind}/{name}",
            )
        else:
            seen[name] = item


@check("duplicate-objects")
def duplicate_objects(repo: Repository) -> Iterator[Finding]:
    yield from _duplicates("RotationPolicy", repo.policies)
    yield from _duplicates("SecretIntent", repo.intents)


@check("unshowable-path")
def unshowable_path(repo: Repository) -> Iterator[Finding]:
    """CH129: a file holding chamberlain objects whose path has a control character, a line separator or a
    bidirectional override. Its path reaches owner matching, review and the rendered CODEOWNERS: raw, a newline in
    it forged CODEOWNERS lines that handed every team's paths to one reviewer (red team). Files that hold no
    chamberlain object are only shown escaped."""
    holding = {item.file for items in (repo.platforms, repo.policies, repo.intents) for item in items}
    for f in repo.files:
        if f.rel not in holding:
            continue
        raw = os.fsdecode(f.path.relative_to(repo.root)) if f.path.is_relative_to(repo.root) else f.path.name
        bad = unshowable(raw)
        if bad is not None:
            yield Finding(f.rel, None, "CH129",
                          f"the path holds {bad.encode('unicode_escape').decode('ascii')!s}, which cannot be shown on "
                          "one line: review, owner paths and the rendered CODEOWNERS could not show or match it as it "
                          "is; rename the file")
