"""The GitHub Actions consumer: an AWS key pair held as Actions secrets.

One adapter points at one place that holds the pair as two secrets:

  RepoTarget("acme/infra")                      name "github:acme/infra"
  EnvironmentTarget("acme/infra", "prod")       name "github:acme/infra@prod"
  OrgTarget("acme", visibility="private")       name "github-org:acme"

(`parse_target` turns "acme/infra", "acme/infra@prod" or "org:acme", and the names
above, into targets.) It talks to GitHub through PyGithub, which seals every value with
the target's public key (libsodium sealed box) before it leaves the process.

GitHub never gives a secret's value back, so the adapter proves a write by the
secrets' `updated_at`, and proves the consumer works by dispatching a workflow that
uses the secrets and requiring it to conclude "success".

HTTP calls per operation (PyGithub runs lazily, so no call fetches an object it does
not need):
  write_pair   6  = 2 × (GET public key + PUT secret) + 2 × GET secret metadata
               (+1 GET per selected repository for an org target with visibility "selected")
  verify       2  GET secret metadata; with a workflow: +1 POST dispatch, then 1 GET per
               poll of the run (polls back off from 0.25 s to `poll_interval`). If the
               server does not return the run on dispatch (older GHES), each poll is a
               GET of the workflow's run list until the run appears, then GETs of the run.
  read_key_id  0
"""

from __future__ import annotations

import functools
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException, UnknownObjectException
from github.GithubObject import NotSet
from github.Secret import Secret as GitHubSecret
from github.WorkflowRun import WorkflowRun
from urllib3.util import Retry

from steps.clock import Polled, Progress, poll
from steps.consumers.base import AdapterError, Pair, ProbeResult, Result
from steps.secrets import MASK, Secret, redact

GITHUB_API = "https://api.github.com"
DEFAULT_KEY_ID_NAME = "AWS_ACCESS_KEY_ID"
DEFAULT_SECRET_NAME = "AWS_SECRET_ACCESS_KEY"
# gh's order of precedence: GH_TOKEN is set on purpose, GITHUB_TOKEN is often the
# ambient token of an Actions job.
TOKEN_ENV_VARS = ("GH_TOKEN", "GITHUB_TOKEN")
ORG_VISIBILITIES = ("all", "private", "selected")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

T = TypeVar("T")


# -- targets --------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoTarget:
    """Repository secrets of "owner/name"."""

    repo: str

    def __post_init__(self) -> None:
        if not _REPO.match(self.repo):
            raise ValueError(f"a repository is 'owner/name', not {self.repo!r}")

    @property
    def name(self) -> str:
        return f"github:{self.repo}"


@dataclass(frozen=True)
class EnvironmentTarget:
    """Secrets of one deployment environment of "owner/name" (they override the
    repository's secrets of the same name in jobs that use the environment)."""

    repo: str
    environment: str

    def __post_init__(self) -> None:
        if not _REPO.match(self.repo):
            raise ValueError(f"a repository is 'owner/name', not {self.repo!r}")
        if not self.environment or "/" in self.environment:
            raise ValueError(f"bad environment name {self.environment!r}")

    @property
    def name(self) -> str:
        return f"github:{self.repo}@{self.environment}"


@dataclass(frozen=True)
class OrgTarget:
    """Organisation secrets. Writing sets the visibility too, so it must be what the
    secrets should have: "all", "private" (private and internal repositories, gh's
    default) or "selected" (with the repositories, "name" or "org/name")."""

    org: str
    visibility: str = "private"
    selected_repositories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.org):
            raise ValueError(f"bad organisation name {self.org!r}")
        if self.visibility not in ORG_VISIBILITIES:
            raise ValueError(f"visibility must be one of {', '.join(ORG_VISIBILITIES)}, not {self.visibility!r}")
        object.__setattr__(self, "selected_repositories", tuple(self.selected_repositories))
        if self.visibility == "selected" and not self.selected_repositories:
            raise ValueError("visibility 'selected' needs selected_repositories")
        if self.visibility != "selected" and self.selected_repositories:
            raise ValueError("selected_repositories only go with visibility 'selected'")

    @property
    def name(self) -> str:
        return f"github-org:{self.org}"

    def repo_full_names(self) -> list[str]:
        return [r if "/" in r else f"{self.org}/{r}" for r in self.selected_repositories]


Target = RepoTarget | EnvironmentTarget | OrgTarget


def parse_target(text: str, visibility: str = "private") -> Target:
    """ "owner/name" → repo, "owner/name@env" → environment, "org:acme" → organisation.
    The adapter names ("github:owner/name", "github:owner/name@env", "github-org:acme")
    parse back to the same targets."""
    text = text.strip()
    if text.startswith("github-org:"):
        return OrgTarget(text.removeprefix("github-org:"), visibility)
    if text.startswith("org:"):
        return OrgTarget(text.removeprefix("org:"), visibility)
    text = text.removeprefix("github:")
    repo, at, env = text.partition("@")
    return EnvironmentTarget(repo, env) if at else RepoTarget(repo)


def _resolve_token(token: str | Secret | None) -> tuple[Secret | None, str | None]:
    """(token, where it came from): explicit, else GH_TOKEN, else GITHUB_TOKEN."""
    if isinstance(token, Secret):
        return token, "explicit token"
    if token:
        return Secret(token, "github token"), "explicit token"
    for var in TOKEN_ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:  # empty counts as unset, as Actions materialises missing secrets as ""
            return Secret(value, "github token"), var
    return None, None


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the adapter ----------------------------------------------------------------------


class GitHubSecretsConsumer:
    """GitHub Actions secrets holding an AWS key pair, written with PyGithub.

    `target`: a RepoTarget, EnvironmentTarget or OrgTarget, or a string for
    `parse_target`. `token`: explicit, else $GH_TOKEN, else $GITHUB_TOKEN (as gh).
    `verify_workflow`: a workflow file ("aws-smoke.yml") in the target's repository, or
    "owner/name:aws-smoke.yml" (needed for an org target) that `verify` dispatches on
    `verify_ref`; it must use the secrets (and the environment, for an environment
    target). `timeout`: seconds per HTTP request. `run_timeout`: seconds to wait for the
    run to complete. `clock_skew`: seconds by which this machine's clock may run ahead
    of GitHub's without `verify` calling a fresh write stale. `write_interval`: seconds
    between writes (GitHub asks for 1 s against its secondary rate limits; None means
    1 s for a remote host, none for a loopback sandbox). `sleep`/`monotonic`: the clock
    the run polling waits on (the engine's cancellable clock can be passed in). `now`:
    the wall clock the write time is taken from; it must be the clock GitHub stamps
    `updated_at` with (real time live; the sandbox's `now` in training).

    `written_at` / `written_key_id` record this adapter's last write; set them, or give
    `verify` the write's time, to restore that knowledge in a new process.
    """

    kind = "github"

    def __init__(
        self,
        target: Target | str,
        token: str | Secret | None = None,
        base_url: str = GITHUB_API,
        key_id_name: str = DEFAULT_KEY_ID_NAME,
        secret_name: str = DEFAULT_SECRET_NAME,
        verify_workflow: str | None = None,
        verify_ref: str = "main",
        timeout: int = 15,
        *,
        run_timeout: float = 600.0,
        poll_interval: float = 5.0,
        clock_skew: float = 5.0,
        write_interval: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
        written_at: datetime | None = None,
        written_key_id: str | None = None,
    ) -> None:
        self.target: Target = parse_target(target) if isinstance(target, str) else target
        self.name = self.target.name
        self.base_url = base_url.rstrip("/")
        self.key_id_name = key_id_name
        self.secret_name = secret_name
        self.verify_ref = verify_ref
        self.timeout = int(timeout)
        self.run_timeout = run_timeout
        self.poll_interval = poll_interval
        self.clock_skew = clock_skew
        self.written_at = _utc(written_at) if written_at else None
        self.written_key_id = written_key_id
        self._written_fingerprint: str | None = None
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now or (lambda: datetime.now(UTC))
        self._token, self.token_source = _resolve_token(token)
        self.host = urllib.parse.urlparse(self.base_url).hostname or ""
        if write_interval is None:
            write_interval = None if self.host in _LOOPBACK else 1.0
        self.write_interval = write_interval
        self.verify_repo, self.verify_workflow = self._workflow_location(verify_workflow)
        self._gh: Github | None = None

    def _workflow_location(self, spec: str | None) -> tuple[str | None, str | None]:
        if not spec:
            return None, None
        repo, colon, file = spec.rpartition(":")
        if colon:
            RepoTarget(repo)  # validates
            return repo, file
        if isinstance(self.target, OrgTarget):
            raise ValueError("an org target's verify_workflow must name its repository: 'owner/name:file.yml'")
        return self.target.repo, spec

    def __repr__(self) -> str:
        return f"GitHubSecretsConsumer({self.name}, base_url={self.base_url}, token={self.token_source or 'none'})"

    # -- the client --------------------------------------------------------------------

    def _client(self) -> Github:
        if self._gh is None:
            if self._token is None:
                raise AdapterError(f"{self.name}: no GitHub token: set GH_TOKEN or GITHUB_TOKEN, or pass token=")
            self._gh = Github(
                base_url=self.base_url,
                auth=Auth.Token(self._token.reveal()),
                timeout=self.timeout,
                # Retry only connections that never got a request through; a 5xx or a
                # rate limit is reported at once instead of sleeping through backoff.
                retry=Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2, respect_retry_after_header=False),
                seconds_between_requests=None,
                seconds_between_writes=self.write_interval,
                # Lazy: get_repo/get_organization/get_environment make no request; only
                # the calls that do something hit the API.
                lazy=True,
            )
        return self._gh

    def close(self) -> None:
        if self._gh is not None:
            self._gh.close()
            self._gh = None

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one PyGithub operation; any failure becomes a one-line AdapterError."""
        try:
            return fn()
        except AdapterError:
            raise
        except GithubException as exc:
            raise AdapterError(self._describe(action, exc)) from None
        except requests.exceptions.Timeout:
            raise AdapterError(redact(f"{self.name}: {action} failed: {self.base_url} did not answer within {self.timeout}s")) from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise AdapterError(redact(f"{self.name}: {action} failed: cannot reach {self.base_url} ({type(exc).__name__})")) from None

    def _describe(self, action: str, exc: GithubException) -> str:
        data: Any = exc.data
        message = data.get("message") if isinstance(data, dict) else (data if isinstance(data, str) else None)
        message = " ".join(str(message or exc.message or "no message").split())[:300]
        hint = {
            401: " (the token was rejected)",
            403: " (the token lacks permission or hit a rate limit)",
            404: " (no such repository, environment or organisation, or the token cannot see it)",
        }.get(exc.status, "")
        return redact(f"{self.name}: {action} failed: HTTP {exc.status} {message}{hint}")

    # -- where the secrets live --------------------------------------------------------

    def _scope_label(self) -> str:
        t = self.target
        if isinstance(t, RepoTarget):
            return f"repository {t.repo}"
        if isinstance(t, EnvironmentTarget):
            return f"environment {t.environment} of {t.repo}"
        return f"organisation {t.org}"

    def _writer(self) -> Callable[[str, str], GitHubSecret]:
        """A function that writes one secret to the target (PyGithub seals it)."""
        gh, t = self._client(), self.target
        if isinstance(t, RepoTarget):
            repo = gh.get_repo(t.repo)
            return lambda name, value: repo.create_secret(name, value, secret_type="actions")
        if isinstance(t, EnvironmentTarget):
            env = gh.get_repo(t.repo).get_environment(t.environment)
            return lambda name, value: env.create_secret(name, value)
        org = gh.get_organization(t.org)
        selected: Any = NotSet
        if t.visibility == "selected":
            # PyGithub sends repository ids: one GET per repository, before any write.
            repos = [gh.get_repo(full) for full in t.repo_full_names()]
            for full, repo in zip(t.repo_full_names(), repos, strict=True):
                # Reading the lazy repository's id GETs it.
                self._call(f"looking up selected repository {full}", functools.partial(getattr, repo, "id"))
            selected = repos
        return lambda name, value: org.create_secret(name, value, visibility=t.visibility, selected_repositories=selected)

    def _metadata(self, name: str) -> tuple[datetime, Any] | None:
        """(updated_at, the secret object) of one secret, None if it does not exist:
        one GET."""
        gh, t = self._client(), self.target
        if isinstance(t, RepoTarget):
            secret: Any = gh.get_repo(t.repo).get_secret(name)
        elif isinstance(t, EnvironmentTarget):
            secret = gh.get_repo(t.repo).get_environment(t.environment).get_secret(name)
        else:
            secret = gh.get_organization(t.org).get_secret(name)
        try:
            return _utc(secret.updated_at), secret  # the lazy object's first read GETs it
        except UnknownObjectException:
            return None

    def _floor(self, written_at: datetime) -> datetime:
        """The earliest updated_at that can be the write at `written_at`: GitHub stamps to
        the second, and its clock may be behind ours by up to `clock_skew`."""
        return written_at.replace(microsecond=0) - timedelta(seconds=self.clock_skew)

    def _check_fresh(self, evidence: list[str], written_at: datetime) -> str | None:
        """Read both secrets' updated_at into evidence; None if both are fresh (at or
        after the write at `written_at`), else what is wrong ("X not rewritten since T",
        "X missing")."""
        stale: list[str] = []
        missing: list[str] = []
        written = _iso(written_at)
        for name in (self.key_id_name, self.secret_name):
            meta = self._call(f"reading {name}", functools.partial(self._metadata, name))
            if meta is None:
                missing.append(name)
                evidence.append(f"{name} at {self.name}: missing")
                continue
            updated, secret = meta
            extra = f", visibility {secret.visibility}" if isinstance(self.target, OrgTarget) else ""
            fresh = updated >= self._floor(written_at)
            evidence.append(
                f"{name} at {self.name}: updated_at {_iso(updated)}{extra} ({'at or after' if fresh else 'BEFORE'} the write at {written})"
            )
            if not fresh:
                stale.append(name)
        problems = [f"{' and '.join(missing)} missing"] if missing else []
        if stale:
            problems.append(f"{' and '.join(stale)} not rewritten since {written}")
        return "; ".join(problems) or None

    # -- the Consumer protocol ---------------------------------------------------------

    def _gh_prefix(self) -> str:
        return "" if self.base_url == GITHUB_API or self.host in _LOOPBACK else f"GH_HOST={self.host.removeprefix('api.')} "

    def _gh_flags(self, with_visibility: bool = True) -> str:
        t = self.target
        if isinstance(t, RepoTarget):
            return f"--repo {t.repo}"
        if isinstance(t, EnvironmentTarget):
            return f"--env {t.environment} --repo {t.repo}"
        flags = f"--org {t.org}"
        if with_visibility:
            flags += f" --visibility {t.visibility}"
            if t.selected_repositories:
                flags += f" --repos {','.join(t.selected_repositories)}"
        return flags

    def command(self, pair_key_id: str) -> str:
        """The gh commands that write the pair (the secret shown masked)."""
        prefix, flags = self._gh_prefix(), self._gh_flags()
        return (
            f"{prefix}gh secret set {self.key_id_name} --body {pair_key_id} {flags} && "
            f"{prefix}gh secret set {self.secret_name} --body {MASK} {flags}"
        )

    def verification(self) -> str:
        prefix = self._gh_prefix()
        text = f"{prefix}gh secret list {self._gh_flags(with_visibility=False)}"
        if self.verify_workflow:
            text += f" && {prefix}gh workflow run {self.verify_workflow} --repo {self.verify_repo} --ref {self.verify_ref} && {prefix}gh run watch"
        return text

    def probe(self) -> ProbeResult:
        """GET the target's public key (the token works, the target exists and its
        secrets can be managed), both secrets' metadata, and the verify workflow."""
        result = ProbeResult(self.name)
        scope = self._scope_label()
        try:
            key = self._call(f"reading the {scope} public key", self._public_key)
        except AdapterError as exc:
            result.failed("public key", str(exc))
            return result
        result.passed("public key", f"token ({self.token_source}) reads the {scope} public key (key id {key.key_id})")
        found, missing = [], []
        for name in (self.key_id_name, self.secret_name):
            try:
                meta = self._call(f"reading {name}", functools.partial(self._metadata, name))
            except AdapterError as exc:
                result.failed("secrets", str(exc))
                return result
            if meta is None:
                missing.append(name)
            else:
                found.append(f"{name} (updated {_iso(meta[0])})")
        if missing:
            result.failed("secrets", f"{' and '.join(missing)} not found in {scope}")
            return result
        result.passed("secrets", f"{' and '.join(found)} exist in {scope} (metadata only)")
        if self.verify_workflow is not None and self.verify_repo is not None:
            label = f"{self.verify_repo}:{self.verify_workflow}"
            repo, file = self.verify_repo, self.verify_workflow

            def workflow_state() -> str:
                return str(self._client().get_repo(repo).get_workflow(file).state)

            try:
                state = self._call(f"reading workflow {label}", workflow_state)
            except AdapterError as exc:
                result.failed("verify workflow", str(exc))
                return result
            if state == "active":
                result.passed("verify workflow", f"workflow {label} exists (active)")
            else:
                result.failed("verify workflow", f"workflow {label} is {state}: a dispatch would not run it")
        return result

    def _public_key(self) -> Any:
        gh, t = self._client(), self.target
        if isinstance(t, RepoTarget):
            return gh.get_repo(t.repo).get_public_key()
        if isinstance(t, EnvironmentTarget):
            return gh.get_repo(t.repo).get_environment(t.environment).get_public_key()
        return gh.get_organization(t.org).get_public_key()

    def read_key_id(self) -> str | None:
        """Always None: GitHub Actions secrets are write-only; the API gives back a
        secret's name and timestamps, never its value. (No HTTP call.)"""
        return None

    def write_pair(self, pair: Pair) -> Result:
        """Write the key id and the secret (each sealed with the target's public key by
        PyGithub), then read back both secrets' updated_at as evidence."""
        writer = self._writer()
        # Remembered before the first PUT: if the write stops halfway, verify still
        # knows what "fresh" means and reports the half that is stale.
        written_at = self.written_at = _utc(self._now())
        self.written_key_id, self._written_fingerprint = pair.key_id, pair.fingerprint()
        evidence: list[str] = []
        for name, value in ((self.key_id_name, pair.key_id), (self.secret_name, pair.secret.reveal())):
            self._call(f"writing {name}", functools.partial(writer, name, value))
            evidence.append(f"PUT {name} to {self.name}, sealed with the {self._scope_label()} public key")
        problem = self._check_fresh(evidence, written_at)
        what = f"{self.key_id_name}={pair.key_id} and {self.secret_name} ({pair.fingerprint()})"
        evidence = [redact(line) for line in evidence]
        if problem:
            return Result(False, redact(f"{self.name}: wrote {what}, but GitHub shows {problem}"), evidence, written_at=written_at)
        return Result(True, redact(f"{self.name}: wrote {what}"), evidence, written_at=written_at)

    def verify(self, pair: Pair, *, written_at: datetime | None = None, progress: Progress | None = None) -> Result:
        """Both secrets were updated at or after `pair` was written; then, with a
        verify_workflow, a dispatched run that uses them concludes "success".

        The write is this adapter's own if it made one; else `written_at`, when the
        session wrote `pair` here (a new process: what propagate recorded)."""
        since, key_id = self.written_at, self.written_key_id
        if since is None and written_at is not None:
            since, key_id = _utc(written_at), pair.key_id
        if since is None:
            return Result(
                False,
                f"{self.name}: no write of {pair.key_id} by this adapter is recorded; "
                "GitHub secrets are write-only, so there is nothing else to compare",
            )
        if key_id is not None and key_id != pair.key_id:
            return Result(False, f"{self.name}: the last write here was {key_id}, not {pair.key_id}")
        if self._written_fingerprint is not None and self._written_fingerprint != pair.fingerprint():
            return Result(
                False,
                f"{self.name}: the last write here was {pair.key_id} with secret {self._written_fingerprint}, not {pair.fingerprint()}",
            )
        evidence: list[str] = []
        problem = self._check_fresh(evidence, since)
        if problem:
            return Result(False, f"{self.name}: {problem}", evidence)
        if self.verify_workflow is None:
            return Result(
                True,
                f"{self.name}: both secrets updated at or after the write at {_iso(since)} "
                "(no verify workflow: the consumer's use of the key is not exercised)",
                evidence,
            )
        return self._verify_by_workflow(evidence, progress)

    # -- workflow verification ---------------------------------------------------------

    def _verify_by_workflow(self, evidence: list[str], progress: Progress | None = None) -> Result:
        gh = self._client()
        file, ref = self.verify_workflow, self.verify_ref
        assert file is not None and self.verify_repo is not None
        label = f"workflow {self.verify_repo}:{file}"
        workflow = gh.get_repo(self.verify_repo).get_workflow(file)
        dispatched_at = _utc(self._now())
        # return_run_details: GitHub answers with the new run, so there is no guessing
        # which run is ours. Servers that ignore it answer 204 (PyGithub gives True).
        dispatched = self._call(f"dispatching {label} on {ref}", lambda: workflow.create_dispatch(ref, throw=True, return_run_details=True))
        evidence.append(f"dispatched {label} on {ref} at {_iso(dispatched_at)}")
        deadline = self._monotonic() + self.run_timeout

        def wait(check: Callable[[], T], until: Callable[[T], bool], what: str) -> Polled[T]:
            # Both waits share the run's deadline; polls back off from 0.25 s.
            return poll(
                check,
                until=until,
                deadline=max(0.0, deadline - self._monotonic()),
                interval=min(0.25, self.poll_interval),
                max_interval=self.poll_interval,
                sleep=self._sleep,
                monotonic=self._monotonic,
                progress=progress,
                what=what,
            )

        if isinstance(dispatched, WorkflowRun):
            run = dispatched
        else:  # True (throw=True: a refusal raises): a server that does not return the run
            since = _iso(dispatched_at.replace(microsecond=0) - timedelta(seconds=self.clock_skew))

            def newest_run() -> WorkflowRun | None:
                runs = self._call(
                    f"listing runs of {label}",
                    lambda: workflow.get_runs(branch=ref, event="workflow_dispatch", created=f">={since}").get_page(0),
                )
                return runs[0] if runs else None  # newest first

            appeared = wait(newest_run, lambda found: found is not None, f"{self.name}: waiting for the run of {label}")
            if not appeared.ok or appeared.value is None:
                return Result(False, f"{self.name}: no run of {label} appeared within {self.run_timeout:g}s of the dispatch", evidence)
            run = appeared.value
        run_id = run.id
        evidence.append(f"run {run_id}: {run.html_url}")

        def status() -> str:
            self._call(f"reading run {run_id} of {label}", run.update)
            return run.status

        completed = wait(status, lambda now: now == "completed", f"{self.name}: run {run_id} of {label}")
        if not completed.ok:
            return Result(
                False,
                f"{self.name}: run {run_id} of {label} still {completed.value} after {self.run_timeout:g}s: {run.html_url}",
                evidence,
            )
        conclusion = run.conclusion
        evidence.append(f"run {run_id} completed: {conclusion}")
        summary = f"{self.name}: {label} run {run_id} concluded {conclusion}: {run.html_url}"
        return Result(conclusion == "success", redact(summary), [redact(line) for line in evidence])
