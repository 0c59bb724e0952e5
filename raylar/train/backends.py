"""Build the Ray Train trainer of a run (Horovod or Torch DDP) after checking everything it needs.

``make_trainer(config)`` does every check that can fail before a worker
starts: the configuration values, worker placement on the running cluster,
the resume checkpoint, the events (loaded into the object store here, so the
data loading time is measured once) and the shard size. The trainer's
``train_loop_config`` is ``config.to_dict()`` plus the loaded event store
under ``"_store"``, so a Ray Tune sweep can override any configuration value
through ``param_space={"train_loop_config": {...}}``.
"""

import json
from pathlib import Path

from raylar.geometry import image_size
from raylar.log import get_logger
from raylar.train.checkpoint import find_checkpoint, load_checkpoint
from raylar.train.config import ConfigError, TrainConfig
from raylar.train.loop import STORE_KEY, train_loop_per_worker
from raylar.train.resources import plan_workers

logger = get_logger(__name__)


def make_trainer(config: TrainConfig | dict, store=None, run_name: str | None = None):
    """Check ``config`` against the running Ray cluster and return its ``HorovodTrainer`` or ``TorchTrainer``.

    ``store`` is an ``EventStore`` already loaded from the configured events;
    without it the events are loaded here. Raises ``ConfigError``,
    ``ResourceRequestError`` or the data module's errors before any worker starts.
    """
    from ray.train import FailureConfig, RunConfig

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    config.validate()
    if config.run.output:
        config.run.output = str(Path(config.run.output).resolve())

    plan = plan_workers(config.backend.workers, use_gpu=config.backend.use_gpu,
                        cpus_per_worker=config.backend.cpus_per_worker)
    config.backend.use_gpu = plan.use_gpu
    config.backend.cpus_per_worker = plan.cpus_per_worker
    # Written to config.yaml as the workers will build the model.
    config.model.options = config.model.options_for("cuda" if plan.use_gpu else "cpu")
    check_resume(config)

    if store is None:
        store = load_store(config)
    check_store(config, store)
    if config.run.output:
        write_run_files(config, store)

    train_loop_config = config.to_dict()
    train_loop_config[STORE_KEY] = store
    storage = str(Path(config.run.output or "runs").resolve())
    run_config = RunConfig(
        name=run_name or "ray",
        storage_path=storage,
        failure_config=FailureConfig(max_failures=config.backend.max_failures),
    )
    logger.info(
        "backend %s, %d worker(s) x %g CPU%s, model %s %s, output %s",
        config.backend.name, plan.num_workers, plan.cpus_per_worker, " + 1 GPU" if plan.use_gpu else "",
        config.model.name, config.model.options, config.run.output,
    )
    if config.backend.name == "horovod":
        from ray.train.horovod import HorovodTrainer

        return HorovodTrainer(
            train_loop_per_worker,
            train_loop_config=train_loop_config,
            scaling_config=plan.scaling_config(),
            run_config=run_config,
        )
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_loop_config,
        torch_config=TorchConfig(backend="nccl" if plan.use_gpu else "gloo"),
        scaling_config=plan.scaling_config(),
        run_config=run_config,
    )


def run_training(config: TrainConfig | dict, store=None) -> dict:
    """Train to the end (or the budget) and return the run's ``metrics.json`` contents."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    trainer = make_trainer(config, store=store)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    metrics_path = Path(config.run.output) / "metrics.json"
    summary = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    summary["ray_metrics"] = {key: value for key, value in (result.metrics or {}).items() if _is_plain(value)}
    return summary


def load_store(config: TrainConfig):
    """Load the configured events into Ray's object store and return the ``EventStore``."""
    from raylar.data import EventStore, SimulatedSource, open_source
    from raylar.data.larcv3 import LArCV3Source

    if config.data.path is not None and config.data.producer is not None:
        source = LArCV3Source(config.data.path, config.data.producer, config.data.projection, labels=config.data.labels)
    elif config.data.path is not None:
        # A larcv3 file without a producer gets an error that lists its producers.
        source = open_source(config.data.path)
    else:
        source = SimulatedSource(config.data.simulate, config.data.seed, {"downsample": config.data.downsample})
    store = EventStore.load(source, codec=config.data.codec, val_fraction=config.data.val_fraction,
                            seed=config.data.seed)
    stats = store.stats
    logger.info(
        "loaded %d events (%d training, %d validation) in %.2f s (DLT); %.1f MB raw, %.2f MB compressed, ratio %.0f",
        stats.num_events, len(store.train), len(store.val), stats.dlt_s, stats.raw_bytes / 1e6,
        stats.compressed_bytes / 1e6, stats.ratio,
    )
    return store


def check_store(config: TrainConfig, store) -> None:
    """Raise ``ConfigError`` when the events do not fit the model size or the workers' shards."""
    side = image_size(config.data.downsample)
    shape = tuple(store.train.image_shape)
    if shape != (side, side):
        raise ConfigError(
            f"the events of {config.data.path or 'the simulator'} are {shape[0]} x {shape[1]} pixels but "
            f"downsample {config.data.downsample} expects {side} x {side}; set --downsample to {3600 // shape[0]}"
        )
    workers, batch_size = config.backend.workers, config.run.batch_size
    shard = len(store.train) // workers
    if batch_size > shard:
        raise ConfigError(
            f"batch size {batch_size} is larger than a worker's shard of {shard} training events "
            f"({len(store.train)} events over {workers} workers); use --batch-size {max(shard, 1)} or less, "
            "fewer workers or more events"
        )
    if len(store.val) < workers:
        raise ConfigError(
            f"only {len(store.val)} validation events for {workers} workers; raise the validation fraction "
            "or the number of events"
        )


def check_resume(config: TrainConfig) -> None:
    """Raise when ``--resume`` names no checkpoint or one the run cannot continue from.

    A new run (no ``--resume``) must not write into the run directory of
    another run, whose logs and checkpoints it would mix with its own.
    """
    if not config.run.resume:
        if config.run.output and (Path(config.run.output) / "checkpoints" / "latest").exists():
            raise ConfigError(
                f"the output directory {config.run.output!r} already contains a run; continue it with "
                f"--resume {config.run.output} or choose a new --output"
            )
        return
    state = load_checkpoint(find_checkpoint(config.run.resume))
    if state["next_batch"] and state["world_size"] != config.backend.workers:
        raise ConfigError(
            f"the checkpoint in {config.run.resume!r} stopped in the middle of epoch {state['epoch']} with "
            f"{state['world_size']} workers; resume it with --workers {state['world_size']}, because the "
            "epoch's shards depend on the number of workers"
        )
    if state["epoch"] >= config.run.epochs:
        raise ConfigError(
            f"the run in {config.run.resume!r} already finished {state['epoch']} epochs; "
            f"ask for more with --epochs (now {config.run.epochs})"
        )
    saved_model = state["config"]["model"]["name"]
    if saved_model != config.model.name:
        raise ConfigError(
            f"the checkpoint in {config.run.resume!r} contains a {saved_model} model, not {config.model.name}"
        )


def write_run_files(config: TrainConfig, store) -> None:
    """Create the run directory with the configuration and the event store's figures."""
    run_dir = Path(config.run.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_yaml(run_dir / "config.yaml")
    store_figures = {"train_events": len(store.train), "val_events": len(store.val), **store.stats.to_dict()}
    (run_dir / "store.json").write_text(json.dumps(store_figures, indent=2, default=_json_default))


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _is_plain(value) -> bool:
    return isinstance(value, int | float | str | bool) or value is None
