"""The session recorder: a bounded queue in front of a writer thread.

``offer`` never blocks the loop: it puts the record into a bounded queue and counts a drop
when the queue is full. The writer thread stores images in Zarr (one compressed chunk per
frame, an OME-Zarr image with physical units) and the per-frame records in append-only Parquet parts,
written at least every
``flush_interval_s`` (each part is written to a temporary name and renamed, so a part on disk
is always whole). Killing the process loses at most the records of the last flush interval
plus what was still queued. A write error (disk full, no permission) stops recording with an
event and a logged error; the loop never sees an exception.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import re
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cybloid.errors import SessionError
from cybloid.recording import format as fmt
from cybloid.record import STAGES, FrameRecord

log = logging.getLogger(__name__)

_STOP = object()


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return s[:60] or "session"


class _RowBuffer:
    """Per-frame rows waiting for the next Parquet part."""

    def __init__(self) -> None:
        self.rows: list[tuple[FrameRecord, int]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def table(self):
        import pyarrow as pa

        rows = self.rows
        cols: dict[str, Any] = {}
        cols["index"] = pa.array([r.index for r, _ in rows], pa.int64())
        for name in ("t_exposure_start", "t_exposure_end", "t_arrival", "t_sent", "t_applied"):
            cols[name] = pa.array([float(getattr(r, name)) for r, _ in rows], pa.float64())
        cols["flags"] = pa.array([int(r.flags) for r, _ in rows], pa.int32())
        cols["laser_on"] = pa.array([bool(r.laser_on) for r, _ in rows], pa.bool_())
        cols["image_slot"] = pa.array([slot for _, slot in rows], pa.int64())
        cols["spot_power"] = pa.array([float(r.spots.power) for r, _ in rows], pa.float64())
        cols["events_json"] = pa.array([fmt.dumps(r.events) if r.events else "" for r, _ in rows], pa.string())
        for stage in STAGES:
            cols[fmt.timing_column(stage)] = pa.array([float(r.timings_ms.get(stage, np.nan)) for r, _ in rows],
                                                      pa.float64())

        def lists(name: str, dtype, get) -> None:
            arrays = [np.asarray(get(r), dtype=dtype).reshape(-1) for r, _ in rows]
            offsets = np.zeros(len(arrays) + 1, np.int32)
            np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
            values = np.concatenate(arrays) if arrays else np.zeros(0, dtype)
            cols[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))

        P = fmt.PARTICLE_COLUMNS
        lists("ids", P["ids"], lambda r: r.ids)
        lists("x_um", P["x_um"], lambda r: np.asarray(r.positions_um).reshape(-1, 2)[:, 0])
        lists("y_um", P["y_um"], lambda r: np.asarray(r.positions_um).reshape(-1, 2)[:, 1])
        lists("mass", P["mass"], lambda r: r.mass)
        lists("quality", P["quality"], lambda r: r.quality)
        lists("fx_pN", P["fx_pN"], lambda r: np.asarray(r.forces_pN).reshape(-1, 2)[:, 0])
        lists("fy_pN", P["fy_pN"], lambda r: np.asarray(r.forces_pN).reshape(-1, 2)[:, 1])
        lists("saturation", P["saturation"], lambda r: r.saturation)
        S = fmt.SPOT_COLUMNS
        lists("spot_x_su", S["spot_x_su"], lambda r: r.spots.x_su)
        lists("spot_y_su", S["spot_y_su"], lambda r: r.spots.y_su)
        lists("spot_share", S["spot_share"], lambda r: r.spots.share)
        lists("spot_target", S["spot_target"], lambda r: r.spots.target)

        def truth(key: str, col: int | None):
            def get(r):
                t = r.truth or {}
                v = t.get(key)
                if v is None:
                    return np.zeros(0)
                v = np.asarray(v)
                return v if col is None else v.reshape(-1, 2)[:, col]
            return get

        T = fmt.TRUTH_COLUMNS
        lists("truth_ids", T["truth_ids"], truth("ids", None))
        lists("truth_x_um", T["truth_x_um"], truth("positions_um", 0))
        lists("truth_y_um", T["truth_y_um"], truth("positions_um", 1))
        return pa.table(cols)


class _SessionWriter(threading.Thread):
    """Writes one session; owns its queue, files and counters. At interpreter exit every live
    recorder is stopped and waited for (see ``_at_exit``), so ``stop`` can hand over without
    blocking the loop."""

    def __init__(self, rec: "Recorder", path: Path, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(name=f"cybloid-recorder-{path.name}", daemon=True)
        self.rec = rec
        self.path = path
        self.metadata = dict(metadata or {})
        self.frames_dir = fmt.frames_array_path(path)
        self.times_file = None
        self.pending_times: list[str] = []
        self.array_shape_written = -1
        self.queue: queue.Queue = queue.Queue(maxsize=rec.queue_size)
        self.events: collections.deque = collections.deque()
        self.events_file = open(path / fmt.EVENTS, "a", encoding="utf-8")
        self.frame_shape: tuple[int, ...] | None = None
        self.frame_dtype: np.dtype | None = None
        self.capacity = 0
        self.codec = None
        self.slot = 0
        self.part = 0
        self.written = 0
        self.frames_written = 0
        self.bytes_written = 0
        self.dropped = 0
        self.offered = 0
        self.failed = False
        self.error: str | None = None
        self.stop_requested = False
        self.finished = threading.Event()
        self.write_ms: collections.deque = collections.deque(maxlen=100_000)

    # ------------------------------------------------------------------ thread body
    def run(self) -> None:
        buf = _RowBuffer()
        last_flush = time.monotonic()
        interval = self.rec.flush_interval_s
        try:
            while True:
                timeout = max(0.0, interval - (time.monotonic() - last_flush))
                try:
                    item = self.queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _STOP or (item is None and self.stop_requested):
                    self._flush(buf)
                    self._finish()
                    return
                t0 = time.perf_counter()
                if item is not None:
                    slot = self._store_image(item)
                    buf.rows.append((item, slot))
                if time.monotonic() - last_flush >= interval or len(buf) >= 1000:
                    self._flush(buf)
                    last_flush = time.monotonic()
                if item is not None:
                    self.write_ms.append((time.perf_counter() - t0) * 1e3)
        except OSError as exc:
            self._fail(f"recording stopped: cannot write {self.path}: {exc.strerror or exc}")
            self._drain()
        except Exception as exc:  # a bug must not take the loop down either
            log.exception("recorder writer failed")
            self._fail(f"recording stopped: {type(exc).__name__}: {exc}")
            self._drain()
        finally:
            self._close_events()
            self.finished.set()

    def _drain(self) -> None:
        while True:
            try:
                if self.queue.get(timeout=0.1) is _STOP:
                    return
            except queue.Empty:
                if self.stop_requested:
                    return

    def _store_image(self, rec: FrameRecord) -> int:
        n = self.rec.every_nth_frame
        if not self.rec.store_frames or rec.image is None or rec.index % n:
            return -1
        img = np.ascontiguousarray(rec.image)
        if self.frame_shape is None:
            self._create_frames(img)
        if img.shape != self.frame_shape or img.dtype != self.frame_dtype:
            raise SessionError(f"frame {rec.index}: image {img.shape} {img.dtype} differs from the session's "
                               f"{self.frame_shape} {self.frame_dtype}")
        # one chunk per frame, written straight to its Zarr v3 key (0/c/<slot>/0/0): the bytes zarr's
        # BytesCodec(little) + BloscCodec pipeline writes, without its asyncio machinery
        data = img.astype(img.dtype.newbyteorder("<"), copy=False)
        blob = self.codec.encode(data) if self.codec is not None else data.tobytes()
        d = self.frames_dir / "c" / str(self.slot) / "0"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "0", "wb") as f:
            f.write(blob)
        self.pending_times.append(f"{self.slot},{rec.index},{float(rec.t_exposure_start)!r},"
                                  f"{float(rec.t_exposure_end)!r},{float(rec.t_arrival)!r}")
        self.slot += 1
        self.frames_written += 1
        self.bytes_written += img.nbytes
        return self.slot - 1

    def _create_frames(self, img: np.ndarray) -> None:
        import numcodecs

        if img.ndim != 2:
            raise SessionError(f"frame images must be 2-D, got shape {img.shape}")
        self.frame_shape, self.frame_dtype = img.shape, img.dtype
        cname = self.rec.compression
        self.codec = None if cname == "none" else numcodecs.Blosc(cname=cname, clevel=1,
                                                                  shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=0)
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        px_um, dt_s = fmt.physical_scale(self.metadata, self.rec.every_nth_frame)
        _write_json_atomic(self.path / fmt.FRAMES / "zarr.json", {
            "zarr_format": 3, "node_type": "group",
            "attributes": fmt.ome_attributes(self.metadata.get("name", "frames"), px_um, dt_s)})
        self.times_file = open(self.path / fmt.FRAME_TIMES, "a", encoding="utf-8")
        self.times_file.write(",".join(fmt.FRAME_TIMES_COLUMNS) + "\n")
        self.times_file.flush()
        self._write_zarr_json(0)

    def _write_zarr_json(self, n: int) -> None:
        """The Zarr v3 array metadata of ``frames.zarr/0`` with ``n`` frames (written atomically).

        Rewritten at every flush, so the array never claims a frame whose chunk is not on disk.
        """
        h, w = self.frame_shape
        codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
        if self.codec is not None:
            codecs.append({"name": "blosc", "configuration": {
                "typesize": int(self.frame_dtype.itemsize), "cname": self.rec.compression, "clevel": 1,
                "shuffle": "bitshuffle", "blocksize": 0}})
        meta = {"shape": [int(n), int(h), int(w)], "data_type": self.frame_dtype.name,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, int(h), int(w)]}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0, "codecs": codecs, "dimension_names": ["t", "y", "x"],
                "attributes": {"unit": "ADU"},
                "zarr_format": 3, "node_type": "array", "storage_transformers": []}
        _write_json_atomic(self.frames_dir / "zarr.json", meta)
        self.array_shape_written = int(n)

    def _flush_frames(self) -> None:
        """Frame times of the images written since the last flush, then the array's new length."""
        if self.frame_shape is None:
            return
        if self.pending_times:
            self.times_file.write("\n".join(self.pending_times) + "\n")
            self.times_file.flush()
            self.pending_times.clear()
        if self.array_shape_written != self.slot:
            self._write_zarr_json(self.slot)

    def _flush(self, buf: _RowBuffer) -> None:
        self._write_events()
        self._flush_frames()
        if not len(buf):
            return
        import pyarrow.parquet as pq

        table = buf.table()
        name = self.path / fmt.RECORDS / f"part-{self.part:06d}.parquet"
        tmp = name.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, name)
        self.part += 1
        self.written += len(buf)
        buf.rows.clear()

    def _finish(self) -> None:
        """Bring the frames array up to date, merge the parts into one file, then write ``complete.json``.

        A failed merge (disk full, ...) keeps the parts, which hold every record: the session is
        still complete, ``complete.json`` names no merged file and says why.
        """
        self._flush_frames()
        parts = sorted((self.path / fmt.RECORDS).glob(fmt.PART_GLOB))
        records_file = None
        merge_error = None
        if len(parts) > 1:
            merged = self.path / fmt.RECORDS / fmt.MERGED
            tmp = merged.with_suffix(".tmp")
            try:
                _merge_parts(parts, tmp)
                os.replace(tmp, merged)
                records_file = fmt.MERGED
            except Exception as exc:  # OSError, ArrowException, MemoryError: the parts stay the record
                merge_error = f"merging {len(parts)} record parts failed, parts kept: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", self.path, merge_error)
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass
                self.events.append({"t_wall": time.time(), "kind": "records_merge_failed", "error": merge_error})
        self._write_events()
        done = {"end_time": fmt.utc_now(), "records": self.written, "frames_stored": self.frames_written,
                "dropped": self.dropped, "parts": self.part, "records_file": records_file, "bytes": self.bytes_written}
        if merge_error:
            done["merge_error"] = merge_error
        _write_json_atomic(self.path / fmt.COMPLETE, done)
        if records_file is not None:  # the marker names the merged file: the parts are now redundant
            for p in parts:
                p.unlink(missing_ok=True)

    def _write_events(self) -> None:
        if not self.events:
            return
        lines = []
        while self.events:
            lines.append(fmt.dumps(self.events.popleft()))
        self.events_file.write("\n".join(lines) + "\n")
        self.events_file.flush()

    def _close_events(self) -> None:
        for name in ("times_file", "events_file"):
            f = getattr(self, name)
            if f is None:
                continue
            try:
                f.close()
            except OSError as exc:  # the disk failed: what was written stays; the session is closed either way
                log.warning("%s: closing %s failed: %s", self.path, name, exc)
            setattr(self, name, None)

    def _fail(self, message: str) -> None:
        self.failed = True
        self.error = message
        if self.events_file is not None:
            try:
                self.events_file.write(json.dumps({"t_wall": time.time(), "kind": "recording_failed",
                                                   "error": message}) + "\n")
                self.events_file.flush()
            except (OSError, ValueError):
                pass
        self.rec._report_error(message)


class Recorder:
    """Writes one session per ``start``/``stop`` pair into a new directory under ``directory``.

    ``offer`` and ``stop`` never wait for the disk: ``stop`` hands the rest to the session's
    writer thread, which finishes on its own (the interpreter waits for it at exit); ``close``
    or ``join`` wait until every session is complete on disk.

    Parameters
    ----------
    directory : path
        Parent folder; each session is a new sub-directory ``<UTC time>_<name>``.
    every_nth_frame : int
        Store the image of frames whose index is a multiple of this (records of every frame
        are always stored).
    frames : bool
        Store images at all (False: tracks only).
    name : str, optional
        Session name; defaults to the protocol name from the metadata.
    queue_size : int
        Records the queue holds before ``offer`` drops (512x512 frames: 0.5 MB each).
    flush_interval_s : float
        Longest time (wall s) a written record waits before its Parquet part is on disk.
    compression : str
        Blosc compressor of the frames (``lz4``, ``zstd``, ...) or ``none``.
    on_error : callable(str), optional
        Called (from the writer thread) when recording stops because of a write error.
    """

    def __init__(self, directory: str | os.PathLike, *, every_nth_frame: int = 1, frames: bool = True,
                 name: str | None = None, queue_size: int = 128, flush_interval_s: float = 0.5,
                 compression: str = "lz4", on_error: Callable[[str], Any] | None = None) -> None:
        if int(every_nth_frame) < 1:
            raise SessionError(f"every_nth_frame must be >= 1, got {every_nth_frame}")
        self.directory = Path(directory)
        self.every_nth_frame = int(every_nth_frame)
        self.store_frames = bool(frames)
        self.name = name
        self.queue_size = int(queue_size)
        self.flush_interval_s = float(flush_interval_s)
        self.compression = compression
        self.on_error = on_error
        self.path: Path | None = None
        self.paths: list[Path] = []
        self.pieces = 0  # record(True) ... record(False) pieces started so far (one session each)
        self._writer: _SessionWriter | None = None
        self._writers: list[_SessionWriter] = []
        self._start_error: str | None = None
        self.recording = False
        fmt.software()  # resolve git commit and source hash once, outside the loop
        _preload()

    # ------------------------------------------------------------------ counters of the current session
    def _get(self, name: str, default: Any = 0) -> Any:
        w = self._writer
        return getattr(w, name) if w is not None else default

    dropped = property(lambda self: self._get("dropped"), doc="Records dropped because the queue was full.")
    offered = property(lambda self: self._get("offered"), doc="Records offered while recording.")
    written = property(lambda self: self._get("written"), doc="Records on disk (in Parquet parts).")
    frames_written = property(lambda self: self._get("frames_written"), doc="Images on disk.")
    bytes_written = property(lambda self: self._get("bytes_written"), doc="Raw image bytes on disk.")
    write_ms = property(lambda self: self._get("write_ms", collections.deque()),
                        doc="Writer-thread time per record (ms): image compression + store, share of a flush.")

    @property
    def error(self) -> str | None:
        """Why recording stopped early (None while all is well)."""
        return self._start_error or self._get("error", None)

    @property
    def failed(self) -> bool:
        """True once recording has stopped because of an error (see ``error``); the run decides what to do."""
        return bool(self._start_error) or bool(self._get("failed", False))

    @property
    def state(self) -> str:
        """``idle``, ``recording``, ``stopping``, ``stopped`` or ``failed``."""
        if self.recording:
            return "failed" if self._get("failed", False) else "recording"
        if self._start_error or self._get("failed", False):
            return "failed"
        w = self._writer
        if w is None:
            return "idle"
        return "stopped" if w.finished.is_set() else "stopping"

    # ------------------------------------------------------------------ loop side (never blocks)
    def offer(self, record: FrameRecord) -> bool:
        """Queue one record for writing; False (and counted in ``dropped``) if the queue is full.

        The record and its arrays are written later from another thread: they must not be changed
        after the offer (the loop makes new ones for every frame).
        """
        w = self._writer
        if not self.recording or w is None or w.failed:
            return False
        w.offered += 1
        try:
            w.queue.put_nowait(record)
            return True
        except queue.Full:
            w.dropped += 1
            return False

    __call__ = offer  # usable directly as a loop sink

    def event(self, event: dict[str, Any]) -> None:
        """Append an event (protocol step, fault, user action) to the session's event log."""
        w = self._writer
        if self.recording and w is not None and not w.failed:
            w.events.append({"t_wall": time.time(), **dict(event)})

    # ------------------------------------------------------------------ control
    def start(self, metadata: dict[str, Any] | None = None) -> Path | None:
        """Create the session directory, write metadata and start its writer thread.

        Returns the session path, or None when the directory cannot be created (recording
        is then off, ``error`` says why; the loop is not disturbed).
        """
        if self.recording:
            return self.path
        meta = dict(metadata or {})
        name = self.name or meta.get("name") or meta.get("protocol") or "session"
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
        self._start_error = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            base = self.directory / f"{stamp}_{_slug(name)}"
            path, k = base, 1
            while True:
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    k += 1
                    path = base.with_name(f"{base.name}_{k}")
            (path / fmt.RECORDS).mkdir()
            full = {"format": fmt.FORMAT, "name": str(name), "software": fmt.software(), "start_time": fmt.utc_now(),
                    "piece": self.pieces + 1,
                    "recorder": {"every_nth_frame": self.every_nth_frame, "frames": self.store_frames,
                                 "flush_interval_s": self.flush_interval_s, "queue_size": self.queue_size,
                                 "compression": self.compression},
                    **meta}
            _write_json_atomic(path / fmt.METADATA, full)
            writer = _SessionWriter(self, path, full)
        except OSError as exc:
            self._start_error = f"cannot create session under {self.directory}: {exc.strerror or exc}"
            self._writer = None
            self._report_error(self._start_error)
            return None
        self.path = path
        self.paths.append(path)
        self.pieces += 1
        self._writer = writer
        self._writers.append(writer)
        writer.events.append({"t_wall": time.time(), "kind": "recording_started", "path": str(path)})
        self.recording = True
        _LIVE.add(self)
        writer.start()
        return path

    def stop(self) -> None:
        """End the session: the writer thread stores what is queued, then marks it complete.

        Returns at once (the loop keeps running); ``join``/``close`` wait for the disk.
        """
        if not self.recording:
            return
        self.recording = False
        w = self._writer
        if w is not None:
            w.stop_requested = True
            try:
                w.queue.put_nowait(_STOP)
            except queue.Full:  # the writer finishes once it has emptied the queue
                pass

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every session's writer has finished; True if all did."""
        for w in self._writers:
            w.join(timeout)
        return all(not w.is_alive() for w in self._writers)

    def close(self) -> None:
        """Stop if recording and wait until every session is complete on disk."""
        self.stop()
        self.join()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _report_error(self, message: str) -> None:
        log.error("%s", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:  # the caller's callback must not take the writer down
                log.exception("recorder on_error callback failed")


_PRELOADED = False


def _preload() -> None:
    """Import (and exercise once) what the writer thread uses: imports must not happen in that thread
    at interpreter exit, when new modules may no longer register their own exit hooks."""
    global _PRELOADED
    if _PRELOADED:
        return
    import numcodecs  # noqa: F401
    import pandas  # noqa: F401  (pyarrow imports it lazily)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cybloid.frame import SpotTable

    rec = FrameRecord(0, 0.0, 0.0, 0.0, 0.0, 0.0, np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.float32),
                      np.zeros(0, np.uint8), np.zeros((0, 2)), np.zeros(0, np.uint8), SpotTable.empty(), {})
    buf = _RowBuffer()
    buf.rows.append((rec, -1))
    try:  # a warm-up in memory: if it fails, the writer thread reports the real error later
        pq.write_table(buf.table(), pa.BufferOutputStream(), compression="zstd")
        numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE).encode(np.zeros(4, np.uint16))
    except Exception as exc:
        log.debug("recorder warm-up failed: %s", exc)
        return
    _PRELOADED = True


_LIVE: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


def _at_exit() -> None:
    """Finish every session still being written before the interpreter exits."""
    for rec in list(_LIVE):
        try:
            rec.stop()
            if not rec.join(timeout=60.0):  # a hung file system must not hang the exit forever
                log.error("recording %s did not finish within 60 s; the session stays incomplete", rec.path)
        except Exception:  # pragma: no cover - exit path
            log.exception("finishing a recording at exit")


try:  # runs before the interpreter joins threads (as concurrent.futures does); atexit would be too late
    threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover
    import atexit

    atexit.register(_at_exit)


def _merge_parts(parts: list[Path], out: Path) -> None:
    """Concatenate the Parquet parts into ``out``, one part in memory at a time."""
    import pyarrow.parquet as pq

    import pyarrow as pa

    writer = None
    pending: list = []
    try:
        for k, p in enumerate(parts):
            pending.append(pq.read_table(p))
            if sum(t.num_rows for t in pending) >= 20_000 or k == len(parts) - 1:
                table = pa.concat_tables(pending)
                pending.clear()
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=20_000)
    finally:
        if writer is not None:
            writer.close()


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(fmt.to_jsonable(data), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def open_recorder(directory: str | os.PathLike, *, every_nth_frame: int = 1, frames: bool = True,
                  name: str | None = None, **options: Any) -> Recorder:
    """A recorder writing sessions under ``directory`` (created if missing).

    Raises
    ------
    SessionError
        If ``directory`` exists but is not a folder, or cannot be created.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise SessionError(f"--record {d}: exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SessionError(f"--record {d}: cannot create directory: {exc.strerror or exc}") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise SessionError(f"--record {d}: directory is not writable")
    return Recorder(d, every_nth_frame=every_nth_frame, frames=frames, name=name, **options)
