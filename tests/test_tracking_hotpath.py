"""The fast tracker's one-call steady path (:mod:`cybloid.tracking.hotpath`) gives exactly the
results of the general path: same identities, positions, masses, widths, flags, frame by frame,
through Brownian motion, particles crossing the border, a stage jump and steady stage motion."""

import numpy as np

from cybloid.lab import open_lab
from cybloid.loop import default_tracker


def test_steady_path_is_bit_identical_to_the_general_path():
    lab = open_lab(seed=5, overrides={"camera.width_px": 128, "camera.height_px": 128, "particles.count": 30,
                                      "arena.margin_um": 0.0})
    fast, general = default_tracker(lab), default_tracker(lab)
    fast.steady_path, general.steady_path = True, False
    steady = events = 0
    for i in range(60):
        if i == 20:
            lab.stage.move_by(3.0, -2.0)  # a field jump: acquisition, SHIFT flags
        if 35 <= i < 45:
            lab.stage.move_by(0.6, 0.3)  # steady motion: drift prediction, particles leave and enter
        image = lab.camera.grab().image
        a, b = fast.update(image, i), general.update(image, i)
        for name in ("ids", "xy_px", "mass", "flags", "size", "ecc"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (i, name)
        assert fast.last_acquisition == general.last_acquisition
        steady += fast.last_acquisition is None
        events += fast.last_acquisition is not None or bool(np.any(a.flags & 1))
    lab.close()
    assert steady >= 30 and events >= 2  # both paths were exercised
    assert len(a) >= 20


def test_steady_frame_median_counts_particles_predicted_just_beyond_the_edge():
    """Regression: the field-motion median of :func:`steady_frame` takes every particle found in
    both frames, also those predicted just beyond the image edge (which ``n_both`` does not count),
    as the general path does; it once sized its buffer by ``n_both`` and wrote past its end (heap
    corruption: the process aborted later)."""
    from cybloid.tracking.fast import FastTracker
    from cybloid.tracking.hotpath import STEADY, steady_frame

    true_xy = np.array([[-0.6, 15.0], [-0.6, 40.0], [20.0, 20.0], [30.0, 30.0], [40.0, 45.0]])
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.full((64, 64), 100.0)
    for x, y in true_xy:
        image += 1000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    image = image.astype(np.float32)
    tr = FastTracker(diameter_px=9, minmass=100.0, sigma_px=1.5, background=100.0, edge_watch=False,
                     scan_frames=0)
    tr.noise = 5.0
    n = len(true_xy)
    # the two outside particles (first, so a buffer of n_both = 3 would be filled by them) moved
    # 0.3 px, the three inside ones 1 px: the median of all five is 1 px, of the first three 0.3
    prev = true_xy - np.array([[0.3, 0.0]] * 2 + [[1.0, 0.0]] * 3)
    xy, pred, amp = np.empty((n, 2)), np.empty((n, 2)), np.empty(n)
    size, ecc, vis, st, mass = np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int8), np.empty(n, np.float32)
    out = steady_frame(image, prev.copy(), np.full(n, 1000.0), np.zeros(n, np.int64), np.zeros(2),
                       tr._steady_params(100.0 / tr._mass_per_amp, 0, 0), xy, pred, amp, size, ecc, vis, st, mass)
    code, found, n_prev, n_both, med = out[0], out[1], out[3], out[4], out[5]
    assert code == STEADY and found.all()
    assert np.all(pred[:2, 0] < -0.5) and n_prev == n_both == 3  # two found particles predicted outside
    assert np.allclose(xy, true_xy, atol=0.05)
    assert med[0] == np.median(xy[:, 0] - pred[:, 0]) and abs(med[0] - 1.0) < 0.05


def test_a_nan_pixel_loses_its_particle_for_one_frame_not_the_tracker():
    """A NaN pixel in a float image (a dead pixel in converted data) under a particle: no exception
    from the compiled calls (a NaN position once reached a division by zero), no NaN position in
    the tracks or the tracker's state, and every particle keeps its identity. Both paths."""
    from cybloid.tracking import FLAG_LOST
    from cybloid.tracking.fast import FastTracker

    xy = np.array([[15.0, 12.0], [40.0, 30.0], [25.0, 45.0], [50.0, 10.0]])
    yy, xx = np.mgrid[0:60, 0:64]
    rng = np.random.default_rng(2)
    for steady in (True, False):
        tr = FastTracker(diameter_px=9, minmass=2000.0, sigma_px=1.6)
        tr.steady_path = steady
        for i in range(8):
            img = 100.0 + rng.normal(0.0, 3.0, yy.shape)
            for x, y in xy:
                img += 800.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.6**2))
            img = img.astype(np.float32)
            if i == 5:
                img[30, 40] = np.nan
            tracks = tr.update(img, i)
            found = (tracks.flags & FLAG_LOST) == 0
            assert np.isfinite(tracks.xy_px).all() and np.isfinite(tr._xy).all()
            if i > 0:  # the NaN frame included: nobody lost for good, no identity changed
                assert found.sum() >= 3 and list(tracks.ids) == [0, 1, 2, 3]
                d = np.hypot(*(tracks.xy_px[found][:, None, :] - xy[None, :, :]).transpose(2, 0, 1)).min(axis=1)
                assert d.max() < 0.5
        assert np.sort(np.round(tracks.xy_px[:, 0])).tolist() == np.sort(xy[:, 0]).tolist()
