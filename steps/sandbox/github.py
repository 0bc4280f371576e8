"""A fake GitHub REST API for the training sandbox and the tests.

It serves exactly the endpoints PyGithub (2.x) calls for the operations the GitHub
Actions consumer adapter uses, with GitHub's request and response shapes:

  GET  /repos/<owner>/<repo>                                          "get_repo"
  GET  /repos/<owner>/<repo>/actions/secrets/public-key               "repo_public_key"
  GET  /repos/<owner>/<repo>/actions/secrets/<name>                   "get_repo_secret"
  PUT  /repos/<owner>/<repo>/actions/secrets/<name>                   "put_repo_secret"
  GET  /repos/<owner>/<repo>/environments/<env>                       "get_env"
  GET  /repos/<owner>/<repo>/environments/<env>/secrets/public-key    "env_public_key"
  GET  /repos/<owner>/<repo>/environments/<env>/secrets/<name>        "get_env_secret"
  PUT  /repos/<owner>/<repo>/environments/<env>/secrets/<name>        "put_env_secret"
  GET  /orgs/<org>                                                    "get_org"
  GET  /orgs/<org>/actions/secrets/public-key                         "org_public_key"
  GET  /orgs/<org>/actions/secrets/<name>                             "get_org_secret"
  PUT  /orgs/<org>/actions/secrets/<name>                             "put_org_secret"
  GET  /repos/<owner>/<repo>/actions/workflows/<workflow>             "get_workflow"
  POST /repos/<owner>/<repo>/actions/workflows/<workflow>/dispatches  "dispatch"
  GET  /repos/<owner>/<repo>/actions/workflows/<workflow>/runs        "list_runs"
  GET  /repos/<owner>/<repo>/actions/runs/<run_id>                    "get_run"

Every repository, environment and organisation holds a real NaCl key pair. Secrets
arrive sealed (libsodium sealed box) with the public key, as GitHub requires, and are
opened with the private key; a value that does not open is refused with 422. Values
live in memory only. Every call needs `Authorization: token <t>` (or `Bearer <t>`)
with a token from `issue_token()`, else 401 {"message": "Bad credentials"}.

A seeded workflow "runs" when dispatched: it resolves AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY the way Actions does (environment secret, else repository
secret, else an organisation secret visible to the repository) and hands them to the
injected `aws_probe`; the run concludes success or failure on the probe's answer.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets as _random
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from werkzeug.wrappers import Request

from steps.consumers.base import AwsProbe
from steps.sandbox.http import FakeApi, Handler, LoopbackServer, Refusal, Reply
from steps.secrets import Secret, redact

DEFAULT_KEY_ID_NAME = "AWS_ACCESS_KEY_ID"
DEFAULT_SECRET_NAME = "AWS_SECRET_ACCESS_KEY"
DOCS = "https://docs.github.com/rest"
ORG_VISIBILITIES = ("all", "private", "selected")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Seeded secrets look as if they were set long ago, so a fresh write is always newer.
SEED_AGE = timedelta(days=30)


def _iso(dt: datetime) -> str:
    # GitHub's timestamps: ISO 8601, second resolution, Z.
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def repo_place(full_name: str) -> str:
    return f"github:{full_name}"


def env_place(full_name: str, environment: str) -> str:
    return f"github:{full_name}@{environment}"


def org_place(org: str) -> str:
    return f"github-org:{org}"


def _error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"message": message, "documentation_url": DOCS, **extra})


NOT_FOUND = "Not Found"


# -- state ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Box:
    """One scope's NaCl key pair, as GitHub keeps one per repo, environment and org."""

    private: PrivateKey = field(default_factory=PrivateKey.generate)
    # GitHub's key ids are long decimal strings.
    key_id: str = field(default_factory=lambda: "".join(_random.choice(string.digits) for _ in range(18)))

    @property
    def public_b64(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode()

    def open(self, encrypted_b64: str) -> str | None:
        """The plaintext of a sealed value, or None if it was not sealed with this key."""
        try:
            sealed = base64.b64decode(encrypted_b64, validate=True)
            return SealedBox(self.private).decrypt(sealed).decode("utf-8")
        except (binascii.Error, ValueError, CryptoError, UnicodeDecodeError):
            return None

    def __repr__(self) -> str:
        return f"_Box(key_id={self.key_id})"


@dataclass(eq=False)
class _Stored:
    """One secret: the opened value plus GitHub's metadata. Never printed."""

    value: str
    created_at: datetime
    updated_at: datetime
    visibility: str | None = None  # org secrets only
    selected: set[str] = field(default_factory=set)  # org secrets: repo full names

    def __repr__(self) -> str:
        return f"_Stored(****, updated_at={_iso(self.updated_at)})"


@dataclass(eq=False)
class _Scope:
    """Where secrets live: a repository, an environment or an organisation."""

    place: str
    box: _Box = field(default_factory=_Box)
    secrets: dict[str, _Stored] = field(default_factory=dict)


@dataclass
class SandboxWorkflow:
    """A workflow a seeded repository has; dispatching it runs the AWS probe.

    `environment` is the environment its job names (its secrets override the repo's).
    """

    file: str
    name: str | None = None
    environment: str | None = None
    key_id_name: str = DEFAULT_KEY_ID_NAME
    secret_name: str = DEFAULT_SECRET_NAME


@dataclass(eq=False)
class _Workflow:
    id: int
    spec: SandboxWorkflow
    created_at: datetime


@dataclass(eq=False)
class _Run:
    id: int
    run_number: int
    workflow: _Workflow
    ref: str
    head_sha: str
    created_at: datetime
    updated_at: datetime
    status: str = "queued"  # queued → in_progress → completed
    conclusion: str | None = None  # success | failure
    run_started_at: datetime | None = None
    message: str = ""  # what the job "logged": the probe's answer (never a secret)


@dataclass(eq=False)
class _Environment:
    id: int
    name: str
    scope: _Scope
    created_at: datetime


@dataclass(eq=False)
class _Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str
    branches: dict[str, str]  # branch → head sha
    scope: _Scope
    created_at: datetime
    environments: dict[str, _Environment] = field(default_factory=dict)
    workflows: dict[str, _Workflow] = field(default_factory=dict)  # file name → workflow
    runs: list[_Run] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(eq=False)
class _Org:
    id: int
    login: str
    scope: _Scope
    created_at: datetime


class GitHubSandbox(FakeApi):
    """The fake GitHub API on a loopback port.

    Use: `gh = GitHubSandbox(aws_probe=probe).start()`;
    `gh.seed_repo("acme/infra", secrets={...}, environments={"prod": {...}},
    workflows=["aws-smoke.yml"])`; `gh.seed_org("acme", secrets={...})`; point PyGithub
    at `gh.url` with `gh.token`. `gh.fail(route, ...)` injects a fault; `gh.down = True`
    answers 503 to everything.

    `run_delay`: seconds a dispatched run stays queued before it runs (0: the run
    completes before the dispatch call returns). `dispatch_run_details`: honour
    `return_run_details` on dispatch (GitHub.com does); False answers 204 always, as
    older GitHub Enterprise Server does, so clients must find the run by listing.
    `now`: the clock behind every timestamp (default: real UTC time).
    """

    def __init__(
        self,
        aws_probe: AwsProbe | None = None,
        *,
        run_delay: float = 0.1,
        dispatch_run_details: bool = True,
        key_id_name: str = DEFAULT_KEY_ID_NAME,
        secret_name: str = DEFAULT_SECRET_NAME,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.aws_probe = aws_probe
        # GitHub's clock: pass the training world's simulated clock so that its
        # timestamps move with fast-forwards (the adapter must be given the same one).
        self._now = now or _now
        self.run_delay = run_delay
        self.dispatch_run_details = dispatch_run_details
        self.key_id_name = key_id_name
        self.secret_name = secret_name
        self.down = False
        self.server = LoopbackServer("github")
        self._repos: dict[str, _Repo] = {}  # lower-cased full name → repo (GitHub is case-insensitive)
        self._orgs: dict[str, _Org] = {}  # lower-cased login → org
        self._tokens: dict[str, bool] = {}  # token → valid
        self._ids = itertools.count(1001)
        self._timers: list[threading.Timer] = []
        self._lock = threading.RLock()
        self._first_token = self.issue_token()
        self._register_routes()

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()  # queued workflow runs must not fire after the server is gone
        super().stop()

    # -- tokens ------------------------------------------------------------------------

    @property
    def token(self) -> Secret:
        """A token the sandbox accepts (issued at construction)."""
        return self._first_token

    def issue_token(self) -> Secret:
        token = "ghp_" + "".join(_random.choice(string.ascii_letters + string.digits) for _ in range(36))
        with self._lock:
            self._tokens[token] = True
        return Secret(token, "github token")

    def revoke_tokens(self) -> None:
        """Every issued token stops working (a revoked or expired PAT)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = False

    # -- seeding -----------------------------------------------------------------------

    def seed_repo(
        self,
        full_name: str,
        secrets: Mapping[str, str | Secret] | None = None,
        environments: Mapping[str, Mapping[str, str | Secret]] | None = None,
        workflows: Iterable[str | SandboxWorkflow] = (),
        *,
        private: bool = True,
        default_branch: str = "main",
        branches: Iterable[str] = (),
        seeded_at: datetime | None = None,
    ) -> None:
        """Create the repository (or add to it): secrets, environments with their
        secrets, workflows. Seeded secrets carry `seeded_at` (default: 30 days ago)."""
        owner, sep, name = full_name.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', not {full_name!r}")
        at = seeded_at or (self._now() - SEED_AGE)
        with self._lock:
            repo = self._repos.get(full_name.lower())
            if repo is None:
                repo = _Repo(
                    id=next(self._ids),
                    owner=owner,
                    name=name,
                    private=private,
                    default_branch=default_branch,
                    branches={},
                    scope=_Scope(repo_place(full_name)),
                    created_at=at,
                )
                self._repos[full_name.lower()] = repo
            for branch in (default_branch, *branches):
                repo.branches.setdefault(branch, _random.token_hex(20))
            self._seed_secrets(repo.scope, secrets or {}, at)
            for env_name, env_secrets in (environments or {}).items():
                env = self._environment(repo, env_name, at)
                self._seed_secrets(env.scope, env_secrets, at)
            for spec in workflows:
                if isinstance(spec, str):
                    spec = SandboxWorkflow(spec)
                repo.workflows[spec.file] = _Workflow(next(self._ids), spec, at)

    def seed_org(
        self,
        org: str,
        secrets: Mapping[str, str | Secret] | None = None,
        *,
        visibility: str = "all",
        selected_repositories: Iterable[str] = (),
        seeded_at: datetime | None = None,
    ) -> None:
        """Create the organisation (or add to it) with secrets of one visibility.
        `selected_repositories` are repo names ("infra" or "acme/infra")."""
        if visibility not in ORG_VISIBILITIES:
            raise ValueError(f"visibility must be one of {ORG_VISIBILITIES}, not {visibility!r}")
        at = seeded_at or (self._now() - SEED_AGE)
        selected = {r if "/" in r else f"{org}/{r}" for r in selected_repositories}
        with self._lock:
            scope = self._org_scope(org, at)
            self._seed_secrets(scope, secrets or {}, at)
            for name in secrets or {}:
                stored = scope.secrets[name.upper()]
                stored.visibility, stored.selected = visibility, set(selected)

    def _org_scope(self, org: str, at: datetime) -> _Scope:
        found = self._orgs.get(org.lower())
        if found is None:
            found = self._orgs[org.lower()] = _Org(next(self._ids), org, _Scope(org_place(org)), at)
        return found.scope

    def _environment(self, repo: _Repo, name: str, at: datetime) -> _Environment:
        env = repo.environments.get(name)
        if env is None:
            env = _Environment(next(self._ids), name, _Scope(env_place(repo.full_name, name)), at)
            repo.environments[name] = env
        return env

    def _seed_secrets(self, scope: _Scope, values: Mapping[str, str | Secret], at: datetime) -> None:
        for name, value in values.items():
            plain = value.reveal() if isinstance(value, Secret) else str(value)
            self._register(name, plain)
            scope.secrets[name.upper()] = _Stored(plain, at, at)

    def _register(self, name: str, value: str) -> None:
        # Everything GitHub holds is a secret, so it must never leak into output; but the
        # access key id is printed on purpose everywhere, so it is not scrubbed.
        if value and name.upper() != self.key_id_name.upper():
            Secret(value, name)

    # -- inspection (tests, training debrief) ------------------------------------------

    def holdings(self, key_id_name: str | None = None, secret_name: str | None = None) -> dict[str, tuple[str | None, Secret | None]]:
        """{place name: (key id or None, Secret or None)} for every repository,
        environment and organisation that holds either half of an AWS pair."""
        kid_name = (key_id_name or self.key_id_name).upper()
        sec_name = (secret_name or self.secret_name).upper()
        scopes: list[_Scope] = []
        with self._lock:
            for repo in self._repos.values():
                scopes.append(repo.scope)
                scopes.extend(env.scope for env in repo.environments.values())
            scopes.extend(org.scope for org in self._orgs.values())
            out: dict[str, tuple[str | None, Secret | None]] = {}
            for scope in scopes:
                kid, sec = scope.secrets.get(kid_name), scope.secrets.get(sec_name)
                if kid is None and sec is None:
                    continue
                out[scope.place] = (
                    kid.value if kid and kid.value else None,
                    Secret(sec.value, sec_name) if sec and sec.value else None,
                )
        return out

    def secret_info(self, place: str, name: str) -> dict[str, Any] | None:
        """Metadata of one secret at a place ("github:o/r", "github:o/r@env",
        "github-org:o"): created_at, updated_at, visibility, selected repositories."""
        with self._lock:
            scope = self._scope_by_place(place)
            stored = scope.secrets.get(name.upper()) if scope else None
            if stored is None:
                return None
            return {
                "created_at": _iso(stored.created_at),
                "updated_at": _iso(stored.updated_at),
                "visibility": stored.visibility,
                "selected_repositories": sorted(stored.selected),
            }

    def public_key(self, place: str) -> tuple[str, str]:
        """(key_id, base64 public key) of a place, as the API serves it."""
        with self._lock:
            scope = self._scope_by_place(place)
            if scope is None:
                raise KeyError(place)
            return scope.box.key_id, scope.box.public_b64

    def runs(self, full_name: str) -> list[dict[str, Any]]:
        """The repository's workflow runs, newest first, with what each job logged."""
        with self._lock:
            repo = self._repos.get(full_name.lower())
            return [
                {
                    "id": run.id,
                    "workflow": run.workflow.spec.file,
                    "ref": run.ref,
                    "status": run.status,
                    "conclusion": run.conclusion,
                    "message": run.message,
                }
                for run in reversed(repo.runs if repo else [])
            ]

    def _scope_by_place(self, place: str) -> _Scope | None:
        for repo in self._repos.values():
            if repo.scope.place == place:
                return repo.scope
            for env in repo.environments.values():
                if env.scope.place == place:
                    return env.scope
        for org in self._orgs.values():
            if org.scope.place == place:
                return org.scope
        return None

    # -- workflow runs -----------------------------------------------------------------

    def _visible_org_secret(self, repo: _Repo, name: str) -> _Stored | None:
        org = self._orgs.get(repo.owner.lower())
        stored = org.scope.secrets.get(name) if org else None
        if stored is None:
            return None
        if stored.visibility == "all":
            return stored
        if stored.visibility == "private":  # private and internal repositories only
            return stored if repo.private else None
        return stored if repo.full_name in stored.selected else None

    def _resolve(self, repo: _Repo, workflow: _Workflow, name: str) -> str | None:
        """A secret as a job sees it: the lowest level that defines it wins."""
        name = name.upper()
        env_name = workflow.spec.environment
        if env_name:
            env = repo.environments.get(env_name)
            if env and name in env.scope.secrets:
                return env.scope.secrets[name].value
        if name in repo.scope.secrets:
            return repo.scope.secrets[name].value
        stored = self._visible_org_secret(repo, name)
        return stored.value if stored else None

    def _execute(self, repo: _Repo, run: _Run) -> None:
        with self._lock:
            if run.status != "queued":
                return
            run.status = "in_progress"
            run.run_started_at = run.updated_at = self._now()
            spec = run.workflow.spec
            key_id = self._resolve(repo, run.workflow, spec.key_id_name)
            secret = self._resolve(repo, run.workflow, spec.secret_name)
        # The probe may call another sandbox over HTTP: never under the lock.
        missing = [n for n, v in ((spec.key_id_name, key_id), (spec.secret_name, secret)) if not v]
        if missing:
            ok, message = False, f"{' and '.join(missing)} not set for this job"
        elif self.aws_probe is None:
            ok, message = True, f"no AWS probe configured: {key_id} present but not exercised"
        else:
            try:
                ok, message = self.aws_probe(key_id or "", Secret(secret or "", spec.secret_name))
            except Exception as exc:  # a probe that breaks fails the run, like a crashing step
                ok, message = False, f"probe error: {type(exc).__name__}: {exc}"
        with self._lock:
            run.status = "completed"
            run.conclusion = "success" if ok else "failure"
            run.message = redact(str(message))
            run.updated_at = self._now()

    # -- HTTP: routes and the guard ---------------------------------------------------

    def _register_routes(self) -> None:
        repo, env, org = "/repos/<owner>/<repo>", "/repos/<owner>/<repo>/environments/<env>", "/orgs/<org>"
        workflow = f"{repo}/actions/workflows/<workflow>"
        # werkzeug tries a rule's fixed parts before its converters: "public-key" is
        # never taken for a secret <name> (except by PUT, which only <name> serves).
        routes: list[tuple[str, str, str, Handler]] = [
            ("get_repo", "GET", repo, self._get_repo),
            ("repo_public_key", "GET", f"{repo}/actions/secrets/public-key", self._repo_public_key),
            ("get_repo_secret", "GET", f"{repo}/actions/secrets/<name>", self._get_repo_secret),
            ("put_repo_secret", "PUT", f"{repo}/actions/secrets/<name>", self._put_repo_secret),
            ("get_env", "GET", env, self._get_env),
            ("env_public_key", "GET", f"{env}/secrets/public-key", self._env_public_key),
            ("get_env_secret", "GET", f"{env}/secrets/<name>", self._get_env_secret),
            ("put_env_secret", "PUT", f"{env}/secrets/<name>", self._put_env_secret),
            ("get_org", "GET", org, self._get_org),
            ("org_public_key", "GET", f"{org}/actions/secrets/public-key", self._org_public_key),
            ("get_org_secret", "GET", f"{org}/actions/secrets/<name>", self._get_org_secret),
            ("put_org_secret", "PUT", f"{org}/actions/secrets/<name>", self._put_org_secret),
            ("get_workflow", "GET", workflow, self._get_workflow),
            ("dispatch", "POST", f"{workflow}/dispatches", self._dispatch),
            ("list_runs", "GET", f"{workflow}/runs", self._list_runs),
            ("get_run", "GET", f"{repo}/actions/runs/<run_id>", self._get_run),
        ]
        for name, method, path, handler in routes:
            self.server.add(name, method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        """`handler` behind the outage switch and the token check."""

        def guarded(request: Request, **values: str) -> Reply:
            if self.down:
                return _error(503, "Service Unavailable (sandbox outage)")
            return self._denied(request) or handler(request, **values)

        return guarded

    def _denied(self, request: Request) -> Reply | None:
        """None if the token is good, else the 401 GitHub would answer."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return _error(401, "Requires authentication")
        if scheme.lower() not in ("token", "bearer"):
            return _error(401, "Bad credentials")
        with self._lock:
            valid = self._tokens.get(token.strip(), False)
        return None if valid else _error(401, "Bad credentials")

    # -- endpoints: repositories --------------------------------------------------------

    def _get_repo(self, request: Request, owner: str, repo: str) -> Reply:
        with self._lock:
            return Reply(200, self._repo_json(request, self._found_repo(owner, repo)))

    def _repo_public_key(self, request: Request, owner: str, repo: str) -> Reply:
        with self._lock:
            return Reply(200, self._public_key_json(self._found_repo(owner, repo).scope))

    def _get_repo_secret(self, request: Request, owner: str, repo: str, name: str) -> Reply:
        with self._lock:
            return self._secret_reply(request, self._found_repo(owner, repo).scope, name)

    def _put_repo_secret(self, request: Request, owner: str, repo: str, name: str) -> Reply:
        with self._lock:
            scope = self._found_repo(owner, repo).scope
        return self._put_secret(request, scope, name)

    # -- endpoints: environments -------------------------------------------------------

    def _get_env(self, request: Request, owner: str, repo: str, env: str) -> Reply:
        with self._lock:
            return Reply(200, self._env_json(request, owner, repo, self._found_env(owner, repo, env)))

    def _env_public_key(self, request: Request, owner: str, repo: str, env: str) -> Reply:
        with self._lock:
            return Reply(200, self._public_key_json(self._found_env(owner, repo, env).scope))

    def _get_env_secret(self, request: Request, owner: str, repo: str, env: str, name: str) -> Reply:
        with self._lock:
            return self._secret_reply(request, self._found_env(owner, repo, env).scope, name)

    def _put_env_secret(self, request: Request, owner: str, repo: str, env: str, name: str) -> Reply:
        with self._lock:
            scope = self._found_env(owner, repo, env).scope
        return self._put_secret(request, scope, name)

    # -- endpoints: organisations ------------------------------------------------------

    def _get_org(self, request: Request, org: str) -> Reply:
        with self._lock:
            return Reply(200, self._org_json(request, self._found_org(org)))

    def _org_public_key(self, request: Request, org: str) -> Reply:
        with self._lock:
            return Reply(200, self._public_key_json(self._found_org(org).scope))

    def _get_org_secret(self, request: Request, org: str, name: str) -> Reply:
        with self._lock:
            return self._secret_reply(request, self._found_org(org).scope, name)

    def _put_org_secret(self, request: Request, org: str, name: str) -> Reply:
        with self._lock:
            found = self._found_org(org)
        return self._put_secret(request, found.scope, name, org=found.login)

    # -- endpoints: workflows and runs -------------------------------------------------

    def _get_workflow(self, request: Request, owner: str, repo: str, workflow: str) -> Reply:
        with self._lock:
            found = self._found_repo(owner, repo)
            return Reply(200, self._workflow_json(request, found, self._found_workflow(found, workflow)))

    def _dispatch(self, request: Request, owner: str, repo: str, workflow: str) -> Reply:
        body: Any = request.get_json(silent=True)
        ref = _dispatch_ref(body)
        with self._lock:
            found = self._found_repo(owner, repo)
            run = self._queue_run(found, self._found_workflow(found, workflow), ref)
        if self.run_delay <= 0:
            self._execute(found, run)  # not under the lock: the probe may call another sandbox
        if body.get("return_run_details") and self.dispatch_run_details:
            run_json = self._run_json(request, found, run)
            return Reply(200, {"workflow_run_id": run.id, "run_url": run_json["url"], "html_url": run_json["html_url"]})
        return Reply(204)

    def _list_runs(self, request: Request, owner: str, repo: str, workflow: str) -> Reply:
        with self._lock:
            found = self._found_repo(owner, repo)
            wf = self._found_workflow(found, workflow)
            runs = _filter_runs([r for r in reversed(found.runs) if r.workflow is wf], request.args)
            per_page, page = _paging(request.args)
            chunk = runs[(page - 1) * per_page : page * per_page]
            return Reply(200, {"total_count": len(runs), "workflow_runs": [self._run_json(request, found, r) for r in chunk]})

    def _get_run(self, request: Request, owner: str, repo: str, run_id: str) -> Reply:
        with self._lock:
            found = self._found_repo(owner, repo)
            run = next((r for r in found.runs if str(r.id) == run_id), None)
            if run is None:
                raise Refusal(_error(404, NOT_FOUND))
            return Reply(200, self._run_json(request, found, run))

    def _queue_run(self, repo: _Repo, wf: _Workflow, ref: str) -> _Run:
        """A new run of `wf` on `ref`, queued; it runs after `run_delay` (if > 0)."""
        branch = ref.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise Refusal(_error(422, f"No ref found for: {ref}"))
        now = self._now()
        run = _Run(
            id=next(self._ids),
            run_number=1 + sum(1 for r in repo.runs if r.workflow is wf),
            workflow=wf,
            ref=branch,
            head_sha=repo.branches[branch],
            created_at=now,
            updated_at=now,
        )
        repo.runs.append(run)
        if self.run_delay > 0:
            timer = threading.Timer(self.run_delay, self._execute, (repo, run))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return run

    # -- secrets (the same for a repository, an environment and an organisation) -------

    def _secret_reply(self, request: Request, scope: _Scope, name: str) -> Reply:
        stored = scope.secrets.get(name.upper())
        if stored is None:
            raise Refusal(_error(404, NOT_FOUND))
        return Reply(200, self._secret_json(name.upper(), stored, request.base_url))

    def _put_secret(self, request: Request, scope: _Scope, name: str, org: str | None = None) -> Reply:
        """Open a sealed value and store it: 201 if new, 204 if replaced (as GitHub)."""
        with self._lock:  # one atomic step: validate, open, store
            return self._put_secret_locked(request, scope, name, org)

    def _put_secret_locked(self, request: Request, scope: _Scope, name: str, org: str | None) -> Reply:
        if not _SECRET_NAME.match(name) or name.upper().startswith("GITHUB_"):
            return _error(
                422,
                f"Invalid secret name: {name}. Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_), must not start with a number or GITHUB_.",
            )
        body: Any = request.get_json(silent=True)
        encrypted, key_id = _sealed_value(body)
        visibility, selected = self._org_visibility(body, org) if org is not None else (None, set())
        if key_id != scope.box.key_id:
            return _error(422, f"Bad request: key_id {key_id} does not match the current public key")
        value = scope.box.open(encrypted)
        if value is None:
            return _error(422, "Bad request: encrypted_value could not be decrypted with the public key for key_id " + key_id)
        self._register(name, value)
        now = self._now()
        existing = scope.secrets.get(name.upper())
        created_at = existing.created_at if existing else now
        scope.secrets[name.upper()] = _Stored(value, created_at, now, visibility, selected)
        return Reply(204) if existing else Reply(201, {})

    def _org_visibility(self, body: dict[str, Any], org: str) -> tuple[str, set[str]]:
        """An org secret's visibility and, for "selected", the repositories' full names."""
        visibility = body.get("visibility")
        if visibility not in ORG_VISIBILITIES:
            raise Refusal(_error(422, f'Invalid request.\n\n"visibility" must be one of: {", ".join(ORG_VISIBILITIES)}.'))
        selected: set[str] = set()
        ids = body.get("selected_repository_ids") or []
        if visibility == "selected":
            by_id = {r.id: r for r in self._repos.values() if r.owner.lower() == org.lower()}
            for rid in ids:
                try:
                    selected.add(by_id[int(rid)].full_name)
                except (KeyError, TypeError, ValueError):
                    raise Refusal(_error(422, f"Repository {rid} is not in organization {org}")) from None
        return visibility, selected

    # -- lookups: a missing resource is GitHub's plain 404 -----------------------------

    def _repo(self, owner: str, repo: str) -> _Repo | None:
        return self._repos.get(f"{owner}/{repo}".lower())

    def _found_repo(self, owner: str, repo: str) -> _Repo:
        found = self._repo(owner, repo)
        if found is None:
            raise Refusal(_error(404, NOT_FOUND))
        return found

    def _found_env(self, owner: str, repo: str, env: str) -> _Environment:
        found = self._found_repo(owner, repo).environments.get(env)
        if found is None:
            raise Refusal(_error(404, NOT_FOUND))
        return found

    def _found_org(self, org: str) -> _Org:
        found = self._orgs.get(org.lower())
        if found is None:
            raise Refusal(_error(404, NOT_FOUND))
        return found

    @staticmethod
    def _found_workflow(repo: _Repo, workflow: str) -> _Workflow:
        # GitHub accepts the workflow's numeric id or its file name.
        found = repo.workflows.get(workflow) or next((wf for wf in repo.workflows.values() if str(wf.id) == workflow), None)
        if found is None:
            raise Refusal(_error(404, NOT_FOUND))
        return found

    # -- bodies ------------------------------------------------------------------------

    @staticmethod
    def _base(request: Request) -> str:
        # URLs in bodies point back at the host the client used, as GitHub's do;
        # PyGithub refuses to follow URLs on another host or port.
        return request.host_url.rstrip("/")

    def _repo_json(self, request: Request, repo: _Repo) -> dict[str, Any]:
        base = self._base(request)
        is_org = repo.owner.lower() in self._orgs
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": {
                "login": repo.owner,
                "id": self._orgs[repo.owner.lower()].id if is_org else repo.id + 500000,
                "type": "Organization" if is_org else "User",
                "url": f"{base}/{'orgs' if is_org else 'users'}/{repo.owner}",
            },
            "default_branch": repo.default_branch,
            "url": f"{base}/repos/{repo.full_name}",
            "html_url": f"{base}/{repo.full_name}",
            "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at),
        }

    def _env_json(self, request: Request, owner: str, repo: str, env: _Environment) -> dict[str, Any]:
        base = self._base(request)
        return {
            "id": env.id,
            "node_id": f"EN_{env.id}",
            "name": env.name,
            "url": f"{base}/repos/{owner}/{repo}/environments/{env.name}",
            "html_url": f"{base}/{owner}/{repo}/deployments/activity_log?environments_filter={env.name}",
            "created_at": _iso(env.created_at),
            "updated_at": _iso(env.created_at),
            "protection_rules": [],
            "deployment_branch_policy": None,
        }

    def _org_json(self, request: Request, org: _Org) -> dict[str, Any]:
        base = self._base(request)
        return {
            "login": org.login,
            "id": org.id,
            "node_id": f"O_{org.id}",
            "type": "Organization",
            "url": f"{base}/orgs/{org.login}",
            "repos_url": f"{base}/orgs/{org.login}/repos",
            "html_url": f"{base}/{org.login}",
            "created_at": _iso(org.created_at),
            "updated_at": _iso(org.created_at),
        }

    @staticmethod
    def _public_key_json(scope: _Scope) -> dict[str, Any]:
        return {"key_id": scope.box.key_id, "key": scope.box.public_b64}

    @staticmethod
    def _secret_json(name: str, stored: _Stored, url: str) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "created_at": _iso(stored.created_at), "updated_at": _iso(stored.updated_at)}
        if stored.visibility is not None:
            body["visibility"] = stored.visibility
            if stored.visibility == "selected":
                body["selected_repositories_url"] = f"{url}/repositories"
        return body

    def _workflow_json(self, request: Request, repo: _Repo, wf: _Workflow) -> dict[str, Any]:
        base = self._base(request)
        return {
            "id": wf.id,
            "node_id": f"W_{wf.id}",
            "name": wf.spec.name or wf.spec.file,
            "path": f".github/workflows/{wf.spec.file}",
            "state": "active",
            "created_at": _iso(wf.created_at),
            "updated_at": _iso(wf.created_at),
            "url": f"{base}/repos/{repo.full_name}/actions/workflows/{wf.id}",
            "html_url": f"{base}/{repo.full_name}/blob/{repo.default_branch}/.github/workflows/{wf.spec.file}",
            "badge_url": f"{base}/{repo.full_name}/workflows/{wf.spec.file}/badge.svg",
        }

    def _run_json(self, request: Request, repo: _Repo, run: _Run) -> dict[str, Any]:
        base = self._base(request)
        api = f"{base}/repos/{repo.full_name}/actions/runs/{run.id}"
        name = run.workflow.spec.name or run.workflow.spec.file
        return {
            "id": run.id,
            "name": name,
            "node_id": f"WFR_{run.id}",
            "head_branch": run.ref,
            "head_sha": run.head_sha,
            "path": f".github/workflows/{run.workflow.spec.file}",
            "display_title": name,
            "run_number": run.run_number,
            "run_attempt": 1,
            "event": "workflow_dispatch",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": run.workflow.id,
            "url": api,
            "html_url": f"{base}/{repo.full_name}/actions/runs/{run.id}",
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "workflow_url": f"{base}/repos/{repo.full_name}/actions/workflows/{run.workflow.id}",
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.updated_at),
            "run_started_at": _iso(run.run_started_at) if run.run_started_at else None,
            "repository": {"id": repo.id, "name": repo.name, "full_name": repo.full_name},
        }


def _dispatch_ref(body: Any) -> str:
    if not isinstance(body, dict):
        raise Refusal(_error(400, "Problems parsing JSON"))
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise Refusal(_error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.'))
    return ref


def _sealed_value(body: Any) -> tuple[str, str]:
    """(encrypted_value, key_id) of a PUT secret body."""
    if not isinstance(body, dict):
        raise Refusal(_error(400, "Problems parsing JSON"))
    encrypted, key_id = body.get("encrypted_value"), body.get("key_id")
    if not isinstance(encrypted, str) or not encrypted:
        raise Refusal(_error(422, 'Invalid request.\n\n"encrypted_value" is required.'))
    if not isinstance(key_id, str) or not key_id:
        raise Refusal(_error(422, 'Invalid request.\n\n"key_id" is required.'))
    return encrypted, key_id


def _filter_runs(runs: list[_Run], q: Mapping[str, str]) -> list[_Run]:
    """The list-runs filters: branch, event, status (or conclusion), created."""
    if q.get("branch"):
        runs = [r for r in runs if r.ref == q["branch"]]
    if q.get("event"):
        runs = [r for r in runs if q["event"] == "workflow_dispatch"]
    if q.get("status"):
        runs = [r for r in runs if q["status"] in (r.status, r.conclusion)]
    if q.get("created"):
        runs = [r for r in runs if _created_matches(q["created"], r.created_at)]
    return runs


def _paging(q: Mapping[str, str]) -> tuple[int, int]:
    try:
        per_page = max(1, min(100, int(q.get("per_page", 30))))
        page = max(1, int(q.get("page", 1)))
    except ValueError:
        raise Refusal(_error(422, "per_page and page must be numbers")) from None
    return per_page, page


def _created_matches(created: str, at: datetime) -> bool:
    """GitHub's `created` filter: >=X, >X, <=X, <X, X..Y, or a bare date."""
    try:
        if ".." in created:
            lo, hi = created.split("..", 1)
            return (lo == "*" or at >= _parse_iso(lo)) and (hi == "*" or at <= _parse_iso(hi))
        for op, test in ((">=", at.__ge__), ("<=", at.__le__), (">", at.__gt__), ("<", at.__lt__)):
            if created.startswith(op):
                return test(_parse_iso(created[len(op) :]))
        return _iso(at).startswith(created)
    except ValueError:
        return False
