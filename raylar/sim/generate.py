"""One event: primary particle, transport of it and everything it makes, detector response, truth."""

import numpy as np

from raylar import geometry
from raylar.data.types import Event
from raylar.sim import em, hadronic
from raylar.sim.config import SimConfig
from raylar.sim.decays import decay_at
from raylar.sim.detector import ACTIVE_Y_CM, Deposits, respond, window_x_cm, window_z_cm
from raylar.sim.particles import (
    CLASS_PRIMARY,
    SPECIES,
    isotropic_directions,
    kinetic_from_momentum,
)
from raylar.sim.transport import transport

HEAVY = ("mu+", "mu-", "pi+", "pi-", "k+", "p")
EM_SPECIES = ("gamma", "e-", "e+")
MAX_PARTICLES = 2000


def event_rng(seed: int, index: int) -> np.random.Generator:
    """Return the random generator of event ``index`` in the stream of master ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))


def sample_vertex(rng, config: SimConfig) -> np.ndarray:
    """Draw a vertex uniformly in the part of the active volume that the image window covers."""
    margin = config.vertex_margin_cm
    low = np.array([margin, ACTIVE_Y_CM[0] + margin, margin])
    high = np.array([window_x_cm(config) - margin, ACTIVE_Y_CM[1] - margin, window_z_cm() - margin])
    if np.any(high <= low):
        raise ValueError(
            f"vertex_margin_cm={margin} leaves no room for a vertex inside the image window"
        )
    return rng.uniform(low, high)


def _rounded(values, digits=4):
    return [round(float(v), digits) for v in np.atleast_1d(values)]


class EventBuilder:
    """Transports a primary and its secondaries, collecting deposits and truth."""

    def __init__(self, rng, config: SimConfig):
        self.rng = rng
        self.config = config
        self.deposits: list[Deposits] = []
        self.stack: list[tuple] = []  # (species, position, direction, kinetic, origin)
        self.em_particles: list[tuple] = []
        self.decay_products: list[dict] = []
        self.interactions: list[dict] = []
        self.primary_end = None
        self.processed = 0
        self.em_record: dict = {}

    def push(self, species, position, direction, kinetic, origin="primary"):
        direction = np.asarray(direction, dtype=float)
        direction = direction / np.linalg.norm(direction)
        if species in EM_SPECIES:
            self.em_particles.append(
                (species, np.asarray(position, dtype=float), direction, float(kinetic))
            )
        elif species == "pi0":
            daughters, _ = decay_at(self.rng, "pi0", kinetic, direction)
            for daughter in daughters:
                self.push(
                    daughter.species, position, daughter.momentum, daughter.energy, "pi0 decay"
                )
        elif species in HEAVY:
            self.stack.append(
                (species, np.asarray(position, dtype=float), direction, float(kinetic), origin)
            )

    def _decay(self, species, position, direction, kinetic, at_rest):
        daughters, _ = decay_at(self.rng, species, kinetic, direction)
        for daughter in daughters:
            momentum = float(np.linalg.norm(daughter.momentum))
            self.decay_products.append(
                {
                    "parent": species,
                    "particle": daughter.species,
                    "momentum_mev": round(momentum, 4),
                    "kinetic_mev": round(daughter.kinetic, 4),
                    "position_cm": _rounded(position),
                    "at_rest": bool(at_rest),
                }
            )
            if daughter.species != "nu" and momentum > 0:
                self.push(
                    daughter.species,
                    position,
                    daughter.momentum,
                    daughter.kinetic,
                    f"{species} decay",
                )

    def run_heavy(self):
        while self.stack:
            species, position, direction, kinetic, origin = self.stack.pop()
            self.processed += 1
            if self.processed > MAX_PARTICLES:
                raise RuntimeError(
                    f"event produced more than {MAX_PARTICLES} particles; the cascade is runaway"
                )
            result = transport(self.rng, species, position, direction, kinetic, self.config)
            self.deposits.append(result.deposits)
            for delta_position, delta_direction, delta_kinetic in result.deltas:
                self.push("e-", delta_position, delta_direction, delta_kinetic, "delta ray")
            if origin == "primary":
                self.primary_end = result
            if result.fate == "stopped":
                if species in ("mu+", "pi+", "k+"):
                    self._decay(species, result.end_position, result.end_direction, 0.0, True)
                elif species in ("pi-", "mu-"):
                    for particle in hadronic.capture_at_rest(self.rng, species):
                        self.push(
                            particle[0],
                            result.end_position,
                            particle[1],
                            particle[2],
                            f"{species} capture",
                        )
            elif result.fate == "decay":
                self._decay(
                    species, result.end_position, result.end_direction, result.end_kinetic, False
                )
            elif result.fate == "hadronic":
                products = hadronic.interact(
                    self.rng, species, result.end_kinetic, result.end_direction
                )
                self.interactions.append(
                    {
                        "particle": species,
                        "kinetic_mev": round(result.end_kinetic, 4),
                        "position_cm": _rounded(result.end_position),
                        "products": [p[0] for p in products],
                    }
                )
                for name, direction_out, kinetic_out in products:
                    self.push(
                        name,
                        result.end_position,
                        direction_out,
                        kinetic_out,
                        f"{species} interaction",
                    )

    def run(self):
        self.run_heavy()
        while self.em_particles:
            particles, self.em_particles = self.em_particles, []
            self.deposits.append(em.cascade(self.rng, particles, self.config, self.em_record))


def simulate_event(index: int, seed: int, config: SimConfig | None = None) -> Event:
    """Generate event ``index`` of the stream with master ``seed``.

    The label is ``config.classes[index % len(config.classes)]``; the random state comes from
    ``SeedSequence([seed, index])`` alone, so an event is the same whichever process makes it.
    """
    config = config or SimConfig()
    rng = event_rng(seed, index)
    name = config.classes[index % len(config.classes)]
    label = geometry.CLASS_NAMES.index(name)
    species = CLASS_PRIMARY[name]
    if name == "electron" and rng.random() < 0.5:
        species = "e+"
    mass = SPECIES[species].mass
    spectrum = config.spectra[name]
    momentum = rng.uniform(spectrum["p_min_mev"], spectrum["p_max_mev"])
    kinetic = float(kinetic_from_momentum(momentum, mass))
    direction = isotropic_directions(rng, 1)[0]
    vertex = sample_vertex(rng, config)

    builder = EventBuilder(rng, config)
    builder.push(species, vertex, direction, kinetic)
    builder.run()
    response = respond(rng, Deposits.concatenate(builder.deposits), config)

    tick_cm = geometry.TICK_PERIOD_US * config.drift_velocity_cm_per_us
    truth = {
        "label": label,
        "class": name,
        "particle": species,
        "momentum_mev": round(float(momentum), 4),
        "kinetic_mev": round(kinetic, 4),
        "direction": _rounded(direction, 6),
        "vertex_cm": _rounded(vertex),
        "vertex_wire": int(vertex[2] // geometry.WIRE_PITCH_CM),
        "vertex_tick": int(vertex[0] // tick_cm),
        "decay_products": builder.decay_products,
        "hadronic_interactions": builder.interactions,
        "deposited_energy_mev": round(response.deposited_energy_mev, 4),
        "deposited_charge_e": round(response.ionization_electrons, 1),
        "visible_charge_e": round(response.visible_electrons, 1),
        "noise_only_pixels": response.noise_only_pixels,
        "seed": int(seed),
        "index": int(index),
    }
    if species == "gamma" and "first_photon_interaction_cm" in builder.em_record:
        truth["conversion_distance_cm"] = round(builder.em_record["first_photon_interaction_cm"], 4)
        truth["first_photon_process"] = builder.em_record["first_photon_process"]
    end = builder.primary_end
    if end is not None:
        truth["primary_fate"] = end.fate
        truth["primary_end_cm"] = _rounded(end.end_position)
        truth["primary_path_cm"] = round(end.path_cm, 4)
    size = geometry.image_size(config.downsample)
    return Event(
        event_id=int(index),
        label=label,
        shape=(size, size),
        rows=response.rows,
        cols=response.cols,
        values=response.values,
        truth=truth,
    )
