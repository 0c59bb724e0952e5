"""Training configuration, optimizers, metrics, checkpoints and CLI checks that need no Ray cluster."""

import math

import numpy as np
import pytest
import torch

from raylar.train.__main__ import build_parser, config_from_args, main
from raylar.train.checkpoint import (
    CheckpointNotFoundError,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from raylar.train.collective import horovod_cycle_time
from raylar.train.config import ConfigError, TrainConfig, parse_duration
from raylar.train.metrics import (
    WorkerLog,
    binomial_error,
    confusion_counts,
    read_worker_csv,
    validation_summary,
)
from raylar.train.optim import LearningRateSchedule, build_optimizer


def simulated_config(**run_values) -> TrainConfig:
    config = TrainConfig()
    config.data.simulate = 100
    for key, value in run_values.items():
        setattr(config.run, key, value)
    return config


def test_config_dict_round_trip():
    config = simulated_config(epochs=7, budget_s=90.0)
    config.optimizer.betas = (0.8, 0.99)
    values = config.to_dict()
    assert TrainConfig.from_dict(values) == config
    assert values["optimizer"]["betas"] == [0.8, 0.99]


def test_config_yaml_round_trip(tmp_path):
    config = simulated_config(batch_size=4)
    config.model.name = "scnet"
    config.to_yaml(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(tmp_path / "config.yaml") == config


def test_config_partial_dict_keeps_defaults():
    config = TrainConfig.from_dict({"run": {"epochs": 2}, "_store": object()})
    assert config.run.epochs == 2
    assert config.optimizer.lr == 1e-3
    assert config.optimizer.weight_decay == 0.01


def test_config_rejects_unknown_key():
    with pytest.raises(ConfigError, match="unknown key.*'epoch'.*'run'"):
        TrainConfig.from_dict({"run": {"epoch": 2}})


def test_config_rejects_unknown_section():
    with pytest.raises(ConfigError, match="unknown configuration section 'trainer'"):
        TrainConfig.from_dict({"trainer": {}})


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "name", "resnet", "unknown model 'resnet'"),
        ("backend", "name", "mpi", "unknown backend 'mpi'"),
        ("optimizer", "name", "lamb", "unknown optimizer 'lamb'"),
        ("run", "budget_s", 0.0, "invalid budget 0.0"),
        ("run", "budget_s", -5.0, "invalid budget -5.0"),
        ("run", "batch_size", 0, "invalid batch size 0"),
        ("run", "epochs", 0, "invalid number of epochs 0"),
        ("data", "downsample", 7, "invalid downsample factor 7"),
        ("data", "val_fraction", 1.0, "invalid validation fraction"),
        ("backend", "workers", 0, "invalid number of workers 0"),
        ("backend", "horovod_cycle_time_ms", 0, "invalid horovod_cycle_time_ms 0"),
        ("model", "options", {"fused_first_blok": True}, "unknown option.*fused_first_blok"),
        ("model", "options", {"fused_pooling": "false"}, "invalid fused_pooling 'false'"),
        ("model", "options", {"channels": [8, 16]}, "invalid channels"),
        ("backend", "horovod_cycle_time_ms", "fast", "invalid horovod_cycle_time_ms 'fast'"),
    ],
)
def test_config_validate_rejects(section, key, value, message):
    config = simulated_config()
    setattr(getattr(config, section), key, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_config_validate_missing_event_file(tmp_path):
    config = TrainConfig()
    config.data.path = str(tmp_path / "missing.h5")
    with pytest.raises(ConfigError, match="missing.h5' not found"):
        config.validate()


def test_config_validate_requires_events():
    with pytest.raises(ConfigError, match="no events"):
        TrainConfig().validate()


@pytest.mark.parametrize(
    ("text", "seconds"), [("4h", 14400.0), ("90m", 5400.0), ("60s", 60.0), ("1h30m", 5400.0), ("45", 45.0)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["4 hours", "1h30", "fast"])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


def test_adam_defaults():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, TrainConfig().optimizer)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert group["lr"] == 1e-3
    assert group["betas"] == (0.9, 0.999)
    assert group["eps"] == 1e-8
    assert group["weight_decay"] == 0.01


def test_sgd_scaled_lr_with_warmup():
    config = TrainConfig().optimizer
    config.name, config.lr, config.momentum = "sgd", 0.01, 0.9
    optimizer = build_optimizer(torch.nn.Linear(3, 2), config)
    schedule = LearningRateSchedule(config, world_size=4, steps_per_epoch=10)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert schedule.lr_at(0) == pytest.approx(0.01)
    assert schedule.lr_at(5) == pytest.approx(0.025)
    assert schedule.lr_at(10) == pytest.approx(0.04)
    assert schedule.apply(optimizer, 100) == pytest.approx(0.04)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.04)


def test_adam_lr_unscaled_by_default():
    schedule = LearningRateSchedule(TrainConfig().optimizer, world_size=4, steps_per_epoch=10)
    assert schedule.lr_at(0) == schedule.lr_at(50) == pytest.approx(1e-3)


def test_binomial_error():
    assert binomial_error(60, 100) == pytest.approx(math.sqrt(0.6 * 0.4 / 100))
    assert binomial_error(0, 10) == 0.0
    assert math.isnan(binomial_error(0, 0))


def test_validation_summary_confusion_percent():
    true = [0, 0, 0, 0, 1, 1, 2, 3, 4, 4]
    predicted = [0, 0, 0, 1, 1, 0, 2, 3, 4, 2]
    summary = validation_summary(confusion_counts(true, predicted), loss_sum=5.0)
    percent = np.array(summary["val_confusion_percent"])
    assert summary["val_accuracy"] == pytest.approx(0.7)
    assert summary["val_loss"] == pytest.approx(0.5)
    assert summary["val_events"] == 10
    assert percent[0].tolist() == [75.0, 25.0, 0.0, 0.0, 0.0]
    assert percent[4].tolist() == [0.0, 0.0, 50.0, 0.0, 50.0]
    assert summary["val_per_class_accuracy"] == pytest.approx([0.75, 0.5, 1.0, 1.0, 0.5])


def test_worker_log_appends(tmp_path):
    path = tmp_path / "workers" / "rank0.csv"
    log = WorkerLog(path)
    log.write({"step": 0, "loss": 1.5})
    log.close()
    log = WorkerLog(path)
    log.write({"step": 1, "loss": 1.25})
    log.close()
    rows = read_worker_csv(path)
    assert [row["step"] for row in rows] == [0.0, 1.0]
    assert rows[1]["loss"] == 1.25


def test_checkpoint_latest_wins(tmp_path):
    save_checkpoint(tmp_path, {"epoch": 1, "next_batch": 0, "value": "first"})
    folder = save_checkpoint(tmp_path, {"epoch": 1, "next_batch": 3, "value": "second"})
    assert find_checkpoint(tmp_path) == folder
    assert load_checkpoint(folder)["value"] == "second"
    assert not list((tmp_path / "checkpoints").glob("*.partial"))


def test_checkpoint_missing_raises(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint in"):
        find_checkpoint(tmp_path)


def test_cli_overrides_yaml(tmp_path):
    simulated_config(epochs=5).to_yaml(tmp_path / "base.yaml")
    args = build_parser().parse_args(
        ["--config", str(tmp_path / "base.yaml"), "--budget", "90s", "--model", "scnet", "--workers", "1"]
    )
    config = config_from_args(args)
    assert config.run.epochs == 5
    assert config.run.budget_s == 90.0
    assert config.model.name == "scnet"
    assert config.backend.workers == 1


def test_cli_rejects_zero_budget(capsys):
    assert main(["--simulate", "10", "--budget", "0s"]) == 2
    assert "invalid budget 0.0" in capsys.readouterr().err


def test_cli_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["--simulate", "10", "--backend", "mpi"])
    assert "invalid choice: 'mpi'" in capsys.readouterr().err


def test_cli_rejects_unknown_model(capsys):
    with pytest.raises(SystemExit):
        main(["--simulate", "10", "--model", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_cli_rejects_resume_without_checkpoint(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert f"no checkpoint in '{tmp_path}'" in capsys.readouterr().err


@pytest.mark.parametrize("num_events,world_size,batch_size", [(300, 2, 8), (7, 3, 2), (5, 8, 4), (101, 4, 16)])
def test_validation_batches_cover_each_event_once(num_events, world_size, batch_size):
    from raylar.train.evaluation import validation_batches

    seen = np.concatenate(
        [batch for rank in range(world_size) for batch in validation_batches(num_events, world_size, rank, batch_size)]
        or [np.array([], dtype=np.int64)]
    )

    assert len(seen) == num_events
    assert sorted(seen.tolist()) == list(range(num_events))
    assert all(
        len(batch) <= batch_size
        for rank in range(world_size)
        for batch in validation_batches(num_events, world_size, rank, batch_size)
    )


def test_horovod_cycle_time_choice(monkeypatch):
    monkeypatch.delenv("HOROVOD_CYCLE_TIME", raising=False)
    assert horovod_cycle_time(None, use_gpu=False) == 5.0
    assert horovod_cycle_time(None, use_gpu=True) is None
    assert horovod_cycle_time(2, use_gpu=True) == 2.0
    # a value the user exported is left for Horovod to read
    monkeypatch.setenv("HOROVOD_CYCLE_TIME", "3")
    assert horovod_cycle_time(None, use_gpu=False) is None
    assert horovod_cycle_time(8, use_gpu=False) == 8.0


def test_cpu_layout_fills_in_unset_jishnet_options():
    config = TrainConfig.from_dict({"model": {"name": "jishnet", "options": {"channels_last": False}}})

    assert config.model.options_for("cpu") == {
        "fused_first_block": True, "fused_pooling": True, "channels_last": False,
    }
    assert config.model.options_for("cuda") == {"channels_last": False}
    scnet = TrainConfig.from_dict({"model": {"name": "scnet", "options": {"channels": [4, 8, 8, 16]}}})
    assert scnet.model.options_for("cpu") == {"channels": [4, 8, 8, 16]}
