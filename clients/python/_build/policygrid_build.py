"""In-tree PEP 517 build backend written with the standard library only.

Why: the machines this SDK is installed on often have pip but neither a package index nor
`wheel`/`setuptools`, so `pip install ./clients/python` must build without fetching anything.
It builds a pure-Python wheel (PEP 427: *.dist-info with METADATA, WHEEL, RECORD) from the
packages under src/, an sdist, and an editable wheel (PEP 660, a .pth file pointing at src/).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SRC = os.path.join(_ROOT, "src")
# Reproducible archives: a fixed timestamp (zip cannot store dates before 1980).
_EPOCH = (1980, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------ project metadata
def _read_pyproject() -> dict:
    path = os.path.join(_ROOT, "pyproject.toml")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python 3.11+
        return tomllib.loads(raw.decode("utf-8"))
    except ModuleNotFoundError:
        return _parse_simple_toml(raw.decode("utf-8"))


def _parse_simple_toml(text: str) -> dict:
    """Enough TOML for this file on Python < 3.11: tables, strings, lists of strings, inline tables."""
    data: dict = {}
    table = data
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([^\]]+)\]$", line)
        if m:
            table = data
            for part in m.group(1).split("."):
                table = table.setdefault(part.strip(), {})
            continue
        m = re.match(r'^([A-Za-z0-9_.-]+)\s*=\s*(.+)$', line)
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if value.startswith("["):
            table[key] = re.findall(r'"([^"]*)"', value)
        elif value.startswith("{"):
            table[key] = dict(re.findall(r'([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"', value))
        else:
            table[key] = value.strip('"')
    return data


def _project() -> dict:
    data = _read_pyproject()
    project = dict(data["project"])
    project["packages"] = data.get("tool", {}).get("policygrid-build", {}).get("packages", [])
    if not project["packages"]:
        raise RuntimeError("pyproject.toml: [tool.policygrid-build] packages is empty")
    return project


def _dist_name(project: dict) -> str:
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata_text(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lic = project.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        lines.append(f"License: {lic['text']}")
    for dep in project.get("dependencies", []):
        lines.append(f"Requires-Dist: {dep}")
    body = ""
    readme = project.get("readme")
    if isinstance(readme, str) and os.path.isfile(os.path.join(_ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(_ROOT, readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return "\n".join(lines) + "\n" + body


def _wheel_text() -> str:
    return "Wheel-Version: 1.0\nGenerator: policygrid_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


# ------------------------------------------------------------------ wheel writing
class _WheelWriter:
    """Writes files into a wheel and records each one's hash and size for RECORD."""

    def __init__(self, path: str, dist_info: str):
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self._dist_info = dist_info
        self._records: list[str] = []

    def add(self, arcname: str, data: bytes) -> None:
        info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
        self._records.append(f"{arcname},sha256={digest},{len(data)}")

    def close(self) -> None:
        record = f"{self._dist_info}/RECORD"
        self._records.append(f"{record},,")
        info = zipfile.ZipInfo(record, date_time=_EPOCH)
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, "\n".join(self._records) + "\n")
        self._zip.close()


def _package_files(packages: list[str]):
    """(path inside the wheel, path on disk) for every source file of the listed packages."""
    for package in packages:
        base = os.path.join(_SRC, package)
        if not os.path.isfile(os.path.join(base, "__init__.py")):
            raise RuntimeError(f"package {package!r} not found under {_SRC}")
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                full = os.path.join(dirpath, name)
                yield os.path.relpath(full, _SRC).replace(os.sep, "/"), full


def _write_dist_info(writer_add, project: dict, dist_info: str) -> None:
    writer_add(f"{dist_info}/METADATA", _metadata_text(project).encode("utf-8"))
    writer_add(f"{dist_info}/WHEEL", _wheel_text().encode("utf-8"))
    writer_add(f"{dist_info}/top_level.txt", ("\n".join(project["packages"]) + "\n").encode("utf-8"))


def _build(wheel_directory: str, editable: bool) -> str:
    project = _project()
    name, version = _dist_name(project), project["version"]
    dist_info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-py3-none-any.whl"
    os.makedirs(wheel_directory, exist_ok=True)
    writer = _WheelWriter(os.path.join(wheel_directory, filename), dist_info)
    try:
        if editable:
            # PEP 660: a .pth line puts src/ on sys.path, so edits show up without reinstalling.
            writer.add(f"__editable__.{name}.pth", (_SRC + "\n").encode("utf-8"))
        else:
            for arcname, full in _package_files(project["packages"]):
                with open(full, "rb") as f:
                    writer.add(arcname, f.read())
        _write_dist_info(writer.add, project, dist_info)
    finally:
        writer.close()
    return filename


# ------------------------------------------------------------------ PEP 517 / 660 hooks
def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    dist_info = f"{_dist_name(project)}-{project['version']}.dist-info"
    target = os.path.join(metadata_directory, dist_info)
    os.makedirs(target, exist_ok=True)

    def add(arcname: str, data: bytes) -> None:
        with open(os.path.join(metadata_directory, arcname), "wb") as f:
            f.write(data)

    _write_dist_info(add, project, dist_info)
    return dist_info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    name, version = _dist_name(project), project["version"]
    base = f"{name}-{version}"
    filename = f"{base}.tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)

    def add(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
        info = tarfile.TarInfo(f"{base}/{arcname}")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.mktime(_EPOCH + (0, 0, -1)))
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "PKG-INFO", _metadata_text(project).encode("utf-8"))
        for rel in ("pyproject.toml", "README.md", "_build/policygrid_build.py"):
            full = os.path.join(_ROOT, rel)
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    add(tar, rel, f.read())
        for arcname, full in _package_files(project["packages"]):
            with open(full, "rb") as f:
                add(tar, f"src/{arcname}", f.read())
    return filename
