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

from fastvae._atomic import write_atomic

__all__ = [
    "tile_images",
    "image_grid",
    "reconstruction_grid",
    "labelled_grid",
    "loss_curve",
    "latent_scatter",
    "grid_zoom",
]

_DPI = 100
# Image grids are drawn pixel-exact: each image pixel becomes zoom x zoom
# screen pixels (no resampling), zoom chosen so that an image is about this
# many screen pixels on its longer side (28x28 images: zoom 2, 56 px).
_CELL_PX = 56
# Grey lines between the images, visible on black and on white backgrounds.
_PAD_VALUE = 0.35
# Bands around a grid, in screen pixels: a margin on every side, a title
# band above, a band for column labels above the grid and one for row
# labels to its left (only when there are such labels).
_MARGIN_PX = 4
_TITLE_PX = 22
_COL_LABEL_PX = 14
_ROW_LABEL_PX = 64
_TITLE_FONT = 9
_LABEL_FONT = 7


def tile_images(
    images, image_shape, n_cols: int, pad: int = 1, pad_value: float = 0.0
) -> np.ndarray:
    """Arrange flattened images in a grid, separated by `pad` pixels of `pad_value`.

    Parameters
    ----------
    images : array-like of shape (n_images, rows * cols)
    image_shape : tuple of (int, int)
        ``(rows, cols)`` of one image (row-major).
    n_cols : int
        Images per grid row; the last grid row is padded with blanks (0).
    pad : int, default=1
    pad_value : float, default=0.0

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
    grid = np.full(
        (n_rows * (rows + pad) - pad, n_cols * (cols + pad) - pad), float(pad_value)
    )
    for k in range(n_rows * n_cols):
        r, c = divmod(k, n_cols)
        top, left = r * (rows + pad), c * (cols + pad)
        grid[top : top + rows, left : left + cols] = (
            images[k].reshape(rows, cols) if k < len(images) else 0.0
        )
    return grid


def grid_zoom(image_shape) -> int:
    """Screen pixels per image pixel in fastvae's image grids.

    Parameters
    ----------
    image_shape : tuple of (int, int)

    Returns
    -------
    int
        ``max(1, round(56 / max(image_shape)))``: 2 for 28x28 images.
    """
    return max(1, round(_CELL_PX / max(int(s) for s in image_shape)))


def _save_figure(fig, path) -> None:
    """Render on Agg and write an RGB PNG: the figures are opaque, and
    dropping the alpha channel makes the files about a tenth smaller."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image  # a dependency of matplotlib

    fig.set_dpi(_DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buffer = _bytes_io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="png", optimize=True, dpi=(_DPI, _DPI))
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


def _text_width_px(text: str, fontsize: float) -> float:
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    width, _, _ = RendererAgg(1, 1, _DPI).get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return width


def _render_grid(
    path, images, image_shape, n_cols, *, title=None, row_labels=None, col_labels=None
) -> None:
    """Draw a grid of images pixel-exact, with optional title and labels.

    The picture is ``left + zoom * grid_width + 4`` pixels wide (wider only
    if the title needs it) and ``top + zoom * grid_height + 4`` high, where
    left = 4 (+ 64 with row labels) and top = 4 (+ 22 with a title, + 14 with
    column labels).
    """
    from matplotlib.figure import Figure

    rows, cols = (int(s) for s in image_shape)
    zoom = grid_zoom(image_shape)
    grid = tile_images(images, image_shape, n_cols, pad_value=_PAD_VALUE)
    grid_h, grid_w = grid.shape[0] * zoom, grid.shape[1] * zoom
    left = _MARGIN_PX + (_ROW_LABEL_PX if row_labels else 0)
    top = (
        _MARGIN_PX + (_TITLE_PX if title else 0) + (_COL_LABEL_PX if col_labels else 0)
    )
    width = left + grid_w + _MARGIN_PX
    if title:
        title_px = math.ceil(_text_width_px(title, _TITLE_FONT))
        width = max(width, title_px + 4 * _MARGIN_PX)
    height = top + grid_h + _MARGIN_PX
    x0 = left + (width - _MARGIN_PX - left - grid_w) // 2  # centred if widened
    # the 1e-3 keeps width / dpi * dpi from rounding down a pixel in Agg
    fig = Figure(figsize=((width + 1e-3) / _DPI, (height + 1e-3) / _DPI), dpi=_DPI)
    pixels = np.repeat(np.repeat(grid, zoom, axis=0), zoom, axis=1)
    fig.figimage(
        pixels, xo=x0, yo=_MARGIN_PX, cmap="gray", vmin=0.0, vmax=1.0, origin="upper"
    )
    if title:
        fig.text(
            0.5,
            1.0 - (_MARGIN_PX + _TITLE_PX / 2) / height,
            title,
            ha="center",
            va="center",
            fontsize=_TITLE_FONT,
        )
    for c, label in enumerate(col_labels or ()):
        x = x0 + (c * (cols + 1) + cols / 2) * zoom
        fig.text(
            x / width,
            1.0 - (top - _COL_LABEL_PX / 2) / height,
            label,
            ha="center",
            va="center",
            fontsize=_LABEL_FONT,
        )
    for r, label in enumerate(row_labels or ()):
        y = _MARGIN_PX + grid_h - (r * (rows + 1) + rows / 2) * zoom
        fig.text(
            (x0 - 4) / width,
            y / height,
            label,
            ha="right",
            va="center",
            fontsize=_LABEL_FONT,
        )
    _save_figure(fig, path)


def _unit_range(images: np.ndarray) -> np.ndarray:
    """Images scaled to [0, 1] for display: data outside that range (Gaussian
    likelihood on unscaled data) is min-max normalised as a whole."""
    images = np.asarray(images, dtype=np.float64)
    lo, hi = float(images.min()), float(images.max())
    if lo >= 0.0 and hi <= 1.0:
        return images
    return (images - lo) / (hi - lo) if hi > lo else np.zeros_like(images)


def image_grid(
    images, image_shape, path, *, n_cols: int | None = None, title: str | None = None
) -> None:
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

    Notes
    -----
    Grids are drawn pixel-exact: every image pixel is ``grid_zoom(image_shape)``
    screen pixels square, and images are separated by one grey image pixel.
    """
    images = _unit_range(images)
    n_cols = n_cols or math.ceil(math.sqrt(len(images)))
    _render_grid(path, images, image_shape, n_cols, title=title)


def reconstruction_grid(
    originals,
    reconstructions,
    image_shape,
    path,
    *,
    n_cols: int = 16,
    title: str | None = None,
) -> None:
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
        # pad a short last chunk so originals and reconstructions stay aligned
        short = n_cols - len(originals[chunk])
        blank = np.zeros((short, originals.shape[1]))
        rows.append(
            np.concatenate([originals[chunk], blank, reconstructions[chunk], blank])
        )
    _render_grid(
        path,
        np.concatenate(rows),
        image_shape,
        n_cols,
        title=title or "originals (odd rows) and reconstructions (even rows)",
    )


def labelled_grid(
    images,
    image_shape,
    path,
    *,
    n_cols: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Save images as a PNG grid with a label per grid row and per column.

    The picture of latent traversals (one row per latent dimension, one
    column per value) and interpolations (one column per step).

    Parameters
    ----------
    images : array-like of shape (n_rows * n_cols, rows * cols)
        Row-major: image ``r * n_cols + c`` goes to grid row r, column c.
    image_shape : tuple of (int, int)
    path : str or os.PathLike
    n_cols : int
    row_labels : sequence of str, optional
        Printed left of each grid row (up to two short lines each).
    col_labels : sequence of str, optional
        Printed above each column.
    title : str, optional

    Notes
    -----
    The PNG is ``4 + (64 if row_labels) + zoom * (n_cols * (cols + 1) - 1) + 4``
    pixels wide (wider only when the title needs it) and ``4 + (22 if title)
    + (14 if col_labels) + zoom * (n_rows * (rows + 1) - 1) + 4`` high, with
    ``zoom = grid_zoom(image_shape)``.
    """
    images = _unit_range(images)
    n_rows = math.ceil(len(images) / n_cols)
    for name, labels, n in (
        ("row_labels", row_labels, n_rows),
        ("col_labels", col_labels, n_cols),
    ):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} must have {n} entries, got {len(labels)}")
    _render_grid(
        path,
        images,
        image_shape,
        n_cols,
        title=title,
        row_labels=row_labels,
        col_labels=col_labels,
    )


def _per_epoch(history, key, n_epochs):
    """history[key] as floats when it has one finite value per epoch, else None."""
    values = history.get(key)
    if values is None or len(values) != n_epochs or any(v is None for v in values):
        return None
    values = np.asarray(values, dtype=np.float64)
    return values if np.isfinite(values).all() else None


def _log_axis(ax, values) -> None:
    """A log y axis labelled with plain numbers (100, 150, 200 rather than
    powers of ten): losses of one run rarely span more than a decade or two."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    wide = values.size and values.max() / values.min() > 30
    subs = (1.0, 2.0, 5.0) if wide else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def loss_curve(
    history: Mapping[str, Sequence],
    path,
    *,
    title: str | None = None,
    validation_label: str = "validation -ELBO",
) -> None:
    """Save the training curves of a fitted model's ``history_`` as a PNG.

    Two panels over epochs: above, the mean training loss per epoch, the
    loss over windows of steps when recorded, and the validation curve when
    validation data was given (log scale: the first steps' loss is many
    times the last one); below, the two terms of the loss per epoch, the
    reconstruction term -log p(x|z) and the KL term (omitted when all zero,
    as for an autoencoder).

    Parameters
    ----------
    history : mapping
        ``VAE.history_`` (or a run folder's metrics): lists "epoch", "loss",
        and optionally "reconstruction", "kl", "val_elbo", "step" and
        "step_loss".
    path : str or os.PathLike
    title : str, optional
    validation_label : str, default="validation -ELBO"
        Legend of the negated "val_elbo" values (an autoencoder's are its
        reconstruction log-likelihood).

    Notes
    -----
    The PNG is 700 x 560 pixels.
    """
    from matplotlib.figure import Figure

    epochs = np.asarray(history.get("epoch", []), dtype=np.float64)
    if epochs.size == 0:
        raise ValueError("history has no epochs to plot")
    n = epochs.size
    loss = _per_epoch(history, "loss", n)
    if loss is None:
        raise ValueError("history needs one finite 'loss' value per epoch")
    fig = Figure(figsize=(7.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    step = list(history.get("step") or [])
    step_loss = list(history.get("step_loss") or [])
    if step and len(step) == len(step_loss) and epochs[-1] > 0:
        # step windows on the epoch axis: epoch e ends at step e * (steps/epoch)
        steps_per_epoch = step[-1] / epochs[-1]
        top.plot(
            np.asarray(step) / steps_per_epoch,
            step_loss,
            color="0.65",
            linewidth=0.8,
            label="train loss (windows of steps)",
        )
    top.plot(
        epochs, loss, "o-", color="C0", markersize=4, label="train loss (epoch mean)"
    )
    val = _per_epoch(history, "val_elbo", n)
    if val is not None:
        top.plot(epochs, -val, "s-", color="C1", markersize=4, label=validation_label)
    _log_axis(top, np.concatenate([loss, step_loss, [] if val is None else -val]))
    top.set_ylabel("nats per sample (log scale)")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title or "training curves", fontsize=10)
    recon = _per_epoch(history, "reconstruction", n)
    kl = _per_epoch(history, "kl", n)
    if recon is not None:
        bottom.plot(
            epochs,
            recon,
            "o-",
            color="C3",
            markersize=4,
            label="reconstruction -log p(x|z)",
        )
    if kl is not None and np.any(kl != 0):
        bottom.plot(
            epochs, kl, "^-", color="C2", markersize=4, label="KL(q(z|x) || p(z))"
        )
    if bottom.get_lines():
        bottom.legend(loc="upper right", fontsize=8)
    bottom.set_ylabel("nats per sample")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def latent_scatter(
    points,
    labels,
    path,
    *,
    class_names: Sequence[str] | None = None,
    axis_labels: tuple[str, str] = ("z0", "z1"),
    title: str | None = None,
) -> None:
    """Save a 2-D scatter of latent codes, one colour per class, as a PNG.

    Parameters
    ----------
    points : array-like of shape (n_points, 2)
        The codes, or their projection onto two components.
    labels : array-like of int of shape (n_points,)
        Class of each point, >= 0.
    path : str or os.PathLike
    class_names : sequence of str, optional
        Legend entry of class c; "class c" when not given.
    axis_labels : (str, str), default=("z0", "z1")
    title : str, optional

    Notes
    -----
    The PNG is 600 x 520 pixels. Points are drawn in a fixed random order
    (seed 0) so no class hides the others by being drawn last.
    """
    from matplotlib.figure import Figure

    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"points must have shape (n_points, 2), got {points.shape}")
    if labels.shape != (len(points),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {len(points)} integers, got shape "
            f"{labels.shape} of {labels.dtype}"
        )
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    classes = np.unique(labels)
    if class_names is not None and len(class_names) <= classes.max():
        raise ValueError(
            f"class_names has {len(class_names)} entries but labels go up "
            f"to {classes.max()}"
        )
    fig = Figure(figsize=(6.0, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    colours = colormaps["tab10" if classes.max() < 10 else "tab20"]
    order = np.random.default_rng(0).permutation(len(points))
    ax.scatter(
        points[order, 0],
        points[order, 1],
        color=colours(labels[order] % colours.N),
        s=6,
        alpha=0.7,
        linewidths=0,
    )
    for c in classes:
        name = class_names[c] if class_names is not None else f"class {c}"
        ax.scatter([], [], color=colours(int(c) % colours.N), s=20, label=name)
    ax.legend(loc="best", fontsize=8, markerscale=1.0, framealpha=0.8)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "latent codes", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)
