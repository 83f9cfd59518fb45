"""Bad input through the public API and the command line.

Every case either raises a clear exception (type and message checked) or is
handled correctly: a layout or dtype that has to be converted gives exactly
the numbers the converted array gives. Nothing may crash the interpreter or
return a silently wrong answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

import fastvae
from fastvae import data, optim

REPO = Path(__file__).resolve().parent.parent
N, D, K = 48, 12, 3


def _binary(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    return (rng.random((n, d)) < 0.4).astype(np.float32)


X = _binary()
COND = np.eye(2, dtype=np.float32)[np.arange(N) % 2]


def _small(cls=fastvae.VAE, **settings):
    base = dict(
        hidden=(8,), latent_dim=K, epochs=1, batch_size=16, random_state=0, n_threads=1
    )
    return cls(**{**base, **settings})


@pytest.fixture(scope="module")
def vae():
    return _small().fit(X)


@pytest.fixture(scope="module")
def cvae():
    return _small().fit(X, condition=COND)


@pytest.fixture(autouse=True)
def _default_threads():
    yield
    fastvae.set_num_threads(None)


# -- training data that must be refused ------------------------------------------------


class _ArrayLike:
    """The array protocol only, as pandas objects, xarray and others offer it."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def _with_string(a):
    a[3, 5] = "abc"
    return a


def _with(value, row=3, col=5, base=X):
    out = base.astype(np.float64)
    out[row, col] = value
    return out


BAD_DATA = {
    "1-D": (X[0], ValueError, r"X must be 2-D .*got shape \(12,\).*reshape\(1, -1\)"),
    "3-D": (X.reshape(N, 3, 4), ValueError, r"X must be 2-D .*flatten images"),
    "0-D": (np.float32(1.0), ValueError, r"X must be 2-D .*got shape \(\)"),
    "0 rows": (
        np.zeros((0, D), np.float32),
        ValueError,
        "X is empty: it has 0 samples",
    ),
    "0 columns": (np.zeros((N, 0), np.float32), ValueError, r"X has 0 feature\(s\)"),
    "NaN": (
        _with(np.nan),
        ValueError,
        r"X contains 1 NaN or infinite values \(first in row 3\)",
    ),
    "+inf": (
        _with(np.inf, row=7),
        ValueError,
        r"1 NaN or infinite values \(first in row 7\)",
    ),
    "-inf": (_with(-np.inf), ValueError, "NaN or infinite values"),
    "too big for float32": (
        _with(1e300, row=2),
        ValueError,
        r"X has 1 values too large for float32 .*first in row 2.*float64",
    ),
    "complex": (
        X.astype(np.complex64),
        ValueError,
        "Complex data not supported: X has dtype complex64",
    ),
    "strings": (X.astype(str), TypeError, r"X must hold numbers, got dtype <U"),
    "bytes": (X.astype("S3"), TypeError, "X must hold numbers, got dtype"),
    "object with a string": (
        _with_string(X.astype(object)),
        TypeError,
        "X has dtype object and cannot be read as numbers: could not convert string",
    ),
    "datetime": (np.zeros((N, D), "datetime64[s]"), TypeError, "got dtype datetime64"),
    "ragged list": (
        [[0.0, 1.0], [1.0]],
        ValueError,
        "X cannot be read as a 2-D array of numbers .*rows of different lengths",
    ),
    "None": (None, TypeError, "X must be an array, got None"),
    "sparse complex": (
        scipy.sparse.csr_matrix(X.astype(np.complex64)),
        TypeError,
        r"X must hold real numbers, got dtype complex64",
    ),
    "sparse outside [0, 1]": (
        scipy.sparse.csr_matrix(X * 3),
        ValueError,
        r"X must lie in \[0, 1\] for the Bernoulli likelihood",
    ),
    "masked values": (
        np.ma.masked_array(X, mask=X > 0.5),
        ValueError,
        r"X is a masked array with \d+ masked values",
    ),
    "outside [0, 1]": (
        X * 255,
        ValueError,
        r"X must lie in \[0, 1\] for the Bernoulli",
    ),
    "array-like of objects with a string": (
        _ArrayLike(_with_string(X.astype(object))),
        TypeError,
        "X has dtype object and cannot be read as numbers",
    ),
}


@pytest.mark.parametrize("bad, error, message", BAD_DATA.values(), ids=BAD_DATA.keys())
@pytest.mark.parametrize(
    "cls", [fastvae.VAE, fastvae.Autoencoder, fastvae.DenoisingAutoencoder]
)
def test_bad_training_data_is_refused(cls, bad, error, message):
    with pytest.raises(error, match=message):
        _small(cls).fit(bad)


def test_wrong_feature_count_for_input_dim():
    with pytest.raises(
        ValueError, match="X has 12 features, but VAE is expecting 7 features"
    ):
        _small(input_dim=7).fit(X)


BAD_VALIDATION = {
    "wrong width": (
        X[:, :5],
        ValueError,
        "validation_data has 5 features, but VAE is expecting 12 features",
    ),
    "NaN": (_with(np.nan), ValueError, "validation_data contains 1 NaN"),
    "empty": (X[:0], ValueError, "validation_data is empty"),
    "1-tuple": (
        (X,),
        ValueError,
        r"validation_data must be X_val or \(X_val, condition_val\)",
    ),
    "3-tuple": ((X, COND, COND), ValueError, "validation_data must be X_val or"),
    "condition for a plain fit": (
        (X, COND),
        ValueError,
        r"validation_data must be \(X_val, condition_val\) exactly",
    ),
}


@pytest.mark.parametrize(
    "bad, error, message", BAD_VALIDATION.values(), ids=BAD_VALIDATION.keys()
)
def test_bad_validation_data_is_refused(bad, error, message):
    with pytest.raises(error, match=message):
        _small().fit(X, validation_data=bad)


BAD_CONDITIONS = {
    "1-D": (COND[:, 0], ValueError, r"condition must be 2-D .*reshape\(-1, 1\)"),
    "wrong rows": (COND[:-1], ValueError, "condition has 47 rows but the data have 48"),
    "NaN": (_with(np.nan, base=COND, col=1), ValueError, "condition contains 1 NaN"),
    "inf": (
        _with(np.inf, base=COND, col=0),
        ValueError,
        "condition contains 1 NaN or infinite",
    ),
    "complex": (
        COND.astype(complex),
        ValueError,
        "Complex data not supported: condition",
    ),
    "strings": (COND.astype(str), TypeError, "condition must hold numbers"),
    "0 columns": (COND[:, :0], ValueError, r"condition has 0 condition column\(s\)"),
}


@pytest.mark.parametrize(
    "bad, error, message", BAD_CONDITIONS.values(), ids=BAD_CONDITIONS.keys()
)
def test_bad_conditions_are_refused(bad, error, message):
    with pytest.raises(error, match=message):
        _small().fit(X, condition=bad)


# -- settings that must be refused -----------------------------------------------------

BAD_SETTINGS = {
    "latent_dim=0": (dict(latent_dim=0), ValueError, "latent_dim must be >= 1, got 0"),
    "latent_dim=-1": (
        dict(latent_dim=-1),
        ValueError,
        "latent_dim must be >= 1, got -1",
    ),
    "latent_dim=2.5": (dict(latent_dim=2.5), TypeError, "latent_dim must be Integral"),
    "hidden=(0,)": (
        dict(hidden=(0,)),
        ValueError,
        r"hidden must contain integers >= 1, got \(0,\)",
    ),
    "hidden=(-3,)": (
        dict(hidden=(-3,)),
        ValueError,
        "hidden must contain integers >= 1",
    ),
    "hidden=None": (dict(hidden=None), TypeError, "hidden must be a sequence of ints"),
    "hidden=(2**31,)": (
        dict(hidden=(2**31,)),
        ValueError,
        "hidden must contain integers < 2",
    ),
    "decoder_hidden=(0,)": (
        dict(decoder_hidden=(0,)),
        ValueError,
        "decoder_hidden must contain integers >= 1",
    ),
    "epochs=0": (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
    "epochs=-1": (dict(epochs=-1), ValueError, "epochs must be >= 1, got -1"),
    "batch_size=0": (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    "batch_size=-8": (dict(batch_size=-8), ValueError, "batch_size must be >= 1"),
    "lr=nan": (dict(lr=float("nan")), ValueError, "lr must be finite, got nan"),
    "lr=inf": (dict(lr=float("inf")), ValueError, "lr must be finite, got inf"),
    "lr=-1": (dict(lr=-1.0), ValueError, r"lr must be > 0.0, got -1.0"),
    "lr=0": (dict(lr=0.0), ValueError, r"lr must be > 0.0, got 0.0"),
    "beta<0": (dict(beta=-0.5), ValueError, r"beta must be >= 0.0, got -0.5"),
    "beta=nan": (dict(beta=float("nan")), ValueError, "beta must be finite"),
    "sigma=0": (
        dict(likelihood="gaussian", sigma=0.0),
        ValueError,
        r"sigma must be > 0.0",
    ),
    "sigma<0": (
        dict(likelihood="gaussian", sigma=-1.0),
        ValueError,
        r"sigma must be > 0.0",
    ),
    "sigma=nan": (
        dict(likelihood="gaussian", sigma=float("nan")),
        ValueError,
        "sigma must be finite",
    ),
    "sigma=learned, bernoulli": (
        dict(sigma="learned"),
        ValueError,
        "sigma='learned' needs likelihood='gaussian'",
    ),
    "kl_warmup=-1": (dict(kl_warmup=-1), ValueError, "kl_warmup must be >= 0"),
    "corruption=1": (dict(corruption=1.0), ValueError, r"corruption must be < 1.0"),
    "corruption<0": (dict(corruption=-0.1), ValueError, r"corruption must be >= 0.0"),
    "random_state=-1": (dict(random_state=-1), ValueError, "random_state must be >= 0"),
    "random_state=2**64": (
        dict(random_state=2**64),
        ValueError,
        "random_state must be <= 18446744073709551615",
    ),
    "random_state=1.5": (
        dict(random_state=1.5),
        TypeError,
        "random_state must be Integral, got 1.5",
    ),
    "n_threads=0": (dict(n_threads=0), ValueError, "n_threads must be >= 1"),
    "n_threads=257": (dict(n_threads=257), ValueError, "n_threads must be <= 256"),
    "dtype=float16": (
        dict(dtype=np.float16),
        TypeError,
        "dtype must be float32 or float64",
    ),
    "dtype=int32": (
        dict(dtype=np.int32),
        TypeError,
        "dtype must be float32 or float64",
    ),
    "dtype=nonsense": (
        dict(dtype="nonsense"),
        TypeError,
        "dtype must be float32 or float64",
    ),
    "likelihood=laplace": (
        dict(likelihood="laplace"),
        ValueError,
        "likelihood must be one of",
    ),
    "optimizer=rmsprop": (
        dict(optimizer="rmsprop"),
        ValueError,
        "optimizer must be one of",
    ),
    "optimizer=3": (
        dict(optimizer=3),
        TypeError,
        "optimizer must be 'sgd', 'momentum', 'adam'",
    ),
    # a 10^9-wide code would need TBs: refused before anything is allocated
    "latent_dim=10**9": (
        dict(latent_dim=10**9),
        MemoryError,
        r"training this VAE needs about [\d,.]+ GiB but this machine has",
    ),
    "hidden=(10**9,)": (
        dict(hidden=(10**9,)),
        MemoryError,
        r"needs about .* use smaller hidden layers",
    ),
    "hidden=(10**5,)*3": (dict(hidden=(10**5,) * 3), MemoryError, "needs about"),
}


@pytest.mark.parametrize(
    "settings, error, message", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys()
)
def test_bad_settings_are_refused(settings, error, message):
    model = _small(**settings)
    with pytest.raises(error, match=message):
        model.fit(X)
    assert not hasattr(model, "params_")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: optim.Adam(lr=float("nan")), "lr must be finite"),
        (lambda: optim.Adam(beta1=1.0), r"beta1 must be < 1.0"),
        (lambda: optim.Adam(beta2=-0.1), r"beta2 must be >= 0.0"),
        (lambda: optim.Adam(eps=0.0), r"eps must be > 0.0"),
        (lambda: optim.Momentum(momentum=1.5), r"momentum must be < 1.0"),
        (lambda: optim.SGD(lr=-1e-3), r"lr must be > 0.0"),
    ],
    ids=["adam-lr-nan", "adam-beta1", "adam-beta2", "adam-eps", "momentum", "sgd-lr"],
)
def test_bad_optimizer_objects_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
        (dict(epochs=-1), ValueError, "epochs must be >= 1, got -1"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(lr=float("nan")), ValueError, "lr must be finite"),
        (dict(lr=-1), ValueError, "lr must be > 0.0"),
        (dict(optimizer="nope"), ValueError, "optimizer must be one of"),
    ],
    ids=["epochs=0", "epochs=-1", "batch=0", "lr=nan", "lr=-1", "optimizer"],
)
def test_bad_fit_overrides_are_refused(overrides, error, message):
    model = _small()
    with pytest.raises(error, match=message):
        model.fit(X, **overrides)
    assert not hasattr(model, "params_")  # nothing half-fitted is left behind


# -- fitted models: inference calls ----------------------------------------------------

BAD_CALLS = {
    "transform 1-D": (
        lambda m: m.transform(X[0]),
        ValueError,
        r"X must be 2-D .*reshape\(1, -1\)",
    ),
    "transform width": (
        lambda m: m.transform(X[:, :5]),
        ValueError,
        "X has 5 features, but VAE is expecting 12 features",
    ),
    "transform empty": (lambda m: m.transform(X[:0]), ValueError, "X is empty"),
    "encode NaN": (lambda m: m.encode(_with(np.nan)), ValueError, "X contains 1 NaN"),
    "encode strings": (
        lambda m: m.encode(X.astype(str)),
        TypeError,
        "X must hold numbers",
    ),
    "decode width": (
        lambda m: m.decode(np.zeros((2, K + 1))),
        ValueError,
        "Z has 4 latent dims, but VAE is expecting 3 latent dims",
    ),
    "decode inf": (
        lambda m: m.decode(np.full((2, K), np.inf)),
        ValueError,
        "Z contains 6 NaN or infinite",
    ),
    "decode complex": (
        lambda m: m.decode(np.zeros((2, K), complex)),
        ValueError,
        "Complex data not supported: Z",
    ),
    "reconstruct 3-D": (
        lambda m: m.reconstruct(X.reshape(N, 3, 4)),
        ValueError,
        "X must be 2-D",
    ),
    "elbo width": (lambda m: m.elbo(X[:, 1:]), ValueError, "X has 11 features"),
    "score_samples NaN": (lambda m: m.score_samples(_with(np.nan)), ValueError, "NaN"),
    "score range": (
        lambda m: m.score(X + 2),
        ValueError,
        r"X must lie in \[0, 1\] for the Bernoulli likelihood",
    ),
    "elbo range": (lambda m: m.elbo(X - 1), ValueError, r"X must lie in \[0, 1\]"),
    "log_likelihood range": (
        lambda m: m.log_likelihood(X * 3, k=2),
        ValueError,
        r"X must lie in \[0, 1\]",
    ),
    "sample 0": (lambda m: m.sample(0), ValueError, "n_samples must be >= 1, got 0"),
    "sample -1": (lambda m: m.sample(-1), ValueError, "n_samples must be >= 1"),
    "sample 2.5": (lambda m: m.sample(2.5), TypeError, "n_samples must be Integral"),
    "sample True": (lambda m: m.sample(True), TypeError, "n_samples must be Integral"),
    "sample seed -1": (lambda m: m.sample(2, seed=-1), ValueError, "seed must be >= 0"),
    "sample seed 2**64": (
        lambda m: m.sample(2, seed=2**64),
        ValueError,
        "seed must be <=",
    ),
    "sample 10**12": (
        lambda m: m.sample(10**12),
        MemoryError,
        r"sample\(1000000000000\) needs about [\d,.]+ TiB",
    ),
    "log_likelihood k=0": (
        lambda m: m.log_likelihood(X, k=0),
        ValueError,
        "k must be >= 1, got 0",
    ),
    "log_likelihood k=-5": (
        lambda m: m.log_likelihood(X, k=-5),
        ValueError,
        "k must be >= 1",
    ),
    "log_likelihood k=2.5": (
        lambda m: m.log_likelihood(X, k=2.5),
        TypeError,
        "k must be Integral, got 2.5",
    ),
    "log_likelihood k=True": (
        lambda m: m.log_likelihood(X, k=True),
        TypeError,
        "k must be Integral",
    ),
    "log_likelihood seed": (
        lambda m: m.log_likelihood(X, k=2, seed=-2),
        ValueError,
        "seed must be >= 0",
    ),
    "condition without conditions": (
        lambda m: m.transform(X, COND),
        ValueError,
        "condition given, but this model was fitted without",
    ),
}


@pytest.mark.parametrize(
    "call, error, message", BAD_CALLS.values(), ids=BAD_CALLS.keys()
)
def test_bad_inference_calls_are_refused(vae, call, error, message):
    with pytest.raises(error, match=message):
        call(vae)


BAD_CONDITION_CALLS = {
    "missing": (
        lambda m: m.transform(X),
        ValueError,
        r"fitted with 2 condition columns; pass condition=",
    ),
    "wrong width": (
        lambda m: m.elbo(X, COND[:, :1]),
        ValueError,
        "condition has 1 condition columns, but VAE is expecting 2",
    ),
    "wrong rows": (
        lambda m: m.decode(np.zeros((3, K)), COND[:2]),
        ValueError,
        "condition has 2 rows but the data have 3",
    ),
    "NaN": (
        lambda m: m.encode(X, _with(np.nan, base=COND, col=0)),
        ValueError,
        "condition contains 1 NaN",
    ),
    "sample 1-D wrong width": (
        lambda m: m.sample(3, condition=np.ones(3)),
        ValueError,
        "condition has 3 condition columns, but VAE is expecting 2",
    ),
    "sample wrong rows": (
        lambda m: m.sample(3, condition=COND[:2]),
        ValueError,
        "condition has 2 rows but the data have 3",
    ),
    "sample 3-D": (
        lambda m: m.sample(3, condition=np.ones((3, 2, 1))),
        ValueError,
        "condition must be 2-D",
    ),
    "log_likelihood missing": (
        lambda m: m.log_likelihood(X, k=2),
        ValueError,
        "pass condition=",
    ),
}


@pytest.mark.parametrize(
    "call, error, message", BAD_CONDITION_CALLS.values(), ids=BAD_CONDITION_CALLS.keys()
)
def test_bad_condition_calls_are_refused(cvae, call, error, message):
    with pytest.raises(error, match=message):
        call(cvae)


@pytest.mark.parametrize("cls", [fastvae.VAE, fastvae.Autoencoder])
@pytest.mark.parametrize(
    "method",
    ["transform", "encode", "reconstruct", "score_samples", "score", "decode", "save"],
)
def test_unfitted_models_raise_not_fitted(cls, method, tmp_path):
    arg = {"decode": np.zeros((2, K)), "save": tmp_path / "m.npz"}.get(method, X)
    with pytest.raises(fastvae.NotFittedError, match="is not fitted yet"):
        getattr(_small(cls), method)(arg)
    assert not (tmp_path / "m.npz").exists()


# -- layouts and dtypes that are converted: same numbers as the converted array --------


def _outputs(model, A, cond=None):
    """Everything a fitted VAE computes from A, as float64 arrays."""
    mu, logvar = model.encode(A, cond)
    return {
        "transform": model.transform(A, cond),
        "mu": mu,
        "logvar": logvar,
        "reconstruct": model.reconstruct(A, cond),
        "elbo": model.elbo(A, cond),
        "log_likelihood": model.log_likelihood(A, cond, k=3),
    }


def _assert_same(got, want):
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _strided(a, step=2):
    """a as a view with a column step: same values, not contiguous."""
    wide = np.zeros((a.shape[0], a.shape[1] * step), a.dtype)
    wide[:, ::step] = a
    return wide[:, ::step]


def _row_strided(a):
    tall = np.zeros((2 * a.shape[0], a.shape[1]), a.dtype)
    tall[::2] = a
    return tall[::2]


def _read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _memmap(a, tmp_path):
    np.save(tmp_path / "x.npy", a)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def _raw_memmap(a, tmp_path):
    m = np.memmap(tmp_path / "x.raw", dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    return np.memmap(tmp_path / "x.raw", dtype=a.dtype, mode="r", shape=a.shape)


def _matrix(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


# Each variant holds exactly the values of X (the model's float32 input).
SAME_VALUES = {
    "Fortran order": lambda a, tmp: np.asfortranarray(a),
    "column step (non-contiguous)": lambda a, tmp: _strided(a),
    "row step (non-contiguous)": lambda a, tmp: _row_strided(a),
    "negative column stride, twice": lambda a, tmp: a[:, ::-1][:, ::-1],
    "read-only": lambda a, tmp: _read_only(a),
    "np.load mmap_mode='r'": _memmap,
    "np.memmap": _raw_memmap,
    "nested lists": lambda a, tmp: a.tolist(),
    "uint8": lambda a, tmp: a.astype(np.uint8),
    "bool": lambda a, tmp: a.astype(bool),
    "int64": lambda a, tmp: a.astype(np.int64),
    "float16": lambda a, tmp: a.astype(np.float16),
    "float64": lambda a, tmp: a.astype(np.float64),
    "big-endian float32": lambda a, tmp: a.astype(">f4"),
    "array-like object": lambda a, tmp: _ArrayLike(a),
    "object dtype holding numbers": lambda a, tmp: a.astype(object),
    "masked array, nothing masked": lambda a, tmp: np.ma.masked_array(a),
    "np.matrix": lambda a, tmp: _matrix(a),
}


@pytest.mark.parametrize("make", SAME_VALUES.values(), ids=SAME_VALUES.keys())
def test_converted_inputs_give_bitwise_the_same_results(vae, make, tmp_path):
    want = _outputs(vae, X)
    _assert_same(_outputs(vae, make(X, tmp_path)), want)


@pytest.mark.parametrize("make", SAME_VALUES.values(), ids=SAME_VALUES.keys())
def test_converted_training_data_give_bitwise_the_same_model(make, tmp_path):
    want = _small().fit(X).params_
    got = _small().fit(make(X, tmp_path)).params_
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: np.asfortranarray(c),
        lambda c: _strided(c),
        lambda c: c.tolist(),
        lambda c: c.astype(np.int8),
        lambda c: c.astype(bool),
        lambda c: _read_only(c),
    ],
    ids=["Fortran", "strided", "list", "int8", "bool", "read-only"],
)
def test_converted_conditions_give_bitwise_the_same_results(cvae, make):
    _assert_same(_outputs(cvae, X, make(COND)), _outputs(cvae, X, COND))
    want = _small().fit(X, condition=COND).params_
    np.testing.assert_array_equal(_small().fit(X, condition=make(COND)).params_, want)


def test_float64_input_to_a_float32_model_is_rounded_once(vae):
    rng = np.random.default_rng(1)
    soft = np.clip(
        X + rng.uniform(-0.3, 0.3, X.shape), 0, 1
    )  # float64, not float32-exact
    _assert_same(_outputs(vae, soft), _outputs(vae, soft.astype(np.float32)))


def test_negative_strides_give_the_contiguous_copys_numbers(vae):
    cols = X[:, ::-1]
    _assert_same(_outputs(vae, cols), _outputs(vae, np.ascontiguousarray(cols)))
    rows = X[::-1]
    _assert_same(_outputs(vae, rows), _outputs(vae, np.ascontiguousarray(rows)))
    # Reversed rows are the same samples in another order. OpenBLAS rounds a
    # row differently by its position in a GEMM, so they agree to float32
    # rounding, not bitwise. (elbo and log_likelihood draw z by row position,
    # so they legitimately differ.)
    got, want = _outputs(vae, rows), _outputs(vae, X)
    for name in ("transform", "mu", "logvar", "reconstruct"):
        np.testing.assert_allclose(
            got[name], want[name][::-1], rtol=2e-5, atol=2e-6, err_msg=name
        )


def test_zero_strided_broadcast_input(vae):
    same = np.broadcast_to(X[4], X.shape)  # every row the same view, stride 0
    assert same.strides[0] == 0
    _assert_same(_outputs(vae, same), _outputs(vae, np.ascontiguousarray(same)))


def test_batch_larger_than_data_warns_at_the_callers_line_and_uses_all_rows():
    with pytest.warns(
        UserWarning, match="batch_size=1000 is larger than the 48 samples; using 48"
    ) as record:
        big = _small(batch_size=1000, epochs=2).fit(X)
    assert record[0].filename == __file__  # stacklevel points at the user's call
    assert big.t_ == 2
    np.testing.assert_array_equal(
        big.params_, _small(batch_size=N, epochs=2).fit(X).params_
    )


def test_one_sample_and_one_feature_train_and_infer():
    one = _small(batch_size=1).fit(X[:1])
    assert one.t_ == 1 and np.isfinite(one.params_).all()
    narrow = _small().fit(X[:, :1])
    assert narrow.transform(X[:, :1]).shape == (N, K)
    assert np.isfinite(narrow.elbo(X[:, :1])).all()


def test_dtype_of_the_model_wins_over_the_dtype_of_the_data():
    m64 = _small(dtype=np.float64).fit(X)  # float32 data, float64 model
    assert m64.params_.dtype == np.float64
    np.testing.assert_array_equal(
        m64.params_, _small(dtype="float64").fit(X.astype(float)).params_
    )
    assert m64.transform(X).dtype == np.float64


# -- files, threads and data loaders ---------------------------------------------------


def test_save_and_load_refuse_bad_paths(vae, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vae.save(tmp_path / "missing" / "m.npz")
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        vae.save(tmp_path)
    with pytest.raises(fastvae.ModelFileError, match="is a folder, not a model file"):
        fastvae.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fastvae.load(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(fastvae.ModelFileError, match="not a valid model file"):
        fastvae.load(tmp_path / "text.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.npz"]  # no temp files


@pytest.mark.parametrize(
    "bad",
    [0, -1, 257, 10**6, 1.5, "2", True, [2]],
    ids=["0", "-1", "257", "10**6", "1.5", "str", "bool", "list"],
)
def test_set_num_threads_refuses_bad_counts(bad):
    with pytest.raises(
        ValueError, match=r"number of threads must be an integer in \[1, 256\]"
    ):
        fastvae.set_num_threads(bad)


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
def test_numpy_integers_are_thread_counts(vae):
    fastvae.set_num_threads(np.int64(2))
    assert fastvae.get_num_threads() == 2 and type(fastvae.get_num_threads()) is int
    np.testing.assert_array_equal(
        _small(n_threads=np.int32(2)).fit(X).params_, _small(n_threads=1).fit(X).params_
    )


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda tmp: data.make_shapes(0),
            ValueError,
            "n_samples must be an integer >= 1",
        ),
        (
            lambda tmp: data.make_shapes(5, seed=-1),
            ValueError,
            "seed must be an integer >= 0",
        ),
        (
            lambda tmp: data.one_hot([[0, 1]]),
            ValueError,
            r"labels must be 1-D, got shape \(1, 2\)",
        ),
        (lambda tmp: data.one_hot([0, -1]), ValueError, r"labels must lie in \[0, "),
        (lambda tmp: data.one_hot([0.5, 1.0]), ValueError, "labels must be integers"),
        (lambda tmp: data.one_hot([0, 4], n_classes=3), ValueError, r"lie in \[0, 3\)"),
        (
            lambda tmp: data.train_validation_split(
                data.make_shapes(10), n_validation=10
            ),
            ValueError,
            "both parts need at least one row",
        ),
        (
            lambda tmp: data.train_validation_split(
                data.make_shapes(10), n_validation=-0.5
            ),
            ValueError,
            "n_validation must be",
        ),
        (
            lambda tmp: data.binarize(X, threshold=float("nan")),
            ValueError,
            "threshold must be a finite number",
        ),
        (
            lambda tmp: data.load_array(tmp / "missing.npy"),
            FileNotFoundError,
            "not found",
        ),
        (
            lambda tmp: data.load_array(
                _saved(tmp, "o.npy", np.array([[1, None]], object))
            ),
            data.DataError,
            "pickled Python objects, which are refused",
        ),
        (
            lambda tmp: data.load_array(_saved(tmp, "v.npy", np.zeros(5))),
            data.DataError,
            "expected a 2-D array",
        ),
        (
            lambda tmp: data.load_array(_saved(tmp, "e.npy", np.zeros((0, 4)))),
            data.DataError,
            "the array is empty",
        ),
        (
            lambda tmp: data.load_array(_saved(tmp, "n.npy", _with(np.nan))),
            data.DataError,
            "non-finite values",
        ),
        (
            lambda tmp: data.load_array(_text(tmp, "t.csv", "a,b\nc,d\n")),
            data.DataError,
            "expected comma-separated numbers",
        ),
        (
            lambda tmp: data.load_dataset("nonsense"),
            ValueError,
            "unknown dataset 'nonsense'",
        ),
    ],
    ids=[
        "shapes-0",
        "shapes-seed",
        "one_hot-2d",
        "one_hot-negative",
        "one_hot-float",
        "one_hot-classes",
        "split-all",
        "split-negative",
        "binarize-nan",
        "missing-file",
        "object-npy",
        "1-d-npy",
        "empty-npy",
        "nan-npy",
        "text-csv",
        "unknown-name",
    ],
)
def test_data_loaders_refuse_bad_input(call, error, message, tmp_path):
    with pytest.raises(error, match=message):
        call(tmp_path)


def _saved(folder, name, array):
    np.save(folder / name, array, allow_pickle=array.dtype == object)
    return folder / name


def _text(folder, name, text):
    (folder / name).write_text(text)
    return folder / name


# -- the command line ------------------------------------------------------------------

_TINY = [
    "--epochs",
    "1",
    "--hidden",
    "8",
    "--latent-dim",
    "2",
    "--batch-size",
    "16",
    "--validation",
    "0",
    "--quiet",
]
CLI_CASES = {
    "epochs 0": (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    "epochs -1": (["--epochs", "-1"], "--epochs must be >= 1, got -1"),
    "batch-size 0": (
        ["--batch-size", "0"],
        "argument --batch-size: expected an integer >= 1",
    ),
    "latent-dim 0": (["--latent-dim", "0"], "--latent-dim must be >= 1"),
    "latent-dim 10**9": (
        ["--latent-dim", "1000000000"],
        "needs about .* but this machine has",
    ),
    "hidden 0": (["--hidden", "0"], "argument --hidden: expected an integer >= 1"),
    "lr nan": (["--lr", "nan"], "--lr must be finite"),
    "lr -1": (["--lr", "-1"], r"--lr must be > 0.0"),
    "beta -1": (["--beta", "-1"], r"--beta must be >= 0.0"),
    "sigma 0": (
        ["--likelihood", "gaussian", "--sigma", "0"],
        r"--sigma must be > 0.0",
    ),
    "threads 0": (["--threads", "0"], "argument --threads: expected an integer >= 1"),
    "threads 10**5": (["--threads", "100000"], "--threads must be <= 256"),
    "dtype float16": (["--dtype", "float16"], "argument --dtype: invalid choice"),
    "NaN data": (["--data", "nan.npy"], "non-finite values"),
    "3-D data": (["--data", "cube.npy"], "got shape"),
    "missing data": (["--data", "missing.npy"], "missing.npy not found"),
    "out under a file": (["--out", "good.npy/run"], "Not a directory"),
}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Every CLI case, run at once in its own subprocess (each takes about a
    second, mostly start-up), keyed by case name."""
    folder = tmp_path_factory.mktemp("cli-bad")
    np.save(folder / "good.npy", _binary(n=64, d=16))
    np.save(folder / "nan.npy", _with(np.nan, base=_binary(n=64, d=16)))
    np.save(folder / "cube.npy", np.zeros((64, 4, 4, 2)))
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    procs = {}
    for i, (name, (args, _)) in enumerate(CLI_CASES.items()):
        # a folder each: one training at a time may use a run folder
        argv = ["train", "--data", "good.npy", "--out", f"run{i}", *_TINY, *args]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "fastvae", *argv],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_reports_bad_input_in_one_line(cli_results, name):
    code, out, err = cli_results[name]
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(("fastvae: error: ", "fastvae train: error: ")), err
    assert re.search(CLI_CASES[name][1], last), last


def test_no_warnings_leak_from_refused_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from the cast would fail here
        with pytest.raises(ValueError, match="too large for float32"):
            _small(likelihood="gaussian").fit(np.full((4, 3), 1e300))
