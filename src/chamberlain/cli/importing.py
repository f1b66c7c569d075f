"""``chamberlain import NAME PATH``: a value issued upstream after the handover, into the authority through the
rotation workflow. A thin command over :mod:`chamberlain.service.importing`.

The value comes from ``--from-file F`` or ``--from-file -`` (stdin), never from the command line: shell history and
``ps`` would keep it. ``--value`` and friends exist only to refuse. Exit 0 imported (or unchanged), 1 refused by
the state of things (not handed over, a run in flight, a failed run), 2 bad input. Never prints a value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, actor, clock, target_options
from chamberlain.cli.output import DataFormat, Output, RepoPath, emit_data, line, stderr
from chamberlain.cli.progress import ReportingClock, WaitProgress
from chamberlain.errors import UsageError
from chamberlain.service.context import Caller, LiveServers

_ARGV_VALUE = typer.Option("--value", "--from-literal", "--literal", hidden=True, show_default=False)


def _read(source: str) -> tuple[bytes, Path | None]:
    """The bytes of ``source`` (``-``: stdin), at most one byte over the limit (the service says it is too big)."""
    from chamberlain.rotation.rotators.imported import MAX_IMPORT_BYTES

    if source == "-":
        if sys.stdin.isatty():
            raise UsageError("--from-file -: stdin is a terminal; pipe the value in (e.g. from a password manager)")
        return sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1), None
    path = Path(source)
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_IMPORT_BYTES + 1), path
    except OSError as exc:
        raise UsageError(f"{source}: cannot read the value file ({exc.strerror})") from None


@target_options()
def import_cmd(
    name: Annotated[str, typer.Argument(metavar="SECRET", help="The secret (intent name).", show_default=False)],
    path: RepoPath,
    from_file: Annotated[str, typer.Option(
        "--from-file", "-f", metavar="FILE", show_default=False,
        help="File with the new value: a YAML/JSON mapping of every key of the secret to its value, or with "
             "--key the raw value of one key; '-' reads stdin.")],
    key: Annotated[str | None, typer.Option("--key", "-k", metavar="KEY", show_default=False,
                                            help="Replace this key only; the file holds its raw value.")] = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the run and the ledger.")] =
        "upstream-issued value imported",
    max_wait: Annotated[float, typer.Option("--max-wait", help="Longest wait (s) to sleep through in the run.")
                        ] = 120.0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for consumers to sync.")] = 120.0,
    value: Annotated[str | None, _ARGV_VALUE] = None,
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Import a value issued upstream (a provider's new password or token) for a handed-over bootstrap secret.

    The value becomes a new version in Vault through the rotation workflow: staged, promoted, ESO refreshed,
    workloads restarted, a ledger entry with trigger import. Git stays out of it.

    Example: chamberlain import smtp-relay examples/acme -e dev --cluster dev1 --from-file ~/smtp.yaml
    """
    from chamberlain.service.importing import ImportRequest, import_value

    if value is not None:
        raise UsageError("a value is never taken from the command line (shell history and ps keep it); use "
                         "--from-file FILE or --from-file - (stdin)")
    # PATH NAME or NAME PATH, as `rotate` accepts
    if not Path(path).is_dir() and Path(name).is_dir():
        path, name = name, path
    raw, source_path = _read(from_file)
    wall = clock()
    with WaitProgress(stderr, wall, verb="import") as progress:
        request = ImportRequest(Path(path), name, target.environment, raw=raw, source=from_file,
                                source_path=source_path, cluster=target.cluster, key=key, reason=reason,
                                max_wait=max_wait, timeout=timeout, on_stage=progress.stage)
        caller = Caller(actor(), ReportingClock(wall, progress))
        with LiveServers(target.conn, caller.clock) as servers:
            result = import_value(request, servers, caller)
    data = result.as_dict()
    if not emit_data(data, output):
        version = f"v{data.get('previousVersion')} -> v{data.get('version')}" if "version" in data else ""
        prop = data.get("propagationSeconds")
        line(f"{result.result:<10} {data['secret']} ({data['environment']}/{data['cluster']}) {data['path']}  "
             f"{version}  run {data.get('run', '-')}  propagated {'-' if prop is None else f'{prop:.2f}s'}  "
             f"restarted {','.join(data.get('workloadsRestarted') or []) or '-'}")
        for note in ("error", "message"):
            if data.get(note):
                line(f"  {data[note]}", err=True)
    raise typer.Exit(0 if result.ok else 1)
