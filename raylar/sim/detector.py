"""Collection-plane response: energy deposits to zero-suppressed ADC pixels, computed sparsely.

Chain: modified Box recombination (ArgoNeuT, JINST 8 P08005) -> drift with electron lifetime ->
longitudinal and transverse diffusion -> electrons collected on 3 mm wires in 0.5 us ticks ->
front-end shaping (CR-RC^4 pulse with the configured peaking time, its peak at the arrival tick)
-> electrons-to-ADC conversion at the pulse peak -> white Gaussian noise -> rounding, saturation
and zero suppression -> optional block summing (downsample).

Only pixels near charge are ever touched: the pulse is convolved along ticks on a buffer that
contains each wire's charged ticks plus the pulse length on either side, and noise is added on that
buffer. Elsewhere a pixel passes the threshold on noise alone with probability p; instead of
drawing 10 million numbers per event, the count of such pixels is drawn from a Poisson law of
mean p times the number of noise-only pixels, and each is placed uniformly with a value drawn
from the Gaussian tail above the threshold.
"""

from dataclasses import dataclass
from functools import lru_cache
from math import erfc, sqrt

import numpy as np

from raylar import geometry
from raylar.sim import material as lar

# MicroBooNE active volume (JINST 12 P02017): x is the drift coordinate (anode at x = 0),
# y vertical, z along the beam; collection wires are vertical, so the wire index follows z.
ACTIVE_X_CM = (0.0, 256.35)
ACTIVE_Y_CM = (-116.5, 116.5)
ACTIVE_Z_CM = (0.0, 1036.8)
SUBCLUSTERS = 4  # charge clusters per deposit, each displaced by its own diffusion draw
POINT_SPACING_CM = 0.1
TICK_STRIDE = 1 << 14
TICK_PAD = 64


def window_x_cm(config) -> float:
    """Return the largest drift distance inside the image window (ticks 3200-6400)."""
    return geometry.TICKS * geometry.TICK_PERIOD_US * config.drift_velocity_cm_per_us


def window_z_cm() -> float:
    return geometry.WIRES * geometry.WIRE_PITCH_CM


def recombination_survival(dedx, config) -> np.ndarray:
    """Return the fraction of ionization electrons escaping recombination (modified Box model)."""
    xi = (
        config.recombination_beta
        * np.asarray(dedx, dtype=float)
        / (lar.DENSITY * config.field_kv_per_cm)
    )
    xi = np.maximum(xi, 1e-9)
    return np.clip(np.log(config.recombination_alpha + xi) / xi, 0.0, 1.0)


@lru_cache(maxsize=16)
def shaping_kernel(peaking_time_us: float) -> tuple[np.ndarray, int]:
    """Return the CR-RC^4 pulse sampled per tick with peak 1, and the index of its peak."""
    peak_ticks = peaking_time_us / geometry.TICK_PERIOD_US
    ticks = np.arange(0, int(np.ceil(5 * peak_ticks)) + 1, dtype=float)
    u = ticks / peak_ticks
    pulse = u**4 * np.exp(4 * (1 - u))
    return pulse / pulse.max(), int(np.argmax(pulse))


@dataclass
class Deposits:
    """Energy deposits as straight segments: start and end (n, 3) in cm, energy in MeV, dE/dx in MeV/cm."""

    start: np.ndarray
    end: np.ndarray
    energy: np.ndarray
    dedx: np.ndarray

    @classmethod
    def concatenate(cls, parts: list["Deposits"]) -> "Deposits":
        if not parts:
            empty = np.zeros((0, 3))
            return cls(empty, empty, np.zeros(0), np.zeros(0))
        return cls(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("start", "end", "energy", "dedx")
            )
        )


@dataclass
class Response:
    """The zero-suppressed image (sorted by row, then column) and charge bookkeeping."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    deposited_energy_mev: float
    ionization_electrons: float
    visible_electrons: float
    noise_only_pixels: int


def _points(deposits: Deposits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    length = np.linalg.norm(deposits.end - deposits.start, axis=1)
    pieces = np.maximum(1, np.ceil(length / POINT_SPACING_CM).astype(np.int64))
    owner = np.repeat(np.arange(len(pieces)), pieces)
    first = np.cumsum(pieces) - pieces
    fraction = (np.arange(owner.size) - first[owner] + 0.5) / pieces[owner]
    points = deposits.start[owner] + fraction[:, None] * (deposits.end - deposits.start)[owner]
    return points, deposits.energy[owner] / pieces[owner], deposits.dedx[owner]


def _inside_active(points: np.ndarray) -> np.ndarray:
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (
        (x >= ACTIVE_X_CM[0])
        & (x <= ACTIVE_X_CM[1])
        & (y >= ACTIVE_Y_CM[0])
        & (y <= ACTIVE_Y_CM[1])
        & (z >= ACTIVE_Z_CM[0])
        & (z <= ACTIVE_Z_CM[1])
    )


def collect_charge(rng, deposits: Deposits, config):
    """Return (keys, electrons) per (wire, tick) after recombination, drift and diffusion, and totals.

    ``keys`` encode wire * TICK_STRIDE + tick + TICK_PAD, with ticks counted from the start of the
    image window. The totals are (deposited MeV, ionization electrons, electrons at the wires).
    """
    points, energy, dedx = _points(deposits)
    inside = _inside_active(points)
    points, energy, dedx = points[inside], energy[inside], dedx[inside]
    deposited = float(energy.sum())
    ionization = energy / lar.W_ION_MEV
    drift_us = points[:, 0] / config.drift_velocity_cm_per_us
    electrons = (
        ionization
        * recombination_survival(dedx, config)
        * np.exp(-drift_us / config.electron_lifetime_us)
    )

    sigma_long = np.sqrt(2 * config.diffusion_long_cm2_per_s * drift_us * 1e-6)
    sigma_trans = np.sqrt(2 * config.diffusion_trans_cm2_per_s * drift_us * 1e-6)
    n = points.shape[0]
    shape = (n, SUBCLUSTERS)
    x = points[:, 0, None] + sigma_long[:, None] * rng.standard_normal(shape)
    z = points[:, 2, None] + sigma_trans[:, None] * rng.standard_normal(shape)
    charge = np.repeat(electrons / SUBCLUSTERS, SUBCLUSTERS)
    tick_cm = geometry.TICK_PERIOD_US * config.drift_velocity_cm_per_us
    wires = np.floor(z.ravel() / geometry.WIRE_PITCH_CM).astype(np.int64)
    ticks = np.floor(x.ravel() / tick_cm).astype(np.int64)
    keep = (
        (wires >= 0)
        & (wires < geometry.WIRES)
        & (ticks >= -TICK_PAD + 1)
        & (ticks < geometry.TICKS + TICK_PAD - 1)
    )
    keys = wires[keep] * TICK_STRIDE + ticks[keep] + TICK_PAD
    charge = charge[keep]
    in_window = (ticks[keep] >= 0) & (ticks[keep] < geometry.TICKS)
    visible = float(charge[in_window].sum())
    unique, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse, weights=charge, minlength=unique.size)
    return unique, summed, (deposited, float(ionization.sum()), visible)


def _shape_pulses(keys, adc, peaking_time_us):
    """Convolve each wire's tick series with the pulse; return (buffer keys, buffer ADC)."""
    pulse, peak = shaping_kernel(peaking_time_us)
    before, after = peak, pulse.size - 1 - peak
    breaks = np.flatnonzero(np.diff(keys) > pulse.size + 1) + 1
    first = np.concatenate(([0], breaks))
    last = np.concatenate((breaks - 1, [keys.size - 1]))
    lengths = keys[last] - keys[first] + 1 + before + after
    offsets = np.cumsum(lengths) - lengths
    segment = np.repeat(np.arange(first.size), np.diff(np.concatenate((first, [keys.size]))))
    buffer = np.zeros(int(lengths.sum()))
    buffer[keys - keys[first][segment] + before + offsets[segment]] = adc
    shaped = np.convolve(buffer, pulse)[before : before + buffer.size]
    owner = np.repeat(np.arange(first.size), lengths)
    buffer_keys = keys[first][owner] - before + (np.arange(buffer.size) - offsets[owner])
    return buffer_keys, shaped


def _gaussian_tail(rng, threshold, sigma, n) -> np.ndarray:
    # Marsaglia's method for the tail z > a of the standard normal distribution.
    a = threshold / sigma
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        z = np.sqrt(a * a - 2 * np.log(rng.random(todo.size)))
        accept = rng.random(todo.size) * z < a
        out[todo[accept]] = z[accept]
        todo = todo[~accept]
    return out * sigma


def noise_pass_probability(config) -> float:
    """Return the probability that a pixel without charge passes zero suppression on noise alone."""
    if config.noise_rms_adc <= 0:
        return 0.0
    level = max(config.threshold_adc - 0.5, 0.0)  # values are rounded to whole counts first
    return 0.5 * erfc(level / (config.noise_rms_adc * sqrt(2)))


def digitize(rng, keys, electrons, config):
    """Return (wires, ticks, ADC) of full-resolution pixels that pass zero suppression."""
    wires_out, ticks_out, values_out = [], [], []
    window = np.zeros(0, dtype=np.int64)
    if keys.size:
        window, shaped = _shape_pulses(
            keys, electrons / config.electrons_per_adc, config.peaking_time_us
        )
        ticks = window % TICK_STRIDE - TICK_PAD
        inside = (ticks >= 0) & (ticks < geometry.TICKS)
        window, shaped = window[inside], shaped[inside]
        if config.noise_rms_adc > 0:
            shaped = shaped + config.noise_rms_adc * rng.standard_normal(shaped.size)
        adc = np.minimum(np.rint(shaped), config.adc_max)
        keep = (adc >= config.threshold_adc) & (adc > 0)
        wires_out.append(window[keep] // TICK_STRIDE)
        ticks_out.append(window[keep] % TICK_STRIDE - TICK_PAD)
        values_out.append(adc[keep])

    probability = noise_pass_probability(config)
    quiet_pixels = geometry.WIRES * geometry.TICKS - window.size
    count = int(rng.poisson(probability * quiet_pixels)) if probability > 0 else 0
    if count:
        wires = rng.integers(0, geometry.WIRES, count)
        ticks = rng.integers(0, geometry.TICKS, count)
        noise_keys = wires * TICK_STRIDE + ticks + TICK_PAD
        noise_keys, first = np.unique(noise_keys, return_index=True)
        free = ~np.isin(noise_keys, window, assume_unique=False)
        level = max(config.threshold_adc - 0.5, 0.0)
        values = np.rint(_gaussian_tail(rng, level, config.noise_rms_adc, int(free.sum())))
        values = np.clip(values, config.threshold_adc, config.adc_max)
        wires_out.append(noise_keys[free] // TICK_STRIDE)
        ticks_out.append(noise_keys[free] % TICK_STRIDE - TICK_PAD)
        values_out.append(values)
        count = int(free.sum())
    if not wires_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 0
    return np.concatenate(wires_out), np.concatenate(ticks_out), np.concatenate(values_out), count


def downsample_pixels(wires, ticks, values, factor: int):
    """Sum pixels into factor x factor blocks; return (rows, cols, values) sorted by row, then column."""
    rows = wires // factor
    cols = ticks // factor
    keys = rows * (geometry.IMAGE_SIZE + 1) + cols
    unique, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse, weights=values, minlength=unique.size)
    return (
        (unique // (geometry.IMAGE_SIZE + 1)).astype(np.int32),
        (unique % (geometry.IMAGE_SIZE + 1)).astype(np.int32),
        summed.astype(np.float32),
    )


def respond(rng, deposits: Deposits, config) -> Response:
    """Turn the event's deposits into its zero-suppressed, downsampled image."""
    keys, electrons, (deposited, ionization, visible) = collect_charge(rng, deposits, config)
    wires, ticks, values, noise_pixels = digitize(rng, keys, electrons, config)
    rows, cols, values = downsample_pixels(wires, ticks, values, config.downsample)
    return Response(rows, cols, values, deposited, ionization, visible, noise_pixels)
