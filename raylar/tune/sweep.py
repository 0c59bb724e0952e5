"""The sweep: a Ray Tune ``Tuner`` over raylar's trainer, tracked in MLflow, resumable.

``prepare_sweep`` does every check that can fail (files, parameter names,
training config, tracking store, cluster resources) before ``run_sweep``
starts any trial.
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from raylar.log import get_logger
from raylar.tracking import (
    SWEEP_TAG,
    MLflowTrialTracker,
    check_tracking_store,
    git_commit,
    resolve_tracking_uri,
    software_versions,
)
from raylar.train.config import ConfigError, TrainConfig
from raylar.train.resources import ResourceRequestError, WorkerResources, plan_workers
from raylar.tune.profiles import Profile, SweepSettings, find_yaml, training_fields
from raylar.tune.space import SearchSpace, SearchSpaceError, load_search_space

logger = get_logger(__name__)

MANIFEST = "raylar_sweep.json"
# Columns of the progress table, besides the searched parameters.
PROGRESS_METRICS = ["epoch", "elapsed_s", "loss", "accuracy", "val_loss", "val_accuracy", "status"]


@dataclass
class SweepPlan:
    """Everything a sweep needs, checked: what to search, how, on which resources, tracked where."""

    name: str
    profile: Profile
    settings: SweepSettings
    space: SearchSpace
    base_config: dict
    output: Path
    tracking_uri: str
    resources: WorkerResources
    concurrent_trials: int
    store: object = None

    @property
    def storage_path(self) -> Path:
        """Folder that contains Ray Tune's experiment folder (``storage_path/name``)."""
        return self.output / "ray"

    @property
    def experiment_path(self) -> Path:
        """Ray Tune's experiment folder: what ``--resume`` takes."""
        return self.storage_path / self.name


def plan_concurrency(train: dict, settings: SweepSettings, total_trials: int) -> tuple[WorkerResources, int]:
    """Choose how many trials run at once and what each worker reserves.

    ``concurrent_trials`` 0 takes the most trials the cluster can place side by
    side (at most ``total_trials``). Raises ``ResourceRequestError`` when not
    even one trial fits.
    """
    backend = train["backend"]
    requested = settings.concurrent_trials or total_trials
    error = None
    for jobs in range(min(requested, total_trials), 0, -1):
        try:
            resources = plan_workers(
                backend["workers"],
                use_gpu=backend["use_gpu"],
                cpus_per_worker=backend["cpus_per_worker"],
                concurrent_jobs=jobs,
            )
        except ResourceRequestError as failure:
            if settings.concurrent_trials:
                raise
            error = failure
            continue
        return resources, jobs
    raise error


def check_sweep_inputs(profile: Profile, settings: SweepSettings, search_space: str | None):
    """Check the settings, the search space and every training config it yields, without Ray.

    Returns the search space and the base training config. The command line
    calls it before starting Ray, so bad input fails at once.
    """
    settings.validate("the command line")
    space_path = find_yaml(search_space or settings.search_space, "search space")
    space = load_search_space(space_path, training_fields())

    check_searchable(space)

    base = json.loads(json.dumps(profile.train))
    base["run"]["budget_s"] = settings.budget_s
    # Each trial writes its run directory into its own Tune trial folder.
    base["run"]["output"] = ""
    base["run"]["resume"] = None
    for config in candidate_configs(base, space):
        try:
            TrainConfig.from_dict(config).validate()
        except ConfigError as error:
            raise ConfigError(f"invalid training config from {profile.source} and {space.source}: {error}") from None
    return space, base


def prepare_sweep(
    profile: Profile,
    settings: SweepSettings,
    search_space: str | None,
    output: str | None,
    tracking_uri: str | None,
    name: str | None = None,
) -> SweepPlan:
    """Check every input of a sweep and size it to the running cluster; start nothing.

    Raises ``SearchSpaceError``, ``ConfigError``, ``TrackingError`` or
    ``ResourceRequestError`` with the file or value at fault.
    """
    space, base = check_sweep_inputs(profile, settings, search_space)

    output_dir = Path(output or Path("outputs") / profile.name).resolve()
    uri = resolve_tracking_uri(tracking_uri, output_dir)
    check_tracking_store(uri)

    total_trials = settings.num_samples * space.grid_size()
    resources, concurrent = plan_concurrency(base, settings, total_trials)
    base["backend"]["cpus_per_worker"] = resources.cpus_per_worker
    base["backend"]["use_gpu"] = resources.use_gpu

    sweep_name = name or f"{profile.name}-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    existing = output_dir / "ray" / sweep_name
    if (existing / MANIFEST).is_file():
        raise SearchSpaceError(
            f"a sweep named {sweep_name!r} already exists in {existing}; continue it with "
            f"--resume {existing}, or start a new one with another --name or --output"
        )
    store = load_events(base, space)
    return SweepPlan(sweep_name, profile, settings, space, base, output_dir, uri, resources, concurrent, store)


# Fields a search space may not vary: the events are loaded once per sweep and
# shared by its trials, the worker layout sizes the sweep's concurrency, and the
# run directory and resume path are set per trial by Tune.
FIXED_PER_SWEEP = ("data.", "backend.workers", "backend.use_gpu", "backend.cpus_per_worker", "run.output", "run.resume")


def check_searchable(space: SearchSpace) -> None:
    """Raise ``SearchSpaceError`` for a parameter that one sweep cannot vary."""
    for name in [p.name for p in space.parameters] + list(space.fixed):
        if any(name == fixed or (fixed.endswith(".") and name.startswith(fixed)) for fixed in FIXED_PER_SWEEP):
            raise SearchSpaceError(
                f"parameter {name!r} in {space.source} cannot vary within a sweep, because the events, "
                "the worker layout and the run folders are set once per sweep; set it in the profile's "
                "train section instead"
            )


def candidate_configs(base: dict, space: SearchSpace):
    """Yield the base config with each listed value (choice, grid) and each bound in turn."""
    from raylar.tune.space import set_dotted

    yield base
    for parameter in space.parameters:
        args = parameter.arguments
        values = args["values"] if "values" in args else [args["low"], args["high"]]
        for value in values:
            config = json.loads(json.dumps(base))
            for name, fixed in space.fixed.items():
                set_dotted(config, name, fixed)
            set_dotted(config, parameter.name, value)
            yield config


def largest_batch_config(base: dict, space: SearchSpace) -> dict:
    """Return the base config with the largest batch size the sweep may try."""
    config = json.loads(json.dumps(base))
    sizes = [config["run"]["batch_size"]]
    for parameter in space.parameters:
        if parameter.name == "run.batch_size":
            args = parameter.arguments
            sizes += list(args["values"]) if "values" in args else [args["high"]]
    if "run.batch_size" in space.fixed:
        sizes.append(space.fixed["run.batch_size"])
    config["run"]["batch_size"] = max(sizes)
    return config


def load_events(base: dict, space: SearchSpace):
    """Load the sweep's events once into Ray's object store, checked against the largest batch size."""
    from raylar.train.backends import check_store, load_store

    config = TrainConfig.from_dict(base)
    store = load_store(config)
    check_store(TrainConfig.from_dict(largest_batch_config(base, space)), store)
    return store


def describe_trial(config: dict) -> dict:
    """Return the MLflow tags that depend on one trial's training config."""
    from raylar.geometry import image_size

    downsample = config["data"]["downsample"]
    return {
        "model": config["model"]["name"],
        "backend": config["backend"]["name"],
        "world_size": config["backend"]["workers"],
        "image_size": f"{image_size(downsample)}x{image_size(downsample)}",
        "downsample": downsample,
        "codec": config["data"]["codec"],
        "optimizer": config["optimizer"]["name"],
    }


def trial_run_directory(trial, result: dict) -> Path | None:
    """Return the run directory the trainer wrote for ``trial``, if it can be found on this node.

    Rank 0 writes into its Tune trial folder, which Ray stages on the driver's
    node and copies to the sweep's storage path.
    """
    # NOTE: on a multi-node cluster this finds the files only when rank 0 ran on the
    # driver's node or the storage path is a shared file system, as on HPC machines.
    for folder in (trial.local_path, trial.path):
        if folder and (Path(folder) / "metrics.json").is_file():
            return Path(folder)
    return Path(trial.local_path) if trial.local_path else None


def make_tracker(plan: SweepPlan) -> MLflowTrialTracker:
    sweep_tags = {
        SWEEP_TAG: plan.name,
        "raylar.profile": plan.profile.name,
        "raylar.search_space": plan.space.name,
        "git_commit": git_commit(),
        **software_versions(),
    }
    artifact_location = None
    if plan.tracking_uri.startswith("sqlite:///"):
        # Without it MLflow puts artifacts of a SQLite store in ./mlruns of the current directory.
        artifact_location = (plan.output / "mlartifacts").as_uri()
    return MLflowTrialTracker(
        plan.tracking_uri, plan.name, sweep_tags, describe_trial, trial_run_directory, artifact_location
    )


def make_scheduler(settings: SweepSettings):
    """Return the trial scheduler: ASHA or HyperBand on elapsed training time, or None."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    # The trainer stops itself at its budget with a checkpoint, so the scheduler's
    # own time limit sits above the budget and never cuts that final step short.
    max_t = settings.budget_s * 1.5
    if settings.scheduler == "asha":
        return ASHAScheduler(
            time_attr="elapsed_s",
            max_t=max_t,
            grace_period=min(settings.grace_period_s, settings.budget_s),
            reduction_factor=settings.reduction_factor,
        )
    if settings.scheduler == "hyperband":
        # NOTE: pausing a trial and continuing it from its checkpoint under HyperBand has not been exercised.
        return HyperBandScheduler(time_attr="elapsed_s", max_t=max_t, reduction_factor=settings.reduction_factor)
    return None


def write_manifest(plan: SweepPlan) -> None:
    plan.experiment_path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": plan.name,
        "profile": asdict(plan.profile),
        "settings": asdict(plan.settings),
        "search_space": plan.space.source,
        "base_config": plan.base_config,
        "output": str(plan.output),
        "tracking_uri": plan.tracking_uri,
        "concurrent_trials": plan.concurrent_trials,
    }
    (plan.experiment_path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))


def find_sweep_folder(path: str | Path) -> Path:
    """Return the sweep folder for ``--resume PATH``: PATH itself, or the one sweep under PATH/ray.

    ``PATH`` may be Ray Tune's experiment folder (``OUTPUT/ray/NAME``) or the
    sweep's ``--output`` folder when it contains exactly one sweep.
    """
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    sweeps = sorted(manifest.parent for manifest in (path / "ray").glob(f"*/{MANIFEST}"))
    if len(sweeps) == 1:
        return sweeps[0]
    if sweeps:
        raise SearchSpaceError(
            f"{path} contains {len(sweeps)} sweeps; pass one of them to --resume: "
            + ", ".join(str(sweep) for sweep in sweeps)
        )
    raise SearchSpaceError(
        f"{path} is not a raylar sweep folder: {MANIFEST} not found there or in {path / 'ray'}/*; give "
        "the sweep's --output folder or the folder the sweep printed at its start (OUTPUT/ray/NAME)"
    )


def read_manifest(path: str | Path) -> dict:
    """Read the manifest of a sweep folder (see ``find_sweep_folder``)."""
    return json.loads((find_sweep_folder(path) / MANIFEST).read_text())


def build_trainer(plan: SweepPlan):
    from raylar.train.backends import make_trainer

    return make_trainer(TrainConfig.from_dict(plan.base_config), store=plan.store)


def _progress_reporter(plan: SweepPlan):
    from ray.tune import CLIReporter

    parameters = {f"train_loop_config/{p.name.replace('.', '/')}": p.name for p in plan.space.parameters}
    return CLIReporter(
        metric_columns=PROGRESS_METRICS,
        parameter_columns=parameters,
        max_report_frequency=30,
    )


def _tune_environment() -> None:
    # Validation metrics arrive once an epoch and step metrics in between, so a
    # result without the sweep's metric is normal here.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # The classic console output is the one that takes raylar's progress-table columns.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def run_sweep(plan: SweepPlan):
    """Run the planned sweep to its end and return Ray Tune's ``ResultGrid``."""
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig

    _tune_environment()
    write_manifest(plan)
    settings = plan.settings
    logger.info(
        "sweep %s: %d sample(s) x %d grid point(s) of %s, %d at a time, %s scheduler, "
        "per-trial budget %gs, sweep budget %s; resume with --resume %s",
        plan.name, settings.num_samples, plan.space.grid_size(), plan.space.source, plan.concurrent_trials,
        settings.scheduler, settings.budget_s,
        f"{settings.sweep_budget_s:g}s" if settings.sweep_budget_s else "none", plan.experiment_path,
    )  # fmt: skip
    for parameter in plan.space.parameters:
        logger.info("search: %s", parameter.describe())

    tuner = tune.Tuner(
        build_trainer(plan),
        param_space=plan.space.param_space(plan.base_config),
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            scheduler=make_scheduler(settings),
            max_concurrent_trials=plan.concurrent_trials,
            time_budget_s=settings.sweep_budget_s,
        ),
        run_config=RunConfig(
            name=plan.name,
            storage_path=str(plan.storage_path),
            callbacks=[make_tracker(plan)],
            progress_reporter=_progress_reporter(plan),
            verbose=1,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=plan.base_config["backend"]["max_failures"]),
        ),
    )
    return tuner.fit()


def resume_sweep(path: str | Path, tracking_uri: str | None = None):
    """Continue an interrupted sweep from its experiment folder; return Ray Tune's ``ResultGrid``.

    Finished trials are kept; unfinished and failed ones continue from their
    latest checkpoints.
    """
    from ray import tune

    path = find_sweep_folder(path).resolve()
    manifest = read_manifest(path)
    uri = manifest["tracking_uri"]
    if tracking_uri and tracking_uri != uri:
        # NOTE: the tracking callback was saved with the sweep, so it keeps logging to the original store.
        logger.warning("resumed sweep %s keeps its tracking store %s, not %s", path, uri, tracking_uri)
    check_tracking_store(uri)

    base = manifest["base_config"]
    _tune_environment()
    logger.info("resuming sweep %s from %s", manifest["name"], path)

    from raylar.train.backends import make_trainer

    trainer = make_trainer(TrainConfig.from_dict(base))
    tuner = tune.Tuner.restore(str(path), trainable=trainer, resume_unfinished=True, resume_errored=True)
    return tuner.fit(), manifest

