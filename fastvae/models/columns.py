"""Per-column likelihoods of a VAE: one kind of p(x_d | z) per data column.

A model's data X hold one value per column: a real number (Gaussian), a
value in [0, 1] (Bernoulli), a level code 0..levels-1 (categorical), a
count >= 0 (Poisson, negative binomial, zero-inflated negative binomial
"zinb"); NaN marks a missing entry when the
model was built with ``missing="mask"``. The compiled step (src_c/fastvae/
columns.h) expands each minibatch row for the encoder and evaluates every
column's likelihood; this module resolves the user's spec against the data,
checks values, and turns decoder means into data-space values and draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastvae._core._numerics import LOGSIGMA_RANGE
from fastvae.data import batches

__all__ = [
    "COUNT_KINDS",
    "KINDS",
    "check_likelihood",
    "check_values",
    "draw",
    "network_spec",
    "point",
    "has_tail",
    "per_column",
    "resolve",
]

KINDS = ("gaussian", "bernoulli", "categorical", "poisson", "negbin", "zinb")
# Kinds whose values are counts (the encoder reads log1p of them).
COUNT_KINDS = ("poisson", "negbin", "zinb")
# The negative binomial's log-dispersion clamp (src_c/fastvae/columns.h).
LOGDISP_RANGE = (-12.0, 12.0)
# Most levels of one categorical column: its one-hot block and logits are
# one minibatch wide, but the first and last layers grow with it.
MAX_LEVELS = 2**24


def check_likelihood(name: str, value):
    """The likelihood setting: one kind of KINDS for every feature, or a
    sequence with one entry per column, each a kind or ("categorical",
    n_levels). Returns the normalised value (a tuple of kinds and (kind,
    levels) tuples for a sequence)."""
    if isinstance(value, str):
        if value not in KINDS:
            raise ValueError(
                f"{name} must be one of {list(KINDS)} or one entry per column, "
                f"got {value!r}"
            )
        return value
    if not isinstance(value, Sequence) or isinstance(value, bytes) or not value:
        raise ValueError(
            f"{name} must be 'bernoulli', 'gaussian' or a non-empty sequence with "
            f"one entry per column, got {value!r}"
        )
    out = []
    for d, entry in enumerate(value):
        if isinstance(entry, str):
            if entry not in KINDS:
                raise ValueError(
                    f"{name}[{d}] must be one of {list(KINDS)}, got {entry!r}"
                )
            out.append(entry)
            continue
        if (
            isinstance(entry, Sequence)
            and len(entry) == 2
            and entry[0] == "categorical"
            and isinstance(entry[1], int | np.integer)
            and not isinstance(entry[1], bool)
            and 2 <= entry[1] <= MAX_LEVELS
        ):
            out.append(("categorical", int(entry[1])))
            continue
        raise ValueError(
            f"{name}[{d}] must be one of {list(KINDS)} or ('categorical', n_levels) "
            f"with 2 <= n_levels <= {MAX_LEVELS}, got {entry!r}"
        )
    return tuple(out)


def per_column(likelihood, missing) -> bool:
    """Whether a model with these settings uses the per-column path (a
    kind other than Bernoulli or Gaussian for all, a sequence, or gaps)."""
    return likelihood not in ("bernoulli", "gaussian") or missing is not None


def resolve(likelihood, missing, X: np.ndarray):
    """The fitted columns ((kind, levels) per column) of a model trained on
    X, or None for the one-likelihood path (a string likelihood, no mask).
    A categorical column given without its levels gets max code + 1."""
    if isinstance(likelihood, str):
        if missing is None and likelihood in ("bernoulli", "gaussian"):
            return None
        likelihood = (likelihood,) * X.shape[1]
    if len(likelihood) != X.shape[1]:
        raise ValueError(
            f"likelihood names {len(likelihood)} columns but X has {X.shape[1]}"
        )
    sparse_top = None
    if hasattr(X, "tocsr") and "categorical" in likelihood:
        sparse_top = np.asarray(X.max(axis=0).todense()).ravel()
    out = []
    for d, entry in enumerate(likelihood):
        if entry == "categorical":
            if sparse_top is not None:
                top = float(sparse_top[d])
            else:
                column = X[:, d]
                seen = column[~np.isnan(column)]
                top = float(seen.max()) if seen.size else 0.0
            out.append(("categorical", max(2, int(top) + 1 if top >= 0 else 2)))
        elif isinstance(entry, tuple):
            out.append(entry)
        else:
            out.append((entry, 1))
    return tuple(out)


def has_tail(columns, sigma) -> bool:
    """Whether the columns train per-column parameters after the layers
    (learned Gaussian log-sigmas, negative-binomial log-dispersions)."""
    return any(
        kind in ("negbin", "zinb") or (kind == "gaussian" and sigma == "learned")
        for kind, _ in columns
    )


def n_outputs(columns) -> int:
    """Decoder outputs of a layout: each column's width, then one
    zero-inflation logit per "zinb" column."""
    return sum(levels for _, levels in columns) + sum(
        kind == "zinb" for kind, _ in columns
    )


def network_spec(columns, sigma):
    """(kind, width, sigma) per column for fastvae._core._network.Network."""
    spec = []
    for kind, levels in columns:
        if kind == "gaussian":
            if sigma == "learned":
                spec.append(("gaussian_learned", 1, 1.0))
            else:
                spec.append(("gaussian", 1, float(sigma)))
        else:
            spec.append((kind, levels, 1.0))
    return spec


def check_values(columns, X: np.ndarray, missing, name: str = "X") -> None:
    """Refuse values a column's likelihood does not define, naming the
    column: NaN without missing="mask", infinities, Bernoulli values outside
    [0, 1], level codes that are not integers in [0, levels), negative
    counts."""
    if hasattr(X, "tocsr"):  # scipy.sparse: the stored values, by column
        _check_sparse_values(columns, X, name)
        return
    gone = np.isnan(X)
    if missing is None and gone.any():
        row, col = np.argwhere(gone)[0]
        raise ValueError(
            f"{name} contains NaN (first at row {row}, column {col}); pass "
            "missing='mask' to train with missing values"
        )
    if np.isinf(X).any():
        row, col = np.argwhere(np.isinf(X))[0]
        raise ValueError(f"{name} contains infinity at row {row}, column {col}")
    for d, (kind, levels) in enumerate(columns):
        v = X[:, d][~gone[:, d]]
        if v.size == 0 or kind == "gaussian":
            continue
        if kind == "bernoulli" and (v.min() < 0 or v.max() > 1):
            raise ValueError(
                f"{name} column {d} (bernoulli) must lie in [0, 1], got values in "
                f"[{v.min():g}, {v.max():g}]"
            )
        if kind == "categorical":
            bad = (v < 0) | (v >= levels) | (v != np.floor(v))
            if bad.any():
                raise ValueError(
                    f"{name} column {d} (categorical, {levels} levels) must hold "
                    f"level codes 0..{levels - 1}, got {v[bad][0]!r}"
                )
        if kind in COUNT_KINDS and v.min() < 0:
            raise ValueError(
                f"{name} column {d} ({kind}) must hold counts >= 0, got {v.min():g}"
            )


def _check_sparse_values(columns, X, name) -> None:
    """check_values for a CSR matrix (its implicit zeros are valid values
    of every kind): the stored values against their column's kind."""
    kinds = np.array([KINDS.index(kind) for kind, _ in columns], dtype=np.int8)
    levels = np.array([n for _, n in columns], dtype=np.float64)
    step = 1 << 20  # in windows of stored values: bounded temporaries
    for a in range(0, X.data.size, step):
        v, col = X.data[a : a + step], X.indices[a : a + step]
        kind = kinds[col]
        bad_bern = (kind == KINDS.index("bernoulli")) & ((v < 0) | (v > 1))
        bad_cat = (kind == KINDS.index("categorical")) & (
            (v < 0) | (v >= levels[col]) | (v != np.floor(v))
        )
        counts = np.isin(kind, [KINDS.index(k) for k in COUNT_KINDS])
        bad_count = counts & (v < 0)
        for bad, what in (
            (bad_bern, "must lie in [0, 1]"),
            (bad_cat, "must hold level codes"),
            (bad_count, "must hold counts >= 0"),
        ):
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                d = int(col[i])
                raise ValueError(
                    f"{name} column {d} ({columns[d][0]}) {what}, got {v[i]:g}"
                )
        batches.release(v)  # a memory-mapped file's pages (no-op otherwise)
        batches.release(col)


def point(columns, means: np.ndarray) -> np.ndarray:
    """Data-space values from decoder means (one row of outputs per row):
    the Gaussian mean, the Bernoulli probability, the most probable level's
    code, the expected count."""
    out = np.empty((means.shape[0], len(columns)), dtype=means.dtype)
    at = 0
    for d, (kind, levels) in enumerate(columns):
        block = means[:, at : at + levels]
        out[:, d] = block.argmax(axis=1) if kind == "categorical" else block[:, 0]
        at += levels
    return out


def draw(columns, means: np.ndarray, tail, sigma, rng) -> np.ndarray:
    """One draw of every column from p(x | z) given the decoder means; tail
    holds the per-column learned log-sigmas and log-dispersions (or None),
    one row for all rows (n_columns,) or one per row (n_rows, n_columns).
    A zero-inflated column's zero probability is at its logit's output."""
    n = means.shape[0]
    out = np.empty((n, len(columns)), dtype=means.dtype)
    at = 0
    aux = sum(levels for _, levels in columns)
    for d, (kind, levels) in enumerate(columns):
        block = means[:, at : at + levels].astype(np.float64)
        if kind == "gaussian":
            if sigma == "learned":
                scale = np.exp(np.clip(tail[..., d], *LOGSIGMA_RANGE))
            else:
                scale = float(sigma)
            out[:, d] = block[:, 0] + scale * rng.standard_normal(n)
        elif kind == "bernoulli":
            out[:, d] = rng.random(n) < block[:, 0]
        elif kind == "categorical":
            cumulative = np.cumsum(block, axis=1)
            u = rng.random(n) * cumulative[:, -1]
            out[:, d] = np.minimum((cumulative < u[:, None]).sum(axis=1), levels - 1)
        elif kind == "poisson":
            out[:, d] = rng.poisson(block[:, 0])
        else:  # negative binomial as a gamma-Poisson mixture
            theta = np.exp(np.clip(tail[..., d], *LOGDISP_RANGE))
            mean = block[:, 0]
            if kind == "zinb":  # mean is (1 - w) mu; zero with probability w
                w = means[:, aux].astype(np.float64)
                aux += 1
                mean = mean / np.maximum(1.0 - w, 1e-300)
            counts = rng.poisson(rng.gamma(theta, mean / theta))
            if kind == "zinb":
                counts = np.where(rng.random(n) < w, 0, counts)
            out[:, d] = counts
        at += levels
    return out
