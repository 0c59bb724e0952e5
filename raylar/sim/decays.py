"""Decays in flight and at rest, with PDG lifetimes and branching fractions.

Two-body decays are isotropic in the parent's rest frame; three-body decays other than the muon's
follow phase space (no matrix element); the Michel positron follows dGamma/dx ~ x^2 (3 - 2x),
x = E/E_max, the spectrum of unpolarized muon decay without radiative corrections.
"""

from dataclasses import dataclass

import numpy as np

from raylar.sim.particles import (
    ELECTRON_MASS,
    SPECIES,
    boost,
    isotropic_directions,
    two_body_momentum,
)

# Branching fractions (PDG listings); the remainder of each parent's width is dropped.
DECAY_MODES = {
    "mu+": ((1.0, ("e+", "nu", "nu")),),
    "mu-": ((1.0, ("e-", "nu", "nu")),),
    "pi+": ((0.99988, ("mu+", "nu")), (0.000123, ("e+", "nu"))),
    "pi-": ((0.99988, ("mu-", "nu")),),
    "pi0": ((0.98823, ("gamma", "gamma")),),
    "k+": (
        (0.6356, ("mu+", "nu")),
        (0.2067, ("pi+", "pi0")),
        (0.0558, ("pi+", "pi+", "pi-")),
        (0.0507, ("pi0", "e+", "nu")),
        (0.0335, ("pi0", "mu+", "nu")),
        (0.0176, ("pi+", "pi0", "pi0")),
    ),
}


@dataclass
class Daughter:
    species: str
    energy: float  # total energy, MeV
    momentum: np.ndarray  # (3,), MeV/c

    @property
    def kinetic(self) -> float:
        mass = SPECIES[self.species].mass if self.species in SPECIES else 0.0
        return max(self.energy - mass, 0.0)


def _mass(species: str) -> float:
    return SPECIES[species].mass


def michel_energy(rng, n: int = 1) -> np.ndarray:
    """Sample Michel positron total energies (MeV): x^2 (3 - 2x) on x in [0, 1], by rejection."""
    muon = SPECIES["mu+"].mass
    e_max = (muon * muon + ELECTRON_MASS * ELECTRON_MASS) / (2 * muon)
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        x = rng.random(todo.size)
        accept = rng.random(todo.size) < x * x * (3 - 2 * x)
        out[todo[accept]] = x[accept]
        todo = todo[~accept]
    return np.maximum(out * e_max, ELECTRON_MASS)


def _phase_space_three(rng, parent_mass, masses):
    """Sample a three-body decay uniformly in phase space (flat Dalitz plot); return energies and momenta."""
    m1, m2, m3 = masses
    low12, high12 = (m1 + m2) ** 2, (parent_mass - m3) ** 2
    while True:
        m12_sq = rng.uniform(low12, high12)
        m23_sq = rng.uniform((m2 + m3) ** 2, (parent_mass - m1) ** 2)
        m12 = np.sqrt(m12_sq)
        # Dalitz boundary for m23^2 at this m12^2.
        e2 = (m12_sq - m1 * m1 + m2 * m2) / (2 * m12)
        e3 = (parent_mass**2 - m12_sq - m3 * m3) / (2 * m12)
        p2 = np.sqrt(max(e2 * e2 - m2 * m2, 0.0))
        p3 = np.sqrt(max(e3 * e3 - m3 * m3, 0.0))
        low23 = (e2 + e3) ** 2 - (p2 + p3) ** 2
        high23 = (e2 + e3) ** 2 - (p2 - p3) ** 2
        if low23 <= m23_sq <= high23:
            break
    # Energies in the parent frame from the invariant masses.
    m13_sq = parent_mass**2 + m1 * m1 + m2 * m2 + m3 * m3 - m12_sq - m23_sq
    energies = np.array(
        [
            (parent_mass**2 + m1 * m1 - m23_sq) / (2 * parent_mass),
            (parent_mass**2 + m2 * m2 - m13_sq) / (2 * parent_mass),
            (parent_mass**2 + m3 * m3 - m12_sq) / (2 * parent_mass),
        ]
    )
    momenta_abs = np.sqrt(np.maximum(energies**2 - np.square(masses), 0.0))
    # Momenta lie in a plane: fix daughter 1 along a random axis, place 2 by the closing angle.
    p1, p2, p3 = momenta_abs
    cos12 = np.clip((p3 * p3 - p1 * p1 - p2 * p2) / (2 * p1 * p2 + 1e-12), -1, 1)
    axis = isotropic_directions(rng, 1)[0]
    helper = isotropic_directions(rng, 1)[0]
    normal = np.cross(axis, helper)
    normal /= np.linalg.norm(normal)
    side = np.cross(normal, axis)
    v1 = p1 * axis
    v2 = p2 * (cos12 * axis + np.sqrt(1 - cos12 * cos12) * side)
    v3 = -(v1 + v2)
    return energies, np.stack([v1, v2, v3])


def decay_at(rng, species: str, kinetic: float, direction) -> tuple[list[Daughter], tuple]:
    """Decay a particle of ``kinetic`` energy moving along ``direction``; return daughters and the mode."""
    parent_mass = _mass(species)
    modes = DECAY_MODES[species]
    weights = np.array([w for w, _ in modes])
    mode = modes[int(rng.choice(len(modes), p=weights / weights.sum()))][1]
    masses = np.array([_mass(s) if s != "nu" else 0.0 for s in mode])

    if species in ("mu+", "mu-"):
        energy_e = michel_energy(rng, 1)[0]
        p_e = np.sqrt(max(energy_e**2 - ELECTRON_MASS**2, 0.0))
        direction_e = isotropic_directions(rng, 1)[0]
        # The two neutrinos share the rest; they are invisible, so only their sum is kept.
        energies = np.array(
            [energy_e, 0.5 * (parent_mass - energy_e), 0.5 * (parent_mass - energy_e)]
        )
        momenta = np.stack([p_e * direction_e, -0.5 * p_e * direction_e, -0.5 * p_e * direction_e])
    elif len(mode) == 2:
        p = two_body_momentum(parent_mass, masses[0], masses[1])
        axis = isotropic_directions(rng, 1)[0]
        energies = np.sqrt(p * p + masses**2)
        momenta = np.stack([p * axis, -p * axis])
    else:
        energies, momenta = _phase_space_three(rng, parent_mass, masses)

    gamma = 1.0 + kinetic / parent_mass
    speed = np.sqrt(max(1.0 - 1.0 / (gamma * gamma), 0.0))
    velocity = speed * np.asarray(direction, dtype=float)
    energies, momenta = boost(energies, momenta, velocity)
    daughters = [Daughter(s, float(e), m) for s, e, m in zip(mode, energies, momenta, strict=True)]
    return daughters, mode
