"""The silences API: ``/api/v1/silences`` (list, create or update) and ``/api/v1/silences/{id}``
(get, delete = expire), over the daemon's :class:`~kpimon.notify.silences.SilenceSet`.

Bodies follow Alertmanager's API v2 silences; answers are wrapped the Prometheus HTTP API way
(``{"status": "success", "data": ...}``; errors ``{"status": "error", "errorType", "error"}``).
Bad input is a 400 naming the field, an unknown id a 404, a config silence 403 (read-only), a
journal that cannot be written 503; nothing in a request can cause a 500. Bodies are limited to
:data:`MAX_BODY_BYTES`. Handlers do no I/O but the journal write of a change (one short SQLite
transaction, on the loop's thread like every journal write).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from kpimon.config.matchers import Matcher, MatchOp, parse_matcher
from kpimon.notify.silences import (
    MAX_MATCHERS,
    MAX_TEXT,
    ReadOnlySilenceError,
    Silence,
    SilenceError,
    SilenceSet,
    SilenceStoreError,
    UnknownSilenceError,
    check_matchers,
    json_time,
    parse_rfc3339,
    rfc3339,
    window_doc,
)
from kpimon.web.responses import api_error, api_json

log = logging.getLogger("kpimon.http")

MAX_BODY_BYTES: Final = 64 * 1024
SILENCES = web.AppKey("silences", SilenceSet)
NOW = web.AppKey[Callable[[], float]]("silences_now")

NOT_PERSISTENT: Final = (
    "kpimon runs without a journal (no --storage.path): this silence is kept in memory only "
    "and is lost when kpimon stops"
)


def _matcher_doc(m: Matcher) -> dict[str, object]:
    return {
        "name": m.name,
        "value": m.value,
        "isRegex": m.op in ("=~", "!~"),
        "isEqual": m.op in ("=", "=~"),
    }


def silence_doc(s: Silence, t: float) -> dict[str, object]:
    """``s`` as the API shows it at ``t``: Alertmanager v2's gettable silence plus kpimon's
    ``source``, ``readOnly``, ``schedule``, ``matchersText`` (and ``origin`` for config
    silences). Unbounded times are null."""
    doc: dict[str, object] = {
        "id": s.id,
        "matchers": [_matcher_doc(m) for m in s.matchers],
        "matchersText": [str(m) for m in s.matchers],
        "startsAt": json_time(s.starts_at),
        "endsAt": json_time(s.ends_at),
        "updatedAt": rfc3339(s.updated_at) if s.source == "api" else None,
        "createdBy": s.created_by,
        "comment": s.comment,
        "status": {"state": s.state_at(t)},
        "source": s.source,
        "readOnly": s.source == "config",
    }
    if s.schedule:
        doc["schedule"] = [window_doc(w) for w in s.schedule]
    if s.origin:
        doc["origin"] = s.origin
    return doc


def _matcher_from_json(item: object, where: str) -> Matcher:
    if isinstance(item, str):
        if len(item) > MAX_TEXT:
            raise SilenceError(f"{where}: longer than {MAX_TEXT} characters")
        try:
            return parse_matcher(item)
        except ValueError as exc:
            raise SilenceError(f"{where}: {exc}") from None
    if not isinstance(item, dict):
        raise SilenceError(
            f"{where}: expected a matcher string like 'team=\"db\"' or an object "
            '{"name", "value", "isRegex", "isEqual"}'
        )
    unknown = sorted(set(item) - {"name", "value", "isRegex", "isEqual"})
    if unknown:
        raise SilenceError(f'{where}: unknown field "{unknown[0]}"')
    name, value = item.get("name"), item.get("value")
    is_regex, is_equal = item.get("isRegex", False), item.get("isEqual", True)
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise SilenceError(f"{where}.name: expected a label name, got {_shown(name)}")
    if not isinstance(value, str):
        raise SilenceError(f"{where}.value: expected a string, got {_shown(value)}")
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise SilenceError(f"{where}: isRegex and isEqual must be true or false")
    if len(value) > MAX_TEXT:
        raise SilenceError(f"{where}.value: longer than {MAX_TEXT} characters")
    op: MatchOp
    if is_regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise SilenceError(f'{where}.value: invalid regex "{value}": {exc}') from None
        op = "=~" if is_equal else "!~"
    else:
        op = "=" if is_equal else "!="
    return Matcher(name, op, value)


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text_field(body: Mapping[str, object], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SilenceError(f"{key}: expected a string, got {_shown(value)}")
    if len(value) > MAX_TEXT:
        raise SilenceError(f"{key}: longer than {MAX_TEXT} characters")
    return value


def _time_field(body: Mapping[str, object], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SilenceError(f'{key}: expected an RFC 3339 time like "2026-11-29T02:00:00Z"')
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise SilenceError(f"{key}: {exc}") from None


_BODY_KEYS: Final = frozenset({"id", "matchers", "startsAt", "endsAt", "createdBy", "comment"})


def silence_from_json(body: object, *, now: float, new_id: str) -> Silence:
    """An API silence from a POSTed body (Alertmanager v2's postable silence).

    ``matchers`` items are Alertmanager objects ``{"name", "value", "isRegex", "isEqual"}``
    (``isRegex`` defaults to false, ``isEqual`` to true) or kpimon matcher strings
    (``'team=~"db|infra"'``), mixed freely. ``startsAt`` defaults to ``now``; ``endsAt`` is
    required and must be after both ``startsAt`` and ``now``. ``id`` (to update an existing
    silence) is taken as given, else ``new_id``.

    Raises:
        SilenceError: what is wrong, naming the field.
    """
    if not isinstance(body, dict):
        raise SilenceError("expected a JSON object (a silence)")
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise SilenceError(
            f'unknown field "{unknown[0]}" (fields: matchers, startsAt, endsAt, createdBy, '
            "comment, id)"
        )
    raw = body.get("matchers")
    if not isinstance(raw, list):
        raise SilenceError("matchers: expected a list of matchers")
    if len(raw) > MAX_MATCHERS:
        raise SilenceError(f"matchers: at most {MAX_MATCHERS} matchers")
    matchers = tuple(_matcher_from_json(item, f"matchers[{i}]") for i, item in enumerate(raw))
    why = check_matchers(matchers)
    if why is not None:
        raise SilenceError(f"matchers: {why}")
    starts_at = _time_field(body, "startsAt")
    ends_at = _time_field(body, "endsAt")
    if ends_at is None:
        raise SilenceError('endsAt: required (RFC 3339, e.g. "2026-11-29T04:00:00Z")')
    if ends_at <= now:
        raise SilenceError(f"endsAt ({rfc3339(ends_at)}) is in the past (now {rfc3339(now)})")
    if starts_at is None:
        starts_at = now
    if ends_at <= starts_at:
        raise SilenceError(
            f"endsAt ({rfc3339(ends_at)}) must be after startsAt ({rfc3339(starts_at)})"
        )
    sid = body.get("id") or new_id
    if not isinstance(sid, str) or len(sid) > 128:
        raise SilenceError("id: expected the id of an existing silence")
    return Silence(
        id=sid,
        matchers=matchers,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=_text_field(body, "createdBy"),
        comment=_text_field(body, "comment"),
        source="api",
        updated_at=now,
    )


def _failure(exc: Exception) -> web.Response:
    """The answer to a refused change."""
    if isinstance(exc, UnknownSilenceError):
        return api_error(404, "not_found", str(exc))
    if isinstance(exc, ReadOnlySilenceError):
        return api_error(403, "forbidden", str(exc))
    if isinstance(exc, SilenceStoreError):
        log.error("silence not saved err=%s", exc)
        return api_error(503, "unavailable", f"the silence could not be saved: {exc}")
    return api_error(400, "bad_data", str(exc))


async def list_silences(request: web.Request) -> web.Response:
    now = request.app[NOW]()
    docs = [silence_doc(s, now) for s in request.app[SILENCES].all()]
    return api_json({"status": "success", "data": docs})


async def get_silence(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    silence = request.app[SILENCES].get(sid)
    if silence is None:
        return api_error(404, "not_found", f"no silence with id {sid}")
    return api_json({"status": "success", "data": silence_doc(silence, request.app[NOW]())})


async def _body(request: web.Request) -> bytes | None:
    """The request body, or None when it is larger than :data:`MAX_BODY_BYTES` (read no
    further than that: a chunked body has no Content-Length to refuse it by)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
    return b"".join(chunks)


async def post_silence(request: web.Request) -> web.Response:
    raw = await _body(request)
    if raw is None:
        return api_error(413, "bad_data", f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return api_error(400, "bad_data", f"invalid JSON body: {exc}")
    silences = request.app[SILENCES]
    now = request.app[NOW]()
    new_id = str(uuid.uuid4())
    try:
        silence = silences.put(silence_from_json(body, now=now, new_id=new_id), now, new_id)
    except (SilenceError, SilenceStoreError) as exc:
        return _failure(exc)
    log.info(
        "silence %s id=%s matchers=%s ends_at=%s created_by=%s",
        "created" if silence.id == new_id else "updated",
        silence.id,
        ",".join(map(str, silence.matchers)),
        rfc3339(silence.ends_at),
        json.dumps(silence.created_by),
    )
    doc: dict[str, object] = {"status": "success", "data": {"silenceID": silence.id}}
    if not silences.persistent:
        doc["warnings"] = [NOT_PERSISTENT]
    return api_json(doc)


async def delete_silence(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    now = request.app[NOW]()
    try:
        silence = request.app[SILENCES].expire(sid, now)
    except (SilenceError, SilenceStoreError) as exc:
        return _failure(exc)
    log.info("silence expired id=%s", sid)
    return api_json({"status": "success", "data": silence_doc(silence, now)})


def setup(app: web.Application, silences: SilenceSet, now: Callable[[], float]) -> None:
    """Serve ``silences`` under /api/v1/silences in ``app`` (``now``: the daemon's clock).

    Call it before adding a catch-all ``/api/v1/{tail}`` route."""
    app[SILENCES] = silences
    app[NOW] = now
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", post_silence)
    app.router.add_get("/api/v1/silences/{id}", get_silence)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)
