"""A fake Infisical server for the training sandbox and the tests.

It serves exactly the endpoints `infisicalsdk` (1.0.x) calls for the operations the
vault adapter uses, with Infisical's request and response shapes:

  POST  /api/v1/auth/universal-auth/login   route "login"
  GET   /api/v3/secrets/raw                 route "list_secrets"
  GET   /api/v3/secrets/raw/<name>          route "get_secret"     (?version= reads an old one)
  POST  /api/v3/secrets/raw/<name>          route "create_secret"
  PATCH /api/v3/secrets/raw/<name>          route "update_secret"

State: projects (id) → environments (slug) → folders (path) → secrets (key → versions).
Every secret call needs `Authorization: Bearer <token>` from a login or `issue_token()`;
without one the answer is 401, as Infisical answers. Values live in memory only.
"""

from __future__ import annotations

import secrets as _random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request

from steps.consumers.infisical import normalize_path, place_name  # one naming for both sides
from steps.sandbox.http import FakeApi, Handler, LoopbackServer, Refusal, Reply
from steps.secrets import Secret

DEFAULT_KEY_ID_NAME = "AWS_ACCESS_KEY_ID"
DEFAULT_SECRET_NAME = "AWS_SECRET_ACCESS_KEY"
HIDDEN_VALUE = "<hidden-by-infisical>"  # what Infisical sends when viewSecretValue=false
TOKEN_TTL = 7200


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Version:
    version: int
    value: str
    comment: str
    created_at: str


@dataclass
class _Secret:
    id: str
    key: str
    versions: list[_Version] = field(default_factory=list)
    skip_multiline_encoding: bool = False

    @property
    def latest(self) -> _Version:
        return self.versions[-1]

    def add_version(self, value: str, comment: str = "") -> _Version:
        number = self.versions[-1].version + 1 if self.versions else 1
        version = _Version(number, value, comment, _now())
        self.versions.append(version)
        return version


@dataclass
class _Token:
    client_id: str
    valid: bool = True


def _read_query(request: Request) -> tuple[str | None, str | None, str, bool]:
    """The folder a read names (workspaceId, environment, secretPath) and whether values are wanted."""
    q = request.args
    return q.get("workspaceId"), q.get("environment"), q.get("secretPath", "/"), q.get("viewSecretValue", "true") != "false"


def _error(status: int, error: str, message: str) -> Reply:
    # Infisical's error body: {reqId, statusCode, message, error}.
    return Reply(status, {"reqId": f"req-{uuid.uuid4().hex[:16]}", "statusCode": status, "message": message, "error": error})


class InfisicalSandbox(FakeApi):
    """The fake Infisical API on a loopback port.

    Use: `sb = InfisicalSandbox().start()`; `cid, csecret = sb.add_identity()`;
    `sb.seed("proj-1", "prod", "/aws", {"AWS_ACCESS_KEY_ID": ..., ...})`.
    Set `sb.down = True` to answer 503 to everything (an outage), or `sb.fail(route, ...)`
    for a one-off fault.
    """

    def __init__(self, key_id_name: str = DEFAULT_KEY_ID_NAME, secret_name: str = DEFAULT_SECRET_NAME) -> None:
        self.key_id_name = key_id_name
        self.secret_name = secret_name
        self.server = LoopbackServer("infisical")
        self.down = False
        # project id → environment slug → folder path → secret key → _Secret
        self._projects: dict[str, dict[str, dict[str, dict[str, _Secret]]]] = {}
        self._identities: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.RLock()
        self._register_routes()

    # -- identities and tokens ---------------------------------------------------------

    def add_identity(self, client_id: str | None = None, client_secret: str | None = None) -> tuple[str, Secret]:
        """A machine identity with universal auth; returns (client id, client secret)."""
        client_id = client_id or str(uuid.uuid4())
        client_secret = client_secret or _random.token_hex(32)
        with self._lock:
            self._identities[client_id] = client_secret
        return client_id, Secret(client_secret, "infisical client secret")

    def issue_token(self, client_id: str | None = None) -> Secret:
        """An access token as a login would give (for INFISICAL_TOKEN)."""
        token = "st." + _random.token_hex(24)
        with self._lock:
            self._tokens[token] = _Token(client_id or "token-auth")
        return Secret(token, "infisical token")

    def revoke_tokens(self) -> None:
        """Every issued token stops working (simulates expiry); identities can log in again."""
        with self._lock:
            for token in self._tokens.values():
                token.valid = False

    # -- state -------------------------------------------------------------------------

    def seed(self, project_id: str, environment: str, path: str, values: dict[str, str]) -> None:
        """Create the project, environment and folder as needed; each value becomes a
        new version of its secret."""
        path = normalize_path(path)
        with self._lock:
            folder = self._projects.setdefault(project_id, {}).setdefault(environment, {}).setdefault(path, {})
            for key, value in values.items():
                if value and key != self.key_id_name:  # secrets get registered with the redactor; key ids are no secret
                    Secret(value, key)
                secret = folder.get(key)
                if secret is None:
                    secret = folder[key] = _Secret(str(uuid.uuid4()), key)
                secret.add_version(value)

    def versions(self, project_id: str, environment: str, path: str, key: str) -> list[int]:
        """The version numbers a secret has (empty if it does not exist)."""
        with self._lock:
            secret = self._projects.get(project_id, {}).get(environment, {}).get(normalize_path(path), {}).get(key)
            return [v.version for v in secret.versions] if secret else []

    def history(self, project_id: str, environment: str, path: str, key: str) -> list[str]:
        """Every value a secret has had, oldest first (in memory only: for snapshots)."""
        with self._lock:
            secret = self._projects.get(project_id, {}).get(environment, {}).get(normalize_path(path), {}).get(key)
            return [v.value for v in secret.versions] if secret else []

    def holdings(self, key_id_name: str | None = None, secret_name: str | None = None) -> dict[str, tuple[str | None, Secret | None]]:
        """{place name: (key id or None, Secret or None)} for the AWS pair in every folder."""
        key_id_name = key_id_name or self.key_id_name
        secret_name = secret_name or self.secret_name
        out: dict[str, tuple[str | None, Secret | None]] = {}
        with self._lock:
            for project_id, envs in self._projects.items():
                for env, folders in envs.items():
                    for path, secrets in folders.items():
                        key = secrets.get(key_id_name)
                        sec = secrets.get(secret_name)
                        key_id = (key.latest.value or None) if key else None
                        value = sec.latest.value if sec else ""
                        out[place_name(project_id, env, path)] = (key_id, Secret(value, secret_name) if value else None)
        return out

    # -- HTTP --------------------------------------------------------------------------

    def _register_routes(self) -> None:
        add, guarded = self.server.add, self._guarded
        add("login", "POST", "/api/v1/auth/universal-auth/login", self._login)
        add("list_secrets", "GET", "/api/v3/secrets/raw", guarded(self._list_secrets))
        add("get_secret", "GET", "/api/v3/secrets/raw/<name>", guarded(self._get_secret))
        add("create_secret", "POST", "/api/v3/secrets/raw/<name>", guarded(self._create_secret))
        add("update_secret", "PATCH", "/api/v3/secrets/raw/<name>", guarded(self._update_secret))

    def _guarded(self, handler: Handler) -> Handler:
        """`handler` behind the outage switch and the bearer-token check."""

        def guarded(request: Request, **values: str) -> Reply:
            return self._outage() or self._authorized(request) or handler(request, **values)

        return guarded

    def _outage(self) -> Reply | None:
        return _error(503, "ServiceUnavailable", "Infisical is unavailable (sandbox outage)") if self.down else None

    def _authorized(self, request: Request) -> Reply | None:
        """None if the bearer token is good, else the 401 Infisical would answer."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(401, "UnauthorizedError", "Missing authorization header")
        with self._lock:
            token = self._tokens.get(header[len("Bearer ") :].strip())
        if token is None:
            return _error(401, "UnauthorizedError", "Invalid token")
        if not token.valid:
            return _error(401, "UnauthorizedError", "Access token expired")
        return None

    # -- endpoints ---------------------------------------------------------------------

    def _login(self, request: Request) -> Reply:
        if outage := self._outage():
            return outage
        body = request.get_json(silent=True) or {}
        client_id, client_secret = body.get("clientId"), body.get("clientSecret")
        if not client_id or not client_secret:
            return _error(400, "ValidationFailure", "clientId and clientSecret are required")
        with self._lock:
            known = self._identities.get(client_id)
        if known is None or not _random.compare_digest(known, client_secret):
            return _error(401, "UnauthorizedError", "Invalid credentials")
        token = self.issue_token(client_id).reveal()
        return Reply(200, {"accessToken": token, "expiresIn": TOKEN_TTL, "accessTokenMaxTTL": TOKEN_TTL, "tokenType": "Bearer"})

    def _list_secrets(self, request: Request) -> Reply:
        project_id, env, path, view = _read_query(request)
        with self._lock:
            project_id, env = _scope(project_id, env)
            # Infisical lists a folder that does not exist as empty.
            folder = self._folder(project_id, env, path) or {}
            items = [self._secret_json(s, s.latest, project_id, env, path, view) for s in folder.values()]
        return Reply(200, {"secrets": items, "imports": []})

    def _get_secret(self, request: Request, name: str) -> Reply:
        project_id, env, path, view = _read_query(request)
        with self._lock:
            project_id, env = _scope(project_id, env)
            secret = _existing(self._existing_folder(project_id, env, path), name)
            version = _version_asked(request, secret, name)
            return Reply(200, {"secret": self._secret_json(secret, version, project_id, env, path, view)})

    def _create_secret(self, request: Request, name: str) -> Reply:
        return self._write(request, name, create=True)

    def _update_secret(self, request: Request, name: str) -> Reply:
        return self._write(request, name, create=False)

    def _write(self, request: Request, name: str, create: bool) -> Reply:
        body = request.get_json(silent=True) or {}
        project_id, env, path = body.get("workspaceId"), body.get("environment"), body.get("secretPath", "/")
        value = _value_to_write(body, create)
        with self._lock:
            project_id, env = _scope(project_id, env)
            folder = self._existing_folder(project_id, env, path)
            secret = _new(folder, name) if create else _existing(folder, name)
            if "skipMultilineEncoding" in body:
                secret.skip_multiline_encoding = bool(body["skipMultilineEncoding"])
            comment = body.get("secretComment")
            version = secret.add_version(
                value if value is not None else secret.latest.value,
                comment if comment is not None else (secret.latest.comment if secret.versions else ""),
            )
            return Reply(200, {"secret": self._secret_json(secret, version, project_id, env, path)})

    # -- lookups and bodies ------------------------------------------------------------

    def _folder(self, project_id: str, environment: str, path: str | None) -> dict[str, _Secret] | None:
        """The folder's secrets, None if there is no such folder; refused (404) for an
        unknown project or environment."""
        project = self._projects.get(project_id)
        if project is None:
            raise Refusal(_error(404, "NotFound", f"Project with ID '{project_id}' not found"))
        envs = project.get(environment)
        if envs is None:
            raise Refusal(_error(404, "NotFound", f"Environment with slug '{environment}' in project with ID '{project_id}' not found"))
        return envs.get(normalize_path(path or "/"))

    def _existing_folder(self, project_id: str, environment: str, path: str) -> dict[str, _Secret]:
        folder = self._folder(project_id, environment, path)
        if folder is None:
            raise Refusal(
                _error(404, "NotFound", f"Folder with path '{normalize_path(path)}' in environment with slug '{environment}' not found")
            )
        return folder

    def _secret_json(
        self, secret: _Secret, version: _Version, project_id: str, environment: str, path: str, view_value: bool = True
    ) -> dict[str, Any]:
        return {
            "id": secret.id,
            "_id": secret.id,
            "workspace": project_id,
            "environment": environment,
            "version": version.version,
            "type": "shared",
            "secretKey": secret.key,
            "secretValue": version.value if view_value else HIDDEN_VALUE,
            "secretValueHidden": not view_value,
            "secretComment": version.comment,
            "secretReminderNote": None,
            "secretReminderRepeatDays": None,
            "skipMultilineEncoding": secret.skip_multiline_encoding,
            "createdAt": secret.versions[0].created_at,
            "updatedAt": version.created_at,
            "secretPath": normalize_path(path),
            "secretMetadata": [],
            "tags": [],
        }


def _scope(project_id: str | None, environment: str | None) -> tuple[str, str]:
    """The project and environment a request names; refused (400) if either is missing."""
    if not project_id:
        raise Refusal(_error(400, "BadRequest", "Either workspaceId or workspaceSlug is required"))
    if not environment:
        raise Refusal(_error(400, "BadRequest", "environment is required"))
    return project_id, environment


def _existing(folder: dict[str, _Secret], name: str) -> _Secret:
    secret = folder.get(name)
    if secret is None:
        raise Refusal(_error(404, "NotFound", f"Secret with name '{name}' not found"))
    return secret


def _new(folder: dict[str, _Secret], name: str) -> _Secret:
    if name in folder:
        raise Refusal(_error(400, "BadRequest", f"Secret with name '{name}' already exists"))
    secret = folder[name] = _Secret(str(uuid.uuid4()), name)
    return secret


def _version_asked(request: Request, secret: _Secret, name: str) -> _Version:
    """The version `?version=` names, else the latest."""
    asked = request.args.get("version")
    if not asked:
        return secret.latest
    try:
        wanted = int(asked)
    except ValueError:
        raise Refusal(_error(422, "ValidationFailure", "version must be a number")) from None
    matching = [v for v in secret.versions if v.version == wanted]
    if not matching:
        raise Refusal(_error(404, "NotFound", f"Secret version {wanted} of '{name}' not found"))
    return matching[0]


def _value_to_write(body: dict[str, Any], create: bool) -> str | None:
    value = body.get("secretValue")
    if create and not isinstance(value, str):
        raise Refusal(_error(422, "ValidationFailure", "secretValue is required"))
    if value is not None and not isinstance(value, str):
        raise Refusal(_error(422, "ValidationFailure", "secretValue must be a string"))
    return value
