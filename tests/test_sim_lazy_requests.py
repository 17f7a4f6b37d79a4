"""The ``lazy`` tier's kernel (cybloid.sim.pixels.render_requests): batches of overlapping
rectangles render exactly their union, each pixel once, with the values of the whole frame
(``render_rect``, the ``full`` tier's kernel)."""

import numpy as np
import pytest

from cybloid.sim.pixels import BIN_PX, RENDERED, background_table, frame_key, prepare_scene, render_rect, render_requests


def _scene(h, w, rng):
    """Two layers: 30 particles (sigma 2.7 px, some beside or across the edges) and 5 spots
    (sigma 1.1 px), amplitudes from faint to saturating."""
    lx = np.concatenate([rng.uniform(-15, w + 15, 30), rng.uniform(0, w, 5)])
    ly = np.concatenate([rng.uniform(-15, h + 15, 30), rng.uniform(0, h, 5)])
    lamp = np.concatenate([rng.uniform(0.5, 5000.0, 30), rng.uniform(10.0, 800.0, 5)])
    return prepare_scene(h, w, lx, ly, lamp, np.array([2.7, 1.1]), np.array([0, 30, 35], np.int64), BIN_PX)


@pytest.mark.parametrize("lam_bg, read_e", [(100.0, 3.0), (5.0, 2.0)])
def test_batches_of_rectangles_render_their_union_with_the_whole_frames_values(lam_bg, read_e):
    """Random rectangles (odd sizes and offsets, crossing strips and bins, overlapping, partly or
    wholly off the frame, empty) in five batches, on a frame whose width is not a multiple of the
    quads or bins; the faint background (5 e-) also sends lit pixels through the Poisson branch."""
    rng = np.random.default_rng(11)
    h, w = 150, 203
    scene = _scene(h, w, rng)
    t = background_table(lam_bg, read_e, 1.0, 4095)
    noise = (lam_bg, read_e, 1.0, 4095.0, t.lut, t.thr, t.kmin)
    key = np.uint64(frame_key(6, 42))
    whole = np.empty((h, w), np.uint16)
    render_rect(whole, 0, h, 0, w, h, w, *scene, BIN_PX, key, *noise)
    out = np.full((h, w), 7, np.uint16)
    state = np.zeros((h, w), np.uint8)
    union = np.zeros((h, w), bool)
    for batch in range(5):
        k = 12
        y0 = rng.integers(-20, h, k)
        x0 = rng.integers(-20, w, k)
        rects = np.stack([y0, y0 + rng.integers(-2, 60, k), x0, x0 + rng.integers(-2, 80, k)], axis=1)
        if batch == 4:  # one frame-wide band and one rectangle again
            rects = np.vstack([rects, [[40, 75, -5, w + 5]], rects[:1]])
        new = np.zeros((h, w), bool)
        for y_a, y_b, x_a, x_b in rects:
            new[max(y_a, 0):max(y_b, 0), max(x_a, 0):max(x_b, 0)] = True
        n = render_requests(out, state, np.ascontiguousarray(rects, np.int64), *scene, BIN_PX, key, *noise)
        assert n == int((new & ~union).sum())  # each pixel once
        union |= new
        assert np.array_equal(state == RENDERED, union)
        assert np.array_equal(out[union], whole[union])
        assert (out[~union] == 7).all()  # nothing outside the requests is touched
    # lit and background pixels were both rendered, and most of the frame was left alone
    signal = np.zeros((h, w), np.float32)
    from cybloid.sim.pixels import signal_rect

    signal_rect(signal, 0, 0, h, w, *scene, BIN_PX)
    assert (signal[union] > 0).sum() > 500 and (signal[union] == 0).sum() > 500
    assert 0.2 < union.mean() < 0.9
    # the same rectangles again: nothing left to render
    assert render_requests(out, state, np.ascontiguousarray(rects, np.int64), *scene, BIN_PX, key, *noise) == 0
