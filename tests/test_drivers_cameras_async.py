"""Asynchronous camera backends: the ring buffer's counting and timing, Basler (pylon emulation), Micro-Manager demo."""

import threading

import numpy as np
import pytest

from cybloid.cli import main
from cybloid.clock import RealClock
from cybloid.drivers.camera_async import AsyncCamera


class FakeClock:
    realtime = True

    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t


def test_ring_gives_the_newest_frame_and_counts_from_the_camera_counter():
    clock = FakeClock()
    cam = AsyncCamera(clock, exposure_s=0.004, readout_s=0.001, ring_size=4)
    cam.running = True
    img = np.zeros((2, 2), np.uint16)
    # camera stamps frames every 10 ms (exposure start); frames 3 and 4 are lost in transport;
    # arrival = stamp + offset 100 s + exposure + readout + a transport delay of 0..2 ms
    delays = {0: 0.002, 1: 0.0, 2: 0.001, 5: 0.0005, 6: 0.002}
    for n in (0, 1, 2):
        clock.t = 100.0 + n * 0.01 + 0.005 + delays[n]
        cam._push(img, n, n * 0.01)
    f = cam.grab()
    assert f.index == 2 and cam.skipped == 2 and cam.lost == 0 and f.dropped_before == 0
    for n in (5, 6):
        clock.t = 100.0 + n * 0.01 + 0.005 + delays[n]
        cam._push(img, n, n * 0.01)
    f = cam.grab()
    assert f.index == 6 and cam.lost == 2 and f.dropped_before == 3 and cam.dropped == 3  # 3, 4 lost; 5 skipped
    # timing from the camera's stamps, through the least delayed arrival (frame 1, delay 0)
    assert f.t_exposure_start == pytest.approx(100.0 + 0.06)
    assert f.t_exposure_end == pytest.approx(100.0 + 0.064)
    assert f.t_arrival == pytest.approx(100.0 + 0.065 + 0.002)
    assert cam.stats()["timestamps"] == "hardware" and cam.stats()["stamped"] == 5


def test_ring_without_camera_stamps_uses_arrival_and_grab_waits_for_the_producer():
    clock = FakeClock()
    cam = AsyncCamera(clock, exposure_s=0.002, readout_s=0.001, grab_timeout_s=5.0)
    cam.running = True
    clock.t = 7.0
    t = threading.Timer(0.05, lambda: cam._push(np.ones((1, 1), np.uint16), 41, None))
    t.start()
    f = cam.grab()  # blocks until the producer thread delivers
    assert f.index == 41 and f.t_arrival == 7.0 and f.t_exposure_end == pytest.approx(6.999)
    assert f.t_exposure_start == pytest.approx(6.997) and cam.stats()["timestamps"] == "host"
    assert "arrival on the host" in cam.stats()["timestamp_source"]
    cam._push(np.ones((1, 1), np.uint16), 42, 0.5)  # one frame with a camera stamp among host ones
    assert cam.stats()["timestamps"] == "mixed"
    assert cam.grab().index == 42
    cam.grab_timeout_s = 0.05
    from cybloid.errors import DeviceError

    with pytest.raises(DeviceError, match="no frame within 0.05 s"):
        cam.grab()
    cam._fail("cable pulled")
    with pytest.raises(DeviceError, match="cable pulled"):
        cam.grab()


def test_oldest_mode_keeps_every_frame():
    clock = FakeClock()
    cam = AsyncCamera(clock, exposure_s=0.001, ring_size=2)
    cam.running = True
    cam.set_ring_size(10)
    for n in range(5):
        cam._push(np.zeros((1, 1), np.uint16), n, n * 0.01)
    assert [cam.grab(oldest=True).index for _ in range(5)] == [0, 1, 2, 3, 4]
    assert cam.skipped == 0 and cam.lost == 0


def test_stamp_join_pairs_frames_with_their_exposure_end_events_in_either_order():
    from cybloid.drivers.camera_basler import StampJoin

    j = StampJoin()
    assert j.stamp(0, 1000) == [] and j.image(0, "f0") == [("f0", 1000)]  # event first (what pylon does)
    assert j.image(1, "f1") == [] and j.stamp(1, 2000) == [("f1", 2000)]  # frame first: held until its event
    assert j.image(2, "f2") == []  # event 2 is lost (or late) ...
    assert j.stamp(3, 4000) == [] and j.image(3, "f3") == []  # ... f3 has its stamp but waits behind f2
    assert j.image(4, "f4") == [] and j.stamp(2, 3000) == [("f2", 3000), ("f3", 4000)]  # late event: in order
    assert j.image(5, "f5") == [] and j.image(6, "f6") == []  # events 4, 5 lost
    assert j.stamp(6, 7000) == [] and j.missed == 0
    assert j.image(7, "f7") == [("f4", None)]  # given up when frame 4 + max_hold (3) arrives
    assert j.image(8, "f8") == [("f5", None), ("f6", 7000)] and j.missed == 2  # f7, f8 wait for their events
    assert j.stamp(9, 1) == [] and j.image(200, "f200") == [("f7", None), ("f8", None)]
    assert 9 not in j._ticks and j.missed == 4  # stale stamps are dropped


def test_gige_block_ids_are_unwrapped_and_usb_ids_are_not():
    from cybloid.drivers.camera_basler import unwrap_block_id

    n, w = unwrap_block_id(65535, 65534, 0, 16)
    assert (n, w) == (65535, 0)
    n, w = unwrap_block_id(1, 65535, w, 16)  # GigE Vision: 65535 is followed by 1 (0 is reserved)
    assert (n, w) == (65536, 1)  # consecutive: no frame lost across the wrap
    assert unwrap_block_id(3, 1, w, 16) == (65538, 1)
    assert unwrap_block_id(5, 70000, 0, None) == (5, 0)  # USB3 Vision's 64-bit IDs never wrap


# ---------------------------------------------------------------------- SDK backends
def test_basler_emulated_camera_settings_read_back_and_frames():
    pytest.importorskip("pypylon")
    from cybloid.drivers.camera_basler import BaslerCamera

    cam = BaslerCamera(RealClock(), emulation=True, exposure_s=0.003, gain_dB=1.0, fps=100.0, width_px=128,
                       height_px=96, offset_x_px=16, offset_y_px=8)
    try:
        s = cam.settings()
        assert s["exposure_s"] == pytest.approx(0.003) and s["roi"] == (16, 8, 128, 96)
        assert s["gain"] == pytest.approx(1.0, abs=0.1) and s["fps"] == pytest.approx(100.0)
        assert (cam.width_px, cam.height_px) == (128, 96)
        frames = [cam.grab() for _ in range(20)]
        idx = [f.index for f in frames]
        assert all(b > a for a, b in zip(idx, idx[1:]))  # camera block IDs, newest each time
        assert frames[0].image.shape == (96, 128) and frames[0].image.dtype == np.uint16
        assert cam.lost == 0 and cam.dropped == sum(f.dropped_before for f in frames)
        assert all(b.t_exposure_start > a.t_exposure_start for a, b in zip(frames, frames[1:]))
        # pylon's emulation stamps frames only through its exposure-end events: the camera's clock, not arrival
        st = cam.stats()
        assert st["timestamps"] == "hardware" and st["unstamped"] == 0 and "EventExposureEndTimestamp" in st[
            "timestamp_source"]
    finally:
        cam.close()


def test_micromanager_demo_camera_settings_stamps_and_frames():
    pytest.importorskip("pymmcore")
    pytest.importorskip("mm_test_adapters")
    from cybloid.drivers.camera_mm import MicroManagerCamera

    cam = MicroManagerCamera(RealClock(), exposure_s=0.002, gain=1.0, fps=100.0, roi=(8, 4, 64, 48),
                             properties={"Mode": "Noise"})
    try:
        s = cam.settings()
        assert s["exposure_s"] == pytest.approx(0.002) and s["roi"] == (8, 4, 64, 48) and s["gain"] == 1.0
        cam.set_ring_size(64)
        frames = [cam.grab(oldest=True) for _ in range(15)]
        assert [f.index for f in frames] == list(range(15))  # the adapter's ImageNumber, none lost
        assert cam.stats()["timestamps"] == "adapter" and cam.lost == 0  # DemoCamera: the adapter's host clock
        assert all(b.t_exposure_start > a.t_exposure_start for a, b in zip(frames, frames[1:]))
        assert frames[0].image.shape == (48, 64) and frames[0].image.dtype == np.uint16
    finally:
        cam.close()


@pytest.mark.parametrize("profile", ["basler-emulated", "micromanager-demo"])
def test_camera_check_cli(profile, capsys):
    pytest.importorskip("pypylon" if profile.startswith("basler") else "pymmcore")
    assert main(["camera", "check", "--hardware", profile, "--frames", "20"]) == 0
    out = capsys.readouterr().out
    assert "dropped frames (camera counter): 0" in out and "timestamps monotonic: yes" in out
    assert "exposure 2.000 ms" in out and "256x256" in out
    kind = "hardware" if profile.startswith("basler") else "adapter"
    assert f"timestamps: {kind} (" in out


def test_camera_check_without_the_sdk_is_one_line_and_exit_2(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pypylon", None)  # as if not installed
    assert main(["camera", "check", "--hardware", "basler-emulated", "--frames", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs pypylon" in err and "cybloid[basler]" in err
    monkeypatch.setitem(sys.modules, "pymmcore", None)
    assert main(["camera", "check", "--hardware", "micromanager-demo", "--frames", "5"]) == 2
    assert "needs pymmcore" in capsys.readouterr().err


def test_laser_clear_fault_cli(capsys):
    assert main(["laser", "clear-fault", "--hardware", "emulated"]) == 0
    out = capsys.readouterr().out
    assert "fault 0 (no fault)" in out and "operating mode 0 (off)" in out and "fault cleared" in out
    assert main(["laser", "clear-fault", "--hardware", "simulated"]) == 2
    assert "simulated" in capsys.readouterr().err


def test_bench_case_with_the_emulated_basler_camera():
    pytest.importorskip("pypylon")
    from cybloid.drivers.bench_camera import basler_case

    c = basler_case(frames=30)
    assert c["samples"] == 30 and c["p50_ms"] > 0  # (no p99 from 30 samples)
    assert c["params"]["width"] == 256 and c["quality"]["timestamps"] == "hardware"
    assert c["quality"]["frames_not_processed"] >= 0
