"""The renderer: layout, determinism, ESO object shapes, sync waves, conflicts and write_tree.

Helpers at the top (``render``, ``docs``, ``REPOS``) are shared by the other ``test_render_*`` modules.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.render import (
    MARKER,
    RenderedTree,
    RenderError,
    WriteResult,
    compare_output,
    naming,
    render_repository,
    write_tree,
)
from tests.conftest import CORPUS, EXAMPLES, REPO_ROOT

BASE = CORPUS / "base"
ACME = EXAMPLES / "acme"
REPOS = {"base": BASE, **({"acme": ACME} if (ACME / "platform.yaml").is_file() else {})}


@cache
def render(name: str) -> RenderedTree:
    return render_repository(load_repository(REPOS[name]))


def docs(tree: RenderedTree, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in the tree (kustomizations excluded), with its file. The decryption layer (encrypted
    bootstrap Secrets, the KSOPS generator, Flux Kustomizations) is tested in test_bootstrap_render.py."""
    for path in tree.paths():
        if not path.startswith(prefix) or not path.endswith(".yaml") or path.endswith("kustomization.yaml"):
            continue
        if path.startswith("flux/") or "/bootstrap/" in path or path.endswith("/ksops-bootstrap.yaml"):
            continue
        for doc in yaml.safe_load_all(tree[path]):
            if doc is not None:
                yield path, doc


def wave(doc: dict[str, Any]) -> int:
    return int(doc["metadata"]["annotations"][wk.ARGOCD_SYNC_WAVE])


def tree_digest(tree: RenderedTree) -> str:
    h = hashlib.sha256()
    for path in tree.paths():
        h.update(path.encode() + b"\0" + tree[path].encode() + b"\0")
    return h.hexdigest()


def write_repo(root: Path, platform_extra: str = "", intents: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "platform.yaml").write_text((BASE / "platform.yaml").read_text() + platform_extra)
    (root / "intents.yaml").write_text(textwrap.dedent(intents))
    return root


# --------------------------------------------------------------------------------------------------- layout


def test_base_layout() -> None:
    paths = set(render("base").paths())
    expected = {
        "crds/kustomization.yaml",
        "crds/chamberlain.dev_platforms.yaml",
        "crds/chamberlain.dev_rotationpolicies.yaml",
        "crds/chamberlain.dev_rotationruns.yaml",
        "crds/chamberlain.dev_secretintents.yaml",
        "clusters/prod-eu1/kustomization.yaml",
        "clusters/prod-eu1/namespaces.yaml",
        "clusters/prod-eu1/controller.yaml",
        "clusters/prod-eu1/platform.yaml",
        "clusters/prod-eu1/intents/team-app.yaml",
        "envs/prod/prod-eu1/kustomization.yaml",
        "envs/prod/prod-eu1/namespaces/app.yaml",
        "envs/prod/prod-eu1/namespaces/databases.yaml",
        "envs/prod/prod-eu1/namespaces/reporting.yaml",
        "envs/dev/dev1/kustomization.yaml",
        "vault/mounts.json",
        "vault/auth.json",
        "vault/policies/chamberlain.prod.prod-eu1.app.reader.hcl",
        "vault/policies/chamberlain.prod-eu1.orchestrator.hcl",
        "vault/auth/kubernetes-prod-eu1/roles/chamberlain.prod.prod-eu1.app.reader.json",
    }
    assert expected <= paths, sorted(expected - paths)


@pytest.mark.parametrize("name", sorted(REPOS))
def test_kustomizations_reference_existing_files_and_cover_every_manifest(name: str) -> None:
    tree = render(name)
    referenced: set[str] = set()
    for path in tree.paths():
        if not path.endswith("kustomization.yaml"):
            continue
        here = Path(path).parent
        for res in yaml.safe_load(tree[path])["resources"]:
            target = os.path.normpath(here / res)
            assert target in tree or f"{target}/kustomization.yaml" in tree, (path, res)
            referenced.add(target)
    manifests = {p for p, _ in docs(tree) if not p.startswith("vault/")}
    assert manifests <= referenced, sorted(manifests - referenced)


def test_one_environment_per_cluster_owns_cluster_wide_objects() -> None:
    if "acme" not in REPOS:
        pytest.skip("examples/acme is not there yet")
    tree = render("acme")
    dev = yaml.safe_load(tree["envs/dev/dev1/kustomization.yaml"])["resources"]
    preview = yaml.safe_load(tree["envs/preview/dev1/kustomization.yaml"])["resources"]
    assert "../../../clusters/dev1" in dev
    assert not any("clusters/" in r for r in preview)  # the ephemeral environment never owns the base


@pytest.mark.parametrize("name", sorted(REPOS))
def test_intents_are_applied_in_the_controller_namespace(name: str) -> None:
    tree = render(name)
    kinds = set()
    for path, doc in docs(tree, "clusters/"):
        if doc["apiVersion"] == "chamberlain.dev/v1alpha1":
            kinds.add(doc["kind"])
            assert doc["metadata"]["namespace"] == "chamberlain-system", path
            assert wave(doc) == naming.WAVE_INTENT
    assert kinds == {"Platform", "RotationPolicy", "SecretIntent"}


def test_intents_only_on_clusters_of_their_environments(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", intents="""\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: dev-only}
        spec:
          owner: team-a
          purpose: only in dev
          classification: runtime
          environments: [dev]
          source: {generate: {token: {type: token}}}
          consumers: [{namespace: web, secretName: dev-only}]
        """)
    tree = render_repository(load_repository(repo))
    assert "clusters/dev1/intents/team-a.yaml" in tree
    assert "clusters/prod-eu1/intents/team-a.yaml" not in tree
    assert "envs/dev/dev1/namespaces/web.yaml" in tree
    assert "envs/prod/prod-eu1/namespaces/web.yaml" not in tree


# -------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", sorted(REPOS))
def test_two_renders_write_identical_trees(name: str, tmp_path: Path) -> None:
    for out in ("one", "two"):
        write_tree(render_repository(load_repository(REPOS[name])), tmp_path / out)
    assert_same_dirs(tmp_path / "one", tmp_path / "two")


def assert_same_dirs(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    _, mismatch, errors = filecmp.cmpfiles(a, b, files_a, shallow=False)
    assert not mismatch and not errors


def test_output_does_not_depend_on_location_or_file_order(tmp_path: Path) -> None:
    # The same documents, reversed, split over differently named files, somewhere else on disk.
    moved = tmp_path / "elsewhere" / "intent-repo"
    moved.mkdir(parents=True)
    documents = [d for f in sorted(BASE.rglob("*.yaml")) for d in f.read_text().split("\n---\n")]
    for i, text in enumerate(reversed(documents)):
        (moved / f"z{i:02d}-{len(documents) - i}.yaml").write_text(text.strip() + "\n")
    original, relocated = render("base"), render_repository(load_repository(moved))
    assert original.files == relocated.files
    assert str(REPO_ROOT) not in "".join(original.files.values())


def test_output_does_not_depend_on_hash_seed() -> None:
    script = (
        "import hashlib, sys; from pathlib import Path\n"
        "from chamberlain.intent.loader import load_repository\n"
        "from chamberlain.render import render_repository\n"
        "t = render_repository(load_repository(Path(sys.argv[1])))\n"
        "h = hashlib.sha256()\n"
        "[h.update(p.encode() + b'\\0' + t[p].encode() + b'\\0') for p in t.paths()]\n"
        "print(h.hexdigest())\n"
    )
    repo = REPOS.get("acme", BASE)
    digests = set()
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, str(repo)], env=env, capture_output=True,
                             text=True, check=True, cwd=REPO_ROOT)
        digests.add(out.stdout.strip())
    assert digests == {tree_digest(render("acme" if "acme" in REPOS else "base"))}


@pytest.mark.parametrize("name", sorted(REPOS))
def test_text_is_plain_lf_utf8(name: str) -> None:
    for path, text in render(name).files.items():
        assert text.endswith("\n") and "\r" not in text and "\t" not in text, path


# ------------------------------------------------------------------------------------ labels and sync waves

_WAVES = {
    "CustomResourceDefinition": naming.WAVE_FOUNDATION,
    "Namespace": naming.WAVE_FOUNDATION,
    "ServiceAccount": naming.WAVE_IDENTITY,
    "Platform": naming.WAVE_INTENT,
    "RotationPolicy": naming.WAVE_INTENT,
    "SecretIntent": naming.WAVE_INTENT,
    "SecretStore": naming.WAVE_STORE,
    "PushSecret": naming.WAVE_SYNC,
    "ExternalSecret": naming.WAVE_SYNC,
    # the controller's installation (chamberlain.render.install)
    "Role": naming.WAVE_IDENTITY,
    "RoleBinding": naming.WAVE_IDENTITY,
    "Deployment": naming.WAVE_SYNC,
    "Service": naming.WAVE_SYNC,
    "PodDisruptionBudget": naming.WAVE_SYNC,
    "NetworkPolicy": naming.WAVE_SYNC,
    "ServiceMonitor": naming.WAVE_SYNC,
    "PrometheusRule": naming.WAVE_SYNC,
    "ConfigMap": naming.WAVE_SYNC,
    "ValidatingAdmissionPolicy": naming.WAVE_SYNC,
    "ValidatingAdmissionPolicyBinding": naming.WAVE_SYNC,
}


@pytest.mark.parametrize("name", sorted(REPOS))
def test_every_object_has_its_wave_and_labels(name: str) -> None:
    assert naming.WAVE_FOUNDATION < naming.WAVE_IDENTITY < naming.WAVE_INTENT < naming.WAVE_STORE
    assert naming.WAVE_STORE < naming.WAVE_SYNC
    for path, doc in docs(render(name)):
        meta = doc["metadata"]
        assert wave(doc) == _WAVES[doc["kind"]], (path, doc["kind"])
        assert meta["labels"][wk.MANAGED_BY] == "chamberlain", path
        if doc["kind"] in ("ExternalSecret", "PushSecret", "SecretIntent"):
            assert meta["labels"][wk.LABEL_INTENT]
            assert meta["labels"][wk.LABEL_CLASS] in ("bootstrap", "runtime", "derived", "config")
        if doc["kind"] in ("Namespace", "CustomResourceDefinition"):
            assert meta["annotations"][wk.ARGOCD_SYNC_OPTIONS] == "Delete=false,Prune=false"


# ------------------------------------------------------------------------------------------- ESO objects


def _by_kind(tree: RenderedTree, kind: str) -> list[dict[str, Any]]:
    return [d for _, d in docs(tree, "envs/") if d["kind"] == kind]


def test_external_secret_with_key_mapping() -> None:
    tree = render("base")
    es = yaml.safe_load_all(tree["envs/prod/prod-eu1/namespaces/app.yaml"])
    app_db = next(d for d in es if d["kind"] == "ExternalSecret")
    assert app_db["apiVersion"] == "external-secrets.io/v1"
    assert (app_db["metadata"]["name"], app_db["metadata"]["namespace"]) == ("app-db", "app")
    spec = app_db["spec"]
    assert spec["target"]["name"] == "app-db"
    assert spec["target"]["creationPolicy"] == "Owner"
    assert spec["refreshInterval"] == "1h"
    assert spec["secretStoreRef"] == {"kind": "SecretStore", "name": "chamberlain-prod-secret"}
    assert spec["data"][:2] == [
        {"secretKey": "DB_PASSWORD", "remoteRef": {"key": "prod/team-app/app-db", "property": "password"}},
        {"secretKey": "DB_USER", "remoteRef": {"key": "prod/team-app/app-db", "property": "username"}},
    ]
    # Last: the version marker, fetched from custom_metadata into an annotation (see test_render_eso).
    assert spec["data"][2]["remoteRef"] == {"key": "prod/team-app/app-db", "metadataPolicy": "Fetch"}
    assert "dataFrom" not in spec


def test_external_secret_without_mapping_extracts_everything() -> None:
    tree = render("base")
    objs = list(yaml.safe_load_all(tree["envs/dev/dev1/namespaces/reporting.yaml"]))
    orders = next(d for d in objs if d["kind"] == "ExternalSecret" and d["metadata"]["name"] == "orders-db")
    assert orders["spec"]["dataFrom"] == [{"extract": {"key": "dev/dev1/databases/orders-db-app"}}]
    assert orders["spec"]["secretStoreRef"]["name"] == "chamberlain-dev-platform-data"
    stores = {d["metadata"]["name"]: d for d in objs if d["kind"] == "SecretStore"}
    assert set(stores) == {"chamberlain-dev-platform-data", "chamberlain-dev-platform-config"}
    vault = stores["chamberlain-dev-platform-data"]["spec"]["provider"]["vault"]
    assert vault == {
        "server": "https://vault.vault.svc:8200",
        "path": "platform-data",
        "version": "v2",
        "auth": {"kubernetes": {
            "mountPath": "kubernetes-dev1",
            "role": "chamberlain.dev.dev1.reporting.reader",
            "serviceAccountRef": {"name": "chamberlain-dev-reader", "audiences": ["vault"]},
        }},
    }


def test_push_secrets_only_for_derived_and_config() -> None:
    tree = render("base")
    pushes = _by_kind(tree, "PushSecret")
    assert {p["metadata"]["labels"][wk.LABEL_CLASS] for p in pushes} == {"derived", "config"}
    assert len(pushes) == 4  # two intents x two clusters
    ps = next(p for p in pushes if p["metadata"]["name"] == "chamberlain-prod-publish-orders-db-app")
    assert ps["apiVersion"] == "external-secrets.io/v1alpha1"
    assert ps["metadata"]["namespace"] == "databases"
    spec = ps["spec"]
    assert spec["updatePolicy"] == "Replace" and spec["deletionPolicy"] == "None"
    assert spec["selector"] == {"secret": {"name": "orders-db-app"}}
    assert spec["secretStoreRefs"] == [{"kind": "SecretStore", "name": "chamberlain-prod-publish-orders-db-app"}]
    assert spec["data"] == [
        {"match": {"secretKey": k, "remoteRef": {"remoteKey": "prod/prod-eu1/databases/orders-db-app",
                                                   "property": k}}}
        for k in ("password", "username")
    ]


def test_publication_without_keys_pushes_the_whole_secret(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", intents="""\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {name: cache-auth}
        spec:
          owner: team-a
          purpose: operator-made credential
          classification: derived
          environments: [dev]
          source: {publication: {namespace: cache, secretName: cache-auth}}
        """)
    tree = render_repository(load_repository(repo))
    ps = [d for _, d in docs(tree) if d["kind"] == "PushSecret"]
    assert [p["spec"]["data"] for p in ps] == [[{"match": {"remoteRef": {"remoteKey": "dev/dev1/cache/cache-auth"}}}]]


def test_bootstrap_consumers_read_the_runtime_path() -> None:
    if "acme" not in REPOS:
        pytest.skip("examples/acme is not there yet")
    tree = render("acme")
    repo = load_repository(ACME)
    boot = {i.obj.metadata.name for i in repo.intents if i.obj.spec.classification == "bootstrap"}
    assert boot
    ext = [d for d in _by_kind(tree, "ExternalSecret") if d["metadata"]["labels"][wk.LABEL_INTENT] in boot]
    assert ext
    for d in ext:
        assert d["metadata"]["annotations"][wk.ANNOTATION_VAULT_PATH].startswith("secret/")
    # No plaintext Secret is rendered: bootstrap Secrets only as their SOPS files (the KSOPS/Flux layer).
    assert not any(d["kind"] == "Secret" for _, d in docs(tree))


@pytest.mark.parametrize("name", sorted(REPOS))
def test_every_store_reference_resolves_in_its_namespace(name: str) -> None:
    tree = render(name)
    for path in tree.paths():
        if "/namespaces/" not in path:
            continue
        objs = list(yaml.safe_load_all(tree[path]))
        stores = {d["metadata"]["name"] for d in objs if d["kind"] == "SecretStore"}
        accounts = {d["metadata"]["name"] for d in objs if d["kind"] == "ServiceAccount"}
        for d in objs:
            if d["kind"] == "ExternalSecret":
                assert d["spec"]["secretStoreRef"]["name"] in stores, path
            elif d["kind"] == "PushSecret":
                assert {r["name"] for r in d["spec"]["secretStoreRefs"]} <= stores, path
            elif d["kind"] == "SecretStore":
                ref = d["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["name"]
                assert ref in accounts, path


# ----------------------------------------------------------------------------------------------- conflicts

_CONSUMER = """\
    apiVersion: chamberlain.dev/v1alpha1
    kind: SecretIntent
    metadata: {{name: {name}}}
    spec:
      owner: team-a
      purpose: p
      classification: runtime
      environments: [{envs}]
      source: {{generate: {{token: {{type: token}}}}}}
      consumers: [{{namespace: web, secretName: shared}}]
    """


def test_two_intents_materializing_one_secret_are_refused(tmp_path: Path) -> None:
    intents = _CONSUMER.format(name="one", envs="dev") + "---\n" + _CONSUMER.format(name="two", envs="dev")
    repo = write_repo(tmp_path / "r", intents=intents)
    with pytest.raises(RenderError, match="ExternalSecret web/shared on cluster dev1"):
        render_repository(load_repository(repo))


def test_two_environments_on_one_cluster_materializing_one_secret_are_refused(tmp_path: Path) -> None:
    platform_extra = textwrap.dedent("""\
        ---
        apiVersion: chamberlain.dev/v1alpha1
        kind: RotationPolicy
        metadata: {name: unused}
        spec: {type: static}
        """)
    repo = write_repo(tmp_path / "r", platform_extra=platform_extra,
                      intents=_CONSUMER.format(name="one", envs="prod, dev"))
    # Move prod onto the dev cluster: one namespace, one Secret name, two environments.
    text = (repo / "platform.yaml").read_text().replace("clusters: [prod-eu1]", "clusters: [dev1]")
    (repo / "platform.yaml").write_text(text)
    with pytest.raises(RenderError, match="defined twice"):
        render_repository(load_repository(repo))


def test_no_platform_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with pytest.raises(RenderError, match="exactly one Platform"):
        render_repository(load_repository(tmp_path / "r"))


# ----------------------------------------------------------------------------------------------- kustomize


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("name", sorted(REPOS))
def test_every_application_builds_with_kustomize(name: str, tmp_path: Path) -> None:
    write_tree(render(name), tmp_path)
    apps = sorted(p.parent for p in (tmp_path / "envs").glob("*/*/kustomization.yaml"))
    assert apps
    for app in apps:
        if shutil.which("ksops") is None:  # the KSOPS generator needs the plugin; build the rest without it
            kfile = app / "kustomization.yaml"
            kdoc = yaml.safe_load(kfile.read_text())
            kdoc.pop("generators", None)
            kdoc.pop("patches", None)
            kfile.write_text(yaml.safe_dump(kdoc))
        out = subprocess.run(["kubectl", "kustomize", str(app)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        built = [d for d in yaml.safe_load_all(out.stdout) if d]
        ids = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in built]
        assert len(ids) == len(set(ids)), app


# ----------------------------------------------------------------------------------------------- write_tree


def _tree(files: dict[str, str]) -> RenderedTree:
    return RenderedTree(files)


def test_write_tree_creates_marker_and_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = write_tree(_tree({"a/b.yaml": "x: 1\n", "c.json": "{}\n"}), out)
    assert result.written == 2 and result.removed == 0
    assert (out / "a" / "b.yaml").read_text() == "x: 1\n"
    assert (out / MARKER).read_text().splitlines()[-2:] == ["a/b.yaml", "c.json"]
    assert (out / "a" / "b.yaml").stat().st_mode & 0o777 == 0o644


def test_write_tree_removes_only_its_own_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"keep.yaml": "k\n", "old/gone.yaml": "g\n"}), out)
    (out / "user-notes.txt").write_text("mine\n")
    result = write_tree(_tree({"keep.yaml": "k\n", "new.yaml": "n\n"}), out)
    assert result == type(result)(written=1, unchanged=1, removed=1)
    assert not (out / "old").exists()  # emptied directories go too
    assert (out / "user-notes.txt").read_text() == "mine\n"


def test_write_tree_does_not_touch_unchanged_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"a.yaml": "a\n"}), out)
    before = (out / "a.yaml").stat()
    result = write_tree(_tree({"a.yaml": "a\n"}), out)
    after = (out / "a.yaml").stat()
    assert result.unchanged == 1 and result.written == 0
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_a_re_render_rewrites_the_marker_only_when_its_list_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"a.yaml": "a\n"}), out)
    before = (out / MARKER).stat()
    write_tree(_tree({"a.yaml": "b\n"}), out)  # a file changed, the list did not
    after = (out / MARKER).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    write_tree(_tree({"a.yaml": "b\n", "c.yaml": "c\n"}), out)
    assert (out / MARKER).read_text().splitlines()[-2:] == ["a.yaml", "c.yaml"]
    with (out / MARKER).open("a") as fh:  # a line nobody rendered: the next render writes the list clean
        fh.write("../elsewhere.txt\n")
    write_tree(_tree({"a.yaml": "b\n", "c.yaml": "c\n"}), out)
    assert "elsewhere" not in (out / MARKER).read_text()
    write_tree(_tree({"a.yaml": "b\n"}), out)  # a path gone: the list is written without it
    assert (out / MARKER).read_text().splitlines()[-1] == "a.yaml" and not (out / "c.yaml").exists()


@pytest.mark.parametrize("damage", ["crlf", "symlink", "not-utf8"])
def test_a_re_render_repairs_a_marker_check_would_report(tmp_path: Path, damage: str) -> None:
    """Same list, other bytes (a checkout with CRLF line endings) or not a plain file: written again, so
    ``render --check`` finds the output fresh."""
    tree = _tree({"a.yaml": "a\n"})
    out = tmp_path / "out"
    write_tree(tree, out)
    text = (out / MARKER).read_bytes()
    if damage == "crlf":
        (out / MARKER).write_bytes(text.replace(b"\n", b"\r\n"))
    elif damage == "not-utf8":
        (out / MARKER).write_bytes(b"\xff\xfe" + text)
    else:
        (tmp_path / "copy").write_bytes(text)
        (out / MARKER).unlink()
        (out / MARKER).symlink_to(tmp_path / "copy")
    write_tree(tree, out)
    assert not (out / MARKER).is_symlink() and (out / MARKER).read_bytes() == text
    assert compare_output(tree, out).fresh


def test_write_tree_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "important.txt").write_text("do not lose\n")
    with pytest.raises(UsageError, match="not empty"):
        write_tree(_tree({"a.yaml": "a\n"}), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["important.txt"]


def test_write_tree_says_how_to_render_into_a_repository_that_holds_other_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("ours\n")
    with pytest.raises(UsageError, match=r"a new subdirectory .*chamberlain"):
        write_tree(_tree({"a.yaml": "a\n"}), tmp_path)


def test_a_git_repository_with_nothing_else_in_it_takes_a_render(tmp_path: Path) -> None:
    """New user: `git init out && chamberlain render REPO -o out/ && git -C out add -A && git -C out commit` was
    refused because of the .git directory alone."""
    out = tmp_path / "gitops"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    tree = _tree({"a.yaml": "a\n"})
    write_tree(tree, out)
    assert (out / "a.yaml").read_text() == "a\n" and (out / ".git" / "HEAD").is_file()
    assert compare_output(tree, out).fresh  # Git's database is not an extra file of the render


def test_write_tree_refuses_a_file_as_output(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError):
        write_tree(_tree({"a.yaml": "a\n"}), tmp_path / "f")


def test_an_output_directory_the_file_system_refuses_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r"cannot write the render into .*f/sub: Not a directory\. Nothing was"):
        write_tree(_tree({"a.yaml": "a\n"}), tmp_path / "f" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_directory_where_a_rendered_file_goes_is_named_not_the_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"a.yaml": "a\n", "b.yaml": "b\n"}), out)
    (out / "a.yaml").unlink()
    (out / "a.yaml").mkdir()
    with pytest.raises(UsageError, match=r"Is a directory at .*/out/a\.yaml\. ") as caught:
        write_tree(_tree({"a.yaml": "a2\n", "b.yaml": "b\n"}), out)
    assert ".tmp" not in str(caught.value)


def test_a_render_the_file_system_stops_halfway_names_the_path_and_converges_once_fixed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tree = _tree({"a.yaml": "a\n", "b/c.yaml": "c\n", "d.yaml": "d\n"})
    write_tree(tree, out)
    shutil.rmtree(out / "b")
    (out / "b").write_text("in the way\n")  # a file where the render needs a directory
    refused = r"a file is where the render needs a directory at .*/b\. .*listed in its marker; render again"
    with pytest.raises(UsageError, match=refused) as caught:
        write_tree(_tree({"a.yaml": "a2\n", "b/c.yaml": "c\n", "d.yaml": "d\n"}), out)
    assert "in the way" not in str(caught.value)
    (out / "b").unlink()
    result = write_tree(_tree({"a.yaml": "a2\n", "b/c.yaml": "c\n", "d.yaml": "d\n"}), out)
    assert result.written >= 1 and (out / "b" / "c.yaml").read_text() == "c\n"
    assert (out / "a.yaml").read_text() == "a2\n"


@pytest.mark.parametrize("bad", ["../escape.yaml", "/abs.yaml", "a/../../b.yaml", "a\\b.yaml", "a//b.yaml",
                                 "a/./b.yaml", "a/", "a\u2028b.yaml", "a\rb.yaml", "a\x00/b.yaml", "a\x85b.yaml"])
def test_write_tree_refuses_paths_outside(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RenderError):
        write_tree(_tree({bad: "x\n"}), tmp_path / "out")


def test_tampered_marker_never_deletes_outside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"a.yaml": "a\n"}), out)
    victim = tmp_path / "victim.txt"
    victim.write_text("safe\n")
    with (out / MARKER).open("a") as fh:
        fh.write("../victim.txt\n")
    write_tree(_tree({"a.yaml": "a\n"}), out)
    assert victim.read_text() == "safe\n"


def test_write_tree_refuses_symlinked_directories_out(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_tree(_tree({"a.yaml": "a\n"}), out)
    (out / "envs").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symlink"):
        write_tree(_tree({"a.yaml": "a\n", "envs/x.yaml": "x\n"}), out)
    assert not any(elsewhere.iterdir())


def test_write_tree_replaces_a_planted_symlink_never_its_target(tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("safe\n")
    write_tree(_tree({"a.yaml": "a\n"}), out)
    (out / "a.yaml").unlink()
    (out / "a.yaml").symlink_to(victim)
    result = write_tree(_tree({"a.yaml": "a\n"}), out)
    assert result.written == 1 and not (out / "a.yaml").is_symlink()
    assert (out / "a.yaml").read_text() == "a\n" and victim.read_text() == "safe\n"


def test_write_tree_replaces_a_fifo_without_blocking(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(_tree({"a.yaml": "a\n"}), out)
    (out / "a.yaml").unlink()
    os.mkfifo(out / "a.yaml")
    assert write_tree(_tree({"a.yaml": "a\n"}), out).written == 1
    assert (out / "a.yaml").read_text() == "a\n"


def test_write_tree_first_render_leaves_only_the_rendered_files(tmp_path: Path) -> None:
    files = {f"d{i % 3}/f{i}.yaml": f"n: {i}\n" * (i + 1) for i in range(20)}
    out = tmp_path / "out"
    assert write_tree(_tree(files), out).written == 20
    on_disk = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {**files, MARKER: on_disk[MARKER]}
    assert write_tree(_tree(files), out) == WriteResult(written=0, unchanged=20, removed=0)
