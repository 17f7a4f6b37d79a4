"""cybloid from Python: run protocols, open sessions and track videos from a notebook or a script.

The command line is built on the same pieces (protocol loader, runner, recorder, session
reader, tracker); see ``docs/python-api.md``::

    import cybloid
    run = cybloid.run("harmonic-trap", duration=2, seed=1)
    run.tracks                      # trackpy-style DataFrame: frame, particle, x, y (um), t (s), ...
    s = cybloid.open_session(path)  # s.frames is lazy (t, y, x); s.tracks, s.events, s.metadata
    cybloid.track(frames, 11)       # the tracker of ``cybloid track``: arrays in, DataFrame out
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from cybloid.errors import CybloidError, ParameterError, ProtocolError

__all__ = ["Run", "Session", "run", "open_session", "track", "load_protocol"]

ProgressFn = Callable[[float, float, str], Any]
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- protocols
def load_protocol(protocol: Any, params: Mapping[str, Any] | None = None):
    """A runnable protocol from a bundled name, a ``.py`` path, a loaded protocol, or a generator function.

    A generator function ``f(p, lab)`` defined in a notebook becomes a protocol whose parameters
    are its ``PARAMS`` attribute (a list of :class:`~cybloid.params.Param`) if it has one, otherwise
    one parameter per keyword given to :func:`run` (typed by the value given). Its optional
    ``simulation`` attribute sets up the simulated lab like a protocol file's ``simulation(p, lab)``.
    """
    from cybloid.params import Param
    from cybloid.protocol.loader import LoadedProtocol
    from cybloid.protocol.loader import load_protocol as load_file

    if isinstance(protocol, LoadedProtocol):
        return protocol
    if isinstance(protocol, (str, os.PathLike)):
        return load_file(protocol)
    if callable(protocol):
        if not inspect.isgeneratorfunction(protocol):
            raise ProtocolError(f"protocol {getattr(protocol, '__name__', protocol)!r} must be a generator function "
                                "(use 'yield' to hand steps to the runner)")
        name = getattr(protocol, "__name__", "protocol").replace("_", "-")
        declared = getattr(protocol, "PARAMS", None)
        if declared is None:  # one parameter per keyword given, typed by its value
            declared = [Param(k, v) for k, v in (params or {}).items()]
        try:
            source = inspect.getsource(protocol)
            path = Path(inspect.getsourcefile(protocol) or f"<{name}>")
        except (OSError, TypeError):
            source, path = "", Path(f"<{name}>")
        sim = getattr(protocol, "simulation", None)
        return LoadedProtocol(name, path, source, protocol, tuple(declared), protocol.__doc__ or "",
                              sim if callable(sim) else None)
    raise ProtocolError(f"protocol must be a bundled name, a .py path or a generator function, got "
                        f"{type(protocol).__name__}")


# --------------------------------------------------------------------------- tables
def tracks_from_records(records: Iterable[Any]):
    """The trackpy-style table of in-memory frame records (same columns as :meth:`Session.tracks`)."""
    import pandas as pd

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("frame", "particle", "x", "y", "t", "mass", "quality",
                                                         "fx", "fy", "saturation")}
    for r in records:
        n = len(r.ids)
        if n == 0:
            continue
        pos = np.asarray(r.positions_um, float).reshape(-1, 2)
        frc = np.asarray(r.forces_pN, float).reshape(-1, 2)
        rows["frame"].append(np.full(n, r.index, np.int64))
        rows["particle"].append(np.asarray(r.ids, np.int64))
        rows["x"].append(pos[:, 0])
        rows["y"].append(pos[:, 1])
        rows["t"].append(np.full(n, r.t_exposure_mid))
        rows["mass"].append(np.asarray(r.mass, np.float32))
        rows["quality"].append(np.asarray(r.quality, np.uint8))
        rows["fx"].append(frc[:, 0])
        rows["fy"].append(frc[:, 1])
        rows["saturation"].append(np.asarray(r.saturation, np.uint8))
    dtypes = {"frame": np.int64, "particle": np.int64, "mass": np.float32, "quality": np.uint8,
              "saturation": np.uint8}
    return pd.DataFrame({k: (np.concatenate(v) if v else np.zeros(0, dtypes.get(k, float))) for k, v in rows.items()})


# --------------------------------------------------------------------------- sessions
class _FromRaw:
    """A read-only attribute of :class:`Session` that is the streaming reader's (``session.raw``) own."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, session: "Session | None", owner: type | None = None) -> Any:
        return self if session is None else getattr(session.raw, self.name)

    def __set__(self, session: "Session", value: Any) -> None:
        raise AttributeError(f"Session.{self.name} is read-only (it is the recording's)")


class Session:
    """A recorded session opened read-only (see :func:`open_session`); nothing is read until asked for.

    Attributes
    ----------
    path : Path
    metadata : dict
        Protocol, parameters, seed, profiles, calibration, software of the recording.
    """

    def __init__(self, session: Any) -> None:
        self.raw = session  # the cybloid.recording.Session (streaming reader)
        self.path: Path = session.path
        self.metadata: dict[str, Any] = session.metadata
        self._tracks = None

    def __repr__(self) -> str:
        return (f"<cybloid.Session {self.path.name}: {self.raw.n_frames} frames, "
                f"{len(self.raw.frame_indices)} images, {'complete' if self.complete else 'INCOMPLETE'}>")

    complete = _FromRaw("True when recording stopped cleanly.")
    n_frames = _FromRaw("Frame records in the session (one per camera frame, stored image or not).")
    pixel_size_um = _FromRaw("Image pixel size (um) of the recording.")
    frame_period_s = _FromRaw("Camera frame period (s) of the recording.")
    frames = _FromRaw("The stored images as a lazy ``(t, y, x)`` array: index it, iterate it, or ``.to_dask()``.")

    @property
    def frame_times(self):
        """One row per stored image: ``t`` (position in :attr:`frames`), camera ``frame``, lab times (s)."""
        return self.raw.frame_times()

    @property
    def tracks(self):
        """trackpy-style table: frame, particle, x, y (um), t (s), mass, quality, fx, fy (pN), saturation
        (read once, then kept; use ``raw.iter_tracks()`` for sessions whose tracks do not fit in memory)."""
        if self._tracks is None:
            self._tracks = self.raw.tracks()
        return self._tracks

    @property
    def records(self):
        """Per-frame table: frame, t (s), laser_on, n tracked, spots, loop timings (ms), latency (s)."""
        return self.raw.frames_table()

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event log: protocol steps, marks, faults, how the run ended."""
        return self.raw.events()

    def report(self, out: str | os.PathLike | None = None):
        """The HTML report of ``cybloid report`` (shown inline in Jupyter); written to ``out`` if given."""
        from cybloid.recording.report import build_report

        rep = build_report(self.raw)
        if out is not None:
            rep.write(out)
        return rep

    def track(self, diameter: int, **options: Any):
        """Re-track the stored frames with other settings (see :func:`track`); pixels, frames counted 0.."""
        return track(self.frames, diameter, **options)


def open_session(path: str | os.PathLike) -> Session:
    """Open a recorded session (written by ``cybloid run --record``, :func:`run` or the dashboard).

    Raises
    ------
    SessionError
        Missing or corrupt files, unknown format version.
    """
    from cybloid.recording.session import open_session as open_raw

    return Session(open_raw(path))


# --------------------------------------------------------------------------- tracking
def _keywords(text: str) -> str:
    """A message of ``cybloid track`` in the words of :func:`track`: ``--search-range`` -> ``search_range``."""
    import re

    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), text)


def _track_args(diameter: Any, options: Mapping[str, Any]):
    """The options of ``cybloid track``, parsed by its own parser (same names, defaults and checks)."""
    import argparse

    from cybloid.cli import track as track_cli

    parser = argparse.ArgumentParser(prog="cybloid", exit_on_error=False)
    track_cli.register(parser.add_subparsers())
    sub = next(a for a in parser._subparsers._group_actions[0].choices.values())  # the 'track' parser
    flags = {a.dest: a for a in sub._actions if a.option_strings}
    argv = ["track", "<frames>", "--out", "<api>.parquet", "--no-progress"]
    if diameter is not None:
        if isinstance(diameter, bool) or not isinstance(diameter, (int, np.integer)):
            raise ParameterError(f"track: diameter must be an odd whole number of pixels, got {diameter!r}")
        argv += ["--diameter", str(int(diameter))]
    for key, value in options.items():
        if key in ("out", "video", "no_progress", "diameter", "compare_trackpy", "compare_frames") or key not in flags:
            known = sorted(k for k in flags if k not in ("out", "no_progress", "compare_trackpy", "compare_frames",
                                                         "help"))
            raise ParameterError(f"track: unknown option {key!r} (known: {', '.join(known)})")
        if value is None:
            continue
        if key == "invert":
            argv.append("--invert" if value else "--no-invert")
            continue
        action = flags[key]
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise ParameterError(f"track: {key} must be True or False, got {value!r}")
            if value:
                argv.append(action.option_strings[-1])
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool) or (isinstance(value, float) and not np.isfinite(value)):
            raise ParameterError(f"track: {key} must be a finite number, got {value!r}")
        argv += [action.option_strings[-1], str(value)]
    try:
        return parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ParameterError(f"track: {exc}") from None


def track(frames_or_path: Any, diameter: int | None = None, **options: Any):
    """Locate and link particles in every frame: ``cybloid track`` from Python (arrays in, DataFrame out).

    Parameters
    ----------
    frames_or_path : array (T, Y, X) or (Y, X), iterable of 2-D arrays, FrameStack, Session, or path
        Frames, a TIFF stack / video file / image folder, or a session directory (its stored frames).
    diameter : int, optional
        Odd feature diameter in pixels (trackpy's ``diameter``); estimated from the first frame if None.
    **options
        The options of ``cybloid track``, with the same meaning (trackpy's): ``minmass``, ``maxsize``,
        ``separation``, ``noise_size``, ``smoothing_size``, ``threshold``, ``percentile``, ``topn``,
        ``invert``, ``search_range``, ``memory``, ``max_ecc``, ``size_range=(lo, hi)``, ``brightfield``,
        ``ring_diameter``; ``tracker="fast"`` runs the real-time loop's tracker instead (with ``sigma``,
        ``reacquire``, ``keep_lost``); ``progress=True`` shows a bar.

    Returns
    -------
    DataFrame
        The table ``cybloid track --out`` writes: trackpy's columns (``y, x, mass, size, ecc, signal,
        raw_mass, ep, frame, particle``; px, x = column) plus ``quality``.
    """
    from cybloid.cli import track as track_cli
    from cybloid.tracking.video import VideoSource, track_frames

    progress = bool(options.pop("progress", False))
    args = _track_args(diameter, options)
    if args.minmass is not None and args.minmass < 0:
        raise ParameterError(f"track: minmass must be >= 0, got {args.minmass}")
    if args.sigma is not None and not args.sigma > 0:
        raise ParameterError(f"track: sigma must be > 0, got {args.sigma}")
    fast = args.tracker == "fast"
    try:
        engine = track_cli.make_tracker(args) if fast else track_cli.options(args)
    except ParameterError as exc:
        raise ParameterError("track: " + _keywords(str(exc))) from None

    src = frames_or_path
    if isinstance(src, Session):
        src = src.frames
    video = None
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if p.is_dir() and (p / "metadata.json").is_file():
            src = open_session(p).frames
        else:
            video = VideoSource(p, keep_dtype=not fast)
            src = video
    if isinstance(src, np.ndarray):
        if src.ndim == 2:
            src = src[None]
        if src.ndim != 3:
            raise ParameterError(f"track: frames must be a 2-D image or a (T, Y, X) stack, got shape {src.shape}")
    try:
        total = (len(src) or None) if hasattr(src, "__len__") else None
        if fast:
            return track_frames(iter(src), engine, keep_lost=args.keep_lost, progress=progress, total=total)
        from cybloid.tracking.offline import resolve, track as track_all

        it = iter(src)
        try:
            first = next(it)
        except StopIteration:
            raise ParameterError("track: no frames") from None
        o = resolve(engine, np.asarray(first))
        for note in o.notes:  # what was measured on the first frame, as the CLI prints it
            print(_keywords(note))

        def frames():
            yield first
            yield from it

        df, _ = track_all(frames(), o, progress=progress, total=total, warn=lambda m: print(_keywords(m)))
        return df
    finally:
        if video is not None:
            video.close()


# --------------------------------------------------------------------------- running
@dataclass
class Run:
    """The result of :func:`run`.

    Attributes
    ----------
    protocol : str
    params : dict
        Parameter values used.
    summary : RunSummary
        Frames, experiment and wall time, loop latency, laser state at the end (``print(run)``).
    session : Path or None
        The recorded session (with ``record=``).
    records : list of FrameRecord
        Every frame's record (images dropped) when ``keep_records`` (the default).
    """

    protocol: str
    params: dict[str, Any]
    summary: Any
    session: Path | None = None
    records: list[Any] = field(default_factory=list, repr=False)
    pixel_size_um: float = float("nan")
    frame_period_s: float = float("nan")
    _tracks: Any = field(default=None, repr=False)

    @property
    def tracks(self):
        """trackpy-style DataFrame: frame, particle, x, y (um), t (s), mass, quality, fx, fy (pN), saturation."""
        if self._tracks is None:
            if self.records:
                self._tracks = tracks_from_records(self.records)
            elif self.session is not None:
                self._tracks = open_session(self.session).tracks
            else:
                self._tracks = tracks_from_records([])
        return self._tracks

    def open_session(self) -> Session:
        """The recorded session (``record=`` was given)."""
        if self.session is None:
            raise CybloidError(f"run of {self.protocol} was not recorded (pass record=DIR to cybloid.run)")
        return open_session(self.session)

    def __str__(self) -> str:
        return "\n".join(self.summary.lines())


_RUNS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
"""Labs of runs in flight, by id (switched off at interpreter exit)."""


def _progress_bar(desc: str):
    """A tqdm bar: a widget in Jupyter (tqdm's notebook mode, needs ipywidgets), text elsewhere."""
    text_format = "{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]"
    if _in_notebook():
        try:
            from tqdm.auto import tqdm as auto_tqdm

            return auto_tqdm(total=1.0, unit="s", desc=desc, leave=True)
        except ImportError:  # no ipywidgets: tqdm's notebook mode is unavailable, fall back to text
            pass
    from tqdm import tqdm

    return tqdm(total=1.0, unit="s", desc=desc, bar_format=text_format, leave=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and "IPKernelApp" in ip.config
    except (ImportError, AttributeError):  # no IPython, or a shell without a config
        return False


def run(protocol: Any, *, seed: int | None = None, lab: Any = None, hardware: Any = None,
        record: str | os.PathLike | None = None, realtime: bool = False,
        progress: bool | ProgressFn = True, calibration: Any = None, overrides: Mapping[str, Any] | None = None,
        record_every: int = 1, tracks_only: bool = False, keep_records: bool = True, tracker: Any = None,
        **params: Any) -> Run:
    """Run a protocol, as ``cybloid run`` does, and return its result.

    Parameters
    ----------
    protocol : str, path or generator function
        Bundled name (``"harmonic-trap"``), a ``.py`` file, or a generator function ``f(p, lab)``
        defined in the notebook (see :func:`load_protocol`).
    seed : int, optional
        Seed of the simulated lab (default 0).
    lab : str, path or LabProfile, optional
        Lab profile (``"default"``): particles, camera, laser of the simulated lab.
    hardware : str or path, optional
        Hardware profile (``"simulated"`` by default).
    record : path, optional
        Write the session into a new directory under this folder (``Run.session``).
    realtime : bool
        Run on wall time instead of virtual time.
    progress : bool or callable(elapsed_s, total_s, step)
        A progress bar (tqdm; a widget in Jupyter), or your own callback.
    calibration : Calibration or path, optional
        Calibration in force (required on real hardware).
    overrides : mapping, optional
        Lab-profile values, e.g. ``{"camera.width_px": 128, "particles.count": 4}`` (``--set``).
    record_every, tracks_only : optional
        Store every n-th image / no images (``--record-every``, ``--tracks-only``).
    keep_records : bool
        Keep every frame's record in memory for ``Run.records`` and ``Run.tracks``.
    tracker : Tracker, optional
        Another tracker for the loop.
    **params
        The protocol's parameters, e.g. ``duration=2``.

    Whatever ends the run (its end, an error, ``KeyboardInterrupt`` from the kernel's interrupt
    button), the laser is off and the beam blanked before this function returns or raises.
    """
    from cybloid.protocol import runner as runner_mod
    from cybloid.recording.format import lab_metadata

    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a whole number >= 0, got {seed!r}")
    proto = load_protocol(protocol, params)
    values = proto.values(params)
    lab_obj, loop, values = runner_mod.prepare(proto, values, hardware=hardware, lab=lab, seed=int(seed),
                                               realtime=realtime, overrides=dict(overrides) if overrides else None,
                                               calibration=calibration, tracker=tracker)
    _RUNS[id(lab_obj)] = lab_obj
    recorder = None
    bar = None
    records: list[Any] = []
    try:
        if record is not None:
            from cybloid.recording import open_recorder

            if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1:
                raise ParameterError(f"record_every must be a whole number >= 1, got {record_every!r}")
            recorder = open_recorder(record, every_nth_frame=record_every, frames=not tracks_only)
        if keep_records:
            loop.add_sink(lambda rec: records.append(dataclasses.replace(rec, image=None)))
        if callable(progress):
            on_progress = progress
        elif progress:
            bar = _progress_bar(proto.name)

            def on_progress(elapsed: float, total: float, step: str) -> None:
                bar.total = max(total, 1e-9) if np.isfinite(total) else bar.total
                bar.n = min(elapsed, bar.total)
                bar.set_postfix_str(step[:40], refresh=False)
                bar.refresh()
        else:
            on_progress = None
        meta = {"seed": int(seed), "hardware": lab_obj.hardware.name, "lab_profile": lab_obj.profile.to_dict(),
                "realtime": bool(realtime), "started_from": "python"}
        if recorder is not None:
            meta.update(lab_metadata(lab_obj))
        runner = runner_mod.ProtocolRunner(loop, proto, values, recorder=recorder, on_progress=on_progress,
                                           metadata=meta)
        try:
            summary = runner.run()
        finally:
            lab_obj.safe_off()  # the runner already did; a second time costs nothing
            if bar is not None:
                bar.close()
            if recorder is not None:
                recorder.close()  # the session complete on disk
        session = Path(recorder.path) if recorder is not None and recorder.path is not None else None
        summary.session = str(session) if session else None
        if recorder is not None and recorder.error:
            import warnings

            warnings.warn(f"cybloid.run({proto.name}): {recorder.error}", RuntimeWarning, stacklevel=2)
        return Run(proto.name, values.as_dict(), summary, session, records, float(lab_obj.calibration.pixel_size_um),
                   float(lab_obj.frame_period_s))
    finally:
        try:
            loop.close()
        finally:
            lab_obj.close()
            _RUNS.pop(id(lab_obj), None)


def _switch_off_at_exit() -> None:
    """Kernel restart / interpreter exit during a run: every lab still open gets its laser off."""
    for lab_obj in list(_RUNS.values()):
        try:
            lab_obj.safe_off()
        except Exception as exc:  # pragma: no cover - exit path: one lab's failure must not keep the others on
            log.error("switching off a lab at exit failed: %s", exc)


import atexit  # noqa: E402

atexit.register(_switch_off_at_exit)
