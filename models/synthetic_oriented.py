"""Synthetic oriented particles with known orientation-dependent pair forces.

Random configurations (uniform in a disk, no two closer than ``min_gap_um``) with
independent, uniformly random orientations ``theta_i`` (rad; unit vector
``m_i = (cos theta_i, sin theta_i)``). The force on particle i sums, over neighbours j
within ``cutoff_um`` (``r = x_j - x_i``, ``rhat = r / |r|``):

``repulsion``
    isotropic screened repulsion (:func:`~cybloid.models.synthetic.yukawa_pair`), the
    only part an orientation-blind model can represent;
``vision``
    a vision-cone attraction of an active particle towards what it sees ahead:
    ``A exp(-(r - c)/l) sigma((m_i . rhat - cos a) / w) rhat`` (half-angle ``a``); not
    reciprocal (j need not see i), not conservative;
``dipolar``
    in-plane point dipoles along ``m_i`` with energy
    ``U_ij = D [m_i . m_j - 3 (m_i . rhat)(m_j . rhat)] / r^3`` (``D`` in pN um^4):
    force ``F_i = dU/dr = -(3 D / r^4) [(m_i . m_j) rhat + (m_j . rhat) m_i + (m_i . rhat) m_j
    - 5 (m_i . rhat)(m_j . rhat) rhat]`` and torque ``-dU/dtheta_i``; depends on both
    orientations.

Orientations are independent of positions, so averaged over orientations the dipolar part
vanishes and the vision part becomes an isotropic attraction: :func:`blind_floor` gives
the error of the best possible orientation-blind predictor (the conditional mean given
positions), the floor for any model without orientation inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cybloid.models.errors import ModelError
from cybloid.models.orientation import oriented_neighbours
from cybloid.models.synthetic import random_disk, yukawa_pair

TERMS = ("repulsion", "vision", "dipolar")


@dataclass
class OrientedForceLaw:
    """Parameters of the synthetic force (pN, um, rad); ``terms`` picks the parts included."""

    terms: tuple[str, ...] = TERMS
    repulsion_pN: float = 0.5
    vision_pN: float = 2.0
    vision_length_um: float = 2.0
    vision_contact_um: float = 2.0
    vision_half_angle_rad: float = np.pi / 3
    vision_width: float = 0.1
    dipole_pN_um4: float = 8.0
    cutoff_um: float = 6.0

    def __post_init__(self) -> None:
        unknown = [t for t in self.terms if t not in TERMS]
        if unknown:
            raise ModelError(f"synthetic oriented: unknown term(s) {unknown} (known: {', '.join(TERMS)})")

    def cone(self, cos_phi: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(cos_phi - np.cos(self.vision_half_angle_rad)) / self.vision_width))

    def vision_radial(self, r: np.ndarray) -> np.ndarray:
        return self.vision_pN * np.exp(-(r - self.vision_contact_um) / self.vision_length_um)


def _pairs(pos: np.ndarray, th: np.ndarray, law: OrientedForceLaw):
    rel, mask, thj = oriented_neighbours(pos, th, law.cutoff_um, 64)
    r = np.linalg.norm(rel, axis=-1)
    rs = np.where(mask, r, 1.0)
    rhat = rel / rs[..., None]
    mi = np.stack([np.cos(th), np.sin(th)], -1)[:, None, :]
    mj = np.stack([np.cos(thj), np.sin(thj)], -1)
    return rel, mask, rs, rhat, mi, mj


def oriented_forces(positions_um: np.ndarray, orientations_rad: np.ndarray,
                    law: OrientedForceLaw | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(forces (N, 2) pN, torques (N,) pN um) of one configuration under ``law``."""
    law = law or OrientedForceLaw()
    pos, th = np.asarray(positions_um, float), np.asarray(orientations_rad, float)
    rel, mask, r, rhat, mi, mj = _pairs(pos, th, law)
    m = mask[..., None]
    f = np.zeros_like(pos)
    tq = np.zeros(len(pos))
    if "repulsion" in law.terms:
        y = yukawa_pair(law.repulsion_pN)(r)
        f -= np.where(m, y[..., None] * rhat, 0.0).sum(axis=1)
    if "vision" in law.terms:
        a = law.vision_radial(r) * law.cone((mi * rhat).sum(-1))
        f += np.where(m, a[..., None] * rhat, 0.0).sum(axis=1)
    if "dipolar" in law.terms:
        d = law.dipole_pN_um4
        mir, mjr, mij = (mi * rhat).sum(-1), (mj * rhat).sum(-1), (mi * mj).sum(-1)
        fd = -(3 * d / r**4)[..., None] * (mij[..., None] * rhat + mjr[..., None] * mi + mir[..., None] * mj
                                         - 5 * (mir * mjr)[..., None] * rhat)
        f += np.where(m, fd, 0.0).sum(axis=1)
        mperp = np.stack([-np.sin(th), np.cos(th)], -1)[:, None, :]
        t = -d / r**3 * ((mperp * mj).sum(-1) - 3 * (mperp * rhat).sum(-1) * mjr)
        tq += np.where(mask, t, 0.0).sum(axis=1)
    return f, tq


def dipolar_energy(positions_um: np.ndarray, orientations_rad: np.ndarray, law: OrientedForceLaw | None = None) -> float:
    """Total dipolar energy (pN um) over pairs within the cutoff (each pair once)."""
    law = law or OrientedForceLaw()
    pos, th = np.asarray(positions_um, float), np.asarray(orientations_rad, float)
    rel, mask, r, rhat, mi, mj = _pairs(pos, th, law)
    u = law.dipole_pN_um4 * ((mi * mj).sum(-1) - 3 * (mi * rhat).sum(-1) * (mj * rhat).sum(-1)) / r**3
    return 0.5 * float(np.where(mask, u, 0.0).sum())


def blind_forces(positions_um: np.ndarray, law: OrientedForceLaw | None = None) -> np.ndarray:
    """E[F | positions] over uniform independent orientations: the best orientation-blind force (N, 2)."""
    law = law or OrientedForceLaw()
    pos = np.asarray(positions_um, float)
    rel, mask, r, rhat, _, _ = _pairs(pos, np.zeros(len(pos)), law)
    m = mask[..., None]
    f = np.zeros_like(pos)
    if "repulsion" in law.terms:
        f -= np.where(m, yukawa_pair(law.repulsion_pN)(r)[..., None] * rhat, 0.0).sum(axis=1)
    if "vision" in law.terms:
        phi = (np.arange(4096) + 0.5) * 2 * np.pi / 4096
        mean_cone = float(law.cone(np.cos(phi)).mean())
        f += np.where(m, (law.vision_radial(r) * mean_cone)[..., None] * rhat, 0.0).sum(axis=1)
    return f  # the dipolar force is odd in m_i (and in m_j): zero on average


@dataclass
class OrientedSet:
    """Frames of positions (N, 2) um, orientations (N,) rad, noisy and exact forces (N, 2) pN, torques (N,) pN um."""

    positions_um: list = field(default_factory=list)
    orientations_rad: list = field(default_factory=list)
    forces_pN: list = field(default_factory=list)
    true_forces_pN: list = field(default_factory=list)
    torques_pN_um: list = field(default_factory=list)
    true_torques_pN_um: list = field(default_factory=list)


def oriented_configurations(n_frames: int = 100, n: int = 30, radius_um: float = 15.0, min_gap_um: float = 2.0,
                            law: OrientedForceLaw | None = None, noise_frac: float = 0.1, seed: int = 0) -> OrientedSet:
    """Independent random oriented configurations; forces and torques with Gaussian noise of
    ``noise_frac`` times their RMS (per component) added (the exact ones are kept too)."""
    if n_frames < 1 or n < 2:
        raise ModelError(f"synthetic oriented: need n_frames >= 1 and n >= 2, got {n_frames}, {n}")
    law = law or OrientedForceLaw()
    rng = np.random.default_rng(seed)
    out = OrientedSet()
    for _ in range(n_frames):
        pos = random_disk(rng, n, radius_um, min_gap_um)
        th = rng.uniform(-np.pi, np.pi, n)
        f, t = oriented_forces(pos, th, law)
        out.positions_um.append(pos)
        out.orientations_rad.append(th)
        out.true_forces_pN.append(f)
        out.true_torques_pN_um.append(t)
    fs = np.sqrt(np.mean(np.concatenate(out.true_forces_pN) ** 2))
    ts = np.sqrt(np.mean(np.concatenate(out.true_torques_pN_um) ** 2))
    for f, t in zip(out.true_forces_pN, out.true_torques_pN_um):
        out.forces_pN.append(f + noise_frac * fs * rng.standard_normal(f.shape))
        out.torques_pN_um.append(t + noise_frac * ts * rng.standard_normal(t.shape))
    return out
