"""Templated consumer Secrets (CH115-CH118) and property names (CH119): the parser, the checks on the corpus
repository, the rendered ExternalSecret and policy, and the consumers propagation waits for. Pure (no servers);
the real ESO is in tests/lab/test_templated_secrets.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from chamberlain import wellknown as wk
from chamberlain.checks import run_checks
from chamberlain.intent import properties
from chamberlain.intent.loader import load_repository
from chamberlain.intent.templates import Literal, Reference, TemplateSyntaxError, parse, templated_readers
from chamberlain.propagation import ConsumerRef
from chamberlain.render.eso import external_secret, go_template
from chamberlain.render.topology import RenderError, build_topology
from chamberlain.render.vault_bundle import bundle
from chamberlain.rotation import manual as rm
from tests.conftest import CORPUS

DSN = ("postgresql://{orders-db-app.username}:{orders-db-app.password}@{orders-db-endpoint.host}:"
       "{orders-db-endpoint.port}/db")


# ------------------------------------------------------------------------------------------------ parser


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("{a.b}", [Reference("a", "b")], id="reference"),
    pytest.param("x{a.ca.crt}y", [Literal("x"), Reference("a", "ca.crt"), Literal("y")], id="dotted-key"),
    pytest.param("{{literal}}", [Literal("{literal}")], id="doubled-braces"),
    pytest.param('say "hi" \\ {{ .Values }}', [Literal('say "hi" \\ { .Values }')], id="go-syntax-is-text"),
])
def test_parse(text: str, expected: list[object]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("{a.b", id="unclosed"), pytest.param("a}b", id="unmatched-close"),
    pytest.param("{ab}", id="no-key"), pytest.param("{A_B.c}", id="bad-intent"),
    pytest.param("{a.b c}", id="bad-key"), pytest.param("x\ny", id="newline"),
    pytest.param("{a.b | upper}", id="no-functions"),
])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        parse(text)


# A rendered template is only our two action shapes: a quoted Go string constant or an index of a fetched key.
_ACTIONS = re.compile(r'(\{\{ "(?:[^"\\]|\\.)*" \}\}'
                      r'|\{\{ index \. "_chamberlain-part\.[a-z0-9-]+\.[-._a-zA-Z0-9]+" \}\})*')


@pytest.mark.parametrize("text", [
    DSN,
    '{{ {{ index . "_chamberlain-custom-metadata" }} }}',  # a user trying to read the metadata map
    '}}{{ "\\" }}{{ .Secrets | toJson }}{{a.b}}',
    "ünïcødé {a.b} \"quoted\" \\back\\",
])
def test_rendered_go_template_contains_no_user_action(text: str) -> None:
    rendered = go_template(text)
    assert _ACTIONS.fullmatch(rendered), rendered
    # and the constants decode back to the literal text
    literals = [re.sub(r"\\(.)", r"\1", m) for m in re.findall(r'\{\{ "((?:[^"\\]|\\.)*)" \}\}', rendered)]
    assert "".join(literals) == "".join(s.text for s in parse(text) if isinstance(s, Literal))


# ------------------------------------------------------------------------------------------------ checks


def _repo(tmp_path: Path, extra: str, app_consumers: str = "") -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    if app_consumers:
        f = repo / "intents" / "app.yaml"
        text = f.read_text()
        anchor = "    - {namespace: reporting, secretName: orders-db}\n"
        assert anchor in text
        f.write_text(text.replace(anchor, anchor + app_consumers, 1))
    if extra:
        (repo / "intents" / "extra.yaml").write_text(extra)
    return repo


def _findings(repo: Path) -> list[tuple[str, str, int | None]]:
    return [(f.rule, f.file, f.line) for f in run_checks(load_repository(repo))]


TEMPLATED = ("    - namespace: reporting\n      secretName: orders-dsn\n      template:\n"
             f"        DSN: \"{DSN}\"\n")


def test_a_valid_template_validates_clean(tmp_path: Path) -> None:
    assert _findings(_repo(tmp_path, "", TEMPLATED)) == []


@pytest.mark.parametrize(("template", "rule"), [
    pytest.param("postgresql://{orders-db-app.username", "CH115", id="syntax"),
    pytest.param("postgresql://{orders-db-app.username}:hunter2XyZ@{orders-db-endpoint.host}", "CH115",
                 id="smuggled-password"),
    pytest.param("{orders-db-ap.password}", "CH116", id="unknown-intent"),
    pytest.param("{orders-db-endpoint.database}", "CH116", id="unknown-key"),
    pytest.param("{app-db.password}", "CH117", id="not-granted"),
])
def test_template_findings(tmp_path: Path, template: str, rule: str) -> None:
    consumer = ("    - namespace: reporting\n      secretName: orders-dsn\n      template:\n"
                f"        DSN: \"{template}\"\n")
    found = _findings(_repo(tmp_path, "", consumer))
    if template.count(":") > 1 and "hunter2" in template:  # the repository-wide credential scan sees it too
        found = [f for f in found if f[0] not in ("CH020", "CH024")]
    assert found == [(rule, "intents/app.yaml", 51)], found


ATTACKER = """apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: team-b-harmless}
spec:
  owner: team-b
  purpose: a team that wants pg-admin's password in its own namespace
  classification: runtime
  source:
    generate:
      token: {type: token}
  rotation: {type: static}
  consumers:
    - namespace: team-b
      secretName: grab
      template:
        LOOT: "{pg-admin.password}"
"""


def test_a_template_cannot_pull_another_teams_secret(tmp_path: Path) -> None:
    repo = _repo(tmp_path, ATTACKER)
    found = [f for f in run_checks(load_repository(repo)) if f.rule == "CH117"]
    assert [(f.file, f.line) for f in found] == [("intents/extra.yaml", 16)]
    assert "pg-admin" in found[0].message and "team-b" in found[0].message
    loaded = load_repository(repo)
    assert loaded.platform is not None
    with pytest.raises(RenderError, match="CH117"):  # render refuses it too: no policy grants pg-admin to team-b
        build_topology(loaded.platform, [p.obj for p in loaded.policies], [i.obj for i in loaded.intents])


def test_a_part_missing_from_an_environment_is_ch118(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "", TEMPLATED)
    f = repo / "intents" / "app.yaml"
    text = f.read_text()
    anchor = "  purpose: Host and port of the orders database for other namespaces\n"
    f.write_text(text.replace(anchor, anchor + "  environments: [prod]\n"))
    assert ("CH118", "intents/app.yaml", 51) in _findings(repo)


def test_keys_and_template_together_is_a_schema_error(tmp_path: Path) -> None:
    consumer = TEMPLATED.replace("      template:\n", "      keys: {U: username}\n      template:\n")
    assert [r for r, _, _ in _findings(_repo(tmp_path, "", consumer))] == ["CH003"]


# ------------------------------------------------------------------------------------------------ render


def _topology(tmp_path: Path) -> object:
    loaded = load_repository(_repo(tmp_path, "", TEMPLATED))
    assert loaded.platform is not None
    return build_topology(loaded.platform, [p.obj for p in loaded.policies], [i.obj for i in loaded.intents])


def test_the_external_secret_fetches_exactly_the_references_with_a_marker_per_part(tmp_path: Path) -> None:
    topo = _topology(tmp_path)
    unit = next(u for u in topo.units if u.environment == "dev")  # type: ignore[attr-defined]
    read = next(r for r in unit.reads["reporting"] if r.consumer.secret_name == "orders-dsn")
    es = external_secret(read, "dev")
    spec = es["spec"]
    fetched = {(e["remoteRef"]["key"], e["remoteRef"].get("property", "metadata"),
                e.get("sourceRef", {}).get("storeRef", {}).get("name")) for e in spec["data"]}
    app, endpoint = "dev/dev1/databases/orders-db-app", "dev/dev1/databases/orders-db-endpoint"
    config = "chamberlain-dev-platform-config"
    assert fetched == {(app, "username", None), (app, "password", None), (app, "metadata", None),
                       (endpoint, "host", config), (endpoint, "port", config), (endpoint, "metadata", config)}
    assert spec["secretStoreRef"]["name"] == "chamberlain-dev-platform-data"
    template = spec["target"]["template"]
    assert template["mergePolicy"] == "Replace" and template["engineVersion"] == "v2"
    assert set(template["data"]) == {"DSN"}
    assert set(template["metadata"]["annotations"]) == {
        wk.ANNOTATION_VERSION_MARKER, wk.part_marker_annotation("orders-db-app"),
        wk.part_marker_annotation("orders-db-endpoint")}
    assert template["metadata"]["labels"] == {wk.LABEL_INTENT: "orders-db-app"}


def test_the_reader_policy_grants_only_the_parts(tmp_path: Path) -> None:
    files = bundle(_topology(tmp_path))  # type: ignore[arg-type]
    policy = files["policies/chamberlain.dev.dev1.reporting.reader.hcl"]
    paths = set(re.findall(r'path "([^"]+)"', policy))
    assert paths == {f"{m}/{area}/dev/dev1/databases/{n}" for area in ("data", "metadata")
                     for m, n in (("platform-data", "orders-db-app"), ("platform-config", "orders-db-endpoint"))}


# ------------------------------------------------------------------------------------------------ propagation


def test_a_change_of_either_part_waits_for_its_own_annotation(tmp_path: Path) -> None:
    loaded = load_repository(_repo(tmp_path, "", TEMPLATED))
    assert loaded.platform is not None
    intents = {i.obj.metadata.name: i.obj for i in loaded.intents}
    endpoint = rm.place(loaded.platform, intents["orders-db-endpoint"], "dev", None)
    refs = [c.secret for c in rm.placed_consumers(loaded.platform, intents, endpoint)]
    assert refs == [ConsumerRef("reporting", "orders-db-endpoint"),
                    ConsumerRef("reporting", "orders-dsn", wk.part_marker_annotation("orders-db-endpoint"))]
    app = rm.place(loaded.platform, intents["orders-db-app"], "dev", None)
    assert [c.secret for c in rm.placed_consumers(loaded.platform, intents, app)] == [
        ConsumerRef("reporting", "orders-db"), ConsumerRef("reporting", "orders-dsn")]  # its own: classic marker
    # an environment the templated consumer is not placed in has no templated reader
    only_prod = intents["orders-db-app"].model_copy(update={"spec": intents["orders-db-app"].spec.model_copy(
        update={"environments": ["prod"]})})
    assert templated_readers(loaded.platform, [only_prod, intents["orders-db-endpoint"]],
                             "orders-db-endpoint", "dev") == []


def test_in_sync_reads_the_part_annotation() -> None:
    from chamberlain.propagation import in_sync

    part = wk.part_marker_annotation("orders-db-endpoint")
    annotations = {wk.ANNOTATION_VERSION_MARKER: "a", part: "b"}
    assert in_sync(annotations, "b", part) and not in_sync(annotations, "b")


# ------------------------------------------------------------------------------------------------ CH119


@pytest.mark.parametrize(("key", "expected"), [
    ("username", None), ("user", "username"), ("Password", "password"), ("tls_crt", "tls.crt"),
    ("url", "uri"), ("hostname", "host"), ("cacert", "ca.crt"), ("hmac", None), ("cookie-key", None),
    ("key", None), ("user.crt", None), (".dockerconfigjson", None),
])
def test_conventional_name(key: str, expected: str | None) -> None:
    assert properties.conventional_name(key) == expected


def test_a_deviation_warns_until_declared(tmp_path: Path) -> None:
    text = ("apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: extra}\nspec:\n"
            "  owner: team-app\n  purpose: test\n  classification: runtime\n  source:\n    generate:\n"
            "      user: {type: fixed-name, name: app}\n      pass: {type: password}\n  rotation: {type: static}\n")
    repo = _repo(tmp_path, text)
    found = [f for f in run_checks(load_repository(repo)) if f.rule == "CH119"]
    assert [(f.line, f.severity) for f in found] == [(10, "warning"), (11, "warning")]
    assert found[0].message.endswith("declare the deviation: spec.propertyNames: {user: username}")
    (repo / "intents" / "extra.yaml").write_text(text + "  propertyNames: {user: username, pass: pass}\n")
    assert [f for f in run_checks(load_repository(repo)) if f.rule == "CH119"] == []
    (repo / "intents" / "extra.yaml").write_text(text + "  propertyNames: {user: username, pass: pwd, gone: uri}\n")
    stale = [f.subject for f in run_checks(load_repository(repo)) if f.rule == "CH119"]
    assert stale == ["gone", "pass"]


def test_the_examples_have_no_property_name_warnings() -> None:
    from tests.conftest import EXAMPLES

    for example in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        assert [f.message for f in run_checks(load_repository(example)) if f.rule == "CH119"] == []


def test_a_templated_consumer_in_an_ephemeral_environment_is_ch118(tmp_path: Path) -> None:
    own = ATTACKER.replace('LOOT: "{pg-admin.password}"', 'TOKEN: "Bearer {team-b-harmless.token}"')
    static = "  rotation: {type: static}\n"
    repo = _repo(tmp_path, own.replace(static, "  environments: [preview]\n" + static))
    platform = repo / "platform.yaml"
    text = platform.read_text()
    anchor = "    - {name: dev, clusters: [dev1]}\n"
    platform.write_text(text.replace(anchor, anchor + "    - {name: preview, clusters: [dev1], ephemeral: true}\n"))
    assert [(r, f) for r, f, _ in _findings(repo)] == [("CH118", "intents/extra.yaml")]


def test_status_counts_a_templated_consumer_by_its_part_annotation(tmp_path: Path) -> None:
    """``chamberlain status`` and the controller's consumer count (rotation.manual.consumer_sync), on FakeKube."""
    from chamberlain.kube.fake import FakeKube

    loaded = load_repository(_repo(tmp_path, "", TEMPLATED))
    assert loaded.platform is not None
    intents = [i.obj for i in loaded.intents]
    endpoint = next(i for i in intents if i.metadata.name == "orders-db-endpoint")
    kube = FakeKube()
    kube.create_secret("reporting", "orders-db-endpoint", {}, annotations={wk.ANNOTATION_VERSION_MARKER: "e2"})
    kube.create_secret("reporting", "orders-dsn", {}, annotations={
        wk.ANNOTATION_VERSION_MARKER: "a1", wk.part_marker_annotation("orders-db-app"): "a1",
        wk.part_marker_annotation("orders-db-endpoint"): "e1"})
    templated = templated_readers(loaded.platform, intents, "orders-db-endpoint", "dev")
    rows = rm.consumer_sync(kube, endpoint, "e2", None, templated)
    assert [(r["secret"], r["inSync"]) for r in rows] == [("orders-db-endpoint", True), ("orders-dsn", False)]
    assert [r["inSync"] for r in rm.consumer_sync(kube, endpoint, "e1", None, templated)] == [False, True]
