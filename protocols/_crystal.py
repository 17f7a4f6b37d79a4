"""Shared set-up of the crystal protocols (not a protocol itself)."""

import numpy as np

from cybloid.errors import ProtocolError
from cybloid.forces import HarmonicTrap, TabulatedPair
from cybloid.params import Param
from cybloid.protocol import mark, record, remove_term, set_term, wait

PARAMS = [
    Param("particles", 36, "", 2, 400, "number of particles"),
    Param("spacing", 8.0, "um", 5.0, 50.0, "lattice spacing (> laser range + 1 um, so spots act on their own particle)"),
    Param("pair_stiffness", 0.8, "pN/um", 0.0, 100.0, "repulsive stiffness of the bonds below the spacing"),
    Param("attraction", 0.15, "pN", 0.0, 100.0, "largest attraction of a stretched bond"),
    Param("gather_stiffness", 0.005, "pN/um", 0.0, 10.0, "weak central trap that gathers the particles"),
    Param("gather", 10.0, "s", 0.0, 1e5, "how long the central trap acts"),
    Param("duration", 20.0, "s", 0.0, 1e6, "how long the crystal is held after gathering"),
    Param("spread", 1.4, "", 1.0, 10.0, "initial disordered field: radius relative to the crystal's"),
    Param("max_force", 60.0, "pN", 1.0, 1000.0, "simulated lab only: full-beam force of one spot"),
]


def crystal_radius(p):
    return float(np.sqrt(p.particles * p.spacing**2 * 0.866 / np.pi))


def disordered(p, lab, seed=12345):
    """Random positions (um) in a disc around the field's centre, at least 0.8 spacing apart."""
    rng = np.random.default_rng(seed)
    c = np.array(lab.fov_um) / 2
    rmax = min(p.spread * crystal_radius(p), 0.45 * min(lab.fov_um))
    pts = np.empty((p.particles, 2))
    k = attempts = 0
    while k < p.particles:
        attempts += 1
        if attempts > 500 * p.particles:  # random placement cannot fill the disc: say so, never hang
            raise ProtocolError(f"simulation set-up: cannot place {p.particles} particles at least "
                                f"{0.8 * p.spacing:g} um apart in a disc of radius {rmax:.1f} um (field of view "
                                f"{lab.fov_um[0]:g} x {lab.fov_um[1]:g} um; placed {k} in {attempts - 1} "
                                "attempts): use fewer particles or a smaller spacing")
        q = c + rng.uniform(-rmax, rmax, 2)
        if np.hypot(*(q - c)) <= rmax and (k == 0 or np.hypot(*(pts[:k] - q).T).min() >= 0.8 * p.spacing):
            pts[k] = q
            k += 1
    return pts


def simulation(p, lab):
    """Simulated lab: a disordered field of particles; a stronger beam so that all spots fit in it."""
    return {"initial_positions_um": disordered(p, lab), "overrides": {"laser.max_force_pN": p.max_force}}


def gather_trap(p, lab):
    return HarmonicTrap([np.array(lab.fov_um) / 2], stiffness=p.gather_stiffness, capture_radius=1e4)


def bond_profile(p, cutoff_factor, n=400):
    """Pair force table F(r) (pN, > 0 repulsive): stiff repulsion below the spacing a,
    attraction ``0.3 pN/um (r - a)`` capped at ``p.attraction`` and tapered to zero at the cutoff.

    A capped attraction keeps a disordered cluster from collapsing (many stretched bonds
    pulling one particle into another would bring particles within the laser range of each
    other's spots).
    """
    a = p.spacing
    rc = cutoff_factor * a
    r = np.linspace(0.0, rc, n)
    rep = p.pair_stiffness * np.clip(a - r, 0.0, None)
    att = np.minimum(0.3 * np.clip(r - a, 0.0, None), p.attraction)
    taper = np.clip((rc - r) / (0.1 * a), 0.0, 1.0)
    return r, rep - att * taper


def bonds(p, cutoff_factor):
    """The programmed bonds as a tabulated pair term (the same slot learned pair forces use)."""
    r, f = bond_profile(p, cutoff_factor)
    return TabulatedPair(r, f, cutoff=float(r[-1]))


def gather_then_hold(p, lab, lattice):
    """Gather the particles with the central trap for ``p.gather`` s, then hold the crystal ``p.duration`` s.

    The interaction terms must already be set; the whole run is recorded.
    """
    yield set_term("gather", gather_trap(p, lab))
    yield record(True)
    yield mark("gathering")
    yield wait(p.gather)
    yield remove_term("gather")
    yield mark("crystal", lattice=lattice)
    yield wait(p.duration)
    yield record(False)
