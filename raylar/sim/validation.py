"""Physics validation: quantities computed by running the simulator next to reference values.

Each check runs the simulator's own code path (transport, photon sampling, decays, detector
response) on a small sample with a fixed seed and compares the result with a reference value and
a relative tolerance. ``python -m raylar.simulate validate`` prints the table.
"""

from dataclasses import asdict, dataclass

import numpy as np

from raylar.sim import reference
from raylar.sim.config import SimConfig
from raylar.sim.decays import decay_at
from raylar.sim.detector import Deposits, collect_charge, recombination_survival
from raylar.sim.emprocess import photon_interactions
from raylar.sim.particles import SPECIES, kinetic_from_momentum
from raylar.sim.transport import transport

SEED = 20240611
RANGE_ENERGIES_MEV = {"mu+": (50, 300, 1000), "pi+": (50, 300), "k+": (100, 300), "p": (50, 200)}
RANGE_TRACKS = 40


@dataclass
class Row:
    """One line of the validation table."""

    key: str
    quantity: str
    unit: str
    reference: float
    computed: float
    tolerance: float  # relative
    source: str

    @property
    def deviation(self) -> float:
        return self.computed / self.reference - 1.0

    @property
    def passed(self) -> bool:
        return bool(abs(self.deviation) <= self.tolerance)

    def to_dict(self) -> dict:
        return {**asdict(self), "deviation": self.deviation, "passed": self.passed}


def _transport_config(**changes) -> SimConfig:
    values = {"decays": False, "hadronic": False}
    values.update(changes)
    return SimConfig(**values)


def check_mip_dedx() -> Row:
    """Mean energy loss per cm of muons at minimum ionization over 5 cm, from the transport."""
    mass = SPECIES["mu+"].mass
    kinetic = reference.minimum_ionization_kinetic(mass)
    config = _transport_config(multiple_scattering=False)
    rng = np.random.default_rng(SEED)
    lost, path = 0.0, 0.0
    for _ in range(200):
        result = _transport_segment(rng, "mu+", kinetic, 5.0, config)
        lost += kinetic - result.end_kinetic
        path += result.path_cm
    return Row(
        "mip_dedx",
        "minimum-ionizing <-dE/dx> of mu+",
        "MeV/cm",
        2.105,
        lost / path,
        0.02,
        "PDG atomic and nuclear properties: liquid argon, 1.508 MeV cm2/g",
    )


def check_mip_most_probable() -> Row:
    """Most probable energy lost per 3 mm by minimum-ionizing muons, from the transport's steps."""
    mass = SPECIES["mu+"].mass
    kinetic = reference.minimum_ionization_kinetic(mass)
    config = _transport_config(multiple_scattering=False)
    rng = np.random.default_rng(SEED)
    losses = []
    for _ in range(300):
        result = _transport_segment(rng, "mu+", kinetic, 30.0, config)
        steps = result.deposits.energy[:297]
        losses.append(steps.reshape(-1, 3).sum(axis=1))
    counts, edges = np.histogram(np.concatenate(losses), bins=np.linspace(0.0, 1.2, 121))
    peak = int(np.argmax(counts))
    # Refine the peak with the parabola through the highest bin and its neighbours.
    left, middle, right = counts[peak - 1 : peak + 2].astype(float)
    offset = 0.5 * (left - right) / (left - 2 * middle + right)
    width = edges[1] - edges[0]
    mode = edges[peak] + (0.5 + offset) * width
    return Row(
        "mip_most_probable_loss",
        "most probable energy loss of minimum-ionizing mu+ in 3 mm",
        "MeV",
        reference.most_probable_loss(kinetic, mass, 0.3),
        float(mode),
        0.05,
        "PDG Landau-Vavilov-Bichsel most probable loss, j = 0.200",
    )


def _transport_segment(rng, species, kinetic, length_cm, config):
    """Transport a particle along +z for at most ``length_cm`` by placing the volume edge there."""
    from raylar.sim.detector import ACTIVE_Z_CM
    from raylar.sim.transport import TRACK_MARGIN_CM

    start = np.array([100.0, 0.0, ACTIVE_Z_CM[1] + TRACK_MARGIN_CM - length_cm])
    return transport(rng, species, start, np.array([0.0, 0.0, 1.0]), kinetic, config)


def check_range(species: str, kinetic: float) -> Row:
    """Mean path length of stopping tracks against the directly integrated CSDA range."""
    config = _transport_config()
    rng = np.random.default_rng([SEED, int(kinetic), len(species)])
    paths = []
    for _ in range(RANGE_TRACKS):
        result = transport(
            rng,
            species,
            np.zeros(3),
            np.array([0.0, 0.0, 1.0]),
            kinetic,
            config,
            in_volume_only=False,
        )
        paths.append(result.path_cm)
    expected = reference.csda_range(kinetic, reference.MASSES_MEV[species])
    return Row(
        f"range_{species}_{kinetic:g}",
        f"CSDA range of {species} at T = {kinetic:g} MeV",
        "cm",
        expected,
        float(np.mean(paths)),
        0.02,
        "Bethe equation with PDG liquid-argon parameters, integrated directly",
    )


def check_conversion_length() -> Row:
    """Mean distance to the first interaction of 10 GeV photons, from the shower code's sampler."""
    rng = np.random.default_rng(SEED)
    distance, _ = photon_interactions(rng, np.full(100_000, 1.0e4))
    return Row(
        "conversion_length",
        "mean photon conversion distance at 10 GeV",
        "cm",
        9.0 / 7.0 * 14.00,
        float(distance.mean()),
        0.05,
        "PDG: 9/7 X0 at high energy, X0 = 14.00 cm",
    )


def check_radiation_length() -> Row:
    """Radiation length seen by 10 GeV electrons over one shower step: -dx / ln(<E after> / E)."""
    from raylar.sim import em

    count, energy = 100_000, 1.0e4
    rng = np.random.default_rng(SEED)
    state = {
        "kinetic": np.full(count, energy),
        "position": np.tile([100.0, 0.0, 500.0], (count, 1)),
        "direction": np.tile([0.0, 0.0, 1.0], (count, 1)),
        "positron": np.zeros(count, bool),
        "path": np.zeros(count),
    }
    photons = em._Stack()
    em._step_electrons(rng, state, photons, [], SimConfig())
    emitted = photons.take()["energy"].sum() if photons.parts else 0.0
    step = em.MAX_STEP_CM
    soft = float(em.soft_radiation_per_cm(np.array([energy + em.ELECTRON_MASS]))[0]) * step
    kept = 1.0 - (emitted / count + soft) / energy
    return Row(
        "radiation_length",
        "radiation length from 10 GeV e- bremsstrahlung over a 1 cm step",
        "cm",
        14.00,
        -step / np.log(kept),
        0.05,
        "PDG liquid argon: X0 = 19.55 g/cm2 = 14.00 cm",
    )


def check_highland() -> Row:
    """RMS projected angle of 2 GeV/c muons after one radiation length of argon, from the transport."""
    momentum, length = 2000.0, 14.0
    mass = SPECIES["mu+"].mass
    kinetic = float(kinetic_from_momentum(momentum, mass))
    config = _transport_config(energy_loss_fluctuations=False)
    rng = np.random.default_rng(SEED)
    angles = []
    for _ in range(1500):
        result = _transport_segment(rng, "mu+", kinetic, length, config)
        d = result.end_direction
        angles.extend((np.arctan2(d[0], d[2]), np.arctan2(d[1], d[2])))
    return Row(
        "highland",
        "Highland width, 2 GeV/c mu+ after 14 cm (1 X0)",
        "mrad",
        1e3 * reference.highland_width(momentum, mass, length),
        1e3 * float(np.sqrt(np.mean(np.square(angles)))),
        0.05,
        "PDG eq. 34.16 (Highland)",
    )


def check_michel_endpoint() -> Row:
    """Largest positron energy in 5 000 simulated decays of stopped muons."""
    rng = np.random.default_rng(SEED)
    top = 0.0
    for _ in range(5_000):
        daughters, _ = decay_at(rng, "mu+", 0.0, np.array([0.0, 0.0, 1.0]))
        top = max(top, daughters[0].energy)
    return Row(
        "michel_endpoint",
        "Michel e+ spectrum endpoint (total energy)",
        "MeV",
        reference.michel_endpoint(),
        top,
        0.01,
        "(m_mu^2 + m_e^2) / 2 m_mu with PDG masses",
    )


def _two_body_muon(parent: str, expected: float, key: str, count: int = 2000) -> Row:
    rng = np.random.default_rng(SEED)
    momenta = []
    for _ in range(count):
        daughters, mode = decay_at(rng, parent, 0.0, np.array([0.0, 0.0, 1.0]))
        if mode == ("mu+", "nu"):
            momenta.append(float(np.linalg.norm(daughters[0].momentum)))
    return Row(
        key,
        f"{parent} -> mu+ nu at rest: muon momentum",
        "MeV/c",
        expected,
        float(np.median(momenta)),
        0.005,
        "PDG particle listings",
    )


def check_kaon_muon() -> Row:
    return _two_body_muon("k+", 235.5, "kaon_muon_momentum")


def check_pion_muon() -> Row:
    return _two_body_muon("pi+", 29.79, "pion_muon_momentum")


def check_recombination() -> Row:
    config = SimConfig()
    computed = float(recombination_survival(np.array([2.105]), config)[0])
    return Row(
        "recombination_mip",
        "recombination survival at 2.105 MeV/cm, 273 V/cm",
        "fraction",
        reference.box_survival(2.105, 0.273),
        computed,
        0.01,
        "modified Box model, ArgoNeuT JINST 8 P08005",
    )


def check_mip_electrons() -> Row:
    """Mean electrons per wire from minimum-ionizing muons crossing the wires near the anode."""
    mass = SPECIES["mu+"].mass
    kinetic = reference.minimum_ionization_kinetic(mass)
    config = _transport_config(multiple_scattering=False)
    rng = np.random.default_rng(SEED)
    per_wire = []
    for _ in range(30):
        result = transport(
            rng, "mu+", np.array([1.0, 0.0, 300.0]), np.array([0.0, 0.0, 1.0]), kinetic, config
        )
        parts = [result.deposits]
        # Delta rays are part of the track's charge: deposit their energy where they start.
        for position, _, energy in result.deltas:
            parts.append(
                Deposits(position[None, :], position[None, :], np.array([energy]), np.array([2.5]))
            )
        deposits = Deposits.concatenate(parts)
        keys, electrons, _ = collect_charge(rng, deposits, config)
        wires = keys // (1 << 14)
        totals = np.bincount(wires - wires.min(), weights=electrons)
        per_wire.append(totals[5:-5][:200])
    survival = reference.box_survival(2.105, 0.273)
    expected = 2.105 * 0.3 / 23.6e-6 * survival
    return Row(
        "mip_electrons_per_wire",
        "electrons per 3 mm of minimum-ionizing track (after recombination)",
        "e-",
        expected,
        float(np.mean(np.concatenate(per_wire))),
        0.03,
        "PDG dE/dx x 0.3 cm / W_ion (23.6 eV) x Box survival",
    )


CHECKS = {
    "mip_dedx": check_mip_dedx,
    "mip_most_probable_loss": check_mip_most_probable,
    **{
        f"range_{species}_{kinetic:g}": (lambda s=species, t=kinetic: check_range(s, t))
        for species, energies in RANGE_ENERGIES_MEV.items()
        for kinetic in energies
    },
    "conversion_length": check_conversion_length,
    "radiation_length": check_radiation_length,
    "highland": check_highland,
    "michel_endpoint": check_michel_endpoint,
    "kaon_muon_momentum": check_kaon_muon,
    "pion_muon_momentum": check_pion_muon,
    "recombination_mip": check_recombination,
    "mip_electrons_per_wire": check_mip_electrons,
}


def run_validation(keys=None) -> list[Row]:
    """Run the named checks (all by default) and return their rows."""
    return [CHECKS[key]() for key in (keys or CHECKS)]


def format_table(rows: list[Row]) -> str:
    header = f"{'quantity':<62} {'unit':>8} {'reference':>11} {'computed':>11} {'dev %':>7} {'tol %':>6}  result"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.quantity:<62} {row.unit:>8} {row.reference:>11.4g} {row.computed:>11.4g} "
            f"{100 * row.deviation:>7.2f} {100 * row.tolerance:>6.1f}  {'pass' if row.passed else 'FAIL'}"
        )
    return "\n".join(lines)
