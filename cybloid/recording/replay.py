"""Replay: feed a session's recorded frames through the same pipeline again.

The protocol recorded with the session (its source and parameters) is re-run on a replay
lab whose camera serves the recorded frames (with their recorded timestamps) and whose
steering device captures the spot tables. Sessions recorded on the simulated lab in
virtual time are *re-simulated* alongside: the simulation (same seed, profile, virtual
clock) produces the frames the recording lacks (before recording started, or images not
stored with ``every_nth_frame``/``frames=False``), so tracker state and force history at
every recorded frame are those of the original run. Other sessions (hardware, real time)
are replayed from the recorded frames alone; frames before the first recorded one are then
unknown and served blank.

``verify`` compares each replayed spot table with the recorded one bit for bit.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from cybloid.devices import SteeringAck
from cybloid.errors import CybloidError, ParameterError, SessionError
from cybloid.frame import Frame, SpotTable
from cybloid.record import FrameRecord
from cybloid.recording.session import Session, open_session

log = logging.getLogger(__name__)


class EndOfSession(Exception):
    """Raised by the replay camera after the last recorded frame (ends the replay run)."""


class ReplayCamera:
    """Serves a session's frames; wraps the re-simulated camera when there is one."""

    def __init__(self, session: Session, clock: Any, inner: Any = None, shape: tuple[int, int] = (512, 512),
                 frame_period_s: float = 0.01) -> None:
        self.session = session
        self.clock = clock
        self.inner = inner
        self.height_px, self.width_px = shape
        self.frame_period_s = frame_period_s
        self._cursor = _Cursor(session.records())  # records are read in batches, in order, never all at once
        idx = session.indices
        self.last_index = int(idx[-1]) if len(idx) else -1
        self.first_index = int(idx[0]) if len(idx) else 0
        self.is_recording: Callable[[], bool] | None = None  # set by replay(): is the runner recording now?
        self.piece = int(session.metadata.get("piece", 1) or 1)
        self._piece = 0
        self._was_recording = False
        first = self._cursor.peek()
        self._t_blank = (first.t_exposure_start if first else 0.0) - 10.0  # blank frames before the recording
        self._grabs = 0
        self.served_recorded = 0
        self.served_simulated = 0
        self.served_blank = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def grab(self) -> Frame:
        if self.inner is not None:
            return self._grab_resimulated()
        return self._grab_recorded()

    def _frame_from(self, rec: FrameRecord, image: np.ndarray, dropped: int = 0) -> Frame:
        return Frame(image, rec.index, rec.t_exposure_start, rec.t_exposure_end, rec.t_arrival, dropped, None)

    def _grab_resimulated(self) -> Frame:
        f = self.inner.grab()
        if f.index > self.last_index:
            raise EndOfSession(f.index)
        rec = self._cursor.take(int(f.index))
        if rec is None:
            self.served_simulated += 1
            f.truth = None
            return f
        img = self.session.image(rec.index)
        if img is None:
            img = f.image
            self.served_simulated += 1
        else:
            self.served_recorded += 1
        return self._frame_from(rec, img, f.dropped_before)

    def _grab_recorded(self) -> Frame:
        k = self._grabs
        self._grabs += 1
        rec_on = bool(self.is_recording()) if self.is_recording is not None else True
        if rec_on and not self._was_recording:
            self._piece += 1
        self._was_recording = rec_on
        if not rec_on or self._piece != self.piece:
            # outside this session's piece of the run: unknown frames, a blank one keeps the protocol's timing
            t0 = self._t_blank
            self._t_blank += self.frame_period_s
            self.served_blank += 1
            self.clock.advance_to(t0)
            return Frame(np.zeros((self.height_px, self.width_px), np.uint16), -1_000_000 + k, t0,
                         t0 + 0.5 * self.frame_period_s, t0 + self.frame_period_s)
        rec = self._cursor.next()
        if rec is None:
            raise EndOfSession(k)
        img = self.session.image(rec.index)
        if img is None:
            raise SessionError(f"{self.session.path}: frame {rec.index} has no stored image; a session that cannot "
                               "be re-simulated (hardware or real time) replays only if every frame was stored")
        self.served_recorded += 1
        self.clock.advance_to(rec.t_arrival)
        self._t_blank = rec.t_arrival + self.frame_period_s
        return self._frame_from(rec, img)


class _Cursor:
    """Walks a stream of records in index order: ``take(i)`` skips to frame ``i``."""

    def __init__(self, records: Iterator[FrameRecord]) -> None:
        self._it = iter(records)
        self._head: FrameRecord | None = None
        self._done = False

    def peek(self) -> FrameRecord | None:
        if self._head is None and not self._done:
            self._head = next(self._it, None)
            self._done = self._head is None
        return self._head

    def next(self) -> FrameRecord | None:
        rec = self.peek()
        self._head = None
        return rec

    def take(self, index: int) -> FrameRecord | None:
        """The record of frame ``index`` (None if not recorded); records before it are passed over."""
        while True:
            rec = self.peek()
            if rec is None or rec.index > index:
                return None
            self._head = None
            if rec.index == index:
                return rec


class _Verifier:
    """Compares each replayed spot table, as it comes, with the recorded one (streamed, in order)."""

    def __init__(self, session: Session, result: "ReplayResult", stop_first: bool) -> None:
        self.cursor = _Cursor(session.records())
        self.result = result
        self.stop_first = stop_first

    def _miss(self, index: int, what: str) -> None:
        r = self.result
        r.mismatches += 1
        if r.mismatch is None:
            r.mismatch = Mismatch(int(index), what)

    def __call__(self, got: FrameRecord) -> None:
        r = self.result
        if self.stop_first and r.mismatch is not None:
            return
        while True:
            rec = self.cursor.peek()
            if rec is None or rec.index > got.index:
                return
            self.cursor.next()
            r.frames_compared += 1
            if rec.index < got.index:
                self._miss(rec.index, "not reproduced: the replay skipped this frame")
                continue
            if not got.spots.equals(rec.spots):
                self._miss(rec.index, _describe_difference(rec, got))
            return

    def finish(self) -> None:
        """Recorded frames the replay never reached."""
        r = self.result
        while not (self.stop_first and r.mismatch is not None):
            rec = self.cursor.next()
            if rec is None:
                return
            r.frames_compared += 1
            self._miss(rec.index, "not reproduced: the replay ended before this frame"
                       + (f" ({r.error})" if r.error else ""))


class _RecordTap:
    """The runner's recorder during a replay: follows record(True/False), forwards to a derived session."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.path = None

    def start(self, metadata: dict) -> None:
        if self.inner is not None:
            self.path = self.inner.start(metadata)

    def stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()

    def offer(self, record: FrameRecord) -> bool:
        return self.inner.offer(record) if self.inner is not None else True

    def event(self, event: dict) -> None:
        if self.inner is not None:
            self.inner.event(event)


class CaptureSteering:
    """Steering device that keeps the spot tables; forwards them to the re-simulated world."""

    def __init__(self, inner: Any = None, actuation_s: float = 0.0) -> None:
        self.inner = inner
        self.actuation_s = actuation_s
        self.tables: list[SpotTable] = []

    def send(self, table: SpotTable, t_sent: float) -> SteeringAck:
        self.tables.append(table)
        if self.inner is not None:
            return self.inner.send(table, t_sent)
        return SteeringAck(t_sent + self.actuation_s, len(table))

    def blank(self) -> None:
        if self.inner is not None:
            self.inner.blank()

    def heartbeat(self) -> None:
        pass

    def close(self) -> None:
        self.blank()


@dataclass
class Mismatch:
    """First difference between a recorded and a replayed frame."""

    frame: int
    what: str

    def __str__(self) -> str:
        return f"frame {self.frame}: {self.what}"


@dataclass
class ReplayResult:
    """What a replay did; ``mismatch`` is None when every recorded spot table was reproduced."""

    session: str
    mode: str  # "resimulated" or "recorded frames only"
    frames_replayed: int = 0
    frames_compared: int = 0
    frames_recorded_images: int = 0
    frames_simulated: int = 0
    frames_blank: int = 0
    mismatch: Mismatch | None = None
    mismatches: int = 0
    derived_session: str | None = None
    software_note: str | None = None
    status: str = "done"
    error: str | None = None
    records: dict[int, FrameRecord] = field(default_factory=dict, repr=False)

    @property
    def verified(self) -> bool:
        return self.mismatch is None and self.error is None and self.frames_compared > 0

    def lines(self) -> list[str]:
        out = [f"replay of {self.session} ({self.mode}): {self.frames_replayed} frames through the pipeline "
               f"({self.frames_recorded_images} recorded images, {self.frames_simulated} re-simulated, "
               f"{self.frames_blank} blank)"]
        if self.error:
            out.append(f"  replay stopped: {self.error}")
        if self.frames_compared:
            if self.mismatch is None:
                out.append(f"  verify: OK, {self.frames_compared} spot tables reproduced bit for bit")
            else:
                out.append(f"  verify: FAILED, {self.mismatches} of {self.frames_compared} frames differ; "
                           f"first: {self.mismatch}")
        if self.software_note:
            out.append(f"  note: {self.software_note}")
        if self.derived_session:
            out.append(f"  derived session written to {self.derived_session}")
        return out


def calibration_from_metadata(meta: Mapping[str, Any], prof: Any):
    """The calibration in force when the session was recorded (simulator truth if not stored)."""
    from cybloid.calibration.model import Calibration
    from cybloid.forcecurve import ForceCurve

    c = meta.get("calibration")
    if not c:
        return Calibration.from_profile(prof)
    try:
        fc = c["force_curve"]
        d = c.get("distortion")  # the quadratic part of the steering map, when the calibration had one
        dist = ({"distortion_su": np.asarray(d["quadratic_su"], float), "distortion_centre_px": tuple(d["centre_px"]),
                 "distortion_scale_px": float(d["scale_px"])} if d else {})
        return Calibration(float(c["pixel_size_um"]), np.asarray(c["steer_from_px"], float),
                           ForceCurve(float(fc["max_force_pN"]), float(fc["offset_at_max_um"]), float(fc["range_um"])),
                           float(c["latency_s"]), str(c.get("source", "session")), str(c.get("created", "")), **dist)
    except (KeyError, TypeError, ValueError) as exc:
        raise SessionError(f"session metadata: malformed calibration: {exc}") from None


def hardware_from_metadata(meta: Mapping[str, Any]):
    """A simulated hardware profile carrying the recorded session's safety limits."""
    from cybloid.hardware import HardwareProfile, Limits, load_hardware_profile

    hp = meta.get("hardware_profile") or {}
    lim = hp.get("limits")
    if isinstance(lim, Mapping):
        try:
            limits = Limits(**{k: float(v) for k, v in lim.items() if k in Limits.__dataclass_fields__})
        except (TypeError, ValueError) as exc:
            raise SessionError(f"session metadata: malformed hardware limits: {exc}") from None
    else:
        try:
            limits = load_hardware_profile(meta.get("hardware", "simulated")).limits
        except CybloidError:
            limits = Limits()
    sim = load_hardware_profile("simulated")
    return HardwareProfile(f"replay of {meta.get('hardware', '?')}", sim.roles, limits, "session replay", "<session>")


def load_session_protocol(session: Session, protocol: str | None = None):
    """The protocol to replay: the one recorded with the session (its stored source), or ``protocol``."""
    from cybloid.protocol.loader import load_protocol

    if protocol is not None:
        return load_protocol(protocol)
    meta = session.metadata
    src = meta.get("protocol_source")
    if not src:
        return tracking_only_protocol(session)
    orig = meta.get("protocol_path")
    if orig:  # the original file, if it still holds exactly the recorded source (keeps its imports working)
        try:
            if Path(orig).is_file() and Path(orig).read_text(encoding="utf-8") == src:
                return load_protocol(orig)
        except (OSError, UnicodeDecodeError):
            pass
    stem = Path(str(orig or meta.get("protocol") or "protocol")).stem.replace("-", "_")
    tmp = Path(tempfile.mkdtemp(prefix="cybloid-replay-")) / f"{stem}.py"
    tmp.write_text(src, encoding="utf-8")
    proto = load_protocol(tmp)
    proto.name = str(meta.get("protocol") or proto.name)
    return proto


def tracking_only_protocol(session: Session):
    """For sessions recorded without a protocol (dashboard): record every frame, no force program."""
    from cybloid.protocol.loader import LoadedProtocol
    from cybloid.protocol.steps import record, wait

    n = session.n_frames

    def protocol(p, lab):
        yield record(True)
        yield wait(n * lab.frame_period_s)
        yield record(False)

    return LoadedProtocol("tracking-only", Path("<replay: tracking only>"), "", protocol, (),
                          "Replay of a session recorded without a protocol: tracking only, no forces.")


def make_tracker(lab: Any, options: Mapping[str, Any] | None):
    """The default tracker for ``lab`` (same class and settings) with ``options`` changed; None if no options."""
    if not options:
        return None
    import inspect

    from cybloid.loop import default_tracker

    base = default_tracker(lab)
    cls = type(base)
    params = [k for k, p in inspect.signature(cls.__init__).parameters.items()
              if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in options:
        if k not in params:
            raise ParameterError(f"--tracker: {cls.__name__} has no setting '{k}' (known: {', '.join(params)})")
        v = options[k]
        if isinstance(v, float) and not np.isfinite(v):
            raise ParameterError(f"--tracker {k}={v}: must be a finite number")
    kw = {k: getattr(base, k) for k in params if hasattr(base, k)}
    kw.update(options)
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"--tracker: {cls.__name__}: {exc}") from None


def replay(session: Session | str | Path, *, verify: bool = False, resimulate: bool | None = None,
           protocol: str | None = None, params: Mapping[str, Any] | None = None,
           tracker_options: Mapping[str, Any] | None = None, record_dir: str | Path | None = None,
           on_progress: Callable[[float, float, str], Any] | None = None, stop_at_first_mismatch: bool = False,
           keep_records: bool = True) -> ReplayResult:
    """Replay a session through tracker -> history -> force program -> actuator.

    Parameters
    ----------
    session : Session or path
    verify : bool
        Compare every replayed spot table with the recorded one (bit for bit).
    resimulate : bool, optional
        Re-simulate frames the recording lacks (default: when the session was recorded on the
        simulated lab in virtual time).
    protocol, params : optional
        Another protocol file / changed parameters (re-analysis; implies a derived session).
    tracker_options : mapping, optional
        Changed settings of the default tracker (constructor keywords), e.g. ``{"memory": 1}``.
    record_dir : path, optional
        Write the replayed run as a new, derived session under this folder.
    keep_records : bool
        Keep every replayed record (without image) in ``result.records``; False for sessions too
        large for memory (verification is streamed either way).
    """
    from cybloid.protocol.runner import ProtocolRunner, prepare
    from cybloid.profile import profile_from_dict
    from cybloid.recording.format import lab_metadata
    from cybloid.recording.recorder import open_recorder

    s = session if isinstance(session, Session) else open_session(session)
    meta = s.metadata
    if s.n_frames == 0:
        raise SessionError(f"{s.path}: the session holds no frame records, nothing to replay")
    if "lab_profile" not in meta:
        raise SessionError(f"{s.path}: session metadata has no lab_profile; cannot rebuild the pipeline")
    try:
        prof = profile_from_dict(meta["lab_profile"], source=f"{s.path}/metadata.json lab_profile")
    except CybloidError as exc:
        raise SessionError(str(exc)) from None
    proto = load_session_protocol(s, protocol)
    given = dict(meta.get("params") or {}) if protocol is None else {}
    given.update(params or {})
    values = proto.values(given)
    can_resim = meta.get("hardware", "simulated") == "simulated" and not meta.get("realtime", False)
    if resimulate is None:
        resimulate = can_resim
    hw = hardware_from_metadata(meta)
    cal = calibration_from_metadata(meta, prof)
    seed = int(meta.get("seed", 0) or 0)
    lab, loop, values = prepare(proto, values, hardware=hw, lab=prof, seed=seed, realtime=False, calibration=cal)
    result = ReplayResult(str(s.path), "re-simulated" if resimulate else "recorded frames only")
    from cybloid.recording.format import software

    then, now = meta.get("software") or {}, software()
    keys = ("cybloid", "git", "source_sha256")
    if any(then.get(k) != now[k] for k in keys):
        result.software_note = (f"recorded with cybloid {then.get('cybloid')} (git {then.get('git')}, source "
                                f"{then.get('source_sha256')}), replayed with {now['cybloid']} (git {now['git']}, "
                                f"source {now['source_sha256']}): exact reproduction is promised for the same software")
    recorder = None
    try:
        if tracker_options:
            loop.tracker = make_tracker(lab, tracker_options)
        if "laser_power_mW" in meta:
            p = float(meta["laser_power_mW"])
            lab.laser.set_power(p)  # the loop's actuator follows the laser's power (cybloid.loop.laser_power_frac)
        cam = ReplayCamera(s, lab.clock, inner=lab.camera if resimulate else None,
                           shape=(prof.camera.height_px, prof.camera.width_px), frame_period_s=prof.frame_period_s)
        lab.camera = cam
        lab.steering = CaptureSteering(lab.steering if resimulate else None, prof.latency.actuation_s)
        replayed: dict[int, FrameRecord] = {}
        verifier = _Verifier(s, result, stop_at_first_mismatch) if verify else None
        count = [0]

        def sink(rec: FrameRecord) -> None:
            count[0] += 1
            if keep_records:
                replayed[int(rec.index)] = dataclasses.replace(rec, image=None)  # the runner may still record it
            if verifier is not None:
                verifier(rec)
        loop.add_sink(sink)
        if record_dir is not None:
            recorder = open_recorder(record_dir, name=f"{proto.name}-replay")
        derived = {"seed": seed, "hardware": meta.get("hardware"), "lab_profile": prof.to_dict(),
                   "realtime": False, **lab_metadata(lab),
                   "derived_from": {"session": str(s.path), "start_time": meta.get("start_time"),
                                    "software": meta.get("software"), "tracker_options": dict(tracker_options or {}),
                                    "tracker": type(loop.tracker).__name__,
                                    "protocol": None if protocol is None else str(protocol),
                                    "mode": result.mode}}
        tap = _RecordTap(recorder)
        runner = ProtocolRunner(loop, proto, values, recorder=tap, on_progress=on_progress, metadata=derived)
        cam.is_recording = lambda: runner.recording
        try:
            runner.run()
        except EndOfSession:
            pass
        except SessionError:
            raise  # the session's files are broken: an error, not a mismatch
        except CybloidError as exc:
            result.status, result.error = "failed", str(exc)
        result.records = replayed
        result.frames_replayed = count[0]
        result.frames_recorded_images = cam.served_recorded
        result.frames_simulated = cam.served_simulated
        result.frames_blank = cam.served_blank
        if recorder is not None and recorder.path is not None:
            result.derived_session = str(recorder.path)
        if verifier is not None:
            verifier.finish()
    finally:
        if recorder is not None:
            recorder.close()
        loop.close()
        lab.close()
        if protocol is None and proto.path.parent.name.startswith("cybloid-replay-"):
            shutil.rmtree(proto.path.parent, ignore_errors=True)
    return result


def _describe_difference(rec: FrameRecord, got: FrameRecord) -> str:
    a, b = rec.spots, got.spots
    if len(a) != len(b):
        return f"spot table differs: {len(a)} spots recorded, {len(b)} replayed"
    if a.power != b.power:
        return f"spot table differs: power {a.power} recorded, {b.power} replayed"
    for name in ("x_su", "y_su", "share", "target"):
        x, y = getattr(a, name), getattr(b, name)
        if not np.array_equal(x, y):
            k = int(np.flatnonzero(x != y)[0])
            return f"spot table differs: spot {k} {name} = {x[k]} recorded, {y[k]} replayed"
    return "spot table differs"
