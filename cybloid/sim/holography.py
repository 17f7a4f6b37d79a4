"""Holographic actuation in the simulated lab: the focal plane of a phase-only SLM.

A holographic optical tweezers setup shows a phase hologram on an SLM in a plane conjugate to
the objective's back aperture; the focal plane receives its Fourier transform, so *all* spots
exist at once, each with the fraction of the laser power the hologram diffracts into it (no
time-sharing). The trapping force of a spot scales with that power, exactly as the time-averaged
force of a time-shared spot scales with its beam share, so the world takes each spot's power
fraction as its ``share``.

What the simulation models honestly:

- **power split and diffraction efficiency**: each spot's fraction ``|V_m|^2`` is computed from
  the phase the SLM really displays (quantised to its bit depth), with the illumination's
  amplitude; light lost to higher orders, ghosts and the quantisation never reaches a spot;
- **unused light** goes to a *dump spot* outside the field of view (blocked by an iris in the
  intermediate image plane), as HOT setups do; it never acts on the sample;
- **latency**: a table acts from ``t_sent + compute_latency_s + refresh_s`` (hologram computation,
  then the SLM's frame and liquid-crystal settling), not at the next simulation tick.

Spot positions are the commanded ones through the setup's true calibration: the hologram's
position errors (measured in :func:`cybloid.drivers.slm_hologram.focal_plane_quality`, below
0.05 spot width after position correction) are neglected here.
"""

from __future__ import annotations

import numpy as np


class HolographicOptics:
    """Applies holograms to a :class:`~cybloid.sim.world.SimWorld`.

    Parameters
    ----------
    world : SimWorld
    truth : Calibration
        The setup's true calibration (steering units -> field-of-view um).
    amp : (ny, nx) array, optional
        Illumination amplitude on the SLM (uniform if None).
    """

    def __init__(self, world, truth, amp: np.ndarray | None = None) -> None:
        self.world = world
        self.truth = truth
        self.amp = amp
        self.holograms = 0
        self.last_fractions = np.zeros(0)
        self.last_efficiency = 0.0

    def apply(self, displayed_phase: np.ndarray, u_bins: np.ndarray, v_bins: np.ndarray, su_xy: np.ndarray,
              t_applied_s: float) -> np.ndarray:
        """Spots ``0..len(su_xy)-1`` of (u, v) act on the sample from ``t_applied_s`` with the power
        fractions the displayed phase gives them; the remaining (u, v) (the dump) do not.

        Returns the power fraction of every spot in (u, v).
        """
        from cybloid.drivers.slm_hologram import spot_fields

        frac = np.abs(spot_fields(displayed_phase, self.amp, u_bins, v_bins)) ** 2
        n = len(su_xy)
        w = self.world
        spots_um = self.truth.steer_to_um(np.asarray(su_xy, float).reshape(-1, 2)) if n else np.zeros((0, 2))
        w.schedule_spots(w.ticks(t_applied_s), spots_um, frac[:n].astype(float))
        self.holograms += 1
        self.last_fractions = frac
        self.last_efficiency = float(frac.sum())
        return frac

    def blank(self) -> None:
        """All light to the dump (or a closed shutter): no spot on the sample from now on."""
        w = self.world
        tick = max([p.tick for p in list(w._pending)] + [w.tick])
        w.schedule_spots(tick, np.zeros((0, 2)), np.zeros(0))
