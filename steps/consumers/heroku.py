"""The Heroku consumer adapter: the AWS pair as two config vars of one Heroku app.

It speaks the Platform API v3 with `requests`. Both vars go in ONE
`PATCH /apps/{app}/config-vars`, so Heroku makes one release and restarts the app
once, straight onto the new pair (two PATCHes would boot it on a mismatched pair).
"""

from __future__ import annotations

import itertools
import math
import netrc
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
from requests.auth import AuthBase

from steps.clock import Progress, poll
from steps.consumers.base import AdapterError, Pair, ProbeResult, Result, shown_url
from steps.secrets import MASK, Secret, redact

DEFAULT_API_URL = "https://api.heroku.com"
NETRC_MACHINE = "api.heroku.com"
ENV_API_KEY = "HEROKU_API_KEY"
ACCEPT = "application/vnd.heroku+json; version=3"


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(redact(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _plain(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _netrc_path(environ: Mapping[str, str]) -> str:
    # As the Heroku CLI and requests: $NETRC if set, else ~/.netrc (~ from $HOME).
    if environ.get("NETRC"):
        return os.path.expanduser(environ["NETRC"])
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".netrc")


def heroku_token(environ: Mapping[str, str] | None = None) -> tuple[Secret, str]:
    """(token, where it came from): HEROKU_API_KEY, else the `api.heroku.com` password in
    the netrc file that `heroku login` writes."""
    env = os.environ if environ is None else environ
    key = env.get(ENV_API_KEY, "").strip()
    if key:
        return Secret(key, "heroku token"), ENV_API_KEY
    path = _netrc_path(env)
    if os.path.exists(path):
        try:
            entry = netrc.netrc(path).authenticators(NETRC_MACHINE)
        except netrc.NetrcParseError as exc:
            # exc.msg can quote the offending token, which may be the password: not shown.
            raise AdapterError(f"heroku: cannot parse {path} (line {exc.lineno}); fix it or set {ENV_API_KEY}") from None
        except OSError as exc:
            raise AdapterError(f"heroku: cannot read {path}: {exc.strerror}; set {ENV_API_KEY} instead") from None
        if entry and entry[2]:
            return Secret(entry[2], "heroku token"), path
    raise AdapterError(f"heroku: no API token: set {ENV_API_KEY} or run `heroku login` (no machine {NETRC_MACHINE} in {path})")


class _BearerAuth(AuthBase):
    """Given as `auth=` so that requests never swaps in credentials from ~/.netrc."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(****)"


class HerokuConsumer:
    """One Heroku app whose config vars hold the AWS pair."""

    kind = "heroku"

    def __init__(
        self,
        app: str,
        api_url: str = DEFAULT_API_URL,
        token: str | Secret | None = None,
        verify_url: str | None = None,
        key_id_var: str = "AWS_ACCESS_KEY_ID",
        secret_var: str = "AWS_SECRET_ACCESS_KEY",
        timeout: float = 15.0,
        verify_attempts: int = 1,
        verify_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.api_url = api_url.rstrip("/")
        self.verify_url = verify_url
        self.key_id_var = key_id_var
        self.secret_var = secret_var
        self.timeout = timeout
        # After a restart the dynos may answer 503 for a moment; verify can try again.
        self.verify_attempts = max(1, verify_attempts)
        self.verify_interval = verify_interval
        # The clock the retries wait on (the engine's, so training fast-forwards them).
        self._sleep = sleep
        self._monotonic = monotonic
        self.name = f"heroku:{app}"
        self._token: Secret | None = Secret(_plain(token), "heroku token") if token else None
        self._token_source = "given"
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"HerokuConsumer({self.name} via {self.api_url})"

    # -- the Consumer protocol ---------------------------------------------------------

    def command(self, pair_key_id: str) -> str:
        return f"heroku config:set {self.key_id_var}={pair_key_id} {self.secret_var}={MASK} -a {self.app}"

    def verification(self) -> str:
        text = f"heroku config:get {self.key_id_var} -a {self.app}"
        return text + (f" && curl -fsS {shown_url(self.verify_url)}" if self.verify_url else "")

    def probe(self) -> ProbeResult:
        """GET the app (the token works, the app exists), then its config vars: both
        names set. The values stay in this frame; the health URL is not called (the
        app would use its key for it)."""
        result = ProbeResult(self.name)
        try:
            self._resolve_token()
            self._request("GET", f"/apps/{self.app}", "read the app")
        except AdapterError as exc:
            result.failed("token and app", str(exc))
            return result
        result.passed("token and app", f"token ({self._token_source}) accepted; app {self.app} exists")
        try:
            config = self._config()
        except AdapterError as exc:
            result.failed("config vars", str(exc))
            return result
        missing = [name for name in (self.key_id_var, self.secret_var) if not config.get(name)]
        if missing:
            result.failed("config vars", f"{' and '.join(missing)} not set on {self.app}")
        else:
            key_id = config[self.key_id_var]
            result.passed("config vars", f"{self.key_id_var} ({key_id}) and {self.secret_var} are set on {self.app}")
        return result

    def read_key_id(self) -> str | None:
        return self._config().get(self.key_id_var) or None

    def read_pair(self) -> Pair | None:
        """The pair the app holds now, or None if either var is unset or empty."""
        config = self._config()
        key_id, secret = config.get(self.key_id_var), config.get(self.secret_var)
        return Pair(key_id, Secret(secret, self.secret_var)) if key_id and secret else None

    def write_pair(self, pair: Pair) -> Result:
        path = f"/apps/{self.app}/config-vars"
        answer = self._request("PATCH", path, f"PATCH {path}", json={self.key_id_var: pair.key_id, self.secret_var: pair.secret.reveal()})
        evidence = [
            f"{self.name}: PATCH {path} set {self.key_id_var}={pair.key_id} and {self.secret_var}={pair.fingerprint()} in one config change"
        ]
        if not isinstance(answer, dict) or answer.get(self.key_id_var) != pair.key_id:
            evidence.append(f"{self.name}: the PATCH answer does not show the new {self.key_id_var}")
        ok, line = self._check_config(pair, self._config())
        evidence.append(line)
        release = self._release_line(pair)
        evidence.append(release)
        summary = (
            f"{self.name}: set {self.key_id_var}, {self.secret_var} to {pair.key_id}"
            if ok
            else f"{self.name}: config vars do not hold the new pair after the PATCH"
        )
        return Result(ok, summary, evidence)

    def verify(self, pair: Pair, *, written_at: datetime | None = None, progress: Progress | None = None) -> Result:
        """The config vars hold `pair` (read back, so `written_at` is not needed), and the
        health URL, if any, answers 2xx: tried `verify_attempts` times while the release
        restarts the dynos."""
        ok, line = self._check_config(pair, self._config())
        evidence = [line]
        if not ok:
            return Result(False, f"{self.name}: does not hold {pair.key_id}", evidence)
        if not self.verify_url:
            return Result(True, f"{self.name}: holds {pair.key_id} (no health URL to check)", evidence)

        tries = itertools.count(1)

        def health() -> bool:
            healthy, line = self._check_health()
            attempt = next(tries)
            evidence.append(line if self.verify_attempts == 1 else f"{line} (attempt {attempt}/{self.verify_attempts})")
            return healthy

        healthy = poll(
            health,
            deadline=math.inf,
            attempts=self.verify_attempts,
            interval=self.verify_interval,
            sleep=self._sleep,
            monotonic=self._monotonic,
            progress=progress,
            what=f"{self.name}: health check",
        ).ok
        summary = f"{self.name}: " + (f"works on {pair.key_id}" if healthy else f"health check fails on {pair.key_id}")
        return Result(healthy, summary, evidence)

    # -- extra -------------------------------------------------------------------------

    def restart(self) -> str:
        """Restart every dyno (DELETE /apps/{app}/dynos); an evidence line."""
        self._request("DELETE", f"/apps/{self.app}/dynos", "restart dynos")
        return f"{self.name}: restart of all dynos accepted"

    def latest_release(self) -> dict[str, Any] | None:
        releases = self._request("GET", f"/apps/{self.app}/releases", "list releases", headers={"Range": "version ..; order=desc, max=1"})
        return releases[0] if isinstance(releases, list) and releases else None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- internals ---------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config = self._request("GET", f"/apps/{self.app}/config-vars", "read config vars")
        if not isinstance(config, dict):
            raise AdapterError(f"{self.name}: read config vars failed: unexpected answer (not a JSON object)")
        return config

    def _check_config(self, pair: Pair, config: dict[str, Any]) -> tuple[bool, str]:
        key_id = config.get(self.key_id_var) or None
        secret = config.get(self.secret_var) or None
        got_print = Secret(secret, self.secret_var).fingerprint() if isinstance(secret, str) else None
        key_ok, secret_ok = key_id == pair.key_id, got_print == pair.fingerprint()
        line = (
            f"{self.name}: read back {self.key_id_var}={key_id} ({'matches' if key_ok else f'expected {pair.key_id}'}), "
            f"{self.secret_var} {got_print} ({'matches' if secret_ok else f'expected {pair.fingerprint()}'})"
        )
        return key_ok and secret_ok, line

    def _release_line(self, pair: Pair) -> str:
        try:
            release = self.latest_release()
        except AdapterError as exc:  # the write happened; a missing release line is no failure
            return f"{self.name}: release not confirmed: {exc}"
        if release is None:
            return f"{self.name}: no release listed"
        description = _one_line(release.get("description", ""), 160)
        line = f"{self.name}: release v{release.get('version')} ({release.get('status', '?')}): {description}"
        if self.key_id_var not in description or self.secret_var not in description:
            line += " — not this change?"
        return line

    def _check_health(self) -> tuple[bool, str]:
        assert self.verify_url
        try:
            # The app's own URL: no Heroku token goes there.
            response = requests.get(self.verify_url, timeout=self.timeout)
        except requests.exceptions.Timeout:
            return False, f"{self.name}: GET {self.verify_url}: no answer within {self.timeout:g}s"
        except requests.exceptions.ConnectionError as exc:
            return False, f"{self.name}: GET {self.verify_url}: cannot connect ({_reason(exc)})"
        message = _body_message(response)
        healthy = 200 <= response.status_code < 300
        return healthy, _one_line(f"{self.name}: GET {self.verify_url} → HTTP {response.status_code}" + (f": {message}" if message else ""))

    def _resolve_token(self) -> Secret:
        if self._token is None:
            self._token, self._token_source = heroku_token()
        return self._token

    def _http(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.headers.update({"Accept": ACCEPT, "User-Agent": "handrail (+heroku consumer)"})
            session.auth = _BearerAuth(self._resolve_token())
            self._session = session
        return self._session

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        session = self._http()
        url = self.api_url + path
        try:
            response = session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.Timeout:
            raise AdapterError(f"{self.name}: {what} failed: no answer from {self.api_url} within {self.timeout:g}s") from None
        except requests.exceptions.ConnectionError as exc:
            raise AdapterError(f"{self.name}: {what} failed: cannot reach {self.api_url} ({_reason(exc)})") from None
        if response.status_code >= 400:
            body = _json(response)
            error_id = body.get("id") if isinstance(body, dict) else None
            message = _body_message(response) or response.reason or "no message"
            hint = f" (token from {self._token_source})" if response.status_code in (401, 403) else ""
            detail = f"{error_id}: {message}" if error_id else message
            raise AdapterError(_one_line(f"{self.name}: {what} failed: HTTP {response.status_code} {detail}{hint}"))
        if response.status_code == 204 or not response.content:
            return None
        body = _json(response)
        if body is None:
            raise AdapterError(f"{self.name}: {what} failed: HTTP {response.status_code} with a non-JSON answer")
        return body


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _body_message(response: requests.Response) -> str:
    """The `message` of a JSON body, else the start of the text: redacted, one line."""
    body = _json(response)
    if isinstance(body, dict):
        return _one_line(body.get("message") or "", 200)
    return _one_line(response.text or "", 120)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
        return "host name not found"
    if "reset" in text.lower():
        return "connection reset"
    return "connection failed"
