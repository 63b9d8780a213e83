"""A small client over the PolicyGrid HTTP API (standard library only).

Each method answers the envelope's ``data``; a failure envelope raises PolicyGridApiError with
the server's status, ``code`` and message, and an unreachable server raises
ServerUnreachableError (fail closed).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings as _warnings
from typing import Any

from .errors import PolicyGridApiError, PolicyGridWarning, ServerUnreachableError
from .json_values import encode as _encode_json

DEFAULT_SERVER = "http://127.0.0.1:10000"  # `policygrid serve` default
DEFAULT_TIMEOUT = 10.0
# A call that names timeout_seconds asks the server to let the policy run that long; the client waits that long, plus
# this for the server's own work around the policy (queueing, loading its bundle, the decision log), on top of `timeout`.
SERVER_MARGIN_SECONDS = 5.0


class Response:
    """The decoded ``data`` of a success envelope plus the response headers (ETag, Deprecation) and the envelope's
    ``warnings`` (each also issued as a PolicyGridWarning)."""

    __slots__ = ("data", "headers", "status", "enveloped", "warnings")

    def __init__(self, data: Any, headers: dict, status: int, enveloped: bool = False, warnings: list | None = None):
        self.data = data
        self.headers = headers
        self.status = status
        self.enveloped = enveloped  # the API's envelope, not a bare body (downloads, /healthz, a stranger's page)
        self.warnings = warnings or []

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_level() -> int:
    """The stacklevel of the first frame outside this package, so a warning names the caller's own line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR:
        frame, level = frame.f_back, level + 1
    return level


def _origin(url: str) -> tuple:
    parts = urllib.parse.urlsplit(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects of GET and HEAD (a bundle URL may), dropping the bearer token when one leads to another origin.
    A redirected POST, PUT or DELETE is not followed: urllib would send it on as a GET, which answers something else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.get_method() not in ("GET", "HEAD"):
            return None  # the 3xx is then raised as it came, and _decode names where it pointed
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


class _Deadline:
    """A whole call's time limit. The socket timeout bounds each read only, so a server that sends a byte now and
    then could hold a caller for ever; when this deadline passes, every socket the call opened is shut, which ends
    whatever read is blocked, and the call raises ServerUnreachableError."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sockets: list = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def track(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


_CALL = threading.local()  # the _Deadline of the call this thread is making, if any


def _track(conn) -> None:
    deadline = getattr(_CALL, "deadline", None)
    if deadline is not None and conn.sock is not None:
        deadline.track(conn.sock)


def _connect(conn, connect) -> None:
    """Connects within the client's own timeout even when the call waits longer for its answer (a long poll, a policy
    given timeout_seconds): a server that is not there still fails the call fast."""
    limit = getattr(_CALL, "connect_timeout", None)
    waits = conn.timeout
    if limit is None or not isinstance(waits, (int, float)) or limit >= waits:
        connect()
    else:
        conn.timeout = limit
        try:
            connect()
        finally:
            conn.timeout = waits
        conn.sock.settimeout(waits)
    _track(conn)


def _send(send, data) -> None:
    """Sends a request's bytes. A server may answer before it has read the whole body (a 413 for a body past its limit)
    and close the connection: the rest of the body then fails with a broken pipe, which raised ServerUnreachableError
    ("cannot reach", a 503 a caller may retry for ever) instead of the server's answer. That answer is read instead; a
    server that really went away fails that read, which raises ServerUnreachableError as before."""
    try:
        send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _TrackedHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        _connect(self, super().connect)

    def send(self, data):
        _send(super().send, data)


class _TrackedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        _connect(self, super().connect)

    def send(self, data):
        _send(super().send, data)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_TrackedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        kwargs = {"context": self._context}
        if hasattr(self, "_check_hostname"):  # Python < 3.12
            kwargs["check_hostname"] = self._check_hostname
        return self.do_open(_TrackedHTTPSConnection, req, **kwargs)


_OPENER = urllib.request.build_opener(_TokenStaysHome, _HTTPHandler, _HTTPSHandler)


def _server_time(timeout_seconds: Any) -> float:
    """How long past its own timeout the client waits for a call that gives the server ``timeout_seconds``: that deadline
    plus the server's margin. Without one (or with one the server will refuse at once) nothing is added."""
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or not 0 < timeout_seconds < float("inf"):
        return 0
    return timeout_seconds + SERVER_MARGIN_SECONDS


def _quote_uri(uri: str) -> str:
    # Policy URIs contain ':' which is legal in a path segment; '/' and spaces are not allowed in them.
    return urllib.parse.quote(uri, safe=":@-._~")


class PolicyGridClient:
    def __init__(self, server: str | None = None, token: str | None = None, timeout: float | None = None):
        # A wrong type is named here: it used to fail as "'int' object has no attribute 'rstrip'" (server=10000) or be sent
        # as "Bearer 5" (token=5).
        for name, value in (("server", server), ("token", token)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__} ({value!r:.60})")
        source = "server" if server else "POLICYGRID_SERVER" if os.environ.get("POLICYGRID_SERVER") else "server"
        self.server = (server or os.environ.get("POLICYGRID_SERVER") or DEFAULT_SERVER).rstrip("/")
        parts = urllib.parse.urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Caught here: urllib would fail on the first call with "unknown url type", and an ftp:// URL hangs a timeout.
            raise ValueError(f"{source} must be an http(s) URL such as {DEFAULT_SERVER}, not {self.server!r}")
        self.token = token if token is not None else os.environ.get("POLICYGRID_TOKEN")
        try:
            self.timeout = float(timeout if timeout is not None else DEFAULT_TIMEOUT)
        except (TypeError, ValueError):
            raise ValueError(f"timeout must be a number of seconds, not {timeout!r}") from None
        # Past threading.TIMEOUT_MAX the whole-call timer raised OverflowError on its own thread (timeout=1e12).
        if not 0 < self.timeout <= threading.TIMEOUT_MAX:
            raise ValueError(f"timeout must be a finite number of seconds above 0 and at most {threading.TIMEOUT_MAX:g}, not {timeout!r}")

    # ------------------------------------------------------------ transport
    def request(self, method: str, path: str, body: Any = None, *, headers: dict | None = None,
                raw: bytes | None = None, content_type: str | None = None, whole_call_timeout: bool = True,
                held_seconds: float = 0) -> Response:
        """One call. ``timeout`` bounds the whole call (connect, request, answer), not just each read; with
        ``whole_call_timeout=False`` it bounds each read only (a server that trickles its answer can then hold the
        call for as long as it likes: nothing in this package uses it). ``held_seconds``
        is how long the server was asked to hold its answer (a long poll), allowed on top of ``timeout``."""
        timeout = min(self.timeout + (held_seconds if held_seconds > 0 else 0), threading.TIMEOUT_MAX)  # NaN adds nothing
        deadline = _Deadline(timeout) if whole_call_timeout else None
        _CALL.deadline = deadline
        _CALL.connect_timeout = self.timeout
        try:
            response = self._request(method, path, body, headers, raw, content_type, timeout)
        except PolicyGridApiError as e:
            if deadline is not None and deadline.expired:
                raise ServerUnreachableError(self.server, f"no complete answer within {timeout:g} s") from e
            raise
        finally:
            _CALL.deadline = None
            _CALL.connect_timeout = None
            if deadline is not None:
                deadline.cancel()
        if deadline is not None and deadline.expired:
            # A body read until the connection closed can end early without an error.
            raise ServerUnreachableError(self.server, f"no complete answer within {timeout:g} s")
        return response

    def _request(self, method: str, path: str, body: Any, headers: dict | None,
                 raw: bytes | None, content_type: str | None, timeout: float) -> Response:
        url = path if path.startswith(("http://", "https://")) else self.server + path
        data = None
        hdrs = {"Accept": "application/json"}
        if raw is not None:
            data = raw
            hdrs["Content-Type"] = content_type or "application/octet-stream"
        elif body is not None:
            data = _encode_json(body, "body").encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif method in ("POST", "PUT"):
            data = b""
        # The token is for this server only: a policy's `code` URL may name any writer's host.
        if self.token and _origin(url) == _origin(self.server):
            hdrs["Authorization"] = f"Bearer {self.token}"
        if headers:
            hdrs.update(headers)
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                payload = resp.read()
                return self._decode(resp.status, dict((k.lower(), v) for k, v in resp.headers.items()), payload, url)
        except urllib.error.HTTPError as e:
            try:
                payload = e.read()
            except (http.client.HTTPException, OSError):
                payload = b""  # the status alone still says what failed
            headers_ = dict((k.lower(), v) for k, v in (e.headers or {}).items())
            return self._decode(e.code, headers_, payload, url)
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, ConnectionRefusedError):
                # Nothing listens there: the usual cause is a server not started yet, or the wrong address. Say the fix.
                reason = f"{reason} (is `policygrid serve` running there? pass server= or set POLICYGRID_SERVER to point elsewhere)"
            raise ServerUnreachableError(self.server, str(reason)) from e
        except http.client.HTTPException as e:
            # Not an HTTP answer, or one cut short: no PolicyGrid answered, so the call fails closed the same way.
            raise ServerUnreachableError(self.server, f"broken HTTP answer: {type(e).__name__}: {e!s:.200}") from e

    def _decode(self, status: int, headers: dict, payload: bytes, url: str) -> Response:
        ctype = headers.get("content-type", "")
        if status == 200 and "json" not in ctype:
            return Response(payload, headers, status)  # bundle downloads, diagrams
        try:
            envelope = json.loads(payload.decode("utf-8")) if payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            envelope = None
        if isinstance(envelope, dict) and "success" in envelope:
            if envelope["success"] is True and status == 200:
                said = [str(w) for w in envelope.get("warnings") or [] if w is not None]
                for warning in said:
                    _warnings.warn(warning, PolicyGridWarning, stacklevel=_caller_level())
                return Response(envelope.get("data"), headers, status, enveloped=True, warnings=said)
            message = str(envelope.get("message") or f"HTTP {status}")
            if status == 401 and _origin(url) == _origin(self.server):
                # The server speaks HTTP ("send 'Authorization: Bearer <token>'"); an SDK caller gives the token here.
                # Not for another origin (a bundle URL): the token is never sent there, so it is no fix.
                message += ("; the token given with token= or POLICYGRID_TOKEN is not one the server accepts" if self.token
                            else "; give the SDK an API token with token= or the environment variable POLICYGRID_TOKEN")
            raise PolicyGridApiError(status, str(envelope.get("code") or _code_for(status)), message,
                                     envelope.get("errors") or [])
        if status == 200:
            # Outside the envelope (/healthz etc.): hand back what came.
            return Response(envelope if envelope is not None else payload, headers, status)
        if 300 <= status < 400:
            raise PolicyGridApiError(status, _code_for(status),
                                     f"{url} answered HTTP {status} pointing at {headers.get('location', '(no Location)')}; "
                                     "redirects of POST, PUT and DELETE are not followed: give the PolicyGrid server's own URL")
        # A proxy's error page is many lines of HTML: one line of it, so a log line stays one line.
        text = " ".join(payload[:300].decode("utf-8", "replace").split()) or "(an empty body)"
        raise PolicyGridApiError(status, _code_for(status), f"{url} answered HTTP {status} without an envelope: {text}")

    # ------------------------------------------------------------ policies
    def create_policy(self, document: dict) -> dict:
        return self.request("POST", "/policy", document).data

    def get_policy(self, uri: str) -> dict:
        return self.request("GET", f"/policy/{_quote_uri(uri)}").data

    def get_policy_with_etag(self, uri: str) -> Response:
        return self.request("GET", f"/policy/{_quote_uri(uri)}")

    def update_policy(self, uri: str, update: dict, if_match: str | None = None) -> dict:
        return self.request("PUT", f"/policy/{_quote_uri(uri)}", update, headers=_if_match(if_match)).data

    def delete_policy(self, uri: str, force: bool = False, if_match: str | None = None) -> dict:
        return self.request("DELETE", f"/policy/{_quote_uri(uri)}" + ("?force=true" if force else ""),
                            headers=_if_match(if_match)).data

    def query_policies(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/policy/query" + _paging(paging), filter or {}).data

    # ------------------------------------------------------------ executors (Type 2)
    def create_executor(self, document: dict) -> dict:
        return self.request("POST", "/executor", document).data

    def get_executor(self, executor_id: str) -> dict:
        return self.request("GET", f"/executor/{_quote_uri(executor_id)}").data

    def get_executor_with_etag(self, executor_id: str) -> Response:
        return self.request("GET", f"/executor/{_quote_uri(executor_id)}")

    def update_executor(self, executor_id: str, update: dict, if_match: str | None = None) -> dict:
        return self.request("PUT", f"/executor/{_quote_uri(executor_id)}", update, headers=_if_match(if_match)).data

    def delete_executor(self, executor_id: str, if_match: str | None = None) -> dict:
        return self.request("DELETE", f"/executor/{_quote_uri(executor_id)}", headers=_if_match(if_match)).data

    def query_executors(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/executor/query" + _paging(paging), filter or {}).data

    def execute_policy(self, executor_id: str, policy_rule_uri: str, input_data: Any, *,
                       parameters: dict | None = None, settings: dict | None = None,
                       context_key: str | None = None, timeout_seconds: float | None = None) -> Any:
        return self._execute_policy_response(executor_id, policy_rule_uri, input_data, parameters=parameters, settings=settings,
                                             context_key=context_key, timeout_seconds=timeout_seconds).data

    def _execute_policy_response(self, executor_id: str, policy_rule_uri: str, input_data: Any, *,
                                 parameters: dict | None = None, settings: dict | None = None,
                                 context_key: str | None = None, timeout_seconds: float | None = None) -> Response:
        """execute_policy with the answer's headers (a deprecated policy's ``Deprecation``)."""
        body: dict = {"policy_rule_uri": policy_rule_uri, "input_data": input_data}
        if parameters:
            body["parameters"] = parameters
        if settings:
            body["settings"] = settings
        if context_key is not None:
            body["context_key"] = context_key
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        return self._enveloped_response("POST", f"/executor/{_quote_uri(executor_id)}/execute_policy", body,
                                        held_seconds=_server_time(timeout_seconds))

    def management(self, executor_id: str, policy_rule_uri: str, action: str, data: Any = None, *,
                   parameters: dict | None = None, settings: dict | None = None, timeout_seconds: float | None = None) -> Any:
        return self._management_response(executor_id, policy_rule_uri, action, data, parameters=parameters, settings=settings,
                                         timeout_seconds=timeout_seconds).data

    def _management_response(self, executor_id: str, policy_rule_uri: str, action: str, data: Any = None, *,
                             parameters: dict | None = None, settings: dict | None = None,
                             timeout_seconds: float | None = None) -> Response:
        """management with the answer's headers (a deprecated policy's ``Deprecation``)."""
        body: dict = {"policy_rule_uri": policy_rule_uri, "action": action, "data": data if data is not None else {}}
        if parameters:
            body["parameters"] = parameters
        if settings:
            body["settings"] = settings
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        return self._enveloped_response("POST", f"/executor/{_quote_uri(executor_id)}/management", body,
                                        held_seconds=_server_time(timeout_seconds))

    def create_infra(self, executor_id: str, cluster_config: dict) -> Any:
        """POST /executor/{id}/create-infra: installs an executor node into the cluster the kubeconfig names (used once,
        not kept)."""
        return self.request("POST", f"/executor/{_quote_uri(executor_id)}/create-infra", {"cluster_config": cluster_config}).data

    def remove_infra(self, executor_id: str, cluster_config: dict) -> Any:
        return self.request("DELETE", f"/executor/{_quote_uri(executor_id)}/remove-infra", {"cluster_config": cluster_config}).data

    def _enveloped(self, method: str, path: str, body: Any, held_seconds: float = 0) -> Any:
        """``data`` of a route that answers the envelope: a 200 without one (a proxy's page, another server) is never
        taken for a policy's result or a command's None."""
        return self._enveloped_response(method, path, body, held_seconds).data

    def _enveloped_response(self, method: str, path: str, body: Any, held_seconds: float = 0) -> Response:
        response = self.request(method, path, body, held_seconds=held_seconds)
        if not response.enveloped:
            raise PolicyGridApiError(502, "backend_error", f"{method} {path} on {self.server} answered {response.status} "
                                     f"without a PolicyGrid envelope ({response.headers.get('content-type', 'no Content-Type')}): "
                                     "is the server a PolicyGrid?")
        return response

    # ------------------------------------------------------------ bundles and decisions
    def upload_bundle(self, archive: bytes, content_type: str = "application/zip") -> dict:
        """Stores an archive; answers {"code", "sha256", "size", "url"}."""
        return self.request("POST", "/bundles", raw=archive, content_type=content_type).data

    def download_bundle(self, sha256_or_url: str) -> bytes:
        """The archive, whole within ``timeout`` (as every call, and as the .NET client): a bundle URL that trickled its
        bytes in one at a time held the thread loading the policy (and every call waiting on it) for as long as it
        liked, since only each read was bounded. It raises ServerUnreachableError, as a server stalling mid-answer does."""
        path = sha256_or_url if "/" in sha256_or_url else f"/bundles/sha256/{sha256_or_url}"
        data = self.request("GET", path, headers={"Accept": "*/*"}).data
        if not isinstance(data, (bytes, bytearray)):
            raise PolicyGridApiError(502, "backend_error", f"{path} did not answer an archive")
        return bytes(data)

    def query_decisions(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/decisions/query" + _paging(paging), filter or {}).data

    # ------------------------------------------------------------ jobs, functions, graphs (by path)
    def submit_job(self, body: dict, executor_id: str = "") -> dict:
        return self.request("POST", f"/jobs/submit/{_quote_uri(executor_id)}" if executor_id else "/jobs/submit", body).data

    def get_job(self, job_id: str, wait: float | None = None) -> dict:
        """The job's record; with ``wait`` the server holds the answer until the job ends (or that many seconds pass,
        at most its own limit), and the client waits that long on top of ``timeout``."""
        return self.request("GET", f"/jobs/{job_id}" + (f"?wait={wait:g}" if wait else ""), held_seconds=wait or 0).data

    def cancel_job(self, job_id: str) -> dict:
        return self.request("DELETE", f"/jobs/{job_id}").data

    def query_jobs(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/jobs/query" + _paging(paging), filter or {}).data

    def create_function(self, body: dict, executor_id: str = "") -> dict:
        return self.request("POST", f"/function/deployments/create/{_quote_uri(executor_id)}", body).data

    def remove_function(self, name: str, if_match: str | None = None) -> dict:
        return self.request("DELETE", f"/function/deployments/remove/{_quote_uri(name)}", headers=_if_match(if_match)).data

    def call_function(self, name: str, input_data: Any) -> Any:
        return self._enveloped("POST", f"/function/call_function/{_quote_uri(name)}", input_data)

    def function_management(self, name: str, action: str, data: Any = None) -> Any:
        return self._enveloped("POST", f"/function/{_quote_uri(name)}/management", {"action": action, "data": data if data is not None else {}})

    def get_function(self, function_id: str) -> dict:
        return self.request("GET", f"/function/{_quote_uri(function_id)}").data

    def query_functions(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/function/query" + _paging(paging), filter or {}).data

    def create_graph(self, document: dict) -> dict:
        return self.request("POST", "/graphs", document).data

    def get_graph(self, uri: str) -> dict:
        return self.request("GET", f"/graphs/{_quote_uri(uri)}").data

    def get_graph_with_etag(self, uri: str) -> Response:
        return self.request("GET", f"/graphs/{_quote_uri(uri)}")

    def update_graph(self, uri: str, update: dict, if_match: str | None = None) -> dict:
        return self.request("PUT", f"/graphs/{_quote_uri(uri)}", update, headers=_if_match(if_match)).data

    def delete_graph(self, uri: str, if_match: str | None = None) -> dict:
        return self.request("DELETE", f"/graphs/{_quote_uri(uri)}", headers=_if_match(if_match)).data

    def query_graphs(self, filter: dict | None = None, **paging) -> list:
        return self.request("POST", "/graphs/query" + _paging(paging), filter or {}).data

    def execute_graph(self, graph_uri: str, input_data: Any, trace: bool = False, async_: bool = False,
                      timeout_seconds: float | None = None) -> Any:
        body: dict = {"graph_uri": graph_uri, "input_data": input_data}
        if trace:
            body["trace"] = True
        if async_:
            body["async"] = True
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        return self._enveloped("POST", "/graph/execute_graph", body, held_seconds=0 if async_ else _server_time(timeout_seconds))

    def graph_diagram(self, graph_uri: str) -> str:
        """GET /graphs/{uri}/diagram: the graph as a Mermaid flowchart (text/vnd.mermaid)."""
        path = f"/graphs/{_quote_uri(graph_uri)}/diagram"
        response = self.request("GET", path, headers={"Accept": "text/vnd.mermaid, text/plain, */*"})
        if response.enveloped or not isinstance(response.data, (bytes, bytearray)):
            raise PolicyGridApiError(502, "backend_error", f"GET {path} on {self.server} answered "
                                     f"{response.headers.get('content-type', 'no Content-Type')}, not a Mermaid diagram")
        return bytes(response.data).decode("utf-8")

    def get_graph_execution(self, execution_id: str) -> dict:
        return self.request("GET", f"/graph/executions/{execution_id}").data

    def cancel_graph_execution(self, execution_id: str) -> dict:
        """Cancels a running async graph run; answers its record (one that already ended, unchanged)."""
        return self.request("DELETE", f"/graph/executions/{execution_id}").data

    def health(self) -> Any:
        return self.request("GET", "/healthz").data


def _if_match(etag: str | None) -> dict | None:
    """The If-Match header of a conditional write (the ETag a read answered, e.g. ``'"7"'``), or none. An empty
    string is sent as it is, for the server to refuse: it is an unset variable, never "no condition"."""
    return None if etag is None else {"If-Match": etag}


def _paging(paging: dict) -> str:
    allowed = {k: v for k, v in paging.items() if k in ("limit", "skip", "sort") and v is not None}
    unknown = set(paging) - {"limit", "skip", "sort"}
    if unknown:
        raise TypeError(f"unknown query options: {', '.join(sorted(unknown))} (use limit, skip, sort)")
    return ("?" + urllib.parse.urlencode(allowed)) if allowed else ""


# 412: a precondition (If-Match) failed at a proxy or gateway; PolicyGrid itself answers 409.
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "conflict",
          410: "retired", 413: "too_large", 422: "policy_error", 429: "overloaded", 502: "backend_error",
          503: "backend_unavailable", 504: "policy_timeout"}


def _code_for(status: int) -> str:
    return _CODES.get(status, "backend_error")
