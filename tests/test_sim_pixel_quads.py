"""Camera pixels drawn four to a hash (cybloid.sim.pixels): any region, down to one pixel and
starting anywhere inside a quad, gets the whole frame's values, and the four pixels of a quad
are independent draws of the camera's noise model."""

import numpy as np
import pytest

from cybloid.sim.pixels import background_table, digitise_region, frame_key


def _digitise(img, y0, x0, width, key, t, lam_bg=100.0, read_e=3.0):
    out = np.empty(img.shape, np.uint16)
    digitise_region(np.ascontiguousarray(img), y0, x0, width, key, lam_bg, read_e, 1.0, 4095.0, t.lut, t.thr, t.kmin,
                    out)
    return out


def test_any_region_gets_the_whole_frames_pixels():
    """Regions of every width from 1 to 9 px at every offset within a quad, lit and background
    pixels mixed (and the Poisson branch of a faint lit pixel), against the whole frame."""
    rng = np.random.default_rng(5)
    H, W = 23, 41  # an odd width: the quads of the row-major index straddle rows
    img = np.where(rng.random((H, W)) < 0.4, rng.uniform(0.0, 900.0, (H, W)), 0.0).astype(np.float32)
    t = background_table(100.0, 3.0, 1.0, 4095)
    key = np.uint64(frame_key(3, 17))
    whole = _digitise(img, 0, 0, W, key, t)
    faint = background_table(5.0, 2.0, 1.0, 4095)  # lam < 30 on lit pixels too: Poisson inversion
    whole_faint = _digitise(img * 0.01, 0, 0, W, key, faint, 5.0, 2.0)
    for y0 in (0, 7):
        for x0 in range(0, 8):
            for w in range(1, 10):
                for h in (1, 3):
                    part = _digitise(img[y0:y0 + h, x0:x0 + w], y0, x0, W, key, t)
                    assert np.array_equal(part, whole[y0:y0 + h, x0:x0 + w])
                    part = _digitise(img[y0:y0 + h, x0:x0 + w] * 0.01, y0, x0, W, key, faint, 5.0, 2.0)
                    assert np.array_equal(part, whole_faint[y0:y0 + h, x0:x0 + w])
    # both kinds of pixel were exercised, and the key matters
    assert (img > 0).any() and (img == 0).any()
    assert not np.array_equal(whole, _digitise(img, 0, 0, W, np.uint64(frame_key(3, 18)), t))


@pytest.mark.parametrize("signal", [0.0, 300.0])
def test_the_four_pixels_of_a_quad_are_uncorrelated(signal):
    """Background pixels (16-bit chunks of one hash) and lit ones (their own hash of it): the
    correlation of pixels 1, 2 and 3 apart in a row (inside one quad or across two) is zero
    within its sampling error, and so is that of a pixel with the next quad's."""
    t = background_table(100.0, 3.0, 1.0, 4095)
    img = np.full((400, 1024), signal, np.float32)
    v = _digitise(img, 0, 0, 1024, np.uint64(frame_key(8, 2)), t).astype(float)
    se = 1 / np.sqrt(v.size)
    for lag in (1, 2, 3, 4):
        r = np.corrcoef(v[:, :-lag].ravel(), v[:, lag:].ravel())[0, 1]
        assert abs(r) < 5 * se, (lag, r)
    # the mean and variance of the model (normal limit: lam + read^2 + 1/12 for the rounding)
    lam = 100.0 + signal
    assert v.mean() == pytest.approx(lam, abs=5 * np.sqrt((lam + 9) / v.size))
    assert v.var() == pytest.approx(lam + 9.0 + 1 / 12, rel=5 * np.sqrt(2 / v.size))
