"""NI-DAQ analog-output steering: the per-frame waveform (dwell times, voltage and slew limits,
blanking) on its own, the driver against a recording fake DAQ, and the refusal without NI-DAQmx."""

import numpy as np
import pytest

from cybloid.drivers.nidaq import NidaqSteering
from cybloid.drivers.nidaq_waveform import WaveformConfig, build_waveform, next_phase, su_to_volts
from cybloid.errors import DeviceError, ParameterError
from cybloid.frame import SpotTable

GALVO = WaveformConfig(rate_hz=100_000, frame_s=0.01, cycle_s=0.001, slew_v_per_s=2e5)


def _spots(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(20000, 45000, n), rng.uniform(20000, 45000, n)


def test_dwell_times_follow_the_shares_over_a_frame_and_over_many_frames():
    x, y = _spots(4)
    share = np.array([0.3, 0.2, 0.1, 0.05])
    n_frame = GALVO.samples_per_frame
    w = build_waveform(x, y, share, GALVO)
    assert w.volts.shape == (2, n_frame) and not w.saturated
    assert np.all(np.abs(w.on_samples - share * n_frame) <= 2)  # dithered: within 2 of 1000 samples
    # the beam is on only at a spot's own voltages, in table order within each cycle
    vx, vy = su_to_volts(x, GALVO.x_volts), su_to_volts(y, GALVO.y_volts)
    on = w.beam_on
    at = [np.flatnonzero(on & (w.volts[0] == vx[k]) & (w.volts[1] == vy[k])) for k in range(4)]
    assert sum(len(a) for a in at) == on.sum()
    m = GALVO.samples_per_cycle
    for c in range(GALVO.cycles_per_frame):
        firsts = [a[(a >= c * m) & (a < (c + 1) * m)].min() for a in at]
        assert firsts == sorted(firsts)
    # the dither keeps running across frames: the on-time error does not accumulate
    phase, total = 0.0, np.zeros(4)
    for _ in range(50):
        total += build_waveform(x, y, share, GALVO, phase).on_samples
        phase = next_phase(phase, GALVO)
    assert np.all(np.abs(total - 50 * share * n_frame) <= 2)


def test_slew_limit_moves_are_ramps_with_the_beam_off():
    x = np.array([0.0, 65535.0, 32768.0])  # full-range jumps: -5 V -> +5 V -> 0 V
    y = np.array([0.0, 65535.0, 0.0])
    w = build_waveform(x, y, np.array([0.2, 0.2, 0.2]), GALVO)
    step = GALVO.slew_v_per_s / GALVO.rate_hz  # 2 V per sample
    d = np.abs(np.diff(w.volts, axis=1))
    assert d.max() <= step + 1e-9
    # the frame starts by ramping from the last spot: continuous with the previous frame's end
    assert np.max(np.abs(w.volts[:, 0] - w.volts[:, -1])) <= step + 1e-9
    moving = np.concatenate([[False], np.any(d > 0, axis=0)])
    assert not np.any(w.beam_on & moving)  # never on while the mirror moves
    assert not w.beam_on[-1]  # every frame ends blanked: a stopped output holds the beam off


def test_voltage_limits_clip_and_count():
    cfg = WaveformConfig(x_volts=(-12.0, 12.0), y_volts=(-5.0, 5.0), limit_volts=(-8.0, 8.0), slew_v_per_s=1e9)
    assert su_to_volts(np.array([0, 65535]), cfg.x_volts) == pytest.approx([-12.0, 12.0])
    w = build_waveform(np.array([0.0, 32768.0, 65535.0, np.nan]), np.full(4, 32768.0), np.full(4, 0.2), cfg)
    assert w.clipped == 3  # two beyond +-8 V, one NaN
    assert w.volts.min() >= -8.0 and w.volts.max() <= 8.0
    assert w.on_samples[3] == 0  # a NaN spot gets no beam


def test_oversubscribed_cycle_is_scaled_and_flagged_and_impossible_moves_refused():
    x, y = _spots(5)
    w = build_waveform(x, y, np.full(5, 0.2), GALVO)  # shares sum to 1, but moves need time
    assert w.saturated
    frac = w.on_samples / GALVO.samples_per_frame
    assert np.all(frac < 0.2) and np.ptp(frac) < 0.01  # scaled down together
    assert w.beam_on.sum() <= GALVO.samples_per_frame - GALVO.cycles_per_frame
    far = np.tile([0.0, 65535.0], 30)
    with pytest.raises(ParameterError, match="use fewer spots or a longer cycle_s"):
        build_waveform(far, far, np.full(60, 0.01), GALVO)


def test_amplitude_blanking_channel():
    cfg = WaveformConfig(blank="amplitude", amplitude_volts=0.8, slew_v_per_s=1e9)
    w = build_waveform(*_spots(3), np.array([0.3, 0.3, 0.3]), cfg)
    assert w.volts.shape[0] == 3
    assert np.all(w.volts[2][w.beam_on] == 0.8) and np.all(w.volts[2][~w.beam_on] == 0.0)
    empty = build_waveform(np.zeros(0), np.zeros(0), np.zeros(0), cfg)
    assert not empty.beam_on.any() and np.all(empty.volts[2] == 0.0)


# ---------------------------------------------------------------------- driver vs a recording fake DAQ
class RecordingBackend:
    """Records every call the driver makes; models the output queue's sample counter."""

    def __init__(self, fail_write_at=None):
        self.calls = []
        self.queued_samples = 0
        self.fail_write_at = fail_write_at
        self.writes = 0

    def open_timed(self, ao, lo, hi, do_line, rate_hz, buffer_samples):
        self.calls.append(("open", tuple(ao), lo, hi, do_line, rate_hz, buffer_samples))
        self.queued_samples = 0
        return {"id": len(self.calls)}

    def write(self, h, volts, beam_on, timeout_s):
        self.writes += 1
        if self.fail_write_at == self.writes:
            raise DeviceError("nidaq: writing the waveform failed (output underflow: the host was late?)")
        self.calls.append(("write", volts.copy(), None if beam_on is None else beam_on.copy()))
        self.queued_samples += volts.shape[1]

    def start(self, h):
        self.calls.append(("start",))

    def queued(self, h):
        return self.queued_samples

    def close(self, h):
        self.calls.append(("close",))

    def write_static(self, ao, volts, do_line, beam_on):
        self.calls.append(("static", tuple(ao), tuple(volts), do_line, beam_on))


def test_driver_primes_starts_queues_and_blanks_on_the_fake_daq():
    fake = RecordingBackend()
    drv = NidaqSteering(GALVO, clock=None, ao_x="Dev2/ao0", ao_y="Dev2/ao1", blank_line="Dev2/port0/line3",
                        backend=fake)
    assert fake.calls == [("static", ("Dev2/ao0", "Dev2/ao1"), (0.0, 0.0), "Dev2/port0/line3", False)]
    x, y = _spots(3)
    ack = drv.send(SpotTable(x, y, np.array([0.3, 0.3, 0.3])), 1.0)
    kinds = [c[0] for c in fake.calls[1:]]
    assert kinds == ["open", "write", "write", "start"]  # two frames primed, then started
    _, ao, lo, hi, line, rate, buf = fake.calls[1]
    assert ao == ("Dev2/ao0", "Dev2/ao1") and (lo, hi) == (-10.0, 10.0) and line == "Dev2/port0/line3"
    assert rate == 100_000 and buf == 2 * GALVO.samples_per_frame
    assert ack.t_applied == 1.0 and ack.n_spots == 3 and not drv.blanked
    ack = drv.send(SpotTable(x, y, np.array([0.5, 0.1, 0.1])), 1.01)
    assert fake.calls[-1][0] == "write"  # regenerated for this frame, queued behind the playing ones
    assert ack.t_applied == pytest.approx(1.01 + 2 * GALVO.frame_s)
    w = fake.calls[-1]
    assert w[1].shape == (2, GALVO.samples_per_frame) and w[2].dtype == bool and not w[2][-1]
    drv.heartbeat()  # paused host: the last table keeps being fed
    assert fake.calls[-1][0] == "write"
    drv.blank()
    assert [c[0] for c in fake.calls[-2:]] == ["close", "static"] and fake.calls[-1][-1] is False
    assert drv.blanked
    n = len(fake.calls)
    drv.heartbeat()  # blanked: nothing is output
    assert len(fake.calls) == n


def test_driver_write_failure_is_a_device_error_and_the_output_restarts():
    fake = RecordingBackend(fail_write_at=4)
    drv = NidaqSteering(GALVO, clock=None, backend=fake)
    t = SpotTable(*_spots(2), np.array([0.4, 0.4]))
    drv.send(t, 0.0)  # writes 1, 2
    drv.send(t, 0.01)  # write 3
    with pytest.raises(DeviceError, match="underflow"):
        drv.send(t, 0.02)  # write 4 fails
    assert fake.calls[-1] == ("close",) and drv.stats["restarts"] == 1
    drv.send(t, 0.03)
    assert [c[0] for c in fake.calls[-4:]] == ["open", "write", "write", "start"]


def test_nidaq_profile_without_ni_daqmx_is_one_line_exit_2(tmp_path, capsys):
    try:
        from cybloid.drivers.nidaq import NidaqmxBackend

        NidaqmxBackend()
    except DeviceError:
        pass
    else:  # pragma: no cover - a machine with NI-DAQmx installed
        pytest.skip("NI-DAQmx is installed here")
    from cybloid.cli import main

    prof = tmp_path / "daq.toml"
    prof.write_text('format = "cybloid-hardware/1"\nname = "daq"\n[steering]\ndriver = "nidaq"\n'
                    'ao_x = "Dev1/ao0"\nao_y = "Dev1/ao1"\nblank = "digital"\n')
    rc = main(["run", "harmonic-trap", "--hardware", str(prof), "--uncalibrated", "-p", "duration=0.1",
               "--set", "camera.width_px=64", "--set", "camera.height_px=64", "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("cybloid: error")]
    assert rc == 2 and len(err) == 1 and ("NI-DAQmx" in err[0] or "nidaqmx" in err[0])


def test_nidaq_profile_options_are_validated(tmp_path, capsys):
    from cybloid.cli import main

    prof = tmp_path / "daq.toml"
    prof.write_text('format = "cybloid-hardware/1"\n[steering]\ndriver = "nidaq"\nx_volts = [-20, 20]\n')
    rc = main(["run", "harmonic-trap", "--hardware", str(prof), "--uncalibrated", "-p", "duration=0.1",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "[steering] x_volts must be" in err
