"""MNIST, Fashion-MNIST and binarized MNIST (Salakhutdinov & Murray 2008,
Larochelle's split) from a folder of their published files."""

from __future__ import annotations

import numpy as np

from fastvae.data.dataset import Dataset
from fastvae.data.idx import _data_folder, _parse_idx, _read_verified
from fastvae.exceptions import DataError

# (MD5 of the .gz as published, MD5 of the decompressed IDX file).
_MNIST_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        "train-labels-idx1-ubyte.gz": (
            "d53e105ee54ea40749a09fcbcd1e9432",
            "a25bea736e30d166cdddb491f175f624",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "9fb629c4189551a2d022fa330f9573f3",
            "2646ac647ad5339dbf082846283269ea",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "ec29112dd5afa0611ce80d1b7f02629c",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        ),
        "train-labels-idx1-ubyte.gz": (
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
    },
}
_MNIST_SOURCE = {
    "mnist": "the original MNIST release (http://yann.lecun.com/exdb/mnist/, "
    "mirrored at https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion-mnist": "the original Fashion-MNIST release "
    "(https://github.com/zalandoresearch/fashion-mnist)",
}


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def load_mnist(
    folder=None,
    *,
    kind: str = "mnist",
    split: str = "train",
    verify: bool = True,
    download: bool = False,
) -> Dataset:
    """Load MNIST or Fashion-MNIST from the original IDX files.

    Parameters
    ----------
    folder : str or path-like, optional
        Folder holding ``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz`` (decompressed copies without ``.gz``
        are accepted too). Default: ``$FASTVAE_DATA_DIR/<kind>``, else
        ``~/.cache/fastvae/<kind>``.
    kind : {"mnist", "fashion-mnist"}, default="mnist"
    split : {"train", "test"}, default="train"
        60,000 training or 10,000 test images.
    verify : bool, default=True
        Check each file's MD5 against the published checksum.
    download : bool, default=False
        Fetch missing files from the published mirrors (checked against the
        published MD5s, written atomically).

    Returns
    -------
    Dataset
        ``X`` of shape (n, 784), float32 pixel / 255 in [0, 1]; ``y`` int64
        labels 0-9; ``image_shape`` (28, 28); ``name`` equal to ``kind``.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message says where the files come from.
    fastvae.exceptions.DownloadError
        If ``download`` and no mirror could deliver a missing file (offline).
    DataError
        If a checksum differs, a file is not valid IDX, or images and labels
        do not fit together (shape (n, 28, 28) and n labels in 0-9).
    """
    _check_choice("kind", kind, _MNIST_MD5)
    folder = _data_folder(kind, folder)
    _check_choice("split", split, ("train", "test"))
    prefix = "train" if split == "train" else "t10k"
    arrays = []
    for part in ("images-idx3", "labels-idx1"):
        filename = f"{prefix}-{part}-ubyte.gz"
        digests = _MNIST_MD5[kind][filename]
        path, data = _read_verified(
            folder, filename, digests, verify, _MNIST_SOURCE[kind], kind, download
        )
        arrays.append((path, _parse_idx(data, path)))
    (image_path, images), (label_path, labels) = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{image_path}: expected images of shape (n, 28, 28), got {images.shape}"
        )
    if labels.shape != images.shape[:1]:
        raise DataError(
            f"{label_path}: expected {images.shape[0]} labels to match "
            f"{image_path.name}, got shape {labels.shape}"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path}: labels must be 0-9, found {labels.max()}")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= np.float32(255)
    return Dataset(X=X, y=labels.astype(np.int64), image_shape=(28, 28), name=kind)


# ---------------------------------------------------------------------------
# Binarized MNIST (Salakhutdinov & Murray 2008, Larochelle's split)
# ---------------------------------------------------------------------------

_BINARIZED_MD5 = {  # (.amat.gz as gzip -9 -n, decompressed .amat as published)
    "train": ("55c6be0db63f47a228822edc21049d6f", "db28b1a6ae0fe70cbd3da91acf46e477"),
    "valid": ("bf325c5893052cb8b540dfeb3c0c6fbe", "bf37822a04e94123630de6a7dfd9c9ef"),
    "test": ("f7f18e7c5d551792f6aab10d62a7ea74", "14e41ae11040adba6ab8cb291eda0dd8"),
}
_BINARIZED_SOURCE = (
    "the binarized MNIST of Salakhutdinov & Murray (2008) as split by Hugo "
    "Larochelle (http://www.cs.toronto.edu/~larocheh/public/datasets/"
    "binarized_mnist/)"
)
# 784 one-character values, each followed by a space or, last, a newline.
_AMAT_LINE = 2 * 784


def load_binarized_mnist(
    folder=None, *, split: str = "train", verify: bool = True, download: bool = False
) -> Dataset:
    """Load the fixed binarization of MNIST used in VAE likelihood results.

    Parameters
    ----------
    folder : str or path-like, optional
        Folder holding ``binarized_mnist_{split}.amat.gz`` (or the
        uncompressed ``.amat`` as originally distributed). Default:
        ``$FASTVAE_DATA_DIR/binarized-mnist``, else
        ``~/.cache/fastvae/binarized-mnist``.
    split : {"train", "valid", "test"}, default="train"
        50,000, 10,000 or 10,000 images.
    verify : bool, default=True
        Check the file's MD5 against the known checksum.
    download : bool, default=False
        Fetch a missing file from the published mirror (the uncompressed
        ``.amat``, checked against its published checksum).

    Returns
    -------
    Dataset
        ``X`` of shape (n, 784), float32 of 0 and 1; ``y`` None (no labels);
        ``image_shape`` (28, 28); name ``"binarized-mnist"``.

    Raises
    ------
    FileNotFoundError
        If the file is missing; the message says where it comes from.
    DataError
        If the checksum differs or the text is not lines of 784 ``0``/``1``
        values separated by single spaces.

    Notes
    -----
    The test file is sorted by digit class, so its first rows are not a
    representative subset; use all of it or a strided subset.
    """
    _check_choice("split", split, _BINARIZED_MD5)
    path, data = _read_verified(
        _data_folder("binarized-mnist", folder),
        f"binarized_mnist_{split}.amat.gz",
        _BINARIZED_MD5[split],
        verify,
        _BINARIZED_SOURCE,
        "binarized-mnist",
        download,
    )
    if not data or len(data) % _AMAT_LINE:
        raise DataError(
            f"{path}: expected lines of exactly {_AMAT_LINE} bytes (784 values "
            f"with separators), got {len(data)} bytes, not a positive multiple"
        )
    lines = np.frombuffer(data, np.uint8).reshape(-1, _AMAT_LINE)
    bad_sep = np.flatnonzero(
        (lines[:, 1:-1:2] != ord(" ")).any(axis=1) | (lines[:, -1] != ord("\n"))
    )
    if bad_sep.size:
        raise DataError(
            f"{path}: line {bad_sep[0] + 1} is not 784 values separated by single "
            "spaces and ended by a newline"
        )
    # Characters below '0' wrap around in uint8, so one comparison catches both.
    values = lines[:, 0::2] - np.uint8(ord("0"))
    bad_value = np.flatnonzero((values > 1).any(axis=1))
    if bad_value.size:
        raise DataError(
            f"{path}: line {bad_value[0] + 1} holds a value other than 0 or 1"
        )
    return Dataset(
        X=values.astype(np.float32),
        y=None,
        image_shape=(28, 28),
        name="binarized-mnist",
    )
