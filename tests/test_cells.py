"""The shared cell list (cybloid.cells) against brute-force distance checks."""

from __future__ import annotations

import numpy as np
import pytest

from cybloid import cells as C


def _brute_pairs(pos, usable, cutoff, box=None, periodic=False):
    n = len(pos)
    d = pos[:, None, :] - pos[None, :, :]
    if periodic:
        lx = box[2] - box[0]
        ly = box[3] - box[1]
        d[..., 0] -= lx * np.round(d[..., 0] / lx)
        d[..., 1] -= ly * np.round(d[..., 1] / ly)
    r2 = (d ** 2).sum(-1)
    i, j = np.nonzero((r2 < cutoff ** 2) & np.triu(np.ones((n, n), bool), 1))
    keep = usable[i] & usable[j]
    return {(int(a), int(b)) for a, b in zip(i[keep], j[keep])}


def _as_set(pi, pj, cnt):
    return {(int(min(a, b)), int(max(a, b))) for a, b in zip(pi[:cnt], pj[:cnt])}


@pytest.mark.parametrize("n, spread, cutoff", [(0, 10.0, 1.0), (1, 10.0, 1.0), (60, 10.0, 1.5),
                                               (400, 50.0, 2.0), (50, 1.0, 5.0), (300, 1000.0, 0.3)])
def test_pair_list_matches_brute_force(n, spread, cutoff):
    rng = np.random.default_rng(n)
    pos = rng.uniform(-spread, spread, (n, 2))
    usable = rng.random(n) > 0.2
    pi, pj, cnt = C.pair_list(pos, usable, cutoff)
    got = _as_set(pi, pj, cnt)
    assert cnt == len(got)  # each pair once
    assert got == _brute_pairs(pos, usable, cutoff)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("lx, ly, cutoff", [(20.0, 20.0, 1.7), (20.0, 5.0, 2.4), (3.0, 3.0, 1.6),
                                            (2.0, 9.0, 2.0), (10.0, 10.0, 12.0)])
def test_pair_list_box_matches_brute_force(periodic, lx, ly, cutoff):
    # tiny periodic grids (one or two cells across) must neither miss nor double pairs
    rng = np.random.default_rng(int(lx * 10 + ly))
    box = np.array([-1.0, 2.0, -1.0 + lx, 2.0 + ly])
    pos = np.column_stack([rng.uniform(box[0], box[2], 150), rng.uniform(box[1], box[3], 150)])
    pi, pj, cnt = C.pair_list_box(pos, box, cutoff, periodic)
    got = _as_set(pi, pj, cnt)
    assert cnt == len(got)
    assert np.all(pi[:cnt] < pj[:cnt])
    assert got == _brute_pairs(pos, np.ones(len(pos), bool), cutoff, box, periodic)


def test_periodic_grid_tiles_box_with_cells_no_narrower_than_cutoff():
    x0, y0, wx, wy, ncx, ncy = C.grid_for_box(np.array([0.0, 0.0, 10.0, 7.0]), 3.0, True)
    assert (ncx, ncy) == (3, 2)
    assert wx * ncx == pytest.approx(10.0) and wy * ncy == pytest.approx(7.0)
    assert wx >= 3.0 and wy >= 3.0


def test_neighbour_list_is_symmetric_and_complete():
    rng = np.random.default_rng(3)
    pos = rng.uniform(0, 20, (200, 2))
    usable = np.ones(200, bool)
    usable[::7] = False
    offs, nb = C.neighbour_list(pos, usable, 2.5)
    pairs = _brute_pairs(pos, usable, 2.5)
    for i in range(200):
        got = set(nb[offs[i]:offs[i + 1]].tolist())
        want = {b for a, b in pairs if a == i} | {a for a, b in pairs if b == i}
        assert got == want


def test_bin_points_groups_each_usable_point_once_in_its_cell():
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 10, (100, 2))
    usable = rng.random(100) > 0.5
    grid = C.grid_around(pos, usable, 1.0)
    start, order = C.bin_points(pos, usable, grid)
    assert sorted(order.tolist()) == np.flatnonzero(usable).tolist()
    for c in range(grid[4] * grid[5]):
        for i in order[start[c]:start[c + 1]]:
            cx, cy = C.cell_of(grid, pos[i, 0], pos[i, 1])
            assert cy * grid[4] + cx == c


def test_wrap_delta_is_minimum_image():
    assert C.wrap_delta(9.0, 10.0) == pytest.approx(-1.0)
    assert C.wrap_delta(-6.0, 10.0) == pytest.approx(4.0)
    assert C.wrap_delta(2.0, 10.0) == pytest.approx(2.0)
