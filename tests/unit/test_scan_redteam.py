"""Red-team cases for the credential scanner: evasions it must catch, lookalikes it must not flag, inputs that must
stay fast and never leak the value. Values are generated per run (never a real credential), so this file stays
clean under the scanner itself."""

from __future__ import annotations

import random
import shutil
import string
import time
from pathlib import Path

import pytest

from chamberlain.scan.engine import scan_text
from tests.conftest import CORPUS, run_cli

RNG = random.Random(1515_15)
ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


PW = "Q" + rand(12) + "7"
WARNINGS = {"high-entropy", "unconfirmed-token", "partial"}


def errors(text: str) -> list[str]:
    """Kinds of the CH024-level hits (CH128 guesses and CH127 notes left out)."""
    return [h.kind for h in scan_text(text) if h.kind not in WARNINGS]


# ------------------------------------------------------------------------------------------------ evasions

CAUGHT = {
    # YAML block scalars: the value alone on the next, deeper line
    "yaml-block-literal": f"db:\n  password: |\n    {PW}\n",
    "yaml-block-folded-strip": f"password: >-\n  {PW}\n",
    "yaml-block-list-item": f"env:\n  - name: DB_PASSWORD\n    value: |\n      {PW}\n",
    # .env and shell: ';', '&' and ',' belong to an unquoted value on a line of its own
    "dotenv-semicolon": f"DB_PASSWORD=Ab;{PW}\n",
    "dotenv-ampersand": f"export DB_PASSWORD=x&{PW}\n",
    "dotenv-comma": f"DB_PASSWORD=a,{PW}\n",
    # a URL with an empty user name (redis, memcached)
    "redis-no-user": f"REDIS_URL=redis://:{PW}@redis:6379/0\n",
    # mysql clients take the password glued to -p
    "mysql-p": f"mysql -h db -u root -p{PW} orders < dump.sql\n",
    "mysqldump-p-quoted": f"mysqldump -uroot -p'{PW}' --all-databases\n",
    # a YAML plain scalar with a comment after it is still the value
    "yaml-comment-after": f"password: {PW} # rotated monthly\n",
    "curl-password-with-at": f"curl -u elastic:P@{PW} https://localhost:9200\n",
    # a YAML anchor before the value; passwords in SQL migrations and init scripts
    "yaml-anchor": f"auth:\n  password: &pw {PW}\n",
    "sql-identified-by": f"CREATE USER 'app'@'%' IDENTIFIED BY '{PW}';\n",
    "sql-with-password": f"ALTER ROLE app WITH ENCRYPTED PASSWORD '{PW}';\n",
    "flag-single-space": f"vic-machine create --user root --password {PW}\n",
}


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_realistic_commits_are_found(name: str) -> None:
    assert errors(CAUGHT[name]), name


# ------------------------------------------------------------------------------------------------ false alarms

NOT_CREDENTIALS = {
    # a block of several lines is a script or prose, not one value
    "yaml-block-script": "password: |\n  echo one\n  echo two\n",
    "yaml-block-next-key": "password: |\nnext: value\n",
    # a connection string keeps ';' as its separator
    "connection-string-next-field": "Password=${DB_PW};Server=db\n",
    # backticks in docs end a curl example's password
    "curl-doc": "# ``curl -u user:password``. Bounded runs only.\n",
    "dotenv-doc": "# ``password: literal``, ``DB_PASSWORD=literal``, ``\"apiKey\": \"literal\"``.\n",
    # tuples and calls pairing a Secret's name with a reason or a kind
    "call-reason": 'request = manual("db-password", "rotation drill", NOW)\n',
    "tuple-word": 'assert got == ("db-password", "webhook", "leaked")\n',
    # a mapping of key names in a provider's table
    "key-name-value": '         ("administrator_login_password", "admin_password"), Chars(ANXD, 8, 20),\n',
    # code: a subscript and a format field are not literals
    "subscript": 'kv.write("secret", "prod/o/s", {"password": CANARIES[0]}, cas=0)\n',
    "format-field": "canonical = f'{{\"password\":\"{guess}\"}}'.encode()\n",
    "chamberlain-template": 'password: "{orders-db-app.password}"\n',
    # translation files
    "i18n-fr": '{"password": "Mot de passe", "forgot": "x"}\n',
    "i18n-de": '{"password": "Passwort"}\n',
    # mysql flags that are not a password
    "mysql-prompt": "mysql -h db -u root -p orders\n",
    "mysql-env": "mysql -u root -p$MYSQL_ROOT_PASSWORD\n",
    "mkdir-p": "mysql -e 'select 1' && mkdir -p /var/run/mysqld\n",
    "mysql-escaped-newline": '"body": "echo x | mysql -u root -p$1\\n}\\n\\nfunction y"\n',
    # go test output, shell colours, help texts, adduser flags, paths, README badges
    "go-test-log": "--- PASS: TestAccKey_Create (12.46s)\n",
    "ansi-colour": 'PASS="\\x1b[32mPASS"\n',
    "flag-help-column": "-p, --passphrase            Encrypt with a passphrase.\n",
    "adduser-flags": 'adduser --ingroup "$group" --disabled-password --shell /bin/false app\n',
    "doc-path": "- Password: api/generator/password.md\n",
    # date formats after -u, documented user:pass@host, defaults and masks in URLs
    "date-utc": 'echo "run at $(date -u +%Y-%m-%dT%H:%M:%SZ)"\n',
    "govc-doc": "govc session.login -u root:password@host\n",
    "github-x-oauth-basic": 'git config url."https://${TOKEN}:x-oauth-basic@github.com/".insteadOf x\n',
    "masked-url": 'safe_url="https://${git_user}:***@github.com/${1}"\n',
    "user-equals-password": "AMQP_URL=amqp://guest:guest@127.0.0.1:5672/\n",
    "url-syntax-doc": "flightsql://[user[:password]@]<address>[:port]\n",
    # hex digests and key ids under AWS and GPG names
    "gpg-fingerprint": "AWSCLI_GPG_KEY=" + rand(40, "0123456789ABCDEF") + "\n",
    "s3-compatible-key-id": "PUT https://h/b/o?AWSAccessKeyId=" + rand(40, "0123456789abcdef") + "&Expires=1\n",
    # prose about a flag, docker compose's $$ escape, ESO's secretKey naming a numbered key
    "flag-in-prose": "Flux CLI also supports\nthis via the `--password` flag.\n",
    "compose-escaped-env": 'test: mysql --user=$$MYSQL_USER --password=$$MYSQL_PASSWORD --silent\n',
    "eso-secret-key-name": "- secretKey: source-key1\n  remoteRef: {key: k}\n",
    # command substitution, Terraform attributes, Markdown link definitions
    "command-substitution": "esx_pass=$(govc env GOVC_PASSWORD)\nTESTPASSWORD: $(SQLPASSWORD)\n",
    "terraform-attribute": "password         = google_container_cluster.cluster.master_auth[0].password\n",
    "markdown-link-definition": "[BasicAuth]: https://pkg.go.dev/github.com/go-chi/chi/middleware#BasicAuth\n",
    "yaml-alias": "password: *pw\n",
    "yaml-anchor-on-mapping": "password: &pw\n  x: 1\n",
    "sql-psql-variable": "CREATE ROLE app WITH PASSWORD :'app_password';\n",
    "sql-template": "ALTER USER app WITH PASSWORD '${PW}';\n",
    "codecov-badge": "[![codecov](https://codecov.io/gh/o/r/graph/badge.svg?token=" + rand(10) + ")](https://codecov.io)\n",
}


@pytest.mark.parametrize("name", sorted(NOT_CREDENTIALS))
def test_lookalikes_are_not_credentials(name: str) -> None:
    assert errors(NOT_CREDENTIALS[name]) == [], name


def test_call_form_still_catches_a_token_like_value() -> None:
    assert errors(f'props.setProperty("db.password", "{PW}");\n')


# ------------------------------------------------------------------------------------------------ linear time

MB = 1024 * 1024
FLOODS = {
    "sql-passwords": "WITH PASSWORD 'a' ",
    "yaml-anchors": "password: &a &b ",
    "mysql-flags": "mysql -pAb3dE5f ",
    "block-scalars": "password: |\n  x\n",
    "dotenv-separators": "DB_PASSWORD=a;",
    "empty-url-users": "redis://:a@",
}


@pytest.mark.parametrize("case", sorted(FLOODS))
def test_new_paths_stay_linear(case: str) -> None:
    unit = FLOODS[case]

    def cpu(size: int) -> float:
        text = (unit * (size // len(unit) + 1))[:size]
        started = time.process_time()
        scan_text(text)
        return time.process_time() - started

    big = cpu(5 * MB)
    if big > 1.0:  # a loaded machine: still linear? (5x the input may cost ~5x, never ~25x)
        assert big < 12 * max(cpu(MB), 0.01), (case, big)
    assert big < 3.0, (case, big)


def test_a_line_of_distinct_mysql_flags_is_reported_once_and_quickly() -> None:
    line = "mysql" + "".join(f" -p{rand(7, string.ascii_letters)}9" for _ in range(200_000)) + "\n"
    started = time.process_time()
    hits = scan_text(line)
    assert time.process_time() - started < 3.0
    assert [h.kind for h in hits] == ["basic-auth-password"]


# ------------------------------------------------------------------------------------------------ no leaks

CANARY = "Zq" + rand(14) + "9k"


@pytest.fixture
def canary_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    conf = repo / "leaks"
    conf.mkdir()
    (conf / "values.yaml").write_text(f"db:\n  password: |\n    {CANARY}\n  token: {CANARY.lower()}x{CANARY}\n")
    (conf / "app.env").write_text(f"DB_PASSWORD=a;{CANARY}\nREDIS_URL=redis://:{CANARY}@r:6379\n")
    (conf / "run.sh").write_text(f"mysql -u root -p{CANARY} db\ncurl -u me:{CANARY} https://x\n")
    (conf / "notes.txt").write_text(f"id {CANARY}{CANARY.upper()}{CANARY[::-1]}\n")  # a CH128 guess
    (conf / "heroku.env").write_text(f"HEROKU_API_KEY={CANARY}\n")  # unconfirmed: not a UUID
    (conf / "win.env").write_bytes(b"\xff\xfe" + f"API_TOKEN={CANARY}\n".encode("utf-16-le") + b"\x00")
    return repo


@pytest.mark.parametrize("fmt", ["text", "wide", "json", "yaml", "sarif"])
def test_no_output_format_carries_a_matched_value(canary_repo: Path, fmt: str) -> None:
    args = ["validate", str(canary_repo)] + ([] if fmt == "text" else ["-o", fmt])
    result = run_cli(*args)
    assert result.code == 1, result.err
    both = result.out + result.err
    assert "CH024" in both or '"CH024"' in both
    for piece in (CANARY, CANARY.lower(), CANARY[::-1], CANARY[:10], CANARY[-10:]):
        assert piece not in both, fmt


def test_a_hex_value_under_an_aws_secret_name_is_still_a_credential() -> None:
    assert errors("AWS_SECRET_ACCESS_KEY=" + rand(40, "0123456789abcdef") + "\n")
