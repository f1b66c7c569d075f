"""The HTML inventory at 2,000 secrets in a real headless Chromium (Debian's), driven over the DevTools protocol.

Shows: the page loads and draws a bounded graph; filters by owner (the select), namespace (the URL fragment), class
and search (typing) select exactly what the data says and the graph shows only that selection; clicking a graph
node narrows; no request leaves the page (Network events) and its Content-Security-Policy refuses fetches when
a script tries; no value-like text reaches the DOM; a screenshot is written. Load and filter times are printed
(``-s``) and bounded loosely: the machine is shared. Runs with the unit tests; scripts/setup.sh installs chromium,
and the test skips only when no chromium exists (``CHAMBERLAIN_REQUIRE_BROWSER=1``, set by CI, makes that a
failure).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chamberlain.intent.loader import load_repository
from chamberlain.inventory import Inventory, build_inventory, to_html
from tests.cdp import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]
N = 2000
CANARY = "zz-canary-9f4c1e77"  # value-like text planted in intent and in a plaintext bootstrap file


def _chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "chromium is not installed (apt-get install chromium; scripts/setup.sh installs it when root)"
        if os.environ.get("CHAMBERLAIN_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def _generate(root: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_validate_render", ROOT / "benchmarks" /
                                                  "bench_validate_render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    module.generate(root, n)


def _plant_canary(root: Path) -> None:
    (root / "bootstrap").mkdir(exist_ok=True)
    (root / "bootstrap" / "canary.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: bootstrap-canary-boot, namespace: chamberlain-bootstrap}}
        stringData: {{password: {CANARY}-bootstrap}}
        """))
    (root / "intents" / "canary.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {{name: canary-gen}}
        spec:
          owner: team-00
          purpose: A generated login whose declared user name must stay in intent
          classification: runtime
          source:
            generate:
              username: {{type: fixed-name, name: {CANARY}-user}}
              password: {{type: password, length: 31}}
          consumers: [{{namespace: app-000, secretName: canary-gen}}]
        ---
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {{name: canary-boot}}
        spec:
          owner: team-00
          purpose: A bootstrap Secret whose file is (wrongly) in plaintext
          classification: bootstrap
          source:
            bootstrap: {{file: bootstrap/canary.yaml, afterHandover: delete}}
          rotation: {{policy: events}}
          consumers: [{{namespace: app-000, secretName: canary-boot}}]
        """))


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium spawned first, so it starts while the repository is generated and loaded."""
    browser = Browser(_chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def inventory(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    root = tmp_path_factory.mktemp("estate") / "repo"
    _generate(root, N - 2)
    _plant_canary(root)
    inv = build_inventory(load_repository(root))
    assert len(inv.entries) == N
    return inv


@pytest.fixture(scope="module")
def page(inventory: Inventory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "inventory.html"
    started = time.perf_counter()
    path.write_text(to_html(inventory), encoding="utf-8")
    print(f"\n[inventory] rendered {N} secrets in {time.perf_counter() - started:.2f}s, "
          f"{path.stat().st_size / 1e6:.1f} MB")
    return path


@pytest.fixture(scope="module")
def browser(chromium: Browser, page: Path) -> Browser:
    started = time.perf_counter()
    chromium.attach()
    print(f"[inventory] chromium attached after another {time.perf_counter() - started:.2f}s")
    return chromium


# Read the page's state back: the selection count, visible rows, and the graph's columns as label lists.
STATE_JS = """(() => {
  const cols = {};
  document.querySelectorAll('#graph g.node').forEach(g => {
    const c = g.getAttribute('data-col');
    (cols[c] = cols[c] || []).push({label: g.querySelector('text.label').textContent,
                                    style: g.getAttribute('class').split(' ')[1]});
  });
  const visible = [...document.querySelectorAll('#secrets tbody tr')].filter(r => r.offsetParent !== null);
  return {
    selected: Number(document.body.getAttribute('data-selected')),
    rows: visible.length,
    names: visible.map(r => r.cells[0].textContent),
    owners: [...new Set(visible.map(r => r.cells[2].textContent))],
    classes: [...new Set(visible.map(r => r.cells[1].textContent))],
    details: [...document.querySelectorAll('#details details.secret')].filter(d => d.offsetParent !== null).length,
    rowsNote: document.getElementById('rows-note').textContent,
    count: document.getElementById('f-count').textContent,
    note: document.getElementById('graph-note').textContent,
    hash: location.hash,
    cols: cols,
    edges: document.querySelectorAll('#graph path.edge').length,
  };
})()"""


def _timed(browser: Browser, action: str) -> tuple[dict[str, Any], float]:
    """Run ``action`` in the page and return the state and the milliseconds until the next frame is painted."""
    ms = browser.evaluate(f"""new Promise(done => {{
        const t = performance.now();
        {action};
        document.body.offsetHeight;
        requestAnimationFrame(() => setTimeout(() => done(performance.now() - t), 0));
    }})""")
    return browser.evaluate(STATE_JS), float(ms)


def _labels(state: dict[str, Any], col: int) -> list[str]:
    return [n["label"] for n in state["cols"].get(str(col), [])]


def test_inventory_page_at_2000_secrets(inventory: Inventory, page: Path, browser: Browser,
                                        tmp_path: Path) -> None:
    url = page.as_uri()
    timings: dict[str, float] = {}

    started = time.perf_counter()
    browser.navigate(url)
    timings["load (navigate to load event, wall)"] = (time.perf_counter() - started) * 1000
    nav = browser.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    nav = json.loads(nav)
    timings["load event end (page clock)"] = nav["loadEventEnd"]
    timings["page script (parse data, index, first filter + graph)"] = browser.evaluate(
        "window.inventoryPage.timings.scriptMs")
    state = browser.evaluate(STATE_JS)
    # a page of rows is laid out, the rest one click away
    assert state["selected"] == N and state["rows"] == 100 and state["details"] == 100, state["count"]
    assert state["count"] == f"all {N} secrets" and state["rowsNote"] == f"Showing 100 of {N} selected secrets."
    state, timings["show 100 more rows"] = _timed(browser, "document.getElementById('rows-more').click()")
    assert state["rows"] == 200 and state["names"] == [e.name for e in inventory.entries[:200]]
    # the whole estate is a bounded summary: groups per owner and class, at most 20 rows a column, 120 edges
    assert "grouped by owner and class" in state["note"]
    assert all(len(nodes) <= 20 for nodes in state["cols"].values()), state["cols"]
    assert 0 < state["edges"] <= 120
    assert _labels(state, 0)[-1] == "+21 more owners"

    # owner: the select, as a person would use it
    want = [e.name for e in inventory.entries if e.owner == "team-03"]
    state, timings["filter: owner (select)"] = _timed(
        browser, "const s = document.getElementById('f-owner'); s.value = 'team-03';"
                 "s.dispatchEvent(new Event('change'))")
    assert state["names"] == want and state["owners"] == ["team-03"] and state["selected"] == len(want)
    assert _labels(state, 0) == ["team-03"]
    assert state["hash"] == "#owner=team-03"  # the view is a link

    # namespace: from the URL fragment (a shared link), which replaces the other filters
    want = [e.name for e in inventory.entries if any(c.namespace == "app-007" for c in e.consumers)]
    state, timings["filter: namespace (URL fragment)"] = _timed(browser, "location.hash = '#ns=app-007'")
    state = browser.evaluate(STATE_JS) if state["selected"] != len(want) else state  # hashchange is async
    assert state["names"] == want and state["selected"] == len(want)
    assert _labels(state, 2) == ["app-007"]  # other namespaces of these secrets are not drawn

    # owner and class together
    want = [e.name for e in inventory.entries if e.owner == "team-12" and e.classification == "derived"]
    state, timings["filter: owner + class"] = _timed(
        browser, "window.inventoryPage.setFilters({q: '', ns: '', owner: 'team-12', cls: 'derived'})")
    assert state["names"] == want and state["classes"] == ["derived"] and want
    assert _labels(state, 0) == ["team-12"]
    assert [n["style"] for n in state["cols"]["1"]] == ["derived"]

    # search: typed into the box; a small selection is drawn secret by secret, with the workloads restarted
    want = [e.name for e in inventory.entries if "rt-0004" in e.name]
    state, timings["filter: search (typing)"] = _timed(
        browser, "window.inventoryPage.setFilters({owner: '', cls: '', ns: ''});"
                 "const q = document.getElementById('f-q'); q.value = 'rt-0004';"
                 "q.dispatchEvent(new Event('input'))")
    assert state["names"] == want and 0 < len(want) <= 40
    assert sorted(_labels(state, 1)) == sorted(want)  # only the selection's secrets in the graph
    assert set(_labels(state, 0)) == {e.owner for e in inventory.entries if e.name in want}
    assert _labels(state, 3), "the workloads column is drawn for a small selection"
    assert "each drawn with its consumers" in state["note"]
    shot = browser.screenshot(tmp_path / "inventory-search.png")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a click on a graph node narrows the selection to it
    state, timings["filter: click an owner node"] = _timed(
        browser, "document.querySelector('#graph g.node.owner').dispatchEvent(new MouseEvent('click'))")
    owner = state["owners"][0]
    assert state["owners"] == [owner] and all(owner == o for o in _labels(state, 0))

    # everything back
    state, timings["filter: reset (whole estate)"] = _timed(
        browser, "document.getElementById('f-reset').click()")
    assert state["selected"] == N and state["hash"] == ""
    browser.screenshot(tmp_path / "inventory-all.png")

    # offline: the page and nothing else was requested, and no value-like text is in the DOM
    urls = browser.requested_urls()
    assert urls and all(u.startswith(url) for u in urls), urls
    dom = browser.evaluate("document.documentElement.outerHTML")
    assert CANARY not in dom and CANARY not in page.read_text()
    assert "canary-gen" in dom  # the intent itself is listed

    # the CSP is what makes it so: a script's fetch, image and stylesheet are refused before any request
    refused = browser.evaluate("""new Promise(done => {
        const seen = [];
        document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
        new Image().src = 'https://example.invalid/pixel.png';
        const link = document.createElement('link');
        link.rel = 'stylesheet'; link.href = 'https://example.invalid/font.css';
        document.head.appendChild(link);
        fetch('https://example.invalid/beacon').then(() => 'fetched', () => 'refused')
          .then(r => setTimeout(() => done({fetch: r, seen: seen.sort()}), 100));
    })""")
    assert refused["fetch"] == "refused"
    assert refused["seen"] == ["connect-src", "img-src", "style-src-elem"], refused
    failed = [e["params"] for e in browser.events if e["method"] == "Network.loadingFailed"]
    assert all(f.get("blockedReason") == "csp" for f in failed), failed

    print("[inventory] times at 2,000 secrets (ms):")
    for what, ms in timings.items():
        print(f"[inventory]   {what}: {ms:.0f}")
    # loose bounds, for a shared two-core machine: a person would notice long before these
    assert timings["load event end (page clock)"] < 8000
    assert max(v for k, v in timings.items() if k.startswith("filter")) < 1500
