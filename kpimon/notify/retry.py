"""When to try a failed notification again: exponential backoff with full jitter, capped.

Pure functions of the attempt number, the times and an injected random source (``rand()`` in
[0, 1)), so the outbox worker and the tests drive them alike. A permanent failure is never
retried; a receiver's ``Retry-After`` is honoured; nothing is retried past
``max_retry_duration`` after the first attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kpimon.notify.model import SendResult

DEFAULT_INITIAL_S: Final = 1.0
DEFAULT_CAP_S: Final = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Backoff parameters.

    Attributes:
        initial_s: the ceiling of the first retry's delay; doubles with every attempt.
        cap_s: the ceiling never exceeds this.
        max_duration_s: give up when the next try would start later than this after the first
            attempt (a hook's ``max_retry_duration``).
    """

    initial_s: float = DEFAULT_INITIAL_S
    cap_s: float = DEFAULT_CAP_S
    max_duration_s: float = 24 * 3600.0


def backoff_s(attempt: int, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    """The delay before retry number ``attempt`` (0 for the first retry): "full jitter",
    uniform in [0, min(cap, initial × 2^attempt)), which spreads retries of many alerts that
    failed together instead of sending them in lockstep."""
    ceiling = min(policy.cap_s, policy.initial_s * 2.0 ** min(max(attempt, 0), 62))
    return rand() * ceiling


def next_retry_delay(
    result: SendResult,
    *,
    attempt: int,
    first_attempt_at: float,
    now: float,
    policy: RetryPolicy,
    rand: Callable[[], float],
) -> float | None:
    """How long to wait before trying again after ``result``, or None not to try again.

    Args:
        result: the attempt that just finished.
        attempt: how many retries were made already (0 after the first attempt).
        first_attempt_at: when the first attempt started (monotonic seconds, like ``now``).
        now: the current time.
        policy: the hook's policy.
        rand: returns a float in [0, 1).

    Returns:
        None when the result is ok or permanent, or the retry budget is spent (including when
        the receiver's ``Retry-After`` reaches past it); else the delay in seconds.
    """
    if result.outcome != "retryable":
        return None
    remaining = first_attempt_at + policy.max_duration_s - now
    if remaining <= 0:
        return None
    delay = backoff_s(attempt, policy, rand)
    if result.retry_after_s is not None:
        if result.retry_after_s > remaining:
            return None
        delay = max(delay, result.retry_after_s)
    return min(delay, remaining)
