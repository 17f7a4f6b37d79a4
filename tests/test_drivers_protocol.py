"""CBSP/1 framing and the ASCII reply parsers: known values, round trips, and fuzzing.

Random, truncated or damaged replies must never hang or crash a driver: they raise a
DeviceError (a CybloidError with a message naming the device).
"""

import os
import struct
import threading
import tty

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybloid.drivers import laser as cobolt
from cybloid.drivers import stage as proscan
from cybloid.drivers import steering_protocol as sp
from cybloid.errors import CybloidError, DeviceError
from cybloid.frame import SpotTable


def test_crc16_is_ccitt_false():
    # the published check value of CRC-16/CCITT-FALSE for the ASCII string "123456789"
    assert sp.crc16(b"123456789") == 0x29B1


def test_frame_layout_matches_the_spec():
    f = sp.encode(sp.T_BLANK, 7)
    assert f[:2] == b"\xa5\x5a" and len(f) == sp.OVERHEAD
    assert struct.unpack("<HBB", f[2:6]) == (0, sp.T_BLANK, 7)
    assert struct.unpack("<H", f[6:8])[0] == sp.crc16(f[2:6])


def test_hundred_spots_fit_a_10ms_frame_at_921600_baud():
    n = sp.frame_bytes(100)
    assert n == 8 + 12 + 600
    assert sp.wire_time_s(n, 921600) < 0.0075  # 6.7 ms of a 10 ms frame
    assert sp.wire_time_s(n, 3_000_000) < 0.0025


def test_table_round_trip_and_quantisation():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 65535, 100)
    y = rng.uniform(0, 65535, 100)
    share = rng.dirichlet(np.ones(100))
    payload, clamped = sp.pack_table(x, y, share, 0.75, 123456)
    assert clamped == 0
    t, p, spots = sp.unpack_table(payload)
    assert t == 123456 and p == pytest.approx(0.75, abs=1 / 65535)
    assert np.all(np.abs(spots["x"] - x) <= 0.5) and np.all(np.abs(spots["y"] - y) <= 0.5)
    # shares floored: never more than full scale in total, never more than 1/65535 below
    assert int(spots["share"].astype(np.int64).sum()) <= 65535
    assert np.all(share - spots["share"] / 65535 < 1 / 65535 + 1e-12)
    assert np.all(spots["share"] / 65535 <= share + 1e-12)


def test_out_of_range_and_nan_spots_are_clamped_and_counted():
    payload, clamped = sp.pack_table(np.array([-10.0, 70000.0, np.nan, 5.0]), np.array([1.0, 2.0, 3.0, 4.0]),
                                     np.array([0.2, 0.2, 0.2, 0.2]), 1.0, 0)
    _, _, spots = sp.unpack_table(payload)
    assert clamped == 3
    assert list(spots["x"]) == [0, 65535, 0, 5]
    assert spots["share"][2] == 0  # a NaN spot gets no beam


def test_parser_resynchronises_after_garbage_and_damage():
    good = sp.encode(sp.T_TABLE | sp.REPLY, 3, sp.pack_reply(0, 1, 5, 99))
    bad = bytearray(good)
    bad[8] ^= 0xFF
    p = sp.FrameParser()
    msgs = p.feed(b"\x00\xa5garbage\xa5" + bytes(bad) + good[:5])
    msgs += p.feed(good[5:])
    assert len(msgs) == 1 and msgs[0].seq == 3
    r = sp.decode_reply(msgs[0])
    assert (r.request, r.status, r.flags, r.n, r.t_device_us) == (sp.T_TABLE, 0, 1, 5, 99)
    assert p.crc_errors >= 1


@given(st.binary(max_size=400), st.binary(max_size=64), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_parser_fuzz_finds_a_valid_frame_in_any_garbage(prefix, payload, seq):
    frame = sp.encode(0x81, seq, payload)
    p = sp.FrameParser()
    out = []
    data = prefix + frame + frame
    for i in range(0, len(data), 7):  # arbitrary chunking
        out += p.feed(data[i:i + 7])
    if not any(m.seq == seq and m.payload == payload for m in out):
        # only possible when garbage looks like the header of a frame longer than the data
        # so far: the parser waits for its end (the driver's deadline then gives up)
        assert p.buf[:2] == sp.SYNC
        length = struct.unpack_from("<H", p.buf, 2)[0]
        assert sp.HEADER_SIZE + length + sp.CRC_SIZE > len(p.buf)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_decode_reply_fuzz(payload):
    msg = sp.Message(0x81, 1, payload)
    try:
        r = sp.decode_reply(msg)
    except DeviceError:
        assert len(payload) < sp.REPLY_BODY.size
    else:
        assert r.request == 1


@pytest.mark.parametrize("parser", [
    lambda raw: cobolt.parse_ok(raw, "l1"),
    lambda raw: cobolt.parse_float(raw, "p?"),
    lambda raw: cobolt.parse_int(raw, "ilk?", (0, 1)),
    lambda raw: cobolt.parse_text(raw, "sn?"),
    lambda raw: proscan.parse_ints(raw, "P", 3),
    lambda raw: proscan.parse_expect(raw, "G,1,2", "R"),
    lambda raw: proscan.parse_number(raw, "RES,s"),
])
@given(raw=st.binary(max_size=80))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ascii_parsers_fuzz(parser, raw):
    try:
        parser(raw)
    except DeviceError as exc:
        assert isinstance(exc, CybloidError) and str(exc).split(":")[0] in ("laser", "stage")


def test_ascii_parsers_known_replies():
    assert cobolt.parse_float(b"0.5000\r\n", "p?") == 0.5
    with pytest.raises(DeviceError, match="illegal command"):
        cobolt.parse_ok(b"Syntax error: illegal command\r\n", "x")
    assert proscan.parse_ints(b"-120,35,0\r", "P", 3) == [-120, 35, 0]
    with pytest.raises(DeviceError, match="E,5 .command not found"):
        proscan.parse_expect(b"E,5\r", "XYZ", "R")


# ---------------------------------------------------------------------- drivers vs random devices
class RandomDevice:
    """A pseudo terminal that answers every request with the given bytes (or nothing)."""

    def __init__(self):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.path = os.ttyname(slave)
        self.reply = b""
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        import select
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if r:
                try:
                    os.read(self.master, 65536)
                    os.write(self.master, self.reply)
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.t.join()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def random_device():
    d = RandomDevice()
    yield d
    d.close()


@given(reply=st.binary(max_size=120))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_laser_driver_on_random_replies_raises_device_error(random_device, reply):
    from cybloid.drivers.laser import CoboltLaser

    random_device.reply = reply
    try:
        las = CoboltLaser(random_device.path, timeout_s=0.03)
    except DeviceError:
        return
    las.link.close()  # a random reply that happens to be valid is fine too


@given(reply=st.binary(max_size=120), truncate=st.integers(0, 40))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_steering_driver_on_random_or_truncated_replies_raises_device_error(random_device, reply, truncate):
    from cybloid.clock import VirtualClock
    from cybloid.drivers.steering import SerialSteering

    info = sp.INFO_BODY.pack(1, 100, 250, b"X" * 16)
    valid = sp.encode(sp.T_INFO | sp.REPLY, 1, sp.pack_reply(0, 0, 0, 0, info))
    random_device.reply = reply + valid[: len(valid) - truncate - 1]  # never a complete reply
    with pytest.raises(DeviceError, match="steering"):
        SerialSteering(random_device.path, VirtualClock(), timeout_s=0.03, retries=0)


# ---------------------------------------------------------------------- emulators vs random input
def _sim():
    from cybloid.calibration.model import Calibration
    from cybloid.clock import VirtualClock
    from cybloid.profile import load_lab_profile
    from cybloid.sim.world import SimWorld

    prof = load_lab_profile().with_overrides({"particles.count": 1})
    return SimWorld(prof), VirtualClock(), Calibration.from_profile(prof)


def _check_reply(message: bytes, ftype: int, payload: bytes):
    """The device's reply to a frame of type ``ftype``: it names the request, unknown types are refused and an
    accepted table reports as many spots as its payload held (12-byte header, 6 bytes a spot)."""
    r = sp.decode_reply(message)
    assert r.request == ftype
    if ftype not in sp.TYPE_NAMES:
        assert r.status == sp.ST_UNKNOWN_TYPE
    if r.status == sp.ST_OK and ftype == sp.T_TABLE:
        assert len(payload) == 12 + 6 * r.n
    return r


@given(ftype=st.integers(0, 127), seq=st.integers(0, 255), payload=st.binary(max_size=80), noise=st.binary(max_size=30))
@settings(max_examples=200, deadline=None)
def test_steering_emulator_answers_every_valid_frame_once(ftype, seq, payload, noise):
    from cybloid.drivers.emulate_steering import SteeringEmulator

    emu = SteeringEmulator(*_sim())
    try:
        out = emu.handle(noise.replace(sp.SYNC, b"") + sp.encode(ftype, seq, payload))
        msgs = sp.FrameParser().feed(out)
        assert len(msgs) == 1
        r = _check_reply(msgs[0], ftype, payload)
        assert r.seq == seq
    finally:
        emu.close()


@given(text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
@settings(max_examples=200, deadline=None)
def test_line_emulators_answer_any_command_with_a_reply_or_an_error(text):
    from cybloid.drivers.emulate_laser import LaserEmulator
    from cybloid.drivers.emulate_stage import StageEmulator

    if not text.strip():
        return
    las, stg = LaserEmulator(None), StageEmulator(None)
    try:
        r1 = las.handle(text.encode() + b"\r")
        r2 = stg.handle(text.encode() + b"\r")
        assert r1.endswith(b"\r\n") and r1.count(b"\r\n") == 1
        if r2 == b"":  # a move: its R comes when the stage stops
            assert stg.moving
        else:
            assert r2.endswith(b"\r") and (r2.count(b"\r") == 1 or text.strip() == "?")
        if r2.startswith(b"E,"):
            assert r2[2:-1] in (b"2", b"4", b"5", b"8", b"18", b"19", b"60")
    finally:
        las.close()
        stg.close()


# ---------------------------------------------------------------------- the same protocol tests on
# both device implementations: the Python emulator and the reference firmware's host build (C)
def _compiler_or_skip():
    from cybloid.drivers.emulate_firmware import find_compiler

    if find_compiler() is None:
        pytest.skip("no C compiler: the firmware's host build cannot be built here")


def _device(backend, world, clock, truth, **kw):
    if backend == "python":
        from cybloid.drivers.emulate_steering import SteeringEmulator

        return SteeringEmulator(world, clock, truth, **kw).start()
    _compiler_or_skip()
    from cybloid.drivers.emulate_firmware import FirmwareEmulator

    return FirmwareEmulator(world, clock, truth, **kw).start()


BACKENDS = ["python", "firmware"]


@pytest.fixture(params=BACKENDS)
def device(request):
    """(backend name, device, driver, world, clock, true calibration) with max 10 spots."""
    from cybloid.drivers.steering import SerialSteering

    w, clock, truth = _sim()
    w.advance_to(1)  # compile the dynamics now, not inside a test's heartbeat window
    emu = _device(request.param, w, clock, truth, heartbeat_timeout_s=30.0, max_spots=10)
    drv = SerialSteering(emu.port, clock, timeout_s=0.5)
    yield request.param, emu, drv, w, clock, truth
    drv.close()
    emu.close()


def _raw(drv, ftype, seq, payload=b"", frame=None):
    """Send one frame (or raw bytes) and read the reply to (ftype, seq)."""
    with drv.link.lock:
        drv.link.write(frame if frame is not None else sp.encode(ftype, seq, payload))
        return drv._read_reply(ftype, seq)


def test_table_lands_where_the_true_calibration_puts_it_with_its_shares(device):
    from cybloid.drivers.steering import table_from_um

    backend, emu, drv, w, clock, truth = device
    assert drv.max_spots == 10 and drv.serial_number.startswith("CBSP-")
    spots_um = np.array([[10.0, 20.0], [50.5, 60.25], [90.0, 5.0]])
    t_sent = 0.0123
    ack = drv.send(table_from_um(truth, spots_um, [0.5, 0.25, 0.2]), t_sent)
    lat = w.profile.latency.actuation_s
    assert ack.n_spots == 3
    # the table takes effect at or after it was sent; the firmware swaps tables at the end of
    # its dwell cycle (1 ms), the Python emulator at the next simulation tick
    assert t_sent <= ack.t_applied <= t_sent + lat + 1e-3 + w.dt
    w.advance_to(w.ticks(ack.t_applied + lat) + 1)
    got, share = w.active_spots()
    assert np.max(np.abs(got - spots_um)) < 1e-3  # whole steering units: 1.6 nm
    # the firmware's shares are its integer dwell times per 1000 us cycle
    tol = 2 / 65535 if backend == "python" else 1e-3 + 2 / 65535
    assert share == pytest.approx([0.5, 0.25, 0.2], abs=tol)
    assert not emu.blanked and not drv.blanked
    drv.blank()
    assert emu.blanked and drv.blanked
    w.advance_to(w.tick + 1)
    assert len(w.active_spots()[0]) == 0


def test_oversize_table_is_refused_and_changes_nothing(device):
    from cybloid.drivers.steering import table_from_um

    backend, emu, drv, w, clock, truth = device
    drv.send(table_from_um(truth, [[30.0, 30.0]], [0.8]), 0.0)
    drv.max_spots = 4096  # let the driver send it: the device must refuse
    with pytest.raises(DeviceError, match="more spots than the device holds"):
        drv.send(SpotTable(np.zeros(11), np.zeros(11), np.full(11, 0.01)), 0.001)
    w.advance_to(w.ticks(0.05))
    got, share = w.active_spots()
    assert len(got) == 1 and share[0] == pytest.approx(0.8, abs=2e-3)  # the refused table never applied
    drv.send(SpotTable(np.zeros(10), np.zeros(10), np.full(10, 0.1)), 0.06)  # exactly max_spots: fine


@pytest.mark.parametrize("ftype,payload,status", [
    (sp.T_TABLE, sp.TABLE_HEAD.pack(0, 65535, 2) + np.array([(1, 1, 40000), (2, 2, 40000)], sp.SPOT_DTYPE).tobytes(),
     sp.ST_SHARE_SUM),
    (sp.T_TABLE, sp.TABLE_HEAD.pack(0, 65535, 2) + b"\0" * 6, sp.ST_BAD_LENGTH),
    (sp.T_TABLE, b"\0" * 5, sp.ST_BAD_LENGTH),
    (sp.T_BLANK, b"x", sp.ST_BAD_LENGTH),
    (sp.T_HEARTBEAT, b"\0" * 7, sp.ST_BAD_LENGTH),
    (sp.T_INFO, b"\0", sp.ST_BAD_LENGTH),
    (sp.T_SET_TIMEOUT, struct.pack("<H", 9), sp.ST_BAD_VALUE),
    (sp.T_SET_TIMEOUT, struct.pack("<H", 60001), sp.ST_BAD_VALUE),
    (sp.T_SET_TIMEOUT, b"\0", sp.ST_BAD_LENGTH),
    (0x33, b"", sp.ST_UNKNOWN_TYPE),
    (0x7F, b"abc", sp.ST_UNKNOWN_TYPE),
])
def test_malformed_requests_get_the_status_the_spec_names(device, ftype, payload, status):
    backend, emu, drv, *_ = device
    r = _raw(drv, ftype, 77, payload)
    assert (r.request, r.seq, r.status, r.n) == (ftype, 77, status, 0)
    assert r.flags & sp.F_BLANKED  # nothing was un-blanked by a refused request
    assert _raw(drv, sp.T_HEARTBEAT, 78, struct.pack("<Q", 0)).status == sp.ST_OK  # link still usable


def test_damaged_frames_are_dropped_silently_and_the_next_one_is_answered(device):
    backend, emu, drv, *_ = device
    good = sp.encode(sp.T_INFO, 21)
    bad = bytearray(sp.encode(sp.T_BLANK, 20))
    bad[-1] ^= 0x5A  # bad CRC
    with drv.link.lock:
        drv.link.write(bytes(bad))
        with pytest.raises(DeviceError, match="no valid acknowledgement"):
            drv._read_reply(sp.T_BLANK, 20)
        drv.link.write(b"\xa5\xa5\x00" + bytes(bad) + good)  # garbage, damage, then a good frame
        r = drv._read_reply(sp.T_INFO, 21)
    version, max_spots, hb_ms, serial = sp.INFO_BODY.unpack_from(r.extra, 0)
    assert (r.status, version, max_spots, hb_ms) == (sp.ST_OK, 1, 10, 30000)
    assert len(sp.encode(r.request | sp.REPLY, r.seq, sp.pack_reply(0, 0, 0, 0, r.extra))) == 41


def test_set_timeout_then_lost_heartbeat_blanks_the_beam(device):
    import time

    from cybloid.drivers.steering import table_from_um

    backend, emu, drv, w, clock, truth = device
    assert _raw(drv, sp.T_SET_TIMEOUT, 5, struct.pack("<H", 100)).status == sp.ST_OK
    drv.send(table_from_um(truth, [[20.0, 20.0]], [1.0]), 0.0)
    assert not emu.blanked
    for _ in range(5):  # heartbeats keep it alive
        time.sleep(0.03)
        drv.heartbeat()
    assert not emu.blanked
    t_last = time.monotonic()
    deadline = t_last + 5.0
    while not emu.blanked and time.monotonic() < deadline:
        time.sleep(0.005)
    assert emu.blanked
    t_blank, reason = emu.blank_events[-1]
    assert reason == "heartbeat timeout"
    assert 0.1 <= t_blank - t_last + 0.01 < 0.6
    w.advance_to(w.tick + 1)
    assert len(w.active_spots()[0]) == 0  # the world's beam is off too
    drv.heartbeat()  # the next reply says the beam was blanked behind the host's back
    assert drv.stats["heartbeat_expired"] == 1 and drv.blanked
    drv.heartbeat()
    assert drv.stats["heartbeat_expired"] == 1  # reported once


def test_device_fault_blanks_and_refuses_tables(device):
    from cybloid.drivers.steering import table_from_um

    backend, emu, drv, w, clock, truth = device
    drv.send(table_from_um(truth, [[20.0, 20.0]], [1.0]), 0.0)
    emu.inject("fault")
    assert emu.blanked
    with pytest.raises(DeviceError, match="device fault"):
        drv.send(table_from_um(truth, [[20.0, 20.0]], [1.0]), 0.01)
    r = _raw(drv, sp.T_HEARTBEAT, 9, struct.pack("<Q", 0))
    assert r.flags & sp.F_FAULT and r.flags & sp.F_BLANKED


@pytest.mark.parametrize("backend", BACKENDS)
@given(frames=st.lists(st.tuples(st.integers(0, 127), st.binary(max_size=40), st.binary(max_size=12)),
                       min_size=1, max_size=6))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_valid_frame_is_answered_exactly_once_over_the_pty(backend, frames):
    """Random frames behind random noise, in one write: one reply per frame, in order, same SEQ."""
    import time

    from cybloid.drivers.serial_link import SerialLink

    w, clock, truth = _sim()
    emu = _device(backend, w, clock, truth, heartbeat_timeout_s=5.0)
    link = SerialLink(emu.port, 921600, 0.5, name="steering")
    try:
        data = b"".join(noise.replace(b"\xa5", b"") + sp.encode(t, i, p) for i, (t, p, noise) in enumerate(frames))
        link.write(data)
        parser, got = sp.FrameParser(), []
        deadline = time.monotonic() + 2.0
        while len(got) < len(frames) and time.monotonic() < deadline:
            got += parser.feed(link.read_some(deadline))
        assert [m.seq for m in got] == list(range(len(frames)))
        for m, (t, p, _) in zip(got, frames):
            _check_reply(m, t, p)
    finally:
        link.close()
        emu.close()
