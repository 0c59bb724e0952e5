"""Photon and electron interaction processes in liquid argon: cross-sections and samplers.

Pair production uses L. Urban's parametrization of the Bethe-Heitler cross-section, as Geant4's
G4BetheHeitlerModel uses it, scaled so that the mean free path at 100 GeV is the PDG's 9/7 X0.
Compton scattering follows Klein-Nishina, sampled with Butcher and Messel's method.
Bremsstrahlung follows the complete-screening spectrum (1/y)(4/3 - 4/3 y + y^2) of the PDG review
(radiative loss E/X0 at high energy), reduced at low energy by the incomplete screening of the
nucleus: Bethe-Heitler screening functions in Butcher and Messel's fits (Nucl. Phys. 20 (1960) 15),
the same fits Geant4's G4BetheHeitlerModel uses for pair production.
Energies in MeV, lengths in cm.
"""

from functools import lru_cache

import numpy as np

from raylar.sim import material as lar
from raylar.sim.particles import ELECTRON_MASS

BREM_PHOTON_CUT_MEV = 0.5
ELECTRONS_PER_CM3 = lar.DENSITY * 6.02214076e23 * lar.Z_OVER_A
CLASSICAL_RADIUS_CM = 2.8179403262e-13

# Urban's pair-production fit, in microbarn, as used by Geant4's G4BetheHeitlerModel (1.5 MeV-100 GeV).
_PAIR_A = (8.7842e2, -1.9625e3, 1.2949e3, -2.0028e2, 1.2575e1, -2.8333e-1)
_PAIR_B = (-1.0342e1, 1.7692e1, -8.2381, 1.3063, -9.0815e-2, 2.3586e-3)
_PAIR_C = (-4.5263e2, 1.1161e3, -8.6749e2, 2.1773e2, -2.0467e1, 6.5372e-1)
PAIR_REFERENCE_MEV = 1.0e5


def _urban_pair(energy) -> np.ndarray:
    energy = np.asarray(energy, dtype=float)
    clipped = np.maximum(energy, 1.5)
    x = np.log(clipped / ELECTRON_MASS)
    powers = np.stack([x**i for i in range(6)])
    f1, f2, f3 = (np.tensordot(c, powers, axes=1) for c in (_PAIR_A, _PAIR_B, _PAIR_C))
    z = lar.Z
    sigma = (z + 1) * (f1 * z + f2 * z * z + f3)
    below = (energy - 2 * ELECTRON_MASS) / (1.5 - 2 * ELECTRON_MASS)
    sigma = np.where(energy < 1.5, sigma * np.square(np.clip(below, 0, None)), sigma)
    return np.where(energy <= 2 * ELECTRON_MASS, 0.0, np.maximum(sigma, 0.0))


def pair_attenuation(energy) -> np.ndarray:
    """Return the pair-production attenuation coefficient in 1/cm; 7/(9 X0) at 100 GeV."""
    return (
        7.0
        / (9.0 * lar.RADIATION_LENGTH_CM)
        * _urban_pair(energy)
        / _urban_pair(PAIR_REFERENCE_MEV)
    )


def compton_attenuation(energy) -> np.ndarray:
    """Return the Klein-Nishina Compton attenuation coefficient in 1/cm (free electrons)."""
    k = np.maximum(np.asarray(energy, dtype=float), 1e-4) / ELECTRON_MASS
    log_term = np.log1p(2 * k)
    sigma = (
        (1 + k) / k**2 * (2 * (1 + k) / (1 + 2 * k) - log_term / k)
        + log_term / (2 * k)
        - (1 + 3 * k) / (1 + 2 * k) ** 2
    )
    return 2 * np.pi * CLASSICAL_RADIUS_CM**2 * sigma * ELECTRONS_PER_CM3


def photoabsorption_attenuation(energy) -> np.ndarray:
    """Return the photoabsorption coefficient in 1/cm.

    NOTE: a power law E^-3 normalised to an estimated 0.03 cm^2/g at 100 keV for argon. It only
    decides where photons below a few hundred keV end, which the 3 mm wires barely resolve.
    """
    energy = np.maximum(np.asarray(energy, dtype=float), 1e-3)
    return 0.03 * lar.DENSITY * (energy / 0.1) ** -3


def sample_compton(rng, energy) -> np.ndarray:
    """Sample the scattered photon's energy fraction epsilon = E'/E from Klein-Nishina."""
    k = energy / ELECTRON_MASS
    eps0 = 1.0 / (1.0 + 2.0 * k)
    alpha1 = -np.log(eps0)
    alpha2 = 0.5 * (1 - eps0 * eps0)
    out = np.empty(energy.size)
    todo = np.arange(energy.size)
    while todo.size:
        e0, a1, a2, kk = eps0[todo], alpha1[todo], alpha2[todo], k[todo]
        first = rng.random(todo.size) * (a1 + a2) < a1
        u = rng.random(todo.size)
        eps = np.where(first, np.exp(-a1 * u), np.sqrt(e0 * e0 + (1 - e0 * e0) * u))
        one_minus_cos = (1 - eps) / (kk * eps)
        sin2 = one_minus_cos * (2 - one_minus_cos)
        accept = rng.random(todo.size) < 1 - eps * sin2 / (1 + eps * eps)
        out[todo[accept]] = eps[accept]
        todo = todo[~accept]
    return out


def sample_pair_fraction(rng, energy) -> np.ndarray:
    # Complete-screening energy sharing: dsigma/dx ~ 1 - 4/3 x (1 - x), x within the kinematic limits.
    low = ELECTRON_MASS / energy
    out = np.empty(energy.size)
    todo = np.arange(energy.size)
    while todo.size:
        x = low[todo] + (1 - 2 * low[todo]) * rng.random(todo.size)
        accept = rng.random(todo.size) < 1 - 4.0 / 3.0 * x * (1 - x)
        out[todo[accept]] = x[accept]
        todo = todo[~accept]
    return out


# Butcher and Messel's fits of the Bethe-Heitler screening functions, with the screening variable
# delta = 136 m_e Z^(-1/3) y / (E (1 - y)); delta -> 0 is complete screening.
_SCREENING_FACTOR = 136.0 * ELECTRON_MASS / lar.Z ** (1.0 / 3.0)
_COULOMB_TERM = np.log(lar.Z) / 3.0


def _screening(delta):
    low = delta <= 1.0
    log_part = 21.12 - 4.184 * np.log(delta + 0.952)
    phi1 = np.where(low, 20.867 - 3.242 * delta + 0.625 * delta * delta, log_part)
    phi2 = np.where(low, 20.029 - 1.930 * delta - 0.086 * delta * delta, log_part)
    return phi1, phi2


def screening_weight(y, energy) -> np.ndarray:
    """Return the bremsstrahlung cross-section at photon fraction ``y`` relative to complete screening.

    The weight is 1 for complete screening (high energy) and drops below 1 as the screening of
    the nucleus becomes incomplete at low electron energy (``energy`` is the total energy).
    """
    y = np.clip(y, 1e-12, 1.0 - 1e-9)
    phi1, phi2 = _screening(_SCREENING_FACTOR * y / (energy * (1.0 - y)))
    full1, full2 = _screening(np.zeros(1))
    first = 1.0 + (1.0 - y) ** 2
    second = 2.0 / 3.0 * (1.0 - y)
    weight = first * (phi1 / 4 - _COULOMB_TERM) - second * (phi2 / 4 - _COULOMB_TERM)
    complete = first * (full1 / 4 - _COULOMB_TERM) - second * (full2 / 4 - _COULOMB_TERM)
    return np.clip(weight / complete, 0.0, 1.0)


def sample_brem_fraction(rng, energy) -> np.ndarray:
    """Sample photon energy fractions y above the cut for electrons of total ``energy`` (array).

    The proposal is the complete-screening spectrum (1/y)(4/3 - 4/3 y + y^2): draw 1/y, accept
    with 1 - y + 3/4 y^2 (at least 2/3), then with the screening weight.
    """
    y_cut = BREM_PHOTON_CUT_MEV / energy
    out = np.empty(energy.size)
    todo = np.arange(energy.size)
    while todo.size:
        y = y_cut[todo] ** rng.random(todo.size)
        weight = (1 - y + 0.75 * y * y) * screening_weight(y, energy[todo])
        accept = rng.random(todo.size) < weight
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out


@lru_cache(maxsize=1)
def _brem_rate_table():
    # Photons above the cut per X0, integrated over ln y with the trapezoid rule.
    log_energy = np.linspace(np.log(BREM_PHOTON_CUT_MEV * 1.0001), np.log(2e5), 300)
    rates = []
    for energy in np.exp(log_energy):
        log_y = np.linspace(np.log(BREM_PHOTON_CUT_MEV / energy), 0.0, 400)
        y = np.exp(log_y)
        spectrum = (4.0 / 3.0 - 4.0 / 3.0 * y + y * y) * screening_weight(
            y, np.full(y.size, energy)
        )
        rates.append(np.trapezoid(spectrum, log_y))
    return log_energy, np.array(rates)


def brem_photons_per_cm(energy) -> np.ndarray:
    """Return the mean number of bremsstrahlung photons above the cut emitted per cm."""
    energy = np.asarray(energy, dtype=float)
    log_energy, rates = _brem_rate_table()
    rate = np.interp(np.log(np.maximum(energy, 1e-9)), log_energy, rates)
    return np.where(energy > BREM_PHOTON_CUT_MEV, rate, 0.0) / lar.RADIATION_LENGTH_CM


def soft_radiation_per_cm(energy) -> np.ndarray:
    """Return the mean energy per cm radiated in photons below the cut (MeV/cm)."""
    y = np.clip(BREM_PHOTON_CUT_MEV / np.maximum(energy, 1e-9), 0.0, 1.0)
    return energy * (4.0 / 3.0 * y - 2.0 / 3.0 * y * y + y**3 / 3.0) / lar.RADIATION_LENGTH_CM


@lru_cache(maxsize=1)
def _attenuation_table():
    log_energy = np.linspace(np.log(1e-3), np.log(2e5), 3000)
    energy = np.exp(log_energy)
    rows = [
        pair_attenuation(energy),
        compton_attenuation(energy),
        photoabsorption_attenuation(energy),
    ]
    return log_energy, np.stack(rows)


def attenuation(energy) -> np.ndarray:
    """Return (3, n) attenuation coefficients in 1/cm: pair, Compton, photoabsorption (tabulated)."""
    log_energy, table = _attenuation_table()
    x = np.log(np.maximum(energy, 1e-3))
    return np.stack([np.interp(x, log_energy, row) for row in table])


def photon_interactions(rng, energy):
    """Draw each photon's distance to its next interaction (cm) and its kind (0 pair, 1 Compton, 2 absorption)."""
    mu = attenuation(energy)
    total = mu.sum(axis=0)
    distance = rng.exponential(1.0, energy.size) / total
    pick = rng.random(energy.size) * total
    kind = np.where(pick < mu[0], 0, np.where(pick < mu[0] + mu[1], 1, 2))
    return distance, kind
