"""Test support: bundles built in memory, a loopback registry for revalidation tests, and the
real `policygrid serve` started on a free loopback port."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("POLICYGRID_REPO") or os.path.abspath(os.path.join(HERE, "..", "..", ".."))

try:  # the installed SDK (test.sh installs it into .venv); else the source tree
    import policygrid  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(HERE, "..", "src"))

# The contract's worked example, used when samples/policies/ip_allowlist is not in this checkout.
IP_ALLOWLIST = '''
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id
        self.settings = settings
        self.local_allowlist = list(parameters.get("local_allowlist", []))

    def eval(self, parameters, input_data, context):
        context["calls"] = context.get("calls", 0) + 1
        allowlist = set(self.local_allowlist) | set(parameters.get("local_allowlist", []))
        allowed = input_data.get("ip") in allowlist
        return {"allowed": allowed, "reason": "allowed" if allowed else "denied", "input_data": input_data}

    def management(self, action, data):
        if action == "update_local_allowlist":
            self.local_allowlist = list(data.get("ips", []))
            return {"local_allowlist": self.local_allowlist}
        if action == "get_state":
            return {"local_allowlist": self.local_allowlist}
        raise ValueError(f"unknown action {action}")
'''


def ip_allowlist_files() -> dict:
    sample = os.path.join(REPO, "samples", "policies", "ip_allowlist")
    if os.path.isfile(os.path.join(sample, "code", "function.py")):
        files = {}
        for dirpath, dirnames, filenames in os.walk(sample):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, sample).replace(os.sep, "/")
                if rel.startswith("code/"):
                    with open(full, "rb") as f:
                        files[rel] = f.read()
        return files
    return {"code/function.py": IP_ALLOWLIST.encode()}


def in_a_forked_child(call) -> int:
    """Forks; the child runs call() (an exit code) and exits with it. A child that hangs is ended by SIGALRM after 10 s, so
    a deadlock fails the test instead of hanging the run. Answers the child's exit code (-14: it hung)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(10)
            code = call()
        except BaseException as e:  # noqa: BLE001 - reported through the exit code
            print(f"child raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(files: dict, mode: str = "w:gz", extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in extra or []:
            t.addfile(info)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackRegistry:
    """A registry on a loopback port serving one policy document (with an ETag revision) and its
    bundle, counting what was asked. It lets tests change the document and watch an evaluator
    notice, without needing the .NET build."""

    def __init__(self, document: dict, bundle: bytes):
        self.bundle = bundle
        self.sha = hashlib.sha256(bundle).hexdigest()
        self.document = dict(document, code=f"bundle://sha256/{self.sha}")
        self.revision = 1
        self.policy_reads = 0
        self.bundle_reads = 0
        self.down = False
        self.files = {}  # other paths it serves: a bundle at an unpinned URL, whose bytes a test can change
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, ctype="application/json", headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if registry.down:
                    return self._send(503, {"success": False, "code": "backend_unavailable", "message": "store down"})
                uri = registry.document.get("policy_rule_uri")
                if self.path == f"/policy/{uri}":
                    registry.policy_reads += 1
                    return self._send(200, {"success": True, "data": registry.document},
                                      headers={"ETag": f'"{registry.revision}"'})
                if self.path.startswith("/policy/"):
                    return self._send(404, {"success": False, "code": "not_found", "message": f"no policy '{self.path[8:]}' is registered"})
                if self.path == f"/bundles/sha256/{registry.sha}":
                    registry.bundle_reads += 1
                    return self._send(200, registry.bundle, "application/zip")
                if self.path in registry.files:
                    return self._send(200, registry.files[self.path], "application/zip")
                return self._send(404, {"success": False, "code": "not_found", "message": "no such path"})

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def update(self, **fields) -> None:
        self.document.update(fields)
        self.revision += 1

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class CannedAnswer:
    """Answers every request with one fixed (status, body, content type): a proxy's page, a stranger's server."""

    def __init__(self, status: int, body: bytes, ctype: str, headers: dict | None = None):
        self.methods: list = []
        seen = self.methods

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(self.command)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def find_cli() -> list | None:
    """The command that runs the built `policygrid`, or None when the .NET build is absent."""
    dll = os.environ.get("POLICYGRID_CLI_DLL")
    candidates = [dll] if dll else []
    for config in ("Debug", "Release"):
        candidates.append(os.path.join(REPO, "src", "PolicyGrid.Cli", "bin", config, "net10.0", "policygrid.dll"))
    for c in candidates:
        if c and os.path.isfile(c) and shutil.which("dotnet"):
            return ["dotnet", c]
    return None


class Server:
    """`policygrid serve` on a free loopback port with a temporary --data directory."""

    def __init__(self, command: list):
        self.data = tempfile.mkdtemp(prefix="pg-sdk-test-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.data, "server.log")
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, ASPNETCORE_ENVIRONMENT="Development", DOTNET_NOLOGO="1")
        # One policy worker is plenty for these tests and keeps a busy 2-core machine responsive.
        self.process = subprocess.Popen(command + ["serve", "--data", os.path.join(self.data, "data"), "--urls", self.url,
                                                   "--PolicyGrid:Runtime:Pool:Workers=1"],
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"policygrid serve exited with {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)  # polling for start-up within a bounded deadline
        self.stop()
        raise RuntimeError(f"policygrid serve did not answer /healthz within 60 s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
