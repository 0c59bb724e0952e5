"""The records that flow between the simulator, the readers, the store and the loader."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Event:
    """One collection-plane image stored as its non-zero pixels.

    ``rows`` are wire indices and ``cols`` tick indices (both int32, counted in
    the possibly downsampled image), ``values`` the pixel values in ADC counts
    (float32). ``shape`` is (rows, cols) of the full image. ``truth`` holds
    generator information where the source has it, else an empty dict.
    """

    event_id: int
    label: int
    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    truth: dict = field(default_factory=dict)

    @property
    def num_hits(self) -> int:
        return int(self.values.shape[0])

    @property
    def occupancy(self) -> float:
        """Fraction of pixels that are non-zero."""
        return self.num_hits / float(self.shape[0] * self.shape[1])

    def dense(self) -> np.ndarray:
        """Return the image as a dense float32 array of ``shape``."""
        image = np.zeros(self.shape, dtype=np.float32)
        image[self.rows, self.cols] = self.values
        return image


@dataclass
class SparseBatch:
    """A batch in the form spconv's ``SparseConvTensor`` takes.

    ``coords`` is int32 of shape (N, 3) with columns (sample in batch, row, col);
    ``features`` is float32 of shape (N, 1); ``spatial_shape`` is (rows, cols).
    """

    coords: "torch.Tensor"  # noqa: F821
    features: "torch.Tensor"  # noqa: F821
    spatial_shape: tuple[int, int]
    batch_size: int

    def to(self, device) -> "SparseBatch":
        return SparseBatch(
            self.coords.to(device), self.features.to(device), self.spatial_shape, self.batch_size
        )
