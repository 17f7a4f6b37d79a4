"""The loop's per-frame fast paths give what the general code gives.

History slot look-ups kept across frames, the force program's compiled finish, the actuator's
one-call prediction for an unchanged particle list: each is checked against an independent
model or against the general path, including the cases that leave the fast path (new, lost,
reordered and recycled identities, NaN positions, unusable particles).
"""

import numpy as np
import pytest

from cybloid.actuation import Actuator
from cybloid.calibration.model import Calibration
from cybloid.forces.base import ForceContext, ForceProgram, ForceTerm
from cybloid.hardware import Limits
from cybloid.history import History
from cybloid.profile import load_lab_profile


def test_history_matches_a_dictionary_model_through_reorders_losses_and_recycling():
    depth = 5
    h = History(depth=depth, slots=4)  # few slots: growth and recycling both happen
    rng = np.random.default_rng(3)
    model: list[dict[int, tuple[float, float]]] = []  # per push: id -> position (usable ones)
    ids = np.arange(6)
    for k in range(120):
        r = k % 9
        if r == 3:  # reorder
            ids = rng.permutation(ids)
        elif r == 6:  # some lost for good, some new (identities keep growing: old slots recycled)
            keep = ids[rng.uniform(size=len(ids)) > 0.3]
            ids = np.concatenate([keep, np.arange(100 + 10 * k, 100 + 10 * k + rng.integers(1, 4))])
        xy = rng.normal(0, 10, (len(ids), 2))
        usable = rng.uniform(size=len(ids)) > 0.15
        h.push(k, 0.01 * k, ids, xy, usable)
        model.append({int(i): tuple(p) for i, p, u in zip(ids, xy, usable) if u})
        # every lag the buffer holds, asked for the current identities plus one never seen
        ask = np.concatenate([ids, [-5]])
        for lag in range(min(depth, len(model))):
            got = h.lag_positions(ask, lag)
            want = np.array([model[-1 - lag].get(int(i), (np.nan, np.nan)) for i in ask])
            np.testing.assert_array_equal(got, want)
            pid, pxy = h.all_at_lag(lag)
            assert dict(zip(pid.tolist(), map(tuple, pxy))) == model[-1 - lag]
        assert np.isnan(h.lag_positions(ids, depth)).all()  # beyond the buffer
    assert h._pos.shape[1] <= 64  # recycled, not grown without bound


def test_history_keeps_every_identity_when_a_frame_has_more_than_its_initial_slots():
    """More identities in one frame than the buffer's initial slots (256): the slots made earlier
    in the same push must not be recycled for the later ones (each position stays its own)."""
    h = History(depth=8)
    n = 1000
    frames = [np.random.default_rng(k).normal(size=(n, 2)) for k in range(4)]
    for k, xy in enumerate(frames):
        h.push(k, 0.01 * k, np.arange(n), xy)
    for lag in range(4):
        np.testing.assert_array_equal(h.lag_positions(np.arange(n), lag), frames[-1 - lag])


def test_history_push_rejects_mismatched_lengths():
    h = History(depth=3)
    with pytest.raises(ValueError, match="3 ids but 2 positions"):
        h.push(0, 0.0, np.arange(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="usable"):
        h.push(0, 0.0, np.arange(3), np.zeros((3, 2)), np.ones(2, bool))


class _Fixed(ForceTerm):
    def __init__(self, f):
        super().__init__()
        self.f = np.asarray(f, float)

    def add_forces(self, ctx, out):
        out += self.f


def test_program_flags_non_finite_rows_and_zeroes_unusable_ones():
    f = [[1.0, 2.0], [np.nan, 0.0], [0.0, np.inf], [3.0, 4.0], [np.nan, np.nan]]
    prog = ForceProgram({"a": _Fixed(f)})
    usable = np.array([True, True, True, False, False])
    ctx = ForceContext(np.arange(5), np.zeros((5, 2)), usable, History(2), 0.0, 0.01)
    out, bad = prog.compute(ctx)
    assert bad.tolist() == [False, True, True, False, True]  # an unusable NaN row is still flagged
    np.testing.assert_array_equal(out, [[1.0, 2.0], [0, 0], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="usable"):
        prog.compute(ForceContext(np.arange(5), np.zeros((5, 2)), usable[:3], History(2), 0.0, 0.01))


@pytest.fixture
def cal():
    return Calibration.from_profile(load_lab_profile(None))


def test_one_call_prediction_equals_the_general_path(cal):
    """Same identities in the same order (compiled fast path) against the same particles
    presented in a new order every frame (the general path): the same spots per identity and the
    same motion estimate, including NaN positions, capped leads and a particle that left."""
    T = 0.01
    kw = dict(frame_period_s=T, velocity_smoothing=0.4, max_lead_um=0.3)
    fast = Actuator(cal, Limits(), (200.0, 200.0), **kw)
    slow = Actuator(cal, Limits(), (200.0, 200.0), **kw)
    rng = np.random.default_rng(11)
    n = 12
    ids = np.arange(20, 20 + n)
    pos = rng.uniform(20, 180, (n, 2))
    vel = rng.normal(0, 30, (n, 2))
    vel[0] = [4000.0, 0.0]  # a lead well above the cap
    used_fast = 0
    for k in range(40):
        pos = pos + vel * T + rng.normal(0, 0.05, pos.shape)
        p = pos.copy()
        if k in (7, 8):
            p[3] = np.nan  # lost for two frames: the next frames take the general path in both
        f = rng.normal(0, 0.5, (n, 2))
        same = len(fast._ids) == n and np.array_equal(fast._ids, ids)
        used_fast += same
        ta, sa, _ = fast.spots(p, f, np.ones(n, bool), ids)
        perm = rng.permutation(n)
        tb, sb, _ = slow.spots(p[perm], f[perm], np.ones(n, bool), ids[perm])
        # compare spot positions by their particle's identity (pair layout: two spots each)
        ka = np.lexsort((sa[:, 1], sa[:, 0], ta.target))
        kb = np.lexsort((sb[:, 1], sb[:, 0], tb.target))
        np.testing.assert_array_equal(ta.target[ka], tb.target[kb])
        np.testing.assert_allclose(sa[ka], sb[kb], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ta.share[ka], tb.share[kb], rtol=1e-6)
        assert fast._q_um2 == pytest.approx(slow._q_um2, rel=1e-12, nan_ok=True)
        assert fast.last_layout == slow.last_layout
    assert used_fast >= 30  # the fast path was exercised


def test_harmonic_trap_with_binned_centres_matches_the_per_frame_search():
    """Centres binned once give the nearest-centre forces of a fresh cell-list search every
    frame (ties, particles outside every capture radius, unusable and NaN positions, a changed
    radius, new centres), and the closed form -k (r - c)."""
    from cybloid.forces import HarmonicTrap
    from cybloid.forces.external import harmonic_nearest_centre

    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 50, (30, 2))
    centres[1] = centres[0] + [4.0, 0.0]  # a particle midway between two centres: the lower index wins
    trap = HarmonicTrap(centres, stiffness=0.3, capture_radius=3.0)
    trap.warm_up()
    with pytest.raises(ValueError):
        trap.centres_um[0, 0] = 1.0  # centres are replaced, not edited in place
    for radius in (3.0, 0.5, 40.0):
        trap.set(capture_radius=radius)
        pos = np.concatenate([rng.uniform(-5, 55, (200, 2)), centres[:1] + [2.0, 0.0], [[np.nan, 1.0]]])
        usable = rng.uniform(size=len(pos)) > 0.1
        usable[-2:] = True
        ctx = ForceContext(np.arange(len(pos)), pos, usable, History(2), 0.0, 0.01)
        got = np.zeros((len(pos), 2))
        trap.add_forces(ctx, got)
        want = np.zeros((len(pos), 2))
        harmonic_nearest_centre(pos, usable, trap.centres_um, 0.3, radius, want)
        np.testing.assert_array_equal(got, want)
        # closed form for the midway particle: pulled to centre 0 (the lower index)
        d = np.hypot(*(pos[-2] - centres[1]))
        if radius > d:
            np.testing.assert_allclose(got[-2], -0.3 * (pos[-2] - centres[0]))
        assert not got[~usable].any() and not got[-1].any()
    moved = HarmonicTrap(centres + 1.0, stiffness=0.3, capture_radius=40.0)
    out = np.zeros((len(pos), 2))
    moved.add_forces(ctx, out)
    want = np.zeros((len(pos), 2))
    harmonic_nearest_centre(pos, usable, centres + 1.0, 0.3, 40.0, want)
    np.testing.assert_array_equal(out, want)


def test_spot_table_steering_units_match_the_calibration_map():
    """The actuator's compiled steering units (affine calibration) are the calibration's own
    ``um_to_steer`` rounded to float32; a distorted calibration takes the general map."""
    from cybloid.actuation import kept_spots_steer
    from cybloid.forcecurve import ForceCurve

    rng = np.random.default_rng(2)
    spots = rng.uniform(-5, 120, (100_000, 2))
    share = rng.uniform(-0.5, 1, len(spots))  # spots with share <= 0 are dropped
    ids = np.arange(len(spots) // 2)
    for a in (np.array([[128.0, -1.5, 300.0], [1.5, 128.0, -200.0]]), rng.normal(0, 50, (2, 3))):
        c = Calibration(0.2, a, ForceCurve(5.0, 0.8, 2.5), 0.004)
        kept, x_su, y_su, sh, tg = kept_spots_steer(spots, share, ids, 2, 0.2, c.steer_from_px)
        keep = share > 0
        np.testing.assert_array_equal(kept, spots[keep])
        np.testing.assert_array_equal(sh, share[keep].astype(np.float32))
        np.testing.assert_array_equal(tg, np.repeat(ids, 2)[keep])
        su = c.um_to_steer(spots[keep]).astype(np.float32)
        np.testing.assert_array_max_ulp(x_su, su[:, 0], maxulp=1)
        np.testing.assert_array_max_ulp(y_su, su[:, 1], maxulp=1)
    # through the actuator, with and without distortion: the table is the map of the spots
    for dist in (np.zeros((2, 3)), np.array([[0.5, 0.1, -0.2], [0.0, 0.3, 0.4]])):
        c = Calibration(0.2, np.array([[1.1, 0.05, 3.0], [-0.02, 0.9, -2.0]]), ForceCurve(5.0, 0.8, 2.5), 0.004,
                        distortion_su=dist, distortion_centre_px=(50.0, 40.0), distortion_scale_px=60.0)
        act = Actuator(c, Limits(), (20.0, 16.0), frame_period_s=0.01)
        pos = rng.uniform(2, 14, (6, 2))
        table, xy, _ = act.spots(pos, rng.normal(0, 0.5, (6, 2)), np.ones(6, bool), np.arange(6))
        su = c.um_to_steer(xy).astype(np.float32)
        np.testing.assert_array_max_ulp(table.x_su, su[:, 0], maxulp=1)
        np.testing.assert_array_max_ulp(table.y_su, su[:, 1], maxulp=1)
