"""Exporting a session: trackpy-compatible tables (Parquet, CSV) and TIFF stacks of the frames."""

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


def export_tracks(session: Session, out: str | os.PathLike, fmt: str = "parquet") -> Path:
    """Write the tracks table; returns the path written."""
    if fmt not in FORMATS:
        raise SessionError(f"export: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    df = tracks_table(session)
    path = Path(out)
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = {b"cybloid": json.dumps({"session": str(session.path), "units": {
                "x": "um", "y": "um", "x_px": "px", "y_px": "px", "t": "s", "fx": "pN", "fy": "pN"}}).encode()}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
            pq.write_table(table, path)
        else:
            df.to_csv(path, index=False)
    except OSError as exc:
        raise SessionError(f"export: cannot write {path}: {exc.strerror or exc}") from None
    return path


def export_tiff(session: Session, out: str | os.PathLike) -> tuple[Path, int]:
    """Write the stored frames as a (Big)TIFF stack, one page per frame; returns (path, pages)."""
    import tifffile

    idx = session.frame_indices
    if len(idx) == 0:
        raise SessionError(f"{session.path}: no frames stored in this session (recorded tracks only)")
    path = Path(out)
    n = 0
    try:
        with tifffile.TiffWriter(path, bigtiff=True) as tw:
            for i, img in session.images():
                tw.write(img, contiguous=True, description=json.dumps({"frame": i}) if n == 0 else None,
                         metadata=None)
                n += 1
    except OSError as exc:
        raise SessionError(f"export: cannot write {path}: {exc.strerror or exc}") from None
    return path, n
