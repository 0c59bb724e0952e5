"""Energy loss and multiple scattering of charged particles in liquid argon.

Sources: PDG Review of Particle Physics, "Passage of particles through matter": the Bethe
equation with the Sternheimer density-effect correction (eq. 34.5, 34.7), the maximum energy
transfer, the delta-ray spectrum and the restricted energy loss, the Highland formula (eq. 34.16),
and the collision stopping power of electrons and positrons (Rohrlich-Carlson form, ICRU Report 37).
Energies in MeV, lengths in cm.
"""

from functools import cache

import numpy as np

from raylar.sim import material as lar
from raylar.sim.particles import ELECTRON_MASS, beta_gamma

LN10 = np.log(10.0)
# Below this beta*gamma the Bethe equation fails (shell and Barkas corrections); the range tables
# treat the last stretch as dE/dx proportional to 1/T, which adds R(T0) = T0 / (2 S(T0)).
LOWEST_BETA_GAMMA = 0.05


def density_effect(bg) -> np.ndarray:
    """Return the Sternheimer density-effect correction delta(beta*gamma) for liquid argon."""
    s = lar.STERNHEIMER
    x = np.log10(np.maximum(np.asarray(bg, dtype=float), 1e-12))
    delta = np.where(
        x >= s["x1"],
        2 * LN10 * x - s["cbar"],
        2 * LN10 * x - s["cbar"] + s["a"] * (s["x1"] - x) ** s["k"],
    )
    return np.where(x < s["x0"], s["delta0"] * 10.0 ** (2 * (x - s["x0"])), delta)


def max_energy_transfer(t, mass) -> np.ndarray:
    """Return the maximum kinetic energy given to a free electron in one collision (PDG review)."""
    beta, gamma = beta_gamma(t, mass)
    ratio = ELECTRON_MASS / mass
    return 2 * ELECTRON_MASS * (beta * gamma) ** 2 / (1 + 2 * gamma * ratio + ratio * ratio)


def _xi_per_cm(beta) -> np.ndarray:
    # Landau width per cm: (K/2) (Z/A) rho / beta^2.
    return 0.5 * lar.K_BETHE * lar.Z_OVER_A * lar.DENSITY / np.square(beta)


def bethe_dedx(t, mass, charge=1) -> np.ndarray:
    """Return the mean stopping power -dE/dx in MeV/cm of a heavy charged particle (mass > m_e)."""
    t = np.maximum(np.asarray(t, dtype=float), 1e-9)
    beta, gamma = beta_gamma(t, mass)
    bg = beta * gamma
    w_max = max_energy_transfer(t, mass)
    log_term = 0.5 * np.log(2 * ELECTRON_MASS * bg * bg * w_max / lar.MEAN_EXCITATION_MEV**2)
    bracket = log_term - beta * beta - 0.5 * density_effect(bg)
    return np.maximum(2 * charge * charge * _xi_per_cm(beta) * bracket, 1e-6)


def delta_ray_dedx(t, mass, cut) -> np.ndarray:
    """Return the mean energy loss per cm carried by delta rays above ``cut`` (0 where cut >= W_max)."""
    beta, _ = beta_gamma(t, mass)
    w_max = max_energy_transfer(t, mass)
    upper = np.maximum(w_max, cut)
    loss = _xi_per_cm(beta) * (np.log(upper / cut) - beta * beta * (1 - cut / upper))
    return np.maximum(loss, 0.0)


def delta_ray_rate(t, mass, cut) -> np.ndarray:
    """Return the number of delta rays above ``cut`` per cm (spin-0 spectrum)."""
    beta, _ = beta_gamma(t, mass)
    w_max = max_energy_transfer(t, mass)
    upper = np.maximum(w_max, cut)
    rate = _xi_per_cm(beta) * (1 / cut - 1 / upper - beta * beta / upper * np.log(upper / cut))
    return np.maximum(rate, 0.0)


def sample_delta_energies(rng, cut, w_max, beta) -> np.ndarray:
    """Sample delta-ray kinetic energies from 1/T^2 (1 - beta^2 T / W_max) on [cut, W_max]."""
    n = len(w_max)
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        u = rng.random(todo.size)
        energy = 1.0 / (1.0 / cut - u * (1.0 / cut - 1.0 / w_max[todo]))
        accept = rng.random(todo.size) < 1.0 - beta[todo] ** 2 * energy / w_max[todo]
        out[todo[accept]] = energy[accept]
        todo = todo[~accept]
    return out


def electron_dedx(t, positron=False) -> np.ndarray:
    """Return the collision stopping power of electrons (or positrons) in MeV/cm (ICRU 37 form)."""
    t = np.maximum(np.asarray(t, dtype=float), 1e-6)
    tau = t / ELECTRON_MASS
    beta, gamma = beta_gamma(t, ELECTRON_MASS)
    if positron:
        y = tau + 2
        f = 2 * np.log(2) - beta * beta / 12 * (23 + 14 / y + 10 / y**2 + 4 / y**3)
    else:
        f = 1 - beta * beta + (tau * tau / 8 - (2 * tau + 1) * np.log(2)) / (tau + 1) ** 2
    i_ratio = lar.MEAN_EXCITATION_MEV / ELECTRON_MASS
    bracket = (
        np.log(tau * tau * (tau + 2) / (2 * i_ratio * i_ratio)) + f - density_effect(beta * gamma)
    )
    return np.maximum(_xi_per_cm(beta) * bracket, 1e-3)


class RangeTable:
    """CSDA range R(T) of one particle type, and its inverse, on a log-spaced energy grid.

    The table integrates dT / S(T) with the trapezoid rule. The transport moves in range, so the
    mean energy lost along a path follows this table.
    """

    def __init__(
        self, stopping_power, lowest_t: float, highest_t: float = 1.0e5, points: int = 4000
    ):
        self.energy = np.geomspace(lowest_t, highest_t, points)
        self.dedx = stopping_power(self.energy)
        inverse = 1.0 / self.dedx
        steps = 0.5 * (inverse[1:] + inverse[:-1]) * np.diff(self.energy)
        start = lowest_t / (2.0 * self.dedx[0])
        self.range = start + np.concatenate(([0.0], np.cumsum(steps)))
        self.stopping_power = stopping_power

    def range_of(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        small = t < self.energy[0]
        # Below the grid the range grows as T^2 (dE/dx ~ 1/T), matching the start term.
        low = self.range[0] * np.square(t / self.energy[0])
        return np.where(small, low, np.interp(t, self.energy, self.range))

    def energy_at(self, r) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        small = r < self.range[0]
        low = self.energy[0] * np.sqrt(np.maximum(r, 0.0) / self.range[0])
        return np.where(small, low, np.interp(r, self.range, self.energy))


@cache
def heavy_range_table(mass: float) -> RangeTable:
    lowest = mass * (np.sqrt(1 + LOWEST_BETA_GAMMA**2) - 1)
    return RangeTable(lambda t: bethe_dedx(t, mass), lowest)


@cache
def electron_range_table(positron: bool = False) -> RangeTable:
    return RangeTable(lambda t: electron_dedx(t, positron), 1.0e-3)


def highland_theta0(p, beta, length_cm, charge=1) -> np.ndarray:
    """Return the Highland plane-projected scattering width in rad after ``length_cm`` of argon."""
    x = np.asarray(length_cm, dtype=float) / lar.RADIATION_LENGTH_CM
    correction = 1 + 0.038 * np.log(x * charge * charge / np.square(beta))
    return 13.6 / (beta * p) * abs(charge) * np.sqrt(x) * correction


def highland_growth(path_cm, beta) -> np.ndarray:
    """Return g(s) = (s/X0)(1 + 0.038 ln(s/(X0 beta^2)))^2, so theta0^2 = (13.6/(beta p))^2 g(s).

    Scattering over a step from s to s+ds adds variance (13.6/(beta p))^2 (g(s+ds) - g(s)),
    which sums to the Highland width of the whole path at constant momentum.
    """
    x = np.maximum(np.asarray(path_cm, dtype=float), 1e-9) / lar.RADIATION_LENGTH_CM
    correction = np.maximum(1 + 0.038 * np.log(x / np.square(beta)), 0.0)
    return x * correction * correction
