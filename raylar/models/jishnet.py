"""JishNet: the dense convolutional classifier of whole collection-plane images."""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from raylar.models.config import (
    DEFAULT_CHANNELS,
    POOL_WINDOWS,
    ModelConfigError,
    check_channels,
    check_flag,
    check_head_pooling,
    head_features,
    image_shape,
)
from raylar.models.layers import DenseBlock, head_inputs, make_head

# Blocks run under activation checkpointing when ``checkpointing=True``.
CHECKPOINTED_BLOCKS = 2


class JishNet(nn.Module):
    """Four blocks of 5 x 5 convolution, ReLU and max pooling (5, 5, 4, 4), then 256, 32 and 5 units.

    Input is a float32 tensor (batch, 1, rows, cols); output is the 5 class
    logits (softmax belongs to the loss). At 3600 x 3600 the last block leaves a
    9 x 9 map; any side from 400 pixels up builds, pooling with floor division.

    Default widths 13/26/52/104, and why a batch of 7 full-size events fits
    16 GB: one float32 map of 3600 x 3600 pixels is 51.84 MB per channel.
    Training with the plain layer order keeps the input and the first block's
    ReLU output (C1 maps) until the backward pass, and that block's backward
    pass adds two more full-size gradients (the pooling's and the ReLU's). The
    peak is therefore (1 + 3 * C1) * 51.84 MB, 2.07 GB for C1 = 13, plus
    0.15 GB for the pooled maps, pooling indices and later blocks: 2.22 GB per
    event (``describe_model``'s ``peak_training_bytes_per_event``). On CPU
    benchmarks/bench_models.py measured 2.11 to 2.18 GB at full size in two
    runs, and 1200 x 1200 scaled by 9 gave 2.28 GB. A 16 GB GPU has 16 GiB (17.18 GB). Setting 1 GiB aside for the CUDA context, convolution
    workspace, weights and Adam state leaves 16.1 GB for activations. Seven
    events take 15.5 GB (16.0 GB at the larger measured figure) and fit. Eight take
    17.8 GB, more than the whole card. C1 = 13 is the widest first layer for
    which seven fit, because with C1 = 14 (2.46 GB measured per event) they
    take 17.2 GB. With C1 = 12 (2.05 GB estimated) eight take 16.4 GB, close
    enough to fit some cards.
    NOTE: the GPU figures are estimates from the CPU measurement; cuDNN's
    workspace differs by algorithm, and bench_models_gpu.py measures them.

    Options, all off by default:

    - ``checkpointing``: recompute the first two blocks in the backward pass
      instead of keeping their activations (``torch.utils.checkpoint``).
    - ``bf16_autocast``: run the network under ``torch.autocast`` in bfloat16
      on the input's device; logits are returned in float32.
    - ``fused_pooling``: pool before the ReLU in one autograd node that keeps
      only the pooled output and argmax indices (same output, less memory).
    - ``channels_last``: run the convolutions in NHWC layout. The weight
      parameters stay contiguous, because Horovod broadcasts and allreduces
      only contiguous tensors, and each block uses a channels-last copy.
    - ``fused_first_block``: on CPU, run the first block (convolution of the
      one-channel image, pooling, ReLU) as one compiled kernel
      (:mod:`raylar.models.native`). It never writes the full-size map, and
      its weight gradient reads only each window's maximum. Other devices,
      bfloat16 autocast and inputs that need a gradient use PyTorch's operators.

    ``head_pooling`` is ``"flatten"`` (default: the head reads the whole last
    map, as published) or ``"max_mean"`` (it reads each channel's maximum and
    mean over positions, the same wherever the particle lies).
    """

    input_kind = "dense"

    def __init__(
        self,
        image_size,
        channels=DEFAULT_CHANNELS,
        checkpointing: bool = False,
        bf16_autocast: bool = False,
        fused_pooling: bool = False,
        channels_last: bool = False,
        fused_first_block: bool = False,
        head_pooling: str = "flatten",
    ):
        super().__init__()
        self.image_shape = image_shape(image_size)
        self.channels = check_channels(channels)
        self.checkpointing = check_flag("checkpointing", checkpointing)
        self.bf16_autocast = check_flag("bf16_autocast", bf16_autocast)
        self.fused_pooling = check_flag("fused_pooling", fused_pooling)
        self.channels_last = check_flag("channels_last", channels_last)
        self.fused_first_block = check_flag("fused_first_block", fused_first_block)
        self.head_pooling = check_head_pooling(head_pooling)

        widths = (1, *self.channels)
        self.blocks = nn.ModuleList(
            DenseBlock(
                widths[i],
                widths[i + 1],
                window,
                fused=self.fused_pooling,
                compiled=self.fused_first_block and i == 0,
                channels_last=self.channels_last,
            )
            for i, window in enumerate(POOL_WINDOWS)
        )
        self.head = make_head(head_features(self.channels, self.image_shape, self.head_pooling))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check_input(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if not self.bf16_autocast:
            return self._logits(images)
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16):
            logits = self._logits(images)
        return logits.float()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            if self.checkpointing and index < CHECKPOINTED_BLOCKS and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.head(head_inputs(x, self.head_pooling))

    def _check_input(self, images: torch.Tensor) -> None:
        expected = (1, *self.image_shape)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ModelConfigError(
                f"JishNet built for images of {self.image_shape[0]} x {self.image_shape[1]} "
                f"got a tensor of shape {tuple(images.shape)}: expected (batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}) with exactly 1 channel"
            )
