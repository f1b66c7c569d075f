"""The inventory as one self-contained HTML page: summary, dependency graph, secret table and per-secret detail.

Boundary: a pure function from an :class:`~chamberlain.inventory.model.Inventory` to a string. The page loads
nothing from the network (inline CSS, inline SVG, a few lines of inline script for hover highlighting that the
page does not need to be readable), so it can be attached to a ticket or opened from an air-gapped
workstation. Every piece of intent text goes through :func:`html.escape`; intent is authored by many teams and
the page must not become an injection vector.
"""

from __future__ import annotations

from html import escape

from chamberlain.inventory.graph import PALETTE, build_graph, to_mermaid, to_svg
from chamberlain.inventory.model import Entry, Inventory

_CSS = """
:root { --fg:#1f2430; --muted:#5b6472; --line:#e3e6eb; --bg:#fafbfc; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
header { padding:20px 32px 12px; background:#fff; border-bottom:1px solid var(--line); }
header h1 { margin:0 0 4px; font-size:22px; }
header p { margin:0; color:var(--muted); }
main { padding:16px 32px 40px; }
section { margin-top:22px; }
h2 { font-size:17px; margin:0 0 10px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin-top:14px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:110px; }
.card b { display:block; font-size:20px; }
.card span { color:var(--muted); font-size:12px; }
.envs { display:flex; flex-wrap:wrap; gap:8px; }
.env { background:#fff; border:1px solid var(--line); border-radius:6px; padding:4px 10px; }
.env.ephemeral { border-style:dashed; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; border:1px solid; }
.graph-wrap { background:#fff; border:1px solid var(--line); border-radius:8px; overflow:auto; padding:8px; }
.legend { display:flex; gap:14px; flex-wrap:wrap; margin:0 0 8px; color:var(--muted); font-size:12px; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:3px; border:1px solid; margin-right:4px;
            vertical-align:-2px; }
svg.inv-graph { font-family: system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif; }
svg .col-title { font-size:13px; font-weight:600; fill:var(--muted); }
svg .label { font-size:12px; font-weight:600; fill:#1f2430; }
svg .sublabel { font-size:10.5px; fill:#5b6472; }
svg .edge { fill:none; stroke:#9aa3b2; stroke-width:1.4; opacity:.75; }
svg.dim .edge { opacity:.12; }
svg.dim .node { opacity:.3; }
svg.dim .edge.hl { opacity:1; stroke:#2f6fdb; stroke-width:2.2; }
svg.dim .node.hl { opacity:1; }
svg .node { cursor:pointer; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; vertical-align:top; padding:6px 9px; border-bottom:1px solid var(--line); }
th { background:#f3f4f6; font-size:12px; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
td code, li code { font-size:12.5px; }
td:first-child { white-space:nowrap; }
.muted { color:var(--muted); }
details.secret { background:#fff; border:1px solid var(--line); border-radius:8px; margin:8px 0; padding:6px 12px; }
details.secret summary { cursor:pointer; font-weight:600; }
details.secret table { margin:8px 0; }
pre { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px; overflow:auto; }
footer { color:var(--muted); font-size:12px; padding:0 32px 24px; }
"""

# Highlight a secret's paths on hover: purely cosmetic, the page is complete without it.
_JS = """
(function(){
  var svg=document.querySelector('svg.inv-graph'); if(!svg) return;
  function set(names){
    var on=names && names.length; svg.classList.toggle('dim', !!on);
    svg.querySelectorAll('.edge,.node').forEach(function(el){
      var s=(el.getAttribute('data-secrets')||'').split(' ');
      el.classList.toggle('hl', !!on && names.some(function(n){return s.indexOf(n)>=0;}));
    });
  }
  svg.querySelectorAll('.node').forEach(function(el){
    el.addEventListener('mouseenter', function(){
      var s=(el.getAttribute('data-secrets')||'').split(' ').filter(Boolean);
      set(s);
    });
    el.addEventListener('mouseleave', function(){ set([]); });
  });
})();
"""


def _badge(classification: str) -> str:
    fill, stroke = PALETTE.get(classification, PALETTE["workload"])
    return (
        f'<span class="badge" style="background:{fill};border-color:{stroke};color:{stroke}">'
        f"{escape(classification)}</span>"
    )


def _secret_row(e: Entry) -> str:
    rotation = (
        f"<b>{escape(e.rotation.policy)}</b><br><span class=muted>{escape(e.rotation.summary)}</span>"
        if e.rotation
        else '<span style="color:#b42318">unresolved</span>'
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


def _cards(inventory: Inventory) -> str:
    namespaces = {c.namespace for e in inventory.entries for c in e.consumers}
    workloads = {w for e in inventory.entries for w in e.workloads}
    cards = [
        (len(inventory.entries), "secrets"),
        *((n, c) for c, n in inventory.classification_counts().items()),
        (len(inventory.owners()), "owners"),
        (len(namespaces), "consumer namespaces"),
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


def _graph_section(inventory: Inventory, max_graph_secrets: int) -> str:
    if len(inventory.entries) > max_graph_secrets:
        return (
            f'<p class="muted">{len(inventory.entries)} secrets: the graph is omitted above '
            f"{max_graph_secrets}; use the tables below or <code>chamberlain inventory -o json</code>.</p>"
        )
    legend = "".join(
        f'<span><i style="background:{PALETTE[c][0]};border-color:{PALETTE[c][1]}"></i>{c}</span>'
        for c in ("bootstrap", "runtime", "derived", "config")
    )
    graph = build_graph(inventory)
    return (
        f'<div class="legend">{legend}<span>hover a node to follow its secrets</span></div>'
        f'<div class="graph-wrap">{to_svg(graph)}</div>'
        "<details><summary class=muted>Mermaid source</summary>"
        f"<pre>{escape(to_mermaid(graph))}</pre></details>"
    )


def _owners(inventory: Inventory) -> str:
    return "".join(
        f"<tr><td>{escape(owner)}</td><td>{len(entries)}</td><td>"
        + ", ".join(f'<a href="#secret-{escape(e.name)}">{escape(e.name)}</a>' for e in entries)
        + "</td></tr>"
        for owner, entries in inventory.owners().items()
    )


def to_html(inventory: Inventory, *, max_graph_secrets: int = 400) -> str:
    """The whole report. Above ``max_graph_secrets`` the graph is left out (it would be unreadable and
    megabytes large); the tables still list everything."""
    platform = escape(inventory.platform or "(no platform)")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Secret inventory — {platform}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>Secret inventory — {platform}</h1>",
        "<p>What exists, who owns it, who depends on it, and when it rotates. Generated from intent by "
        "chamberlain; contains no secret values.</p>",
        _cards(inventory) + "</header><main>",
        f'<section><h2>Environments</h2><div class="envs">{_environments(inventory)}</div></section>',
        f"<section><h2>Dependency graph</h2>{_graph_section(inventory, max_graph_secrets)}</section>",
        "<section><h2>Secrets</h2><table><tr><th>secret</th><th>class</th><th>owner</th><th>purpose</th>"
        "<th>environments</th><th>rotation</th><th>source</th><th>target</th><th>consumers &rarr; restarts</th></tr>",
        *(_secret_row(e) for e in inventory.entries),
        "</table></section>",
        "<section><h2>By owner</h2><table><tr><th>owner</th><th>secrets</th><th>names</th></tr>"
        f"{_owners(inventory)}</table></section>",
        "<section><h2>Details</h2>",
        *(_detail(e) for e in inventory.entries),
        "</section></main>",
        "<footer>chamberlain inventory · deterministic output: the same intent renders the same page.</footer>",
        f"<script>{_JS}</script>",
        "</body></html>",
        "",
    ])
