"""Only the entry points read the process environment or the wall clock (issue 9, "a shared vocabulary").

Everything below the entry points takes what it needs as an argument: a value of
:class:`~chamberlain.settings.Settings` (a path, a ``Tools``, a ``LabHost``, the environment a child process starts
from) and a :class:`~chamberlain.clock.Clock`. The entry points are the CLI (``chamberlain/cli/*``) and
``python -m chamberlain.lab`` (``chamberlain/lab/__main__.py``); ``chamberlain/clock.py`` may read the wall clock,
since that is where :class:`~chamberlain.clock.SystemClock` is defined.

This test reads every module of ``src/chamberlain`` as a syntax tree, resolves names through the module's imports
(so ``import datetime as dt; dt.datetime.now()`` and ``from os import environ`` are caught like the plain
spellings), and lists ``file:line`` for each place that reaches past that:

* the environment: ``os.environ``/``os.environb``/``os.getenv``/``os.getenvb``/``os.putenv``/``os.unsetenv``,
  ``Path.home()``, ``expanduser``, ``os.path.expandvars``, ``getpass.getuser`` (it reads ``$LOGNAME``/``$USER``),
  ``shutil.which`` without an explicit ``path=`` (it searches ``$PATH``), and ``Settings.from_environ`` (building
  the settings is the entry point's job);
* the wall clock: ``datetime.now``/``utcnow``/``today``, ``date.today``, ``time.time``/``time.time_ns``,
  ``time.localtime``/``gmtime``/``ctime``/``asctime``/``strftime`` without an explicit time, and building a
  ``SystemClock``.

Allowed anywhere: ``time.monotonic``, ``time.perf_counter`` and ``time.sleep`` (measuring and waiting decide
nothing). Not checked: a child process inheriting the environment when no ``env=`` is passed, and ``tempfile``
honouring ``$TMPDIR`` (the operating system's conventions, not chamberlain's configuration).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import pytest

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "chamberlain"

#: Modules that may read both (paths relative to ``src``; a trailing ``/`` means the whole package).
ENTRY_POINTS = ("chamberlain/cli/", "chamberlain/lab/__main__.py")
#: Where the real clock is defined: it may read the wall clock, not the environment.
CLOCK_MODULE = "chamberlain/clock.py"

#: Violations in modules other engineers are rewriting right now, as ``(path, line, name)``. It must become empty:
#: an entry here is a debt with an owner, not an exception. (Empty: ``authority/*``, ``controller/*`` and
#: ``rotation/*`` read neither the environment nor the wall clock any more.)
KNOWN_ELSEWHERE: frozenset[tuple[str, int, str]] = frozenset()

ENVIRONMENT, WALL_CLOCK = "reads the environment", "reads the wall clock"

#: Any use of these (a call, or passing them along) is a violation.
FORBIDDEN: dict[str, str] = {
    "os.environ": ENVIRONMENT,
    "os.environb": ENVIRONMENT,
    "os.getenv": ENVIRONMENT,
    "os.getenvb": ENVIRONMENT,
    "os.putenv": ENVIRONMENT,
    "os.unsetenv": ENVIRONMENT,
    "os.path.expanduser": ENVIRONMENT,
    "os.path.expandvars": ENVIRONMENT,
    "pathlib.Path.home": ENVIRONMENT,
    "getpass.getuser": ENVIRONMENT,
    "chamberlain.settings.Settings.from_environ": ENVIRONMENT,
    "datetime.datetime.now": WALL_CLOCK,
    "datetime.datetime.utcnow": WALL_CLOCK,
    "datetime.datetime.today": WALL_CLOCK,
    "datetime.date.today": WALL_CLOCK,
    "time.time": WALL_CLOCK,
    "time.time_ns": WALL_CLOCK,
    "chamberlain.clock.SystemClock": WALL_CLOCK,
}
#: These read the wall clock only when called with fewer positional arguments than this (no explicit time).
CLOCK_WITHOUT_TIME: dict[str, int] = {
    "time.localtime": 1,
    "time.gmtime": 1,
    "time.ctime": 1,
    "time.asctime": 1,
    "time.strftime": 2,
}


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    name: str
    why: str

    def __str__(self) -> str:
        return f"src/{self.path}:{self.line}: {self.name} ({self.why})"


def _module_name(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> what it refers to, for every import anywhere in the module (lazy imports included)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _explicit_which(call: ast.Call | None) -> bool:
    return call is not None and (len(call.args) >= 3 or any(k.arg == "path" for k in call.keywords))


def _judge(qualified: list[str], call: ast.Call | None) -> tuple[str, str] | None:
    """(name, why) when this use of ``qualified`` reads the environment or the wall clock."""
    for end in range(len(qualified), 0, -1):
        name = ".".join(qualified[:end])
        if name in FORBIDDEN:
            return name, FORBIDDEN[name]
    name = ".".join(qualified)
    if name == "shutil.which" and not _explicit_which(call):
        return name, f"{ENVIRONMENT}: searches $PATH without path="
    if name in CLOCK_WITHOUT_TIME and (call is None or len(call.args) < CLOCK_WITHOUT_TIME[name]):
        return name, f"{WALL_CLOCK}: no explicit time"
    return None


def violations_in(source: str, rel: str) -> list[Violation]:
    """Every place in ``source`` (the module at ``src/<rel>``) that reads the environment or the wall clock."""
    tree = ast.parse(source, filename=rel)
    module = _module_name(rel)
    names = _imported_names(tree, module, rel.endswith("__init__.py"))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[Violation] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute | ast.Name) or isinstance(parents.get(node), ast.Attribute):
            continue  # only whole chains: ``os.environ.get``, not its ``os.environ`` and ``os`` parts again
        parent = parents.get(node)
        call = parent if isinstance(parent, ast.Call) and parent.func is node else None
        if isinstance(node, ast.Attribute) and node.attr == "expanduser" and call is not None:
            found.append(Violation(rel, node.lineno, "expanduser", f"{ENVIRONMENT}: $HOME"))
            continue
        parts = _dotted(node)
        if parts is None or parts[0] not in names:
            continue  # a local name, a parameter, a builtin: not a module-level way out
        verdict = _judge([*names[parts[0]].split("."), *parts[1:]], call)
        if verdict is not None:
            found.append(Violation(rel, node.lineno, *verdict))
    return sorted(found)


def _exempt(v: Violation) -> bool:
    if any(v.path == e or (e.endswith("/") and v.path.startswith(e)) for e in ENTRY_POINTS):
        return True
    return v.path == CLOCK_MODULE and v.why.startswith(WALL_CLOCK)


def package_violations() -> list[Violation]:
    found: list[Violation] = []
    for file in sorted(PACKAGE.rglob("*.py")):
        rel = file.relative_to(SRC).as_posix()
        found += [v for v in violations_in(file.read_text(encoding="utf-8"), rel) if not _exempt(v)]
    return found


# ------------------------------------------------------------------------------------------- the package


def test_only_entry_points_read_the_environment_or_the_wall_clock() -> None:
    found = [v for v in package_violations() if (v.path, v.line, v.name) not in KNOWN_ELSEWHERE]
    assert not found, ("below the entry points, take the value as an argument (from Settings, or a Clock):\n"
                       + "\n".join(str(v) for v in found))


def test_known_elsewhere_lists_only_violations_that_still_exist() -> None:
    current = {(v.path, v.line, v.name) for v in package_violations()}
    stale = sorted(KNOWN_ELSEWHERE - current)
    assert not stale, f"fixed (or moved): remove from KNOWN_ELSEWHERE: {stale}"


def test_the_exempt_modules_exist() -> None:
    for rel in (*ENTRY_POINTS, CLOCK_MODULE):
        assert (SRC / rel).exists(), rel


def test_entry_points_do_read_them() -> None:
    # The exemption is not dead weight: the CLI and the lab's builder are where Settings and the clock are made.
    exempt = [v for file in sorted(PACKAGE.rglob("*.py"))
              for v in violations_in(file.read_text(encoding="utf-8"), file.relative_to(SRC).as_posix())
              if _exempt(v)]
    assert {"chamberlain.clock.SystemClock", "chamberlain.settings.Settings.from_environ"} <= {v.name for v in exempt}
    assert any(v.path == "chamberlain/lab/__main__.py" for v in exempt)


# ------------------------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("source, name", [
    pytest.param("import os\nos.environ.get('X')", "os.environ", id="os.environ"),
    pytest.param("from os import environ\nenviron['X']", "os.environ", id="from-os-import-environ"),
    pytest.param("import os as o\no.getenv('X')", "os.getenv", id="os-alias"),
    pytest.param("import os\nos.environb", "os.environb", id="os.environb"),
    pytest.param("import os\nos.putenv('X', 'y')", "os.putenv", id="os.putenv"),
    pytest.param("import os.path\nos.path.expandvars('$X')", "os.path.expandvars", id="expandvars"),
    pytest.param("import datetime as dt\ndt.datetime.now(dt.UTC)", "datetime.datetime.now", id="dt.datetime.now"),
    pytest.param("from datetime import datetime\ndatetime.now()", "datetime.datetime.now", id="from-datetime"),
    pytest.param("from datetime import datetime as D\nD.utcnow()", "datetime.datetime.utcnow", id="utcnow-alias"),
    pytest.param("import datetime\ndatetime.date.today()", "datetime.date.today", id="date.today"),
    pytest.param("from datetime import date\ndate.today()", "datetime.date.today", id="from-datetime-date"),
    pytest.param("import time\ntime.time()", "time.time", id="time.time"),
    pytest.param("from time import time_ns\ntime_ns()", "time.time_ns", id="time_ns"),
    pytest.param("import time\nf = time.time", "time.time", id="time.time-passed-along"),
    pytest.param("import time\ntime.strftime('%Y')", "time.strftime", id="strftime-now"),
    pytest.param("import time\ntime.localtime()", "time.localtime", id="localtime-now"),
    pytest.param("import shutil\nshutil.which('go')", "shutil.which", id="which-PATH"),
    pytest.param("from shutil import which\nwhich('go', 1)", "shutil.which", id="which-alias"),
    pytest.param("from pathlib import Path\nPath.home()", "pathlib.Path.home", id="Path.home"),
    pytest.param("p.expanduser()", "expanduser", id="expanduser"),
    pytest.param("import getpass\ngetpass.getuser()", "getpass.getuser", id="getuser"),
    pytest.param("from chamberlain.clock import SystemClock\nSystemClock()", "chamberlain.clock.SystemClock",
                 id="SystemClock"),
    pytest.param("from chamberlain import clock\nf(clock.SystemClock)", "chamberlain.clock.SystemClock",
                 id="SystemClock-as-factory"),
    pytest.param("from ..clock import SystemClock\nSystemClock()", "chamberlain.clock.SystemClock",
                 id="relative-import"),
    pytest.param("from chamberlain.settings import Settings\nSettings.from_environ({}, p)",
                 "chamberlain.settings.Settings.from_environ", id="Settings.from_environ"),
    pytest.param("def f() -> None:\n    import os\n    return os.getenv('X')", "os.getenv", id="lazy-import"),
])
def test_the_checker_catches(source: str, name: str) -> None:
    found = violations_in(source, "chamberlain/lab/example.py")
    assert [(v.name, v.line) for v in found] == [(name, source.count("\n") + 1)]


@pytest.mark.parametrize("source", [
    pytest.param("import time\ntime.monotonic(); time.perf_counter(); time.sleep(1)", id="monotonic-and-sleep"),
    pytest.param("import shutil\nshutil.which('go', path='/usr/bin')", id="which-explicit-path"),
    pytest.param("import time\ntime.strftime('%Y', t); time.gmtime(0)", id="explicit-time"),
    pytest.param("from datetime import datetime, timedelta\ndatetime.fromisoformat(s) + timedelta(1)",
                 id="datetime-arithmetic"),
    pytest.param("def f(environ):\n    return environ.get('X')", id="a-parameter-named-environ"),
    pytest.param("from chamberlain.clock import Clock\ndef f(clock: Clock):\n    return clock.now()", id="a-clock"),
    pytest.param("import os\nos.devnull, os.getpid(), os.path.join('a', 'b')", id="other-os"),
])
def test_the_checker_lets_through(source: str) -> None:
    assert violations_in(source, "chamberlain/lab/example.py") == []
