"""The Infisical vault adapter: the AWS key pair as two secrets in one Infisical folder.

It talks through the official `infisicalsdk` client. Two things about that client
shape this module:

* it caches secrets in memory (`cache_ttl`, 60 s by default, and the cache key ignores
  `version=`), so the client is built with `cache_ttl=None`: every read is fresh;
* it retries network errors four times with 1-8 s back-off and sets no timeout, so a
  requests transport adapter is mounted on its session that applies a timeout and turns
  connection failures into an error the SDK does not retry: an unreachable vault fails
  in seconds, and a POST is never replayed behind the operator's back.

Endpoints the SDK calls (and the sandbox serves): POST /api/v1/auth/universal-auth/login,
GET /api/v3/secrets/raw, GET|POST|PATCH /api/v3/secrets/raw/{name}.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from infisical_sdk import InfisicalError, InfisicalSDKClient
from infisical_sdk.infisical_requests import APIError
from requests.adapters import HTTPAdapter

from steps.consumers.base import AdapterError, Pair, ProbeResult, shown_url
from steps.secrets import MASK, Secret, redact

DEFAULT_SITE = "https://app.infisical.com"
ENV_CLIENT_ID = "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"
ENV_CLIENT_SECRET = "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"
ENV_TOKEN = "INFISICAL_TOKEN"

T = TypeVar("T")


def normalize_path(path: str) -> str:
    """Infisical folder paths: a leading slash, no trailing one ("/" is the root)."""
    return "/" + path.strip().strip("/")


def place_name(project_id: str, environment: str, path: str) -> str:
    """ "infisical:<project>/<env><path>": the vault's name, shared with the sandbox."""
    return f"infisical:{project_id}/{environment}{normalize_path(path)}"


def _plain(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(redact(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- authentication --------------------------------------------------------------------


@dataclass(frozen=True)
class InfisicalAuth:
    """How to authenticate: universal auth (client id + secret) or an access token.

    `source` says where the credentials came from, for error messages.
    """

    client_id: str | None = None
    client_secret: Secret | None = None
    token: Secret | None = None
    source: str = "given"

    def __post_init__(self) -> None:
        # Accept plain strings from callers, but hold them as Secrets from here on.
        for attr, label in (("client_secret", "infisical client secret"), ("token", "infisical token")):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, Secret(value, label) if value else None)
        if self.token is None and not (self.client_id and self.client_secret):
            raise AdapterError("infisical: no credentials: give a token, or both a universal-auth client id and client secret")

    @classmethod
    def universal(cls, client_id: str, client_secret: str | Secret, source: str = "given") -> InfisicalAuth:
        return cls(client_id=client_id, client_secret=Secret(_plain(client_secret), "infisical client secret"), source=source)

    @classmethod
    def from_token(cls, token: str | Secret, source: str = "given") -> InfisicalAuth:
        return cls(token=Secret(_plain(token), "infisical token"), source=source)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InfisicalAuth:
        """INFISICAL_TOKEN if set (as the Infisical CLI: a token overrides), else universal
        auth from INFISICAL_UNIVERSAL_AUTH_CLIENT_ID / _CLIENT_SECRET."""
        env = os.environ if environ is None else environ
        token = env.get(ENV_TOKEN, "").strip()
        if token:
            return cls.from_token(token, source=ENV_TOKEN)
        client_id = env.get(ENV_CLIENT_ID, "").strip()
        client_secret = env.get(ENV_CLIENT_SECRET, "").strip()
        if client_id and client_secret:
            return cls.universal(client_id, client_secret, source=f"{ENV_CLIENT_ID}/{ENV_CLIENT_SECRET}")
        if client_id or client_secret:
            missing = ENV_CLIENT_SECRET if client_id else ENV_CLIENT_ID
            raise AdapterError(f"infisical: {missing} is not set (universal auth needs both client id and client secret)")
        raise AdapterError(f"infisical: no credentials: set {ENV_TOKEN}, or {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET}")

    @property
    def method(self) -> str:
        return "token" if self.token is not None else "universal-auth"

    def describe(self) -> str:
        if self.token is not None:
            return f"an access token (from {self.source})"
        return f"universal auth as client id {self.client_id} (from {self.source})"


# -- transport -------------------------------------------------------------------------


class _Unreachable(Exception):
    """A connection failure, deliberately not an OSError: the SDK's retry loop only
    catches network errors, so this one comes straight out to the adapter."""


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        try:
            return super().send(request, stream=stream, timeout=timeout or self.timeout, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise _Unreachable(f"no answer within {self.timeout:g}s") from exc
        except requests.exceptions.SSLError as exc:
            raise _Unreachable("TLS handshake failed") from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Unreachable(_connection_reason(exc)) from exc


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text or "resolution" in text:
        return "host name not found"
    if "reset" in text.lower():
        return "connection reset"
    return "connection failed"


# -- the vault -------------------------------------------------------------------------


class VaultWriteIncomplete(AdapterError):
    """Half the pair was written: the vault now holds a mismatched pair.

    `previous` holds the versions before the write (what to restore), `written` the
    versions this write created.
    """

    def __init__(self, message: str, previous: dict[str, int], written: dict[str, int]) -> None:
        super().__init__(message)
        self.previous = previous
        self.written = written


class InfisicalVault:
    """The AWS pair as `key_id_name` and `secret_name` in one project/env/folder."""

    def __init__(
        self,
        site_url: str,
        project_id: str,
        environment: str,
        path: str = "/",
        key_id_name: str = "AWS_ACCESS_KEY_ID",
        secret_name: str = "AWS_SECRET_ACCESS_KEY",
        auth: InfisicalAuth | None = None,
        timeout: float = 15.0,
    ) -> None:
        site = (site_url or DEFAULT_SITE).rstrip("/")
        # The CLI's --domain and INFISICAL_API_URL end in /api; the SDK wants the site.
        self.site_url = site[: -len("/api")] if site.endswith("/api") else site
        self.project_id = project_id
        self.environment = environment
        self.path = normalize_path(path)
        self.key_id_name = key_id_name
        self.secret_name = secret_name
        self.timeout = timeout
        self.name = place_name(project_id, environment, self.path)
        self._auth = auth  # resolved from the environment on first use when None
        self._sdk: InfisicalSDKClient | None = None

    def __repr__(self) -> str:
        return f"InfisicalVault({self.name} at {self.site_url})"

    # -- the Vault protocol ------------------------------------------------------------

    def command(self, pair_key_id: str) -> str:
        domain = "" if self.site_url == DEFAULT_SITE else f" --domain={shown_url(self.site_url)}/api"
        return (
            f"infisical secrets set {self.key_id_name}={pair_key_id} {self.secret_name}={MASK}"
            f" --projectId={self.project_id} --env={self.environment} --path={self.path}{domain}"
        )

    def read_pair(self) -> tuple[Pair | None, dict[str, int]]:
        """The pair held now and the version of each half that exists. The pair is None
        when either half is missing or empty; versions then hold the halves that exist."""
        state = self._read_state()
        versions = {name: version for name, (version, _) in state.items()}
        key_id = state.get(self.key_id_name, (0, None))[1]
        secret = state.get(self.secret_name, (0, None))[1]
        if not key_id or not secret:
            return None, versions
        return Pair(key_id, Secret(secret, self.secret_name)), versions

    def read_pair_at(self, versions: dict[str, int]) -> Pair:
        values: dict[str, str] = {}
        for name in (self.key_id_name, self.secret_name):
            if name not in versions:
                raise AdapterError(f"{self._where(name)}: no version recorded for {name}; cannot read the earlier pair")
            version, value = self._get(name, versions[name])
            if not value:
                raise AdapterError(f"{self._where(name)}: version {version} of {name} is empty")
            values[name] = value
        return Pair(values[self.key_id_name], Secret(values[self.secret_name], self.secret_name))

    def write_pair(self, pair: Pair) -> tuple[dict[str, int], list[str]]:
        state = self._read_state()
        previous = {name: version for name, (version, _) in state.items()}
        evidence: list[str] = []
        new_versions: dict[str, int] = {}
        written: dict[str, int] = {}
        # The key id is no secret: it stays a plain string (a Secret would register it
        # with the redactor, which would then mask it in every evidence line).
        halves = ((self.key_id_name, pair.key_id, pair.key_id), (self.secret_name, pair.secret.reveal(), pair.fingerprint()))
        for name, value, shown in halves:
            current = state.get(name)
            if current is not None and current[1] is not None and hmac.compare_digest(current[1].encode(), value.encode()):
                # A retry after a partial write: this half is already right, no new version.
                new_versions[name] = current[0]
                evidence.append(f"{self.name}: {name} already holds {shown} (v{current[0]}), left as it is")
                continue
            try:
                if current is None:
                    version = self._write(name, value, create=True)
                    evidence.append(f"{self.name}: created {name} = {shown} (v{version})")
                else:
                    version = self._write(name, value, create=False)
                    evidence.append(f"{self.name}: updated {name} v{current[0]} → v{version} = {shown}")
            except AdapterError as exc:
                if written:
                    done = ", ".join(f"{n} (v{v})" for n, v in written.items())
                    before = ", ".join(f"{n} v{v}" for n, v in previous.items()) or "none"
                    raise VaultWriteIncomplete(
                        f"{exc} — after writing {done}: the vault holds a mismatched pair (versions before: {before})",
                        previous,
                        dict(written),
                    ) from None
                raise
            written[name] = new_versions[name] = version
        evidence.append(self._check_read_back(pair, new_versions))
        return new_versions, evidence

    def probe(self) -> ProbeResult:
        """Log in, then list the folder without values: both names must be there."""
        result = ProbeResult(self.name)
        try:
            auth = self._resolve_auth()
            self._client()
        except AdapterError as exc:
            result.failed("login", str(exc))
            return result
        # A token is only tried by the listing; universal auth has just logged in.
        how = "logged in with" if auth.method == "universal-auth" else "using"
        result.passed("login", f"{self.site_url}: {how} {auth.describe()}")
        try:
            present = self._versions()
        except AdapterError as exc:
            result.failed("secrets", str(exc))
            return result
        where = f"project {self.project_id} env {self.environment} path {self.path}"
        missing = [n for n in (self.key_id_name, self.secret_name) if n not in present]
        if missing:
            result.failed("secrets", f"{' and '.join(missing)} not found at {where}")
        else:
            found = " and ".join(f"{n} (v{present[n]})" for n in (self.key_id_name, self.secret_name))
            result.passed("secrets", f"{found} exist at {where} (names only: no value read)")
        return result

    # -- extra -------------------------------------------------------------------------

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
            self._sdk.api.session.close()
            self._sdk = None

    # -- internals ---------------------------------------------------------------------

    def _check_read_back(self, pair: Pair, versions: dict[str, int]) -> str:
        key_version, key_id = self._get(self.key_id_name)
        secret_version, secret = self._get(self.secret_name)
        got_key = key_id or None
        got_print = Secret(secret, self.secret_name).fingerprint() if secret else None
        problems = []
        if got_key != pair.key_id:
            problems.append(f"{self.key_id_name} is {got_key}, expected {pair.key_id}")
        if got_print != pair.fingerprint():
            problems.append(f"{self.secret_name} fingerprint is {got_print}, expected {pair.fingerprint()}")
        if key_version != versions[self.key_id_name] or secret_version != versions[self.secret_name]:
            problems.append(
                f"versions are {key_version}/{secret_version}, expected "
                f"{versions[self.key_id_name]}/{versions[self.secret_name]} (another writer?)"
            )
        if problems:
            raise AdapterError(f"{self._where()}: read-back after write does not match: " + "; ".join(problems))
        return (
            f"{self.name}: read back {self.key_id_name} = {got_key} (v{key_version}), "
            f"{self.secret_name} {got_print} (v{secret_version}): matches the {pair.role or 'written'} pair"
        )

    def _read_state(self) -> dict[str, tuple[int, str | None]]:
        """{name: (version, value or None if empty)} for those of the two halves that exist.

        Values are raw strings here, wrapped in a Secret only for the secret half.

        The listing asks for no values (viewSecretValue=false), so other secrets in the
        folder never enter this process; the values come from reads pinned to the listed
        versions, so version and value always agree.
        """
        return {name: self._get(name, version) for name, version in self._versions().items()}

    def _versions(self) -> dict[str, int]:
        """{name: version} of those of the two halves that exist; no value is asked for."""
        listing = self._call(
            "list secrets",
            None,
            lambda sdk: sdk.secrets.list_secrets(
                environment_slug=self.environment,
                secret_path=self.path,
                project_id=self.project_id,
                expand_secret_references=False,
                view_secret_value=False,
                include_imports=False,
            ),
        )
        return {s.secretKey: int(s.version) for s in listing.secrets if s.secretKey in (self.key_id_name, self.secret_name)}

    def _get(self, name: str, version: int | None = None) -> tuple[int, str | None]:
        """(version, raw value or None): callers wrap the secret half in a Secret."""
        what = f"read {name}" + (f" at version {version}" if version is not None else "")
        secret = self._call(
            what,
            name,
            lambda sdk: sdk.secrets.get_secret_by_name(
                secret_name=name,
                environment_slug=self.environment,
                secret_path=self.path,
                project_id=self.project_id,
                expand_secret_references=False,
                include_imports=False,
                version=str(version) if version is not None else None,
            ),
        )
        value = secret.secretValue
        if value and name == self.secret_name:
            Secret(value, name)  # registered with the redactor the moment it is read
        return int(secret.version), (value or None)

    def _write(self, name: str, value: str, create: bool) -> int:
        common = dict(secret_path=self.path, environment_slug=self.environment, project_id=self.project_id, secret_value=value)
        if create:
            secret = self._call(f"create {name}", name, lambda sdk: sdk.secrets.create_secret_by_name(secret_name=name, **common))
        else:
            secret = self._call(f"update {name}", name, lambda sdk: sdk.secrets.update_secret_by_name(current_secret_name=name, **common))
        return int(secret.version)

    def _where(self, secret_name: str | None = None) -> str:
        where = f"infisical {self.site_url} project {self.project_id} env {self.environment} path {self.path}"
        return where + (f" secret {secret_name}" if secret_name else "")

    def _resolve_auth(self) -> InfisicalAuth:
        if self._auth is None:
            self._auth = InfisicalAuth.from_env()
        return self._auth

    def _client(self) -> InfisicalSDKClient:
        if self._sdk is None:
            auth = self._resolve_auth()
            sdk = InfisicalSDKClient(host=self.site_url, cache_ttl=None)  # None: no secrets cache
            adapter = _TimeoutAdapter(self.timeout)
            sdk.api.session.mount("https://", adapter)
            sdk.api.session.mount("http://", adapter)
            self._login(sdk, auth)
            self._sdk = sdk
        return self._sdk

    def _login(self, sdk: InfisicalSDKClient, auth: InfisicalAuth) -> None:
        if auth.token is not None:
            sdk.auth.token_auth.login(auth.token.reveal())
            return
        assert auth.client_id and auth.client_secret
        try:
            sdk.auth.universal_auth.login(auth.client_id, auth.client_secret.reveal())
        except APIError as exc:
            raise AdapterError(
                f"infisical {self.site_url}: universal-auth login as client id {auth.client_id} failed: "
                f"HTTP {exc.status_code} {_api_message(exc)} (credentials from {auth.source})"
            ) from None
        except _Unreachable as exc:
            raise AdapterError(f"infisical {self.site_url}: cannot reach the server to log in: {exc}") from None
        except (InfisicalError, KeyError, TypeError, ValueError) as exc:
            raise AdapterError(f"infisical {self.site_url}: universal-auth login failed: {_one_line(exc)}") from None

    def _call(self, action: str, secret_name: str | None, fn: Callable[[InfisicalSDKClient], T]) -> T:
        where = self._where(secret_name)
        relogged = False
        while True:
            sdk = self._client()
            try:
                return fn(sdk)
            except APIError as exc:
                auth = self._resolve_auth()
                if exc.status_code == 401 and auth.method == "universal-auth" and not relogged:
                    # Access tokens expire during long sessions: log in again, once.
                    relogged = True
                    self._login(sdk, auth)
                    continue
                hint = f" (rejected {auth.describe()})" if exc.status_code in (401, 403) else ""
                raise AdapterError(f"{where}: {action} failed: HTTP {exc.status_code} {_api_message(exc)}{hint}") from None
            except _Unreachable as exc:
                raise AdapterError(f"{where}: {action} failed: cannot reach the server: {exc}") from None
            except (InfisicalError, KeyError, TypeError, ValueError) as exc:
                # InfisicalError: a non-JSON answer; the others: a JSON shape the SDK cannot parse.
                raise AdapterError(f"{where}: {action} failed: unexpected answer ({type(exc).__name__}: {_one_line(exc, 120)})") from None


def _api_message(exc: APIError) -> str:
    body = exc.response if isinstance(exc.response, dict) else {}
    error = body.get("error")
    message = body.get("message") or "no message"
    text = f"{error}: {message}" if error and error not in str(message) else str(message)
    return _one_line(text)
