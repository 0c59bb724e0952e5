"""Event display: one collection-plane image, wire against tick, in ADC counts."""

import numpy as np

from raylar import geometry
from raylar.data.types import Event

MAX_DISPLAY_PIXELS = 1200


def _summary(event: Event) -> str:
    truth = event.truth or {}
    name = (
        geometry.CLASS_NAMES[event.label]
        if 0 <= event.label < geometry.NUM_CLASSES
        else str(event.label)
    )
    symbol = geometry.CLASS_SYMBOLS[event.label] if 0 <= event.label < geometry.NUM_CLASSES else "?"
    parts = [f"event {event.event_id}: {symbol} ({name}, label {event.label})"]
    if "particle" in truth:
        parts.append(
            f"{truth['particle']} p = {truth['momentum_mev']:.0f} MeV/c, T = {truth['kinetic_mev']:.0f} MeV"
        )
    line2 = []
    if "vertex_cm" in truth:
        x, y, z = truth["vertex_cm"]
        line2.append(f"vertex (x, y, z) = ({x:.0f}, {y:.0f}, {z:.0f}) cm")
    if "primary_fate" in truth:
        line2.append(f"primary {truth['primary_fate']}")
    decays = [d["particle"] for d in truth.get("decay_products", []) if d["particle"] != "nu"]
    if decays:
        line2.append(
            "decay products: " + ", ".join(decays[:6]) + (" ..." if len(decays) > 6 else "")
        )
    line3 = [f"{event.num_hits} pixels, occupancy {100 * event.occupancy:.3f} %"]
    if "visible_charge_e" in truth:
        line3.append(
            f"deposited {truth['deposited_energy_mev']:.0f} MeV, visible {truth['visible_charge_e'] / 1e6:.2f} M e-"
        )
    return "\n".join([", ".join(parts), ", ".join(line2), ", ".join(line3)])


def draw_event(event: Event, out_path: str, zoom: bool = True) -> str:
    """Draw ``event`` into a PNG at ``out_path`` and return the path.

    Large images are shown at reduced resolution, each block of pixels showing its maximum ADC
    value so that thin tracks stay visible. ``zoom`` crops to the region around the hits.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    rows, cols = event.shape
    row_lo, row_hi, col_lo, col_hi = 0, rows, 0, cols
    if zoom and event.num_hits:
        # Crop to the blocks of 1/36 of the image side that hold at least 0.5 % of the charge,
        # so scattered noise pixels do not set the view.
        cell = max(rows, cols) // 36 + 1
        keys = (event.rows // cell) * 10_000 + event.cols // cell
        unique, inverse = np.unique(keys, return_inverse=True)
        charge = np.bincount(inverse, weights=event.values)
        busy = unique[charge >= 0.005 * charge.sum()]
        pad = cell
        row_lo = max(int((busy // 10_000).min()) * cell - pad, 0)
        row_hi = min(int((busy // 10_000).max() + 1) * cell + pad, rows)
        col_lo = max(int((busy % 10_000).min()) * cell - pad, 0)
        col_hi = min(int((busy % 10_000).max() + 1) * cell + pad, cols)
        side = max(row_hi - row_lo, col_hi - col_lo)
        row_hi, col_hi = min(row_lo + side, rows), min(col_lo + side, cols)
    height, width = row_hi - row_lo, col_hi - col_lo
    block = max(1, int(np.ceil(max(height, width) / MAX_DISPLAY_PIXELS)))
    image = np.zeros((int(np.ceil(height / block)), int(np.ceil(width / block))), dtype=np.float32)
    inside = (
        (event.rows >= row_lo)
        & (event.rows < row_hi)
        & (event.cols >= col_lo)
        & (event.cols < col_hi)
    )
    np.maximum.at(
        image,
        ((event.rows[inside] - row_lo) // block, (event.cols[inside] - col_lo) // block),
        event.values[inside],
    )

    figure, axes = plt.subplots(figsize=(9, 9.6))
    masked = np.ma.masked_less_equal(image, 0)
    vmax = float(image.max()) if image.max() > 0 else 1.0
    handle = axes.imshow(
        masked,
        origin="lower",
        cmap="viridis",
        norm=LogNorm(vmin=max(1.0, min(10.0, vmax / 10)), vmax=max(vmax, 2.0)),
        extent=(col_lo, col_hi, row_lo, row_hi),
        interpolation="nearest",
        aspect="auto",
    )
    axes.set_facecolor("white")
    factor = geometry.IMAGE_SIZE // rows if rows else 1
    unit = "" if factor == 1 else f" (x{factor}, downsampled)"
    axes.set_xlabel(f"tick - {geometry.TICK_START}{unit}  [0.5 us per tick]")
    axes.set_ylabel(f"collection wire{unit}  [3 mm pitch]")
    axes.set_title(_summary(event), fontsize=9, loc="left")
    colorbar = figure.colorbar(handle, ax=axes, fraction=0.046, pad=0.02)
    colorbar.set_label("ADC counts" + (" (block maximum)" if block > 1 else ""))
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path
