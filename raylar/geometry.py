"""Image geometry of MicroBooNE's collection plane as the training images use it.

One event image is 3156 collection wires by the ticks 3200-6400 of a 9600-tick
readout (0.5 us per tick), zero-padded to 3600 x 3600. Rows are wires, columns
are ticks. An integer ``downsample`` factor sums blocks of pixels, so the whole
event stays in frame at 3600 / downsample pixels a side.
"""

WIRES = 3156
TICK_START = 3200
TICK_STOP = 6400
TICKS = TICK_STOP - TICK_START
IMAGE_SIZE = 3600
TICK_PERIOD_US = 0.5
WIRE_PITCH_CM = 0.3

CLASS_NAMES = ("gamma", "electron", "muon", "pion", "kaon")
CLASS_SYMBOLS = ("γ", "e±", "μ+", "π+", "K+")
NUM_CLASSES = len(CLASS_NAMES)


def valid_downsample_factors() -> list[int]:
    """Return the factors that divide the 3600-pixel image side exactly."""
    return [k for k in range(1, IMAGE_SIZE + 1) if IMAGE_SIZE % k == 0]


def image_size(downsample: int = 1) -> int:
    """Return the side in pixels of an image downsampled by ``downsample``."""
    if not isinstance(downsample, int) or downsample < 1 or IMAGE_SIZE % downsample:
        small = [k for k in valid_downsample_factors() if k <= 30]
        raise ValueError(
            f"invalid downsample factor {downsample!r}: it must be a positive integer that "
            f"divides the image side {IMAGE_SIZE}, for example one of {small}"
        )
    return IMAGE_SIZE // downsample
