"""Acceptance: a protocol runs against laser and stage emulators in separate processes, in factory states."""

import subprocess
import sys
import threading

import pytest


def _start(*args):
    """``cybloid -v emulate ...`` in its own process; returns (process, port, stderr lines)."""
    proc = subprocess.Popen([sys.executable, "-m", "cybloid", "-v", "emulate", *args, "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = proc.stdout.readline().strip()
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    t.start()
    return proc, port, lines


def _stop(proc):
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_harmonic_trap_runs_against_factory_state_emulators_in_other_processes(tmp_path):
    laser, laser_port, laser_log = _start("laser", "--autostart", "on", "--line-ending", "cr", "--warmup-s", "0.5")
    stage, stage_port, stage_log = _start("stage", "--comp-mode", "1", "--resolution", "0")
    try:
        assert laser_port.endswith("/laser") and stage_port.endswith("/stage")
        hw = tmp_path / "bench.toml"
        hw.write_text(f'''format = "cybloid-hardware/1"
name = "two-emulators"
[camera]
driver = "simulated"
[steering]
driver = "simulated"
[laser]
driver = "cobolt"
port = "{laser_port}"
timeout_s = 2.0
poll_s = 0.1
on_timeout_s = 20.0
[stage]
driver = "proscan"
port = "{stage_port}"
timeout_s = 2.0
[limits]
max_power_mW = 200.0
''')
        run = subprocess.run([sys.executable, "-m", "cybloid", "run", "harmonic-trap", "--hardware", str(hw),
                              "--uncalibrated", "--no-progress", "-p", "duration=0.5", "-p", "traps=1",
                              "--set", "particles.count=1"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        _stop(laser)
        _stop(stage)
    sent_to_laser = [ln.strip()[2:] for ln in laser_log if ln.strip().startswith("< ")]
    sent_to_stage = [ln.strip()[2:] for ln in stage_log if ln.strip().startswith("< ")]
    # the laser: autostart disabled at connect, switched on through its warm-up, off at the end
    assert "@cobas 0" in sent_to_laser
    assert sent_to_laser.index("@cobas 0") < sent_to_laser.index("l1")
    assert "gom?" in sent_to_laser[sent_to_laser.index("l1"):] and sent_to_laser[-1] == "l0"
    # the stage: standard mode and numeric errors first, then a resolution (the controller reported 0)
    assert sent_to_stage[:3] == ["COMP,0", "ERROR,0", "RES,s"] and "RES,s,0.1" in sent_to_stage
