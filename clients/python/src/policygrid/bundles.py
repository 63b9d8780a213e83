"""Fetching, verifying and safely unpacking policy bundles for local (in-process) evaluation.

A bundle is a .zip, .tar.gz or .tar.xz holding code/function.py. It is downloaded once per
content hash, checked against the sha256 its address names and the one the registry recorded
(`code_sha256`), unpacked with the same refusals
as the server (absolute paths, "..", links leading out of the tree, device files, and caps on
entry count, total size and compression ratio) and cached by hash.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass

from .errors import PolicyGridApiError

_SHA_IN_PATH = re.compile(r"/bundles/sha256/([0-9a-fA-F]{64})/?$")
_BUNDLE_URI = re.compile(r"^bundle://sha256/([0-9a-fA-F]{64})$")
_SHA_FRAGMENT = re.compile(r"^sha256=([0-9a-fA-F]{64})$", re.IGNORECASE)


@dataclass(frozen=True)
class UnpackLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0  # unpacked bytes per archive byte


@dataclass(frozen=True)
class BundleDirectory:
    sha256: str
    root: str

    @property
    def function_py(self) -> str:
        return os.path.join(self.root, "code", "function.py")

    @property
    def code_dir(self) -> str:
        return os.path.join(self.root, "code")


def default_cache_dir() -> str:
    env = os.environ.get("POLICYGRID_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "policygrid", "bundles")


def _shown(code: str) -> str:
    """The code as messages show it: a URL without user info or query, which may carry credentials."""
    parsed = urllib.parse.urlparse(code or "")
    if parsed.scheme not in ("http", "https"):
        return code
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}{parsed.path}"


def bad_bundle(message: str) -> PolicyGridApiError:
    return PolicyGridApiError(400, "bad_request", message)


class BundleCache:
    """Resolves a policy's `code` to an unpacked directory, downloading at most once per hash."""

    def __init__(self, client, cache_dir: str | None = None, limits: UnpackLimits | None = None):
        self._client = client
        self.cache_dir = cache_dir or default_cache_dir()
        self.limits = limits or UnpackLimits()
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: a download another thread made at the fork holds this lock, by nobody, for good."""
        self._lock = threading.Lock()

    def get(self, code: str, code_sha256: str | None = None) -> BundleDirectory:
        """The bundle `code` names. `code_sha256` is the document's recorded hash (None or "" when it has
        none): the registry recorded the bytes it loaded, and any other bytes at an unpinned URL are refused."""
        url, pinned = self._address(code)
        recorded = (code_sha256 or "").strip().lower() or None
        with self._lock:
            expected = recorded or pinned
            if expected and (pinned is None or pinned == expected):
                held = self._cached(expected)
                if held:
                    return held
            data = self._client.download_bundle(url)
            actual = hashlib.sha256(data).hexdigest()
            for want in (pinned, recorded):
                if want and actual != want:
                    raise PolicyGridApiError(
                        502, "backend_error",
                        f"bundle '{_shown(code)}' failed verification: it has sha256 {actual}, not the expected {want}; refusing it")
            return self._cached(actual) or self._unpack(actual, data)

    def _address(self, code: str) -> tuple[str, str | None]:
        """(where to download, the sha256 the address promises, if any)."""
        m = _BUNDLE_URI.match(code or "")
        if m:
            return f"/bundles/sha256/{m.group(1).lower()}", m.group(1).lower()
        parsed = urllib.parse.urlparse(code or "")
        if parsed.scheme in ("http", "https"):
            m = _SHA_IN_PATH.search(parsed.path)
            if m:
                return code, m.group(1).lower()
            m = _SHA_FRAGMENT.match(parsed.fragment)
            return code, (m.group(1).lower() if m else None)
        raise bad_bundle(f"policy code {code!r} cannot be fetched by the SDK: expected bundle://sha256/<hex> or an http(s):// URL")

    def _cached(self, sha: str) -> BundleDirectory | None:
        root = os.path.join(self.cache_dir, sha)
        bundle = BundleDirectory(sha, root)
        return bundle if os.path.isfile(bundle.function_py) else None

    def _unpack(self, sha: str, data: bytes) -> BundleDirectory:
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=self.cache_dir)
        except (FileExistsError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
            # The caller's cache_dir (or POLICYGRID_CACHE_DIR) is not a directory it may write: its mistake, named as
            # such, not a bare FileExistsError from deep inside the first call.
            raise ValueError(f"cache_dir {self.cache_dir!r} cannot hold bundles: {e.strerror or e}"
                             f"{f' ({e.filename})' if e.filename and e.filename != self.cache_dir else ''}; "
                             "give a directory this process may create and write") from e
        try:
            unpack(data, staging, self.limits)
            bundle = BundleDirectory(sha, staging)
            if not os.path.isfile(bundle.function_py):
                raise bad_bundle(f"bundle sha256:{sha} has no code/function.py")
            final = os.path.join(self.cache_dir, sha)
            try:
                os.rename(staging, final)
            except OSError:
                # Another process unpacked the same content first; theirs is identical.
                shutil.rmtree(staging, ignore_errors=True)
            return BundleDirectory(sha, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def unpack(data: bytes, target: str, limits: UnpackLimits = UnpackLimits()) -> None:
    """Unpacks an archive into `target`, refusing anything that could escape or explode."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        _unpack_zip(data, target, limits)
    elif data[:2] == b"\x1f\x8b":
        _unpack_tar(data, target, limits, "r:gz")
    elif data[:6] == b"\xfd7zXZ\x00":
        _unpack_tar(data, target, limits, "r:xz")
    else:
        raise bad_bundle("bundle is not a readable archive (expected .zip, .tar.gz or .tar.xz)")


def _safe_name(name: str) -> str:
    """The entry's relative path, or a refusal naming it."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise bad_bundle(f"bundle entry {name!r} has an absolute path")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise bad_bundle(f"bundle entry {name!r} leads outside the bundle ('..')")
    return "/".join(parts)


class _Budget:
    def __init__(self, limits: UnpackLimits, archive_size: int):
        self.limits = limits
        self.total = 0
        self.entries = 0
        self.cap = min(limits.max_total_bytes, int(max(archive_size, 1) * limits.max_ratio))

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise bad_bundle(f"bundle has more than {self.limits.max_entries} entries")

    def spend(self, n: int) -> None:
        self.total += n
        if self.total > self.cap:
            raise bad_bundle(
                f"bundle unpacks to more than {self.cap} bytes (limits: {self.limits.max_total_bytes} bytes, "
                f"ratio {self.limits.max_ratio:g}x the archive)")


def _inside(root_real: str, path: str) -> str:
    parent = os.path.realpath(os.path.dirname(path))
    if parent != root_real and not parent.startswith(root_real + os.sep):
        raise bad_bundle(f"bundle entry {os.path.relpath(path, root_real)!r} would be written outside the bundle through a link")
    return path


def _copy(src, dest: str, budget: _Budget, mode: int = 0o644) -> None:
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(65536)
            if not chunk:
                break
            budget.spend(len(chunk))  # counted as read: sizes in headers can lie
            out.write(chunk)
    os.chmod(dest, mode)


def _unpack_zip(data: bytes, target: str, limits: UnpackLimits) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise bad_bundle(f"bundle is not a readable zip archive: {e}") from e
    budget = _Budget(limits, len(data))
    root_real = os.path.realpath(target)
    with archive:
        for info in archive.infolist():
            budget.entry()
            rel = _safe_name(info.filename)
            if not rel:
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise bad_bundle(f"bundle entry {info.filename!r} is a symbolic link (not allowed in zip bundles)")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise bad_bundle(f"bundle entry {info.filename!r} is not a regular file or directory")
            dest = os.path.join(target, rel)
            if info.is_dir():
                _inside(root_real, os.path.join(dest, "x"))
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _inside(root_real, dest)
            try:
                with archive.open(info) as src:
                    _copy(src, dest, budget)
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as e:
                raise bad_bundle(f"bundle entry {info.filename!r} cannot be read: {e}") from e


def _unpack_tar(data: bytes, target: str, limits: UnpackLimits, mode: str) -> None:
    budget = _Budget(limits, len(data))
    root_real = os.path.realpath(target)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode=mode)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise bad_bundle(f"bundle is not a readable tar archive: {e}") from e
    links: list[tuple[str, str]] = []
    try:
        with archive:
            for member in archive:
                budget.entry()
                rel = _safe_name(member.name)
                if not rel:
                    continue
                dest = os.path.join(target, rel)
                if member.isdir():
                    os.makedirs(dest, exist_ok=True)
                    _inside(root_real, os.path.join(dest, "x"))
                elif member.isfile():
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    _inside(root_real, dest)
                    src = archive.extractfile(member)
                    if src is None:
                        raise bad_bundle(f"bundle entry {member.name!r} cannot be read")
                    _copy(src, dest, budget, 0o755 if member.mode & 0o111 else 0o644)
                elif member.issym() or member.islnk():
                    link = member.linkname.replace("\\", "/")
                    if member.issym():
                        if link.startswith("/"):
                            raise bad_bundle(f"bundle entry {member.name!r} is a link to an absolute path ({member.linkname})")
                        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), link))
                    else:
                        resolved = os.path.normpath(_safe_name(link) or ".")
                    if resolved == ".." or resolved.startswith("../") or os.path.isabs(resolved):
                        raise bad_bundle(f"bundle entry {member.name!r} is a link leading outside the bundle ({member.linkname})")
                    links.append((rel, resolved))
                else:
                    raise bad_bundle(f"bundle entry {member.name!r} is a device, fifo or other special file")
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise bad_bundle(f"bundle is not a readable tar archive: {e}") from e
    # Links become copies of their in-tree targets, made after every regular file exists, so no
    # later entry can be written through a link.
    for rel, resolved in links:
        dest = os.path.join(target, rel)
        source = os.path.join(target, resolved)
        _inside(root_real, dest)
        real_source = os.path.realpath(source)
        if real_source != root_real and not real_source.startswith(root_real + os.sep):
            raise bad_bundle(f"bundle entry {rel!r} is a link leading outside the bundle")
        if os.path.isfile(real_source):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(real_source, "rb") as src:
                _copy(src, dest, budget)
        elif not os.path.exists(real_source):
            raise bad_bundle(f"bundle entry {rel!r} is a link to {resolved!r}, which is not in the bundle")
