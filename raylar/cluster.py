"""Start or join the Ray cluster that raylar's jobs run on."""

import os

import ray

from raylar.log import get_logger
from raylar.runtime import worker_runtime_env

logger = get_logger(__name__)


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    **options,
) -> dict:
    """Connect to the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one.

    Workers get RAY_TRAIN_V2_ENABLED=0 through the runtime environment. Returns
    the cluster's resources. Calling it again while Ray is running only returns them.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    init_options = {"runtime_env": worker_runtime_env(), "include_dashboard": False, **options}
    if address == "local":
        running = running_cluster_address()
        if running is not None:
            logger.warning(
                "a Ray cluster started with `ray start` is running on this machine at %s, but "
                "raylar starts a separate one-node cluster because the address is 'local'. "
                "Pass --address auto or set RAY_ADDRESS=auto to run on the running cluster",
                running,
            )
        init_options.update(num_cpus=num_cpus, object_store_memory=object_store_memory)
    ray.init(address=address, **init_options)
    resources = ray.cluster_resources()
    logger.info(
        "Ray cluster at %s: %g CPUs, %g GPUs, %.1f GB object store",
        address,
        resources.get("CPU", 0),
        resources.get("GPU", 0),
        resources.get("object_store_memory", 0) / 1e9,
    )
    return resources


def running_cluster_address() -> str | None:
    """Return the address of a live cluster that `ray start` began on this machine, else None.

    Ray records the last `ray start` in its temporary folder. The address
    counts only while a GCS server process still serves it.
    """
    # NOTE: uses Ray's private helpers (ray 2.60), so any error there means "none found".
    try:
        from ray._private import services, utils

        address = utils.read_ray_address(None)
        if address and address in services.find_gcs_addresses():
            return address
    except Exception:  # noqa: BLE001 - only a hint for the user
        return None
    return None
