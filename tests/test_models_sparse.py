"""spconv's building blocks against their dense torch counterparts, and SCNet on the CPU."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from raylar.compat import patch_spconv_for_cpu
from raylar.data.types import SparseBatch
from raylar.models import ModelConfigError, build_model

patch_spconv_for_cpu()
import spconv.pytorch as spconv  # noqa: E402 - after the CPU backward patch

KERNEL = 5


def random_sparse_image(batch, rows, cols, occupancy, seed, positive=False):
    """Return a zero-filled dense image (batch, 1, rows, cols) and its active coordinates."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, rows, cols, generator=generator) < occupancy
    count = int(mask.sum())
    if positive:
        values = torch.rand(count, generator=generator) + 0.1
    else:
        values = torch.randn(count, generator=generator)
    dense = torch.zeros(batch, 1, rows, cols)
    dense[:, 0][mask] = values
    coords = mask.nonzero().to(torch.int32).contiguous()
    return dense, coords


def features_at(dense, coords):
    """Gather (N, C) features of a dense (B, C, H, W) tensor at (sample, row, col) coordinates."""
    index = coords.long()
    return dense.permute(0, 2, 3, 1)[index[:, 0], index[:, 1], index[:, 2]]


def dense_weight(sparse_weight):
    """Turn spconv 2.x's (out, kh, kw, in) weight into torch's (out, in, kh, kw)."""
    return sparse_weight.detach().permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def one_thread():
    """Run spconv on one torch thread, as SCNet does on CPU: with two, its CPU kernels race."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def sparse_tensor(dense, coords, requires_grad=False):
    features = features_at(dense, coords).clone().requires_grad_(requires_grad)
    return spconv.SparseConvTensor(features, coords, list(dense.shape[-2:]), dense.shape[0])


def test_submanifold_conv_matches_dense_at_active_sites(one_thread):
    torch.manual_seed(1)
    dense, coords = random_sparse_image(2, 37, 41, 0.08, seed=1)
    conv = spconv.SubMConv2d(1, 6, KERNEL, padding=KERNEL // 2, bias=True)
    output = conv(sparse_tensor(dense, coords))
    reference = F.conv2d(dense, dense_weight(conv.weight), conv.bias.detach(), padding=KERNEL // 2)

    assert torch.equal(output.indices, coords)
    torch.testing.assert_close(
        output.features, features_at(reference, coords), atol=1e-5, rtol=1e-5
    )


def test_submanifold_conv_gradient_matches_dense(one_thread):
    torch.manual_seed(2)
    dense, coords = random_sparse_image(2, 33, 30, 0.1, seed=2)
    conv = spconv.SubMConv2d(1, 4, KERNEL, padding=KERNEL // 2, bias=False)
    upstream = torch.randn(coords.shape[0], 4, generator=torch.Generator().manual_seed(3))

    sparse_input = sparse_tensor(dense, coords, requires_grad=True)
    (conv(sparse_input).features * upstream).sum().backward()

    dense_input = dense.clone().requires_grad_(True)
    weight = dense_weight(conv.weight).requires_grad_(True)
    reference = F.conv2d(dense_input, weight, padding=KERNEL // 2)
    (features_at(reference, coords) * upstream).sum().backward()

    torch.testing.assert_close(dense_weight(conv.weight.grad), weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        sparse_input.features.grad, features_at(dense_input.grad, coords), atol=1e-5, rtol=1e-5
    )


def test_sparse_conv_matches_dense_everywhere(one_thread):
    torch.manual_seed(4)
    dense, coords = random_sparse_image(2, 29, 34, 0.06, seed=4)
    conv = spconv.SparseConv2d(1, 3, KERNEL, padding=KERNEL // 2, bias=False)
    upstream = torch.randn(2, 3, 29, 34, generator=torch.Generator().manual_seed(5))

    sparse_input = sparse_tensor(dense, coords, requires_grad=True)
    output = conv(sparse_input).dense()
    (output * upstream).sum().backward()

    dense_input = dense.clone().requires_grad_(True)
    weight = dense_weight(conv.weight).requires_grad_(True)
    reference = F.conv2d(dense_input, weight, padding=KERNEL // 2)
    (reference * upstream).sum().backward()

    torch.testing.assert_close(output, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dense_weight(conv.weight.grad), weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        sparse_input.features.grad, features_at(dense_input.grad, coords), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("window, rows, cols", [(5, 40, 35), (4, 36, 28), (5, 43, 37)])
def test_sparse_max_pool_matches_dense_everywhere(window, rows, cols, one_thread):
    # Features are positive, as after a ReLU: then the maximum over active
    # sites equals the maximum over the zero-filled window.
    dense, coords = random_sparse_image(2, rows, cols, 0.05, seed=window + rows, positive=True)
    upstream = torch.randn(
        2, 1, rows // window, cols // window, generator=torch.Generator().manual_seed(6)
    )

    sparse_input = sparse_tensor(dense, coords, requires_grad=True)
    output = spconv.SparseMaxPool2d(window, window)(sparse_input).dense()
    (output * upstream).sum().backward()

    dense_input = dense.clone().requires_grad_(True)
    reference = F.max_pool2d(dense_input, window, window)
    (reference * upstream).sum().backward()

    assert output.shape == reference.shape
    torch.testing.assert_close(output, reference)
    torch.testing.assert_close(sparse_input.features.grad, features_at(dense_input.grad, coords))


def make_sparse_batch(batch, size, occupancy, seed):
    dense, coords = random_sparse_image(batch, size, size, occupancy, seed=seed, positive=True)
    return SparseBatch(coords, features_at(dense, coords), (size, size), batch)


def test_densify_restores_image_without_warning():
    dense, coords = random_sparse_image(2, 30, 40, 0.1, seed=3)
    with warnings.catch_warnings():
        # spconv 2.3.8's own densification indexes with a list, which PyTorch flags
        warnings.simplefilter("error")
        restored = sparse_tensor(dense, coords).dense()
    torch.testing.assert_close(restored, dense, atol=0, rtol=0)


def test_scnet_forward_backward_on_cpu():
    torch.manual_seed(7)
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(3, 400, 0.003, seed=7)

    logits = model(batch)
    F.cross_entropy(logits, torch.tensor([0, 2, 4])).backward()

    assert logits.shape == (3, 5)
    assert model.last_active_sites[0] == batch.coords.shape[0]
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.blocks[0].parameters())


@pytest.mark.parametrize("size", [400, 450, 800, 3600])
def test_scnet_output_shape_for_sizes(size):
    model = build_model("scnet", size, channels=(4, 8, 8, 16))
    logits = model(make_sparse_batch(2, size, 20 / size**2 * 100, seed=size))
    assert logits.shape == (2, 5)


def test_scnet_repeatable_with_two_threads():
    torch.manual_seed(12)
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(2, 400, 0.01, seed=12)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = model(batch)
        expected.sum().backward()
        expected_gradients = [p.grad.clone() for p in model.parameters()]

        torch.set_num_threads(2)
        for _ in range(12):
            model.zero_grad()
            logits = model(batch)
            logits.sum().backward()
            assert torch.get_num_threads() == 2
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
            for gradient, expected_gradient in zip(
                (p.grad for p in model.parameters()), expected_gradients, strict=True
            ):
                torch.testing.assert_close(gradient, expected_gradient, atol=1e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(previous)

    assert not batch.features.requires_grad


def test_scnet_reads_column_major_coords():
    torch.manual_seed(8)
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(2, 400, 0.004, seed=8)
    column_major = batch.coords.t().contiguous().t()
    assert not column_major.is_contiguous()

    with torch.no_grad():
        expected = model(batch)
        output = model(SparseBatch(column_major, batch.features, batch.spatial_shape, 2))

    torch.testing.assert_close(output, expected)


def test_scnet_optimizer_step_lowers_loss():
    torch.manual_seed(9)
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(4, 400, 0.004, seed=9)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss_before = F.cross_entropy(model(batch), labels)
    loss_before.backward()
    optimizer.step()
    with torch.no_grad():
        loss_after = F.cross_entropy(model(batch), labels)

    assert loss_after.item() < loss_before.item()


def test_scnet_rejects_wrong_spatial_shape():
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(1, 450, 0.002, seed=10)
    with pytest.raises(ModelConfigError, match=r"spatial_shape \(450, 450\)"):
        model(batch)


def test_scnet_rejects_two_feature_channels():
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    batch = make_sparse_batch(1, 400, 0.002, seed=11)
    two_channels = SparseBatch(batch.coords, batch.features.repeat(1, 2), (400, 400), 1)
    with pytest.raises(ModelConfigError, match=r"expected \(\d+, 1\)"):
        model(two_channels)


def test_scnet_rejects_empty_batch():
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    empty = SparseBatch(torch.zeros(0, 3, dtype=torch.int32), torch.zeros(0, 1), (400, 400), 2)
    with pytest.raises(ModelConfigError, match="no active pixels"):
        model(empty)


def test_scnet_rejects_dense_tensor():
    model = build_model("scnet", 400, channels=(4, 8, 8, 16))
    with pytest.raises(ModelConfigError, match="SparseBatch"):
        model(torch.zeros(1, 1, 400, 400))


def test_scnet_max_mean_head_unchanged_by_stride_shift():
    # Submanifold convolutions act only at the hits, so a blob moved by the whole pooling
    # stride (400 pixels) gives the same maxima and means over positions.
    torch.manual_seed(4)
    pooled = build_model("scnet", 800, channels=(4, 8, 8, 16), head_pooling="max_mean")
    flat = build_model("scnet", 800, channels=(4, 8, 8, 16))
    dense, coords = random_sparse_image(1, 60, 60, 0.2, seed=4, positive=True)
    features = features_at(dense, coords)

    def at(offset):
        moved = coords.clone()
        moved[:, 1:] += offset
        return SparseBatch(moved, features, (800, 800), 1)

    torch.testing.assert_close(pooled(at(110)), pooled(at(510)), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(flat(at(110)), flat(at(510)), rtol=1e-3, atol=1e-4)
