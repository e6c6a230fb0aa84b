"""``transition_test`` in ``kpimon test``: the exact ordered transitions, with restarts and gaps.

Expectations are computed by hand from ARCHITECTURE §5. The KPI ``busy`` has one level,
``critical: {above: 90, for: 45m}``, over a gauge at 95 from time 0 (1m ticks), so it is pending
from 0m and, without restarts, fires at 45m. Restarts go through a real journal in a temporary
directory (kpimon.replay.restart), as ``kpimon replay --restart-at`` does.
"""

from __future__ import annotations

import tempfile
import textwrap

import pytest

from kpimon.cli import main
from kpimon.replay import restart
from kpimon.ruletest.loader import parse_test_file

RULES = """
kpis:
  - name: busy
    owner: team
    expr: cpu_busy
    levels:
      critical: {above: 90, for: 45m}
  - name: other
    owner: team
    expr: other_busy
    levels:
      warning: {above: 50}
"""


def _run(tmp_path, capsys, test):
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(RULES).lstrip())
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(test).lstrip())
    code = main(["test", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.replace(str(tmp_path) + "/", "")


def _file(values, transition_tests, *, other="0x300"):
    """A test file: ``busy`` (instance a) fed ``values``, ``other`` fed ``other``."""
    body = textwrap.indent(textwrap.dedent(transition_tests).strip(), " " * 6)
    return (
        "rule_files: [rules.yaml]\n"
        "tests:\n"
        "  - input_series:\n"
        f"      - {{series: 'cpu_busy{{instance=\"a\"}}', values: '{values}'}}\n"
        f"      - {{series: 'other_busy', values: '{other}'}}\n"
        "    transition_test:\n"
        f"{body}\n"
    )


PENDING_AT_0 = (
    "- {time: 0m, kpi: busy, labels: '{instance=\"a\"}', level: critical, from: inactive, "
    "to: pending, notify: false}"
)


def _passes(tmp_path, capsys, test):
    code, out, err = _run(tmp_path, capsys, test)
    assert (code, err) == (0, ""), err
    assert "SUCCESS" in out


def test_without_restart_fires_after_45m(tmp_path, capsys):
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x100",
            f"""
            - to: 1h
              exp_transitions:
                {PENDING_AT_0}
                - {{time: 45m, kpi: busy, labels: '{{instance="a"}}', level: critical,
                    from: pending, to: firing, notify: true, reason: held for 2700s}}
            """,
        ),
    )


def test_restart_without_outage_keeps_the_for_timer(tmp_path, capsys, monkeypatch):
    # Pending for 30m when kpimon restarts at 30m: the journal restores active_at = 0, so the
    # level fires at 45m exactly (a fresh start would fire at 1h15m).
    opened = []
    real_open = restart.Journal.open

    def spy(directory, **kwargs):
        opened.append(str(directory))
        return real_open(directory, **kwargs)

    monkeypatch.setattr(restart.Journal, "open", spy)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x100",
            f"""
            - name: restart at 30m
              kpi: busy
              to: 1h
              restart_at: [30m]
              exp_transitions:
                {PENDING_AT_0}
                - {{time: 45m, labels: '{{instance="a"}}', level: critical, from: pending,
                    to: firing, notify: true}}
            """,
        ),
    )
    # A real journal, opened by the first process and again by the second, then removed.
    assert len(opened) == 2
    assert len(set(opened)) == 1
    assert opened[0].startswith(str(tmp_path / "tmp" / "kpimon-test-"))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_gap_within_outage_tolerance_continues_the_timers(tmp_path, capsys):
    # Ticks 0m..29m, none in [30m, 40m), restart at 40m: the outage, from the journal's last
    # tick (29m) to 40m, is 11m < 1h, so the for timer moves on by it: active_at 0m + 11m, and
    # the level fires at 56m (29m of condition before the gap + 16m after it = 45m). The
    # series has no sample at 40m (not yet scraped by the new process): with max_gap 0 that
    # would drop pending at once if it were missing data; it is not (ARCHITECTURE §5).
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x39 _ 95x60",
            f"""
            - kpi: busy
              to: 1h10m
              gap: [{{from: 30m, to: 40m}}]
              exp_transitions:
                {PENDING_AT_0}
                - {{time: 56m, labels: '{{instance="a"}}', level: critical, from: pending,
                    to: firing, notify: true}}
            """,
        ),
    )


def test_gap_beyond_outage_tolerance_restarts_pending(tmp_path, capsys):
    # Outage 29m -> 1h40m = 71m >= 1h: pending restarts at the restart (pending -> inactive,
    # not notified), the tick at 1h40m makes it pending again, and it fires 45m later.
    restarted = (
        "- {time: 1h40m, labels: '{instance=\"a\"}', level: critical, from: pending, "
        "to: inactive, notify: false, reason: longer than outage_tolerance}"
    )
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x200",
            f"""
            - kpi: busy
              to: 2h30m
              gap: [{{from: 30m, to: 1h40m}}]
              exp_transitions:
                {PENDING_AT_0}
                {restarted}
                - {{time: 1h40m, labels: '{{instance="a"}}', level: critical, from: inactive,
                    to: pending}}
                - {{time: 2h25m, labels: '{{instance="a"}}', level: critical, from: pending,
                    to: firing, notify: true}}
            """,
        ),
    )


def test_outage_tolerance_per_test(tmp_path, capsys):
    # The same 10m gap as above, with a 5m tolerance: the 11m outage restarts pending.
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x100",
            """
            - kpi: busy
              from: 1m
              to: 1h30m
              outage_tolerance: 5m
              gap: [{from: 30m, to: 40m}]
              exp_transitions:
                - {time: 40m, labels: '{instance="a"}', level: critical, from: pending,
                   to: inactive, reason: "kpimon was down 660s"}
                - {time: 40m, labels: '{instance="a"}', level: critical, from: inactive,
                   to: pending}
                - {time: 1h25m, labels: '{instance="a"}', level: critical, from: pending,
                   to: firing}
            """,
        ),
    )


def test_firing_stays_firing_across_a_long_gap(tmp_path, capsys):
    # Fires at 45m; kpimon is down from 50m to 3h (outage 2h11m, beyond the tolerance): a
    # firing level is neither resolved nor re-notified by the restart, and resolves (notified)
    # when the value drops at 3h5m.
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x184 50x20",
            f"""
            - kpi: busy
              to: 3h10m
              restart_at: [20m, 3h2m]
              gap: [{{from: 50m, to: 3h}}]
              exp_transitions:
                {PENDING_AT_0}
                - {{time: 45m, labels: '{{instance="a"}}', level: critical, from: pending,
                    to: firing, notify: true}}
                - {{time: 3h5m, labels: '{{instance="a"}}', level: critical, from: firing,
                    to: inactive, notify: true}}
            """,
        ),
    )


def test_a_journal_that_cannot_be_created_fails_the_test(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    code, _, err = _run(tmp_path, capsys, _file("95x10", "- {to: 5m, restart_at: [1m]}"))
    assert code == 1
    assert "    transition_test[0]: the journal failed: " in err


def test_every_kpi_and_the_range(tmp_path, capsys):
    # Without a kpi filter every KPI's transitions are compared, in the order they were made
    # (KPIs in rule-file order within a tick); from/to bound the range, both included.
    _passes(
        tmp_path,
        capsys,
        _file(
            "95x100",
            """
            - from: 45m
              to: 1h
              exp_transitions:
                - {time: 45m, kpi: busy, labels: '{instance="a"}', level: critical,
                   from: pending, to: firing}
                - {time: 50m, kpi: other, level: warning, from: inactive, to: firing}
                - {time: 1h, kpi: other, level: warning, from: firing, to: inactive}
            - {to: 44m, kpi: other}
            """,
            other="0x49 60x9 0x10",
        ),
    )


def test_a_mismatch_reports_the_first_difference(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        _file(
            "95x100",
            f"""
            - name: fires at 44m?
              to: 1h
              restart_at: [30m]
              exp_transitions:
                {PENDING_AT_0}
                - {{time: 44m, kpi: busy, labels: '{{instance="a"}}', level: critical,
                    from: pending, to: firing}}
            - to: 50m
              kpi: busy
              exp_transitions:
                {PENDING_AT_0}
            """,
        ),
    )
    assert code == 1
    assert err.splitlines() == [
        "  FAILED:",
        "  in tests[0]:",
        "    transition_test[0] (fires at 44m?), t.yaml:7:9: from 0s to 1h",
        "      first difference at [1]: time",
        "        exp:",
        '            0:  0s   busy{instance="a"}  critical  inactive -> pending  no notify',
        '          > 1:  44m  busy{instance="a"}  critical  pending -> firing',
        "        got:",
        '            0:  0s   busy{instance="a"}  critical  inactive -> pending  no notify  '
        'reason "value > 90"',
        '          > 1:  45m  busy{instance="a"}  critical  pending -> firing    notify     '
        'reason "value > 90 held for 2700s"',
        "",
        "    transition_test[1], t.yaml:14:9: from 0s to 50m, kpi busy",
        "      first difference at [1]: unexpected transition",
        "        exp:",
        '            0:  0s   busy{instance="a"}  critical  inactive -> pending  no notify',
        "        got:",
        '            0:  0s   busy{instance="a"}  critical  inactive -> pending  no notify  '
        'reason "value > 90"',
        '          > 1:  45m  busy{instance="a"}  critical  pending -> firing    notify     '
        'reason "value > 90 held for 2700s"',
        "",
        "kpimon test: 1 test group in 1 file: 0 passed, 1 failed",
    ]


@pytest.mark.parametrize(
    ("exp", "difference"),
    [
        ("{time: 0m, kpi: busy, labels: '{instance=\"b\"}', level: critical, from: inactive, "
         "to: pending}", "labels"),
        ("{time: 0m, kpi: busy, labels: '{instance=\"a\"}', level: warning, from: inactive, "
         "to: firing, notify: true}", "level, to, notify"),
        ("{time: 0m, kpi: busy, labels: '{instance=\"a\"}', level: critical, from: inactive, "
         "to: pending, reason: held}", "reason"),
    ],
)  # fmt: skip
def test_each_field_is_compared(tmp_path, capsys, exp, difference):
    code, _, err = _run(tmp_path, capsys, _file("95x10", f"- to: 5m\n  exp_transitions: [{exp}]"))
    assert code == 1
    assert f"first difference at [0]: {difference}\n" in err


def test_a_missing_transition(tmp_path, capsys):
    code, _, err = _run(
        tmp_path, capsys, _file("95x10", "- {to: 5m, kpi: other, exp_transitions: [" + "]}")
    )
    assert code == 0, err
    code, _, err = _run(
        tmp_path,
        capsys,
        _file(
            "95x10",
            "- to: 5m\n  kpi: other\n  exp_transitions:\n"
            "    - {time: 1m, level: warning, from: inactive, to: firing}",
        ),
    )
    assert code == 1
    assert "first difference at [0]: missing transition\n" in err
    assert "        got: none\n" in err


def _problems(text):
    tf, problems = parse_test_file(textwrap.dedent(text).lstrip("\n"), "t.yaml")
    assert tf is None
    return [str(p).replace("tests[0].transition_test[", "tt[") for p in problems]


def test_loader_problems_have_positions():
    assert _problems(
        """
        tests:
          - transition_test:
              - to: 1h
                restart: [30m]
                restart_at: [0m, 2h, 45m]
                gap: [{from: 40m, to: 40m}, {from: 50m, to: 2h}, {from: 10m, to: 20m},
                      {from: 15m, to: 30m}]
                outage_tolerance: 0s
                exp_transitions:
                  - {time: 2m, kpi: busy, level: critical, from: inactiv, to: pending}
                  - {time: 1m, kpi: busy, level: critical, from: pending, to: pending}
                  - {time: 2h, level: critical, from: pending, to: firing, notify: yes please}
                  - {kpi: busy, labels: 'up{a="b"}', from: firing, to: inactive}
              - from: 1h
                to: 30m
                kpi: busy
                exp_transitions:
                  - {time: 1h, kpi: other, level: critical, from: pending, to: firing}
        """
    ) == [
        't.yaml:4:9: tt[0]: unknown key "restart" (did you mean "restart_at"?)',
        "t.yaml:8:27: tt[0].outage_tolerance: must be positive",
        "t.yaml:6:15: tt[0].gap[0]: the gap must end after it starts (from: 40m, to: 40m)",
        "t.yaml:6:53: tt[0].gap[1].to: the gap must end (with a restart) at or before the "
        "test's to (1h)",
        "t.yaml:7:15: tt[0].gap: gaps overlap (10m-20m and 15m-30m)",
        "t.yaml:5:22: tt[0].restart_at[0]: a restart must be after 0 and at or before the "
        "test's to",
        "t.yaml:5:26: tt[0].restart_at[1]: a restart must be after 0 and at or before the "
        "test's to",
        't.yaml:10:58: tt[0].exp_transitions[0].from: unknown phase "inactiv" (did you mean '
        '"inactive"?); phases are inactive, pending, firing, clearing',
        "t.yaml:11:20: tt[0].exp_transitions[1].time: transitions are listed in time order: 1m "
        "comes after 2m",
        "t.yaml:11:13: tt[0].exp_transitions[1]: a transition changes the phase (from and to: "
        "pending)",
        "t.yaml:12:20: tt[0].exp_transitions[2].time: 2h is outside the test's range (0s to 1h)",
        't.yaml:12:13: tt[0].exp_transitions[2]: missing required key "kpi" (or a "kpi" for '
        "the test)",
        't.yaml:12:76: tt[0].exp_transitions[2].notify: expected true or false, got "yes please"',
        't.yaml:13:13: tt[0].exp_transitions[3]: missing required key "time"',
        "t.yaml:13:33: tt[0].exp_transitions[3].labels: a KPI series has no metric name: give "
        "its labels only, e.g. '{instance=\"a\"}'",
        't.yaml:13:13: tt[0].exp_transitions[3]: missing required key "level"',
        "t.yaml:14:9: tt[1]: the range ends (to: 30m) before it starts (from: 1h)",
        "t.yaml:18:29: tt[1].exp_transitions[0].kpi: the test compares only the transitions of "
        'KPI "busy"',
    ]


def test_loader_restart_inside_a_gap_and_missing_to():
    problems = _problems(
        """
        tests:
          - transition_test:
              - {to: 1h, restart_at: [45m], gap: [{from: 40m, to: 50m}]}
              - {from: 1m}
        """
    )
    assert problems == [
        "t.yaml:3:31: tt[0].restart_at[0]: kpimon is not running at 45m "
        "(gap 40m-50m): it restarts at the gap's end",
        't.yaml:4:9: tt[1]: missing required key "to"',
    ]


def test_invalid_transition_test_exits_2(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        _file("95x10", "- {to: 1h, gap: [{from: 20m, to: 10m}]}"),
    )
    assert code == 2
    assert (
        "t.yaml:7:24: tests[0].transition_test[0].gap[0]: the gap must end after it starts "
        "(from: 20m, to: 10m)"
    ) in err
