"""A program chamberlain runs that is not installed (age-keygen, sops, git, go, a lab server) is a missing
dependency: a usage error (exit 2, as the README's exit-code conventions say) that names the program and how to get
it (``chamberlain lab build <component>`` when the lab builds it), never a failure (exit 1) or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.errors import ToolMissing, UsageError
from chamberlain.gitops.git import publish_tree
from chamberlain.handover.declare import check_work_tree
from chamberlain.lab import builds
from tests.conftest import run_cli


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A process environment with nothing on PATH, no explicit binaries and an empty lab cache."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("CHAMBERLAIN_SOPS", "CHAMBERLAIN_AGE", "CHAMBERLAIN_AGE_KEYGEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHAMBERLAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return empty


def test_root_init_without_age_keygen_is_a_usage_error_saying_how_to_get_it(no_tools: Path, tmp_path: Path) -> None:
    result = run_cli("root", "init")
    assert result.code == 2, result.err
    assert "age-keygen is not installed" in result.err and "`chamberlain lab build age`" in result.err
    assert "CHAMBERLAIN_AGE_KEYGEN" in result.err and "Traceback" not in result.err
    assert not [p for p in (tmp_path / "config").rglob("*") if p.is_file()]  # no identity was written


def test_the_demo_checks_its_tools_before_a_lab_starts(no_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chamberlain.demo

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the demo started without its tools")

    monkeypatch.setattr(chamberlain.demo, "run_demo", never)
    result = run_cli("demo")
    assert result.code == 2, result.err
    assert "sops is not installed" in result.err and "`chamberlain lab build sops`" in result.err


def test_git_that_is_not_installed_is_a_usage_error(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "no-bin")}
    with pytest.raises(ToolMissing, match=r"git is not installed .*--commit") as raised:
        check_work_tree(tmp_path, env, [])
    assert raised.value.exit_code == 2 and isinstance(raised.value, UsageError)
    tree = tmp_path / "tree"
    tree.mkdir()
    with pytest.raises(ToolMissing, match="git is not installed"):
        publish_tree(tree, "http://127.0.0.1:1/repo.git", "render", base_env=env)


def test_a_lab_build_without_go_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="'go'") as raised:
        builds.ensure_go({"PATH": str(tmp_path)})
    assert raised.value.exit_code == 2
