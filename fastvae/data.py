"""Datasets: a built-in shapes set, MNIST-family IDX/AMAT readers, user arrays.

Every loader returns a :class:`Dataset` whose ``X`` is float32, C-contiguous
and of shape ``(n_samples, n_features)``: the layout the compiled training
step reads without a copy. Real data is read from a folder the user gives
(or downloaded from the published mirrors when asked to, ``download=True``)
and checked against the published MD5 checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "binarize",
    "load_array",
    "load_binarized_mnist",
    "load_dataset",
    "load_mnist",
    "make_shapes",
    "one_hot",
    "read_idx",
    "sample_binarize",
    "train_validation_split",
]


class DataError(ValueError):
    """A data file is missing pieces, corrupted, or not what it claims to be."""


@dataclass
class Dataset:
    """Samples as rows of a float32 matrix, plus what is known about them.

    The constructor's arguments are also the attributes.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
        The samples. Other float dtypes are converted once on construction.
    y : ndarray of shape (n_samples,), int64, or None
        Class labels when the data has them.
    image_shape : tuple of (int, int) or None
        ``(rows, cols)`` when each row of ``X`` is a flattened image (row-major).
    name : str
        Short name, e.g. ``"mnist"`` or the stem of a user's file.
    factors : ndarray of shape (n_samples, n_factors), float64, or None
        Generative factors (only for :func:`make_shapes`).
    factor_names : tuple of str or None
        One name per column of ``factors``.
    """

    X: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int] | None
    name: str
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None

    def __post_init__(self):
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), got shape {self.X.shape}"
            )
        n, d = self.X.shape
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int64)
            if self.y.shape != (n,):
                raise ValueError(
                    f"y must have shape ({n},) to match X, got {self.y.shape}"
                )
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
            if len(self.image_shape) != 2 or np.prod(self.image_shape) != d:
                raise ValueError(
                    f"image_shape must be (rows, cols) with rows * cols == "
                    f"n_features ({d}), got {self.image_shape}"
                )
        if self.factors is not None:
            self.factors = np.asarray(self.factors, dtype=np.float64)
            if self.factors.ndim != 2 or self.factors.shape[0] != n:
                raise ValueError(
                    f"factors must have shape ({n}, n_factors), "
                    f"got {self.factors.shape}"
                )
            names = self.factor_names
            if names is not None and len(names) != self.factors.shape[1]:
                raise ValueError(
                    f"factor_names must name the {self.factors.shape[1]} factor "
                    f"columns, got {len(self.factor_names)} names"
                )

    def __len__(self) -> int:
        return self.X.shape[0]

    def subset(self, index) -> Dataset:
        """The rows selected by ``index``, with labels, factors and metadata.

        Parameters
        ----------
        index : slice or array-like of int or bool, 1-D
            Rows to keep, in the given order.

        Returns
        -------
        Dataset
            A new dataset whose arrays are copies (``X`` stays C-contiguous).
        """
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.ndim != 1:
                raise ValueError(
                    f"index must be a slice or a 1-D array, got shape {index.shape}"
                )
        return Dataset(
            X=np.ascontiguousarray(self.X[index]),
            y=None if self.y is None else self.y[index].copy(),
            image_shape=self.image_shape,
            name=self.name,
            factors=None if self.factors is None else self.factors[index].copy(),
            factor_names=self.factor_names,
        )


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _philox(seed) -> np.random.Generator:
    # Philox, like the kernels' RNG: a key names the same stream on every
    # platform, with no global state shared between callers.
    return np.random.Generator(np.random.Philox(key=_check_int("seed", seed, 0)))


# ---------------------------------------------------------------------------
# Built-in shapes
# ---------------------------------------------------------------------------

SHAPE_NAMES = ("square", "ellipse", "triangle")
SHAPE_FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")

# At scale 1 every shape covers this fraction of the frame, so the smallest
# (scale 0.5) covers 0.0325 * 28**2 = 25.5 pixels at 28x28: always visible,
# and all shapes of one scale carry the same amount of ink.
_AREA_FRACTION = 0.13
_ELLIPSE_ASPECT = 0.6
# Vertex directions of the triangle around its centroid (apex up at rotation 0).
_TRIANGLE_ANGLES = -np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
# 2000 images of 56x56 float32 sub-samples are 25 MB per temporary.
_CHUNK = 2000


def make_shapes(
    n_samples: int = 20000, *, image_size: int = 28, seed: int = 0
) -> Dataset:
    """Generate white shapes on black, a dSprites-like set needing no download.

    Each image shows one square, ellipse (aspect 1:0.6) or equilateral
    triangle with a random scale, rotation and position, fully inside the
    frame.

    Parameters
    ----------
    n_samples : int, default=20000
        Number of images, >= 1.
    image_size : int, default=28
        Images are ``image_size x image_size`` (28 matches MNIST), >= 8.
    seed : int, default=0
        Philox key; the output is bitwise reproducible for a seed, and the
        first k images are the same for every ``n_samples >= k``.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, image_size**2) with values in
        {0, 0.25, 0.5, 0.75, 1}; ``y`` the shape (0 square, 1 ellipse,
        2 triangle); ``factors`` the columns ``shape, scale, rotation, pos_x,
        pos_y``; name ``"shapes"``.

    Raises
    ------
    ValueError
        If ``n_samples < 1``, ``image_size < 8`` or ``seed`` is not an integer
        >= 0.

    Notes
    -----
    Factors: shape uniform over {0, 1, 2}; scale uniform in [0.5, 1], a shape
    of scale s covering ``0.13 * s**2`` of the frame; rotation uniform in
    [0, 2*pi) (the image repeats every pi/2 for the square, pi for the ellipse
    and 2*pi/3 for the triangle); pos_x, pos_y the centre (the centroid for the
    triangle) divided by ``image_size``, with x to the right and y down. Given
    the other factors, the centre is uniform over the positions where the
    rotated shape fits in the frame, so positions near the border are only
    reached by small shapes.

    Each pixel is the fraction of its 2x2 sub-sample points that fall inside
    the shape.

    Examples
    --------
    >>> data = make_shapes(100, seed=1)
    >>> data.X.shape, data.image_shape, data.factor_names[3]
    ((100, 784), (28, 28), 'pos_x')
    """
    n = _check_int("n_samples", n_samples, 1)
    size = _check_int("image_size", image_size, 8)
    rng = _philox(seed)
    # One row of uniforms per image, drawn up front: image i is the same for
    # any n_samples > i and any chunk size.
    u = rng.random((n, 5))
    shape = (3 * u[:, 0]).astype(np.int64)
    scale = 0.5 + 0.5 * u[:, 1]
    rotation = 2 * np.pi * u[:, 2]
    where = u[:, 3:]

    area = _AREA_FRACTION * size**2 * scale**2
    cos, sin = np.cos(rotation), np.sin(rotation)
    # One size parameter per shape: half-side, semi-major axis, circumradius.
    radius = np.select(
        [shape == 0, shape == 1],
        [np.sqrt(area) / 2, np.sqrt(area / (np.pi * _ELLIPSE_ASPECT))],
        np.sqrt(area * 4 / (3 * np.sqrt(3))),
    )
    lo, hi = _extent(shape, radius, rotation)
    centre = -lo + where * (size - (hi - lo))

    sub = ((np.arange(2 * size) + 0.5) / 2).astype(np.float32)
    X = np.empty((n, size * size), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        dx = sub - centre[rows, 0, None].astype(np.float32)
        dy = sub - centre[rows, 1, None].astype(np.float32)
        inside = np.empty((dx.shape[0], 2 * size, 2 * size), dtype=bool)
        for kind, test in enumerate((_in_square, _in_ellipse, _in_triangle)):
            i = np.flatnonzero(shape[rows] == kind)
            if i.size:
                j = i + start
                c, s, r = (a[j, None].astype(np.float32) for a in (cos, sin, radius))
                inside[i] = test(dx[i], dy[i], c, s, r)
        hits = inside.view(np.uint8)
        count = hits[:, 0::2, 0::2] + hits[:, 0::2, 1::2]
        count += hits[:, 1::2, 0::2]
        count += hits[:, 1::2, 1::2]
        np.multiply(count.reshape(count.shape[0], -1), np.float32(0.25), out=X[rows])

    factors = np.column_stack([shape, scale, rotation, centre / size])
    return Dataset(
        X=X,
        y=shape.astype(np.int64),
        image_shape=(size, size),
        name="shapes",
        factors=factors,
        factor_names=SHAPE_FACTOR_NAMES,
    )


def _extent(shape, radius, rotation):
    """Per-image (lo, hi) offsets of the rotated shape's bounding box, (n, 2)."""
    cos, sin = np.abs(np.cos(rotation)), np.abs(np.sin(rotation))
    square = radius * (cos + sin)
    b = radius * _ELLIPSE_ASPECT
    ellipse = np.stack(
        [np.hypot(radius * cos, b * sin), np.hypot(radius * sin, b * cos)], axis=1
    )
    angle = rotation[:, None] + _TRIANGLE_ANGLES
    vx, vy = radius[:, None] * np.cos(angle), radius[:, None] * np.sin(angle)
    tri_lo = np.stack([vx.min(axis=1), vy.min(axis=1)], axis=1)
    tri_hi = np.stack([vx.max(axis=1), vy.max(axis=1)], axis=1)
    symmetric = np.where((shape == 0)[:, None], square[:, None], ellipse)
    is_tri = (shape == 2)[:, None]
    return np.where(is_tri, tri_lo, -symmetric), np.where(is_tri, tri_hi, symmetric)


# The tests below take sub-sample offsets from the centre, dx (m, 2S) along x
# and dy (m, 2S) along y, and per-image (m, 1) cos, sin and size; they return
# a bool mask (m, 2S, 2S) indexed [image, y, x]. Coordinates in the shape's
# own frame are separable sums of a row term and a column term, so each costs
# one full-size add instead of two multiplies.


def _in_square(dx, dy, cos, sin, half):
    u = np.abs((dx * cos)[:, None, :] + (dy * sin)[:, :, None])
    v = np.abs((dy * cos)[:, :, None] - (dx * sin)[:, None, :])
    np.maximum(u, v, out=u)
    return u <= half[:, :, None]


def _in_ellipse(dx, dy, cos, sin, a):
    b = a * np.float32(_ELLIPSE_ASPECT)
    u = (dx * (cos / a))[:, None, :] + (dy * (sin / a))[:, :, None]
    v = (dy * (cos / b))[:, :, None] - (dx * (sin / b))[:, None, :]
    u *= u
    v *= v
    u += v
    return u <= 1


def _in_triangle(dx, dy, cos, sin, circumradius):
    # Inside = on the inner side of all three edges, whose outward normals
    # point away from the vertices and lie at the inradius R / 2.
    t = None
    for angle in _TRIANGLE_ANGLES + np.pi:
        nx = cos * np.float32(np.cos(angle)) - sin * np.float32(np.sin(angle))
        ny = sin * np.float32(np.cos(angle)) + cos * np.float32(np.sin(angle))
        d = (dx * nx)[:, None, :] + (dy * ny)[:, :, None]
        t = d if t is None else np.maximum(t, d, out=t)
    return t <= (circumradius / 2)[:, :, None]


# ---------------------------------------------------------------------------
# Files: IDX, gzip, checksums
# ---------------------------------------------------------------------------

_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32"}
_IDX_TYPES.update({0x0D: "float32", 0x0E: "float64"})


def _gunzip(raw: bytes, path: Path) -> bytes:
    if path.suffix != ".gz" and raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file: {exc}") from exc


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(
            f"{path} is not an IDX file: expected the magic bytes 00 00, "
            f"got {data[:2].hex(' ') or 'an empty file'}"
        )
    dtype, ndim = data[2], data[3]
    if dtype != 0x08:
        kind = _IDX_TYPES.get(dtype, "unknown")
        raise DataError(
            f"{path}: only IDX type 0x08 (uint8) is supported, got 0x{dtype:02x} "
            f"({kind})"
        )
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: IDX dimension count must be 1 to 4, got {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header, expected {header} bytes, got {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    if min(dims) < 0:
        raise DataError(f"{path}: IDX dimensions must be >= 0, got {dims}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{path}: dimensions {dims} need {expected} bytes (header included), "
            f"got {len(data)} "
            f"({'truncated' if len(data) < expected else 'trailing data'})"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip is detected from the ``.gz`` suffix or the magic bytes.

    Returns
    -------
    ndarray of uint8
        Array with the dimensions stored in the header. It is a read-only view
        of the file's bytes (no copy); call ``.copy()`` to write into it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataError
        If the gzip stream is invalid, the magic bytes are wrong, the element
        type is not uint8 (0x08), there are not 1 to 4 dimensions, or the data
        length differs from the product of the dimensions.

    Notes
    -----
    Layout: two zero bytes, a type byte, a byte with the number of
    dimensions, one big-endian int32 per dimension, then the data in C order.
    """
    path = Path(path)
    return _parse_idx(_gunzip(path.read_bytes(), path), path)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_verified(
    folder,
    filename: str,
    digests,
    verify: bool,
    source: str,
    dataset: str,
    download: bool = False,
):
    """Bytes of ``folder/filename`` (a .gz) or its decompressed twin, checked.

    ``digests`` is (MD5 of the .gz, MD5 of the decompressed file): the
    original binarized MNIST is distributed uncompressed and many MNIST
    copies are kept decompressed, so both forms are accepted. With
    ``download``, a missing file is fetched from the dataset's mirrors (the
    form the mirrors publish: .gz for MNIST and Fashion-MNIST, plain .amat for
    binarized MNIST).
    """
    folder = Path(folder).expanduser()
    path, expected = folder / filename, digests[0]
    if not path.is_file():
        path, expected = folder / filename[:-3], digests[1]
    if not path.is_file() and download:
        from fastvae.download import fetch

        plain = dataset == "binarized-mnist"
        name = filename[:-3] if plain else filename
        path = fetch(dataset, name, folder, digests[1] if plain else digests[0])
        expected = digests[1] if plain else digests[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder / filename} not found (nor {filename[:-3]}). It comes from "
            f"{source}. Put the files in one folder and pass it as data_dir "
            "(--data-dir on the command line) or set FASTVAE_DATA_DIR, or let "
            "fastvae download them (download=True, --download)."
        )
    raw = path.read_bytes()
    if verify and (actual := _md5(raw)) != expected:
        raise DataError(
            f"{path} failed its checksum: expected MD5 {expected}, got {actual}. "
            "The file is corrupted or not the published release; download it "
            "again (or pass verify=False for a deliberately modified copy)."
        )
    return path, _gunzip(raw, path)


# ---------------------------------------------------------------------------
# MNIST and Fashion-MNIST
# ---------------------------------------------------------------------------

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
    fastvae.download.DownloadError
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


# ---------------------------------------------------------------------------
# User arrays
# ---------------------------------------------------------------------------

ARRAY_SUFFIXES = (".npy", ".npz", ".csv")
_NPY_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def load_array(path, *, key: str | None = None) -> Dataset:
    """Load a user's own data from a ``.npy``, ``.npz`` or ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        The file. Rows are samples: a 2-D array (n, d), or a 3-D stack of
        images (n, h, w) which is flattened row-major.
    key : str, optional
        For ``.npz``: the array to use. By default the only array, or ``"X"``
        when there are several.

    Returns
    -------
    Dataset
        ``X`` float32 (n, d) or (n, h * w); ``image_shape`` (h, w) for 3-D
        input, else None; ``y`` from an ``.npz`` array ``"y"`` of n integer
        values, else None; ``name`` the file's stem.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the suffix is not supported, or ``key`` is missing or needed.
    DataError
        If the file is corrupted or holds pickled objects; the array is not
        2-D or 3-D, is empty, is not real-valued numbers, or holds NaN or
        infinity; or a CSV cell is not a number.

    Notes
    -----
    Values are not rescaled: 8-bit images stored as 0-255 stay 0-255. Scale
    them to [0, 1] yourself before training a Bernoulli decoder.

    A CSV is comma-separated numbers; a first line without any number is
    taken as a header and skipped.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(ARRAY_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if suffix == ".csv":
        return _to_dataset(_read_csv(path), None, path)
    return _to_dataset(*_np_load(path, key), path)


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path} could not be read as {path.suffix} (corrupted, or holds pickled "
        f"Python objects, which are refused): {exc}"
    )


def _np_load(path: Path, key: str | None):
    """(array, labels or None) from an .npy or .npz file."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _NPY_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded, None
    with loaded:
        keys = list(loaded.files)
        if not keys:
            raise DataError(f"{path} holds no arrays")
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            elif "X" in keys:
                key = "X"
            else:
                raise ValueError(
                    f"{path} holds several arrays {keys} and none is named 'X'; "
                    "choose one with key="
                )
        elif key not in keys:
            raise ValueError(f"key {key!r} is not in {path}; it holds {keys}")
        # Members are decompressed and parsed only on access, so a damaged
        # archive can fail here rather than in np.load.
        try:
            array = loaded[key]
            y = loaded["y"] if key != "y" and "y" in keys else None
        except _NPY_ERRORS as exc:
            raise _unreadable(path, exc) from exc
    if y is not None:
        y = _as_labels(y, len(array) if array.ndim else -1, path)
    return array, y


def _as_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray | None:
    integral = y.dtype.kind in "iu" or (
        y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if y.shape == (n,) and integral:
        return y.astype(np.int64)
    warnings.warn(
        f"{path}: array 'y' ignored as labels; expected {n} integer values, "
        f"got shape {y.shape} of dtype {y.dtype}",
        stacklevel=4,
    )
    return None


def _read_csv(path: Path) -> np.ndarray:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file: {exc}") from exc
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and not any(_is_number(c) for c in lines[first].split(",")):
        lines[first] = ""
    if not any(line.strip() for line in lines):
        raise DataError(f"{path} holds no data rows")
    try:
        return np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        # loadtxt's message varies by NumPy version; find the line ourselves.
        width = None
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = line.split("#")[0].split(",")
            if not all(_is_number(c) for c in cells):
                raise DataError(
                    f"{path}, line {number}: expected comma-separated numbers, "
                    f"got {line[:80]!r}"
                ) from exc
            if width is not None and len(cells) != width:
                raise DataError(
                    f"{path}, line {number}: expected {width} columns like the "
                    f"lines before, got {len(cells)}"
                ) from exc
            width = len(cells)
        raise DataError(f"{path} could not be read as CSV: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_dataset(array: np.ndarray, y: np.ndarray | None, path: Path) -> Dataset:
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: expected real numbers (bool, int or float), got dtype "
            f"{array.dtype}"
        )
    if array.ndim not in (2, 3):
        raise DataError(
            f"{path}: expected a 2-D array (n_samples, n_features) or a 3-D "
            f"stack of images (n_samples, rows, cols), got shape {array.shape}"
        )
    if array.size == 0:
        raise DataError(f"{path}: the array is empty, shape {array.shape}")
    image_shape = array.shape[1:] if array.ndim == 3 else None
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        X = np.ascontiguousarray(array.reshape(len(array), -1), dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} non-finite values (NaN, inf, or beyond "
            f"float32 range); the first is in row {np.flatnonzero(bad.any(axis=1))[0]}"
        )
    return Dataset(X=X, y=y, image_shape=image_shape, name=path.stem)


# ---------------------------------------------------------------------------
# One entry point for the command line
# ---------------------------------------------------------------------------

DATASET_NAMES = ("shapes", "mnist", "fashion-mnist", "binarized-mnist")
# Any large odd offset keeps the test images' Philox stream apart from train's.
_TEST_SEED_OFFSET = 1_000_003


def _data_folder(name: str, data_dir) -> Path:
    """``data_dir`` or FASTVAE_DATA_DIR or ~/.cache/fastvae, or its ``name`` subfolder.

    Accepting a parent folder lets one setting serve all datasets, laid out
    as ``<root>/mnist``, ``<root>/fashion-mnist``, ``<root>/binarized-mnist``.
    """
    if data_dir is None:
        data_dir = os.environ.get("FASTVAE_DATA_DIR")
        if not data_dir:
            return Path("~/.cache/fastvae", name).expanduser()
    base = Path(data_dir).expanduser()
    return base / name if (base / name).is_dir() else base


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


# ---------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------


def _real_array(name: str, X) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
    return X


def binarize(X, *, threshold: float = 0.5) -> np.ndarray:
    """Deterministic binarization: 1 where ``X > threshold``, else 0.

    Parameters
    ----------
    X : array-like of real numbers
    threshold : float, default=0.5

    Returns
    -------
    ndarray of float32, same shape as X
    """
    X = _real_array("X", X)
    if not isinstance(threshold, Real) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return (X > threshold).astype(np.float32)


def sample_binarize(X, *, seed: int = 0) -> np.ndarray:
    """Stochastic binarization: each value ``p`` becomes 1 with probability ``p``.

    Parameters
    ----------
    X : array-like of values in [0, 1]
    seed : int, default=0
        Philox key; the same seed and shape give the same draw.

    Returns
    -------
    ndarray of float32, same shape as X

    Raises
    ------
    ValueError
        If a value is outside [0, 1] or NaN.

    Notes
    -----
    ``x_ij = 1[u_ij < p_ij]`` with ``u_ij ~ U[0, 1)`` in float32, drawn in
    C order, so 0 stays 0 and 1 stays 1.
    """
    X = np.asarray(_real_array("X", X), dtype=np.float32)
    outside = ~((X >= 0) & (X <= 1))
    if outside.any():
        raise ValueError(
            f"X must hold probabilities in [0, 1]; {int(outside.sum())} values "
            f"are outside or NaN, e.g. {X[outside].flat[0]}"
        )
    u = _philox(seed).random(X.shape, dtype=np.float32)
    return (u < X).astype(np.float32)


def one_hot(labels, n_classes: int | None = None) -> np.ndarray:
    """Condition vectors for a conditional model: one row per label.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Class labels in [0, n_classes).
    n_classes : int, optional
        Number of classes; max(labels) + 1 when None.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float32
        Row i is 1 in column labels[i] and 0 elsewhere.

    Raises
    ------
    ValueError
        If labels are not integers in [0, n_classes) or not 1-D.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.size and not (
        y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.all(y == np.round(y)))
    ):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    n_classes = _check_int("n_classes", n_classes, 1)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got values in [{y.min()}, {y.max()}]"
        )
    out = np.zeros((y.size, n_classes), dtype=np.float32)
    out[np.arange(y.size), y] = 1.0
    return out


def train_validation_split(
    data: Dataset, *, n_validation: int | float = 0.1, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a dataset at random into training and validation parts.

    Parameters
    ----------
    data : Dataset
    n_validation : int or float, default=0.1
        Rows to hold out: a count >= 1, or a fraction in (0, 1) (rounded).
    seed : int, default=0
        Philox key of the shuffle.

    Returns
    -------
    train : Dataset
        The rows not held out, in the original row order.
    validation : Dataset
        The held-out rows, in the original row order; the two parts are
        disjoint and cover all rows.

    Raises
    ------
    ValueError
        If ``n_validation`` is not a valid count or fraction, or either part
        would be empty.
    """
    n = len(data)
    if isinstance(n_validation, Integral) and not isinstance(n_validation, bool):
        n_val = int(n_validation)
    elif isinstance(n_validation, Real) and 0 < n_validation < 1:
        n_val = round(n_validation * n)
    else:
        raise ValueError(
            "n_validation must be a count >= 1 or a fraction in (0, 1), "
            f"got {n_validation!r}"
        )
    if not 1 <= n_val <= n - 1:
        raise ValueError(
            f"n_validation={n_validation!r} gives {n_val} validation rows out of "
            f"{n}; both parts need at least one row"
        )
    order = _philox(seed).permutation(n)
    # Sorted indices keep the original order and make the copies sequential.
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))
