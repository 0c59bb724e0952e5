"""Electromagnetic showers: electrons, positrons and photons transported together, step by step.

The processes and their sources are in ``emprocess``. Electrons and positrons lose energy by
collisions (ICRU 37 stopping power, Landau fluctuations), radiate bremsstrahlung photons above
BREM_PHOTON_CUT_MEV, lose softer radiation continuously and scatter following Highland; positrons
annihilate at rest into two 511 keV photons. Photons below ``photon_cut_mev`` deposit their
energy where they are.

All particles of a generation advance together: each round moves every live electron one step
and every pending photon to its next interaction, so the Python loop runs once per step of the
longest-lived particle chain, not once per particle.
"""

from functools import lru_cache

import numpy as np

from raylar.sim import material as lar
from raylar.sim.detector import Deposits
from raylar.sim.eloss import electron_range_table, highland_growth
from raylar.sim.emprocess import (
    brem_photons_per_cm,
    photon_interactions,
    sample_brem_fraction,
    sample_compton,
    sample_pair_fraction,
    soft_radiation_per_cm,
)
from raylar.sim.fluctuations import sample_energy_loss
from raylar.sim.particles import ELECTRON_MASS, isotropic_directions, rotate_directions
from raylar.sim.transport import outside_volume

MAX_STEP_CM = 1.0
MIN_STEP_CM = 0.03
RANGE_FRACTION = 0.25
FINAL_RANGE_CM = 0.1
MAX_ROUNDS = 20000


class _Stack:
    """Particles of one kind as parallel arrays."""

    def __init__(self):
        self.parts = []
        self.deposits = None  # set for electrons: where the ones too short to step go
        self.annihilations = []  # positions of positrons that ended on arrival

    def add(self, **columns):
        if "kinetic" in columns and self.deposits is not None:
            # Electrons with under FINAL_RANGE_CM of range deposit their energy where they start.
            kinetic = np.asarray(columns["kinetic"])
            short = kinetic < _final_kinetic()
            if np.any(short):
                position = np.asarray(columns["position"])[short]
                self.deposits.append(
                    _point_deposits(
                        position, kinetic[short], _stopping_power(np.maximum(kinetic[short], 0.01))
                    )
                )
                if np.any(np.asarray(columns["positron"])[short]):
                    self.annihilations.append(position[np.asarray(columns["positron"])[short]])
                columns = {key: np.asarray(value)[~short] for key, value in columns.items()}
        if len(next(iter(columns.values()))):
            self.parts.append(columns)

    def take(self) -> dict | None:
        if not self.parts:
            return None
        keys = self.parts[0].keys()
        merged = {key: np.concatenate([np.asarray(p[key]) for p in self.parts]) for key in keys}
        self.parts = []
        return merged


def _stopping_power(kinetic) -> np.ndarray:
    """Return the electron collision stopping power in MeV/cm, read from the range table."""
    table = electron_range_table()
    return np.interp(kinetic, table.energy, table.dedx)


@lru_cache(maxsize=1)
def _final_kinetic() -> float:
    return float(electron_range_table().energy_at(FINAL_RANGE_CM))


def _annihilate(rng, positions, photons) -> None:
    """Add two back-to-back 511 keV photons, isotropic, at each position (positrons at rest)."""
    m = positions.shape[0]
    axis = isotropic_directions(rng, m)
    photons.add(
        position=np.concatenate([positions] * 2),
        direction=np.concatenate([axis, -axis]),
        energy=np.full(2 * m, ELECTRON_MASS),
        primary=np.zeros(2 * m, bool),
    )


def _point_deposits(position, energy, dedx) -> Deposits:
    return Deposits(position, position.copy(), energy, dedx)


def _interact_photons(rng, photons, electrons, next_photons, deposits, config, record):
    energy, position, direction = photons["energy"], photons["position"], photons["direction"]
    low = energy < config.photon_cut_mev
    if np.any(low):
        deposits.append(_point_deposits(position[low], energy[low], _stopping_power(energy[low])))
    keep = ~low
    energy, position, direction, primary = (
        energy[keep],
        position[keep],
        direction[keep],
        photons["primary"][keep],
    )
    if not energy.size:
        return
    distance, kind = photon_interactions(rng, energy)
    position = position + distance[:, None] * direction
    if np.any(primary) and "first_photon_interaction_cm" not in record:
        record["first_photon_interaction_cm"] = float(distance[primary][0])
        record["first_photon_process"] = ("pair", "compton", "photoabsorption")[
            int(kind[primary][0])
        ]
    inside = ~outside_volume(position)
    energy, position, direction, kind = (
        energy[inside],
        position[inside],
        direction[inside],
        kind[inside],
    )

    pair = kind == 0
    if np.any(pair):
        e, pos, d = energy[pair], position[pair], direction[pair]
        x = sample_pair_fraction(rng, e)
        for share, positron in ((x, False), (1 - x, True)):
            total = share * e
            theta = ELECTRON_MASS / total * np.sqrt(-np.log(rng.random(e.size)))
            dirs = rotate_directions(d, np.minimum(theta, np.pi), rng.uniform(0, 2 * np.pi, e.size))
            electrons.add(
                position=pos,
                direction=dirs,
                kinetic=np.maximum(total - ELECTRON_MASS, 0.0),
                positron=np.full(e.size, positron),
                path=np.zeros(e.size),
            )

    compton = kind == 1
    if np.any(compton):
        e, pos, d = energy[compton], position[compton], direction[compton]
        eps = sample_compton(rng, e)
        cos_theta = np.clip(1 - (1 - eps) / (e / ELECTRON_MASS * eps), -1, 1)
        scattered = rotate_directions(d, np.arccos(cos_theta), rng.uniform(0, 2 * np.pi, e.size))
        electron_momentum = e[:, None] * d - (eps * e)[:, None] * scattered
        norm = np.linalg.norm(electron_momentum, axis=1, keepdims=True)
        electron_direction = np.where(norm > 0, electron_momentum / np.maximum(norm, 1e-12), d)
        electrons.add(
            position=pos,
            direction=electron_direction,
            kinetic=(1 - eps) * e,
            positron=np.zeros(e.size, bool),
            path=np.zeros(e.size),
        )
        next_photons.add(
            position=pos, direction=scattered, energy=eps * e, primary=np.zeros(e.size, bool)
        )

    absorbed = kind == 2
    if np.any(absorbed):
        n = int(absorbed.sum())
        electrons.add(
            position=position[absorbed],
            direction=isotropic_directions(rng, n),
            kinetic=energy[absorbed],
            positron=np.zeros(n, bool),
            path=np.zeros(n),
        )


def _step_electrons(rng, state, photons, deposits, config):
    """Advance every live electron one step; return the survivors."""
    table = electron_range_table()
    kinetic, position, direction = state["kinetic"], state["position"], state["direction"]
    positron, path = state["positron"], state["path"]
    n = kinetic.size
    residual = table.range_of(kinetic)
    # NOTE: steps of up to 1 cm let electrons near 10 MeV bend in kinks of about 20 degrees; an
    # angle limit per step would cost about four times the rounds (docs/simulator.md).
    ds = np.minimum(np.clip(RANGE_FRACTION * residual, MIN_STEP_CM, MAX_STEP_CM), residual)
    # An electron with less than FINAL_RANGE_CM of range left ends in this step: at the 3 mm wire
    # pitch its last millimetres are one blob, and finishing it here saves many rounds.
    final = residual <= FINAL_RANGE_CM
    ds = np.where(final, residual, ds)
    mean_loss = kinetic - table.energy_at(residual - ds)
    total_energy = kinetic + ELECTRON_MASS
    gamma = total_energy / ELECTRON_MASS
    beta = np.sqrt(np.maximum(1 - 1 / gamma**2, 1e-12))
    if config.energy_loss_fluctuations:
        xi = 0.5 * lar.K_BETHE * lar.Z_OVER_A * lar.DENSITY * ds / beta**2
        top = np.where(positron, kinetic, 0.5 * kinetic)
        loss = np.minimum(
            sample_energy_loss(rng, mean_loss, xi, np.maximum(top, 1e-6), beta), kinetic
        )
    else:
        loss = mean_loss
    loss = np.where(final, kinetic, loss)
    soft = np.minimum(soft_radiation_per_cm(total_energy) * ds, kinetic - loss)
    available = kinetic - loss - soft

    counts = np.where(final, 0, rng.poisson(brem_photons_per_cm(total_energy) * ds))
    emitted = np.zeros(n)
    if counts.sum():
        owner = np.repeat(np.arange(n), counts)
        y = sample_brem_fraction(rng, total_energy[owner])
        # Photons of one electron are emitted in turn, each taking its fraction y of what the
        # electron has left: k_j = y_j * E * prod_{i<j} (1 - y_i), so they never exceed its energy.
        log_keep = np.log1p(-np.minimum(y, 1.0 - 1e-12))
        running = np.cumsum(log_keep)
        start = np.cumsum(counts) - counts
        before = running - log_keep - np.concatenate(([0.0], running))[start[owner]]
        k = y * available[owner] * np.exp(before)
        keep = k > 0
        owner, k = owner[keep], k[keep]
        np.add.at(emitted, owner, k)
        midpoint = position[owner] + 0.5 * ds[owner, None] * direction[owner]
        photons.add(
            position=midpoint, direction=direction[owner], energy=k, primary=np.zeros(k.size, bool)
        )

    end = position + ds[:, None] * direction
    deposits.append(Deposits(position, end, loss + soft, (loss + soft) / np.maximum(ds, 1e-6)))
    kinetic = available - emitted

    if config.multiple_scattering:
        momentum = np.sqrt(np.maximum(total_energy**2 - ELECTRON_MASS**2, 1e-12))
        growth = highland_growth(path + ds, beta) - highland_growth(path, beta)
        sigma = 13.6 / (beta * momentum) * np.sqrt(np.maximum(growth, 0.0))
        theta = sigma * np.hypot(rng.standard_normal(n), rng.standard_normal(n))
        direction = rotate_directions(
            direction, np.minimum(theta, np.pi), rng.uniform(0, 2 * np.pi, n)
        )
    path = path + ds

    stopped = kinetic < config.electron_cut_mev
    if np.any(stopped):
        rest = np.maximum(kinetic[stopped], 0.0)
        deposits.append(
            _point_deposits(end[stopped], rest, _stopping_power(np.maximum(rest, 0.01)))
        )
        annihilate = stopped & positron
        if np.any(annihilate):
            _annihilate(rng, end[annihilate], photons)
    alive = ~stopped & ~outside_volume(end)
    return {
        "kinetic": kinetic[alive],
        "position": end[alive],
        "direction": direction[alive],
        "positron": positron[alive],
        "path": path[alive],
    }


def cascade(rng, particles, config, record: dict | None = None) -> Deposits:
    """Transport e-, e+ and photons (species, position, direction, kinetic energy) and all they make.

    ``record`` (a dict) receives the distance and process of the first photon's first interaction
    when the first particle is a photon.
    """
    record = {} if record is None else record
    photons, electrons = _Stack(), _Stack()
    deposits: list[Deposits] = []
    electrons.deposits = deposits
    for i, (species, position, direction, kinetic) in enumerate(particles):
        position = np.asarray(position, dtype=float)[None, :]
        direction = np.asarray(direction, dtype=float)[None, :]
        if species == "gamma":
            photons.add(
                position=position,
                direction=direction,
                energy=np.array([kinetic]),
                primary=np.array([i == 0]),
            )
        else:
            electrons.add(
                position=position,
                direction=direction,
                kinetic=np.array([kinetic]),
                positron=np.array([species == "e+"]),
                path=np.zeros(1),
            )
    state = None
    for _ in range(MAX_ROUNDS):
        pending = photons.take()
        if pending is not None:
            _interact_photons(rng, pending, electrons, photons, deposits, config, record)
        if electrons.annihilations:
            _annihilate(rng, np.concatenate(electrons.annihilations), photons)
            electrons.annihilations = []
        fresh = electrons.take()
        if fresh is not None:
            if state is not None and state["kinetic"].size:
                fresh = {key: np.concatenate([state[key], fresh[key]]) for key in state}
            state = fresh
        if state is None or not state["kinetic"].size:
            if not photons.parts and not electrons.parts:
                break
            continue
        state = _step_electrons(rng, state, photons, deposits, config)
    else:
        raise RuntimeError(f"electromagnetic cascade did not finish within {MAX_ROUNDS} steps")
    return Deposits.concatenate(deposits)
