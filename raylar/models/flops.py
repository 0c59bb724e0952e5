"""Cost model of the two networks: FLOPs, bytes moved and activation memory per event.

Dense figures come from the layer shapes. Each layer's entry counts its
forward and backward FLOPs and the bytes it must at least read and write
(inputs, outputs, weights, pooling indices), the quantities of a roofline
model. Sparse FLOPs come from the number of active sites entering each block.
"""

from dataclasses import asdict, dataclass

from raylar.models.config import (
    HIDDEN_UNITS,
    KERNEL_SIZE,
    NUM_CLASSES,
    POOL_WINDOWS,
    head_features,
    pooled_shapes,
)

FLOAT32_BYTES = 4
INDEX_BYTES = 8  # max pooling keeps int64 argmax indices


@dataclass
class LayerCost:
    """Forward and backward cost of one layer for one event."""

    name: str
    forward_flops: int
    backward_flops: int
    forward_bytes: int
    backward_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def dense_layer_costs(
    image_shape, channels, activation_bytes: int = FLOAT32_BYTES, head_pooling: str = "flatten"
) -> list[LayerCost]:
    """Return the cost of every JishNet layer (convolution, ReLU, pooling, linear) for one event.

    The layer order is the plain one (convolution, ReLU, pooling). The first
    convolution computes no input gradient, since the image needs none.
    ``activation_bytes`` is the size of one feature-map element (2 under bfloat16).
    """
    costs = []
    rows, cols = image_shape
    in_channels = 1
    area_out = None
    for index, (out_channels, window) in enumerate(zip(channels, POOL_WINDOWS, strict=True)):
        block = index + 1
        area = rows * cols
        weights = KERNEL_SIZE * KERNEL_SIZE * in_channels * out_channels
        conv_flops = 2 * weights * area
        input_bytes = in_channels * area * (FLOAT32_BYTES if index == 0 else activation_bytes)
        map_bytes = out_channels * area * activation_bytes
        weight_bytes = weights * FLOAT32_BYTES
        input_gradient = index > 0
        costs.append(
            LayerCost(
                f"conv{block}",
                forward_flops=conv_flops,
                backward_flops=conv_flops * (2 if input_gradient else 1),
                forward_bytes=input_bytes + map_bytes + weight_bytes,
                # read the output gradient and the input, write weight (and input) gradients
                backward_bytes=map_bytes
                + input_bytes
                + 2 * weight_bytes
                + (input_bytes if input_gradient else 0),
            )
        )
        elements = out_channels * area
        costs.append(
            LayerCost(
                f"relu{block}",
                forward_flops=elements,
                backward_flops=elements,
                forward_bytes=2 * map_bytes,
                backward_bytes=3 * map_bytes,
            )
        )
        rows, cols = rows // window, cols // window
        area_out = rows * cols
        pooled_bytes = out_channels * area_out * activation_bytes
        index_bytes = out_channels * area_out * INDEX_BYTES
        costs.append(
            LayerCost(
                f"pool{block}",
                forward_flops=elements,
                backward_flops=0,
                forward_bytes=map_bytes + pooled_bytes + index_bytes,
                # read the gradient and indices, fill and scatter into a full-size gradient
                backward_bytes=pooled_bytes + index_bytes + map_bytes,
            )
        )
        in_channels = out_channels

    features = head_features(channels, image_shape, head_pooling)
    for index, (fan_in, fan_out) in enumerate(
        zip((features, *HIDDEN_UNITS), (*HIDDEN_UNITS, NUM_CLASSES), strict=True)
    ):
        flops = 2 * fan_in * fan_out
        weight_bytes = fan_in * fan_out * FLOAT32_BYTES
        costs.append(
            LayerCost(
                f"linear{index + 1}",
                forward_flops=flops,
                backward_flops=2 * flops,
                forward_bytes=weight_bytes + (fan_in + fan_out) * FLOAT32_BYTES,
                backward_bytes=2 * weight_bytes + (2 * fan_in + fan_out) * FLOAT32_BYTES,
            )
        )
    return costs


def dense_memory(
    image_shape,
    channels,
    checkpointing: bool = False,
    fused_pooling: bool = False,
    bf16_autocast: bool = False,
    checkpointed_blocks: int = 2,
    fused_first_block: bool = False,
) -> dict:
    """Estimate JishNet's activation memory per event in bytes.

    ``activation_bytes`` counts the tensors autograd keeps from the forward to
    the backward pass. ``peak_training_bytes`` adds the largest set of gradients
    alive at once, which is in the first block's backward pass: two full-size
    maps with the plain layer order, one with ``fused_pooling``. Checkpointed
    blocks keep only their input, but they are recomputed before their backward
    pass, so checkpointing lowers the kept bytes far more than the peak.
    NOTE: an estimate from the shapes; allocator caching and convolution
    workspace (cuDNN, oneDNN) come on top, so measure with the benchmarks.
    ``fused_first_block`` assumes the compiled CPU kernel runs the first block:
    it keeps a padded copy of the image instead of the image, the pooled map
    and one byte of argmax per pooled value, and its backward pass makes no
    full-size gradient.
    """
    element = 2 if bf16_autocast else FLOAT32_BYTES
    rows, cols = image_shape
    input_bytes = rows * cols * FLOAT32_BYTES
    kept_per_block = []
    output_per_block = []
    full_maps = []
    for out_channels, (pooled_rows, pooled_cols) in zip(
        channels, pooled_shapes(image_shape), strict=True
    ):
        full_map = out_channels * rows * cols * element
        pooled = out_channels * pooled_rows * pooled_cols
        pooled_kept = pooled * (element + INDEX_BYTES)
        kept_per_block.append(pooled_kept if fused_pooling else full_map + pooled_kept)
        output_per_block.append(pooled * element)
        full_maps.append(full_map)
        rows, cols = pooled_rows, pooled_cols

    gradient_maps = 1 if fused_pooling else 2
    peak_gradients = gradient_maps * full_maps[0]
    if fused_first_block:
        padded = (image_shape[0] + 4) * (image_shape[1] + 4) * FLOAT32_BYTES
        first_pooled = output_per_block[0] // element
        input_bytes = padded
        kept_per_block[0] = first_pooled * (FLOAT32_BYTES + 1)
        output_per_block[0] = first_pooled * FLOAT32_BYTES
        peak_gradients = gradient_maps * full_maps[1]
    if checkpointing:
        # a checkpointed block keeps only its input, which is the previous block's output
        kept = (
            input_bytes
            + sum(output_per_block[:checkpointed_blocks])
            + sum(kept_per_block[checkpointed_blocks:])
        )
        # the recomputed first block's activations are alive again during its backward pass
        peak = kept + kept_per_block[0] + peak_gradients
    else:
        kept = input_bytes + sum(kept_per_block)
        peak = kept + peak_gradients
    return {"activation_bytes": int(kept), "peak_training_bytes": int(peak)}


def sparse_flops_per_site(channels) -> list[int]:
    """Return the forward FLOPs of each submanifold convolution per active input site.

    This is the upper bound 2 * 25 * C_in * C_out, reached where every kernel
    offset finds an active neighbour. Along a thin track most offsets find none.
    """
    widths = (1, *channels)
    kernel_area = KERNEL_SIZE * KERNEL_SIZE
    return [2 * kernel_area * widths[i] * widths[i + 1] for i in range(len(channels))]


def sparse_forward_flops(
    channels, image_shape, active_sites, samples: int = 1, head_pooling: str = "flatten"
) -> int:
    """Return an upper bound on SCNet's forward FLOPs from the active sites entering each block.

    ``active_sites`` lists, per block, the active sites of ``samples`` events
    together (SCNet's ``last_active_sites`` for a batch); the dense head adds
    its FLOPs once per sample.
    """
    if len(active_sites) != len(channels):
        raise ValueError(
            f"expected {len(channels)} active-site counts, one per block, got {len(active_sites)}"
        )
    flops = sum(
        n * per_site
        for n, per_site in zip(active_sites, sparse_flops_per_site(channels), strict=True)
    )
    widths = (head_features(channels, image_shape, head_pooling), *HIDDEN_UNITS, NUM_CLASSES)
    flops += samples * sum(2 * widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    return int(flops)


def sparse_activation_bytes(channels, active_sites) -> int:
    """Estimate the feature bytes SCNet keeps for the backward pass, from the active sites per block.

    Each block keeps its input features and its convolution output; the
    rulebooks (index pairs) and the pooled features come on top.
    """
    widths = (1, *channels)
    return int(
        sum(n * (widths[i] + widths[i + 1]) * FLOAT32_BYTES for i, n in enumerate(active_sites))
    )
