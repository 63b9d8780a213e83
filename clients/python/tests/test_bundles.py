"""Safe unpacking: what a hostile bundle tries is refused with a message naming it, and nothing escapes."""
import io
import os
import tarfile
import tempfile
import unittest
import zipfile

import support
from policygrid import PolicyGridApiError, UnpackLimits
from policygrid.bundles import BundleCache, unpack

GOOD = {"code/function.py": b"class AIOSv1PolicyRule: pass\n", "code/helper.py": b"X = 1\n"}


class UnpackTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.outside = os.path.join(self.tmp.name, "outside")
        self.target = os.path.join(self.tmp.name, "bundle")
        os.makedirs(self.target)

    def tearDown(self):
        self.tmp.cleanup()

    def refused(self, data, *words, limits=UnpackLimits()):
        with self.assertRaises(PolicyGridApiError) as caught:
            unpack(data, self.target, limits)
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "bad_request"))
        for w in words:
            self.assertIn(w, caught.exception.message)
        self.assertFalse(os.path.exists(self.outside), "something was written outside the bundle")
        return caught.exception

    def test_zip_tar_gz_and_tar_xz_unpack(self):
        for data in (support.zip_bytes(GOOD), support.tar_bytes(GOOD, "w:gz"), support.tar_bytes(GOOD, "w:xz")):
            target = tempfile.mkdtemp(dir=self.tmp.name)
            unpack(data, target)
            with open(os.path.join(target, "code", "function.py"), "rb") as f:
                self.assertEqual(f.read(), GOOD["code/function.py"])

    def test_not_an_archive(self):
        self.refused(b"just some text, not a bundle", "not a readable archive")

    def test_truncated_zip(self):
        self.refused(support.zip_bytes(GOOD)[:60], "not a readable")

    def test_zip_slip_with_dotdot(self):
        self.refused(support.zip_bytes({"code/function.py": b"", "../outside": b"x"}), "'..'")

    def test_absolute_path(self):
        self.refused(support.tar_bytes({"/tmp/outside-abs": b"x"}), "absolute path")

    def test_tar_symlink_leading_out(self):
        link = tarfile.TarInfo("code/escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../outside"
        self.refused(support.tar_bytes(GOOD, extra=[link]), "link leading outside")

    def test_tar_symlink_to_absolute_target(self):
        link = tarfile.TarInfo("code/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        self.refused(support.tar_bytes(GOOD, extra=[link]), "absolute path")

    def test_tar_symlink_inside_the_tree_becomes_a_copy(self):
        link = tarfile.TarInfo("code/alias.py")
        link.type = tarfile.SYMTYPE
        link.linkname = "helper.py"
        unpack(support.tar_bytes(GOOD, extra=[link]), self.target)
        alias = os.path.join(self.target, "code", "alias.py")
        self.assertFalse(os.path.islink(alias))
        with open(alias, "rb") as f:
            self.assertEqual(f.read(), b"X = 1\n")

    def test_zip_symlink_entry(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            info = zipfile.ZipInfo("code/link")
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "../../outside")
        self.refused(buf.getvalue(), "symbolic link")

    def test_device_file(self):
        dev = tarfile.TarInfo("code/null")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        self.refused(support.tar_bytes(GOOD, extra=[dev]), "device")

    def test_zip_bomb_is_stopped_by_the_ratio_cap(self):
        bomb = support.zip_bytes({"code/function.py": b"", "code/zeros": b"\0" * (20 * 1024 * 1024)})
        self.assertLess(len(bomb), 100_000)
        self.refused(bomb, "unpacks to more than")

    def test_total_size_cap(self):
        data = support.zip_bytes({"code/function.py": os.urandom(4096)})
        self.refused(data, "unpacks to more than", limits=UnpackLimits(max_total_bytes=1024))

    def test_entry_count_cap(self):
        many = {f"code/f{i}.py": b"" for i in range(20)}
        self.refused(support.zip_bytes(many), "more than 10 entries", limits=UnpackLimits(max_entries=10))


if __name__ == "__main__":
    unittest.main()


class CacheDirTests(unittest.TestCase):
    """A cache_dir that cannot hold bundles (a file, a path under one) raised a bare FileExistsError or
    NotADirectoryError from the first call; it is a ValueError naming cache_dir."""

    class _Client:
        def __init__(self, data):
            self.data = data

        def download_bundle(self, url):
            return self.data

    def test_a_cache_dir_that_is_a_file_or_under_one_is_a_value_error_naming_it(self):
        import hashlib
        data = support.zip_bytes(GOOD)
        code = "bundle://sha256/" + hashlib.sha256(data).hexdigest()
        with tempfile.TemporaryDirectory() as tmp:
            a_file = os.path.join(tmp, "not-a-dir")
            with open(a_file, "w") as f:
                f.write("x")
            for cache_dir in (a_file, os.path.join(a_file, "bundles")):
                with self.assertRaises(ValueError) as caught:
                    BundleCache(self._Client(data), cache_dir).get(code)
                self.assertIn(f"cache_dir {cache_dir!r} cannot hold bundles", str(caught.exception))
            good = os.path.join(tmp, "cache")
            self.assertTrue(os.path.isfile(BundleCache(self._Client(data), good).get(code).function_py))

