"""Coexistence with a real GitOps repository (issue 10, item 6): an intent repository inside a monorepo.

Ignore files (.gitignore through Git or read directly, .chamberlainignore), chamberlain's own rendered output as a
visible exclusion, other YAML scanned but never read as intent (Helm templates, kustomize patches, SealedSecrets),
and hostile trees (symlinks out, FIFOs, deep nesting, huge, binary and non-UTF-8 files, an ignore file that ignores
everything): findings or clear errors, never a traceback or a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chamberlain.intent.loader import load_repository
from chamberlain.intent.walk import MAX_DIR_DEPTH, walk
from tests.conftest import CORPUS, EXAMPLES, run_cli

HAS_GIT = shutil.which("git") is not None


def base_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    shutil.copytree(CORPUS / "base", repo)
    return repo


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


def validate_json(path: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = run_cli("validate", str(path), "-o", "json", *extra)
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)


def rules_of(report: dict[str, object]) -> set[str]:
    results = report["results"]
    assert isinstance(results, list)
    return {r["rule"] for r in results}


BROKEN_INTENT = "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: broken}\nspec: {}\n"


# ------------------------------------------------------------------------------------------------ ignore files


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_gitignore_is_honoured_through_git_in_a_work_tree(tmp_path: Path) -> None:
    mono = tmp_path / "mono"
    repo = base_repo(mono, "platform/secrets")
    (mono / ".gitignore").write_text("scratch/\n*.local.yaml\n")  # above the intent root: Git applies it
    (repo / "scratch").mkdir()
    (repo / "scratch" / "draft.yaml").write_text(BROKEN_INTENT)
    (repo / "mine.local.yaml").write_text(BROKEN_INTENT)
    git(mono, "init", "-q")
    git(mono, "add", "-A")
    git(mono, "commit", "-qm", "init")
    (repo / "untracked.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")

    repo_loaded = load_repository(repo)
    assert repo_loaded.git_root == mono.resolve()
    rels = {f.rel for f in repo_loaded.files}
    assert "untracked.yaml" in rels  # untracked but not ignored: part of the tree
    assert {e.path: e.reason for e in repo_loaded.exclusions} == {"mine.local.yaml": "gitignore",
                                                                  "scratch/": "gitignore"}
    code, report = validate_json(repo)
    assert code == 0 and report["excluded"] == {"gitignore": 2}


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_an_intent_root_git_ignores_is_read_with_its_own_gitignore_files(tmp_path: Path) -> None:
    mono = tmp_path / "mono"
    repo = base_repo(mono / "scratch", "copy")
    (mono / ".gitignore").write_text("scratch/\n")
    (repo / ".gitignore").write_text("*.bak\n")
    (repo / "old.bak").write_text("x\n")
    git(mono, "init", "-q")
    loaded = load_repository(repo)
    assert loaded.git_root is None and len(loaded.intents) == 4
    assert [(e.path, e.reason) for e in loaded.exclusions] == [("old.bak", "gitignore")]


def test_gitignore_files_apply_outside_a_work_tree(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / ".gitignore").write_text("*.tmp.yaml\n!keep.tmp.yaml\nbuild/\n")
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitignore").write_text("local.yaml\n")
    (repo / "sub" / "local.yaml").write_text(BROKEN_INTENT)
    (repo / "a.tmp.yaml").write_text(BROKEN_INTENT)
    (repo / "keep.tmp.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\n")
    (repo / "build").mkdir()
    (repo / "build" / "x.yaml").write_text(BROKEN_INTENT)

    loaded = load_repository(repo, git=None)
    assert loaded.git_root is None
    assert {e.path for e in loaded.exclusions} == {"a.tmp.yaml", "build/", "sub/local.yaml"}
    assert "keep.tmp.yaml" in {f.rel for f in loaded.files}  # re-included by '!'
    # Outside a work tree nothing says an ignored file is untracked: GitOps may well apply the intent in it (a
    # file added with `git add -f`), so it is CH106 — never read as intent, never silently passed.
    assert {(f.file, f.rule) for f in loaded.problems} == {
        ("a.tmp.yaml", "CH106"), ("build/x.yaml", "CH106"), ("sub/local.yaml", "CH106")}


def test_ignored_files_without_intent_stay_quiet_outside_a_work_tree(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / ".gitignore").write_text("build/\n")
    (repo / "build").mkdir()
    (repo / "build" / "x.yaml").write_text("key: [unclosed\n")
    loaded = load_repository(repo, git=None)
    assert [e.path for e in loaded.exclusions] == ["build/"]
    assert not loaded.problems


def test_chamberlainignore_leaves_out_more_and_says_so(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / ".chamberlainignore").write_text("# vendored charts are not intent\nvendor/\n*.draft.yaml\n")
    (repo / "vendor").mkdir()
    (repo / "vendor" / "a.yaml").write_text(BROKEN_INTENT)
    (repo / "x.draft.yaml").write_text(BROKEN_INTENT)
    result = run_cli("validate", str(repo))
    assert result.code == 0, result.out + result.err
    assert "excluded: vendor/: ignored by .chamberlainignore" in result.err
    assert "excluded: x.draft.yaml: ignored by .chamberlainignore" in result.err
    assert "2 excluded (2 chamberlainignore)" in result.err


def test_an_ignore_file_that_ignores_everything_is_a_clear_finding(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / ".chamberlainignore").write_text("*\n")
    code, report = validate_json(repo)
    assert code == 1
    results = report["results"]
    assert isinstance(results, list)
    ch007 = [r for r in results if r["rule"] == "CH007"]
    assert ch007 and "ignores everything" in ch007[0]["message"]


def test_an_unreadable_ignore_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / ".chamberlainignore").write_bytes(b"\xff\xfe not utf-8\n")
    result = run_cli("validate", str(repo))
    assert result.code == 2 and ".chamberlainignore" in result.err and "not UTF-8" in result.err
    assert "Traceback" not in result.err


# ------------------------------------------------------------------------------------------------ rendered output


def test_rendered_output_inside_the_repository_is_a_reported_exclusion(tmp_path: Path) -> None:
    repo = tmp_path / "acme"
    shutil.copytree(EXAMPLES / "acme", repo)
    assert run_cli("render", str(repo), "-o", str(repo / "deploy")).code == 0
    result = run_cli("validate", str(repo))
    assert result.code == 0, result.out + result.err  # no CH007/CH008 from re-read intents
    assert "excluded: deploy/: output of `chamberlain render`" in result.err
    code, report = validate_json(repo)
    assert code == 0 and report["excluded"] == {"rendered-output": 1}
    assert report["exclusions"] == [{"path": "deploy/", "reason": "rendered-output",
                                     "detail": report["exclusions"][0]["detail"]}]  # type: ignore[index]
    # Still scanned: a credential hand-planted in the rendered tree is found.
    (repo / "deploy" / "notes.txt").write_text("token: ghp_" + "a1B2c3D4e5Fq7Rt9Yw0Zx8Vu6Ts4Lp2Mn5Kj" + "\n")
    code, report = validate_json(repo)
    assert code == 1 and "CH024" in rules_of(report)


def test_rendered_documents_copied_without_the_marker_are_recognised(tmp_path: Path) -> None:
    repo = tmp_path / "acme"
    shutil.copytree(EXAMPLES / "acme", repo)
    run_cli("render", str(repo), "-o", str(tmp_path / "out"))
    shutil.copytree(tmp_path / "out" / "clusters", repo / "gitops" / "clusters")  # `cp -r out/*` drops dotfiles
    code, report = validate_json(repo)
    assert code == 0, report
    excluded = report["excluded"]
    assert isinstance(excluded, dict) and excluded["rendered-document"] > 0


# ------------------------------------------------------------------------------------------------ other YAML


def test_helm_templates_are_scanned_not_parsed(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    chart = repo / "charts" / "app"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    (chart / "templates" / "deployment.yaml").write_text(
        "{{- if .Values.enabled }}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        "  name: {{ include \"app.fullname\" . }}\n  {{- with .Values.annotations }}\n  annotations:\n"
        "    {{- toYaml . | nindent 4 }}\n  {{- end }}\n{{- end }}\n")
    (chart / "templates" / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData:\n  password: {{ .Values.password }}\n")
    # Outside a chart: a template only when it does not parse as YAML.
    (repo / "argo-template.yaml").write_text("spec:\n  {{- range .items }}\n  - {{ . }}\n  {{- end }}\n")
    code, report = validate_json(repo)
    assert code == 0, report
    assert report["excluded"] == {"template": 3}
    # A leak inside a template is still found.
    (chart / "templates" / "leak.yaml").write_text("key: AKIA" + "Z4QW7RTY3UPLMN5K" + "\n")
    code, report = validate_json(repo)
    assert code == 1 and rules_of(report) == {"CH024"}


def test_broken_yaml_that_is_no_template_still_fails(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / "broken.yaml").write_text("a: [1, 2\n")
    (repo / "intent-tpl.yaml").write_text(BROKEN_INTENT + "extra: {{ .x }}\n  bad: [\n")
    code, report = validate_json(repo)
    assert code == 1
    results = report["results"]
    assert isinstance(results, list)
    assert {r["file"] for r in results if r["rule"] == "CH001"} == {"broken.yaml", "intent-tpl.yaml"}


def test_kustomize_patches_are_not_read_as_intent(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    overlay = repo / "overlays" / "prod"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../base]\n"
        "patches:\n  - path: intent-patch.yaml\n  - path: ../../outside.yaml\npatchesStrategicMerge:\n"
        "  - deployment-patch.yaml\npatchesJson6902:\n  - path: json-patch.yaml\n"
        "    target: {kind: Deployment, name: app}\n")
    (overlay / "intent-patch.yaml").write_text(  # a partial SecretIntent: not valid on its own
        "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: app-db}\n"
        "spec:\n  environments: [prod]\n")
    (overlay / "deployment-patch.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 3}\n")
    (overlay / "json-patch.yaml").write_text("- {op: replace, path: /spec/replicas, value: 3}\n")
    code, report = validate_json(repo)
    assert code == 0, report
    assert report["exclusions"] == [{"path": "overlays/prod/intent-patch.yaml", "line": 1,
                                     "reason": "kustomize-patch",
                                     "detail": report["exclusions"][0]["detail"]}]  # type: ignore[index]


SEALED = """\
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata: {name: db, namespace: app}
spec:
  encryptedData:
    password: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq5n2vB7wdGd0W6kGLkPZ5zQ1rN8Yb9uNIHNnZ2v3KdDl1Kq+7n0Gs0aX8fgvyhS1bT7mLq3a
    username: AgCx9Lm2Qp8Rz4Tn6Vw1Yb3Dc5Fe7Gh9Jk0Lm2Np4Qr6St8Uv0Wx2Yz4Ab6Cd8Ef0Gh2Ij4Kl6Mn8Op0Qr2St4Uv6Wx8Yz0A
  template:
    metadata: {name: db}
"""


def test_sealed_secret_ciphertext_is_not_a_leak_but_a_plaintext_secret_still_is(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / "sealed.yaml").write_text(SEALED)
    code, report = validate_json(repo)
    assert code == 0, report
    # The same ciphertext outside encryptedData is still a random-looking string: a warning (no name, no format).
    (repo / "sealed.yaml").write_text(SEALED + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n"
                                      "  blob: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq5n2vB7wdGd0W6kGLkPZ5zQ1rN8Yb9uNIH\n")
    code, report = validate_json(repo)
    assert code == 0 and rules_of(report) == {"CH128"}


def test_a_secret_value_that_is_one_template_action_is_a_placeholder(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData:\n  password: '{{ .Values.password }}'\n"
        "  token: ${APP_TOKEN}\n")
    assert validate_json(repo)[0] == 0
    (repo / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData:\n  password: hunter2-{{ .x }}\n")
    code, report = validate_json(repo)
    assert code == 1 and "CH020" in rules_of(report)


# ------------------------------------------------------------------------------------------------ hostile trees


def test_a_symlink_out_of_the_repository_is_never_followed(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    (repo / "linked-dir").symlink_to(outside, target_is_directory=True)
    (repo / "linked-file.yaml").symlink_to(outside / "leak.pem")
    (repo / "loop").symlink_to(repo, target_is_directory=True)
    code, report = validate_json(repo)
    assert report["excluded"] == {"symlink": 3}
    # Nothing outside was read (no CH024 for the key), but a link out is CH106: a GitOps controller that follows
    # links inside its source (a monorepo) would apply what validate never saw. A link inside the repository is fine.
    assert code == 1, report
    results = report["results"]
    assert isinstance(results, list)
    assert {(r["file"], r["rule"]) for r in results} == {("linked-dir", "CH106"), ("linked-file.yaml", "CH106")}


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    os.mkfifo(repo / "pipe.yaml")  # opening it for reading would block forever
    code, report = validate_json(repo)
    assert code == 0 and report["excluded"] == {"special-file": 1}


def test_deep_nesting_is_reported_not_a_recursion_error(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    deep = repo
    for _ in range(MAX_DIR_DEPTH + 20):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "x.yaml").write_text(BROKEN_INTENT)
    walked = walk(repo, git=None)
    assert [e.reason for e in walked.exclusions] == ["too-deep"]
    code, report = validate_json(repo)  # GitOps would apply what validate cannot enter: CH002, not a pass
    assert code == 1
    results = report["results"]
    assert isinstance(results, list)
    assert [r["rule"] for r in results] == ["CH002"]


def test_huge_binary_and_non_utf8_files_are_findings(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    with (repo / "huge.yaml").open("wb") as fh:
        fh.truncate(9 * 1024 * 1024)
    (repo / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 64)
    code, report = validate_json(repo)
    assert code == 1
    results = report["results"]
    assert isinstance(results, list)
    assert {(r["file"], r["rule"]) for r in results} == {("huge.yaml", "CH002"), ("latin1.yaml", "CH001")}


def test_the_walk_is_linear_and_in_name_order(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    for i in range(200):
        (repo / f"dir{i % 7}").mkdir(exist_ok=True)
        (repo / f"dir{i % 7}" / f"f{i:03}.txt").write_text("x\n")
    rels = [f.rel for f in walk(repo, git=None).files]
    assert rels == sorted(rels) and len(rels) == 202


# ------------------------------------------------------------------------------------------------ render --check


def test_render_check_is_fresh_then_lists_what_is_stale_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("render", str(EXAMPLES / "acme"), "-o", str(out)).code == 0
    fresh = run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check")
    assert fresh.code == 0 and "fresh" in fresh.err and fresh.out == ""

    (out / "crds" / "kustomization.yaml").unlink()
    platform = next((out / "clusters").glob("*/platform.yaml"))
    platform.write_text(platform.read_text() + "# edited by hand\n")
    (out / "stray.yaml").write_text("a: 1\n")
    before = sorted((p.relative_to(out).as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*"))
    stale = run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check")
    assert stale.code == 1
    assert stale.out.splitlines() == ["missing: crds/kustomization.yaml",
                                      f"changed: {platform.relative_to(out).as_posix()}",
                                      "extra: stray.yaml"]
    assert "1 missing, 1 changed, 1 extra" in stale.err
    assert sorted((p.relative_to(out).as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_render_check_says_what_removes_an_extra_file_since_rendering_again_does_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("render", str(EXAMPLES / "acme"), "-o", str(out)).code == 0
    (out / "stray.yaml").write_text("a: 1\n")
    assert run_cli("render", str(EXAMPLES / "acme"), "-o", str(out)).code == 0
    stale = run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check")
    assert stale.code == 1 and "0 missing, 0 changed, 1 extra" in stale.err
    assert "run `chamberlain render" not in stale.err, "rendering again would not remove it"
    assert "remove the extra files" in stale.err and ".chamberlainignore" in stale.err
    (out / ".chamberlainignore").write_text("stray.yaml\n")
    assert run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check").code == 0


def test_render_check_of_a_missing_directory_is_stale_and_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "absent"
    result = run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check")
    assert result.code == 1 and "missing: .chamberlain-render" in result.out and not out.exists()


def test_render_check_honours_an_ignore_file_in_the_output_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_cli("render", str(EXAMPLES / "acme"), "-o", str(out))
    (out / "README.md").write_text("hand-written\n")
    (out / ".chamberlainignore").write_text("README.md\n")
    assert run_cli("render", str(EXAMPLES / "acme"), "-o", str(out), "--check").code == 0


def test_render_check_of_an_invalid_repository_fails_and_writes_nothing(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / "bad.yaml").write_text(BROKEN_INTENT)
    result = run_cli("render", str(repo), "-o", str(tmp_path / "out"), "--check")
    assert result.code == 1 and "nothing rendered" in result.err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_a_file_name_that_is_not_utf8_is_reported_printably(tmp_path: Path, fmt: str) -> None:
    repo = base_repo(tmp_path)
    (Path(os.fsdecode(bytes(repo))) / os.fsdecode(b"caf\xe9.yaml")).write_text("a: [1\n")
    result = run_cli("validate", str(repo), "-o", fmt)
    assert result.code == 1 and "Traceback" not in result.err and "internal error" not in result.err
    result.out.encode("utf-8")  # strict UTF-8 output can carry it
    assert ("caf%5Cxe9.yaml" if fmt == "sarif" else "caf\\xe9.yaml") in result.out.replace("\\\\", "\\")
