"""A straightforward NumPy VAE: the baseline fastvae's benchmarks compare against.

This is the model and training step specified by ``tests/reference.py``, written
the way a user would write it in NumPy: vectorised over the minibatch, one
matrix product per layer and direction, numerically stable losses, no explicit
buffer management. It is neither deliberately slow nor hand-tuned.

Conventions (same as fastvae): dense layers ``y = act(x @ W + b)`` with ``W`` of
shape ``(n_in, n_out)``; the encoder ends in a linear head ``H = [mu | logvar]``
of width ``2 * latent``; ``logvar`` is clamped to ``[-30, 20]`` (zero gradient
outside); ``z = mu + exp(logvar / 2) * eps``; loss is the mean over rows of
``recon + beta * KL``; Adam uses PyTorch's update.

The benchmark harness (fastvae.bench) times it against fastvae.
"""

from __future__ import annotations

import math

import numpy as np

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def _activate(a, name):
    if name == "identity":
        return a
    if name == "relu":
        return np.maximum(a, 0)
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return _sigmoid(a)
    raise ValueError(f"unknown activation {name!r}")


def _activation_grad(y, name):
    """d act / d a expressed through the layer output y = act(a)."""
    if name == "relu":
        return y > 0
    if name == "tanh":
        return 1 - y * y
    if name == "sigmoid":
        return y * (1 - y)
    raise ValueError(f"unknown activation {name!r}")


def _sigmoid(a):
    """Overflow-free logistic function."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1, e) / (1 + e)


class NumpyVAE:
    """The same VAE and Adam step in plain NumPy (the baseline users would write).

    Parameters
    ----------
    encoder_dims : sequence of int
        ``(n_features, hidden..., 2 * latent)``; the last layer is the linear head.
    decoder_dims : sequence of int
        ``(latent, hidden..., n_features)``; the last layer is linear (logits for
        Bernoulli, means for Gaussian).
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Activation of every hidden layer.
    likelihood : {"bernoulli", "gaussian"}
    sigma : float
        Fixed standard deviation of the Gaussian likelihood.
    beta : float
        Weight of the KL term.
    lr, beta1, beta2, eps : float
        Adam hyper-parameters (PyTorch formula, bias-corrected, 1-based step).
    dtype : numpy dtype
        Dtype of parameters, optimizer state and all computation.
    seed : int
        Seeds ``self.rng`` (Glorot-uniform initialisation, then the noise ``eps``).
    """

    def __init__(
        self,
        encoder_dims,
        decoder_dims,
        activation="relu",
        likelihood="bernoulli",
        sigma=1.0,
        beta=1.0,
        lr=1e-3,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        dtype=np.float32,
        seed=0,
    ):
        encoder_dims = tuple(int(d) for d in encoder_dims)
        decoder_dims = tuple(int(d) for d in decoder_dims)
        if len(encoder_dims) < 2 or len(decoder_dims) < 2:
            raise ValueError("encoder and decoder need at least one layer each")
        if (
            encoder_dims[-1] != 2 * decoder_dims[0]
            or encoder_dims[0] != decoder_dims[-1]
        ):
            raise ValueError(
                "encoder must map n_features to 2 * latent and the decoder latent "
                f"to n_features; got {encoder_dims} and {decoder_dims}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood {likelihood!r}")

        self.encoder_dims = encoder_dims
        self.decoder_dims = decoder_dims
        self.activation = activation
        self.likelihood = likelihood
        self.sigma = float(sigma)
        self.beta = float(beta)
        self.lr = float(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.dtype = np.dtype(dtype)
        self.latent = decoder_dims[0]
        self.n_encoder = len(encoder_dims) - 1

        shapes = list(zip(encoder_dims[:-1], encoder_dims[1:], strict=True))
        shapes += list(zip(decoder_dims[:-1], decoder_dims[1:], strict=True))
        n_dec = len(decoder_dims) - 1
        # Hidden layers use `activation`; the encoder head and decoder output are
        # linear.
        self.activations = (
            [activation] * (self.n_encoder - 1)
            + ["identity"]
            + [activation] * (n_dec - 1)
            + ["identity"]
        )

        self.rng = np.random.default_rng(seed)
        self.params = []
        for n_in, n_out in shapes:
            limit = math.sqrt(6.0 / (n_in + n_out))
            W = self.rng.uniform(-limit, limit, size=(n_in, n_out)).astype(self.dtype)
            b = np.zeros(n_out, dtype=self.dtype)
            self.params.append([W, b])
        self.m = [[np.zeros_like(p) for p in layer] for layer in self.params]
        self.v = [[np.zeros_like(p) for p in layer] for layer in self.params]
        self.t = 0

    # -- forward and backward ------------------------------------------------------

    def loss_and_grads(self, x, eps):
        """Mean negative ELBO over the rows of ``x`` and its gradients.

        Parameters
        ----------
        x : array (batch, n_features)
        eps : array (batch, latent)
            The standard-normal noise of the reparameterisation.

        Returns
        -------
        loss : float
        grads : list of (dW, db), one per layer, encoder first.
        """
        x = np.asarray(x, dtype=self.dtype)
        eps = np.asarray(eps, dtype=self.dtype)
        n = x.shape[0]
        K = self.latent
        n_enc = self.n_encoder
        params, acts = self.params, self.activations

        # Forward: keep every layer's input for the backward pass.
        inputs = []
        h = x
        for (W, b), act in zip(params[:n_enc], acts[:n_enc], strict=True):
            inputs.append(h)
            h = _activate(h @ W + b, act)
        mu, logvar = h[:, :K], h[:, K:]
        inside = (logvar >= LOGVAR_MIN) & (logvar <= LOGVAR_MAX)
        logvar = np.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)
        var = np.exp(logvar)
        std = np.exp(0.5 * logvar)
        z = mu + std * eps

        h = z
        for (W, b), act in zip(params[n_enc:], acts[n_enc:], strict=True):
            inputs.append(h)
            h = _activate(h @ W + b, act)
        out = h

        kl = 0.5 * np.sum(var + mu * mu - 1 - logvar)
        if self.likelihood == "bernoulli":
            # softplus(L) - x * L and its derivative sigmoid(L) - x, from one exp.
            e = np.exp(-np.abs(out))
            recon = np.sum(np.maximum(out, 0) + np.log1p(e) - x * out)
            dout = np.where(out >= 0, 1, e) / (1 + e) - x
        else:
            s2 = self.sigma * self.sigma
            diff = out - x
            recon = np.sum(diff * diff) / (2 * s2) + n * x.shape[1] * (
                math.log(self.sigma) + HALF_LOG_2PI
            )
            dout = diff / s2
        loss = float((recon + self.beta * kl) / n)

        # Backward.
        grads = [None] * len(params)
        d = dout / n
        for li in range(len(params) - 1, -1, -1):
            W = params[li][0]
            h_in = inputs[li]
            grads[li] = (h_in.T @ d, d.sum(axis=0))
            if li == 0:
                break
            d = d @ W.T
            if li == n_enc:
                # d is dL/dz: through the reparameterisation and the KL onto H.
                c = self.beta / n
                d_mu = d + c * mu
                d_logvar = (0.5 * d * eps * std + (0.5 * c) * (var - 1)) * inside
                d = np.concatenate([d_mu, d_logvar], axis=1)
            else:
                d = d * _activation_grad(h_in, acts[li - 1])
        return loss, grads

    # -- optimizer -------------------------------------------------------------------

    def step(self, x, eps=None):
        """One Adam step on the minibatch ``x``; returns the loss before the step."""
        x = np.asarray(x, dtype=self.dtype)
        if eps is None:
            eps = self.rng.standard_normal((x.shape[0], self.latent), dtype=self.dtype)
        loss, grads = self.loss_and_grads(x, eps)

        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1**self.t)
        sqrt_bc2 = math.sqrt(1 - b2**self.t)
        for layer, m_layer, v_layer, g_layer in zip(
            self.params, self.m, self.v, grads, strict=True
        ):
            for p, m, v, g in zip(layer, m_layer, v_layer, g_layer, strict=True):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
                p -= step_size * m / (np.sqrt(v) / sqrt_bc2 + self.eps)
        return loss
