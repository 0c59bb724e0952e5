"""Process-wide settings that must be in place before Ray Train is imported."""

import os
import sys

# Ray 2.60 defaults to Train V2, whose HorovodTrainer raises at construction.
# V1 still ships it and is chosen by this variable, read when ray.train is
# first imported. Ray workers inherit it through the runtime environment that
# worker_runtime_env() returns.
TRAIN_V2_VARIABLE = "RAY_TRAIN_V2_ENABLED"
# Ray then warns at every trainer and report call that V1 is deprecated. raylar
# chooses V1 on purpose (README, installation notes), so the warnings are off
# unless the environment already sets this variable.
MIGRATION_WARNINGS_VARIABLE = "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS"


def select_ray_train_v1() -> None:
    """Set RAY_TRAIN_V2_ENABLED=0, and fail if ray.train was already imported with V2 on."""
    current = os.environ.get(TRAIN_V2_VARIABLE)
    if "ray.train" in sys.modules and current not in (None, "0"):
        raise RuntimeError(
            f"ray.train was imported with {TRAIN_V2_VARIABLE}={current} before raylar; "
            "import raylar first or set RAY_TRAIN_V2_ENABLED=0 in the environment"
        )
    os.environ[TRAIN_V2_VARIABLE] = "0"
    os.environ.setdefault(MIGRATION_WARNINGS_VARIABLE, "0")


def worker_runtime_env() -> dict:
    """Return the Ray runtime environment every raylar cluster and job starts with."""
    return {
        "env_vars": {
            TRAIN_V2_VARIABLE: "0",
            MIGRATION_WARNINGS_VARIABLE: os.environ.get(MIGRATION_WARNINGS_VARIABLE, "0"),
        }
    }
