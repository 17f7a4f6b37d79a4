"""One run of a sweep: a protocol in virtual time on the simulated lab, reduced to observables."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from cybloid.protocol.loader import LoadedProtocol, load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare
from cybloid.sweep.observables import RunData, compute_observables, resolve_observables


def _lean(record: Any) -> Any:
    """The record without its image (a shallow copy: a session recorder may still be writing the image)."""
    return record if getattr(record, "image", None) is None else dataclasses.replace(record, image=None)


class WindowRecorder:
    """A runner recorder that keeps the frames inside ``record(True)`` windows.

    Everything is also forwarded to ``forward`` (a session recorder), if given.
    """

    def __init__(self, forward: Any = None) -> None:
        self.forward = forward
        self.records: list = []
        self.path = getattr(forward, "path", None)

    def start(self, metadata: Mapping[str, Any]) -> None:
        if self.forward is not None:
            self.forward.start(metadata)
            self.path = getattr(self.forward, "path", self.path)

    def stop(self) -> None:
        if self.forward is not None:
            self.forward.stop()
            self.path = getattr(self.forward, "path", self.path)

    def offer(self, record: Any) -> None:
        self.records.append(_lean(record))
        if self.forward is not None:
            self.forward.offer(record)

    def event(self, ev: Mapping[str, Any]) -> None:
        if self.forward is not None:
            self.forward.event(ev)


def run_point(protocol: str | Path | LoadedProtocol, params: Mapping[str, Any] | None = None, seed: int = 0,
              lab_overrides: Mapping[str, Any] | None = None, observables: Sequence[str] | None = None, *,
              lab: Any = None, skip_s: float = 0.0, session_dir: str | Path | None = None) -> dict[str, Any]:
    """Run ``protocol`` once in virtual time on the simulated lab and compute its observables.

    Parameters
    ----------
    protocol : str, Path or LoadedProtocol
        Bundled name, ``.py`` path or a loaded protocol.
    params : mapping
        Protocol parameter values (the rest keep their defaults).
    seed : int
        Seed of the simulated lab; the same seed gives bit-identical results.
    lab_overrides : mapping, optional
        Lab-profile overrides, e.g. ``{"camera.width_px": 128}``.
    observables : sequence of str, optional
        Observable names (see :data:`cybloid.sweep.observables.OBSERVABLES`); default: the
        protocol's ``OBSERVABLES`` or the defaults.
    lab : str, LabProfile or dict, optional
        Lab profile (bundled name, TOML path, profile, or its ``to_dict()``).
    skip_s : float
        Seconds (experiment time) dropped at the start of the analysed frames.
    session_dir : path, optional
        Also record the session under this directory (needs ``cybloid.recording``).

    Returns
    -------
    dict
        ``status`` ("done"), ``frames`` (all frames), ``frames_analysed``, ``experiment_s`` (s),
        ``saturated_frames``, one entry per observable column, ``observable_errors`` and
        ``session`` (path or ""). A run that fails raises (after the laser is off).
    """
    from cybloid.profile import profile_from_dict

    proto = protocol if isinstance(protocol, LoadedProtocol) else load_protocol(protocol)
    values = proto.values(params)
    names = resolve_observables(observables, proto.module, proto.name)
    if isinstance(lab, Mapping):
        lab = profile_from_dict(lab, source="sweep spec")
    the_lab, loop, vals = prepare(proto, values, lab=lab, seed=int(seed), overrides=dict(lab_overrides or {}) or None)
    forward = None
    try:
        if session_dir is not None:
            from cybloid.recording import open_recorder  # provided by the recording module

            Path(session_dir).mkdir(parents=True, exist_ok=True)
            forward = open_recorder(str(session_dir))
        loop.keep_images = forward is not None
        everything: list = []
        loop.add_sink(lambda rec: everything.append(_lean(rec)))
        window = WindowRecorder(forward)
        meta = {"seed": int(seed), "hardware": the_lab.hardware.name, "lab_profile": the_lab.profile.to_dict(),
                "realtime": False, "sweep": True}
        summary = ProtocolRunner(loop, proto, vals, recorder=window, metadata=meta).run()
        prof = the_lab.profile
    finally:
        try:
            if forward is not None:
                forward.close()  # wait until the session is complete on disk
        finally:
            loop.close()
            the_lab.close()
    recs = window.records or everything
    if recs and skip_s > 0:
        t0 = recs[0].t_exposure_mid
        recs = [r for r in recs if r.t_exposure_mid - t0 >= skip_s]
    data = RunData(recs, prof.frame_period_s, prof.fov_um, prof.kT, prof.gamma, prof.diffusion, vals, proto.module)
    out: dict[str, Any] = {"status": summary.status, "frames": int(summary.frames), "frames_analysed": len(recs),
                           "experiment_s": float(summary.experiment_s),
                           "saturated_frames": int(summary.saturated_frames)}
    out.update(compute_observables(names, data))
    out["session"] = str(window.path or "") if forward is not None else ""
    return out


# ---------------------------------------------------------------------------- on a worker
_LOADED: dict[str, LoadedProtocol] = {}


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def load_from_source(name: str, source: str, path: str | None = None) -> LoadedProtocol:
    """The protocol with this exact source: from ``path`` if it still holds it, else from a private copy.

    Workers of a remote cluster do not share the client's files, so a sweep ships the source.
    """
    key = source_hash(source)
    if key in _LOADED:
        return _LOADED[key]
    candidate = Path(path) if path else None
    try:
        ok = candidate is not None and candidate.is_file() and source_hash(candidate.read_text(encoding="utf-8")) == key
    except (OSError, UnicodeDecodeError):
        ok = False
    if not ok:
        folder = Path(tempfile.gettempdir()) / "cybloid-sweep-protocols" / key[:16]
        folder.mkdir(parents=True, exist_ok=True)
        candidate = folder / (name.replace("-", "_") + ".py")
        if not candidate.exists():
            tmp = candidate.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source, encoding="utf-8")
            os.replace(tmp, candidate)
    proto = load_protocol(candidate)
    _LOADED[key] = proto
    return proto


def execute_task(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one sweep task (a plain dict, so it travels to any worker); adds ``wall_s``, ``cpu_s`` (s) and ``worker``."""
    t0, c0 = time.perf_counter(), time.process_time()
    proto = load_from_source(payload["protocol"], payload["protocol_source"], payload.get("protocol_path"))
    row = run_point(proto, payload["params"], payload["seed"], payload.get("lab_overrides"),
                    payload.get("observables"), lab=payload.get("lab") or None, skip_s=float(payload.get("skip_s", 0.0)),
                    session_dir=payload.get("session_dir"))
    row["wall_s"] = time.perf_counter() - t0
    row["cpu_s"] = time.process_time() - c0
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row
