"""Datasets: a built-in shapes set, MNIST-family IDX/AMAT readers, user arrays.

Every loader returns a :class:`Dataset` whose ``X`` is float32, C-contiguous
and of shape ``(n_samples, n_features)``: the layout the compiled training
step reads without a copy. Real data is read from a folder the user gives
(or downloaded from the published mirrors when asked to, ``download=True``)
and checked against the published MD5 checksums.

The modules of this package, one concept each:

- ``dataset``: the :class:`Dataset` container;
- ``shapes``: the built-in generated shapes;
- ``idx``: IDX files and checksum-verified reads;
- ``download``: fetching a missing file from its mirrors;
- ``mnist``: MNIST, Fashion-MNIST and binarized MNIST;
- ``arrays``: a user's ``.npy``, ``.npz`` or ``.csv`` file;
- ``registry``: datasets by name or path (the command line's entry point);
- ``transforms``: binarization, one-hot labels, train/validation split;
- ``batches``: minibatches for the compiled step, from memory or memory maps;
- ``sparse_files``: a CSR matrix as .npy files, memory-mapped when read;
- ``annotated``: AnnData in (a matrix or layer, an obs column as condition).
"""

from fastvae.data.arrays import load_array
from fastvae.data.dataset import Dataset
from fastvae.data.idx import read_idx
from fastvae.data.mnist import load_binarized_mnist, load_mnist
from fastvae.data.registry import DATASET_NAMES, load_dataset
from fastvae.data.shapes import SHAPE_FACTOR_NAMES, SHAPE_NAMES, make_shapes
from fastvae.data.sparse_files import load_csr, save_csr
from fastvae.data.transforms import (
    binarize,
    one_hot,
    sample_binarize,
    train_validation_split,
)
from fastvae.exceptions import DataError

__all__ = [
    "DATASET_NAMES",
    "SHAPE_FACTOR_NAMES",
    "SHAPE_NAMES",
    "DataError",
    "Dataset",
    "binarize",
    "load_array",
    "load_binarized_mnist",
    "load_csr",
    "load_dataset",
    "load_mnist",
    "make_shapes",
    "one_hot",
    "read_idx",
    "sample_binarize",
    "save_csr",
    "train_validation_split",
]
