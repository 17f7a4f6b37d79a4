"""Analog-output waveforms that time-share one beam among a spot table (galvos or VCO-driven AODs).

One frame of output is ``round(frame_s * rate_hz)`` samples, made of whole dwell cycles of
``cycle_s``. In every cycle the beam visits the spots in table order: it moves to a spot at no
more than the slew limit with the beam blanked, dwells there with the beam on for the spot's
share of the cycle, and is blanked for the rest of the cycle. Dwell boundaries are whole samples;
they are dithered from cycle to cycle (as the reference firmware does with its microsecond
timer) so that each spot's mean on-time is its share to within a fraction of a sample per frame.
The last sample of every frame is blanked, so that an output that stops (host late, task
underflow) holds the beam off.

Steering units (0..65535, what the calibration gives) map linearly onto each axis's voltage
range; positions outside the configured safe voltage limits are clipped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cybloid.errors import ParameterError

FULL_SCALE = 65535
GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class WaveformConfig:
    """Output timing and electrical limits.

    Parameters
    ----------
    rate_hz : float
        AO sample rate (S/s per channel).
    frame_s : float
        Duration of one frame's waveform (the camera frame period).
    cycle_s : float
        Dwell cycle: every spot is visited once per cycle.
    x_volts, y_volts : (float, float)
        Voltage at steering unit 0 and at 65535 for each axis.
    limit_volts : (float, float)
        Safe output range; positions beyond it are clipped.
    slew_v_per_s : float
        Largest voltage step rate the scanner follows (V/s); moves between spots are ramps at
        this rate with the beam blanked.
    blank : str
        ``"digital"``: a digital line (True = beam on); ``"amplitude"``: a third AO channel that
        sets the AOD RF amplitude (``amplitude_volts`` on, 0 V off).
    amplitude_volts : float
        AOD amplitude control voltage with the beam on.
    """

    rate_hz: float = 100_000.0
    frame_s: float = 0.01
    cycle_s: float = 0.001
    x_volts: tuple[float, float] = (-5.0, 5.0)
    y_volts: tuple[float, float] = (-5.0, 5.0)
    limit_volts: tuple[float, float] = (-10.0, 10.0)
    slew_v_per_s: float = 2.0e5
    blank: str = "digital"
    amplitude_volts: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate_hz > 0 or not self.frame_s > 0 or not self.cycle_s > 0:
            raise ParameterError("nidaq: rate_hz, frame_s and cycle_s must be positive")
        if self.samples_per_cycle < 2:
            raise ParameterError(f"nidaq: cycle_s {self.cycle_s} s is under 2 samples at {self.rate_hz} S/s")
        if self.cycles_per_frame < 1:
            raise ParameterError(f"nidaq: frame_s {self.frame_s} s is shorter than one cycle ({self.cycle_s} s)")
        lo, hi = self.limit_volts
        if not lo < hi:
            raise ParameterError(f"nidaq: limit_volts must be (low, high) with low < high, got {self.limit_volts}")
        if not self.slew_v_per_s > 0:
            raise ParameterError("nidaq: slew_v_per_s must be positive")
        if self.blank not in ("digital", "amplitude"):
            raise ParameterError(f"nidaq: blank must be 'digital' or 'amplitude', got {self.blank!r}")

    @property
    def samples_per_cycle(self) -> int:
        return int(round(self.cycle_s * self.rate_hz))

    @property
    def cycles_per_frame(self) -> int:
        return int(round(self.frame_s * self.rate_hz)) // self.samples_per_cycle

    @property
    def samples_per_frame(self) -> int:
        return self.cycles_per_frame * self.samples_per_cycle


@dataclass
class Waveform:
    """One frame of output.

    ``volts`` is (channels, samples): x, y (and the AOD amplitude with ``blank="amplitude"``);
    ``beam_on`` (samples,) the beam state (the digital blanking line); ``on_samples`` (n,) how
    many samples each spot had the beam over the frame; ``clipped`` the spots moved inside the
    voltage limits; ``saturated`` whether the moves left too little time for the shares (all
    on-times were then scaled down together).
    """

    volts: np.ndarray
    beam_on: np.ndarray
    on_samples: np.ndarray
    clipped: int
    saturated: bool


def su_to_volts(su: np.ndarray, volts: tuple[float, float]) -> np.ndarray:
    """Steering units (0..65535) -> volts, linear between ``volts[0]`` and ``volts[1]``."""
    return volts[0] + np.asarray(su, float) / FULL_SCALE * (volts[1] - volts[0])


def build_waveform(x_su: np.ndarray, y_su: np.ndarray, share: np.ndarray, cfg: WaveformConfig,
                   phase: float = 0.0) -> Waveform:
    """The frame's samples for a spot table.

    Parameters
    ----------
    x_su, y_su : (n,) arrays
        Spot positions in steering units.
    share : (n,) array
        Beam share of each spot (sum <= 1).
    cfg : WaveformConfig
    phase : float
        Dither phase (0..1) of the first cycle; pass the returned frame's successor's phase
        (``next_phase``) to keep the dither running across frames.

    Returns
    -------
    Waveform
    """
    n = len(x_su)
    m, cycles = cfg.samples_per_cycle, cfg.cycles_per_frame
    total = m * cycles
    lo, hi = cfg.limit_volts
    vx, vy = su_to_volts(x_su, cfg.x_volts), su_to_volts(y_su, cfg.y_volts)
    finite = np.isfinite(vx) & np.isfinite(vy)
    clipped = int(np.count_nonzero((vx < lo) | (vx > hi) | (vy < lo) | (vy > hi) | ~finite))
    vx = np.clip(np.nan_to_num(vx), lo, hi)
    vy = np.clip(np.nan_to_num(vy), lo, hi)
    sh = np.clip(np.nan_to_num(np.asarray(share, float)), 0.0, 1.0)
    sh[~finite] = 0.0
    if sh.sum() > 1.0:
        sh = sh / sh.sum()
    keep = sh > 0
    vx, vy, sh_k = vx[keep], vy[keep], sh[keep]
    out = np.empty((3 if cfg.blank == "amplitude" else 2, total))
    on_samples = np.zeros(n, np.int64)
    saturated = False
    if len(sh_k) == 0:  # blank frame: the range's centre, beam off
        out[0] = np.clip(0.5 * sum(cfg.x_volts), lo, hi)
        out[1] = np.clip(0.5 * sum(cfg.y_volts), lo, hi)
        if cfg.blank == "amplitude":
            out[2] = 0.0
        return Waveform(out, np.zeros(total, bool), on_samples, clipped, False)
    # moves (blanked): from the previous spot (the last one, for the first) at the slew limit
    step_v = cfg.slew_v_per_s / cfg.rate_hz
    px, py = np.roll(vx, 1), np.roll(vy, 1)
    move = np.ceil(np.maximum(np.abs(vx - px), np.abs(vy - py)) / step_v - 1e-9).astype(np.int64)
    if len(sh_k) == 1:
        move[:] = 0
    budget = m - 1 - move.sum()  # one sample per cycle stays blanked (frame ends blanked)
    want = sh_k * m
    scale = 1.0
    if budget <= 0:
        raise ParameterError(f"nidaq: moving between {len(sh_k)} spots at {cfg.slew_v_per_s:g} V/s takes "
                             f"{move.sum()} of the {m} samples of a cycle; use fewer spots or a longer cycle_s")
    if want.sum() > budget:
        scale = budget / want.sum()
        saturated = True
    cum = np.cumsum(want * scale)  # on-samples up to the end of each spot
    K = len(sh_k)
    ph = (phase + np.arange(cycles) * GOLDEN) % 1.0
    ends_on = np.floor(cum[None, :] + ph[:, None]).astype(np.int64)  # <= budget: floor(budget + ph)
    on_k = np.diff(ends_on, axis=1, prepend=0)  # (cycles, K) dithered on-samples
    rest = m - move.sum() - on_k.sum(axis=1)  # >= 1: the cycle ends blanked
    # segments of each cycle: move_0, on_0, ..., move_K-1, on_K-1, rest
    lengths = np.empty((cycles, 2 * K + 1), np.int64)
    lengths[:, 0:2 * K:2] = move[None, :]
    lengths[:, 1:2 * K:2] = on_k
    lengths[:, 2 * K] = rest
    flat = lengths.ravel()
    seg = np.repeat(np.arange(flat.size), flat)
    starts = np.cumsum(flat) - flat
    j = np.arange(total) - starts[seg]
    kind = seg % (2 * K + 1)
    spot = np.minimum(kind // 2, K - 1)
    is_move = (kind % 2 == 0) & (kind < 2 * K)
    frac = np.where(is_move, (j + 1) / np.maximum(flat[seg], 1), 1.0)
    out[0] = px[spot] + (vx[spot] - px[spot]) * frac
    out[1] = py[spot] + (vy[spot] - py[spot]) * frac
    beam = kind % 2 == 1
    if cfg.blank == "amplitude":
        out[2] = np.where(beam, cfg.amplitude_volts, 0.0)
    on_samples[np.flatnonzero(keep)] = on_k.sum(axis=0)
    return Waveform(out, beam, on_samples, clipped, saturated)


def next_phase(phase: float, cfg: WaveformConfig) -> float:
    """Dither phase of the frame after one built with ``phase``."""
    return (phase + cfg.cycles_per_frame * GOLDEN) % 1.0
