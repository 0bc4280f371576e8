"""One polling helper for every wait: the check, the deadline, the interval, progress.

On a simulated clock with auto_advance (headless training), each sleep passes at once,
so the figures below are exact simulated seconds.
"""

from __future__ import annotations

import math

from steps.clock import SimClock, poll


def recorder() -> tuple[list[tuple[str, float, float]], object]:
    events: list[tuple[str, float, float]] = []
    return events, lambda what, done, total: events.append((what, round(done), total))


def test_a_poll_checks_at_once_then_every_interval_reporting_progress_until_the_check_passes():
    clock = SimClock(auto_advance=True)
    answers = iter([False, False, True])
    events, progress = recorder()

    polled = clock.poll(lambda: next(answers), deadline=60, interval=2, progress=progress, what="the new key")

    assert polled.ok and polled.value is True and polled.attempts == 3
    assert round(polled.elapsed) == 4
    assert events == [("the new key", 0, 60), ("the new key", 2, 60)]


def test_a_poll_that_never_passes_checks_last_at_the_deadline_and_reports_the_last_value():
    clock = SimClock(auto_advance=True)
    events, progress = recorder()

    polled = clock.poll(lambda: "pending", until=lambda v: v == "done", deadline=5, interval=2, progress=progress, what="run")

    # Checks at 0, 2, 4 and 5: the last sleep is cut so the last check falls on the deadline.
    assert not polled.ok and polled.value == "pending" and polled.attempts == 4
    assert round(polled.elapsed) == 5
    assert [done for _, done, _ in events] == [0, 2, 4]


def test_a_zero_deadline_checks_once_and_waits_not_at_all():
    clock = SimClock(auto_advance=True)
    before = clock.monotonic()
    calls = []

    polled = clock.poll(lambda: calls.append(1), deadline=0, interval=5)

    assert not polled.ok and calls == [1]
    assert clock.monotonic() - before < 1


def test_attempts_bound_a_poll_without_a_deadline_and_intervals_can_back_off():
    clock = SimClock(auto_advance=True)
    slept: list[float] = []
    events, progress = recorder()

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    polled = poll(
        lambda: False,
        deadline=math.inf,
        attempts=5,
        interval=0.25,
        max_interval=1.0,
        sleep=sleep,
        monotonic=clock.monotonic,
        progress=progress,
    )

    assert polled.attempts == 5 and not polled.ok
    assert slept == [0.25, 0.5, 1.0, 1.0]
    assert events == [], "a poll with no deadline has no progress to show against it"
