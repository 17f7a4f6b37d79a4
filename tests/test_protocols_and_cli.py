"""Protocol runtime and CLI: dry runs, clear errors for user mistakes, laser off on every exit."""

import subprocess
import sys
import threading

import pytest

from cybloid.cli import main
from cybloid.errors import Aborted, ProtocolError
from cybloid.protocol.dryrun import dry_run
from cybloid.protocol.loader import LabInfo, load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare
from cybloid.profile import load_lab_profile

SMALL = ["--set", "camera.width_px=128", "--set", "camera.height_px=128"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_protocols_lists_harmonic_trap(capsys):
    code, out, _ = run_cli(capsys, "protocols")
    assert code == 0
    assert "harmonic-trap" in out and "stiffness = 0.02 pN/um" in out


def test_check_estimates_duration(capsys):
    code, out, _ = run_cli(capsys, "check", "harmonic-trap", "--param", "duration=12.5")
    assert code == 0
    assert "estimated duration 12.50 s" in out and "1250 frames" in out


def test_run_prints_summary(capsys):
    code, out, _ = run_cli(capsys, "run", "harmonic-trap", "--param", "duration=0.5", "--no-progress", *SMALL)
    assert code == 0, out
    assert "protocol harmonic-trap: done" in out
    assert "frames 50" in out and "laser off" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-protocol"], "unknown protocol 'no-such-protocol'"),
    (["run", "harmonic-trap", "--param", "bogus=1"], "unknown parameter 'bogus'"),
    (["run", "harmonic-trap", "--param", "stiffness=-1"], "is below its minimum"),
    (["run", "harmonic-trap", "--param", "stiffness=abc"], "must be a number"),
    (["run", "harmonic-trap", "--param", "stiffness"], "NAME=VALUE"),
    (["check", "harmonic-trap", "--set", "camera.fps=-3"], "[camera] fps"),
    (["run", "harmonic-trap", "--lab", "nonexistent.toml"], "lab profile 'nonexistent.toml' not found"),
    (["run", "harmonic-trap", "--hardware", "nonexistent"], "hardware profile 'nonexistent' not found"),
])
def test_user_mistakes_give_one_line_errors(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_syntax_error_names_file_and_line(tmp_path, capsys):
    f = tmp_path / "broken.py"
    f.write_text("from cybloid.protocol import wait\n\ndef protocol(p, lab):\n    yield wait(1\n")
    code, _, err = run_cli(capsys, "check", str(f))
    assert code == 2
    assert "broken.py:4: syntax error" in err


def test_malformed_lab_profile_file(tmp_path, capsys):
    f = tmp_path / "lab.toml"
    f.write_text("[camera]\nfps = 'fast'\n")
    code, _, err = run_cli(capsys, "run", "harmonic-trap", "--lab", str(f))
    assert code == 2 and "[camera] fps must be a number" in err and "lab.toml" in err


def test_cli_subprocess_has_no_traceback_for_user_error():
    r = subprocess.run([sys.executable, "-m", "cybloid", "run", "nope"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("cybloid: error: unknown protocol 'nope' (bundled: harmonic-trap; "
                                "or give a path to a .py file)") or "unknown protocol 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


PROTO_RAISES = '''
from cybloid.forces import HarmonicTrap
from cybloid.protocol import set_term, wait

def protocol(p, lab):
    yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
    yield wait(0.2)
    if not lab.dry:  # a dry run would catch it before the laser is ever on
        raise RuntimeError("something broke")
'''


def _open(tmp_path, source, **kw):
    f = tmp_path / "p.py"
    f.write_text(source)
    proto = load_protocol(f)
    lab, loop, vals = prepare(proto, overrides={"camera.width_px": 128, "camera.height_px": 128}, **kw)
    return proto, lab, loop, vals


def test_exception_in_protocol_turns_laser_off_and_names_line(tmp_path):
    proto, lab, loop, vals = _open(tmp_path, PROTO_RAISES)
    runner = ProtocolRunner(loop, proto, vals)
    with pytest.raises(ProtocolError, match=r"p.py:9: protocol raised RuntimeError: something broke"):
        runner.run()
    assert lab.laser.on_count >= 1  # it was on during the run
    assert not lab.laser.is_on and not lab.world.laser_on
    assert lab.steering.blanked
    assert runner.state == "failed"


LONG = '''
from cybloid.forces import HarmonicTrap
from cybloid.protocol import set_term, wait

def protocol(p, lab):
    yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
    yield wait(1000)
'''


def test_ctrl_c_turns_laser_off(tmp_path):
    proto, lab, loop, vals = _open(tmp_path, LONG)
    seen = []

    def progress(elapsed, total, step):
        seen.append(lab.laser.is_on)
        if elapsed > 0.5:
            raise KeyboardInterrupt

    runner = ProtocolRunner(loop, proto, vals, on_progress=progress)
    with pytest.raises(Aborted, match="Ctrl-C"):
        runner.run()
    assert any(seen)
    assert not lab.laser.is_on and lab.steering.blanked
    assert runner.state == "aborted"


@pytest.mark.parametrize("stop_signal,match,code", [(15, "SIGTERM", 143), (None, "Ctrl-C", 130)])
def test_an_interrupt_wrapped_by_compiled_code_still_stops_the_run(tmp_path, stop_signal, match, code):
    """A stop signal or Ctrl-C whose exception is raised inside Numba's dispatcher glue surfaces as a
    SystemError (caused by the KeyboardInterrupt): the run still ends as that stop, laser off."""
    proto, lab, loop, vals = _open(tmp_path, LONG)
    runner = ProtocolRunner(loop, proto, vals)

    def progress(elapsed, total, step):
        if elapsed > 0.3:
            runner.stop_signal = stop_signal  # what stop_on_signals' handler records before raising
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise SystemError("CPUDispatcher(integrate) returned a result with an exception set") from exc

    runner.on_progress = progress
    with pytest.raises(Aborted, match=match) as info:
        runner.run()
    assert info.value.exit_code == code
    assert not lab.laser.is_on and lab.steering.blanked
    assert runner.state == "aborted"


def test_abort_from_another_thread_turns_laser_off(tmp_path):
    proto, lab, loop, vals = _open(tmp_path, LONG)
    runner = ProtocolRunner(loop, proto, vals)
    threading.Timer(1.0, runner.abort).start()
    with pytest.raises(Aborted):
        runner.run()
    assert not lab.laser.is_on
    assert runner.summary.frames > 0


STALL = '''
import time
from cybloid.forces import HarmonicTrap
from cybloid.protocol import set_term, wait, wait_until

def protocol(p, lab):
    yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
    yield wait(0.1)
    yield wait_until(lambda rec: time.sleep(2.0) or False, timeout=0.05)
'''


def test_watchdog_turns_laser_off_when_the_loop_stalls(tmp_path):
    proto, lab, loop, vals = _open(tmp_path, STALL, realtime=True)  # wall-clock watchdog: real time
    states = []
    loop.watchdog.timeout_s = 0.3
    orig = loop.watchdog._on_stall

    def on_stall():
        orig()
        states.append(lab.laser.is_on)

    loop.watchdog._on_stall = on_stall
    with pytest.raises(Aborted, match="watchdog"):
        ProtocolRunner(loop, proto, vals).run()
    assert states == [False]  # laser was off right after the watchdog acted, mid-stall


def test_dry_run_rejects_bad_steps(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("from cybloid.protocol import wait\n\ndef protocol(p, lab):\n    yield wait(-1)\n")
    proto = load_protocol(f)
    with pytest.raises(ProtocolError, match="non-negative"):
        dry_run(proto, None, LabInfo.from_profile(load_lab_profile()))
    f.write_text("def protocol(p, lab):\n    yield 42\n")
    with pytest.raises(ProtocolError, match="not a protocol step"):
        dry_run(load_protocol(f), None, LabInfo.from_profile(load_lab_profile()))
    f.write_text("def protocol(p, lab):\n    return 1\n")
    with pytest.raises(ProtocolError, match="generator function"):
        load_protocol(f)
