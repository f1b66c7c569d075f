"""The Helm chart ``deploy/helm/chamberlain``, generated from the builders of :mod:`.install`.

Belongs here: :func:`chart_files` (pure: ``{relative path: text}``) — Chart.yaml, values.yaml and
values.schema.json (from :class:`~.install.ChartValues`), the CRDs in ``crds/`` (from :mod:`.crds`), the alert
groups in ``files/`` and ``templates/*.yaml``. ``python -m chamberlain.render.chart DIR [--check]`` writes the
chart (or checks that DIR holds exactly it); the chart is committed and a test keeps it equal to this output.

How a template comes out of a builder: the builder is called with *references* instead of values — strings
such as ``CHAMBERLAIN-TPL-3-END`` that stand for ``$.Values.image.tag``, ``$env.name`` and so on, and that index
like the values they stand for. Every string of the result that holds references becomes one Go template action
(``{{ $.Values.image.tag | toJson }}``, or ``printf`` when the reference sits inside a longer string, as in
``chamberlain-{{ env }}-{{ cluster }}``); ``toJson`` writes a YAML-compatible scalar, list or map, so Helm's
output parses to what the builder returns for the same values. Loops and conditions are each template's header,
the same ones :func:`~.install.install_objects` applies.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chamberlain import __version__
from chamberlain.render import install as inst
from chamberlain.render import naming
from chamberlain.render.crds import crd, crd_file_name, crd_kinds
from chamberlain.render.yamlio import dump_json, dump_yaml

Manifest = dict[str, Any]
CHART_NAME = "chamberlain"
DEFAULT_DIR = "deploy/helm/chamberlain"
ALERT_GROUPS_FILE = "files/alert-groups.json"
DASHBOARD_FILE = "files/grafana-dashboard.json"
_TOKEN = re.compile(r"CHAMBERLAIN-TPL-(\d+)-END")
_OUT = re.compile(r"\"?CHAMBERLAIN-OUT-(\d+)-END\"?")


class _Refs:
    """Hands out references and remembers the Go expression of each."""

    def __init__(self) -> None:
        self.exprs: list[str] = []

    def ref(self, expr: str) -> _Ref:
        self.exprs.append(expr)
        return _Ref(self, expr, len(self.exprs) - 1)


class _Ref(str):
    """A reference to a value: a string (its token) that indexes like a mapping, giving references to its keys."""

    refs: _Refs
    expr: str

    def __new__(cls, refs: _Refs, expr: str, number: int) -> _Ref:
        obj = super().__new__(cls, f"CHAMBERLAIN-TPL-{number}-END")
        obj.refs, obj.expr = refs, expr
        return obj

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.refs.ref(f"{self.expr}.{key}")
        return super().__getitem__(key)


def _go_string(text: str) -> str:
    return json.dumps(text)  # a Go interpreted string literal for everything chamberlain's builders write


def _action(value: str, refs: _Refs) -> str | None:
    """The Go expression a string with references stands for (None: it holds none)."""
    parts = _TOKEN.split(value)
    if len(parts) == 1:
        return None
    if len(parts) == 3 and parts[0] == "" and parts[2] == "":
        return refs.exprs[int(parts[1])]
    fmt, args = [], []
    for i, part in enumerate(parts):
        if i % 2:
            fmt.append("%v")
            args.append(refs.exprs[int(part)])
        else:
            fmt.append(part.replace("%", "%%"))
    return f"(printf {_go_string(''.join(fmt))} {' '.join(args)})"


def _templated(obj: Any, refs: _Refs, out: list[str]) -> Any:
    """``obj`` with every string that holds references replaced by a placeholder for its action (in ``out``)."""
    if isinstance(obj, str):
        action = _action(obj, refs)
        if action is None:
            return str(obj)
        out.append(action)
        return f"CHAMBERLAIN-OUT-{len(out) - 1}-END"
    if isinstance(obj, Mapping):
        return {str(k): _templated(v, refs, out) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_templated(v, refs, out) for v in obj]
    return obj


def _template_text(docs: list[Manifest], refs: _Refs) -> str:
    actions: list[str] = []
    text = "---\n".join(dump_yaml(_templated(d, refs, actions)) for d in docs)
    if "{{" in text:
        raise ValueError("a builder wrote '{{' into a manifest: it would be read as a template action")
    return _OUT.sub(lambda m: "{{ " + actions[int(m.group(1))] + " | toJson }}", text)


@dataclass(frozen=True)
class _Template:
    """One file of ``templates/``: its documents, built once per item of ``each`` when given, and only when
    ``when`` holds."""

    name: str
    build: Callable[..., list[Manifest]]
    each: tuple[str, str] | None = None  # (Go variable, the values list it ranges over)
    when: str | None = None  # a Go condition

    def text(self) -> str:
        refs = _Refs()
        values = refs.ref("$.Values")
        if self.each is None:
            body = _template_text(self.build(values), refs)
        else:
            var, source = self.each
            body = (f"{{{{- range {var} := {source} }}}}\n---\n"
                    + _template_text(self.build(values, refs.ref(var)), refs) + "{{- end }}\n")
        if self.when is not None:
            body = f"{{{{- if {self.when} }}}}\n{body}{{{{- end }}}}\n"
        return _HEADER + body


_HEADER = "# Generated by `python -m chamberlain.render.chart` from chamberlain.render.install; do not edit.\n"
_ENVS = ("$env", "$.Values.environments")

TEMPLATES: tuple[_Template, ...] = (
    _Template("serviceaccount.yaml", lambda v: [inst.service_account(v)]),
    _Template("rbac-controller.yaml", inst.controller_role),
    _Template("rbac-leases.yaml", inst.lease_role, each=_ENVS),
    _Template("rbac-consumers.yaml", inst.consumer_role, each=("$ns", "$.Values.rbac.namespaces")),
    _Template("rbac-producers.yaml", inst.producer_role, each=("$ns", "$.Values.rbac.producers")),
    _Template("controller.yaml", lambda v, env: [inst.deployment(v, env), inst.service(v, env),
                                                 inst.disruption_budget(v, env)], each=_ENVS),
    _Template("networkpolicy.yaml", lambda v, env: [inst.network_policy(v, env)], each=_ENVS,
              when="$.Values.networkPolicy.enabled"),
    _Template("servicemonitor.yaml", lambda v, env: [inst.service_monitor(v, env)], each=_ENVS,
              when="$.Values.monitoring.serviceMonitor.enabled"),
    _Template("prometheusrule.yaml",
              lambda v: [inst.prometheus_rule(v, v.refs.ref(f'($.Files.Get "{ALERT_GROUPS_FILE}" | fromJsonArray)'))],
              when="$.Values.monitoring.prometheusRule.enabled"),
    _Template("dashboard.yaml",
              lambda v: [inst.dashboard_config_map(v, v.refs.ref(f'($.Files.Get "{DASHBOARD_FILE}")'))],
              when="$.Values.monitoring.dashboard.enabled"),
    _Template("admission.yaml",
              lambda v: inst.admission_policy(v, v.refs.ref("(toJson $.Values.gitops.identities)")),
              when="$.Values.admission.enabled"),
)


def _chart_yaml() -> str:
    return dump_yaml({
        "apiVersion": "v2", "name": CHART_NAME, "version": __version__, "appVersion": __version__,
        "type": "application", "kubeVersion": ">=1.30.0-0",
        "description": "chamberlain's controller: rotations driven by SecretIntents, least-privilege RBAC, "
                       "GitOps-only admission for chamberlain's resources, metrics and alerts.",
        "home": "https://github.com/chamberlain-dev/chamberlain",
        "keywords": ["secrets", "rotation", "vault", "openbao", "external-secrets", "gitops"],
    })


_VALUES_HEADER = (
    "# chamberlain's controller. Documented in values.schema.json; `chamberlain render` writes the values of each\n"
    "# cluster to clusters/<cluster>/chart-values.json (its environments and the names the controller may touch).\n"
    "# Generated by `python -m chamberlain.render.chart`; do not edit.\n"
)

_HELMIGNORE = "# Written by `python -m chamberlain.render.chart`.\n.chamberlain-render\n"


def _value_rows(model: type[BaseModel], prefix: str, defaults: Any) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        default = defaults.get(info.alias or name) if isinstance(defaults, dict) else None
        inner = info.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not inst.Toggle:
            rows += _value_rows(inner, f"{key}.", default)
            continue
        if inner is inst.Toggle:
            key, default = f"{key}.enabled", (default or {}).get("enabled")
        shown = json.dumps(default) if default is not None else "(required)"
        rows.append(f"| `{key}` | `{shown}` | {info.description or ''} |")
    return rows


def _readme() -> str:
    rows = _value_rows(inst.ChartValues, "", inst.chart_defaults())
    return (
        "# chamberlain Helm chart\n\n"
        "Generated by `python -m chamberlain.render.chart` from `chamberlain.render.install`; do not edit. "
        "`chamberlain render` writes the values of each cluster to `clusters/<cluster>/chart-values.json`, and "
        "`helm template` with them yields exactly the objects render writes for that cluster.\n\n"
        "```bash\nhelm install chamberlain deploy/helm/chamberlain --namespace chamberlain-system "
        "--create-namespace \\\n    -f out/clusters/dev1/chart-values.json\n```\n\n"
        "RBAC: [docs/rbac.md](../../../docs/rbac.md). Values (`values.schema.json` holds the same, and Helm "
        "refuses values that do not match it; `cluster` and `environments` come from render):\n\n"
        "| value | default | description |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def chart_files(groups: list[Any] | None = None) -> dict[str, str]:
    """Every file of the chart, keyed by its posix path inside the chart directory."""
    files: dict[str, str] = {
        "Chart.yaml": _chart_yaml(),
        "README.md": _readme(),
        "values.yaml": _VALUES_HEADER + dump_yaml(inst.chart_defaults()),
        "values.schema.json": dump_json(inst.values_schema()),
        ".helmignore": _HELMIGNORE,
        ALERT_GROUPS_FILE: json.dumps(inst.alert_groups() if groups is None else groups, sort_keys=True) + "\n",
        DASHBOARD_FILE: inst.dashboard_text(),
    }
    keep = naming.wave(naming.WAVE_FOUNDATION, naming.keep())
    for kind in crd_kinds():
        files[f"crds/{crd_file_name(kind)}"] = dump_yaml(crd(kind, labels=naming.common_labels(), annotations=keep))
    for template in TEMPLATES:
        files[f"templates/{template.name}"] = template.text()
    return {path: files[path] for path in sorted(files)}


def main(argv: list[str]) -> int:
    """``python -m chamberlain.render.chart [DIR] [--check]``: write the chart, or check DIR holds exactly it;
    ``--docs [FILE]``: the RBAC table (docs/rbac.md)."""
    from chamberlain.render import RenderedTree, compare_output, write_tree

    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if args[:1] == ["--docs"]:  # docs/rbac.md, from the same Roles
        target = Path(args[1] if len(args) > 1 else "docs/rbac.md")
        text = inst.rbac_markdown()
        if check:
            fresh = target.is_file() and target.read_text(encoding="utf-8") == text
            print(f"{target} is up to date" if fresh else f"{target} is stale: run python -m chamberlain.render.chart "
                  f"--docs {target}")
            return 0 if fresh else 1
        target.write_text(text, encoding="utf-8")
        print(f"{target}: written")
        return 0
    out = Path(args[0] if args else DEFAULT_DIR)
    tree = RenderedTree(chart_files())
    if check:
        stale = compare_output(tree, out)
        for label, paths in (("missing", stale.missing), ("changed", stale.changed), ("extra", stale.extra)):
            for path in paths:
                print(f"{label}: {out / path}", file=sys.stderr)
        print("chart is up to date" if stale.fresh else "chart is stale: run python -m chamberlain.render.chart")
        return 0 if stale.fresh else 1
    result = write_tree(tree, out)
    print(f"{out}: {result.written} written, {result.unchanged} unchanged, {result.removed} removed")
    return 0


__all__ = ["CHART_NAME", "DEFAULT_DIR", "TEMPLATES", "chart_files", "main"]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
