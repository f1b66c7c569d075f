"""The property-name convention: what the keys of a secret's value are called (README "Property names"). Pure.

One name per well-known property, so a template, a consumer mapping or a person reading the inventory never
guesses whether a credential says ``user`` or ``username``. The names follow what Kubernetes and the common
operators already write:

- ``username``, ``password``: the ``kubernetes.io/basic-auth`` Secret type (and CloudNativePG, the Service Binding
  specification);
- ``tls.crt``, ``tls.key``, ``ca.crt``: the ``kubernetes.io/tls`` type and service-account tokens; ``ssh-privatekey``
  (``kubernetes.io/ssh-auth``), ``.dockerconfigjson`` (``kubernetes.io/dockerconfigjson``), ``token``;
- ``host``, ``port``, ``database``, ``uri``: the Service Binding specification's well-known entries (``uri``: a
  whole connection string or URL);
- ``user.crt``, ``user.key``, ``user.p12``, ``user.password``, ``ca.p12``, ``ca.password``: Strimzi's Kafka users.

Only a key that is a known spelling of a conventional name (``user``, ``passwd``, ``hostname``, ``url``, ``cert``,
a case or ``_`` variant such as ``Password`` or ``tls_crt``) is a deviation; any other name (``hmac``,
``cookie-key``) is a property of its own, not checked. A deviation is a warning (CH119), silenced by declaring it in
``spec.propertyNames`` (key -> the conventional name it stands for, or the key itself when it is not that property).
"""

from __future__ import annotations

from collections.abc import Mapping

CONVENTIONAL: frozenset[str] = frozenset({
    "username", "password", "host", "port", "database", "uri", "token",
    "ca.crt", "tls.crt", "tls.key", "ssh-privatekey", ".dockerconfigjson",
    "user.crt", "user.key", "user.p12", "user.password", "ca.p12", "ca.password",
})

# Known other spellings -> the conventional name (compared after normalisation: lower case, '_' as '-').
ALIASES: Mapping[str, str] = {
    **dict.fromkeys(("user", "user-name", "login", "userid", "user-id", "usr"), "username"),
    **dict.fromkeys(("pass", "passwd", "pwd", "pw", "pword", "passw"), "password"),
    **dict.fromkeys(("hostname", "host-name", "servername", "server-name", "dbhost", "db-host"), "host"),
    **dict.fromkeys(("portnumber", "port-number", "dbport", "db-port"), "port"),
    **dict.fromkeys(("db", "dbname", "db-name", "database-name"), "database"),
    **dict.fromkeys(("url", "dsn", "connection-string", "connectionstring", "connstr", "conn-str",
                     "connection-uri", "connection-url"), "uri"),
    **dict.fromkeys(("api-token", "access-token", "auth-token", "bearer-token", "tok"), "token"),
    **dict.fromkeys(("ca", "cacert", "ca-cert", "ca-crt", "ca.pem", "ca-bundle", "cabundle", "ca.cert",
                     "root-ca", "ca-certificate"), "ca.crt"),
    **dict.fromkeys(("cert", "crt", "certificate", "tls-crt", "tls.cert", "tls-cert", "cert.pem", "tls.pem",
                     "server.crt", "client.crt"), "tls.crt"),
    **dict.fromkeys(("private-key", "privatekey", "privkey", "tls-key", "key.pem", "tls.key.pem",
                     "server.key", "client.key"), "tls.key"),
    # not id_rsa / id_ed25519: OpenSSH's own file names, which the keypair generators pair with a .pub key
    **dict.fromkeys(("ssh-key", "ssh-private-key"), "ssh-privatekey"),
}


def _normal(key: str) -> str:
    return key.lower().replace("_", "-")


def conventional_name(key: str) -> str | None:
    """The conventional name ``key`` is another spelling of, or None (conventional already, or not a known
    property). Pure."""
    if key in CONVENTIONAL:
        return None
    normal = _normal(key)
    for name in CONVENTIONAL:
        if _normal(name) == normal:
            return name
    return ALIASES.get(normal)


def deviations(keys: frozenset[str], declared: Mapping[str, str]) -> dict[str, str]:
    """key -> conventional name, for every key of ``keys`` that deviates and is not declared in ``declared``
    (``spec.propertyNames``). Pure."""
    out: dict[str, str] = {}
    for key in sorted(keys):
        name = conventional_name(key)
        if name is not None and key not in declared:
            out[key] = name
    return out


__all__ = ["ALIASES", "CONVENTIONAL", "conventional_name", "deviations"]
