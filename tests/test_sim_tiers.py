"""Rendering tiers of the simulated camera (camera.render = full | lazy | none) and the
scalable Brownian dynamics, against the camera model and closed-form physics."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cybloid.lab import open_lab
from cybloid.loop import FeedbackLoop
from cybloid.profile import load_lab_profile
from cybloid.sim.lazy import LazyImage
from cybloid.sim.world import SimWorld


def grab_frames(render, n_frames, seed=4, **over):
    lab = open_lab(seed=seed, overrides={"camera.render": render, "camera.width_px": 160, "camera.height_px": 120,
                                         "particles.count": 12, "camera.spot_visible": True, **over})
    lab.laser.on()
    frames = []
    for k in range(n_frames):
        # a few visible spots, changed every frame, so the spot layers are exercised too
        spots = lab.world.positions_fov_um()[:3] + [0.8, 0.3 * k]
        lab.world.schedule_spots(lab.world.tick, spots, np.full(3, 0.2))
        frames.append(lab.camera.grab())
    lab.close()
    return frames


def test_lazy_regions_and_frames_equal_full_bit_for_bit():
    full = grab_frames("full", 4)
    lazy = grab_frames("lazy", 4)
    for f, z in zip(full, lazy):
        assert isinstance(z.image, LazyImage) and not z.image.complete
        np.testing.assert_array_equal(f.truth["positions_um"], z.truth["positions_um"])
        # any region alone, read before the rest exists (odd bounds, crossing tiles)
        assert np.array_equal(z.image[37:53, 5:61], f.image[37:53, 5:61])
        xy = f.truth["positions_um"][:2] / 0.2
        z.image.ensure_windows(xy, 6)
        assert z.image.pixels_rendered < f.image.size / 4  # tile by tile, not the whole frame
        for x, y in np.rint(xy).astype(int):
            win = (slice(max(y - 6, 0), y + 7), slice(max(x - 6, 0), x + 7))
            assert np.array_equal(z.image.buffer[win], f.image[win])
        # the materialised frame
        assert np.array_equal(np.asarray(z.image), f.image)
    # the frames differ from frame to frame and from seed to seed (the key is used)
    assert not np.array_equal(full[0].image, full[1].image)
    other = grab_frames("full", 1, seed=5)
    assert not np.array_equal(other[0].image, full[0].image)


def test_full_frame_is_the_same_in_two_threads_and_in_a_region_of_interest():
    """The whole frame rendered in one thread, in two (CYBLOID_RENDER_THREADS=2), region by
    region, and its mean signal against the sum of the sources' Gaussians."""
    from cybloid.sim.pixels import BIN_PX, frame_key, render_frame, render_rect

    lab = open_lab(seed=7, overrides={"camera.width_px": 200, "camera.height_px": 170, "particles.count": 15})
    cam = lab.camera
    cam.warm_up()
    layers = []
    cam._add_layers(layers, lab.world.positions_fov_um(), 0.5)
    cam._add_layers(layers, lab.world.positions_fov_um() + [0.3, -0.2], 0.5)
    scene, key, noise = cam.scene(layers), np.uint64(frame_key(7, 3)), cam.noise_args()
    one = np.empty((170, 200), np.uint16)
    two = np.empty((170, 200), np.uint16)
    render_frame(one, 0, 170, 0, 200, 170, 200, scene, key, noise, 1)
    render_frame(two, 0, 170, 0, 200, 170, 200, scene, key, noise, 2)
    assert np.array_equal(one, two)
    part = np.empty((61, 77), np.uint16)
    render_rect(part, 50, 111, 33, 110, 170, 200, *scene, BIN_PX, key, *noise)
    assert np.array_equal(part, one[50:111, 33:110])
    # mean signal: each source a Gaussian of peak amp within ceil(4 sigma) of its pixel
    img = cam.mean_signal(layers)
    ref = np.zeros((170, 200))
    jj, ii = np.mgrid[0:170, 0:200]
    for xs, ys, amp, sigma in layers:
        half = int(np.ceil(4 * sigma))
        for x, y, a in zip(xs, ys, amp):
            inside = (np.abs(ii - np.floor(x) - 0.5) <= half + 0.5) & (np.abs(jj - np.floor(y) - 0.5) <= half + 0.5)
            ref += np.where(inside, a * np.exp(-((ii - x) ** 2 + (jj - y) ** 2) / (2 * sigma**2)), 0.0)
    np.testing.assert_allclose(img, ref, rtol=1e-5, atol=1e-4)
    lab.close()


def test_sources_off_the_frame_on_one_axis_cover_no_pixel():
    """A source beside the frame (x inside, y far outside, or the reverse: a stage move puts
    particles there) has an empty footprint and a zero-length profile: negative lengths once
    made the profile offsets run backwards and the kernel wrote outside its buffer."""
    from cybloid.sim.pixels import BIN_PX, prepare_scene

    lx = np.array([50.0, 5000.0, 50.0, -900.0, 60.0])
    ly = np.array([-700.0, 40.0, 4000.0, 30.0, 40.0])
    lamp = np.full(5, 100.0)
    fp, off, prof, bin_start, bin_src = prepare_scene(120, 160, lx, ly, lamp, np.array([1.5]),
                                                      np.array([0, 5]), BIN_PX)
    assert (np.diff(off) >= 0).all()
    assert np.array_equal(np.diff(off)[:4], [0, 0, 0, 0])  # the four off-frame sources
    assert np.diff(off)[4] == 2 * (2 * 6 + 2)  # the one inside: 14 columns + 14 rows
    assert prof.shape[0] == off[-1]
    assert set(bin_src.tolist()) == {4}


def run_loop(render, seed, size_px, n, frames):
    """The records of ``frames`` loop steps and the loop's tracker."""
    lab = open_lab(seed=seed, overrides={"camera.render": render, "camera.width_px": size_px,
                                         "camera.height_px": size_px, "particles.count": n})
    loop = FeedbackLoop(lab, keep_images=False)
    loop.warm_up()
    out = [loop.step() for _ in range(frames)]
    tracker = loop.tracker
    loop.close()
    lab.close()
    return out, tracker


def test_lazy_loop_tracks_exactly_as_full_and_renders_less():
    full, _ = run_loop("full", 2, 256, 8, 40)
    lazy, tracker = run_loop("lazy", 2, 256, 8, 40)
    assert tracker.escapes == 0
    assert tracker.whole_frames == 0  # a sparse field: only what the tracker reads
    for a, b in zip(full, lazy):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.positions_um, b.positions_um)


def test_lazy_renders_a_dense_field_whole_with_the_same_tracks():
    """Where the tracker's windows cover most of the frame the lazy tier renders it whole (the
    whole-frame kernel costs less per pixel); the tracks stay those of ``full``."""
    full, _ = run_loop("full", 3, 128, 30, 20)
    lazy, tracker = run_loop("lazy", 3, 128, 30, 20)
    assert tracker.whole_frames >= 15  # every frame but the tracker's own full-frame acquisitions
    for a, b in zip(full, lazy):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.positions_um, b.positions_um)


def test_lazy_tracker_renders_the_scan_band_before_the_tracker_reads_it():
    """The rows the tracker's rotating scan reads for new particles (and one more each side for
    its local-maximum test) are rendered before it reads them, frame after frame, and the
    tracks are those of ``full``."""
    from cybloid.sim.lazy import LazyFrameTracker
    from cybloid.tracking.fast import FastTracker

    def run(render):
        lab = open_lab(seed=3, overrides={"camera.render": render, "camera.width_px": 200, "camera.height_px": 200,
                                          "particles.count": 3},
                       initial_positions_um=np.array([[8.0, 8.0], [30.0, 10.0], [20.0, 20.0]]))
        tr = FastTracker.for_profile(lab.profile, scan_frames=4)
        # never whole for density: these small fields test what a request renders
        tr = LazyFrameTracker(tr, whole_frame_above=np.inf) if render == "lazy" else tr
        found, bands = [], 0
        for f in range(12):
            frame = lab.camera.grab()
            if render == "lazy" and tr._started:
                r0, r1 = tr._scan_rows(200)
            tracks = tr.update(frame.image, f)
            if render == "lazy" and f >= 1:
                assert not frame.image.complete
                assert (frame.image._state[max(r0 - 1, 0):min(r1 + 1, 200)] == 2).all()
                bands += 1
            found.append(tracks.xy_px.copy())
        lab.close()
        return found, bands

    (full, _), (lazy, bands) = run("full"), run("lazy")
    assert bands == 11
    for a, b in zip(full, lazy):
        np.testing.assert_array_equal(a, b)


def test_lazy_tracker_renders_the_whole_frame_for_a_background_measurement_without_schedule():
    """With no scheduled re-acquisition (``reacquire_every=0``), a flooded edge watch makes the
    tracker measure the background again on the next frame from every pixel: the lazy tier
    renders the whole frame for it (not only the windows), and the tracks stay those of ``full``."""
    from cybloid.sim.lazy import LazyFrameTracker
    from cybloid.tracking.fast import FastTracker

    def run(render):
        lab = open_lab(seed=4, overrides={"camera.render": render, "camera.width_px": 160, "camera.height_px": 160,
                                          "particles.count": 5})
        tr = FastTracker.for_profile(lab.profile, reacquire_every=0)
        # never whole for density: these small fields test what a request renders
        tr = LazyFrameTracker(tr, whole_frame_above=np.inf) if render == "lazy" else tr
        inner = tr.inner if render == "lazy" else tr
        found, complete = [], []
        for f in range(8):
            if f == 4:
                inner._flooded()
                assert inner.acquisition_due
            frame = lab.camera.grab()
            found.append(tr.update(frame.image, f).xy_px.copy())
            if render == "lazy":
                complete.append(frame.image.complete)
        lab.close()
        return found, complete

    (full, _), (lazy, complete) = run("full"), run("lazy")
    assert complete[0] and complete[4]  # the first acquisition and the background measurement
    assert not complete[5]  # and back to windows after it
    for a, b in zip(full, lazy):
        np.testing.assert_array_equal(a, b)


def test_lazy_tracker_renders_the_rows_of_a_spread_scheduled_acquisition():
    """A scheduled acquisition spread over four frames: the first band's frame is rendered whole
    (the background is measured on every pixel), the next three only where the tracker reads
    (their band of rows among them), and the tracks are those of ``full`` throughout."""
    from cybloid.sim.lazy import LazyFrameTracker
    from cybloid.tracking.fast import FastTracker
    from cybloid.tracking.locate import rows_read

    def run(render):
        lab = open_lab(seed=5, overrides={"camera.render": render, "camera.width_px": 160, "camera.height_px": 160,
                                          "particles.count": 6})
        tr = FastTracker.for_profile(lab.profile, reacquire_every=5, acquisition_bands=4)
        # never whole for density: these small fields test what a request renders
        tr = LazyFrameTracker(tr, whole_frame_above=np.inf) if render == "lazy" else tr
        inner = tr.inner if render == "lazy" else tr
        found, complete, kinds, read = [], [], [], []
        for f in range(14):
            frame = lab.camera.grab()
            rows = inner._band_rows(160)  # the band this frame detects in, if it is a band's frame
            found.append(tr.update(frame.image, f).xy_px.copy())
            kinds.append(inner.last_acquisition)
            if render == "lazy":
                complete.append(frame.image.complete)
                a, b = rows_read(inner._locate_params, *rows, 160)
                read.append(bool((frame.image._state[a:b] == 2).all()))
        lab.close()
        return found, complete, kinds, inner, read

    (full, _, kinds_full, _, _), (lazy, complete, kinds, inner, read) = run("full"), run("lazy")
    assert kinds == kinds_full
    bands = [f for f, k in enumerate(kinds) if k == "band"]
    assert len(bands) >= 4 and inner.band_acquisitions == len(bands) and inner.acquisitions == 1
    assert complete[0] and complete[bands[0]]  # the start; the first band measures the background
    assert not any(complete[f] for f in bands[1:4])  # the other bands: their rows only ...
    assert all(read[f] for f in bands)  # ... every row the band's detection reads rendered first
    for a, b in zip(full, lazy):
        np.testing.assert_array_equal(a, b)


def test_counter_based_pixels_follow_the_camera_noise_model():
    """Background-only pixels (table) and lit pixels (Poisson below 30 e-, normal limit above)."""
    from cybloid.sim.pixels import background_table, digitise_region, frame_key

    key = np.uint64(frame_key(9, 1))
    for lam_bg, signal in ((100.0, 0.0), (100.0, 50.0), (5.0, 0.0), (5.0, 3.0)):
        t = background_table(lam_bg, 3.0, 1.0, 4095)
        img = np.full((400, 400), signal, np.float32)
        out = np.empty(img.shape, np.uint16)
        digitise_region(img, 0, 0, 400, key, lam_bg, 3.0, 1.0, 4095.0, t.lut, t.thr, t.kmin, out)
        v = out.astype(float)
        lam = lam_bg + signal
        # an independent sampling of the model: Poisson (normal limit from 30 e-) + read noise,
        # rounded and clipped at 0
        ref_rng = np.random.default_rng(0)
        e = (ref_rng.poisson(lam, 400_000) if lam < 30 else ref_rng.normal(lam, np.sqrt(lam), 400_000))
        ref = np.clip(np.floor(e + ref_rng.normal(0, 3.0, e.size) + 0.5), 0, 4095)
        sd = np.sqrt(ref.var())
        assert v.mean() == pytest.approx(ref.mean(), abs=5 * sd * np.sqrt(1 / v.size + 1 / ref.size))
        assert v.var() == pytest.approx(ref.var(), rel=0.03)
        if lam >= 30:  # variance lam (shot) + read^2 + 1/12 (rounding)
            assert v.var() == pytest.approx(lam + 9.0 + 1 / 12, rel=0.02)
        # neighbouring pixels are uncorrelated
        assert abs(np.corrcoef(v[:, :-1].ravel(), v[:, 1:].ravel())[0, 1]) < 0.01


@pytest.mark.parametrize("lam, read_e, gain, maxval", [(100.0, 3.0, 1.0, 4095), (5.0, 2.0, 1.0, 4095),
                                                       (100.0, 3.0, 2.5, 255), (2000.0, 3.0, 1.0, 2047)])
def test_background_pixels_have_the_closed_form_distribution(lam, read_e, gain, maxval):
    """Background-only pixels (a 16-bit chunk of a quad's 64-bit hash, table look-up) against the
    model's distribution computed here: Poisson (normal limit N(lam, lam + read^2) from 30 e-)
    plus normal read noise, times the gain, rounded, clipped to [0, maxval] (saturation: the
    last two cases clip at maxval with probability 0.43 and 0.15)."""
    from scipy import stats

    from cybloid.sim.pixels import background_table, digitise_region, frame_key

    t = background_table(lam, read_e, gain, maxval)
    img = np.zeros((300, 400), np.float32)
    out = np.empty(img.shape, np.uint16)
    digitise_region(img, 7, 3, 411, np.uint64(frame_key(21, 2)), lam, read_e, gain, float(maxval), t.lut, t.thr,
                    t.kmin, out)
    k = np.arange(0, maxval + 1)
    hi = (k + 0.5) / gain  # ADU <= k  <=>  e < (k + 1/2) / g
    if lam >= 30:
        cdf = stats.norm.cdf(hi, lam, np.sqrt(lam + read_e**2))
    else:
        n = np.arange(0, 80)
        cdf = (stats.poisson.pmf(n, lam)[None, :] * stats.norm.cdf((hi[:, None] - n[None, :]) / read_e)).sum(axis=1)
    cdf[-1] = 1.0
    pmf = np.diff(np.concatenate([[0.0], cdf]))
    counts = np.bincount(out.ravel(), minlength=maxval + 1)[:maxval + 1]
    assert counts.sum() == out.size
    expected = pmf * out.size
    # pool the sparse tails so every cell expects >= 20
    keep = expected >= 20
    obs = np.concatenate([counts[keep], [counts[~keep].sum()]])
    exp = np.concatenate([expected[keep], [expected[~keep].sum()]])
    if exp[-1] < 20:
        obs, exp = obs[:-1], exp[:-1]
        obs[-1] += counts[~keep].sum()
        exp[-1] += expected[~keep].sum()
    assert stats.chisquare(obs, exp).pvalue > 1e-4
    if maxval == 255:  # saturation: P(ADU = maxval) = P(g e >= maxval - 1/2)
        p = stats.norm.sf(254.5 / gain, lam, np.sqrt(lam + read_e**2))
        assert counts[-1] / out.size == pytest.approx(p, abs=5 * np.sqrt(p / out.size))
    # neighbouring pixels (chunks of one quad's hash, and across quads) are uncorrelated
    v = out.astype(float)
    if v.std() > 0:
        assert abs(np.corrcoef(v[:, :-1].ravel(), v[:, 1:].ravel())[0, 1]) < 0.012
        assert abs(np.corrcoef(v[:-1].ravel(), v[1:].ravel())[0, 1]) < 0.012


def test_lit_pixels_saturate_and_scale_with_the_gain():
    """Lit pixels (their own 64-bit hash, ziggurat normal): mean gain * lam and variance
    gain^2 (lam + read^2) + 1/12 in the normal limit; clipped at maxval."""
    from scipy import stats

    from cybloid.sim.pixels import background_table, digitise_region, frame_key

    lam_bg, sig, read_e = 100.0, 900.0, 3.0
    for gain, maxval in ((2.0, 4095), (1.0, 1050)):
        t = background_table(lam_bg, read_e, gain, maxval)
        img = np.full((300, 300), sig, np.float32)
        out = np.empty(img.shape, np.uint16)
        digitise_region(img, 0, 1, 301, np.uint64(frame_key(3, 9)), lam_bg, read_e, gain, float(maxval), t.lut, t.thr,
                        t.kmin, out)
        v = out.astype(float)
        lam = lam_bg + sig
        s = gain * np.sqrt(lam + read_e**2)
        if maxval == 4095:
            assert v.mean() == pytest.approx(gain * lam, abs=5 * s / np.sqrt(v.size))
            assert v.var() == pytest.approx(s**2 + 1 / 12, rel=5 * np.sqrt(2 / v.size))
        else:  # P(ADU = maxval) = P(g e >= maxval - 1/2)
            p = stats.norm.sf(maxval - 0.5, gain * lam, s)
            assert v.max() == maxval
            assert np.mean(v == maxval) == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / v.size))


def test_measurement_model_noise_and_border_misses():
    """render = none: measured = exposure-averaged truth + the tracker's measured precision;
    a particle centred on the image edge is missed about half the time (0.43)."""
    from cybloid.sim.measure import measured_precision_px, photon_limited_precision_px

    prof = load_lab_profile()
    prec = measured_precision_px(prof)
    # the tracker is close to the photon limit of the default camera (about 0.013 px)
    assert 0.9 < prec / photon_limited_precision_px(prof) < 1.5
    inside = [(10.0 + 8 * i, 10.0 + 8 * j) for i in range(5) for j in range(5)]
    edge = [(0.0, 8.0 + 4 * k) for k in range(10)]  # centres on the left edge
    lab = open_lab(seed=3, overrides={"camera.render": "none", "camera.width_px": 256, "camera.height_px": 256},
                   initial_positions_um=np.array(inside + edge))
    lab.world.diffusion = 0.0
    loop = FeedbackLoop(lab, keep_images=False)
    loop.warm_up()
    errs, seen_edge = [], []
    for _ in range(200):
        r = loop.step()
        assert r.image is None
        ok = (r.quality & 2) == 0  # not LOST
        truth = lab.camera.last_truth["positions_um"]
        errs.append((r.positions_um[ok] - truth[r.ids[ok]])[r.ids[ok] < 25])
        seen_edge.append(np.sum(ok & (r.ids >= 25)))
    loop.close()
    lab.close()
    e = np.concatenate(errs) / prof.camera.pixel_size_um
    assert np.sqrt(np.mean(e**2)) == pytest.approx(prec, rel=0.05)
    assert abs(np.mean(e)) < 3 * prec / np.sqrt(e.size)
    # seen with the probability of the fraction of the image on the sensor (edge at -0.5 px)
    from scipy.special import ndtr

    sigma_px = lab.camera.sigma_px
    assert np.mean(seen_edge) / 10 == pytest.approx(1 - ndtr(-0.5 / sigma_px), abs=0.05)


def test_integration_does_not_depend_on_how_it_is_cut():
    """Counter-based thermal noise: with one tick a step (``step = "fixed"``) the same ticks give
    the same path in one call or many (the coarse step ends at the end of each call)."""
    prof = load_lab_profile().with_overrides({"particles.count": 50, "simulation.step": "fixed"})
    a = SimWorld(prof, seed=8)
    b = SimWorld(prof, seed=8)
    a.advance_to(300)
    for t in (1, 2, 50, 51, 177, 300):
        b.advance_to(t)
    np.testing.assert_array_equal(a.pos, b.pos)
    # with laser spots (their neighbour lists are kept across calls) and a table change between
    for w in (a, b):
        w.laser_on = True
        w.schedule_spots(350, w.positions_fov_um()[:20] + [0.9, 0.0], np.full(20, 0.05))
        w.schedule_spots(420, w.positions_fov_um()[10:30] - [0.0, 0.7], np.full(20, 0.05))
    a.advance_to(600)
    for t in (301, 349, 351, 352, 400, 419, 421, 599, 600):
        b.advance_to(t)
    assert np.any(a.spot_force_sum != 0)
    np.testing.assert_array_equal(a.pos, b.pos)


@pytest.mark.slow
def test_ten_thousand_hard_spheres_never_overlap():
    prof = load_lab_profile().with_overrides({"particles.count": 10_000, "camera.width_px": 2048,
                                              "camera.height_px": 2048, "particles.min_spacing_um": 2.0,
                                              "camera.render": "none"})
    w = SimWorld(prof, seed=1)  # area fraction 0.75 * pi / 4... = 0.30: a dense fluid
    d0, _ = cKDTree(w.pos).query(w.pos, k=2)
    assert d0[:, 1].min() >= 2.0
    p0 = w.pos.copy()
    w.advance_to(w.ticks(0.2))
    d, _ = cKDTree(w.pos).query(w.pos, k=2)
    assert d[:, 1].min() > 0.97 * prof.particles.diameter_um
    # they moved (not frozen by the overlap resolution): MSD of a dense hard-disc fluid
    # at short times is below but near 4 D t
    msd = np.mean(np.sum((w.pos - p0) ** 2, axis=1))
    assert 0.5 * 4 * prof.diffusion * 0.2 < msd < 1.05 * 4 * prof.diffusion * 0.2


@pytest.mark.slow
@pytest.mark.parametrize("render", ["full", "none"])
def test_free_diffusion_with_exposure_blur(render):
    """MSD of tracked positions at lag T: 4 D (T - c t_e) + 4 sigma_loc^2 in 2D: the exposure
    t_e averages the position (Savin & Doyle 2005: c = 1/3 for a continuous average; the camera
    averages ``blur_samples`` sub-exposure positions at t_i, c t_e = mean |t_i - t_j|)."""
    from cybloid.sim.measure import measured_precision_px

    over = {"camera.render": render, "camera.width_px": 256, "camera.height_px": 256, "particles.count": 25,
            "particles.min_spacing_um": 8.0, "simulation.hard_core": False, "camera.exposure_s": 0.008}
    lab = open_lab(seed=6, overrides=over)
    loop = FeedbackLoop(lab, keep_images=False)
    loop.warm_up()
    T = lab.frame_period_s
    n = 600
    xy = np.full((n, 25, 2), np.nan)
    for f in range(n):
        r = loop.step()
        ok = (r.quality & 2) == 0
        # identities of the real tracker are its own: map each to the nearest true particle
        truth = lab.camera.last_truth["positions_um"]
        k = cKDTree(truth).query(r.positions_um[ok])[1]
        xy[f, k] = r.positions_um[ok]
    prof = lab.profile
    loop.close()
    lab.close()
    D, te = prof.diffusion, prof.camera.exposure_s
    sig = measured_precision_px(prof) * prof.camera.pixel_size_um
    d = xy[1:] - xy[:-1]
    m1 = np.nanmean(np.sum(d**2, axis=2))
    nb = prof.camera.blur_samples
    ti = (np.arange(nb) + 0.5) * te / nb
    blur = np.mean(np.abs(ti[:, None] - ti[None, :]))  # 0.3125 t_e for 4 samples (1/3 continuous)
    expected = 4 * D * (T - blur) + 4 * sig**2
    assert m1 == pytest.approx(expected, rel=0.03)
    # and the blur is resolved: without it the MSD would be 4 D T, 25% higher
    assert abs(m1 / (4 * D * T) - 1) > 0.15


def test_ziggurat_normals_have_the_normal_distribution():
    """The thermal noise's normals (one hash each, ziggurat) against the closed-form normal:
    moments, tail probabilities (the wedges and the tail beyond r = 3.44 are the rare
    branches) and a Kolmogorov-Smirnov test."""
    import numba
    from scipy import stats

    from cybloid.sim.pixels import _GOLDEN, mix64, zig_normal

    @numba.njit
    def draw(n, key):
        out = np.empty(n)
        for i in range(n):
            out[i] = zig_normal(mix64(np.uint64(key) + np.uint64(i) * _GOLDEN))
        return out

    z = draw(2_000_000, 11)
    se = 1 / np.sqrt(z.size)
    assert abs(z.mean()) < 4 * se and abs(z.var() - 1) < 4 * np.sqrt(2) * se
    assert abs(stats.kurtosis(z)) < 4 * np.sqrt(24) * se
    for a in (1.0, 2.5, 3.44, 4.0):
        p = 2 * stats.norm.sf(a)
        assert abs(np.mean(np.abs(z) > a) - p) < 5 * np.sqrt(p / z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_harmonic_trap_finds_the_nearest_centre_like_brute_force():
    """The cell-list search of the nearest trap centre (no O(N M)) against a brute-force one."""
    from cybloid.forces.external import harmonic_nearest_centre

    rng = np.random.default_rng(3)
    for trial in range(60):
        n, m, cap = int(rng.integers(0, 50)), int(rng.integers(0, 30)), float(rng.uniform(0.5, 30))
        pos, c = rng.uniform(0, 50, (n, 2)), rng.uniform(0, 50, (m, 2))
        if m > 2:
            c[1] = c[0]  # a tie goes to the lower index
        usable = rng.random(n) < 0.8
        out = np.zeros((n, 2))
        harmonic_nearest_centre(pos, usable, c, 0.3, cap, out)
        ref = np.zeros((n, 2))
        for i in np.flatnonzero(usable):
            if m:
                d2 = ((pos[i] - c) ** 2).sum(axis=1)
                j = int(np.argmin(d2))
                if d2[j] <= cap * cap:
                    ref[i] = -0.3 * (pos[i] - c[j])
        np.testing.assert_array_equal(out, ref)
