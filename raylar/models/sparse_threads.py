"""Run spconv's CPU kernels on one intra-op thread, in the forward and the backward pass.

With two or more torch threads, spconv 2.3.8's CPU gather-matmul-scatter path
returned wrong values for a few output sites. That happened in about half of
the forward passes of a regular sparse convolution, in a few percent of
submanifold ones and in some backward passes. With one thread every result
matched the dense convolution (tests/test_models_sparse.py checks this).
SCNet therefore drops to one thread while spconv runs on CPU tensors. Two
identity autograd nodes bracket the backward pass. The one on the sparse
part's output switches to one thread when its gradient arrives, and the one on
the input features restores the previous count once spconv's first layer is
done.
"""

import contextlib

import torch

# NOTE: the guard applies only to CPU tensors. spconv's CUDA path uses other
# kernels, which were not checked for this race.


class _EnterSingleThreadOnBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, state: dict) -> torch.Tensor:
        ctx.state = state
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ctx.state["previous"] = torch.get_num_threads()
        torch.set_num_threads(1)
        return grad, None


class _LeaveSingleThreadOnBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, state: dict) -> torch.Tensor:
        ctx.state = state
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        previous = ctx.state.pop("previous", None)
        if previous is not None:
            torch.set_num_threads(previous)
        return grad, None


class SingleThreadGuard:
    """Brackets a sparse section: ``enter`` on its input features, ``leave`` on its dense output.

    Used in the forward pass as ``with guard.forward(): ...``; ``mark_input``
    and ``mark_output`` insert the nodes that do the same in the backward pass.
    Does nothing for CUDA tensors.
    """

    def __init__(self, device: torch.device):
        self.active = device.type == "cpu"
        self.state: dict = {}

    @contextlib.contextmanager
    def forward(self):
        if not self.active:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def mark_input(self, features: torch.Tensor) -> torch.Tensor:
        if not (self.active and torch.is_grad_enabled()):
            return features
        if not features.requires_grad:
            # the node must be part of the graph even when the input needs no gradient
            features = features.detach().requires_grad_(True)
        return _LeaveSingleThreadOnBackward.apply(features, self.state)

    def mark_output(self, tensor: torch.Tensor) -> torch.Tensor:
        if not (self.active and torch.is_grad_enabled()):
            return tensor
        return _EnterSingleThreadOnBackward.apply(tensor, self.state)
