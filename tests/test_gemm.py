"""fastvae's own GEMM (src_c/fastvae/gemm.h) against a float64 NumPy product,
and the backend switch that picks it or BLAS for the training step."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastvae
from fastvae._core import _blas

own = pytest.mark.skipif(
    not _blas.own_gemm_available(),
    reason="fastvae's own GEMM needs AVX2 + FMA or AVX-512",
)


def _runs_at(level):
    try:
        _blas.gemm_memview(
            False, False, np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)), level=level
        )
    except ValueError:
        return False
    return True


# Every level of the own GEMM, skipped where this CPU or build cannot run it.
LEVELS = [
    pytest.param(
        lv,
        marks=pytest.mark.skipif(
            not _runs_at(lv), reason=f"this CPU or build cannot run the {lv} kernels"
        ),
    )
    for lv in ("avx512", "avx2")
]

# Shapes that hit every tile edge: one element, fewer rows than a register
# tile, columns not a multiple of a vector, a partial last vector of the
# dot kernel's sum, k = 0, and the three products of the 784-400/20/128 step.
SHAPES = [
    (1, 1, 1),
    (3, 5, 7),
    (7, 17, 33),
    (13, 70, 9),
    (6, 64, 0),
    (5, 31, 16),
    (25, 129, 100),
    (1, 300, 2),
    (65, 48, 17),
    (70, 16, 1024),
    # packed panels: A @ B^T from 192 rows, B rows 1 kB apart from 64
    (200, 37, 50),
    (96, 256, 33),
    (193, 256, 129),
]
TRANSPOSES = [(False, False), (True, False), (False, True)]


def _operands(rng, ta, tb, m, n, k, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def _reference(ta, tb, a, b, c0, alpha, beta):
    A = (a.T if ta else a).astype(np.float64)
    B = (b.T if tb else b).astype(np.float64)
    return alpha * (A @ B) + beta * c0.astype(np.float64)


def _tolerance(dtype, k, alpha):
    """Error bound of a length-k sum of products of unit normals."""
    eps = np.finfo(dtype).eps
    return 4 * eps * (k + 2) * (1 + np.abs(alpha)) * (1 + np.sqrt(max(k, 1)))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 2.0), (-1.0, 1.0)])
def test_own_gemm_matches_a_float64_product(level, dtype, ta, tb, m, n, k, alpha, beta):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, b = _operands(rng, ta, tb, m, n, k, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    _blas.gemm_memview(ta, tb, a, b, c, alpha, beta, level=level)
    # error bound of a length-k sum of products of unit normals
    eps = np.finfo(dtype).eps
    tol = 4 * eps * (k + 2) * (1 + np.abs(alpha)) * (1 + np.sqrt(max(k, 1)))
    np.testing.assert_allclose(
        c, _reference(ta, tb, a, b, c0, alpha, beta), rtol=0, atol=tol
    )


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
    view = raw[pad : pad + arr.size].reshape(arr.shape)
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
    np.testing.assert_allclose(
        c_in, _reference(ta, tb, a, b, 0 * c_in, 1, 0), rtol=0, atol=1e-4
    )
    np.testing.assert_array_equal(c_raw[:40], 7.0)
    np.testing.assert_array_equal(c_raw[40 + m * n :], 7.0)


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
        _blas.gemm_memview(
            True, True, a, a, np.zeros((2, 3), np.float32), backend="own"
        )


def test_gemm_backend_switch_and_its_errors():
    before = _blas.gemm_backend()
    try:
        _blas.set_gemm_backend("blas")
        assert _blas.gemm_backend() == "blas"
        assert _blas.own_gemm_level() is None
        _blas.set_gemm_backend("auto")
        assert _blas.gemm_backend() == ("own" if _blas.own_gemm_level() else "blas")
        with pytest.raises(ValueError, match="GEMM backend must be one of"):
            _blas.set_gemm_backend("mkl")
        with pytest.raises(ValueError, match="backend must be None"):
            _blas.gemm_memview(
                False,
                False,
                np.ones((1, 1)),
                np.ones((1, 1)),
                np.ones((1, 1)),
                backend="fast",
            )
        with pytest.raises(ValueError, match="level must be None"):
            _blas.gemm_memview(
                False,
                False,
                np.ones((1, 1)),
                np.ones((1, 1)),
                np.ones((1, 1)),
                level="sse2",
            )
        with pytest.raises(ValueError, match="not to 'blas'"):
            _blas.gemm_memview(
                False,
                False,
                np.ones((1, 1)),
                np.ones((1, 1)),
                np.ones((1, 1)),
                backend="blas",
                level="avx2",
            )
        if not _blas.own_gemm_available():
            with pytest.raises(ValueError, match="AVX2"):
                _blas.set_gemm_backend("own")
    finally:
        _blas.set_gemm_backend(before)


def test_a_bad_fastvae_gemm_variable_fails_the_import_clearly():
    env = dict(os.environ, FASTVAE_GEMM="fastest")
    proc = subprocess.run(
        [sys.executable, "-c", "import fastvae"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "FASTVAE_GEMM='fastest'" in proc.stderr
    assert "GEMM backend must be one of" in proc.stderr


def _fit(backend, dtype):
    before = _blas.gemm_backend()
    try:
        _blas.set_gemm_backend(backend)
        X = (np.random.default_rng(0).random((300, 40)) < 0.3).astype(dtype)
        model = fastvae.VAE(
            hidden=(33,),
            latent_dim=5,
            batch_size=64,
            epochs=3,
            dtype=dtype,
            random_state=1,
        ).fit(X)
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
        model = fastvae.VAE(
            hidden=(70,),
            latent_dim=6,
            batch_size=100,
            epochs=2,
            n_threads=threads,
            random_state=4,
        ).fit(X)
        params.append(model.params_)
    # "blas" under FASTVAE_ISA=baseline, whose fixed cuts are bitwise too.
    assert _blas.gemm_backend() == ("own" if _blas.own_gemm_level() else "blas")
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(params[0], params[2])


# --- every level: odd shapes, strides, split invariance ---------------------

_PRIMES = [1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67]
# m, n, k in 1..70 (primes, powers of two and their neighbours) and the step's
# products for 784-400/20/128 and batch 16.
ODD_SHAPES = sorted(
    {
        (m, n, k)
        for m, n, k in zip(
            _PRIMES, _PRIMES[::-1], _PRIMES[5:] + _PRIMES[:5], strict=True
        )
    }
    | {
        (70, 1, 70),
        (1, 70, 69),
        (64, 16, 8),
        (15, 17, 65),
        (48, 33, 2),
        (128, 400, 784),
        (128, 20, 400),
        (128, 400, 20),
        (16, 400, 784),
    }
)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", ODD_SHAPES)
def test_every_level_on_odd_and_step_shapes(level, dtype, ta, tb, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = _operands(rng, ta, tb, m, n, k, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    _blas.gemm_memview(ta, tb, a, b, c, 0.75, -0.5, level=level)
    np.testing.assert_allclose(
        c,
        _reference(ta, tb, a, b, c0, 0.75, -0.5),
        rtol=0,
        atol=_tolerance(dtype, k, 0.75),
    )


def _wide(arr, extra, fill):
    """arr as a view of a buffer with `extra` more columns of `fill` per row
    (leading dimension > row length); returns (the view, the buffer)."""
    raw = np.full((arr.shape[0], arr.shape[1] + extra), fill, arr.dtype)
    raw[:, : arr.shape[1]] = arr
    return raw[:, : arr.shape[1]], raw


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", [(13, 37, 29), (64, 48, 70), (5, 70, 3)])
def test_strided_operands_read_their_rows_only_and_match_contiguous_ones(
    level, dtype, ta, tb, m, n, k
):
    """lda, ldb, ldc > the row length: NaN between the rows of A and B would
    leak into C if read, the gaps between C's rows stay as they were, and C
    is bitwise the product of contiguous copies."""
    rng = np.random.default_rng(11)
    a, b = _operands(rng, ta, tb, m, n, k, dtype)
    a_w, _ = _wide(a, 3, np.nan)
    b_w, _ = _wide(b, 9, np.nan)
    c_w, c_raw = _wide(np.zeros((m, n), dtype), 5, 7.0)
    _blas.gemm_memview(ta, tb, a_w, b_w, c_w, level=level, strided=True)
    expected = np.empty((m, n), dtype)
    _blas.gemm_memview(ta, tb, a, b, expected, level=level)
    np.testing.assert_array_equal(c_w, expected)
    np.testing.assert_array_equal(c_raw[:, n:], 7.0)
    np.testing.assert_allclose(
        expected,
        _reference(ta, tb, a, b, 0 * expected, 1, 0),
        rtol=0,
        atol=_tolerance(dtype, k, 1),
    )
    blas_w = np.zeros_like(c_raw)
    _blas.gemm_memview(ta, tb, a_w, b_w, blas_w[:, :n], backend="blas", strided=True)
    np.testing.assert_allclose(
        blas_w[:, :n], expected, rtol=0, atol=_tolerance(dtype, k, 1)
    )
    with pytest.raises(ValueError, match="C-contiguous"):
        _blas.gemm_memview(ta, tb, a_w, b_w, c_w, level=level)


def _cuts(rng, size):
    inner = (
        sorted(set(rng.integers(1, size, size=min(4, size - 1)).tolist()))
        if size > 1
        else []
    )
    return [0, *inner, size]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
@pytest.mark.parametrize(
    "m,n,k",
    [(128, 400, 784), (16, 400, 784), (37, 71, 53), (200, 130, 61), (7, 64, 300)],
)
def test_split_invariance(level, dtype, ta, tb, m, n, k):
    """A product cut into column blocks or row blocks (strided calls on views
    of the operands and of C) gives bitwise the numbers of the whole call:
    each element's sum depends on (m, n, k) and its place, not on its block.
    The training step relies on this for column blocks."""
    rng = np.random.default_rng(m + n + k)
    a, b = _operands(rng, ta, tb, m, n, k, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    whole = c0.copy()
    _blas.gemm_memview(ta, tb, a, b, whole, 1.5, 0.25, level=level)
    for _ in range(3):
        cols = _cuts(rng, n)
        by_cols = c0.copy()
        for j0, j1 in zip(cols, cols[1:], strict=False):
            b_blk = b[j0:j1, :] if tb else b[:, j0:j1]
            _blas.gemm_memview(
                ta,
                tb,
                a,
                b_blk,
                by_cols[:, j0:j1],
                1.5,
                0.25,
                level=level,
                strided=True,
            )
        np.testing.assert_array_equal(by_cols, whole)
        # The AVX-512 kernels switch A @ B^T from dot to packed tiles at 192
        # rows, so only column cuts keep its bits there.
        if level == "avx512" and tb:
            continue
        rows = _cuts(rng, m)
        by_rows = c0.copy()
        for i0, i1 in zip(rows, rows[1:], strict=False):
            a_blk = a[:, i0:i1] if ta else a[i0:i1, :]
            _blas.gemm_memview(
                ta, tb, a_blk, b, by_rows[i0:i1], 1.5, 0.25, level=level, strided=True
            )
        np.testing.assert_array_equal(by_rows, whole)


@pytest.mark.parametrize("level", LEVELS)
def test_the_step_gemm_runs_at_the_process_isa_level(level):
    """gemm (backend None) follows fastvae.set_isa on every call: bitwise the
    kernels of that level, and BLAS at "baseline"."""
    before_isa, before_backend = fastvae.get_isa()["cap"], _blas.gemm_backend()
    rng = np.random.default_rng(5)
    a, b = _operands(rng, False, True, 33, 70, 129, np.float32)
    at_level = np.empty((33, 70), np.float32)
    _blas.gemm_memview(False, True, a, b, at_level, level=level)
    blas = np.empty((33, 70), np.float32)
    _blas.gemm_memview(False, True, a, b, blas, backend="blas")
    try:
        _blas.set_gemm_backend("auto")
        fastvae.set_isa(level)
        assert _blas.own_gemm_level() == level and _blas.gemm_backend() == "own"
        c = np.empty((33, 70), np.float32)
        _blas.gemm_memview(False, True, a, b, c)
        np.testing.assert_array_equal(c, at_level)
        fastvae.set_isa("baseline")
        assert _blas.own_gemm_level() is None and _blas.gemm_backend() == "blas"
        _blas.gemm_memview(False, True, a, b, c)
        np.testing.assert_array_equal(c, blas)
        fastvae.set_isa(level)
        _blas.set_gemm_backend("blas")
        assert _blas.own_gemm_level() is None
    finally:
        fastvae.set_isa(before_isa)
        _blas.set_gemm_backend(before_backend)


def test_fastvae_isa_baseline_makes_the_gemm_fall_back_to_blas():
    env = dict(os.environ, FASTVAE_ISA="baseline", FASTVAE_GEMM="auto")
    code = (
        "from fastvae._core import _blas; import fastvae; "
        "print(_blas.own_gemm_level(), _blas.gemm_backend(), "
        "'AVX' in fastvae.show_config().split('GEMM of the training step:')[1]"
        ".splitlines()[0])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "None blas False"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_at_a_level_is_bitwise_equal_for_1_2_and_3_threads(level, dtype):
    before_isa, before_threads = fastvae.get_isa()["cap"], fastvae.get_num_threads()
    before_backend = _blas.gemm_backend()
    X = (np.random.default_rng(0).random((300, 90)) < 0.3).astype(dtype)
    params = []
    try:
        _blas.set_gemm_backend("auto")
        fastvae.set_isa(level)
        assert _blas.own_gemm_level() == level
        for threads in (1, 2, 3):
            fastvae.set_num_threads(threads)
            model = fastvae.VAE(
                hidden=(70,),
                latent_dim=6,
                batch_size=100,
                epochs=2,
                dtype=dtype,
                random_state=4,
            ).fit(X)
            params.append(model.params_.copy())
    finally:
        fastvae.set_isa(before_isa)
        fastvae.set_num_threads(before_threads)
        _blas.set_gemm_backend(before_backend)
    np.testing.assert_array_equal(params[0], params[1])
    np.testing.assert_array_equal(params[0], params[2])
