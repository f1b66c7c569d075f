"""Command-line habits (issue 12, item 7): ``-o text|json|yaml|wide`` wherever a list is printed (yaml is the json
data), shell completion, and a missing runtime extra that says how to install it. Offline: no server is
contacted (the commands that need one are checked through --help, and through a missing module, which fails
before any connection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES, REPO_ROOT, run_cli

ACME = str(EXAMPLES / "acme")

# Every command that prints a list or a table.
LIST_COMMANDS = [("inventory",), ("validate",), ("status",), ("rotate",), ("handover",), ("provision",),
                 ("audit", "show"), ("audit", "verify"), ("upgrade", "plan"), ("upgrade", "apply"),
                 ("lab", "status"), ("lab", "tools")]


@pytest.mark.parametrize("command", LIST_COMMANDS, ids=" ".join)
def test_every_list_command_takes_json_yaml_and_wide(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.code == 0
    for fmt in ("text", "json", "yaml", "wide"):
        assert fmt in result.out, (command, fmt)


@pytest.mark.parametrize("command", [("inventory", ACME), ("validate", ACME), ("lab", "tools")],
                         ids=["inventory", "validate", "lab tools"])
def test_yaml_is_the_json_data(command: tuple[str, ...]) -> None:
    as_json = run_cli(*command, "-o", "json")
    as_yaml = run_cli(*command, "-o", "yaml")
    assert as_json.code == as_yaml.code == 0, as_json.err + as_yaml.err
    assert yaml.safe_load(as_yaml.out) == json.loads(as_json.out)
    assert not as_yaml.out.lstrip().startswith("{")  # block YAML, not JSON passed off as YAML


def test_wide_adds_columns() -> None:
    text = run_cli("inventory", ACME)
    wide = run_cli("inventory", ACME, "-o", "wide")
    assert text.code == wide.code == 0
    header = next(x for x in wide.out.splitlines() if "SECRET" in x)
    assert "VAULT PATHS" in header and "PURPOSE" in header and "SOURCE" in header
    assert "VAULT PATHS" not in text.out
    assert "secret/dev/team-observability/grafana-admin" in wide.out  # a path whole, never folded
    tools, tools_wide = run_cli("lab", "tools"), run_cli("lab", "tools", "-o", "wide")
    first, first_wide = tools.out.splitlines()[0].split(), tools_wide.out.splitlines()[0].split()
    assert len(first_wide) > len(first) and first_wide[-1] == first[-1]  # the path still ends the line


def test_validate_wide_names_severity_and_object() -> None:
    from chamberlain.findings import Finding
    from chamberlain.reporting import to_text_lines

    finding = Finding("intents/a.yaml", 3, "CH001", "bad", column=5, object="SecretIntent/a", subject="k")
    plain, = to_text_lines([finding])
    wide, = to_text_lines([finding], wide=True)
    assert plain.startswith("intents/a.yaml:3: CH001 ")
    assert wide.startswith("intents/a.yaml:3:5: error CH001 ") and wide.endswith("object=SecretIntent/a (k)")


def test_existing_formats_keep_working() -> None:
    assert run_cli("inventory", ACME, "-o", "markdown").code == 0
    sarif = run_cli("validate", ACME, "-o", "sarif")
    assert sarif.code == 0 and json.loads(sarif.out)["version"] == "2.1.0"
    assert run_cli("schema", "-o", "yaml").code == 0
    assert run_cli("inventory", ACME, "-o", "xml").code == 2


# ------------------------------------------------------------------------------------------------ completion


def _chamberlain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script's entry (argv[0] ``chamberlain``, as click names the completion variable)."""
    code = "import sys; sys.argv[0] = 'chamberlain'; from chamberlain.cli.main import main; main()"
    full = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True,
                          check=False, timeout=60)


def test_completion_is_on() -> None:
    top = run_cli("--help")
    assert "--install-completion" in top.out and "--show-completion" in top.out
    # A sub-command group does not repeat them (completion is the whole program's).
    assert "--install-completion" not in run_cli("lab", "--help").out
    shown = _chamberlain("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert shown.returncode == 0, shown.stderr
    assert "_CHAMBERLAIN_COMPLETE=complete_bash" in shown.stdout and "complete -o default" in shown.stdout


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("chamberlain ro", 1, {"rotate", "root"}),
    ("chamberlain lab st", 2, {"status"}),
    ("chamberlain status --con", 2, {"--context"}),
    ("chamberlain inventory . -o ", 4, {"text", "json", "yaml", "wide", "markdown", "html"}),
], ids=["commands", "sub-commands", "options", "formats"])
def test_completion_completes(words: str, cword: int, expected: set[str]) -> None:
    got = _chamberlain(env={"_CHAMBERLAIN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert got.returncode == 0, got.stderr
    assert set(got.stdout.split()) == expected


# ------------------------------------------------------------------------------------------------ extras


@pytest.mark.parametrize(("module", "args"), [
    ("hvac", ("authority", "status", ACME)),
    ("kubernetes", ("apply", ACME, "--cluster", "dev1", "--kubeconfig", "/dev/null")),
    ("psycopg", ("demo", "--help")),  # help never imports a server client: exit 0 below
], ids=["hvac", "kubernetes", "psycopg-help"])
def test_a_missing_runtime_extra_says_how_to_install_it(module: str, args: tuple[str, ...]) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['chamberlain', *{list(args)!r}]; "
            "from chamberlain.cli.main import main; main()")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("CHAMBERLAIN_DEBUG", None)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    if args[-1] == "--help":
        assert got.returncode == 0, got.stderr
        return
    assert got.returncode == 2, got.stderr
    assert f"needs {module}" in got.stderr and "install chamberlain[runtime]" in got.stderr
    assert "pip install 'chamberlain[runtime]'" in got.stderr
    assert "internal error" not in got.stderr and "Traceback" not in got.stderr


def test_only_runtime_modules_get_the_advice() -> None:
    from chamberlain.cli.main import missing_runtime

    assert missing_runtime(ModuleNotFoundError("x", name="hvac.exceptions")) is not None
    assert missing_runtime(ModuleNotFoundError("x", name="no_such_thing")) is None  # a bug stays a bug
    assert missing_runtime(ImportError("x")) is None


def test_a_server_command_imports_its_own_group_only() -> None:
    """`chamberlain controller run` is the controller's process: it loads neither the lab, the demo, the drills nor
    cryptography (about 8 MiB of resident memory it never uses), and the help of every group stays whole."""
    code = ("import sys; sys.argv = ['chamberlain', 'controller', 'run', '--help']\n"
            "from chamberlain.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('loaded:' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography' "
            "or m.startswith(('chamberlain.lab', 'chamberlain.cli.lab', 'chamberlain.demo', "
            "'chamberlain.cli.drill')))))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, check=False, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "--from-cluster" in got.stdout and got.stdout.strip().splitlines()[-1] == "loaded:", got.stdout
    for root_help in (("--help",), ("--help", "controller"), ("-h", "lab")):  # the root's help lists them all
        listed = _chamberlain(*root_help)
        assert all(name in listed.stdout for name in ("controller", "lab", "drill", "adopt", "restore")), root_help


def test_render_into_a_path_the_file_system_refuses_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile" / "sub", Path("/proc/self/chamberlain-out")):
        got = _chamberlain("render", ACME, "-o", str(out), env={"CHAMBERLAIN_DEBUG": ""})
        assert got.returncode == 2, got.stderr
        assert f"cannot write the render into {out}" in got.stderr and "Nothing was written" in got.stderr
        assert "internal error" not in got.stderr and "Traceback" not in got.stderr


def test_render_to_dash_is_refused_instead_of_making_a_directory_named_dash(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = run_cli("render", ACME, "-o", "-")
    finally:
        os.chdir(here)
    assert result.code == 2 and "render writes a directory tree" in result.err
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(("raised", "shown"), [
    ("NotADirectoryError(20, 'Not a directory', 'afile/sub')", "error: afile/sub: Not a directory"),
    ("PermissionError(13, 'Permission denied', '/etc/x', None, '/etc/y')",
     "error: /etc/x -> /etc/y: Permission denied"),
    ("OSError(9, 'Bad file descriptor', 999)", "error: descriptor 999: Bad file descriptor"),
], ids=["one-path", "two-paths", "a-descriptor"])
def test_a_file_system_error_any_command_meets_names_its_path(raised: str, shown: str) -> None:
    code = ("import sys; import chamberlain.cli.main as m\n"
            f"def app():\n    raise {raised}\n"
            "m._app_for = lambda argv: app\nm.main()")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("CHAMBERLAIN_DEBUG", None)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    assert got.returncode == 1 and shown in got.stderr, got.stderr
    assert "internal error" not in got.stderr and "Traceback" not in got.stderr


def test_an_os_error_without_a_path_stays_an_internal_error() -> None:
    code = ("import chamberlain.cli.main as m\n"
            "def app():\n    raise ConnectionResetError(104, 'Connection reset by peer')\n"
            "m._app_for = lambda argv: app\nm.main()")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("CHAMBERLAIN_DEBUG", None)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    assert got.returncode == 1 and "internal error (ConnectionResetError)" in got.stderr, got.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize("args", [("schema",), ("--version",), ("validate", ACME, "-o", "json")],
                         ids=["large", "small", "validate-json"])
def test_output_to_a_full_disk_is_a_clear_error(args: tuple[str, ...]) -> None:
    code = "import sys; sys.argv[0] = 'chamberlain'; from chamberlain.cli.main import main; main()"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("CHAMBERLAIN_DEBUG", None)
    with open("/dev/full", "w") as full:
        got = subprocess.run([sys.executable, "-c", code, *args], env=env, stdout=full, stderr=subprocess.PIPE,
                             text=True, check=False, timeout=60)
    assert got.returncode == 1, got.stderr
    assert "error: cannot write: No space left on device" in got.stderr
    assert "internal error" not in got.stderr and "Traceback" not in got.stderr
    assert "Exception ignored" not in got.stderr
