"""``kpimon test FILE...``: read test files and their rule files, run them, print promtool-style.

The only module of :mod:`kpimon.ruletest` that touches the disk or prints. Per file it prints
``Unit Testing:  FILE`` then ``  SUCCESS`` (on ``out``) or ``  FAILED:`` and every failure (on
``err``), as promtool does, then one summary line. A test file or rule file that cannot be read
or is invalid is reported as ``FILE:LINE:COL: path: message`` and its tests are not run.

Exit status: 0 every test passed, 1 a test failed, 2 a file could not be read or is invalid (or
no file was given).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import TextIO

from kpimon.config.fields import Problems
from kpimon.config.loader import load_rule_paths, read_file, resolve_rule_files
from kpimon.config.models import Kpi
from kpimon.errors import ConfigError
from kpimon.logs import silenced
from kpimon.ruletest.loader import parse_test_file
from kpimon.ruletest.model import TestFile
from kpimon.ruletest.runner import FileResult, run_test_file
from kpimon.textfmt import count

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def run_tests(paths: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the rule unit-test files ``paths``; returns the exit status."""
    if not paths:
        print("usage: kpimon test FILE...", file=err)
        return EXIT_INVALID
    status = EXIT_OK
    passed = failed = invalid = 0
    for path in paths:
        print(f"Unit Testing:  {path}", file=out)
        try:
            test_file, kpis = load(path, err)
        except ConfigError as exc:
            print("  INVALID:", file=err)
            for problem in exc.problems:
                print(problem, file=err)
            print(file=err)
            invalid += 1
            status = EXIT_INVALID
            continue
        with silenced("kpimon.engine"):  # transitions and errors are the tests' business
            result = run_test_file(test_file, kpis)
        _report(result, out, err)
        failing = len({f.group for f in result.failures})
        passed += result.groups - failing
        failed += failing
        if failing:
            status = max(status, EXIT_FAILED)
    groups = passed + failed
    summary = (
        f"kpimon test: {count(groups, 'test group')} in {count(len(paths), 'file')}: "
        f"{passed} passed, {failed} failed"
    )
    if invalid:
        summary += f", {count(invalid, 'invalid file')}"
    print(summary, file=out if status == EXIT_OK else err)
    return status


def load(path: str, err: TextIO) -> tuple[TestFile, tuple[Kpi, ...]]:
    """The parsed test file and the KPIs of its rule files.

    Raises:
        ConfigError: every problem of the test file, or of its rule files.
    """
    text = read_file(path)
    test_file, problems = parse_test_file(text, path)
    if test_file is None:
        raise ConfigError(problems)
    found = Problems()
    paths = resolve_rule_files(path, test_file.rule_files, found)
    for entry in test_file.rule_files:
        joined = os.path.join(os.path.dirname(path), entry.pattern)
        if not glob.glob(joined) and not any(p.position == entry.position for p in found.items):
            # promtool says the same and carries on: a glob may match nothing.
            print(f"  WARNING: no file match pattern {joined}", file=err)
    kpis = load_rule_paths(paths, found)
    if found.items:
        raise ConfigError(found.items)
    return test_file, kpis


def _report(result: FileResult, out: TextIO, err: TextIO) -> None:
    for note in result.notes:
        print(f"  NOTE: {note}", file=err)
    if result.passed:
        print("  SUCCESS", file=out)
        print(file=out)
        return
    print("  FAILED:", file=err)
    group = None
    for failure in result.failures:
        if failure.group != group:
            group = failure.group
            print(f"  in {group}:", file=err)
        print(failure.text, file=err)
        print(file=err)
