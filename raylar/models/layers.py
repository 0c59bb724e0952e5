"""Building blocks shared by the dense and sparse networks."""

import torch
import torch.nn.functional as F
from torch import nn

from raylar.models import native
from raylar.models.config import HIDDEN_UNITS, KERNEL_SIZE, NUM_CLASSES


def head_inputs(feature_map: torch.Tensor, head_pooling: str) -> torch.Tensor:
    """Turn the last block's (batch, channels, rows, cols) map into the head's input rows."""
    if head_pooling == "max_mean":
        return torch.cat([feature_map.amax(dim=(2, 3)), feature_map.mean(dim=(2, 3))], dim=1)
    return torch.flatten(feature_map, 1)


def make_head(in_features: int) -> nn.Sequential:
    """Build the fully connected head: 256 and 32 ReLU units, then the 5 class logits."""
    first, second = HIDDEN_UNITS
    return nn.Sequential(
        nn.Linear(in_features, first),
        nn.ReLU(inplace=True),
        nn.Linear(first, second),
        nn.ReLU(inplace=True),
        nn.Linear(second, NUM_CLASSES),
    )


class _MaxPoolReLU(torch.autograd.Function):
    """relu(max_pool(x)), which equals max_pool(relu(x)) because ReLU is non-decreasing.

    Applying ReLU after pooling touches a map smaller by the window's area. The
    backward pass keeps only the pooled output and the argmax indices instead of
    the full-resolution map, so the one large tensor that the block's backward
    pass allocates is the full-size gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, window: int) -> torch.Tensor:
        pooled, indices = F.max_pool2d(x, window, window, return_indices=True)
        output = pooled.clamp_min_(0)
        ctx.window = window
        ctx.input_size = x.shape[-2:]
        ctx.save_for_backward(output, indices)
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        output, indices = ctx.saved_tensors
        grad_pooled = grad_output * (output > 0)
        grad_input = F.max_unpool2d(
            grad_pooled, indices, ctx.window, ctx.window, output_size=ctx.input_size
        )
        return grad_input, None


class DenseBlock(nn.Module):
    """Convolution (5 x 5, size-preserving padding), ReLU and max pooling with a square window.

    With ``fused=True`` the ReLU runs after the pooling in one autograd node
    (:class:`_MaxPoolReLU`); the output is the same, only time and memory change.
    With ``compiled=True`` a one-channel block on CPU float32 input that needs
    no input gradient runs as one compiled kernel (:mod:`raylar.models.native`);
    other inputs take the PyTorch path. With ``channels_last=True`` the
    convolution runs on a channels-last copy of the weight, and the parameter
    itself stays contiguous.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        window: int,
        fused: bool = False,
        compiled: bool = False,
        channels_last: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, padding=KERNEL_SIZE // 2)
        self.window = window
        self.fused = fused
        self.compiled = compiled
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled and native.supported(x, self.conv, self.window):
            return native.FirstBlockFunction.apply(x, self.conv.weight, self.conv.bias, self.window)
        if self.channels_last:
            # A copy with explicit channels-last strides: with one input channel
            # both layouts count as contiguous, and .contiguous() would keep NCHW.
            weight = torch.empty_like(self.conv.weight, memory_format=torch.channels_last)
            x = self.conv._conv_forward(x, weight.copy_(self.conv.weight), self.conv.bias)
        else:
            x = self.conv(x)
        if self.fused:
            return _MaxPoolReLU.apply(x, self.window)
        return F.max_pool2d(F.relu(x), self.window, self.window)
