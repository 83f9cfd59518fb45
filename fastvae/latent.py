"""Points in a model's latent space for pictures: traversals, interpolations,
per-dimension KL and a two-dimensional projection.

Plain NumPy on arrays of codes; the command line encodes and decodes them
with a model (fastvae.cli) and draws them (fastvae.cli.plotting).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACTIVE_THRESHOLD",
    "active_units",
    "kl_per_dimension",
    "top_dimensions",
    "traversal",
    "interpolate",
    "principal_components",
]

# Below this sin(angle) between two codes, slerp's weights sin((1-t) w) / sin w
# lose all precision (parallel or opposite codes); such pairs use the line.
_SLERP_MIN_SIN = 1e-7


def _matrix(name, a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")
    return a


def _vector(name, a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    return a


# Burda et al. (2016): a latent dimension is active when the variance over
# the data of its posterior mean exceeds 0.01.
ACTIVE_THRESHOLD = 0.01


def active_units(mu, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, np.ndarray]:
    """How many latent dimensions the model uses, by Burda et al.'s criterion:
    Cov_x(E_q(z|x)[z_j]) > threshold.

    Parameters
    ----------
    mu : array-like of shape (n_samples, latent_dim)
        Posterior means over data (``VAE.transform``).
    threshold : float, default=0.01

    Returns
    -------
    n_active : int
    variance : ndarray of shape (latent_dim,), float64
        The variance of each posterior mean over the rows.

    References
    ----------
    Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders",
    ICLR 2016, section 5.2.
    """
    mu = _matrix("mu", mu)
    variance = np.var(mu, axis=0)
    return int(np.count_nonzero(variance > threshold)), variance


def kl_per_dimension(mu, logvar) -> np.ndarray:
    """Mean KL(q(z_j | x) || N(0, 1)) of every latent dimension j over the rows.

    Parameters
    ----------
    mu, logvar : array-like of shape (n_samples, latent_dim)
        Posterior means and log-variances (``VAE.encode``).

    Returns
    -------
    ndarray of shape (latent_dim,), float64
        Nats per sample. Dimensions the model does not use ("inactive" or
        collapsed units) have a KL near 0: their posterior is the prior.

    Notes
    -----
    KL_j = mean_i 1/2 (mu_ij^2 + exp(logvar_ij) - 1 - logvar_ij); the sum over
    j is the KL term of the ELBO.
    """
    mu, logvar = _matrix("mu", mu), _matrix("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu {mu.shape} and logvar {logvar.shape} must have the same shape"
        )
    return np.mean(0.5 * (mu * mu + np.exp(logvar) - 1.0 - logvar), axis=0)


def top_dimensions(scores, n: int) -> np.ndarray:
    """Indices of the `n` largest scores, largest first (ties: lower index first).

    Parameters
    ----------
    scores : array-like of shape (latent_dim,)
    n : int
        At most ``latent_dim``.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    scores = _vector("scores", scores)
    if not 1 <= n <= scores.size:
        raise ValueError(f"n must be in [1, {scores.size}], got {n}")
    return np.argsort(-scores, kind="stable")[:n].astype(np.int64)


def traversal(center, dims, values) -> np.ndarray:
    """Codes that move one latent dimension at a time away from `center`.

    Parameters
    ----------
    center : array-like of shape (latent_dim,)
    dims : sequence of int
        The dimensions to move, one grid row each.
    values : array-like of shape (n_values,)
        Offsets added to ``center[d]``, one grid column each.

    Returns
    -------
    ndarray of shape (len(dims) * n_values, latent_dim), float64
        Row ``r * n_values + c`` is `center` with ``center[dims[r]] +
        values[c]`` in place of ``center[dims[r]]``.
    """
    center, values = _vector("center", center), _vector("values", values)
    dims = np.asarray(dims, dtype=np.int64).reshape(-1)
    if dims.size == 0 or dims.min() < 0 or dims.max() >= center.size:
        raise ValueError(f"dims must be in [0, {center.size}), got {dims.tolist()}")
    Z = np.tile(center, (dims.size * values.size, 1))
    rows = np.arange(Z.shape[0])
    Z[rows, np.repeat(dims, values.size)] += np.tile(values, dims.size)
    return Z


def interpolate(z0, z1, n_steps: int, *, spherical: bool = False) -> np.ndarray:
    """`n_steps` codes from `z0` to `z1` (both included), evenly spaced in t.

    Parameters
    ----------
    z0, z1 : array-like of shape (latent_dim,)
    n_steps : int >= 2
    spherical : bool, default=False
        Spherical linear interpolation (slerp) instead of the straight line.

    Returns
    -------
    ndarray of shape (n_steps, latent_dim), float64

    Notes
    -----
    Linear: z(t) = (1 - t) z0 + t z1. Spherical (Shoemake 1985, as used for
    generative models by White 2016): with w the angle between z0 and z1,
    z(t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1, which keeps the
    norm near that of the endpoints where the line passes close to the
    origin, a region of low prior density in high dimensions. When sin(w) is
    below 1e-7 (parallel or opposite codes, or a zero code) slerp is
    undefined and the line is used.

    References
    ----------
    White, "Sampling Generative Networks", arXiv:1609.04468, 2016.
    """
    z0, z1 = _vector("z0", z0), _vector("z1", z1)
    if z0.shape != z1.shape:
        raise ValueError(f"z0 {z0.shape} and z1 {z1.shape} must have the same shape")
    if int(n_steps) < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    t = np.linspace(0.0, 1.0, int(n_steps))[:, None]
    if spherical:
        norms = np.linalg.norm(z0) * np.linalg.norm(z1)
        cos = np.clip(z0 @ z1 / norms, -1.0, 1.0) if norms > 0 else 1.0
        omega = float(np.arccos(cos))
        if np.sin(omega) >= _SLERP_MIN_SIN:
            sin = np.sin(omega)
            return (np.sin((1.0 - t) * omega) * z0 + np.sin(t * omega) * z1) / sin
    return (1.0 - t) * z0 + t * z1


def principal_components(Z, n_components: int = 2):
    """Project codes onto their first principal components.

    Parameters
    ----------
    Z : array-like of shape (n_samples, latent_dim)
    n_components : int, default=2
        At most ``min(n_samples, latent_dim)``.

    Returns
    -------
    projected : ndarray of shape (n_samples, n_components), float64
        Coordinates of the centred codes along the components.
    explained : ndarray of shape (n_components,), float64
        Fraction of the total variance along each component (0 when all codes
        are equal).

    Notes
    -----
    The components are the right singular vectors of the centred Z, in
    order of decreasing singular value; each is signed so that its largest
    absolute entry is positive, which makes the picture deterministic.
    """
    Z = _matrix("Z", Z)
    if not 1 <= n_components <= min(Z.shape):
        raise ValueError(
            f"n_components must be in [1, {min(Z.shape)}], got {n_components}"
        )
    centred = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:n_components]
    biggest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(n_components), biggest])
    components = components * signs[:, None]
    total = float(np.sum(s * s))
    explained = (s[:n_components] ** 2 / total) if total > 0 else np.zeros(n_components)
    return centred @ components.T, explained
