"""Modes are wiring: which endpoints the real clients talk to, which clock runs.

- live: boto3's own credential chain (profile, environment, SSO), real endpoints
  (or whatever AWS_ENDPOINT_URL says, as boto3 honours it);
- dry-run: live reads; the engine does not run mutating steps and shows them instead;
- training: every client points at the embedded sandbox; the clock is simulated.

Actions never ask which mode they are in; they ask the wiring for a client.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from steps.clock import Clock, SimClock
from steps.consumers.base import Pair
from steps.secrets import Secret


class Wiring:
    mode = "live"
    dry_run = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def aws_client(self, service: str, pair: Pair | None = None) -> Any:
        raise NotImplementedError

    def identity(self) -> tuple[str, str]:
        """(account id, caller ARN) of the operator's credentials."""
        from steps.actions.iam import aws_error

        try:
            ident = self.aws_client("sts").get_caller_identity()
        except Exception as exc:
            raise WiringError(f"cannot tell who you are (sts get-caller-identity): {aws_error(exc)}") from None
        return ident["Account"], ident["Arn"]

    def switch_operator(self, pair: Pair) -> None:
        """Self-rotation: sign the operator's calls with `pair` from now on."""
        raise NotImplementedError

    def checkpoint(self) -> str | None:
        return None

    def recover_secret(self, name: str, facts: dict[str, str]) -> Secret | None:
        return None

    def describe(self) -> str:
        return self.mode

    def close(self) -> None:
        pass


class WiringError(Exception):
    pass


def _client_config():
    from botocore.config import Config

    return Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)


class LiveWiring(Wiring):
    def __init__(self, profile: str | None = None, region: str | None = None, dry_run: bool = False) -> None:
        super().__init__(Clock())
        self.profile = profile
        self.region = region
        self.dry_run = dry_run
        self.mode = "dry-run" if dry_run else "live"
        self._session = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._operator: Pair | None = None

    def switch_operator(self, pair: Pair) -> None:
        self._operator = pair

    def aws_client(self, service: str, pair: Pair | None = None) -> Any:
        pair = pair or self._operator
        key = (service, f"{pair.key_id}:{pair.fingerprint()}" if pair else "operator")
        with self._lock:
            if key not in self._clients:
                import boto3

                if self._session is None:
                    self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
                region = self._session.region_name or "us-east-1"
                if pair is None:
                    client = self._session.client(service, region_name=region, config=_client_config())
                else:
                    client = self._session.client(
                        service,
                        region_name=region,
                        aws_access_key_id=pair.key_id,
                        aws_secret_access_key=pair.secret.reveal(),
                        config=_client_config(),
                    )
                self._clients[key] = client
            return self._clients[key]

    def describe(self) -> str:
        where = f"profile {self.profile}" if self.profile else "default credentials"
        return f"{self.mode} ({where})"


class TrainingWiring(Wiring):
    mode = "training"

    def __init__(self, world) -> None:
        super().__init__(world.clock)
        self.world = world

    def aws_client(self, service: str, pair: Pair | None = None) -> Any:
        return self.world.aws.client(service, pair)

    def switch_operator(self, pair: Pair) -> None:
        self.world.aws.operator = pair

    def checkpoint(self) -> str | None:
        return json.dumps(self.world.snapshot())

    def describe(self) -> str:
        return f"training (scenario {self.world.scenario.id}, simulated account {self.world.aws.account_id})"

    def close(self) -> None:
        self.world.close()


def training_clock(headless: bool, offset: float = 0.0) -> SimClock:
    # Headless training has nobody to watch a wait: simulated waits pass at once.
    return SimClock(offset=offset, auto_advance=headless)
