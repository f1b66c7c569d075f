"""Red-team cases for the credential scanner: evasions it must catch, lookalikes it must not flag, inputs that must
stay fast and never leak the value. Values are generated per run (never a real credential), so this file stays
clean under the scanner itself."""

from __future__ import annotations

import random
import string

import pytest

from chamberlain.scan.engine import scan_text

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
}


@pytest.mark.parametrize("name", sorted(NOT_CREDENTIALS))
def test_lookalikes_are_not_credentials(name: str) -> None:
    assert errors(NOT_CREDENTIALS[name]) == [], name


def test_call_form_still_catches_a_token_like_value() -> None:
    assert errors(f'props.setProperty("db.password", "{PW}");\n')
