"""fastvae.cli.plotting: grid layout, PNG output, no global matplotlib state."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from fastvae.cli import plotting


def test_tile_images_places_each_image_in_its_cell():
    images = np.arange(5 * 6, dtype=float).reshape(5, 6)  # five 2x3 images
    grid = plotting.tile_images(images, (2, 3), n_cols=2, pad=1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(grid[0:2, 0:3], images[0].reshape(2, 3))
    np.testing.assert_array_equal(grid[0:2, 4:7], images[1].reshape(2, 3))
    np.testing.assert_array_equal(grid[3:5, 0:3], images[2].reshape(2, 3))
    np.testing.assert_array_equal(grid[6:8, 0:3], images[4].reshape(2, 3))
    assert not grid[6:8, 4:7].any()  # the missing sixth image is blank
    assert not grid[2, :].any() and not grid[:, 3].any()  # padding


def test_tile_images_rejects_wrong_widths():
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        plotting.tile_images(np.zeros((2, 5)), (2, 3), n_cols=1)


def test_image_grid_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "grid.png"
    plotting.image_grid(rng.random((10, 64)), (8, 8), path, title="ten")
    image = imread(path)
    assert image.shape[0] > 40 and image.shape[1] > 40 and image[..., :3].std() > 0.05
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_image_grid_scales_data_outside_unit_range(tmp_path):
    path = tmp_path / "g.png"
    images = np.stack([np.full(16, -3.0), np.full(16, 7.0)])
    plotting.image_grid(images, (4, 4), path)
    pixels = imread(path)[..., 0]
    assert pixels.min() == 0.0 and pixels.max() == 1.0  # black and white cells


def test_reconstruction_grid_alternates_rows(tmp_path):
    originals = np.ones((3, 4))
    recons = np.zeros((3, 4))
    path = tmp_path / "r.png"
    plotting.reconstruction_grid(originals, recons, (2, 2), path, n_cols=3)
    assert imread(path)[..., :3].std() > 0.05
    with pytest.raises(ValueError, match="same shape"):
        plotting.reconstruction_grid(originals, recons[:2], (2, 2), path)


def test_tile_images_pad_value():
    grid = plotting.tile_images(np.ones((3, 4)), (2, 2), n_cols=2, pad_value=0.5)
    assert grid.shape == (5, 5)
    assert (grid[2, :] == 0.5).all() and (grid[:, 2] == 0.5).all()
    assert not grid[3:5, 3:5].any()  # the missing fourth image is blank, not pad


def test_grid_zoom():
    assert plotting.grid_zoom((28, 28)) == 2
    assert plotting.grid_zoom((8, 8)) == 7
    assert plotting.grid_zoom((4, 28)) == 2
    assert plotting.grid_zoom((200, 200)) == 1


def _cell(png, top, left, r, c, image_shape, zoom):
    """The pixels of grid cell (r, c), one per image pixel (grey channel)."""
    rows, cols = image_shape
    y, x = top + r * (rows + 1) * zoom, left + c * (cols + 1) * zoom
    return png[y : y + rows * zoom : zoom, x : x + cols * zoom : zoom, 0]


def test_labelled_grid_is_pixel_exact(tmp_path):
    """Each image pixel is zoom x zoom screen pixels at a position fixed by the
    documented bands; grey values are the image's to about 8 bits."""
    rng = np.random.default_rng(1)
    images = rng.random((6, 8 * 8))  # 2 rows x 3 columns of 8x8 images, zoom 7
    path = tmp_path / "g.png"
    plotting.labelled_grid(
        images,
        (8, 8),
        path,
        n_cols=3,
        row_labels=["a", "b"],
        col_labels=["x", "y", "z"],
        title="t",
    )
    png = imread(path)
    zoom, left, top = 7, 4 + 64, 4 + 22 + 14
    assert png.shape[:2] == (
        top + zoom * (2 * 9 - 1) + 4,
        left + zoom * (3 * 9 - 1) + 4,
    )
    for k in range(6):
        r, c = divmod(k, 3)
        np.testing.assert_allclose(
            _cell(png, top, left, r, c, (8, 8), zoom),
            images[k].reshape(8, 8),
            atol=2.5 / 255,
        )
        # every screen pixel of an image pixel has the same value
        y, x = top + r * 9 * zoom, left + c * 9 * zoom
        block = png[y : y + zoom, x : x + zoom, 0]
        assert np.ptp(block) == 0
    # the grey line between cells 0 and 1
    line = png[top : top + 8 * zoom, left + 8 * zoom : left + 9 * zoom, 0]
    np.testing.assert_allclose(line, 0.35, atol=1.5 / 255)
    # labels and title are drawn in the bands (dark pixels there)
    assert png[4 : 4 + 22, :, 0].min() < 0.5
    assert png[top:, :left, 0].min() < 0.5


def test_labelled_grid_checks_labels(tmp_path):
    with pytest.raises(ValueError, match="row_labels must have 2 entries, got 1"):
        plotting.labelled_grid(
            np.zeros((4, 4)), (2, 2), tmp_path / "x.png", n_cols=2, row_labels=["a"]
        )
    with pytest.raises(ValueError, match="col_labels must have 2 entries, got 3"):
        plotting.labelled_grid(
            np.zeros((4, 4)),
            (2, 2),
            tmp_path / "x.png",
            n_cols=2,
            col_labels=["a", "b", "c"],
        )


def test_image_grid_size_and_a_long_title_widens_it(tmp_path):
    plotting.image_grid(np.ones((9, 784)), (28, 28), tmp_path / "a.png")
    side = 2 * (3 * 29 - 1)
    assert imread(tmp_path / "a.png").shape[:2] == (side + 8, side + 8)
    plotting.image_grid(
        np.ones((1, 784)),
        (28, 28),
        tmp_path / "b.png",
        title="a title much wider than one 56-pixel image",
    )
    png = imread(tmp_path / "b.png")
    assert png.shape[0] == 4 + 22 + 56 + 4 and png.shape[1] > 200
    # the image is centred under the title
    row = png[4 + 22 + 28, :, 0]
    white = np.flatnonzero(row > 0.99)
    assert abs((white[0] + white[-1]) / 2 - png.shape[1] / 2) <= 1


def test_loss_curve(tmp_path):
    history = {
        "epoch": [1, 2, 3],
        "loss": [300.0, 150.0, 120.0],
        "reconstruction": [295.0, 141.0, 109.0],
        "kl": [5.0, 9.0, 11.0],
        "val_elbo": [-280.0, -160.0, -125.0],
        "step": [10, 20, 30, 40, 50, 60],
        "step_loss": [500, 300, 200, 150, 130, 120],
    }
    plotting.loss_curve(history, tmp_path / "c.png")
    image = imread(tmp_path / "c.png")
    assert image.shape[:2] == (560, 700) and image[..., :3].std() > 0.05
    with pytest.raises(ValueError, match="no epochs"):
        plotting.loss_curve({"epoch": []}, tmp_path / "d.png")
    with pytest.raises(ValueError, match="one finite 'loss' value per epoch"):
        plotting.loss_curve({"epoch": [1, 2], "loss": [1.0]}, tmp_path / "d.png")


def test_loss_curve_from_metrics_lines_and_of_an_autoencoder(tmp_path):
    """What `fastvae plot` reads mid-run (no step windows), and an
    autoencoder's history (KL all zero, no validation)."""
    metrics = {
        "epoch": [1, 2],
        "loss": [90.0, 80.0],
        "reconstruction": [85.0, 74.0],
        "kl": [5.0, 6.0],
        "val_elbo": [-91.0, -82.0],
    }
    plotting.loss_curve(metrics, tmp_path / "m.png")
    autoencoder = {
        "epoch": [1],
        "loss": [70.0],
        "reconstruction": [70.0],
        "kl": [0.0],
        "val_elbo": [None],
        "step": [],
        "step_loss": [],
    }
    plotting.loss_curve(
        autoencoder, tmp_path / "a.png", validation_label="validation -log p(x | code)"
    )
    for name in ("m.png", "a.png"):
        assert imread(tmp_path / name).shape[:2] == (560, 700)


def test_latent_scatter(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    points = rng.standard_normal((300, 2)) + 4.0 * labels[:, None]
    path = tmp_path / "s.png"
    plotting.latent_scatter(
        points, labels, path, class_names=["a", "b", "c"], axis_labels=("PC1", "PC2")
    )
    image = imread(path)[..., :3]
    assert image.shape[:2] == (520, 600)
    # the three classes are drawn in tab10's first three colours
    from matplotlib import colormaps

    for c in range(3):
        colour = np.asarray(colormaps["tab10"](c)[:3])
        assert (np.abs(image - colour).max(axis=2) < 0.02).sum() > 20, c
    with pytest.raises(ValueError, match=r"points must have shape \(n_points, 2\)"):
        plotting.latent_scatter(np.zeros((5, 3)), np.zeros(5, int), path)
    with pytest.raises(ValueError, match="labels must be 5 integers"):
        plotting.latent_scatter(np.zeros((5, 2)), np.zeros(5), path)
    with pytest.raises(ValueError, match="class_names has 1 entries"):
        plotting.latent_scatter(
            np.zeros((2, 2)), np.array([0, 1]), path, class_names=["a"]
        )


def test_plots_do_not_load_pyplot_or_change_the_backend(tmp_path):
    """Figures are drawn on an Agg canvas directly: pyplot (and with it a
    notebook's backend and current figures) is never touched."""
    code = (
        "import sys, numpy as np; "
        "from fastvae.cli import plotting; from fastvae import cli; "
        f"plotting.image_grid(np.ones((2, 4)), (2, 2), {str(tmp_path / 'x.png')!r}); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False"]
