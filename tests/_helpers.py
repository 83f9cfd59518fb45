"""Helpers shared by the kernel test files (not a test module)."""

from __future__ import annotations

import numpy as np

from fastvae._core import _dense, _network
from fastvae._core.params import Layout

DTYPES = (np.float32, np.float64)

# Relative tolerance of a float32 kernel against the float64 reference.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype).type]


def assert_close_scaled(got, want, scale, rtol, atol=0.0, err_msg=""):
    """|got - want| <= rtol * scale + atol elementwise.

    `scale` is an elementwise (or scalar) magnitude of the quantity, e.g. the
    sum of absolute values of the terms a dot product adds up, so the bound is
    meaningful for results that cancel to nearly zero.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape, err_msg)
    bound = rtol * np.asarray(scale, dtype=np.float64) + atol
    err = np.abs(got - want)
    bad = ~(err <= bound)
    if bad.any():
        idx = np.unravel_index(
            np.argmax(np.where(bad, err - bound, -np.inf)), err.shape
        )
        raise AssertionError(
            f"{err_msg}: {bad.sum()} of {err.size} elements off; worst at {idx}: "
            f"got {got[idx]!r}, want {want[idx]!r}, "
            f"bound {np.broadcast_to(bound, err.shape)[idx]!r}"
        )


def fd4(f, x, idx, h):
    """4th-order central difference of scalar f at array x w.r.t. x[idx].

    f'(x) ~ (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h). x is restored.
    """
    x0 = x[idx]
    vals = []
    for k in (2, 1, -1, -2):
        x[idx] = x0 + k * h
        vals.append(f())
    x[idx] = x0
    return (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)


def fd4_all(f, x, h_rel=1e-4, indices=None):
    """FD gradient of f() with respect to every (or the listed) entries of x."""
    out = np.zeros(x.shape)
    idxs = np.ndindex(x.shape) if indices is None else indices
    for idx in idxs:
        h = h_rel * max(1.0, abs(float(x[idx])))
        out[idx] = fd4(f, x, idx, h)
    return out


# -- networks -------------------------------------------------------------------


def make_network(
    n_features,
    enc_hidden,
    latent,
    dec_hidden,
    hidden_acts=("tanh",),
    likelihood="bernoulli",
    sigma=1.0,
    max_batch=16,
    dtype=np.float64,
    **options,
):
    """A compiled Network, its Layout and the activation name of every layer.

    hidden_acts cycles over the hidden layers (encoder then decoder); the
    encoder head and the decoder output are identity. options go to Network
    (n_samples, objective, ...).
    """
    lay = Layout(
        (n_features, *enc_hidden, 2 * latent), (latent, *dec_hidden, n_features)
    )
    acts = []
    k = 0
    for hidden in (enc_hidden, dec_hidden):
        for _ in hidden:
            acts.append(hidden_acts[k % len(hidden_acts)])
            k += 1
        acts.append("identity")
    net = _network.Network(
        lay.encoder_dims,
        lay.decoder_dims,
        [_dense.ACTIVATIONS[a] for a in acts],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        likelihood,
        sigma,
        max_batch,
        dtype,
        **options,
    )
    return net, lay, acts


COLUMN_ACTS = ("tanh", "identity", "sigmoid", "identity")


def columns_network(
    spec,
    latent,
    n_cond=0,
    missing=False,
    kind="vae",
    dtype=np.float64,
    tail_by_condition=False,
    **options,
):
    """A Network with one likelihood per column (spec: (kind, width, sigma)
    per column), its Layout and the activation name of every layer: encoder
    inputs (+ D missingness indicators) + n_cond -> 10 -> head, decoder
    latent + n_cond -> 8 -> outputs (+ one zero-inflation logit per "zinb"
    column); D tails, or n_cond x D with tail_by_condition."""
    D = len(spec)
    n_in = sum(w for _, w, _ in spec)
    n_out = n_in + sum(k == "zinb" for k, _, _ in spec)
    n_in += D if missing else 0
    head = 2 * latent if kind == "vae" else latent
    lay = Layout(
        (n_in + n_cond, 10, head),
        (latent + n_cond, 8, n_out),
        n_tail=D * (n_cond if tail_by_condition else 1),
    )
    net = _network.Network(
        lay.encoder_dims,
        lay.decoder_dims,
        [_dense.ACTIVATIONS[a] for a in COLUMN_ACTS],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        "columns",
        1.0,
        16,
        dtype,
        kind=kind,
        n_cond=n_cond,
        logsigma_offset=lay.tail_offset,
        columns=spec,
        missing=missing,
        tail_by_condition=tail_by_condition,
        **options,
    )
    return net, lay, list(COLUMN_ACTS)


def init_params(lay, rng, dtype, w_scale=0.3, b_scale=0.1, tail=None):
    """Random parameters (Glorot-like W, small b; the tail, when the layout
    has one and `tail` is a (low, high) range, uniform in it); padding stays
    zero."""
    p = lay.zeros(dtype)
    for W, b in lay.views(p):
        W[...] = rng.standard_normal(W.shape) * (w_scale * 3 / np.sqrt(W.shape[0]))
        b[...] = rng.standard_normal(b.shape) * b_scale
    if tail is not None and lay.n_tail:
        lay.tail(p)[...] = rng.uniform(tail[0], tail[1], lay.n_tail)
    return p


def ref_layers(lay, params, acts):
    """float64 copies (W, b, act) of every layer, as reference.forward wants."""
    return [
        (W.astype(np.float64), b.astype(np.float64), a)
        for (W, b), a in zip(lay.views(params), acts, strict=True)
    ]


def flat_grads(lay, grads):
    """Reference per-layer (dW, db) list, then optionally the tail's gradient
    (any shape, raveled), written into a flat float64 buffer."""
    g = lay.zeros(np.float64)
    n = len(lay.shapes)
    for (W, b), (dW, db) in zip(lay.views(g), grads[:n], strict=True):
        W[...] = dW
        b[...] = db
    if len(grads) > n:
        lay.tail(g)[...] = np.ravel(grads[n])
    return g


def trainable_mask(lay):
    """Boolean mask of the buffer entries that belong to some W or b."""
    m = np.zeros(lay.size, dtype=bool)
    for W, b in lay.views(m):
        W[...] = True
        b[...] = True
    return m
