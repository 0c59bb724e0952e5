"""Hadronic interactions of pi+- and K+ in argon, as a simple phenomenological model.

Interactions happen at the nuclear interaction length (transport.py). Their outcome is drawn from
fixed channel fractions, not from measured cross-sections. In elastic scattering the particle goes
on in a new direction. In inelastic scattering it goes on with a fraction of its energy and knocks
out protons. Absorption (pi only) ends the track in protons, and charge exchange (pi only) turns
it into a pi0 and a proton. K+ carries strangeness +1 and cannot be absorbed, so it only scatters. Energy left
after the visible products goes to neutrons and nuclear binding, which are not simulated.
"""

import numpy as np

from raylar.sim.decays import michel_energy
from raylar.sim.particles import ELECTRON_MASS, SPECIES, isotropic_directions, rotate_directions

PION_CHANNELS = (
    ("elastic", 0.25),
    ("inelastic", 0.35),
    ("absorption", 0.25),
    ("charge exchange", 0.15),
)
KAON_CHANNELS = (("elastic", 0.45), ("inelastic", 0.55))
BINDING_MEV = 8.0  # per emitted nucleon
VISIBLE_FRACTION = 0.5  # share of the free energy that goes to protons rather than neutrons
ELASTIC_ANGLE_RAD = 0.25


def _turn(rng, direction, theta):
    phi = rng.uniform(0, 2 * np.pi, 1)
    return rotate_directions(np.asarray(direction)[None, :], np.atleast_1d(theta), phi)[0]


def _protons(rng, available: float, max_count: int) -> list[tuple]:
    """Share ``available`` MeV among 1..max_count protons, each with binding subtracted."""
    if available <= BINDING_MEV + 1.0:
        return []
    count = int(rng.integers(1, max_count + 1))
    shares = rng.dirichlet(np.ones(count)) * available * VISIBLE_FRACTION
    directions = isotropic_directions(rng, count)
    return [
        ("p", d, float(s - BINDING_MEV))
        for d, s in zip(directions, shares, strict=True)
        if s > BINDING_MEV + 1.0
    ]


def interact(rng, species: str, kinetic: float, direction) -> list[tuple]:
    """Return the products (species, direction, kinetic energy) of one hadronic interaction."""
    channels = PION_CHANNELS if species in ("pi+", "pi-") else KAON_CHANNELS
    names = [name for name, _ in channels]
    weights = np.array([w for _, w in channels])
    channel = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    direction = np.asarray(direction, dtype=float)

    if channel == "elastic":
        theta = abs(rng.normal(0.0, ELASTIC_ANGLE_RAD))
        return [(species, _turn(rng, direction, theta), kinetic * rng.uniform(0.95, 1.0))]
    if channel == "inelastic":
        fraction = rng.uniform(0.1, 0.8)
        out_direction = _turn(rng, direction, np.arccos(rng.uniform(-0.5, 1.0)))
        products = [(species, out_direction, kinetic * fraction)]
        return products + _protons(rng, kinetic * (1 - fraction), 2)
    if channel == "absorption":
        return _protons(rng, kinetic + SPECIES["pi+"].mass - 2 * BINDING_MEV, 3)
    fraction = rng.uniform(0.3, 0.9)
    out_direction = _turn(rng, direction, np.arccos(rng.uniform(-0.5, 1.0)))
    return [("pi0", out_direction, kinetic * fraction)] + _protons(rng, kinetic * (1 - fraction), 1)


def capture_at_rest(rng, species: str) -> list[tuple]:
    """Return the visible products of a negative pion or muon stopping in argon.

    A stopped pi- is captured by a nucleus, which breaks up into nucleons. A stopped mu- is
    captured with probability 0.75 (a model choice) and otherwise decays to a Michel electron.
    """
    if species == "pi-":
        return _protons(rng, SPECIES["pi-"].mass - 2 * BINDING_MEV, 3)
    if rng.random() < 0.25:
        energy = michel_energy(rng, 1)[0]
        return [("e-", isotropic_directions(rng, 1)[0], float(energy - ELECTRON_MASS))]
    return _protons(rng, 30.0, 1)
