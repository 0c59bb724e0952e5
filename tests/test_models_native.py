"""The compiled first block of JishNet (``fused_first_block``) against PyTorch's operators."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from raylar.models import build_model, native
from raylar.models.layers import DenseBlock


def sparse_images(batch, rows, cols, seed, occupancy=0.02):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, 1, rows, cols, generator=generator) < occupancy
    return torch.rand(batch, 1, rows, cols, generator=generator) * 80 * mask


def reference_block(images, weight, bias, window):
    return F.max_pool2d(F.relu(F.conv2d(images, weight, bias, padding=2)), window, window)


def compiled_and_reference(images, window, channels=13, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(channels, 1, 5, 5, generator=generator).requires_grad_()
    bias = torch.randn(channels, generator=generator).requires_grad_()
    expected = reference_block(images, weight, bias, window)
    upstream = torch.randn(expected.shape, generator=generator)
    expected_grads = torch.autograd.grad(expected, [weight, bias], upstream)
    output = native.FirstBlockFunction.apply(images, weight, bias, window)
    grads = torch.autograd.grad(output, [weight, bias], upstream)
    return (output, grads), (expected, expected_grads)


def test_kernel_builds_here():
    # CI machines have a C compiler. The fallback has its own test below.
    assert native.load_first_block() is not None


@pytest.mark.parametrize(
    "shape, window",
    [((2, 40, 40), 5), ((1, 47, 53), 5), ((3, 64, 36), 4), ((1, 400, 400), 5)],
    ids=["batch2", "ragged", "window4", "downsampled_event"],
)
def test_kernel_matches_pytorch(shape, window):
    batch, rows, cols = shape
    images = sparse_images(batch, rows, cols, seed=rows)

    (output, grads), (expected, expected_grads) = compiled_and_reference(images, window)

    assert output.shape == expected.shape
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-3, rtol=1e-4)


def test_kernel_breaks_ties_like_pytorch():
    # Empty windows contain the bias at every pixel. A lone hit at a window's
    # corner gives two pixels the same value, and PyTorch gives the gradient to
    # the first in row-major order, so the kernel must do the same.
    images = torch.zeros(1, 1, 20, 20)
    images[0, 0, 7, 7] = 10.0
    images[0, 0, 2, 12] = 5.0
    weight = torch.zeros(3, 1, 5, 5)
    weight[:, 0, 0, 0] = 1.0
    weight[:, 0, 4, 4] = 1.0  # the hit reaches two conv outputs with equal weight
    weight.requires_grad_()
    bias = torch.tensor([0.5, -0.5, 0.0], requires_grad=True)
    upstream = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4)

    expected = reference_block(images, weight, bias, 5)
    expected_grads = torch.autograd.grad(expected, [weight, bias], upstream)
    output = native.FirstBlockFunction.apply(images, weight, bias, 5)
    grads = torch.autograd.grad(output, [weight, bias], upstream)

    torch.testing.assert_close(output, expected, atol=0, rtol=0)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


def test_kernel_threads_agree():
    images = sparse_images(2, 200, 200, seed=3)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        (one, one_grads), _ = compiled_and_reference(images, 5)
        torch.set_num_threads(2)
        (two, two_grads), _ = compiled_and_reference(images, 5)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(two, one, atol=0, rtol=0)
    for grad, other in zip(two_grads, one_grads, strict=True):
        # summation order differs between the per-thread partial sums
        torch.testing.assert_close(grad, other, atol=1e-3, rtol=1e-4)


def test_jishnet_kernel_only_where_supported():
    model = build_model("jishnet", 400, channels=(4, 8, 8, 16), fused_first_block=True)
    images = sparse_images(1, 400, 400, seed=5)

    assert type(model.blocks[0](images).grad_fn).__name__ == "FirstBlockFunctionBackward"
    # an image that needs its own gradient (e.g. a saliency map) takes PyTorch's path
    tracked = images.clone().requires_grad_()
    model(tracked).sum().backward()
    assert tracked.grad is not None and tracked.grad.abs().sum() > 0
    # later blocks have more than one input channel and never use it
    assert isinstance(model.blocks[1], DenseBlock)
    assert not native.supported(torch.zeros(1, 4, 80, 80), model.blocks[1].conv, 5)


def test_missing_compiler_falls_back_with_warning(tmp_path):
    script = (
        "import torch\n"
        "from raylar.models import build_model\n"
        "model = build_model('jishnet', 400, channels=(4, 8, 8, 16), fused_first_block=True)\n"
        "images = torch.zeros(1, 1, 400, 400); images[0, 0, 200, 200] = 40.0\n"
        "print(type(model.blocks[0](images).grad_fn).__name__)\n"
    )
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), RAYLAR_NATIVE_CACHE=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "failed to build first_block.c" in result.stderr
    assert "no-such-compiler" in result.stderr
    assert "FirstBlockFunction" not in result.stdout
    assert list(tmp_path.iterdir()) == [] or not any(tmp_path.rglob("*.so"))
