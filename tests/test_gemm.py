"""fastvae's own GEMM (src_c/fastvae/gemm.h) against a float64 NumPy product,
and the backend switch that picks it or BLAS for the training step."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastvae
from fastvae import _blas

own = pytest.mark.skipif(not _blas.own_gemm_available(),
                         reason="fastvae's own GEMM needs AVX-512 (x86-64-v4)")

# Shapes that hit every tile edge: one element, fewer rows than a register
# tile, columns not a multiple of a vector, a partial last vector of the
# dot kernel's sum, k = 0, and the three products of the 784-400/20/128 step.
SHAPES = [(1, 1, 1), (3, 5, 7), (7, 17, 33), (13, 70, 9), (6, 64, 0), (5, 31, 16),
          (25, 129, 100), (1, 300, 2), (65, 48, 17), (70, 16, 1024),
          # packed panels: A @ B^T from 192 rows, B rows 1 kB apart from 64
          (200, 37, 50), (96, 256, 33), (193, 256, 129)]
TRANSPOSES = [(False, False), (True, False), (False, True)]


def _operands(rng, ta, tb, m, n, k, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def _reference(ta, tb, a, b, c0, alpha, beta):
    A = (a.T if ta else a).astype(np.float64)
    B = (b.T if tb else b).astype(np.float64)
    return alpha * (A @ B) + beta * c0.astype(np.float64)


@own
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 2.0), (-1.0, 1.0)])
def test_own_gemm_matches_a_float64_product(dtype, ta, tb, m, n, k, alpha, beta):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, b = _operands(rng, ta, tb, m, n, k, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    _blas.gemm_memview(ta, tb, a, b, c, alpha, beta, backend="own")
    # error bound of a length-k sum of products of unit normals
    eps = np.finfo(dtype).eps
    tol = 4 * eps * (k + 2) * (1 + np.abs(alpha)) * (1 + np.sqrt(max(k, 1)))
    np.testing.assert_allclose(c, _reference(ta, tb, a, b, c0, alpha, beta),
                               rtol=0, atol=tol)


@own
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_beta_zero_never_reads_c(ta, tb):
    """As in BLAS, C may hold NaN (or garbage) when beta is 0."""
    rng = np.random.default_rng(0)
    a, b = _operands(rng, ta, tb, 9, 37, 21, np.float32)
    c = np.full((9, 37), np.nan, np.float32)
    _blas.gemm_memview(ta, tb, a, b, c, 1.0, 0.0, backend="own")
    assert np.isfinite(c).all()


def _inside(arr, fill, pad=40):
    """arr copied into the middle of a larger buffer filled with `fill`;
    returns (the copy, the buffer)."""
    raw = np.full(arr.size + 2 * pad, fill, arr.dtype)
    view = raw[pad:pad + arr.size].reshape(arr.shape)
    view[...] = arr
    return view, raw


@own
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_own_gemm_reads_inside_a_and_b_and_writes_only_c(ta, tb):
    """Row and column tails are masked: NaN right before and after A and B
    would leak into C if read, and the memory around C stays as it was."""
    rng = np.random.default_rng(1)
    m, n, k = 11, 23, 19
    a, b = _operands(rng, ta, tb, m, n, k, np.float32)
    a_in, _ = _inside(a, np.nan)
    b_in, _ = _inside(b, np.nan)
    c_in, c_raw = _inside(np.zeros((m, n), np.float32), 7.0)
    _blas.gemm_memview(ta, tb, a_in, b_in, c_in, backend="own")
    np.testing.assert_allclose(c_in, _reference(ta, tb, a, b, 0 * c_in, 1, 0),
                               rtol=0, atol=1e-4)
    np.testing.assert_array_equal(c_raw[:40], 7.0)
    np.testing.assert_array_equal(c_raw[40 + m * n:], 7.0)


@own
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_own_gemm_is_deterministic_and_independent_of_alignment(ta, tb):
    """The same numbers at another address: no alignment-dependent peeling."""
    rng = np.random.default_rng(2)
    a, b = _operands(rng, ta, tb, 37, 70, 131, np.float32)
    first = np.empty((37, 70), np.float32)
    _blas.gemm_memview(ta, tb, a, b, first, backend="own")
    for shift in (1, 3, 5):
        raw_a = np.empty(a.size + shift, np.float32)
        a2 = raw_a[shift:].reshape(a.shape)
        a2[...] = a
        raw_b = np.empty(b.size + shift, np.float32)
        b2 = raw_b[shift:].reshape(b.shape)
        b2[...] = b
        again = np.empty((37, 70), np.float32)
        _blas.gemm_memview(ta, tb, a2, b2, again, backend="own")
        np.testing.assert_array_equal(again, first)


@own
def test_packed_panels_give_the_same_numbers_as_unpacked():
    """Rows of B a multiple of 1 kB apart are packed (gemm_impl.h); packing
    moves numbers only, so the result equals the unpacked product of the same
    columns with a B whose rows are not 1 kB apart."""
    rng = np.random.default_rng(3)
    m, k = 96, 50
    b_wide = rng.standard_normal((k, 256)).astype(np.float32)  # 1 kB rows: packed
    a = rng.standard_normal((m, k)).astype(np.float32)
    packed = np.empty((m, 256), np.float32)
    _blas.gemm_memview(False, False, a, b_wide, packed, backend="own")
    b_odd = np.zeros((k, 272), np.float32)  # 1088-byte rows: not packed
    b_odd[:, :256] = b_wide
    unpacked = np.empty((m, 272), np.float32)
    _blas.gemm_memview(False, False, a, b_odd, unpacked, backend="own")
    np.testing.assert_array_equal(packed, unpacked[:, :256])


@own
def test_both_operands_transposed_is_refused_by_the_own_backend():
    a = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="A\\^T @ B\\^T"):
        _blas.gemm_memview(True, True, a, a, np.zeros((2, 3), np.float32),
                           backend="own")


def test_gemm_backend_switch_and_its_errors():
    before = _blas.gemm_backend()
    try:
        _blas.set_gemm_backend("blas")
        assert _blas.gemm_backend() == "blas"
        _blas.set_gemm_backend("auto")
        assert _blas.gemm_backend() == ("own" if _blas.own_gemm_available() else "blas")
        with pytest.raises(ValueError, match="GEMM backend must be one of"):
            _blas.set_gemm_backend("mkl")
        with pytest.raises(ValueError, match="backend must be None"):
            _blas.gemm_memview(False, False, np.ones((1, 1)), np.ones((1, 1)),
                               np.ones((1, 1)), backend="fast")
        if not _blas.own_gemm_available():
            with pytest.raises(ValueError, match="AVX-512"):
                _blas.set_gemm_backend("own")
    finally:
        _blas.set_gemm_backend(before)


def test_a_bad_fastvae_gemm_variable_fails_the_import_clearly():
    env = dict(os.environ, FASTVAE_GEMM="fastest")
    proc = subprocess.run([sys.executable, "-c", "import fastvae"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "FASTVAE_GEMM='fastest'" in proc.stderr
    assert "GEMM backend must be one of" in proc.stderr


def _fit(backend, dtype):
    before = _blas.gemm_backend()
    try:
        _blas.set_gemm_backend(backend)
        X = (np.random.default_rng(0).random((300, 40)) < 0.3).astype(dtype)
        model = fastvae.VAE(hidden=(33,), latent_dim=5, batch_size=64, epochs=3,
                            dtype=dtype, seed=1).fit(X)
        return model.params_.copy(), model.history_["loss"]
    finally:
        _blas.set_gemm_backend(before)


@own
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-4), (np.float64, 1e-11)])
def test_training_with_the_own_gemm_follows_training_with_blas(dtype, rtol):
    """Only rounding differs between the backends: the same 15 steps end at
    nearly the same parameters and losses."""
    p_own, loss_own = _fit("own", dtype)
    p_blas, loss_blas = _fit("blas", dtype)
    np.testing.assert_allclose(loss_own, loss_blas, rtol=rtol)
    np.testing.assert_allclose(p_own, p_blas, rtol=0, atol=50 * rtol)


@own
def test_training_with_the_own_gemm_is_bitwise_equal_for_any_thread_count():
    X = (np.random.default_rng(0).random((400, 60)) < 0.3).astype(np.float32)
    params = []
    for threads in (1, 2, 3):
        model = fastvae.VAE(hidden=(70,), latent_dim=6, batch_size=100, epochs=2,
                            n_threads=threads, seed=4).fit(X)
        params.append(model.params_)
    assert _blas.gemm_backend() == "own"
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(params[0], params[2])
