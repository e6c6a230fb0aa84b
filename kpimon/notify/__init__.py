"""Alert delivery: what kpimon sends to Alertmanager, PagerDuty, Slack, webhooks and commands.

Modules: :mod:`.model` (the immutable :class:`~.model.AlertEvent` every hook receives and the
:class:`~.model.SendResult` every send returns), :mod:`.templates` (Jinja2 annotations and the
default summary), :mod:`.routing` (alert labels → hooks), :mod:`.retry` (backoff with jitter),
:mod:`.registry` (the :class:`~.registry.Hook` protocol and the explicit ``HOOK_TYPES`` dict),
and one module per kind of hook: :mod:`.alertmanager`, :mod:`.pagerduty`, :mod:`.slack`,
:mod:`.webhook`, :mod:`.exec_hook`.

Senders do one delivery attempt each and report how it went; retrying, the durable outbox and
scheduling belong to the caller. Everything but the senders is pure. This ``__init__`` imports
nothing, so that the config parser can use :mod:`.templates` without loading the senders.
"""
