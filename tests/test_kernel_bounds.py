"""Bounds-checked run of the hot compiled kernels: tests/kernel_bounds_scenario.py in a subprocess
with NUMBA_BOUNDSCHECK=1 and its own NUMBA_CACHE_DIR (bounds-checked code never mixes with the normal
cache). An out-of-bounds write then raises IndexError naming the kernel instead of corrupting memory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("kernel_bounds_scenario.py")


@pytest.mark.slow
def test_hot_kernels_stay_in_bounds_with_numba_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    proc = subprocess.run([sys.executable, str(SCENARIO)], env=env, capture_output=True, text=True,
                          timeout=1200, cwd=tmp_path)
    assert proc.returncode == 0, f"bounds-checked scenario failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    assert "kernel bounds scenario: ok" in proc.stdout
