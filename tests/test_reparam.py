"""Reparameterization kernels (fastvae/_core/_reparam.pyx) against
tests/reference.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import DTYPES, assert_close_scaled, fd4_all, rtol_for

from fastvae._core import _reparam, _rng

SEED, STREAM, STEP = 1234, _rng.STREAM_REPARAM, 7


def _head(rng, n, K, dtype=np.float64, lv_lo=-3.0, lv_hi=2.0):
    mu = rng.standard_normal((n, K))
    lv = rng.uniform(lv_lo, lv_hi, (n, K))
    return np.hstack([mu, lv]).astype(dtype)


# -- forward ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, K", [(13, 5), (1, 1), (40, 16), (3, 7)])
def test_forward_eps_is_normal_matrix_and_z_matches_reference(dtype, n, K):
    rng = np.random.default_rng(n * 100 + K)
    H = _head(rng, n, K, dtype)
    Z, eps = _reparam.reparam_forward_memview(
        H, SEED, STREAM, STEP, row_offset=21, draw=2
    )
    assert Z.shape == eps.shape == (n, K)
    assert Z.dtype == eps.dtype == np.dtype(dtype)
    want_eps = _rng.normal_matrix(
        SEED, STREAM, STEP, n, K, row_offset=21, draw=2, dtype=dtype
    )
    np.testing.assert_array_equal(eps, want_eps)
    Hd, epsd = H.astype(np.float64), eps.astype(np.float64)
    want = ref.reparam_forward(Hd, epsd)
    sigma = np.exp(0.5 * Hd[:, K:])
    scale = np.abs(Hd[:, :K]) + sigma * np.abs(epsd)
    assert_close_scaled(Z, want, scale, 4 * np.finfo(dtype).eps, err_msg="Z")


def test_forward_default_row_offset_and_draw_are_zero():
    H = _head(np.random.default_rng(0), 6, 3)
    _, eps = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP)
    np.testing.assert_array_equal(eps, _rng.normal_matrix(SEED, STREAM, STEP, 6, 3))


@pytest.mark.parametrize("which", ["seed", "stream", "step", "draw", "row_offset"])
def test_forward_noise_depends_on_every_counter_part(which):
    H = _head(np.random.default_rng(1), 5, 4)
    kw = dict(seed=SEED, stream=STREAM, step=STEP, row_offset=0, draw=0)
    _, a = _reparam.reparam_forward_memview(H, **kw)
    kw[which] += 1
    _, b = _reparam.reparam_forward_memview(H, **kw)
    assert not np.any(a == b)


def test_forward_ignores_contents_of_head_for_noise():
    rng = np.random.default_rng(2)
    _, a = _reparam.reparam_forward_memview(_head(rng, 5, 4), SEED, STREAM, STEP)
    _, b = _reparam.reparam_forward_memview(_head(rng, 5, 4), SEED, STREAM, STEP)
    np.testing.assert_array_equal(a, b)


def test_row_offset_is_a_global_row_index():
    rng = np.random.default_rng(3)
    H = _head(rng, 12, 6)
    Z, eps = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP, row_offset=0)
    Z2, eps2 = _reparam.reparam_forward_memview(
        np.ascontiguousarray(H[5:10]), SEED, STREAM, STEP, row_offset=5
    )
    np.testing.assert_array_equal(eps[5:10], eps2)
    np.testing.assert_array_equal(Z[5:10], Z2)
    # and not the same as the rows drawn at offset 0
    _, eps3 = _reparam.reparam_forward_memview(
        np.ascontiguousarray(H[5:10]), SEED, STREAM, STEP, row_offset=0
    )
    assert not np.any(eps3 == eps2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clamp_forward(dtype):
    """lv = -100 / +100 act as -30 / +20: sigma = exp(-15) / exp(10)."""
    mu = np.array([[0.5, -0.25, 1.0, 2.0, 3.0]])
    lv = np.array([[-100.0, 100.0, -30.0, 20.0, 0.0]])
    H = np.hstack([mu, lv]).astype(dtype)
    Z, eps = _reparam.reparam_forward_memview(H, 9, STREAM, 0)
    e = eps.astype(np.float64)[0]
    sigma = np.exp(np.array([-15.0, 10.0, -15.0, 10.0, 0.0]))
    want = mu[0] + sigma * e
    np.testing.assert_allclose(Z[0], want, rtol=4 * np.finfo(dtype).eps, atol=0)
    assert np.all(np.isfinite(Z))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clamp_backward_masks_gradient_outside_range(dtype):
    lv = np.array([-100.0, -30.5, -30.0, -29.9, 0.0, 19.9, 20.0, 20.5, 100.0, 1e30])
    K = lv.size
    mu = np.linspace(-1, 1, K)
    H = np.hstack([mu, lv])[None, :].astype(dtype)
    eps = np.full((1, K), 0.75, dtype=dtype)
    dZ = np.full((1, K), 2.0, dtype=dtype)
    dH = _reparam.reparam_backward_memview(H, eps, dZ)
    np.testing.assert_array_equal(dH[0, :K], dZ[0])  # d/dmu = dZ everywhere
    inside = (lv >= -30) & (lv <= 20)
    assert np.all(dH[0, K:][~inside] == 0)
    want = 2.0 * 0.75 * 0.5 * np.exp(0.5 * np.clip(lv, -30, 20))
    np.testing.assert_allclose(
        dH[0, K:][inside], want[inside], rtol=4 * np.finfo(dtype).eps
    )
    assert np.all(dH[0, K:][inside] > 0)
    np.testing.assert_allclose(
        dH.astype(np.float64),
        ref.reparam_backward(
            H.astype(np.float64), eps.astype(np.float64), dZ.astype(np.float64)
        ),
        rtol=4 * np.finfo(dtype).eps,
    )


def test_nan_logvar_propagates():
    """The clamp lets NaN through (numerics.h): it must not be hidden."""
    H = np.array([[0.0, np.nan]])
    Z, _ = _reparam.reparam_forward_memview(H, 1, STREAM, 0)
    assert np.isnan(Z[0, 0])
    dH = _reparam.reparam_backward_memview(H, np.ones((1, 1)), np.ones((1, 1)))
    assert np.isnan(dH[0, 1])


# -- backward ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, K", [(13, 5), (1, 1), (64, 32)])
def test_backward_matches_reference(dtype, n, K):
    rng = np.random.default_rng(5 + n + K)
    H = _head(rng, n, K, dtype, lv_lo=-35, lv_hi=25)  # some clamped
    eps = rng.standard_normal((n, K)).astype(dtype)
    dZ = rng.standard_normal((n, K)).astype(dtype)
    dH = _reparam.reparam_backward_memview(H, eps, dZ)
    assert dH.shape == (n, 2 * K) and dH.dtype == np.dtype(dtype)
    want = ref.reparam_backward(*(a.astype(np.float64) for a in (H, eps, dZ)))
    assert_close_scaled(dH, want, np.abs(want), 4 * np.finfo(dtype).eps, atol=1e-300)


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(6)
    n, K = 4, 3
    H = _head(rng, n, K)
    eps = rng.standard_normal((n, K))
    G = rng.standard_normal((n, K))

    def objective():
        return np.sum(G * ref.reparam_forward(H, eps))

    dH = _reparam.reparam_backward_memview(H, eps, G)
    np.testing.assert_allclose(dH, fd4_all(objective, H), rtol=1e-8, atol=1e-10)


def test_forward_then_backward_finite_differences_with_kernel_noise():
    """Gradient of sum(G * z(H)) with the kernel's own eps, via the kernel forward."""
    rng = np.random.default_rng(7)
    n, K = 3, 4
    H = _head(rng, n, K)
    G = rng.standard_normal((n, K))

    def objective():
        return np.sum(G * _reparam.reparam_forward_memview(H, SEED, STREAM, STEP)[0])

    _, eps = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP)
    dH = _reparam.reparam_backward_memview(H, eps, G)
    np.testing.assert_allclose(dH, fd4_all(objective, H), rtol=1e-8, atol=1e-10)


# -- threads and precision -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, K", [(101, 7), (2, 3), (1000, 16)])
def test_bitwise_equal_for_any_thread_count(dtype, n, K):
    rng = np.random.default_rng(8)
    H = _head(rng, n, K, dtype)
    dZ = rng.standard_normal((n, K)).astype(dtype)
    Z1, e1 = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP, n_threads=1)
    d1 = _reparam.reparam_backward_memview(H, e1, dZ, n_threads=1)
    for nt in (2, 3):
        Z, e = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP, n_threads=nt)
        assert Z.tobytes() == Z1.tobytes() and e.tobytes() == e1.tobytes()
        d = _reparam.reparam_backward_memview(H, e1, dZ, n_threads=nt)
        assert d.tobytes() == d1.tobytes()


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(9)
    H64 = _head(rng, 50, 8)
    H32 = H64.astype(np.float32)
    Z32, e32 = _reparam.reparam_forward_memview(H32, SEED, STREAM, STEP)
    Z64, e64 = _reparam.reparam_forward_memview(
        H32.astype(np.float64), SEED, STREAM, STEP
    )
    np.testing.assert_array_equal(e32, e64.astype(np.float32))
    scale = np.abs(H64[:, :8]) + np.exp(0.5 * H64[:, 8:]) * np.abs(e64)
    assert_close_scaled(Z32, Z64, scale, rtol_for(np.float32))
    dZ = rng.standard_normal((50, 8))
    d32 = _reparam.reparam_backward_memview(H32, e32, dZ.astype(np.float32))
    d64 = _reparam.reparam_backward_memview(H32.astype(np.float64), e64, dZ)
    np.testing.assert_allclose(d32, d64, rtol=1e-6, atol=1e-7)


def test_read_only_inputs():
    rng = np.random.default_rng(10)
    H = _head(rng, 5, 3)
    eps = rng.standard_normal((5, 3))
    dZ = rng.standard_normal((5, 3))
    want_fwd = _reparam.reparam_forward_memview(H, SEED, STREAM, STEP)
    want_bwd = _reparam.reparam_backward_memview(H, eps, dZ)
    for a in (H, eps, dZ):
        a.setflags(write=False)
    for a, b in zip(
        _reparam.reparam_forward_memview(H, SEED, STREAM, STEP), want_fwd, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        _reparam.reparam_backward_memview(H, eps, dZ), want_bwd
    )


def test_empty_batch():
    Z, eps = _reparam.reparam_forward_memview(np.zeros((0, 4)), 1, 1, 1)
    assert Z.shape == eps.shape == (0, 2)
    assert _reparam.reparam_backward_memview(
        np.zeros((0, 4)), np.zeros((0, 2)), np.zeros((0, 2))
    ).shape == (0, 4)


# -- argument checking ----------------------------------------------------------------


def test_bad_head_width_raises():
    with pytest.raises(ValueError):
        _reparam.reparam_forward_memview(np.zeros((3, 5)), 1, 1, 1)
    with pytest.raises(ValueError):
        _reparam.reparam_forward_memview(np.zeros((3, 0)), 1, 1, 1)
    with pytest.raises(ValueError):
        _reparam.reparam_backward_memview(
            np.zeros((3, 5)), np.zeros((3, 2)), np.zeros((3, 2))
        )


@pytest.mark.parametrize(
    "eps_shape, dz_shape",
    [((3, 3), (3, 2)), ((3, 2), (3, 3)), ((2, 2), (3, 2)), ((3, 2), (4, 2))],
)
def test_backward_shape_mismatch_raises(eps_shape, dz_shape):
    with pytest.raises(ValueError):
        _reparam.reparam_backward_memview(
            np.zeros((3, 4)), np.zeros(eps_shape), np.zeros(dz_shape)
        )


def test_negative_counter_parts_raise():
    H = np.zeros((2, 4))
    for kw in (
        {"seed": -1},
        {"stream": -1},
        {"step": -1},
        {"row_offset": -1},
        {"draw": -1},
    ):
        args = dict(seed=1, stream=1, step=1, row_offset=0, draw=0)
        args.update(kw)
        with pytest.raises((OverflowError, ValueError)):
            _reparam.reparam_forward_memview(H, **args)
