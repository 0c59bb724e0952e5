"""Electromagnetic showers of electrons, positrons and photons (placeholder: straight tracks)."""

import numpy as np

from raylar.sim import material as lar
from raylar.sim.detector import Deposits
from raylar.sim.eloss import electron_range_table


def cascade(rng, particles, config) -> Deposits:
    parts = []
    for species, position, direction, kinetic in particles:
        start = position
        if species == "gamma":
            start = position + direction * rng.exponential(9 / 7 * lar.RADIATION_LENGTH_CM)
        length = float(electron_range_table().range_of(kinetic))
        n = max(1, int(np.ceil(length / config.step_cm)))
        s = np.linspace(0, length, n + 1)
        points = start + s[:, None] * direction
        energy = np.full(n, kinetic / n)
        parts.append(Deposits(points[:-1], points[1:], energy, energy / max(length / n, 1e-6)))
    return Deposits.concatenate(parts)
