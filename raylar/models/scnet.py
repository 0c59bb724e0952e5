"""SCNet: JishNet's topology built from spconv's submanifold convolutions and sparse pooling."""

import torch
from torch import nn

from raylar.compat import patch_spconv_for_cpu
from raylar.data.types import SparseBatch
from raylar.models.config import (
    DEFAULT_CHANNELS,
    KERNEL_SIZE,
    POOL_WINDOWS,
    ModelConfigError,
    check_channels,
    check_head_pooling,
    head_features,
    image_shape,
)
from raylar.models.layers import head_inputs, make_head
from raylar.models.sparse_threads import SingleThreadGuard


def _spconv():
    """Return ``spconv.pytorch`` after the CPU backward patch is applied."""
    patch_spconv_for_cpu()
    import spconv.pytorch as spconv

    return spconv


class SCNet(nn.Module):
    """Four blocks of 5 x 5 submanifold convolution, ReLU and sparse max pooling, then JishNet's head.

    Input is a :class:`~raylar.data.types.SparseBatch` (coordinates and
    features of the non-zero pixels); the network builds the spconv
    ``SparseConvTensor`` itself and never receives a dense image. A submanifold
    convolution computes outputs only at the active input sites, so the cost
    follows the number of hits, not the image area. Sparse max pooling takes the
    maximum over the active sites of each window; after a ReLU every feature is
    non-negative, so this equals dense max pooling of the zero-filled map.
    The last block's output is made dense (9 x 9 at 3600 x 3600) for the head,
    which reads it whole or, with ``head_pooling="max_mean"``, each channel's
    maximum and mean over positions (see :class:`JishNet`).
    On CPU tensors spconv runs on one thread (see ``sparse_threads``).

    After each forward pass ``last_active_sites`` holds the number of active
    sites entering each block, summed over the batch, which
    :func:`raylar.models.flops.sparse_forward_flops` turns into FLOPs.
    """

    input_kind = "sparse"

    def __init__(self, image_size, channels=DEFAULT_CHANNELS, head_pooling: str = "flatten"):
        super().__init__()
        self.image_shape = image_shape(image_size)
        self.channels = check_channels(channels)
        self.head_pooling = check_head_pooling(head_pooling)
        self.last_active_sites: list[int] = []
        spconv = _spconv()

        widths = (1, *self.channels)
        self.blocks = nn.ModuleList(
            spconv.SparseSequential(
                spconv.SubMConv2d(
                    widths[i],
                    widths[i + 1],
                    KERNEL_SIZE,
                    padding=KERNEL_SIZE // 2,
                    indice_key=f"submanifold{i}",
                ),
                nn.ReLU(inplace=True),
                spconv.SparseMaxPool2d(window, window),
            )
            for i, window in enumerate(POOL_WINDOWS)
        )
        self.head = make_head(head_features(self.channels, self.image_shape, self.head_pooling))

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        self._check_input(batch)
        # spconv reads the coordinate buffer as row-major int32 whatever its
        # strides; torch.nonzero() output, for one, is column-major.
        coords = batch.coords.to(torch.int32).contiguous()
        features = batch.features.to(torch.float32).contiguous()
        guard = SingleThreadGuard(features.device)
        features = guard.mark_input(features)
        active_sites = []
        with guard.forward():
            x = _spconv().SparseConvTensor(
                features, coords, list(self.image_shape), batch.batch_size
            )
            for block in self.blocks:
                active_sites.append(int(x.features.shape[0]))
                x = block(x)
            dense = x.dense()
        self.last_active_sites = active_sites
        return self.head(head_inputs(guard.mark_output(dense), self.head_pooling))

    def _check_input(self, batch: SparseBatch) -> None:
        if not isinstance(batch, SparseBatch):
            raise ModelConfigError(
                f"SCNet expects a raylar.data.types.SparseBatch, got {type(batch).__name__}; "
                "build the loader with output='sparse'"
            )
        if tuple(batch.spatial_shape) != self.image_shape:
            raise ModelConfigError(
                f"SCNet built for images of {self.image_shape[0]} x {self.image_shape[1]} got a "
                f"batch with spatial_shape {tuple(batch.spatial_shape)}; build the model with "
                "the loader's image size"
            )
        count = batch.coords.shape[0]
        if batch.coords.dim() != 2 or batch.coords.shape[1] != 3:
            raise ModelConfigError(
                f"invalid coords of shape {tuple(batch.coords.shape)}: expected (N, 3) "
                "with columns (sample, row, col)"
            )
        if tuple(batch.features.shape) != (count, 1):
            raise ModelConfigError(
                f"invalid features of shape {tuple(batch.features.shape)}: expected ({count}, 1), "
                "one channel per active pixel"
            )
        if count == 0:
            raise ModelConfigError(
                f"the sparse batch of {batch.batch_size} events has no active pixels; "
                "drop empty events before training"
            )
