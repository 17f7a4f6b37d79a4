"""The tracker's background estimate: the histogram path for integer images gives the values of
the NumPy medians, value for value, on frames that exercise its corners."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybloid.tracking.background import estimate_background, estimate_background_numpy


def _frame(rng, shape, dtype, background, noise, spots=0, saturate=None):
    img = rng.normal(background, noise, shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for _ in range(spots):
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        img += rng.uniform(200, 3000) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
    info = np.iinfo(dtype)
    img = np.clip(np.rint(img), info.min, info.max if saturate is None else saturate)
    return img.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
@pytest.mark.parametrize("seed", range(6))
def test_integer_frames_give_the_numpy_medians(dtype, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(5, 160, 2))
    bg = 20 if dtype == np.uint8 else 400
    img = _frame(rng, shape, dtype, bg, rng.uniform(0.3, 12), spots=int(rng.integers(0, 30)),
                 saturate=(bg + 40 if seed == 3 else None))
    assert estimate_background(img) == estimate_background_numpy(img)


def test_the_camera_frame_gives_the_numpy_medians():
    from cybloid.lab import open_lab

    lab = open_lab(seed=2, overrides={"camera.width_px": 256, "camera.height_px": 256, "particles.count": 60})
    try:
        img = np.asarray(lab.camera.grab().image)
    finally:
        lab.close()
    assert img.dtype.kind == "u"
    med, mad = estimate_background(img)
    assert (med, mad) == estimate_background_numpy(img)
    # the default lab's background: 100 photons at gain 1 plus read noise, well under the spots
    assert 50 < med < 200 and 1 < mad < 40


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.integers(0, 6))
def test_any_small_integer_frame_gives_the_numpy_medians(seed, h, w, levels_log2):
    """Tiny frames (fewer than 16 values: no clipping), few levels (ties, even counts, half-integer
    medians), constant frames."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 2 ** levels_log2, (h, w)).astype(np.uint16) + 7
    assert estimate_background(img) == estimate_background_numpy(img)


def test_float_and_wide_frames_take_the_numpy_path():
    rng = np.random.default_rng(0)
    f = rng.normal(100, 3, (64, 64)).astype(np.float32)
    assert estimate_background(f) == estimate_background_numpy(f)
    wide = rng.integers(-2**30, 2**30, (32, 32)).astype(np.int64)
    assert estimate_background(wide) == estimate_background_numpy(wide)
