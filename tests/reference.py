"""Plain float64 NumPy reference for every kernel and the whole training step.

This file is the specification of what the compiled core computes. It is
written for clarity, not speed: one function per kernel, same conventions
(row-major, W of shape (n_in, n_out), head H = [mu | logvar]).
"""

import numpy as np

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
LOG_2PI = np.log(2 * np.pi)


# -- activations ---------------------------------------------------------------

def activation(a, name):
    if name == "identity":
        return a
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    raise ValueError(name)


def activation_grad_from_output(y, name):
    """d act / d a written through y = act(a)."""
    if name == "identity":
        return np.ones_like(y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "tanh":
        return 1.0 - y * y
    if name == "sigmoid":
        return y * (1.0 - y)
    raise ValueError(name)


# -- dense layer ---------------------------------------------------------------

def dense_forward(X, W, b, act):
    return activation(X @ W + b, act)


def dense_backward(X, W, dA, x_act):
    """dA: gradient at this layer's pre-activation; X = x_act(previous)."""
    dW = X.T @ dA
    db = dA.sum(axis=0)
    dX = (dA @ W.T) * activation_grad_from_output(X, x_act)
    return dX, dW, db


# -- reparameterization and KL ---------------------------------------------------

def split_head(H):
    K = H.shape[1] // 2
    return H[:, :K], H[:, K:]


def reparam_forward(H, eps):
    mu, lv = split_head(H)
    return mu + np.exp(0.5 * np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)) * eps


def reparam_backward(H, eps, dZ):
    mu, lv = split_head(H)
    inside = (lv >= LOGVAR_MIN) & (lv <= LOGVAR_MAX)
    sigma = np.exp(0.5 * np.clip(lv, LOGVAR_MIN, LOGVAR_MAX))
    return np.hstack([dZ, dZ * eps * 0.5 * sigma * inside])


def kl(H):
    mu, lv = split_head(H)
    lv = np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)
    return 0.5 * np.sum(np.exp(lv) + mu**2 - 1.0 - lv, axis=1)


def kl_backward(H):
    mu, lv = split_head(H)
    inside = (lv >= LOGVAR_MIN) & (lv <= LOGVAR_MAX)
    return np.hstack([mu, 0.5 * (np.exp(np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)) - 1)
                      * inside])


# -- reconstruction losses -------------------------------------------------------

def bernoulli(L, X):
    """Per-row sum of softplus(L) - X * L, and d/dL = sigmoid(L) - X."""
    loss = np.sum(np.logaddexp(0.0, L) - X * L, axis=1)
    return loss, 1.0 / (1.0 + np.exp(-L)) - X


def gaussian(M, X, sigma):
    D = M.shape[1]
    loss = np.sum((X - M) ** 2, axis=1) / (2 * sigma**2) + D * (
        np.log(sigma) + 0.5 * LOG_2PI)
    return loss, (M - X) / sigma**2


# -- optimizers ------------------------------------------------------------------

def sgd(p, g, lr):
    return p - lr * g


def momentum(p, g, v, lr, mu):
    v = mu * v + g
    return p - lr * v, v


def adam(p, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    step = lr / (1 - beta1**t)
    denom = np.sqrt(v) / np.sqrt(1 - beta2**t) + eps
    return p - step * m / denom, m, v


# -- the whole step ---------------------------------------------------------------

def forward(layers, n_encoder, X, eps, likelihood="bernoulli", sigma=1.0):
    """Forward pass. layers: list of (W, b, act), encoder layers [0, n_encoder)
    ending with the 2K-wide head, then the decoder. Returns what backward needs."""
    acts = [X]
    for W, b, act in layers[:n_encoder]:
        acts.append(dense_forward(acts[-1], W, b, act))
    H = acts[-1]
    Z = reparam_forward(H, eps)
    dec = [Z]
    for W, b, act in layers[n_encoder:]:
        dec.append(dense_forward(dec[-1], W, b, act))
    out = dec[-1]
    if likelihood == "bernoulli":
        recon, dout = bernoulli(out, X)
    else:
        recon, dout = gaussian(out, X, sigma)
    return dict(acts=acts, H=H, Z=Z, dec=dec, recon=recon, kl=kl(H),
                dout=dout)


def loss_and_grads(layers, n_encoder, X, eps, likelihood="bernoulli", sigma=1.0, beta=1.0):
    """Mean negative ELBO (recon + beta * KL) over rows and its gradients.

    Returns (loss, recon_rows, kl_rows, grads) with grads a list of (dW, db)
    per layer.
    """
    f = forward(layers, n_encoder, X, eps, likelihood, sigma)
    n = X.shape[0]
    n_enc = n_encoder
    grads = [None] * len(layers)
    d = f["dout"] / n
    for li in range(len(layers) - 1, n_enc - 1, -1):
        W, b, _ = layers[li]
        j = li - n_enc
        x_in = f["dec"][j]
        x_act = "identity" if j == 0 else layers[li - 1][2]
        d, dW, db = dense_backward(x_in, W, d, x_act)
        grads[li] = (dW, db)
    dH = reparam_backward(f["H"], eps, d) + beta / n * kl_backward(f["H"])
    d = dH
    for li in range(n_enc - 1, -1, -1):
        W, b, _ = layers[li]
        x_in = f["acts"][li]
        x_act = "identity" if li == 0 else layers[li - 1][2]
        d, dW, db = dense_backward(x_in, W, d, x_act)
        grads[li] = (dW, db)
    loss = np.mean(f["recon"] + beta * f["kl"])
    return loss, f["recon"], f["kl"], grads
