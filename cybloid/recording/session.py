"""Reading a recorded session (formats ``cybloid-session/1`` and ``/2``).

Nothing is read whole into memory unless asked for: the per-frame records are read in batches
from their Parquet files, the frames one chunk at a time through :class:`FrameStack`. Every
problem with the files (missing, truncated, corrupt, unknown version, a missing frame chunk)
raises :class:`~cybloid.errors.SessionError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from cybloid.errors import SessionError
from cybloid.frame import SpotTable
from cybloid.record import STAGES, FrameRecord
from cybloid.recording import format as fmt

BATCH_ROWS = 4096
"""Records per batch when a session is read piece by piece."""


@dataclass
class SessionRecord(FrameRecord):
    """A :class:`~cybloid.record.FrameRecord` read back from a session (``image`` is not loaded)."""

    image_slot: int = -1

    @property
    def timestamps(self) -> dict[str, float]:
        """Lab-clock times (s) of the frame: exposure start/end, arrival, table sent, applied."""
        return {k: getattr(self, k) for k in ("t_exposure_start", "t_exposure_end", "t_arrival", "t_sent", "t_applied")}


class FrameStack:
    """The stored frames of a session as a lazy, read-only ``(t, y, x)`` array.

    Indexing reads only the chunks (one per frame) it needs: ``stack[10]``, ``stack[::100, 0:64]``.
    ``np.asarray(stack)`` reads every frame (the whole session) into memory: iterate, index, or use
    :meth:`to_dask` for large sessions. A frame whose chunk is missing raises
    :class:`~cybloid.errors.SessionError` naming the chunk (never read as zeros).
    """

    def __init__(self, array_dir: Path, n_frames: int, frame_of_slot: np.ndarray) -> None:
        self.path = array_dir
        meta_path = array_dir / "zarr.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            shape = [int(v) for v in meta["shape"]]
            self.dtype = np.dtype(meta["data_type"])
            codecs = [c["name"] for c in meta.get("codecs", [])]
            endian = next((c.get("configuration", {}).get("endian", "little") for c in meta.get("codecs", [])
                           if c["name"] == "bytes"), "little")
        except FileNotFoundError:
            raise SessionError(f"{meta_path}: frames missing although the records say images were stored") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"{meta_path}: corrupt frames metadata: {type(exc).__name__}: {exc}") from None
        if len(shape) != 3:
            raise SessionError(f"{meta_path}: frames array must be 3-D (t, y, x), got shape {shape}")
        self.shape = (int(n_frames), shape[1], shape[2])
        self.ndim = 3
        self._frame_of_slot = frame_of_slot
        self._stored_dtype = self.dtype.newbyteorder("<" if endian == "little" else ">")
        self._blosc = "blosc" in codecs
        self._direct = set(codecs) <= {"bytes", "blosc"}
        self._zarr = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole stack uncompressed (what ``np.asarray`` would allocate)."""
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"FrameStack(shape={self.shape}, dtype={self.dtype}, path={str(self.path)!r})"

    def chunk_path(self, t: int) -> Path:
        """File of frame ``t``'s chunk (Zarr v3 default key encoding)."""
        return self.path / "c" / str(int(t)) / "0" / "0"

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` (position in the stack, not the camera frame index)."""
        t = int(t)
        if not 0 <= t < self.shape[0]:
            raise IndexError(f"frame position {t} out of range for {self.shape[0]} stored frames")
        frame = int(self._frame_of_slot[t]) if t < len(self._frame_of_slot) else t
        chunk = self.chunk_path(t)
        try:
            blob = chunk.read_bytes()
        except FileNotFoundError:
            raise SessionError(f"{chunk}: chunk of frame {frame} (t = {t}) is missing; its image is lost "
                               "(it is not read as zeros)") from None
        except OSError as exc:
            raise SessionError(f"{chunk}: cannot read frame {frame}: {exc.strerror or exc}") from None
        try:
            if self._direct:
                if self._blosc:
                    import numcodecs

                    blob = numcodecs.Blosc().decode(blob)
                img = np.frombuffer(blob, dtype=self._stored_dtype).reshape(self.shape[1:])
                return img.astype(self.dtype, copy=False) if img.dtype != self.dtype else img.copy()
            return np.asarray(self._zarr_array()[t])
        except SessionError:
            raise
        except Exception as exc:  # corrupt bytes fail in numcodecs, NumPy or zarr in many ways: all are this
            raise SessionError(f"{chunk}: frame {frame} is corrupt: {type(exc).__name__}: {exc}") from None

    def _zarr_array(self):
        if self._zarr is None:
            import zarr

            self._zarr = zarr.open_array(str(self.path), mode="r")
        return self._zarr

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.shape[0]):
            yield self.read(t)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            if key.count(Ellipsis) > 1:
                raise IndexError("an index can only have a single ellipsis")
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1:]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-D frame stack: {len(key)}")
        first, rest = key[0], tuple(key[1:])
        if isinstance(first, (int, np.integer)):
            t = int(first) + (self.shape[0] if int(first) < 0 else 0)
            if not 0 <= t < self.shape[0]:
                raise IndexError(f"index {int(first)} out of range for {self.shape[0]} stored frames")
            return self.read(t)[rest]
        if isinstance(first, slice):
            ts: Sequence[int] = range(*first.indices(self.shape[0]))
        else:
            arr = np.asarray(first)
            if arr.dtype == bool:
                arr = np.flatnonzero(arr)
            ts = [int(v) + (self.shape[0] if v < 0 else 0) for v in arr.reshape(-1)]
        probe = np.zeros(self.shape[1:], self.dtype)[rest]
        out = np.empty((len(ts), *probe.shape), self.dtype)
        for k, t in enumerate(ts):
            out[k] = self.read(t)[rest]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:]
        return a.astype(dtype) if dtype is not None else a

    def to_dask(self):
        """A dask array over the frames, one chunk per frame (nothing read until computed)."""
        import dask.array as da

        return da.from_array(self, chunks=(1, *self.shape[1:]), meta=np.empty((0, 0, 0), self.dtype),
                             name=f"cybloid-frames-{abs(hash(str(self.path)))}")


class Session:
    """A recorded session, opened read-only. Use :func:`open_session`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: dict[str, Any] = self._read_metadata()
        self.version: str = self.metadata["format"]
        self.completion: dict[str, Any] | None = self._read_complete()
        self._parts = self._find_parts()
        light = self._read_columns(("index", "image_slot", "t_exposure_start", "t_exposure_end"))
        self._index = light["index"].astype(np.int64)
        self._slots = light["image_slot"].astype(np.int64)
        self._t_mid = 0.5 * (light["t_exposure_start"] + light["t_exposure_end"])
        self._t_start = light["t_exposure_start"]
        self._sorted = bool(np.all(np.diff(self._index) > 0)) if len(self._index) > 1 else True
        self._row_of: dict[int, int] | None = None
        self._frames: FrameStack | None = None

    # ------------------------------------------------------------------ opening
    def _read_metadata(self) -> dict[str, Any]:
        p = self.path / fmt.METADATA
        if not p.exists():
            raise SessionError(f"{self.path}: not a cybloid session ({fmt.METADATA} missing)")
        try:
            meta = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SessionError(f"{p}: corrupt or truncated session metadata: {exc}") from None
        if not isinstance(meta, dict):
            raise SessionError(f"{p}: session metadata must be a JSON object")
        version = meta.get("format")
        if version not in fmt.READABLE_FORMATS:
            raise SessionError(f"{p}: unknown session format version {version!r} "
                               f"(this cybloid reads {', '.join(map(repr, fmt.READABLE_FORMATS))})")
        return meta

    def _read_complete(self) -> dict[str, Any] | None:
        p = self.path / fmt.COMPLETE
        if not p.exists():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SessionError(f"{p}: corrupt completion marker: {exc}") from None
        return data if isinstance(data, dict) else None

    def _find_parts(self) -> list[Any]:
        """(path, ParquetFile) of every record file, in order; each checked readable with the needed columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.path / fmt.RECORDS
        if not d.is_dir():
            raise SessionError(f"{self.path}: session has no {fmt.RECORDS}/ folder")
        merged = (self.completion or {}).get("records_file")
        paths = [d / merged] if merged else sorted(d.glob(fmt.PART_GLOB))
        if merged and not paths[0].exists():
            raise SessionError(f"{paths[0]}: record file named in {fmt.COMPLETE} is missing")
        out = []
        for p in paths:
            try:
                pf = pq.ParquetFile(p)
            except (OSError, pa.ArrowException) as exc:
                raise SessionError(f"{p}: corrupt or truncated record file: {exc}") from None
            missing = [c for c in ("index", "image_slot", "ids", "x_um", "y_um", "spot_x_su", "t_exposure_start",
                                   "t_exposure_end") if c not in pf.schema_arrow.names]
            if missing:
                raise SessionError(f"{p}: record file lacks columns {missing}")
            out.append((p, pf))
        return out

    def _read_columns(self, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole columns (scalars only) as numpy arrays, reading nothing else."""
        pieces: dict[str, list[np.ndarray]] = {c: [] for c in columns}
        for batch in self.iter_batches(columns):
            for c in columns:
                pieces[c].append(batch.column(c).to_numpy(zero_copy_only=False))
        return {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in pieces.items()}

    def iter_batches(self, columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS):
        """The per-frame records as pyarrow record batches, in order (at most ``batch_rows`` rows each)."""
        import pyarrow as pa

        for p, pf in self._parts:
            try:
                for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns) if columns else None):
                    yield batch
            except (OSError, pa.ArrowException) as exc:
                raise SessionError(f"{p}: corrupt or truncated record file: {exc}") from None

    @property
    def table(self):
        """All per-frame records as one pyarrow Table (reads everything into memory)."""
        import pyarrow as pa

        batches = list(self.iter_batches())
        return pa.Table.from_batches(batches) if batches else _empty_table()

    # ------------------------------------------------------------------ summary
    @property
    def complete(self) -> bool:
        """True when recording stopped cleanly (``complete.json`` present)."""
        return self.completion is not None

    @property
    def n_frames(self) -> int:
        """Frames with a record (whether or not their image is stored)."""
        return int(len(self._index))

    @property
    def indices(self) -> np.ndarray:
        """Camera frame index of every record, in order."""
        return self._index

    @property
    def frame_indices(self) -> np.ndarray:
        """Camera frame indices whose image is stored."""
        return self._index[self._slots >= 0]

    @property
    def frame_times_s(self) -> np.ndarray:
        """Exposure middle (lab clock, s) of every record, in order."""
        return self._t_mid

    @property
    def frame_period_s(self) -> float:
        prof = self.metadata.get("lab_profile") or {}
        fps = (prof.get("camera") or {}).get("fps")
        if fps:
            return 1.0 / float(fps)
        if self.n_frames > 1:
            return float(np.median(np.diff(self._t_start) / np.maximum(np.diff(self._index), 1)))
        return float("nan")

    @property
    def pixel_size_um(self) -> float:
        cal = self.metadata.get("calibration") or {}
        if cal.get("pixel_size_um"):
            return float(cal["pixel_size_um"])
        prof = self.metadata.get("lab_profile") or {}
        return float((prof.get("camera") or {}).get("pixel_size_um", float("nan")))

    @property
    def frame_interval_s(self) -> float:
        """Nominal time (s) between stored images (frame period x ``every_nth_frame``)."""
        every = int((self.metadata.get("recorder") or {}).get("every_nth_frame", 1) or 1)
        return self.frame_period_s * every

    def describe(self) -> list[str]:
        m = self.metadata
        lines = [f"session {self.path}",
                 f"  format {m.get('format')}, recorded {m.get('start_time')} with cybloid "
                 f"{(m.get('software') or {}).get('cybloid')} ({(m.get('software') or {}).get('git')})",
                 f"  protocol {m.get('protocol', '-')}, params {json.dumps(m.get('params', {}))}, seed {m.get('seed')}",
                 f"  {self.n_frames} frame records, {len(self.frame_indices)} images stored, "
                 + ("complete" if self.complete else "INCOMPLETE (recording did not stop cleanly)")]
        if self.completion and self.completion.get("dropped"):
            lines.append(f"  {self.completion['dropped']} records dropped by the recorder")
        if self.completion and self.completion.get("merge_error"):
            lines.append(f"  note: {self.completion['merge_error']}")
        return lines

    # ------------------------------------------------------------------ data
    @property
    def frames(self) -> FrameStack:
        """The stored images as a lazy ``(t, y, x)`` array (see :class:`FrameStack`); t counts stored images."""
        if self._frames is None:
            slots = self._slots[self._slots >= 0]
            n = int(slots.max()) + 1 if len(slots) else 0
            frame_of_slot = np.full(n, -1, np.int64)
            frame_of_slot[slots] = self._index[self._slots >= 0]
            if n == 0:
                raise SessionError(f"{self.path}: no frames stored in this session (recorded tracks only)")
            self._frames = FrameStack(fmt.frames_array_path(self.path, self.version), n, frame_of_slot)
        return self._frames

    def _row(self, index: int) -> int | None:
        if self._sorted:
            k = int(np.searchsorted(self._index, index))
            return k if k < len(self._index) and self._index[k] == index else None
        if self._row_of is None:
            self._row_of = {int(i): k for k, i in enumerate(self._index)}
        return self._row_of.get(int(index))

    def image(self, index: int) -> np.ndarray | None:
        """The stored image (uint16) of camera frame ``index``; None if it was not stored."""
        row = self._row(int(index))
        if row is None:
            raise SessionError(f"{self.path}: no frame with index {index} in this session")
        slot = int(self._slots[row])
        if slot < 0:
            return None
        stack = self.frames
        if slot >= stack.shape[0]:
            raise SessionError(f"{self.path / fmt.FRAMES}: frame {index} (slot {slot}) is missing (truncated frames)")
        return stack.read(slot)

    def images(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, image) for every stored image, in order, one at a time."""
        for i in self.frame_indices:
            yield int(i), self.image(int(i))

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """The event log, line by line (a truncated last line of a killed session is skipped)."""
        p = self.path / fmt.EVENTS
        if not p.exists():
            return
        try:
            with open(p, encoding="utf-8") as f:
                prev: tuple[int, str] | None = None
                for k, line in enumerate(f):
                    if prev is not None:
                        yield self._event_line(p, *prev, last=False)
                    prev = (k, line) if line.strip() else None
                if prev is not None:
                    try:
                        yield self._event_line(p, *prev, last=True)
                    except _CutOff:
                        return
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"{p}: cannot read event log: {exc}") from None

    def _event_line(self, p: Path, k: int, line: str, last: bool) -> dict[str, Any]:
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            if last and not self.complete:
                raise _CutOff() from None
            raise SessionError(f"{p}:{k + 1}: corrupt event line") from None

    def events(self) -> list[dict[str, Any]]:
        """The event log (a truncated last line of a killed session is skipped)."""
        return list(self.iter_events())

    @staticmethod
    def _lists(col, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(values, offsets) of a list column of one batch."""
        import pyarrow as pa

        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if len(arr) == 0:
            return np.zeros(0, dtype), np.zeros(1, np.int64)
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        return values[offsets[0]:offsets[-1]], offsets - offsets[0]

    def records(self) -> Iterator[SessionRecord]:
        """One :class:`SessionRecord` per recorded frame, in order (images not loaded; read in batches)."""
        for batch in self.iter_batches():
            names = batch.schema.names
            cols = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in fmt.SCALAR_COLUMNS if c != "events_json"}
            events = batch.column("events_json").to_pylist()
            timings = {s: batch.column(fmt.timing_column(s)).to_numpy(zero_copy_only=False) for s in STAGES}
            lists = {c: self._lists(batch.column(c), d)
                     for c, d in {**fmt.PARTICLE_COLUMNS, **fmt.SPOT_COLUMNS}.items()}
            truth = {c: self._lists(batch.column(c), d) for c, d in fmt.TRUTH_COLUMNS.items() if c in names}
            for k in range(batch.num_rows):
                def L(c, src=lists):
                    v, o = src[c]
                    return v[o[k]:o[k + 1]]
                pos = np.column_stack([L("x_um"), L("y_um")]) if len(L("x_um")) else np.zeros((0, 2))
                frc = np.column_stack([L("fx_pN"), L("fy_pN")]) if len(L("fx_pN")) else np.zeros((0, 2))
                spots = SpotTable(L("spot_x_su"), L("spot_y_su"), L("spot_share"), L("spot_target"),
                                  float(cols["spot_power"][k]))
                tr = None
                if truth and len(L("truth_ids", truth)):
                    tr = {"ids": L("truth_ids", truth),
                          "positions_um": np.column_stack([L("truth_x_um", truth), L("truth_y_um", truth)])}
                yield SessionRecord(
                    int(cols["index"][k]), float(cols["t_exposure_start"][k]), float(cols["t_exposure_end"][k]),
                    float(cols["t_arrival"][k]), float(cols["t_sent"][k]), float(cols["t_applied"][k]),
                    L("ids"), pos, L("mass"), L("quality"), frc, L("saturation"), spots,
                    {s: float(timings[s][k]) for s in STAGES}, int(cols["flags"][k]), bool(cols["laser_on"][k]),
                    None, json.loads(events[k]) if events[k] else [], tr, image_slot=int(cols["image_slot"][k]))

    def iter_frames_table(self, batch_rows: int = BATCH_ROWS):
        """:meth:`frames_table` in pieces of at most ``batch_rows`` frames."""
        import pandas as pd
        import pyarrow.compute as pc

        cols = ["index", "t_exposure_start", "t_exposure_end", "t_applied", "flags", "laser_on", "ids", "spot_x_su",
                *(fmt.timing_column(s) for s in STAGES)]
        for b in self.iter_batches(cols, batch_rows):
            df = pd.DataFrame({"frame": b.column("index").to_numpy(),
                               "t": 0.5 * (b.column("t_exposure_start").to_numpy()
                                           + b.column("t_exposure_end").to_numpy()),
                               "t_applied": b.column("t_applied").to_numpy(),
                               "flags": b.column("flags").to_numpy(),
                               "laser_on": b.column("laser_on").to_numpy(zero_copy_only=False),
                               "n": pc.list_value_length(b.column("ids")).to_numpy().astype(np.int64),
                               "n_spots": pc.list_value_length(b.column("spot_x_su")).to_numpy().astype(np.int64)})
            for s in STAGES:
                df[f"{s}_ms"] = b.column(fmt.timing_column(s)).to_numpy()
            df["latency_s"] = df["t_applied"] - df["t"]
            yield df

    def frames_table(self):
        """Per-frame scalars as a DataFrame: frame, t (exposure middle, s), flags, timings (ms), n."""
        import pandas as pd

        pieces = list(self.iter_frames_table())
        if not pieces:
            return pd.DataFrame({c: np.zeros(0) for c in ("frame", "t", "t_applied", "flags", "laser_on", "n",
                                                            "n_spots", *(f"{s}_ms" for s in STAGES), "latency_s")})
        return pd.concat(pieces, ignore_index=True)

    TRACK_COLUMNS = ("frame", "particle", "x", "y", "t", "mass", "quality", "fx", "fy", "saturation")

    def iter_tracks(self, batch_rows: int = BATCH_ROWS):
        """:meth:`tracks` in pieces, each covering at most ``batch_rows`` frames (for streaming)."""
        import pandas as pd

        cols = ["index", "t_exposure_start", "t_exposure_end", "ids", "x_um", "y_um", "mass", "quality", "fx_pN",
                "fy_pN", "saturation"]
        P = fmt.PARTICLE_COLUMNS
        for b in self.iter_batches(cols, batch_rows):
            ids, off = self._lists(b.column("ids"), np.int64)
            n = np.diff(off)
            t_mid = 0.5 * (b.column("t_exposure_start").to_numpy() + b.column("t_exposure_end").to_numpy())
            yield pd.DataFrame({
                "frame": np.repeat(b.column("index").to_numpy().astype(np.int64), n), "particle": ids,
                "x": self._lists(b.column("x_um"), P["x_um"])[0], "y": self._lists(b.column("y_um"), P["y_um"])[0],
                "t": np.repeat(t_mid, n), "mass": self._lists(b.column("mass"), P["mass"])[0],
                "quality": self._lists(b.column("quality"), P["quality"])[0],
                "fx": self._lists(b.column("fx_pN"), np.float64)[0],
                "fy": self._lists(b.column("fy_pN"), np.float64)[0],
                "saturation": self._lists(b.column("saturation"), P["saturation"])[0]})

    def tracks(self):
        """Long table, one row per particle and frame: frame, particle, x, y (um), t (s), mass,
        quality, fx, fy (pN), saturation. (Held in memory: see :meth:`iter_tracks` for pieces.)"""
        import pandas as pd

        pieces = list(self.iter_tracks())
        if not pieces:
            P = fmt.PARTICLE_COLUMNS
            return pd.DataFrame({"frame": np.zeros(0, np.int64), "particle": np.zeros(0, np.int64),
                                 "x": np.zeros(0), "y": np.zeros(0), "t": np.zeros(0),
                                 "mass": np.zeros(0, P["mass"]), "quality": np.zeros(0, np.uint8),
                                 "fx": np.zeros(0), "fy": np.zeros(0), "saturation": np.zeros(0, np.uint8)})
        return pd.concat(pieces, ignore_index=True)

    def frame_times(self):
        """The frame times table beside the images (format 2; rebuilt from the records for format 1):
        one row per stored image, ``t`` (position in :attr:`frames`), ``frame`` and lab times (s)."""
        import pandas as pd

        p = self.path / fmt.FRAME_TIMES
        if self.version != fmt.FORMAT_V1 and p.exists():
            try:
                df = pd.read_csv(p, on_bad_lines="skip")
            except (OSError, ValueError) as exc:
                raise SessionError(f"{p}: corrupt frame times table: {exc}") from None
            return df.dropna().astype({"t": np.int64, "frame": np.int64}).reset_index(drop=True)
        cols = self._read_columns(("image_slot", "index", "t_exposure_start", "t_exposure_end", "t_arrival"))
        sel = cols["image_slot"] >= 0
        return pd.DataFrame({"t": cols["image_slot"][sel].astype(np.int64),
                             "frame": cols["index"][sel].astype(np.int64),
                             "t_exposure_start_s": cols["t_exposure_start"][sel],
                             "t_exposure_end_s": cols["t_exposure_end"][sel], "t_arrival_s": cols["t_arrival"][sel]})


class _CutOff(Exception):
    """The last event line was cut off by a kill."""


def _empty_table():
    from cybloid.recording.recorder import _RowBuffer

    return _RowBuffer().table()


def open_session(path: str | os.PathLike) -> Session:
    """Open a recorded session directory read-only.

    Raises
    ------
    SessionError
        Missing directory, not a session, corrupt or truncated files, unknown format version.
    """
    p = Path(path)
    if not p.exists():
        raise SessionError(f"session not found: {p}")
    if not p.is_dir():
        raise SessionError(f"{p}: a session is a directory, this is a file")
    return Session(p)
