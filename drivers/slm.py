"""Holographic beam steering with a phase-only SLM (``driver = "slm"``), through slmsuite.

Every spot of the table exists at once, each with its own power: the driver computes a
weighted Gerchberg-Saxton hologram (:mod:`cybloid.drivers.slm_hologram`) whose spot
intensities are the table's shares, and shows it on the SLM (slmsuite: a full-screen window on
the SLM's monitor, ``display = 1``, 2, ...; or slmsuite's simulated SLM, ``display =
"simulated"``, acting on the simulated lab through :mod:`cybloid.sim.holography`).

- **Positions**: steering units (what the calibration gives; ``cybloid calibrate coords``
  measures the camera-to-SLM map through this driver like any other) map linearly onto focal
  plane positions in *bins* (``lambda f / (N pitch)``) within ``range_bins``.
- **Powers**: the light the table does not use (``1 - sum(share)``) goes to a *dump spot* at
  ``dump_bins``, outside the field of view (block it with an iris in an intermediate image
  plane). The dump also absorbs the hologram's measured diffraction efficiency: the spots get
  ``share`` of the laser power as long as ``sum(share)`` stays below the efficiency.
- **Time**: a table acts after the hologram is computed and the SLM has refreshed and settled:
  ``t_applied = t_sent + compute + refresh_s`` (compute measured in real time, modelled by
  ``compute_latency_s`` in virtual time so that a simulated run stays deterministic).
- **Safety**: an SLM cannot switch light off; :meth:`blank` sends everything to the dump. The
  laser driver (and its watchdog) switches the laser itself; a real setup should also have a
  shutter or AOM before the SLM.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from cybloid.devices import SteeringAck
from cybloid.errors import DeviceError, ProfileError
from cybloid.frame import SpotTable

from .slm_hologram import gsw, gsw_refined, spot_fields

log = logging.getLogger(__name__)
FULL_SCALE = 65535


def open_slmsuite_slm(display: Any, width_px: int, height_px: int, bitdepth: int) -> Any:
    """An slmsuite SLM: ``SimulatedSLM`` for ``"simulated"``, ``ScreenMirrored`` on monitor ``display``."""
    import warnings

    logging.getLogger("slmsuite").setLevel(logging.ERROR)  # its INFO lines would land on stdout
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if display == "simulated":
                from slmsuite.hardware.slms.simulated import SimulatedSLM

                logging.getLogger("slmsuite").setLevel(logging.ERROR)  # (its import resets it)
                return SimulatedSLM((width_px, height_px), bitdepth=bitdepth)
            from slmsuite.hardware.slms.screenmirrored import ScreenMirrored

            logging.getLogger("slmsuite").setLevel(logging.ERROR)
            return ScreenMirrored(int(display), bitdepth=bitdepth)
    except ImportError as exc:
        raise DeviceError(f"slm: {exc.name or 'slmsuite'} is not installed: pip install 'cybloid[slm]' and "
                          "pip install --no-deps slmsuite==0.5.0 (docs/drivers.md)") from None
    except Exception as exc:  # no such monitor, no display server
        raise DeviceError(f"slm: cannot open the SLM on display {display!r}: {str(exc).splitlines()[0]}") from None


class SlmSteering:
    """The steering device on an SLM.

    Parameters
    ----------
    slm : slmsuite SLM
        Anything with ``set_phase(phase, settle=...)`` and ``get_realized_phase()``.
    clock : lab clock
    range_bins : (float, float)
        Focal-plane positions (bins) of steering units 0 and 65535, both axes.
    dump_bins : (float, float)
        Where unused light goes (bins).
    iterations : int
        GSW iterations (and ``position_rounds`` of peak-position correction) after a blank; every
        later table starts from the previous frame's hologram and uses ``warm_iterations``.
    backend : str
        ``"numpy"`` or ``"torch"``.
    compute_latency_s, refresh_s : float
        Modelled hologram-compute time (virtual time only) and SLM refresh + settling time.
    optics : HolographicOptics, optional
        The simulated focal plane (simulated SLM only).
    amp : array, optional
        Illumination amplitude on the SLM, for the hologram computation.
    """

    def __init__(self, slm, clock, range_bins: tuple[float, float], dump_bins: tuple[float, float],
                 iterations: int = 30, warm_iterations: int = 8, backend: str = "numpy", position_rounds: int = 1,
                 compute_latency_s: float = 0.002, refresh_s: float = 0.0025, optics=None, amp=None) -> None:
        self.slm = slm
        self.clock = clock
        self.shape = tuple(np.shape(slm.phase)) if getattr(slm, "phase", None) is not None else \
            (int(slm.shape[0]), int(slm.shape[1]))
        self.range_bins = (float(range_bins[0]), float(range_bins[1]))
        self.dump_bins = (float(dump_bins[0]), float(dump_bins[1]))
        self.iterations = int(iterations)
        self.warm_iterations = int(warm_iterations)
        self.backend = backend
        self.position_rounds = int(position_rounds)
        self.compute_latency_s = float(compute_latency_s)
        self.refresh_s = float(refresh_s)
        self.optics = optics
        self.amp = amp
        self.efficiency = 0.9  # updated from every hologram
        self._phase: np.ndarray | None = None
        self.blanked = True
        self.stats = {"tables": 0, "saturated": 0, "compute_s_last": 0.0}
        self.blank()

    def su_to_bins(self, su: np.ndarray) -> np.ndarray:
        lo, hi = self.range_bins
        return lo + np.asarray(su, float) / FULL_SCALE * (hi - lo)

    def _hologram(self, u: np.ndarray, v: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self._phase is not None:  # the previous frame's hologram: a few iterations suffice
            phase, _ = gsw(u, v, target, self.shape, self.warm_iterations, self.amp, self._phase, backend=self.backend)
        else:
            phase, _ = gsw_refined(u, v, target, self.shape, self.iterations, self.amp, None, backend=self.backend,
                                   rounds=self.position_rounds)
        self._phase = phase
        return phase

    def _targets(self, share: np.ndarray) -> np.ndarray:
        """Relative intensities: spots get share/efficiency of the diffracted light, the dump the rest."""
        eff = min(max(self.efficiency, 1e-3), 1.0)
        return np.append(share / eff, max(1.0 - share.sum() / eff, 1e-6))

    def _show(self, u: np.ndarray, v: np.ndarray, share: np.ndarray, su_xy: np.ndarray, t_sent: float) -> float:
        t0 = time.perf_counter()
        for attempt in range(2):
            phase = self._hologram(u, v, self._targets(share))
            self.slm.set_phase(phase, settle=False)
            realized = getattr(self.slm, "get_realized_phase", None)  # quantised as displayed (slmsuite >= 0.5)
            shown = np.asarray(realized()) if realized is not None else phase
            eff = float(np.sum(np.abs(spot_fields(shown, self.amp, u, v)) ** 2))  # as displayed (quantised)
            old, self.efficiency = self.efficiency, max(eff, 1e-3)
            if abs(eff - old) < 0.005 * old:  # the efficiency the targets assumed: done
                break
        compute = time.perf_counter() - t0
        self.stats["compute_s_last"] = compute
        realtime = getattr(self.clock, "realtime", True)
        t_applied = t_sent + (compute if realtime else self.compute_latency_s) + self.refresh_s
        if self.optics is not None:
            self.optics.apply(shown, u, v, su_xy, t_applied)
        return t_applied

    def send(self, table: SpotTable, t_sent: float) -> SteeringAck:
        """Compute and show the hologram of ``table``; returns when it acts (lab clock)."""
        n = len(table)
        su = np.stack([table.x_su, table.y_su], axis=1).astype(float)
        ok = np.all(np.isfinite(su), axis=1)
        share = np.where(ok, np.clip(np.nan_to_num(table.share.astype(float)), 0.0, 1.0), 0.0)
        su = np.clip(np.nan_to_num(su), 0, FULL_SCALE)
        total = share.sum()
        eff = min(max(self.efficiency, 1e-3), 1.0)
        if total > eff:  # not enough light: all spots scaled down together
            self.stats["saturated"] += 1
            share = share * (eff / total)
        keep = share > 0
        u = np.append(self.su_to_bins(su[keep, 0]), self.dump_bins[0])
        v = np.append(self.su_to_bins(su[keep, 1]), self.dump_bins[1])
        t_applied = self._show(u, v, share[keep], su[keep], t_sent)
        self.stats["tables"] += 1
        self.blanked = not keep.any()
        return SteeringAck(t_applied, n)

    def blank(self) -> None:
        """All light to the dump spot."""
        u, v = np.array([self.dump_bins[0]]), np.array([self.dump_bins[1]])
        phase, _ = gsw(u, v, np.ones(1), self.shape, 1, self.amp)
        self._phase = None
        try:
            self.slm.set_phase(phase, settle=False)
        finally:
            if self.optics is not None:
                self.optics.blank()
        self.blanked = True

    def heartbeat(self) -> None:
        """Nothing to do: an SLM holds its hologram (the laser's watchdog guards a dead host)."""

    def close(self) -> None:
        try:
            self.blank()
        finally:
            close = getattr(self.slm, "close", None)
            if close is not None:
                close()


# ---------------------------------------------------------------------- hardware-profile builder
def _display(where: str, v: Any) -> Any:
    if v == "simulated" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return v
    raise ProfileError(f"{where} must be \"simulated\" or the SLM's monitor number (1, 2, ...), got {v!r}")


def _backend(where: str, v: Any) -> str:
    if v not in ("numpy", "torch"):
        raise ProfileError(f"{where} must be \"numpy\" or \"torch\", got {v!r}")
    if v == "torch":
        from .slm_hologram import torch_available

        if not torch_available():
            raise ProfileError(f"{where} = \"torch\" but torch is not installed (pip install 'cybloid[models]')")
    return v


def _pair(where: str, v: Any) -> tuple[float, float]:
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        raise ProfileError(f"{where} must be a pair of numbers, got {v!r}")
    return float(v[0]), float(v[1])


def build_slm_steering(opts, ctx: dict) -> SlmSteering:
    """``driver = "slm"`` in a hardware profile's [steering] table (docs/drivers.md)."""
    from .builders import _num, _where, options

    schema = {"display": (_display, "simulated"), "width_px": (_num(16, 8192, True), 512),
              "height_px": (_num(16, 8192, True), 512), "bitdepth": (_num(1, 16, True), 8),
              "range_bins": (_pair, None), "dump_bins": (_pair, None), "iterations": (_num(1, 1000, True), 30),
              "warm_iterations": (_num(1, 1000, True), 8), "position_rounds": (_num(0, 10, True), 1),
              "backend": (_backend, "numpy"), "compute_latency_s": (_num(0, 10), 0.002),
              "refresh_s": (_num(0, 10), 0.0025)}
    o = options("steering", opts, ctx, schema)
    w, h = o["width_px"], o["height_px"]
    nyq = min(w, h) / 2
    rng = o["range_bins"] or (-nyq / 2, nyq / 2)
    dump = o["dump_bins"] or (0.8 * nyq, 0.8 * nyq)
    where = _where(ctx, "steering")
    if max(abs(rng[0]), abs(rng[1]), abs(dump[0]), abs(dump[1])) >= nyq:
        raise ProfileError(f"{where} range_bins and dump_bins must stay within +-{nyq:g} bins (half the SLM)")
    slm = open_slmsuite_slm(o["display"], w, h, o["bitdepth"])
    optics = None
    if o["display"] == "simulated":
        from cybloid.sim.holography import HolographicOptics

        optics = HolographicOptics(ctx["world"], ctx["truth"])
    return SlmSteering(slm, ctx["clock"], rng, dump, o["iterations"], o["warm_iterations"], o["backend"],
                       o["position_rounds"], o["compute_latency_s"], o["refresh_s"], optics)
