"""Envelope decoding and fail-closed transport of PolicyGridClient."""
import http.server
import json
import os
import threading
import time
import unittest
import warnings
from unittest import mock

import support  # noqa: F401  (puts the SDK on the path when it is not installed)
from policygrid import PolicyGridApiError, PolicyGridClient, PolicyGridWarning, ServerUnreachableError


class CannedServer:
    """Answers every request with one canned (status, body, content type)."""

    def __init__(self):
        self.answer = (200, b"{}", "application/json")
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                status, body, ctype = outer.answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class EnvelopeTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.canned = CannedServer()

    @classmethod
    def tearDownClass(cls):
        cls.canned.close()

    def answer(self, status, body, ctype="application/json"):
        self.canned.answer = (status, json.dumps(body).encode() if not isinstance(body, bytes) else body, ctype)

    def test_success_answers_data(self):
        self.answer(200, {"success": True, "data": {"policy_rule_uri": "a:1-b"}})
        self.assertEqual(PolicyGridClient(self.canned.url).get_policy("a:1-b"), {"policy_rule_uri": "a:1-b"})

    def test_warnings_of_a_success_are_issued_at_the_callers_line_and_kept_on_the_response(self):
        said = "'policy_paramters' is not a field of a policy and was not stored; did you mean 'policy_parameters'?"
        self.answer(200, {"success": True, "data": {"policy_rule_uri": "a:1-b"}, "warnings": [said]})
        client = PolicyGridClient(self.canned.url)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = client.create_policy({"name": "a"})
        self.assertEqual(data, {"policy_rule_uri": "a:1-b"})
        self.assertEqual([(w.category, str(w.message)) for w in caught], [(PolicyGridWarning, said)])
        self.assertEqual(caught[0].filename, __file__)  # the call above, not a line inside the SDK
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(client.request("GET", "/policy/a:1-b").warnings, [said])
        with warnings.catch_warnings():
            warnings.simplefilter("error", PolicyGridWarning)
            with self.assertRaises(PolicyGridWarning):
                client.create_policy({"name": "a"})

    def test_a_success_without_warnings_issues_none(self):
        self.answer(200, {"success": True, "data": {}})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            response = PolicyGridClient(self.canned.url).request("GET", "/policy/a:1-b")
        self.assertEqual((caught, response.warnings), ([], []))

    def test_failure_envelope_raises_with_status_code_message_and_field_errors(self):
        self.answer(400, {"success": False, "code": "validation_failed", "message": "name: is required",
                          "errors": [{"path": "name", "message": "is required"}]})
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).create_policy({})
        e = caught.exception
        self.assertEqual((e.status, e.code, e.message), (400, "validation_failed", "name: is required"))
        self.assertEqual(e.errors[0]["path"], "name")

    def test_retired_and_timeout_codes_come_through(self):
        for status, code in ((410, "retired"), (504, "policy_timeout"), (429, "overloaded")):
            self.answer(status, {"success": False, "code": code, "message": "x"})
            with self.assertRaises(PolicyGridApiError) as caught:
                PolicyGridClient(self.canned.url).execute_policy("local", "a:1-b", {})
            self.assertEqual((caught.exception.status, caught.exception.code), (status, code))

    def test_success_false_with_200_still_raises(self):
        self.answer(200, {"success": False, "code": "conflict", "message": "odd server"})
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).get_policy("a:1-b")
        self.assertEqual(caught.exception.code, "conflict")

    def test_error_without_envelope_raises_with_the_status(self):
        self.answer(502, b"<html>bad gateway</html>", "text/html")
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).get_policy("a:1-b")
        self.assertEqual((caught.exception.status, caught.exception.code), (502, "backend_error"))
        self.assertIn("bad gateway", caught.exception.message)

    def test_an_error_page_without_envelope_is_told_on_one_line(self):
        self.answer(502, b"<html>\n  <body>\r\n    bad gateway\n  </body>\n</html>\n", "text/html")
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).get_policy("a:1-b")
        self.assertTrue(caught.exception.message.endswith("without an envelope: <html> <body> bad gateway </body> </html>"), caught.exception.message)
        self.answer(503, b"", "text/plain")
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).get_policy("a:1-b")
        self.assertTrue(caught.exception.message.endswith("without an envelope: (an empty body)"), caught.exception.message)

    def test_if_match_is_sent_and_a_gateway_s_412_is_a_conflict(self):
        # A proxy that checks If-Match itself answers 412 without an envelope; it was reported as a backend_error.
        self.answer(412, b"precondition failed", "text/plain")
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url).update_executor("edge-1", {"$set": {}}, if_match='"7"')
        self.assertEqual((caught.exception.status, caught.exception.code), (412, "conflict"))
        method, path, headers, _ = self.canned.seen[-1]
        self.assertEqual((method, path, headers.get("If-Match")), ("PUT", "/executor/edge-1", '"7"'))

    def test_bearer_token_and_json_body_are_sent(self):
        self.answer(200, {"success": True, "data": {"allowed": True}})
        PolicyGridClient(self.canned.url, token="s3cret").execute_policy("local", "a:1-b", {"ip": "1.2.3.4"}, parameters={"k": 1})
        method, path, headers, body = self.canned.seen[-1]
        self.assertEqual((method, path), ("POST", "/executor/local/execute_policy"))
        self.assertEqual(headers.get("Authorization"), "Bearer s3cret")
        self.assertEqual(json.loads(body), {"policy_rule_uri": "a:1-b", "input_data": {"ip": "1.2.3.4"}, "parameters": {"k": 1}})

    def test_the_calls_the_dotnet_client_has_are_here_too_infra_and_the_graph_diagram(self):
        # create-infra, remove-infra and the diagram were reachable only through request() in Python.
        client = PolicyGridClient(self.canned.url)
        self.answer(200, {"success": True, "data": {"executor_id": "edge-1"}})
        self.assertEqual(client.create_infra("edge-1", {"apiVersion": "v1"}), {"executor_id": "edge-1"})
        method, path, _, body = self.canned.seen[-1]
        self.assertEqual((method, path, json.loads(body)), ("POST", "/executor/edge-1/create-infra", {"cluster_config": {"apiVersion": "v1"}}))
        client.remove_infra("edge-1", {"apiVersion": "v1"})
        method, path, _, body = self.canned.seen[-1]
        self.assertEqual((method, path, json.loads(body)), ("DELETE", "/executor/edge-1/remove-infra", {"cluster_config": {"apiVersion": "v1"}}))

        self.answer(200, "flowchart TD\n    n0([\"allow\"])\n".encode(), "text/vnd.mermaid")
        self.assertEqual(client.graph_diagram("admission:1.0-beta"), 'flowchart TD\n    n0(["allow"])\n')
        self.assertEqual(self.canned.seen[-1][:2], ("GET", "/graphs/admission:1.0-beta/diagram"))
        self.answer(200, {"success": True, "data": {"graph_uri": "admission:1.0-beta"}})
        with self.assertRaises(PolicyGridApiError) as caught:
            client.graph_diagram("admission:1.0-beta")
        self.assertEqual(caught.exception.code, "backend_error")
        self.answer(404, {"success": False, "code": "not_found", "message": "no graph 'x:1-b' is registered"})
        with self.assertRaises(PolicyGridApiError) as caught:
            client.graph_diagram("x:1-b")
        self.assertEqual(caught.exception.status, 404)

    def test_an_async_graph_run_is_cancelled_with_a_delete_of_its_execution(self):
        client = PolicyGridClient(self.canned.url)
        self.answer(200, {"success": True, "data": {"execution_id": "e1", "status": "cancelled"}})
        self.assertEqual(client.cancel_graph_execution("e1")["status"], "cancelled")
        self.assertEqual(self.canned.seen[-1][:2], ("DELETE", "/graph/executions/e1"))

    def test_query_paging_goes_into_the_query_string(self):
        self.answer(200, {"success": True, "data": []})
        PolicyGridClient(self.canned.url).query_policies({"name": "x"}, limit=5, sort="name:asc")
        self.assertEqual(self.canned.seen[-1][1], "/policy/query?limit=5&sort=name%3Aasc")
        with self.assertRaises(TypeError):
            PolicyGridClient(self.canned.url).query_policies({}, limt=5)


class UnauthorizedTests(unittest.TestCase):
    """A 401 says how to give this SDK a token, not only the server's HTTP wording."""

    @classmethod
    def setUpClass(cls):
        cls.canned = CannedServer()
        cls.canned.answer = (401, json.dumps({"success": False, "code": "unauthorized", "message":
                             "this server requires an API token: send 'Authorization: Bearer <token>'"}).encode(), "application/json")

    @classmethod
    def tearDownClass(cls):
        cls.canned.close()

    def test_without_a_token_the_error_says_to_pass_token_or_set_POLICYGRID_TOKEN(self):
        with mock.patch.dict(os.environ, {"POLICYGRID_TOKEN": ""}):
            with self.assertRaises(PolicyGridApiError) as caught:
                PolicyGridClient(self.canned.url).get_policy("a:1-b")
        self.assertEqual((caught.exception.status, caught.exception.code), (401, "unauthorized"))
        self.assertIn("requires an API token", caught.exception.message)
        self.assertIn("token=", caught.exception.message)
        self.assertIn("POLICYGRID_TOKEN", caught.exception.message)

    def test_with_a_token_the_error_says_that_token_is_not_accepted(self):
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient(self.canned.url, token="not-the-servers-token").get_policy("a:1-b")
        self.assertIn("not one the server accepts", caught.exception.message)

    def test_a_401_from_another_origin_gets_no_token_hint(self):
        # The token is never sent to a bundle URL elsewhere, so giving one is no fix there.
        with self.assertRaises(PolicyGridApiError) as caught:
            PolicyGridClient("http://127.0.0.1:9").request("GET", self.canned.url + "/bundle.zip")
        self.assertEqual(caught.exception.status, 401)
        self.assertNotIn("POLICYGRID_TOKEN", caught.exception.message)


class TokenScopeTests(unittest.TestCase):
    """The bearer token is for the PolicyGrid server only: a policy's `code` may be any writer's URL."""

    def setUp(self):
        self.registry, self.elsewhere = CannedServer(), CannedServer()

    def tearDown(self):
        self.registry.close()
        self.elsewhere.close()

    def test_a_bundle_url_on_another_host_gets_no_token(self):
        self.elsewhere.answer = (200, b"PK\x05\x06" + b"\0" * 18, "application/zip")
        PolicyGridClient(self.registry.url, token="s3cret").download_bundle(self.elsewhere.url + "/evil.zip")
        self.assertNotIn("Authorization", self.elsewhere.seen[-1][2])

    def test_a_redirect_to_another_host_gets_no_token(self):
        self.elsewhere.answer = (200, json.dumps({"success": True, "data": {"x": 1}}).encode(), "application/json")
        target = self.elsewhere.url + "/policy/a:1-b"

        class Redirecting(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            PolicyGridClient(f"http://127.0.0.1:{server.server_address[1]}", token="s3cret").get_policy("a:1-b")
        finally:
            server.shutdown()
            server.server_close()
        self.assertNotIn("Authorization", self.elsewhere.seen[-1][2])

    def test_the_server_itself_still_gets_the_token_on_absolute_urls(self):
        self.registry.answer = (200, b"PK\x05\x06" + b"\0" * 18, "application/zip")
        PolicyGridClient(self.registry.url, token="s3cret").download_bundle(self.registry.url + "/bundles/sha256/" + "a" * 64)
        self.assertEqual(self.registry.seen[-1][2].get("Authorization"), "Bearer s3cret")


class UnreachableTests(unittest.TestCase):
    def test_refused_connection_raises_server_unreachable(self):
        url = f"http://127.0.0.1:{support.free_port()}"
        with self.assertRaises(ServerUnreachableError) as caught:
            PolicyGridClient(url, timeout=2).get_policy("a:1-b")
        self.assertEqual((caught.exception.status, caught.exception.code), (503, "backend_unavailable"))
        self.assertIn(url, caught.exception.message)
        # What to do about it, as the CLI says: start the server, or point the SDK elsewhere.
        self.assertIn("policygrid serve", caught.exception.message)
        self.assertIn("POLICYGRID_SERVER", caught.exception.message)

    def test_a_broken_answer_raises_server_unreachable_not_an_http_client_error(self):
        import socket
        for payload in (b"hello there\r\n",  # not HTTP at all
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"success\": true"):  # cut short
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(4)

            def answer():
                conn, _ = listener.accept()
                conn.recv(65536)
                conn.sendall(payload)
                conn.close()

            t = threading.Thread(target=answer, daemon=True)
            t.start()
            try:
                with self.assertRaises(ServerUnreachableError) as caught:
                    PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2).get_policy("a:1-b")
                self.assertEqual(caught.exception.code, "backend_unavailable")
            finally:
                t.join(5)
                listener.close()

    def test_a_body_past_the_servers_limit_raises_its_413_not_unreachable_when_it_answers_before_reading_it(self):
        # The server answers 413 after the headers and closes without reading the body: sending the rest failed with a
        # broken pipe, which raised ServerUnreachableError (503, "cannot reach") instead of the server's answer.
        import socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        envelope = b'{"success": false, "code": "too_large", "message": "request body is larger than the limit of 1048576 bytes"}'

        def answer():
            conn, _ = listener.accept()
            received = b""
            while b"\r\n\r\n" not in received:
                received += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(envelope), envelope))
            conn.close()  # with the body unread

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            client = PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=5)
            with self.assertRaises(PolicyGridApiError) as caught:
                client.execute_policy("local", "a:1-b", {"blob": "a" * (32 << 20)})
            self.assertNotIsInstance(caught.exception, ServerUnreachableError)
            self.assertEqual((caught.exception.status, caught.exception.code), (413, "too_large"))
        finally:
            t.join(5)
            listener.close()

    def test_a_server_that_never_answers_times_out_and_raises(self):
        import socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection but never answers
        try:
            with self.assertRaises(ServerUnreachableError):
                PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3).get_policy("a:1-b")
        finally:
            listener.close()

    @staticmethod
    def _trickling_server(body: bytes, content_type: str, every: float):
        """A server that answers 200 with a Content-Length, then sends the body a byte at a time, `every` seconds apart."""
        import socket
        import threading
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def serve():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
                    for i in range(len(body)):
                        conn.sendall(body[i:i + 1])
                        time.sleep(every)
                except OSError:
                    pass  # the client shut the connection

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        return listener, thread

    def test_a_server_that_trickles_its_answer_is_cut_off_at_the_timeout_for_the_whole_call(self):
        # Each byte comes well within the socket timeout, but the whole answer would take 8 s.
        body = json.dumps({"success": True, "data": {"x": "y" * 40}}).encode()
        listener, thread = self._trickling_server(body, "application/json", every=0.1)
        try:
            started = time.monotonic()
            with self.assertRaises(ServerUnreachableError) as caught:
                PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5).get_policy("a:1-b")
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertIn("no complete answer within 0.5 s", str(caught.exception))
        finally:
            listener.close()
            thread.join(10)

    def test_a_call_giving_the_server_timeout_seconds_is_waited_for_that_long_on_top_of_the_timeout(self):
        # execute_policy(timeout_seconds=60) lets the policy run a minute on the server; the client gave up at its own
        # timeout (10 s by default) and raised ServerUnreachableError while the server still ran the policy.
        import socket
        body = json.dumps({"success": True, "data": {"allowed": True}}).encode()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        release = threading.Event()
        seen = []

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    request = conn.recv(65536)
                    while b"\r\n\r\n" not in request:
                        request += conn.recv(65536)
                    head, _, content = request.partition(b"\r\n\r\n")
                    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), b"0"))
                    while len(content) < length:
                        content += conn.recv(65536)
                    seen.append(content)
                    if b"timeout_seconds" in content:
                        release.wait(1.0)  # the policy takes a second: longer than the client's timeout
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            client = PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3)
            self.assertEqual(client.execute_policy("local", "p:1-t", {}, timeout_seconds=5), {"allowed": True})
            self.assertEqual(client.management("local", "p:1-t", "get_state", timeout_seconds=5), {"allowed": True})
            self.assertEqual(client.execute_graph("g:1-t", {}, timeout_seconds=5), {"allowed": True})
            self.assertEqual(sum(b'"timeout_seconds": 5' in r for r in seen), 3)
            self.assertEqual(client.execute_policy("local", "p:1-t", {}), {"allowed": True})  # none given: answered at once
        finally:
            release.set()
            listener.close()
            thread.join(5)

    def test_a_server_that_is_not_there_fails_fast_even_for_a_call_with_a_long_timeout_seconds(self):
        import socket
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        client = PolicyGridClient(f"http://127.0.0.1:{port}", timeout=0.5)
        started = time.monotonic()
        with self.assertRaises(ServerUnreachableError):
            client.execute_policy("local", "p:1-t", {}, timeout_seconds=600)
        self.assertLess(time.monotonic() - started, 3.0)

    def test_a_job_long_poll_is_waited_for_on_top_of_the_timeout(self):
        # get_job(wait=…) asks the server to hold its answer until the job ends; the client gave up at its own timeout
        # (10 s by default) and raised ServerUnreachableError while the job ran on.
        import socket
        body = json.dumps({"success": True, "data": {"job_id": "j1", "status": "succeeded"}}).encode()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        release = threading.Event()

        def serve():
            for _ in range(2):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    request = conn.recv(65536)
                    if b"wait=" in request:
                        release.wait(1.0)  # the job "ends" after a second: longer than the client's timeout
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            client = PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3)
            self.assertEqual(client.get_job("j1", wait=5)["status"], "succeeded")
            self.assertEqual(client.get_job("j1")["status"], "succeeded")  # no wait: answered at once
        finally:
            release.set()
            listener.close()
            thread.join(5)

    def test_a_bundle_download_that_trickles_is_cut_off_at_the_timeout_for_the_whole_call(self):
        # Each byte comes well within the socket timeout, but the whole archive would take 4 s. Bounded per read only, the
        # download went on as long as the server liked, holding the thread that loads the policy far past `timeout`.
        listener, thread = self._trickling_server(b"PK" + b"z" * 38, "application/zip", every=0.1)
        try:
            started = time.monotonic()
            with self.assertRaises(ServerUnreachableError) as caught:
                PolicyGridClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5).download_bundle("/bundle.zip")
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertIn("no complete answer within 0.5 s", str(caught.exception))
        finally:
            listener.close()
            thread.join(10)

if __name__ == "__main__":
    unittest.main()
