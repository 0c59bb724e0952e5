"""Build the classifiers by name and describe their size and cost."""

from collections.abc import Sequence

from torch import nn

from raylar.log import get_logger
from raylar.models import flops
from raylar.models.config import (
    ModelConfigError,
    check_channels,
    check_flag,
    check_head_pooling,
    image_shape,
)
from raylar.models.jishnet import JishNet
from raylar.models.scnet import SCNet

log = get_logger(__name__)

MODELS = {"jishnet": JishNet, "scnet": SCNet}
OPTIONS = {
    "jishnet": (
        "channels",
        "checkpointing",
        "bf16_autocast",
        "fused_pooling",
        "channels_last",
        "fused_first_block",
        "head_pooling",
    ),
    "scnet": ("channels", "head_pooling"),
}


def check_options(name: str, options: dict) -> str:
    """Check a model name and its options without building anything, and return the lower-case name.

    Raises ``ModelConfigError`` for an unknown name or option, invalid
    ``channels`` or an on/off option that is not a boolean.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ModelConfigError(
            f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}"
        )
    unknown = sorted(set(options) - set(OPTIONS[key]))
    if unknown:
        raise ModelConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {key!r}: "
            f"it takes {', '.join(OPTIONS[key])}"
        )
    for option, value in options.items():
        if option == "channels":
            check_channels(value)
        elif option == "head_pooling":
            check_head_pooling(value)
        else:
            check_flag(option, value)
    return key


def build_model(name: str, image_size, **options) -> nn.Module:
    """Build ``jishnet`` or ``scnet`` for square images of ``image_size`` pixels a side.

    ``image_size`` may also be a (rows, cols) pair. Options are the model
    class's keyword arguments (see :class:`JishNet` and :class:`SCNet`). The
    parameter count, activation memory and forward FLOPs per event are logged.
    """
    key = check_options(name, options)
    model = MODELS[key](image_size, **options)
    description = describe_model(model, image_size)
    log.info(
        "built %s for %s images: %s parameters, %s per event, %s",
        key,
        "x".join(str(side) for side in description["image_shape"]),
        f"{description['parameters']:,}",
        _format_memory(description),
        _format_flops(description),
    )
    return model


def describe_model(model: nn.Module, image_size, active_sites: Sequence[int] | None = None) -> dict:
    """Return the parameter count, activation bytes and forward FLOPs per event of a built model.

    For SCNet the memory and FLOPs depend on the hits: pass ``active_sites``
    (active sites of one event entering each block, e.g. ``last_active_sites``
    after a one-event forward pass) to get them; without it they are ``None``
    and ``flops_per_active_site`` gives the per-site cost of each block.
    """
    shape = image_shape(image_size)
    parameters = sum(p.numel() for p in model.parameters())
    description = {
        "model": type(model).__name__.lower(),
        "input_kind": model.input_kind,
        "image_shape": list(shape),
        "channels": list(model.channels),
        "head_pooling": model.head_pooling,
        "parameters": int(parameters),
    }
    if model.input_kind == "dense":
        costs = flops.dense_layer_costs(shape, model.channels, head_pooling=model.head_pooling)
        memory = flops.dense_memory(
            shape,
            model.channels,
            checkpointing=model.checkpointing,
            fused_pooling=model.fused_pooling,
            bf16_autocast=model.bf16_autocast,
            fused_first_block=model.fused_first_block,
        )
        description.update(
            options={
                "checkpointing": model.checkpointing,
                "bf16_autocast": model.bf16_autocast,
                "fused_pooling": model.fused_pooling,
                "channels_last": model.channels_last,
                "fused_first_block": model.fused_first_block,
            },
            activation_bytes_per_event=memory["activation_bytes"],
            peak_training_bytes_per_event=memory["peak_training_bytes"],
            forward_flops_per_event=sum(cost.forward_flops for cost in costs),
            training_flops_per_event=sum(
                cost.forward_flops + cost.backward_flops for cost in costs
            ),
        )
        return description

    description["flops_per_active_site"] = flops.sparse_flops_per_site(model.channels)
    if active_sites is None:
        description.update(activation_bytes_per_event=None, forward_flops_per_event=None)
    else:
        description.update(
            active_sites=list(active_sites),
            activation_bytes_per_event=flops.sparse_activation_bytes(model.channels, active_sites),
            forward_flops_per_event=flops.sparse_forward_flops(model.channels, shape, active_sites,
                                                               head_pooling=model.head_pooling),
        )
    return description


def _format_memory(description: dict) -> str:
    if description["activation_bytes_per_event"] is None:
        return "activation memory proportional to the active sites"
    text = f"{_bytes(description['activation_bytes_per_event'])} of activations"
    if "peak_training_bytes_per_event" in description:
        text += f" ({_bytes(description['peak_training_bytes_per_event'])} peak in training)"
    return text


def _bytes(count: float) -> str:
    """Format a byte count in GB, or in MB below 0.1 GB so small images do not read 0.00 GB."""
    return f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def _format_flops(description: dict) -> str:
    if description["forward_flops_per_event"] is None:
        per_site = ", ".join(f"{f / 1e3:.1f}k" for f in description["flops_per_active_site"])
        return f"forward FLOPs per active site by block at most {per_site}"
    return f"{description['forward_flops_per_event'] / 1e9:.2f} GFLOP forward"
