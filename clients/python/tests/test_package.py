"""The package installs from pyproject.toml with no dependency (offline)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from _support import HERE

PROJECT = os.path.dirname(HERE)


class PackageTest(unittest.TestCase):
    def test_installs_and_imports_with_its_type_marker(self) -> None:
        missing = [m for m in ("pip", "setuptools", "wheel") if importlib.util.find_spec(m) is None]
        if missing:
            self.skipTest(f"{sys.executable} lacks {', '.join(missing)} (Debian: python3-pip python3-wheel)")
        with tempfile.TemporaryDirectory(prefix="wb-py-pkg-") as d:
            target = os.path.join(d, "site")
            # setuptools builds in the project dir (build/, *.egg-info): build a
            # copy, so that the source tree stays as it is.
            src = os.path.join(d, "src")
            os.mkdir(src)
            for f in ("pyproject.toml", "README.md"):
                shutil.copy(os.path.join(PROJECT, f), src)
            shutil.copytree(os.path.join(PROJECT, "warmbox"), os.path.join(src, "warmbox"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            # --no-index: nothing may be fetched (the package has no dependency).
            p = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index",
                 "--no-deps", "--no-cache-dir", "--target", target, src],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=d,
                env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", TMPDIR=d))
            self.assertEqual(p.returncode, 0, p.stdout.decode("utf-8", "replace"))
            self.assertTrue(os.path.exists(os.path.join(target, "warmbox", "py.typed")))
            code = "import warmbox, sys; print(warmbox.__version__, warmbox.__file__)"
            out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, cwd=d,
                                 env=dict(os.environ, PYTHONPATH=target)).stdout.decode()
            version, path = out.split()
            self.assertEqual(version, "0.1.0")
            self.assertTrue(path.startswith(target), path)


if __name__ == "__main__":
    unittest.main()
