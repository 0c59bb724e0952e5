"""The few collective operations the training loop needs, for Horovod and for Torch DDP.

The loop calls only these methods, so it reads the same for both backends:
Horovod's ``DistributedOptimizer`` or DDP's gradient hooks average the
gradients, ``start_allreduce_mean`` averages the per-batch figures while the
backward pass runs, and ``allreduce_sum``/``allgather_object`` sum the
validation counts and gather the uniqueness audit.
"""

import os

import torch

from raylar.log import get_logger

logger = get_logger(__name__)

HOROVOD_CYCLE_VARIABLE = "HOROVOD_CYCLE_TIME"
# With one CPU core per worker, Horovod's background thread negotiating every
# 1 ms (its default) takes CPU time from the training thread. At batch 32, 2
# workers on 2 cores ran at 0.76 of twice one worker's rate with 1 ms and at
# 0.80 with 5 ms (benchmarks/bench_train.py, docs/benchmarks.md).
CPU_CYCLE_TIME_MS = 5.0


def horovod_cycle_time(configured: float | None, use_gpu: bool) -> float | None:
    """Return the cycle time in ms to set for Horovod, or None to leave Horovod's setting alone.

    An explicit configuration wins, then a ``HOROVOD_CYCLE_TIME`` already in
    the environment, then 5 ms for CPU-only workers.
    """
    if configured is not None:
        return float(configured)
    if os.environ.get(HOROVOD_CYCLE_VARIABLE) or use_gpu:
        return None
    return CPU_CYCLE_TIME_MS


class HorovodCollective:
    """Horovod (Gloo on CPU, NCCL on GPU when Horovod was built with it)."""

    name = "horovod"

    def __init__(self, cycle_time_ms: float | None = None):
        import horovod.torch as hvd

        if cycle_time_ms is not None:
            # read once by hvd.init(), when the background thread starts
            os.environ[HOROVOD_CYCLE_VARIABLE] = f"{cycle_time_ms:g}"
        hvd.init()
        self.cycle_time_ms = float(os.environ.get(HOROVOD_CYCLE_VARIABLE) or 1.0)
        self.hvd = hvd
        self.rank = hvd.rank()
        self.world_size = hvd.size()
        self.local_rank = hvd.local_rank()

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """Broadcast rank 0's weights and optimizer state, and average gradients from now on."""
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        return model, optimizer

    def start_allreduce_mean(self, values: torch.Tensor, name: str):
        """Start averaging ``values`` across workers; the returned function waits for the result."""
        handle = self.hvd.allreduce_async(values, op=self.hvd.Average, name=name)
        return lambda: self.hvd.synchronize(handle)

    def allreduce_sum(self, values: torch.Tensor, name: str) -> torch.Tensor:
        return self.hvd.allreduce(values, op=self.hvd.Sum, name=name)

    def allgather_object(self, value) -> list:
        return self.hvd.allgather_object(value)

    def barrier(self) -> None:
        self.hvd.allreduce(torch.zeros(1), name="barrier")


class TorchCollective:
    """``torch.distributed`` as Ray's ``TorchTrainer`` sets it up (Gloo on CPU, NCCL on GPU)."""

    name = "torch"

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        from ray import train

        self.local_rank = train.get_context().get_local_rank()

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """Wrap the model in DDP, which broadcasts rank 0's weights and averages gradients."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if torch.cuda.is_available() else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
        # DDP keeps the module's attributes on .module; the loop reads input_kind from it.
        wrapped.input_kind = getattr(model, "input_kind", "dense")
        return wrapped, optimizer

    def start_allreduce_mean(self, values: torch.Tensor, name: str):
        """Start averaging ``values`` across workers; the returned function waits for the result."""
        values = values.clone()
        work = self.dist.all_reduce(values, op=self.dist.ReduceOp.SUM, async_op=True)

        def finish() -> torch.Tensor:
            work.wait()
            return values / self.world_size

        return finish

    def allreduce_sum(self, values: torch.Tensor, name: str) -> torch.Tensor:
        values = values.clone()
        self.dist.all_reduce(values, op=self.dist.ReduceOp.SUM)
        return values

    def allgather_object(self, value) -> list:
        gathered = [None] * self.world_size
        self.dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        self.dist.barrier()


def start_collective(backend: str, horovod_cycle_time_ms: float | None = None):
    """Initialise the collective layer of ``backend`` inside a Ray Train worker.

    ``horovod_cycle_time_ms`` (Horovod only) is set as ``HOROVOD_CYCLE_TIME``
    before ``hvd.init()`` when it is not None.
    """
    if backend == "horovod":
        return HorovodCollective(horovod_cycle_time_ms)
    if backend == "torch":
        return TorchCollective()
    raise ValueError(f"unknown backend {backend!r}; expected 'horovod' or 'torch'")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Return the model inside a DDP wrapper, or the model itself."""
    return getattr(model, "module", model)
