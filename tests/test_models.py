"""JishNet, the registry and the cost model: shapes, options, training step and bad input."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from raylar.models import MIN_IMAGE_SIZE, ModelConfigError, build_model, describe_model
from raylar.models.config import DEFAULT_CHANNELS, pooled_shapes
from raylar.models.flops import dense_layer_costs, dense_memory

SMALL_CHANNELS = (4, 8, 8, 16)


def sparse_images(batch, size, seed, occupancy=0.01):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, 1, size, size, generator=generator) < occupancy
    return torch.rand(batch, 1, size, size, generator=generator) * 50 * mask


def saved_tensor_bytes(model, images):
    """Sum the bytes of the distinct non-parameter tensors autograd keeps for backward."""
    parameters = {p.data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            storages[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images)
    return sum(storages.values())


@pytest.mark.parametrize("size", [400, 450, 800, 900])
def test_jishnet_output_shape_for_sizes(size):
    model = build_model("jishnet", size, channels=SMALL_CHANNELS)
    logits = model(sparse_images(2, size, seed=size))
    assert logits.shape == (2, 5)
    assert logits.dtype == torch.float32


def test_jishnet_full_size_leaves_nine_by_nine_map():
    model = build_model("jishnet", 3600)
    assert pooled_shapes((3600, 3600))[-1] == (9, 9)
    assert model.head[0].in_features == DEFAULT_CHANNELS[-1] * 9 * 9
    with torch.no_grad():
        logits = model(sparse_images(1, 3600, seed=1, occupancy=0.001))
    assert logits.shape == (1, 5)


def test_jishnet_rectangular_image():
    model = build_model("jishnet", (400, 800), channels=SMALL_CHANNELS)
    assert model(sparse_images(1, 800, seed=2)[..., :400, :]).shape == (1, 5)


def test_jishnet_optimizer_step_lowers_loss():
    torch.manual_seed(3)
    model = build_model("jishnet", 400, channels=SMALL_CHANNELS)
    images = sparse_images(4, 400, seed=3)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss_before = F.cross_entropy(model(images), labels)
    loss_before.backward()
    optimizer.step()
    with torch.no_grad():
        loss_after = F.cross_entropy(model(images), labels)

    assert loss_after.item() < loss_before.item()


def outputs_and_gradients(options, images, labels, seed=4):
    torch.manual_seed(seed)
    model = build_model("jishnet", images.shape[-1], channels=SMALL_CHANNELS, **options)
    logits = model(images)
    F.cross_entropy(logits, labels).backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    return logits.detach(), gradients


@pytest.mark.parametrize(
    "options",
    [
        {"checkpointing": True},
        {"fused_pooling": True},
        {"channels_last": True},
        {"fused_first_block": True},
        {"fused_first_block": True, "fused_pooling": True, "channels_last": True},
        {"fused_first_block": True, "checkpointing": True},
    ],
    ids=[
        "checkpointing",
        "fused_pooling",
        "channels_last",
        "fused_first_block",
        "fused_first_block_fastest",
        "fused_first_block_checkpointing",
    ],
)
def test_jishnet_option_matches_default(options):
    images = sparse_images(2, 400, seed=5)
    labels = torch.tensor([1, 4])
    expected_logits, expected_gradients = outputs_and_gradients({}, images, labels)

    logits, gradients = outputs_and_gradients(options, images, labels)

    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-4)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], atol=1e-5, rtol=1e-3)


def test_channels_last_keeps_parameters_contiguous():
    # Horovod broadcasts and allreduces only contiguous tensors.
    model = build_model(
        "jishnet", 400, channels=SMALL_CHANNELS, channels_last=True, fused_pooling=True
    )
    F.cross_entropy(model(sparse_images(2, 400, seed=7)), torch.tensor([0, 1])).backward()

    for name, parameter in model.named_parameters():
        assert parameter.is_contiguous(), name
        assert parameter.grad.is_contiguous(), name


def test_jishnet_bf16_autocast_close_to_float32():
    images = sparse_images(2, 400, seed=6)
    labels = torch.tensor([0, 3])
    expected_logits, expected_gradients = outputs_and_gradients({}, images, labels)

    logits, gradients = outputs_and_gradients({"bf16_autocast": True}, images, labels)

    assert logits.dtype == torch.float32
    # bfloat16 keeps 8 significant bits, so agreement is to about 1 % of the scale.
    scale = expected_logits.abs().max()
    assert (logits - expected_logits).abs().max() < 0.03 * scale
    # Rounding moves some pooling maxima to a neighbour pixel, which reroutes
    # part of the first blocks' gradients (cosine about 0.93 for a bias), so
    # gradients are compared by direction, all together and per parameter.
    everything = torch.cat([g.flatten() for g in gradients.values()])
    expected_everything = torch.cat([g.flatten() for g in expected_gradients.values()])
    assert F.cosine_similarity(everything, expected_everything, dim=0) > 0.99
    for name, gradient in gradients.items():
        expected = expected_gradients[name]
        cosine = F.cosine_similarity(gradient.flatten(), expected.flatten(), dim=0)
        assert cosine > 0.85, name


def test_checkpointing_keeps_fewer_activations():
    images = sparse_images(1, 800, seed=7).requires_grad_(False)
    plain = build_model("jishnet", 800, channels=SMALL_CHANNELS)
    checkpointed = build_model("jishnet", 800, channels=SMALL_CHANNELS, checkpointing=True)

    plain_bytes = saved_tensor_bytes(plain, images)
    checkpointed_bytes = saved_tensor_bytes(checkpointed, images)

    assert checkpointed_bytes < 0.25 * plain_bytes


def test_activation_estimate_matches_saved_tensors():
    images = sparse_images(1, 800, seed=8)
    for options in (
        {},
        {"fused_pooling": True},
        {"checkpointing": True},
        {"fused_first_block": True},
    ):
        model = build_model("jishnet", 800, channels=SMALL_CHANNELS, **options)
        estimate = describe_model(model, 800)["activation_bytes_per_event"]
        measured = saved_tensor_bytes(model, images)
        assert abs(measured - estimate) < 0.05 * estimate, options


def test_flop_count_matches_torch_counter():
    model = build_model("jishnet", 800, channels=SMALL_CHANNELS)
    images = sparse_images(1, 800, seed=9)
    costs = dense_layer_costs((800, 800), SMALL_CHANNELS)
    matmul_costs = [c for c in costs if c.name.startswith(("conv", "linear"))]

    with FlopCounterMode(display=False) as forward_counter:
        logits = model(images)
    with FlopCounterMode(display=False) as backward_counter:
        logits.sum().backward()

    expected_forward = sum(c.forward_flops for c in matmul_costs)
    expected_backward = sum(c.backward_flops for c in matmul_costs)
    assert forward_counter.get_total_flops() == expected_forward
    assert backward_counter.get_total_flops() == expected_backward


def test_describe_model_full_size_figures():
    model = build_model("jishnet", 3600)
    description = describe_model(model, 3600)
    conv_flops = (
        2 * 25 * (1 * 13 * 3600**2 + 13 * 26 * 720**2 + 26 * 52 * 144**2 + 52 * 104 * 36**2)
    )
    assert description["parameters"] == sum(p.numel() for p in model.parameters())
    assert 0 < description["forward_flops_per_event"] - conv_flops < 0.03 * conv_flops
    # the plain first block keeps its 13-channel map and adds two gradients of that size
    first_map = 13 * 3600**2 * 4
    assert description["peak_training_bytes_per_event"] > 3 * first_map
    # 16 GiB less 1 GiB for the CUDA context, workspace, weights and Adam state
    activation_budget = 15 * 2**30
    assert 7 * description["peak_training_bytes_per_event"] < activation_budget
    assert 8 * description["peak_training_bytes_per_event"] > 16 * 2**30


def test_fused_pooling_lowers_peak_estimate():
    plain = dense_memory((3600, 3600), DEFAULT_CHANNELS)
    fused = dense_memory((3600, 3600), DEFAULT_CHANNELS, fused_pooling=True)
    assert fused["peak_training_bytes"] < 0.6 * plain["peak_training_bytes"]


def test_fused_first_block_lowers_peak_estimate():
    fused = dense_memory((3600, 3600), DEFAULT_CHANNELS, fused_pooling=True)
    compiled = dense_memory(
        (3600, 3600), DEFAULT_CHANNELS, fused_pooling=True, fused_first_block=True
    )
    # no full-size map of the first block is kept or rebuilt as a gradient
    assert compiled["peak_training_bytes"] < 0.3 * fused["peak_training_bytes"]


def test_scnet_describe_model_uses_active_sites():
    model = build_model("scnet", 400, channels=SMALL_CHANNELS)
    without_sites = describe_model(model, 400)
    with_sites = describe_model(model, 400, active_sites=[1000, 300, 40, 4])

    assert without_sites["forward_flops_per_event"] is None
    assert without_sites["flops_per_active_site"][0] == 2 * 25 * 1 * 4
    head_flops = 2 * (16 * 1 * 256 + 256 * 32 + 32 * 5)
    per_site = without_sites["flops_per_active_site"]
    expected = 1000 * per_site[0] + 300 * per_site[1] + 40 * per_site[2] + 4 * per_site[3]
    assert with_sites["forward_flops_per_event"] == expected + head_flops


def test_build_model_rejects_unknown_name():
    with pytest.raises(ModelConfigError, match=r"unknown model 'resnet'.*jishnet, scnet"):
        build_model("resnet", 400)


def test_build_model_rejects_unknown_option():
    with pytest.raises(
        ModelConfigError, match=r"unknown option\(s\) checkpointing for model 'scnet'"
    ):
        build_model("scnet", 400, checkpointing=True)


@pytest.mark.parametrize("name", ["jishnet", "scnet"])
def test_build_model_rejects_small_image(name):
    with pytest.raises(ModelConfigError, match=rf"399.*at least {MIN_IMAGE_SIZE} pixels"):
        build_model(name, 399)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_build_model_rejects_non_boolean_flag(value):
    with pytest.raises(ModelConfigError, match=f"invalid fused_pooling {value!r}: expected true or false"):
        build_model("jishnet", 400, fused_pooling=value)


def test_build_model_rejects_non_integer_size():
    with pytest.raises(ModelConfigError, match=r"invalid image size 400.5"):
        build_model("jishnet", 400.5)


@pytest.mark.parametrize(
    "channels, message",
    [
        ((12, 24, 48), r"expected 4 widths, one per convolution block, got 3"),
        ((12, 0, 48, 96), r"invalid channel width 0 .* integer from 1 to 1024"),
        ((12, 24, 48, 2048), r"invalid channel width 2048 .* integer from 1 to 1024"),
        ((12, 24.5, 48, 96), r"invalid channel width 24.5"),
        (16, r"invalid channels 16: expected a sequence of 4 integers from 1 to 1024"),
    ],
)
@pytest.mark.parametrize("name", ["jishnet", "scnet"])
def test_build_model_rejects_bad_channels(name, channels, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(name, 400, channels=channels)


def test_jishnet_rejects_three_channel_input():
    model = build_model("jishnet", 400, channels=SMALL_CHANNELS)
    with pytest.raises(ModelConfigError, match=r"shape \(1, 3, 400, 400\).*exactly 1 channel"):
        model(torch.zeros(1, 3, 400, 400))


def test_jishnet_rejects_other_image_size():
    model = build_model("jishnet", 400, channels=SMALL_CHANNELS)
    with pytest.raises(ModelConfigError, match=r"expected \(batch, 1, 400, 400\)"):
        model(torch.zeros(1, 1, 450, 450))


@pytest.mark.parametrize("name", ["jishnet", "scnet"])
def test_model_survives_pickle(name):
    model = build_model(name, 400, channels=SMALL_CHANNELS)
    restored = pickle.loads(pickle.dumps(model))
    assert type(restored) is type(model)
    for (key, value), restored_value in zip(
        model.state_dict().items(), restored.state_dict().values(), strict=True
    ):
        assert torch.equal(value, restored_value), key


def blob_image(size, corner, seed=5):
    """Return a (1, 1, size, size) image that is zero except for a random 60 x 60 blob at ``corner``."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 1, size, size)
    row, col = corner
    image[0, 0, row:row + 60, col:col + 60] = torch.rand(60, 60, generator=generator) * 50
    return image


def test_jishnet_max_mean_head_unchanged_by_stride_shift():
    # With zero biases a zero background stays zero, so shifting the blob by the whole pooling
    # stride (400 pixels) shifts the last map by one cell and leaves its maxima and means alone.
    torch.manual_seed(3)
    pooled = build_model("jishnet", 1600, channels=SMALL_CHANNELS, head_pooling="max_mean")
    flat = build_model("jishnet", 1600, channels=SMALL_CHANNELS)
    for model in (pooled, flat):
        for block in model.blocks:
            torch.nn.init.zeros_(block.conv.bias)
    original, shifted = blob_image(1600, (520, 540)), blob_image(1600, (920, 940))

    with torch.no_grad():
        torch.testing.assert_close(pooled(original), pooled(shifted), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(flat(original), flat(shifted), rtol=1e-3, atol=1e-4)
    assert pooled.head[0].in_features == 2 * SMALL_CHANNELS[-1]
    assert flat.head[0].in_features == SMALL_CHANNELS[-1] * 4 * 4


def test_head_pooling_recorded_and_costed():
    pooled = build_model("jishnet", 800, channels=SMALL_CHANNELS, head_pooling="max_mean")
    flat = build_model("jishnet", 800, channels=SMALL_CHANNELS)
    pooled_info, flat_info = describe_model(pooled, 800), describe_model(flat, 800)

    assert pooled_info["head_pooling"] == "max_mean"
    assert flat_info["head_pooling"] == "flatten"
    # Only the first linear layer differs: 2 x 16 inputs against 16 x 2 x 2.
    head_difference = 2 * (SMALL_CHANNELS[-1] * 4 - 2 * SMALL_CHANNELS[-1]) * 256
    assert flat_info["forward_flops_per_event"] - pooled_info["forward_flops_per_event"] == head_difference
    assert flat_info["parameters"] - pooled_info["parameters"] == head_difference // 2


@pytest.mark.parametrize("name", ["jishnet", "scnet"])
@pytest.mark.parametrize("value", ["max", "", None])
def test_build_model_rejects_unknown_head_pooling(name, value):
    with pytest.raises(ModelConfigError, match=f"invalid head_pooling {value!r}: expected one of flatten, max_mean"):
        build_model(name, 400, head_pooling=value)
