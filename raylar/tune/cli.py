"""Command line of ``python -m raylar.tune``: run, or resume, a Ray Tune sweep tracked in MLflow."""

import argparse
import math
import sys

from raylar.log import get_logger

logger = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.tune",
        description=(
            "Run a Ray Tune sweep of raylar's trainer, one MLflow run per trial. With no "
            "arguments it runs the quickstart profile (simulated events at 400 x 400 pixels, "
            "2 workers, about 10 minutes on 2 cores)."
        ),
    )
    parser.add_argument(
        "--profile", default="quickstart",
        help="run profile: quickstart, summitdev, or a YAML file (training config and sweep settings); default quickstart",
    )
    parser.add_argument(
        "--search-space", metavar="FILE",
        help="search-space YAML (a path, or a name in search_spaces/ such as adam or batch_size); default: the profile's",
    )
    parser.add_argument("--num-samples", type=int, metavar="N", help="samples drawn from the search space, each grid point run N times; default the profile's")
    parser.add_argument("--budget", metavar="DURATION", help="wall-clock budget of each trial, e.g. 4h, 90m, 60s or 1h30m; default the profile's (4h if unset)")
    parser.add_argument("--sweep-budget", metavar="DURATION", help="wall-clock budget of the whole sweep, same units as --budget; default the profile's (quickstart: 12m), else no limit")
    parser.add_argument("--scheduler", choices=["asha", "hyperband", "none"], help="early stopping on elapsed training time; default the profile's (asha if unset)")
    parser.add_argument("--metric", help="result metric the scheduler and the best trial are judged on; default the profile's (val_loss in both shipped ones)")
    parser.add_argument("--mode", choices=["min", "max"], help="whether a lower or a higher --metric is better; default the profile's (min)")
    parser.add_argument("--concurrent-trials", type=int, metavar="N", help="trials run at once, 0 meaning as many as the cluster can place; default the profile's (0 if unset)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///OUTPUT/mlflow.db")
    parser.add_argument("--output", metavar="DIR", help="sweep output folder (Ray Tune results, default MLflow store); default outputs/PROFILE")
    parser.add_argument("--name", help="sweep name, which is also the MLflow experiment name; default PROFILE-SPACE-DATE-TIME")
    parser.add_argument("--address", help="Ray cluster address to join; default $RAY_ADDRESS, else a new local cluster")
    parser.add_argument("--object-store-gb", type=float, metavar="GB", help="object store size of a new local Ray cluster, in GB; default Ray's (30%% of memory)")
    parser.add_argument("--resume", metavar="PATH", help="continue the interrupted sweep in PATH: its --output folder, or OUTPUT/ray/NAME as printed at its start")
    return parser  # fmt: skip


def summarize(results, metric: str, mode: str) -> dict | None:
    """Log the end state of a sweep and return the best trial's summary (None if no trial reported the metric)."""
    errors = [result for result in results if result.error is not None]
    logger.info("sweep finished: %d trial(s), %d failed", len(results), len(errors))
    for result in errors:
        logger.error("trial at %s failed: %s", result.path, result.error)
    try:
        best = results.get_best_result(metric=metric, mode=mode, scope="all", filter_nan_and_inf=True)
    except RuntimeError as error:
        logger.error("no best trial: %s", error)
        return None
    if best.metrics is None or not isinstance(best.metrics.get(metric), (int, float)):
        logger.error("no best trial: no trial reported %s", metric)
        return None
    best_value = best.metrics_dataframe[metric].agg(mode) if best.metrics_dataframe is not None else best.metrics[metric]
    checkpoint = best.checkpoint.path if best.checkpoint else None
    return {
        "trial": best.path,
        "config": best.config.get("train_loop_config", best.config),
        "metrics": {key: best.metrics.get(key) for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_accuracy_err", "elapsed_s", "epoch", "status")},
        "best_" + metric: float(best_value),
        "checkpoint": checkpoint,
    }  # fmt: skip


def print_best(summary: dict, searched: list[str]) -> None:
    from raylar.tune.space import flatten

    config = flatten(summary["config"])
    print("\nBest trial:", summary["trial"])
    for name in searched:
        print(f"  {name} = {config.get(name)}")
    for key, value in summary.items():
        if key.startswith("best_"):
            print(f"  {key} = {value:.4g}")
    for key, value in summary["metrics"].items():
        if isinstance(value, float) and math.isfinite(value):
            print(f"  {key} = {value:.4g}")
        elif value is not None:
            print(f"  {key} = {value}")
    print("  checkpoint:", summary["checkpoint"] or "none")


def _bytes(gigabytes: float | None) -> int | None:
    return int(gigabytes * 1024**3) if gigabytes else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import raylar  # noqa: F401 - selects Ray Train V1
    from raylar.cluster import start_ray
    from raylar.tracking import TrackingError
    from raylar.train.config import ConfigError, parse_duration
    from raylar.train.resources import ResourceRequestError
    from raylar.tune.profiles import load_profile, with_overrides
    from raylar.tune.space import SearchSpaceError
    from raylar.tune.sweep import (
        check_sweep_inputs,
        prepare_sweep,
        read_manifest,
        resume_sweep,
        run_sweep,
    )

    input_errors = (SearchSpaceError, ConfigError, TrackingError, ResourceRequestError)
    try:
        if args.resume:
            read_manifest(args.resume)
            start_ray(address=args.address, object_store_memory=_bytes(args.object_store_gb))
            results, manifest = resume_sweep(args.resume, args.tracking_uri)
            settings, searched = manifest["settings"], None
            metric, mode = settings["metric"], settings["mode"]
        else:
            profile = load_profile(args.profile)
            settings = with_overrides(
                profile.sweep,
                num_samples=args.num_samples,
                budget_s=parse_duration(args.budget) if args.budget else None,
                sweep_budget_s=parse_duration(args.sweep_budget) if args.sweep_budget else None,
                scheduler=args.scheduler,
                metric=args.metric,
                mode=args.mode,
                concurrent_trials=args.concurrent_trials,
            )
            check_sweep_inputs(profile, settings, args.search_space)
            start_ray(address=args.address, object_store_memory=_bytes(args.object_store_gb))
            plan = prepare_sweep(profile, settings, args.search_space, args.output, args.tracking_uri, args.name)
            results = run_sweep(plan)
            metric, mode = settings.metric, settings.mode
            searched = [parameter.name for parameter in plan.space.parameters]
    except input_errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    summary = summarize(results, metric, mode)
    if summary is None:
        return 1
    if searched is None:
        from raylar.tune.profiles import training_fields
        from raylar.tune.space import load_search_space

        searched = [p.name for p in load_search_space(manifest["search_space"], training_fields()).parameters]
    print_best(summary, searched)
    return 0
