"""The fast tracker against ground truth: closed-form spots and the simulated lab."""

import math

import numpy as np
import pytest

from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop, default_tracker
from cybloid.tracking import (FLAG_CONTACT, FLAG_DOUBTFUL, FLAG_EDGE, FLAG_LOST, FLAG_NEW, FLAG_SHIFT,
                              FastTracker)
from cybloid.tracking.link import assign, estimate_shift

SMALL = {"camera.width_px": 128, "camera.height_px": 128}


def truth_px(frame, lab):
    return frame.truth["positions_um"] / lab.profile.camera.pixel_size_um


def match(tracks, truth, max_px=2.0):
    """Truth index of each track (-1 when no truth particle is within ``max_px``)."""
    d = np.hypot(tracks.xy_px[:, None, 0] - truth[None, :, 0], tracks.xy_px[:, None, 1] - truth[None, :, 1])
    j = d.argmin(axis=1) if len(truth) else np.full(len(tracks), -1)
    return np.where(d[np.arange(len(tracks)), j] < max_px, j, -1) if len(truth) else j


def gaussian_image(xy, amp, sigma, shape=(64, 64), background=100.0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.full(shape, background)
    for (x, y), a in zip(xy, amp):
        img += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def run_frames(lab, tracker, n):
    out = []
    for _ in range(n):
        f = lab.camera.grab()
        out.append((f, tracker.update(f.image, f.index)))
    return out


@pytest.fixture(scope="module")
def warm():
    t = FastTracker(diameter_px=13, minmass=1000.0, sigma_px=2.7)
    t.warm_up()
    return t


def test_noise_free_spots_are_located_exactly(warm):
    """Ideal Gaussian spots, one clipped by the edge and a pair in contact: the estimator is unbiased."""
    sigma = 2.7
    xy = np.array([[20.3, 30.7], [30.4, 30.9], [48.2, 12.6], [2.3, 50.4]])  # pair 10.1 px apart, one at x=2.3
    img = gaussian_image(xy, [2000, 1500, 2500, 1800], sigma)
    t = FastTracker(diameter_px=13, minmass=1000.0, sigma_px=sigma, background=100.0)
    tr = t.update(img)
    assert len(tr) == 4
    j = match(tr, xy)
    assert sorted(j) == [0, 1, 2, 3]
    err = np.hypot(*(tr.xy_px - xy[j]).T)
    assert err.max() < 2e-3
    # integrated brightness of a Gaussian: 2 pi sigma^2 amplitude
    mass = 2 * math.pi * sigma**2 * np.array([2000, 1500, 2500, 1800])[j]
    np.testing.assert_allclose(tr.mass, mass, rtol=2e-3)
    np.testing.assert_allclose(tr.size[j != 3], sigma, rtol=0.02)  # the clipped one is biased
    assert np.all(tr.flags[j == 3] & FLAG_EDGE)
    assert np.all(tr.flags[(j == 0) | (j == 1)] & FLAG_CONTACT)
    assert not np.any(tr.flags[j == 2] & (FLAG_CONTACT | FLAG_EDGE))


def test_elongated_and_doubled_spots_are_doubtful(warm):
    sigma = 2.7
    yy, xx = np.mgrid[0:64, 0:96]
    img = 100 + 2000 * np.exp(-((xx - 20) ** 2 + (yy - 30) ** 2) / (2 * sigma**2))
    img += 2000 * np.exp(-((xx - 50) ** 2 / (2 * (2.2 * sigma) ** 2) + (yy - 30) ** 2 / (2 * (0.8 * sigma) ** 2)))
    for k, x in enumerate([70, 80, 88]):
        img += 2000 * np.exp(-((xx - x) ** 2 + (yy - 50 + 20 * (k % 2)) ** 2) / (2 * sigma**2))
    img += 4000 * np.exp(-((xx - 40) ** 2 + (yy - 50) ** 2) / (2 * sigma**2))  # twice as bright
    t = FastTracker(diameter_px=13, minmass=5000.0, sigma_px=sigma, background=100.0)
    tr = t.update(img.astype(np.float32))
    by_x = {int(round(x)): f for (x, _), f in zip(tr.xy_px, tr.flags)}
    assert by_x[20] & FLAG_DOUBTFUL == 0
    assert by_x[50] & FLAG_DOUBTFUL  # eccentric
    assert by_x[40] & FLAG_DOUBTFUL  # mass twice the others
    assert not tr.usable[[int(round(x)) == 50 for x in tr.xy_px[:, 0]]].any()


def test_subpixel_accuracy_on_simulated_frames(warm):
    """Default SNR: RMS error against the simulator's truth well below 0.05 px (COM gives ~0.1)."""
    lab = open_lab(seed=3, overrides={**SMALL, "particles.count": 12})
    t = default_tracker(lab)
    assert isinstance(t, FastTracker)
    err = []
    for f, tr in run_frames(lab, t, 15):
        truth = truth_px(f, lab)
        j = match(tr, truth)
        ok = tr.usable & (j >= 0) & ((tr.flags & FLAG_EDGE) == 0)
        err.append(tr.xy_px[ok] - truth[j[ok]])
    err = np.concatenate(err)
    assert len(err) > 100
    rms = math.sqrt(np.mean(np.sum(err**2, axis=1)))
    assert rms < 0.05


def test_identities_kept_through_contacts():
    """Dense suspension (many contacts) for 100 frames: every identity stays on one particle."""
    lab = open_lab(seed=5, overrides={"camera.width_px": 160, "camera.height_px": 160, "particles.count": 45,
                                      "particles.min_spacing_um": 2.05})
    t = default_tracker(lab)
    owner: dict[int, int] = {}
    contacts = 0
    for f, tr in run_frames(lab, t, 100):
        truth = truth_px(f, lab)
        j = match(tr, truth, 1.0)
        found = (tr.flags & FLAG_LOST) == 0
        assert np.all(j[found] >= 0)
        for pid, k in zip(tr.ids[found], j[found]):
            assert owner.setdefault(int(pid), int(k)) == k, "identity swap"
        contacts += int(np.count_nonzero(tr.flags & FLAG_CONTACT))
    assert contacts > 100  # the test did exercise near contacts
    assert len(owner) == 45  # one identity per particle, none re-created


def test_particle_leaving_and_entering_the_field_of_view():
    prof = {**SMALL, "particles.count": 3, "arena.margin_um": 6.0}
    start = np.array([[1.6, 12.0], [-2.2, 5.0], [12.0, 20.0]])  # um; particle 1 outside (x < 0)
    lab = open_lab(seed=7, overrides=prof, initial_positions_um=start)
    t = default_tracker(lab)
    w = lab.world
    ids_of = {0: set(), 1: set(), 2: set()}
    entered_at = None
    for i in range(60):
        w.pos[0, 0] -= 0.1  # 0.5 px per frame out through the left edge
        w.pos[1, 0] += 0.1  # and one in
        f = lab.camera.grab()
        tr = t.update(f.image, f.index)
        truth = truth_px(f, lab)
        j = match(tr, truth, 1.0)
        found = (tr.flags & FLAG_LOST) == 0
        for pid, k in zip(tr.ids[found], j[found]):
            assert k >= 0
            ids_of[int(k)].add(int(pid))
        if entered_at is None and np.any(found & (j == 1)):
            entered_at = truth[1, 0]
            assert np.all(tr.flags[found & (j == 1)] & FLAG_NEW)
        if truth[0, 0] > 3.0:  # clearly inside: tracked
            assert np.any(found & (j == 0))
        if truth[0, 0] < -3.0:  # gone: its identity is lost, not given to anyone
            assert not np.any(found & (j == 0))
    assert all(len(v) == 1 for v in ids_of.values()), ids_of
    assert ids_of[0] != ids_of[1]
    assert entered_at is not None and entered_at < 3.0  # picked up as soon as its centre is in
    assert set(tr.ids) == ids_of[1] | ids_of[2]  # the one that left is forgotten after `memory` frames


@pytest.mark.parametrize("shift_um", [(0.4, 0.3), (1.7, -1.1), (9.0, 6.0)])
def test_stage_move_keeps_identities(shift_um):
    lab = open_lab(seed=11, overrides={**SMALL, "particles.count": 40, "arena.margin_um": 12.0})
    t = default_tracker(lab)
    before = {}
    for f, tr in run_frames(lab, t, 3):
        pass
    j = match(tr, truth_px(f, lab), 1.0)
    before = {int(k): int(p) for p, k, fl in zip(tr.ids, j, tr.flags) if k >= 0 and not fl & FLAG_LOST}
    lab.stage.move_by(*shift_um)
    f = lab.camera.grab()
    tr = t.update(f.image, f.index)
    truth = truth_px(f, lab)
    j = match(tr, truth, 1.0)
    found = (tr.flags & FLAG_LOST) == 0
    kept = 0
    for p, k in zip(tr.ids[found], j[found]):
        assert k >= 0
        if k in before:
            assert before[k] == p, "identity changed by the stage move"
            kept += 1
    assert kept >= 3
    if math.hypot(*shift_um) > 5:
        assert np.all(tr.flags & FLAG_SHIFT)
        expected = -np.array(shift_um) / lab.profile.camera.pixel_size_um
        np.testing.assert_allclose(t.last_shift_px, expected, atol=0.5)


def test_frame_with_a_particle_missing():
    lab = open_lab(seed=13, overrides={**SMALL, "particles.count": 6})
    t = default_tracker(lab)
    run_frames(lab, t, 3)
    f = lab.camera.grab()
    truth = truth_px(f, lab)
    d = np.hypot(*(truth[:, None] - truth[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    inner = np.all((truth > 20) & (truth < 108), axis=1)
    k = int(np.argmax(np.where(inner, d.min(axis=1), -1)))  # the most isolated inner particle
    img = f.image.copy()
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    hole = np.hypot(xx - truth[k, 0], yy - truth[k, 1]) < 9
    img[hole] = np.random.default_rng(0).poisson(100, hole.sum())
    tr = t.update(img, f.index)
    match(tr, truth, 1.0)
    lost = tr.flags & FLAG_LOST > 0
    assert lost.sum() == 1 and not tr.usable[lost].any()
    gone_id = tr.ids[lost][0]
    assert t.last_acquisition == "lost"
    f = lab.camera.grab()
    tr2 = t.update(f.image, f.index)
    j2 = match(tr2, truth_px(f, lab), 1.0)
    assert np.all((tr2.flags & FLAG_LOST) == 0)
    assert tr2.ids[j2 == k][0] == gone_id  # same identity after the gap
    assert len(tr2) == 6


def test_empty_frames_and_bad_input():
    t = FastTracker(diameter_px=13, minmass=1000.0, sigma_px=2.7)
    img = np.full((64, 64), 100, np.uint16)
    assert len(t.update(img)) == 0
    assert len(t.update(img)) == 0
    with pytest.raises(ValueError):
        t.update(np.zeros((4, 64, 64), np.uint16))
    with pytest.raises(ValueError):
        FastTracker(diameter_px=12)


def test_shift_voting_and_assignment():
    rng = np.random.default_rng(1)
    prev = rng.uniform(0, 500, (60, 2))
    det = np.concatenate([prev[10:] + [37.2, -21.6] + rng.normal(0, 0.1, (50, 2)), rng.uniform(0, 500, (8, 2))])
    shift, support = estimate_shift(prev, det, bin_px=6.5, max_shift_px=250)
    np.testing.assert_allclose(shift, [37.2, -21.6], atol=0.1)
    assert support >= 45
    src, dst = assign(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[9.0, 0.0], [1.0, 0.0], [50.0, 0.0]]), 3.0)
    assert dict(zip(src, dst)) == {0: 1, 1: 0}


def test_loop_uses_the_fast_tracker():
    lab = open_lab(seed=2, overrides={**SMALL, "particles.count": 5})
    loop = FeedbackLoop(lab, keep_images=False)
    assert isinstance(loop.tracker, FastTracker)
    loop.warm_up()
    recs = [loop.step() for _ in range(5)]
    assert all(len(r.ids) == 5 for r in recs)
    assert np.all(recs[-1].quality & FLAG_LOST == 0)
    loop.close()
    lab.close()


def test_tracked_msd_is_free_diffusion():
    """MSD at one frame from the tracks: 4 D (t - t_E/3) (motion blur) + 4 sigma_loc^2, sigma_loc ~ 0.02 px."""
    lab = open_lab(seed=17, overrides={"camera.width_px": 192, "camera.height_px": 192, "particles.count": 30})
    t = default_tracker(lab)
    pos = {}
    for i, (f, tr) in enumerate(run_frames(lab, t, 40)):
        for pid, xy, ok in zip(tr.ids, tr.xy_px, tr.usable):
            if ok:
                pos[(int(pid), i)] = xy * lab.profile.camera.pixel_size_um
    d2 = [np.sum((pos[(p, i + 1)] - xy) ** 2) for (p, i), xy in pos.items() if (p, i + 1) in pos]
    assert len(d2) > 1000
    dt = 1 / lab.profile.camera.fps
    expected = 4 * lab.profile.diffusion * (dt - lab.profile.camera.exposure_s / 3)
    expected += 4 * (0.02 * lab.profile.camera.pixel_size_um) ** 2
    # |d|^2 is exponential in 2D: relative standard error 1/sqrt(n) ~ 3 %; hard spheres at this
    # low density slow short-time diffusion by well under that
    assert np.mean(d2) == pytest.approx(expected, rel=0.12)


def test_benchmark_truth_counts_swaps_and_switches():
    from cybloid.bench.tracking import Truth

    truth = np.array([[10.0, 10.0], [30.0, 10.0]])
    q = Truth()
    ones = np.ones(2, bool)
    q.add(np.array([0, 1]), truth + 0.03, truth, ones, ones)
    q.add(np.array([1, 0]), truth - 0.04, truth, ones, ones)  # identities exchanged: two swaps
    q.add(np.array([1, 2]), truth, truth, ones, ones)  # particle 1 gets a new identity: one switch
    r = q.quality()
    assert r["particle_frames"] == 6
    assert r["id_swaps_per_1e4"] == pytest.approx(1e4 * 2 / 6)
    assert r["id_switches_per_1e4"] == pytest.approx(1e4 * 3 / 6)
    assert r["rms_error_px"] == pytest.approx(math.sqrt((2 * 2 * 0.03**2 + 2 * 2 * 0.04**2) / 6))


def test_auto_settings_wait_for_a_frame_with_particles():
    """Without minmass or sigma, an empty first frame teaches nothing; the first frame with particles does."""
    rng = np.random.default_rng(3)
    t = FastTracker(diameter_px=13)
    empty = rng.normal(100, 10, (64, 64)).astype(np.float32)
    assert len(t.update(empty)) == 0
    assert t.minmass is None
    xy = np.array([[20.3, 30.7], [45.6, 20.2]])
    img = gaussian_image(xy, [2000, 2000], 2.6) + rng.normal(0, 10, (64, 64)).astype(np.float32)
    tr = t.update(img)
    assert len(tr) == 2
    assert t.sigma_px == pytest.approx(2.6, rel=0.05)
    assert t.minmass == pytest.approx(0.3 * 2000 * 2 * math.pi * 2.6**2, rel=0.1)


def test_particle_jumping_beyond_its_window_keeps_its_identity():
    """A 9 px jump (a strong laser pull) loses the window; the acquisition links it back, flagged DOUBTFUL."""
    lab = open_lab(seed=13, overrides={**SMALL, "particles.count": 6})
    t = default_tracker(lab)
    f, tr = run_frames(lab, t, 3)[-1]
    k = int(np.argmin(np.abs(truth_px(f, lab)[:, 0] - 50)))
    pid = tr.ids[match(tr, truth_px(f, lab)) == k][0]
    lab.world.pos[k] += [1.8, 0.0]
    f = lab.camera.grab()
    tr = t.update(f.image, f.index)
    j = match(tr, truth_px(f, lab), 0.5)
    assert t.last_acquisition == "lost"
    assert set(tr.ids) == set(range(6)) and tr.ids[j == k][0] == pid
    assert tr.flags[j == k][0] & FLAG_DOUBTFUL and not np.any(tr.flags & FLAG_LOST)


def test_warm_up_compiles_every_hot_path_kernel():
    from cybloid.tracking import hotpath as H
    from cybloid.tracking import refine as R

    lab = open_lab(seed=1, overrides={**SMALL, "particles.count": 12, "arena.margin_um": 5.0})
    t = default_tracker(lab)
    t.warm_up()
    kernels = [R.refine_gauss, R.neighbour_lists, R.edge_candidates, R.assess, R.make_flags, R.close_pairs,
               R.has_close, H.steady_frame, H.touch_windows]
    before = [len(k.signatures) for k in kernels]
    for i in range(12):
        if i == 6:
            lab.stage.move_by(2.0, 1.0)
        t.update(lab.camera.grab().image)
    assert [len(k.signatures) for k in kernels] == before


def test_steady_stage_motion_is_followed_without_repeated_acquisitions():
    """The stage moves 4.5 px per frame (more than half the window): the field drift is predicted."""
    lab = open_lab(seed=11, overrides={**SMALL, "particles.count": 40, "arena.margin_um": 12.0})
    t = default_tracker(lab)
    owner: dict[int, int] = {}
    acquisitions = 0
    for i in range(30):
        if i >= 5:
            lab.stage.move_by(0.8, -0.4)
        f = lab.camera.grab()
        tr = t.update(f.image, f.index)
        acquisitions += t.last_acquisition is not None
        j = match(tr, truth_px(f, lab), 1.0)
        for p, k in zip(tr.ids[tr.usable], j[tr.usable]):
            assert k >= 0 and owner.setdefault(int(p), int(k)) == k
    assert acquisitions <= 3  # start, and the frame the motion began
    np.testing.assert_allclose(t._drift, [-4.0, 2.0], atol=0.3)
