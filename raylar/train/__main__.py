"""Command line: ``python -m raylar.train --simulate 600 --model jishnet --workers 2 --output runs/demo``."""

import argparse
import json
import sys
from pathlib import Path

import raylar  # noqa: F401 - selects Ray Train V1 before ray.train is imported
from raylar.log import get_logger
from raylar.train.checkpoint import CheckpointNotFoundError, find_checkpoint
from raylar.train.config import (
    BACKENDS,
    MODELS,
    OPTIMIZERS,
    ConfigError,
    TrainConfig,
    parse_duration,
)

logger = get_logger("raylar.train.__main__")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.train",
        description="Train JishNet or SCNet on LArTPC event images with Ray Train (Horovod or Torch DDP).",
    )
    parser.add_argument("--config", help="YAML configuration file; the options below override its values")
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--data", help="raylar HDF5 event file or larcv3 file to train on")
    source.add_argument("--simulate", type=int, help="simulate this many events into the run directory first")
    data.add_argument("--producer", help="larcv3 files: the sparse2d producer to read (inspect lists them)")
    data.add_argument("--projection", type=int, help="larcv3 files: the projection (plane) id to read (default 0)")
    data.add_argument(
        "--labels",
        help="larcv3 files: label file (.npy or text, one class 0-4 per line) or particle:PRODUCER; "
        "default the PDG codes of the sparse2d producer's particle group",
    )
    data.add_argument("--downsample", type=int, help="integer factor that shrinks the 3600 x 3600 image (default 9)")
    data.add_argument("--codec", choices=["sparse", "dense"], help="compression of events in the object store")
    data.add_argument("--val-fraction", type=float, help="fraction of events held out for validation (default 0.25)")
    data.add_argument("--adc-scale", type=float, help="factor applied to pixel values before the model (default 0.01)")
    data.add_argument("--data-seed", type=int, help="seed of the simulation, the split and the epoch shuffles")
    data.add_argument("--no-audit", action="store_true", help="skip the per-epoch uniqueness audit")
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=MODELS, help="network to train (default jishnet)")
    optimizer = parser.add_argument_group("optimizer")
    optimizer.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam")
    optimizer.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    optimizer.add_argument("--weight-decay", type=float, help="L2 weight decay (default 0.01)")
    optimizer.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    optimizer.add_argument("--warmup-epochs", type=float, help="epochs of linear learning-rate warm-up")
    run = parser.add_argument_group("run")
    run.add_argument("--epochs", type=int, help="number of epochs (default 3)")
    run.add_argument("--batch-size", type=int, help="events per batch on each worker (default 8)")
    run.add_argument("--budget", help="wall-clock budget such as 4h, 90m or 60s (default 4h)")
    run.add_argument("--target-loss", type=float, help="running loss whose first crossing is timed (default 1.2)")
    run.add_argument("--output", help="run directory for logs, checkpoints, metrics.json and plots")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    backend = parser.add_argument_group("backend")
    backend.add_argument("--backend", choices=BACKENDS, help="distributed backend (default horovod)")
    backend.add_argument("--workers", type=int, help="number of training workers (default 2)")
    backend.add_argument("--cpus-per-worker", type=float, help="CPUs each worker reserves (default: an equal share)")
    backend.add_argument("--max-failures", type=int, help="worker failures to recover from (default 1)")
    backend.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local cluster)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Return the configuration from ``--config`` (or the defaults) with the command-line values applied."""
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    if args.resume and not args.config:
        saved = Path(args.resume) / "config.yaml"
        if saved.is_file():
            config = TrainConfig.from_yaml(saved)
            config.run.resume = None
    overrides = {
        ("data", "path"): args.data,
        ("data", "producer"): args.producer,
        ("data", "projection"): args.projection,
        ("data", "labels"): args.labels,
        ("data", "simulate"): args.simulate,
        ("data", "downsample"): args.downsample,
        ("data", "codec"): args.codec,
        ("data", "val_fraction"): args.val_fraction,
        ("data", "seed"): args.data_seed,
        ("data", "adc_scale"): args.adc_scale,
        ("model", "name"): args.model,
        ("optimizer", "name"): args.optimizer,
        ("optimizer", "lr"): args.lr,
        ("optimizer", "weight_decay"): args.weight_decay,
        ("optimizer", "momentum"): args.momentum,
        ("optimizer", "warmup_epochs"): args.warmup_epochs,
        ("run", "epochs"): args.epochs,
        ("run", "batch_size"): args.batch_size,
        ("run", "budget_s"): parse_duration(args.budget) if args.budget is not None else None,
        ("run", "target_loss"): args.target_loss,
        ("run", "output"): args.output,
        ("run", "resume"): args.resume,
        ("backend", "name"): args.backend,
        ("backend", "workers"): args.workers,
        ("backend", "cpus_per_worker"): args.cpus_per_worker,
        ("backend", "max_failures"): args.max_failures,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.data:
        config.data.simulate = 0
    if args.simulate:
        config.data.path = None
    if args.no_audit:
        config.data.audit = False
    if args.resume and args.output is None:
        config.run.output = args.resume
    return config


def simulate_to_file(config: TrainConfig) -> None:
    """Write ``config.data.simulate`` simulated events to ``<output>/events.h5`` and point the run at it."""
    from raylar.sim import SimConfig, simulate_event
    from raylar.sim.eventfile import EventFileWriter

    path = Path(config.run.output) / "events.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    sim_config = SimConfig(downsample=config.data.downsample)
    attrs = {"seed": config.data.seed, "sim_config": json.dumps(sim_config.to_dict())}
    logger.info("simulating %d events into %s", config.data.simulate, path)
    with EventFileWriter(str(path), attrs, overwrite=True) as writer:
        for index in range(config.data.simulate):
            writer.write(simulate_event(index, config.data.seed, sim_config))
    config.data.path = str(path)
    config.data.simulate = 0


def check_simulated_shard(config: TrainConfig) -> None:
    """Reject a batch larger than a worker's shard before simulating (the split is about this size)."""
    training_events = int(config.data.simulate * (1.0 - config.data.val_fraction))
    shard = training_events // config.backend.workers
    if config.run.batch_size > shard:
        raise ConfigError(
            f"batch size {config.run.batch_size} is larger than a worker's shard of about {shard} training "
            f"events ({config.data.simulate} simulated events, {config.data.val_fraction:g} held out, "
            f"{config.backend.workers} workers); use a smaller --batch-size or a larger --simulate"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if config.run.resume:
            find_checkpoint(config.run.resume)
        config.validate()
    except (ConfigError, CheckpointNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import ray

    from raylar.cluster import start_ray
    from raylar.data.sampler import InsufficientEventsError
    from raylar.data.sources import DataFormatError
    from raylar.data.validate import DataValidationError
    from raylar.train.backends import check_resume, run_training
    from raylar.train.resources import ResourceRequestError, plan_workers

    ray_was_running = ray.is_initialized()
    start_ray(address=args.address, object_store_memory=1024**3 if not args.address else None)
    try:
        # Check what can fail before spending time on the simulation.
        plan_workers(config.backend.workers, config.backend.use_gpu, config.backend.cpus_per_worker)
        check_resume(config)
        if config.data.simulate:
            check_simulated_shard(config)
            simulate_to_file(config)
        summary = run_training(config)
    except (
        ConfigError,
        ResourceRequestError,
        CheckpointNotFoundError,
        DataFormatError,
        DataValidationError,
        InsufficientEventsError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if not ray_was_running:
            ray.shutdown()
    print(
        f"{summary.get('status')}: val accuracy {summary.get('val_accuracy', float('nan')):.4f} "
        f"+- {summary.get('val_accuracy_err', float('nan')):.4f} on {summary.get('val_events')} events, "
        f"{summary.get('epochs_finished')} epoch(s), {summary.get('elapsed_s', float('nan')):.1f} s; "
        f"results in {config.run.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
