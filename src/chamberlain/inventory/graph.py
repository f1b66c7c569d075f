"""The dependency graph of an inventory: secret -> consumer namespace -> workload restarted, and its drawings.

This is the whole graph, for Markdown (Mermaid) and the SVG API; it suits tens of secrets. The HTML page draws
the graph of its current selection in the browser instead (``page.js``: owners, grouping and caps for thousands).

Boundary: pure functions from an :class:`~chamberlain.inventory.model.Inventory` to a graph, a column layout,
an inline SVG string and Mermaid text. No I/O, no randomness, no clock: the same inventory always draws the same
picture, byte for byte, so the HTML report can be committed and diffed. Every label goes through
:func:`html.escape` (SVG) or Mermaid's entity escaping before it is written.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field

from chamberlain.inventory.model import Inventory

COLUMNS = ("secret", "namespace", "workload")
COLUMN_TITLES = ("Secrets", "Consumer namespaces", "Workloads restarted")
CLASS_ORDER = {"bootstrap": 0, "runtime": 1, "derived": 2, "config": 3}
# Fill and stroke per node style; secrets are coloured by classification so Inv. 2/8 are visible at a glance.
PALETTE: dict[str, tuple[str, str]] = {
    "bootstrap": ("#fff4e0", "#d98200"),
    "runtime": ("#e6f0ff", "#2f6fdb"),
    "derived": ("#f1e9ff", "#7a4cc2"),
    "config": ("#e8f6ee", "#2e8b57"),
    "namespace": ("#f3f4f6", "#5b6472"),
    "workload": ("#ffffff", "#3b4250"),
}


@dataclass
class Node:
    id: str
    column: int
    label: str
    sublabel: str
    style: str
    title: str
    secrets: set[str] = field(default_factory=set)  # the secrets this node belongs to, for highlighting
    row: float = 0.0


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    title: str
    secrets: frozenset[str]


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[Edge]

    def column(self, index: int) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.column == index), key=lambda n: n.row)


def build_graph(inventory: Inventory) -> Graph:
    """Nodes for every secret (also those nobody consumes: they exist too), namespace and restarted workload."""
    nodes: dict[str, Node] = {}
    edge_titles: dict[tuple[str, str], list[str]] = {}
    edge_secrets: dict[tuple[str, str], set[str]] = {}

    def link(src: str, dst: str, title: str, secret: str) -> None:
        edge_titles.setdefault((src, dst), [])
        if title not in edge_titles[(src, dst)]:
            edge_titles[(src, dst)].append(title)
        edge_secrets.setdefault((src, dst), set()).add(secret)

    for entry in inventory.entries:
        sid = f"s:{entry.name}"
        rotation = entry.rotation.policy if entry.rotation else "unresolved policy"
        nodes[sid] = Node(
            sid, 0, entry.name, f"{entry.classification} · {entry.owner}", entry.classification,
            f"{entry.name} ({entry.classification}), owner {entry.owner}, rotation {rotation}: {entry.purpose}",
            {entry.name},
        )
        for consumer in entry.consumers:
            nid = f"n:{consumer.namespace}"
            ns = nodes.setdefault(
                nid, Node(nid, 1, consumer.namespace, "", "namespace", f"namespace {consumer.namespace}")
            )
            ns.secrets.add(entry.name)
            link(sid, nid, f"{entry.name} -> Secret {consumer.namespace}/{consumer.secret_name}", entry.name)
            for w in consumer.restart:
                wid = f"w:{w.namespace}/{w.kind}/{w.name}"
                wl = nodes.setdefault(
                    wid, Node(wid, 2, w.name, f"{w.kind} · {w.namespace}", "workload",
                              f"{w.kind} {w.namespace}/{w.name}")
                )
                wl.secrets.add(entry.name)
                link(nid, wid, f"{entry.name} restarts {w.kind} {w.namespace}/{w.name}", entry.name)
    for ns_node in nodes.values():
        if ns_node.column == 1:
            ns_node.sublabel = f"{len(ns_node.secrets)} secret{'s' if len(ns_node.secrets) != 1 else ''}"
    edges = [
        Edge(src, dst, "; ".join(titles), frozenset(edge_secrets[(src, dst)]))
        for (src, dst), titles in sorted(edge_titles.items())
    ]
    graph = Graph(nodes, edges)
    _order(graph)
    return graph


def _order(graph: Graph) -> None:
    """Assign rows per column with two barycentre sweeps, a classic crossing-reduction heuristic that is cheap
    and, with names as tie-breakers, fully deterministic."""
    secrets = sorted(
        (n for n in graph.nodes.values() if n.column == 0),
        key=lambda n: (CLASS_ORDER.get(n.style, 9), n.label),
    )
    for i, n in enumerate(secrets):
        n.row = float(i)
    neighbours: dict[str, list[str]] = {nid: [] for nid in graph.nodes}
    for e in graph.edges:
        neighbours[e.source].append(e.target)
        neighbours[e.target].append(e.source)

    def sweep(column: int, towards: int) -> None:
        members = [n for n in graph.nodes.values() if n.column == column]

        def key(n: Node) -> tuple[int, float, float, str]:
            rows = [graph.nodes[m].row for m in neighbours[n.id] if graph.nodes[m].column == towards]
            # Unconnected nodes go last, in their previous order, so lonely secrets collect at the bottom.
            return (0, sum(rows) / len(rows), n.row, n.label) if rows else (1, 0.0, n.row, n.label)

        for i, n in enumerate(sorted(members, key=key)):
            n.row = float(i)

    for _ in range(2):
        sweep(1, 0)
        sweep(2, 1)
        sweep(1, 2)
        sweep(0, 1)
    sweep(1, 0)
    sweep(2, 1)


# ------------------------------------------------------------------------------------------------ SVG


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float


CHAR_W = 7.2  # average advance of the 12px bold sans-serif used for labels; good enough for box sizing
SUB_CHAR_W = 6.0  # the same for the 10.5px sublabels
ROW_H = 44.0
NODE_H = 34.0
COL_GAP = 190.0
PAD = 16.0
HEADER_H = 34.0


def _truncate(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(1, chars - 1)] + "\u2026"


def _column_width(nodes: Iterable[Node]) -> float:
    longest = max((max(len(n.label) * CHAR_W, len(n.sublabel) * SUB_CHAR_W) for n in nodes), default=70.0)
    return min(320.0, max(150.0, longest + 24))


def to_svg(graph: Graph) -> str:
    """An inline SVG with three columns and curved edges. Interactive highlighting is left to the page's CSS/JS
    through ``data-secrets`` attributes; the drawing itself needs nothing but a browser."""
    columns = [graph.column(i) for i in range(3)]
    widths = [_column_width(c) for c in columns]
    xs = [PAD]
    for w in widths[:-1]:
        xs.append(xs[-1] + w + COL_GAP)
    tallest = max((len(c) for c in columns), default=0)
    height = HEADER_H + max(tallest, 1) * ROW_H + PAD
    width = xs[-1] + widths[-1] + PAD
    boxes: dict[str, _Box] = {}
    for ci, column in enumerate(columns):
        # Shorter columns are centred against the tallest so edges stay short and mostly horizontal.
        offset = (tallest - len(column)) * ROW_H / 2
        for i, n in enumerate(column):
            boxes[n.id] = _Box(xs[ci], HEADER_H + offset + i * ROW_H + (ROW_H - NODE_H) / 2, widths[ci], NODE_H)

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="inv-graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="secret dependency graph">',
    ]
    for ci, title in enumerate(COLUMN_TITLES):
        out.append(
            f'<text class="col-title" x="{xs[ci]:.1f}" y="20">{html.escape(title)} '
            f"({len(columns[ci])})</text>"
        )
    out.append('<g class="edges">')
    for e in graph.edges:
        a, b = boxes[e.source], boxes[e.target]
        x1, y1 = a.x + a.w, a.y + a.h / 2
        x2, y2 = b.x, b.y + b.h / 2
        mid = (x1 + x2) / 2
        out.append(
            f'<path class="edge" data-secrets="{html.escape(" ".join(sorted(e.secrets)))}" '
            f'd="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}">'
            f"<title>{html.escape(e.title)}</title></path>"
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for column in columns:
        for n in column:
            box = boxes[n.id]
            fill, stroke = PALETTE.get(n.style, PALETTE["workload"])
            chars = int((box.w - 20) / CHAR_W)
            sub_chars = int((box.w - 20) / SUB_CHAR_W)
            href = f"#secret-{n.label}" if n.column == 0 else None
            open_tag = f'<a href="{html.escape(href)}">' if href else ""
            close_tag = "</a>" if href else ""
            out.append(
                f'<g class="node node-{html.escape(n.style)}" data-secrets="'
                f'{html.escape(" ".join(sorted(n.secrets)))}" data-col="{n.column}">{open_tag}'
                f"<title>{html.escape(n.title)}</title>"
                f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="6" '
                f'fill="{fill}" stroke="{stroke}"/>'
                f'<text class="label" x="{box.x + 10:.1f}" y="{box.y + 14:.1f}">'
                f"{html.escape(_truncate(n.label, chars))}</text>"
                f'<text class="sublabel" x="{box.x + 10:.1f}" y="{box.y + 27:.1f}">'
                f"{html.escape(_truncate(n.sublabel, sub_chars))}</text>"
                f"{close_tag}</g>"
            )
    out.append("</g></svg>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ Mermaid


def _mermaid_label(text: str) -> str:
    # Mermaid reads entity codes inside quoted labels; quotes and angle brackets would otherwise break syntax.
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_mermaid(graph: Graph) -> str:
    """The same graph as Mermaid ``flowchart LR`` text (GitHub renders it in Markdown)."""
    ids = {nid: f"{'snw'[n.column]}{i}" for i, (nid, n) in enumerate(
        sorted(graph.nodes.items(), key=lambda kv: (kv[1].column, kv[1].row)))}
    lines = ["flowchart LR"]
    for ci, name in enumerate(COLUMNS):
        lines.append(f'  subgraph {name}s["{COLUMN_TITLES[ci]}"]')
        for n in graph.column(ci):
            if n.sublabel:
                label = f"{_mermaid_label(n.label)}<br/><small>{_mermaid_label(n.sublabel)}</small>"
            else:
                label = _mermaid_label(n.label)
            lines.append(f'    {ids[n.id]}["{label}"]:::{n.style}')
        lines.append("  end")
    for e in graph.edges:
        lines.append(f"  {ids[e.source]} --> {ids[e.target]}")
    for style in sorted(PALETTE):
        fill, stroke = PALETTE[style]
        lines.append(f"  classDef {style} fill:{fill},stroke:{stroke}")
    return "\n".join(lines) + "\n"
