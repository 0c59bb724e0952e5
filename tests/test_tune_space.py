"""Search-space grammar and run profiles: parsing, Ray Tune domains and validation errors."""

from pathlib import Path

import pytest
import yaml

import raylar  # noqa: F401 - selects Ray Train V1
from raylar.tune.profiles import SEARCH_SPACE_DIR, load_profile, training_fields
from raylar.tune.space import SearchSpaceError, load_search_space

SHIPPED_SPACES = ["adam", "batch_size", "adam_batch", "sgd_warmup"]


def write_space(tmp_path: Path, parameters: dict, **extra) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"parameters": parameters, **extra}))
    return path


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_shipped_search_space_loads(name):
    space = load_search_space(SEARCH_SPACE_DIR / f"{name}.yaml", training_fields())
    assert space.parameters


@pytest.mark.parametrize("name", ["quickstart", "summitdev"])
def test_shipped_profile_loads(name):
    profile = load_profile(name)
    space = load_search_space(SEARCH_SPACE_DIR / profile.sweep.search_space, training_fields())
    assert profile.sweep.metric == "val_loss"
    assert space.parameters


def test_summitdev_profile_full_size():
    profile = load_profile("summitdev")
    assert profile.train["data"]["downsample"] == 1
    assert profile.train["data"]["simulate"] == 15000
    assert profile.train["backend"]["workers"] == 4
    assert profile.sweep.budget_s == 4 * 3600


def test_distributions_map_to_tune_domains(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    path = write_space(
        tmp_path,
        {
            "optimizer.lr": {"distribution": "loguniform", "low": 1e-5, "high": 1e-2},
            "optimizer.momentum": {"distribution": "uniform", "low": 0.8, "high": 0.99},
            "optimizer.weight_decay": {"distribution": "quniform", "low": 0.0, "high": 0.1, "q": 0.01},
            "run.epochs": {"distribution": "randint", "low": 1, "high": 4},
            "optimizer.name": {"distribution": "choice", "values": ["adam", "sgd"]},
            "run.batch_size": {"distribution": "grid", "values": [4, 8]},
        },
    )
    space = load_search_space(path, training_fields())
    domains = {parameter.name: parameter.to_tune() for parameter in space.parameters}
    assert isinstance(domains["optimizer.lr"], Float)
    assert isinstance(domains["optimizer.momentum"], Float)
    assert isinstance(domains["optimizer.weight_decay"], Float)
    assert isinstance(domains["run.epochs"], Integer)
    assert isinstance(domains["optimizer.name"], Categorical)
    assert domains["run.batch_size"] == {"grid_search": [4, 8]}
    assert space.grid_size() == 2


def test_list_element_is_searchable(tmp_path):
    from ray.tune.search.sample import Float

    path = write_space(tmp_path, {"optimizer.betas.0": {"distribution": "uniform", "low": 0.8, "high": 0.95}})
    space = load_search_space(path, training_fields())
    config = space.param_space({"optimizer": {"betas": [0.9, 0.999]}})["train_loop_config"]
    assert isinstance(config["optimizer"]["betas"][0], Float)
    assert config["optimizer"]["betas"][1] == 0.999


def test_fixed_values_replace_defaults(tmp_path):
    path = write_space(
        tmp_path,
        {"optimizer.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}},
        fixed={"optimizer.name": "sgd"},
    )
    space = load_search_space(path, training_fields())
    config = space.param_space({"optimizer": {"name": "adam", "lr": 0.001}})["train_loop_config"]
    assert config["optimizer"]["name"] == "sgd"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"distribution": "gaussian", "low": 0, "high": 1}, "unknown distribution 'gaussian'"),
        ({"distribution": "uniform", "low": 0.9, "high": 0.1}, "wrong bounds"),
        ({"distribution": "loguniform", "low": 0.0, "high": 0.1}, "must be positive"),
        ({"distribution": "randint", "low": 1.5, "high": 4}, "must be integers"),
        ({"distribution": "quniform", "low": 0, "high": 1, "q": 0}, "invalid q"),
        ({"distribution": "uniform", "low": 0.1}, "missing high"),
        ({"distribution": "uniform", "low": 0.1, "high": 0.2, "step": 1}, "unexpected step"),
        ({"distribution": "choice", "values": []}, "non-empty list"),
        ({"distribution": "uniform", "low": "a", "high": 1}, "finite number"),
        ({"low": 0, "high": 1}, "'distribution' key"),
    ],
)
def test_invalid_distribution_rejected(tmp_path, spec, message):
    path = write_space(tmp_path, {"optimizer.momentum": spec})
    with pytest.raises(SearchSpaceError, match=message) as error:
        load_search_space(path, training_fields())
    assert "optimizer.momentum" in str(error.value)


def test_unknown_parameter_suggests_field(tmp_path):
    path = write_space(tmp_path, {"optimizer.learning_rate": {"distribution": "uniform", "low": 0, "high": 1}})
    with pytest.raises(SearchSpaceError, match="unknown parameter 'optimizer.learning_rate'") as error:
        load_search_space(path, training_fields())
    assert "optimizer.lr" in str(error.value)


def test_missing_search_space_file(tmp_path):
    with pytest.raises(SearchSpaceError, match="not found") as error:
        load_search_space(tmp_path / "nope.yaml", training_fields())
    assert "nope.yaml" in str(error.value)


def test_malformed_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("parameters:\n  optimizer.lr: {distribution: uniform, low: 0\n")
    with pytest.raises(SearchSpaceError, match="malformed search-space file") as error:
        load_search_space(path, training_fields())
    assert "broken.yaml" in str(error.value)


def test_space_without_parameters_rejected(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("name: empty\n")
    with pytest.raises(SearchSpaceError, match="non-empty 'parameters'"):
        load_search_space(path, training_fields())


def test_profile_unknown_train_field(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"train": {"run": {"epoch": 3}}}))
    with pytest.raises(SearchSpaceError, match="unknown parameter 'run.epoch'"):
        load_profile(str(path))


def test_profile_invalid_duration(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"sweep": {"budget": "4 hours"}}))
    with pytest.raises(SearchSpaceError, match="invalid duration"):
        load_profile(str(path))


def test_profile_unknown_scheduler(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"sweep": {"scheduler": "pbt"}}))
    with pytest.raises(SearchSpaceError, match="unknown scheduler 'pbt'"):
        load_profile(str(path))


def test_missing_profile_lists_shipped_ones():
    with pytest.raises(SearchSpaceError, match="quickstart"):
        load_profile("no-such-profile")
