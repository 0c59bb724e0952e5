"""``train_loop_per_worker``: what every Ray Train worker runs, for both backends.

The loop reads like single-process training. The distributed parts are the
collective (Horovod or torch.distributed, ``raylar.train.collective``), the
sampler's per-rank shard, and rank 0's reports, checkpoints and plots.
"""

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from raylar.geometry import CLASS_NAMES, image_size
from raylar.log import get_logger
from raylar.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from raylar.train.collective import horovod_cycle_time, start_collective, unwrap
from raylar.train.config import TrainConfig
from raylar.train.evaluation import audit_epoch, expected_epoch_ids, scale_inputs, validate
from raylar.train.metrics import RunningWindow, WorkerLog, record_attempt, worker_csv_path
from raylar.train.optim import LearningRateSchedule, build_optimizer

logger = get_logger(__name__)

STORE_KEY = "_store"
STATE_KEYS = ("epoch", "next_batch", "step", "elapsed_s", "session_start_s", "time_to_target_s", "history",
              "audits", "audit_records")


def train_loop_per_worker(config_dict: dict) -> None:
    """Train the configured model on this worker's shards; rank 0 reports, checkpoints and plots."""
    from ray import train

    from raylar.data import EpochSampler, UniquenessAudit
    from raylar.models import build_model

    config = TrainConfig.from_dict(config_dict)
    store = config_dict[STORE_KEY]
    started = time.perf_counter()
    if not config.run.output:
        # A Tune trial that set no output directory writes into its own trial folder.
        config.run.output = train.get_context().get_trial_dir()
    run_dir = Path(config.run.output)

    collective = start_collective(
        config.backend.name,
        horovod_cycle_time(config.backend.horovod_cycle_time_ms, bool(config.backend.use_gpu)),
    )
    rank, world_size = collective.rank, collective.world_size
    if config.backend.name == "horovod":
        # Record the cycle time in effect, so metrics.json shows it.
        config.backend.horovod_cycle_time_ms = collective.cycle_time_ms
    device = select_device(config, collective)
    attempt = record_attempt(run_dir, rank)
    torch.manual_seed(config.run.seed)

    # Recorded in metrics.json with the rest of the configuration.
    config.model.options = config.model.options_for(device.type)
    model = build_model(config.model.name, image_size(config.data.downsample), **config.model.options)
    model = model.to(device)
    input_kind = model.input_kind
    optimizer = build_optimizer(model, config.optimizer)
    state = restore_state(config, train.get_checkpoint())
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    model, optimizer = collective.wrap(model, optimizer)

    def make_sampler(worker_rank: int):
        return EpochSampler(len(store.train), world_size, worker_rank, config.run.batch_size, config.data.seed)

    sampler = make_sampler(rank)
    schedule = LearningRateSchedule(config.optimizer, world_size, sampler.batches_per_epoch)
    progress = Progress.from_state(state, config)
    elapsed_before = progress.elapsed_s
    if state is not None and train.get_checkpoint() is None:
        # --resume starts a new session, which gets the whole budget again.
        progress.session_start_s = progress.elapsed_s
    csv_log = WorkerLog(worker_csv_path(run_dir, rank))
    window = RunningWindow(config.run.running_window)
    if rank == 0:
        side = image_size(config.data.downsample)
        stats = store.stats
        logger.info(
            "training %s with %s on %d worker(s), device %s, attempt %d; batch %d per worker, %d global; "
            "image %d x %d; %d training and %d validation events, codec %s, %.1f MB compressed (ratio %.0f), "
            "DLT %.2f s; starting at epoch %d batch %d",
            config.model.name, collective.name, world_size, device, attempt, config.run.batch_size,
            config.run.batch_size * world_size, side, side, len(store.train), len(store.val), config.data.codec,
            stats.compressed_bytes / 1e6, stats.ratio, stats.dlt_s, progress.epoch, progress.next_batch,
        )
        if collective.name == "horovod":
            logger.info("Horovod negotiates every %g ms (HOROVOD_CYCLE_TIME)", collective.cycle_time_ms)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    stopped_by_budget = False
    epochs_this_attempt = 0
    last_validation_s = None
    last_report = time.perf_counter()
    while progress.epoch < config.run.epochs and not stopped_by_budget:
        epoch = progress.epoch
        audit = UniquenessAudit(rank) if config.data.audit else None
        loader = make_loader(store.train, sampler.batches(epoch, start_batch=progress.next_batch),
                             input_kind, device, config.data.prefetch, audit)
        model.train()
        batch_index = progress.next_batch
        step_started = time.perf_counter()
        for batch in loader:
            timing = {"data_wait_s": float(batch.wait_s)}
            lr = schedule.apply(optimizer, progress.step)
            labels = torch.as_tensor(batch.labels, dtype=torch.long, device=device)

            mark = time.perf_counter()
            logits = model(scale_inputs(batch.inputs, config.data.adc_scale))
            loss = F.cross_entropy(logits, labels)
            local_loss = loss.item()
            local_accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
            # The budget is near when the rest of this step, one more step, a validation and a
            # checkpoint may not fit.
            margin = estimate_stop_margin(window, last_validation_s, len(store.val), world_size, config)
            budget_near = elapsed() - progress.session_start_s + margin >= config.run.budget_s
            # Start the average now, so Horovod negotiates it in the same cycles as the
            # gradients rather than in a cycle of its own after the step.
            finish_averages = collective.start_allreduce_mean(
                torch.tensor([local_loss, local_accuracy, float(budget_near)], dtype=torch.float64), name="batch"
            )
            timing["forward_s"] = time.perf_counter() - mark

            mark = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            timing["backward_s"] = time.perf_counter() - mark

            mark = time.perf_counter()
            synchronize_gradients(optimizer)
            gradient_sync_s = time.perf_counter() - mark

            mark = time.perf_counter()
            step_optimizer(optimizer)
            timing["optimizer_s"] = time.perf_counter() - mark

            mark = time.perf_counter()
            averaged = finish_averages().tolist()
            timing["allreduce_s"] = gradient_sync_s + time.perf_counter() - mark
            global_loss, global_accuracy, stop_vote = averaged

            now = time.perf_counter()
            timing["step_s"] = now - step_started
            step_started = now
            batch_size = int(labels.shape[0])
            row = {
                "attempt": attempt, "epoch": epoch, "batch": batch_index, "step": progress.step,
                "time_s": elapsed(), "batch_size": batch_size, "loss": local_loss, "accuracy": local_accuracy,
                "global_loss": global_loss, "global_accuracy": global_accuracy, "lr": lr,
                "images_per_s": batch_size / timing["step_s"], **timing,
            }
            csv_log.write(row)
            window.add(loss=global_loss, accuracy=global_accuracy, images=batch_size * world_size, **timing)
            progress.record_loss(window, config, elapsed())

            progress.step += 1
            batch_index += 1
            stopped_by_budget = stop_vote > 0
            if progress.step % config.run.report_every == 0 and not stopped_by_budget:
                interval = time.perf_counter() - last_report
                last_report = time.perf_counter()
                train.report(progress.step_metrics(global_loss, global_accuracy, window, interval, elapsed(), epoch))
            if stopped_by_budget:
                break
        loader_close(loader)

        epoch_finished = not stopped_by_budget or batch_index >= sampler.batches_per_epoch
        records = collective.allgather_object(audit.records() if audit else [])
        epoch_records = progress.audit_records + [record for worker in records for record in worker]
        if epoch_finished:
            if audit is not None:
                summary = audit_epoch(epoch_records, expected_epoch_ids(store.train, make_sampler, world_size, epoch), epoch)
                summary["attempt"] = attempt
                progress.audits.append(summary)
            progress.epoch, progress.next_batch, progress.audit_records = epoch + 1, 0, []
        else:
            progress.next_batch, progress.audit_records = batch_index, epoch_records

        validation = validate(unwrap(model), store.val, collective, 2 * config.run.batch_size, device,
                              config.data.prefetch, config.data.adc_scale)
        last_validation_s = validation["val_time_s"]
        progress.add_epoch(epoch, validation, elapsed(), epoch_finished)
        if stopped_by_budget:
            status = "budget reached"
        elif progress.epoch >= config.run.epochs:
            status = "completed"
        else:
            status = "running"
        finish_epoch(config, collective, model, optimizer, progress, validation, window, elapsed(), status, store)
        epochs_this_attempt += 1
    if epochs_this_attempt == 0:
        # A resumed run that had already finished: report its state once more.
        train.report({"status": "completed", "epoch": progress.epoch, "step": progress.step, "elapsed_s": elapsed()})
    csv_log.close()


class Progress:
    """Position of the run (epoch, next batch, step) and the figures measured so far."""

    def __init__(self):
        self.epoch = 0
        self.next_batch = 0
        self.step = 0
        self.elapsed_s = 0.0
        self.session_start_s = 0.0  # elapsed_s when this session (the first start or --resume) began
        self.time_to_target_s = None
        self.history = []  # one dict per validation
        self.audits = []  # one summary per finished epoch
        self.audit_records = []  # audit records of the unfinished epoch, all workers

    @classmethod
    def from_state(cls, state: dict | None, config: TrainConfig) -> "Progress":
        progress = cls()
        if state is not None:
            for key in STATE_KEYS:
                setattr(progress, key, state[key])
        return progress

    def to_state(self) -> dict:
        return {key: getattr(self, key) for key in STATE_KEYS}

    def record_loss(self, window: RunningWindow, config: TrainConfig, elapsed_s: float) -> None:
        """Record the time to target the first time the running loss over a full window reaches it."""
        if self.time_to_target_s is None and len(window) >= config.run.running_window:
            if window.mean("loss") <= config.run.target_loss:
                self.time_to_target_s = elapsed_s
                logger.info("running loss %.4f reached the target %.4f after %.1f s",
                            window.mean("loss"), config.run.target_loss, elapsed_s)

    def step_metrics(self, loss, accuracy, window, interval_s, elapsed_s, epoch) -> dict:
        step_time = window.total("step_s")
        return {
            "loss": loss,
            "accuracy": accuracy,
            "running_loss": window.mean("loss"),
            "throughput": window.total("images") / step_time if step_time else math.nan,
            "data_wait_fraction": window.total("data_wait_s") / step_time if step_time else math.nan,
            "allreduce_fraction": window.total("allreduce_s") / step_time if step_time else math.nan,
            "elapsed_s": elapsed_s,
            "epoch": epoch,
            "step": self.step,
            "time_to_target_s": self.time_to_target_s if self.time_to_target_s is not None else math.nan,
            "status": "running",
        }

    def add_epoch(self, epoch: int, validation: dict, elapsed_s: float, finished: bool) -> None:
        entry = {"epoch": epoch, "epoch_finished": finished, "step": self.step, "elapsed_s": elapsed_s}
        entry.update(validation)
        self.history.append(entry)


def finish_epoch(config, collective, model, optimizer, progress, validation, window, elapsed_s, status, store) -> None:
    """Checkpoint (rank 0), write metrics.json and plots (rank 0), and report the epoch to Ray (all ranks)."""
    from ray import train
    from ray.train import Checkpoint

    run_dir = Path(config.run.output)
    progress.elapsed_s = elapsed_s
    checkpoint = None
    if collective.rank == 0:
        state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "config": config.to_dict(), "world_size": collective.world_size, **progress.to_state()}
        folder = save_checkpoint(run_dir, state)
        checkpoint = Checkpoint.from_directory(str(folder))
        write_run_summary(config, collective, progress, validation, status, store)
        if status != "running":
            from raylar.train.plots import plot_run

            plot_run(run_dir)
    collective.barrier()

    metrics = progress.step_metrics(math.nan, math.nan, window, 0.0, elapsed_s, progress.history[-1]["epoch"])
    metrics.update({key: validation[key] for key in ("val_loss", "val_accuracy", "val_accuracy_err", "val_events")})
    for name, accuracy in zip(CLASS_NAMES, validation["val_per_class_accuracy"], strict=True):
        metrics[f"val_accuracy_{name}"] = accuracy
    metrics["status"] = status
    metrics["loss"] = window.mean("loss")
    # Training accuracy over the running window; validation accuracy is val_accuracy.
    metrics["accuracy"] = window.mean("accuracy")
    if collective.rank == 0:
        logger.info("epoch %d: val loss %.4f, val accuracy %.4f +- %.4f on %d events, %.1f s elapsed, %s",
                    metrics["epoch"], metrics["val_loss"], metrics["val_accuracy"], metrics["val_accuracy_err"],
                    metrics["val_events"], elapsed_s, status)
    train.report(metrics, checkpoint=checkpoint)


def write_run_summary(config, collective, progress, validation, status, store) -> None:
    """Write ``metrics.json``: the configuration, every validation, the audits and the final figures."""
    store_stats = store.stats.to_dict()
    summary = {
        "status": status,
        "backend": collective.name,
        "world_size": collective.world_size,
        "epochs_finished": progress.epoch,
        "steps": progress.step,
        "elapsed_s": progress.elapsed_s,
        "time_to_target_s": progress.time_to_target_s,
        "target_loss": config.run.target_loss,
        "val_loss": validation["val_loss"],
        "val_accuracy": validation["val_accuracy"],
        "val_accuracy_err": validation["val_accuracy_err"],
        "val_events": validation["val_events"],
        "val_per_class_accuracy": dict(zip(CLASS_NAMES, validation["val_per_class_accuracy"], strict=True)),
        "val_confusion_percent": validation["val_confusion_percent"],
        "val_confusion_counts": validation["val_confusion_counts"],
        "history": progress.history,
        "audits": progress.audits,
        "store": store_stats,
        "config": config.to_dict(),
    }
    path = Path(config.run.output) / "metrics.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(summary, indent=2, default=float))
    partial.replace(path)


def restore_state(config: TrainConfig, ray_checkpoint) -> dict | None:
    """Return the state to continue from: Ray's checkpoint after a failure, else ``--resume``'s, else None."""
    if ray_checkpoint is not None:
        with ray_checkpoint.as_directory() as folder:
            return load_checkpoint(folder)
    if config.run.resume:
        return load_checkpoint(find_checkpoint(config.run.resume))
    return None


def select_device(config: TrainConfig, collective) -> torch.device:
    """Use this worker's GPU when the job has GPUs, else CPU threads sized to the worker's CPUs."""
    if config.backend.use_gpu and torch.cuda.is_available():
        from ray.train.torch import get_device

        device = get_device()
        torch.cuda.set_device(device)
        return device
    threads = max(1, int(config.backend.cpus_per_worker or os.cpu_count() or 1))
    torch.set_num_threads(threads)
    return torch.device("cpu")


def make_loader(split, batches, input_kind, device, prefetch, audit):
    from raylar.data import BatchLoader

    return BatchLoader(split, batches, output=input_kind, device=device, prefetch=prefetch, audit=audit)


def loader_close(loader) -> None:
    close = getattr(loader, "close", None)
    if close is not None:
        close()


def synchronize_gradients(optimizer) -> None:
    """Wait for Horovod's gradient allreduce; DDP already averaged them during backward."""
    synchronize = getattr(optimizer, "synchronize", None)
    if synchronize is not None:
        synchronize()


def step_optimizer(optimizer) -> None:
    skip = getattr(optimizer, "skip_synchronize", None)
    if skip is None:
        optimizer.step()
        return
    with skip():
        optimizer.step()


def estimate_stop_margin(window, last_validation_s, num_val_events, world_size, config) -> float:
    """Estimate the seconds needed after a forward pass to finish the step, run one more, validate and checkpoint.

    Before the first validation its time is estimated as the training forward
    time per event times the validation events per worker. A no-grad forward
    costs less, and the difference roughly pays for loading the batches.
    """
    if not len(window):
        return 0.0
    step_s = window.mean("step_s")
    if last_validation_s is None:
        per_event = window.mean("forward_s") / max(config.run.batch_size, 1)
        last_validation_s = per_event * num_val_events / world_size
    checkpoint_s = 1.0
    # The rest of this step and one more step take at most two steps.
    return 2 * step_s + last_validation_s + checkpoint_s
