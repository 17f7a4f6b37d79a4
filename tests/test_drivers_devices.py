"""The steering driver against its emulator over a real pseudo terminal; camera backends on files.

The laser and stage drivers have their own files (test_drivers_laser.py, test_drivers_stage.py)."""

import numpy as np
import pytest

from cybloid.calibration.model import Calibration
from cybloid.clock import VirtualClock
from cybloid.drivers import steering_protocol as sp
from cybloid.drivers.emulate_steering import SteeringEmulator
from cybloid.drivers.stage import ProScanStage
from cybloid.drivers.steering import SerialSteering, table_from_um
from cybloid.errors import DeviceError
from cybloid.frame import SpotTable
from cybloid.profile import load_lab_profile
from cybloid.sim.world import SimWorld


@pytest.fixture
def world():
    prof = load_lab_profile().with_overrides({"particles.count": 4})
    return SimWorld(prof, seed=2), VirtualClock(prof.latency.processing_s), Calibration.from_profile(prof)


@pytest.fixture
def steering(world):
    w, clock, truth = world
    emu = SteeringEmulator(w, clock, truth, heartbeat_timeout_s=5.0).start()
    drv = SerialSteering(emu.port, clock, timeout_s=0.5)
    yield emu, drv
    drv.close()
    emu.close()


def test_steering_table_lands_where_the_true_calibration_puts_it(world, steering):
    w, clock, truth = world
    emu, drv = steering
    assert drv.serial_number == "CBSP-EMU-0001" and drv.max_spots == 4096
    spots_um = np.array([[10.0, 20.0], [50.5, 60.25], [90.0, 5.0]])
    table = table_from_um(truth, spots_um, [0.5, 0.25, 0.25])
    t_sent = 0.0123
    ack = drv.send(table, t_sent)
    # applied at the first simulation tick at or after t_sent + actuation latency
    lat = w.profile.latency.actuation_s
    assert ack.n_spots == 3
    assert ack.t_applied == pytest.approx(w.ticks(t_sent + lat) * w.dt, abs=1e-9)
    w.advance_to(w.ticks(ack.t_applied) + 1)
    got, share = w.active_spots()
    # rounding to whole steering units: 0.5 su = 0.5/128 px = 0.8 nm
    assert np.max(np.abs(got - spots_um)) < 1e-3
    assert share == pytest.approx([0.5, 0.25, 0.25], abs=2 / 65535)
    assert not emu.blanked
    drv.blank()
    assert emu.blanked and drv.blanked
    w.advance_to(w.tick + 1)
    assert len(w.active_spots()[0]) == 0


def test_steering_device_refusals_are_device_errors(world, steering):
    emu, drv = steering
    emu.max_spots = 10
    drv.max_spots = 4096  # let the driver send it: the device must refuse
    with pytest.raises(DeviceError, match="more spots than the device holds"):
        drv.send(SpotTable(np.zeros(11), np.zeros(11), np.full(11, 0.01)), 0.0)
    drv.heartbeat()  # link still usable after a refusal
    emu.inject("fault")
    with pytest.raises(DeviceError, match="device fault"):
        drv.send(SpotTable(np.ones(2), np.ones(2), np.full(2, 0.1)), 0.0)


def test_steering_emulator_rejects_oversubscribed_beam_and_unknown_types(world, steering):
    emu, drv = steering
    payload = sp.TABLE_HEAD.pack(0, 65535, 2) + np.array([(1, 1, 40000), (2, 2, 40000)], sp.SPOT_DTYPE).tobytes()
    with drv.link.lock:
        drv.link.write(sp.encode(sp.T_TABLE, 200, payload))
        r = drv._read_reply(sp.T_TABLE, 200)
        assert r.status == sp.ST_SHARE_SUM
        drv.link.write(sp.encode(0x33, 201))
        assert drv._read_reply(0x33, 201).status == sp.ST_UNKNOWN_TYPE


def test_heartbeat_timeout_blanks_the_beam(world):
    import time

    w, clock, truth = world
    # (that heartbeats keep the beam on: test_drivers_protocol, on both device implementations)
    with SteeringEmulator(w, clock, truth, heartbeat_timeout_s=30.0) as emu:
        drv = SerialSteering(emu.port, clock, heartbeat_timeout_ms=100)  # the driver sets the device's timeout
        assert emu.heartbeat_timeout_s == pytest.approx(0.1)
        drv.send(table_from_um(truth, [[20.0, 20.0]], [1.0]), 0.0)
        assert not emu.blanked
        t_last = emu.last_rx
        deadline = time.monotonic() + 5.0
        while not emu.blanked and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emu.blanked
        t_blank, reason = emu.blank_events[-1]
        assert reason == "heartbeat timeout"
        assert 0.1 <= t_blank - t_last < 0.1 + 0.5
        # the next reply tells the host that the beam was blanked behind its back
        drv.heartbeat()
        assert drv.stats["heartbeat_expired"] == 1
        drv.close()


# ---------------------------------------------------------------------- cameras
def test_tiff_stack_camera(tmp_path):
    import tifffile

    from cybloid.drivers.cameras import TiffStackCamera

    stack = (np.arange(5 * 8 * 6).reshape(5, 8, 6) * 10).astype(np.uint16)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, stack)
    clock = VirtualClock()
    cam = TiffStackCamera(str(p), clock, fps=50.0, exposure_s=0.004, readout_s=0.001)
    assert (cam.width_px, cam.height_px, cam.n_frames) == (6, 8, 5)
    frames = [cam.grab() for _ in range(5)]
    assert all(np.array_equal(f.image, stack[i]) for i, f in enumerate(frames))
    f = frames[3]
    assert f.t_exposure_start == pytest.approx(0.06) and f.t_exposure_end == pytest.approx(0.064)
    assert f.t_arrival == pytest.approx(0.065) and clock.now() == pytest.approx(frames[-1].t_arrival)
    with pytest.raises(DeviceError, match="end of TIFF stack"):
        cam.grab()
    cam.close()


def test_opencv_camera_on_a_video_file(tmp_path):
    import cv2

    from cybloid.drivers.cameras import OpenCVCamera

    p = str(tmp_path / "v.avi")
    vw = cv2.VideoWriter(p, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for i in range(3):
        vw.write(np.full((24, 32, 3), 40 * (i + 1), np.uint8))
    vw.release()
    cam = OpenCVCamera(p, VirtualClock(), exposure_s=0.01, fps=25.0)
    imgs = [cam.grab() for _ in range(3)]
    assert imgs[0].image.dtype == np.uint16 and imgs[0].image.shape == (24, 32)
    assert [int(round(f.image.mean())) for f in imgs] == pytest.approx([40, 80, 120], abs=3)
    assert imgs[1].t_exposure_end - imgs[1].t_exposure_start == pytest.approx(0.01)
    assert imgs[2].t_arrival - imgs[1].t_arrival == pytest.approx(1 / 25.0)
    with pytest.raises(DeviceError, match="no frame"):
        cam.grab()
    cam.close()


def test_cybloid_emulate_prints_a_port_a_driver_can_use():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "cybloid", "emulate", "stage", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.endswith("/stage"), proc.stderr.read()
        drv = ProScanStage(port)
        drv.move_to(100.0, -50.0)
        assert drv.position() == pytest.approx((100.0, -50.0))
        drv.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
