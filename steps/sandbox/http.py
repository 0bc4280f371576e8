"""A small loopback HTTP server for the sandbox's fake vendor APIs.

Each fake API (Infisical, Heroku, GitHub) registers named routes (werkzeug `Rule`s in
one `Map`) on a `LoopbackServer`; the server binds 127.0.0.1 on a free port, serves in
a daemon thread, counts the calls each route receives, and can be told to fail a route
N times (fault injection for training scenarios and tests). A request no route
matches is answered 404 and counted as "unmatched".
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Handler = Callable[..., "Reply"]


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug logs every request to stderr; the sandbox keeps the terminal clean."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass


class PooledWSGIServer(BaseWSGIServer):
    """werkzeug's threaded server starts a thread per request; a campaign makes tens of
    thousands of them. This one hands each request to a pool of threads made once."""

    multithread = True
    WORKERS = 32  # more than a campaign's drivers and their consumers' calls at once

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        super().__init__(*args, **kwargs)
        self._pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="sandbox-http")

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class OneRequestHandler(QuietRequestHandler):
    """One request per connection: a kept-alive connection would hold a pooled thread
    while its client idles (werkzeug turns keep-alive on for a threaded server)."""

    protocol_version = "HTTP/1.0"
    timeout = 60  # a client that connects and sends nothing gives its thread back


def serve(app: Any) -> PooledWSGIServer:
    """`app` on 127.0.0.1, a free port, requests handled by a pool of threads."""
    loopback_bypasses_proxies()
    return PooledWSGIServer("127.0.0.1", 0, app, handler=OneRequestHandler)


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_NO_PROXY = ("NO_PROXY", "no_proxy")
_LOOPBACK = ("127.0.0.1", "localhost")


def loopback_bypasses_proxies() -> bool:
    """Loopback goes in NO_PROXY wherever a proxy is set (True then). The clients
    (requests under PyGithub and infisicalsdk, botocore) send every host not in NO_PROXY
    to the proxy, which cannot reach this machine's loopback: on a laptop with HTTP_PROXY
    set, a training rotation failed at step 1 with "connection refused". Both spellings
    get the same list (requests reads no_proxy first, so one alone would hide the other's)."""
    if not any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return False
    listed = [host.strip() for name in _NO_PROXY for host in os.environ.get(name, "").split(",")]
    hosts = dict.fromkeys(host for host in [*listed, *_LOOPBACK] if host)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(hosts)
    return True


def proxy_exemptions() -> dict[str, str]:
    """NO_PROXY and no_proxy as a process talking to the sandbox needs them: for the
    environment `sandbox serve` hands out (empty where no proxy is set)."""
    if not loopback_bypasses_proxies():
        return {}
    return {name: os.environ[name] for name in _NO_PROXY}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes/str sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def to_response(self) -> Response:
        if isinstance(self.body, (bytes, str)):
            data, mimetype = self.body, self.headers.get("Content-Type", "text/plain")
        elif self.body is None and self.status == 204:
            data, mimetype = b"", "application/json"
        else:
            data, mimetype = json.dumps(self.body), "application/json"
        return Response(data, status=self.status, headers=self.headers, mimetype=mimetype)


@dataclass
class Fault:
    """Fail the next `times` calls to a route with `status` (and an optional body)."""

    times: int
    status: int = 500
    body: Any = None


class Refusal(Exception):
    """Raised by a handler (or a lookup it calls) to answer `reply` at once, e.g. the
    API's 404 for a resource that does not exist."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _rule(path: str, method: str, name: str) -> Rule:
    rule = Rule(path, methods=[method], endpoint=name)
    # werkzeug also answers HEAD on a GET rule; the fakes answer only what they declare.
    rule.methods = {method}
    return rule


Route = tuple[str, str, str]  # (name, method, path)

# One Map per route table in the process: werkzeug compiles each rule into Python code
# (a few ms apiece), and every world starts its own fake APIs with the same routes. A
# Map only turns a path into a route name; the handlers stay each server's own.
_maps: dict[tuple[Route, ...], Map] = {}
_maps_lock = threading.Lock()


def _map_for(routes: tuple[Route, ...]) -> Map:
    with _maps_lock:
        routing = _maps.get(routes)
        if routing is None:
            # No slash merging: "/apps//x" is no route, not a redirect to "/apps/x".
            routing = _maps[routes] = Map([_rule(path, method, name) for name, method, path in routes], merge_slashes=False)
        return routing


class LoopbackServer:
    """A threaded WSGI server on 127.0.0.1 with named routes, call counts and faults."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._routes: list[Route] = []
        self._map: Map | None = None  # made from _routes when first needed
        self._handlers: dict[str, Handler] = {}
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes and faults -------------------------------------------------------------

    def add(self, name: str, method: str, path: str, handler: Handler) -> None:
        """Route `method path` (werkzeug rule syntax: "/apps/<app>") to `handler`,
        called as handler(request, **values); `name` is what calls and faults use."""
        if name in self._handlers:
            raise ValueError(f"{self.name}: route {name!r} is already registered")
        self._routes.append((name, method, path))
        self._handlers[name] = handler
        self._map = None

    def fail(self, route_name: str, times: int = 1, status: int = 500, body: Any = None) -> None:
        """Make the next `times` calls to `route_name` answer `status`."""
        if route_name not in self._handlers:
            raise KeyError(f"{self.name}: no route named {route_name!r}")
        with self._lock:
            self._faults[route_name] = Fault(times, status, body)

    def route_names(self) -> list[str]:
        return list(self._handlers)

    # -- serving -----------------------------------------------------------------------

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            name, values = self._routing().bind_to_environ(environ).match()
        except (NotFound, MethodNotAllowed, RequestRedirect):
            # A wrong method is a 404 too: GitHub, Heroku and Infisical answer 404, not 405;
            # and no redirects (e.g. to add a slash): the real APIs do not send them.
            reply = self._unmatched(request)
        else:
            reply = self._faulted(name) or self._handle(name, request, values)
        return reply.to_response()(environ, start_response)

    def _routing(self) -> Map:
        routing = self._map
        if routing is None:
            routing = self._map = _map_for(tuple(self._routes))
        return routing

    def _faulted(self, name: str) -> Reply | None:
        """Count the call; the injected fault's answer if one is pending."""
        with self._lock:
            self.calls[name] += 1
            fault = self._faults.get(name)
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[name]
        body = fault.body if fault.body is not None else {"message": "Internal Server Error (sandbox fault)"}
        return Reply(fault.status, body)

    def _handle(self, name: str, request: Request, values: Mapping[str, Any]) -> Reply:
        try:
            return self._handlers[name](request, **values)
        except Refusal as refusal:
            return refusal.reply
        except Exception as exc:  # a bug in a fake API must show, not hang the client
            return Reply(500, {"message": f"sandbox {self.name} error: {type(exc).__name__}: {exc}"})

    def _unmatched(self, request: Request) -> Reply:
        with self._lock:
            self.calls["unmatched"] += 1
        return Reply(404, {"message": f"sandbox {self.name}: no route for {request.method} {request.path}"})

    def start(self) -> LoopbackServer:
        self._routing()
        self._server = serve(self._app)
        # A short poll interval: stop() waits for serve_forever to notice, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeApi:
    """What the fake vendor APIs share: a LoopbackServer, its lifecycle, its call counts
    and its faults. Subclasses set `self.server` and register routes on it."""

    server: LoopbackServer

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def calls(self) -> Counter[str]:
        return self.server.calls

    def fail(self, route_name: str, times: int = 1, status: int = 500, body: Any = None) -> None:
        self.server.fail(route_name, times, status, body)
