"""``alerting:`` in ``kpimon.yml``: Alertmanagers and direct hooks, parsed into frozen models.

The Alertmanager part is the Prometheus subset kpimon implements (``static_configs``, ``scheme``,
``path_prefix``, ``timeout``, ``api_version: v2``). ``hooks`` are kpimon's own: PagerDuty, Slack,
a generic webhook and a local command, each with Alertmanager-syntax label ``matchers``.

Secrets (a PagerDuty routing key, a Slack or webhook URL) are
:class:`~kpimon.config.secrets.Secret`\\ s: given inline (``X``), in a file (``X_file``) or in an
environment variable (``X_env``), read only when a hook sends, shown as ``<secret>``. Matchers
are :mod:`kpimon.config.matchers`. Pure: no file is read and no environment variable looked up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from kpimon.config.fields import (
    Problems,
    as_bool,
    as_map,
    as_matchers,
    as_seq,
    as_str,
    as_str_map,
    as_targets,
    check_keys,
    claim_name,
    duration_or,
    one_of,
    require,
    suggestion,
)
from kpimon.config.matchers import Matcher, parse_matcher
from kpimon.config.secrets import Secret, SecretError
from kpimon.config.yamlload import Map, Node, Scalar, Seq, join_index, join_key, position_at
from kpimon.errors import Position

if TYPE_CHECKING:  # imported when parsing: kpimon.config.silences imports the rule parser
    from kpimon.notify.silences import Silence

__all__ = [
    "HOOK_KINDS",
    "NO_ALERTING",
    "PAGERDUTY_URL",
    "AlertingConfig",
    "AlertmanagerConfig",
    "HookConfig",
    "Matcher",
    "Secret",
    "SecretError",
    "as_annotations",
    "check_annotation_templates",
    "parse_alerting",
    "parse_matcher",
]

HookKind = Literal["pagerduty", "slack", "webhook", "exec"]
HOOK_KINDS: Final[tuple[HookKind, ...]] = ("pagerduty", "slack", "webhook", "exec")

PAGERDUTY_URL: Final = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_HOOK_TIMEOUT_S: Final = 10.0
DEFAULT_AM_TIMEOUT_S: Final = 10.0  # Prometheus' alertmanager_config default
DEFAULT_MAX_RETRY_DURATION_S: Final = 24 * 3600.0

_AM_KEYS: Final = ("static_configs", "scheme", "path_prefix", "timeout", "api_version")
_AM_NOT_YET: Final = (
    "basic_auth",
    "authorization",
    "oauth2",
    "sigv4",
    "tls_config",
    "proxy_url",
    "follow_redirects",
    "enable_http2",
    "relabel_configs",
    "alert_relabel_configs",
    "file_sd_configs",
    "dns_sd_configs",
    "http_sd_configs",
    "kubernetes_sd_configs",
    "consul_sd_configs",
)
_COMMON_KEYS: Final = (
    "name",
    "type",
    "matchers",
    "continue",
    "repeat_interval",
    "timeout",
    "max_retry_duration",
)
_SECRET_SUFFIXES: Final = ("", "_file", "_env")
_KIND_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "pagerduty": ("url", "routing_key", "routing_key_file", "routing_key_env"),
    "slack": ("url", "url_file", "url_env"),
    "webhook": ("url", "url_file", "url_env", "body"),
    "exec": ("command",),
}
_HOOK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertmanagerConfig:
    """One ``alerting.alertmanagers`` entry: every target gets every alert."""

    targets: tuple[str, ...]
    scheme: Literal["http", "https"] = "http"
    path_prefix: str = "/"
    timeout_s: float = DEFAULT_AM_TIMEOUT_S
    position: Position

    def urls(self) -> tuple[str, ...]:
        """The ``POST /api/v2/alerts`` URL of each target."""
        prefix = self.path_prefix.rstrip("/")
        return tuple(f"{self.scheme}://{t}{prefix}/api/v2/alerts" for t in self.targets)


@dataclass(frozen=True, slots=True, kw_only=True)
class HookConfig:
    """One ``alerting.hooks`` entry.

    Attributes:
        name: unique among hooks; the ``hook`` label of kpimon's notification metrics.
        kind: ``pagerduty``, ``slack``, ``webhook`` or ``exec`` (``type`` in the file).
        url: where to POST (a :class:`Secret` for Slack and webhooks, whose URLs carry tokens).
        routing_key: PagerDuty's integration key.
        matchers: all must match an alert's labels for the hook to get it; none matches all.
        continue_: whether routing goes on to later hooks after this one matched.
        repeat_interval_s: re-notify a still-firing alert this often (0: never).
        timeout_s: the whole send (one HTTP request, or the command's run).
        max_retry_duration_s: give up retrying a notification after this long.
        command: ``exec``: argv, run without a shell.
        body: ``webhook``: a Jinja2 template for the body (default: Alertmanager webhook v4).
    """

    name: str
    kind: HookKind
    url: Secret | None = None
    routing_key: Secret | None = None
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    repeat_interval_s: float = 0.0
    timeout_s: float = DEFAULT_HOOK_TIMEOUT_S
    max_retry_duration_s: float = DEFAULT_MAX_RETRY_DURATION_S
    command: tuple[str, ...] = ()
    body: str | None = None
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertingConfig:
    """``alerting:``: where alerts go."""

    alertmanagers: tuple[AlertmanagerConfig, ...] = ()
    hooks: tuple[HookConfig, ...] = ()
    inhibit_lower_levels: bool = True
    """Hold a level's notifications while a higher level of the same KPI series fires."""
    silences: tuple[Silence, ...] = ()
    """``silences``: read-only silences (kpimon.config.silences, kpimon.notify.silences)."""


NO_ALERTING: Final = AlertingConfig()
"""No Alertmanager, no hook: the default."""


def parse_alerting(node: Node | None, problems: Problems) -> AlertingConfig:
    """Parse the ``alerting`` node (None when absent), recording problems."""
    if node is None:
        return NO_ALERTING
    m = as_map(node, "alerting", problems)
    if m is None:
        return NO_ALERTING
    check_keys(
        m, "alerting", ("alertmanagers", "hooks", "inhibit_lower_levels", "silences"), problems
    )
    inhibit = True
    i_node = m.get("inhibit_lower_levels")
    if i_node is not None:
        inhibit = as_bool(i_node, "alerting.inhibit_lower_levels", problems) is not False
    return AlertingConfig(
        alertmanagers=_alertmanagers(m.get("alertmanagers"), problems),
        hooks=_hooks(m.get("hooks"), problems),
        inhibit_lower_levels=inhibit,
        silences=_silences(m.get("silences"), problems),
    )


def _silences(node: Node | None, problems: Problems) -> tuple[Silence, ...]:
    from kpimon.config.silences import parse_silences  # it imports the rule-file parser

    return parse_silences(node, problems)


def _alertmanagers(node: Node | None, problems: Problems) -> tuple[AlertmanagerConfig, ...]:
    if node is None:
        return ()
    seq = as_seq(node, "alerting.alertmanagers", problems)
    if seq is None:
        return ()
    out: list[AlertmanagerConfig] = []
    for i, item in enumerate(seq.items):
        path = join_index("alerting.alertmanagers", i)
        m = as_map(item, path, problems)
        if m is None:
            continue
        before = len(problems)
        check_keys(m, path, _AM_KEYS, problems, not_yet=_AM_NOT_YET)
        targets: list[str] = []
        sc_node = require(m, "static_configs", path, problems)
        sc_seq = (
            None if sc_node is None else as_seq(sc_node, join_key(path, "static_configs"), problems)
        )
        for j, sc in enumerate(() if sc_seq is None else sc_seq.items):
            sub = join_index(join_key(path, "static_configs"), j)
            sm = as_map(sc, sub, problems)
            if sm is None:
                continue
            check_keys(sm, sub, ("targets",), problems, not_yet=("labels",))
            targets += as_targets(
                sm.get("targets"), join_key(sub, "targets"), problems, path_key="path_prefix"
            )
        scheme = one_of(m, "scheme", path, ("http", "https"), "http", problems)
        prefix = "/"
        p_node = m.get("path_prefix")
        if p_node is not None:
            prefix = as_str(p_node, join_key(path, "path_prefix"), problems) or "/"
            if not prefix.startswith("/"):
                prefix = "/" + prefix  # as Prometheus joins it
        timeout = duration_or(m, "timeout", path, problems, DEFAULT_AM_TIMEOUT_S, positive=True)
        v_node = m.get("api_version")
        if v_node is not None:
            version = as_str(v_node, join_key(path, "api_version"), problems)
            if version == "v1":
                problems.add(
                    v_node.pos,
                    join_key(path, "api_version"),
                    "Alertmanager API v1 was removed in Alertmanager 0.27; use v2",
                )
            elif version is not None and version != "v2":
                problems.add(
                    v_node.pos,
                    join_key(path, "api_version"),
                    f'expected v2, got "{version}"{suggestion(version, ("v2",))}',
                )
        if len(problems) == before:
            out.append(
                AlertmanagerConfig(
                    targets=tuple(targets),
                    scheme="https" if scheme == "https" else "http",
                    path_prefix=prefix,
                    timeout_s=timeout,
                    position=m.pos,
                )
            )
    return tuple(out)


def _hooks(node: Node | None, problems: Problems) -> tuple[HookConfig, ...]:
    if node is None:
        return ()
    seq = as_seq(node, "alerting.hooks", problems)
    if seq is None:
        return ()
    names: dict[str, Position] = {}
    out: list[HookConfig] = []
    for i, item in enumerate(seq.items):
        hook = _hook(item, join_index("alerting.hooks", i), names, problems)
        if hook is not None:
            out.append(hook)
    return tuple(out)


def _hook(
    node: Node, path: str, names: dict[str, Position], problems: Problems
) -> HookConfig | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    name = _hook_name(m, path, names, problems)
    kind: str | None = None
    type_node = require(m, "type", path, problems)
    if type_node is not None:
        kind = as_str(type_node, join_key(path, "type"), problems)
        if kind is not None and kind not in HOOK_KINDS:
            problems.add(
                type_node.pos,
                join_key(path, "type"),
                f'unknown hook type "{kind}"{suggestion(kind, HOOK_KINDS)} (one of '
                f"{', '.join(HOOK_KINDS)})",
            )
            kind = None
    if kind is None:
        # Without a type the other keys cannot be judged; report unknown ones against all.
        every = {k for keys in _KIND_KEYS.values() for k in keys}
        check_keys(m, path, (*_COMMON_KEYS, *sorted(every)), problems)
        return None
    _check_hook_keys(m, path, kind, problems)
    matchers = as_matchers(m.get("matchers"), join_key(path, "matchers"), problems)
    cont = False
    c_node = m.get("continue")
    if c_node is not None:
        cont = bool(as_bool(c_node, join_key(path, "continue"), problems))
    repeat = duration_or(m, "repeat_interval", path, problems, 0.0)
    timeout = duration_or(m, "timeout", path, problems, DEFAULT_HOOK_TIMEOUT_S, positive=True)
    max_retry = duration_or(
        m, "max_retry_duration", path, problems, DEFAULT_MAX_RETRY_DURATION_S, positive=True
    )
    url: Secret | None = None
    routing_key: Secret | None = None
    command: tuple[str, ...] = ()
    body: str | None = None
    if kind == "pagerduty":
        url = _plain_url(m, path, problems, default=PAGERDUTY_URL)
        routing_key = _secret(m, "routing_key", path, problems)
    elif kind in ("slack", "webhook"):
        url = _secret(m, "url", path, problems, check=_check_url)
        if kind == "webhook":
            b_node = m.get("body")
            if b_node is not None:
                body = as_str(b_node, join_key(path, "body"), problems)
                if body is not None:
                    _check_template(b_node, join_key(path, "body"), "webhook", problems)
    else:
        command = _command(m, path, problems)
    if len(problems) > before or name is None:
        return None
    return HookConfig(
        name=name,
        kind=kind,  # type: ignore[arg-type]  # checked against HOOK_KINDS above
        url=url,
        routing_key=routing_key,
        matchers=matchers,
        continue_=cont,
        repeat_interval_s=repeat,
        timeout_s=timeout,
        max_retry_duration_s=max_retry,
        command=command,
        body=body,
        position=m.pos,
    )


def _hook_name(m: Map, path: str, names: dict[str, Position], problems: Problems) -> str | None:
    node = require(m, "name", path, problems)
    if node is None:
        return None
    sub = join_key(path, "name")
    name = as_str(node, sub, problems, nonempty=True)
    if name is None:
        return None
    if not _HOOK_NAME.fullmatch(name):
        problems.add(
            node.pos, sub, f'invalid hook name "{name}" (must match [A-Za-z0-9_][A-Za-z0-9_.-]*)'
        )
        return None
    return name if claim_name(name, node, sub, "hook name", names, problems) else None


def _check_hook_keys(m: Map, path: str, kind: str, problems: Problems) -> None:
    def misplaced(name: str) -> str | None:
        owners = [k for k, keys in _KIND_KEYS.items() if name in keys]
        if not owners:
            return None
        return f'"{name}" is not used by hooks of type {kind} (only by {", ".join(owners)})'

    check_keys(m, path, (*_COMMON_KEYS, *_KIND_KEYS[kind]), problems, misplaced=misplaced)


def _check_url(text: str) -> str | None:
    if not re.match(r"https?://[^/?#\s]+", text):
        return "expected an http:// or https:// URL"
    return None


def _plain_url(m: Map, path: str, problems: Problems, *, default: str) -> Secret:
    node = m.get("url")
    if node is None:
        return Secret(value=default)
    sub = join_key(path, "url")
    text = as_str(node, sub, problems)
    if text is not None:
        why = _check_url(text)
        if why is not None:
            problems.add(node.pos, sub, f'{why}, got "{text}"')
    return Secret(value=text or default)


def _secret(
    m: Map,
    key: str,
    path: str,
    problems: Problems,
    *,
    check: Callable[[str], str | None] | None = None,
) -> Secret | None:
    """Exactly one of ``key``, ``key_file``, ``key_env``; an inline value is checked with
    ``check`` (a function returning why it is bad) without ever echoing the value."""
    given = [(k, m.get(k)) for k in (key + s for s in _SECRET_SUFFIXES)]
    present = [(k, n) for k, n in given if n is not None]
    if not present:
        problems.add(m.pos, path, f'missing required key "{key}" (or "{key}_file" or "{key}_env")')
        return None
    if len(present) > 1:
        second_key, second = present[1]
        problems.add(
            second.pos,
            join_key(path, second_key),
            f'give only one of "{key}", "{key}_file" and "{key}_env"',
        )
        return None
    k, n = present[0]
    sub = join_key(path, k)
    text = as_str(n, sub, problems, nonempty=True)
    if text is None:
        return None
    if k == key:
        why = None if check is None else check(text)
        if why is not None:
            problems.add(n.pos, sub, why)  # the value itself is never shown
            return None
        return Secret(value=text)
    if k.endswith("_file"):
        return Secret(file=text)
    if not _ENV_NAME.fullmatch(text):
        problems.add(n.pos, sub, f'invalid environment variable name "{text}"')
        return None
    return Secret(env=text)


def _command(m: Map, path: str, problems: Problems) -> tuple[str, ...]:
    node = require(m, "command", path, problems)
    if node is None:
        return ()
    sub = join_key(path, "command")
    if not isinstance(node, Seq):
        problems.add(
            node.pos,
            sub,
            'expected a list (argv, run without a shell), e.g. ["/usr/local/bin/page", "--team"]',
        )
        return ()
    seq = as_seq(node, sub, problems)
    if seq is None:
        return ()
    argv = [
        as_str(item, join_index(sub, i), problems, nonempty=True)
        for i, item in enumerate(seq.items)
    ]
    if not argv:
        problems.add(node.pos, sub, "must not be empty")
        return ()
    return tuple(a for a in argv if a is not None)


def as_annotations(
    node: Node | None, path: str, problems: Problems
) -> tuple[tuple[str, str], ...] | None:
    """A KPI's or SLO's ``annotations`` (absent: none), templates checked; None when invalid."""
    if node is None:
        return ()
    annotations = as_str_map(node, path, problems)
    if annotations is not None:
        check_annotation_templates(node, path, problems)
    return annotations


def check_annotation_templates(node: Node, path: str, problems: Problems) -> None:
    """Report template syntax errors and unknown variables in a KPI's ``annotations``, at the
    spot inside the annotation's value (used by the rule-file parser)."""
    if not isinstance(node, Map):
        return  # as_str_map reported it
    for key, value in node.entries:
        _check_template(value, join_key(path, key.text), "annotation", problems)


def _check_template(node: Node, path: str, kind: str, problems: Problems) -> None:
    from kpimon.notify import templates  # the template engine loads only when needed

    if not isinstance(node, Scalar) or not node.is_str:
        return
    names = templates.WEBHOOK_VARIABLES if kind == "webhook" else templates.VARIABLES
    for problem in templates.check(node.text, names):
        problems.add(position_at(node, problem.offset), path, problem.message)
