"""Incremental detection in the loop's tracker: particles appearing inside the image (coming
into focus, entering the field) are found by the rotating scan band within a bounded number of
frames, without a full detection."""

import numpy as np
import pytest

from cybloid.tracking import FLAG_LOST, FastTracker

SIGMA = 2.0
SHAPE = (128, 160)


def frame(xy, amp, rng):
    """Gaussian spots of width SIGMA on a background of 100 with noise of standard deviation 4."""
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    img = 100.0 + rng.normal(0.0, 4.0, SHAPE)
    for (x, y), a in zip(xy, amp):
        if a > 0:
            img += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA**2))
    return np.clip(img, 0, 65535).astype(np.uint16)


def stream(n_frames, seed=1):
    """Six particles from the start; four appear inside the image later (frames 4, 9, 15 at full
    brightness, one coming into focus over frames 6..10); returns frames, truth and the frame
    from which each particle is fully visible."""
    rng = np.random.default_rng(seed)
    xy = np.array([[20.0, 20.0], [60.0, 25.0], [120.0, 30.0], [30.0, 100.0], [90.0, 95.0], [140.0, 105.0],
                   [80.0, 60.0], [40.0, 62.0], [125.0, 70.0], [100.0, 20.0]])
    start = np.array([0, 0, 0, 0, 0, 0, 4, 9, 15, 10])
    frames, truth = [], []
    for k in range(n_frames):
        xy = xy + rng.normal(0.0, 0.15, xy.shape)  # slow Brownian motion
        amp = np.where(start <= k, 1500.0, 0.0)
        amp[9] = 1500.0 * np.clip((k - 6) / 4.0, 0.0, 1.0)  # into focus over four frames
        frames.append(frame(xy, amp, rng))
        truth.append(xy.copy())
    return frames, truth, start


def found_at(tracks, xy, max_px=1.0):
    ok = (tracks.flags & FLAG_LOST) == 0
    if not ok.any():
        return False
    return bool(np.min(np.hypot(*(tracks.xy_px[ok] - xy).T)) < max_px)


def first_found(scan_frames):
    frames, truth, start = stream(40)
    t = FastTracker(diameter_px=9, minmass=3000.0, sigma_px=SIGMA, background=100.0, reacquire_every=0,
                    scan_frames=scan_frames)
    first = np.full(len(start), -1)
    for k, img in enumerate(frames):
        tr = t.update(img, k)
        for p in range(len(start)):
            if first[p] < 0 and found_at(tr, truth[k][p]):
                first[p] = k
    return first, start, t


@pytest.mark.parametrize("scan_frames", [5, 8])
def test_new_particles_are_found_within_the_scan_period(scan_frames):
    first, start, t = first_found(scan_frames)
    assert (first[:6] == 0).all()
    assert (first >= 0).all(), first
    # found at most scan_frames frames after it is fully visible (the one coming into focus may
    # be found before it is fully bright; the others cannot be found before they appear)
    delay = first - start
    assert (delay[6:9] >= 0).all() and (delay <= scan_frames).all(), delay
    assert t.acquisitions == 1  # only the start: no full detection found them


def test_without_the_scan_appearing_particles_wait_for_a_full_detection():
    first, start, t = first_found(0)
    assert (first[:6] == 0).all()
    assert (first[6:] < 0).all(), first  # reacquire_every=0: nothing else looks
    assert t.acquisitions == 1


def test_scan_band_covers_every_row_once_per_period():
    t = FastTracker(diameter_px=9, scan_frames=7)
    seen = np.zeros(100, int)
    for _ in range(7):
        r0, r1 = t._scan_band(100)
        seen[r0:r1] += 1
    assert (seen >= 1).all()
    assert t._scan_band(100)[0] == 0  # the band starts again at the top
    with pytest.raises(ValueError, match="scan_frames"):
        FastTracker(diameter_px=9, scan_frames=-1)


@pytest.mark.parametrize("steady", [True, False])
def test_background_jump_is_remeasured_not_tracked_as_new_particles(steady):
    """A camera's gain rising fourfold lifts the whole background above the edge watch's threshold:
    the flooded edge watch adds nothing, the next frame measures the background again, and the
    same six particles keep their identities (no identities for noise maxima)."""
    rng = np.random.default_rng(4)
    xy = np.array([[20.0, 20.0], [60.0, 25.0], [120.0, 30.0], [30.0, 100.0], [90.0, 95.0], [140.0, 105.0]])
    amp = np.full(len(xy), 600.0)
    tr = FastTracker(diameter_px=9, minmass=2000.0, sigma_px=SIGMA)
    tr.steady_path = steady
    for i in range(30):
        gain = 4.0 if i >= 10 else 1.0
        img = np.clip(frame(xy + rng.normal(0.0, 0.3, xy.shape), amp, rng).astype(float) * gain, 0, 65535)
        tracks = tr.update(img.astype(np.uint16), i)
        if i == 10:
            assert tr._background_suspect and len(tracks) == 6  # flooded: nothing added
        if i == 11:
            assert tr.last_acquisition == "schedule" and abs(tr.background - 400.0) < 20.0
    found = (tracks.flags & FLAG_LOST) == 0
    assert found.sum() == 6 and tr._next_id == 6 and sorted(tracks.ids[found]) == list(range(6))


@pytest.mark.parametrize("bands", [1, 4])
def test_scheduled_acquisition_spread_over_frames_finds_what_the_whole_frame_finds(bands):
    """With the scan band and edge watch off, only the scheduled acquisition can find particles
    that appear inside the image. Spread over four frames (a band of rows each, the whole frame
    covered) it finds the same particles, within the four frames, without a whole-frame
    detection; in one frame (``acquisition_bands=1``) it is one whole-frame detection."""
    frames, truth, start = stream(40, seed=3)
    t = FastTracker(diameter_px=9, minmass=3000.0, sigma_px=SIGMA, background=100.0, reacquire_every=20,
                    scan_frames=0, edge_watch=False, acquisition_bands=bands)
    first = np.full(len(start), -1)
    kinds = {}
    for k, img in enumerate(frames):
        tr = t.update(img, k)
        kinds[k] = t.last_acquisition
        for p in range(len(start)):
            if first[p] < 0 and found_at(tr, truth[k][p]):
                first[p] = k
    assert (first[:6] == 0).all()
    # the four that appeared (frames 4..15) wait for the schedule: 20 frames after the start's,
    # frame 21, or one of 21..24
    late = first[6:]
    assert (late >= 21).all() and (late <= 21 + bands - 1).all(), first
    if bands == 1:
        assert t.acquisitions == 1 + 1 and t.band_acquisitions == 0  # the start, the schedule
        assert kinds[21] == "schedule"
    else:
        assert t.acquisitions == 1 and t.band_acquisitions == 4  # only the start was whole-frame
        assert [kinds[k] for k in range(21, 25)] == ["band"] * 4 and kinds[25] is None
    ids = tr.ids[(tr.flags & FLAG_LOST) == 0]
    assert len(ids) == len(set(ids.tolist())) == 10  # one identity each, no duplicates


def test_acquisition_bands_must_be_a_positive_integer():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="acquisition_bands"):
            FastTracker(diameter_px=9, acquisition_bands=bad)


@pytest.mark.parametrize("keep", [0.5, 1.0])
def test_mass_threshold_hysteresis_keeps_a_dimmed_particle_and_ignores_a_dim_new_one(keep):
    """A tracked particle dimming to 0.63 of ``minmass`` stays found under the same identity with
    ``keep_fraction=0.5`` (and is lost with 1.0, no hysteresis); a new particle at that mass is
    never taken up either way: new particles need all of ``minmass``."""
    rng = np.random.default_rng(7)
    xy = np.array([[40.0, 40.0], [110.0, 90.0]])
    mass_per_amp = 2 * np.pi * SIGMA**2
    t = FastTracker(diameter_px=9, minmass=20000.0, sigma_px=SIGMA, background=100.0, keep_fraction=keep)
    for k in range(15):
        dim = 500.0  # mass 12 600: 0.63 of minmass
        amp = np.array([1500.0 if k < 5 else dim, 0.0 if k < 5 else dim])
        assert amp[0] * mass_per_amp > 20000 or k >= 5
        tr = t.update(frame(xy + rng.normal(0.0, 0.05, xy.shape), amp, rng), k)
    found = (tr.flags & FLAG_LOST) == 0
    near_first = found & (np.hypot(*(tr.xy_px - xy[0]).T) < 1.0)
    if keep == 0.5:
        assert near_first.sum() == 1 and tr.ids[near_first][0] == 0  # the same identity throughout
    else:
        assert near_first.sum() == 0  # lost as soon as it dimmed
    assert not (found & (np.hypot(*(tr.xy_px - xy[1]).T) < 1.0)).any()  # the dim newcomer: never
    assert t._next_id == 1


def test_keep_fraction_must_be_in_zero_one():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="keep_fraction"):
            FastTracker(diameter_px=9, keep_fraction=bad)
