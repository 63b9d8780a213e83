"""The SDK installs offline: pip has no index and no `wheel` here, so the in-tree backend must do it all."""
import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile

PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def load_backend():
    spec = importlib.util.spec_from_file_location("policygrid_build", os.path.join(PROJECT, "_build", "policygrid_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WheelTests(unittest.TestCase):
    def test_wheel_has_both_packages_and_a_record_that_verifies(self):
        backend = load_backend()
        with tempfile.TemporaryDirectory() as out:
            name = backend.build_wheel(out)
            self.assertEqual(name, "policygrid-0.1.0-py3-none-any.whl")
            with zipfile.ZipFile(os.path.join(out, name)) as whl:
                names = set(whl.namelist())
                self.assertIn("policygrid/__init__.py", names)
                self.assertIn("policygrid/evaluator.py", names)
                self.assertIn("aios_policy_sandbox/__init__.py", names)
                record = whl.read("policygrid-0.1.0.dist-info/RECORD").decode().splitlines()
                listed = {line.split(",")[0] for line in record}
                self.assertEqual(listed, names)
                for line in record:
                    path, digest, size = line.split(",")
                    if not digest:
                        continue
                    data = whl.read(path)
                    expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual(digest, f"sha256={expected}", path)
                    self.assertEqual(int(size), len(data), path)
                metadata = whl.read("policygrid-0.1.0.dist-info/METADATA").decode()
                self.assertIn("Name: policygrid", metadata)
                self.assertIn("Version: 0.1.0", metadata)

    def test_sdist_carries_the_backend_so_it_builds_again(self):
        backend = load_backend()
        with tempfile.TemporaryDirectory() as out:
            name = backend.build_sdist(out)
            with tarfile.open(os.path.join(out, name)) as sdist:
                names = set(sdist.getnames())
            for required in ("PKG-INFO", "pyproject.toml", "_build/policygrid_build.py", "src/policygrid/__init__.py",
                             "src/aios_policy_sandbox/__init__.py"):
                self.assertIn(f"policygrid-0.1.0/{required}", names)


class OfflineInstallTests(unittest.TestCase):
    def test_pip_install_with_no_index_into_a_fresh_venv(self):
        with tempfile.TemporaryDirectory() as tmp:
            venv = os.path.join(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
            python = os.path.join(venv, "bin", "python")
            # The venv has no pip of its own; the running interpreter's pip installs into it.
            result = subprocess.run(
                [sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--disable-pip-version-check",
                 "--quiet", PROJECT],
                capture_output=True, text=True, timeout=120)
            if result.returncode != 0 and "no such option: --python" in result.stderr:
                subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
                result = subprocess.run([python, "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
                                         "--quiet", PROJECT], capture_output=True, text=True, timeout=120)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            probe = subprocess.run(
                [python, "-c", "import policygrid, aios_policy_sandbox, sys;"
                 "assert aios_policy_sandbox.LocalPolicyEvaluator is policygrid.LocalPolicyEvaluator;"
                 "print(policygrid.__file__)"],
                capture_output=True, text=True, cwd=tmp, timeout=60)
            self.assertEqual(probe.returncode, 0, probe.stderr)
            self.assertTrue(probe.stdout.strip().startswith(venv), probe.stdout)


if __name__ == "__main__":
    unittest.main()
