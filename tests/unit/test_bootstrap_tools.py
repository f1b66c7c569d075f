"""Where sops/age are found: the explicit binary, then ``PATH``, then the lab cache — all from what the entry point
passes (a :class:`Tools` built from :class:`Settings`), never from the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.bootstrap.tools import ToolMissing, Tools
from chamberlain.lab import builds
from chamberlain.settings import Settings


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """The same tool in all three places: an explicit file, a PATH directory and a lab cache."""
    cache_dir = tmp_path / "cache"
    lab_cache = Settings.from_environ({"CHAMBERLAIN_CACHE_DIR": str(cache_dir)}, tmp_path).lab_cache
    return {
        "explicit": _executable(tmp_path / "explicit" / "sops"),
        "path": _executable(tmp_path / "bin" / "sops"),
        "cache": _executable(builds.binary(lab_cache, "sops")),
        "cache_dir": cache_dir,
    }


def _environ(places: dict[str, Path], *, explicit: bool, on_path: bool) -> dict[str, str]:
    environ = {"CHAMBERLAIN_CACHE_DIR": str(places["cache_dir"]),
               "PATH": str(places["path"].parent) if on_path else str(places["path"].parent.parent / "empty")}
    if explicit:
        environ["CHAMBERLAIN_SOPS"] = str(places["explicit"])
    return environ


@pytest.mark.parametrize("explicit, on_path, expected", [
    pytest.param(True, True, "explicit", id="explicit-first"),
    pytest.param(False, True, "path", id="then-PATH"),
    pytest.param(False, False, "cache", id="then-the-lab-cache"),
])
def test_lookup_order(places: dict[str, Path], tmp_path: Path, explicit: bool, on_path: bool, expected: str) -> None:
    settings = Settings.from_environ(_environ(places, explicit=explicit, on_path=on_path), tmp_path)
    assert Tools.from_settings(settings).find("sops") == places[expected]


def test_an_explicit_binary_that_is_not_executable_is_an_error_not_a_fallback(places: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    places["explicit"].chmod(0o644)
    settings = Settings.from_environ(_environ(places, explicit=True, on_path=True), tmp_path)
    with pytest.raises(ToolMissing, match=r"CHAMBERLAIN_SOPS=.* is not an executable file"):
        Tools.from_settings(settings).find("sops")


def test_nothing_found_says_how_to_get_it(tmp_path: Path) -> None:
    tools = Tools({"PATH": str(tmp_path)}, lab_cache=tmp_path / "no-cache")
    with pytest.raises(ToolMissing, match="set CHAMBERLAIN_AGE_KEYGEN to its path, or build it with `chamberlain "
                       "lab build age`") as missing:
        tools.find("age-keygen")
    assert missing.value.exit_code == 2  # a missing dependency is a usage error, like a missing runtime extra
    with pytest.raises(ToolMissing, match=r"sops is not installed: .* `chamberlain lab build sops`"):
        tools.find("sops")
    with pytest.raises(ValueError, match="unknown tool"):
        tools.find("gpg")


def test_without_a_lab_cache_only_the_explicit_binary_and_path_count(places: dict[str, Path]) -> None:
    with pytest.raises(ToolMissing):
        Tools({"PATH": str(places["path"].parent.parent / "empty")}).find("sops")
    assert Tools({"PATH": str(places["path"].parent)}).find("sops") == places["path"]


def test_sops_and_age_keygen_get_no_credential_of_the_caller() -> None:
    from chamberlain.bootstrap.sops import sops_env
    from chamberlain.settings import tool_env

    caller = {"PATH": "/usr/bin", "HOME": "/home/a", "LC_ALL": "C.UTF-8", "VAULT_TOKEN": "hvs.x",
              "AWS_SECRET_ACCESS_KEY": "y", "PGPASSWORD": "z", "SOPS_AGE_RECIPIENTS": "age1evil",
              "KUBECONFIG": "/k"}
    assert tool_env(caller) == {"PATH": "/usr/bin", "HOME": "/home/a", "LC_ALL": "C.UTF-8"}
    assert sops_env(caller, None) == {"PATH": "/usr/bin", "HOME": "/home/a", "LC_ALL": "C.UTF-8"}
    assert sops_env(caller, Path("/id"))["SOPS_AGE_KEY_FILE"] == "/id"
