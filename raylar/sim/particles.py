"""Particle properties and relativistic kinematics (energies in MeV, momenta in MeV/c).

Masses, lifetimes and branching fractions are from the PDG Review of Particle Physics listings.
"""

from dataclasses import dataclass

import numpy as np

C_CM_PER_NS = 29.9792458


@dataclass(frozen=True)
class Species:
    """A particle species: mass in MeV, charge in units of e, lifetime in ns (inf if stable)."""

    name: str
    mass: float
    charge: int
    lifetime_ns: float = np.inf


SPECIES = {
    s.name: s
    for s in (
        Species("gamma", 0.0, 0),
        Species("e-", 0.51099895, -1),
        Species("e+", 0.51099895, +1),
        Species("mu+", 105.6583755, +1, 2196.9811),
        Species("mu-", 105.6583755, -1, 2196.9811),
        Species("pi+", 139.57039, +1, 26.033),
        Species("pi-", 139.57039, -1, 26.033),
        Species("pi0", 134.9768, 0, 8.43e-8),
        Species("k+", 493.677, +1, 12.380),
        Species("p", 938.27208816, +1),
        Species("nu", 0.0, 0),
    )
}

ELECTRON_MASS = SPECIES["e-"].mass

# Primary species of each class; electron events pick e- or e+ with equal probability.
CLASS_PRIMARY = {"gamma": "gamma", "electron": "e-", "muon": "mu+", "pion": "pi+", "kaon": "k+"}


def kinetic_from_momentum(p, mass):
    return np.sqrt(np.square(p) + mass * mass) - mass


def momentum_from_kinetic(t, mass):
    return np.sqrt(np.square(t) + 2.0 * np.asarray(t) * mass)


def beta_gamma(t, mass):
    """Return (beta, gamma) for kinetic energy ``t`` of a particle of ``mass`` > 0."""
    gamma = 1.0 + np.asarray(t, dtype=float) / mass
    beta = np.sqrt(np.maximum(1.0 - 1.0 / (gamma * gamma), 0.0))
    return beta, gamma


def isotropic_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return ``n`` unit vectors uniform on the sphere, shape (n, 3)."""
    cos_theta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta * cos_theta)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the row-wise cross product of (n, 3) arrays (numpy.cross is slow on small arrays)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=-1)


def perpendicular_basis(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return two unit vectors (n, 3) that form a right-handed frame with each unit direction."""
    d = np.atleast_2d(directions)
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    near_z = np.abs(dz) >= 0.9
    # u = z x d, or x x d when d is close to z; both are then normalised.
    ux = np.where(near_z, 0.0, -dy)
    uy = np.where(near_z, -dz, dx)
    uz = np.where(near_z, dy, 0.0)
    norm = np.sqrt(ux * ux + uy * uy + uz * uz)
    u = np.stack([ux, uy, uz], axis=1) / norm[:, None]
    return u, cross(d, u)


def rotate_directions(directions, theta, phi) -> np.ndarray:
    """Turn each direction by polar angle ``theta`` at azimuth ``phi`` around itself."""
    d = np.atleast_2d(directions)
    u, v = perpendicular_basis(d)
    sin_theta = np.sin(theta)[:, None]
    out = d * np.cos(theta)[:, None] + sin_theta * (
        np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
    )
    return out / np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]


def boost(energy, momentum, velocity) -> tuple[np.ndarray, np.ndarray]:
    """Lorentz-boost four-momenta (energy (n,), momentum (n, 3)) by the velocity vector (3,) in c."""
    velocity = np.asarray(velocity, dtype=float)
    b2 = float(velocity @ velocity)
    if b2 <= 0.0:
        return np.asarray(energy, dtype=float), np.asarray(momentum, dtype=float)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = momentum @ velocity
    new_energy = gamma * (energy + bp)
    factor = (gamma - 1.0) * bp / b2 + gamma * energy
    return new_energy, momentum + factor[:, None] * velocity[None, :]


def two_body_momentum(parent_mass: float, mass1: float, mass2: float) -> float:
    """Return the daughters' momentum in the rest frame of a two-body decay."""
    m = parent_mass
    term = (m * m - (mass1 + mass2) ** 2) * (m * m - (mass1 - mass2) ** 2)
    return float(np.sqrt(max(term, 0.0)) / (2.0 * m))
