"""Checkpoints: model, optimizer, sampler position and metrics, in the run directory and in Ray.

Rank 0 writes ``<run dir>/checkpoints/epochEEEE-batchBBBB/state.pt`` (via a
temporary folder and a rename, so a killed writer leaves no half checkpoint)
and points ``checkpoints/latest`` at it. The same folder is reported to Ray
Train, which restores it after a worker failure (``ray.train.get_checkpoint()``);
``--resume DIR`` reads the run directory's ``latest``.
"""

import shutil
from pathlib import Path

import torch

STATE_FILE = "state.pt"


class CheckpointNotFoundError(FileNotFoundError):
    """A resume directory without a checkpoint."""


def checkpoint_name(epoch: int, next_batch: int) -> str:
    return f"epoch{epoch:04d}-batch{next_batch:04d}"


def save_checkpoint(run_dir: str | Path, state: dict) -> Path:
    """Write ``state`` as the run's newest checkpoint and return its folder.

    ``state`` contains at least ``epoch`` and ``next_batch``: the epoch to
    continue and the first batch of it not yet trained.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(state["epoch"], state["next_batch"])
    partial = root / (final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    torch.save(state, partial / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    latest = root / "latest"
    latest_partial = root / "latest.partial"
    latest_partial.write_text(final.name + "\n")
    latest_partial.replace(latest)
    return final


def find_checkpoint(run_dir: str | Path) -> Path:
    """Return the newest checkpoint folder of a run directory, or raise ``CheckpointNotFoundError``."""
    root = Path(run_dir) / "checkpoints"
    latest = root / "latest"
    if latest.is_file():
        folder = root / latest.read_text().strip()
        if (folder / STATE_FILE).is_file():
            return folder
    raise CheckpointNotFoundError(
        f"no checkpoint in {str(run_dir)!r} (expected {str(latest)!r} naming a folder with {STATE_FILE}); "
        "give the run directory of a run that finished at least one epoch or stopped at its budget"
    )


def load_checkpoint(folder: str | Path) -> dict:
    """Read the state saved by ``save_checkpoint`` from a checkpoint folder."""
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
