"""The inventory: what secrets exist, who owns them, who depends on them and when they rotate (SPEC §1, §10).

Belongs here: building the inventory from a loaded intent repository (pure data) and rendering it as JSON,
YAML, a terminal table, Markdown and a self-contained HTML page whose script (``page.js``, inlined) filters and
draws the graph of the current selection. Does not belong here:
live state from Vault or the cluster (that is ``status``/``audit``), and anything that reads the clock or the
network — the inventory is a deterministic function of intent.
"""

from chamberlain.inventory.formats import text_renderable, to_dict, to_json, to_markdown, to_text, to_yaml
from chamberlain.inventory.graph import build_graph, to_mermaid, to_svg
from chamberlain.inventory.html import to_html
from chamberlain.inventory.model import (
    Consumer,
    Entry,
    EnvironmentInfo,
    Inventory,
    Location,
    Rotation,
    Source,
    Target,
    Workload,
    build_inventory,
)

__all__ = [
    "Consumer",
    "Entry",
    "EnvironmentInfo",
    "Inventory",
    "Location",
    "Rotation",
    "Source",
    "Target",
    "Workload",
    "build_graph",
    "build_inventory",
    "text_renderable",
    "to_dict",
    "to_html",
    "to_json",
    "to_markdown",
    "to_mermaid",
    "to_svg",
    "to_text",
    "to_yaml",
]
