"""PolicyGrid worker host: runs policy code on behalf of the .NET PythonWorkerPool.

Protocol: frames of a 4-byte big-endian length followed by UTF-8 JSON, on the file
descriptors that were stdin/stdout when the process started. The host moves them to
private descriptors first and points fd 0 at /dev/null and fd 1 at fd 2, so whatever a
policy prints or logs lands in the stderr pipe (which the server reads as a log) and can
never corrupt a frame.

First frame from the server: the worker configuration (uid/gid to drop to, temp dir,
resource limits). The host applies limits, drops privileges, checks that the standard
library is still readable as the new user, and answers {"ready": true, ...} or
{"ready": false, "error": ...}. Then one request frame -> one response frame, forever. An invoke request
may carry start_by (seconds on the server's monotonic clock, which time.monotonic() reads): reached after it, it is
answered {"ok": false, "kind": "not_started"} without running (its caller has stopped waiting).
Standard library only: this file runs inside whatever interpreter the operator picked.
"""

import copy
import gc
import importlib.util
import json
import os
import resource
import struct
import sys
import time
import traceback
from collections import OrderedDict

_HEADER = struct.Struct(">I")
# json.dumps builds a new encoder for every call made with options; one made once does the same work per reply.
# ensure_ascii=False: text stays text, so a lone surrogate ("\ud800", no character at all) fails the UTF-8 encoding in
# Channel.send and is answered as a policy error; escaped as ASCII, it reached the server as a string no JSON writer
# can write, and the call failed there (a 500, or a 400 blaming the request body).
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()  # json.loads's own settings (see _parse_frame)
# RLIMIT_CPU hard limit above the lifetime cap (see _apply_limits).
_CPU_HARD_GRACE_SECONDS = 2
# Share of the lifetime CPU cap after which the worker retires (see Host._near_cpu_cap).
_RETIRE_AT_CPU_FRACTION = 0.5


# CPU time of the whole process (all threads, user + system, children not counted): the kernel's exact runtime, as
# getrusage(RUSAGE_SELF)'s ru_utime + ru_stime, in one clock_gettime that costs half as much as getrusage.
_cpu_time = time.process_time


class LoadFailure(Exception):
    """The bundle cannot produce a policy instance (missing file, class, or __init__ raised)."""


class SandboxFailure(Exception):
    """The worker cannot be given what a setting asks for (it must not run without it): names the setting."""

    def __init__(self, setting, message):
        super().__init__(message)
        self.setting = setting


class NeedLoad(Exception):
    """The request names an instance this worker does not hold and carries no load spec to create it."""


class RestoreFailure(Exception):
    """set_state(restore_state) raised on an instance just created to replace a lost one (its __cause__): no method ran,
    and the instance is not kept."""


def _parse_frame(frame):
    """json.loads(frame), in half its time for what the server sends: compact UTF-8 JSON. Before parsing, json.loads
    looks for a BOM or UTF-16/32 and skips whitespace around the value with a regular expression, which for a warm
    eval request costs more than the parse (~1.4 of its ~2.5 µs); raw_decode parses the value alone. A frame it
    does not parse to its end goes to json.loads itself, so every frame parses, or fails, as it did there."""
    try:
        text = frame.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
        value, end = _DECODER.raw_decode(text)
        if end == len(text):
            return value
    except ValueError:  # UnicodeDecodeError and JSONDecodeError: json.loads raises its own error for the frame below
        pass
    return json.loads(frame)


def _read_exact(fd, n):
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("server closed the protocol pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write_all(fd, data):
    written = os.write(fd, data)
    if written == len(data):
        return  # a blocking pipe takes all of it in one write; only a signal can cut it short
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Channel:
    """Frames in, frames out. The server sends requests in batches: one read takes in all of a
    batch, and each reply is written as soon as its call ends (the server times each call from
    the reply before it, so a reply must never wait behind the next call)."""

    def __init__(self, fd_in, fd_out, max_frame):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.max_frame = max_frame
        self.buffer = bytearray()

    def _fill(self, n):
        while len(self.buffer) < n:
            chunk = os.read(self.fd_in, max(n - len(self.buffer), 1 << 16))
            if not chunk:
                raise EOFError("server closed the protocol pipe")
            self.buffer += chunk

    def receive(self):
        self._fill(4)
        (length,) = _HEADER.unpack_from(self.buffer)
        self._fill(4 + length)
        frame = self.buffer[4:4 + length]
        del self.buffer[:4 + length]
        return _parse_frame(frame)

    def send(self, message):
        try:
            payload = _ENCODER.encode(message).encode("utf-8")
        except (UnicodeEncodeError, TypeError, ValueError, RecursionError) as exc:
            payload = json.dumps(_unwritable(exc)).encode()
        if len(payload) > self.max_frame:
            payload = json.dumps(_error("error", "ValueError",
                                        f"policy returned {len(payload)} bytes of JSON, over the {self.max_frame}-byte limit")).encode()
        _write_all(self.fd_out, _HEADER.pack(len(payload)) + payload)


def _unwritable(exc):
    """The error reply for a reply that has no JSON form."""
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start:exc.end].encode("unicode_escape").decode("ascii")
        return _error("error", "ValueError", f"policy returned text that is not Unicode: '{bad}' is a lone surrogate, "
                                             "which no JSON text can hold")
    if isinstance(exc, RecursionError):
        # Python's encoder recurses once per level: a 10,000-level answer (or context) used to escape as a RecursionError
        # out of the host loop and kill the worker (422 policy_crashed, the worker replaced), where one of 300 levels is
        # a policy error (HostFrames).
        return _error("error", "ValueError", "the policy answered JSON nested too deep: Python's encoder stopped at its "
                                             f"recursion limit ({sys.getrecursionlimit()} levels)")
    return _error("error", "TypeError", f"policy returned a value that is not JSON: {exc}")


# A policy's exception reaches the caller (its message) and the server's log (its traceback). Its text may be megabytes
# long, hold lone surrogates (no UTF-8 carries them) or come from a __str__ that raises: each used to cost the answer
# (a huge message was reported as an over-long reply, a surrogate as text the policy "returned", a raising __str__
# killed the worker: 422 policy_crashed and a new worker).
_MAX_ERROR_MESSAGE = 16 * 1024
_MAX_TRACEBACK_PART = 4 * 1024
_MAX_TRACEBACK = 64 * 1024


def _clip(text, limit):
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _utf8_safe(text):
    """text with each lone surrogate written as its escape ('\\ud800'), so it survives UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(exc):
    """str(exc), made safe to answer: at most _MAX_ERROR_MESSAGE characters, lone surrogates escaped, and a __str__
    that raises named instead of raising again."""
    try:
        text = str(exc)
    except BaseException as failure:  # noqa: BLE001 - policy code (__str__) raised
        text = f"<str() of the {type(exc).__name__} raised {type(failure).__name__}>"
    return _utf8_safe(_clip(text, _MAX_ERROR_MESSAGE))


def _exc_name(exc):
    return _utf8_safe(type(exc).__name__)


def _format_traceback(exc):
    """traceback.format_exception, each part clipped (the last holds the whole message) and the total too."""
    try:
        parts = traceback.format_exception(type(exc), exc, exc.__traceback__)
    except BaseException:  # noqa: BLE001
        return ""
    return _utf8_safe(_clip("".join(_clip(part, _MAX_TRACEBACK_PART) for part in parts), _MAX_TRACEBACK))


def _eval_problem(instance):
    """Why instance.eval cannot be called as eval(parameters, input_data, context), or None. Checked when an instance is
    made, so a class without eval (a method named evaluate) or with another signature fails its dry load at push (400)
    rather than passing it and then failing every call."""
    try:
        method = getattr(instance, "eval", None)
    except Exception:  # noqa: BLE001 - a __getattr__ of the policy's: the call will tell
        return None
    if not callable(method):
        return "AIOSv1PolicyRule has no eval(parameters, input_data, context) method"
    import inspect  # only here: the host starts without it

    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # a callable inspect cannot read: the call will tell
        return None
    try:
        signature.bind(None, None, None)
    except TypeError:
        return f"AIOSv1PolicyRule.eval{signature} cannot be called as eval(parameters, input_data, context)"
    return None


def _described(value):
    """A JSON value that is no dict, in the server's words ("a list", "a string"), as IFunctionHost.Described says it."""
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"a {str(value).lower()}"
    return "a number"


def _error(kind, exc_type, message, tb=""):
    return {"ok": False, "kind": kind, "type": exc_type, "message": message, "traceback": tb}


class _OutputTag:
    """Names, in the log pipe, the policy whose output follows: before the first print or log record of a policy
    other than the last one named, a marker line `\x1e<nonce> <uri>`. The server reads the pipe on its own
    thread, so only such a marker, not the timing of frames, can tell whose line it is. The nonce comes with the
    config, so no ordinary output is taken for a marker."""

    def __init__(self, nonce):
        self.prefix = ("\x1e" + nonce + " ").encode() if nonce else None
        self.current = None  # the URI of the policy whose code runs now
        self.named = None
        self.streams = ()

    def before_write(self):
        if self.prefix is None or self.current is None or self.current == self.named:
            return
        for stream in self.streams:
            try:
                stream.flush()  # what the last policy left buffered is still its own
            except Exception:  # noqa: BLE001 - a policy may have closed it
                pass
        _write_all(2, self.prefix + self.current.encode("utf-8", "replace") + b"\n")
        self.named = self.current


class _TaggedStream:
    """sys.stdout / sys.stderr as policies see them: the same stream, marked with its writer's URI (_OutputTag)."""

    def __init__(self, inner, tag):
        self._inner = inner
        self._tag = tag

    def write(self, text):
        self._tag.before_write()
        return self._inner.write(text)

    def writelines(self, lines):
        self._tag.before_write()
        return self._inner.writelines(lines)

    def flush(self):
        # Spelled out, not left to __getattr__: the host flushes both streams after every call, and __getattr__ only
        # runs once the ordinary lookup has failed and raised an AttributeError, which cost ~0.7 µs per stream.
        return self._inner.flush()

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _tag_output(config):
    tag = _OutputTag(config.get("output_tag"))
    tag.streams = (sys.stdout, sys.stderr)
    sys.stdout = _TaggedStream(sys.stdout, tag)
    sys.stderr = _TaggedStream(sys.stderr, tag)
    return tag


def _take_protocol_fds():
    """Moves the protocol pipes off fd 0/1 so policy output cannot reach them."""
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # Both now reach the same pipe: line-buffered like stderr, so prints and log records keep their order.
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    return proto_in, proto_out


def _close_inherited_fds(keep):
    """Closes every descriptor but 0-2 and `keep`. .NET starts the worker with whatever descriptors the server itself
    inherited without close-on-exec (a supervisor's pipe, a socket-activated listening socket): policy code must not
    write to, read from or accept on them."""
    low = 3
    for fd in sorted(keep) + [None]:
        high = fd if fd is not None else os.sysconf("SC_OPEN_MAX")
        if high > low:
            os.closerange(low, high)
        if fd is not None:
            low = max(low, fd + 1)


def _apply_limits(config):
    limits = config.get("limits", {})

    def set_limit(which, value):
        if value:
            resource.setrlimit(which, (value, value))

    set_limit(resource.RLIMIT_NPROC, limits.get("nproc"))
    set_limit(resource.RLIMIT_NOFILE, limits.get("nofile"))
    set_limit(resource.RLIMIT_FSIZE, limits.get("fsize_bytes"))
    cpu = limits.get("cpu_seconds")
    if cpu:
        # The worker's lifetime cap is the highest soft limit a call gets (SIGXCPU, reported as a CPU-time
        # overrun); the hard limit sits a little above it, so only a policy that catches SIGXCPU meets SIGKILL.
        # Each call lowers the soft limit to its own budget (Host._budget_cpu).
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + _CPU_HARD_GRACE_SECONDS))
    set_limit(resource.RLIMIT_AS, limits.get("as_bytes"))


def _isolate_network(config):
    """With "isolate_network", moves this process into a network namespace of its own, which has nothing in it (not
    even a loopback that is up): the policy can reach no host, no service of this machine, no metadata endpoint.
    As root that takes CAP_SYS_ADMIN; otherwise an unprivileged user namespace comes first."""
    if not config.get("isolate_network"):
        return
    import ctypes

    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    libc = ctypes.CDLL(None, use_errno=True)
    flags = clone_newnet if os.geteuid() == 0 else clone_newuser | clone_newnet
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot give the worker a network of its own (unshare: {os.strerror(err)}); "
                           "PolicyGrid:Runtime:Pool:DenyNetwork needs root with CAP_SYS_ADMIN, or unprivileged user namespaces")


# Directories every user may write that outlive a worker: without a private tmpfs on them, what a policy writes there
# stays on the host, readable by other policies. /run/lock (and /var/lock where it is a directory, not the usual link to
# it) is world-writable on most hosts. Those missing or links here are left alone.
_SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
# Where a worker with private temp dirs sees the host's /tmp, /var/tmp, /dev/shm and /run/lock, read-only (see _isolate_tmp).
_HOST_VIEWS_ROOT = "/tmp/.policygrid-host"
_host_views = {}
# How the views were made: "clone" (_clone_read_only) or "bind" (the fallback); None without them. Said in the ready line.
_host_views_by = None


def _unreadable(code_dir):
    """Why this worker cannot see a bundle that is there, or None. Workers run as an unprivileged uid: a bundle under a
    directory only its owner may enter (an SDK cache directory under /root) looked like a bundle without function.py."""
    try:
        os.stat(os.path.join(code_dir, "function.py"))
        return None
    except PermissionError:
        pass
    except OSError:
        return None
    chain = [code_dir]
    while os.path.dirname(chain[-1]) != chain[-1]:
        chain.append(os.path.dirname(chain[-1]))
    # The outermost directory it may not enter (or, when it may enter them all, code/ itself, which it may not read).
    blocked = next((d for d in reversed(chain) if not os.access(d, os.X_OK)), code_dir)
    for directory, view in _host_views.items():  # named as the host knows it, not as the read-only view of /tmp here
        if blocked == view or blocked.startswith(view + "/"):
            blocked = directory + blocked[len(view):]
            break
    return (f"the worker (uid {os.getuid()}) may not read the bundle at {code_dir}/: permission denied at {blocked} "
            "(keep bundles, e.g. the SDK's CacheDirectory, where every user may read them)")


def _host_path(path):
    """The path under which this worker sees the host's file at path: the same one, unless it lies in a directory that
    _isolate_tmp covered, where the read-only view of the host's directory has it."""
    for directory, view in _host_views.items():
        if path == directory or path.startswith(directory + "/"):
            return view + path[len(directory):]
    return path


def _isolate_tmp(config, uid, gid):
    """With "private_tmp", gives this process a mount namespace of its own with one fresh, size-limited tmpfs on /tmp,
    /var/tmp, /dev/shm and /run/lock (_SHARED_TMP_DIRS; the size caps them together): what a policy writes there reaches neither the host nor another worker, and is gone
    with the worker. The worker's temp dir (TMPDIR, HOME, the working directory) moves into the new /tmp when it was
    under it. The host's own directories stay readable, read-only and live, under _HOST_VIEWS_ROOT: bundles are kept
    there (/var/tmp/policygrid-bundles by default), and the host loads them through _host_path. (Not an overlay of
    the host's directories: an overlay keeps what it once looked up, so a file the host makes later, where a
    policy had looked before, never shows.)
    With the mount namespace comes an IPC namespace of its own (_isolate_ipc): System V shared memory, semaphores and
    message queues and POSIX message queues a policy makes reach no other worker and are gone with the worker.
    Answers (why the directories are the host's, why the IPC objects are) with None for each that is the worker's own
    (for the directories, when not: as without the option).
    uid/gid: who the worker will run as. Needs root with CAP_SYS_ADMIN; runs before privileges are dropped."""
    spec = config.get("private_tmp")
    if not spec:
        return ("not asked for (PolicyGrid:Runtime:Pool:PrivateTemp is off)",) * 2
    if os.geteuid() != 0:
        return ("the server does not run as root",) * 2
    covered = [d for d in _SHARED_TMP_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    for prefix in {sys.prefix, sys.base_prefix, os.path.dirname(sys.executable)}:
        if any(prefix == d or prefix.startswith(d + "/") for d in covered):
            return (f"the interpreter lives under {prefix}, which would be hidden",) * 2
    import ctypes

    clone_newns, ms_rdonly, ms_nosuid, ms_nodev, ms_remount, ms_bind, ms_rec, ms_private, ms_slave = \
        0x00020000, 1, 2, 4, 32, 4096, 0x4000, 1 << 18, 1 << 19
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)

    def mount(source, target, fstype, flags, data, what):
        if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags, data and data.encode()) != 0:
            err = ctypes.get_errno()
            raise RuntimeError(f"{what}: {os.strerror(err)}")

    # Until something is mounted, a failure leaves the worker as it would be without the option; after, it cannot start.
    try:
        if libc.unshare(clone_newns) != 0:
            err = ctypes.get_errno()
            return (f"unshare(CLONE_NEWNS): {os.strerror(err)}",) * 2
        # Slave: mounts the host makes later still show here (but in the views of its temp dirs, made private below),
        # and nothing mounted here propagates back to the host.
        mount(None, "/", None, ms_rec | ms_slave, None, "making / a slave mount")
    except RuntimeError as exc:
        return (str(exc),) * 2
    size = int(spec.get("size_bytes") or 0)
    shared_ipc = _isolate_ipc(libc, mount, size)
    # The host's directories, taken before they are covered, with the file systems mounted inside them (a bundle cache on
    # a volume of its own under /var/tmp): shown read-only under _HOST_VIEWS_ROOT after. Where the kernel can (5.12 and
    # later) each is a detached copy of its mount tree made read-only as a whole (_clone_read_only); elsewhere each
    # directory is first bound on itself with the mounts inside it (MS_REC), and that tree, bound again under
    # _HOST_VIEWS_ROOT once covered, is made read-only mount by mount. Recursive, as a bind of the directory alone does
    # not carry the mounts inside it, and in a user namespace (a rootless container, where they are locked) the kernel
    # refuses it outright when there are any.
    # "bind_views" (WorkerPoolOptions.BindHostViews, for tests) takes the binds where the kernel could clone: the path
    # older kernels and seccomp profiles that refuse the new mount API take, which this kernel would never run.
    trees = None if spec.get("bind_views") else _clone_read_only(libc, covered)
    held = {}
    try:
        for directory in [] if trees else covered:
            mount(directory, directory, None, ms_bind | ms_rec, None, f"binding the host's {directory} on itself")
            held[directory] = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        # One tmpfs, on the first directory; the others are directories of it bound in place (a bind mount keeps the
        # tmpfs's nosuid and nodev): one size cap for all of them, not one cap each of memory a policy can fill.
        first = None
        for directory in covered:
            info = os.stat(directory)
            if first is None:
                mount("tmpfs", directory, "tmpfs", ms_nosuid | ms_nodev,
                      f"size={size},mode={info.st_mode & 0o7777:o},uid={info.st_uid},gid={info.st_gid}",
                      f"mounting a tmpfs of {size} bytes on {directory}")
                first = directory
                continue
            part = os.path.join(first, ".policygrid-" + directory.strip("/").replace("/", "-"))
            os.mkdir(part)
            os.chown(part, info.st_uid, info.st_gid)
            os.chmod(part, info.st_mode & 0o7777)
            mount(part, directory, None, ms_bind, None, f"binding {part} on {directory}")
        _make_dirs(_HOST_VIEWS_ROOT, 0o755)
        for directory in covered:
            view = os.path.join(_HOST_VIEWS_ROOT, directory.strip("/").replace("/", "_"))
            _make_dirs(view, 0o755)
            if trees:
                if libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_long(trees[directory]), b"", ctypes.c_long(_AT_FDCWD), view.encode(),
                                ctypes.c_long(_MOVE_MOUNT_F_EMPTY_PATH)) != 0:
                    raise RuntimeError(f"attaching the view of the host's {directory}: {os.strerror(ctypes.get_errno())}")
            else:
                # The tree bound on the directory, with what covers it now (this worker's tmpfs, or its part of it) on
                # top: that copy of the cover is taken off the view again (MNT_DETACH), which shows the host's below.
                mount(f"/proc/self/fd/{held[directory]}", view, None, ms_bind | ms_rec, None, f"binding the host's {directory}")
                if libc.umount2(view.encode(), 2) != 0:
                    raise RuntimeError(f"uncovering the view of the host's {directory}: {os.strerror(ctypes.get_errno())}")
            _host_views[directory] = view
        for directory, view in _host_views.items():
            # Each view is a slave of the host's mounts as taken (with the whole namespace, see above): a file system the
            # host mounted inside its temp dirs later showed up in the view as the host mounted it, writable. Private, a
            # view receives nothing more. Then every mount of it is made read-only, nosuid and nodev (noexec kept where
            # set: a remount without it lifts it), one by one, as a remount changes one mount only. One inside the view
            # that cannot be is taken away (its empty mount point shows); one that cannot be taken away either, or the
            # view itself, stops the worker: a view must never be writable.
            mount(None, view, None, ms_rec | ms_private, None, f"keeping the host's later mounts out of the view of its {directory}")
            for each in [view, *_mounts_under([view])]:
                if {"ro", "nosuid", "nodev"} <= set(_options_of(each)):
                    continue
                try:
                    mount(None, each, None, ms_remount | ms_bind | ms_rdonly | ms_nosuid | ms_nodev | _noexec_of(each), None,
                          f"making the view of the host's {directory} read-only")
                except RuntimeError:
                    if each == view or libc.umount2(each.encode(), 2) != 0:
                        raise
    finally:
        for fd in [*held.values(), *(trees or {}).values()]:
            os.close(fd)
    global _host_views_by
    _host_views_by = "clone" if trees else "bind"
    tmp = config.get("tmp_dir")
    if tmp and _host_path(tmp) != tmp:
        # The temp dir moves into this worker's own tmpfs, and the working directory with it (it still is the host's).
        _make_dirs(tmp, 0o711)
        os.chmod(tmp, 0o700)
        os.chown(tmp, uid, gid)
        os.chdir(tmp)
    return None, shared_ipc


# Where the host's POSIX message queues show as files, when an mqueue filesystem is mounted there.
_MQUEUE_DIR = "/dev/mqueue"


# What System V IPC objects a worker's IPC namespace may hold besides shared memory (which gets the private tmpfs's size):
# they are kernel memory no per-worker limit counts, and a fresh namespace allows 32000 message queues of 16 KiB
# (500 MiB) and 1024000000 semaphores of 64 bytes (64 GiB). 64 queues and 16384 semaphores: 1 MiB each.
_IPC_MSG_QUEUES = 64
_IPC_SEMAPHORES = 16384
# Set when the caps above (and kernel.shmall) could not be written: why, for the ready line (see _isolate_ipc).
_ipc_uncapped = None


def _cap_ipc(shm_bytes):
    """Caps what this IPC namespace's System V objects may hold (the kernel.shmall, kernel.msgmni and kernel.sem
    sysctls are the namespace's own): shared memory at shm_bytes (pages it touches are memory that RLIMIT_AS stops
    counting once the segment is detached), message queues and semaphores at _IPC_MSG_QUEUES and _IPC_SEMAPHORES."""
    def write(name, value):
        with open(f"/proc/sys/kernel/{name}", "w") as f:
            f.write(value)

    with open("/proc/sys/kernel/sem") as f:
        semmsl, _, semopm, semmni = f.read().split()
    write("shmall", str(max(1, shm_bytes // os.sysconf("SC_PAGE_SIZE"))))
    write("msgmni", str(_IPC_MSG_QUEUES))
    write("sem", f"{semmsl} {_IPC_SEMAPHORES} {semopm} {semmni}")


def _isolate_ipc(libc, mount, shm_bytes):
    """Gives this process (already in a mount namespace of its own) an IPC namespace of its own: System V shared memory,
    semaphores and message queues and POSIX message queues made here are seen by no other worker and the host, and are
    gone when the worker is (before, they stayed on the host, under keys and names any policy could guess). Where the
    host has /dev/mqueue, a fresh mqueue filesystem covers it: that one shows this namespace's queues, where the host's
    would show (and open) the host's. What System V objects may hold is capped (_cap_ipc); where that fails (a read-only
    /proc/sys) _ipc_uncapped says why. Answers None when done, else why not (then the worker uses the host's IPC
    objects, as before; nothing was changed)."""
    global _ipc_uncapped
    import ctypes

    clone_newipc, ms_nosuid, ms_nodev, ms_noexec = 0x08000000, 2, 4, 8
    if libc.unshare(clone_newipc) != 0:
        err = ctypes.get_errno()
        return f"unshare(CLONE_NEWIPC): {os.strerror(err)}"
    try:
        _cap_ipc(shm_bytes)
    except (OSError, ValueError) as exc:
        _ipc_uncapped = f"setting this worker's IPC limits in /proc/sys/kernel: {exc}"
    if os.path.isdir(_MQUEUE_DIR) and not os.path.islink(_MQUEUE_DIR):
        mount("mqueue", _MQUEUE_DIR, "mqueue", ms_nosuid | ms_nodev | ms_noexec, None,
              f"mounting this worker's message queues on {_MQUEUE_DIR}")
    return None


# The new mount API (Linux 5.2: open_tree, move_mount; 5.12: mount_setattr), the same numbers on x86_64 and in the
# generic table (arm64).
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_AT_FDCWD, _AT_EMPTY_PATH, _AT_RECURSIVE = -100, 0x1000, 0x8000
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


def _clone_read_only(libc, directories):
    """For each directory, a detached copy of the mount tree at it (the mounts inside it included) made read-only,
    nosuid and nodev as a whole (noexec kept where set), to attach later with move_mount; None where the kernel lacks
    the calls, when the caller binds instead."""
    import ctypes
    libc.syscall.restype = ctypes.c_long
    trees = {}
    try:
        for directory in directories:
            # Every integer passed as a long: syscall() reads each argument as one, and a C int leaves its upper half unset.
            fd = libc.syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_long(_AT_FDCWD), directory.encode(),
                              ctypes.c_long(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE))
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"open_tree({directory})")
            trees[directory] = fd
            # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
            attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, 0, 0, 0)
            if libc.syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_long(fd), b"", ctypes.c_long(_AT_EMPTY_PATH | _AT_RECURSIVE),
                            ctypes.byref(attr), ctypes.c_long(ctypes.sizeof(attr))) != 0:
                raise OSError(ctypes.get_errno(), f"mount_setattr({directory})")
        return trees
    except OSError:
        for fd in trees.values():
            os.close(fd)
        return None


def _mount_table():
    """This process's mounts: (mount point, per-mount options) from /proc/self/mountinfo, in mount order."""
    import re
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            # The kernel writes a space, tab, newline and backslash in a path as \040, \011, \012 and \134.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            table.append((point, fields[5].split(",")))
    return table


def _mounts_under(directories):
    """The mount points strictly inside any of directories, sorted (a mount point before those inside it)."""
    prefixes = tuple(d.rstrip("/") + "/" for d in directories)
    return sorted({point for point, _ in _mount_table() if point.startswith(prefixes)})


def _options_of(point):
    """The per-mount options of the mount at point (the last one mounted there); empty when nothing is mounted there."""
    options = [opts for p, opts in _mount_table() if p == point]
    return options[-1] if options else []


def _noexec_of(point):
    """MS_NOEXEC when the mount at point (the last one mounted there) has it: a remount would otherwise lift it."""
    return 8 if "noexec" in _options_of(point) else 0


def _make_dirs(path, mode):
    """Makes path and its missing parents with mode, whatever the umask: the worker user must pass through them."""
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        _make_dirs(parent, mode)
    if not os.path.isdir(path):
        os.mkdir(path)
        os.chmod(path, mode)


def _drop_privileges(config):
    """Switches to config["uid"] (or config["user"]) when started as root: process limits do not bind root."""
    user = config.get("user")
    tmp = config.get("tmp_dir")
    uid = gid = None
    if config.get("uid") is not None and os.geteuid() == 0:
        uid, gid = int(config["uid"]), int(config.get("gid", config["uid"]))
    elif user and os.geteuid() == 0:
        import pwd
        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    if tmp:
        # chmod before chown: once the directory is the worker's, changing its mode would take CAP_FOWNER.
        os.chmod(tmp, 0o700)
        if uid is not None:
            os.chown(tmp, uid, gid)
    try:
        shared = _isolate_tmp(config, uid or 0, gid or 0)
    except (RuntimeError, OSError) as exc:
        # Past the point where the worker could go on as without the option (something is mounted): it cannot start.
        # Said as the option's failure, or the server blames the interpreter ("No usable Python interpreter").
        raise SandboxFailure("PolicyGrid:Runtime:Pool:PrivateTemp",
                             f"giving the worker a /tmp, /var/tmp and /dev/shm of its own (PolicyGrid:Runtime:Pool:PrivateTemp) "
                             f"failed: {exc}; with PrivateTemp off, workers use the host's, shared by every policy") from exc
    if uid is None:
        return shared
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise RuntimeError("could not drop root privileges")
    return shared


def _probe_stdlib(config):
    """Fails when the interpreter's own files are unreadable by the user we now run as."""
    stdlib = os.path.dirname(os.__file__)
    if not os.access(stdlib, os.R_OK | os.X_OK):
        return f"the standard library at {stdlib} is not readable by uid {os.getuid()}"
    for name in config.get("probe_modules", []):
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - any failure means the interpreter is unusable
            return f"importing {name} as uid {os.getuid()} failed: {type(exc).__name__}: {exc}"
    return None


def _shares_clock(config):
    """Whether time.monotonic() here reads the server's monotonic clock, so a request's start_by (seconds on the server's
    clock) can be compared with it. The server wrote its reading into the config just before this process read it: on
    the same clock ours is that or a little later (by at most the start timeout)."""
    sent = config.get("monotonic")
    if sent is None:
        return True
    lag = time.monotonic() - float(sent)
    return -0.001 <= lag <= float(config.get("monotonic_within", 60))


class Host:
    def __init__(self, channel, config, tag=None, shares_clock=True):
        self.channel = channel
        # Whether start_by can be honoured (see _shares_clock); when not, a request runs whenever it is reached, as before.
        self.shares_clock = shares_clock
        self.tag = tag or _OutputTag(None)
        self.max_instances = int(config.get("max_instances", 64))
        self.instances = OrderedDict()
        # Keys of instances never dropped to make room (their load spec says "pinned"): their state lives nowhere else.
        self.pinned = set()
        self.modules = {}
        self.bundle_paths = []  # the code/ and site-packages directories of the bundles imported here (see _use_paths_of)
        self.cpu_cap = config.get("limits", {}).get("cpu_seconds") or None
        self.cpu_hard = None
        self.cpu_target = None  # the soft limit set last
        self.cpu_wanted = None  # the target it was set for, before the caps (see _budget_cpu)
        # CPU time used by this process, read once at the end of every call (see _budget_cpu).
        self.cpu_used = _cpu_time()

    # -- loading -----------------------------------------------------------------------
    def _module(self, load):
        sha = load["sha256"]
        module = self.modules.get(sha)
        if module is not None:
            return module
        code_dir = os.path.join(_host_path(load["root"]), "code")
        path = os.path.join(code_dir, "function.py")
        if not os.path.isfile(path):
            raise LoadFailure(_unreadable(code_dir) or f"the bundle has no code/function.py (looked in {code_dir}/)")
        self._use_paths_of([entry for entry in (code_dir, load.get("site_packages") and _host_path(load["site_packages"])) if entry])
        name = "_policygrid_bundle_" + sha[:16]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except MemoryError:
            sys.modules.pop(name, None)
            raise
        except BaseException as exc:  # noqa: BLE001 - the policy's import failing is a load failure
            sys.modules.pop(name, None)
            raise LoadFailure(f"importing code/function.py raised {_exc_name(exc)}: {_describe(exc)}") from exc
        self.modules[sha] = module
        return module

    def _use_paths_of(self, entries):
        """Makes the modules of this bundle's code/ (and its requirements' site-packages) the ones its import finds.
        sys.modules holds one `helpers` per interpreter: a worker that had imported an earlier revision's code/helpers.py
        (or its requirements' version of a package) gave a new revision's function.py that one, and with policies
        sharing workers a second policy with a helpers.py ran the first one's. So modules another bundle's directories
        supplied leave sys.modules (the modules that imported them keep them), and this bundle's directories go first on
        sys.path, before the others' (and before the standard library, as they always did)."""
        others = [entry for entry in self.bundle_paths if entry not in entries]
        if others:
            prefixes = tuple(os.path.join(entry, "") for entry in others)
            for name, module in list(sys.modules.items()):
                where = getattr(module, "__file__", None)
                if isinstance(where, str) and where.startswith(prefixes):
                    del sys.modules[name]
        for entry in reversed(entries):
            if entry in sys.path:
                sys.path.remove(entry)
            sys.path.insert(0, entry)
            if entry not in self.bundle_paths:
                self.bundle_paths.append(entry)
        importlib.invalidate_caches()

    def _create(self, load):
        module = self._module(load)
        cls = getattr(module, "AIOSv1PolicyRule", None)
        if not isinstance(cls, type):
            raise LoadFailure("code/function.py defines no AIOSv1PolicyRule class")
        try:
            instance = cls(load["rule_id"], load.get("settings") or {}, load.get("parameters") or {})
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise LoadFailure(f"AIOSv1PolicyRule.__init__ raised {_exc_name(exc)}: {_describe(exc)}") from exc
        problem = _eval_problem(instance)
        if problem:
            raise LoadFailure(problem)
        return instance

    def _instance(self, request):
        """The warm (instance, eval parameters) for request["key"], created from request["load"] when missing.
        The server sends the load spec only the first time a key reaches this worker, so eval's parameters
        (the spec's, unless the call gives its own) are kept with the instance: like the SDKs' in-process
        evaluators, every call of an instance gets the same parameters object."""
        key = request["key"]
        entry = self.instances.get(key)
        if entry is not None:
            self.instances.move_to_end(key)
            self.tag.current = entry[2]
            return entry, False
        load = request.get("load")
        if load is None:
            raise NeedLoad(f"no instance {key!r} here")
        self.tag.current = load.get("rule_id")
        instance = self._create(load)
        restore = request.get("restore_state")
        if restore is not None and hasattr(instance, "set_state"):
            try:
                instance.set_state(restore)
            except MemoryError:
                raise
            except BaseException as exc:  # noqa: BLE001
                # Said apart from the method's own error (it used to read as one), so the caller can name it.
                raise RestoreFailure() from exc
        # __init__ got its own copy: what the policy keeps from it is not shared with what eval is handed.
        entry = (instance, copy.deepcopy(load.get("parameters") or {}), load.get("rule_id"))
        self.instances[key] = entry
        if load.get("pinned"):
            self.pinned.add(key)
        if len(self.instances) > self.max_instances:
            self._make_room(key)
        return entry, True

    def _make_room(self, made):
        """Drops the least recently used instances past max_instances, but never a pinned one nor the one just made: pinned
        ones may take the worker past its cap."""
        excess = len(self.instances) - self.max_instances
        for key in [key for key in self.instances if key not in self.pinned and key != made][:excess]:
            del self.instances[key]

    def _drop(self, key):
        self.instances.pop(key, None)
        self.pinned.discard(key)

    # -- calls -------------------------------------------------------------------------
    @staticmethod
    def _call(entry, method, args):
        instance = entry[0]
        if method == "eval":
            context = args.get("context")
            if not isinstance(context, dict):
                context = {}
            parameters = args["parameters"] if "parameters" in args else entry[1]
            result = instance.eval(parameters or {}, args.get("input_data"), context)
            return {"result": result, "context": context}
        if method == "management":
            if not hasattr(instance, "management"):
                raise AttributeError("the policy does not implement management(action, data)")
            return instance.management(args.get("action"), args.get("data"))
        if method == "get_state":
            return instance.get_state() if hasattr(instance, "get_state") else None
        if method == "set_state":
            if not hasattr(instance, "set_state"):
                raise AttributeError("the policy does not implement set_state(state)")
            instance.set_state(args.get("state"))
            return None
        if method == "load":
            return {"loaded": True}
        raise ValueError(f"unknown method {method!r}")

    @staticmethod
    def _attach_state(instance, method, reply):
        """Adds get_state()'s answer to reply (keeps_state false when the class has none); an error reply when it raised,
        or answered what is not JSON, or not a dict (None, "no state", is answered as is)."""
        getter = getattr(instance, "get_state", None)
        if getter is None:
            reply["keeps_state"] = False
            return None
        try:
            state = getter()
            # Checked here so a state that is not JSON is named as such, not blamed on the method's result.
            json.dumps(state, allow_nan=False)
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001
            return _error("state", _exc_name(exc),
                          f"get_state() after {method} raised {_exc_name(exc)}: {_describe(exc)}", _format_traceback(exc))
        if state is not None and not isinstance(state, dict):
            # set_state() is handed back what get_state() answered. Saved as it was, a list came back wrapped as
            # {"value": [...]}: a shape the policy never gave, which broke its restore after a restart or a lost worker.
            return _error("state", "TypeError", f"get_state() after {method} answered {_described(state)}, not a dict")
        reply["keeps_state"] = True
        reply["state"] = state
        return None

    def _budget_cpu(self, seconds):
        """Sets the CPU-time soft limit to this call's allowance. It counts from the CPU time read when the previous
        call ended (the host loop between two calls costs microseconds; the target's +1 s covers it), so a call
        pays for one CPU-time read, not two. Calls within the same CPU second share a target, so setrlimit runs only
        when it moves (the hard limit is read once, at the first call), and most calls stop at the first comparison."""
        if not seconds:
            return
        wanted = int(self.cpu_used + seconds) + 1
        if wanted == self.cpu_wanted:
            return
        if self.cpu_hard is None:
            self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        target = wanted
        if self.cpu_cap:
            target = min(target, self.cpu_cap)
        if self.cpu_hard != resource.RLIM_INFINITY:
            target = min(target, self.cpu_hard)
        if target != self.cpu_target:
            try:
                resource.setrlimit(resource.RLIMIT_CPU, (target, self.cpu_hard))
                self.cpu_target = target
            except ValueError:
                # The policy lowered the hard limit itself: read it again next call.
                self.cpu_hard = None
                self.cpu_target = None
                self.cpu_wanted = None
                return
        self.cpu_wanted = wanted

    def _near_cpu_cap(self):
        """True once the worker has used half its lifetime CPU cap: the server then replaces it, so no call starts
        on a worker that the cap could stop midway. Half, not more, because the kernel enforces RLIMIT_CPU on
        tick samples, which on a busy host can run well ahead of the exact time _cpu_time reports."""
        return bool(self.cpu_cap) and self.cpu_used > _RETIRE_AT_CPU_FRACTION * self.cpu_cap

    def handle(self, request):
        try:
            reply = self._handle(request)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a policy may have closed or replaced them
                    pass
            self.cpu_used = _cpu_time()
        if self._near_cpu_cap():
            # The server replaces this worker; the host exits after this reply (see main).
            reply["retiring"] = True
        return reply

    def _handle(self, request):
        op = request.get("op")
        if op == "unload":
            self._drop(request["key"])
            return {"ok": True, "value": None}
        if op != "invoke":
            return _error("error", "ValueError", f"unknown op {op!r}")
        start_by = request.get("start_by")
        if start_by is not None and self.shares_clock and time.monotonic() >= start_by:
            # Its caller stopped waiting while this request was behind others of its batch: it is not run (nor its
            # instance created), and the server answers the caller's 504 saying it had no effect.
            return _error("not_started", "NotStarted", "the call's caller stopped waiting before this worker got to it")
        created = instance = None
        try:
            self._budget_cpu(request.get("cpu_seconds"))
            entry, created = self._instance(request)
            instance = entry[0]
            value = self._call(entry, request["method"], request.get("args") or {})
            if request.get("once"):
                self._drop(request["key"])
            reply = {"ok": True, "value": value, "created": created}
            if request.get("with_state"):
                # The caller persists instance state after every call: answering it here saves a second round trip.
                failure = self._attach_state(instance, request["method"], reply)
                if failure is not None:
                    return failure
            return reply
        except MemoryError:
            self._drop(request["key"])
            gc.collect()
            # The heap of a process that hit its address-space limit is not to be trusted: this
            # reply is the last, and requests already sent after it run on the replacement.
            reply = _error("memory", "MemoryError", "the policy exceeded its memory limit")
            reply["retiring"] = True
            return reply
        except NeedLoad as exc:
            return _error("need_load", "NeedLoad", str(exc))
        except LoadFailure as exc:
            return _error("load", "PolicyLoadError", str(exc), _format_traceback(exc))
        except RestoreFailure as exc:
            cause = exc.__cause__
            return _error("restore", _exc_name(cause), _describe(cause), _format_traceback(cause))
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a policy is still the policy's error
            reply = _error("error", _exc_name(exc), _describe(exc), _format_traceback(exc))
            if created:
                # The method raised on an instance this request created (first use, or again after eviction or a
                # replaced worker): said as on success, so a caller that replays what the lost instance had can tell.
                reply["created"] = True
                reply["keeps_state"] = hasattr(instance, "get_state")
            return reply


def main():
    try:
        os.setsid()  # own process group: the server kills the whole group on overrun
    except OSError:
        pass
    proto_in, proto_out = _take_protocol_fds()
    _close_inherited_fds((proto_in, proto_out))
    config = json.loads(_read_exact(proto_in, _HEADER.unpack(_read_exact(proto_in, 4))[0]))
    channel = Channel(proto_in, proto_out, int(config.get("max_frame_bytes", 64 << 20)))
    try:
        _apply_limits(config)
        _isolate_network(config)
        shared_tmp, shared_ipc = _drop_privileges(config)
        problem = _probe_stdlib(config)
    except SandboxFailure as exc:
        channel.send({"ready": False, "error": str(exc), "setting": exc.setting})
        return 3
    except Exception as exc:  # noqa: BLE001
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        channel.send({"ready": False, "error": problem})
        return 3
    shares_clock = _shares_clock(config)
    channel.send({"ready": True, "uid": os.getuid(), "pid": os.getpid(), "shared_tmp": shared_tmp, "shared_ipc": shared_ipc,
                  "ipc_uncapped": _ipc_uncapped, "host_views": _host_views_by, "shares_clock": shares_clock,
                  "executable": sys.executable, "version": sys.version.split()[0]})
    host = Host(channel, config, _tag_output(config), shares_clock)
    host_pid = os.getpid()
    while True:
        try:
            request = channel.receive()
        except EOFError:
            return 0
        reply = host.handle(request)
        if os.getpid() != host_pid:
            # A process the policy forked returned into the host loop: it must never write a frame.
            os._exit(0)
        channel.send(reply)
        if reply.get("retiring"):
            return 0


if __name__ == "__main__":
    sys.exit(main())
