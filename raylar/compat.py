"""Narrow compatibility fixes for third-party packages, each applied once."""

import sys

_spconv_patched = False


def patch_spconv_for_cpu() -> None:
    """Let spconv 2.3.8 run backward passes on a CPU-only torch.

    spconv's backward requests the current CUDA stream from
    ``spconv.pytorch.cppcore.get_current_stream``, which raises "Torch not
    compiled with CUDA enabled" on a CPU build of torch. Stream 0 is what its
    CPU kernels expect, so on machines without CUDA the function returns 0.
    The modules that imported the function by name get the replacement too.
    Remove this once a spconv release guards the call itself.

    On every device, ``SparseConvTensor.dense()`` gets :func:`_scatter_nd`.
    """
    global _spconv_patched
    if _spconv_patched:
        return
    import spconv.pytorch  # noqa: F401 - loads every module that imports the function
    import torch
    from spconv.pytorch import core, cppcore

    _spconv_patched = True
    core.scatter_nd = _scatter_nd
    if torch.cuda.is_available():
        return
    original = cppcore.get_current_stream

    def current_stream_or_zero() -> int:
        return 0

    for name, module in list(sys.modules.items()):
        if name.startswith("spconv") and getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = current_stream_or_zero


def _scatter_nd(indices, updates, shape):
    """Return a zero tensor of ``shape`` with ``updates`` written at the rows of ``indices``.

    spconv 2.3.8's own version indexes with a list of index tensors. PyTorch
    warns that it will read such a list as one tensor index, which would
    scatter to the wrong places, so this one indexes with a tuple.
    """
    import torch

    dense = torch.zeros(*shape, dtype=updates.dtype, device=updates.device)
    depth = indices.shape[-1]
    positions = indices.reshape(-1, depth)
    dense[tuple(positions.unbind(1))] = updates.reshape(positions.shape[0], *shape[depth:])
    return dense
