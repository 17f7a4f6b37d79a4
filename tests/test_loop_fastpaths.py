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


def _records(lab, loop, frames, events=None):
    """Run ``frames`` loop steps; every record's arrays and times (the deadline flag, wall-clock
    dependent, left out) and the world's state at the end."""
    from cybloid.record import FLAG_DEADLINE

    out = []
    for f in range(frames):
        if events and f in events:
            events[f](lab)
        r = loop.step()
        hold = r.truth["spot_forces"]
        out.append((r.ids, r.positions_um, r.mass, r.quality, r.forces_pN, r.saturation, r.spots.x_su, r.spots.y_su,
                    r.spots.share, r.spots.target, r.truth["positions_um"],
                    np.array([r.index, r.t_exposure_start, r.t_exposure_end, r.t_arrival, r.t_sent, r.t_applied,
                              r.flags & ~FLAG_DEADLINE, r.laser_on, r.spots.power]),
                    None if hold is None else np.concatenate([[hold["t_start_s"], hold["t_end_s"]], hold["targets"],
                                                             np.ravel(hold["start_pN"]),
                                                             np.ravel(hold["realised_pN"])])))
    w = lab.world
    out.append((w.pos_um, w.spot_force_sum, np.array([w.tick, w.list_rebuilds, w.brownian_steps])))
    return out


def _run_none_tier(n, frames, slow, monkeypatch, seed=3):
    """The ``none`` tier's loop with a trap on every particle (the bench workload), through the
    one-call shortcuts or (``slow``) through the general code they stand for."""
    from cybloid.actuation import Actuator
    from cybloid.forces import ForceProgram, HarmonicTrap
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop
    from cybloid.sim import measure
    from cybloid.sim.pixels import frame_key
    from cybloid.sim.world import SimWorld, _shifted

    with monkeypatch.context() as mp:
        if slow:
            def apply(self, p):  # close the old hold, put the table in force, open the new hold
                self._close_hold()
                self._spots_fov, self._share = p.spots_fov_um, p.share
                self.applied_log.append((self.tick, len(p.share)))
                self._open_hold()

            def shifted_all(snaps, stage):
                return [_shifted(s, stage, -1.0, True) for s in snaps]

            def measure_um(pos, ps, frame, seed_key, *rest):
                tr = loop.tracker
                key = np.uint64(frame_key(np.uint64(tr._seed), frame))
                return measure.measure_frame(np.ascontiguousarray(pos / ps), *rest[:4], key, *rest[4:])

            mp.setattr(SimWorld, "_apply", apply)
            mp.setattr("cybloid.sim.world._shifted_all", shifted_all)
            mp.setattr(Actuator, "_fused", lambda self, *a: None)
            mp.setattr(measure, "measure_frame_um", measure_um)
        lab = open_lab(seed=seed, overrides={"camera.render": "none", "camera.width_px": 256, "camera.height_px": 256,
                                             "particles.count": n})
        traps = HarmonicTrap(lab.world.positions_fov_um(), stiffness=0.02)  # one at each particle
        loop = FeedbackLoop(lab, program=ForceProgram({"traps": traps}), keep_images=False)
        try:
            loop.warm_up()
            lab.laser.on()
            events = {
                10: lambda lab: lab.stage.move_by(1.5, -0.7),  # samples and spots shifted
                20: lambda lab: lab.laser.set_power(0.04 * lab.laser.max_power_mW),  # pairs no longer fit
                28: lambda lab: lab.laser.set_power(lab.laser.max_power_mW),
                32: lambda lab: lab.laser.off(),
                36: lambda lab: lab.laser.on(),
                40: lambda lab: lab.steering.blank(),
                44: lambda lab: setattr(loop.actuator, "max_spots", n),  # pairs do not fit the table
                50: lambda lab: setattr(loop.actuator, "max_spots", None),
            }
            return _records(lab, loop, frames, events)
        finally:
            loop.close()
            lab.close()


def test_none_tier_one_call_shortcuts_give_the_general_codes_records(monkeypatch):
    """The ``none`` tier's loop through its one-call shortcuts (holds closed and opened in one
    call, the measurement model with its pixel scale and frame key inside, the actuator's usual
    frame in one call, sub-exposure samples shifted at once) gives the same records, bit for
    bit, as the general code: with the stage moved, the beam too weak for spot pairs, the
    laser off and on, the beam blanked and a steering table too small for pairs."""
    fast = _run_none_tier(40, 60, False, monkeypatch)
    slow = _run_none_tier(40, 60, True, monkeypatch)
    assert len(fast) == len(slow) == 61
    for a, b in zip(fast, slow):
        for x, y in zip(a, b):
            if x is None or y is None:
                assert x is None and y is None
                continue
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    assert sum(r[12] is not None for r in fast[:-1]) > 30  # the hold diagnostics were there to compare
    assert {r[8].shape[0] > 0 for r in fast[:-1]} == {True, False}  # frames with and without spots


def test_one_call_kernels_match_their_parts():
    """:func:`swap_hold`, :func:`swap_table`, :func:`pair_table_steer`, :func:`measure_frame_um`
    give the bits of the kernels and array operations they chain, on random inputs (the stage at
    and off the origin, pairs that fit and that do not, NaN forces)."""
    from cybloid.actuation import kept_spots_steer, pair_share_total, pair_table_steer, place_spot_pairs
    from cybloid.sim.dynamics import hold_from_lists, spot_lists_indexed, swap_hold, swap_table
    from cybloid.sim.world import _shifted
    from cybloid.sim.measure import measure_frame, measure_frame_um
    from cybloid.sim.pixels import frame_key

    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 40, (300, 2))
    spots = pos[rng.integers(0, 300, 250)] + rng.normal(0, 1.0, (250, 2))
    spot_f = rng.uniform(0, 3, 250)
    fsum = rng.normal(0, 5, (300, 2))
    old = np.sort(rng.choice(300, 50, replace=False))
    old_s = rng.normal(0, 5, (50, 2))
    so, sd, sref, targets, start, sum0, realised = swap_hold(pos, spots, spot_f, 4.5, 1.0, 4.0, fsum, old, old_s, 7)
    so2, sd2, sl = spot_lists_indexed(pos, spots, spot_f, 4.5)
    t2, s2 = hold_from_lists(spots, spot_f, pos, 1.0, 4.0, so2, sl)
    for x, y in [(so, so2), (sd, sd2), (sref, pos), (targets, t2), (start, s2), (sum0, np.take(fsum, t2, axis=0)),
                 (realised, (np.take(fsum, old, axis=0) - old_s) / 7)]:
        np.testing.assert_array_equal(x, y)
    assert len(targets) > 100 and sref is not pos
    share = rng.uniform(0, 0.01, 250)
    for stage in ((0.0, 0.0), (1.5, -0.7)):  # spots given in the field of view, the stage somewhere
        got = swap_table(spots, share, *stage, 0.7, 80.0, pos, 4.5, 1.0, 4.0, fsum, old, old_s, 7)
        world_spots, spot_f = _shifted(spots, np.array(stage), 1.0), share * 0.7 * 80.0
        np.testing.assert_array_equal(got[0], world_spots)
        np.testing.assert_array_equal(got[1], spot_f)
        for x, y in zip(got[2], swap_hold(pos, world_spots, spot_f, 4.5, 1.0, 4.0, fsum, old, old_s, 7)):
            np.testing.assert_array_equal(x, y)

    steer = np.array([[1.3, 0.1, 4.0], [-0.2, 1.1, -3.0]])
    force = rng.normal(0, 0.001, (300, 2))
    force[7] = np.nan
    ids = rng.permutation(1000)[:300]
    fits = set()
    for power in (1.0, 0.05):
        got = pair_table_steer(pos, force, ids, power, 1.4, 1.2, 1.0, 1.0, 1.0, 39.0, 39.0, 0.1, steer)
        ok = pair_share_total(force, power, 1.2, 1.0, 1.0 + 1e-12) <= 1.0 + 1e-12
        assert got[0] == ok
        fits.add(ok)
        if ok:
            sp, share, sat = place_spot_pairs(pos, force, power, 1.4, 1.2, 1.0, 1.0, 1.0, 39.0, 39.0)
            for x, y in zip(got[1:6], kept_spots_steer(sp, share, ids, 2, 0.1, steer)):
                np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(got[6], sat)
    assert fits == {True, False}

    xy_um = rng.uniform(-2, 30, (500, 2))
    for frame in (0, 17, 2**40):
        state = [np.full((500, 2), np.nan), np.full(500, 10**9, np.int64), np.zeros(500, bool)]
        state2 = [a.copy() for a in state]
        seed = 12345
        a = measure_frame_um(xy_um, 0.11, frame, _seed_key(seed), 250, 250, 2.0, 0.03, 5, *state, 900.0)
        b = measure_frame(np.ascontiguousarray(xy_um / 0.11), 250, 250, 2.0, 0.03,
                          np.uint64(frame_key(np.uint64(seed), frame)), 5, *state2, 900.0)
        for x, y in zip(list(a) + state, list(b) + state2):
            np.testing.assert_array_equal(x, y)


def _seed_key(seed):
    from cybloid.sim.pixels import _ALT, mix64

    return np.uint64(mix64(np.uint64(seed) ^ _ALT))
