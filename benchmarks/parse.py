"""Benchmark: kpimon's exposition parser against prometheus_client's, in the same run.

Measures samples parsed per second (input sample lines / median wall time of one parse, single
process, single thread: one core) on

  (a) a live payload of a real node_exporter started on 127.0.0.1 (Debian package
      prometheus-node-exporter), whole and selective (the node_exporter names the host rules read);
  (b) a synthetic payload of 100k series generated in memory (10 metric names, 3-5 labels, some
      escaped label values), whole and selective (2 names wanted);

and checks them against ARCHITECTURE.md section 11:

  whole payload      >= 1M samples/s per core, and >= 25x prometheus_client
  selective parsing  >= 2M input samples/s per core

kpimon is measured as the daemon runs it: on a later scrape of a target (another payload of the
same series with new values), with the previous scrape's result at hand as the daemon holds it
from the third scrape of a target on (itself parsed with a previous result), which lets the
parser skip the grammar check of keys it has already validated, compare the keys in one memcmp
and convert only the values that changed. The two node_exporter scrapes are taken one scrape
interval (15 s) apart, so that as many values change as in the daemon (the count is printed);
in the synthetic payload every value changes. The budgets are checked on that figure;
the first scrape of a target (no previous result: every key checked) is printed beside it.

prometheus_client has no selective mode: its figure for a selective run is a whole parse (it must
read everything to find the wanted names). The contenders run in interleaved rounds so that load
from other processes on a shared machine falls on all of them alike.
Run: ``python benchmarks/parse.py [--quick]`` (about a minute and a half; --quick about one).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from kpimon.config.loader import default_config
from kpimon.sources.exposition import ACCEPT_HEADER, content_is_openmetrics, parse
from tests.helpers.debian import node_exporter
from tests.helpers.exposition import fetch_with_accept

WHOLE_BUDGET = 1_000_000
WHOLE_RATIO_BUDGET = 25.0
SELECTIVE_BUDGET = 2_000_000
SCRAPE_INTERVAL_S = 15.0

# The node_exporter names the packaged host rules read, as the daemon derives them.
HOST_RULE_NAMES = frozenset(n.encode() for n in default_config().wanted_metric_names() or ())


def interleaved_medians(
    contenders: dict[str, Callable[[], object]], rounds: int, runs: dict[str, int]
) -> dict[str, float]:
    """Median wall time (perf_counter) of each contender, measured in interleaved rounds (each
    round runs every contender ``runs[name]`` times) so that load from other processes on a
    shared machine falls on all of them alike."""
    for fn in contenders.values():
        fn()  # warm-up: compiled patterns, caches
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            for _ in range(runs[name]):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def prometheus_client_parse(text: str) -> int:
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def synthetic_payload(series: int = 100_000, seed: int = 1, values_seed: int = 0) -> bytes:
    """A realistic exposition of ``series`` series: 10 families, several labels, some escapes.

    ``seed`` fixes the series, ``values_seed`` their values (a later scrape of the same target).
    """
    rnd = random.Random(seed)
    values_rnd = random.Random(values_seed)
    families = [
        ("http_requests_total", "counter", ["method", "code", "handler", "instance"]),
        ("http_request_duration_seconds_bucket", "histogram", ["handler", "instance", "le"]),
        ("http_request_size_bytes", "gauge", ["handler", "instance", "method"]),
        ("process_open_fds", "gauge", ["instance", "job", "pod"]),
        ("db_query_errors_total", "counter", ["database", "query", "instance", "code"]),
        ("queue_depth", "gauge", ["queue", "instance", "priority"]),
        ("cache_hits_total", "counter", ["cache", "instance", "tier"]),
        ("disk_io_seconds_total", "counter", ["device", "instance", "direction", "mode"]),
        ("temperature_celsius", "gauge", ["sensor", "rack", "instance"]),
        ("app_info", "gauge", ["version", "commit", "instance", "region", "build_user"]),
    ]
    per_family = series // len(families)
    lines: list[str] = []
    for name, typ, labels in families:
        family = name.removesuffix("_bucket")
        lines.append(f"# HELP {family} Synthetic {family.replace('_', ' ')}.")
        lines.append(f"# TYPE {family if typ == 'histogram' else name} {typ}")
        for i in range(per_family):
            values = []
            for label in labels:
                if label == "le":
                    values.append(rnd.choice(["0.005", "0.05", "0.5", "1", "5", "+Inf"]))
                elif label == "query" or (label == "handler" and i % 20 == 0):
                    values.append(f'/api/v1/q?x=\\"{i}\\"&path=C:\\\\tmp\\\\{i % 7}\\nnext')
                else:
                    values.append(f"{label}-{i % 97}-{i // 97}")
            pairs = ",".join(f'{k}="{v}"' for k, v in zip(labels, values, strict=True))
            kind = values_rnd.random()
            if kind < 0.5:
                value = str(values_rnd.randrange(10**9))
            elif kind < 0.98:
                value = repr(values_rnd.uniform(0, 1e6))
            else:
                value = values_rnd.choice(["NaN", "+Inf", "1.5e-07"])
            lines.append(f"{name}{{{pairs}}} {value}")
    return ("\n".join(lines) + "\n").encode()


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def run(
    label: str,
    earlier: bytes,
    body: bytes,
    wanted: frozenset[bytes],
    openmetrics: bool,
    rounds: int,
    kpimon_runs: int,
) -> list[tuple[str, bool]]:
    """Parse ``body``, a later scrape of the target that served ``earlier``."""
    whole = parse(body, openmetrics=openmetrics)
    selective = parse(body, wanted, openmetrics=openmetrics)
    n = whole.samples_total
    assert whole.malformed_total == 0, whole.issues
    text = body.decode()
    assert prometheus_client_parse(text) == n, "prometheus_client read a different count"
    # The previous result as the daemon holds it from its third scrape of a target on: itself
    # the result of a later scrape (parsed with a previous result at hand).
    prev_whole = parse(earlier, openmetrics=openmetrics)
    prev_whole = parse(earlier, openmetrics=openmetrics, previous=prev_whole)
    prev_sel = parse(earlier, wanted, openmetrics=openmetrics)
    prev_sel = parse(earlier, wanted, openmetrics=openmetrics, previous=prev_sel)
    shared = len(set(prev_whole.keys) & set(whole.keys))
    before = dict(zip(prev_whole.keys, prev_whole.values.tolist(), strict=True))
    changed = sum(
        1
        for key, value in zip(whole.keys, whole.values.tolist(), strict=True)
        if key not in before or not same_float(before[key], value)
    )
    medians = interleaved_medians(
        {
            "pc": lambda: prometheus_client_parse(text),
            "whole": lambda: parse(body, openmetrics=openmetrics, previous=prev_whole),
            "selective": lambda: parse(body, wanted, openmetrics=openmetrics, previous=prev_sel),
            "whole first": lambda: parse(body, openmetrics=openmetrics),
            "selective first": lambda: parse(body, wanted, openmetrics=openmetrics),
        },
        rounds,
        {"pc": 1}
        | dict.fromkeys(("whole", "selective", "whole first", "selective first"), kpimon_runs),
    )
    t_pc, t_whole, t_sel = medians["pc"], medians["whole"], medians["selective"]
    whole_rate, sel_rate, pc_rate = n / t_whole, n / t_sel, n / t_pc
    print(
        f"\n{label}: {n} samples ({shared} series also in the earlier scrape, "
        f"{changed} values changed), "
        f"{len(body) / 1024:.0f} KiB, {'OpenMetrics' if openmetrics else 'text 0.0.4'}; "
        f"selective keeps {len(selective.keys)} samples of {len(wanted)} names"
    )
    print(f"  {'':34s}{'median ms':>12s}{'samples/s':>14s}{'vs pc':>9s}")
    print(f"  {'prometheus_client (whole)':34s}{t_pc * 1e3:12.2f}{pc_rate:14,.0f}{1:9.1f}x")
    for name, title in (
        ("whole", "kpimon whole"),
        ("selective", "kpimon selective"),
        ("whole first", "kpimon whole, first scrape"),
        ("selective first", "kpimon selective, first scrape"),
    ):
        rate = n / medians[name]
        print(f"  {title:34s}{medians[name] * 1e3:12.3f}{rate:14,.0f}{rate / pc_rate:9.1f}x")
    checks = [
        (f"{label}: whole >= 1M samples/s ({whole_rate / 1e6:.2f}M)", whole_rate >= WHOLE_BUDGET),
        (
            f"{label}: whole >= 25x prometheus_client ({whole_rate / pc_rate:.1f}x)",
            whole_rate / pc_rate >= WHOLE_RATIO_BUDGET,
        ),
        (
            f"{label}: selective >= 2M input samples/s ({sel_rate / 1e6:.2f}M)",
            sel_rate >= SELECTIVE_BUDGET,
        ),
    ]
    for text_check, ok in checks:
        print(f"  {verdict(ok)}  {text_check}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    small_rounds, big_rounds = (5, 2) if args.quick else (15, 3)
    print(
        f"python {sys.version.split()[0]}, one process, wall-clock medians (perf_counter) over "
        "interleaved rounds; each round: prometheus_client once, each kpimon mode "
        "10x (node_exporter) or 3x (synthetic)"
    )
    checks: list[tuple[str, bool]] = []
    with node_exporter() as base:
        _, earlier = fetch_with_accept(f"{base}/metrics", ACCEPT_HEADER)
        time.sleep(SCRAPE_INTERVAL_S)
        content_type, body = fetch_with_accept(f"{base}/metrics", ACCEPT_HEADER)
    checks += run(
        "(a) node_exporter live",
        earlier,
        body,
        HOST_RULE_NAMES,
        content_is_openmetrics(content_type),
        rounds=small_rounds,
        kpimon_runs=10,
    )
    checks += run(
        "(b) synthetic 100k series",
        synthetic_payload(values_seed=1),
        synthetic_payload(values_seed=2),
        frozenset({b"http_requests_total", b"queue_depth"}),
        False,
        rounds=big_rounds,
        kpimon_runs=3,
    )
    missed = [c for c, ok in checks if not ok]
    print(
        f"\n{len(checks) - len(missed)}/{len(checks)} budgets met"
        + (": missed " + "; ".join(missed) if missed else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
