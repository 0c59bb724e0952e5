"""Optimizers and the learning-rate schedule (linear scaling by workers, linear warm-up)."""

import torch

from raylar.train.config import OptimizerConfig


def build_optimizer(model: torch.nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Return Adam or SGD over ``model``'s parameters, starting at the unscaled ``config.lr``."""
    if config.name == "adam":
        # Weight decay is torch's Adam L2 term added to the gradient, not AdamW's decoupled decay.
        return torch.optim.Adam(
            model.parameters(),
            lr=config.lr,
            betas=tuple(config.betas),
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    if config.name == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    raise ValueError(f"unknown optimizer {config.name!r}; expected 'adam' or 'sgd'")


class LearningRateSchedule:
    """Learning rate per step: ``lr`` ramps linearly to its scaled value over the warm-up.

    The peak rate is ``lr * world_size`` when scaling by workers is on, else
    ``lr``. During the first ``warmup_epochs`` epochs the rate rises linearly
    from ``lr`` to the peak, then stays there.
    """

    def __init__(self, config: OptimizerConfig, world_size: int, steps_per_epoch: int):
        is_sgd = config.name == "sgd"
        scale = config.scale_lr_by_workers if config.scale_lr_by_workers is not None else is_sgd
        warmup_epochs = config.warmup_epochs
        if warmup_epochs is None:
            warmup_epochs = 1.0 if is_sgd else 0.0
        self.base_lr = config.lr
        self.peak_lr = config.lr * (world_size if scale else 1)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def lr_at(self, step: int) -> float:
        """Return the learning rate for global step ``step`` (counted from 0)."""
        if self.warmup_steps <= 0 or step >= self.warmup_steps:
            return self.peak_lr
        return self.base_lr + (self.peak_lr - self.base_lr) * step / self.warmup_steps

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the learning rate of every parameter group for ``step`` and return it."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
