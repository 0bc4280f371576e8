"""Frozen: everything that differs between two runs of the app, held still.

Snapshot tests (and demos that must look the same every time) give `HandrailApp` a
`Frozen`: simulated time stands at `now` and moves only when fast-forwarded, real time
as the journal records it stands at `now` too, the session id, the operator's OS user
and the simulated account id are fixed, and moto's random ids (key ids, secrets) are
seeded. Nothing here is used unless a `Frozen` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steps.clock import SimClock


class FrozenClock(SimClock):
    """Simulated time that stands still: waits end only when time is advanced.

    `release()` lets every wait pass in simulated time from then on (the app calls it
    on the way out, so no worker is left sleeping on a clock nobody will advance).
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(offset=0.0, auto_advance=False)
        self.start = start

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset

    def release(self) -> None:
        self.auto_advance = True
        self.wake()


@dataclass(frozen=True)
class Frozen:
    now: datetime = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    session_id: str = "20261127-140000-demo"
    os_user: str = "operator"
    seed: int = 2026
    account_id: str = "198698730797"
    campaign_id: str = "c-20261127-140000-demo"
    # A campaign's sessions share one world and clock: one at a time, they move it the same way every run.
    concurrency: int = 1

    def clock(self) -> FrozenClock:
        return FrozenClock(self.now)

    def journal(self, path: Path):
        """A journal whose real-time stamps (events, session created and updated) all
        read `now`: the debrief's timeline and the lists of sessions stay the same."""
        from steps.journal import Journal

        stamp = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return Journal(path, now=lambda: stamp)

    def world(self, scenario: Any):
        """The scenario's simulated world, its account id fixed and its key ids seeded."""
        from steps.sandbox.world import World

        self.seed_moto("world")
        return World.create(scenario, self.clock(), account_id=self.account_id)

    def fleet_world(self, scenario: Any):
        """A campaign's shared world: seeded like `world`, but its waits pass at once in
        simulated time (a drive has nobody to press f), as a headless campaign's do."""
        world = self.world(scenario)
        world.clock.release()
        return world

    def seed_moto(self, salt: str) -> None:
        """Seed moto's random source: called before each step runs, so a step's key ids
        depend on that step alone, not on how many calls the steps before it made."""
        try:
            from moto.moto_api._internal import mock_random
        except ImportError:  # no sandbox installed: nothing to seed
            return
        mock_random.seed(f"{self.seed}:moto:{salt}")
