"""The installed stack: Horovod on Ray Train V1, resource sizing, Train V1 selection."""

import logging
import os
import subprocess
import sys
import time

import pytest

from raylar.log import FORMAT, RankFilter
from raylar.train.resources import ResourceRequestError, plan_workers


def _horovod_step(config):
    """One DistributedOptimizer step of a small linear model on rank-specific data."""
    import horovod.torch as hvd
    import torch
    from ray import train

    hvd.init()
    torch.manual_seed(0)  # same initial weights everywhere, checked by the broadcast anyway
    model = torch.nn.Linear(4, 1)
    optimizer = hvd.DistributedOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters()
    )
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    generator = torch.Generator().manual_seed(100 + hvd.rank())
    inputs = torch.randn(8, 4, generator=generator)
    targets = torch.randn(8, 1, generator=generator)
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    averaged = hvd.allreduce(loss.detach(), name="loss", op=hvd.Average).item()
    local_losses = hvd.allgather_object(loss.item())
    parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
    record = logging.LogRecord("raylar.test", logging.INFO, __file__, 0, "step done", None, None)
    RankFilter().filter(record)
    log_lines = hvd.allgather_object(logging.Formatter(FORMAT).format(record))
    all_parameters = hvd.allgather_object(parameters.tolist())
    train.report(
        {
            "averaged_loss": averaged,
            "local_losses": local_losses,
            "parameters": all_parameters,
            "world_size": hvd.size(),
            "log_lines": log_lines,
            "train_v2_variable": os.environ.get("RAY_TRAIN_V2_ENABLED"),
        }
    )


def test_horovod_two_workers_average_loss(ray_cluster):
    from ray.train import RunConfig
    from ray.train.horovod import HorovodTrainer

    plan = plan_workers(2)
    trainer = HorovodTrainer(
        _horovod_step,
        scaling_config=plan.scaling_config(),
        run_config=RunConfig(storage_path=os.path.abspath("test-artifacts/ray_results"), name="stack"),
    )
    metrics = trainer.fit().metrics

    assert metrics["world_size"] == 2
    assert metrics["train_v2_variable"] == "0"
    local_losses = metrics["local_losses"]
    assert local_losses[0] != pytest.approx(local_losses[1])
    assert metrics["averaged_loss"] == pytest.approx(sum(local_losses) / 2, rel=1e-6)
    first, second = metrics["parameters"]
    assert first == second
    assert "[rank 0] raylar.test: step done" in metrics["log_lines"][0]
    assert "[rank 1] raylar.test: step done" in metrics["log_lines"][1]


def test_plan_workers_rejects_too_many(ray_cluster):
    cpus = int(ray_cluster["CPU"])
    started = time.monotonic()
    with pytest.raises(ResourceRequestError) as error:
        plan_workers(cpus + 1)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert f"requested {cpus + 1} workers" in message
    assert f"{cpus} CPUs" in message


def test_plan_workers_rejects_gpu_request_without_gpus(ray_cluster):
    with pytest.raises(ResourceRequestError, match="GPU workers"):
        plan_workers(1, use_gpu=True)


def test_plan_workers_shares_cpus(ray_cluster):
    plan = plan_workers(1)
    config = plan.scaling_config()
    assert plan.cpus_per_worker == ray_cluster["CPU"]
    assert config.trainer_resources == {"CPU": 0}


def test_ray_train_v1_selected_on_import():
    code = "import raylar, os; from ray.train.horovod import HorovodTrainer; print(os.environ['RAY_TRAIN_V2_ENABLED'])"
    environment = {key: value for key, value in os.environ.items() if key != "RAY_TRAIN_V2_ENABLED"}
    output = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120
    )
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip().splitlines()[-1] == "0"


def test_import_after_train_v2_raises():
    code = "import os; os.environ['RAY_TRAIN_V2_ENABLED'] = '1'; import ray.train; import raylar"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert output.returncode != 0
    assert "import raylar first" in output.stderr
