"""What chamberlain takes from its process environment, read once, by an entry point.

Belongs here: :class:`Settings`, built by :meth:`Settings.from_environ` from a mapping the caller passes in (the
CLI passes ``os.environ``; a test passes a dict). Everything below the entry points receives the values it needs
as arguments (a path, a tool location, the environment a child process gets) and never looks at ``os.environ``
itself, so a library call means the same thing whatever shell it runs in (``tests/unit/test_boundaries.py``
checks this).

Not here: options a user passes on purpose (typer reads ``VAULT_ADDR``, ``KUBECONFIG`` and the like as option
defaults, in the CLI), and secrets: a token or key is read from a file the user names, never from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CRASH_AT = "CHAMBERLAIN_CRASH_AT"
DEBUG = "CHAMBERLAIN_DEBUG"
CACHE_DIR = "CHAMBERLAIN_CACHE_DIR"
LAB_DIR = "CHAMBERLAIN_LAB_DIR"
POD_NAME = "POD_NAME"
TOOLS = ("sops", "age", "age-keygen")


_TOOL_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP"})


def tool_env(base: Mapping[str, str]) -> dict[str, str]:
    """What a small tool (sops, age-keygen) starts from: where to find programs, whose home, which locale and
    temporary directory; never the caller's credentials (``VAULT_TOKEN``, cloud keys, ``PG*``...)."""
    return {k: v for k, v in base.items() if k in _TOOL_ENV or k.startswith("LC_")}


def tool_variable(name: str) -> str:
    """``CHAMBERLAIN_SOPS``, ``CHAMBERLAIN_AGE_KEYGEN``, ...: the variable that points at an explicit binary."""
    return "CHAMBERLAIN_" + name.upper().replace("-", "_")


@dataclass(frozen=True)
class Settings:
    """The process environment as chamberlain uses it (paths resolved, defaults applied)."""

    cache_dir: Path  # built lab servers and tools: $CHAMBERLAIN_CACHE_DIR, else ~/.cache/chamberlain
    state_dir: Path  # per-user state (the default lab, recovery files): $XDG_STATE_HOME/chamberlain
    config_dir: Path  # per-user configuration (root-of-trust identities): $XDG_CONFIG_HOME/chamberlain
    lab_dir: Path  # the default lab: $CHAMBERLAIN_LAB_DIR, else <state_dir>/lab
    tools: Mapping[str, Path] = field(default_factory=dict)  # explicit binaries (CHAMBERLAIN_SOPS=...)
    crash_at: str | None = None  # crash-injection point for the resumability tests (CHAMBERLAIN_CRASH_AT)
    debug: bool = False  # show tracebacks of unexpected errors (CHAMBERLAIN_DEBUG)
    pod_name: str | None = None  # this replica's name in-cluster (the Downward API sets POD_NAME)
    # What a child process starts from: sops and age-keygen get only tool_env() of it, the lab's servers their own
    # short list; go and apt-get (the lab's builds) get it whole, proxies and Go settings included.
    child_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The parse cache of validate and render: <cache_dir>/parse, else $XDG_CACHE_HOME/chamberlain/parse when only
    # that is set (None: <cache_dir>/parse).
    parse_cache_dir: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], home: Path) -> Settings:
        """Settings from ``environ`` (pure: the caller decides which environment that is)."""
        state_home = Path(environ["XDG_STATE_HOME"]) if environ.get("XDG_STATE_HOME") else home / ".local" / "state"
        config_home = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
        state_dir = state_home / "chamberlain"
        return cls(
            cache_dir=Path(environ[CACHE_DIR]) if environ.get(CACHE_DIR) else home / ".cache" / "chamberlain",
            state_dir=state_dir,
            config_dir=config_home / "chamberlain",
            lab_dir=Path(environ[LAB_DIR]) if environ.get(LAB_DIR) else state_dir / "lab",
            tools={name: Path(environ[tool_variable(name)]) for name in TOOLS if environ.get(tool_variable(name))},
            crash_at=environ.get(CRASH_AT) or None,
            debug=bool(environ.get(DEBUG)),
            pod_name=environ.get(POD_NAME) or None,
            child_env=dict(environ),
            parse_cache_dir=(Path(environ["XDG_CACHE_HOME"]) / "chamberlain" / "parse"
                             if environ.get("XDG_CACHE_HOME") and not environ.get(CACHE_DIR) else None),
        )

    @property
    def lab_cache(self) -> Path:
        """Where the lab's built binaries live, one directory per component and version."""
        return self.cache_dir / "lab"

    @property
    def parse_cache(self) -> Path:
        """Where validate and render keep parsed files, keyed by their bytes (chamberlain.intent.cache)."""
        return self.parse_cache_dir or self.cache_dir / "parse"

    @property
    def recovery_dir(self) -> Path:
        """Where ``authority init`` keeps encrypted shares when the Kubernetes write fails."""
        return self.state_dir / "recovery"


__all__ = ["Settings", "tool_env", "tool_variable"]
