"""The inventory: entries built from intent, and every renderer deterministic and escaped."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.intent.loader import load_repository
from chamberlain.inventory import (
    Inventory,
    build_graph,
    build_inventory,
    text_renderable,
    to_dict,
    to_html,
    to_json,
    to_markdown,
    to_mermaid,
    to_svg,
    to_text,
    to_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "corpus" / "base"
ACME = ROOT / "examples" / "acme"


@pytest.fixture(scope="module")
def base() -> Inventory:
    return build_inventory(load_repository(BASE))


@pytest.fixture(scope="module")
def acme() -> Inventory:
    return build_inventory(load_repository(ACME))


def _write_repo(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "platform.yaml").write_text((BASE / "platform.yaml").read_text())
    (tmp_path / "intents.yaml").write_text(textwrap.dedent(extra))
    return tmp_path


# ------------------------------------------------------------------------------------------------ entries


def test_entries_are_sorted_by_name(base: Inventory) -> None:
    assert [e.name for e in base.entries] == ["app-db", "orders-db-app", "orders-db-endpoint", "pg-admin"]
    assert base.platform == "corpus"
    assert [(e.name, e.clusters, e.ephemeral) for e in base.environments] == [
        ("prod", ("prod-eu1",), False),
        ("dev", ("dev1",), False),
    ]


def test_runtime_entry_with_postgres_target(base: Inventory) -> None:
    e = base.by_name("app-db")
    assert e is not None
    assert (e.owner, e.classification, e.environments) == ("team-app", "runtime", ("prod", "dev"))
    assert e.purpose == "Postgres password of the app API"
    assert [(loc.environment, loc.cluster, loc.vault_path) for loc in e.locations] == [
        ("prod", "prod-eu1", "secret/prod/team-app/app-db"),
        ("dev", "dev1", "secret/dev/team-app/app-db"),
    ]
    assert e.source.kind == "generate"
    assert e.source.generators == (("password", "password"), ("username", "fixed-name"))
    assert e.target is not None
    assert (e.target.kind, e.target.endpoint, e.target.principal, e.target.admin_intent) == (
        "postgres", "app-db.databases.svc:5432", "app", "pg-admin",
    )
    (consumer,) = e.consumers
    assert (consumer.namespace, consumer.secret_name) == ("app", "app-db")
    assert consumer.keys == (("DB_PASSWORD", "password"), ("DB_USER", "username"))
    assert [w.ref for w in e.workloads] == ["Deployment/app-api"]
    assert e.workloads[0].namespace == "app"
    assert e.rotation is not None
    assert (e.rotation.policy, e.rotation.type, e.rotation.ttl, e.rotation.rotate_before) == (
        "standard", "time-based", "90d", "7d",
    )
    assert (e.rotation.max_overlap, e.rotation.failure_strategy, e.rotation.revoke_old) == ("1h", "retry", True)
    assert e.file == "intents/app.yaml"
    assert e.line == 1


def test_derived_and_config_paths_are_per_cluster(base: Inventory) -> None:
    derived = base.by_name("orders-db-app")
    config = base.by_name("orders-db-endpoint")
    assert derived is not None and config is not None
    assert derived.vault_paths == (
        "platform-data/dev/dev1/databases/orders-db-app",
        "platform-data/prod/prod-eu1/databases/orders-db-app",
    )
    assert config.vault_paths[0].startswith("platform-config/")
    assert derived.source.kind == "publication"
    assert derived.source.keys == ("password", "username")
    assert "databases/orders-db-app" in derived.source.detail
    assert derived.consumers[0].keys is None
    assert derived.consumers[0].key_summary == "all keys as-is"
    assert derived.rotation is not None and derived.rotation.policy == "inline"
    assert derived.rotation.type == "event-based"


def test_inline_policy_and_unresolved_policy(tmp_path: Path) -> None:
    repo = _write_repo(tmp_path, """\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: lonely}
        spec:
          owner: team-a
          purpose: nobody consumes it and its policy does not exist
          classification: runtime
          environments: [dev]
          source: {generate: {token: {type: token}}}
          rotation: {policy: missing}
        """)
    inv = build_inventory(load_repository(repo))
    (entry,) = inv.entries
    assert entry.rotation is None
    assert entry.environments == ("dev",)
    assert entry.consumers == ()
    assert entry.workloads == ()
    assert "unresolved" in to_text(inv)
    assert to_dict(inv)["secrets"][0]["rotation"] is None


def test_bootstrap_entry(acme: Inventory) -> None:
    e = acme.by_name("smtp-relay")
    assert e is not None
    assert e.classification == "bootstrap"
    assert e.source.kind == "bootstrap"
    assert e.source.keys is None  # the keys are inside the encrypted file; the inventory never decrypts
    assert "bootstrap/smtp-relay.sops.yaml" in e.source.detail
    assert "delete" in e.source.detail
    assert e.vault_paths == (
        "secret/dev/team-platform/smtp-relay",
        "secret/prod/team-platform/smtp-relay",
    )


def test_ephemeral_environment_is_not_a_default(acme: Inventory) -> None:
    preview = acme.by_name("preview-api-token")
    default = acme.by_name("registry-pull")  # environments omitted
    assert preview is not None and default is not None
    assert preview.environments == ("preview",)
    assert default.environments == ("prod", "dev")
    assert {loc.cluster for loc in default.locations} == {"prod-eu1", "prod-us1", "dev1"}


def test_classification_counts_and_owners(acme: Inventory) -> None:
    counts = acme.classification_counts()
    assert set(counts) == {"bootstrap", "runtime", "derived", "config"}
    assert all(n > 0 for n in counts.values())
    assert sum(counts.values()) == len(acme.entries)
    owners = acme.owners()
    assert list(owners) == sorted(owners)
    assert sum(len(v) for v in owners.values()) == len(acme.entries)


def test_repository_without_platform_still_lists_intents(tmp_path: Path) -> None:
    (tmp_path / "i.yaml").write_text((BASE / "intents" / "app.yaml").read_text())
    inv = build_inventory(load_repository(tmp_path))
    assert inv.platform is None
    assert len(inv.entries) == 4
    assert all(e.locations == () and e.rotation is None for e in inv.entries)
    assert "(no platform)" in to_text(inv)
    to_html(inv)
    to_markdown(inv)


# ------------------------------------------------------------------------------------------------ data formats


def test_json_is_deterministic_and_sorted(acme: Inventory) -> None:
    first = to_json(acme)
    again = to_json(build_inventory(load_repository(ACME)))
    assert first == again
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert data["kind"] == "Inventory"
    assert data["platform"] == "acme"
    names = [s["name"] for s in data["secrets"]]
    assert names == sorted(names)
    assert data["summary"]["secrets"] == len(names)
    payments = next(s for s in data["secrets"] if s["name"] == "payments-db")
    assert payments["target"]["adminIntent"] == "pg-payments-admin"
    assert payments["rotation"]["ttl"] == "90d"
    assert payments["consumers"][0]["keys"] == {"DB_PASSWORD": "password", "DB_USER": "username"}
    assert {w["kind"] for s in data["secrets"] for w in s["workloads"]} == {
        "Deployment", "StatefulSet", "DaemonSet",
    }


def test_yaml_matches_dict(acme: Inventory) -> None:
    assert yaml.safe_load(to_yaml(acme)) == to_dict(acme)


def test_only_key_names_and_generator_kinds_are_shown(tmp_path: Path) -> None:
    """The inventory names keys and generator kinds; generator parameters (even a declared user name) stay in
    intent, so nothing value-like reaches a report."""
    repo = _write_repo(tmp_path, """\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: svc}
        spec:
          owner: team-a
          purpose: a service login
          classification: runtime
          source:
            generate:
              username: {type: fixed-name, name: zz_declared_user}
              password: {type: password, length: 77}
        """)
    inv = build_inventory(load_repository(repo))
    text = to_json(inv) + to_yaml(inv) + to_markdown(inv) + to_html(inv) + to_text(inv)
    assert "fixed-name" in text and "username" in text
    assert "zz_declared_user" not in text
    assert "77" not in text


# ------------------------------------------------------------------------------------------------ text and markdown


def test_text_lists_every_secret(acme: Inventory) -> None:
    text = to_text(acme)
    assert text.startswith("Inventory of platform acme: 14 secrets")
    for e in acme.entries:
        assert e.name in text
    assert "StatefulSet/invoice-runner" in text
    assert "\x1b[" not in text  # plain text, no colour codes
    assert text_renderable(acme) is not None


@pytest.mark.parametrize("wide", [False, True], ids=["text", "wide"])
def test_text_puts_each_consumers_restarts_on_its_own_line(acme: Inventory, wide: bool) -> None:
    # The RESTARTS column once listed an entry's workloads sorted apart from its consumers: billing/orders-db
    # stood beside Deployment/report-builder, which only reporting restarts.
    rows = [line.split() for line in to_text(acme, wide=wide).splitlines()]
    for e in acme.entries:
        for c in e.consumers:
            ref = f"{c.namespace}/{c.secret_name}"
            first = c.restart[0].ref if c.restart else "-"
            assert any(ref in row and row[row.index(ref) + 1] == first for row in rows), (e.name, ref)
    billing = next(row for row in rows if "billing/orders-db" in row)
    assert "StatefulSet/invoice-runner" in billing and "Deployment/report-builder" not in billing
    catalog = next(row for row in rows if "catalog/search-endpoint" in row)
    assert "Deployment/catalog-api" in catalog and "Deployment/storefront" not in catalog


@pytest.mark.parametrize("width", [160, 60])
def test_piped_text_never_breaks_a_name(acme: Inventory, width: int) -> None:
    for wide in (False, True):
        words = set(to_text(acme, width, wide=wide).split())
        for e in acme.entries:
            assert e.name in words
            assert {f"{c.namespace}/{c.secret_name}" for c in e.consumers} <= words, e.name
            assert {w.ref for w in e.workloads} <= words, e.name
            if wide:
                assert set(e.vault_paths) <= words, e.name
    assert "bootstrap/registry-pull.sops.yaml" in to_text(acme, wide=True)


def test_cli_pipes_whole_names_paired_with_their_workloads() -> None:
    from tests.conftest import run_cli

    result = run_cli("inventory", str(ACME))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert any("web-preview/preview-api-token" in x and "Deployment/storefront-preview" in x for x in lines)
    assert any("billing/orders-db " in x and "StatefulSet/invoice-runner" in x for x in lines)


def test_markdown_tables(base: Inventory) -> None:
    md = to_markdown(base)
    assert md.startswith("# Secret inventory: corpus")
    assert "| secret | class | owner | purpose | environments | rotation | source | target |" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`app-db`", "`orders-db-app`", "`orders-db-endpoint`",
                                                        "`pg-admin`"]
    # every table row has as many cells as its header
    for block in re.findall(r"((?:^\|.*\|\n)+)", md, flags=re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block
    assert "| app-db | prod | prod-eu1 | secret/prod/team-app/app-db |" in md
    assert "```mermaid\nflowchart LR" in md


def test_markdown_escapes_cells(tmp_path: Path) -> None:
    repo = _write_repo(tmp_path, """\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: piped}
        spec:
          owner: team-a
          purpose: "a | pipe and <b>markup</b>"
          classification: runtime
          source: {generate: {token: {type: token}}}
        """)
    md = to_markdown(build_inventory(load_repository(repo)))
    assert "a \\| pipe and &lt;b&gt;markup&lt;/b&gt;" in md
    assert "<b>" not in md


# ------------------------------------------------------------------------------------------------ graph and HTML


def test_graph_columns(base: Inventory) -> None:
    graph = build_graph(base)
    assert [n.label for n in graph.column(0)][:1] == ["app-db"]
    assert {n.label for n in graph.column(0)} == {e.name for e in base.entries}
    assert {n.label for n in graph.column(1)} == {"app", "reporting"}
    assert [n.label for n in graph.column(2)] == ["app-api"]
    assert {(e.source, e.target) for e in graph.edges} == {
        ("s:app-db", "n:app"), ("n:app", "w:app/Deployment/app-api"),
        ("s:orders-db-app", "n:reporting"), ("s:orders-db-endpoint", "n:reporting"),
    }


def test_svg_is_well_formed_and_deterministic(acme: Inventory) -> None:
    svg = to_svg(build_graph(acme))
    assert svg == to_svg(build_graph(build_inventory(load_repository(ACME))))
    root = ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    texts = {t.text for t in root.iter(f"{ns}text")}
    for e in acme.entries:
        assert e.name in texts
    assert {"payments", "billing", "invoice-runner", "fluent-bit"} <= texts
    # one path per edge, and every node is a rect
    graph = build_graph(acme)
    assert len(list(root.iter(f"{ns}path"))) == len(graph.edges)
    assert len(list(root.iter(f"{ns}rect"))) == len(graph.nodes)


def _page_json(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="inv-data">(.*?)</script>', page, flags=re.S)
    assert match, "the page carries its data for the script"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_html_carries_the_graph_data_and_is_deterministic(acme: Inventory) -> None:
    page = to_html(acme)
    assert page.startswith("<!DOCTYPE html>")
    assert page == to_html(build_inventory(load_repository(ACME)))
    data = _page_json(page)
    assert [s["n"] for s in data["secrets"]] == [e.name for e in acme.entries]  # index-aligned with the rows
    payments = next(s for s in data["secrets"] if s["n"] == "payments-db")
    assert payments["o"] == "team-payments" and ["payments", "payments-db", [["Deployment", "payments-api"],
                                                                             ["Deployment", "payments-worker"]]] \
        in payments["k"]
    assert page.count("<tr><td><a href=\"#secret-") == len(acme.entries)
    for label in ("team-payments", "invoice-runner", "fluent-bit", "smtp-relay"):
        assert label in page
    assert "flowchart LR" in page  # Mermaid source alongside, for a small inventory


def test_html_is_offline_by_policy(acme: Inventory) -> None:
    """No external resource, and a CSP that forbids any fetch and allows exactly the page's own inline style
    and scripts, by hash (a changed script without a changed hash would not run: the browser test shows it)."""
    page = to_html(acme)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page and "@font-face" not in page
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";"))
    assert directives["default-src"] == "'none'"
    assert "unsafe-inline" not in policy.group(1) and "http" not in policy.group(1)
    inline_scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    assert len(inline_scripts) == 2 and len(styles) == 1

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert directives["script-src"].split() == [sha(s) for s in inline_scripts]
    assert directives["style-src"] == sha(styles[0])
    assert ' style="' not in page  # inline style attributes would need 'unsafe-inline'


def test_html_escapes_everything(tmp_path: Path) -> None:
    repo = _write_repo(tmp_path, """\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: evil}
        spec:
          owner: team-a
          purpose: "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
          classification: runtime
          source: {generate: {token: {type: token}}}
        """)
    inv = build_inventory(load_repository(repo))
    assert len(inv.entries) == 1
    page = to_html(inv)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img" in page
    assert "<img" not in page
    assert page.count("<script>") == 2  # only the page's own scripts
    assert _page_json(page)["secrets"][0]["p"] == "<script>alert('x')</script> & <img src=x onerror=alert(1)>"


def test_html_escapes_hostile_names_in_svg() -> None:
    from chamberlain.inventory.model import Consumer, Entry, Source, Workload

    hostile = 'x"><script>alert(1)</script>'
    inv = Inventory(
        platform="p&q",
        environments=(),
        entries=(
            Entry(
                name=hostile, owner="o<o", purpose="p", classification="runtime", environments=(),
                locations=(), rotation=None, source=Source("generate", ("k",), "d"), target=None,
                consumers=(Consumer("ns<1>", "s", None, (Workload("ns<1>", "Deployment", "w&w"),)),),
                file="f", line=1,
            ),
        ),
    )
    page = to_html(inv)
    assert "<script>alert" not in page
    assert "p&amp;q" in page and "ns&lt;1&gt;" in page and "w&amp;w" in page
    assert _page_json(page)["secrets"][0]["n"] == hostile  # escaped in the JSON, the same text once parsed
    ET.fromstring(to_svg(build_graph(inv)))  # noqa: S314 - still well-formed XML
    mermaid = to_mermaid(build_graph(inv))
    assert "<script>" not in mermaid and '">' not in mermaid


def test_large_inventory_omits_the_mermaid_source(acme: Inventory) -> None:
    page = to_html(acme, max_mermaid_secrets=3)
    assert "flowchart LR" not in page
    assert 'id="graph"' in page  # the drawn graph covers any size: it shows the selection
    assert "payments-db" in page


def test_the_inventory_is_built_with_the_cyclic_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building and flattening the inventory allocates a few objects per intent and frees none: with the collector
    running, its full collections walked everything again and again (10k intents cost twice as much per intent as
    1k, 50k three times). Both builds run with it paused and switch it back on after."""
    import gc

    from chamberlain.inventory import formats, model

    seen: list[bool] = []
    entry, consumer = model._entry, formats._consumer_dict
    monkeypatch.setattr(model, "_entry", lambda *a: (seen.append(gc.isenabled()), entry(*a))[1])
    monkeypatch.setattr(formats, "_consumer_dict", lambda c: (seen.append(gc.isenabled()), consumer(c))[1])
    assert gc.isenabled()
    to_dict(build_inventory(load_repository(ACME)))
    assert seen and not any(seen)
    assert gc.isenabled()


def test_repository_text_is_never_read_as_console_markup(tmp_path: Path) -> None:
    """Review: a purpose holding "[/red]" made `inventory -o wide` an internal error (rich's MarkupError)."""
    import shutil

    from tests.conftest import run_cli

    repo = tmp_path / "repo"
    shutil.copytree(ACME, repo)
    intents = sorted((repo / "intents").glob("*.yaml"))[0]
    text = intents.read_text()
    start = text.index("purpose:")
    end = text.index("\n", start)
    intents.write_text(text[:start] + 'purpose: "Key [bold]x[/] [/red] evil"' + text[end:])
    for args in ((), ("-o", "wide")):
        result = run_cli("inventory", str(repo), *args)
        assert result.code == 0, result.out + result.err
        assert "internal error" not in result.err
    assert "[/red]" in run_cli("inventory", str(repo), "-o", "wide").out
