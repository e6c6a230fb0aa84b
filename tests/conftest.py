"""Shared fixtures: a fake clock. Everything else lives next to the tests that use it."""

from __future__ import annotations

import pytest

from kpimon.testing import FakeClock


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()
