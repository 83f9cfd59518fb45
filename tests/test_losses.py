"""Loss kernels (fastvae/_core/_losses.pyx) against tests/reference.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import DTYPES, assert_close_scaled, fd4_all

from fastvae._core import _losses

LOG2 = np.log(2.0)


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _head(rng, n, K, dtype=np.float64, lv_lo=-3.0, lv_hi=2.0):
    mu = rng.standard_normal((n, K))
    lv = rng.uniform(lv_lo, lv_hi, (n, K))
    return np.hstack([mu, lv]).astype(dtype)


# -- KL -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, K", [(17, 5), (1, 1), (64, 32)])
def test_kl_matches_reference(dtype, n, K):
    rng = np.random.default_rng(n + K)
    H = _head(rng, n, K, dtype, lv_lo=-40, lv_hi=25)  # some clamped
    kl = _losses.kl_memview(H)
    assert kl.dtype == np.float64 and kl.shape == (n,)
    Hd = H.astype(np.float64)
    mu, lv = Hd[:, :K], np.clip(Hd[:, K:], -30, 20)
    # the sum is in double: only the terms' own rounding matters
    scale = (np.exp(lv) + mu**2 + 1 + np.abs(lv)).sum(axis=1)
    assert_close_scaled(kl, ref.kl(Hd), scale, 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 0.25, -3.0])
def test_kl_backward_matches_reference(dtype, scale):
    rng = np.random.default_rng(1)
    K = 6
    H = _head(rng, 9, K, dtype, lv_lo=-40, lv_hi=25)
    dH = _losses.kl_backward_memview(H, scale)
    assert dH.dtype == np.dtype(dtype) and dH.shape == H.shape
    want = scale * ref.kl_backward(H.astype(np.float64))
    assert_close_scaled(dH, want, np.abs(want), 4 * _eps(dtype), atol=1e-300)


def test_kl_backward_default_scale_is_one():
    H = _head(np.random.default_rng(2), 4, 3)
    np.testing.assert_array_equal(
        _losses.kl_backward_memview(H), _losses.kl_backward_memview(H, 1.0)
    )
    np.testing.assert_allclose(
        _losses.kl_backward_memview(H), ref.kl_backward(H), rtol=1e-15
    )


def test_kl_finite_differences():
    rng = np.random.default_rng(3)
    H = _head(rng, 4, 3)

    def objective():
        return _losses.kl_memview(H).sum()

    np.testing.assert_allclose(
        _losses.kl_backward_memview(H), fd4_all(objective, H), rtol=1e-8, atol=1e-10
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_hand_values(dtype):
    K = 4
    assert _losses.kl_memview(np.zeros((3, 2 * K), dtype)).tolist() == [0.0, 0.0, 0.0]
    H = np.zeros((2, 2 * K), dtype)
    H[:, :K] = 1.0
    np.testing.assert_allclose(_losses.kl_memview(H), [0.5 * K] * 2, rtol=1e-15)
    # mu = 0, lv = log 2: 1/2 (2 - 1 - log 2) per dimension
    H = np.zeros((1, 2), dtype)
    H[0, 1] = np.log(2.0)
    np.testing.assert_allclose(
        _losses.kl_memview(H), [0.5 * (1 - LOG2)], rtol=4 * _eps(dtype)
    )
    # gradient at the prior: zero
    np.testing.assert_array_equal(
        _losses.kl_backward_memview(np.zeros((2, 6), dtype)), 0
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_clamp(dtype):
    H = np.array([[0.0, 0.0, -100.0, 100.0]], dtype)
    kl = _losses.kl_memview(H)[0]
    want = 0.5 * ((np.exp(-30.0) - 1 + 30) + (np.exp(20.0) - 1 - 20))
    assert np.isfinite(kl)
    assert kl == pytest.approx(want, rel=1e-14)
    dH = _losses.kl_backward_memview(H)
    np.testing.assert_array_equal(dH, np.zeros_like(H))


# -- Bernoulli ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1 / 32])
@pytest.mark.parametrize("soft", [False, True])
def test_bernoulli_matches_reference(dtype, scale, soft):
    rng = np.random.default_rng(4)
    n, D = 11, 37
    L = (3 * rng.standard_normal((n, D))).astype(dtype)
    X = rng.random((n, D)) if soft else (rng.random((n, D)) > 0.5).astype(float)
    X = X.astype(dtype)
    loss, grad = _losses.bernoulli_memview(L, X, scale)
    assert loss.dtype == np.float64 and loss.shape == (n,)
    assert grad.dtype == np.dtype(dtype) and grad.shape == (n, D)
    Ld, Xd = L.astype(np.float64), X.astype(np.float64)
    rl, rg = ref.bernoulli(Ld, Xd)
    lscale = (np.logaddexp(0, Ld) + np.abs(Xd * Ld)).sum(axis=1)
    assert_close_scaled(loss, rl, lscale, 4 * _eps(dtype))
    assert_close_scaled(grad, scale * rg, scale * (1 + np.abs(Xd)), 4 * _eps(dtype))


def test_bernoulli_finite_differences():
    rng = np.random.default_rng(5)
    L = 2 * rng.standard_normal((3, 5))
    X = rng.random((3, 5))

    def objective():
        return _losses.bernoulli_memview(L, X)[0].sum()

    _, grad = _losses.bernoulli_memview(L, X)
    np.testing.assert_allclose(grad, fd4_all(objective, L), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_hand_values(dtype):
    X = np.array([[0.0, 1.0, 0.3, 1.0]], dtype)
    loss, grad = _losses.bernoulli_memview(np.zeros((1, 4), dtype), X)
    assert loss[0] == pytest.approx(4 * LOG2, rel=4 * _eps(dtype))
    np.testing.assert_allclose(grad[0], 0.5 - X[0].astype(float), rtol=2 * _eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_extreme_logits_are_exact(dtype):
    L = np.array(
        [[1000.0, 1000.0, -1000.0, -1000.0, 1000.0, -1000.0, 200.0, -200.0]], dtype
    )
    X = np.array([[0.0, 1.0, 1.0, 0.0, 0.25, 0.25, 0.0, 1.0]], dtype)
    loss, grad = _losses.bernoulli_memview(L, X)
    # exact limits: |l| when the target disagrees, 0 when it agrees; soft
    # targets give (1 - x) l for l -> +inf and -x l for l -> -inf
    per_elem = [1000.0, 0.0, 1000.0, 0.0, 750.0, 250.0, 200.0, 200.0]
    assert np.isfinite(loss[0])
    assert loss[0] == sum(per_elem)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(
        grad[0], [1.0, 0.0, -1.0, 0.0, 0.75, -0.25, 1.0, -1.0]
    )
    # each element alone, to see the exact per-element limit
    for j, want in enumerate(per_elem):
        lj, _ = _losses.bernoulli_memview(
            L[:, j : j + 1].copy(), X[:, j : j + 1].copy()
        )
        assert lj[0] == want, j


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_moderately_large_logits_keep_tiny_losses(dtype):
    """softplus(-|l|) ~ exp(-|l|) must not be lost to 1 + exp(-|l|) rounding."""
    L = np.array([[30.0, -30.0, 50.0]], dtype)
    X = np.array([[1.0, 0.0, 1.0]], dtype)
    loss, grad = _losses.bernoulli_memview(L, X)
    want = np.log1p(np.exp(-30.0)) * 2 + np.log1p(np.exp(-50.0))
    assert loss[0] == pytest.approx(want, rel=1e-5)
    # sigmoid(l) - x is formed from the rounded mean, so the gradient is
    # accurate to eps in absolute terms (the agreeing-target side loses its
    # relative precision; the other side keeps it)
    np.testing.assert_allclose(
        grad[0, :2], [-np.exp(-30.0), np.exp(-30.0)], rtol=0, atol=_eps(dtype)
    )
    assert grad[0, 1] == pytest.approx(np.exp(-30.0) / (1 + np.exp(-30.0)), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_scale_multiplies_gradient_only(dtype):
    rng = np.random.default_rng(6)
    L = rng.standard_normal((7, 9)).astype(dtype)
    X = rng.random((7, 9)).astype(dtype)
    l1, g1 = _losses.bernoulli_memview(L, X, 1.0)
    l2, g2 = _losses.bernoulli_memview(L, X, 0.125)
    l3, g3 = _losses.bernoulli_memview(L, X, 0.3)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(l1, l3)
    np.testing.assert_array_equal(g2, g1 * dtype(0.125))  # power of two: exact
    np.testing.assert_allclose(g3, 0.3 * g1.astype(float), rtol=4 * _eps(dtype))


# -- Gaussian ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sigma", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_gaussian_matches_reference(dtype, sigma, scale):
    rng = np.random.default_rng(7)
    n, D = 13, 29
    M = rng.standard_normal((n, D)).astype(dtype)
    X = rng.standard_normal((n, D)).astype(dtype)
    loss, grad = _losses.gaussian_memview(M, X, sigma, scale)
    assert loss.dtype == np.float64 and grad.dtype == np.dtype(dtype)
    Md, Xd = M.astype(np.float64), X.astype(np.float64)
    rl, rg = ref.gaussian(Md, Xd, sigma)
    sq = ((np.abs(Md) + np.abs(Xd)) ** 2).sum(axis=1) / (2 * sigma**2)
    lscale = sq + D * (abs(np.log(sigma)) + 1)
    assert_close_scaled(loss, rl, lscale, 4 * _eps(dtype))
    gscale = scale * (np.abs(Md) + np.abs(Xd)) / sigma**2
    assert_close_scaled(grad, scale * rg, gscale, 4 * _eps(dtype))


def test_gaussian_finite_differences():
    rng = np.random.default_rng(8)
    M = rng.standard_normal((3, 5))
    X = rng.standard_normal((3, 5))
    for sigma in (1.0, 0.7):

        def objective(sigma=sigma):
            return _losses.gaussian_memview(M, X, sigma)[0].sum()

        _, grad = _losses.gaussian_memview(M, X, sigma)
        np.testing.assert_allclose(grad, fd4_all(objective, M), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sigma", [1.0, 0.5, 3.0])
def test_gaussian_hand_values(dtype, sigma):
    D = 6
    X = np.random.default_rng(9).standard_normal((2, D)).astype(dtype)
    loss, grad = _losses.gaussian_memview(X.copy(), X, sigma)
    const = D * (np.log(sigma) + 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(loss, [const, const], rtol=1e-14)
    np.testing.assert_array_equal(grad, 0)
    # one unit residual adds 1 / (2 sigma^2)
    M = X.copy()
    M[0, 0] += 1
    loss, grad = _losses.gaussian_memview(M, X, sigma)
    np.testing.assert_allclose(loss[0], const + 0.5 / sigma**2, rtol=4 * _eps(dtype))
    assert grad[0, 0] == pytest.approx(
        (float(M[0, 0]) - float(X[0, 0])) / sigma**2, rel=4 * _eps(dtype)
    )


def test_gaussian_default_sigma_and_scale():
    rng = np.random.default_rng(10)
    M, X = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    a = _losses.gaussian_memview(M, X)
    b = _losses.gaussian_memview(M, X, 1.0, 1.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.nan, -np.inf])
def test_gaussian_bad_sigma_raises(sigma):
    with pytest.raises(ValueError):
        _losses.gaussian_memview(np.zeros((2, 3)), np.zeros((2, 3)), sigma)


# -- threads and arguments -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_equal_for_any_thread_count(dtype):
    rng = np.random.default_rng(11)
    n, D = 301, 50
    L = rng.standard_normal((n, D)).astype(dtype)
    X = rng.random((n, D)).astype(dtype)
    H = _head(rng, n, 8, dtype)
    b1 = _losses.bernoulli_memview(L, X, 0.5, n_threads=1)
    g1 = _losses.gaussian_memview(L, X, 0.7, 0.5, n_threads=1)
    k1 = _losses.kl_memview(H, n_threads=1)
    for nt in (2, 3):
        b = _losses.bernoulli_memview(L, X, 0.5, n_threads=nt)
        g = _losses.gaussian_memview(L, X, 0.7, 0.5, n_threads=nt)
        assert b[0].tobytes() == b1[0].tobytes() and b[1].tobytes() == b1[1].tobytes()
        assert g[0].tobytes() == g1[0].tobytes() and g[1].tobytes() == g1[1].tobytes()
        assert _losses.kl_memview(H, n_threads=nt).tobytes() == k1.tobytes()


def test_read_only_inputs():
    rng = np.random.default_rng(12)
    L, X, H = rng.standard_normal((3, 4)), rng.random((3, 4)), _head(rng, 3, 2)
    want = (
        _losses.bernoulli_memview(L, X),
        _losses.gaussian_memview(L, X, 0.5),
        _losses.kl_memview(H),
        _losses.kl_backward_memview(H),
    )
    for a in (L, X, H):
        a.setflags(write=False)
    got = (
        _losses.bernoulli_memview(L, X),
        _losses.gaussian_memview(L, X, 0.5),
        _losses.kl_memview(H),
        _losses.kl_backward_memview(H),
    )
    for w, g in zip(want[:2], got[:2], strict=True):
        np.testing.assert_array_equal(w[0], g[0])
        np.testing.assert_array_equal(w[1], g[1])
    np.testing.assert_array_equal(want[2], got[2])
    np.testing.assert_array_equal(want[3], got[3])


def test_empty_inputs():
    loss, grad = _losses.bernoulli_memview(np.zeros((0, 3)), np.zeros((0, 3)))
    assert loss.shape == (0,) and grad.shape == (0, 3)
    loss, grad = _losses.gaussian_memview(np.zeros((0, 3)), np.zeros((0, 3)))
    assert loss.shape == (0,) and grad.shape == (0, 3)
    assert _losses.kl_memview(np.zeros((0, 4))).shape == (0,)
    assert _losses.kl_backward_memview(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("shape_x", [(3, 5), (2, 4), (4, 4)])
def test_shape_mismatch_raises(shape_x):
    with pytest.raises(ValueError):
        _losses.bernoulli_memview(np.zeros((3, 4)), np.zeros(shape_x))
    with pytest.raises(ValueError):
        _losses.gaussian_memview(np.zeros((3, 4)), np.zeros(shape_x))


def test_odd_head_width_raises():
    with pytest.raises(ValueError):
        _losses.kl_memview(np.zeros((3, 5)))
    with pytest.raises(ValueError):
        _losses.kl_backward_memview(np.zeros((3, 5)))


def test_mixed_dtypes_raise():
    with pytest.raises((TypeError, ValueError)):
        _losses.bernoulli_memview(np.zeros((3, 4), np.float32), np.zeros((3, 4)))
