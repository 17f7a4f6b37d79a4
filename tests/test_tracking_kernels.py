"""The compiled locate's kernels against trackpy's own building blocks, and its reused buffers."""

import numpy as np
import pytest

from cybloid.tracking import locate_kernels as K
from cybloid.tracking.locate import LocateParams, Prepared, locate, locate_array, locate_rows

tp = pytest.importorskip("trackpy")


def spots(shape=(96, 120), n=25, seed=3, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = 200.0 + 20.0 * xx / shape[1] + rng.normal(0, 6, shape)
    for x, y in rng.uniform([4, 4], [shape[1] - 4, shape[0] - 4], (n, 2)):
        img += 900.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.8**2))
    return img.astype(dtype) if dtype != np.float64 else img / img.max()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_bandpass_is_trackpys(dtype):
    img = spots(dtype=dtype)
    if dtype == np.uint8:
        img = (spots(dtype=np.float64) * 255).astype(np.uint8)
    is_int = dtype != np.float64
    thr = 1.0 if is_int else 1 / 255.0
    ref = tp.preprocessing.bandpass(img, 1, 11, thr)
    out = np.empty(img.shape)
    vmax = K.bandpass(np.ascontiguousarray(img), 0, img.shape[0], K.gauss_taps(1.0), 11, thr, is_int, out)
    if is_int:  # integer boxcar: exact integer sums here, SciPy's float running sum there
        assert np.mean(out == ref) > 0.999 and np.abs(out - ref).max() <= 1.0
    else:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    assert vmax == out.max()
    # a band of rows is the same rows of the whole image (float boxcar sums started elsewhere
    # round differently in the last bit)
    band = np.empty((30, img.shape[1]))
    K.bandpass(np.ascontiguousarray(img), 40, 70, K.gauss_taps(1.0), 11, thr, is_int, band)
    np.testing.assert_allclose(band, out[40:70], rtol=0, atol=0 if is_int else 1e-12)


def test_maxima_and_noise_mask_match_scipy_definitions():
    from scipy import ndimage

    img = Prepared(spots(), LocateParams(9), keep=True).img
    thr = 40.0
    box = 8
    dil = ndimage.grey_dilation(img, (box, box), mode="constant")
    ref = np.argwhere((img == dil) & (img > thr))
    ref = ref[(ref[:, 1] >= 5) & (ref[:, 1] < img.shape[1] - 5)]
    got = K.maxima(img, thr, box, 5, 0, img.shape[0], 0)
    np.testing.assert_array_equal(got, ref)
    raw = spots()
    mask = ndimage.binary_dilation(img != 0, structure=np.hypot(*np.mgrid[-4:5, -4:5]) <= 4)
    mean, std = K.noise(img, raw, 4)
    assert mean == pytest.approx(raw[~mask].mean(), rel=1e-12)
    assert std == pytest.approx(raw[~mask].std(), rel=1e-9)


def test_reused_buffers_do_not_leak_between_frames():
    a, b = spots(seed=1), spots(seed=2)
    p = LocateParams(9, minmass=100)
    ra = locate_array(a, p)
    kept = Prepared(a, p, keep=True)
    locate_array(b, p)  # overwrites the per-thread buffers
    np.testing.assert_array_equal(locate_array(a, p), ra)
    np.testing.assert_array_equal(locate_array(a, p, kept), ra)
    # the band detection of the tracker sees the same features in its rows
    rows = locate_rows(a, p, 30, 60, kept.scale)
    full = ra[(ra[:, 0] >= 29.5) & (ra[:, 0] < 60.5)]
    inner = full[(full[:, 0] > 33) & (full[:, 0] < 57)]
    for y, x in inner[:, :2]:
        assert np.min(np.hypot(rows[:, 0] - y, rows[:, 1] - x)) < 1e-9
    df = locate(a, 9, minmass=100)
    np.testing.assert_array_equal(df[["y", "x"]].to_numpy(), ra[:, :2])


def test_refine_centroid_window_stays_inside_a_band_of_rows():
    """Regression: in a band of rows (``roff`` > 0, as the tracker's incremental detection passes
    it) a window walking up towards brighter pixels above the band stops at the band's first row;
    it was clamped only at the image's first row and read before the start of the band's buffer."""
    roff, radius = 50, 3
    rows = np.arange(roff, roff + 20)[:, None]
    band = np.repeat((1000 - 10 * (rows - roff)).astype(np.int64), 30, axis=1)  # brighter upwards
    coords = np.array([[roff + radius, 15]], np.int64)
    res, corner = K.refine_centroid(band, roff, radius, coords, 10, 0.6)
    assert corner[0, 0] == roff  # the window's first row is the band's first row, not above it
    assert np.isfinite(res).all() and roff <= res[0, 0] <= roff + 2 * radius and res[0, 2] > 0
