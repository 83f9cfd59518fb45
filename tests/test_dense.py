"""Dense layer kernels (fastvae/_core/_dense.pyx) against tests/reference.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import DTYPES, assert_close_scaled, fd4_all, rtol_for
from hypothesis import given, settings
from hypothesis import strategies as st

from fastvae._core import _dense

ACTS = ["identity", "relu", "tanh", "sigmoid"]


def _inputs(rng, n, k, m, dtype, x_act="identity"):
    X = ref.activation(rng.standard_normal((n, k)), x_act).astype(dtype)
    W = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(dtype)
    b = (0.5 * rng.standard_normal(m)).astype(dtype)
    return X, W, b


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


def _check_forward(X, W, b, act, Y):
    Xd, Wd, bd = _f64(X, W, b)
    assert Y.dtype == X.dtype and Y.shape == (X.shape[0], W.shape[1])
    # every activation is 1-Lipschitz: the error of Y is bounded by that of
    # the pre-activation, which is bounded relative to sum |x_k w_k| + |b|,
    # plus the activation's own rounding, a few ulps of Y
    scale = np.abs(Xd) @ np.abs(Wd) + np.abs(bd)
    want = ref.dense_forward(Xd, Wd, bd, act)
    own = 4 * np.finfo(X.dtype).eps * np.abs(want)
    assert_close_scaled(
        Y, want, scale, rtol_for(X.dtype), atol=own + 1e-300, err_msg=f"forward {act}"
    )


def _check_backward(X, W, dA, x_act, dX, dW, db):
    Xd, Wd, dAd = _f64(X, W, dA)
    rdX, rdW, rdb = ref.dense_backward(Xd, Wd, dAd, x_act)
    rtol = rtol_for(X.dtype)
    assert dW.dtype == db.dtype == X.dtype
    assert_close_scaled(dW, rdW, np.abs(Xd).T @ np.abs(dAd), rtol, err_msg="dW")
    assert_close_scaled(db, rdb, np.abs(dAd).sum(axis=0), rtol, err_msg="db")
    if dX is not None:
        assert dX.dtype == X.dtype
        gscale = np.abs(ref.activation_grad_from_output(Xd, x_act))
        assert_close_scaled(
            dX, rdX, (np.abs(dAd) @ np.abs(Wd).T) * gscale, rtol, err_msg="dX"
        )


# -- against the reference ------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize(
    "shape", [(17, 33, 29), (64, 300, 400), (5, 1, 130), (1, 7, 1)]
)
def test_forward_matches_reference(dtype, act, shape):
    rng = np.random.default_rng(hash((act, shape)) % 2**32)
    X, W, b = _inputs(rng, *shape, dtype)
    Y = _dense.dense_forward_memview(X, W, b, act)
    _check_forward(X, W, b, act, Y)


def test_forward_default_activation_is_identity():
    rng = np.random.default_rng(3)
    X, W, b = _inputs(rng, 4, 5, 6, np.float64)
    np.testing.assert_array_equal(
        _dense.dense_forward_memview(X, W, b),
        _dense.dense_forward_memview(X, W, b, "identity"),
    )
    assert np.any(_dense.dense_forward_memview(X, W, b) < 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_act", ACTS)
@pytest.mark.parametrize(
    "shape", [(17, 33, 29), (64, 300, 400), (3, 130, 2), (1, 1, 1)]
)
def test_backward_matches_reference(dtype, x_act, shape):
    rng = np.random.default_rng(hash((x_act, shape, 1)) % 2**32)
    n, k, m = shape
    X, W, _ = _inputs(rng, n, k, m, dtype, x_act)
    dA = rng.standard_normal((n, m)).astype(dtype)
    dX, dW, db = _dense.dense_backward_memview(X, W, dA, x_act)
    assert dX.shape == (n, k) and dW.shape == (k, m) and db.shape == (m,)
    _check_backward(X, W, dA, x_act, dX, dW, db)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_need_dx_false(dtype):
    rng = np.random.default_rng(5)
    X, W, _ = _inputs(rng, 9, 70, 140, dtype, "tanh")
    dA = rng.standard_normal((9, 140)).astype(dtype)
    dX, dW, db = _dense.dense_backward_memview(X, W, dA, "tanh", need_dx=False)
    assert dX is None
    _check_backward(X, W, dA, "tanh", None, dW, db)
    _, dW2, db2 = _dense.dense_backward_memview(X, W, dA, "tanh", need_dx=True)
    np.testing.assert_array_equal(dW, dW2)
    np.testing.assert_array_equal(db, db2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_activation_grad_matches_reference(dtype, act):
    rng = np.random.default_rng(7)
    Y = ref.activation(rng.standard_normal((6, 35)), act).astype(dtype)
    if act == "relu":
        assert np.any(Y == 0)
    D0 = rng.standard_normal((6, 35)).astype(dtype)
    D = D0.copy()
    assert _dense.activation_grad_memview(D, Y, act) is None  # in place
    want = D0.astype(np.float64) * ref.activation_grad_from_output(
        Y.astype(np.float64), act
    )
    # 1 - y*y and y*(1 - y) are formed in the working precision: bound the
    # error by the size of the terms, not of the (possibly cancelled) result
    y = np.abs(Y.astype(np.float64))
    scale = np.abs(D0.astype(np.float64)) * (1 + y + y * y)
    assert_close_scaled(D, want, scale, 4 * np.finfo(dtype).eps, err_msg=act)


def test_activation_values_at_extremes():
    """relu kink and saturated tanh / sigmoid stay exact and finite."""
    for dtype in DTYPES:
        X = np.array([[1.0]], dtype=dtype)
        W = np.array([[1.0, 1.0, 1.0, 1.0]], dtype=dtype)
        b = np.array([-1.0, -1001.0, 999.0, 0.0], dtype=dtype)
        assert _dense.dense_forward_memview(X, W, b, "relu").tolist() == [
            [0, 0, 1000, 1]
        ]
        assert _dense.dense_forward_memview(X, W, b, "sigmoid").tolist() == [
            [0.5, 0, 1, 1 / (1 + np.exp(dtype(-1)))]
        ]
        assert _dense.dense_forward_memview(X, W, b, "tanh")[0, :3].tolist() == [
            0,
            -1,
            1,
        ]


# -- against finite differences (float64) ---------------------------------------


def _away_from_relu_kink(rng, n, k, m, margin=0.05):
    """X, W, b with every pre-activation at least `margin` away from 0."""
    for _ in range(1000):
        X, W, b = _inputs(rng, n, k, m, np.float64)
        if np.abs(X @ W + b).min() > margin:
            return X, W, b
    raise RuntimeError("could not draw inputs away from the kink")


@pytest.mark.parametrize("act", ACTS)
def test_gradients_match_finite_differences(act):
    rng = np.random.default_rng(11)
    n, k, m = 4, 6, 5
    X, W, b = _away_from_relu_kink(rng, n, k, m)
    G = rng.standard_normal((n, m))

    def objective():
        return np.sum(G * ref.dense_forward(X, W, b, act))

    # dLoss/dA through the output, then the kernel's backward
    Y = _dense.dense_forward_memview(X, W, b, act)
    dA = G * ref.activation_grad_from_output(Y, act)
    dX, dW, db = _dense.dense_backward_memview(X, W, dA, "identity")
    for name, arr, got in [("X", X, dX), ("W", W, dW), ("b", b, db)]:
        want = fd4_all(objective, arr)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("x_act", ACTS)
def test_dx_applies_x_activation_finite_differences(x_act):
    """dX is the gradient w.r.t. the previous layer's pre-activation U, X = x_act(U)."""
    rng = np.random.default_rng(13)
    n, k, m = 3, 7, 4
    U = rng.standard_normal((n, k))
    U = np.sign(U) * (0.1 + np.abs(U))  # away from the relu kink
    W = rng.standard_normal((k, m)) / np.sqrt(k)
    b = rng.standard_normal(m)
    G = rng.standard_normal((n, m))

    def objective():
        return np.sum(G * np.tanh(ref.activation(U, x_act) @ W + b))

    X = ref.activation(U, x_act)
    dA = G * (1 - np.tanh(X @ W + b) ** 2)
    dX, _, _ = _dense.dense_backward_memview(X, W, dA, x_act)
    np.testing.assert_allclose(dX, fd4_all(objective, U), rtol=1e-7, atol=1e-9)


# -- thread-count independence ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize(
    "shape", [(64, 300, 400), (37, 55, 91), (5, 129, 257), (200, 16, 1000), (2, 3, 1)]
)
def test_bitwise_equal_for_any_thread_count(dtype, act, shape):
    rng = np.random.default_rng(17)
    n, k, m = shape
    X, W, b = _inputs(rng, n, k, m, dtype, act)
    dA = rng.standard_normal((n, m)).astype(dtype)
    Y1 = _dense.dense_forward_memview(X, W, b, act, n_threads=1)
    B1 = _dense.dense_backward_memview(X, W, dA, act, n_threads=1)
    for nt in (2, 3):
        Y = _dense.dense_forward_memview(X, W, b, act, n_threads=nt)
        assert Y.tobytes() == Y1.tobytes(), f"forward, {nt} threads"
        B = _dense.dense_backward_memview(X, W, dA, act, n_threads=nt)
        for name, a, c in zip(("dX", "dW", "db"), B1, B, strict=True):
            assert a.tobytes() == c.tobytes(), f"{name}, {nt} threads"


# -- inputs of every kind ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs(dtype):
    rng = np.random.default_rng(19)
    X, W, b = _inputs(rng, 8, 9, 10, dtype, "sigmoid")
    dA = rng.standard_normal((8, 10)).astype(dtype)
    Y_rw = _dense.dense_forward_memview(X, W, b, "sigmoid")
    B_rw = _dense.dense_backward_memview(X, W, dA, "sigmoid")
    for a in (X, W, b, dA):
        a.setflags(write=False)
    np.testing.assert_array_equal(
        _dense.dense_forward_memview(X, W, b, "sigmoid"), Y_rw
    )
    for a, c in zip(
        _dense.dense_backward_memview(X, W, dA, "sigmoid"), B_rw, strict=True
    ):
        np.testing.assert_array_equal(a, c)
    D0 = rng.standard_normal(X.shape).astype(dtype)
    D = D0.copy()
    _dense.activation_grad_memview(D, X, "sigmoid")  # Y read-only is fine
    np.testing.assert_allclose(D, D0 * X * (1 - X), rtol=1e-6)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(23)
    X, W, b = _inputs(rng, 8, 9, 10, np.float64, "tanh")
    dA = rng.standard_normal((8, 10))
    copies = [a.copy() for a in (X, W, b, dA)]
    _dense.dense_forward_memview(X, W, b, "tanh")
    _dense.dense_backward_memview(X, W, dA, "tanh")
    for a, c in zip((X, W, b, dA), copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_empty_batch():
    W = np.ones((3, 4))
    b = np.ones(4)
    X = np.zeros((0, 3))
    assert _dense.dense_forward_memview(X, W, b, "tanh").shape == (0, 4)
    dX, dW, db = _dense.dense_backward_memview(X, W, np.zeros((0, 4)))
    assert dX.shape == (0, 3)
    np.testing.assert_array_equal(dW, np.zeros((3, 4)))
    np.testing.assert_array_equal(db, np.zeros(4))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 40),
    m=st.integers(1, 150),
    act=st.sampled_from(ACTS),
    x_act=st.sampled_from(ACTS),
    dtype=st.sampled_from(DTYPES),
    n_threads=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis_shapes_match_reference(n, k, m, act, x_act, dtype, n_threads, seed):
    rng = np.random.default_rng(seed)
    X, W, b = _inputs(rng, n, k, m, dtype, x_act)
    _check_forward(
        X, W, b, act, _dense.dense_forward_memview(X, W, b, act, n_threads=n_threads)
    )
    dA = rng.standard_normal((n, m)).astype(dtype)
    dX, dW, db = _dense.dense_backward_memview(X, W, dA, x_act, n_threads=n_threads)
    _check_backward(X, W, dA, x_act, dX, dW, db)


# -- argument checking -------------------------------------------------------------


def test_shape_mismatch_raises():
    X, W, b = np.zeros((3, 4)), np.zeros((4, 5)), np.zeros(5)
    with pytest.raises(ValueError):
        _dense.dense_forward_memview(np.zeros((3, 3)), W, b)
    with pytest.raises(ValueError):
        _dense.dense_forward_memview(X, W, np.zeros(4))
    with pytest.raises(ValueError):
        _dense.dense_backward_memview(np.zeros((3, 3)), W, np.zeros((3, 5)))
    with pytest.raises(ValueError):
        _dense.dense_backward_memview(X, W, np.zeros((3, 4)))
    with pytest.raises(ValueError):
        _dense.dense_backward_memview(X, W, np.zeros((2, 5)))
    with pytest.raises(ValueError):
        _dense.activation_grad_memview(np.zeros((3, 4)), np.zeros((3, 5)), "tanh")
    with pytest.raises(ValueError):
        _dense.activation_grad_memview(np.zeros((3, 4)), np.zeros((2, 4)), "tanh")


def test_unknown_activation_raises():
    X, W, b = np.zeros((3, 4)), np.zeros((4, 5)), np.zeros(5)
    with pytest.raises(ValueError, match="activation"):
        _dense.dense_forward_memview(X, W, b, "softplus")
    with pytest.raises(ValueError, match="activation"):
        _dense.dense_backward_memview(X, W, np.zeros((3, 5)), "Tanh")
    with pytest.raises(ValueError, match="activation"):
        _dense.activation_grad_memview(np.zeros((3, 4)), X, "gelu")


def test_bad_thread_count_raises():
    X, W, b = np.zeros((3, 4)), np.zeros((4, 5)), np.zeros(5)
    with pytest.raises(ValueError):
        _dense.dense_forward_memview(X, W, b, n_threads=0)
    with pytest.raises(ValueError):
        _dense.dense_backward_memview(X, W, np.zeros((3, 5)), n_threads=0)


def test_mixed_dtypes_raise():
    X, W, b = np.zeros((3, 4), np.float32), np.zeros((4, 5)), np.zeros(5)
    with pytest.raises((TypeError, ValueError)):
        _dense.dense_forward_memview(X, W, b)
    with pytest.raises((TypeError, ValueError)):
        _dense.dense_backward_memview(X, W, np.zeros((3, 5), np.float32))


def test_activation_codes():
    assert _dense.ACTIVATIONS == {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}


# -- row-invariant inference kernel (src_c/fastvae/dense_rows.h) ----------------

LEVELS = _dense.dense_rows_levels()
# n_out: narrower than a vector, a vector's width, multiples and ragged widths of
# the 4-vector tiles; n_in 1 up to a 784-feature input
ROW_SHAPES = [
    (1, 1, 1),
    (7, 5, 3),
    (33, 17, 8),
    (29, 40, 40),
    (64, 13, 64),
    (41, 784, 70),
    (9, 20, 400),
    (130, 64, 17),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_rows_kernel_matches_reference(level, dtype, shape):
    rng = np.random.default_rng(sum(shape) + level)
    X, W, b = _inputs(rng, *shape, dtype)
    for act in ACTS:
        _check_forward(X, W, b, act, _dense.dense_rows_memview(X, W, b, act, 1, level))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(203, 784, 400), (97, 400, 40), (61, 20, 400), (38, 7, 3)]
)
def test_rows_kernel_is_bitwise_row_invariant(level, dtype, shape):
    """Any permutation, subset, single row or thread count gives bitwise the
    rows of the whole batch (BLAS does not: it rounds a row by its position)."""
    rng = np.random.default_rng(shape[0])
    X, W, b = _inputs(rng, *shape, dtype)
    whole = _dense.dense_rows_memview(X, W, b, "relu", 1, level)
    for n_threads in (1, 2):
        for _ in range(3):
            perm = rng.permutation(shape[0])
            got = _dense.dense_rows_memview(
                np.ascontiguousarray(X[perm]), W, b, "relu", n_threads, level
            )
            np.testing.assert_array_equal(got, whole[perm])
            sub = rng.choice(
                shape[0], size=int(rng.integers(1, shape[0])), replace=False
            )
            got = _dense.dense_rows_memview(
                np.ascontiguousarray(X[sub]), W, b, "relu", n_threads, level
            )
            np.testing.assert_array_equal(got, whole[sub])
    for i in (0, shape[0] // 2, shape[0] - 1):
        np.testing.assert_array_equal(
            _dense.dense_rows_memview(X[i : i + 1], W, b, "relu", 1, level),
            whole[i : i + 1],
        )


def test_rows_kernel_levels_and_arguments():
    assert LEVELS[0] == 1 and LEVELS == sorted(LEVELS) and set(LEVELS) <= {1, 3, 4}
    X, W, b = _inputs(np.random.default_rng(0), 4, 3, 2, np.float32)
    with pytest.raises(ValueError, match="level must be one of"):
        _dense.dense_rows_memview(X, W, b, level=2)
    with pytest.raises(ValueError, match="shapes do not agree"):
        _dense.dense_rows_memview(X, W[:2], b)
    assert _dense.dense_rows_memview(X[:0], W, b).shape == (0, 2)
