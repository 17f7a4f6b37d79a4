"""Incremental detection in the loop's tracker, and tracking on realistic simulated images."""

import numpy as np
import pytest

from cybloid.lab import open_lab
from cybloid.sim.appearance import Appearance, DenseField
from cybloid.tracking.base import FLAG_LOST
from cybloid.tracking.fast import FastTracker
from cybloid.tracking.locate import locate


def frame(xy, rng, shape=(200, 240), sigma=2.0, peak=1500.0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.full(shape, 100.0)
    for x, y in xy:
        img += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return rng.poisson(img).astype(np.uint16)


def test_a_lost_particle_is_searched_for_near_where_it_was():
    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.arange(20, 230, 30.0), np.arange(20, 190, 30.0))
    xy = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-3, 3, (gx.size, 2))
    t = FastTracker(diameter_px=11, minmass=3000, sigma_px=2.0, reacquire_every=0, memory=3)
    first = t.update(frame(xy, rng), 0)
    assert len(first) == len(xy)
    full = t.acquisitions
    gone = 17
    t.update(frame(np.delete(xy, gone, axis=0), rng), 1)  # the particle vanishes (out of focus)
    back = xy.copy()
    back[gone] += (2.5, -2.0)  # and comes back a little further on
    tr = t.update(frame(back, rng), 2)
    assert t.acquisitions == full  # no full-frame detection for one lost particle
    assert t.local_acquisitions >= 1 and t.last_local == 1
    found = (tr.flags & FLAG_LOST) == 0
    assert found.sum() == len(xy)
    k = int(np.flatnonzero(first.ids == first.ids[np.argmin(np.hypot(*(first.xy_px - xy[gone]).T))])[0])
    j = int(np.flatnonzero(tr.ids == first.ids[k])[0])
    assert np.hypot(*(tr.xy_px[j] - back[gone])) < 0.2  # same identity, found at its new place


def test_bright_field_camera_frames_are_located_at_the_particles():
    lab = open_lab(seed=3, overrides={"camera.width_px": 128, "camera.height_px": 128, "particles.count": 5})
    try:
        Appearance(ring_radius_px=5.0).attach(lab.camera)
        f = lab.camera.grab()
        truth = f.truth["positions_um"] / lab.profile.camera.pixel_size_um
        img = f.image
        assert img.dtype == np.uint16
        # bright background, dark rings: darker than the median around every particle
        assert np.median(img) > 1500
        df = locate(img, 7, minmass=2000)
        d = np.hypot(df["x"].to_numpy()[:, None] - truth[None, :, 0], df["y"].to_numpy()[:, None] - truth[None, :, 1])
        inside = (truth.min(axis=1) > 8) & (truth[:, 0] < 120) & (truth[:, 1] < 120)
        assert np.all(d[:, inside].min(axis=0) < 0.5)
    finally:
        lab.close()


def test_dense_field_moves_particles_in_and_out_of_focus():
    field = DenseField(200, (200, 300), Appearance(vignetting=0.3), seed=2)
    img0, xy0, z0 = field.frame()
    for _ in range(10):
        field.step()
    _, xy1, z1 = field.frame()
    assert len(xy0) == 200 and np.all(np.abs(z1) <= 2.5)
    assert np.std(z1 - z0) > 0.2  # heights change
    assert field.in_focus(z0).sum() != field.in_focus(z1).sum() or np.any(field.in_focus(z0) != field.in_focus(z1))
    # vignetting: the corners are darker than the centre (background level)
    h, w = img0.shape
    assert np.median(img0[:20, :20]) < 0.85 * np.median(img0[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20])
    # in-focus particles are found at their true positions by the trackpy-style locate
    df = locate(img0, 9, minmass=3000)
    focus = xy0[field.in_focus(z0, 0.5) & (xy0[:, 0] > 8) & (xy0[:, 0] < w - 9) & (xy0[:, 1] > 8) & (xy0[:, 1] < h - 9)]
    d = np.hypot(df["x"].to_numpy()[:, None] - focus[None, :, 0], df["y"].to_numpy()[:, None] - focus[None, :, 1])
    assert np.mean(d.min(axis=0) < 1.0) > 0.9


def test_bad_appearance_values_are_refused():
    with pytest.raises(ValueError, match="mode"):
        Appearance(mode="phase")
    with pytest.raises(ValueError, match="vignetting"):
        Appearance(vignetting=1.2)


def test_loop_tracker_in_bright_field_gives_ring_centres():
    app = Appearance(vignetting=0.1, focus_depth_um=50.0, core=1.0)  # in focus, bright cores
    field = DenseField(12, (160, 200), app, seed=4, min_gap_px=20.0)
    field.z[:] = 0.0
    t = FastTracker(diameter_px=9, minmass=20000, sigma_px=2.25, ring_diameter_px=11)
    for k in range(3):
        img, xy, _ = field.frame()
        tr = t.update(img, k)
        field.step()
    found = (tr.flags & FLAG_LOST) == 0
    assert 10 <= t.ring_found <= found.sum()
    # the ring centres sit on the particles (trackpy's procedure: whole-pixel edge offsets)
    d = np.hypot(tr.xy_px[found][:, None, 0] - xy[None, :, 0], tr.xy_px[found][:, None, 1] - xy[None, :, 1])
    assert np.median(d.min(axis=1)) < 0.3 and np.max(d.min(axis=1)) < 0.8
    # the ring refinement moved them off the Gaussian-window positions
    plain = FastTracker(diameter_px=9, minmass=20000, sigma_px=2.25)
    for k in range(3):
        ptr = plain.update(img, k)
    assert not np.allclose(np.sort(ptr.xy_px[:, 0]), np.sort(tr.xy_px[:, 0]), atol=1e-3)
    with pytest.raises(ValueError, match="ring_diameter_px"):
        FastTracker(diameter_px=9, ring_diameter_px=1.0)
