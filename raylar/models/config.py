"""Topology constants shared by JishNet and SCNet, and the checks on their options."""

from collections.abc import Sequence

KERNEL_SIZE = 5
POOL_WINDOWS = (5, 5, 4, 4)
HIDDEN_UNITS = (256, 32)
NUM_CLASSES = 5
# Each block's output width; 13 is the widest first layer for which the
# training memory of 7 full-size JishNet events fits a 16 GB GPU (see JishNet).
DEFAULT_CHANNELS = (13, 26, 52, 104)
MAX_CHANNELS = 1024
# The smallest side that survives the pooling chain with one pixel left: 5*5*4*4.
MIN_IMAGE_SIZE = 5 * 5 * 4 * 4
# The head's input from the last block's map: the whole map flattened (the published
# topology), or each channel's maximum and mean over positions, which do not depend on where
# in the image the particle lies.
HEAD_POOLINGS = ("flatten", "max_mean")


class ModelConfigError(ValueError):
    """An invalid model name, image size or option, raised before any layer is built."""


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Return (rows, cols) for an image side or a (rows, cols) pair, checked against the pooling chain."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        shape = (image_size, image_size)
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) for side in image_size)
    ):
        shape = (int(image_size[0]), int(image_size[1]))
    else:
        raise ModelConfigError(
            f"invalid image size {image_size!r}: expected an integer side in pixels "
            f"or a (rows, cols) pair of integers, each at least {MIN_IMAGE_SIZE}"
        )
    for side in shape:
        if side < MIN_IMAGE_SIZE:
            raise ModelConfigError(
                f"image size {image_size!r} is too small: each side must be at least "
                f"{MIN_IMAGE_SIZE} pixels, because the max-pooling windows "
                f"{'x'.join(str(w) for w in POOL_WINDOWS)} shrink it by a factor of "
                f"{MIN_IMAGE_SIZE}; use a smaller downsample factor"
            )
    return shape


def pooled_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Return the feature-map shape after each pooling window (floor division, as torch pools)."""
    shapes = []
    rows, cols = shape
    for window in POOL_WINDOWS:
        rows, cols = rows // window, cols // window
        shapes.append((rows, cols))
    return shapes


def check_channels(channels) -> tuple[int, ...]:
    """Return the four block widths as a tuple of ints, or raise naming the bad value."""
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise ModelConfigError(
            f"invalid channels {channels!r}: expected a sequence of {len(POOL_WINDOWS)} "
            f"integers from 1 to {MAX_CHANNELS}, one per convolution block"
        )
    if len(channels) != len(POOL_WINDOWS):
        raise ModelConfigError(
            f"invalid channels {tuple(channels)!r}: expected {len(POOL_WINDOWS)} widths, "
            f"one per convolution block, got {len(channels)}"
        )
    for width in channels:
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_CHANNELS:
            raise ModelConfigError(
                f"invalid channel width {width!r} in channels {tuple(channels)!r}: "
                f"each width must be an integer from 1 to {MAX_CHANNELS}"
            )
    return tuple(int(width) for width in channels)


def check_flag(name: str, value) -> bool:
    """Return an on/off option, or raise naming it when it is not a boolean (e.g. the text "false")."""
    if not isinstance(value, bool):
        raise ModelConfigError(f"invalid {name} {value!r}: expected true or false")
    return value


def check_head_pooling(value) -> str:
    """Return a head pooling name, or raise naming the bad value and the choices."""
    if value not in HEAD_POOLINGS:
        raise ModelConfigError(f"invalid head_pooling {value!r}: expected one of {', '.join(HEAD_POOLINGS)}")
    return value


def head_features(channels: Sequence[int], shape: tuple[int, int], head_pooling: str) -> int:
    """Return the number of values the head's first linear layer reads."""
    if head_pooling == "max_mean":
        return 2 * channels[-1]
    rows, cols = pooled_shapes(shape)[-1]
    return channels[-1] * rows * cols
