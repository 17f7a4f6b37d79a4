"""Camera settings: the simulated camera's exposure, gain, frame rate and ROI change the next frames
physically (photon counts, grey values, frame times, pixels read out), and the dashboard's camera
panel and ROI tool set them live and show what the camera reports."""

from __future__ import annotations

import numpy as np
import pytest

from cybloid.devices import CameraSettings
from cybloid.errors import CybloidError
from cybloid.lab import open_lab

SMALL = {"camera.width_px": 128, "camera.height_px": 128, "particles.count": 3}


def _lab(**over):
    return open_lab(seed=3, overrides={**SMALL, **over})


def test_gain_scales_grey_values_and_exposure_scales_photons():
    lab = _lab()
    cam = lab.camera
    assert isinstance(cam, CameraSettings)
    c = lab.profile.camera
    base = np.median(cam.grab().image)  # background pixels: background_photons * gain (ADU)
    assert base == pytest.approx(c.background_photons * c.gain_adu_per_e, rel=0.05)
    assert cam.set_gain(3.0) == 3.0
    assert np.median(cam.grab().image) == pytest.approx(3.0 * c.background_photons, rel=0.05)
    assert cam.settings()["gain"] == 3.0
    # 4x the exposure: 4x the photons (background and particles), and the exposure window is 4x longer;
    # at a gain of 0.25 ADU/e- no pixel reaches the 12-bit maximum at either exposure
    cam.set_gain(0.25)
    img1 = cam.grab().image.astype(float) / 0.25
    assert cam.set_exposure_s(4 * c.exposure_s) == pytest.approx(4 * c.exposure_s)
    f = cam.grab()
    assert f.t_exposure_end - f.t_exposure_start == pytest.approx(4 * c.exposure_s, abs=lab.world.dt)
    img4 = f.image.astype(float) / 0.25
    assert img4.max() < 4095 / 0.25
    assert np.median(img4) == pytest.approx(4 * c.background_photons, rel=0.05)
    signal1 = (img1 - np.median(img1)).sum()  # total photons from the particles (all in the field)
    signal4 = (img4 - np.median(img4)).sum()
    assert signal4 / signal1 == pytest.approx(4.0, rel=0.15)
    lab.close()


def test_frame_rate_sets_frame_times_and_is_limited_by_exposure():
    lab = _lab()
    cam = lab.camera
    f0, f1 = cam.grab(), cam.grab()
    assert f1.t_exposure_start - f0.t_exposure_start == pytest.approx(0.01)
    assert cam.set_fps(40.0) == 40.0
    f2, f3 = cam.grab(), cam.grab()
    assert f2.t_exposure_start >= f1.t_exposure_start + 0.01 - 1e-9  # no jump back in time
    assert f3.t_exposure_start - f2.t_exposure_start == pytest.approx(0.025)
    cam.set_exposure_s(0.05)  # longer than the frame period: the frame rate drops to 1/exposure
    assert cam.settings()["fps"] == pytest.approx(20.0)
    assert cam.set_fps(100.0) == pytest.approx(20.0)
    with pytest.raises(CybloidError, match="camera fps"):
        cam.set_fps(float("nan"))
    with pytest.raises(CybloidError, match="camera exposure_s"):
        cam.set_exposure_s("long")
    lab.close()


def test_roi_reads_out_only_its_pixels_bit_identical_inside():
    full, part = _lab(), _lab()
    roi = part.camera.set_roi((20, 30, 50, 40))
    assert roi == (20, 30, 50, 40)
    assert part.camera.settings()["roi"] == roi
    a, b = full.camera.grab(), part.camera.grab()
    assert np.array_equal(a.image[30:70, 20:70], b.image[30:70, 20:70])  # the same photons, the same noise
    outside = b.image.copy()
    outside[30:70, 20:70] = 0
    c = part.profile.camera
    grey = round(c.background_photons * c.gain_adu_per_e)
    assert set(np.unique(outside[:30])) == {grey}  # not read out: the mean background, no noise
    # the readout scales with the ROI's rows: the frame arrives sooner after its exposure
    ro = part.profile.latency.readout_s
    assert b.t_arrival - b.t_exposure_end == pytest.approx(ro * 40 / 128, abs=part.world.dt)
    clipped = part.camera.set_roi((-5, 120, 1000, 3))
    assert clipped[0] == 0 and clipped[1] + clipped[3] <= 128 and clipped[3] >= 16 and clipped[2] == 128
    assert part.camera.set_roi(None) == (0, 0, 128, 128)
    assert part.camera.roi_px is None
    with pytest.raises(CybloidError, match="ROI"):
        part.camera.set_roi("top left")
    lazy = _lab(**{"camera.render": "lazy"})
    with pytest.raises(CybloidError, match="render"):
        lazy.camera.set_roi((0, 0, 32, 32))
    for lab in (full, part, lazy):
        lab.close()


@pytest.mark.gui
def test_camera_panel_sets_live_and_reads_back(live, qtbot):
    qtbot.waitUntil(lambda: live.worker.latest is not None and live.worker.latest.image is not None, timeout=30000)
    panel = live.camera
    assert panel.settable and all(w.isEnabled() for w in panel._controls)
    cam = live.worker.lab.camera
    bg = live.worker.lab.profile.camera.background_photons
    # gain typed in the box (editing finished): the camera reports it, the next frames are brighter
    panel.gain.setValue(4.0)
    panel.gain.editingFinished.emit()
    assert cam.settings()["gain"] == 4.0
    qtbot.waitUntil(lambda: np.median(live.worker.latest.image) > 3.5 * bg, timeout=10000)
    assert "gain 4 ADU/e-" in panel.readback.text()
    assert panel.apply_exposure_s(0.004) == pytest.approx(0.004)
    qtbot.waitUntil(lambda: live.worker.latest.t_exposure_end - live.worker.latest.t_exposure_start > 0.0035,
                    timeout=10000)
    assert panel.exposure_ms.value() == pytest.approx(4.0)
    assert panel.apply_fps(50.0) == 50.0
    assert live.worker.lab.frame_period_s == pytest.approx(0.02)  # the loop follows the camera
    qtbot.waitUntil(lambda: "frame rate 50.00" in panel.readback.text(), timeout=5000)
    r = live.worker.latest  # the frame before the change may still be on the old timing: start after it
    qtbot.waitUntil(lambda: live.worker.latest.index >= r.index + 1, timeout=10000)
    r0 = live.worker.latest
    qtbot.waitUntil(lambda: live.worker.latest.index >= r0.index + 3, timeout=10000)
    r1 = live.worker.latest
    assert (r1.t_exposure_start - r0.t_exposure_start) / (r1.index - r0.index) == pytest.approx(0.02, rel=1e-6)
    assert panel.apply_fps(1e6) == pytest.approx(1 / 0.004)  # clamped to what the exposure allows


@pytest.mark.gui
def test_roi_tool_drag_sets_camera_roi_and_clear_button_clears_it(live, qtbot):
    qtbot.waitUntil(lambda: live.worker.latest is not None and live.worker.latest.image is not None, timeout=30000)
    px = live.live.pixel_size_um
    live.live.roi_tool_box.setChecked(True)
    assert live.live.vb.tool is live.roi_tool and not live.live.trap_tool_box.isChecked()
    live.live.trap_tool_box.setChecked(True)  # the tools exclude each other
    assert live.live.vb.tool is live.trap_tool and not live.live.roi_tool_box.isChecked()
    live.live.roi_tool_box.setChecked(True)
    tool = live.roi_tool
    tool.drag_start(np.array([10.2 * px, 20.7 * px]))
    tool.drag_move(np.array([40.0 * px, 50.0 * px]))
    tool.drag_end(np.array([60.5 * px, 70.1 * px]))
    cam = live.worker.lab.camera
    assert cam.settings()["roi"] == (10, 20, 51, 51)
    assert [b.value() for b in live.camera.roi_boxes] == [10, 20, 51, 51]
    x, y = live.live._rects["roi"].getData()
    assert np.allclose([x.min(), x.max(), y.min(), y.max()], np.array([10, 61, 20, 71]) * px)
    qtbot.waitUntil(lambda: np.unique(live.worker.latest.image[:20]).size == 1, timeout=10000)
    live.camera.clear_roi_btn.click()
    assert cam.roi_px is None and cam.settings()["roi"] == (0, 0, 128, 128)
    qtbot.waitUntil(lambda: np.unique(live.worker.latest.image[:20]).size > 10, timeout=10000)
    assert live.live._rects["roi"].getData()[0] is None or len(live.live._rects["roi"].getData()[0]) == 0


@pytest.mark.gui
def test_camera_panel_is_read_only_for_a_camera_without_live_settings(qtbot):
    """A camera that only reports its settings (as the Basler / Micro-Manager drivers do) is shown, not set."""
    from cybloid.gui.camerapanel import CameraPanel

    class ReadOnlyCamera:
        width_px = height_px = 64

        def settings(self):
            return {"model": "acme", "exposure_s": 0.003, "gain": 2.0, "gain_unit": "dB", "fps": 80.0,
                    "roi": (0, 0, 64, 64)}

    class Lab:
        camera = ReadOnlyCamera()

    class Worker:
        lab = Lab()

        def submit(self, fn, wait_s=0.0):
            raise AssertionError("a read-only camera must not be sent requests")

    panel = CameraPanel(Worker(), pixel_size_um=lambda: 0.2)
    qtbot.addWidget(panel)
    assert not panel.settable and not panel.exposure_ms.isEnabled()
    assert "exposure 3.000 ms" in panel.readback.text() and "gain 2 dB" in panel.readback.text()
    assert "read back" in panel.note.text()
    assert panel.apply_gain(5.0) is None
