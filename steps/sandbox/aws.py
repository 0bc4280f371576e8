"""The simulated AWS: moto served on loopback, behind a gate that does what moto does not.

moto answers IAM, STS and S3 but accepts any credentials. The gate in front of it
checks every request the way AWS would for this SOP:

- the access key must exist and the SigV4 signature must verify with its secret;
- an Inactive key is refused (InvalidClientTokenId), as in AWS;
- a new key is refused until `propagation_delay` simulated seconds after its creation
  (AWS's eventual consistency, which step 3 and step 6 wait out);
- a status change takes `status_delay` simulated seconds to take effect (so a
  consumer may still get through just after a deactivation, and its last use shows);
- DeleteUser is refused with AWS's DeleteConflict while anything is still attached to
  the user, and service-specific credentials, which moto lacks, are answered here
  (`steps.sandbox.iam_user`).

Each `AwsWorld` is one simulated account with its own clock; many worlds share one
moto server per process. moto stamps creation and last-use times from the world's
clock, so ages and last uses are simulated time too.
"""

from __future__ import annotations

import io
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from steps.aws import iso_full
from steps.clock import Clock, iso, utc
from steps.consumers.base import Pair
from steps.sandbox import iam_user, trail
from steps.secrets import Secret

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

OPERATOR_USER = "handrail-operator"
# Training's second person: `handrail approve` signs as this user (another STS principal).
SECOND_OPERATOR = "handrail-second-operator"
_MAX_CLIENTS = 64
REGION = "us-east-1"

_lock = threading.RLock()
_server = None
# One botocore session for every world in the process: a session parses botocore's JSON
# models (endpoints, each service) the first time it needs them, ~0.1 s of CPU per world.
# Clients are made under the lock (botocore sessions are not thread-safe); a client has
# its own credentials, endpoint and config, and is thread-safe once made.
_botocore: Any = None
_botocore_lock = threading.Lock()
_worlds: dict[str, AwsWorld] = {}
_local = threading.local()


def _patch_moto_clock() -> None:
    """moto stamps CreateDate and last use with utcnow(); make that the world's clock."""
    import moto.iam.models as iam_models

    if getattr(iam_models, "_handrail_patched", False):
        return
    real = iam_models.utcnow

    def world_utcnow() -> datetime:
        clock = getattr(_local, "clock", None)
        return clock.now().replace(tzinfo=None) if clock is not None else real()

    iam_models.utcnow = world_utcnow
    iam_models._handrail_patched = True  # type: ignore[attr-defined]  # a mark on moto's module: patch once


def _patch_moto_dispatch() -> None:
    """moto's dispatcher lists its own package folder (a listdir and a stat per module,
    some 200) on every request, under its lock: a campaign's thousands of calls queue
    behind it. The folder does not change while the process runs: list it once."""
    import moto.backends as moto_backends

    if getattr(moto_backends, "_handrail_patched", False):
        return
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules
    setattr(moto_backends, "_handrail_patched", True)  # noqa: B010 (a module attribute moto does not declare)


def _patch_moto_per_call() -> None:
    """Two costs moto pays on every call that grow with a campaign: it lists a response
    class's methods (inspect.getmembers, ~300 members) to find the action, and
    GetAccessKeyLastUsed scans every key of every account. The methods do not change
    while the process runs (listed once per class); a key of this account is found by
    its id first (moto's scan still answers anything else: another account's key, none)."""
    import functools

    import moto.core.responses as moto_responses
    import moto.iam.models as iam_models

    if getattr(moto_responses, "_handrail_patched", False):
        return
    listed = functools.cache(moto_responses.method_names_from_class)
    moto_responses.method_names_from_class = lambda clazz: listed(clazz)
    setattr(moto_responses, "_handrail_patched", True)  # noqa: B010 (a module attribute moto does not declare)

    scan = iam_models.IAMBackend.get_access_key_last_used

    def last_used(self: Any, access_key_id: str) -> dict[str, Any]:
        key = self.access_keys.get(access_key_id)
        user = self.users.get(key.user_name) if key is not None and key.user_name else None
        if user is not None and any(k is key for k in user.access_keys):
            return {"user_name": key.user_name, "last_used": key.last_used}
        return scan(self, access_key_id)

    iam_models.IAMBackend.get_access_key_last_used = last_used  # type: ignore[method-assign]  # patched once, as above


# -- the gate --------------------------------------------------------------------------------

_QUERY_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/", "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}
_MESSAGES = {
    "InvalidClientTokenId": "The security token included in the request is invalid.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
    "MissingAuthenticationToken": "Request is missing Authentication Token",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
}


def _reject(start_response: StartResponse, service: str, code: str, key_id: str = "") -> list[bytes]:
    if service == "s3":
        if code == "InvalidClientTokenId":
            code = "InvalidAccessKeyId"
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{_MESSAGES[code]}</Message>'
            f"<AWSAccessKeyId>{key_id}</AWSAccessKeyId><RequestId>{uuid.uuid4()}</RequestId></Error>"
        )
    else:
        ns = _QUERY_NS.get(service, _QUERY_NS["sts"])
        body = (
            f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{_MESSAGES[code]}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
    data = body.encode()
    start_response("403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _answer(start_response: Any, status: int, body: str) -> list[bytes]:
    data = body.encode()
    reason = {200: "OK", 404: "Not Found", 409: "Conflict"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _between(text: str, first: str, second: str) -> str:
    return text.partition(first)[2].partition(second)[0]


def _signature_matches(environ: dict[str, Any], body: bytes, auth: str, secret: str, key_id: str, region: str, service: str) -> bool:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = _between(auth, "SignedHeaders=", ",").split(";")
    headers = {}
    for name in signed:
        key = "HTTP_" + name.upper().replace("-", "_")
        if name == "content-type":
            value = environ.get("CONTENT_TYPE", "")
        elif name == "content-length":
            value = environ.get("CONTENT_LENGTH", "")
        else:
            value = environ.get(key, "")
        headers[name] = value
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    url = f"http://{environ.get('HTTP_HOST', 'localhost')}{uri}"
    request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, data=body, headers=headers)
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return bool(expected == _between(auth, "Signature=", ",") or expected == auth.rpartition("Signature=")[2].strip())


def _gate(app: WSGIApp) -> WSGIApp:
    def gated(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = _between(auth, "Credential=", ",").split("/")
        service = scope[3] if len(scope) > 3 else "sts"
        if not auth.startswith("AWS4-HMAC-SHA256") or len(scope) < 5:
            return _reject(start_response, service, "MissingAuthenticationToken")
        key_id, region = scope[0], scope[2]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        world = _world_for(key_id)
        if world is None:
            return _reject(start_response, service, "InvalidClientTokenId", key_id)
        key = world.backend_key(key_id)
        if key is None:
            return _reject(start_response, service, "InvalidClientTokenId", key_id)
        if not _signature_matches(environ, body, auth, key.secret_access_key, key_id, region, service):
            return _reject(start_response, service, "SignatureDoesNotMatch", key_id)
        if not world.key_usable(key):
            world.refused[key_id] = world.refused.get(key_id, 0) + 1
            return _reject(start_response, service, "InvalidClientTokenId", key_id)
        operation = world.count(service, body, environ)
        if service in trail.SERVED:
            return trail.serve(world, service, operation, region, body, start_response)
        _local.clock = world.clock
        try:
            answered = world.answer_iam(service, body)
            if answered is not None:
                if world.trail.records(service, operation):
                    world.trail.record(world, key, service, operation, region, body, environ, answered[0], "")
                return _answer(start_response, *answered)
            if not world.trail.records(service, operation):
                return app(environ, start_response)
            # Logged like CloudTrail: the request, its caller, whether AWS accepted it (a
            # created key's id from the answer; the answer's secret is never read).
            status: list[str] = []

            def capture(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                status.append(line)
                return start_response(line, headers, exc_info) if exc_info else start_response(line, headers)

            data = b"".join(app(environ, capture))
            code = int((status or ["500"])[0].split()[0])
            created = _between(data.decode(errors="replace"), "<AccessKeyId>", "</AccessKeyId>") if operation == "CreateAccessKey" else ""
            world.trail.record(world, key, service, operation, region, body, environ, code, created)
            return [data]
        finally:
            _local.clock = None

    return gated


def _world_for(key_id: str) -> AwsWorld | None:
    with _lock:
        worlds = list(_worlds.values())
    for world in worlds:
        if world.backend_key(key_id) is not None:
            return world
    return None


class _MotoServer:
    """One moto server per process, behind the gate."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from steps.sandbox.http import serve

        _patch_moto_clock()
        _patch_moto_dispatch()
        _patch_moto_per_call()
        app = _gate(DomainDispatcherApplication(create_backend_app))
        self._server = serve(app)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-aws", daemon=True)
        self._thread.start()


def _moto_server() -> _MotoServer:
    global _server
    with _lock:
        if _server is None:
            _server = _MotoServer()
        return _server


def _create_client(service: str, config_extra: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    global _botocore
    import botocore.session
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": "path"},
        # The world is on loopback, never behind a proxy (see http.loopback_bypasses_proxies);
        # said here, botocore also skips reading the environment for every client it makes.
        proxies={},
        **(config_extra or {}),
    )
    with _botocore_lock:
        if _botocore is None:
            _botocore = botocore.session.get_session()
            _reuse_client_classes(_botocore)
        return _botocore.create_client(service, config=config, **kwargs)


def _reuse_client_classes(session: Any) -> None:
    """botocore builds a client's class anew for every client: a method per operation of
    the service (EC2 has about 600), about half of the CPU a client costs, and the sandbox
    makes one for each pair, region and simulated caller. The class holds no client's
    state (credentials, endpoint and config are the instance's), so the sandbox's own
    session builds it once per service and version; every other session (a live wiring's,
    in the same process) is left as botocore made it."""
    from botocore.client import ClientCreator

    if getattr(ClientCreator, "_handrail_reuses", None) is not None:
        return  # patched once per process, for the first sandbox session
    build = ClientCreator._create_client_class
    built: dict[tuple[str, str], type] = {}

    def create_client_class(self: Any, service_name: str, service_model: Any) -> type:
        if self._event_emitter is not ClientCreator._handrail_reuses:
            fresh: type = build(self, service_name, service_model)
            return fresh
        key = (service_name, service_model.api_version)
        if key not in built:  # under _botocore_lock: the sandbox's clients are made one at a time
            built[key] = build(self, service_name, service_model)
        return built[key]

    ClientCreator._handrail_reuses = session.get_component("event_emitter")
    ClientCreator._create_client_class = create_client_class


# -- one simulated account -------------------------------------------------------------------


@dataclass
class SeedKey:
    status: str = "Active"
    age: float = 90 * 86400  # seconds since creation
    last_used: float | None = 3 * 3600  # seconds ago; None: never
    service: str = "s3"


class AwsWorld:
    def __init__(self, clock: Clock, account_id: str | None = None, propagation_delay: float = 0.0, status_delay: float = 0.0) -> None:
        self.clock = clock
        self.account_id = account_id or str(random.randint(10**11, 10**12 - 1))
        self.propagation_delay = propagation_delay
        self.status_delay = status_delay
        self.region = REGION
        self.refused: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.evidence_calls: dict[str, int] = {}  # cloudtrail:LookupEvents, ec2:DescribeRegions
        self.trail = trail.Trail(clock)
        self.enabled_regions: list[str] | None = None  # what the campaign's wirings found (SharedTrainingWiring)
        self._status_changes: dict[str, tuple[datetime, str]] = {}  # key -> (when, status before)
        # Most recently used last. Clients signed with a rotated pair are dropped past
        # _MAX_CLIENTS (a client is ~120 kB; a campaign makes a few per rotation).
        self._clients: OrderedDict[tuple[str, str, str, trail.Caller], Any] = OrderedDict()
        self._client_lock = threading.Lock()
        self.operator: Pair | None = None
        self.check_calls: dict[str, str] = {}
        self.service_credentials = iam_user.ServiceCredentials(clock, self.account_id)
        with _lock:
            _worlds[self.account_id] = self
        self.url = _moto_server().url

    # -- moto backends ----------------------------------------------------------------------

    @property
    def iam(self) -> Any:  # moto's IAMBackend (moto is untyped)
        from moto.iam.models import iam_backends

        return iam_backends[self.account_id]["global"]

    @property
    def s3(self) -> Any:  # moto's S3Backend
        from moto.s3.models import s3_backends

        return s3_backends[self.account_id]["aws"]

    def backend_key(self, key_id: str) -> Any:
        from moto.iam.models import iam_backends

        if self.account_id not in iam_backends:
            return None
        key = self.iam.access_keys.get(key_id)
        return key if key is not None and key.user_name is not None else None

    def key_usable(self, key: Any) -> bool:
        now = self.clock.now()
        status = key.status
        change = self._status_changes.get(key.access_key_id)
        if change is not None and now < change[0] + timedelta(seconds=self.status_delay):
            status = change[1]  # the change has not reached every endpoint yet
        if status != "Active":
            return False
        return now >= utc(key.create_date) + timedelta(seconds=self.propagation_delay)

    def count(self, service: str, body: bytes, environ: dict[str, Any]) -> str:
        """Count the call (CloudTrail's and EC2's region lookups apart: evidence, not the
        rotation's own calls); returns its operation name."""
        operation = "?"
        if service in ("iam", "sts", "ec2") and body:
            params = parse_qs(body.decode(errors="replace"))
            operation = params.get("Action", ["?"])[0]
            if operation == "UpdateAccessKey":
                key_id = params.get("AccessKeyId", [""])[0]
                key = self.iam.access_keys.get(key_id)
                if key is not None:
                    self._status_changes[key_id] = (self.clock.now(), key.status)
        elif service == "s3":
            operation = environ.get("REQUEST_METHOD", "?")
            if operation == "GET" and environ.get("PATH_INFO", "/") in ("", "/"):
                operation = "ListBuckets"
        elif service == "cloudtrail":
            operation = environ.get("HTTP_X_AMZ_TARGET", "?").rpartition(".")[2]
        name = f"{service}:{operation}"
        with _lock:
            counts = self.evidence_calls if service in trail.SERVED else self.calls
            counts[name] = counts.get(name, 0) + 1
        return operation

    def answer_iam(self, service: str, body: bytes) -> tuple[int, str] | None:
        """What the gate answers itself instead of moto: DeleteUser's preconditions, and
        service-specific credentials. None: moto answers."""
        if service != "iam" or not body:
            return None
        params = parse_qs(body.decode(errors="replace"))
        action = params.get("Action", [""])[0]
        if action == "DeleteUser":
            user = params.get("UserName", [""])[0]
            conflict = iam_user.delete_conflict(self.iam, self.service_credentials, user)
            if conflict is not None:
                return iam_user.error_xml(409, "DeleteConflict", conflict)
            self.service_credentials.forget_user(user)
            return None
        if action in iam_user.ServiceCredentials.ACTIONS:
            return self.service_credentials.answer(action, body, self.iam)
        return None

    # -- seeding ----------------------------------------------------------------------------

    def create_operator(self, user: str = OPERATOR_USER) -> Pair:
        """The operator's own identity: a different IAM user with a key (the SOP's prerequisite)."""
        if user not in self.iam.users:
            self.iam.create_user(self.region, user_name=user, path="/")
        key = self._new_key(user, SeedKey(age=86400, last_used=None))
        self.operator = Pair(key.access_key_id, Secret(key.secret_access_key, "operator"))
        return self.operator

    def join_groups(self, user: str, groups: list[str]) -> None:
        for group in groups:
            iam_user.ensure_group(self.iam, group)
            self.iam.add_user_to_group(group, user)

    def create_user_with_key(self, user: str, groups: list[str]) -> Pair:
        """Another person's IAM user with one key (not the operator)."""
        if user not in self.iam.users:
            self.iam.create_user(self.region, user_name=user, path="/")
        self.join_groups(user, groups)
        key = self._new_key(user, SeedKey(age=86400, last_used=None))
        return Pair(key.access_key_id, Secret(key.secret_access_key, user))

    def pair_of(self, user: str) -> Pair | None:
        """The first Active key of `user`, with its secret as this process knows it."""
        found = self.iam.users.get(user)
        for key in list(found.access_keys) if found is not None else []:
            if key.status == "Active":
                return Pair(key.access_key_id, Secret(key.secret_access_key, user))
        return None

    def seed_user(
        self, name: str, keys: list[SeedKey], check_call: str | None = None, attached: iam_user.AttachmentSeed | None = None
    ) -> list[Pair]:
        if name not in self.iam.users:
            self.iam.create_user(self.region, user_name=name, path="/")
        pairs = [self._new_key(name, k) for k in keys]
        if attached is not None:
            iam_user.seed(self.iam, self.service_credentials, self.account_id, name, attached)
        if check_call:
            self.check_calls[name] = check_call
        return [Pair(k.access_key_id, Secret(k.secret_access_key, f"{name} key")) for k in pairs]

    def _new_key(self, user: str, seed: SeedKey) -> Any:
        from moto.iam.models import AccessKeyLastUsed

        key = self.iam.create_access_key(user, status=seed.status)
        now = self.clock.now().replace(tzinfo=None)
        key.create_date = now - timedelta(seconds=seed.age)
        if seed.last_used is not None:
            key.last_used = AccessKeyLastUsed(now - timedelta(seconds=seed.last_used), seed.service, self.region)
        return key

    def seed_bucket(self, name: str, objects: dict[str, int] | None = None) -> None:
        if name not in self.s3.buckets:
            from moto.s3.models import FakeBucket, s3_backends

            if name in s3_backends.bucket_accounts:
                # moto's bucket names are global across accounts; each world is its own
                # AWS, so another world's bucket of that name must not stand in the way.
                self.s3.buckets[name] = FakeBucket(name=name, account_id=self.account_id, region_name=self.region)  # type: ignore[abstract]  # moto's own constructor call
            else:
                self.s3.create_bucket(name, self.region)
        for obj, size in (objects or {}).items():
            self.s3.put_object(name, obj, b"x" * int(size))

    # -- clients and the probe --------------------------------------------------------------

    def client(self, service: str, pair: Pair | None = None, region: str | None = None, caller: trail.Caller | None = None) -> Any:
        """A real boto3 client pointed at this world, signed with `pair` (operator by
        default), in `region`, calling as `caller` (a simulated consumer's address and
        user agent; handrail's own by default)."""
        pair = pair or self.operator
        assert pair is not None, "create_operator() first"
        caller = caller or trail.HANDRAIL
        region = region or self.region
        cache_key = (service, f"{pair.key_id}:{pair.fingerprint()}", region, caller)
        with self._client_lock:
            client = self._clients.get(cache_key)
            if client is not None:
                self._clients.move_to_end(cache_key)
            else:
                client = _create_client(
                    service,
                    region_name=region,
                    # CloudTrail "unreachable": a port nobody listens on.
                    endpoint_url=trail.UNREACHABLE_URL if service == "cloudtrail" and self.trail.mode == "unreachable" else self.url,
                    aws_access_key_id=pair.key_id,
                    aws_secret_access_key=pair.secret.reveal(),
                    config_extra=caller.agent(),
                )
                caller.attach(client)
                self._clients[cache_key] = client
                self._evict()
            return client

    def set_cloudtrail(self, mode: str, delay: float | None = None) -> None:
        """CloudTrail `on`, `denied` or `unreachable` (clients made before are dropped)."""
        self.trail.mode = mode
        if delay is not None:
            self.trail.delay = delay
        with self._client_lock:
            for key in [k for k in self._clients if k[0] == "cloudtrail"]:
                self._clients.pop(key).close()

    def _evict(self) -> None:
        """Close the least recently used clients past the bound (never the operator's)."""
        operator = f"{self.operator.key_id}:{self.operator.fingerprint()}" if self.operator else None
        for key in list(self._clients):
            if len(self._clients) <= _MAX_CLIENTS:
                return
            if key[1] != operator:
                self._clients.pop(key).close()

    def probe(self, key_id: str, secret: Secret, call: str | None = None, caller: trail.Caller | None = None) -> tuple[bool, str]:
        """Use a pair the way a consumer's workload would (from its own address, with its
        own user agent): identity, then the user's check call."""
        from botocore.exceptions import BotoCoreError, ClientError

        pair = Pair(key_id, secret)
        caller = caller or trail.UNKNOWN
        try:
            arn = self.client("sts", pair, caller=caller).get_caller_identity()["Arn"]
            user = arn.rpartition("/")[2]
            call = call or self.check_calls.get(user)
            if call:
                from botocore import xform_name

                from steps.aws import parse_check_call

                parsed = parse_check_call(call)
                getattr(self.client(parsed.service, pair, caller=caller), xform_name(parsed.operation))(**parsed.params)
                return True, f"{arn}: {parsed.cli()} ok"
            return True, f"{arn}: ok"
        except ClientError as exc:
            err = exc.response.get("Error", {})
            return False, f"{err.get('Code')}: {err.get('Message')}"
        except BotoCoreError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    # -- the world as data ------------------------------------------------------------------

    def users(self) -> dict[str, Any]:
        out = {}
        # Copies first: a campaign's sessions create and delete keys while this reads.
        for name, user in sorted(list(self.iam.users.items())):
            keys = []
            for key in list(user.access_keys):
                last = key.last_used
                keys.append(
                    {
                        "id": key.access_key_id,
                        "status": key.status,
                        "created": iso(utc(key.create_date)),
                        "last_used": iso(utc(last.timestamp)) if last is not None else None,
                        "last_used_service": last.service if last is not None else None,
                        "fingerprint": Secret(key.secret_access_key).fingerprint(),
                    }
                )
            out[name] = {"arn": user.arn, "keys": keys, **iam_user.summary(iam_user.attachments(self.iam, self.service_credentials, name))}
        return out

    def secrets_by_key(self) -> dict[str, Secret]:
        """In memory only: each key's secret (the sandbox hands them to seeded holders)."""
        return {k: Secret(v.secret_access_key) for k, v in list(self.iam.access_keys.items()) if v.user_name}

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild this account, without a single secret value."""
        # Full precision: a use in the deactivation's second must stay before or after it.
        users = {}
        for name, user in list(self.iam.users.items()):
            users[name] = [
                {
                    "id": k.access_key_id,
                    "status": k.status,
                    "created": iso_full(k.create_date),
                    "last_used": iso_full(k.last_used.timestamp) if k.last_used is not None else None,
                    "service": k.last_used.service if k.last_used is not None else None,
                }
                for k in list(user.access_keys)
            ]
        buckets = {name: {key: len(obj.value) for key, obj in list(bucket.keys.items())} for name, bucket in list(self.s3.buckets.items())}
        return {
            "account_id": self.account_id,
            "propagation_delay": self.propagation_delay,
            "status_delay": self.status_delay,
            "users": users,
            # A user's id tells a re-created user from the original: a resumed session checks it.
            "user_ids": {name: user.id for name, user in list(self.iam.users.items())},
            "buckets": buckets,
            "check_calls": self.check_calls,
            "operator": self.operator.key_id if self.operator else None,
            # Everything else attached to each user, and the groups and policies they point
            # at (bodies of public keys and certificates, policy documents: no secrets).
            "account": iam_user.account_data(self.iam, self.account_id),
            "attachments": {name: iam_user.attachments(self.iam, self.service_credentials, name) for name in self.iam.users},
            # What CloudTrail logged (key ids, addresses, user agents: no secrets).
            "trail": self.trail.snapshot(),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], clock: Clock) -> tuple[AwsWorld, dict[str, Secret]]:
        """Rebuild from a snapshot. Secrets were never saved: every key gets a fresh one,
        returned by key id so the holders of a key can be given its new secret."""
        from moto.iam.models import AccessKeyLastUsed, iam_backends

        if snapshot["account_id"] in iam_backends and snapshot["account_id"] in _worlds:
            raise RuntimeError(f"simulated account {snapshot['account_id']} is already running in this process")
        world = cls(clock, snapshot["account_id"], snapshot.get("propagation_delay", 0.0), snapshot.get("status_delay", 0.0))
        world.check_calls = dict(snapshot.get("check_calls") or {})
        world.trail.restore(snapshot.get("trail") or {})
        secrets: dict[str, Secret] = {}
        for name, keys in snapshot["users"].items():
            if name not in world.iam.users:
                world.iam.create_user(world.region, user_name=name, path="/")
            if name in snapshot.get("user_ids", {}):
                world.iam.users[name].id = snapshot["user_ids"][name]
            for item in keys:
                key = world.iam.create_access_key(name, status=item["status"])
                # Give the key back its id: moto indexes keys by id in the backend.
                del world.iam.access_keys[key.access_key_id]
                key.access_key_id = item["id"]
                world.iam.access_keys[item["id"]] = key
                key.create_date = utc(datetime.fromisoformat(item["created"].replace("Z", "+00:00"))).replace(tzinfo=None)
                if item.get("last_used"):
                    when = utc(datetime.fromisoformat(item["last_used"].replace("Z", "+00:00"))).replace(tzinfo=None)
                    key.last_used = AccessKeyLastUsed(when, item.get("service") or "sts", world.region)
                secrets[item["id"]] = Secret(key.secret_access_key, f"{name} key")
        iam_user.restore_account(world.iam, world.account_id, snapshot.get("account") or {})
        for name, data in (snapshot.get("attachments") or {}).items():
            if name in world.iam.users:
                iam_user.restore_user(world.iam, world.service_credentials, name, data)
        for name, objects in snapshot.get("buckets", {}).items():
            world.seed_bucket(name, objects)
        if snapshot.get("operator"):
            world.operator = Pair(snapshot["operator"], secrets[snapshot["operator"]])
        return world, secrets

    def close(self) -> None:
        from moto.iam.models import iam_backends
        from moto.s3.models import s3_backends
        from moto.sts.models import sts_backends

        with _lock:
            _worlds.pop(self.account_id, None)
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self.account_id in s3_backends:
            for name in list(self.s3.buckets):
                if s3_backends.bucket_accounts.get(name, (None, None))[1] == self.account_id:
                    s3_backends.bucket_accounts.pop(name, None)
        for backends in (iam_backends, s3_backends, sts_backends):
            if self.account_id in backends:
                del backends[self.account_id]
