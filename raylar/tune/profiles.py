"""Run profiles: the training config and sweep settings of one kind of sweep, from YAML.

A profile file has a ``train`` section (training-config fields to change from
their defaults, nested by section as in ``TrainConfig.to_dict()``) and a
``sweep`` section (``SweepSettings`` fields). The command line overrides the
sweep settings.
"""

from dataclasses import dataclass, fields, replace
from pathlib import Path

from raylar.train.config import ConfigError, TrainConfig, parse_duration
from raylar.tune.space import SearchSpaceError, check_field_name, flatten, read_yaml, set_dotted

# NOTE: the shipped profiles and spaces are found in the source checkout only. A
# non-editable install has no search_spaces/ beside the package, so pass file paths there.
SEARCH_SPACE_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SCHEDULERS = ("asha", "hyperband", "none")
DEFAULT_PROFILE = "quickstart"


@dataclass
class SweepSettings:
    """Settings of a sweep: its search space, budgets, and the scheduler that stops trials early.

    Durations are seconds. ``concurrent_trials`` 0 means as many as the cluster
    can place at once. ``grace_period_s`` is the elapsed training time before
    the scheduler may first stop a trial.
    """

    search_space: str = "adam.yaml"
    num_samples: int = 4
    scheduler: str = "asha"
    budget_s: float = 4 * 3600.0
    sweep_budget_s: float | None = None
    metric: str = "val_loss"
    mode: str = "min"
    concurrent_trials: int = 0
    grace_period_s: float = 60.0
    reduction_factor: int = 2

    def validate(self, source: str) -> None:
        """Raise ``SearchSpaceError`` naming ``source`` for any setting the sweep cannot use."""
        if self.scheduler not in SCHEDULERS:
            raise SearchSpaceError(f"unknown scheduler {self.scheduler!r} in {source}; use one of {', '.join(SCHEDULERS)}")
        if self.mode not in ("min", "max"):
            raise SearchSpaceError(f"invalid mode {self.mode!r} in {source}: use min or max")
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise SearchSpaceError(f"invalid num_samples {self.num_samples!r} in {source}: it must be an integer of at least 1")
        if not self.budget_s > 0:
            raise SearchSpaceError(f"invalid per-trial budget {self.budget_s!r} s in {source}: it must be positive")
        if self.sweep_budget_s is not None and not self.sweep_budget_s > 0:
            raise SearchSpaceError(f"invalid sweep budget {self.sweep_budget_s!r} s in {source}: it must be positive")
        if not isinstance(self.concurrent_trials, int) or self.concurrent_trials < 0:
            raise SearchSpaceError(
                f"invalid concurrent_trials {self.concurrent_trials!r} in {source}: "
                "use 0 (as many as fit) or a positive integer"
            )
        if not self.grace_period_s > 0 or self.reduction_factor < 2:
            raise SearchSpaceError(
                f"invalid scheduler settings in {source}: grace_period must be positive and "
                "reduction_factor at least 2"
            )


@dataclass
class Profile:
    """A named training config plus the sweep settings that go with it."""

    name: str
    train: dict
    sweep: SweepSettings
    source: str


def _is_profile(path: Path) -> bool:
    """Tell a run profile (a top-level ``sweep:`` section) from a search space in ``search_spaces/``."""
    try:
        return any(line.startswith("sweep:") for line in path.read_text().splitlines())
    except OSError:
        return False


def find_yaml(name: str, what: str) -> Path:
    """Resolve ``name`` as a path, or as a file (``.yaml`` optional) in ``search_spaces/``."""
    for candidate in (Path(name), SEARCH_SPACE_DIR / name, SEARCH_SPACE_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    available = sorted(p.stem for p in SEARCH_SPACE_DIR.glob("*.yaml") if _is_profile(p) == (what == "profile"))
    raise SearchSpaceError(
        f"{what} {name!r} not found: give a YAML file path or one of {', '.join(available)} "
        f"(from {SEARCH_SPACE_DIR})"
    )


def training_fields() -> dict:
    """Return the flattened default training config: every field a search space may name."""
    return flatten(TrainConfig().to_dict())


def apply_overrides(config: dict, overrides: dict, source: str, prefix: str = "") -> None:
    """Copy nested or dotted ``overrides`` into ``config``, rejecting names it does not have."""
    known = flatten(config)
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not any(field_name == name for field_name in known):
            apply_overrides(config, value, source, prefix=f"{name}.")
            continue
        check_field_name(name, known, source)
        set_dotted(config, name, value)


def sweep_settings(values: dict, source: str) -> SweepSettings:
    """Build ``SweepSettings`` from a profile's ``sweep`` section; durations accept 4h, 90m, 60s."""
    known = {f.name for f in fields(SweepSettings)}
    renamed = {"budget": "budget_s", "sweep_budget": "sweep_budget_s", "grace_period": "grace_period_s"}
    settings = {}
    for key, value in values.items():
        name = renamed.get(key, key)
        if name not in known:
            raise SearchSpaceError(
                f"unknown sweep setting {key!r} in {source}; expected some of "
                f"{', '.join(sorted(set(known) - set(renamed.values()) | set(renamed)))}"
            )
        if name.endswith("_s") and value is not None:
            try:
                value = parse_duration(value)
            except ConfigError as error:
                raise SearchSpaceError(f"{error} (setting {key!r} in {source})") from None
        settings[name] = value
    return SweepSettings(**settings)


def load_profile(name: str) -> Profile:
    """Read a profile by name (``quickstart``, ``summitdev``) or path, and validate it."""
    path = find_yaml(name, "profile")
    source = str(path)
    document = read_yaml(path, "profile")
    unexpected = [key for key in document if key not in ("name", "description", "train", "sweep")]
    if unexpected:
        raise SearchSpaceError(
            f"unexpected top-level key(s) {', '.join(map(repr, unexpected))} in profile {source}; "
            "a profile has name, description, train and sweep"
        )
    train = TrainConfig().to_dict()
    apply_overrides(train, document.get("train") or {}, source)
    settings = sweep_settings(document.get("sweep") or {}, source)
    settings.validate(source)
    return Profile(name=str(document.get("name") or path.stem), train=train, sweep=settings, source=source)


def with_overrides(settings: SweepSettings, **overrides) -> SweepSettings:
    """Return a copy of ``settings`` with the command-line values that were given (not None)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(settings, **given)
