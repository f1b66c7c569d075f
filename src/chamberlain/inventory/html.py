"""The inventory as one self-contained HTML page: summary, filters, a graph of the selection, the secret table,
owners and per-secret detail.

Boundary: a pure function from an :class:`~chamberlain.inventory.model.Inventory` to a string. The page loads
nothing from the network: CSS and script are inline, there are no fonts or images, and a Content-Security-Policy
meta (``default-src 'none'`` plus the hashes of the page's own style and script) makes the browser refuse any
fetch, so it can be attached to a ticket or opened from an air-gapped workstation. Tables and details are
rendered here in full and read without script; the script (``page.js``) adds search, filters by owner, namespace
and class, and draws the dependency graph of the current selection, aggregated so 2,000 secrets stay readable.
Every piece of intent text goes through :func:`html.escape`, and the JSON the script reads escapes ``<``, ``>`` and
``&``: intent is authored by many teams and the page must not become an injection vector. No secret value is
on the page, only names, keys and policies.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from importlib import resources
from typing import Any

from chamberlain.inventory.graph import PALETTE, build_graph, to_mermaid
from chamberlain.inventory.model import Entry, Inventory
from chamberlain.terminal import json_spelled

CLASSES = ("bootstrap", "runtime", "derived", "config")
# The graph draws one node per secret up to DETAIL_LIMIT secrets in the selection, groups per owner and class
# above; each column keeps its GRAPH_MAX_ROWS heaviest nodes and merges the rest into one, and only the
# GRAPH_MAX_EDGES heaviest edges are drawn (each node keeps at least one): beyond that a graph is a wall again.
DETAIL_LIMIT = 40
GRAPH_MAX_ROWS = 20
GRAPH_MAX_EDGES = 120
# Rows of the table (and detail blocks) laid out at once, with a "show more" button: laying out 2,000 of each
# takes seconds, filtering them is instant.
PAGE_ROWS = 100
# Runs in <head> before the body is parsed, so the CSS can hide what the script will page (without script,
# everything shows). Its hash is in the CSP like the main script's.
_HEAD_SCRIPT = "document.documentElement.classList.add('js');"


_CSS = """
:root { --fg:#1f2430; --muted:#5b6472; --line:#e3e6eb; --bg:#fafbfc; --accent:#2f6fdb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
header { padding:18px 28px 12px; background:#fff; border-bottom:1px solid var(--line); }
header h1 { margin:0 0 4px; font-size:21px; }
header p { margin:0; color:var(--muted); }
main { padding:8px 28px 40px; }
section { margin-top:20px; }
h2 { font-size:17px; margin:0 0 10px; }
[hidden] { display:none !important; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin-top:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:6px 12px; min-width:100px; }
.card b { display:block; font-size:19px; }
.card span { color:var(--muted); font-size:12px; }
.filters { position:sticky; top:0; z-index:2; display:flex; flex-wrap:wrap; gap:8px 14px; align-items:center;
           padding:10px 28px; background:#f3f5f8; border-bottom:1px solid var(--line); }
.filters label { color:var(--muted); font-size:12px; display:flex; gap:6px; align-items:center; }
.filters input, .filters select, .filters button { font:inherit; font-size:13px; padding:4px 8px;
           border:1px solid #c9ced6; border-radius:6px; background:#fff; color:var(--fg); }
.filters input { width:260px; }
.filters select { max-width:220px; }
.filters button { cursor:pointer; }
#f-count { font-weight:600; }
.nojs { color:var(--muted); }
html.js .nojs { display:none; }
html.js #secrets tbody tr:not(.on), html.js #details details.secret:not(.on) { display:none; }
#rows-note { color:var(--muted); margin:8px 0 0; }
#rows-more { font:inherit; font-size:13px; padding:4px 10px; border:1px solid #c9ced6; border-radius:6px;
             background:#fff; cursor:pointer; margin-left:8px; }
.envs { display:flex; flex-wrap:wrap; gap:8px; margin-top:10px; font-size:13px; }
.env { background:#fff; border:1px solid var(--line); border-radius:6px; padding:2px 10px; }
.env.ephemeral { border-style:dashed; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; border:1px solid; }
.bad { color:#b42318; }
.graph-wrap { background:#fff; border:1px solid var(--line); border-radius:8px; overflow:auto; padding:8px;
              max-height:78vh; }
.legend { display:flex; gap:14px; flex-wrap:wrap; margin:0 0 8px; color:var(--muted); font-size:12px; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:3px; border:1px solid; margin-right:4px;
            vertical-align:-2px; }
#graph-note { color:var(--muted); font-size:12.5px; margin:0 0 8px; }
svg.inv-graph { font-family: system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif; display:block; }
svg .col-title { font-size:13px; font-weight:600; fill:var(--muted); }
svg .label { font-size:12px; font-weight:600; fill:#1f2430; }
svg .sublabel { font-size:10.5px; fill:#5b6472; }
svg .edge { fill:none; stroke:#9aa3b2; opacity:.7; }
svg.dim .edge { opacity:.1; }
svg.dim .edge.hl { opacity:1; stroke:var(--accent); }
svg .node.link { cursor:pointer; }
svg .node.link:hover rect { stroke-width:2.2; }
svg .node rect { stroke-width:1.2; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; vertical-align:top; padding:6px 9px; border-bottom:1px solid var(--line); }
th { background:#f3f4f6; font-size:12px; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
td code, li code { font-size:12.5px; }
td:first-child { white-space:nowrap; }
.muted { color:var(--muted); }
details.secret { background:#fff; border:1px solid var(--line); border-radius:8px; margin:8px 0; padding:6px 12px;
                 scroll-margin-top:70px; }
details.secret summary { cursor:pointer; font-weight:600; }
details.secret table { margin:8px 0; }
pre { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px; overflow:auto; }
footer { color:var(--muted); font-size:12px; padding:0 28px 24px; }
"""

# Graph node styles beyond the classifications: an owner, a merged "+N more" node.
_EXTRA_STYLES = {"owner": ("#fdf2f8", "#b0417a"), "more": ("#f7f7f7", "#9aa3b2")}


def _palette_css() -> str:
    """Colours per classification and node style as classes: the CSP forbids inline ``style`` attributes."""
    rules = []
    for name, (fill, stroke) in sorted({**PALETTE, **_EXTRA_STYLES}.items()):
        rules.append(f"svg .node.{name} rect {{ fill:{fill}; stroke:{stroke}; }}")
        rules.append(f".badge.{name}, .legend i.{name} {{ background:{fill}; border-color:{stroke}; color:{stroke}; }}")
    rules.append("svg .node.more rect { stroke-dasharray:4 3; }")
    return "\n".join(rules) + "\n"


def _script() -> str:
    script = resources.files("chamberlain.inventory").joinpath("page.js").read_text(encoding="utf-8")
    if "</script" in script.lower():  # would end the inline element early; a packaging mistake, not input
        raise RuntimeError("page.js must not contain '</script'")
    return script


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def csp(style: str, *scripts: str) -> str:
    """The page's policy: nothing from anywhere (``default-src 'none'`` also covers fetch, fonts, images and
    frames), except its own inline style and scripts, allowed by hash rather than by ``'unsafe-inline'``."""
    return (
        f"default-src 'none'; style-src {_sha256(style)}; script-src {' '.join(_sha256(s) for s in scripts)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def _badge(classification: str) -> str:
    return f'<span class="badge {escape(classification)}">{escape(classification)}</span>'


def _secret_row(e: Entry) -> str:
    rotation = (
        f"<b>{escape(e.rotation.policy)}</b><br><span class=muted>{escape(e.rotation.summary)}</span>"
        if e.rotation
        else '<span class="bad">unresolved</span>'
    )
    consumers = "<br>".join(
        f"<code>{escape(c.namespace)}/{escape(c.secret_name)}</code>"
        + (
            " &rarr; " + ", ".join(escape(w.ref) for w in c.restart)
            if c.restart
            else ""
        )
        for c in e.consumers
    ) or '<span class="muted">none</span>'
    target = escape(e.target.summary) if e.target else ""
    return (
        f'<tr><td><a href="#secret-{escape(e.name)}"><code>{escape(e.name)}</code></a></td>'
        f"<td>{_badge(e.classification)}</td><td>{escape(e.owner)}</td><td>{escape(e.purpose)}</td>"
        f"<td>{escape(', '.join(e.environments))}</td><td>{rotation}</td>"
        f"<td>{escape(e.source.kind)}</td><td>{target}</td><td>{consumers}</td></tr>"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """An HTML table; cells are already escaped."""
    head = "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    return [head, *("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows), "</table>"]


def _detail(e: Entry) -> str:
    parts = [
        f'<details class="secret" id="secret-{escape(e.name)}"><summary>{escape(e.name)} {_badge(e.classification)}'
        f' <span class="muted">owned by {escape(e.owner)}</span></summary>',
        f"<p>{escape(e.purpose)}</p>",
        f'<p class="muted">Declared in <code>{escape(e.file)}:{e.line}</code>. Source: {escape(e.source.detail)}'
        + (
            "; keys " + ", ".join(f"<code>{escape(k)}</code>" for k in e.source.keys)
            if e.source.keys
            else ""
        )
        + ".</p>",
    ]
    if e.target is not None:
        admin = f", admin credential from <code>{escape(e.target.admin_intent)}</code>" if e.target.admin_intent else ""
        parts.append(f"<p>Target: {escape(e.target.summary)}{admin}.</p>")
    if e.rotation is not None:
        r = e.rotation
        parts.append(
            "<p>Rotation: "
            + escape(
                f"{r.policy} — {r.type}, ttl {r.ttl or '-'}, rotate before {r.rotate_before or '-'}, "
                f"revoke old {'yes' if r.revoke_old else 'no'}, max overlap {r.max_overlap or '-'}, "
                f"on failure {r.failure_strategy}"
            )
            + "</p>"
        )
    if e.locations:
        parts += _table(["environment", "cluster", "Vault path"],
                        [[escape(loc.environment), escape(loc.cluster), f"<code>{escape(loc.vault_path)}</code>"]
                         for loc in e.locations])
    if e.consumers:
        parts += _table(["namespace", "Kubernetes Secret", "keys", "restarts"],
                        [[escape(c.namespace), f"<code>{escape(c.secret_name)}</code>", escape(c.key_summary),
                          escape(", ".join(w.ref for w in c.restart)) or "-"] for c in e.consumers])
    parts.append("</details>")
    return "\n".join(parts)


def _namespaces(inventory: Inventory) -> list[str]:
    return sorted({c.namespace for e in inventory.entries for c in e.consumers})


def _cards(inventory: Inventory) -> str:
    workloads = {w for e in inventory.entries for w in e.workloads}
    cards = [
        (len(inventory.entries), "secrets"),
        *((n, c) for c, n in inventory.classification_counts().items()),
        (len(inventory.owners()), "owners"),
        (len(_namespaces(inventory)), "consumer namespaces"),
        (len(workloads), "workloads"),
    ]
    return ('<div class="cards">'
            + "".join(f"<div class=card><b>{n}</b><span>{escape(label)}</span></div>" for n, label in cards)
            + "</div>")


def _environments(inventory: Inventory) -> str:
    return "".join(
        f'<div class="env{" ephemeral" if env.ephemeral else ""}"><b>{escape(env.name)}</b> '
        f'<span class="muted">{escape(", ".join(env.clusters))}{" · ephemeral" if env.ephemeral else ""}'
        "</span></div>"
        for env in inventory.environments
    )


def _options(values: list[str], everything: str) -> str:
    return f'<option value="">{escape(everything)}</option>' + "".join(
        f'<option value="{escape(v)}">{escape(v)}</option>' for v in values
    )


def _filters(inventory: Inventory) -> str:
    return (
        '<div class="filters" role="search">'
        '<label>Search <input id="f-q" type="search" placeholder="name, purpose, namespace, workload…" '
        'autocomplete="off"></label>'
        f'<label>Owner <select id="f-owner">{_options(list(inventory.owners()), "all owners")}</select></label>'
        f'<label>Namespace <select id="f-ns">{_options(_namespaces(inventory), "all namespaces")}</select></label>'
        f'<label>Class <select id="f-class">{_options(list(CLASSES), "all classes")}</select></label>'
        '<button id="f-reset" type="button">Reset</button>'
        f'<span id="f-count">all {len(inventory.entries)} secrets</span>'
        '<span class="nojs">(filters and the graph need JavaScript; the tables below are complete)</span>'
        "</div>"
    )


def _graph_section(inventory: Inventory, max_mermaid_secrets: int) -> str:
    legend = "".join(
        f'<span><i class="{c}"></i>{c}</span>' for c in ("owner", *CLASSES, "namespace", "workload")
    )
    mermaid = ""
    if len(inventory.entries) <= max_mermaid_secrets:
        mermaid = (
            "<details><summary class=muted>Mermaid source (every secret)</summary>"
            f"<pre>{escape(to_mermaid(build_graph(inventory)))}</pre></details>"
        )
    return (
        f'<div class="legend">{legend}<span>hover a node to follow its edges; click to narrow the selection'
        "</span></div>"
        '<p id="graph-note"></p><div class="graph-wrap" id="graph"></div>' + mermaid
    )


def _owners(inventory: Inventory) -> str:
    rows = []
    for owner, entries in inventory.owners().items():
        counts = {c: 0 for c in CLASSES}
        for e in entries:
            counts[e.classification] = counts.get(e.classification, 0) + 1
        namespaces = {c.namespace for e in entries for c in e.consumers}
        rows.append(
            f'<tr data-owner="{escape(owner)}"><td><a href="#owner={escape(owner)}">{escape(owner)}</a></td>'
            f"<td>{len(entries)}</td><td>"
            + ", ".join(f"{n} {escape(c)}" for c, n in counts.items() if n)
            + f"</td><td>{len(namespaces)}</td></tr>"
        )
    return "".join(rows)


def page_data(inventory: Inventory) -> dict[str, Any]:
    """What the script needs, index-aligned with the table rows: names, owners, classes, purposes, environments
    and consumers (namespace, Secret name, restarted workloads). Never a value, never a key's content."""
    return {
        "graph": {"detailLimit": DETAIL_LIMIT, "maxEdges": GRAPH_MAX_EDGES, "maxRows": GRAPH_MAX_ROWS},
        "pageRows": PAGE_ROWS,
        "secrets": [
            {
                "n": e.name,
                "o": e.owner,
                "c": e.classification,
                "p": e.purpose,
                "e": list(e.environments),
                "k": [[c.namespace, c.secret_name, [[w.kind, w.name] for w in c.restart]] for c in e.consumers],
            }
            for e in inventory.entries
        ],
    }


def _json_for_script(data: dict[str, Any]) -> str:
    # Inside <script type="application/json"> a "</script>" in a purpose would end the block: escape the markup
    # characters as JSON unicode escapes, which JSON.parse turns back into the same text.
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return json_spelled(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def to_html(inventory: Inventory, *, max_mermaid_secrets: int = 200) -> str:
    """The whole report. The Mermaid source of the full graph is included up to ``max_mermaid_secrets`` (beyond
    that it is unreadable and megabytes large); the interactive graph and the tables cover any size."""
    platform = escape(inventory.platform or "(no platform)")
    style = _CSS + _palette_css()
    script = _script()
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp(style, _HEAD_SCRIPT, script)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Secret inventory — {platform}</title>",
        f"<style>{style}</style>",
        f"<script>{_HEAD_SCRIPT}</script></head><body>",
        f"<header><h1>Secret inventory — {platform}</h1>",
        "<p>What exists, who owns it, who depends on it, and when it rotates. Generated from intent by "
        "chamberlain; contains no secret values.</p>",
        _cards(inventory),
        f'<div class="envs">{_environments(inventory)}</div></header>',
        _filters(inventory),
        "<main>",
        "<section><h2>Dependency graph of the selection</h2>"
        f"{_graph_section(inventory, max_mermaid_secrets)}</section>",
        '<section><h2>Secrets</h2><table id="secrets"><thead><tr><th>secret</th><th>class</th><th>owner</th>'
        "<th>purpose</th><th>environments</th><th>rotation</th><th>source</th><th>target</th>"
        "<th>consumers &rarr; restarts</th></tr></thead><tbody>",
        *(_secret_row(e) for e in inventory.entries),
        '</tbody></table><p id="rows-note"></p><button id="rows-more" type="button" hidden>show more</button>'
        "</section>",
        '<section><h2>By owner</h2><table id="owners"><thead><tr><th>owner</th><th>secrets</th><th>classes</th>'
        f"<th>consumer namespaces</th></tr></thead><tbody>{_owners(inventory)}</tbody></table></section>",
        '<section id="details"><h2>Details</h2>',
        *(_detail(e) for e in inventory.entries),
        "</section></main>",
        "<footer>chamberlain inventory · deterministic output: the same intent renders the same page.</footer>",
        f'<script type="application/json" id="inv-data">{_json_for_script(page_data(inventory))}</script>',
        f"<script>{script}</script>",
        "</body></html>",
        "",
    ])
