"""PNG pictures of a model and its training: image grids and loss curves.

Figures are drawn with matplotlib's object API on an Agg canvas, never
through pyplot, so importing fastvae changes no global matplotlib state (a
notebook's backend stays as it was) and nothing needs a display. Files are
written atomically like every file fastvae owns.
"""

from __future__ import annotations

import io as _bytes_io
import math
from collections.abc import Mapping, Sequence

import numpy as np

from fastvae.io import write_atomic

__all__ = ["tile_images", "image_grid", "reconstruction_grid", "loss_curve"]

# Pixels per image cell in grids; 28x28 images at this size read well.
_CELL_INCHES = 0.45
_DPI = 100


def tile_images(images, image_shape, n_cols: int, pad: int = 1) -> np.ndarray:
    """Arrange flattened images in a grid, separated by `pad` pixels of 0.

    Parameters
    ----------
    images : array-like of shape (n_images, rows * cols)
    image_shape : tuple of (int, int)
        ``(rows, cols)`` of one image (row-major).
    n_cols : int
        Images per grid row; the last grid row is padded with blanks.
    pad : int, default=1

    Returns
    -------
    ndarray of shape (grid_rows * (rows + pad) - pad, n_cols * (cols + pad) - pad)
    """
    images = np.asarray(images, dtype=np.float64)
    rows, cols = (int(s) for s in image_shape)
    if images.ndim != 2 or images.shape[1] != rows * cols:
        raise ValueError(
            f"images must have shape (n, {rows * cols}) for image_shape "
            f"{(rows, cols)}, got {images.shape}"
        )
    if n_cols < 1 or len(images) == 0:
        raise ValueError("need at least one image and one column")
    n_rows = math.ceil(len(images) / n_cols)
    grid = np.zeros((n_rows * (rows + pad) - pad, n_cols * (cols + pad) - pad))
    for k, image in enumerate(images):
        r, c = divmod(k, n_cols)
        top, left = r * (rows + pad), c * (cols + pad)
        grid[top : top + rows, left : left + cols] = image.reshape(rows, cols)
    return grid


def _save_figure(fig, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = _bytes_io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


def _grid_figure(grid: np.ndarray, title: str | None, extra_height: float = 0.0):
    from matplotlib.figure import Figure

    height, width = grid.shape
    # Size the figure so one image pixel is about one screen pixel or more.
    scale = max(_CELL_INCHES / 28, 3.0 / max(width, 1))
    fig = Figure(figsize=(width * scale, height * scale + 0.4 + extra_height))
    ax = fig.add_axes((0.0, 0.0, 1.0, height * scale / (height * scale + 0.4 + extra_height)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10, y=0.98)
    return fig, ax


def _unit_range(images: np.ndarray) -> np.ndarray:
    """Images scaled to [0, 1] for display: data outside that range (Gaussian
    likelihood on unscaled data) is min-max normalised as a whole."""
    images = np.asarray(images, dtype=np.float64)
    lo, hi = float(images.min()), float(images.max())
    if lo >= 0.0 and hi <= 1.0:
        return images
    return (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)


def image_grid(images, image_shape, path, *, n_cols: int | None = None,
               title: str | None = None) -> None:
    """Save flattened images as one PNG grid.

    Parameters
    ----------
    images : array-like of shape (n_images, rows * cols)
        Pixel values in [0, 1] (anything else is min-max scaled for display).
    image_shape : tuple of (int, int)
    path : str or os.PathLike
        Where to write the PNG (atomically).
    n_cols : int, optional
        Images per grid row; about sqrt(n_images) by default.
    title : str, optional
    """
    images = _unit_range(images)
    n_cols = n_cols or math.ceil(math.sqrt(len(images)))
    fig, _ = _grid_figure(tile_images(images, image_shape, n_cols), title)
    _save_figure(fig, path)


def reconstruction_grid(originals, reconstructions, image_shape, path, *,
                        n_cols: int = 16, title: str | None = None) -> None:
    """Save originals and their reconstructions as a PNG, in alternating rows.

    Each pair of grid rows shows up to `n_cols` originals (upper row) and their
    reconstructions (lower row) in the same columns.

    Parameters
    ----------
    originals, reconstructions : array-like of shape (n_images, rows * cols)
    image_shape : tuple of (int, int)
    path : str or os.PathLike
    n_cols : int, default=16
    title : str, optional
    """
    originals = np.asarray(originals, dtype=np.float64)
    reconstructions = np.asarray(reconstructions, dtype=np.float64)
    if originals.shape != reconstructions.shape:
        raise ValueError(
            f"originals {originals.shape} and reconstructions "
            f"{reconstructions.shape} must have the same shape"
        )
    both = _unit_range(np.concatenate([originals, reconstructions]))
    originals, reconstructions = both[: len(originals)], both[len(originals) :]
    n_cols = min(n_cols, len(originals))
    rows = []
    for start in range(0, len(originals), n_cols):
        chunk = slice(start, start + n_cols)
        pair = np.concatenate([originals[chunk], reconstructions[chunk]])
        # pad a short last chunk so originals and reconstructions stay aligned
        short = n_cols - len(originals[chunk])
        blank = np.zeros((short, pair.shape[1]))
        rows.append(np.concatenate([originals[chunk], blank, reconstructions[chunk], blank]))
    grid = tile_images(np.concatenate(rows), image_shape, n_cols)
    fig, _ = _grid_figure(grid, title or "originals (odd rows) and reconstructions (even rows)")
    _save_figure(fig, path)


def loss_curve(history: Mapping[str, Sequence], path, *, title: str | None = None) -> None:
    """Save the training curves of a fitted VAE's ``history_`` as a PNG.

    Plots the mean training loss (negative ELBO with the KL weight used) per
    epoch, the loss over windows of steps when recorded, and the validation
    negative ELBO when validation data was given; the KL term on a second
    axis.

    Parameters
    ----------
    history : mapping
        ``VAE.history_``: lists "epoch", "loss", "kl", "val_elbo", and
        optionally "step" and "step_loss".
    path : str or os.PathLike
    title : str, optional
    """
    from matplotlib.figure import Figure

    epochs = list(history.get("epoch", []))
    if not epochs:
        raise ValueError("history has no epochs to plot")
    steps_per_epoch = None
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    step, step_loss = list(history.get("step", [])), list(history.get("step_loss", []))
    if step and step_loss:
        # put step windows on the epoch axis: epoch e ends at step e * (steps/epoch)
        total_steps = step[-1]
        steps_per_epoch = total_steps / epochs[-1] if epochs[-1] else None
    if steps_per_epoch:
        ax.plot(np.asarray(step) / steps_per_epoch, step_loss, color="0.7",
                linewidth=0.8, label="train loss (step windows)")
    ax.plot(epochs, history["loss"], "o-", color="C0", label="train loss (epoch mean)")
    val = [v for v in history.get("val_elbo", []) if v is not None]
    if len(val) == len(epochs):
        ax.plot(epochs, -np.asarray(val), "s-", color="C1", label="validation -ELBO")
    ax.set_xlabel("epoch")
    # the first steps' loss is many times the final one: a log axis keeps the
    # later epochs readable
    ax.set_yscale("log")
    ax.set_ylabel("nats per sample (log scale)")
    ax.grid(True, alpha=0.3)
    if "kl" in history and len(history["kl"]) == len(epochs):
        ax2 = ax.twinx()
        ax2.plot(epochs, history["kl"], "^--", color="C2", label="KL (epoch mean)")
        ax2.set_ylabel("KL, nats per sample", color="C2")
        lines = ax.get_lines() + ax2.get_lines()
    else:
        lines = ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    ax.set_title(title or "training curves")
    fig.tight_layout()
    _save_figure(fig, path)
