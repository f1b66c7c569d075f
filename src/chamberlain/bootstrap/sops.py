"""A narrow wrapper over the ``sops`` binary: encrypt from memory, decrypt into memory.

Boundary: bytes in, bytes (or parsed data) out, through pipes only. Plaintext is handed to ``sops`` on stdin and
decrypted data comes back on stdout; neither ever touches the disk here. ``sops`` runs with ``--config`` pointing
at the null device and every key option on the command line, so a stray ``.sops.yaml`` or ``SOPS_*`` variable in
the caller's environment can neither change the recipients nor make the call fail; the age identity for decryption
is passed as ``SOPS_AGE_KEY_FILE`` and nothing else. The rest of its environment is the tool basics (``PATH``,
``HOME``, locale, temporary directory) of the one the entry point hands down (``Tools.env``).

Errors are mapped once, here, to :class:`SopsError` with a reason chosen by us. ``sops``' own stderr is never
repeated: it may quote input, and input here is secret.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chamberlain.bootstrap.tools import Tools
from chamberlain.checks.sops import BOOTSTRAP_ENCRYPTED_REGEX
from chamberlain.errors import ChamberlainError
from chamberlain.settings import tool_env

# The rule chamberlain.checks.sops expects (and the only selector it allows in a bootstrap file): values secret,
# shape reviewable.
ENCRYPTED_REGEX = BOOTSTRAP_ENCRYPTED_REGEX


class BootstrapError(ChamberlainError):
    """A bootstrap file or step cannot be processed as asked; nothing was changed. Never carries a value."""


class SopsError(BootstrapError):
    """``sops`` failed; the message says why in our words, never in sops' (which may quote input)."""


# What sops says (stderr substrings) -> what we tell the user. Order matters: first match wins.
_REASONS: tuple[tuple[str, str], ...] = (
    ("MAC mismatch", "MAC mismatch: the file was changed after it was encrypted"),
    ("no identity matched", "the age identity is not one of the file's recipients"),
    ("did not match any of the recipients", "the age identity is not one of the file's recipients"),
    ("failed to get the data key", "no available age identity can decrypt the file's data key"),
    ("successful groups required", "no available age identity can decrypt the file's data key"),
    ("sops metadata not found", "the input is not a sops file"),
    ("already encrypted", "the input is already encrypted"),
    ("failed to parse", "sops could not parse the age recipient or identity"),
    ("Error unmarshalling input", "sops could not parse the input as YAML"),
)


def _reason(stderr: bytes, returncode: int) -> str:
    text = stderr.decode("utf-8", errors="replace").lower()
    for needle, reason in _REASONS:
        if needle.lower() in text:
            return reason
    return f"sops exited with status {returncode}"


def sops_env(base: Mapping[str, str], identity_file: Path | None) -> dict[str, str]:
    """The environment ``sops`` runs with: the tool basics of ``base`` (:func:`~chamberlain.settings.tool_env`: no
    credential of the caller reaches it) without any ``SOPS_*`` setting (recipients, key files, key commands,
    config paths), so the call means exactly what its arguments say; plus the age identity to decrypt with, when
    there is one."""
    env = {k: v for k, v in tool_env(base).items() if not k.startswith("SOPS_")}
    if identity_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(identity_file)
    return env


@dataclass(frozen=True)
class Sops:
    """The ``sops`` at ``binary``, started from ``env`` (narrowed by :func:`sops_env` on every call)."""

    binary: Path
    env: Mapping[str, str] = field(repr=False, hash=False)  # a mapping: left out of the hash, kept in ==
    timeout: float = 60.0

    @classmethod
    def locate(cls, tools: Tools) -> Sops:
        return cls(tools.find("sops"), tools.env)

    def _run(self, args: Sequence[str], stdin: bytes, identity_file: Path | None, what: str) -> bytes:
        argv = [str(self.binary), "--config", os.devnull, *args]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout, check=False,
                                  env=sops_env(self.env, identity_file))
        except subprocess.TimeoutExpired:
            raise SopsError(f"{what}: sops did not finish within {self.timeout:.0f}s") from None
        except OSError as exc:
            raise SopsError(f"{what}: cannot run {self.binary} ({type(exc).__name__})") from None
        if proc.returncode != 0:
            raise SopsError(f"{what}: {_reason(proc.stderr, proc.returncode)}")
        return proc.stdout

    def encrypt(
        self,
        plaintext: bytes,
        *,
        filename: str,
        recipients: Sequence[str],
        encrypted_regex: str = ENCRYPTED_REGEX,
    ) -> bytes:
        """The sops-encrypted YAML of ``plaintext`` (YAML), to exactly ``recipients``. ``filename`` only names
        the input in messages and in sops' own type detection; nothing is read from or written to it."""
        if not recipients:
            raise SopsError(f"{filename}: no age recipients to encrypt to")
        return self._run(
            ["encrypt", "--input-type", "yaml", "--output-type", "yaml", "--filename-override", filename,
             "--age", ",".join(recipients), "--encrypted-regex", encrypted_regex],
            plaintext, None, f"encrypting {filename}",
        )

    def updatekeys(self, repo: Path, rel: str, *, identity_file: Path) -> None:
        """``sops updatekeys`` of the file ``rel`` of ``repo`` with the repository's ``.sops.yaml``: re-wraps its
        data key to the recipients the creation rules name, opened with ``identity_file`` (an identity that can
        already decrypt it). The plaintext never touches the disk."""
        argv = [str(self.binary), "--config", str(repo / ".sops.yaml"), "updatekeys", "--yes", rel]
        try:
            proc = subprocess.run(argv, cwd=repo, env=sops_env(self.env, identity_file), capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SopsError(f"{rel}: sops updatekeys did not finish within {self.timeout:.0f}s") from None
        except OSError as exc:
            raise SopsError(f"{rel}: cannot run {self.binary} ({type(exc).__name__})") from None
        if proc.returncode != 0:  # sops' own stderr is not repeated: it may quote input
            raise SopsError(f"{rel}: sops updatekeys failed (exit {proc.returncode}); can {identity_file} open it?")

    def decrypt(self, ciphertext: bytes, *, filename: str, identity_file: Path) -> Any:
        """The decrypted document of a sops YAML file, parsed (as KSOPS or Flux would decrypt it in-cluster)."""
        out = self._run(
            ["decrypt", "--input-type", "yaml", "--output-type", "json", "--filename-override", filename],
            ciphertext, identity_file, f"decrypting {filename}",
        )
        try:
            return json.loads(out)
        except ValueError:
            raise SopsError(f"decrypting {filename}: sops did not return one JSON document") from None
