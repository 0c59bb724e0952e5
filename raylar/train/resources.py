"""Size Ray Train's scaling configuration from what the cluster actually has."""

from dataclasses import dataclass

import ray

from raylar.log import get_logger

logger = get_logger(__name__)


class ResourceRequestError(ValueError):
    """A request for workers that the cluster can never place."""


@dataclass(frozen=True)
class WorkerResources:
    """What each training worker reserves, and how many workers there are."""

    num_workers: int
    use_gpu: bool
    cpus_per_worker: float

    def scaling_config(self):
        """Return the ``ScalingConfig`` for these workers.

        The trainer's coordinating actor reserves no CPU: it only waits on the
        workers, and the default of one CPU leaves a 2-CPU machine unable to
        place two workers, so the job waits forever.
        """
        from ray.train import ScalingConfig

        return ScalingConfig(
            num_workers=self.num_workers,
            use_gpu=self.use_gpu,
            resources_per_worker={"CPU": self.cpus_per_worker, **({"GPU": 1} if self.use_gpu else {})},
            trainer_resources={"CPU": 0},
        )


def plan_workers(
    num_workers: int,
    use_gpu: bool | None = None,
    cpus_per_worker: float | None = None,
    concurrent_jobs: int = 1,
) -> WorkerResources:
    """Choose per-worker resources for ``num_workers`` workers on the running Ray cluster.

    ``use_gpu`` defaults to whether the cluster has GPUs. ``cpus_per_worker``
    defaults to an equal share of the cluster's CPUs (at least one, and whole
    CPUs only). ``concurrent_jobs`` is how many such jobs must fit side by side,
    as in a Tune sweep. Raises ``ResourceRequestError``, naming the request and
    what the cluster has, when the workers could never all be placed at once.
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ResourceRequestError(f"invalid number of workers {num_workers!r}: it must be an integer of at least 1")
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running; call ray.init() (or raylar's start_ray()) first")

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = [node["Resources"].get("CPU", 0.0) for node in nodes]
    node_gpus = [node["Resources"].get("GPU", 0.0) for node in nodes]
    total_cpus, total_gpus = sum(node_cpus), sum(node_gpus)
    if use_gpu is None:
        use_gpu = total_gpus >= 1
    workers_needed = num_workers * concurrent_jobs
    cluster_text = f"the cluster has {total_cpus:g} CPUs and {total_gpus:g} GPUs on {len(nodes)} node(s)"

    if use_gpu:
        slots = sum(int(gpus) for gpus in node_gpus)
        if slots < workers_needed:
            raise ResourceRequestError(
                f"requested {workers_needed} GPU workers ({num_workers} per job x {concurrent_jobs} jobs), "
                f"but {cluster_text}; ask for at most {slots} workers or add GPU nodes"
            )
    if cpus_per_worker is None:
        cpus_per_worker = float(max(1, int(total_cpus // workers_needed))) if total_cpus else 1.0
    if cpus_per_worker <= 0:
        raise ResourceRequestError(f"invalid CPUs per worker {cpus_per_worker!r}: it must be positive")

    # Each worker lives on one node, so count the whole workers every node can hold.
    slots = sum(int(cpus // cpus_per_worker) for cpus in node_cpus)
    if slots < workers_needed:
        raise ResourceRequestError(
            f"requested {workers_needed} workers with {cpus_per_worker:g} CPU each "
            f"({num_workers} per job x {concurrent_jobs} jobs), but {cluster_text}, room for "
            f"{slots}; ask for at most {slots} workers, fewer CPUs per worker, or a larger cluster"
        )
    plan = WorkerResources(num_workers, bool(use_gpu), float(cpus_per_worker))
    logger.info(
        "workers: %d x (%g CPU%s), %s",
        num_workers,
        plan.cpus_per_worker,
        ", 1 GPU" if plan.use_gpu else "",
        cluster_text,
    )
    return plan
