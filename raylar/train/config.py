"""Typed configuration of a training run, one dataclass per concern.

``TrainConfig.to_dict()`` is a plain, YAML- and JSON-safe dict: it is what
travels to every worker as Ray Train's ``train_loop_config`` and what a Ray
Tune sweep overrides through ``param_space={"train_loop_config": {...}}``.
``TrainConfig.from_dict()`` reads it back and rejects unknown keys.
"""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from raylar.geometry import image_size

MODELS = ("jishnet", "scnet")
BACKENDS = ("horovod", "torch")
OPTIMIZERS = ("adam", "sgd")
CODECS = ("sparse", "dense")
DEFAULT_BUDGET_S = 4 * 3600.0


class ConfigError(ValueError):
    """A training configuration that cannot run, found before any worker starts."""


@dataclass
class DataConfig:
    """Event source, storage codec, train/validation split and input scaling."""

    path: str | None = None  # raylar HDF5 or larcv3 file; None means simulate `simulate` events
    # larcv3 files only: the sparse2d producer, its projection (plane) and where
    # labels come from (None: the producer's particle PDG codes; see LArCV3Source).
    producer: str | None = None
    projection: int = 0
    labels: str | None = None
    simulate: int = 0
    seed: int = 1234
    downsample: int = 9
    codec: str = "sparse"
    val_fraction: float = 0.25
    # Factor on pixel values (ADC counts) before the model. Summed downsampled
    # pixels reach 10^4 ADC, and inputs that large slow the first epochs down.
    adc_scale: float = 0.01
    audit: bool = True
    prefetch: int = 2


# JishNet's fastest layout on CPU (docs/benchmarks.md, "Models"): same outputs as the plain
# network, with train steps 4.4 times shorter at 3600 x 3600. GPU workers keep the plain layout, because the
# compiled block runs on CPU only and the other two options were never measured on a GPU.
CPU_MODEL_OPTIONS = {"jishnet": {"fused_first_block": True, "fused_pooling": True, "channels_last": True}}


@dataclass
class ModelConfig:
    """Network name and the options passed to ``build_model``."""

    name: str = "jishnet"
    options: dict = field(default_factory=dict)

    def options_for(self, device_type: str) -> dict:
        """Return the options to build with on ``device_type``: the CPU layout defaults, then ``options``."""
        defaults = CPU_MODEL_OPTIONS.get(self.name, {}) if device_type == "cpu" else {}
        return {**defaults, **self.options}


@dataclass
class OptimizerConfig:
    """Optimizer and learning-rate schedule.

    Adam is the default. ``scale_lr_by_workers`` multiplies ``lr`` by the
    number of workers, and the rate ramps up linearly from ``lr`` to that value
    over the first ``warmup_epochs`` epochs (the large-minibatch SGD recipe of
    Goyal et al., 2017). Left at None, both are on for SGD (1 warm-up epoch)
    and off for Adam.
    """

    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    scale_lr_by_workers: bool | None = None
    warmup_epochs: float | None = None


@dataclass
class RunConfig:
    """Length, budget and outputs of the run."""

    output: str = "runs/train"
    epochs: int = 3
    batch_size: int = 8  # per worker
    budget_s: float = DEFAULT_BUDGET_S
    target_loss: float = 1.2
    report_every: int = 5  # steps between reports to Ray
    running_window: int = 10  # steps in the running loss compared with target_loss
    seed: int = 0
    resume: str | None = None  # run directory to continue from its latest checkpoint


@dataclass
class BackendConfig:
    """Distributed backend and worker layout."""

    name: str = "horovod"
    workers: int = 2
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    cpus_per_worker: float | None = None  # None: an equal share of the cluster's CPUs
    max_failures: int = 1
    # How often Horovod's background thread negotiates with the other ranks.
    # None: HOROVOD_CYCLE_TIME if set, else 5 ms on CPU-only workers and
    # Horovod's own 1 ms with GPUs (see docs/training.md).
    horovod_cycle_time_ms: float | None = None


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "run": RunConfig,
    "backend": BackendConfig,
}


@dataclass
class TrainConfig:
    """The whole configuration of one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)

    def to_dict(self) -> dict:
        """Return the configuration as nested plain dicts, lists and scalars."""
        result = asdict(self)
        result["optimizer"]["betas"] = list(self.optimizer.betas)
        return result

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build a configuration from nested dicts; missing keys keep their defaults.

        Raises ``ConfigError`` for an unknown section or key. Keys that start
        with an underscore carry run-time objects (the event store) and are
        ignored here.
        """
        sections = {}
        for section, section_values in values.items():
            if section.startswith("_"):
                continue
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown configuration section {section!r}; expected one of {sorted(SECTIONS)}"
                )
            section_class = SECTIONS[section]
            known = {f.name for f in fields(section_class)}
            unknown = set(section_values or {}) - known
            if unknown:
                raise ConfigError(
                    f"unknown key(s) {sorted(unknown)} in section {section!r}; "
                    f"expected some of {sorted(known)}"
                )
            section_values = dict(section_values or {})
            if "betas" in section_values:
                section_values["betas"] = tuple(section_values["betas"])
            sections[section] = section_class(**section_values)
        return cls(**sections)

    def to_yaml(self, path: str | Path) -> None:
        """Write the configuration to ``path`` as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read a configuration written by ``to_yaml`` (or by hand, with any subset of keys)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {str(path)!r} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"configuration file {str(path)!r} must hold a mapping of sections")
        return cls.from_dict(values)

    def validate(self) -> None:
        """Raise ``ConfigError`` for any value the run cannot use.

        Checks that need the cluster or the data (worker placement, shard size,
        the resume checkpoint) are done by ``raylar.train.backends``.
        """
        data, run, opt, backend = self.data, self.run, self.optimizer, self.backend
        if self.model.name not in MODELS:
            raise ConfigError(f"unknown model {self.model.name!r}; expected one of {list(MODELS)}")
        if not isinstance(self.model.options, dict):
            raise ConfigError(f"invalid model options {self.model.options!r}: expected a mapping of option names to values")
        from raylar.models.config import ModelConfigError
        from raylar.models.registry import check_options

        try:
            check_options(self.model.name, self.model.options)
        except ModelConfigError as error:
            raise ConfigError(str(error)) from None
        if backend.name not in BACKENDS:
            raise ConfigError(f"unknown backend {backend.name!r}; expected one of {list(BACKENDS)}")
        if opt.name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {opt.name!r}; expected one of {list(OPTIMIZERS)}")
        if data.codec not in CODECS:
            raise ConfigError(f"unknown codec {data.codec!r}; expected one of {list(CODECS)}")
        if data.path is None and data.simulate <= 0:
            raise ConfigError("no events: give an event file (--data FILE) or a number of events to simulate (--simulate N)")
        if data.path is not None and data.simulate:
            raise ConfigError("give either an event file (--data) or --simulate N, not both")
        if data.path is not None and not Path(data.path).is_file():
            raise ConfigError(f"event file {data.path!r} not found")
        try:
            image_size(data.downsample)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if not data.adc_scale > 0:
            raise ConfigError(f"invalid ADC scale {data.adc_scale!r}: it must be positive")
        if not 0.0 < data.val_fraction < 1.0:
            raise ConfigError(f"invalid validation fraction {data.val_fraction!r}: it must lie between 0 and 1")
        if not run.budget_s > 0:
            raise ConfigError(f"invalid budget {run.budget_s!r} s: it must be a positive time, such as 4h or 90s")
        if not isinstance(run.epochs, int) or run.epochs < 1:
            raise ConfigError(f"invalid number of epochs {run.epochs!r}: it must be an integer of at least 1")
        if not isinstance(run.batch_size, int) or run.batch_size < 1:
            raise ConfigError(f"invalid batch size {run.batch_size!r}: it must be an integer of at least 1")
        if run.report_every < 1 or run.running_window < 1:
            raise ConfigError("report_every and running_window must be at least 1 step")
        if not opt.lr > 0:
            raise ConfigError(f"invalid learning rate {opt.lr!r}: it must be positive")
        if (opt.warmup_epochs or 0) < 0 or opt.weight_decay < 0:
            raise ConfigError("warmup_epochs and weight_decay must not be negative")
        if not isinstance(backend.workers, int) or backend.workers < 1:
            raise ConfigError(f"invalid number of workers {backend.workers!r}: it must be an integer of at least 1")
        if backend.max_failures < 0:
            raise ConfigError(f"invalid max_failures {backend.max_failures!r}: it must be 0 or more")
        cycle = backend.horovod_cycle_time_ms
        if cycle is not None and (isinstance(cycle, bool) or not isinstance(cycle, int | float) or not cycle > 0):
            raise ConfigError(
                f"invalid horovod_cycle_time_ms {cycle!r}: it must be a positive number of milliseconds"
            )


def parse_duration(text: str | float | int) -> float:
    """Convert a duration such as ``4h``, ``90m``, ``60s``, ``1h30m`` or ``3600`` to seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    value = str(text).strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    total, number = 0.0, ""
    for char in value:
        if char.isdigit() or char in ".-":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ConfigError(f"invalid duration {text!r}: write it as 4h, 90m, 60s or 1h30m")
    if number:
        raise ConfigError(f"invalid duration {text!r}: the last number has no unit (h, m or s)")
    return total
