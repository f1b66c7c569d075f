"""The controller's authority login from a token file (a pod's projected ServiceAccount token)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.authority.session import read_token_file
from chamberlain.errors import UsageError


def test_the_token_is_read_again_at_each_call_because_the_kubelet_rotates_it(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("first.jwt.value\n")
    assert read_token_file(f, "login token file") == "first.jwt.value"
    f.write_text("second.jwt.value")
    assert read_token_file(f, "login token file") == "second.jwt.value"


def test_an_empty_or_missing_file_is_a_clear_error_without_content(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(UsageError, match="the login token file is empty"):
        read_token_file(empty, "login token file")
    with pytest.raises(UsageError, match="cannot read the login token file"):
        read_token_file(tmp_path / "absent", "login token file")


def test_controller_run_takes_the_file_by_flag_or_variable() -> None:
    from typer.testing import CliRunner

    from chamberlain.cli.main import app

    out = CliRunner().invoke(app, ["controller", "run", "--help"], env={"COLUMNS": "200"}).output
    assert "--login-token-file" in out and "CHAMBERLAIN_LOGIN_TOKEN_FILE" in out


@pytest.mark.parametrize(("content", "says"), [
    (b"zqa\xff\n", "is not text"),
    ("zqb\u20ac\n".encode(), "does not hold one token"),
    (b"zqc\nzqd\n", "does not hold one token"),
    (b"zqe zqf\n", "does not hold one token"),
    (b"zqg\tzqh", "does not hold one token"),
], ids=["not-utf8", "not-ascii", "two-lines", "space", "tab"])
def test_a_token_file_that_cannot_be_one_token_is_a_clear_error_without_its_content(
        tmp_path: Path, content: bytes, says: str) -> None:
    f = tmp_path / "token"
    f.write_bytes(content)
    with pytest.raises(UsageError, match=says) as caught:
        read_token_file(f, "token file")
    assert str(f) in str(caught.value)
    assert "zq" not in str(caught.value).replace(str(f), "")
