"""Reference values for validation, computed independently of the transport code.

The CSDA ranges come from a separate implementation of the Bethe equation (PDG "Passage of
particles through matter", eq. 34.5 with the Sternheimer density correction and the liquid-argon
parameters of the PDG materials table), integrated directly over energy with Gauss-Legendre
quadrature in ln T. The transport instead steps in path length using its own tabulated range, so
a mistake in either shows up as a disagreement.
"""

import math

import numpy as np

# PDG liquid-argon parameters, repeated here on purpose so the reference does not share code
# with the simulator.
_K = 0.307075  # MeV cm^2/mol
_Z_OVER_A = 18 / 39.948
_RHO = 1.396  # g/cm^3
_I = 188.0e-6  # MeV
_ME = 0.51099895  # MeV
_CBAR, _X0, _X1, _A, _KS = 5.2146, 0.2, 3.0, 0.19559, 3.0
_X0_CM = 14.00  # radiation length, cm

MASSES_MEV = {"mu+": 105.6583755, "pi+": 139.57039, "k+": 493.677, "p": 938.27208816}


def _density_correction(eta2: float) -> float:
    x = 0.5 * math.log10(eta2)
    if x >= _X1:
        return 2 * math.log(10) * x - _CBAR
    if x >= _X0:
        return 2 * math.log(10) * x - _CBAR + _A * (_X1 - x) ** _KS
    return 0.0


def stopping_power(kinetic: float, mass: float) -> float:
    """Return -dE/dx in MeV/cm from the Bethe equation for a singly charged particle."""
    gamma = 1.0 + kinetic / mass
    beta2 = 1.0 - 1.0 / (gamma * gamma)
    eta2 = beta2 * gamma * gamma  # (beta gamma)^2
    w_max = 2 * _ME * eta2 / (1 + 2 * gamma * _ME / mass + (_ME / mass) ** 2)
    delta = _density_correction(eta2)
    bracket = 0.5 * math.log(2 * _ME * eta2 * w_max / (_I * _I)) - beta2 - delta / 2
    return _K * _Z_OVER_A * _RHO / beta2 * bracket


def most_probable_loss(kinetic: float, mass: float, thickness_cm: float) -> float:
    """Return the most probable energy loss in MeV in a layer (PDG review, Landau-Vavilov-Bichsel).

    Delta_p = xi [ln(2 m c^2 beta^2 gamma^2 / I) + ln(xi / I) + j - beta^2 - delta], j = 0.200,
    with xi = (K/2)(Z/A) rho x / beta^2.
    """
    gamma = 1.0 + kinetic / mass
    beta2 = 1.0 - 1.0 / (gamma * gamma)
    eta2 = beta2 * gamma * gamma
    xi = 0.5 * _K * _Z_OVER_A * _RHO * thickness_cm / beta2
    bracket = (
        math.log(2 * _ME * eta2 / _I)
        + math.log(xi / _I)
        + 0.200
        - beta2
        - _density_correction(eta2)
    )
    return xi * bracket


def csda_range(kinetic: float, mass: float, nodes: int = 200) -> float:
    """Return the CSDA range in cm: the integral of dT / S(T) from 0 to ``kinetic``.

    Below beta*gamma = 0.05, where the Bethe equation no longer holds, S(T) is taken as
    proportional to 1/T, which contributes T0 / (2 S(T0)); the simulator uses the same convention.
    """
    low = mass * (math.sqrt(1 + 0.05**2) - 1)
    start = low / (2 * stopping_power(low, mass))
    if kinetic <= low:
        return start * (kinetic / low) ** 2
    points, weights = np.polynomial.legendre.leggauss(nodes)
    a, b = math.log(low), math.log(kinetic)
    total = 0.0
    for point, weight in zip(points, weights, strict=True):
        log_t = 0.5 * (b - a) * point + 0.5 * (b + a)
        t = math.exp(log_t)
        total += weight * t / stopping_power(t, mass)
    return start + 0.5 * (b - a) * total


def minimum_ionization_kinetic(mass: float) -> float:
    """Return the kinetic energy at which the reference stopping power is smallest."""
    grid = np.geomspace(0.5 * mass, 20 * mass, 2000)
    values = [stopping_power(t, mass) for t in grid]
    return float(grid[int(np.argmin(values))])


def highland_width(momentum: float, mass: float, length_cm: float) -> float:
    """Return the PDG Highland plane-projected width (rad) for a singly charged particle."""
    energy = math.hypot(momentum, mass)
    beta = momentum / energy
    x = length_cm / _X0_CM
    return 13.6 / (beta * momentum) * math.sqrt(x) * (1 + 0.038 * math.log(x / beta**2))


def box_survival(
    dedx: float, field_kv_per_cm: float, alpha: float = 0.93, beta: float = 0.212
) -> float:
    """Return the modified Box survival ln(alpha + xi)/xi with ArgoNeuT's parameters (JINST 8 P08005)."""
    xi = beta * dedx / (_RHO * field_kv_per_cm)
    return math.log(alpha + xi) / xi


def michel_endpoint(muon_mass: float = 105.6583755) -> float:
    """Return the largest positron total energy in muon decay, (m_mu^2 + m_e^2) / (2 m_mu)."""
    return (muon_mass**2 + _ME**2) / (2 * muon_mass)
