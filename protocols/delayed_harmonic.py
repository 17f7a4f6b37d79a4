"""Delayed harmonic traps: the force comes from each particle's position a delay tau ago.

Delayed-feedback experiment of the cybloid paper. A grid of traps, one particle in each.
With ``centre = "fixed"`` the force is ``-stiffness (x(t - tau) - c)`` towards a fixed trap
centre c: for k = stiffness/gamma the stationary variance per axis is
``D (1 + sin(k tau)) / (k cos(k tau))``, and the motion becomes oscillatory and unstable
for k tau >= pi/2. With ``centre = "own"`` the trap is centred on the particle's own past
position, ``-stiffness (x(t) - x(t - tau))``: the particle subdiffuses on times below tau.
Delays are realised to within half a frame (latency compensated, see docs/forces.md).
"""

from cybloid.forces import Delayed, DelayedSelf, HarmonicTrap
from cybloid.params import Param
from cybloid.protocols._traps import simulation, trap_centres  # noqa: F401  (simulation: the lab set-up)
from cybloid.protocol import mark, record, set_term, wait

PARAMS = [
    Param("stiffness", 0.1, "pN/um", 1e-4, 10.0, "trap stiffness"),
    Param("tau", 0.2, "s", 0.0, 100.0, "delay"),
    Param("centre", "fixed", "", choices=("fixed", "own"), doc="trap centred at a fixed point or at the particle's own past position"),
    Param("duration", 30.0, "s", 0.0, 1e6, "how long the particles are held"),
    Param("traps", 16, "", 1, 400, "number of traps (rounded up to a square grid)"),
    Param("spacing", 12.0, "um", 6.0, 1000.0, "distance between neighbouring traps (> laser range + excursions)"),
]


def protocol(p, lab):
    centres = trap_centres(p, lab.fov_um)
    if p.centre == "fixed":
        term = Delayed(HarmonicTrap(centres, stiffness=p.stiffness, capture_radius=p.spacing / 2), tau=p.tau)
    else:
        term = DelayedSelf(stiffness=p.stiffness, radius=0.0, tau=p.tau)
    yield set_term("trap", term)
    yield record(True)
    yield mark("delayed-trap", traps=len(centres), tau_s=p.tau, k_tau=p.stiffness / lab.gamma * p.tau)
    yield wait(p.duration)
    yield record(False)
