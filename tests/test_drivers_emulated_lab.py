"""The `emulated` hardware profile: the whole serial path gives the pure simulation's physics;
hardware profiles with serial drivers are validated with clear errors."""

import numpy as np
import pytest

from cybloid.cli import main
from cybloid.errors import ProfileError
from cybloid.hardware import hardware_from_dict, load_hardware_profile
from cybloid.lab import open_lab
from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare


def _run(hardware, params, overrides, seed):
    proto = load_protocol("harmonic-trap")
    lab, loop, vals = prepare(proto, params, hardware=hardware, overrides=overrides, seed=seed)
    recs = []
    loop.add_sink(recs.append)
    loop.keep_images = False
    summary = ProtocolRunner(loop, proto, vals).run()
    return proto, lab, loop, vals, recs, summary


def test_emulated_run_follows_the_simulated_run():
    """Same seed: the emulated lab's particles follow the simulated lab's to within the
    steering protocol's rounding (1 steering unit = 1.6 nm), with identical apply times."""
    params = {"duration": 1.0, "traps": 4, "stiffness": 0.05}
    over = {"camera.width_px": 128, "camera.height_px": 128}
    out = {}
    for hw in ("simulated", "emulated"):
        proto, lab, loop, vals, recs, summary = _run(hw, params, over, seed=3)
        assert summary.status == "done" and not summary.laser_on_at_end
        out[hw] = (np.array([r.truth["positions_um"] for r in recs]), np.array([r.t_applied for r in recs]))
        if hw == "emulated":
            emus = {type(r).__name__: r for r in lab.resources}
            assert emus["SteeringEmulator"].tables == len(recs)  # every table went over the pty
            assert not emus["LaserEmulator"].on and emus["SteeringEmulator"].blanked
        loop.close()
        lab.close()
    (pa, ta), (pb, tb) = out["simulated"], out["emulated"]
    assert pa.shape == pb.shape and len(ta) == 100
    np.testing.assert_allclose(ta, tb, atol=1e-9)
    assert np.max(np.abs(pa - pb)) < 0.02  # um, after 1 s of Brownian motion (rms step 0.15 um/frame)


@pytest.mark.slow
def test_harmonic_trap_equipartition_through_the_serial_path():
    """Position variance per axis = kT/stiffness within 5%, forces through CBSP frames on a pty."""
    k = 0.03
    proto, lab, loop, vals, recs, summary = _run(
        "emulated", {"duration": 25.0, "traps": 36, "stiffness": k, "spacing": 8.0},
        {"camera.width_px": 256, "camera.height_px": 256}, seed=11)
    assert summary.status == "done" and not summary.laser_on_at_end
    emus = {type(r).__name__: r for r in lab.resources}
    assert emus["SteeringEmulator"].tables == len(recs) == 2500
    assert not np.any(lab.world.ext_force)
    assert sum(len(r.spots) > 0 for r in recs) > 0.95 * len(recs)
    ids = np.unique(np.concatenate([r.ids for r in recs]))
    assert len(ids) == 36
    centres = proto.module.trap_centres(vals, lab.profile.fov_um)
    skip = int(5 * lab.profile.gamma / k / lab.frame_period_s)  # 5 relaxation times
    variances = []
    for pid in ids:
        xy = np.array([r.positions_um[r.ids == pid][0] for r in recs[skip:]])
        c = centres[np.argmin(np.hypot(*(centres - xy.mean(0)).T))]
        variances.extend(np.mean((xy - c) ** 2, axis=0))
    assert float(np.mean(variances)) == pytest.approx(lab.profile.kT / k, rel=0.05)
    loop.close()
    lab.close()


def test_cli_runs_harmonic_trap_on_the_emulated_hardware(capsys):
    rc = main(["run", "harmonic-trap", "--hardware", "emulated", "-p", "duration=0.3", "-p", "traps=1",
               "--set", "camera.width_px=64", "--set", "camera.height_px=64", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "protocol harmonic-trap: done" in out and "laser off" in out


def _profile(**roles):
    base = {"steering": {"driver": "cbsp", "port": "emulator"}, "laser": {"driver": "cobolt", "port": "emulator"},
            "stage": {"driver": "proscan", "port": "emulator"}}
    for role, table in roles.items():
        base[role] = table
    return hardware_from_dict(base, "bench.toml")


@pytest.mark.parametrize("roles,message", [
    ({"laser": {"driver": "coherent"}}, r"bench.toml: \[laser\] unknown driver 'coherent' \(known: cobolt, simulated"),
    ({"laser": {"driver": "cobolt", "port": "/dev/ttyNOPE7"}}, r"\[laser\] port: serial port '/dev/ttyNOPE7' does not exist"),
    ({"laser": {"driver": "cobolt"}}, r"\[laser\] driver 'cobolt' needs 'port'"),
    ({"steering": {"driver": "cbsp", "port": "emulator", "baudrate": 12345}}, r"\[steering\] baudrate must be one of"),
    ({"steering": {"driver": "cbsp", "port": "emulator", "heartbeat_timeout_ms": 0}},
     r"heartbeat_timeout_ms must be between 10 and 60000"),
    ({"stage": {"driver": "proscan", "port": "emulator", "travel": 5}}, r"\[stage\] unknown key 'travel'.*travel_um"),
    ({"stage": {"driver": "proscan", "port": "emulator", "travel_um": -1.0}}, r"travel_um must be between 0"),
    ({"camera": {"driver": "tiff"}}, r"\[camera\] driver 'tiff' needs 'path'"),
    ({"laser": {"driver": "cobolt", "port": 3}}, r"\[laser\] port must be a device path"),
])
def test_bad_hardware_profiles_give_clear_profile_errors(roles, message):
    with pytest.raises(ProfileError, match=message):
        open_lab(_profile(**roles), overrides={"particles.count": 1})


def test_limits_are_validated_and_the_power_limit_is_enforced():
    with pytest.raises(ProfileError, match=r"\[limits\] max_power_mW must be a non-negative number"):
        hardware_from_dict({"limits": {"max_power_mW": -5}}, "x.toml")
    hw = load_hardware_profile("emulated")
    data = {r: dict(hw.roles[r]) for r in hw.roles}
    data["limits"] = {"max_power_mW": 120.0}
    with open_lab(hardware_from_dict(data, "x.toml"), overrides={"particles.count": 1}) as lab:
        emu = {type(r).__name__: r for r in lab.resources}["LaserEmulator"]
        assert lab.laser.power_mW() == 120.0 and emu.set_W == pytest.approx(0.12)
        lab.laser.set_power(10_000.0)
        assert emu.set_W == pytest.approx(0.12)
        # the emulated laser mirrors its *emission* into the simulated world: nothing while off,
        # the clamped set point once on (no warm-up in this profile)
        assert lab.world.power_frac == 0.0
        lab.laser.on()
        try:
            # (the emulated power meter reads within 0.1% of the set point, as a real one would)
            assert lab.world.power_frac == pytest.approx(120.0 / lab.profile.laser.max_power_mW, rel=1e-3)
        finally:
            lab.laser.off()
        assert lab.world.power_frac == 0.0 and not lab.world.laser_on


def test_cli_reports_profile_errors_in_one_line(tmp_path, capsys):
    p = tmp_path / "hw.toml"
    p.write_text('[laser]\ndriver = "cobolt"\nport = "/dev/ttyNOPE7"\n')
    rc = main(["run", "harmonic-trap", "--hardware", str(p), "--uncalibrated", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "Traceback" not in err
