"""Offline tracking with trackpy's semantics: locate every frame (Numba), link with ``trackpy.link``.

``cybloid track`` runs this by default. Options mean what they mean in ``trackpy.locate`` and
``trackpy.link``; options left out are taken from the image (polarity, feature size,
noise-floor ``minmass``) and every choice is reported, so nothing is silently guessed.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cybloid.errors import ParameterError
from cybloid.tracking.auto import detect_polarity, diameter_for_sigma, estimate_sigma, noise_floor_mass
from cybloid.tracking.base import FLAG_CONTACT, FLAG_DOUBTFUL, FLAG_NEW
from cybloid.tracking.locate import COLUMNS, LocateParams, Prepared, locate_array
from cybloid.tracking.locate_kernels import noise as measure_noise
from cybloid.tracking.ring import refine_brightfield_ring, ring_radius_from_profile

QUALITY_COLUMN = "quality"
"""Name of the quality-flag column (bits ``FLAG_*`` of :mod:`cybloid.tracking.base`); not
``flags``, which ``pandas.DataFrame.flags`` hides."""


@dataclass
class TrackOptions:
    """trackpy's locate/link options plus ours; None: decided from the image."""

    diameter: int | None = None
    minmass: float | None = None
    maxsize: float | None = None
    separation: float | None = None
    noise_size: float = 1.0
    smoothing_size: int | None = None
    threshold: float | None = None
    invert: bool | None = None
    percentile: float = 64.0
    topn: int | None = None
    search_range: float | None = None
    memory: int = 0
    max_ecc: float | None = None
    size_range: tuple[float, float] | None = None
    brightfield: bool = False
    ring_diameter: float | None = None
    notes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first bad option."""
        if self.diameter is not None and (self.diameter < 3 or self.diameter % 2 == 0):
            raise ParameterError(f"--diameter must be an odd number of pixels >= 3, got {self.diameter}")
        for name in ("minmass", "maxsize", "separation", "max_ecc", "threshold"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if not self.noise_size > 0:
            raise ParameterError(f"--noise-size must be > 0, got {self.noise_size}")
        if self.smoothing_size is not None and (self.smoothing_size % 2 == 0 or self.smoothing_size <= self.noise_size):
            raise ParameterError(f"--smoothing-size must be odd and larger than --noise-size, "
                                 f"got {self.smoothing_size}")
        if not 0 <= self.percentile <= 100:
            raise ParameterError(f"--percentile must be within 0..100, got {self.percentile}")
        if self.search_range is not None and not self.search_range > 0:
            raise ParameterError(f"--search-range must be > 0 px, got {self.search_range}")
        if self.memory < 0:
            raise ParameterError(f"--memory must be >= 0, got {self.memory}")
        if self.size_range is not None and not 0 <= self.size_range[0] < self.size_range[1]:
            raise ParameterError(f"--size-range must be LO HI with 0 <= LO < HI, got {self.size_range}")
        if self.ring_diameter is not None and not self.ring_diameter > 2:
            raise ParameterError(f"--ring-diameter must be > 2 px, got {self.ring_diameter}")
        if self.topn is not None and self.topn < 1:
            raise ParameterError(f"--topn must be >= 1, got {self.topn}")

    def params(self) -> LocateParams:
        """The resolved ``trackpy.locate`` parameters."""
        return LocateParams(self.diameter, self.minmass, self.maxsize, self.separation, self.noise_size,
                            self.smoothing_size, self.threshold, bool(self.invert), self.percentile, self.topn)

    def trackpy_locate_kwargs(self) -> dict:
        """The same options as keyword arguments of ``trackpy.locate``."""
        kw = dict(diameter=self.diameter, minmass=self.minmass, maxsize=self.maxsize, separation=self.separation,
                  noise_size=self.noise_size, smoothing_size=self.smoothing_size, threshold=self.threshold,
                  invert=bool(self.invert), percentile=self.percentile, topn=self.topn)
        return {k: v for k, v in kw.items() if v is not None}


def resolve(opts: TrackOptions, frame: np.ndarray) -> TrackOptions:
    """Fill the options left out from the first frame; every choice is appended to ``notes``.

    Raises
    ------
    ParameterError
        When the particle size cannot be estimated and ``--diameter`` was not given, or the
        image has no structure at all.
    """
    o = replace(opts, notes=list(opts.notes))
    o.validate()
    pol = detect_polarity(frame)
    if o.invert is None:
        if pol.kind == "dark":
            o.invert = True
            ratio = pol.dark / max(pol.bright, 1e-9)
            o.notes.append(f"dark particles on a bright background (dark/bright structure {ratio:.1f}x): "
                           "tracking with --invert (give --no-invert to override)")
        else:
            o.invert = False
            if pol.kind == "mixed" and not o.brightfield:
                o.notes.append("bright cores and dark rings of similar strength (bright field?): locating the bright "
                               "cores; give --invert for dark particles, --brightfield for ring centres")
    elif pol.kind in ("dark", "bright") and o.invert != (pol.kind == "dark"):
        o.notes.append(f"warning: the image looks like {'dark' if pol.kind == 'dark' else 'bright'} particles on a "
                       f"{'bright' if pol.kind == 'dark' else 'dark'} background, but "
                       f"{'--invert' if o.invert else 'no --invert'} was given")
    sigma = None
    if o.diameter is None:
        sigma = estimate_sigma(frame, invert=o.invert)
        if sigma is None:
            raise ParameterError("cannot estimate the particle size from the first frame (no clear feature): "
                                 "give --diameter (odd, px, slightly larger than a particle image)")
        o.diameter = diameter_for_sigma(sigma)
        o.notes.append(f"particle image width sigma {sigma:.2f} px measured on frame 0: --diameter {o.diameter}")
    if o.search_range is None:
        o.search_range = float(max(2, o.diameter // 2))
        o.notes.append(f"--search-range {o.search_range:g} px (half the diameter; set it to the largest step "
                       "per frame)")
    if o.minmass is None:
        if sigma is None:
            sigma = estimate_sigma(frame, invert=o.invert) or o.diameter / 5.0
        mm = noise_floor_mass(frame, o.params(), sigma, pol.noise)
        o.minmass = float(f"{mm:.3g}")
        o.notes.append(f"--minmass {o.minmass:g}: the mass of a spot of peak 5x the noise ({pol.noise:.3g}) "
                       "(trackpy's default is 0: give --minmass 0 for it)")
    if o.brightfield and o.ring_diameter is None:
        p = o.params()
        res = locate_array(frame, p)
        r = ring_radius_from_profile(frame, res[:, [1, 0]], 3.0 * o.diameter) if len(res) else None
        if r is None:
            raise ParameterError("--brightfield: no dark ring found around the located particles; give "
                                 "--ring-diameter (px)")
        o.ring_diameter = float(2 * round(r) + 1)
        o.notes.append(f"dark ring at radius {r:.1f} px: --ring-diameter {o.ring_diameter:g}")
    return o


def _quality(res: np.ndarray, diameter: int, snr: np.ndarray) -> np.ndarray:
    """CONTACT (another feature within one diameter) and DOUBTFUL (signal < 3x the noise)."""
    from scipy.spatial import cKDTree

    q = np.zeros(len(res), np.uint8)
    if len(res) > 1:
        d, _ = cKDTree(res[:, [1, 0]]).query(res[:, [1, 0]], k=2)
        q[d[:, 1] < diameter] |= FLAG_CONTACT
    q[snr < 3.0] |= FLAG_DOUBTFUL
    return q


@dataclass
class FrameResult:
    """Features of one frame and the time it took (s)."""

    table: np.ndarray
    quality: np.ndarray
    seconds: float
    noise: float


def locate_frame(frame: np.ndarray, o: TrackOptions) -> FrameResult:
    """Locate (and ring-refine with ``brightfield``) one frame; columns :data:`COLUMNS` (+ ``r``)."""
    t0 = time.perf_counter()
    p = o.params()
    pr = Prepared(frame, p)
    res = locate_array(frame, p, pr)
    if o.max_ecc is not None:
        res = res[res[:, 4] <= o.max_ecc]
    if o.size_range is not None:
        res = res[(res[:, 3] >= o.size_range[0]) & (res[:, 3] <= o.size_range[1])]
    if o.brightfield:
        ring = refine_brightfield_ring(frame, res[:, [1, 0]], o.ring_diameter)
        idx = ring[:, 3].astype(int)
        res = res[idx]
        res[:, 1] = ring[:, 0]
        res[:, 0] = ring[:, 1]
        res = np.column_stack([res, ring[:, 2]])
    dt = time.perf_counter() - t0
    noise = float("nan")
    if len(res):
        noise = pr.noise if pr.noise is not None else float(measure_noise(pr.img, pr.raw, p.radius)[1])
    snr = res[:, 5] / noise if noise and noise > 0 else np.full(len(res), np.inf)
    return FrameResult(res, _quality(res, o.diameter, snr), dt, noise)


def link(features: pd.DataFrame, o: TrackOptions) -> pd.DataFrame:
    """``trackpy.link(features, search_range, memory=memory)`` (quietly)."""
    import trackpy as tp

    if len(features) == 0:
        out = features.copy()
        out["particle"] = np.zeros(0, np.int64)
        return out
    tp.quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tp.link(features, o.search_range, memory=o.memory)


def track(frames, o: TrackOptions, progress: bool = False, total: int | None = None,
          warn=print) -> tuple[pd.DataFrame, dict]:
    """Locate and link every frame.

    Returns
    -------
    table : DataFrame
        trackpy's columns ``y, x, mass, size, ecc, signal, raw_mass, ep, frame, particle`` (plus
        ``r`` with ``brightfield``) and ``quality``.
    stats : dict
        ``frames``, ``features``, ``seconds_per_frame`` (locate), ``empty_frames``,
        ``median_snr``.
    """
    from tqdm import tqdm

    cols = COLUMNS + (["r"] if o.brightfield else [])
    parts, quals, fidx = [], [], []
    times, empty, snrs = [], [], []
    n = 0
    for i, frame in enumerate(tqdm(frames, total=total, unit="frame", disable=not progress, desc="locating")):
        fr = locate_frame(frame, o)
        n += 1
        times.append(fr.seconds)
        if len(fr.table) == 0:
            empty.append(i)
            continue
        parts.append(fr.table)
        quals.append(fr.quality)
        fidx.append(np.full(len(fr.table), i, np.int64))
        if np.isfinite(fr.noise) and fr.noise > 0:
            snrs.append(np.median(fr.table[:, 5] / fr.noise))
    if parts:
        df = pd.DataFrame(np.concatenate(parts), columns=cols)
        df["frame"] = np.concatenate(fidx)
        q = np.concatenate(quals)
    else:
        df = pd.DataFrame({c: np.zeros(0) for c in cols})
        df["frame"] = np.zeros(0, np.int64)
        q = np.zeros(0, np.uint8)
    df = link(df, o)
    df[QUALITY_COLUMN] = q
    if len(df):
        df = df.sort_values(["frame", "particle"], kind="stable").reset_index(drop=True)
        first = ~df.duplicated("particle")
        df.loc[first, QUALITY_COLUMN] |= FLAG_NEW
        df[QUALITY_COLUMN] = df[QUALITY_COLUMN].astype(np.uint8)
    stats = {"frames": n, "features": len(df), "seconds_per_frame": float(np.median(times)) if times else 0.0,
             "empty_frames": empty, "median_snr": float(np.median(snrs)) if snrs else float("nan")}
    _warnings(stats, o, warn)
    return df, stats


def _warnings(stats: dict, o: TrackOptions, warn) -> None:
    n, empty = stats["frames"], stats["empty_frames"]
    if stats["features"] == 0:
        warn(f"warning: 0 features in {n} frames (diameter {o.diameter}, minmass {o.minmass:g}, percentile "
             f"{o.percentile:g}, invert {o.invert}): lower --minmass, check --diameter and --invert")
    elif empty:
        warn(f"warning: {len(empty)} of {n} frames have no feature (first: frame {empty[0]})")
    snr = stats["median_snr"]
    if stats["features"] and math.isfinite(snr) and snr < 3.0:
        warn(f"warning: features are at the noise floor (median peak signal {snr:.2f}x the background noise "
             f"over {stats['features']} features): raise --minmass or check --diameter/--invert")


# ------------------------------------------------------------------------------ trackpy comparison
def match(a_xy: np.ndarray, b_xy: np.ndarray, tol_px: float) -> tuple[float, float, float]:
    """Fractions of ``a`` with a ``b`` within ``tol_px`` and vice versa, and the RMS distance (px)
    of the mutual nearest-neighbour pairs within ``tol_px``."""
    from scipy.spatial import cKDTree

    if len(a_xy) == 0 or len(b_xy) == 0:
        return (1.0 if len(a_xy) == 0 else 0.0), (1.0 if len(b_xy) == 0 else 0.0), float("nan")
    dab, jab = cKDTree(b_xy).query(a_xy)
    dba, jba = cKDTree(a_xy).query(b_xy)
    mutual = (jba[jab] == np.arange(len(a_xy))) & (dab < tol_px)
    rms = float(np.sqrt(np.mean(dab[mutual] ** 2))) if mutual.any() else float("nan")
    return float(np.mean(dab < tol_px)), float(np.mean(dba < tol_px)), rms


def compare_trackpy(frames: list[np.ndarray], o: TrackOptions, long_frames: int = 25) -> dict:
    """Run trackpy with the same options on ``frames`` and measure the agreement.

    Returns
    -------
    dict with ``frames``, ``features_trackpy``, ``features_cybloid``, ``matched_trackpy`` /
    ``matched_cybloid`` (fractions found by the other within 0.5 px), the same within 0.1 px
    (``*_01``), ``rms_px``, ``trajectories_trackpy`` / ``_cybloid`` (all, and of at least
    ``min(long_frames, frames // 2)`` frames), ``ms_per_frame_trackpy`` / ``_cybloid``.
    """
    import trackpy as tp

    kw = o.trackpy_locate_kwargs()
    ours, theirs, t_ours, t_tp = [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, frame in enumerate(frames):
            fr = locate_frame(frame, o)
            t_ours.append(fr.seconds)
            a = pd.DataFrame(fr.table[:, :8], columns=COLUMNS)
            t0 = time.perf_counter()
            b = tp.locate(frame, **kw)
            if o.max_ecc is not None:
                b = b[b["ecc"] <= o.max_ecc]
            if o.size_range is not None:
                b = b[(b["size"] >= o.size_range[0]) & (b["size"] <= o.size_range[1])]
            if o.brightfield and len(b):
                b = b.assign(particle=np.arange(len(b)))
                b = tp.locate_brightfield_ring(frame, o.ring_diameter, previous_coords=b, processes=1)
            t_tp.append(time.perf_counter() - t0)
            a["frame"] = i
            b = b.copy()
            b["frame"] = i
            ours.append(a)
            theirs.append(b[["y", "x", "frame"]].astype(float))
    res: dict = {"frames": len(frames)}
    m05 = [match(x[["x", "y"]].to_numpy(), y[["x", "y"]].to_numpy(), 0.5) for x, y in zip(theirs, ours)]
    m01 = [match(x[["x", "y"]].to_numpy(), y[["x", "y"]].to_numpy(), 0.1) for x, y in zip(theirs, ours)]
    nt = np.array([len(x) for x in theirs])
    nc = np.array([len(x) for x in ours])
    res["features_trackpy"] = int(nt.sum())
    res["features_cybloid"] = int(nc.sum())
    res["matched_trackpy"] = float(np.sum([m[0] * k for m, k in zip(m05, nt)]) / max(nt.sum(), 1))
    res["matched_cybloid"] = float(np.sum([m[1] * k for m, k in zip(m05, nc)]) / max(nc.sum(), 1))
    res["matched_trackpy_01"] = float(np.sum([m[0] * k for m, k in zip(m01, nt)]) / max(nt.sum(), 1))
    res["matched_cybloid_01"] = float(np.sum([m[1] * k for m, k in zip(m01, nc)]) / max(nc.sum(), 1))
    sq = [m[2] ** 2 * min(a, b) for m, a, b in zip(m05, nt, nc) if np.isfinite(m[2])]
    w = [min(a, b) for m, a, b in zip(m05, nt, nc) if np.isfinite(m[2])]
    res["rms_px"] = float(math.sqrt(sum(sq) / sum(w))) if w else float("nan")
    lf = max(1, min(long_frames, len(frames) // 2))
    res["long_frames"] = lf
    for name, parts in (("trackpy", theirs), ("cybloid", ours)):
        df = link(pd.concat(parts, ignore_index=True), o)
        lengths = df.groupby("particle").size() if len(df) else pd.Series(dtype=int)
        res[f"trajectories_{name}"] = int(len(lengths))
        res[f"long_trajectories_{name}"] = int((lengths >= lf).sum())
    res["ms_per_frame_trackpy"] = 1e3 * float(np.median(t_tp))
    res["ms_per_frame_cybloid"] = 1e3 * float(np.median(t_ours))
    return res


def format_comparison(r: dict) -> str:
    """The comparison as a few readable lines."""
    sp = r["ms_per_frame_trackpy"] / r["ms_per_frame_cybloid"] if r["ms_per_frame_cybloid"] > 0 else float("nan")
    return "\n".join([
        f"compared with trackpy on {r['frames']} frames (same options):",
        f"  features            trackpy {r['features_trackpy']}, cybloid {r['features_cybloid']}",
        f"  matched within 0.5 px: {100 * r['matched_trackpy']:.2f} % of trackpy's, "
        f"{100 * r['matched_cybloid']:.2f} % of cybloid's",
        f"  matched within 0.1 px: {100 * r['matched_trackpy_01']:.2f} % of trackpy's, "
        f"{100 * r['matched_cybloid_01']:.2f} % of cybloid's",
        f"  RMS position difference {r['rms_px']:.4f} px",
        f"  trajectories        trackpy {r['trajectories_trackpy']} ({r['long_trajectories_trackpy']} of >= "
        f"{r['long_frames']} frames), cybloid {r['trajectories_cybloid']} ({r['long_trajectories_cybloid']})",
        f"  time per frame      trackpy {r['ms_per_frame_trackpy']:.2f} ms, cybloid {r['ms_per_frame_cybloid']:.2f} ms "
        f"({sp:.1f}x)",
    ])
