"""Search spaces: the YAML grammar that maps training-config fields onto Ray Tune distributions.

A search-space file names the fields of the training configuration it varies,
by their dotted path in ``TrainConfig.to_dict()``, and one distribution each::

    parameters:
      optimizer.lr: {distribution: loguniform, low: 1.0e-5, high: 1.0e-2}
      data.batch_size: {distribution: choice, values: [4, 8, 16]}

Distributions and their keys: ``uniform`` and ``loguniform`` (``low``, ``high``),
``quniform`` (``low``, ``high``, ``q``), ``randint`` (``low``, ``high``, with ``high``
excluded as in Ray Tune), ``choice`` and ``grid`` (``values``). ``grid`` values
are all run, each ``num_samples`` times; the others are sampled.
"""

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTION_KEYS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "randint": ("low", "high"),
    "choice": ("values",),
    "grid": ("values",),
}


class SearchSpaceError(ValueError):
    """An invalid search-space or profile file, or a value in it."""


@dataclass(frozen=True)
class Parameter:
    """One varied training-config field: its dotted path and its distribution."""

    name: str
    distribution: str
    arguments: dict

    def to_tune(self):
        """Return the Ray Tune domain (or grid) object for this parameter."""
        from ray import tune

        args = self.arguments
        if self.distribution == "uniform":
            return tune.uniform(args["low"], args["high"])
        if self.distribution == "loguniform":
            return tune.loguniform(args["low"], args["high"])
        if self.distribution == "quniform":
            return tune.quniform(args["low"], args["high"], args["q"])
        if self.distribution == "randint":
            return tune.randint(args["low"], args["high"])
        if self.distribution == "choice":
            return tune.choice(list(args["values"]))
        return tune.grid_search(list(args["values"]))

    def describe(self) -> str:
        """Return a one-line human-readable form, e.g. ``optimizer.lr ~ loguniform(1e-05, 0.01)``."""
        if "values" in self.arguments:
            return f"{self.name} ~ {self.distribution}{list(self.arguments['values'])}"
        values = ", ".join(f"{self.arguments[key]:g}" for key in DISTRIBUTION_KEYS[self.distribution])
        return f"{self.name} ~ {self.distribution}({values})"


@dataclass
class SearchSpace:
    """A parsed search-space file."""

    name: str
    parameters: list[Parameter] = field(default_factory=list)
    fixed: dict = field(default_factory=dict)
    source: str = ""

    def param_space(self, base_config: dict) -> dict:
        """Return Ray Tune's ``param_space`` for a trainer whose config is ``base_config``.

        ``base_config`` is the nested training-config dict; the parameters replace
        its leaves with Tune domains, and ``fixed`` values replace them with constants.
        """
        config = _deep_copy(base_config)
        for name, value in self.fixed.items():
            set_dotted(config, name, value)
        for parameter in self.parameters:
            set_dotted(config, parameter.name, parameter.to_tune())
        return {"train_loop_config": config}

    def grid_size(self) -> int:
        """Return how many trials one sample of the grid parameters expands to."""
        size = 1
        for parameter in self.parameters:
            if parameter.distribution == "grid":
                size *= len(parameter.arguments["values"])
        return size


def flatten(config: dict, prefix: str = "") -> dict:
    """Flatten a nested dict into ``{"a.b.c": value}``.

    A list of scalars appears both whole (``optimizer.betas``) and element by
    element (``optimizer.betas.0``), so a search space can vary either.
    """
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
            continue
        flat[name] = value
        if isinstance(value, list) and all(isinstance(item, (int, float, str, bool)) for item in value):
            flat.update({f"{name}.{index}": item for index, item in enumerate(value)})
    return flat


def set_dotted(config: dict, name: str, value: Any) -> None:
    """Set the leaf at dotted path ``name`` of a nested dict (list elements by index)."""
    *parents, leaf = name.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def _deep_copy(config):
    if isinstance(config, dict):
        return {key: _deep_copy(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_deep_copy(value) for value in config]
    return config


def read_yaml(path: str | Path, what: str) -> dict:
    """Read a YAML mapping from ``path``, raising ``SearchSpaceError`` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"{what} file not found: {path}; give an existing YAML file")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SearchSpaceError(f"malformed {what} file {path}: {error}") from None
    if not isinstance(document, dict):
        raise SearchSpaceError(
            f"malformed {what} file {path}: expected a YAML mapping at the top level, "
            f"found {type(document).__name__}"
        )
    return document


def check_field_name(name: str, known_fields: dict, source: str) -> None:
    """Raise ``SearchSpaceError`` unless ``name`` is a dotted training-config field."""
    if name in known_fields:
        return
    close = difflib.get_close_matches(name, list(known_fields), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SearchSpaceError(
        f"unknown parameter {name!r} in {source}: it is not a field of the training config{hint} "
        f"(fields: {', '.join(sorted(known_fields))})"
    )


def _number(value: Any, name: str, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(
            f"invalid {key} {value!r} for parameter {name!r} in {source}: it must be a finite number"
        )
    return value


def parse_parameter(name: str, spec: Any, known_fields: dict, source: str) -> Parameter:
    """Parse and validate one ``parameters`` entry of a search-space file."""
    check_field_name(name, known_fields, source)
    if not isinstance(spec, dict) or "distribution" not in spec:
        raise SearchSpaceError(
            f"invalid parameter {name!r} in {source}: expected a mapping with a 'distribution' key "
            f"and its arguments, e.g. {{distribution: uniform, low: 0.8, high: 0.99}}; found {spec!r}"
        )
    distribution = spec["distribution"]
    if distribution not in DISTRIBUTION_KEYS:
        raise SearchSpaceError(
            f"unknown distribution {distribution!r} for parameter {name!r} in {source}; "
            f"use one of {', '.join(DISTRIBUTION_KEYS)}"
        )
    expected = DISTRIBUTION_KEYS[distribution]
    arguments = {key: value for key, value in spec.items() if key != "distribution"}
    missing = [key for key in expected if key not in arguments]
    extra = [key for key in arguments if key not in expected]
    if missing or extra:
        raise SearchSpaceError(
            f"invalid arguments for {distribution} parameter {name!r} in {source}: "
            f"expected keys {', '.join(expected)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )

    if "values" in expected:
        values = arguments["values"]
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(
                f"invalid values {values!r} for {distribution} parameter {name!r} in {source}: "
                "expected a non-empty list"
            )
        return Parameter(name, distribution, {"values": values})

    low = _number(arguments["low"], name, "low", source)
    high = _number(arguments["high"], name, "high", source)
    if not low < high:
        raise SearchSpaceError(
            f"wrong bounds for {distribution} parameter {name!r} in {source}: low {low!r} must be "
            f"below high {high!r}"
        )
    if distribution == "loguniform" and low <= 0:
        raise SearchSpaceError(
            f"wrong bounds for loguniform parameter {name!r} in {source}: low {low!r} must be "
            "positive, because the distribution is uniform in log(value)"
        )
    if distribution == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise SearchSpaceError(
            f"wrong bounds for randint parameter {name!r} in {source}: low and high must be "
            f"integers, found {low!r} and {high!r}"
        )
    if distribution == "quniform":
        q = _number(arguments["q"], name, "q", source)
        if q <= 0 or q > high - low:
            raise SearchSpaceError(
                f"invalid q {q!r} for quniform parameter {name!r} in {source}: it must be positive "
                f"and no larger than high - low = {high - low:g}"
            )
    return Parameter(name, distribution, arguments)


def parse_search_space(document: dict, known_fields: dict, source: str) -> SearchSpace:
    """Validate a search-space mapping (``parameters`` and optional ``fixed``) against the config fields."""
    unexpected = [key for key in document if key not in ("name", "description", "parameters", "fixed")]
    if unexpected:
        raise SearchSpaceError(
            f"unexpected top-level key(s) {', '.join(map(repr, unexpected))} in {source}; "
            "a search space has name, description, parameters and fixed"
        )
    parameters = document.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SearchSpaceError(
            f"malformed search space {source}: expected a non-empty 'parameters' mapping of "
            "training-config fields to distributions"
        )
    fixed = document.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise SearchSpaceError(f"malformed search space {source}: 'fixed' must be a mapping, found {fixed!r}")
    for name in fixed:
        check_field_name(name, known_fields, source)
    parsed = [parse_parameter(name, spec, known_fields, source) for name, spec in parameters.items()]
    name = str(document.get("name") or Path(source).stem)
    return SearchSpace(name=name, parameters=parsed, fixed=dict(fixed), source=source)


def load_search_space(path: str | Path, known_fields: dict) -> SearchSpace:
    """Read and validate a search-space YAML file; ``known_fields`` is the flattened training config."""
    return parse_search_space(read_yaml(path, "search-space"), known_fields, str(path))
