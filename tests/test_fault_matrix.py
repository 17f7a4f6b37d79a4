"""Fault matrix: ``cybloid run`` against separate emulator processes, as on a bench.

The steering controller, the laser and the stage are ``cybloid emulate`` processes (their own
pseudo terminals, their own event logs); ``cybloid run --hardware PROFILE`` is another process.
Each case injects one fault (a device fault through the emulator's ``--control`` stdin, a
signal to the run, a protocol that misbehaves, a full disk) and then checks, from the
emulators' logs (what the devices saw), the laser's and the beam's final state and how soon
they were reached, plus the run's exit code, its message and the recorded session.

Times are ``time.monotonic()``, shared by all processes of the machine. The measured numbers
go into docs/safety.md; the assertions here only bound them loosely (no wall-clock limits on
the machine's speed: the bounds are the devices' own timeouts plus generous margins).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 300.0  # a cold start of a Python process on a loaded CI machine
SMALL = ["--set", "camera.width_px=64", "--set", "camera.height_px=64"]

HARDWARE = """\
format = "cybloid-hardware/1"
name = "fault-bench"
description = "three emulator processes (tests/test_fault_matrix.py)"
[camera]
driver = "simulated"
[steering]
driver = "cbsp"
port = "{dir}/steering"
timeout_s = 0.5
retries = 2
heartbeat_timeout_ms = 1000
[laser]
driver = "cobolt"
port = "{dir}/laser"
timeout_s = 1.0
poll_s = 0.1
rearm_s = 0.5
[stage]
driver = "proscan"
port = "{dir}/stage"
timeout_s = 0.5
move_timeout_s = 5.0
[limits]
max_power_mW = 300.0
safe_margin_um = 1.0
max_force_pN = 20.0
"""

PROTOCOLS = {
    "raises": """
        from cybloid.forces import HarmonicTrap
        from cybloid.protocol import set_term, wait

        def protocol(p, lab):
            yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
            yield wait(1.0)
            if not lab.dry:  # the dry run before the run passes; the real run breaks after 1 s
                raise RuntimeError("broken protocol")
    """,
    "stalls": """
        import os, time
        from cybloid.forces import HarmonicTrap
        from cybloid.protocol import set_term, wait, wait_until

        def stall(rec):
            with open(os.environ["CYBLOID_TEST_MARK"], "w") as f:
                f.write(repr(time.monotonic()))
            time.sleep(4.0)
            return True

        def protocol(p, lab):
            yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
            yield wait(1.0)
            yield wait_until(stall, timeout=10.0)
            yield wait(30.0)
    """,
    "moves": """
        from cybloid.forces import HarmonicTrap
        from cybloid.protocol import move_stage, set_term, wait

        def protocol(p, lab):
            yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
            for i in range(300):
                yield move_stage(5.0 * (i % 2), 0.0)
                yield wait(0.1)
    """,
}


class Bench:
    """Three emulator processes and their event logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        for dev in ("steering", "laser", "stage"):
            self.procs[dev] = subprocess.Popen(
                [sys.executable, "-m", "cybloid", "emulate", dev, "--link", str(root / dev), "--events",
                 str(root / f"{dev}.jsonl"), "--control", "--heartbeat-ms", "1000"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for dev, p in self.procs.items():
            line = p.stdout.readline()  # the port, once the emulator is up
            assert line.strip() == str(root / dev), f"{dev} emulator did not start: {line!r}"
        (root / "hw.toml").write_text(HARDWARE.format(dir=root))

    def send(self, dev: str, command: str) -> str:
        p = self.procs[dev]
        p.stdin.write(command + "\n")
        p.stdin.flush()
        return p.stdout.readline().strip()

    def events(self, dev: str, since: float = 0.0) -> list[dict]:
        out = []
        for line in (self.root / f"{dev}.jsonl").read_text().splitlines():
            ev = json.loads(line)
            if ev["t"] >= since:
                out.append(ev)
        return out

    def state(self, dev: str) -> dict:
        return json.loads(self.send(dev, "state"))

    def state_at(self, dev: str, t: float) -> dict:
        """The device's last logged state at or before ``t`` (monotonic time)."""
        state: dict = {}
        for ev in self.events(dev, 0.0):
            if ev.get("t", 0.0) > t:
                break
            if "state" in ev:
                state = ev["state"]
        return state

    def first(self, dev: str, since: float, pred) -> float | None:
        """Time of the first event after ``since`` for which ``pred(event)`` holds."""
        for ev in self.events(dev, since):
            if pred(ev):
                return ev["t"]
        return None

    def wait_for(self, dev: str, since: float, pred, timeout_s: float, proc=None) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (proc is None or proc.poll() is None):
            t = self.first(dev, since, pred)
            if t is not None:
                return t
            time.sleep(0.02)
        return None

    def close(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def laser_on(ev: dict) -> bool:
    return ev.get("state", {}).get("on") is True


def laser_running(ev: dict) -> bool:
    """The laser reached its set power (Cobolt operating mode 4, 'completed'): the run's loop starts."""
    st = ev.get("state", {})
    return st.get("mode", 4 if st.get("on") else None) == 4


def laser_off(ev: dict) -> bool:
    return ev.get("state", {}).get("on") is False


def blanked(ev: dict) -> bool:
    return "blank" in ev or ev.get("state", {}).get("blanked") is True or ev.get("rx", "").startswith("BLANK")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = Bench(tmp_path_factory.mktemp("bench"))
    yield b
    b.close()


class Result:
    rc: int
    out: str
    t_fault: float
    t0: float
    session: Path | None


def run_with_fault(bench: Bench, tmp_path: Path, fault, protocol: str = "harmonic-trap",
                   params: tuple[str, ...] = ("duration=20", "traps=1"), extra: tuple[str, ...] = (),
                   fsize_limit: int | None = None, settle_s: float = 0.5, wait_for_laser: bool = True) -> Result:
    """Start a run, wait until the laser is on (as the laser saw it), apply ``fault``, wait for the end."""
    if protocol in PROTOCOLS:
        path = tmp_path / f"{protocol}.py"
        path.write_text(textwrap.dedent(PROTOCOLS[protocol]))
        protocol = str(path)
        extra = (*extra, "--set", "particles.count=4")  # the 64x64 camera's field holds a few
    cmd = [sys.executable, "-m", "cybloid", "run", protocol, "--hardware", str(bench.root / "hw.toml"),
           "--uncalibrated", "--realtime", "--no-progress", *SMALL, *extra]
    for p in params:
        cmd += ["-p", p]
    env = dict(os.environ, CYBLOID_TEST_MARK=str(tmp_path / "mark"))

    def limits() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    res = Result()
    res.t0 = time.monotonic()
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limits)
    try:
        if wait_for_laser:
            t_l1 = bench.wait_for("laser", res.t0, lambda e: e.get("rx") == "l1", START_TIMEOUT_S, proc)
            t_on = t_l1 and bench.wait_for("laser", t_l1, laser_running, START_TIMEOUT_S, proc)
            assert t_on, "the run never switched the laser on: " + (tmp_path / "run.log").read_text()
            time.sleep(settle_s)
        res.t_fault = time.monotonic()
        fault(proc)
        res.rc = proc.wait(timeout=START_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    res.out = (tmp_path / "run.log").read_text()
    sessions = sorted((tmp_path / "sessions").glob("*")) if (tmp_path / "sessions").exists() else []
    res.session = sessions[-1] if sessions else None
    return res


def assert_safe_end(bench: Bench, res: Result, *, blank_within_s: float | None = 3.0,
                    laser_off_within_s: float | None = 3.0, blank_first: bool = True) -> dict:
    """The laser is off and the beam blanked, as the emulators saw it; returns the measured times."""
    assert bench.state("laser")["on"] is False, res.out
    times = {}
    t_off = bench.first("laser", res.t_fault, laser_off)
    if laser_off_within_s is not None:
        assert t_off is not None, res.out
        times["laser_off_s"] = t_off - res.t_fault
        assert times["laser_off_s"] < laser_off_within_s, res.out
    # the controller's own heartbeat may blank the beam after the program has already exited: wait for it
    t_blank = bench.wait_for("steering", res.t_fault, blanked, blank_within_s or 0.0)
    if t_blank is None and bench.state_at("steering", res.t_fault).get("blanked") is True:
        t_blank = res.t_fault  # the beam was still dark when the fault came (a slow start): it stayed dark
    if blank_within_s is not None:
        assert t_blank is not None, res.out
        times["blank_s"] = t_blank - res.t_fault
        assert times["blank_s"] < blank_within_s, res.out
    # blank first: the beam is blanked before the laser's off command (when the steering link works)
    if blank_first and t_blank is not None and t_off is not None and blank_within_s is not None:
        assert t_blank <= t_off, (t_blank, t_off)
    print(f"MEASURED {times}")
    return times


def send_signal(sig):
    return lambda proc: proc.send_signal(sig)


@pytest.mark.parametrize("sig,rc,text", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGHUP, 129, "hang-up (SIGHUP)"),
])
def test_stop_signals_blank_then_switch_off_and_confirm(bench, tmp_path, sig, rc, text):
    res = run_with_fault(bench, tmp_path, send_signal(sig))
    assert res.rc == rc, res.out
    assert text in res.out and "laser off (confirmed by the laser); beam blanked" in res.out
    assert "Traceback" not in res.out
    assert_safe_end(bench, res)



def test_sigkill_beam_blanked_by_the_controller_heartbeat(bench, tmp_path):
    res = run_with_fault(bench, tmp_path, send_signal(signal.SIGKILL))
    assert res.rc == -signal.SIGKILL
    t_blank = bench.wait_for("steering", res.t_fault, lambda e: e.get("blank") == "heartbeat timeout", 5.0)
    assert t_blank is not None
    print(f"MEASURED blank_s={t_blank - res.t_fault:.3f}")
    assert t_blank - res.t_fault < 1.0 + 1.0  # the profile's heartbeat timeout, plus the emulator's tick
    # nobody can switch a laser off from a killed process: it still emits into a blanked beam,
    # until the next program opens it (the driver switches it off on connect)
    assert bench.state("laser")["on"] is True
    res2 = run_with_fault(bench, tmp_path, lambda p: None, params=("duration=0.2", "traps=1"), wait_for_laser=False)
    assert res2.rc == 0, res2.out
    assert bench.state("laser")["on"] is False


@pytest.mark.parametrize("dev,command,rc,text", [
    ("laser", "inject garble 3", 2, "laser"),
    ("laser", "inject disconnect 1 1.5", 2, "laser"),
    ("laser", "inject interlock", 2, "interlock"),
    ("steering", "inject garble -1", 2, "steering"),
    ("steering", "inject disconnect 1 1.5", 2, "steering"),
])
def test_device_faults_end_with_the_laser_confirmed_off(bench, tmp_path, dev, command, rc, text):
    try:
        res = run_with_fault(bench, tmp_path, lambda p: bench.send(dev, command))
    finally:
        bench.send(dev, "clear")
    assert res.rc == rc, res.out
    assert text in res.out and "Traceback" not in res.out
    assert "laser off (confirmed by the laser)" in res.out, res.out
    # the laser may take its link's reconnection to switch off; the beam is blanked either by
    # the runner's blank or by the controller's heartbeat
    # blank first, unless the steering link is the fault or the laser switched itself off (interlock)
    assert_safe_end(bench, res, blank_within_s=3.0, laser_off_within_s=5.0,
                    blank_first=dev != "steering" and "interlock" not in command)


def test_stage_lost_during_moves(bench, tmp_path):
    try:
        res = run_with_fault(bench, tmp_path, lambda p: bench.send("stage", "inject disconnect 1 1.5"),
                             protocol="moves", params=())
    finally:
        bench.send("stage", "clear")
    assert res.rc == 2, res.out
    assert "stage" in res.out and "laser off (confirmed by the laser)" in res.out
    assert_safe_end(bench, res, blank_within_s=3.0, laser_off_within_s=3.0)


def test_protocol_exception(bench, tmp_path):
    res = run_with_fault(bench, tmp_path, lambda p: None, protocol="raises", params=(), settle_s=0.0)
    assert res.rc == 2, res.out
    assert "raises.py:" in res.out and "broken protocol" in res.out
    assert "laser off (confirmed by the laser)" in res.out
    assert_safe_end(bench, res, blank_within_s=5.0, laser_off_within_s=5.0)


def test_stalled_loop_watchdog(bench, tmp_path):
    res = run_with_fault(bench, tmp_path, lambda p: None, protocol="stalls", params=(), settle_s=0.0)
    assert res.rc == 2, res.out
    assert "watchdog" in res.out and "laser off (confirmed by the laser)" in res.out
    t_stall = float((tmp_path / "mark").read_text())
    t_off = bench.first("laser", t_stall, laser_off)
    t_blank = bench.first("steering", t_stall, blanked)
    print(f"MEASURED stall->blank {t_blank - t_stall:.3f} s, stall->laser off {t_off - t_stall:.3f} s")
    # the wall-clock watchdog (1 s) acts while the loop is still stuck (the stall lasts 4 s)
    assert t_blank - t_stall < 1.0 + 1.5 and t_off - t_stall < 4.0


@pytest.mark.parametrize("limit,text", [(16_000, "recording failed"), (3_000, "recording failed")])
def test_disk_full_stops_the_run(bench, tmp_path, limit, text):
    """A file-size limit stands in for a full disk (writes fail with EFBIG instead of ENOSPC): 16 kB
    fills up during the run; 3 kB is "already full" (the session's metadata is larger; the run's
    own log, also limited, is smaller)."""
    res = run_with_fault(bench, tmp_path, lambda p: None, params=("duration=20", "traps=1"),
                         extra=("--record", str(tmp_path / "sessions")), fsize_limit=limit, settle_s=0.0)
    assert res.rc == 2, res.out
    assert text in res.out and "laser off (confirmed by the laser)" in res.out and "Traceback" not in res.out
    assert bench.state("laser")["on"] is False
    if limit > 10_000:  # filled up during the run (already full: no session could be started)
        from cybloid.recording import open_session

        s = open_session(res.session)  # what was written is readable
        assert s.n_frames >= 0 and s.metadata["protocol"] == "harmonic-trap"


def test_a_second_program_cannot_touch_the_running_laser(bench, tmp_path):
    second = {}

    def start_second(proc):
        out = subprocess.run([sys.executable, "-m", "cybloid", "run", "harmonic-trap", "--hardware",
                              str(bench.root / "hw.toml"), "--uncalibrated", "--no-progress", *SMALL],
                             capture_output=True, text=True, timeout=START_TIMEOUT_S)
        second["rc"], second["err"] = out.returncode, out.stderr
        second["laser_on"] = bench.state("laser")["on"]
        second["t_end"] = time.monotonic()
        proc.send_signal(signal.SIGINT)

    res = run_with_fault(bench, tmp_path, start_second, params=("duration=600", "traps=1"))
    laser_off_commands = [e for e in bench.events("laser", res.t_fault) if e.get("rx") == "l0"
                          and e["t"] < second["t_end"]]
    assert not laser_off_commands
    assert second["rc"] == 2 and "in use by another program" in second["err"], second
    assert "Traceback" not in second["err"]
    assert second["laser_on"] is True  # the first run's laser was not switched off by the second program
    assert res.rc == 130 and "laser off (confirmed by the laser)" in res.out
