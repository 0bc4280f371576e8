"""The simulated world a training session runs against, seeded from a scenario.

It owns the simulated AWS account (and, as they are wired in, the vault and the
consumers), can be saved without a single secret value and brought back, and can be
exported for `--world-out` with fingerprints where the values would be.
"""

from __future__ import annotations

from typing import Any

from steps.clock import SimClock, iso
from steps.sandbox import scenario as scenarios
from steps.sandbox.aws import AwsWorld, SeedKey
from steps.sandbox.scenario import Scenario


class World:
    def __init__(self, scenario: Scenario, clock: SimClock, aws: AwsWorld) -> None:
        self.scenario = scenario
        self.clock = clock
        self.aws = aws

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def create(cls, scenario: Scenario, clock: SimClock) -> World:
        aws = AwsWorld(clock, propagation_delay=scenario.aws.propagation_delay, status_delay=scenario.aws.status_delay)
        world = cls(scenario, clock, aws)
        try:
            world._seed()
        except BaseException:
            aws.close()
            raise
        return world

    def _seed(self) -> None:
        seed = self.scenario.aws
        for name, objects in seed.buckets.items():
            self.aws.seed_bucket(name, objects)
        self.target_pairs = {}
        for name, user in seed.users.items():
            keys = [SeedKey(k.status, k.age, k.last_used, k.service) for k in user.keys]
            self.target_pairs[name] = self.aws.seed_user(name, keys, user.check_call)
        if self.scenario.operator.as_target:
            active = [p for p in self.target_pairs[self.scenario.target_user] if self.aws.backend_key(p.key_id).status == "Active"]
            self.aws.operator = active[0]
        else:
            self.aws.create_operator()

    @classmethod
    def restore(cls, snapshot: dict[str, Any], clock: SimClock) -> World:
        scenario = scenarios.load(snapshot["scenario"])
        aws, _secrets = AwsWorld.restore(snapshot["aws"], clock)
        return cls(scenario, clock, aws)

    # -- the world as data ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"scenario": self.scenario.id, "aws": self.aws.snapshot()}

    def export(self) -> dict[str, Any]:
        """The world for --world-out: who holds which key, as fingerprints only."""
        users = self.aws.users()
        holders: dict[str, dict[str, Any]] = {}
        for name, user in users.items():
            for key in user["keys"]:
                holders[f"aws:{name}:{key['id']}"] = {"key_id": key["id"], "fingerprint": key["fingerprint"], "status": key["status"]}
        return {
            "scenario": self.scenario.id,
            "account": self.aws.account_id,
            "simulated_now": iso(self.clock.now()),
            "iam_users": users,
            "holders": holders,
            "calls": {"aws": dict(sorted(self.aws.calls.items()))},
        }

    def close(self) -> None:
        self.aws.close()
