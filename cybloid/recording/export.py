"""Exporting a session: trackpy-compatible tables (Parquet, CSV) and OME-TIFF stacks of the frames,
streamed (a batch of records or one frame at a time), so sessions larger than memory export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cybloid.errors import SessionError
from cybloid.recording.session import Session

FORMATS = ("parquet", "csv")


def tracks_table(session: Session) -> pd.DataFrame:
    """trackpy-style table: ``frame, particle, x, y`` (um) plus ``x_px, y_px`` (image pixels), ``t`` (s),
    ``mass``, ``quality`` flags, forces ``fx, fy`` (pN) and ``saturation`` flags."""
    df = session.tracks()
    px = session.pixel_size_um
    if np.isfinite(px) and px > 0:
        df.insert(4, "x_px", df["x"] / px)
        df.insert(5, "y_px", df["y"] / px)
    return df


def _with_pixels(df: pd.DataFrame, px: float) -> pd.DataFrame:
    if np.isfinite(px) and px > 0:
        df.insert(4, "x_px", df["x"] / px)
        df.insert(5, "y_px", df["y"] / px)
    return df


def export_tracks(session: Session, out: str | os.PathLike, fmt: str = "parquet") -> Path:
    """Write the tracks table, a batch of frames at a time (never the whole table in memory);
    returns the path written."""
    if fmt not in FORMATS:
        raise SessionError(f"export: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    path = Path(out)
    px = session.pixel_size_um
    tmp = path.with_name(path.name + ".tmp")
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            meta = {b"cybloid": json.dumps({"session": str(session.path), "units": {
                "x": "um", "y": "um", "x_px": "px", "y_px": "px", "t": "s", "fx": "pN", "fy": "pN"}}).encode()}
            writer = None
            try:
                for piece in session.iter_tracks():
                    table = pa.Table.from_pandas(_with_pixels(piece, px), preserve_index=False)
                    if writer is None:
                        schema = table.schema.with_metadata({**(table.schema.metadata or {}), **meta})
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table.cast(writer.schema))
                if writer is None:  # no records: an empty table with the right columns
                    table = pa.Table.from_pandas(tracks_table(session), preserve_index=False)
                    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), tmp)
            finally:
                if writer is not None:
                    writer.close()
        else:
            header = True
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                for piece in session.iter_tracks():
                    _with_pixels(piece, px).to_csv(f, index=False, header=header)
                    header = False
                if header:
                    tracks_table(session).to_csv(f, index=False)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SessionError(f"export: cannot write {path}: {exc.strerror or exc}") from None
    return path


MAX_PLANE_TIMES = 100_000
"""Stacks up to this many frames carry each frame's time (OME Plane DeltaT) in the TIFF."""


def export_tiff(session: Session, out: str | os.PathLike) -> tuple[Path, int]:
    """Write the stored frames as an OME-TIFF (BigTIFF) stack, axes TYX, one page per frame, streamed
    one frame at a time; returns (path, pages).

    The OME metadata carries the physical pixel size (um), the frame interval (s) and, for stacks
    of up to :data:`MAX_PLANE_TIMES` frames, each frame's exposure-middle time relative to the first
    (``Plane DeltaT``, s), so Fiji/Bio-Formats, napari and tifffile show physical units.
    """
    import tifffile

    idx = session.frame_indices
    if len(idx) == 0:
        raise SessionError(f"{session.path}: no frames stored in this session (recorded tracks only)")
    stack = session.frames
    path = Path(out)
    px = session.pixel_size_um
    dt = session.frame_interval_s
    meta: dict = {"axes": "TYX", "Name": Path(session.path).name}
    if np.isfinite(px) and px > 0:
        meta.update(PhysicalSizeX=px, PhysicalSizeXUnit="\u00b5m", PhysicalSizeY=px, PhysicalSizeYUnit="\u00b5m")
    if np.isfinite(dt) and dt > 0:
        meta.update(TimeIncrement=dt, TimeIncrementUnit="s")
    n = len(stack)
    if n <= MAX_PLANE_TIMES:
        times = session.frame_times()
        if len(times) == n:
            t_mid = 0.5 * (times["t_exposure_start_s"].to_numpy() + times["t_exposure_end_s"].to_numpy())
            meta["Plane"] = {"DeltaT": (t_mid - t_mid[0]).tolist(), "DeltaTUnit": ["s"] * n}
    written = [0]

    def pages():
        for img in stack:
            written[0] += 1
            yield img

    tmp = path.with_name(path.name + ".tmp.ome.tif")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tw:
            tw.write(pages(), shape=stack.shape, dtype=stack.dtype, photometric="minisblack", metadata=meta)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SessionError(f"export: cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path, written[0]
