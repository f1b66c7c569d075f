"""Where a literal value is assigned to a key that names a credential, in any common syntax.

Concept: most committed credentials have no recognisable shape of their own (a database password, a provider key
of 32 hex digits); what gives them away is the name they are assigned to. This module finds ``<key> <op> <value>``
in YAML, JSON, ``.env``, INI/TOML, HCL, shell, Dockerfile ``ENV``, Go (``x := "…"``, ``var x string = "…"``),
Python, JS/TS and Kotlin (``x: String = "…"``), Java/C#, Ruby and Logstash (``"x" => "…"``), PHP (``$x = "…"``,
``.=``), Makefiles (``::=``, ``?=``), calls such as ``setProperty("X", "…")``, XML elements and
``<add key="X" value="…"/>``, Kubernetes ``env: [{name: X, value: …}]``, ``.netrc`` (``password …``) and command-line
flags (``--token …``).

Boundary: finds assignments and classifies the key; whether the value is a credential is :mod:`.judge`'s call.
Every step is bounded (a key of at most 128 characters, a value of at most 1,024), and each keyword occurrence is
looked at once, so the scan stays linear in its input.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_KEY = 128
MAX_VALUE = 1024

# Lower-case fragments every credential key contains; found in the lower-cased text, then the key is read whole.
KEYWORD = re.compile(r"pass|pwd|secret|token|key|cred|auth|bearer")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-$")
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")

_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "pass", "pw", "passwort", "contrasena"})
_SECRET_WORDS = frozenset({"secret", "credential", "credentials", "creds", "cred"})
_TOKEN_WORDS = frozenset({"token", "auth", "authorization", "bearer", "apikey", "accesskey", "secretkey",
                          "privatekey", "authkey", "authtoken", "accesstoken", "apitoken", "sessiontoken"})
# ``<qualifier> key``: an API key, a signing key; a bare ``key`` (a map key, a Vault path key) is not one.
_KEY_QUALIFIERS = frozenset({
    "api", "access", "secret", "private", "signing", "sign", "encryption", "encrypt", "decryption", "master", "auth",
    "client", "account", "app", "application", "license", "licence", "service", "session", "cookie", "subscription",
    "consumer", "webhook", "admin", "root", "shared", "hmac", "crypto", "storage", "write", "deploy", "ssh", "gpg",
    "pgp", "aes", "jwt", "bot", "integration", "server", "management", "mgmt", "rest", "live", "prod", "ingest",
    "dev", "sdk", "partner", "merchant", "project", "org", "organization", "personal", "user", "sas",
    "primary", "secondary", "instrumentation", "cipher", "wrapping", "unseal", "recovery", "mac", "otp", "totp",
    "x", "token", "passphrase",
})
# Words that may follow the credential word and still name its value (``SECRET_KEY_BASE``, ``password_b64``).
_VALUE_SUFFIXES = frozenset({
    "base", "value", "val", "b64", "base64", "hex", "raw", "data", "plain", "plaintext", "text", "str", "string",
    "old", "new", "current", "prod", "production", "dev", "staging", "test", "live", "v1", "v2", "1", "2", "0", "3",
})
# Tokens that are not credentials: anti-forgery values, pagination cursors, counts.
_NOT_SECRET_BEFORE = frozenset({
    "csrf", "xsrf", "authenticity", "page", "next", "continuation", "pagination", "sync", "cancellation", "max",
    "min", "num", "count", "total", "public", "pub", "publishable", "first", "last", "prev", "previous", "start",
    "end", "input", "output", "completion", "prompt", "sequence", "primary", "foreign", "sort", "partition",
    "cache", "idempotency", "lock", "translation", "hot", "row", "unique", "index", "lookup", "map", "hash",
    "request", "verification", "verify", "no", "skip", "use", "has", "is", "with", "without", "require",
    "enable", "disable", "show", "hide", "reset", "forgot", "confirm", "new", "old", "change", "retype",
})
# An operator after the key (and after its closing quote or bracket, and spaces).
_OPERATOR = re.compile(r":::=|::=|:=|\?=|\.=|\+=|\|\|=|\?\?=|=>|=(?![=~>])|:(?![:/\\])|,")
_TYPED = re.compile(r":[ \t]*[A-Za-z_][\w.<>\[\]?]{0,40}[ \t]*=(?![=>])")  # Kotlin/TS/Scala: x: String = "…"
_GO_TYPE = re.compile(r"(?:string|\[\]byte|String|str)[ \t]*=(?![=>])")  # Go: var x string = "…"
_VALUE_FIELD = re.compile(r"value[\"']?[ \t]*[:=][ \t]*")
_NAME_FIELDS = ("name", "key")
_KEY_TAIL = re.compile(r"[A-Za-z0-9_.$-]{0,128}")
# A bare value ends where a query or a list goes on; 256 characters are enough to judge it (and keep a flood of
# ``token=token=…`` cheap).
_BARE = re.compile(r"[^ \t\r\n,;}\]\"'`<&]{0,256}")
_IDENTIFIER = re.compile(r"[A-Za-z_][\w.]{0,200}")
_SUBSCRIPT = re.compile(r"[A-Za-z_][\w.]{0,200}\[")
_YAML_NODE_PROPERTY = re.compile(r"[!&*][A-Za-z][\w./!-]{0,100}|!")


LIMIT = 50_000  # keyword occurrences per text (plus one per 100 characters); a real file has a few hundred


@dataclass
class Budget:
    """How many keyword occurrences one text may cost. A file of nothing but keywords (10 MB of ``token=``) is
    looked at up to the budget, then reported as partly scanned, instead of costing minutes of Python."""

    remaining: int = LIMIT
    exhausted: bool = False


@dataclass(frozen=True)
class Assignment:
    """A literal assigned to a credential key: the key as written, its class, and the value with its offset."""

    key: str
    kind: str  # password | secret | token
    words: tuple[str, ...]
    value: str
    start: int
    quoted: bool
    # The value is a later argument of a call or a tuple (``setProperty("db.password", "…")``), not an assignment
    # proper: ``("db-password", "rotation drill")`` pairs a name with any string, so only a token-like one counts.
    call: bool = False


def key_kind(key: str) -> tuple[str, tuple[str, ...]] | None:
    """``password``, ``secret`` or ``token`` when ``key`` names a credential (``DB_PASSWORD``, ``clientSecret``,
    ``x-api-key``, ``SECRET_KEY_BASE``, ``_authToken``); None for ``passwordFile``, ``csrf_token``, ``keyRef``."""
    words = tuple(w.lower() for w in _WORD.findall(key))
    for i in range(len(words) - 1, -1, -1):
        word = words[i]
        kind = _word_kind(word, words[i - 1] if i else "")
        if kind is None:
            if word in _VALUE_SUFFIXES or word.isdigit():
                continue
            return None
        if i and words[i - 1] in _NOT_SECRET_BEFORE and kind != "password":
            return None
        if kind == "password" and i and words[i - 1] in ("no", "use", "has", "is", "require", "skip", "enable",
                                                            "disable", "show", "hide", "reset", "forgot", "disabled",
                                                            "enabled", "allow", "prompt", "ask"):
            return None
        return kind, words
    return None


def _word_kind(word: str, previous: str) -> str | None:
    if word in _PASSWORD_WORDS or word.endswith(("password", "passwd", "passphrase")):
        return "password"
    if word in _SECRET_WORDS or (word.endswith("secret") and len(word) > 6):
        return "secret"
    if word in _TOKEN_WORDS or word.endswith("token"):
        return "token"
    if word == "key" and previous in _KEY_QUALIFIERS:
        return "token"
    if word.endswith("key") and word[:-3] in _KEY_QUALIFIERS:
        return "token"
    return None


def find(text: str, lowered: str, start: int = 0, end: int | None = None,
         budget: Budget | None = None, named: Iterable[tuple[int, int]] = ()) -> Iterator[Assignment]:
    """Every credential-key assignment in ``text[start:end]`` (``lowered`` is its ASCII-lower-cased copy).

    ``named``: (start, end) of provider names in the text, in order (``SONAR_LOGIN``, ``HEROKU_KEY``): a key holding
    one is an assignment of kind ``named`` even without a credential word; only a value in that provider's format
    makes it a credential (the caller's check)."""
    budget = budget if budget is not None else Budget()
    stop = len(text) if end is None else end
    cursor = start
    kinds: dict[str, tuple[str, tuple[str, ...]] | bool | None] = {}
    keywords = ((m.start(), m.end(), False) for m in KEYWORD.finditer(lowered, start, stop))
    providers = [(a, b, True) for a, b in named if start <= a and b <= stop]
    for m_start, m_end, is_named in heapq.merge(keywords, providers) if providers else keywords:
        if m_start < cursor:
            continue  # inside the key looked at last
        budget.remaining -= 1
        if budget.remaining < 0:
            budget.exhausted = True
            return
        ks = m_start
        floor = max(start, ks - MAX_KEY)
        while ks > floor and text[ks - 1] in _KEY_CHARS:  # keys are short: cheaper than a regex search back
            ks -= 1
        tail = _KEY_TAIL.match(text, m_end, stop)
        ke = tail.end() if tail is not None else m_end
        cursor = ke
        key = text[ks:ke].strip("$.-")
        classified = kinds.get(key, False)
        if classified is False:
            classified = key_kind(key)
            if len(kinds) < 10_000:
                kinds[key] = classified
        if classified is None and is_named:
            classified = ("named", tuple(w.lower() for w in _WORD.findall(key)))
        if classified is None:
            continue
        assert not isinstance(classified, bool)
        kind, words = classified
        found = _value_after(text, ks, ke, stop)
        if found is None:
            continue
        value, at = found
        if value:
            between = text[ke:at]
            call = "," in between and ":" not in between and "=" not in between
            yield Assignment(key, kind, words, value, at, at > 0 and text[at - 1] in "\"'`", call)


def _value_after(text: str, ks: int, ke: int, stop: int) -> tuple[str, int] | None:
    """The value assigned to the key at ``text[ks:ke]``, and its offset; None when no assignment follows."""
    before = text[ks - 1] if ks > 0 else ""
    pos = ke
    quoted_key = before in "\"'`" and before != "" and pos < stop and text[pos] == before
    if not quoted_key and pos < stop and text[pos] in "\"'" and before == " ":
        # "facebook access_token": a quoted key with spaces in it
        opening = text.rfind(text[pos], max(0, ks - MAX_KEY), ks)
        quoted_key = opening >= 0 and "\n" not in text[opening:ks]
    if before == "<" and pos < stop and text[pos] == ">":
        return _element_value(text, ke + 1, stop, text[ks:ke])
    if quoted_key:
        pos += 1
        if pos < stop and text[pos] == "]":
            pos += 1  # os.environ["X_TOKEN"] = "…"
    elif pos < stop and text[pos] == "]":
        pos += 1
    # The line so far, at most 256 characters back: a 10 MB line must not be re-read for every key on it.
    window = max(0, ks - 256)
    line_start = max(text.rfind("\n", window, ks) + 1, window)
    prefix = text[line_start:ks]
    if _after_name_field(prefix):  # env: - name: DB_PASSWORD / value: …, <add key="Password" value="…"/>
        return _paired_value(text, pos, stop)
    while pos < stop and text[pos] in " \t":
        pos += 1
    sign = ""
    typed = _TYPED.match(text, pos, stop) or _GO_TYPE.match(text, pos, stop)
    if typed is not None:
        pos = typed.end()
    else:
        op = _OPERATOR.match(text, pos, stop)
        if op is None:
            return _spaced_value(text, ks, ke, pos, stop, prefix)
        sign = op.group()
        pos = op.end()
        if sign == ":" and not quoted_key and not (pos < stop and text[pos] in " \t\"'"):
            return None  # io.jsonwebtoken:jjwt, host:token — not a YAML/JSON key
        if (sign == ":" and not quoted_key and prefix.strip(" \t-")
                and not prefix.rstrip().endswith(("{", ",", "(", "["))):
            return None  # "in one pass: libyaml": prose; a YAML key starts its line (or a flow mapping entry)
        if sign == "," and not ((quoted_key and prefix.rstrip().endswith(("(", "(\"", "('"))) or
                                (quoted_key and text[line_start:ks - 1].rstrip().endswith("("))):
            return None
    while pos < stop and text[pos] in " \t":
        pos += 1
    found = _literal(text, pos, stop)
    if found is not None and typed is None and sign == "=" and prefix.strip() in ("", "export"):
        found = _whole_env_value(text, found, stop)
    if found is not None and sign == ":" and not quoted_key and found[1] == pos and text[pos] not in "\"'`":
        found = _whole_yaml_value(text, found, stop)
    if found is not None and quoted_key and pos < stop and text[pos] not in "\"'`" and (
            _IDENTIFIER.fullmatch(found[0]) or _SUBSCRIPT.match(found[0])):
        return None  # {"password": CANARY}, {"password": CANARIES[0]}: JSON has no bare words, so this is code
    return found


_ENV_VALUE = re.compile(r"[^\s\"'`]{0,256}")


def _whole_env_value(text: str, found: tuple[str, int], stop: int) -> tuple[str, int]:
    """``DB_PASSWORD=Ab;9kLm&2`` on a line of its own (``.env``, shell): the value runs to the end of the word,
    ``;``, ``&`` and ``,`` included, unless another ``=`` follows (``Password=x;Server=y`` is a connection string)."""
    value, at = found
    end = at + len(value)
    if at == 0 or text[at - 1] in "\"'`" or end >= stop or text[end] not in ";&,":
        return found
    whole = _ENV_VALUE.match(text, at, stop)
    if whole is None or "=" in whole.group() or (whole.end() < stop and text[whole.end()] not in " \t\r\n"):
        return found
    return whole.group().rstrip(";,"), at


_YAML_REST = re.compile(r"[^\r\n]{0,256}")


def _whole_yaml_value(text: str, found: tuple[str, int], stop: int) -> tuple[str, int]:
    """A plain YAML scalar runs to the end of its line (or a `` #`` comment): ``PASS: TestKey_Create (12.46s)`` in a
    test log holds spaces, so it is prose, not a one-word password."""
    value, at = found
    end = at + len(value)
    if end >= stop or text[end] not in " \t":
        return found
    rest = _YAML_REST.match(text, end, stop)
    tail = rest.group() if rest is not None else ""
    comment = tail.find(" #")
    tail = (tail if comment < 0 else tail[:comment]).rstrip()
    return (value + tail, at) if tail.strip() else found


def _after_name_field(prefix: str) -> bool:
    """Does the line so far end with ``name:``/``key=`` (and an opening quote), so the key is itself a value?"""
    tail = prefix.rstrip(" \t\"'")
    if not tail.endswith((":", "=")):
        return False
    tail = tail[:-1].rstrip(" \t\"'").lower()
    for field in _NAME_FIELDS:
        if tail.endswith(field):
            before = tail[: -len(field)]
            return not before or not before[-1].isalnum()
    return False


def _literal(text: str, pos: int, stop: int, nested: bool = False) -> tuple[str, int] | None:
    if pos >= stop:
        return None
    quote = text[pos]
    if quote in "\"'`":
        close = pos + 1
        limit = min(stop, pos + 1 + MAX_VALUE)
        while close < limit and text[close] != quote and text[close] != "\n":
            close += 2 if text[close] == "\\" else 1
        if close >= limit or text[close] != quote:
            return None
        value = text[pos + 1 : close]
        return _unescape_cut(value), pos + 1
    if quote in "|>" and (pos + 1 >= stop or text[pos + 1] in " \t\r\n-+0123456789"):
        return _block_scalar(text, pos, stop)  # a YAML block scalar: the value is on the next lines
    if quote in "{[(":
        return None  # a mapping, a list or an expression, not a scalar
    prop = _YAML_NODE_PROPERTY.match(text, pos, stop) if quote in "&!*" else None
    if prop is not None and prop.end() < stop and text[prop.end()] not in " \t\r\n":
        prop = None  # !07Zev(x: a password starting with '!', not a tag
    if prop is not None:
        after = prop.end()
        # password: &pw value, password: !!str value
        if (quote == "&" or text.startswith("!!", pos)) and after < stop and text[after] in " \t" and not nested:
            while after < stop and text[after] in " \t":
                after += 1
            return _literal(text, after, stop, nested=True)
        return None  # a YAML tag (!vault, !Ref), an alias, or an anchor on a mapping: the value is elsewhere
    bare = _BARE.match(text, pos, stop)
    value = bare.group().rstrip(");") if bare is not None else ""
    if _YAML_NODE_PROPERTY.fullmatch(value):
        return None
    return _unescape_cut(value), pos


_BLOCK_HEADER = re.compile(r"[|>][-+0-9]{0,3}[ \t]*(?:#[^\n]{0,200})?\r?\n")


def _indent(text: str, start: int, stop: int) -> int:
    """Columns of spaces (and YAML list dashes) that open the line starting at ``start``, at most 256."""
    pos, limit = start, min(stop, start + 256)
    while pos < limit and text[pos] in " -":
        pos += 1
    return pos - start


def _block_scalar(text: str, pos: int, stop: int) -> tuple[str, int] | None:
    """``password: |`` and the value alone on the next, deeper-indented line. A block of several lines is a
    script, a certificate or prose (private keys are found on their own), never judged as one value."""
    header = _BLOCK_HEADER.match(text, pos, stop)
    if header is None:
        return None
    line_start = text.rfind("\n", max(0, pos - MAX_KEY - 256), pos) + 1
    key_indent = _indent(text, line_start, pos)
    first = header.end()
    end = text.find("\n", first, min(stop, first + MAX_VALUE))
    if end < 0:
        end = min(stop, first + MAX_VALUE)
        if end < stop:
            return None  # a line longer than any value
    line = text[first:end].rstrip("\r")
    value = line.strip()
    if not value or len(line) - len(line.lstrip(" ")) <= key_indent:
        return None
    following = end + 1
    if following < stop:
        nxt_end = text.find("\n", following, min(stop, following + MAX_VALUE))
        nxt = text[following : nxt_end if nxt_end >= 0 else min(stop, following + MAX_VALUE)].rstrip("\r")
        if nxt.strip() and len(nxt) - len(nxt.lstrip(" ")) > key_indent:
            return None  # a second line of the same block
    return value, first + line.index(value)


def _unescape_cut(value: str) -> str:
    """A value inside a JSON string ends at an escaped line break (``"X_TOKEN=v\\nNEXT=1"``)."""
    for escape in ("\\n", "\\r", "\\t"):
        at = value.find(escape)
        if at >= 0:
            value = value[:at]
    return value


def _element_value(text: str, pos: int, stop: int, key: str) -> tuple[str, int] | None:
    """``<password>v</password>`` and the same with the value on its own line."""
    close = text.find("</", pos, min(stop, pos + MAX_VALUE))
    if close < 0:
        return None
    inner = text[pos:close]
    value = inner.strip()
    if not value or "\n" in value or "<" in value:
        return None
    return value, pos + inner.index(value)


def _paired_value(text: str, pos: int, stop: int) -> tuple[str, int] | None:
    """The ``value`` field within the next 300 characters (same object or the next lines of a YAML list item)."""
    window = min(stop, pos + 300)
    at = text.find("value", pos, window)
    m = _VALUE_FIELD.match(text, at, window) if at >= 0 else None
    if m is None:
        return None
    between = text[pos : m.start()]
    if between.count("\n") > 3 or "name" in between.lower():
        return None  # the value belongs to another entry
    return _literal(text, m.end(), stop)


def _spaced_value(text: str, ks: int, ke: int, pos: int, stop: int, prefix: str) -> tuple[str, int] | None:
    """``.netrc`` (``password s3cret``), Dockerfile ``ENV DB_PASSWORD s3cret`` and flags (``--token s3cret``)."""
    if pos == ke or pos >= stop or text[pos] == "\n":
        return None
    key = text[ks:ke].lower()
    stripped = prefix.strip()
    recent = text[max(0, ks - 200) : ks]
    netrc = key in ("password", "passwd") and (
        stripped.startswith(("machine ", "default")) or " login " in f" {stripped} "
        or (stripped == "" and ("machine " in recent and "login " in recent)))
    flag = text.startswith("--", ks)
    dockerfile = stripped.upper() == "ENV"
    if not (netrc or flag or dockerfile):
        return None
    if flag and (text[pos] == "-" or text.startswith("  ", ke) or text[ke] in "\"'`"):
        return None  # another flag, a help text's column (``--passphrase     Encrypt``), prose (`` `--password` flag``)
    return _literal(text, pos, stop)
