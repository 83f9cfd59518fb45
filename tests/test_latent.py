"""fastvae.latent: traversal codes, interpolation, per-dimension KL, PCA."""

import numpy as np
import pytest

from fastvae import latent


def test_kl_per_dimension_hand_values():
    mu = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    logvar = np.array([[0.0, 0.0, np.log(2.0)], [0.0, 0.0, np.log(2.0)]])
    kl = latent.kl_per_dimension(mu, logvar)
    # 1/2 (mu^2 + e^lv - 1 - lv): 0 at the prior; (1 + 9) / 2 / 2; (2 - 1 - ln 2) / 2
    np.testing.assert_allclose(kl, [0.0, 2.5, 0.5 * (1.0 - np.log(2.0))], rtol=1e-15)
    with pytest.raises(ValueError, match="same shape"):
        latent.kl_per_dimension(mu, logvar[:, :2])


def test_kl_per_dimension_sums_to_the_elbo_kl_term():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
    per_row = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1 - logvar, axis=1)
    assert latent.kl_per_dimension(mu, logvar).sum() == pytest.approx(per_row.mean())


def test_top_dimensions():
    np.testing.assert_array_equal(
        latent.top_dimensions([0.1, 3.0, 0.5, 3.0], 3), [1, 3, 2]
    )  # ties: lower index first
    with pytest.raises(ValueError, match=r"n must be in \[1, 4\], got 5"):
        latent.top_dimensions([0.1, 3.0, 0.5, 3.0], 5)


def test_traversal_moves_one_dimension_per_row():
    center = np.array([0.5, -1.0, 2.0])
    Z = latent.traversal(center, [2, 0], [-1.0, 0.0, 1.0])
    want = np.array(
        [
            [0.5, -1.0, 1.0],
            [0.5, -1.0, 2.0],
            [0.5, -1.0, 3.0],
            [-0.5, -1.0, 2.0],
            [0.5, -1.0, 2.0],
            [1.5, -1.0, 2.0],
        ]
    )
    np.testing.assert_array_equal(Z, want)
    with pytest.raises(ValueError, match=r"dims must be in \[0, 3\)"):
        latent.traversal(center, [3], [0.0])


def test_linear_interpolation():
    Z = latent.interpolate([0.0, 2.0], [4.0, -2.0], 5)
    np.testing.assert_allclose(Z, [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]])
    with pytest.raises(ValueError, match="n_steps must be >= 2"):
        latent.interpolate([0.0], [1.0], 1)
    with pytest.raises(ValueError, match="same shape"):
        latent.interpolate([0.0], [1.0, 2.0], 3)


def test_slerp_follows_the_arc():
    e0, e1 = np.array([2.0, 0.0]), np.array([0.0, 2.0])
    Z = latent.interpolate(e0, e1, 3, spherical=True)
    r = np.sqrt(2.0)
    np.testing.assert_allclose(Z, [[2, 0], [r, r], [0, 2]], atol=1e-15)
    # every point of a quarter circle keeps the radius, and the angle moves evenly
    Z = latent.interpolate(e0, e1, 7, spherical=True)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 2.0, rtol=1e-14)
    np.testing.assert_allclose(
        np.arctan2(Z[:, 1], Z[:, 0]), np.linspace(0, np.pi / 2, 7), atol=1e-14
    )


def test_slerp_of_parallel_opposite_or_zero_codes_is_the_line():
    for z0, z1 in (
        ([1.0, 1.0], [2.0, 2.0]),
        ([1.0, 0.0], [-1.0, 0.0]),
        ([0.0, 0.0], [1.0, 3.0]),
    ):
        np.testing.assert_allclose(
            latent.interpolate(z0, z1, 4, spherical=True),
            latent.interpolate(z0, z1, 4),
            atol=1e-12,
        )


def test_principal_components_match_the_covariance_eigenvectors():
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((400, 5)) @ rng.standard_normal((5, 5)) + 7.0
    projected, explained = latent.principal_components(Z, 2)
    centred = Z - Z.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred.T))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    for c in range(2):
        v = vectors[:, c] * np.sign(vectors[np.argmax(np.abs(vectors[:, c])), c])
        np.testing.assert_allclose(projected[:, c], centred @ v, atol=1e-9)
    np.testing.assert_allclose(explained, values[:2] / values.sum(), rtol=1e-10)
    np.testing.assert_allclose(projected.var(axis=0, ddof=1), values[:2], rtol=1e-10)


def test_principal_components_of_identical_codes_and_bad_sizes():
    projected, explained = latent.principal_components(np.ones((4, 3)), 2)
    assert not projected.any() and not explained.any()
    with pytest.raises(ValueError, match=r"n_components must be in \[1, 3\]"):
        latent.principal_components(np.ones((4, 3)), 4)
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        latent.principal_components(np.ones(4), 1)
