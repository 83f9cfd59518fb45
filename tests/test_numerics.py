"""The branch-free float32 math of src_c/fastvae/numerics.h against float64 NumPy.

The hot loss and activation loops use these instead of libm (which cannot be
vectorised), so their accuracy is checked over every range the kernels feed
them, in units in the last place (ulp) of the correctly rounded float32 result.
"""

import numpy as np
import pytest
from fastvae._core._numerics import apply_f32


def _ulp_error(got, exact):
    """|got - exact| in ulps of the float32 nearest to exact (exact in float64)."""
    want = exact.astype(np.float32)
    spacing = np.spacing(np.abs(want)).astype(np.float64)
    # below the normal range the spacing is the smallest subnormal; count
    # those errors against FLT_MIN's spacing instead of blowing them up
    spacing = np.maximum(spacing, np.spacing(np.finfo(np.float32).tiny))
    return np.abs(got.astype(np.float64) - exact) / spacing


def _grid(lo, hi, n=200_001):
    return np.linspace(lo, hi, n, dtype=np.float32)


def test_exp_is_within_2_ulp_over_its_range():
    x = _grid(-87.33, 88.37)
    err = _ulp_error(apply_f32("exp", x), np.exp(x.astype(np.float64)))
    assert err.max() <= 2.0, (err.max(), x[np.argmax(err)])


def test_exp_special_values():
    x = np.array([0.0, -0.0, -88.0, -1000.0, -np.inf, 89.0, np.inf, np.nan], np.float32)
    got = apply_f32("exp", x)
    assert got[0] == 1.0 and got[1] == 1.0
    # below log(FLT_MIN) the result flushes to 0 instead of a subnormal
    assert got[2] == 0.0 and got[3] == 0.0 and got[4] == 0.0
    assert got[5] == np.inf and got[6] == np.inf
    assert np.isnan(got[7])


@pytest.mark.parametrize("lo, hi", [(-0.5, 1.0), (-1e-3, 1e-3)])
def test_log1p_is_within_2_ulp(lo, hi):
    x = _grid(lo, hi)
    err = _ulp_error(apply_f32("log1p", x), np.log1p(x.astype(np.float64)))
    assert err.max() <= 2.0, (err.max(), x[np.argmax(err)])


def test_log1p_keeps_tiny_arguments():
    """exp(-|l|) for large logits: log1p(e) ~ e, not lost to 1 + e rounding."""
    x = np.float32(10.0) ** -np.arange(5, 38, dtype=np.float32)
    got = apply_f32("log1p", x)
    np.testing.assert_allclose(got, np.log1p(x.astype(np.float64)), rtol=2e-7)
    assert apply_f32("log1p", np.zeros(1, np.float32))[0] == 0.0
    assert np.isnan(apply_f32("log1p", np.array([np.nan], np.float32))[0])


def test_tanh_is_within_2_ulp_and_odd():
    x = np.concatenate([_grid(-12.0, 12.0), _grid(-1e-3, 1e-3), _grid(0.6, 0.65)])
    got = apply_f32("tanh", x)
    err = _ulp_error(got, np.tanh(x.astype(np.float64)))
    assert err.max() <= 2.0, (err.max(), x[np.argmax(err)])
    np.testing.assert_array_equal(apply_f32("tanh", -x), -got)


def test_tanh_saturates_exactly():
    x = np.array([10.0, 20.0, 1e30, np.inf, -np.inf, 0.0, np.nan], np.float32)
    got = apply_f32("tanh", x)
    assert got[:4].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert got[4] == -1.0 and got[5] == 0.0 and np.isnan(got[6])


def test_sigmoid_is_accurate_and_symmetric():
    x = _grid(-80.0, 80.0)
    got = apply_f32("sigmoid", x)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    err = _ulp_error(got, exact)
    assert err.max() <= 3.0, (err.max(), x[np.argmax(err)])
    assert apply_f32("sigmoid", np.array([0.0], np.float32))[0] == 0.5
    assert apply_f32("sigmoid", np.array([-200.0], np.float32))[0] == 0.0
    assert apply_f32("sigmoid", np.array([200.0], np.float32))[0] == 1.0


def test_unknown_function_raises():
    with pytest.raises(ValueError, match="name must be one of"):
        apply_f32("erf", np.zeros(2, np.float32))
