"""The paper's experiments on the simulated lab, in virtual time, through the actuator path.

Each test opens the lab for a bundled protocol (cybloid.protocol.runner.prepare), runs it
with ProtocolRunner and checks the recorded tracks against physics.
"""

import numpy as np
import pytest

from cybloid.actuation import SAT_NAN
from cybloid.analysis import mean_angular_velocity, mean_bond_order, msd, records_to_frame
from cybloid.errors import CybloidError, ParameterError
from cybloid.forces import ForceTerm, realised_delay_s
from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare
from cybloid.record import FLAG_NAN_FORCE
from protocol_runs import run_protocol

# a 102 um field at 0.4 um/px: cheap frames, particles still 5 px wide
WIDE_CHEAP = {"camera.width_px": 256, "camera.height_px": 256, "camera.pixel_size_um": 0.4}
# a 77 um field at 0.3 um/px for the crystals
CRYSTAL_FIELD = {"camera.width_px": 256, "camera.height_px": 256, "camera.pixel_size_um": 0.3}
# every physics test runs with images and the real tracker ("full") and with the measurement
# model ("none"); "lazy" gives the same frames and tracks as "full" bit for bit
# (tests/test_sim_tiers.py), so its physics is the same
TIERS = ["full", "none"]


def tier(overrides, render):
    return {**overrides, "camera.render": render}


@pytest.mark.slow
@pytest.mark.parametrize("render", TIERS)
@pytest.mark.parametrize("k_tau", [0.5, 1.0])
def test_delayed_trap_variance_matches_the_closed_form(k_tau, render):
    """Stationary variance per axis = D (1 + sin k tau) / (k cos k tau) within 5%."""
    from cybloid.profile import load_lab_profile

    prof = load_lab_profile(None).with_overrides(WIDE_CHEAP)
    T, lat, gamma, D = prof.frame_period_s, prof.inherent_latency_s, prof.gamma, prof.diffusion
    # a delay the loop realises exactly (latency + (lag + 1/2) frames), and the stiffness
    # that gives the wanted k tau; stiffness ~0.04 pN/um keeps the spots' own side effects
    # (particle diffusing relative to a held spot) at the 1-2 % level
    k_guess = 0.04 / gamma
    lag = int(round((k_tau / k_guess - lat) / T - 0.5))
    tau = lat + (lag + 0.5) * T
    stiffness = k_tau * gamma / tau
    proto, lab, vals, recs = run_protocol(
        "delayed-harmonic", {"traps": 121, "spacing": 8.5, "stiffness": stiffness, "tau": tau, "duration": 30.0},
        tier(WIDE_CHEAP, render), seed=3)
    assert realised_delay_s(tau, T, lab.calibration.latency_s) == pytest.approx(tau)
    centres = proto.module.trap_centres(vals, lab.profile.fov_um)
    df = records_to_frame(recs[int(3.0 / T):])  # 3 s to forget the start
    assert df["particle"].nunique() == 121
    assert (df.groupby("frame").size() == 121).all()  # nobody lost, nobody created
    assert len({len(r.spots) > 0 for r in recs[-100:]}) == 1 and len(recs[-1].spots) > 0
    variances = []
    for _, g in df.groupby("particle"):
        xy = g[["x", "y"]].to_numpy()
        c = centres[np.argmin(np.hypot(*(centres - xy.mean(0)).T))]
        variances.extend(np.mean((xy - c) ** 2, axis=0))
    k = stiffness / gamma
    expected = D * (1 + np.sin(k * tau)) / (k * np.cos(k * tau))
    assert np.mean(variances) == pytest.approx(expected, rel=0.05)
    # and clearly not the undelayed equipartition value D/k
    assert abs(np.mean(variances) / (D / k) - 1) > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("render", TIERS)
def test_trap_on_own_past_position_gives_subdiffusion_then_slow_diffusion(render):
    """dx/dt = -k (x(t) - x(t - tau)) + noise: for t >> tau, (1 + k tau) dx = dW, so the
    long-time diffusion coefficient is D / (1 + k tau)^2; below tau the motion is caged."""
    from cybloid.profile import load_lab_profile

    prof = load_lab_profile(None).with_overrides(WIDE_CHEAP)
    T, lat = prof.frame_period_s, prof.inherent_latency_s
    tau = 34 * T  # a trap on the own past position realises lag T = tau (docs/forces.md)
    proto, lab, vals, recs = run_protocol(
        "delayed-harmonic", {"centre": "own", "traps": 64, "spacing": 12.0, "stiffness": 0.1, "tau": tau,
                             "duration": 12.0}, tier(WIDE_CHEAP, render), seed=4)
    df = records_to_frame(recs)
    df = df[df["t"] > df["t"].min() + 1.0]
    m = msd(df, 400, T).set_index("lag_frames")["msd_um2"]
    D = prof.diffusion
    k = vals.stiffness / prof.gamma
    d_long = (m[400] - m[200]) / (4 * 200 * T)
    assert d_long == pytest.approx(D / (1 + k * tau) ** 2, rel=0.2)
    assert m[50] < 0.3 * 4 * D * 50 * T  # caged below tau


@pytest.mark.slow
@pytest.mark.parametrize("render", TIERS)
def test_delayed_annular_potential_makes_the_particle_circulate(render):
    proto, lab, vals, recs = run_protocol("delayed-annular", {"duration": 22.0},
                                          {"camera.width_px": 256, "camera.height_px": 256,
                                           "camera.pixel_size_um": 0.3, "camera.render": render})
    df = records_to_frame(recs)
    assert df["particle"].nunique() == 1
    late = df[df["t"] > df["t"].min() + 10.0]  # after the orbit has formed
    centre = np.array(lab.profile.fov_um) / 2
    omega = mean_angular_velocity(late, centre)
    w_expected, r_expected = proto.module.orbit(vals, lab.profile)
    # persistent circulation over many turns, either sense, at pi / (2 tau)
    assert abs(omega) * (late["t"].max() - late["t"].min()) > 2 * np.pi * 5
    assert abs(omega) == pytest.approx(w_expected, rel=0.1)
    # a steady orbit of radius 2 v tau / pi (v = max_force / gamma), well outside the ring
    r = np.hypot(late["x"] - centre[0], late["y"] - centre[1])
    assert r.mean() == pytest.approx(r_expected, rel=0.15)
    assert r.std() < 0.2 * r.mean()
    # without delay the same ring just holds the particle near radius R: no circulation
    proto2, lab2, vals2, recs2 = run_protocol("delayed-annular", {"duration": 6.0, "tau": 0.0},
                                              {"camera.width_px": 128, "camera.height_px": 128,
                                               "camera.pixel_size_um": 0.3, "camera.render": render})
    df2 = records_to_frame(recs2)
    c2 = np.array(lab2.profile.fov_um) / 2
    assert abs(mean_angular_velocity(df2, c2)) < 0.2 * w_expected


@pytest.mark.slow
@pytest.mark.parametrize("render", TIERS)
def test_single_feedback_puller_moves_at_the_predicted_speed(render):
    """A particle pulled towards a ring of radius R around its own position tau ago moves
    straight at v = k R / (1 + k tau) (k = stiffness/gamma): dx/dt = k (R - v tau)."""
    proto, lab, vals, recs = run_protocol("feedback-puller", {"particles": 1, "confine": 0.0, "duration": 5.0},
                                          tier(WIDE_CHEAP, render), seed=1)
    df = records_to_frame(recs)
    late = df[df["t"] > df["t"].min() + 1.5]
    D = lab.profile.diffusion
    k = vals.stiffness / lab.profile.gamma
    v_expected = k * vals.radius / (1 + k * vals.tau)
    m = msd(late, 20, lab.profile.frame_period_s)
    row = m.iloc[-1]
    v = np.sqrt(row["msd_um2"] - 4 * D * row["lag_s"]) / row["lag_s"]  # ballistic part
    assert v == pytest.approx(v_expected, rel=0.1)
    assert row["msd_um2"] > 10 * 4 * D * row["lag_s"]  # far beyond diffusion: active


def crystal_order(records, spacing, last_s=1.0):
    frame_period = records[1].t_exposure_mid - records[0].t_exposure_mid
    tail = records[-int(last_s / frame_period):]
    psi6 = np.mean([mean_bond_order(r.positions_um, 6, cutoff_um=1.3 * spacing) for r in tail[::10]])
    psi4 = np.mean([mean_bond_order(r.positions_um, 4, cutoff_um=1.3 * spacing) for r in tail[::10]])
    return psi6, psi4


@pytest.mark.slow
@pytest.mark.parametrize("render", TIERS)
@pytest.mark.parametrize("lattice", ["hexagonal", "square"])
def test_programmed_interactions_select_the_crystal(lattice, render):
    proto, lab, vals, recs = run_protocol(f"crystal-{lattice}", {"gather": 5.0, "duration": 3.0},
                                          tier(CRYSTAL_FIELD, render))
    assert vals.particles >= 30
    n = len(recs[0].ids)
    assert n == vals.particles
    # a disordered start (Delaunay neighbours: in a sparse fluid few particles have a
    # neighbour within 1.3 spacings, and a single neighbour gives |psi| = 1)
    start = recs[0].positions_um
    assert mean_bond_order(start, 6, neighbours="delaunay") < 0.5
    assert mean_bond_order(start, 4, neighbours="delaunay") < 0.5
    assert all(len(r.ids) == n for r in recs[-100:])  # the crystal is intact and fully tracked
    psi6, psi4 = crystal_order(recs, vals.spacing)
    if lattice == "hexagonal":
        assert psi6 >= 0.8 and psi4 < 0.5
    else:
        assert psi4 >= 0.8 and psi6 < 0.5


class NaNForParticle(ForceTerm):
    """A term that breaks for one identity (as a user program might)."""

    def __init__(self, ident):
        super().__init__()
        self.ident = ident

    def add_forces(self, ctx, out):
        out[ctx.ids == self.ident] = np.nan


def test_nan_force_at_run_time_zeroes_that_spot_and_flags_it(small_lab_overrides):
    proto = load_protocol("delayed-harmonic")
    lab, loop, vals = prepare(proto, {"traps": 4, "spacing": 10.0, "duration": 1.0, "stiffness": 0.5, "tau": 0.05},
                              overrides=small_lab_overrides, seed=2)
    loop.program.set_term("broken", NaNForParticle(0))
    recs = []
    loop.add_sink(recs.append)
    summary = ProtocolRunner(loop, proto, vals).run()
    loop.close()
    lab.close()
    assert summary.status == "done" and not summary.laser_on_at_end
    active = [r for r in recs if r.laser_on and 0 in r.ids]
    assert len(active) > 50
    for r in active:
        i = int(np.flatnonzero(r.ids == 0)[0])
        assert r.flags & FLAG_NAN_FORCE
        assert r.saturation[i] & SAT_NAN
        assert not r.forces_pN[i].any()
        assert 0 not in set(r.spots.target.tolist())  # no spot for the broken particle
    # the others still got their delayed-trap spots
    assert sum(len(r.spots) for r in active[-20:]) > 0


def test_bad_parameters_fail_before_the_run(tmp_path):
    proto = load_protocol("delayed-harmonic")
    with pytest.raises(ParameterError, match="tau"):
        proto.values({"tau": -0.1})
    with pytest.raises(ParameterError, match="tau"):
        proto.values({"tau": "nan"})
    # a user potential that returns NaN: caught when the protocol is checked (dry run),
    # before the laser is ever switched on
    bad = tmp_path / "bad_user.py"
    bad.write_text(
        "import math\n"
        "from cybloid.forces import UserPotential\n"
        "from cybloid.protocol import set_term, wait\n"
        "def well(x, y):\n"
        "    return math.sqrt(x - 60.0)\n"
        "def protocol(p, lab):\n"
        "    yield set_term('u', UserPotential(well, domain_um=(0, 0) + tuple(lab.fov_um)))\n"
        "    yield wait(1.0)\n")
    p2 = load_protocol(str(bad))
    lab, loop, vals = prepare(p2, {}, overrides={"camera.width_px": 64, "camera.height_px": 64, "particles.count": 2})
    laser_states = []
    orig_on = lab.laser.on
    lab.laser.on = lambda: (laser_states.append(True), orig_on())[1]
    with pytest.raises(CybloidError, match="not finite"):
        ProtocolRunner(loop, p2, vals).run()
    assert not laser_states and not lab.laser.is_on
    loop.close()
    lab.close()


def test_cli_rejects_a_negative_delay_with_one_line(capsys):
    from cybloid.cli import main

    code = main(["run", "delayed-harmonic", "--param", "tau=-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "tau" in err and "Traceback" not in err
