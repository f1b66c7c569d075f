"""The import contracts (``.importlinter``) hold, and they cover the whole package.

import-linter checks what the contracts name; a package nobody listed would be checked by nothing. So the second
test reads the contracts and fails when a module of ``chamberlain`` is in no layer.
"""

from __future__ import annotations

import configparser
import pkgutil
from pathlib import Path

import pytest

import chamberlain

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def test_every_contract_is_kept(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(CONFIG), cache_dir=str(tmp_path), no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out


def test_the_layers_cover_every_module_of_the_package() -> None:
    layered: set[str] = set()
    for section in _contracts().sections():
        if _contracts()[section].get("type") == "layers":
            for line in _contracts()[section]["layers"].splitlines():
                layered |= {name.strip() for name in line.split("|") if name.strip()}
    top = {f"chamberlain.{m.name}" for m in pkgutil.iter_modules(chamberlain.__path__)}
    assert top - layered == set(), "modules in no layer of .importlinter"
