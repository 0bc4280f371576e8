"""A fake Heroku Platform API (v3) for the training sandbox and the tests.

Routes (name → endpoint):
  get_app        GET    /apps/<app>
  get_config     GET    /apps/<app>/config-vars
  patch_config   PATCH  /apps/<app>/config-vars   merges; null deletes; one release; restarts
  list_releases  GET    /apps/<app>/releases      honours `Range: version ..; order=desc, max=N`
  restart        DELETE /apps/<app>/dynos
  healthz        GET    /_web/<app>/healthz       the app's own web process, not the API

API calls need `Accept: application/vnd.heroku+json; version=3` and
`Authorization: Bearer <token>`; errors are Heroku's {"id", "message"} bodies.

Like Heroku, a config change restarts the app, and the simulated web process uses the
config it booted with: its health check signs a request with that AWS pair through the
injected `aws_probe`, so a consumer "really uses" the key it holds.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request

from steps.consumers.base import AwsProbe
from steps.sandbox.http import FakeApi, Handler, LoopbackServer, Reply
from steps.secrets import Secret, redact

KEY_ID_VAR = "AWS_ACCESS_KEY_ID"
SECRET_VAR = "AWS_SECRET_ACCESS_KEY"
SANDBOX_USER = "operator@sandbox.handrail.invalid"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, error_id: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"id": error_id, "message": message, **extra}, headers={"Request-Id": str(uuid.uuid4())})


@dataclass
class _Release:
    id: str
    version: int
    description: str
    user: str
    created_at: str


@dataclass
class _App:
    id: str
    name: str
    created_at: str
    config: dict[str, str] = field(default_factory=dict)
    booted_config: dict[str, str] = field(default_factory=dict)  # what the running dynos use
    releases: list[_Release] = field(default_factory=list)
    restarts: int = 0
    updated_at: str = ""

    def release(self, description: str, user: str) -> _Release:
        release = _Release(str(uuid.uuid4()), len(self.releases) + 1, description, user, _now())
        self.releases.append(release)
        self.updated_at = release.created_at
        return release

    def boot(self) -> None:
        self.booted_config = dict(self.config)
        self.restarts += 1


class HerokuSandbox(FakeApi):
    """The fake Heroku API on a loopback port.

    `sb = HerokuSandbox(aws_probe).start()`; `sb.seed_app("raxx-api", {...})`; give
    `sb.token` (or a fresh `sb.issue_token()`) to the client. `sb.down = True` answers
    503 to everything; `sb.fail(route, ...)` injects a one-off fault.
    """

    def __init__(self, aws_probe: AwsProbe | None = None, key_id_var: str = KEY_ID_VAR, secret_var: str = SECRET_VAR) -> None:
        self.aws_probe = aws_probe
        self.key_id_var = key_id_var
        self.secret_var = secret_var
        self.server = LoopbackServer("heroku")
        self.down = False
        self._apps: dict[str, _App] = {}
        self._tokens: dict[str, str] = {}  # token → user email
        self._lock = threading.RLock()
        self.token: Secret = self.issue_token()
        self._register_routes()

    # -- tokens and apps ---------------------------------------------------------------

    def issue_token(self, user: str = SANDBOX_USER) -> Secret:
        token = "HRKU-" + str(uuid.uuid4())
        with self._lock:
            self._tokens[token] = user
        return Secret(token, "heroku token")

    def revoke_token(self, token: Secret) -> None:
        with self._lock:
            self._tokens.pop(token.reveal(), None)

    def seed_app(self, name: str, config_vars: dict[str, str] | None = None) -> None:
        """An app at release v1 ("Initial release"), then one release for its config."""
        with self._lock:
            app = _App(str(uuid.uuid4()), name, _now())
            app.release("Initial release", SANDBOX_USER)
            if config_vars:
                for key, value in config_vars.items():
                    if value and key != self.key_id_var:  # secrets get registered with the redactor; key ids are no secret
                        Secret(value, key)
                app.config.update(config_vars)
                app.release(f"Set {', '.join(config_vars)} config vars", SANDBOX_USER)
            app.boot()
            self._apps[name] = app

    def health_url(self, app: str) -> str:
        return f"{self.url}/_web/{app}/healthz"

    def config_names(self, app: str) -> list[str]:
        """The names of the app's config vars (values stay inside the sandbox)."""
        with self._lock:
            return sorted(self._apps[app].config)

    def releases(self, app: str) -> list[tuple[int, str]]:
        with self._lock:
            return [(r.version, r.description) for r in self._apps[app].releases]

    def restarts(self, app: str) -> int:
        with self._lock:
            return self._apps[app].restarts

    def holdings(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"heroku:<app>": (key id or None, Secret or None)} from each app's config."""
        with self._lock:
            out: dict[str, tuple[str | None, Secret | None]] = {}
            for name, app in self._apps.items():
                secret = app.config.get(self.secret_var)
                out[f"heroku:{name}"] = (app.config.get(self.key_id_var) or None, Secret(secret, self.secret_var) if secret else None)
            return out

    # -- HTTP --------------------------------------------------------------------------

    def _find(self, ident: str) -> _App | None:
        app = self._apps.get(ident)
        if app is None:  # the API takes an app's id as well as its name
            app = next((a for a in self._apps.values() if a.id == ident), None)
        return app

    def _app_json(self, app: _App) -> dict[str, Any]:
        return {
            "id": app.id,
            "name": app.name,
            "created_at": app.created_at,
            "updated_at": app.updated_at,
            "released_at": app.releases[-1].created_at,
            "maintenance": False,
            "acm": False,
            "archived_at": None,
            "buildpack_provided_description": "Python",
            "build_stack": {"id": "3d9e6f9a-0000-4000-8000-000000000024", "name": "heroku-24"},
            "stack": {"id": "3d9e6f9a-0000-4000-8000-000000000024", "name": "heroku-24"},
            "region": {"id": "59accabd-516d-4f0e-83e6-6e3757701145", "name": "us"},
            "space": None,
            "owner": {"email": SANDBOX_USER, "id": "00000000-0000-4000-8000-0000000000aa"},
            "organization": None,
            "team": None,
            "git_url": f"https://git.heroku.com/{app.name}.git",
            "web_url": f"{self.url}/_web/{app.name}/",
            "repo_size": None,
            "slug_size": None,
        }

    def _release_json(self, app: _App, release: _Release) -> dict[str, Any]:
        return {
            "id": release.id,
            "version": release.version,
            "description": release.description,
            "status": "succeeded",
            "current": release is app.releases[-1],
            "created_at": release.created_at,
            "updated_at": release.created_at,
            "app": {"id": app.id, "name": app.name},
            "user": {"email": release.user, "id": "00000000-0000-4000-8000-0000000000aa"},
            "addon_plan_names": [],
            "artifacts": [],
            "slug": None,
            "output_stream_url": None,
        }

    def _register_routes(self) -> None:
        add, api = self.server.add, self._api
        add("get_app", "GET", "/apps/<app>", api(self._get_app))
        add("get_config", "GET", "/apps/<app>/config-vars", api(self._get_config))
        add("patch_config", "PATCH", "/apps/<app>/config-vars", api(self._patch_config))
        add("list_releases", "GET", "/apps/<app>/releases", api(self._list_releases))
        add("restart", "DELETE", "/apps/<app>/dynos", api(self._restart))
        add("healthz", "GET", "/_web/<app>/healthz", self._healthz)

    def _api(self, handler: Callable[[Request, _App, str], Reply]) -> Handler:
        """`handler(request, app, user)` behind what every Platform API call passes
        first: the outage switch, the Accept version, the bearer token, the app."""

        def api(request: Request, app: str) -> Reply:
            refused = self._outage() or _version_refused(request)
            if refused is not None:
                return refused
            with self._lock:
                user = self._user(request)
                if user is None:
                    return _error(401, "unauthorized", "Invalid credentials provided.")
                found = self._find(app)
                if found is None:
                    return _error(404, "not_found", "Couldn't find that app.", resource="app")
                reply = handler(request, found, user)
            reply.headers.setdefault("Request-Id", str(uuid.uuid4()))
            reply.headers.setdefault("RateLimit-Remaining", "4499")
            return reply

        return api

    def _outage(self) -> Reply | None:
        return _error(503, "unavailable", "Heroku API is unavailable (sandbox outage).") if self.down else None

    def _user(self, request: Request) -> str | None:
        """Whose bearer token this is (None: no token, or not one the API knows)."""
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        return self._tokens.get(token)

    # -- endpoints ---------------------------------------------------------------------

    def _get_app(self, request: Request, app: _App, user: str) -> Reply:
        return Reply(200, self._app_json(app))

    def _get_config(self, request: Request, app: _App, user: str) -> Reply:
        return Reply(200, dict(app.config))

    def _patch_config(self, request: Request, app: _App, user: str) -> Reply:
        """Merge: a string sets, null removes; a change is one release and a restart."""
        body = request.get_json(silent=True)
        refused = _config_refused(body)
        if refused is not None:
            return refused
        if body:
            _apply_config(app, body, user)
        return Reply(200, dict(app.config))

    def _list_releases(self, request: Request, app: _App, user: str) -> Reply:
        releases, limit = _ranged(list(app.releases), request.headers.get("Range", ""))
        page = releases[:limit]
        status = 206 if len(releases) > limit else 200
        headers = {}
        if page:
            headers["Content-Range"] = f"version {page[0].version}..{page[-1].version}"
        if status == 206:
            headers["Next-Range"] = f"version ]{page[-1].version}..; max={limit}"
        return Reply(status, [self._release_json(app, r) for r in page], headers=headers)

    def _restart(self, request: Request, app: _App, user: str) -> Reply:
        app.boot()
        return Reply(202, {})

    def _healthz(self, request: Request, app: str) -> Reply:
        """The app's own web process (not the API): it checks the key it booted with."""
        if self.down:
            return Reply(503, {"ok": False, "message": "Application error (sandbox outage)"})
        with self._lock:
            found = self._find(app)
            booted = dict(found.booted_config) if found else None
        if booted is None:
            return Reply(404, {"ok": False, "message": "There's nothing here, yet."})
        return self._probe_booted(app, booted)

    def _probe_booted(self, app: str, booted: dict[str, str]) -> Reply:
        key_id, secret = booted.get(self.key_id_var), booted.get(self.secret_var)
        if not key_id or not secret:
            return Reply(500, {"ok": False, "app": app, "message": f"{self.key_id_var} or {self.secret_var} is not set"})
        if self.aws_probe is None:
            return Reply(200, {"ok": True, "app": app, "key_id": key_id, "message": "no AWS wired in this sandbox: key not checked"})
        try:
            ok, message = self.aws_probe(key_id, Secret(secret, self.secret_var))
        except Exception as exc:  # a broken probe shows as a failing app, as it would
            ok, message = False, f"probe error: {type(exc).__name__}: {exc}"
        return Reply(200 if ok else 500, {"ok": bool(ok), "app": app, "key_id": key_id, "message": redact(str(message))})


def _version_refused(request: Request) -> Reply | None:
    accept = request.headers.get("Accept", "")
    if "application/vnd.heroku+json" in accept and re.search(r"version=3\b", accept):
        return None
    return _error(
        400,
        "missing_version",
        "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.",
    )


def _config_refused(body: Any) -> Reply | None:
    if not isinstance(body, dict):
        return _error(400, "bad_request", "Request body must be a JSON object.")
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            return _error(422, "invalid_params", f"Config var {key} must be a string or null.")
    return None


def _apply_config(app: _App, body: dict[str, Any], user: str) -> None:
    set_keys = [k for k, v in body.items() if v is not None]
    removed = [k for k, v in body.items() if v is None and k in app.config]
    for key in set_keys:
        app.config[key] = body[key]
    for key in removed:
        del app.config[key]
    parts = []
    if set_keys:
        parts.append(f"Set {', '.join(set_keys)} config vars")
    if removed:
        parts.append(f"Remove {', '.join(removed)} config vars")
    if parts:
        app.release("; ".join(parts), user)
        app.boot()  # a config change restarts every dyno on the new config


def _ranged(releases: list[_Release], header: str) -> tuple[list[_Release], int]:
    """The releases in the order a `Range: version ..; order=desc, max=N` header asks
    (the range bounds themselves are ignored), and how many fit on a page."""
    limit = 200
    if ";" in header:
        options = dict(part.strip().split("=", 1) for part in header.split(";", 1)[1].split(",") if "=" in part)
        if options.get("order") == "desc":
            releases.reverse()
        if options.get("max", "").isdigit():
            limit = max(1, min(1000, int(options["max"])))
    return releases, limit
