"""/api/v1/silences over a real aiohttp server on 127.0.0.1, and silences across a daemon
restart (journal) and reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kpimon.app import Daemon as KpimonDaemon
from kpimon.app import Options
from kpimon.config import load_config
from kpimon.config.loader import build_config
from kpimon.journal import Journal
from kpimon.labels import make
from kpimon.notify.silence_store import JournalSilenceStore
from kpimon.notify.silences import SilenceSet, rfc3339
from kpimon.testing import FakeClock
from kpimon.web.app import build_app
from kpimon.web.silences import MAX_BODY_BYTES, NOT_PERSISTENT
from tests.helpers.debian import promtool_check_metrics
from tests.helpers.web import T0, Daemon, daemon_with_rules

RULES = """
kpis:
  - name: disk_full
    owner: team
    expr: app_queue_depth
    levels: {warning: {above: 5}}
"""
CONFIG = """
rule_files: [rules.yaml]
alerting:
  silences:
    - matchers: ['team="db"']
      schedule:
        - {days: [sun], from: "02:00", to: "04:00", timezone: Europe/Berlin}
      comment: weekly maintenance
"""
ALERT = make({"alertname": "disk_full", "severity": "warning", "instance": "db-1"})


def at(offset_s: float) -> str:
    return rfc3339(T0 + offset_s)


@contextlib.asynccontextmanager
async def serve(daemon: Daemon, silences: SilenceSet) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    server = TestServer(build_app(daemon, silences), host="127.0.0.1", port=0)
    async with TestClient(server) as client:
        yield client


@pytest.fixture(name="daemon")
def _daemon(tmp_path: Path) -> Daemon:
    return daemon_with_rules(tmp_path, RULES, config=CONFIG)


@pytest.fixture(name="silences")
def _silences(tmp_path: Path, daemon: Daemon) -> SilenceSet:
    cfg = build_config(CONFIG, str(tmp_path / "kpimon.yml"))
    return SilenceSet(cfg.alerting.silences)


@pytest.fixture(name="client")
async def _client(daemon: Daemon, silences: SilenceSet) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with serve(daemon, silences) as client:
        yield client


async def post(client, body: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/v1/silences", json=body)
    return resp.status, await resp.json()


async def test_create_list_get_and_delete(client, daemon: Daemon, silences: SilenceSet) -> None:  # type: ignore[no-untyped-def]
    status, doc = await post(
        client,
        {
            "matchers": [
                {"name": "alertname", "value": "disk_full", "isRegex": False, "isEqual": True},
                'instance=~"db-.*"',
            ],
            "startsAt": at(0),
            "endsAt": at(3600),
            "createdBy": "ops@example.org",
            "comment": "disk swap, CHG-42",
        },
    )
    assert status == 200, doc
    assert doc["status"] == "success"
    assert doc["warnings"] == [NOT_PERSISTENT]  # no journal here
    sid = doc["data"]["silenceID"]
    assert silences.silenced(ALERT, T0 + 10)
    assert not silences.silenced(ALERT, T0 + 3600)

    resp = await client.get(f"/api/v1/silences/{sid}")
    assert resp.status == 200
    one = (await resp.json())["data"]
    assert one == {
        "id": sid,
        "matchers": [
            {"name": "alertname", "value": "disk_full", "isRegex": False, "isEqual": True},
            {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True},
        ],
        "matchersText": ['alertname="disk_full"', 'instance=~"db-.*"'],
        "startsAt": at(0),
        "endsAt": at(3600),
        "updatedAt": at(0),
        "createdBy": "ops@example.org",
        "comment": "disk swap, CHG-42",
        "status": {"state": "active"},
        "source": "api",
        "readOnly": False,
    }

    listed = (await (await client.get("/api/v1/silences")).json())["data"]
    assert [d["id"] for d in listed] == [silences.all()[0].id, sid]
    config = listed[0]
    assert config["readOnly"] is True
    assert config["source"] == "config"
    assert config["status"] == {"state": "pending"}  # T0 is a Tuesday
    assert (config["startsAt"], config["endsAt"]) == (None, None)
    assert config["schedule"] == [
        {"days": ["sun"], "from": "02:00", "to": "04:00", "timezone": "Europe/Berlin"}
    ]
    assert config["origin"].endswith("kpimon.yml:5:7")

    daemon.t = T0 + 60
    resp = await client.delete(f"/api/v1/silences/{sid}")
    assert resp.status == 200
    gone = (await resp.json())["data"]
    assert gone["status"] == {"state": "expired"}
    assert gone["endsAt"] == at(60)
    assert not silences.silenced(ALERT, T0 + 60)
    again = await client.get(f"/api/v1/silences/{sid}")
    assert (await again.json())["data"]["status"]["state"] == "expired"  # still listed


async def test_update_by_id(client, daemon: Daemon, silences: SilenceSet) -> None:  # type: ignore[no-untyped-def]
    _, doc = await post(client, {"matchers": ['instance="db-1"'], "endsAt": at(600)})
    sid = doc["data"]["silenceID"]
    daemon.t = T0 + 30
    status, doc = await post(
        client, {"id": sid, "matchers": ['instance="db-2"'], "endsAt": at(900), "comment": "x"}
    )
    assert (status, doc["data"]["silenceID"]) == (200, sid)
    s = silences.get(sid)
    assert s is not None
    assert (str(s.matchers[0]), s.comment, s.updated_at) == ('instance="db-2"', "x", T0 + 30)
    status, doc = await post(client, {"id": "nope", "matchers": ['a="b"'], "endsAt": at(900)})
    assert (status, doc["errorType"], doc["error"]) == (404, "not_found", "no silence with id nope")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "invalid JSON body"),
        (b"\xff\xfe", 400, "invalid JSON body"),
        (b"[" * 100_000, 413, f"request body larger than {MAX_BODY_BYTES} bytes"),
        (b"[" * 60_000, 400, "invalid JSON body"),
        (b"[]", 400, "expected a JSON object (a silence)"),
        (
            b'{"matchers": ["team is db"], "endsAt": "2099-01-01T00:00:00Z"}',
            400,
            'matchers[0]: invalid matcher "team is db"',
        ),
        (
            b'{"matchers": [{"name": "team", "value": "(db", "isRegex": true}], '
            b'"endsAt": "2099-01-01T00:00:00Z"}',
            400,
            'matchers[0].value: invalid regex "(db"',
        ),
        (
            b'{"matchers": [{"name": "1x", "value": "a"}], "endsAt": "2099-01-01T00:00:00Z"}',
            400,
            'matchers[0].name: expected a label name, got "1x"',
        ),
        (
            b'{"matchers": [], "endsAt": "2099-01-01T00:00:00Z"}',
            400,
            "matchers: a silence needs at least one matcher",
        ),
        (
            b'{"matchers": ["team=~\\".*\\""], "endsAt": "2099-01-01T00:00:00Z"}',
            400,
            "matchers: at least one matcher must not match the empty string",
        ),
        (
            b'{"matchers": ["team=\\"db\\""], "startsAt": "2099-01-02T00:00:00Z", '
            b'"endsAt": "2099-01-01T00:00:00Z"}',
            400,
            "endsAt (2099-01-01T00:00:00.000Z) must be after startsAt (2099-01-02T00:00:00.000Z)",
        ),
        (b'{"matchers": ["team=\\"db\\""]}', 400, "endsAt: required"),
        (
            b'{"matchers": ["team=\\"db\\""], "endsAt": "2000-01-01T00:00:00Z"}',
            400,
            "is in the past",
        ),
        (b'{"matchers": ["team=\\"db\\""], "endsAt": "soon"}', 400, 'endsAt: invalid time "soon"'),
        (
            b'{"matchers": ["team=\\"db\\""], "endsAt": 4102444800}',
            400,
            "endsAt: expected an RFC 3339 time",
        ),
        (
            b'{"matchers": ["team=\\"db\\""], "endsAt": "2099-01-01T00:00:00Z", "comment": 5}',
            400,
            "comment: expected a string, got 5",
        ),
        (
            b'{"matchers": ["team=\\"db\\""], "endsAt": "2099-01-01T00:00:00Z", "status": {}}',
            400,
            'unknown field "status"',
        ),
    ],
)
async def test_bad_input_is_a_clear_400(
    client, silences: SilenceSet, body: bytes, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post(
        "/api/v1/silences", data=body, headers={"Content-Type": "application/json"}
    )
    doc = await resp.json()
    assert resp.status == status, doc
    assert doc["status"] == "error"
    assert doc["errorType"] == "bad_data"
    assert message in doc["error"]
    assert len(silences) == 1  # only the config silence


async def test_chunked_bodies_are_read_whole_and_bounded(client, silences: SilenceSet) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"matchers": ['a="b"'], "endsAt": at(60), "comment": "x" * 3000}).encode()

    async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]
            await asyncio.sleep(0)

    resp = await client.post("/api/v1/silences", data=pieces(body, 100))
    assert resp.status == 200, await resp.text()
    assert len(silences) == 2
    big = b'{"comment": "' + b"x" * MAX_BODY_BYTES + b'"}'
    resp = await client.post("/api/v1/silences", data=pieces(big, 8192))
    assert resp.status == 413
    assert (await resp.json())["errorType"] == "bad_data"


async def test_unknown_ids_and_config_silences(client, silences: SilenceSet) -> None:  # type: ignore[no-untyped-def]
    for method in ("GET", "DELETE"):
        resp = await client.request(method, "/api/v1/silences/0f6c1d9e")
        assert resp.status == 404
        assert await resp.json() == {
            "status": "error",
            "errorType": "not_found",
            "error": "no silence with id 0f6c1d9e",
        }
    config_id = silences.all()[0].id
    resp = await client.delete(f"/api/v1/silences/{config_id}")
    doc = await resp.json()
    assert resp.status == 403
    assert doc["errorType"] == "forbidden"
    assert "is defined in the configuration" in doc["error"]
    assert "cannot be deleted through the API" in doc["error"]
    status, doc = await post(client, {"id": config_id, "matchers": ['a="b"'], "endsAt": at(60)})
    assert status == 403
    assert silences.get(config_id) == silences.all()[0]


async def test_too_many_silences(daemon: Daemon) -> None:
    silences = SilenceSet(max_api=2)
    async with serve(daemon, silences) as client:
        for _ in range(2):
            assert (await post(client, {"matchers": ['a="b"'], "endsAt": at(60)}))[0] == 200
        status, doc = await post(client, {"matchers": ['a="b"'], "endsAt": at(60)})
        assert (status, doc["errorType"]) == (400, "bad_data")
        assert doc["error"].startswith("too many silences: 2 are pending or active")


async def test_metrics_count_silences_by_state(client, daemon: Daemon) -> None:  # type: ignore[no-untyped-def]
    await post(client, {"matchers": ['a="b"'], "endsAt": at(60)})
    await post(client, {"matchers": ['a="c"'], "startsAt": at(30), "endsAt": at(60)})
    _, doc = await post(client, {"matchers": ['a="d"'], "endsAt": at(60)})
    await client.delete(f"/api/v1/silences/{doc['data']['silenceID']}")
    body = await (await client.get("/metrics")).read()
    text = body.decode()
    assert 'kpimon_silences{state="active"} 1.0\n' in text
    assert 'kpimon_silences{state="pending"} 2.0\n' in text  # the config one and a="c"
    assert 'kpimon_silences{state="expired"} 1.0\n' in text
    lint = await asyncio.to_thread(promtool_check_metrics, body)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint


async def test_a_journal_store_failure_is_a_503(tmp_path: Path, daemon: Daemon) -> None:
    with Journal.open(tmp_path / "data") as journal:
        silences = SilenceSet()
        silences.attach_store(JournalSilenceStore(journal.connection, journal.path), T0)
        journal.connection.execute("DROP TABLE silences")
        async with serve(daemon, silences) as client:
            status, doc = await post(client, {"matchers": ['a="b"'], "endsAt": at(60)})
    assert (status, doc["errorType"]) == (503, "unavailable")
    assert "the silence could not be saved" in doc["error"]
    assert len(silences) == 0


# -- the daemon: journal across a restart, reload ----------------------------------------


async def test_api_silences_survive_a_daemon_restart_and_a_reload(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "kpimon.yml"
    path.write_text(CONFIG)
    opts = Options(config_file=str(path), storage_path=str(tmp_path / "data"))
    clock = FakeClock(start_wall=T0)

    first = KpimonDaemon(load_config(str(path)), opts, clock)
    async with contextlib.AsyncExitStack() as stack:
        first._open_journal(stack)
        async with TestClient(TestServer(build_app(first, first.silences))) as client:
            status, doc = await post(
                client, {"matchers": ['alertname="disk_full"'], "endsAt": at(3600)}
            )
            assert status == 200
            assert "warnings" not in doc  # kept in the journal
            sid = doc["data"]["silenceID"]

    second = KpimonDaemon(load_config(str(path)), opts, clock)
    async with contextlib.AsyncExitStack() as stack:
        second._open_journal(stack)
        assert second.silences.silenced(ALERT, T0 + 60)
        config_id = second.silences.all()[0].id
        assert [s.id for s in second.silences.all()] == [config_id, sid]
        # a reload swaps the config silences and keeps the API ones
        path.write_text(CONFIG.replace('team="db"', 'team="web"'))
        async with aiohttp.ClientSession() as session:
            second.session = session
            assert await second.reload() == []
        ids = [s.id for s in second.silences.all()]
        assert ids[1:] == [sid]
        assert ids[0] != config_id
        async with TestClient(TestServer(build_app(second, second.silences))) as client:
            listed = await (await client.get("/api/v1/silences")).json()
            assert [d["id"] for d in listed["data"]] == ids
            assert json.dumps(listed)  # plain JSON
