"""fastvae.plotting: grid layout, PNG output, no global matplotlib state."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from fastvae import plotting


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


def test_loss_curve(tmp_path):
    history = {"epoch": [1, 2, 3], "loss": [300.0, 150.0, 120.0], "kl": [5.0, 9.0, 11.0],
               "val_elbo": [-280.0, -160.0, -125.0], "step": [10, 20, 30, 40, 50, 60],
               "step_loss": [500, 300, 200, 150, 130, 120]}
    plotting.loss_curve(history, tmp_path / "c.png")
    assert imread(tmp_path / "c.png").shape[:2] == (420, 700)
    with pytest.raises(ValueError, match="no epochs"):
        plotting.loss_curve({"epoch": []}, tmp_path / "d.png")


def test_plots_do_not_load_pyplot_or_change_the_backend(tmp_path):
    """Figures are drawn on an Agg canvas directly: pyplot (and with it a
    notebook's backend and current figures) is never touched."""
    code = (
        "import sys, numpy as np; "
        "from fastvae import plotting, cli; "
        f"plotting.image_grid(np.ones((2, 4)), (2, 2), {str(tmp_path / 'x.png')!r}); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False"]
