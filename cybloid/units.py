"""Physical constants and unit helpers.

Unit system: length um, time s, force pN, energy pN*um (1 pN*um = 1e-18 J).
"""

from __future__ import annotations

import math

BOLTZMANN_PN_UM_PER_K = 1.380649e-5
"""Boltzmann constant in pN*um/K (1.380649e-23 J/K)."""

ROOM_TEMPERATURE_K = 298.15

WATER_VISCOSITY_PA_S = 0.89e-3
"""Dynamic viscosity of water at 25 C in Pa*s (numerically equal in pN*s/um^2)."""


def kT_pN_um(temperature_K: float = ROOM_TEMPERATURE_K) -> float:
    """Thermal energy kT in pN*um (4.11e-3 at 298 K)."""
    return BOLTZMANN_PN_UM_PER_K * temperature_K


def viscosity_pN_s_per_um2(viscosity_Pa_s: float) -> float:
    """Convert a viscosity from Pa*s to pN*s/um^2 (1 N*s/m^2 = 1e12 pN*s / 1e12 um^2: factor 1)."""
    return float(viscosity_Pa_s)


def stokes_friction(diameter_um: float, viscosity_Pa_s: float = WATER_VISCOSITY_PA_S) -> float:
    """Stokes friction coefficient gamma = 3 pi eta sigma in pN*s/um."""
    return 3.0 * math.pi * viscosity_pN_s_per_um2(viscosity_Pa_s) * diameter_um


def diffusion_coefficient(
    diameter_um: float,
    temperature_K: float = ROOM_TEMPERATURE_K,
    viscosity_Pa_s: float = WATER_VISCOSITY_PA_S,
) -> float:
    """Stokes-Einstein diffusion coefficient D = kT/gamma in um^2/s."""
    return kT_pN_um(temperature_K) / stokes_friction(diameter_um, viscosity_Pa_s)
