"""Safety over the serial path: injected faults are reported, the laser ends up off in the
emulator, recorded frames are not lost; interlock; reconnect; a killed controller's beam blanks."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cybloid.clock import RealClock
from cybloid.drivers.emulate_laser import LaserEmulator
from cybloid.drivers.emulate_steering import SteeringEmulator
from cybloid.drivers.laser import CoboltLaser
from cybloid.errors import DeviceError
from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare

SMALL = {"camera.width_px": 96, "camera.height_px": 96}


def fast_emulated():
    """The bundled emulated profile with short deadlines and a laser check on every frame."""
    import tomllib

    from cybloid.hardware import bundled_hardware_profiles, hardware_from_dict

    path = bundled_hardware_profiles()["emulated"]
    data = tomllib.loads(path.read_text())
    data["steering"]["timeout_s"] = 0.1
    data["laser"]["timeout_s"] = 0.5  # generous: a loaded CI machine must not fail the laser first
    data["laser"]["poll_s"] = 0.0
    return hardware_from_dict(data, str(path))


class StubRecorder:
    def __init__(self):
        self.records, self.started, self.stopped = [], 0, 0

    def start(self, meta):
        self.started += 1

    def stop(self):
        self.stopped += 1

    def offer(self, rec):
        self.records.append(rec.index)

    def event(self, ev):
        pass


def _emulators(lab):
    return {type(r).__name__: r for r in lab.resources}


def _run_with_fault(target, kind, at_frame=30, **kw):
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 1.5, "traps": 1}, hardware=fast_emulated(), overrides=SMALL, seed=1)
    emus = _emulators(lab)
    emu = emus[target]
    loop.keep_images = False

    def inject(rec):
        if rec.index == at_frame:
            emu.inject(kind, **kw)

    loop.add_sink(inject)
    rec = StubRecorder()
    runner = ProtocolRunner(loop, proto, vals, recorder=rec)
    try:
        with pytest.raises(DeviceError) as info:
            runner.run()
        return runner.summary, str(info.value), rec, emus
    finally:
        loop.close()
        lab.close()


@pytest.mark.parametrize("target,kind,kw,message", [
    ("SteeringEmulator", "delay", {"count": -1, "seconds": 0.15}, "no valid acknowledgement"),
    ("SteeringEmulator", "garble", {"count": -1}, "steering"),
    ("SteeringEmulator", "drop", {"count": -1}, "no valid acknowledgement"),
    ("SteeringEmulator", "silence", {"count": -1}, "no valid acknowledgement"),
    ("SteeringEmulator", "disconnect", {"seconds": 5.0}, "disconnected"),
    ("SteeringEmulator", "fault", {}, "device fault"),
    ("LaserEmulator", "interlock", {}, "fault 3: interlock error"),
    ("LaserEmulator", "fault", {}, "fault 1: temperature error"),
])
def test_injected_fault_is_reported_laser_off_and_no_record_lost(target, kind, kw, message):
    summary, error, rec, emus = _run_with_fault(target, kind, **kw)
    assert summary.status == "failed"
    assert message in error and message in summary.error
    laser, steering = emus["LaserEmulator"], emus["SteeringEmulator"]
    assert not laser.on and laser.log[-1] == "l0" or kind in ("interlock", "fault") and not laser.on
    assert not laser.world.laser_on
    assert not summary.laser_on_at_end
    assert steering.blanked or kind == "disconnect"
    # every frame the loop completed reached the recorder, and the recording was closed
    assert rec.records == list(range(summary.frames)) and summary.frames > 30
    assert rec.started == 1 and rec.stopped == 1


@pytest.mark.parametrize("kind", ["garble", "drop", "silence", "delay"])
def test_a_single_lost_acknowledgement_is_recovered_by_a_resend(kind):
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 0.5, "traps": 1}, hardware=fast_emulated(), overrides=SMALL)
    emu = _emulators(lab)["SteeringEmulator"]
    recs = []
    loop.add_sink(lambda r: r.index == 10 and emu.inject(kind, count=1, seconds=0.15))
    loop.add_sink(recs.append)
    summary = ProtocolRunner(loop, proto, vals).run()
    assert summary.status == "done" and summary.frames == 50
    # the late/damaged reply is never mistaken for the next one; the retry is counted and
    # reported in the record of the frame whose table needed it
    assert lab.steering.stats["retries"] == 1 and lab.steering.stats["tables"] == 50
    dev = [(r.index, e) for r in recs for e in r.events if e["kind"] == "device"]
    assert len(dev) == 1 and dev[0][0] == 11 and dev[0][1]["fault"] == "retry"
    loop.close()
    lab.close()


def test_interlock_open_before_the_run_refuses_the_laser():
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 0.5, "traps": 1}, hardware="emulated", overrides=SMALL)
    laser = _emulators(lab)["LaserEmulator"]
    laser.inject("interlock")
    runner = ProtocolRunner(loop, proto, vals)
    with pytest.raises(DeviceError, match="interlock open"):
        runner.run()
    assert runner.summary.status == "failed" and "interlock open" in runner.summary.error
    assert laser.on_count == 0 and not laser.on
    loop.close()
    lab.close()
    # Lab.close() stopped the emulators and closed the ports
    assert not laser.connected and not lab.laser.link.is_open and not lab.steering.link.is_open
    assert not lab.stage.link.is_open and all(not e._thread.is_alive() for e in lab.resources)


def test_reconnect_keeps_the_laser_off_until_the_link_is_healthy():
    with LaserEmulator(None, max_power_mW=100.0) as emu:
        drv = CoboltLaser(emu.port, max_power_mW=100.0, poll_s=0.0, rearm_s=0.3)
        drv.on()
        assert emu.on
        emu.inject("disconnect", seconds=0.3)
        with pytest.raises(DeviceError, match="disconnected"):
            drv.is_on
        assert emu.on  # a real laser keeps emitting when its USB link drops
        drv.off()  # waits for the port to come back, reconnects, switches off
        assert not emu.on and drv.link.reconnects == 1
        with pytest.raises(DeviceError, match="kept off until it has been healthy"):
            drv.on()
        assert not emu.on
        time.sleep(0.35)
        drv.on()
        assert emu.on
        drv.close()
        assert not emu.on


KILLED_CONTROLLER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from cybloid.clock import RealClock
    from cybloid.drivers.steering import SerialSteering
    from cybloid.frame import SpotTable
    drv = SerialSteering(sys.argv[1], RealClock(), heartbeat_timeout_ms=200)
    table = SpotTable(np.full(100, 30000.0), np.full(100, 30000.0), np.full(100, 0.01))
    n = 0
    while True:
        drv.send(table, 0.0)
        n += 1
        if n == 5:
            print("running", flush=True)
        time.sleep(0.01)
""")


def test_killing_the_controlling_process_blanks_the_beam_within_the_heartbeat_timeout():
    from cybloid.calibration.model import Calibration
    from cybloid.profile import load_lab_profile
    from cybloid.sim.world import SimWorld

    prof = load_lab_profile().with_overrides({"particles.count": 2})
    world = SimWorld(prof)
    with SteeringEmulator(world, RealClock(), Calibration.from_profile(prof), heartbeat_timeout_s=1.0) as emu:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CONTROLLER, emu.port], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.strip() == "running", proc.stderr.read()
            assert not emu.blanked and emu.heartbeat_timeout_s == pytest.approx(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            t_kill = time.monotonic()
            proc.wait()
            deadline = t_kill + 10.0
            while not emu.blanked and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert emu.blanked
        t_blank, reason = emu.blank_events[-1]
        assert reason == "heartbeat timeout"
        # blanked within the heartbeat timeout of the last frame the dead process sent
        assert emu.last_rx <= t_kill
        assert 0.2 <= t_blank - emu.last_rx <= 0.2 + 0.3
        world.advance_to(world.tick + 1)
        assert len(world.active_spots()[0]) == 0


def test_a_failed_off_is_reported_as_possibly_on():
    with LaserEmulator(None, max_power_mW=100.0) as emu:
        drv = CoboltLaser(emu.port, max_power_mW=100.0, timeout_s=0.1, poll_s=10.0)
        drv.on()
        emu.inject("silence", count=-1)
        with pytest.raises(DeviceError, match="could not switch off"):
            drv.off()
        assert drv.is_on  # the laser may still emit: say so (the run summary shows "laser ON")
        emu.clear_faults()
        drv.off()
        assert not drv.is_on and not emu.on
        drv.close()


# ---------------------------------------------------------------------- issue 13: safety, lab time, bad input
from cybloid.errors import Aborted, ProtocolError, SessionError  # noqa: E402
from cybloid.protocol.dryrun import dry_run  # noqa: E402
from cybloid.protocol.handlers import HANDLERS, handler_for  # noqa: E402
from cybloid.protocol.loader import LabInfo  # noqa: E402
from cybloid.protocol.stats import LogHistogram  # noqa: E402


def _proto_file(tmp_path, source, name="p.py"):
    f = tmp_path / name
    f.write_text(textwrap.dedent(source))
    return load_protocol(f)


def test_protocol_time_is_lab_time_when_the_camera_is_faster_than_the_loop():
    """A 2000 frames/s camera outruns the loop: frames are dropped, the protocol still lasts its
    seconds on the lab clock (frame exposure times), and the drops are counted."""
    proto = load_protocol("harmonic-trap")
    over = {**SMALL, "camera.fps": 2000.0, "camera.exposure_s": 0.0004}
    lab, loop, vals = prepare(proto, {"duration": 1.0, "traps": 1}, overrides=over, realtime=True)
    times = []
    loop.add_sink(lambda r: times.append(r.t_exposure_mid))
    try:
        summary = ProtocolRunner(loop, proto, vals).run()
    finally:
        loop.close()
        lab.close()
    period = lab.frame_period_s
    gaps = np.diff(times)
    assert summary.dropped_frames > 0 and summary.frames < 1.0 / period  # the loop could not keep up
    # counting processed frames would have made the run last (frames + drops) periods; on the lab
    # clock it lasts the protocol's second, to within one step of the loop
    assert times[-1] - times[0] + period >= 1.0 - 0.5 * period
    assert times[-1] - times[0] <= 1.0 + gaps.max()
    assert summary.experiment_s == pytest.approx(times[-1] - times[0])
    assert "dropped frames" in "\n".join(summary.lines())


def test_virtual_time_waits_are_whole_frames():
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 0.37, "traps": 1}, overrides=SMALL)
    try:
        summary = ProtocolRunner(loop, proto, vals).run()
    finally:
        loop.close()
        lab.close()
    assert summary.frames == round(0.37 / lab.frame_period_s) and summary.dropped_frames == 0


class SlowStage:
    """A stage whose moves take 1.5 s of wall time (longer than the 1 s watchdog)."""

    def __init__(self, inner):
        self.inner, self.moves = inner, 0

    def move_to(self, x, y):
        time.sleep(1.5)
        self.moves += 1
        self.inner.move_to(x, y)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_long_stage_move_does_not_starve_the_watchdog(tmp_path):
    proto = _proto_file(tmp_path, """
        from cybloid.forces import HarmonicTrap
        from cybloid.protocol import mark, move_stage, set_term, wait

        def protocol(p, lab):
            yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
            yield wait(0.2)
            yield mark("before")
            yield move_stage(10.0, 0.0)
            yield mark("after")
            yield wait(0.2)
    """)
    lab, loop, vals = prepare(proto, overrides=SMALL, realtime=True)
    assert loop.watchdog.wall_clock and loop.watchdog.timeout_s <= 1.0
    lab.stage = SlowStage(lab.stage)
    recs = []
    loop.add_sink(lambda r: recs.append(r))
    try:
        summary = ProtocolRunner(loop, proto, vals).run()
    finally:
        loop.close()
        lab.close()
    assert summary.status == "done" and lab.stage.moves == 1 and not loop.watchdog.tripped
    marks = [i for i, r in enumerate(recs) for e in r.events if e["kind"] == "mark"]
    assert len(marks) == 2
    # the loop kept running (feedback on, laser on) during the move
    during = recs[marks[0]:marks[1]]
    assert len(during) > 10 and all(r.laser_on for r in during)


def test_virtual_time_watchdog_uses_the_lab_clock():
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 0.1}, overrides=SMALL)
    try:
        assert not loop.watchdog.wall_clock
        loop.watchdog.arm()
        loop.watchdog.kick(1.0)
        time.sleep(0.05)  # wall time does not matter here
        loop.watchdog.kick(1.0 + 0.5 * loop.watchdog.timeout_s)
        assert not loop.watchdog.tripped
        loop.watchdog.kick(1.0 + 2.0 * loop.watchdog.timeout_s)  # a gap in lab time does
        assert loop.watchdog.tripped and not lab.laser.is_on
    finally:
        loop.close()
        lab.close()


def test_laser_confirmed_off_after_its_link_drops_and_comes_back():
    """The laser's USB link drops for longer than the driver's own off retries: the run waits
    for it to come back, switches the laser off and reports what the laser confirmed."""
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 5.0, "traps": 1}, hardware=fast_emulated(), overrides=SMALL)
    emu = _emulators(lab)["LaserEmulator"]
    loop.keep_images = False
    loop.add_sink(lambda r: r.index == 20 and emu.inject("disconnect", seconds=2.0))
    runner = ProtocolRunner(loop, proto, vals, link_wait_s=10.0)
    try:
        with pytest.raises(DeviceError, match=r"laser off \(confirmed by the laser\)"):
            runner.run()
    finally:
        loop.close()
        lab.close()
    assert runner.summary.laser == "off" and not runner.summary.laser_on_at_end
    assert not emu.on and lab.laser.link.reconnects >= 1


def test_safe_off_blanks_before_the_laser_goes_off_and_says_unknown_when_the_laser_is_silent():
    from cybloid.safety import safe_off_confirmed

    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 0.1}, hardware=fast_emulated(), overrides=SMALL)
    try:
        emus = _emulators(lab)
        order = []
        blank, off = lab.steering.blank, lab.laser.off
        lab.steering.blank = lambda: (order.append("blank"), blank())[1]
        lab.laser.off = lambda: (order.append("off"), off())[1]
        lab.laser.on()
        res = safe_off_confirmed(lab, link_wait_s=0.0)
        assert order == ["blank", "off"] and res.confirmed_off and res.beam_blanked
        assert not emus["LaserEmulator"].on
        lab.laser.on()
        emus["LaserEmulator"].inject("silence", count=-1)
        res = safe_off_confirmed(lab, link_wait_s=0.3)
        assert res.laser == "unknown" and "UNKNOWN" in res.text() and res.errors
        emus["LaserEmulator"].clear_faults()
    finally:
        loop.close()
        lab.close()


def test_a_second_program_cannot_open_a_port_in_use():
    with LaserEmulator(None, max_power_mW=100.0) as emu:
        first = CoboltLaser(emu.port, max_power_mW=100.0, poll_s=0.0)
        first.on()
        n = emu.requests
        with pytest.raises(DeviceError, match="in use by another program"):
            CoboltLaser(emu.port, max_power_mW=100.0)
        assert emu.on and emu.requests == n  # the second one sent nothing (no l0)
        first.close()
        assert not emu.on


class FailingRecorder(StubRecorder):
    def __init__(self, fail_at=None, fail_at_start=False):
        super().__init__()
        self.error, self.fail_at, self.fail_at_start, self.events = None, fail_at, fail_at_start, []

    def start(self, meta):
        super().start(meta)
        if self.fail_at_start:
            self.error = "cannot create session under /full: No space left on device"

    def offer(self, rec):
        super().offer(rec)
        if self.fail_at is not None and len(self.records) >= self.fail_at:
            self.error = "recording stopped: cannot write part-0003: No space left on device"

    def event(self, ev):
        self.events.append(ev)


RECORDING = """
    from cybloid.forces import HarmonicTrap
    from cybloid.protocol import record, set_term, wait
    {optional}
    def protocol(p, lab):
        yield set_term("trap", HarmonicTrap([[12.8, 12.8]], stiffness=0.05))
        yield record(True)
        yield wait(1.0)
        yield record(False)
"""


@pytest.mark.parametrize("optional,fail_at,fail_at_start", [(False, 20, False), (False, None, True),
                                                            (True, 20, False)])
def test_a_failed_recording_ends_the_run_with_an_error(tmp_path, optional, fail_at, fail_at_start):
    proto = _proto_file(tmp_path, RECORDING.format(optional="RECORDING_OPTIONAL = True" if optional else ""))
    lab, loop, vals = prepare(proto, overrides=SMALL)
    rec = FailingRecorder(fail_at, fail_at_start)
    runner = ProtocolRunner(loop, proto, vals, recorder=rec)
    try:
        with pytest.raises(SessionError, match="No space left on device") as info:
            runner.run()
    finally:
        loop.close()
        lab.close()
    assert "recording failed" in str(info.value) and "laser off (confirmed by the laser)" in str(info.value)
    assert runner.summary.status == "failed" and not lab.world.laser_on
    if optional:  # the experiment went on to its end, the error came after
        assert runner.summary.frames == 100
    else:  # the laser went off at once
        assert runner.summary.frames <= (fail_at or 0) + 1
    kinds = [e["kind"] for e in rec.events]
    if not fail_at_start:
        assert "recording_failed" in kinds
    if not fail_at_start and not optional:  # the run ended while recording: the end event says why
        end = [e for e in rec.events if e["kind"] == "end"]
        assert end and end[0]["status"] == "failed" and end[0]["laser"] == "off"


def test_the_end_event_says_why_the_run_ended(tmp_path):
    proto = _proto_file(tmp_path, RECORDING.format(optional="").replace("yield wait(1.0)", "yield wait(5.0)"))
    lab, loop, vals = prepare(proto, overrides=SMALL)
    rec = FailingRecorder()
    runner = ProtocolRunner(loop, proto, vals, recorder=rec)
    loop.add_sink(lambda r: r.index == 30 and runner.abort("aborted from the dashboard"))
    try:
        with pytest.raises(Aborted):
            runner.run()
    finally:
        loop.close()
        lab.close()
    end = [e for e in rec.events if e["kind"] == "end"]
    assert len(end) == 1 and end[0]["status"] == "aborted" and "dashboard" in end[0]["reason"]
    assert rec.stopped == 1


def test_run_statistics_use_constant_memory_and_keep_percentiles():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0.0, 1.0, 20000)
    h = LogHistogram()
    for v in x:
        h.add(v)
    h.add(float("nan"))
    assert h.n == len(x) and h.counts.nbytes < 100_000
    for q in (1, 50, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(x, q), rel=0.01)
    assert h.mean == pytest.approx(x.mean())
    assert np.isnan(LogHistogram().percentile(50))


def test_long_runs_keep_no_per_frame_lists():
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, {"duration": 50.0, "traps": 1}, overrides=SMALL)
    loop.keep_images = False
    runner = ProtocolRunner(loop, proto, vals)
    try:
        summary = runner.run()
    finally:
        loop.close()
        lab.close()
    assert summary.frames == 5000
    assert len(lab.world.applied_log) == lab.world.applied_log.maxlen < summary.frames
    assert not [k for k, v in vars(runner).items() if isinstance(v, (list, dict)) and len(v) > 100]


def test_one_registry_of_step_handlers(tmp_path):
    from cybloid.protocol import steps

    builtin = [c for c in vars(steps).values() if isinstance(c, type) and issubclass(c, steps.Step)
               and c is not steps.Step]
    assert set(builtin) == set(HANDLERS)

    class Strange(steps.Step):
        pass

    with pytest.raises(ProtocolError, match="unknown step type Strange"):
        handler_for(Strange())
    proto = _proto_file(tmp_path, """
        from cybloid.protocol.steps import Step

        class Strange(Step):
            pass

        def protocol(p, lab):
            yield Strange()
    """)
    from cybloid.profile import load_lab_profile

    with pytest.raises(ProtocolError, match="unknown step type Strange"):
        dry_run(proto, None, LabInfo.from_profile(load_lab_profile()))


def test_dry_run_stops_a_protocol_that_never_yields(tmp_path):
    proto = _proto_file(tmp_path, """
        from cybloid.protocol import wait

        def protocol(p, lab):
            yield wait(1.0)
            while True:
                pass
    """)
    from cybloid.profile import load_lab_profile

    with pytest.raises(ProtocolError, match="without yielding a step"):
        dry_run(proto, None, LabInfo.from_profile(load_lab_profile()), yield_limit_s=0.3)


@pytest.mark.parametrize("argv,text", [
    (["check", "harmonic-trap", "--set", "camera.fps="], "--set expects SECTION.KEY=VALUE"),
    (["check", "crystal-hexagonal", "-p", "particles=200"], "cannot place 200 particles"),
    (["emulate", "laser", "--link", "/nonexistent-dir/laser", "--duration", "0.1"], "cannot create the link"),
])
def test_user_mistakes_get_one_line_and_exit_code_2(capsys, argv, text):
    from cybloid.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0] and err[0].startswith("cybloid: error:")


def test_seed_must_be_non_negative(capsys):
    from cybloid.cli import main

    with pytest.raises(SystemExit) as info:
        main(["check", "harmonic-trap", "--seed", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--seed: expected a non-negative integer, got -1" in err and "Traceback" not in err


def test_emulate_link_onto_an_existing_file_leaves_it(tmp_path, capsys):
    from cybloid.cli import main

    f = tmp_path / "precious.txt"
    f.write_text("keep me")
    assert main(["emulate", "laser", "--link", str(f), "--duration", "0.1"]) == 2
    assert f.read_text() == "keep me" and "exists" in capsys.readouterr().err
