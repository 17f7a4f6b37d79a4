"""Per-frame shortcuts of the loop's stages give exactly what the general code gives.

Each shortcut (a remembered nearest trap centre, a skipped border integral, an early stop)
is checked against the general computation through the cases that must leave it.
"""

import numpy as np

from cybloid.forces.base import ForceContext
from cybloid.history import History


def test_harmonic_trap_remembered_centres_match_a_fresh_search_every_frame():
    """Each row's centre of the last frame is taken without a search only where the triangle
    inequality proves it the nearest: particles wandering between centres, jumping to other
    centres, rows reordered, rows added, duplicate and tied centres, leaving every capture
    radius, unusable and NaN positions all give the forces of a fresh search."""
    from cybloid.forces import HarmonicTrap
    from cybloid.forces.external import harmonic_nearest_centre

    rng = np.random.default_rng(11)
    centres = rng.uniform(0, 60, (120, 2))
    centres[1] = centres[0]  # a duplicate centre: no clearance, always searched (lower index wins)
    centres[3] = centres[2] + [1.0, 0.0]  # a close pair
    trap = HarmonicTrap(centres, stiffness=0.2, capture_radius=4.0)
    trap.warm_up()
    pos = centres + rng.normal(0, 0.2, centres.shape)
    took_guess = 0
    for frame in range(60):
        pos = pos + rng.normal(0, 0.3, pos.shape)
        if frame % 7 == 3:
            pos = pos[rng.permutation(len(pos))]
        if frame % 11 == 5:  # some particles jump to another centre
            k = rng.integers(0, len(pos), 10)
            pos[k] = centres[rng.integers(0, len(centres), 10)] + rng.normal(0, 0.1, (10, 2))
        if frame == 20:
            pos = np.concatenate([pos, rng.uniform(-10, 70, (15, 2))])  # more rows
        if frame == 40:
            pos = pos[:90]  # fewer rows
        p = pos.copy()
        p[5] = [np.nan, 1.0]
        p[6] = (centres[2] + centres[3]) / 2  # midway between two centres: the lower index
        usable = rng.uniform(size=len(p)) > 0.1
        ctx = ForceContext(np.arange(len(p)), p, usable, History(2), 0.0, 0.01)
        before = trap._guess.copy()
        got = np.zeros((len(p), 2))
        trap.add_forces(ctx, got)
        want = np.zeros((len(p), 2))
        harmonic_nearest_centre(p, usable, trap.centres_um, 0.2, 4.0, want)
        np.testing.assert_array_equal(got, want)
        if len(before) == len(p):
            took_guess += int(np.sum((before >= 0) & (before == trap._guess) & usable))
        # closed form for the midway particle
        np.testing.assert_allclose(got[6], -0.2 * (p[6] - centres[2]) if usable[6] else 0.0)
    assert took_guess > 1000  # the shortcut was exercised


def test_measurement_model_skips_the_border_integral_only_where_it_is_exactly_one():
    """The ``none`` tier's fraction of each image on the sensor (reported as mass) is the
    integral of the Gaussian image over the sensor, bit for bit, for particles anywhere: deep
    inside (where the integral is not evaluated), near and on the edges, and outside."""
    import math

    import numba

    from cybloid.sim.measure import FAR_SIGMA, _ndtr, _on_sensor, measure_frame

    @numba.njit
    def integral(w, h, x, y, s):
        return (_ndtr((w - 0.5 - x) / s) - _ndtr((-0.5 - x) / s)) * (_ndtr((h - 0.5 - y) / s) - _ndtr((-0.5 - y) / s))

    @numba.njit
    def fraction(w, h, x, y, s):
        return _on_sensor(w, x, s) * _on_sensor(h, y, s)

    rng = np.random.default_rng(4)
    w, h, s = 300, 200, 2.3
    xy = np.column_stack([rng.uniform(-20, w + 20, 5000), rng.uniform(-20, h + 20, 5000)])
    # exactly at the threshold and one ulp inside it
    edge = FAR_SIGMA * s - 0.5
    xy[:4] = [[edge, 100.0], [np.nextafter(edge, 0), 100.0], [100.0, h - 0.5 - FAR_SIGMA * s], [w / 2, h / 2]]
    n = len(xy)
    mass0 = 1000.0
    ids, _, mass, _ = measure_frame(xy, w, h, s, 0.0, np.uint64(7), 10**6, np.full((n, 2), np.nan),
                                    np.zeros(n, np.int64), np.zeros(n, bool), mass0)
    v = np.array([integral(w, h, x, y, s) for x, y in xy])
    np.testing.assert_array_equal(np.array([fraction(w, h, x, y, s) for x, y in xy]), v)  # double precision
    want = (mass0 * v).astype(np.float32)
    np.testing.assert_array_equal(mass, want[ids])
    far = ((xy[:, 0] > FAR_SIGMA * s) & (xy[:, 0] < w - FAR_SIGMA * s)
           & (xy[:, 1] > FAR_SIGMA * s) & (xy[:, 1] < h - FAR_SIGMA * s))
    assert far.sum() > 1000 and (want[far] == np.float32(mass0)).all()
    assert 0 < want[3] and math.isclose(float(want[3]), mass0)


def test_prediction_caps_the_lead_exactly_as_with_hypot_everywhere():
    """The one-call prediction skips ``hypot`` for leads surely shorter than the cap: leads far
    below, just below, at and above the cap (and non-finite positions) give the same bits as
    measuring every lead."""
    import math

    import numba

    from cybloid.actuation import innovation_sum, predict_same_ids

    @numba.njit
    def reference(pos, prev, prev_vel, a, T, lead_s, max_lead):
        n = pos.shape[0]
        vel = np.empty((n, 2))
        pred = np.empty((n, 2))
        for i in range(n):
            for k in range(2):
                v = a * ((pos[i, k] - prev[i, k]) / T) + (1 - a) * prev_vel[i, k]
                vel[i, k] = v if math.isfinite(v) else 0.0
            lx = vel[i, 0] * lead_s
            ly = vel[i, 1] * lead_s
            size = math.hypot(lx, ly)
            if size > max_lead:
                lx *= max_lead / size
                ly *= max_lead / size
            pred[i, 0] = pos[i, 0] + lx
            pred[i, 1] = pos[i, 1] + ly
        return vel, pred

    rng = np.random.default_rng(8)
    n = 20000
    T, lead_s, a = 0.01, 0.0125, 0.3
    pos = rng.uniform(0, 100, (n, 2))
    prev = pos - rng.normal(0, 0.05, (n, 2))
    prev_vel = rng.normal(0, 1, (n, 2)) * rng.choice([1.0, 100.0, 1000.0], (n, 1))
    pos[:3] = np.nan
    for max_lead in (1.0, 0.0, 1e-3, np.inf):
        # leads placed on the cap within a few ulps
        ang = rng.uniform(0, 2 * np.pi, 200)
        target = max_lead if np.isfinite(max_lead) else 1.0
        lead = np.column_stack([np.cos(ang), np.sin(ang)]) * target * (1 + rng.integers(-4, 5, 200)[:, None] * 1e-16)
        pv = prev_vel.copy()
        # vel = a (pos - prev)/T + (1 - a) pv: choose pv so that vel * lead_s is the lead
        pv[10:210] = (lead / lead_s - a * (pos[10:210] - prev[10:210]) / T) / (1 - a)
        vel, pred, total, count, finite = predict_same_ids(pos, prev, pv, a, T, lead_s, max_lead)
        want_vel, want_pred = reference(pos, prev, pv, a, T, lead_s, max_lead)
        np.testing.assert_array_equal(vel, want_vel)
        np.testing.assert_array_equal(pred, want_pred)
        assert (total, count) == innovation_sum(pos, prev, pv, T, max_lead) and not finite
