"""Energy-loss fluctuations in thin layers: Landau's distribution cut at the largest transfer.

The energy lost in a step is Landau-distributed with width xi = (K/2)(Z/A) rho dx / beta^2.
Vavilov's theory replaces Landau's infinite tail by a cut at the largest single energy transfer
W (here the delta-ray cut, or W_max below it). This module approximates Vavilov's distribution
by a Landau variate truncated at the lambda that corresponds to W and shifted so that the mean
equals the mean restricted loss; for kappa = xi / W >= 10 the distribution is Gaussian with
Bohr's variance xi W (1 - beta^2 / 2).
"""

from functools import lru_cache

import numpy as np

EULER_GAMMA = 0.5772156649
TABLE_TOP = 40.0  # above this lambda the density is taken as c / lambda^2


@lru_cache(maxsize=1)
def landau_table():
    """Return (lambda grid, CDF, running integral of lambda p, tail constant c) of Landau's density.

    The density p(l) = (1/pi) int_0^inf exp(-t ln t - l t) sin(pi t) dt is integrated with the
    trapezoid rule; it takes about 0.3 s of one core, once per process.
    """
    lam = np.linspace(-3.0, TABLE_TOP, 600)
    t = np.linspace(1e-9, 40.0, 10001)
    weights = np.full(t.size, t[1] - t[0])
    weights[[0, -1]] *= 0.5
    # Below lambda = -3 the density is under 1e-3 and falls as exp(-exp(-lambda)); t = 40 is far
    # enough for the integrand to have died out at every lambda of the grid.
    integrand = np.exp(-t * np.log(t)[None, :] - lam[:, None] * t[None, :])
    density = integrand @ (np.sin(np.pi * t) * weights) / np.pi
    density = np.maximum(density, 0.0)
    widths = np.diff(lam)
    cdf = np.concatenate(([0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * widths)))
    moment = lam * density
    first = np.concatenate(([0.0], np.cumsum(0.5 * (moment[1:] + moment[:-1]) * widths)))
    tail = (1.0 - cdf[-1]) * TABLE_TOP
    return lam, cdf, first, tail


def landau_cdf(lam_max) -> np.ndarray:
    grid, cdf, _, tail = landau_table()
    lam_max = np.asarray(lam_max, dtype=float)
    inside = np.interp(lam_max, grid, cdf)
    return np.where(lam_max > TABLE_TOP, 1.0 - tail / np.maximum(lam_max, TABLE_TOP), inside)


def truncated_landau_mean(lam_max) -> np.ndarray:
    """Return the mean of lambda for Landau's distribution cut at ``lam_max``."""
    grid, _, first, tail = landau_table()
    lam_max = np.asarray(lam_max, dtype=float)
    integral = np.interp(lam_max, grid, first)
    integral = np.where(
        lam_max > TABLE_TOP,
        first[-1] + tail * np.log(np.maximum(lam_max, TABLE_TOP) / TABLE_TOP),
        integral,
    )
    return integral / np.maximum(landau_cdf(lam_max), 1e-12)


def sample_truncated_landau(rng, lam_max) -> np.ndarray:
    """Sample lambda from Landau's distribution cut at ``lam_max`` (array)."""
    grid, cdf, _, tail = landau_table()
    lam_max = np.asarray(lam_max, dtype=float)
    u = rng.random(lam_max.shape) * landau_cdf(lam_max)
    inside = np.interp(u, cdf, grid)
    outside = tail / np.maximum(1.0 - u, 1e-12)
    return np.where(u > cdf[-1], outside, inside)


def sample_energy_loss(rng, mean, xi, w_upper, beta) -> np.ndarray:
    """Sample the energy lost in steps with mean loss ``mean``, Landau width ``xi`` and top transfer ``w_upper``.

    All arguments are arrays of one value per step; the result has the requested mean and is >= 0.
    """
    mean = np.asarray(mean, dtype=float)
    xi = np.maximum(np.asarray(xi, dtype=float), 1e-12)
    kappa = xi / w_upper
    # Landau's variable: lambda = (Delta - mean)/xi - (1 - gamma_E) - beta^2 - ln(kappa) for the
    # untruncated distribution; the top of the spectrum (Delta = W) therefore sits at:
    lam_max = (
        (w_upper - mean) / xi - (1 - EULER_GAMMA) - beta * beta - np.log(np.maximum(kappa, 1e-12))
    )
    lam_max = np.clip(lam_max, -2.0, 1e6)
    lam = sample_truncated_landau(rng, lam_max)
    loss = mean + xi * (lam - truncated_landau_mean(lam_max))
    gaussian = kappa >= 10.0
    if np.any(gaussian):
        sigma = np.sqrt(xi[gaussian] * w_upper[gaussian] * (1 - 0.5 * beta[gaussian] ** 2))
        loss[gaussian] = mean[gaussian] + sigma * rng.standard_normal(int(gaussian.sum()))
    return np.maximum(loss, 0.0)
