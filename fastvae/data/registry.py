"""Datasets by name or path: the one entry point of the command line."""

from __future__ import annotations

import warnings
from pathlib import Path

from fastvae.data.arrays import ARRAY_SUFFIXES, load_array
from fastvae.data.dataset import Dataset, _check_int
from fastvae.data.mnist import _check_choice, load_binarized_mnist, load_mnist
from fastvae.data.shapes import make_shapes

DATASET_NAMES = ("shapes", "mnist", "fashion-mnist", "binarized-mnist")
# Any large odd offset keeps the test images' Philox stream apart from train's.
_TEST_SEED_OFFSET = 1_000_003


def load_dataset(
    name: str,
    *,
    data_dir=None,
    split: str = "train",
    n_samples: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> Dataset:
    """Load a dataset by name or path: the one entry point of the command line.

    Parameters
    ----------
    name : str
        ``"shapes"`` (generated, no download), ``"mnist"``,
        ``"fashion-mnist"``, ``"binarized-mnist"``, or the path of a
        ``.npy``, ``.npz`` or ``.csv`` file (see :func:`load_array`).
    data_dir : str or path-like, optional
        Folder of a named real dataset, or a parent folder with a subfolder of
        that name. Default: the environment variable ``FASTVAE_DATA_DIR``,
        else ``~/.cache/fastvae`` (same subfolder rule).
    split : str, default="train"
        ``"train"`` or ``"test"`` (``"valid"`` too for binarized MNIST).
        For shapes, ``"test"`` draws different images from the same
        distribution. Ignored for a user's file.
    n_samples : int, optional
        Shapes: how many images to generate (default 20,000). Other data: keep
        the first ``n_samples`` rows.
    seed : int, default=0
        Seed of the shapes generator; unused by other data.
    download : bool, default=False
        Fetch missing files of a named real dataset from its mirrors.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        If ``name`` is unknown, ``split`` is not available, or ``n_samples``
        is < 1 or more than the dataset holds.
    FileNotFoundError
        If the files of a named dataset or the user's file are missing.
    DataError
        If a file is corrupted (see the individual loaders).

    Notes
    -----
    The binarized MNIST test file is sorted by digit, so its first rows are
    nearly all zeros; a warning is issued when taking fewer than all of them.
    """
    if n_samples is not None:
        n_samples = _check_int("n_samples", n_samples, 1)
    if name == "shapes":
        _check_choice("split", split, ("train", "test"))
        offset = _TEST_SEED_OFFSET if split == "test" else 0
        seed = _check_int("seed", seed, 0) + offset
        return make_shapes(20000 if n_samples is None else n_samples, seed=seed)
    if name in ("mnist", "fashion-mnist"):
        data = load_mnist(data_dir, kind=name, split=split, download=download)
    elif name == "binarized-mnist":
        data = load_binarized_mnist(data_dir, split=split, download=download)
    elif name.lower().endswith(ARRAY_SUFFIXES) or Path(name).expanduser().exists():
        data = load_array(name)
    else:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}, "
            f"or give the path of a {'/'.join(ARRAY_SUFFIXES)} file"
        )
    if n_samples is None or n_samples == len(data):
        return data
    if n_samples > len(data):
        raise ValueError(
            f"n_samples={n_samples} but {data.name} ({split}) has {len(data)} rows"
        )
    if name == "binarized-mnist" and split == "test":
        warnings.warn(
            "the binarized MNIST test set is sorted by digit, so its first "
            f"{n_samples} rows are not representative",
            stacklevel=2,
        )
    return data.subset(slice(0, n_samples))
