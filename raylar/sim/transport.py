"""Step-by-step transport of heavy charged particles (mu, pi, K, p) in liquid argon.

Each step of ``config.step_cm`` path length loses energy drawn from Landau's distribution cut at
the delta-ray threshold (mean: the restricted Bethe loss), plus explicit delta rays above the
threshold (mean: the rest of the Bethe loss). The particle moves in CSDA range: a step that loses
dE at kinetic energy T uses up dE / S(T) of range. The energy along the track is read back from
the range table, so the track stops with its Bragg peak when the range is used up, and the mean
path length equals the CSDA range. Direction changes follow the Highland formula, with step
variances chosen so that they add up to the Highland width of the path travelled so far. Steps
are computed in vectorized chunks, and the orientation along a chunk is the running product of
the per-step rotation quaternions, evaluated with a parallel prefix scan.
"""

from dataclasses import dataclass, field

import numpy as np

from raylar.sim import material as lar
from raylar.sim.detector import ACTIVE_X_CM, ACTIVE_Y_CM, ACTIVE_Z_CM, Deposits
from raylar.sim.eloss import (
    bethe_dedx,
    delta_ray_dedx,
    delta_ray_rate,
    heavy_range_table,
    highland_growth,
    max_energy_transfer,
    sample_delta_energies,
)
from raylar.sim.fluctuations import sample_energy_loss
from raylar.sim.particles import (
    C_CM_PER_NS,
    ELECTRON_MASS,
    SPECIES,
    beta_gamma,
    cross,
    momentum_from_kinetic,
)

CHUNK_STEPS = 256
STOP_RANGE_CM = 1e-4
HADRONIC_SPECIES = ("pi+", "pi-", "k+")
MIN_HADRONIC_T_MEV = 10.0
TRACK_MARGIN_CM = 1.0  # tracking stops this far outside the active volume


@dataclass
class TrackResult:
    """Outcome of transporting one particle: its deposits, end state and delta rays."""

    species: str
    deposits: Deposits
    end_position: np.ndarray
    end_direction: np.ndarray
    end_kinetic: float
    path_cm: float
    fate: str  # "stopped", "decay", "hadronic" or "exited"
    deltas: list = field(
        default_factory=list
    )  # (position, direction, kinetic energy) of delta rays


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quaternion_from_direction(direction: np.ndarray) -> np.ndarray:
    """Return the unit quaternion that turns +z into ``direction``."""
    z = np.array([0.0, 0.0, 1.0])
    d = direction / np.linalg.norm(direction)
    dot = float(z @ d)
    if dot < -0.999999:
        return np.array([0.0, 1.0, 0.0, 0.0])
    axis = np.cross(z, d)
    q = np.array([1.0 + dot, *axis])
    return q / np.linalg.norm(q)


def directions_from_quaternions(q: np.ndarray) -> np.ndarray:
    """Return the images of +z under the rotations ``q`` (n, 4)."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], axis=1)


def prefix_rotations(start: np.ndarray, theta_x: np.ndarray, theta_y: np.ndarray) -> np.ndarray:
    """Return the orientation after each step: start * r_0 * ... * r_i, r_i turning by (theta_x, theta_y).

    The angles rotate about the particle's own x and y axes, so each deflection is relative to
    the current direction. The running product uses a Hillis-Steele scan (log2 n vector products).
    """
    angle = np.hypot(theta_x, theta_y)
    half = 0.5 * angle
    scale = np.where(angle > 0, np.sin(half) / np.where(angle > 0, angle, 1.0), 0.5)
    products = np.stack(
        [np.cos(half), theta_x * scale, theta_y * scale, np.zeros_like(angle)], axis=1
    )
    shift = 1
    while shift < products.shape[0]:
        products[shift:] = quaternion_multiply(products[:-shift], products[shift:])
        shift *= 2
    oriented = quaternion_multiply(np.broadcast_to(start, products.shape), products)
    return oriented / np.linalg.norm(oriented, axis=1, keepdims=True)


def outside_volume(points: np.ndarray, margin: float = TRACK_MARGIN_CM) -> np.ndarray:
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (
        (x < ACTIVE_X_CM[0] - margin)
        | (x > ACTIVE_X_CM[1] + margin)
        | (y < ACTIVE_Y_CM[0] - margin)
        | (y > ACTIVE_Y_CM[1] + margin)
        | (z < ACTIVE_Z_CM[0] - margin)
        | (z > ACTIVE_Z_CM[1] + margin)
    )


def _delta_directions_local(rng, kinetic, w_max) -> np.ndarray:
    """Return delta-ray directions in the parent's frame (+z along its motion).

    The polar angle follows from two-body kinematics, cos(theta) = (T/p_e) (p_max/T_max).
    """
    p_e = momentum_from_kinetic(kinetic, ELECTRON_MASS)
    p_max = momentum_from_kinetic(w_max, ELECTRON_MASS)
    cos_theta = np.clip(kinetic / p_e * p_max / w_max, -1.0, 1.0)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi = rng.uniform(0.0, 2.0 * np.pi, kinetic.size)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def transport(
    rng, species: str, position, direction, kinetic: float, config, in_volume_only=True
) -> TrackResult:
    """Transport one heavy charged particle until it stops, decays, interacts or leaves the volume."""
    particle = SPECIES[species]
    mass, charge = particle.mass, particle.charge
    table = heavy_range_table(mass)
    ds = config.step_cm
    position = np.asarray(position, dtype=float).copy()
    orientation = quaternion_from_direction(np.asarray(direction, dtype=float))
    residual = float(table.range_of(kinetic))
    path = 0.0
    decay_budget = (
        rng.exponential(particle.lifetime_ns)
        if (config.decays and np.isfinite(particle.lifetime_ns))
        else np.inf
    )
    proper_time = 0.0
    hadronic_budget = (
        rng.exponential(1.0) if (config.hadronic and species in HADRONIC_SPECIES) else np.inf
    )
    interaction_depth = 0.0
    parts, deltas = [], []
    fate = "stopped"
    current_t = kinetic
    current_dir = directions_from_quaternions(orientation[None, :])[0]

    while residual > STOP_RANGE_CM:
        n = CHUNK_STEPS
        expected_range = np.maximum(residual - ds * np.arange(n), STOP_RANGE_CM)
        t_exp = table.energy_at(expected_range)
        beta, gamma = beta_gamma(t_exp, mass)
        stopping = bethe_dedx(t_exp, mass, charge)
        w_max = max_energy_transfer(t_exp, mass)
        cut = config.delta_ray_cut_mev
        delta_mean = delta_ray_dedx(t_exp, mass, cut) * ds
        if config.energy_loss_fluctuations:
            xi = 0.5 * lar.K_BETHE * lar.Z_OVER_A * lar.DENSITY * ds / beta**2
            loss = sample_energy_loss(
                rng, stopping * ds - delta_mean, xi, np.minimum(w_max, cut), beta
            )
            counts = rng.poisson(delta_ray_rate(t_exp, mass, cut) * ds)
        else:
            loss = stopping * ds
            counts = np.zeros(n, dtype=np.int64)
        step_of_delta = np.repeat(np.arange(n), counts)
        delta_energy = np.zeros(n)
        delta_t = np.zeros(0)
        if step_of_delta.size:
            delta_t = sample_delta_energies(rng, cut, w_max[step_of_delta], beta[step_of_delta])
            np.add.at(delta_energy, step_of_delta, delta_t)
        range_used = (loss + delta_energy) / stopping
        ranges = residual - np.concatenate(([0.0], np.cumsum(range_used)))
        lengths = np.full(n, ds)
        end_step = n
        stopped = np.flatnonzero(ranges[1:] <= STOP_RANGE_CM)
        if stopped.size:
            end_step = int(stopped[0]) + 1
            last = end_step - 1
            lengths[last] = (
                ds * max(ranges[last] - STOP_RANGE_CM, 0.0) / max(range_used[last], 1e-12)
            )
            ranges[end_step] = 0.0

        if config.multiple_scattering:
            travelled = path + np.concatenate(([0.0], np.cumsum(lengths)))
            growth = highland_growth(travelled[1:], beta) - highland_growth(travelled[:-1], beta)
            p = momentum_from_kinetic(t_exp, mass)
            variance = (13.6 * abs(charge) / (beta * p)) ** 2 * np.maximum(growth, 0.0)
            sigma = np.sqrt(variance)
            theta_x = sigma * rng.standard_normal(n)
            theta_y = sigma * rng.standard_normal(n)
        else:
            theta_x = theta_y = np.zeros(n)
        orientations = prefix_rotations(orientation, theta_x, theta_y)
        directions = directions_from_quaternions(orientations)
        points = position + np.concatenate(
            ([[0.0, 0.0, 0.0]], np.cumsum(directions * lengths[:, None], axis=0))
        )

        # Decay in flight and hadronic interaction: compare running totals with the drawn budgets.
        tau = proper_time + np.cumsum(lengths / (beta * gamma * C_CM_PER_NS))
        depth = interaction_depth + np.cumsum(
            np.where(t_exp > MIN_HADRONIC_T_MEV, lengths, 0.0) / lar.INTERACTION_LENGTH_CM
        )
        exited = outside_volume(points[1:]) if in_volume_only else np.zeros(n, dtype=bool)
        # The earliest of stop, decay, interaction and exit ends the track; ties go to the first listed.
        outcomes = [(end_step, 0, "stopped")] if stopped.size else []
        for priority, (name, hits) in enumerate(
            (
                ("decay", np.flatnonzero(tau >= decay_budget)),
                ("hadronic", np.flatnonzero(depth >= hadronic_budget)),
                ("exited", np.flatnonzero(exited)),
            ),
            start=1,
        ):
            if hits.size:
                outcomes.append((int(hits[0]) + 1, priority, name))
        reason = None
        if outcomes:
            end_step, _, reason = min(outcomes)

        energies = table.energy_at(ranges[: end_step + 1])
        deposit = np.maximum(energies[:-1] - energies[1:] - delta_energy[:end_step], 0.0)
        seg_len = np.maximum(lengths[:end_step], 1e-6)
        parts.append(
            Deposits(points[:end_step], points[1 : end_step + 1], deposit, deposit / seg_len)
        )
        if step_of_delta.size:
            chosen = step_of_delta < end_step
            if np.any(chosen):
                steps = step_of_delta[chosen]
                mid = 0.5 * (points[steps] + points[steps + 1])
                local = _delta_directions_local(rng, delta_t[chosen], w_max[steps])
                dirs = _rotate_into(orientations[steps], local)
                deltas.extend(zip(mid, dirs, delta_t[chosen], strict=True))

        position = points[end_step]
        orientation = orientations[end_step - 1]
        current_dir = directions[end_step - 1]
        path += float(lengths[:end_step].sum())
        proper_time = float(tau[end_step - 1])
        interaction_depth = float(depth[end_step - 1])
        residual = float(ranges[end_step])
        current_t = float(energies[-1])
        if reason is not None:
            fate = reason
            break

    if fate == "stopped":
        current_t = 0.0
    return TrackResult(
        species, Deposits.concatenate(parts), position, current_dir, current_t, path, fate, deltas
    )


def _rotate_into(orientations: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate vectors given in a particle's frame (+z along its motion) by the orientations (n, 4)."""
    w = orientations[:, :1]
    axis = orientations[:, 1:]
    t = 2 * cross(axis, vectors)
    return vectors + w * t + cross(axis, t)
