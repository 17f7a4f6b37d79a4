"""Reading a recorded session (format ``cybloid-session/1``).

Every problem with the files (missing, truncated, corrupt, unknown version) raises
:class:`~cybloid.errors.SessionError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cybloid.errors import SessionError
from cybloid.frame import SpotTable
from cybloid.record import STAGES, FrameRecord
from cybloid.recording import format as fmt


@dataclass
class SessionRecord(FrameRecord):
    """A :class:`~cybloid.record.FrameRecord` read back from a session (``image`` is not loaded)."""

    image_slot: int = -1

    @property
    def timestamps(self) -> dict[str, float]:
        """Lab-clock times (s) of the frame: exposure start/end, arrival, table sent, applied."""
        return {k: getattr(self, k) for k in ("t_exposure_start", "t_exposure_end", "t_arrival", "t_sent", "t_applied")}


class Session:
    """A recorded session, opened read-only. Use :func:`open_session`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: dict[str, Any] = self._read_metadata()
        self.completion: dict[str, Any] | None = self._read_complete()
        self.table = self._read_records()
        self._frames = None
        self._slots = self.table.column("image_slot").to_numpy().astype(np.int64)
        self._index = self.table.column("index").to_numpy().astype(np.int64)
        self._row_of = {int(i): k for k, i in enumerate(self._index)}

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
        if version != fmt.FORMAT:
            raise SessionError(f"{p}: unknown session format version {version!r} (this cybloid reads {fmt.FORMAT!r})")
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

    def _read_records(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.path / fmt.RECORDS
        if not d.is_dir():
            raise SessionError(f"{self.path}: session has no {fmt.RECORDS}/ folder")
        merged = (self.completion or {}).get("records_file")
        parts = [d / merged] if merged else sorted(d.glob(fmt.PART_GLOB))
        if merged and not parts[0].exists():
            raise SessionError(f"{parts[0]}: record file named in {fmt.COMPLETE} is missing")
        tables = []
        for p in parts:
            try:
                tables.append(pq.read_table(p))
            except (OSError, pa.ArrowException) as exc:
                raise SessionError(f"{p}: corrupt or truncated record file: {exc}") from None
        if not tables:
            return _empty_table()
        try:
            table = pa.concat_tables(tables)
        except pa.ArrowException as exc:
            raise SessionError(f"{d}: record files do not share one schema: {exc}") from None
        missing = [c for c in ("index", "image_slot", "ids", "x_um", "y_um", "spot_x_su") if c not in table.column_names]
        if missing:
            raise SessionError(f"{d}: record files lack columns {missing}")
        return table

    # ------------------------------------------------------------------ summary
    @property
    def complete(self) -> bool:
        """True when recording stopped cleanly (``complete.json`` present)."""
        return self.completion is not None

    @property
    def n_frames(self) -> int:
        """Frames with a record (whether or not their image is stored)."""
        return int(self.table.num_rows)

    @property
    def indices(self) -> np.ndarray:
        """Camera frame index of every record, in order."""
        return self._index

    @property
    def frame_indices(self) -> np.ndarray:
        """Camera frame indices whose image is stored."""
        return self._index[self._slots >= 0]

    @property
    def frame_period_s(self) -> float:
        prof = self.metadata.get("lab_profile") or {}
        fps = (prof.get("camera") or {}).get("fps")
        if fps:
            return 1.0 / float(fps)
        t = self.table.column("t_exposure_start").to_numpy() if self.n_frames > 1 else None
        return float(np.median(np.diff(t) / np.maximum(np.diff(self._index), 1))) if t is not None else float("nan")

    @property
    def pixel_size_um(self) -> float:
        cal = self.metadata.get("calibration") or {}
        if cal.get("pixel_size_um"):
            return float(cal["pixel_size_um"])
        prof = self.metadata.get("lab_profile") or {}
        return float((prof.get("camera") or {}).get("pixel_size_um", float("nan")))

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
        return lines

    # ------------------------------------------------------------------ data
    def _frames_array(self):
        if self._frames is None:
            import zarr

            p = self.path / fmt.FRAMES
            if not p.exists():
                raise SessionError(f"{p}: frames missing although the records say images were stored")
            try:
                self._frames = zarr.open_array(str(p), mode="r")
            except Exception as exc:
                raise SessionError(f"{p}: cannot open frames: {type(exc).__name__}: {exc}") from None
        return self._frames

    def image(self, index: int) -> np.ndarray | None:
        """The stored image (uint16) of camera frame ``index``; None if it was not stored."""
        row = self._row_of.get(int(index))
        if row is None:
            raise SessionError(f"{self.path}: no frame with index {index} in this session")
        slot = int(self._slots[row])
        if slot < 0:
            return None
        a = self._frames_array()
        if slot >= a.shape[0]:
            raise SessionError(f"{self.path / fmt.FRAMES}: frame {index} (slot {slot}) is missing (truncated frames)")
        try:
            return np.asarray(a[slot])
        except Exception as exc:
            raise SessionError(f"{self.path / fmt.FRAMES}: frame {index} is corrupt: {type(exc).__name__}: {exc}") from None

    def images(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, image) for every stored image, in order."""
        for i in self.frame_indices:
            yield int(i), self.image(int(i))

    def events(self) -> list[dict[str, Any]]:
        """The event log (a truncated last line of a killed session is skipped)."""
        p = self.path / fmt.EVENTS
        if not p.exists():
            return []
        out = []
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"{p}: cannot read event log: {exc}") from None
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                if k == len(lines) - 1 and not self.complete:
                    break  # cut off by the kill
                raise SessionError(f"{p}:{k + 1}: corrupt event line") from None
            out.append(ev)
        return out

    def _lists(self, name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(values, offsets) of a list column."""
        import pyarrow as pa

        col = self.table.column(name)
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if arr.offset or len(arr) == 0:
            arr = pa.concat_arrays([arr]) if len(arr) else arr
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        return values[offsets[0]:offsets[-1]] if len(offsets) else values[:0], offsets - (offsets[0] if len(offsets) else 0)

    def records(self) -> Iterator[SessionRecord]:
        """One :class:`SessionRecord` per recorded frame, in order (images not loaded)."""
        if not self.n_frames:
            return
        cols = {c: self.table.column(c).to_numpy() for c in fmt.SCALAR_COLUMNS if c != "events_json"}
        events = self.table.column("events_json").to_pylist()
        timings = {s: self.table.column(fmt.timing_column(s)).to_numpy() for s in STAGES}
        lists = {c: self._lists(c, d) for c, d in {**fmt.PARTICLE_COLUMNS, **fmt.SPOT_COLUMNS}.items()}
        truth = {c: self._lists(c, d) for c, d in fmt.TRUTH_COLUMNS.items() if c in self.table.column_names}
        for k in range(self.n_frames):
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
                None, json.loads(events[k]) if events[k] else [], tr, int(cols["image_slot"][k]))

    def frames_table(self):
        """Per-frame scalars as a DataFrame: frame, t (exposure middle, s), flags, timings (ms), n."""
        import pandas as pd

        t = self.table
        df = pd.DataFrame({"frame": t.column("index").to_numpy(),
                           "t": 0.5 * (t.column("t_exposure_start").to_numpy() + t.column("t_exposure_end").to_numpy()),
                           "t_applied": t.column("t_applied").to_numpy(),
                           "flags": t.column("flags").to_numpy(), "laser_on": t.column("laser_on").to_numpy(),
                           "n": np.diff(self._lists("ids", np.int64)[1]) if self.n_frames else np.zeros(0, int),
                           "n_spots": np.diff(self._lists("spot_x_su", np.float32)[1]) if self.n_frames else np.zeros(0, int)})
        for s in STAGES:
            df[f"{s}_ms"] = t.column(fmt.timing_column(s)).to_numpy()
        df["latency_s"] = df["t_applied"] - df["t"]
        return df

    def tracks(self):
        """Long table, one row per particle and frame: frame, particle, x, y (um), t (s), mass,
        quality, fx, fy (pN), saturation."""
        import pandas as pd

        ids, off = self._lists("ids", np.int64)
        n = np.diff(off)
        frame = np.repeat(self._index, n)
        t_mid = 0.5 * (self.table.column("t_exposure_start").to_numpy() + self.table.column("t_exposure_end").to_numpy())
        return pd.DataFrame({
            "frame": frame.astype(np.int64), "particle": ids,
            "x": self._lists("x_um", np.float64)[0], "y": self._lists("y_um", np.float64)[0],
            "t": np.repeat(t_mid, n), "mass": self._lists("mass", np.float32)[0],
            "quality": self._lists("quality", np.uint8)[0],
            "fx": self._lists("fx_pN", np.float64)[0], "fy": self._lists("fy_pN", np.float64)[0],
            "saturation": self._lists("saturation", np.uint8)[0]})


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
