"""CI cannot pass with the GUI tests skipped: CYBLOID_REQUIRE_GUI=1 turns their skips into failures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_GUI_MODULE = '''
import pytest
pytest.importorskip("cybloid_no_such_qt_binding")

def test_never_collected():
    pass
'''

FAKE_GUI_TESTS = '''
import pytest

@pytest.mark.gui
def test_needs_a_display():
    pytest.skip("no display")

def test_plain_skip_elsewhere_is_allowed():
    pass
'''

OTHER_TESTS = '''
import pytest

def test_unrelated_skip():
    pytest.skip("not a GUI test")
'''


def _run_fake_suite(tmp_path: Path, require: bool) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_gui_fake_module.py").write_text(FAKE_GUI_MODULE)
    (tmp_path / "test_gui_fake_tests.py").write_text(FAKE_GUI_TESTS)
    (tmp_path / "test_other.py").write_text(OTHER_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gui: needs Qt\n")
    env = {**os.environ, "CYBLOID_REQUIRE_GUI": "1" if require else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_gui_skips_fail_when_required(tmp_path):
    res = _run_fake_suite(tmp_path, require=True)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "CYBLOID_REQUIRE_GUI=1, but this GUI test was skipped: no display" in out
    assert "cybloid_no_such_qt_binding" in out  # the module-level importorskip became an error
    assert re.search(r"\b1 skipped\b", out), out  # the non-GUI skip stays a skip


def test_gui_skips_stay_skips_without_the_flag(tmp_path):
    res = _run_fake_suite(tmp_path, require=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"\b3 skipped\b", out), out


def test_ci_script_requires_gui_and_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "export CYBLOID_REQUIRE_GUI=1" in ci
    commands = [line.split("#")[0].strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))]
    assert commands == ["bash install.sh", "python -m pytest"]
    for command in commands:
        assert re.search(rf"^{re.escape(command)}\s", readme, re.M), command


def test_no_importorskip_of_our_own_modules():
    own = ("cybloid", "drivers", "calibration", "models", "protocols")
    bad = []
    for path in (ROOT / "tests").glob("*.py"):
        for m in re.finditer(r"importorskip\(\s*['\"]([\w.]+)['\"]", path.read_text()):
            if m.group(1).split(".")[0] in own:
                bad.append(f"{path.name}: importorskip({m.group(1)!r})")
    assert not bad, bad
