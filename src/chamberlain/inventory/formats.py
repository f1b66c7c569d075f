"""Renderers of an inventory as data and text: dict/JSON/YAML (machine), a rich table (terminal), Markdown.

Boundary: pure formatting of an :class:`~chamberlain.inventory.model.Inventory`; no I/O except writing into an
in-memory console. Output is deterministic — sorted keys, sorted entries, no timestamps — so two runs over the
same intent produce identical bytes and a committed report only changes when intent does.
"""

from __future__ import annotations

import io
import json
from typing import Any

import yaml
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from chamberlain.intent.loader import gc_paused
from chamberlain.intent.model import API_VERSION
from chamberlain.inventory.graph import build_graph, to_mermaid
from chamberlain.inventory.model import Consumer, Entry, Inventory, Rotation
from chamberlain.terminal import Console, visible

INVENTORY_API_VERSION = API_VERSION
CLASS_STYLE = {"bootstrap": "yellow", "runtime": "blue", "derived": "magenta", "config": "green"}


# ------------------------------------------------------------------------------------------------ data


def _rotation_dict(r: Rotation | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "policy": r.policy,
        "type": r.type,
        "ttl": r.ttl,
        "rotateBefore": r.rotate_before,
        "revokeOld": r.revoke_old,
        "maxOverlap": r.max_overlap,
        "failureStrategy": r.failure_strategy,
        "summary": r.summary,
    }


def _consumer_dict(c: Consumer) -> dict[str, Any]:
    return {
        "namespace": c.namespace,
        "secretName": c.secret_name,
        "keys": dict(c.keys) if c.keys is not None else None,
        "restart": [{"kind": w.kind, "name": w.name} for w in c.restart],
    }


def entry_to_dict(e: Entry) -> dict[str, Any]:
    return {
        "name": e.name,
        "owner": e.owner,
        "purpose": e.purpose,
        "classification": e.classification,
        "environments": list(e.environments),
        "vault": [
            {"environment": loc.environment, "cluster": loc.cluster, "path": loc.vault_path}
            for loc in e.locations
        ],
        "consumers": [_consumer_dict(c) for c in e.consumers],
        "workloads": [{"namespace": w.namespace, "kind": w.kind, "name": w.name} for w in e.workloads],
        "rotation": _rotation_dict(e.rotation),
        "source": {
            "kind": e.source.kind,
            "keys": list(e.source.keys) if e.source.keys is not None else None,
            "detail": e.source.detail,
            **({"generators": dict(e.source.generators)} if e.source.generators else {}),
        },
        "target": (
            {
                "kind": e.target.kind,
                "endpoint": e.target.endpoint,
                "principal": e.target.principal,
                "adminIntent": e.target.admin_intent,
                **dict(e.target.detail),
            }
            if e.target is not None
            else None
        ),
        "file": e.file,
        "line": e.line,
    }


def to_dict(inventory: Inventory) -> dict[str, Any]:
    """The inventory as plain data; the shape of ``chamberlain inventory -o json|yaml``."""
    with gc_paused():  # see build_inventory
        return _plain(inventory)


def _plain(inventory: Inventory) -> dict[str, Any]:
    workloads = {w for e in inventory.entries for w in e.workloads}
    namespaces = {c.namespace for e in inventory.entries for c in e.consumers}
    return {
        "apiVersion": INVENTORY_API_VERSION,
        "kind": "Inventory",
        "platform": inventory.platform,
        "environments": [
            {"name": env.name, "clusters": list(env.clusters), "ephemeral": env.ephemeral}
            for env in inventory.environments
        ],
        "summary": {
            "secrets": len(inventory.entries),
            "byClassification": inventory.classification_counts(),
            "owners": sorted(inventory.owners()),
            "consumerNamespaces": len(namespaces),
            "workloads": len(workloads),
        },
        "secrets": [entry_to_dict(e) for e in inventory.entries],
        "crossOwnerEdges": [
            {"intent": x.intent, "owner": x.owner, "kind": x.kind, "other": x.other, "what": x.what}
            for x in inventory.edges
        ],
    }


def to_json(inventory: Inventory) -> str:
    return json.dumps(to_dict(inventory), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_yaml(inventory: Inventory) -> str:
    return yaml.safe_dump(to_dict(inventory), sort_keys=True, allow_unicode=True, default_flow_style=False)


# ------------------------------------------------------------------------------------------------ terminal


def text_renderable(inventory: Inventory, *, wide: bool = False, fold: bool = True) -> RenderableType:
    """A rich renderable: one summary line and one row per consumer of each secret (``wide``: with purpose, source
    and Vault paths). ``fold=False`` never wraps or folds a cell: the table is as wide as its longest cell."""
    counts = inventory.classification_counts()
    head = Text.assemble(
        ("Inventory", "bold"),
        f" of platform {visible(inventory.platform or '(no platform)')}: {len(inventory.entries)} secrets (",
        ", ".join(f"{n} {c}" for c, n in counts.items()),
        f"), {len(inventory.owners())} owners",
    )
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, expand=False, pad_edge=False)

    def column(header: str, *, cut: bool = True) -> None:
        # A terminal folds what does not fit; a pipe keeps every name whole, so grep finds it.
        table.add_column(header, no_wrap=not (cut and fold), overflow="fold")

    for header in ("SECRET", "CLASS", "OWNER", "ENVIRONMENTS", "ROTATION", "CONSUMERS", "RESTARTS"):
        column(header, cut=header != "CLASS")
    if wide:
        column("PURPOSE")
        column("SOURCE")
        column("VAULT PATHS", cut=False)  # copied into vault/bao commands: never cut
    dash = Text("-", style="dim")
    for e in inventory.entries:
        rotation = (
            Text(visible(f"{e.rotation.policy} ({e.rotation.short})"))
            if e.rotation
            else Text("unresolved", style="red")
        )
        # The source kind follows from the classification (CH015), so the table shows the target instead.
        # Text is measured as given: repository strings are spelled first (the console's render_str spells str cells)
        name = Text(visible(e.name), style="bold")
        if e.target is not None:
            name.append(visible(f"\n-> {e.target.kind} {e.target.principal}"), style="dim")
        cells: list[RenderableType] = [
            name,
            Text(e.classification, style=CLASS_STYLE.get(e.classification, "")),
            _cell(e.owner),
            _cell(", ".join(e.environments)),
            rotation,
        ]
        more: list[RenderableType] = []
        if wide:
            source = f"{e.source.kind}" + (f" ({e.source.detail})" if e.source.detail else "")
            more = [_cell(e.purpose), _cell(source), _cell("\n".join(e.vault_paths)) if e.vault_paths else dash]
        # One row per consumer, its restarts beside it: two independent lists (the entry's sorted workloads beside
        # its consumers) paired consumers with workloads they do not restart, and a folded cell shifts lines.
        pairs: list[tuple[RenderableType, RenderableType]] = [
            (_cell(f"{c.namespace}/{c.secret_name}"),
             _cell("\n".join(w.ref for w in c.restart)) if c.restart else dash) for c in e.consumers
        ] or [(dash, dash)]
        for i, (consumer, restarts) in enumerate(pairs):
            if i == 0:
                table.add_row(*cells, consumer, restarts, *more)
            else:
                table.add_row(*([""] * len(cells)), consumer, restarts, *([""] * len(more)))
    if not inventory.edges:
        return Group(head, table)
    edges = Text("Cross-owner edges:\n", style="bold")
    edges.append(visible("\n".join(f"  {x.line()}" for x in inventory.edges)))
    return Group(head, table, edges)


def _cell(text: str) -> Text:
    """A repository string as a cell: a Text, never console markup (a purpose holding "[/red]" broke the table,
    review), with control characters spelled out."""
    return Text(visible(text))


def to_text(inventory: Inventory, width: int = 160, *, wide: bool = False) -> str:
    """The terminal table as plain text (no colour codes), for logs, tests and pipes. No cell is wrapped or folded
    (a name broken over two lines is one grep cannot find): the text is ``width`` wide, or wider if a cell needs
    it."""
    renderable = text_renderable(inventory, wide=wide, fold=False)
    natural = Console(width=1 << 20, color_system=None, force_terminal=False).measure(renderable).maximum
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(width, natural), color_system=None, force_terminal=False,
                      soft_wrap=False)
    console.print(renderable)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ Markdown


def _md(text: object) -> str:
    """A Markdown table cell: pipes and newlines would break the row, angle brackets could inject HTML."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", "<br>")
    )


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


def _md_secret_row(e: Entry) -> list[object]:
    return [
        f"`{e.name}`",
        e.classification,
        e.owner,
        e.purpose,
        ", ".join(e.environments),
        f"{e.rotation.policy} ({e.rotation.summary})" if e.rotation else "unresolved",
        e.source.detail if e.source.kind != "generate"
        else "generated: " + ", ".join(f"{k} ({t})" for k, t in e.source.generators),
        e.target.summary + (f", admin via `{e.target.admin_intent}`" if e.target.admin_intent else "")
        if e.target else "",
    ]


def to_markdown(inventory: Inventory) -> str:
    """A Markdown report: summary, environments, secrets, consumers, Vault paths and a Mermaid graph."""
    counts = inventory.classification_counts()
    out = [
        f"# Secret inventory: {_md(inventory.platform or '(no platform)')}",
        "",
        f"{len(inventory.entries)} secrets ("
        + ", ".join(f"{n} {c}" for c, n in counts.items())
        + f"), {len(inventory.owners())} owners. Generated from intent; contains no secret values.",
        "",
        "## Environments",
        "",
        *_md_table(
            ["environment", "clusters", "ephemeral"],
            [[e.name, ", ".join(e.clusters), "yes" if e.ephemeral else "no"] for e in inventory.environments],
        ),
        "",
        "## Secrets",
        "",
        *_md_table(
            ["secret", "class", "owner", "purpose", "environments", "rotation", "source", "target"],
            [_md_secret_row(e) for e in inventory.entries],
        ),
        "",
        "## Consumers",
        "",
        *_md_table(
            ["secret", "namespace", "Kubernetes Secret", "keys", "restarts"],
            [
                [e.name, c.namespace, c.secret_name, c.key_summary, ", ".join(w.ref for w in c.restart)]
                for e in inventory.entries
                for c in e.consumers
            ],
        ),
        "",
        "## Cross-owner edges",
        "",
        *_md_table(
            ["secret", "owner", "edge", "of owner", "what"],
            [[x.intent, x.owner, x.kind, x.other, x.what] for x in inventory.edges],
        ),
        "",
        "## Vault paths",
        "",
        *_md_table(
            ["secret", "environment", "cluster", "path"],
            [[e.name, loc.environment, loc.cluster, loc.vault_path] for e in inventory.entries
             for loc in e.locations],
        ),
        "",
        "## Dependency graph",
        "",
        "```mermaid",
        to_mermaid(build_graph(inventory)).rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(out)
