"""Two checkouts never mix: each imports drivers/, calibration/, models/, protocols/ from itself.

The test environment has this checkout installed (editable or not). Two further copies of the
checkout ("clones") are made in a temporary folder; Python started inside each must take every
``cybloid.*`` subpackage from that clone, never from the installed tree or the other clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cybloid._tree import MAPPED

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ["cybloid", *MAPPED.values()]

PROBE = """
import json, cybloid
mods = {}
for name in %r:
    mod = __import__(name, fromlist=["_"])
    mods[name] = [mod.__file__, getattr(mod, "TREE_MARK", None)]
import cybloid.drivers.builders as b
mods["cybloid.drivers.builders"] = [b.__file__, None]
mods["cybloid"] = [cybloid.__file__, None]
print(json.dumps(mods))
"""


def _clone(dest: Path, mark: str) -> Path:
    dest.mkdir()
    for folder in LAYOUT:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for folder in MAPPED.values():
        with open(dest / folder / "__init__.py", "a") as f:
            f.write(f"\nTREE_MARK = {mark!r}\n")
    return dest


def _run(cwd: Path, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_mapping_matches_pyproject_package_dir():
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    assert {k: v for k, v in package_dir.items() if k != "cybloid"} == MAPPED


@pytest.mark.slow
def test_two_clones_each_import_only_their_own_code(tmp_path):
    clones = {mark: _clone(tmp_path / mark, mark) for mark in ("a", "b")}
    for mark, clone in clones.items():
        res = _run(clone, PROBE % list(MAPPED))
        assert res.returncode == 0, res.stderr[-2000:]
        mods = json.loads(res.stdout.strip().splitlines()[-1])
        for name, (file, got_mark) in mods.items():
            assert Path(file).resolve().is_relative_to(clone.resolve()), f"{name} came from {file}, not {clone}"
            if name in MAPPED:
                assert got_mark == mark, f"{name} carries mark {got_mark!r} in clone {mark!r}"


@pytest.mark.slow
def test_clone_missing_a_subpackage_refuses_instead_of_borrowing(tmp_path):
    clone = _clone(tmp_path / "c", "c")
    shutil.rmtree(clone / "calibration")
    res = _run(clone, "import cybloid.calibration")
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "SourceTreeError" in last and "calibration" in last and str(clone) in last
