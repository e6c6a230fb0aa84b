"""Silences: matching, active_at (DST in Europe/Berlin), the SilenceSet, config, the journal."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kpimon.config.loader import build_config
from kpimon.config.matchers import parse_matcher
from kpimon.errors import ConfigError
from kpimon.journal import Journal
from kpimon.kpi.schedule import Window, parse_time_of_day
from kpimon.labels import make
from kpimon.notify.silence_store import JournalSilenceStore, decode, encode
from kpimon.notify.silences import (
    ReadOnlySilenceError,
    Silence,
    SilenceLimitError,
    SilenceSet,
    SilenceStoreError,
    UnknownSilenceError,
    check_matchers,
    config_silence,
    parse_rfc3339,
    rfc3339,
)

SUN = 6
BERLIN = "Europe/Berlin"
T0 = 1_700_000_000.0


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def matchers(*texts: str):
    return tuple(parse_matcher(t) for t in texts)


def api(sid: str, *texts: str, start: float = T0, end: float = T0 + 3600, **kw) -> Silence:
    return Silence(id=sid, matchers=matchers(*texts), starts_at=start, ends_at=end, **kw)


def window(days=(SUN,), start="02:00", end="04:00", tz=BERLIN) -> Window:
    s, e = parse_time_of_day(start), parse_time_of_day(end)
    assert s is not None
    assert e is not None
    return Window(
        days=frozenset(days), start_min=s, end_min=e, timezone=tz, threshold=0.0, clear=0.0
    )


def weekly(*texts: str, windows=None) -> Silence:
    return config_silence(matchers(*texts), schedule=(window(),) if windows is None else windows)


ALERT = make({"alertname": "disk_full", "severity": "critical", "instance": "db-1", "team": "db"})


# -- matching ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "hit"),
    [
        (['alertname="disk_full"'], True),
        (['alertname="disk"'], False),
        (['alertname="disk_full"', 'instance=~"db-.*"'], True),
        (['alertname="disk_full"', 'instance=~"db"'], False),  # regexes are anchored
        (['team!="web"'], True),
        (['team!~"d.*"'], False),
        (['env=""', 'team="db"'], True),  # an absent label is the empty string
        (['env="prod"'], False),
        (['severity=~"warning|critical"', 'team="db"'], True),
    ],
)
def test_a_silence_matches_when_every_matcher_does(texts: list[str], hit: bool) -> None:
    s = api("x", *texts)
    assert s.matches(ALERT) is hit
    assert SilenceSet([s]).silenced(ALERT, T0) is hit
    assert SilenceSet([s]).silenced(dict(ALERT), T0) is hit  # a mapping works too


def test_a_silence_needs_a_matcher_that_does_not_match_the_empty_string() -> None:
    assert check_matchers(()) == "a silence needs at least one matcher"
    for texts in (['env=""'], ['env=~".*"'], ['env!="prod"', 'x!~"y"']):
        why = check_matchers(matchers(*texts))
        assert why is not None
        assert "at least one matcher must not match the empty string" in why
    assert check_matchers(matchers('env=~".*"', 'team="db"')) is None


# -- time -------------------------------------------------------------------------------


def test_active_from_start_until_just_before_the_end() -> None:
    s = api("x", 'team="db"', start=100.0, end=200.0)
    assert [s.state_at(t) for t in (99.9, 100.0, 199.9, 200.0)] == [
        "pending",
        "active",
        "active",
        "expired",
    ]
    assert [s.active_at(t) for t in (99.9, 100.0, 199.9, 200.0)] == [False, True, True, False]


def test_a_weekly_window_on_ordinary_sundays_follows_the_zone() -> None:
    s = weekly('team="db"')
    winter = [utc(2026, 1, 4, h, m) for h, m in ((0, 59), (1, 0), (2, 59), (3, 0))]
    assert [s.active_at(t) for t in winter] == [False, True, True, False]  # 02-04 CET
    summer = [utc(2026, 7, 5, h, m) for h, m in ((23, 59), (0, 0), (1, 59), (2, 0))]
    summer[0] -= 86400  # Saturday 23:59 UTC
    assert [s.active_at(t) for t in summer] == [False, True, True, False]  # 02-04 CEST
    assert not s.active_at(utc(2026, 7, 6, 1, 0))  # a Monday
    assert s.state_at(utc(2026, 7, 6, 1, 0)) == "pending"  # between two windows


def test_the_window_on_the_spring_change_lasts_one_hour() -> None:
    """29 March 2026: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:00-04:00 local is
    01:00-02:00 UTC."""
    s = weekly('team="db"')
    checks = {
        utc(2026, 3, 29, 0, 59, 59): False,  # 01:59:59 CET
        utc(2026, 3, 29, 1, 0): True,  # 03:00 CEST (02:00 never happens)
        utc(2026, 3, 29, 1, 59, 59): True,  # 03:59:59 CEST
        utc(2026, 3, 29, 2, 0): False,  # 04:00 CEST
    }
    assert {t: s.active_at(t) for t in checks} == checks


def test_the_window_on_the_autumn_change_lasts_three_hours() -> None:
    """25 October 2026: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; the hour 02:00-03:00
    passes twice, so 02:00-04:00 local is 00:00-03:00 UTC."""
    s = weekly('team="db"')
    checks = {
        utc(2026, 10, 24, 23, 59, 59): False,  # 01:59:59 CEST
        utc(2026, 10, 25, 0, 0): True,  # 02:00 CEST
        utc(2026, 10, 25, 0, 59, 59): True,
        utc(2026, 10, 25, 1, 30): True,  # 02:30 CET, the second time
        utc(2026, 10, 25, 2, 59, 59): True,  # 03:59:59 CET
        utc(2026, 10, 25, 3, 0): False,  # 04:00 CET
    }
    assert {t: s.active_at(t) for t in checks} == checks


def test_a_window_across_midnight_and_the_spring_change() -> None:
    """Saturday 22:00 to Sunday 06:00 local around 29 March 2026: 21:00 UTC to 04:00 UTC, seven
    hours instead of eight."""
    s = weekly('team="db"', windows=(window(days=(5,), start="22:00", end="06:00"),))
    checks = {
        utc(2026, 3, 28, 20, 59): False,
        utc(2026, 3, 28, 21, 0): True,
        utc(2026, 3, 29, 3, 59): True,  # 05:59 CEST
        utc(2026, 3, 29, 4, 0): False,  # 06:00 CEST
    }
    assert {t: s.active_at(t) for t in checks} == checks


def test_a_schedule_within_a_span() -> None:
    s = config_silence(
        matchers('team="db"'),
        starts_at=utc(2026, 1, 1),
        ends_at=utc(2026, 2, 1),
        schedule=(window(),),
    )
    assert s.active_at(utc(2026, 1, 4, 1, 30))
    assert not s.active_at(utc(2025, 12, 28, 1, 30))  # a Sunday before the span
    assert not s.active_at(utc(2026, 2, 1, 1, 30))  # a Sunday after it
    assert s.state_at(utc(2026, 2, 1, 1, 30)) == "expired"


def test_rfc3339() -> None:
    assert parse_rfc3339("2026-11-29T02:00:00Z") == utc(2026, 11, 29, 2)
    assert parse_rfc3339("2026-11-29T03:00:00+01:00") == utc(2026, 11, 29, 2)
    assert parse_rfc3339("2026-11-29t01:00:00-01:00") == utc(2026, 11, 29, 2)
    assert parse_rfc3339("2026-11-29T02:00:00.123456789Z") == pytest.approx(
        utc(2026, 11, 29, 2) + 0.123456789
    )
    assert rfc3339(utc(2026, 11, 29, 2) + 0.25) == "2026-11-29T02:00:00.250Z"
    bad_times = (
        "2026-11-29T02:00:00",
        "2026-11-29",
        "tomorrow",
        "2026-02-30T00:00:00Z",
        "",
        "9999-12-31T23:59:59-01:00",
        "1969-12-31T23:59:59Z",
        "2026-11-29T02:00:00+24:00",
    )
    for bad in bad_times:
        with pytest.raises(ValueError, match="invalid time"):
            parse_rfc3339(bad)


# -- the set ----------------------------------------------------------------------------


def test_silenced_is_right_at_every_t_whatever_the_order_of_questions() -> None:
    s = SilenceSet(
        [
            weekly('alertname="disk_full"'),  # indexed by alertname
            api("b", 'team="web"', start=utc(2026, 1, 5), end=utc(2026, 1, 6)),
        ]
    )
    inside, outside = utc(2026, 1, 4, 1, 30), utc(2026, 1, 4, 3, 30)
    web = make({"alertname": "latency", "team": "web"})
    answers = [
        (ALERT, inside, True),
        (ALERT, outside, False),
        (ALERT, inside, True),  # the schedule's answer is remembered per t, not for good
        (make({"alertname": "other", "team": "db"}), inside, False),
        ((), inside, False),
        (web, inside, False),
        (web, utc(2026, 1, 5, 12), True),
        (web, utc(2026, 1, 6), False),
    ]
    assert [s.silenced(labels, t) for labels, t, _ in answers] == [a for _, _, a in answers]


def test_config_silences_are_replaced_on_reload_and_api_silences_stay() -> None:
    first = weekly('team="db"')
    s = SilenceSet([first])
    s.add(api("a", 'team="web"'), T0)
    assert [x.id for x in s.all()] == [first.id, "a"]
    second = weekly('team="infra"')
    s.set_config([second])
    assert [x.id for x in s.all()] == [second.id, "a"]
    assert s.get(first.id) is None
    assert not s.silenced(ALERT, utc(2026, 1, 4, 1, 30))


def test_config_silence_ids_are_stable_and_distinct() -> None:
    a = config_silence(matchers('team="db"'), ends_at=T0, origin="a.yml:1:1")
    b = config_silence(matchers('team="db"'), ends_at=T0, origin="b.yml:9:9")
    c = config_silence(matchers('team="db"'), ends_at=T0 + 1)
    assert a.id == b.id != c.id
    assert a.id.startswith("config-")


def test_expire_update_and_read_only() -> None:
    cfg = weekly('team="db"')
    s = SilenceSet([cfg])
    s.add(api("a", 'team="web"', start=T0 + 60), T0)
    assert s.counts(T0) == {"active": 0, "pending": 2, "expired": 0}
    ended = s.expire("a", T0)
    assert (ended.starts_at, ended.ends_at, ended.updated_at) == (T0, T0, T0)  # never starts
    assert s.counts(T0) == {"active": 0, "pending": 1, "expired": 1}
    assert s.expire("a", T0 + 5) is ended  # already expired: unchanged
    with pytest.raises(UnknownSilenceError, match="no silence with id nope"):
        s.expire("nope", T0)
    with pytest.raises(ReadOnlySilenceError, match="defined in the configuration"):
        s.expire(cfg.id, T0)
    with pytest.raises(ReadOnlySilenceError):
        s.put(api(cfg.id, 'team="x"'), T0, "new")
    with pytest.raises(UnknownSilenceError):
        s.put(api("nope", 'team="x"'), T0, "new")
    # updating an expired silence makes a new one; an active one is updated in place
    assert s.put(api("a", 'team="web"'), T0, "new").id == "new"
    assert s.put(api("new", 'team="mail"'), T0, "newer").id == "new"
    assert s.get("new") is not None
    assert str(s.get("new").matchers[0]) == 'team="mail"'  # type: ignore[union-attr]


def test_the_number_of_api_silences_is_bounded() -> None:
    s = SilenceSet(max_api=3, retention_s=3600)
    for i in range(3):
        s.add(api(f"s{i}", 'team="db"', end=T0 + 100 + i), T0)
    with pytest.raises(SilenceLimitError, match="too many silences: 3 are pending or active"):
        s.add(api("s3", 'team="db"'), T0)
    s.add(api("s0", 'team="web"'), T0)  # updating is always possible
    # at T0 + 102.5, s1 and s2 have expired (s0 now ends at T0 + 3600): the oldest makes room
    later = T0 + 102.5
    s.add(api("s4", 'team="db"', start=later, end=later + 10), later)
    assert sorted(x.id for x in s.all()) == ["s0", "s2", "s4"]
    # expired silences are forgotten after the retention (s0 expired less than 1h ago)
    s.add(api("s5", 'team="db"', start=T0 + 7000, end=T0 + 7300), T0 + 7000)
    assert sorted(x.id for x in s.all()) == ["s0", "s5"]


# -- config -----------------------------------------------------------------------------

CONFIG = """
alerting:
  silences:
    - matchers: ['team="db"']
      schedule:
        - {days: [sun], from: "02:00", to: "04:00", timezone: Europe/Berlin}
      comment: weekly maintenance
      created_by: ops
    - matchers: ['alertname="disk_full"', 'instance=~"db-.*"']
      starts_at: 2026-12-01T22:00:00Z
      ends_at: "2026-12-02T02:00:00+01:00"
"""


def test_config_silences() -> None:
    cfg = build_config(CONFIG, "kpimon.yml")
    weekly_s, span = cfg.alerting.silences
    assert weekly_s.source == span.source == "config"
    assert weekly_s.origin == "kpimon.yml:4:7"
    assert (weekly_s.comment, weekly_s.created_by) == ("weekly maintenance", "ops")
    assert weekly_s.schedule == (window(),)
    assert (weekly_s.starts_at, weekly_s.ends_at) == (-math.inf, math.inf)
    assert (span.starts_at, span.ends_at) == (utc(2026, 12, 1, 22), utc(2026, 12, 2, 1))
    assert SilenceSet(cfg.alerting.silences).silenced(ALERT, utc(2026, 12, 1, 23))
    assert build_config(CONFIG, "other.yml").alerting.silences[0].id == weekly_s.id


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{matchers: ['team=\"db\"'], starts_at: '2026-12-02T00:00:00Z', "
            "ends_at: '2026-12-01T00:00:00Z'}",
            "ends_at: must be after starts_at",
        ),
        (
            "{matchers: ['team=\"db\"'], schedule: [{days: [sun], timezone: Mars/Olympus}]}",
            'unknown time zone "Mars/Olympus"',
        ),
        (
            "{matchers: ['team=\"db\"'], schedule: [{days: [sunday], timezone: UTC}]}",
            'unknown weekday "sunday" (did you mean "sun"?)',
        ),
        ("{matchers: [], ends_at: '2026-12-01T00:00:00Z'}", "at least one matcher"),
        ("{ends_at: '2026-12-01T00:00:00Z'}", 'missing required key "matchers"'),
        (
            "{matchers: ['env=~\".*\"'], ends_at: '2026-12-01T00:00:00Z'}",
            "must not match the empty string",
        ),
        ("{matchers: ['team=\"db\"']}", 'a silence needs "ends_at" or a weekly "schedule"'),
        ("{matchers: ['team=\"db\"'], ends_at: 'next week'}", 'invalid time "next week"'),
        ("{matchers: ['team=\"db\"'], ends_at: '2026-12-01T00:00:00'}", "with a UTC offset"),
        ("{matchers: ['team=\"db\"'], schedule: []}", "at least one window is required"),
        (
            "{matchers: ['team=\"db\"'], schedule: [{from: '02:00', to: '02:00', timezone: UTC}]}",
            "the window starts and ends at",
        ),
    ],
)
def test_config_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(f"alerting:\n  silences:\n    - {entry}\n", "kpimon.yml")
    text = str(info.value)
    assert "kpimon.yml:3:" in text
    assert "alerting.silences[0]" in text
    assert message in text


# -- the journal ------------------------------------------------------------------------


def test_api_silences_survive_a_journal_close_and_reopen(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        s = SilenceSet([weekly('team="db"')])
        assert s.attach_store(JournalSilenceStore(j.connection, j.path), T0) == 0
        assert s.persistent
        s.add(api("a", 'alertname="disk_full"', created_by="me", comment="c"), T0)
        s.add(api("b", 'team=~"web|mail"', start=T0 + 10, end=T0 + 20), T0)
        s.expire("b", T0 + 1)
    with Journal.open(tmp_path) as j:
        again = SilenceSet()
        assert again.attach_store(JournalSilenceStore(j.connection, j.path), T0 + 2) == 2
        a, b = again.get("a"), again.get("b")
        assert a == api("a", 'alertname="disk_full"', created_by="me", comment="c")
        assert b is not None
        assert b.state_at(T0 + 2) == "expired"
        assert again.silenced(ALERT, T0 + 2)
    with Journal.open(tmp_path) as j:  # after the retention, expired ones are gone for good
        SilenceSet().attach_store(JournalSilenceStore(j.connection, j.path), T0 + 6 * 86400)
        assert j.connection.execute("SELECT count(*) FROM silences").fetchone()[0] == 0


def test_an_unreadable_row_is_skipped_and_the_others_load(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        store = JournalSilenceStore(j.connection, j.path)
        store.save(api("good", 'team="db"'))
        j.connection.execute("INSERT INTO silences VALUES ('bad', 0, '{\"matchers\": [1]}')")
        assert [x.id for x in store.load()] == ["good"]


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        s = SilenceSet()
        s.attach_store(JournalSilenceStore(j.connection, j.path), T0)
        j.connection.execute("DROP TABLE silences")
        with pytest.raises(SilenceStoreError, match="cannot save the silence"):
            s.add(api("a", 'team="db"'), T0)
        assert s.get("a") is None
        assert not s.silenced(ALERT, T0)


def test_the_row_format_round_trips() -> None:
    s = api("x", 'a="1"', 'b=~"x|y"', 'c!="\\"q\\""', created_by="u", comment="line\nbreak")
    assert decode("x", encode(s)) == s
    with pytest.raises(ValueError, match="no matchers"):
        decode("x", '{"matchers": []}')
    with pytest.raises(ValueError, match="invalid times"):
        decode("x", encode(s).replace('"ends_at": ', '"ends_at": -'))


def test_the_index_answers_as_checking_every_silence() -> None:
    """silenced() (indexed, compiled, memoised) == any(active_at and matches), at random."""
    rng = random.Random(5)
    values = ["a", "b", ""]
    ops = ["=", "!=", "=~", "!~"]
    names = ["alertname", "team", "env"]
    silences = []
    for i in range(25):
        texts = [
            f'{rng.choice(names)}{rng.choice(ops)}"{rng.choice([*values, "a|b", ".*"])}"'
            for _ in range(rng.randint(1, 3))
        ]
        if check_matchers(matchers(*texts)) is not None:
            continue
        start = T0 + rng.choice([-100, 0, 50])
        windows = (window(days=(rng.randrange(7),), start="10:00", end="14:00", tz="UTC"),)
        silences.append(
            api(f"s{i}", *texts, start=start, end=start + rng.choice([10, 100, 86400 * 7]))
            if rng.random() < 0.7
            else config_silence(matchers(*texts), schedule=windows, comment=str(i))
        )
    s = SilenceSet(silences)
    hits = 0
    for _ in range(3000):
        labels = make({n: rng.choice(values) for n in names})
        t = T0 + rng.choice([-50, 0, 5, 60, 3600 * rng.randrange(200)])
        brute = any(x.active_at(t) and x.matches(labels) for x in silences)
        assert s.silenced(labels, t) is brute, (labels, t)
        hits += brute
    assert 300 < hits < 2900  # both answers are well represented


def test_the_docs_examples_are_valid() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text("utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, flags=re.S) if "silences:" in b]
    assert blocks
    for block in blocks:
        cfg = build_config(block, "docs/alerting.md")
        assert cfg.alerting.silences
