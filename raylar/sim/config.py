"""Generator configuration: particle classes, spectra, physics switches and detector response."""

import dataclasses
from dataclasses import dataclass, field
from math import erfc, sqrt

from raylar.geometry import CLASS_NAMES, TICKS, WIRES, image_size

# Other spellings users type for the five classes; the stored name is always CLASS_NAMES[label].
CLASS_ALIASES = {
    "photon": "gamma",
    "γ": "gamma",
    "e": "electron",
    "positron": "electron",
    "e±": "electron",
    "mu": "muon",
    "mu+": "muon",
    "μ+": "muon",
    "pi": "pion",
    "pi+": "pion",
    "π+": "pion",
    "k": "kaon",
    "k+": "kaon",
    "K+": "kaon",
}


def canonical_class(name: str) -> str:
    """Return the class name in CLASS_NAMES for ``name`` or one of its aliases."""
    key = str(name).strip()
    if key in CLASS_NAMES:
        return key
    key = CLASS_ALIASES.get(key, CLASS_ALIASES.get(key.lower(), key.lower()))
    if key not in CLASS_NAMES:
        raise ValueError(f"unknown particle class {name!r}; choose from {', '.join(CLASS_NAMES)}")
    return key


def default_spectra() -> dict:
    """Momentum spectrum per class: uniform in [p_min_mev, p_max_mev] MeV/c."""
    return {name: {"p_min_mev": 100.0, "p_max_mev": 1000.0} for name in CLASS_NAMES}


@dataclass
class SimConfig:
    """Everything that decides what ``simulate_event`` generates; units are in the field names.

    Defaults follow MicroBooNE (JINST 12 P02017, 2017) where it publishes a value. Noise and
    threshold are this generator's choices, set to a few ADC counts of noise after filtering.
    """

    downsample: int = 1
    classes: tuple = CLASS_NAMES
    spectra: dict = field(default_factory=default_spectra)
    vertex_margin_cm: float = 0.0

    # Transport.
    step_cm: float = 0.1
    delta_ray_cut_mev: float = 1.0
    photon_cut_mev: float = 0.1
    electron_cut_mev: float = 0.1
    decays: bool = True
    hadronic: bool = True
    energy_loss_fluctuations: bool = True
    multiple_scattering: bool = True

    # Detector response.
    field_kv_per_cm: float = 0.273
    drift_velocity_cm_per_us: float = 0.1098
    electron_lifetime_us: float = 10000.0
    diffusion_long_cm2_per_s: float = 3.74
    diffusion_trans_cm2_per_s: float = 5.85
    recombination_alpha: float = 0.93
    recombination_beta: float = 0.212
    electrons_per_adc: float = 190.0
    peaking_time_us: float = 2.0
    noise_rms_adc: float = 2.5
    threshold_adc: float = 10.0
    adc_max: float = 4095.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        image_size(self.downsample)
        if isinstance(self.classes, str):
            self.classes = (self.classes,)
        if not self.classes:
            raise ValueError("classes is empty; give at least one of " + ", ".join(CLASS_NAMES))
        self.classes = tuple(canonical_class(name) for name in self.classes)

        spectra = default_spectra()
        for name, spectrum in dict(self.spectra).items():
            key = canonical_class(name)
            merged = {**spectra[key], **spectrum}
            low, high = float(merged["p_min_mev"]), float(merged["p_max_mev"])
            if not (0.0 < low <= high):
                raise ValueError(
                    f"momentum spectrum of {key} is [{low}, {high}] MeV/c; it needs 0 < p_min_mev <= p_max_mev"
                )
            spectra[key] = {"p_min_mev": low, "p_max_mev": high}
        self.spectra = spectra

        positive = (
            "step_cm",
            "delta_ray_cut_mev",
            "photon_cut_mev",
            "electron_cut_mev",
            "field_kv_per_cm",
            "drift_velocity_cm_per_us",
            "electron_lifetime_us",
            "electrons_per_adc",
            "peaking_time_us",
            "adc_max",
        )
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in (
            "noise_rms_adc",
            "threshold_adc",
            "vertex_margin_cm",
            "diffusion_long_cm2_per_s",
            "diffusion_trans_cm2_per_s",
        ):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be zero or positive, got {getattr(self, name)!r}")

        if self.noise_rms_adc > 0:
            level = max(self.threshold_adc - 0.5, 0.0)
            noise_pixels = 0.5 * erfc(level / (self.noise_rms_adc * sqrt(2))) * WIRES * TICKS
            if noise_pixels > 0.01 * WIRES * TICKS:
                raise ValueError(
                    f"threshold_adc={self.threshold_adc} with noise_rms_adc={self.noise_rms_adc} lets about "
                    f"{noise_pixels:.0f} noise pixels per event pass zero suppression; raise the threshold "
                    "to at least 3 times the noise RMS"
                )

        window_x = TICKS * 0.5 * self.drift_velocity_cm_per_us  # drift distance the image covers
        if 2 * self.vertex_margin_cm >= window_x:
            raise ValueError(
                f"vertex_margin_cm={self.vertex_margin_cm} leaves no room for a vertex in the "
                f"{window_x:.1f} cm of drift the image covers; use less than {window_x / 2:.1f}"
            )

        if self.step_cm > 0.3:
            raise ValueError(
                f"step_cm={self.step_cm} is longer than the 0.3 cm wire pitch; use at most 0.3"
            )

    @property
    def labels(self) -> list[int]:
        return [CLASS_NAMES.index(name) for name in self.classes]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SimConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown simulator settings {unknown}; known settings are {sorted(known)}"
            )
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        return cls(**values)
