"""kpimon replay's data readers (OpenMetrics with timestamps, CSV) and their FILE:LINE errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kpimon.replay import openmetrics
from kpimon.replay.command import load_data, read_data_file
from kpimon.replay.csvdata import read_csv
from kpimon.replay.data import DataError, Recording, merge, parse_time
from kpimon.replay.openmetrics import read_openmetrics
from kpimon.store import is_stale

DATA = Path(__file__).parent.parent / "data" / "replay"


def samples(rec: Recording) -> list[tuple[str, int, float, int]]:
    """(key, time ms, value, line) of every sample, sorted as the recording is."""
    return [
        (rec.keys[s].decode(), t, v, line)
        for s, t, v, line in zip(
            rec.series.tolist(),
            rec.times_ms.tolist(),
            rec.values.tolist(),
            rec.lines.tolist(),
            strict=True,
        )
    ]


def om(text: str) -> Recording:
    return merge([read_openmetrics(text.encode(), "data.om")])


def csv(text: str) -> Recording:
    return merge([read_csv(text, "data.csv")])


def om_error(text: str) -> str:
    with pytest.raises(DataError) as info:
        om(text)
    return str(info.value)


def csv_error(text: str) -> str:
    with pytest.raises(DataError) as info:
        csv(text)
    return str(info.value)


# -- OpenMetrics -----------------------------------------------------------------------------


def test_openmetrics_many_samples_per_series() -> None:
    rec = om(
        "# HELP up Up.\n"
        "# TYPE up gauge\n"
        'up{job="a",instance="x"} 1 1700000000\n'
        'up{instance="x",job="a"} 0 1700000015.5\n'  # another spelling of the same series
        "\n"
        "up 1 1700000000\n"
        "# EOF\n"
    )
    assert samples(rec) == [
        ('up{instance="x",job="a"}', 1_700_000_000_000, 1.0, 3),
        ('up{instance="x",job="a"}', 1_700_000_015_500, 0.0, 4),
        ("up", 1_700_000_000_000, 1.0, 6),
    ]


def test_openmetrics_tolerates_crlf_blanks_and_exemplars() -> None:
    rec = om(
        'a_total 1 1700000000 # {trace_id="x"} 1\r\n'
        "a_total  2   1700000001\r\n"
        "b +Inf 1700000000\n"
        "b NaN 1700000001\n"
        "# EOF\r\n"
    )
    got = samples(rec)
    assert [(k, v) for k, _, v, _ in got[:2]] == [("a_total", 1.0), ("a_total", 2.0)]
    assert got[2][2] == math.inf
    assert math.isnan(got[3][2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("up 1\n# EOF\n", "data.om:1: sample has no timestamp"),
        ("up 1 1700000000\nup{a=b} 1 1700000000\n# EOF\n", "data.om:2: "),
        ("up 1 1700000000\nup x 1700000000\n# EOF\n", 'data.om:2: invalid value "x"'),
        ("up 1 1700000000\n", 'data.om:2: missing "# EOF" at the end'),
        ("up 1 1700000000\n# EOF\nup 2 1700000001\n", 'data.om:3: content after "# EOF"'),
        ("# random comment\nup 1 1700000000\n# EOF\n", "data.om:1: invalid comment line"),
        ("up 1 1700000000000\n# EOF\n", "data.om:1: timestamp 1700000000000 is out of range"),
        ("up 1 1700000000\nup 2 1700000000\n# EOF\n", "data.om:2: duplicate sample of up at "
         "2023-11-14T22:13:20Z (first on line 1)"),
    ],
)  # fmt: skip
def test_openmetrics_errors_say_file_and_line(text: str, message: str) -> None:
    assert om_error(text).startswith(message)


@pytest.mark.parametrize("label", ["a b", "ab"])  # with a space, lines are not split at blanks
def test_openmetrics_fast_and_line_by_line_reads_agree(
    monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    lines = ["# TYPE m gauge"]
    for i in range(300):
        for j in range(3):
            lines.append(f'm{{j="{j}",k="{label}"}} {i * j / 7} {1_700_000_000 + 15 * i}')
        if i % 100 == 0:
            lines.append("# HELP m Some help.")
    lines.append("odd  1 1700000000")  # not canonical: this chunk is read line by line
    text = "\n".join(lines) + "\n# EOF\n"
    whole = om(text)
    monkeypatch.setattr(openmetrics, "CHUNK_BYTES", 1000)
    chunked = om(text)
    assert samples(whole) == samples(chunked)
    assert len(whole) == 901
    # An error deep in a chunk read fast still gets its exact line.
    bad = text.replace(f'm{{j="1",k="{label}"}} {200 / 7} 1700003000', "m{j=} 1 1700003000")
    assert bad != text
    line = bad.splitlines().index("m{j=} 1 1700003000") + 1
    assert om_error(bad).startswith(f"data.om:{line}: ")


def test_openmetrics_tokens_that_do_not_line_up_are_found() -> None:
    # As many blanks in total as three per line, but not on every line: the line lengths show
    # that the tokens do not line up, and the line by line pass names the line.
    text = "".join(f"m{i} 1 {1_700_000_000 + i}\n" for i in range(10))
    text = text.replace("m3 1 1700000003", "m3 1 1700000003 4").replace("m5 1 1700000005", "m5 1")
    assert om_error(text + "# EOF\n").startswith("data.om:4: ")


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_formats_of_time_value_and_series() -> None:
    rec = csv(
        "timestamp,series,value\n"
        "# a comment\n"
        '2023-11-14T22:13:20Z,"up{job=""a"", instance=\'x\'}",1\n'
        '1700000001.5,"up{instance=""x"",job=""a""}",NaN\n'
        "\n"
        "2023-11-15T00:13:22+02:00,\"up{instance='x',job='a'}\",stale\n"
        "1700000003,other,-Inf\n"
    )
    got = samples(rec)
    assert [(k, t, line) for k, t, _, line in got] == [
        ('up{instance="x",job="a"}', 1_700_000_000_000, 3),
        ('up{instance="x",job="a"}', 1_700_000_001_500, 4),
        ('up{instance="x",job="a"}', 1_700_000_002_000, 6),
        ("other", 1_700_000_003_000, 7),
    ]
    assert got[0][2] == 1.0
    assert math.isnan(got[1][2])
    assert not is_stale(rec.values[1:2])[0]
    assert is_stale(rec.values[2:3])[0]
    assert got[3][2] == -math.inf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1700000000,up,1,2\n", "data.csv:1: expected 3 fields (timestamp,series,value), got 4"),
        ("1700000000,up{a=\"1\",b=\"2\"},1\n", "data.csv:1: expected 3 fields (timestamp,series,"
         'value), got 4 (quote a series with commas: "up{a=""1"",b=""2""}")'),
        ("1700000000,up\n", "data.csv:1: expected 3 fields (timestamp,series,value), got 2"),
        ("timestamp,series,value\n1700000000,up,1\nyesterday,up,1\n", "data.csv:3: invalid "
         "timestamp 'yesterday'"),
        ("1700000000,up,1\n2023-11-14T22:13:21,up,1\n", "data.csv:2: invalid timestamp"),
        ("1700000000,up,one\n", "data.csv:1: invalid value 'one'"),
        ("1700000000000,up,1\n", "data.csv:1: invalid timestamp '1700000000000': out of range"),
        ("1700000000,up,1_0\n", "data.csv:1: invalid value '1_0'"),
        ("1700000000,up,1e999\n", "data.csv:1: value out of range '1e999'"),
        ("1700000000,\"up{a=\"\"b}\",1\n", "data.csv:1: invalid series 'up{a=\"b}'"),
        ("1700000000,{a=\"b\"},1\n", "data.csv:1: invalid series '{a=\"b\"}': no metric name"),
        ("1700000000,up,1\n\n1700000000,up,2\n", "data.csv:3: duplicate sample of up at "
         "2023-11-14T22:13:20Z (first on line 1)"),
        ('1700000000,"up,1\n', "data.csv:1: malformed CSV"),
    ],
)  # fmt: skip
def test_csv_errors_say_file_and_line(text: str, message: str) -> None:
    assert csv_error(text).startswith(message)


# -- files -------------------------------------------------------------------------------------


def test_files_are_told_apart_by_suffix_or_content(tmp_path: Path) -> None:
    as_csv = tmp_path / "data"
    as_csv.write_text("timestamp,series,value\n1700000000,up,1\n")
    as_om = tmp_path / "data2"
    as_om.write_text("# TYPE up gauge\nup 1 1700000000\n# EOF\n")
    assert samples(read_data_file(str(as_csv)))[0][:3] == ("up", 1_700_000_000_000, 1.0)
    assert samples(read_data_file(str(as_om)))[0][:3] == ("up", 1_700_000_000_000, 1.0)


def test_duplicates_across_files_name_both(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("1700000000,up,1\n")
    b = tmp_path / "b.om"
    b.write_text("# comment?\n")
    with pytest.raises(DataError, match=r"b\.om:1: invalid comment line"):
        load_data([str(a), str(b)])
    b.write_text("up 1 1700000000\n# EOF\n")
    with pytest.raises(DataError) as info:
        load_data([str(a), str(b)])
    assert (
        str(info.value) == f"{b}:1: duplicate sample of up at 2023-11-14T22:13:20Z (first on {a}:1)"
    )


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.csv: cannot read: No such file"):
        read_data_file(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"1700000000,up,1\n1700000001,\xff,1\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: not UTF-8 text \(byte 0xff\)"):
        read_data_file(str(bad))


def test_example_files_hold_the_same_samples() -> None:
    a = samples(load_data([str(DATA / "queues.csv")]))
    b = samples(load_data([str(DATA / "queues.om")]))
    assert [s[:3] for s in a] == [s[:3] for s in b]
    assert len(a) == 18


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.25", 1_700_000_000.25),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20.5Z", 1_700_000_000.5),
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["2023-11-14T22:13:20", "soon", "nan", "1_000", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(text)


def test_recording_arrays_are_sorted_by_series_then_time() -> None:
    rec = csv("3,b,1\n1,a,1\n2,b,1\n0,a,1\n")
    assert rec.series.tolist() == [0, 0, 1, 1]
    assert rec.keys == (b"b", b"a")
    assert rec.times_ms.tolist() == [2000, 3000, 0, 1000]
    assert isinstance(rec.times_ms, np.ndarray)


@pytest.mark.parametrize(
    "text",
    [
        "timestamp,series,value\n1700000000,up,1\n1700000015,up,2\n",
        '# comment\r\n\r\n1700000000,"up{a=""x""}",stale\r\n2023-11-14T22:13:35Z,up,NaN\r\n',
        "1700000000,up,1\n1700000000,down,+Inf\n1700000015.5,up,-2.5e3",
    ],
)
def test_csv_column_and_row_reads_agree(text: str) -> None:
    from kpimon.replay.csvdata import _by_rows, _fast

    fast = _fast(text, "data.csv")
    assert fast is not None
    slow = _by_rows(text, "data.csv")
    assert fast.keys == slow.keys
    assert fast.series.tolist() == slow.series.tolist()
    assert fast.times_ms.tolist() == slow.times_ms.tolist()
    assert fast.values.tobytes() == slow.values.tobytes()  # NaN and staleness bits included
    assert fast.lines.tolist() == slow.lines.tolist()


def test_csv_chunked_reads_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from kpimon.replay import csvdata

    lines = ["# recorded by hand", "timestamp,series,value"]
    for i in range(200):
        lines.extend(f'{1_700_000_000 + 15 * i},"m{{j=""{j}""}}",{i * j / 7}' for j in range(3))
        if i % 40 == 0:
            lines.extend(["# a comment", ""])
    text = "\n".join(lines) + "\n"
    whole = csv(text)
    monkeypatch.setattr(csvdata, "CHUNK_CHARS", 300)
    chunked = csv(text)
    assert samples(whole) == samples(chunked)
    assert len(whole) == 600
    bad = text.replace(f',"m{{j=""1""}}",{150 / 7}\n', ',"m{j=""1""}",x\n')
    assert bad != text
    line = bad.splitlines().index(f'{1_700_000_000 + 15 * 150},"m{{j=""1""}}",x') + 1
    assert csv_error(bad) == f"data.csv:{line}: invalid value 'x'"
